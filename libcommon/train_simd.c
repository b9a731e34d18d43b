/* train_simd.c - see train_simd.h. */
#include "train_simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpufeat.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include "simd_exp.h"
#define TSIMD_AVX512 1
#define T512 __attribute__((target("avx512f,fma")))
#endif

/* Loops go in chunks of CHUNK elements (a multiple of 16, so a chunk owns whole mask
 * words), statically split over the threads; one chunk is one thread's, whatever the count. */
enum { CHUNK = 1 << 14 };

/* ---- dropout bits ---------------------------------------------------------------------------
 * hash(key, i): two rounds of a 32-bit integer hash (Wellons' "lowbias32"-style
 * xorshift-multiply, constants 0x21f0aaad / 0x735a2d97) over the low 32 bits of i, keyed by
 * the two halves of key (the high bits of i, zero below 2^32 elements, are folded into the
 * first half). 4 multiplies per element, 16 lanes at a time. */

#define H_M1 0x21f0aaadu
#define H_M2 0x735a2d97u

static inline uint32_t hround(uint32_t x)
{
	x ^= x >> 16;
	x *= H_M1;
	x ^= x >> 15;
	x *= H_M2;
	x ^= x >> 15;
	return x;
}

static inline uint32_t key0(uint64_t key, uint64_t i)
{
	return (uint32_t)key ^ ((uint32_t)(i >> 32) * 0x9e3779b9u);
}

uint32_t tsimd_drop_hash(uint64_t key, uint64_t i)
{
	uint32_t x = hround((uint32_t)i ^ key0(key, i));
	return hround(x + (uint32_t)(key >> 32));
}

uint32_t tsimd_drop_threshold(double p)
{
	if (!(p > 0)) return 0;
	double t = p * 4294967296.0 + 0.5;
	return t >= 4294967295.0 ? 0xffffffffu : (uint32_t)t;
}

static void bits_generic(uint16_t *bits, size_t i0, size_t i1, uint64_t key, uint32_t thr)
{
	for (size_t w = i0 / 16; w * 16 < i1; w++) {
		uint16_t v = 0;
		size_t e = w * 16 + 16 <= i1 ? 16 : i1 - w * 16;
		for (size_t j = 0; j < e; j++) v |= (uint16_t)((tsimd_drop_hash(key, w * 16 + j) >= thr) << j);
		bits[w] = v;
	}
}

#ifdef TSIMD_AVX512
T512 static inline __m512i hround512(__m512i x)
{
	x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
	x = _mm512_mullo_epi32(x, _mm512_set1_epi32((int)H_M1));
	x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
	x = _mm512_mullo_epi32(x, _mm512_set1_epi32((int)H_M2));
	return _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
}

T512 static void bits_avx512(uint16_t *bits, size_t i0, size_t i1, uint64_t key, uint32_t thr)
{
	const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	const __m512i k1 = _mm512_set1_epi32((int)(uint32_t)(key >> 32)), vt = _mm512_set1_epi32((int)thr);
	size_t w = i0 / 16, we = i1 / 16;
	for (; w < we; w++) {
		size_t i = w * 16; /* a 16-aligned group never straddles a multiple of 2^32 */
		__m512i x = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)i), iota);
		x = hround512(_mm512_xor_si512(x, _mm512_set1_epi32((int)key0(key, i))));
		x = hround512(_mm512_add_epi32(x, k1));
		bits[w] = (uint16_t)_mm512_cmpge_epu32_mask(x, vt);
	}
	if (we * 16 < i1) bits_generic(bits, we * 16, i1, key, thr);
}
#endif

void tsimd_drop_bits(uint16_t *bits, size_t n, uint64_t key, uint32_t thr)
{
	size_t nc = (n + CHUNK - 1) / CHUNK;
	int fast = sft_cpu_avx512();
#pragma omp parallel for schedule(static) if (nc > 1)
	for (size_t c = 0; c < nc; c++) {
		size_t i0 = c * CHUNK, i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
#ifdef TSIMD_AVX512
		if (fast) {
			bits_avx512(bits, i0, i1, key, thr);
			continue;
		}
#endif
		(void)fast;
		bits_generic(bits, i0, i1, key, thr);
	}
}

