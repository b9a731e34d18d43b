/* minhash.c - MinHash signatures bit-compatible with datasketch (legacy scheme), a fast
 * xxh3 variant, datasketch's LSH parameter search, SHA-1 and numpy's MT19937. */
#include "minhash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---------------- SHA-1 (FIPS 180-4) ---------------- */

static inline uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
	uint32_t w[80];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
		       p[4 * i + 3];
	for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
		else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
		else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
		else f = b ^ c ^ d, k = 0xCA62C1D6;
		uint32_t t = rol32(a, 5) + f + e + k + w[i];
		e = d, d = c, c = rol32(b, 30), b = a, a = t;
	}
	h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

/* SHA-NI block function (x86 SHA extensions), same results as sha1_block. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define SHA1_RNDS4(abcd, e, f)                                                                \
	switch (f) {                                                                          \
	case 0: abcd = _mm_sha1rnds4_epu32(abcd, e, 0); break;                                \
	case 1: abcd = _mm_sha1rnds4_epu32(abcd, e, 1); break;                                \
	case 2: abcd = _mm_sha1rnds4_epu32(abcd, e, 2); break;                                \
	default: abcd = _mm_sha1rnds4_epu32(abcd, e, 3); break;                               \
	}
__attribute__((target("sha,sse4.1,ssse3"))) static void sha1_block_ni(uint32_t h[5], const uint8_t *p)
{
	const __m128i mask = _mm_set_epi64x(0x0001020304050607ULL, 0x08090a0b0c0d0e0fULL);
	__m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0x1B);
	__m128i e0 = _mm_set_epi32((int)h[4], 0, 0, 0), e1;
	const __m128i abcd_save = abcd, e0_save = e0;
	__m128i w[4];
	for (int i = 0; i < 4; i++) w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), mask);
	/* rounds 0-3 */
	e0 = _mm_add_epi32(e0, w[0]);
	e1 = abcd;
	abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
	/* rounds 4-11: schedule words still loading */
	e1 = _mm_sha1nexte_epu32(e1, w[1]);
	e0 = abcd;
	abcd = _mm_sha1rnds4_epu32(abcd, e1, 0);
	w[0] = _mm_sha1msg1_epu32(w[0], w[1]);
	e0 = _mm_sha1nexte_epu32(e0, w[2]);
	e1 = abcd;
	abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
	w[1] = _mm_sha1msg1_epu32(w[1], w[2]);
	w[0] = _mm_xor_si128(w[0], w[2]);
	/* groups 3..19: one pattern (updates after a word's last use are harmless) */
	for (int i = 3; i < 20; i++) {
		int m = i & 3;
		if (i & 1) {
			e1 = _mm_sha1nexte_epu32(e1, w[m]);
			e0 = abcd;
			w[(m + 1) & 3] = _mm_sha1msg2_epu32(w[(m + 1) & 3], w[m]);
			SHA1_RNDS4(abcd, e1, i / 5);
		} else {
			e0 = _mm_sha1nexte_epu32(e0, w[m]);
			e1 = abcd;
			w[(m + 1) & 3] = _mm_sha1msg2_epu32(w[(m + 1) & 3], w[m]);
			SHA1_RNDS4(abcd, e0, i / 5);
		}
		w[(m + 3) & 3] = _mm_sha1msg1_epu32(w[(m + 3) & 3], w[m]);
		w[(m + 2) & 3] = _mm_xor_si128(w[(m + 2) & 3], w[m]);
	}
	e0 = _mm_sha1nexte_epu32(e0, e0_save);
	abcd = _mm_add_epi32(abcd, abcd_save);
	_mm_storeu_si128((__m128i *)h, _mm_shuffle_epi32(abcd, 0x1B));
	h[4] = (uint32_t)_mm_extract_epi32(e0, 3);
}
static int have_sha_ni(void)
{
	static int cached = -1; /* atomics: threads may race to fill it (same value) */
	int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	if (v < 0) {
		unsigned a, b, c, d;
		v = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)) /* SHA */ &&
		    __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3");
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	}
	return v;
}
#else
static int have_sha_ni(void) { return 0; }
static void sha1_block_ni(uint32_t h[5], const uint8_t *p) { sha1_block(h, p); }
#endif

