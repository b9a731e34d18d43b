#!/usr/bin/env bash
# ds-dedup vs datasketch (MinHash + MinHashLSH), same parameters; one run, prints ratios.
#
#   bench/ds_dedup.sh [SIZE_MB=520] [SUBSET_MB=20]
#   EXACT_ONLY=1 bench/ds_dedup.sh    # only the ds-dedup --exact run on the full corpus
#
# Corpus: records of 8-40 random lines of the GNU Collaborative International Dictionary
# of English (Debian dict-gcide, ~40 MB of text) with 3% of words swapped, plus planted
# duplicates (4% exact with case changes, 4% near with 5% of words swapped), built in
# /tmp. datasketch is far too slow for the whole file, so it runs on the first SUBSET_MB
# and both tools are compared in MB/s on that subset as well as on the full file for
# ds-dedup. Peak RSS from /usr/bin/time -v. Needs: dict-gcide, time (apt), datasketch
# (pip); the script installs the Debian packages when missing. Wall times depend on the
# machine's load (printed); the CPU-seconds columns (user + system) do much less so.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-520}
SUB_MB=${2:-20}
BIN=${BINDIR:-bin}/ds-dedup
W=${BENCH_TMP:-/tmp/ds_dedup_bench}
mkdir -p "$W"
for p in dict-gcide time; do
	dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$p"; }
done
python3 -c 'import datasketch' 2>/dev/null || pip install -q datasketch
if [ ! -s "$W/corpus.jsonl" ] || [ "$(stat -c %s "$W/corpus.jsonl")" -lt $((SIZE_MB * 1000000)) ]; then
	echo "building ${SIZE_MB} MB corpus in $W ..." >&2
	zcat /usr/share/dictd/gcide.dict.dz | python3 -c '
import io, json, random, sys
sys.stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
size = int(sys.argv[1]) * 1000000
rng = random.Random(7)
lines = [l.strip() for l in sys.stdin if len(l.strip()) > 20]
vocab = sorted({w for l in lines[:200000] for w in l.split()})
out = open(sys.argv[2], "w")
done, n, prev = 0, 0, []
while done < size:
    r = rng.random()
    if prev and r < 0.04:
        t = rng.choice(prev).upper() if rng.random() < 0.5 else rng.choice(prev)
    elif prev and r < 0.08:
        ws = rng.choice(prev).split()
        t = " ".join(rng.choice(vocab) if rng.random() < 0.05 else w for w in ws)
    else:
        i = rng.randrange(len(lines) - 40)
        ws = " ".join(rng.sample(lines, rng.randint(8, 40))).split()
        t = " ".join(rng.choice(vocab) if rng.random() < 0.03 else w for w in ws)
    if len(prev) < 5000: prev.append(t)
    else: prev[rng.randrange(5000)] = t
    n += 1
    s = json.dumps({"id": n, "text": t}) + "\n"
    out.write(s)
    done += len(s)
' "$SIZE_MB" "$W/corpus.jsonl"
fi
[ -x "$BIN" ] || { echo "build ds-dedup first (make)" >&2; exit 1; }
head -c $((SUB_MB * 1000000)) "$W/corpus.jsonl" | sed '$d' > "$W/subset.jsonl"
full=$(stat -c %s "$W/corpus.jsonl"); sub=$(stat -c %s "$W/subset.jsonl")

cat > "$W/ds.py" <<'PY'
import json, sys, time
from datasketch import MinHash, MinHashLSH
t0 = time.time()
lsh = MinHashLSH(threshold=0.8, num_perm=128)
kept = 0
for i, line in enumerate(open(sys.argv[1])):
    toks = " ".join(json.loads(line)["text"].casefold().split()).split()
    sh = [" ".join(toks[k:k + 5]) for k in range(max(1, len(toks) - 4))]
    m = MinHash(num_perm=128, seed=1, scheme="legacy")
    m.update_batch([s.encode() for s in sh])
    if not lsh.query(m):
        kept += 1
    lsh.insert(i, m)