/* ---- masked products --------------------------------------------------------------------- */

/* op: 0 dst = x*m(bits), 1 dst += x*m(bits), 2 dst = x*mask, 3 dst += x*mask */
static void ew_generic(int op, float *dst, const float *x, const uint16_t *bits, const float *mask, float a,
		       size_t i0, size_t i1)
{
	switch (op) {
	case 0:
		for (size_t i = i0; i < i1; i++) dst[i] = (bits[i / 16] >> (i % 16)) & 1 ? x[i] * a : 0.0f;
		break;
	case 1:
		for (size_t i = i0; i < i1; i++)
			if ((bits[i / 16] >> (i % 16)) & 1) dst[i] += x[i] * a;
		break;
	case 2:
		for (size_t i = i0; i < i1; i++) dst[i] = x[i] * mask[i];
		break;
	default:
		for (size_t i = i0; i < i1; i++) dst[i] += x[i] * mask[i];
		break;
	}
}

#ifdef TSIMD_AVX512
T512 static void ew_avx512(int op, float *dst, const float *x, const uint16_t *bits, const float *mask, float a,
			   size_t i0, size_t i1)
{
	const __m512 va = _mm512_set1_ps(a);
	size_t i = i0, e = i0 + (i1 - i0) / 16 * 16;
	switch (op) {
	case 0:
		for (; i < e; i += 16)
			_mm512_storeu_ps(dst + i, _mm512_maskz_mul_ps(bits[i / 16], _mm512_loadu_ps(x + i), va));
		break;
	case 1:
		for (; i < e; i += 16) {
			__mmask16 k = bits[i / 16];
			__m512 d = _mm512_loadu_ps(dst + i);
			/* += (x * keep) rounded once more, exactly as the scalar d + x * a */
			_mm512_storeu_ps(dst + i, _mm512_mask_add_ps(d, k, d, _mm512_mul_ps(_mm512_loadu_ps(x + i), va)));
		}
		break;
	case 2:
		for (; i < e; i += 16)
			_mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(mask + i)));
		break;
	default:
		for (; i < e; i += 16) {
			__m512 d = _mm512_loadu_ps(dst + i);
			_mm512_storeu_ps(dst + i, _mm512_add_ps(d, _mm512_mul_ps(_mm512_loadu_ps(x + i),
										  _mm512_loadu_ps(mask + i))));
		}
		break;
	}
	if (e < i1) ew_generic(op, dst, x, bits, mask, a, e, i1);
}
#endif

/* One element-wise job: the mask ops (op 0..4 above) or SwiGLU (op EW_SWIGLU_FWD / _BWD:
 * dst = out / dgate). */
enum { EW_SWIGLU_FWD = 16, EW_SWIGLU_BWD };
typedef struct ew_job {
	int op;
	float *dst, *dup;
	const float *x, *mask, *dout, *gate, *up;
	const uint16_t *bits;
	float a;
} ew_job;

static void swiglu_generic(int bwd, float *out, float *dup, const float *dout, const float *gate, const float *up,
			   size_t i0, size_t i1);
#ifdef TSIMD_AVX512
T512 static void swiglu_avx512(int bwd, float *out, float *dup, const float *dout, const float *gate,
			       const float *up, size_t i0, size_t i1);
#endif

/* Runs a job over n elements in chunks of CHUNK split statically over the threads. */
static void ew_run(const ew_job *j, size_t n)
{
	size_t nc = (n + CHUNK - 1) / CHUNK;
	int fast = sft_cpu_avx512(), sw = j->op >= EW_SWIGLU_FWD, bwd = j->op == EW_SWIGLU_BWD;
#pragma omp parallel for schedule(static) if (nc > 1)
	for (size_t c = 0; c < nc; c++) {
		size_t i0 = c * CHUNK, i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
#ifdef TSIMD_AVX512
		if (fast) {
			if (sw) swiglu_avx512(bwd, j->dst, j->dup, j->dout, j->gate, j->up, i0, i1);
			else ew_avx512(j->op, j->dst, j->x, j->bits, j->mask, j->a, i0, i1);
			continue;
		}
#endif
		(void)fast;
		if (sw) swiglu_generic(bwd, j->dst, j->dup, j->dout, j->gate, j->up, i0, i1);
		else ew_generic(j->op, j->dst, j->x, j->bits, j->mask, j->a, i0, i1);
	}
}

