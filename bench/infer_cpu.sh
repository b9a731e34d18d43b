#!/usr/bin/env bash
# CPU inference: libcommon/model.h (bench/infer_cpu.c) vs llama.cpp vs transformers, fp32,
# SmolLM2-135M-Instruct; one run, prints tokens/s and ratios for three numbers:
#   prompt   one 512-token prompt (prefill)                       PP=512
#   decode 1 one sequence: 128 tokens after a 128-token prompt     DPP=128 TG=128
#   decode B B sequences (16) at once, 128 tokens each after a 128-token prompt each  BATCH=16
#
#   bench/infer_cpu.sh [MODEL.gguf]     (default: scripts/get-model smollm2-135m-instruct)
#
# Same weights and precision everywhere: the Q4_1 GGUF dequantized to fp32.
# - ours: model_load_gguf (dequantizes to fp32), model_decode for the prompt (gemm),
#   model_decode_batch for the decode steps (greedy), THREADS (default `nproc`) threads
#   (OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = THREADS; GOMP_SPINCOUNT from threads.h; OpenBLAS
#   its OpenMP build when installed, as the Makefile links it).
# - llama.cpp: built once from the llama-cpp-python sdist's vendored source (pip download
#   --no-binary :all:; cmake -DGGML_NATIVE=ON -DLLAMA_CURL=OFF; only llama-bench,
#   llama-batched-bench, llama-quantize), cached in $LLAMA_DIR (default build-llamacpp/,
#   gitignored). It runs an F32 GGUF of the same dequantized weights, made by
#   `llama-quantize --allow-requantize MODEL F32.gguf F32` (cached beside the build).
#   prompt: llama-bench -p 512 -n 0 (mean of its repetitions); decode: llama-batched-bench
#   -npp 128 -ntg 128 -npl 1,16 (S_TG, its decode-only rate), -t `nproc`.
# - transformers: AutoModelForCausalLM.from_pretrained(dir, gguf_file=...) (dequantized to
#   fp32), torch fp32, torch.set_num_threads(`nproc`); prompt: one forward of 512 tokens
#   (best of 2); decode: generate(greedy, max_new_tokens=129) minus generate(max_new_tokens=1)
#   on the same inputs (prefill + first token cancel out), B prompts of 128 tokens.
# CPU seconds: ours and transformers measure their own process CPU time around each timed
# region; llama.cpp's binaries are timed from outside (rusage of the child) minus a run that
# does the same loading with (almost) no work. Wall times move with the machine's load
# (printed); the CPU-second ratios much less.
set -euo pipefail
cd "$(dirname "$0")/.."
PP=${PP:-512}
DPP=${DPP:-128}
TG=${TG:-128}
BATCH=${BATCH:-16}
LLAMA_DIR=${LLAMA_DIR:-build-llamacpp}
LCP_VERSION=${LCP_VERSION:-0.3.36}
THREADS=${THREADS:-$(nproc)}
BUILD=${BUILD:-build}
model=${1:-}
if [ -z "$model" ]; then
	for f in models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/wmodels/SmolLM2-135M-Instruct.Q4_1.gguf; do
		[ -f "$f" ] && model=$f && break
	done
	[ -n "$model" ] || model=$(scripts/get-model smollm2-135m-instruct)
fi
[ -f "$model" ] || { echo "no model file: $model" >&2; exit 2; }

# ---- ours: the driver against libcommon.a
echo "building libcommon ($BUILD) and bench/infer_cpu.c ..." >&2
make -s -j"$THREADS" BUILD="$BUILD" "$BUILD/libcommon.a" >&2
ours_bin=$BUILD/bench/infer_cpu
mkdir -p "$BUILD/bench"
gcc -std=c11 -D_GNU_SOURCE -O2 -g -fopenmp -Ilibcommon -o "$ours_bin" bench/infer_cpu.c "$BUILD/libcommon.a" \
	-ljansson $(make -s print-BLAS_LIBS) -lm -lpthread

