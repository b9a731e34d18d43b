#!/usr/bin/env bash
# bench/pack.sh - pack throughput end to end from a file, and shard reader throughput
# through mmap. One run; prints the numbers (recorded in docs/perf/pack.md).
#
#   bench/pack.sh [TOKENS]      (default 1000000000)
#
# Input: a synthetic token stream (stream form, u16 ids, vocab 49152) of TOKENS tokens,
# documents with log-normal lengths (median ~350 tokens, sigma 0.9, clipped 8..8192, the
# distribution of tests/fixtures/pack/lengths.txt), loss mask 0 on the first ~40% of each
# document (the prompt) and 1 after. It is written once to $BENCH_TMP (default /tmp).
# Peer: TRL's _pack_bfd speed, measured by scripts/gen-pack-reference.py --time when
# trl + pyarrow are installed (else skipped).
# Env: BUILD/BINDIR (build dir), BENCH_TMP (where the input and the output go),
# BENCH_GENERIC=1 also times the decoded generic path (SFT_PACK_GENERIC=1, the code path of
# JSONL inputs and of pack before the raw fast path) and checks it writes the same bytes.
# Throughput is printed per wall second and per CPU second (user + sys): on a shared
# machine the wall number depends on the load (printed with `uptime`), the CPU one less.
set -euo pipefail
cd "$(dirname "$0")/.."
TOKENS=${1:-1000000000}
BUILD=${BUILD:-build-bench}
BINDIR=${BINDIR:-$BUILD/bin}
TMPD=${BENCH_TMP:-/tmp}/sftkit-bench-pack
mkdir -p "$TMPD"
make -s -j2 BUILD="$BUILD" BINDIR="$BINDIR" TOOLS=pack \
	LIB_SRC="libcommon/error.c libcommon/log.c libcommon/cli.c libcommon/config.c libcommon/jsonl.c libcommon/json_scan.c libcommon/atomic.c libcommon/fsutil.c libcommon/progress.c libcommon/shard.c libcommon/tokenizer.c libcommon/tokenizer_gguf.c libcommon/gguf.c" \
	"$BINDIR/pack" "$BUILD/libcommon.a"