static void ew(int op, float *dst, const float *x, const uint16_t *bits, const float *mask, float a, size_t n)
{
	ew_job j = {.op = op, .dst = dst, .x = x, .bits = bits, .mask = mask, .a = a};
	ew_run(&j, n);
}

void tsimd_mask_mul(float *dst, const float *x, const uint16_t *bits, float keep, size_t n)
{
	ew(0, dst, x, bits, NULL, keep, n);
}

void tsimd_mask_mul_add(float *dst, const float *g, const uint16_t *bits, float keep, size_t n)
{
	ew(1, dst, g, bits, NULL, keep, n);
}

void tsimd_mul(float *dst, const float *x, const float *mask, size_t n) { ew(2, dst, x, NULL, mask, 0, n); }

void tsimd_mul_add(float *dst, const float *g, const float *mask, size_t n) { ew(3, dst, g, NULL, mask, 0, n); }

/* ---- SwiGLU -------------------------------------------------------------------------------- */

static void swiglu_generic(int bwd, float *out, float *dup, const float *dout, const float *gate, const float *up,
			   size_t i0, size_t i1)
{
	for (size_t i = i0; i < i1; i++) {
		float g = gate[i], sg = 1 / (1 + expf(-g)), silu = g * sg;
		if (!bwd) {
			out[i] = silu * up[i];
			continue;
		}
		if (out) out[i] = dout[i] * up[i] * sg * (1 + g * (1 - sg));
		if (dup) dup[i] = dout[i] * silu;
	}
}

#ifdef TSIMD_AVX512
T512 static void swiglu_avx512(int bwd, float *out, float *dup, const float *dout, const float *gate,
			       const float *up, size_t i0, size_t i1)
{
	const __m512 one = _mm512_set1_ps(1.0f);
	size_t i = i0, e = i0 + (i1 - i0) / 16 * 16;
	for (; i < e; i += 16) {
		__m512 g = _mm512_loadu_ps(gate + i), u = _mm512_loadu_ps(up + i);
		/* g < -88: exp(-g) scales to +inf, sg = 0 (as with libm); g > 87: simd_exp512's
		 * argument clamp gives exp(-87) instead of a smaller number, sg = 1 either way */
		__m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, simd_exp512(_mm512_sub_ps(_mm512_setzero_ps(), g))));
		__m512 silu = _mm512_mul_ps(g, sg);
		if (!bwd) {
			_mm512_storeu_ps(out + i, _mm512_mul_ps(silu, u));
			continue;
		}
		__m512 d = _mm512_loadu_ps(dout + i);
		if (out) {
			__m512 t = _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, sg)));
			_mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, u), sg), t));
		}
		if (dup) _mm512_storeu_ps(dup + i, _mm512_mul_ps(d, silu));
	}
	if (e < i1) swiglu_generic(bwd, out, dup, dout, gate, up, e, i1);
}
#endif

static void swiglu(int bwd, float *out, float *dup, const float *dout, const float *gate, const float *up, size_t n)
{
	ew_job j = {.op = bwd ? EW_SWIGLU_BWD : EW_SWIGLU_FWD, .dst = out, .dup = dup, .dout = dout, .gate = gate, .up = up};
	ew_run(&j, n);
}

void tsimd_swiglu_fwd(float *out, const float *gate, const float *up, size_t n)
{
	swiglu(0, out, NULL, NULL, gate, up, n);
}

void tsimd_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n)
{
	swiglu(1, dgate, dup, dout, gate, up, n);
}

