#!/usr/bin/env bash
# tok-encode vs Hugging Face `tokenizers` (PyPI) on raw-text records.
#   bench/tok_encode.sh [MODEL] [COPIES]
# MODEL: a tokenizer fixture name under tests/fixtures/tokenizers (default smollm2) or a
# model directory. The input is the parity corpus (tests/fixtures/tokenizers/corpus.jsonl,
# 1.2 MB: prose in 10+ languages, code, SQL, numbers, whitespace runs, emoji) repeated
# COPIES times (default 32, 40 MB) as {"text": ...} records.
# Single thread: tok-encode -j 1 vs a Python loop of Tokenizer.encode (RAYON_NUM_THREADS=1).
# Batch: tok-encode -j $(nproc) vs Tokenizer.encode_batch on all cores.
# HF is timed on tokenization only (the JSONL is parsed before the clock starts);
# tok-encode is timed end to end (parse, tokenize, write the shard stream). One run each.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-smollm2}
copies=${2:-32}
bin=${BINDIR:-bin}/tok-encode
[ -x "$bin" ] || { echo "build tok-encode first (make, or BINDIR=...)" >&2; exit 2; }
python3 -c 'import tokenizers' 2>/dev/null || { echo "needs: pip install tokenizers" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -d "$model" ]; then
	dir=$model
else
	dir=$tmp/model
	mkdir -p "$dir"
	fix=tests/fixtures/tokenizers/$model
	gunzip -c "$fix/tokenizer.json.gz" >"$dir/tokenizer.json"
	[ -f "$fix/tokenizer_config.json" ] && cp "$fix/tokenizer_config.json" "$dir/"
fi
python3 - "$copies" "$tmp/in.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open("tests/fixtures/tokenizers/corpus.jsonl", encoding="utf-8")]
texts = [r["text"] if "text" in r else bytes.fromhex(r["hex"]).decode("utf-8", "replace") for r in recs]
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for _ in range(int(sys.argv[1])):
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
PY
mb=$(python3 -c "import os,sys; print('%.1f' % (os.path.getsize(sys.argv[1]) / 1e6))" "$tmp/in.jsonl")
cores=$(nproc)
now() { date +%s.%N; }
t0=$(now); "$bin" -q -j 1 --model "$dir" "$tmp/in.jsonl" >/dev/null; t1=$(now)
ours1=$(echo "$t1 - $t0" | bc -l)
t0=$(now); "$bin" -q -j "$cores" --model "$dir" "$tmp/in.jsonl" >/dev/null; t1=$(now)
oursN=$(echo "$t1 - $t0" | bc -l)
read -r hf1 hfN < <(python3 - "$dir/tokenizer.json" "$tmp/in.jsonl" <<'PY'
import json, os, sys, time
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
texts = [json.loads(l)["text"] for l in open(sys.argv[2], encoding="utf-8")]
t0 = time.perf_counter()
for t in texts:
    tok.encode(t)
t1 = time.perf_counter()
tok.encode_batch(texts)
t2 = time.perf_counter()
print("%.3f %.3f" % (t1 - t0, t2 - t1))
PY
)
printf 'input: %s MB (%s copies of the corpus), model %s, %s cores\n' "$mb" "$copies" "$model" "$cores"
printf 'single thread: tok-encode -j 1 %.2fs, HF encode loop %.2fs: %.1fx\n' "$ours1" "$hf1" "$(echo "$hf1 / $ours1" | bc -l)"
printf 'all cores:     tok-encode -j %s %.2fs, HF encode_batch %.2fs: %.1fx\n' "$cores" "$oursN" "$hfN" "$(echo "$hfN / $oursN" | bc -l)"