static void sha1_state_with(const void *data, size_t len, uint32_t h[5], int portable)
{
	void (*blk)(uint32_t *, const uint8_t *) = !portable && have_sha_ni() ? sha1_block_ni : sha1_block;
	const uint8_t *p = data;
	h[0] = 0x67452301, h[1] = 0xEFCDAB89, h[2] = 0x98BADCFE, h[3] = 0x10325476, h[4] = 0xC3D2E1F0;
	size_t n = len;
	while (n >= 64) blk(h, p), p += 64, n -= 64;
	uint8_t tail[128] = {0};
	memcpy(tail, p, n);
	tail[n] = 0x80;
	size_t tl = n + 1 + 8 <= 64 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;
	for (int i = 0; i < 8; i++) tail[tl - 1 - i] = (uint8_t)(bits >> (8 * i));
	blk(h, tail);
	if (tl == 128) blk(h, tail + 64);
}

static void sha1_state(const void *data, size_t len, uint32_t h[5]) { sha1_state_with(data, len, h, 0); }

static void sha1_out(const uint32_t h[5], uint8_t out[20])
{
	for (int i = 0; i < 5; i++)
		out[4 * i] = (uint8_t)(h[i] >> 24), out[4 * i + 1] = (uint8_t)(h[i] >> 16),
			out[4 * i + 2] = (uint8_t)(h[i] >> 8), out[4 * i + 3] = (uint8_t)h[i];
}

void sha1_digest_portable(const void *data, size_t len, uint8_t out[20])
{
	uint32_t h[5];
	sha1_state_with(data, len, h, 1);
	sha1_out(h, out);
}

void sha1_digest(const void *data, size_t len, uint8_t out[20])
{
	uint32_t h[5];
	sha1_state(data, len, h);
	sha1_out(h, out);
}

/* datasketch sha1_hash32: struct.unpack('<I', sha1(data).digest()[:4]) = bswap(h[0]). */
static inline uint64_t sha1_hash32(const char *s, size_t n)
{
	uint32_t h[5];
	sha1_state(s, n, h);
	return __builtin_bswap32(h[0]);
}

/* ---------------- numpy legacy RandomState (MT19937) ---------------- */

void mt19937_seed(mt19937 *mt, uint32_t seed)
{
	for (int i = 0; i < 624; i++) {
		mt->key[i] = seed;
		seed = 1812433253U * (seed ^ (seed >> 30)) + (uint32_t)i + 1;
	}
	mt->pos = 624;
}

uint32_t mt19937_next32(mt19937 *mt)
{
	if (mt->pos >= 624) {
		uint32_t *k = mt->key;
		for (int i = 0; i < 624; i++) {
			uint32_t y = (k[i] & 0x80000000U) | (k[(i + 1) % 624] & 0x7fffffffU);
			k[i] = k[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1) ? 0x9908b0dfU : 0);
		}
		mt->pos = 0;
	}
	uint32_t y = mt->key[mt->pos++];
	y ^= y >> 11;
	y ^= (y << 7) & 0x9d2c5680U;
	y ^= (y << 15) & 0xefc60000U;
	y ^= y >> 18;
	return y;
}

uint64_t mt19937_randint_u64(mt19937 *mt, uint64_t low, uint64_t high)
{
	uint64_t rng = high - 1 - low;
	if (rng == 0) return low;
	uint64_t mask = rng;
	mask |= mask >> 1, mask |= mask >> 2, mask |= mask >> 4, mask |= mask >> 8, mask |= mask >> 16,
		mask |= mask >> 32;
	if (rng <= 0xffffffffULL) { /* numpy: masked rejection on 32-bit draws */
		uint32_t v;
		while ((v = mt19937_next32(mt) & (uint32_t)mask) > rng) {}
		return low + v;
	}
	uint64_t v;
	do {
		uint64_t hi = mt19937_next32(mt);
		uint64_t lo = mt19937_next32(mt);
		v = ((hi << 32) | lo) & mask;
	} while (v > rng);
	return low + v;
}

/* ---------------- init ---------------- */

#define MERSENNE ((1ULL << 61) - 1)

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