cat >"$TMPD/gen.c" <<'C'
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "shard.h"
static unsigned long long s = 88172645463325252ull;
static unsigned long long xs(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s; }
static double unif(void) { return ((xs() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
int main(int argc, char **argv)
{
	unsigned long long total = strtoull(argv[1], NULL, 10), done = 0;
	shard_header h = {.vocab_size = 49152};
	for (int i = 0; i < 16; i++) h.fingerprint[i] = (unsigned char)(0xa0 + i);
	sft_error e = {0};
	static char obuf[1 << 22];
	setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
	shard_writer *w = shard_writer_open_stream(stdout, &h, &e);
	static uint32_t tok[8192];
	static uint8_t mask[8192];
	while (done < total) {
		double g = sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif());
		long n = (long)exp(5.85 + 0.9 * g);
		if (n < 8) n = 8;
		if (n > 8192) n = 8192;
		if ((unsigned long long)n > total - done) n = (long)(total - done);
		for (long i = 0; i < n; i++) {
			tok[i] = (uint32_t)(xs() % 49152);
			mask[i] = i >= n * 2 / 5;
		}
		shard_record r = {.tokens = tok, .mask = mask, .n = (size_t)n};
		if (shard_write(w, &r, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
		done += (unsigned long long)n;
	}
	return shard_writer_close(w, &e) < 0;
}
C
cat >"$TMPD/readbench.c" <<'C'
/* Reads every row of every shard of DIR through mmap, as a data loader does: copy the
 * row's tokens and mask bits into a batch buffer. Prints the map (+ MAP_POPULATE) time,
 * the row-copy throughput, and shard_file_verify's throughput. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glob.h>
#include "progress.h"
#include "shard.h"
int main(int argc, char **argv)
{
	glob_t g;
	char pat[4096];
	(void)argc;
	snprintf(pat, sizeof pat, "%s/*.shard", argv[1]);
	if (glob(pat, 0, NULL, &g)) return 1;
	sft_error e = {0};
	unsigned long long bytes = 0, toks = 0, sum = 0;
	static unsigned char batch[1 << 22];
	shard_file **fs = malloc(g.gl_pathc * sizeof *fs);
	double tm = clock_now();
	for (size_t i = 0; i < g.gl_pathc; i++)
		if (!(fs[i] = shard_file_map(g.gl_pathv[i], &e))) { fprintf(stderr, "%s\n", e.msg); return 1; }
	double t0 = clock_now();
	for (size_t i = 0; i < g.gl_pathc; i++) {
		size_t w = shard_file_header(fs[i])->token_width;
		for (size_t k = 0; k < shard_file_rows(fs[i]); k++) {
			shard_view v;
			if (shard_file_view(fs[i], k, &v, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
			size_t tb = v.n * w, mb = (v.n + 7) / 8;
			memcpy(batch, v.tokens, tb);
			memcpy(batch + tb, v.mask_bits, mb);
			sum += batch[0] + batch[tb - 1];
			toks += v.n;
			bytes += tb + mb;
		}
	}
	double dt = clock_now() - t0, dm = t0 - tm;
	/* one row of a freshly mapped file without prefaulting (pack --inspect --row) */
	double tl = clock_now();
	shard_file *lz = shard_file_map_ex(g.gl_pathv[0], 0, &e);
	shard_view lv;
	if (!lz || shard_file_view(lz, shard_file_rows(lz) / 2, &lv, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
	sum += ((const unsigned char *)lv.tokens)[0];
	double dl = clock_now() - tl;
	shard_file_unmap(lz);
	printf("mmap read (row copy into a batch buffer): %llu tokens, %.2f GB in %.3f s = %.2f GB/s (%.0f M tokens/s)\n",
	       toks, bytes / 1e9, dt, bytes / 1e9 / dt, toks / 1e6 / dt);
	printf("  map + populate: %.3f s once; including it: %.2f GB/s [sum %llu]\n", dm, bytes / 1e9 / (dt + dm), sum & 0xff);
	printf("  one row lookup (map without populate + view): %.3f ms\n", dl * 1e3);
	double t1 = clock_now();
	for (size_t i = 0; i < g.gl_pathc; i++)
		if (shard_file_verify(fs[i], &e) < 0) { fprintf(stderr, "%s\n", e.msg); return 1; }
	double dv = clock_now() - t1;
	printf("verify (xxh3-128 + decode every row): %.3f s = %.0f M tokens/s\n", dv, toks / 1e6 / dv);
	for (size_t i = 0; i < g.gl_pathc; i++)
		shard_file_unmap(fs[i]);
	return 0;
}
C
CFL="-std=c11 -D_GNU_SOURCE -O2 -Ilibcommon"
LIBS="$BUILD/libcommon.a -ljansson -lyaml -lxxhash -lm -fopenmp"
cc $CFL -o "$TMPD/gen" "$TMPD/gen.c" $LIBS
cc $CFL -o "$TMPD/readbench" "$TMPD/readbench.c" $LIBS

IN="$TMPD/in-$TOKENS.tok"
if [ ! -s "$IN" ]; then
	echo "generating $TOKENS tokens into $IN ..." >&2
	"$TMPD/gen" "$TOKENS" >"$IN.part" && mv "$IN.part" "$IN"
fi
ls -l "$IN" >&2
OUT="$TMPD/out"
rm -rf "$OUT"
sync
# run NAME [VAR=VALUE...]: times one pack run of $IN into $OUT; prints wall and CPU throughput
run() {
	local name=$1
	shift
	local tf="$TMPD/time.txt"
	env "$@" /usr/bin/time -f "%e %U %S %M" -o "$tf" "$BINDIR/pack" -q --seq-len 2048 --out "$OUT" "$IN"
	python3 - "$tf" "$OUT/manifest.json" "$name" "$(stat -c %s "$(ls "$OUT"/*.shard | head -1)")" <<'PY'
import json, sys
wall, user, sys_, rss = (float(x) for x in open(sys.argv[1]).read().split()[-4:])
m = json.load(open(sys.argv[2]))
t = m["tokens_in"]
print(f"{sys.argv[3]}: {wall:.2f} s wall, {user:.2f} s user + {sys_:.2f} s sys; "
      f"{t / wall / 1e6:.0f} M tokens/s wall, {t / (user + sys_) / 1e6:.0f} M tokens/CPU-s; "
      f"max RSS {rss / 1024:.0f} MB = {rss * 1024 / float(sys.argv[4]):.2f}x one shard file")
print(f"  rows {m['rows']}, tokens out {m['tokens']}, files {len(m['files'])}, packing efficiency {100*m['packing_efficiency']:.3f}%")
PY
}
echo "== pack --strategy bfd --seq-len 2048 (default --shard-tokens 67108864), file in page cache -> $OUT"
echo "load: $(uptime)"
cat "$IN" >/dev/null # warm the page cache so the number is pack's, not the disk's
run "pack (raw fast path, mmap input)"
if [ "${BENCH_GENERIC:-0}" = 1 ]; then
	mv "$OUT" "$OUT.fast"
	run "pack (generic decoded path, SFT_PACK_GENERIC=1)" SFT_PACK_GENERIC=1
	for f in "$OUT"/*.shard; do cmp "$f" "$OUT.fast/$(basename "$f")"; done && echo "  same bytes as the fast path"
	rm -rf "$OUT.fast"
fi
echo "== reader: mmap every row"
"$TMPD/readbench" "$OUT"
rm -rf "$OUT"
if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR==2{print $4}')" -gt $((TOKENS / 256)) ]; then
	echo "== the same pack with --out on tmpfs (/dev/shm): no disk, fsync free: the CPU-bound number"
	rm -rf /dev/shm/sftkit-bench-pack-out
	(OUT=/dev/shm/sftkit-bench-pack-out && run "pack to tmpfs")
	rm -rf /dev/shm/sftkit-bench-pack-out
fi
if python3 -c "import trl, pyarrow" 2>/dev/null; then
	echo "== peer: TRL _pack_bfd (pyarrow), 200k documents"
	python3 scripts/gen-pack-reference.py --time-only 2>&1 | tail -1 || true
fi
rm -rf "$OUT"
echo "(input kept at $IN; remove it when done)"
