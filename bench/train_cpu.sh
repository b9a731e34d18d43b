#!/usr/bin/env bash
# sft-train vs PyTorch/transformers(/peft) on the CPU: one SFT optimizer step (forward +
# backward + clip + AdamW) of SmolLM2-135M-Instruct in fp32, micro-batch 4 x 512 tokens of
# real text, full fine-tuning and LoRA (r 16, alpha 32, dropout 0.05, all-linear).
# One run each, then a table with ratios (tokens/s ours/torch, peak RSS ours/torch).
#
#   bench/train_cpu.sh [MODEL.gguf]        default: models/SmolLM2-135M-Instruct.Q4_1.gguf
#   MODES=lora STEPS=2 bench/train_cpu.sh  one mode, median of 2 timed steps
#   PERF=1 bench/train_cpu.sh              also perf-record our steps (top symbols printed)
#
# Both sides: the same 4 rows (tok-encode of fixture text, 512 tokens each, every token
# trained; pack --strategy none; the torch side reads them back with pack --unpack),
# gradient checkpointing off, lr 2e-5 (full) / 2e-4 (LoRA), weight decay 0.01, max grad
# norm 1.0, AdamW (0.9, 0.999, 1e-8), one warm-up step then STEPS timed steps.
# Ours: sft-train --max_steps 1+STEPS --logging_steps 1; step time = difference of the
# metrics.jsonl "time" stamps of the first and last step (the first step is the warm-up).
# Torch: bench/train_torch.py (the GGUF dequantized once by transformers into an HF
# directory, which it then loads). Peak RSS: /usr/bin/time -f %M of each whole process
# (load + steps), the same measure for both. Threads: both use every core (OpenMP /
# torch's default). Wall times depend on the machine's load, printed with the results.
# Environment: OURS_ENV (default empty: ours runs with the OpenMP wait policy that
# libcommon/threads.h's sft_threads_init chooses, a bounded GOMP_SPINCOUNT, unless the
# caller's environment already sets OMP_WAIT_POLICY or GOMP_SPINCOUNT) and TORCH_ENV
# (default empty: what a PyTorch user gets), e.g. OURS_ENV=OMP_WAIT_POLICY=passive
# TORCH_ENV=OMP_WAIT_POLICY=passive for both sides under the passive policy.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
BIN=${BINDIR:-bin}
W=${BENCH_TMP:-/tmp/train_cpu_bench}
STEPS=${STEPS:-1}
MODES=${MODES:-full lora}
OURS_ENV=${OURS_ENV-}
TORCH_ENV=${TORCH_ENV-}
mkdir -p "$W"
[ -f "$MODEL" ] || MODEL=$(scripts/get-model smollm2-135m-instruct)
for t in sft-train tok-encode pack ds-fetch; do
	[ -x "$BIN/$t" ] || { echo "build $t first (make; or BINDIR=...)" >&2; exit 1; }
done
python3 -c 'import torch, transformers, peft' 2>/dev/null || { echo "needs python3 torch, transformers, peft" >&2; exit 1; }

# ---- the batch: 4 rows x 512 real tokens ----
if [ ! -s "$W/batch.jsonl" ]; then
	"$BIN/ds-fetch" -q tests/fixtures/datasets/sql-ft/train.jsonl | python3 -c '
import json, sys
buf, n = "", 0
for line in sys.stdin:
    r = json.loads(line)
    buf += r["sql_context"] + "\n-- " + r["sql_prompt"] + "\n" + r["sql"] + "\n\n"
    if len(buf) > 3000 and n < 4:  # reads on to the end: no SIGPIPE for ds-fetch
        print(json.dumps({"text": buf}))
        buf, n = "", n + 1
' > "$W/text.jsonl"
	rm -rf "$W/packed"
	"$BIN/tok-encode" -q --model "$MODEL" --max-length 512 "$W/text.jsonl" \
		| "$BIN/pack" -q --strategy none --seq-len 512 --out "$W/packed"
	"$BIN/pack" --unpack "$W/packed" > "$W/batch.jsonl"
fi
python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 4 and all(len(r["input_ids"]) == 512 for r in rows), "batch must be 4 x 512"
' "$W/batch.jsonl"
if [ ! -s "$W/hf/model.safetensors" ]; then
	echo "dequantizing $MODEL into $W/hf for transformers ..." >&2
	python3 bench/train_torch.py --model "$MODEL" --save-hf "$W/hf" >/dev/null 2>"$W/hf.log"
fi