/* ---- LoRA's rank-r products (AVX-512) ---------------------------------------------------------
 * The adapter's products have one dimension of r (<= 64) and run far below the gemm peak in
 * OpenBLAS (packing dominates: 20-30 GFLOP/s here against 180 for the base gemms); these
 * kernels keep an r-vector (rv = ceil(r / 16) registers) per row in registers and read each
 * big operand once, with the dropout mask applied from its bits on the fly (no x * mask
 * buffer). Every output element is computed by one thread, summing in a fixed order
 * (increasing k), whatever the tiling or the thread count. */

#ifdef TSIMD_AVX512
static inline __mmask16 tmask(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

/* keep lanes of elements p .. p+15 of a bit mask over `total` elements */
static inline __mmask16 bits16(const uint16_t *bits, size_t p, size_t total)
{
	size_t w = p >> 4;
	unsigned sh = (unsigned)(p & 15);
	uint32_t v = bits[w];
	if (sh && (w + 1) * 16 < total) v |= (uint32_t)bits[w + 1] << 16;
	return (__mmask16)(v >> sh);
}

/* x[p .. p+n) (n <= 16) with dropped lanes zeroed and kept ones scaled by keep */
T512 static inline __attribute__((always_inline)) __m512 load_masked(const float *x, size_t p, int n,
								     const uint16_t *bits, size_t total, __m512 keep)
{
	__mmask16 t = tmask(n);
	__m512 v = _mm512_maskz_loadu_ps(t, x + p);
	if (bits) v = _mm512_maskz_mul_ps(t & bits16(bits, p, total), v, keep);
	return v;
}

/* C[i][0:r] (+)= sum_{k < K} X[i][k] * Bk[k][0:r] for MR rows i (X masked by bits: element
 * (row, k) is bit xoff + i * ldx + k), then * scale when `fin`. Bk rows have stride ldb. */
T512 static inline __attribute__((always_inline)) void rowmix_tile(float *C, int ldc, const float *X, size_t ldx,
								   size_t xoff, const uint16_t *bits, size_t total,
								   float keep, const float *Bk, int ldb, int K, int accum,
								   float scale, int fin, const int MR, const int RV,
								   __mmask16 rt)
{
	__m512 acc[8][4];
	float tmp[8][16] __attribute__((aligned(64)));
	const __m512 kv = _mm512_set1_ps(keep);
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
		for (int v = 0; v < RV; v++)
			acc[i][v] = accum ? _mm512_maskz_loadu_ps(v == RV - 1 ? rt : 0xFFFF, C + (size_t)i * ldc + 16 * v)
					  : _mm512_setzero_ps();
	for (int k0 = 0; k0 < K; k0 += 16) {
		int w = K - k0 < 16 ? K - k0 : 16;
#pragma GCC unroll 8
		for (int i = 0; i < MR; i++)
			_mm512_store_ps(tmp[i], load_masked(X, xoff + (size_t)i * ldx + k0, w, bits, total, kv));
		for (int l = 0; l < w; l++) {
			const float *b = Bk + (size_t)(k0 + l) * ldb;
			__m512 bv[4];
#pragma GCC unroll 4
			for (int v = 0; v < RV; v++) bv[v] = _mm512_maskz_loadu_ps(v == RV - 1 ? rt : 0xFFFF, b + 16 * v);
#pragma GCC unroll 8
			for (int i = 0; i < MR; i++) {
				__m512 a = _mm512_set1_ps(tmp[i][l]);
#pragma GCC unroll 4
				for (int v = 0; v < RV; v++) acc[i][v] = _mm512_fmadd_ps(a, bv[v], acc[i][v]);
			}
		}
	}
	const __m512 sc = _mm512_set1_ps(scale);
#pragma GCC unroll 8
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
		for (int v = 0; v < RV; v++)
			_mm512_mask_storeu_ps(C + (size_t)i * ldc + 16 * v, v == RV - 1 ? rt : 0xFFFF,
					      fin && scale != 1.0f ? _mm512_mul_ps(acc[i][v], sc) : acc[i][v]);
}

/* rows n0 .. n1 of C (N, r) = rowmix over X (N, K) and Bk (K, r), in row tiles */
#define RM_CALL(MR, RV)                                                                                    \
	rowmix_tile(C + (size_t)n * ldc, ldc, X, ldx, xoff + (size_t)n * ldx, bits, total, keep, Bk, ldb, K,     \
		    accum, scale, fin, MR, RV, rt)
T512 static void rowmix_rows(float *C, int ldc, const float *X, size_t ldx, size_t xoff, const uint16_t *bits,
			     size_t total, float keep, const float *Bk, int ldb, int K, int accum, float scale,
			     int fin, int r, int n0, int n1)
{
	int rv = (r + 15) / 16;
	__mmask16 rt = tmask(r - 16 * (rv - 1));
	int mr = rv == 1 ? 8 : 4, n = n0;
	for (; n + mr <= n1; n += mr) switch (rv) {
		case 1: RM_CALL(8, 1); break;
		case 2: RM_CALL(4, 2); break;
		case 3: RM_CALL(4, 3); break;
		default: RM_CALL(4, 4); break;
		}
	for (; n < n1; n++) switch (rv) {
		case 1: RM_CALL(1, 1); break;
		case 2: RM_CALL(1, 2); break;
		case 3: RM_CALL(1, 3); break;
		default: RM_CALL(1, 4); break;
		}
}
#undef RM_CALL

enum { ROWS = 256, KB = 128, OB = 64 };

/* xa = (x * mask) @ A^T: per row tile, A^T in column blocks of KB, transposed on the stack */
T512 static void lora_xa(float *xa, const float *x, const uint16_t *bits, float keep, const float *A, int N, int in,
			 int r)
{
	size_t total = (size_t)N * in;
	int nt = (N + ROWS - 1) / ROWS, rp = (r + 15) / 16 * 16;
#pragma omp parallel for schedule(static)
	for (int tile = 0; tile < nt; tile++) {
		float At[KB * 64] __attribute__((aligned(64)));
		int n0 = tile * ROWS, n1 = n0 + ROWS < N ? n0 + ROWS : N;
		for (int c0 = 0; c0 < in; c0 += KB) {
			int cb = in - c0 < KB ? in - c0 : KB;
			for (int c = 0; c < cb; c++)
				for (int j = 0; j < rp; j++) At[c * rp + j] = j < r ? A[(size_t)j * in + c0 + c] : 0.0f;
			rowmix_rows(xa, r, x, (size_t)in, (size_t)c0, bits, total, keep, At, rp, cb, c0 > 0, 1.0f, 0, r,
				    n0, n1);
		}
	}
}

/* t = scale * dy @ B (B (out, r) is already k-major) */
T512 static void lora_t(float *t, const float *dy, const float *B, float scale, int N, int r, int out)
{
	int nt = (N + ROWS - 1) / ROWS;
#pragma omp parallel for schedule(static)
	for (int tile = 0; tile < nt; tile++) {
		int n0 = tile * ROWS, n1 = n0 + ROWS < N ? n0 + ROWS : N;
		rowmix_rows(t, r, dy, (size_t)out, 0, NULL, 0, 1.0f, B, r, out, 0, scale, 1, r, n0, n1);
	}
}

/* Y[i][o0 + 0:16NV] += scale * sum_j S[i][j] * Bt[j][0:16NV] (+ mask: dx form) for MR rows.
 * mask form: the sum is multiplied by keep and dropped lanes skipped (bits over Y's
 * elements, element (i, o) = yoff + i * ldy + o). */
T512 static inline __attribute__((always_inline)) void spread_tile(float *Y, size_t ldy, size_t yoff,
								   const uint16_t *bits, size_t total, float keep,
								   const float *S, int lds, const float *Bt, size_t ldb,
								   int r, float scale, int ob, int set, const int MR,
								   const int NV)
{
	__m512 acc[2][4];
#pragma GCC unroll 2
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
	for (int j = 0; j < r; j++) {
		const float *b = Bt + (size_t)j * ldb;
		__m512 bv[4];
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++) bv[v] = _mm512_maskz_loadu_ps(tmask(ob - 16 * v), b + 16 * v);
#pragma GCC unroll 2
		for (int i = 0; i < MR; i++) {
			__m512 a = _mm512_set1_ps(S[(size_t)i * lds + j]);
#pragma GCC unroll 4
			for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(a, bv[v], acc[i][v]);
		}
	}
	const __m512 sc = _mm512_set1_ps(bits ? keep : scale);
#pragma GCC unroll 2
	for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++) {
			size_t p = yoff + (size_t)i * ldy + 16 * v;
			__mmask16 mt = tmask(ob - 16 * v), m = mt;
			if (bits) m &= bits16(bits, p, total);
			float *y = Y + (size_t)i * ldy + 16 * v;
			__m512 a = bits || scale != 1.0f ? _mm512_mul_ps(acc[i][v], sc) : acc[i][v];
			if (set) /* dropped lanes written as 0 */
				_mm512_mask_storeu_ps(y, mt, _mm512_maskz_mov_ps(m, a));
			else
				_mm512_mask_storeu_ps(y, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y), a));
		}
}