print("datasketch kept", kept, "in %.1fs" % (time.time() - t0), file=sys.stderr)
PY

run() { # label cmd... ; prints "wall_s cpu_s rss_kb"
	local label=$1; shift
	# records go to /dev/null: this measures dedup, not the file system (writing the
	# 500 MB of kept records into /tmp costs about 1 s of system time more here)
	/usr/bin/time -v "$@" 2>"$W/$label.time" >/dev/null
	local s rss cpu
	s=$(grep 'Elapsed (wall clock)' "$W/$label.time" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
	cpu=$(awk -F': ' '/User time|System time/ { t += $2 } END { print t }' "$W/$label.time")
	rss=$(grep 'Maximum resident' "$W/$label.time" | awk '{print $NF}')
	echo "$s $cpu $rss"
}
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }

if [ "${EXACT_ONLY:-0}" = 1 ]; then
	read -r ex_s ex_c ex_rss < <(run exact_full "$BIN" --exact -j 2 "$W/corpus.jsonl")
	echo "corpus: $(mbps "$full" 1) MB, $(wc -l < "$W/corpus.jsonl") records; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
	printf "%-32s %6.2fs %8s MB/s %6.2f CPU-s %8s MB/CPU-s  %s KB\n" "ds-dedup --exact (full)" "$ex_s" \
		"$(mbps "$full" "$ex_s")" "$ex_c" "$(mbps "$full" "$ex_c")" "$ex_rss"
	grep -h 'ds-dedup: read' "$W/exact_full.time" || true
	exit 0
fi
read -r ds_s ds_c ds_rss < <(run datasketch python3 "$W/ds.py" "$W/subset.jsonl")
read -r ms_s ms_c ms_rss < <(run mh_sub "$BIN" --minhash -j 2 "$W/subset.jsonl")
read -r mf_s mf_c mf_rss < <(run mh_full "$BIN" --minhash -j 2 "$W/corpus.jsonl")
read -r mx_s mx_c mx_rss < <(run mhx_full "$BIN" --minhash --hash xxh3 -j 2 "$W/corpus.jsonl")
read -r ex_s ex_c ex_rss < <(run exact_full "$BIN" --exact -j 2 "$W/corpus.jsonl")
echo "corpus: $(mbps "$full" 1) MB, $(wc -l < "$W/corpus.jsonl") records; subset $(mbps "$sub" 1) MB; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "                                 wall      MB/s   CPU-s  MB/CPU-s  peak RSS"
line() { printf "%-32s %6.2fs %8s %6.2f %8s  %s KB\n" "$1" "$2" "$(mbps "$4" "$2")" "$3" "$(mbps "$4" "$3")" "$5"; }
line "datasketch (subset)" "$ds_s" "$ds_c" "$sub" "$ds_rss"
line "ds-dedup --minhash (subset)" "$ms_s" "$ms_c" "$sub" "$ms_rss"
line "ds-dedup --minhash (full)" "$mf_s" "$mf_c" "$full" "$mf_rss"
line "ds-dedup --minhash xxh3 (full)" "$mx_s" "$mx_c" "$full" "$mx_rss"
line "ds-dedup --exact (full)" "$ex_s" "$ex_c" "$full" "$ex_rss"
awk -v a="$sub" -v ds="$ds_s" -v dc="$ds_c" -v mf="$mf_s" -v f="$full" -v ms="$ms_s" -v mc="$ms_c" -v dr="$ds_rss" -v mr="$mf_rss" -v sr="$ms_rss" 'BEGIN {
	printf "throughput ratio, wall (ds-dedup full file vs datasketch subset): %.1fx\n", (f / mf) / (a / ds)
	printf "throughput ratio, wall (same subset): %.1fx\n", ds / ms
	printf "throughput ratio, CPU time (same subset): %.1fx\n", dc / mc
	printf "peak RSS ratio (same subset): %.2f\n", sr / dr
	printf "peak RSS ratio (ds-dedup full file / datasketch subset): %.2f\n", mr / dr }'
grep -h 'ds-dedup: read' "$W/mh_full.time" "$W/exact_full.time" || true
