#!/usr/bin/env bash
# bench/attn_cpu.sh - training attention on the CPU (forward + backward, fp32) at
# SmolLM2-135M shapes: the row-by-row reference ops (ops_attention_forward/backward in
# libcommon/ops_cpu.c) vs the blocked ones (ops_attention_fast_*, libcommon/ops_attn.c),
# and the blocked ones with their tile products through OpenBLAS sgemm instead of the
# built-in AVX-512 micro-kernel (bench/attn_cpu.c compiles ops_attn.c again with
# -DOPS_ATTN_CBLAS). One run; prints mean times over REPS calls and the speedups (notes in
# docs/perf/attention_cpu.md).
#
#   bench/attn_cpu.sh [B=4] [T=512] [Hq=9] [Hkv=3] [D=64] [DOCS=4] [REPS=10]
#
# DOCS equal documents per row (segment ids), causal, no window / softcap. THREADS
# (default 2) sets OMP_NUM_THREADS; OpenBLAS keeps its own default thread count. Wall times
# depend on the machine's load (printed with `uptime`); the CPU seconds (process CPU time of
# the timed call) much less. GFLOP/s count the useful causal-triangle multiply-adds only.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-bench-attn} # own dir: the library here holds only the ops objects
THREADS=${THREADS:-2}
make -s -j2 BUILD="$BUILD" BINDIR="$BUILD/bin" LIB_SRC="libcommon/ops_cpu.c libcommon/ops_attn.c libcommon/error.c" \
	"$BUILD/libcommon.a" >&2
mkdir -p "$BUILD/bench"
gcc -std=c11 -D_GNU_SOURCE -O2 -g -fopenmp -Wall -Wextra -Ilibcommon -o "$BUILD/bench/attn_cpu" bench/attn_cpu.c \
	"$BUILD/libcommon.a" $(make -s print-BLAS_LIBS) -lm -lpthread
echo "load: $(uptime)"
echo "OMP_NUM_THREADS=$THREADS; shape B=${1:-4} T=${2:-512} Hq=${3:-9} Hkv=${4:-3} D=${5:-64} docs/row=${6:-4}"
OMP_NUM_THREADS=$THREADS "$BUILD/bench/attn_cpu" "${1:-4}" "${2:-512}" "${3:-9}" "${4:-3}" "${5:-64}" "${6:-4}" \
	"${7:-10}" | awk '
{ wall[$1, $2] = $3; cpu[$1, $2] = $4; gf[$1, $2] = $5; if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 } }
END {
	printf "%-14s %-9s %10s %10s %9s %14s %14s\n", "impl", "pass", "wall ms", "CPU ms", "GFLOP/s", "speedup wall", "speedup CPU"
	for (i = 0; i < n; i++) for (p = 0; p < 2; p++) {
		pass = p ? "backward" : "forward"; k = order[i]
		printf "%-14s %-9s %10.2f %10.2f %9.1f %13.2fx %13.2fx\n", k, pass, 1000 * wall[k, pass], 1000 * cpu[k, pass],
			gf[k, pass], wall["reference", pass] / wall[k, pass], cpu["reference", pass] / cpu[k, pass]
	}
}'