# ---- llama.cpp, built once
lbin=$LLAMA_DIR/build/bin
if [ ! -x "$lbin/llama-bench" ] || [ ! -x "$lbin/llama-batched-bench" ] || [ ! -x "$lbin/llama-quantize" ]; then
	echo "building llama.cpp from the llama-cpp-python $LCP_VERSION sdist into $LLAMA_DIR (once; slow) ..." >&2
	mkdir -p "$LLAMA_DIR/dl"
	src=$LLAMA_DIR/llama_cpp_python-$LCP_VERSION
	if [ ! -d "$src/vendor/llama.cpp" ]; then
		ls "$LLAMA_DIR"/dl/llama_cpp_python-"$LCP_VERSION".tar.gz >/dev/null 2>&1 ||
			python3 -m pip download -q --no-binary :all: --no-deps "llama-cpp-python==$LCP_VERSION" -d "$LLAMA_DIR/dl"
		tar -xzf "$LLAMA_DIR/dl/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$LLAMA_DIR"
	fi
	cmake -S "$src/vendor/llama.cpp" -B "$LLAMA_DIR/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
		-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >&2
	cmake --build "$LLAMA_DIR/build" -j"$THREADS" --target llama-bench llama-batched-bench llama-quantize >&2
fi
f32=$LLAMA_DIR/$(basename "${model%.gguf}").F32.gguf
if [ ! -s "$f32" ]; then
	"$lbin/llama-quantize" --allow-requantize "$model" "$f32.tmp" F32 >&2
	mv "$f32.tmp" "$f32"
fi

python3 -c 'import transformers, torch, gguf' 2>/dev/null || { echo "needs: pip install torch transformers gguf" >&2; exit 2; }
python3 - "$model" "$f32" "$ours_bin" "$lbin" "$PP" "$DPP" "$TG" "$BATCH" "$THREADS" <<'PY'
import os, re, subprocess, sys, time
model, f32, ours_bin, lbin = sys.argv[1:5]
PP, DPP, TG, B, THREADS = map(int, sys.argv[5:10])