int minhash_init(minhash *m, const minhash_params *p, sft_error *err)
{
	memset(m, 0, sizeof *m);
	if (p->num_perm < 1 || p->num_perm > 65536)
		return sft_error_set(err, SFT_EXIT_USAGE, "num-perm must be in 1..65536, got %d", p->num_perm);
	if (p->ngram < 1) return sft_error_set(err, SFT_EXIT_USAGE, "ngram must be >= 1, got %d", p->ngram);
	m->p = *p;
	m->a = malloc(sizeof(uint64_t) * (size_t)p->num_perm);
	m->b = malloc(sizeof(uint64_t) * (size_t)p->num_perm);
	if (!m->a || !m->b) {
		minhash_free(m);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	if (p->hash == MINHASH_SHA1) {
		mt19937 mt;
		mt19937_seed(&mt, p->seed);
		for (int i = 0; i < p->num_perm; i++) {
			m->a[i] = mt19937_randint_u64(&mt, 1, MERSENNE);
			m->b[i] = mt19937_randint_u64(&mt, 0, MERSENNE);
		}
	} else {
		uint64_t x = 0x5f7d3c1e00000000ULL ^ p->seed;
		for (int i = 0; i < p->num_perm; i++) {
			m->a[i] = splitmix64(&x) | 1;
			m->b[i] = splitmix64(&x);
		}
	}
	return 0;
}

void minhash_free(minhash *m)
{
	if (!m) return;
	free(m->a);
	free(m->b);
	m->a = m->b = NULL;
}

void minhash_scratch_free(minhash_scratch *s)
{
	if (!s) return;
	free(s->h);
	s->h = NULL;
	s->cap = 0;
}

/* ---------------- shingles ---------------- */

static int push_hash(minhash_scratch *s, size_t *n, uint64_t h)
{
	if (*n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 1024;
		uint64_t *nh = realloc(s->h, nc * sizeof *nh);
		if (!nh) return -1;
		s->h = nh, s->cap = nc;
	}
	s->h[(*n)++] = h;
	return 0;
}

static inline uint64_t shingle_hash(const minhash *m, const char *s, size_t n)
{
	if (m->p.hash == MINHASH_SHA1) return sha1_hash32(s, n);
	return (uint32_t)XXH3_64bits(s, n);
}

static inline int is_space_ascii(unsigned char c) { return c == ' '; }

/* Raw (possibly repeated) shingle hashes; returns count or -1. Whitespace in the text is
 * a single ' ' between tokens (textnorm collapse); other whitespace is treated as a
 * token separator too for robustness. */
static long collect(const minhash *m, const char *t, size_t len, minhash_scratch *s)
{
	size_t n = 0;
	int ng = m->p.ngram;
	if (m->p.unit == MINHASH_WORD) {
		/* token start offsets in a ring of the last ng tokens */
		size_t starts[256];
		size_t *st = ng <= 256 ? starts : malloc(sizeof(size_t) * (size_t)ng);
		if (!st) return -1;
		size_t ntok = 0, i = 0, last_end = 0;
		while (i < len) {
			while (i < len && (is_space_ascii((unsigned char)t[i]) || t[i] == '\n' || t[i] == '\t' ||
					   t[i] == '\r'))
				i++;
			if (i >= len) break;
			size_t b = i;
			while (i < len && !(is_space_ascii((unsigned char)t[i]) || t[i] == '\n' || t[i] == '\t' ||
					    t[i] == '\r'))
				i++;
			st[ntok % (size_t)ng] = b;
			ntok++;
			last_end = i;
			if (ntok >= (size_t)ng) {
				size_t first = st[(ntok - (size_t)ng) % (size_t)ng];
				if (push_hash(s, &n, shingle_hash(m, t + first, i - first)) < 0) {
					if (st != starts) free(st);
					return -1;
				}
			}
		}
		if (ntok > 0 && ntok < (size_t)ng) {
			size_t first = st[0];
			if (push_hash(s, &n, shingle_hash(m, t + first, last_end - first)) < 0) n = (size_t)-1;
		}
		if (st != starts) free(st);
		return n == (size_t)-1 ? -1 : (long)n;
	}
	/* char n-grams over code points: window [cp_i, cp_{i+ng}) */
	if (len == 0) return 0;
	size_t ring[256];
	size_t *rg = ng + 1 <= 256 ? ring : malloc(sizeof(size_t) * (size_t)(ng + 1));
	if (!rg) return -1;
	size_t ncp = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && ((unsigned char)t[i] & 0xC0) == 0x80) continue; /* continuation byte */
		/* i is a code point start (or the end) */
		rg[ncp % (size_t)(ng + 1)] = i;
		if (ncp >= (size_t)ng) {
			size_t b = rg[(ncp - (size_t)ng) % (size_t)(ng + 1)];
			if (push_hash(s, &n, shingle_hash(m, t + b, i - b)) < 0) {
				n = (size_t)-1;
				break;
			}
		}
		ncp++;
	}
	if (n != (size_t)-1 && ncp - 1 < (size_t)ng && ncp > 1) /* fewer than ng code points */
		if (push_hash(s, &n, shingle_hash(m, t, len)) < 0) n = (size_t)-1;
	if (rg != ring) free(rg);
	return n == (size_t)-1 ? -1 : (long)n;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

