#!/usr/bin/env bash
# Benchmark: Parquet -> JSONL, sftkit's reader vs pyarrow + json (one run each).
#
#   bench/ds_fetch.sh [SIZE_MB]      (default 220: the Parquet file size to generate)
#
# 1. writes /tmp/sftkit-bench/ds_fetch.parquet (>= 200 MB, snappy, several row groups,
#    text records shaped like the seed datasets: text-to-SQL fields + chat messages),
#    generated once and reused;
# 2. builds bench/parquet2jsonl.c (against build/libcommon.a when it holds parquet.o, else
#    straight from libcommon/parquet.c + jsonl.c + error.c);
# 3. times parquet2jsonl FILE > /dev/null, bin/ds-fetch FILE > /dev/null when that exists,
#    and pyarrow: ParquetFile.iter_batches -> to_pylist -> json.dumps per row -> write;
# 4. prints MB/s (input Parquet MB per second) and the ratio ours / pyarrow.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-220}
DIR=/tmp/sftkit-bench
PQ=$DIR/ds_fetch.parquet
mkdir -p "$DIR"

if [ ! -s "$PQ" ] || [ "$(stat -c %s "$PQ")" -lt $((SIZE_MB * 1000000)) ]; then
	echo "generating $PQ (~${SIZE_MB} MB)..." >&2
	python3 - "$PQ" "$SIZE_MB" <<'EOF'
import os, sys
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

path, size_mb = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(42)
# a vocabulary of ~8000 word forms: English-like, French/German accents, some CJK and emoji
letters = list("abcdefghijklmnopqrstuvwxyz") * 4 + list("éèàçüöäß")
words = ["".join(rng.choice(letters, size=int(rng.integers(2, 11)))) for _ in range(7600)]
words += ["数据", "查询", "表格", "模型", "🎉", "🙂", "naïve", "Größe", "SELECT", "FROM", "WHERE",
          "GROUP", "BY", "JOIN", "ON", "COUNT(*)", "SUM(amount)", "\"quoted\"", "tab\there", "line\nbreak"]
words = np.array(words, dtype=object)

def text(n_words):
    return " ".join(words[rng.integers(0, len(words), size=n_words)])

domains = ["forestry", "finance", "retail", "healthcare", "marine biology", "defense", "social media"]
writer = None
written = 0
batch = 0
while True:
    n = 20000
    sql_prompt = [text(int(k)) + "?" for k in rng.integers(8, 40, size=n)]
    sql_context = ["CREATE TABLE " + text(int(k)) + ";" for k in rng.integers(10, 60, size=n)]
    sql = ["SELECT " + text(int(k)) + ";" for k in rng.integers(6, 30, size=n)]
    msgs = [[{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": sql_prompt[i]},
             {"role": "assistant", "content": text(int(rng.integers(20, 120)))}] for i in range(n)]
    t = pa.table({
        "id": pa.array(np.arange(batch * n, (batch + 1) * n), pa.int64()),
        "domain": pa.array([domains[i % len(domains)] for i in range(n)]),
        "sql_prompt": sql_prompt, "sql_context": sql_context, "sql": sql,
        "messages": pa.array(msgs, pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    })
    if writer is None:
        writer = pq.ParquetWriter(path, t.schema, compression="snappy")
    writer.write_table(t, row_group_size=40000)
    batch += 1
    writer_size = os.path.getsize(path)
    if writer_size >= size_mb * 1000000 * 0.97:
        break
writer.close()
md = pq.ParquetFile(path).metadata
print("wrote %s: %.1f MB, %d rows, %d row groups" % (path, os.path.getsize(path) / 1e6, md.num_rows,
      md.num_row_groups), file=sys.stderr)
EOF
fi

BIN=$DIR/parquet2jsonl
if [ -f build/libcommon.a ] && ar t build/libcommon.a | grep -qx parquet.o; then
	gcc -std=c11 -D_GNU_SOURCE -O2 -Ilibcommon -o "$BIN" bench/parquet2jsonl.c build/libcommon.a \
		-ljansson -lsnappy -lzstd -lz -lm
	built="build/libcommon.a"
else
	gcc -std=c11 -D_GNU_SOURCE -O2 -Ilibcommon -o "$BIN" bench/parquet2jsonl.c libcommon/parquet.c \
		libcommon/jsonl.c libcommon/error.c -ljansson -lsnappy -lzstd -lz -lm
	built="libcommon sources"
fi

MB=$(python3 -c "import os; print('%.1f' % (os.path.getsize('$PQ') / 1e6))")
now() { date +%s.%N; }
rate() { python3 -c "print('%.1f' % ($MB / ($2 - $1)))"; }

t0=$(now); "$BIN" "$PQ" > /dev/null; t1=$(now)
ours=$(rate "$t0" "$t1")
echo "parquet2jsonl ($built, text path): $(python3 -c "print('%.2f' % ($t1 - $t0))") s, $ours MB/s"
t0=$(now); "$BIN" -j "$PQ" > /dev/null; t1=$(now)
ours_j=$(rate "$t0" "$t1")
echo "parquet2jsonl -j (json_t rows + jsonl_write): $(python3 -c "print('%.2f' % ($t1 - $t0))") s, $ours_j MB/s"
if [ -x bin/ds-fetch ]; then
	t0=$(now)
	if bin/ds-fetch "$PQ" > /dev/null; then
		t1=$(now)
		echo "bin/ds-fetch: $(python3 -c "print('%.2f' % ($t1 - $t0))") s, $(rate "$t0" "$t1") MB/s"
	else
		echo "bin/ds-fetch failed (exit $?), not timed"
	fi
fi

t0=$(now)
python3 - "$PQ" <<'EOF'
import json, sys
import pyarrow.parquet as pq
out = open("/dev/null", "w", encoding="utf-8")
f = pq.ParquetFile(sys.argv[1])
for b in f.iter_batches():
    for row in b.to_pylist():
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
out.close()
EOF
t1=$(now)
py=$(rate "$t0" "$t1")
echo "pyarrow iter_batches + to_pylist + json.dumps: $(python3 -c "print('%.2f' % ($t1 - $t0))") s, $py MB/s"
echo "input $MB MB; ratio ours/pyarrow: $(python3 -c "print('%.2fx' % ($ours / $py))") (text path), $(python3 -c "print('%.2fx' % ($ours_j / $py))") (json_t path)"