#define SP_CALL(MR, NV)                                                                                    \
	spread_tile(Y + (size_t)n * ldy + o0, ldy, (size_t)n * ldy + o0, bits, total, keep, S + (size_t)n * r, r, \
		    Bt, ldb, r, scale, ob, set, MR, NV)
T512 static void spread_rows(float *Y, size_t ldy, const uint16_t *bits, size_t total, float keep, const float *S,
			     const float *Bt, size_t ldb, int r, float scale, int o0, int ob, int set, int n0, int n1)
{
	int nv = (ob + 15) / 16, n = n0;
	for (; n + 2 <= n1; n += 2) switch (nv) {
		case 1: SP_CALL(2, 1); break;
		case 2: SP_CALL(2, 2); break;
		case 3: SP_CALL(2, 3); break;
		default: SP_CALL(2, 4); break;
		}
	for (; n < n1; n++) switch (nv) {
		case 1: SP_CALL(1, 1); break;
		case 2: SP_CALL(1, 2); break;
		case 3: SP_CALL(1, 3); break;
		default: SP_CALL(1, 4); break;
		}
}
#undef SP_CALL

/* y (+)= scale * xa @ B^T: B^T in column blocks of OB, transposed on the stack */
T512 static void lora_y(float *y, const float *xa, const float *B, float scale, int N, int r, int out, int set)
{
	int nt = (N + ROWS - 1) / ROWS;
#pragma omp parallel for schedule(static)
	for (int tile = 0; tile < nt; tile++) {
		float Bt[64 * OB] __attribute__((aligned(64)));
		int n0 = tile * ROWS, n1 = n0 + ROWS < N ? n0 + ROWS : N;
		for (int o0 = 0; o0 < out; o0 += OB) {
			int ob = out - o0 < OB ? out - o0 : OB;
			for (int j = 0; j < r; j++)
				for (int o = 0; o < ob; o++) Bt[j * OB + o] = B[(size_t)(o0 + o) * r + j];
			spread_rows(y, (size_t)out, NULL, 0, 1.0f, xa, Bt, OB, r, scale, o0, ob, set, n0, n1);
		}
	}
}