def run_cpu(cmd, env=None):
    """stdout, stderr, wall seconds and (user + sys) CPU seconds of the child."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    out, err = p.stdout, p.stderr
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, err, wall, cpu

res = {}  # (engine, number) -> (tokens/s wall, tokens per CPU-second)

# ---- ours
env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), OPENBLAS_NUM_THREADS=str(THREADS))
out, _, _, _ = run_cpu([ours_bin, model, str(PP), str(DPP), str(TG), "1", str(B)], env)
for line in out.splitlines():
    name, n, wall, cpu, tps = line.split()
    key = {"prefill": "prompt", "decode_b1": "decode1", f"decode_b{B}": "decodeB"}[name]
    res[("ours", key)] = (float(tps), int(n) / float(cpu))

# ---- llama.cpp
out, _, _, cpu_pp = run_cpu([f"{lbin}/llama-bench", "-m", f32, "-p", str(PP), "-n", "0", "-t", str(THREADS),
                             "-r", "3", "-o", "csv"])
rows = [l for l in out.splitlines() if l.strip()]
hdr = rows[0].replace('"', '').split(",")
val = rows[-1].replace('"', '').split(",")
pp_tps = float(val[hdr.index("avg_ts")])
_, _, _, cpu_pp0 = run_cpu([f"{lbin}/llama-bench", "-m", f32, "-p", "1", "-n", "0", "-t", str(THREADS), "-r", "1",
                            "-o", "csv"])
# llama-bench runs a warmup pass and 3 timed passes of PP tokens
res[("llama.cpp", "prompt")] = (pp_tps, 4 * PP / max(cpu_pp - cpu_pp0, 1e-9))

def batched(npl):
    ctx = npl * (DPP + TG) + 16
    out, err, _, cpu = run_cpu([f"{lbin}/llama-batched-bench", "-m", f32, "-c", str(ctx), "-b", "2048",
                                "-ub", "512", "-npp", str(DPP), "-ntg", str(TG), "-npl", str(npl),
                                "-t", str(THREADS), "-tb", str(THREADS)])
    text = out + err
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 10 and cells[0] == str(DPP) and cells[2] == str(npl):
            # | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
            return float(cells[4]), float(cells[6]), float(cells[7]), cpu
    sys.exit("cannot parse llama-batched-bench output:\n" + text[-3000:])

_, _, _, cpu0 = run_cpu([f"{lbin}/llama-batched-bench", "-m", f32, "-c", "64", "-npp", "1", "-ntg", "1",
                         "-npl", "1", "-t", str(THREADS), "-tb", str(THREADS)])
for npl, key in ((1, "decode1"), (B, "decodeB")):
    t_pp, t_tg, s_tg, cpu = batched(npl)
    # CPU of the decode phase: the run's CPU minus the loading run's, times the TG share of its time
    tg_cpu = max(cpu - cpu0, 1e-9) * t_tg / (t_pp + t_tg)
    res[("llama.cpp", key)] = (s_tg, npl * TG / tg_cpu)

# ---- transformers
code = r'''
import os, sys, time, torch
from transformers import AutoModelForCausalLM
model, PP, DPP, TG, B, TH = sys.argv[1], *map(int, sys.argv[2:7])
torch.set_num_threads(TH)
d, f = os.path.split(os.path.abspath(model))
m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
V = m.config.vocab_size
g = torch.Generator().manual_seed(0)
def clock(): return time.perf_counter(), time.process_time()
with torch.no_grad():
    ids = torch.randint(3, V, (1, PP), generator=g)
    best = None
    for _ in range(2):
        w0, c0 = clock(); m(input_ids=ids, use_cache=False); w1, c1 = clock()
        if best is None or w1 - w0 < best[0]: best = (w1 - w0, c1 - c0)
    print("prompt", PP / best[0], PP / best[1])
    for b, key in ((1, "decode1"), (B, "decodeB")):
        ids = torch.randint(3, V, (b, DPP), generator=g)
        am = torch.ones_like(ids)
        kw = dict(attention_mask=am, do_sample=False, pad_token_id=0, eos_token_id=None)
        w0, c0 = clock(); m.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw); w1, c1 = clock()
        m.generate(ids, max_new_tokens=TG + 1, min_new_tokens=TG + 1, **kw); w2, c2 = clock()
        dw, dc = (w2 - w1) - (w1 - w0), (c2 - c1) - (c1 - c0)
        print(key, b * TG / dw, b * TG / dc)
'''
out, _, _, _ = run_cpu([sys.executable, "-c", code, model, str(PP), str(DPP), str(TG), str(B), str(THREADS)])
for line in out.splitlines():
    k, w, c = line.split()
    res[("transformers", k)] = (float(w), float(c))

load = os.getloadavg()
print(f"model {os.path.basename(model)} as fp32, {THREADS} threads, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
names = {"prompt": f"prompt {PP} tokens", "decode1": f"decode batch 1 ({DPP}+{TG})",
         "decodeB": f"decode batch {B} ({DPP}+{TG} each)"}
print(f"{'':28s} {'ours':>10s} {'llama.cpp':>10s} {'transf.':>10s}   {'/llama.cpp':>10s} {'/transf.':>9s}   CPU-s ratios")
for k in ("prompt", "decode1", "decodeB"):
    o, l, t = res[("ours", k)], res[("llama.cpp", k)], res[("transformers", k)]
    print(f"{names[k]:28s} {o[0]:10.1f} {l[0]:10.1f} {t[0]:10.1f}   {o[0] / l[0]:9.2f}x {o[0] / t[0]:8.2f}x"
          f"   {o[1] / l[1]:.2f}x / {o[1] / t[1]:.2f}x")
print("(tokens/s wall clock; CPU-s ratios compare tokens per CPU-second: ours/llama.cpp / ours/transformers)")
PY