long minhash_shingle_hashes(const minhash *m, const char *text, size_t len, minhash_scratch *s)
{
	long n = collect(m, text, len, s);
	if (n <= 1) return n;
	qsort(s->h, (size_t)n, sizeof(uint64_t), cmp_u64);
	long k = 1;
	for (long i = 1; i < n; i++)
		if (s->h[i] != s->h[k - 1]) s->h[k++] = s->h[i];
	return k;
}

#if defined(__clang__)
#define HOT_O3
#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw")))
#else
#define HOT_O3 __attribute__((optimize("O3")))
#define AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,prefer-vector-width=512")))
#endif

/* The permutation kernel: sig[i] = min over h of perm_i(h). h < 2^32 in both modes, so
 * a*h splits into two 32x32->64 products (vectorizable as pmuludq). */
#define PERM_KERNEL_BODY                                                                              \
	for (int i = 0; i < np; i++) sig[i] = 0xffffffffU;                                            \
	for (size_t j = 0; j < nh; j++) {                                                             \
		uint64_t h = hs[j];                                                                   \
		if (sha) {                                                                            \
			for (int i = 0; i < np; i++) {                                                \
				uint64_t v = (uint64_t)alo[i] * h + (((uint64_t)ahi[i] * h) << 32) + b[i]; \
				uint64_t r = (v & MERSENNE) + (v >> 61);                              \
				r = r >= MERSENNE ? r - MERSENNE : r;                                 \
				uint32_t x = (uint32_t)r;                                             \
				sig[i] = x < sig[i] ? x : sig[i];                                     \
			}                                                                             \
		} else {                                                                              \
			for (int i = 0; i < np; i++) {                                                \
				uint64_t v = (uint64_t)alo[i] * h + (((uint64_t)ahi[i] * h) << 32) + b[i]; \
				uint32_t x = (uint32_t)(v >> 32);                                     \
				sig[i] = x < sig[i] ? x : sig[i];                                     \
			}                                                                             \
		}                                                                                     \
	}

HOT_O3 static void perm_generic(const uint32_t *restrict alo,
							  const uint32_t *restrict ahi,
							  const uint64_t *restrict b, int np,
							  const uint64_t *restrict hs, size_t nh, int sha,
							  uint32_t *restrict sig)
{
	PERM_KERNEL_BODY
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) HOT_O3 static void
perm_avx2(const uint32_t *restrict alo, const uint32_t *restrict ahi, const uint64_t *restrict b, int np,
	  const uint64_t *restrict hs, size_t nh, int sha, uint32_t *restrict sig)
{
	PERM_KERNEL_BODY
}
AVX512_TARGET HOT_O3 static void
perm_avx512(const uint32_t *restrict alo, const uint32_t *restrict ahi, const uint64_t *restrict b, int np,
	    const uint64_t *restrict hs, size_t nh, int sha, uint32_t *restrict sig)
{
	PERM_KERNEL_BODY
}
static int forced_level = -1;
static int cpu_level(void)
{
	static int cached = -1; /* atomics: threads may race to fill it (same value) */
	if (forced_level >= 0) return forced_level;
	int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	if (v < 0) {
		v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
				    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw")
			    ? 2
			    : __builtin_cpu_supports("avx2") ? 1 : 0;
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	}
	return v;
}
#endif