/* dx (+)= ((t @ A) * keep) on kept lanes, 0 on dropped ones (or t @ A without bits); A (r, in)
 * is k-major */
T512 static void lora_dx(float *dx, const float *t, const float *A, const uint16_t *bits, float keep, int N, int in,
			 int r, int set)
{
	int nt = (N + ROWS - 1) / ROWS;
	size_t total = (size_t)N * in;
#pragma omp parallel for schedule(static)
	for (int tile = 0; tile < nt; tile++) {
		int n0 = tile * ROWS, n1 = n0 + ROWS < N ? n0 + ROWS : N;
		for (int c0 = 0; c0 < in; c0 += OB) {
			int cb = in - c0 < OB ? in - c0 : OB;
			spread_rows(dx, (size_t)in, bits, total, keep, t, A + c0, (size_t)in, r, 1.0f, c0, cb, set, n0, n1);
		}
	}
}

/* G[o][0:r] += scale * sum_n Dy[n][o] * S[n][0:r] for OBM consecutive o (dB form), or, with
 * bits, G[j][c0:c0+16] += sum_n S[n][j] * (x * mask)[n][c0:c0+16] (dA form) below. */
T512 static inline __attribute__((always_inline)) void colsum_tile(float *G, const float *Dy, int ldd, const float *S,
								   int N, int r, float scale, const int OBM, const int RV,
								   __mmask16 rt)
{
	__m512 acc[16][4];
#pragma GCC unroll 16
	for (int i = 0; i < OBM; i++)
#pragma GCC unroll 4
		for (int v = 0; v < RV; v++) acc[i][v] = _mm512_setzero_ps();
	for (int n = 0; n < N; n++) {
		__m512 sv[4];
#pragma GCC unroll 4
		for (int v = 0; v < RV; v++) sv[v] = _mm512_maskz_loadu_ps(v == RV - 1 ? rt : 0xFFFF, S + (size_t)n * r + 16 * v);
		const float *d = Dy + (size_t)n * ldd;
#pragma GCC unroll 16
		for (int i = 0; i < OBM; i++) {
			__m512 a = _mm512_set1_ps(d[i]);
#pragma GCC unroll 4
			for (int v = 0; v < RV; v++) acc[i][v] = _mm512_fmadd_ps(a, sv[v], acc[i][v]);
		}
	}
	const __m512 sc = _mm512_set1_ps(scale);
#pragma GCC unroll 16
	for (int i = 0; i < OBM; i++)
#pragma GCC unroll 4
		for (int v = 0; v < RV; v++) {
			float *g = G + (size_t)i * r + 16 * v;
			__mmask16 m = v == RV - 1 ? rt : 0xFFFF;
			__m512 a = scale != 1.0f ? _mm512_mul_ps(acc[i][v], sc) : acc[i][v];
			_mm512_mask_storeu_ps(g, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, g), a));
		}
}