ours() { # mode
	local mode=$1 out="$W/ours-$1" extra=(--learning_rate 2e-5)
	[ "$mode" = lora ] && extra=(--use_peft --lora_r 16 --lora_alpha 32 --lora_dropout 0.05
		--lora_target_modules all-linear --learning_rate 2e-4)
	rm -rf "$out"
	local pre=()
	[ -n "${PERF:-}" ] && pre=(perf record -F 99 -g -o "$W/perf-$mode.data" --)
	/usr/bin/time -f '%M %e %U %S' -o "$W/ours-$mode.time" env $OURS_ENV "${pre[@]}" "$BIN/sft-train" -q \
		--model_name_or_path "$MODEL" --train_data "$W/packed" --output_dir "$out" \
		--max_steps $((1 + STEPS)) --per_device_train_batch_size 4 --logging_steps 1 \
		--gradient_checkpointing false --save_strategy no --report_to none \
		--weight_decay 0.01 --max_grad_norm 1.0 --lr_scheduler_type constant "${extra[@]}" \
		> /dev/null 2> "$W/ours-$mode.log" || { cat "$W/ours-$mode.log" >&2; exit 1; }
	python3 - "$out/metrics.jsonl" "$W/ours-$mode.time" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
rss_kb, wall, user, sys_s = open(sys.argv[2]).read().split()[-4:]
n = len(rows) - 1
st = (rows[-1]["time"] - rows[0]["time"]) / n
tok = (rows[-1]["tokens"] - rows[0]["tokens"]) / n
print(json.dumps({"impl": "ours", "step_s": round(st, 3), "tokens_per_s": round(tok / st, 1),
                  "peak_rss_mb": round(int(rss_kb) / 1024, 1), "wall_s": float(wall),
                  "cpu_s": round(float(user) + float(sys_s), 1),
                  "losses": [round(r["loss"], 4) for r in rows]}))
PY
}

torch_side() { # mode
	local mode=$1 lr=2e-5
	[ "$mode" = lora ] && lr=2e-4
	/usr/bin/time -f '%M %e %U %S' -o "$W/torch-$mode.time" env $TORCH_ENV python3 bench/train_torch.py --model "$W/hf" \
		--batch "$W/batch.jsonl" --mode "$mode" --lr $lr --weight-decay 0.01 --max-grad-norm 1.0 \
		--warmup 1 --steps "$STEPS" > "$W/torch-$mode.json" 2> "$W/torch-$mode.log" \
		|| { cat "$W/torch-$mode.log" >&2; exit 1; }
	python3 - "$W/torch-$mode.json" "$W/torch-$mode.time" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
rss_kb, wall, user, sys_s = open(sys.argv[2]).read().split()[-4:]
r["peak_rss_mb"] = round(int(rss_kb) / 1024, 1)
r["wall_s"] = float(wall)
r["cpu_s"] = round(float(user) + float(sys_s), 1)
print(json.dumps(r))
PY
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
: > "$W/results.jsonl"
for mode in $MODES; do
	echo "[$(date -u +%H:%M:%S)] $mode: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	o=$(ours "$mode"); echo "  ours:  $o" >&2
	echo "[$(date -u +%H:%M:%S)] $mode: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	t=$(torch_side "$mode"); echo "  torch: $t" >&2
	echo "{\"mode\":\"$mode\",\"ours\":$o,\"torch\":$t}" >> "$W/results.jsonl"
	if [ -n "${PERF:-}" ]; then
		echo "  perf top symbols ($mode, ours, whole run incl. load):" >&2
		perf report -i "$W/perf-$mode.data" --no-children --sort symbol --stdio 2>/dev/null \
			| grep -E '^ +[0-9.]+%' | head -15 >&2
	fi
done
echo "[$(date -u +%H:%M:%S)] done: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$W/results.jsonl" <<'PY'
import json, sys
print("| mode | step s ours | step s torch | tokens/s ours | tokens/s torch | ratio (target >= 1.5) "
      "| peak RSS MB ours | peak RSS MB torch | ratio (target <= 0.5) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for l in open(sys.argv[1]):
    r = json.loads(l)
    o, t = r["ours"], r["torch"]
    print(f'| {r["mode"]} | {o["step_s"]:.1f} | {t["step_s"]:.1f} | {o["tokens_per_s"]:.1f} | {t["tokens_per_s"]:.1f} '
          f'| **{o["tokens_per_s"] / t["tokens_per_s"]:.2f}x** | {o["peak_rss_mb"]:.0f} | {t["peak_rss_mb"]:.0f} '
          f'| **{o["peak_rss_mb"] / t["peak_rss_mb"]:.2f}x** |')
PY