int minhash_force_kernel(int level)
{
#if defined(__x86_64__) && defined(__GNUC__)
	forced_level = -1;
	if (level > cpu_level()) return -1;
	forced_level = level;
	return 0;
#else
	return level <= 0 ? 0 : -1;
#endif
}

long minhash_signature(const minhash *m, const char *text, size_t len, uint32_t *sig, minhash_scratch *s)
{
	int np = m->p.num_perm;
	long n = collect(m, text, len, s);
	if (n < 0) return -1;
	if (n == 0) {
		for (int i = 0; i < np; i++) sig[i] = 0xffffffffU;
		return 0;
	}
	/* split a into 32-bit halves on the stack (np <= 65536; chunk to keep it small) */
	uint32_t alo[512], ahi[512];
	for (int base = 0; base < np; base += 512) {
		int cnt = np - base < 512 ? np - base : 512;
		for (int i = 0; i < cnt; i++) alo[i] = (uint32_t)m->a[base + i], ahi[i] = (uint32_t)(m->a[base + i] >> 32);
#if defined(__x86_64__) && defined(__GNUC__)
		if (cpu_level() == 2)
			perm_avx512(alo, ahi, m->b + base, cnt, s->h, (size_t)n, m->p.hash == MINHASH_SHA1, sig + base);
		else if (cpu_level() == 1)
			perm_avx2(alo, ahi, m->b + base, cnt, s->h, (size_t)n, m->p.hash == MINHASH_SHA1, sig + base);
		else
#endif
			perm_generic(alo, ahi, m->b + base, cnt, s->h, (size_t)n, m->p.hash == MINHASH_SHA1,
				     sig + base);
	}
	return n;
}

double minhash_jaccard_sets(const uint64_t *x, size_t nx, const uint64_t *y, size_t ny)
{
	if (nx == 0 && ny == 0) return 1.0;
	size_t i = 0, j = 0, inter = 0;
	while (i < nx && j < ny) {
		if (x[i] == y[j]) inter++, i++, j++;
		else if (x[i] < y[j]) i++;
		else j++;
	}
	return (double)inter / (double)(nx + ny - inter);
}

/* ---------------- LSH parameters ---------------- */

/* Adaptive Simpson: the integrands are smooth polynomials in s, so this agrees with
 * scipy's quad to ~1e-12, far below the gaps that decide the argmin. */
static double fp_f(double s, double b, double r) { return 1 - pow(1 - pow(s, r), b); }
static double fn_f(double s, double b, double r) { return pow(1 - pow(s, r), b); }

static double simpson(int fn, double lo, double hi, double b, double r)
{
	const int n = 512; /* even */
	double h = (hi - lo) / n, sum = 0;
	for (int i = 0; i <= n; i++) {
		double s = lo + h * i;
		double f = fn ? fn_f(s, b, r) : fp_f(s, b, r);
		sum += f * (i == 0 || i == n ? 1 : (i & 1) ? 4 : 2);
	}
	return sum * h / 3;
}

void minhash_optimal_param(double threshold, int num_perm, double fp_w, double fn_w, int *bands,
			   int *rows)
{
	double best = INFINITY;
	int ob = 0, orr = 0;
	for (int b = 1; b <= num_perm; b++) {
		int max_r = num_perm / b;
		for (int r = 1; r <= max_r; r++) {
			double fp = simpson(0, 0.0, threshold, b, r);
			double fnp = simpson(1, threshold, 1.0, b, r);
			double e = fp * fp_w + fnp * fn_w;
			if (e < best) best = e, ob = b, orr = r;
		}
	}
	*bands = ob;
	*rows = orr;
}

/* ---------------- provider ---------------- */

static long provider_compute(void *self, const char *text, size_t len, uint32_t *sig, minhash_scratch *s)
{
	return minhash_signature(self, text, len, sig, s);
}

sig_provider minhash_provider(minhash *m)
{
	sig_provider p = {"minhash", m->p.num_perm, m, provider_compute};
	return p;
}