/* dB += scale * dy^T @ xa, parallel over blocks of dB rows (each sums over all n in order) */
T512 static void lora_dB(float *dB, const float *dy, const float *xa, float scale, int N, int r, int out)
{
	int rv = (r + 15) / 16;
	__mmask16 rt = tmask(r - 16 * (rv - 1));
	int obm = rv == 1 ? 16 : rv == 2 ? 8 : 4;
	int nb = (out + obm - 1) / obm;
#pragma omp parallel for schedule(static)
	for (int b = 0; b < nb; b++) {
		int o0 = b * obm;
		float *g = dB + (size_t)o0 * r;
		const float *d = dy + o0;
		if (o0 + obm <= out) {
			switch (rv) {
			case 1: colsum_tile(g, d, out, xa, N, r, scale, 16, 1, rt); break;
			case 2: colsum_tile(g, d, out, xa, N, r, scale, 8, 2, rt); break;
			case 3: colsum_tile(g, d, out, xa, N, r, scale, 4, 3, rt); break;
			default: colsum_tile(g, d, out, xa, N, r, scale, 4, 4, rt); break;
			}
		} else {
			for (int o = o0; o < out; o++) {
				g = dB + (size_t)o * r;
				d = dy + o;
				switch (rv) {
				case 1: colsum_tile(g, d, out, xa, N, r, scale, 1, 1, rt); break;
				case 2: colsum_tile(g, d, out, xa, N, r, scale, 1, 2, rt); break;
				case 3: colsum_tile(g, d, out, xa, N, r, scale, 1, 3, rt); break;
				default: colsum_tile(g, d, out, xa, N, r, scale, 1, 4, rt); break;
				}
			}
		}
	}
}

/* dA[j0 + 0:JB][c0 + 0:16] += sum_n t[n][j0 + j] * (x * mask)[n][c0 + 0:16] */
T512 static inline __attribute__((always_inline)) void dA_tile(float *dA, const float *t, const float *x,
							       const uint16_t *bits, float keep, int N, int in, int r,
							       int j0, int c0, int w, const int JB)
{
	__m512 acc[16];
	const __m512 kv = _mm512_set1_ps(keep);
	size_t total = (size_t)N * in;
#pragma GCC unroll 16
	for (int j = 0; j < JB; j++) acc[j] = _mm512_setzero_ps();
	for (int n = 0; n < N; n++) {
		__m512 xv = load_masked(x, (size_t)n * in + c0, w, bits, total, kv);
		const float *tr = t + (size_t)n * r + j0;
#pragma GCC unroll 16
		for (int j = 0; j < JB; j++) acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(tr[j]), xv, acc[j]);
	}
	__mmask16 m = tmask(w);
#pragma GCC unroll 16
	for (int j = 0; j < JB; j++) {
		float *g = dA + (size_t)(j0 + j) * in + c0;
		_mm512_mask_storeu_ps(g, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, g), acc[j]));
	}
}

#define DA_CASE(JB)                                                                                        \
	case JB:                                                                                           \
		dA_tile(dA, t, x, bits, keep, N, in, r, j0, c0, w, JB);                                    \
		break;
T512 static void lora_dA(float *dA, const float *t, const float *x, const uint16_t *bits, float keep, int N, int in,
			 int r)
{
	int ncb = (in + 15) / 16, njb = (r + 15) / 16;
#pragma omp parallel for schedule(static)
	for (int item = 0; item < ncb * njb; item++) {
		int c0 = item % ncb * 16, j0 = item / ncb * 16;
		int w = in - c0 < 16 ? in - c0 : 16, jb = r - j0 < 16 ? r - j0 : 16;
		switch (jb) {
			DA_CASE(1) DA_CASE(2) DA_CASE(3) DA_CASE(4) DA_CASE(5) DA_CASE(6) DA_CASE(7) DA_CASE(8)
			DA_CASE(9) DA_CASE(10) DA_CASE(11) DA_CASE(12) DA_CASE(13) DA_CASE(14) DA_CASE(15)
			DA_CASE(16)
		}
	}
}
#undef DA_CASE
#endif

int tsimd_lora_ok(int r)
{
	return sft_cpu_avx512() && r >= 1 && r <= TSIMD_LORA_MAX_R;
}

void tsimd_lora_forward(float *y, float *xa, const float *x, const uint16_t *bits, float keep, const float *A,
			const float *B, float scale, int N, int in, int r, int out, int set)
{
#ifdef TSIMD_AVX512
	lora_xa(xa, x, bits, keep, A, N, in, r);
	lora_y(y, xa, B, scale, N, r, out, set);
#else
	(void)y, (void)xa, (void)x, (void)bits, (void)keep, (void)A, (void)B, (void)scale, (void)N, (void)in,
		(void)r, (void)out, (void)set;
	abort();
#endif
}

void tsimd_lora_backward(float *dx, float *dA, float *dB, float *t, const float *dy, const float *x,
			 const uint16_t *bits, float keep, const float *xa, const float *A, const float *B, float scale,
			 int N, int in, int r, int out, int set_dx)
{
#ifdef TSIMD_AVX512
	if (dB) lora_dB(dB, dy, xa, scale, N, r, out);
	if (!dA && !dx) return;
	lora_t(t, dy, B, scale, N, r, out);
	if (dA) lora_dA(dA, t, x, bits, keep, N, in, r);
	if (dx) lora_dx(dx, t, A, bits, keep, N, in, r, set_dx);
#else
	(void)dx, (void)dA, (void)dB, (void)t, (void)dy, (void)x, (void)bits, (void)keep, (void)xa, (void)A,
		(void)B, (void)scale, (void)N, (void)in, (void)r, (void)out, (void)set_dx;
	abort();
#endif
}
