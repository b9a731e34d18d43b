/* ops_attn.c - blocked CPU attention for training (see ops_attn.h and
 * docs/perf/attention_cpu.md).
 *
 * Layout of the work:
 * - forward: one task per (row b, kv head g, block of 64 rows of the row); the block is
 *   cut where segments change, and each piece [i0, i1) of segment [s0, ...) runs a
 *   FlashAttention-style loop over key blocks [klo, i1) of NK keys: K^T packed once per key
 *   block, then for each query head of the group S = Q K^T, scale/softcap/mask, online
 *   softmax, O (+)= P V with O kept in `out`.
 * - backward: delta = rowsum(dout * out) into scratch; then one task per (row b, kv head g,
 *   segment): for each key block (K^T, V^T packed once), for each query head of the group,
 *   for each query block that sees it: S = Q K^T, dP = dO V^T, P = exp(S' - lse),
 *   dS = P (dP - delta) dc/dS scale, dQ += dS K, dK += dS^T Q, dV += P^T dO. The task owns
 *   every dq/dk/dv row it writes, so the += happen in one fixed order.
 * Every tile product goes through mm(): C (+)= A B with A read through two strides (a
 * transposed A costs nothing) and B row-major; per output element the K terms are summed in
 * order 0..K-1 (FMA chain), independent of the thread count. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpufeat.h"
#include "ops_attn.h"

#ifdef OPS_ATTN_CBLAS /* benchmark variant only: tile products through OpenBLAS */
#include <cblas.h>
#endif

/* Triangular structure of a tile product (terms known to be exactly zero are skipped, which
 * leaves every result bit unchanged: c + 0 * b == c):
 * TRI_N:  row m needs columns n < m + 1 + off only (the rest is masked out later);
 * TRI_K:  A[m][k] == 0 for k > m + off;
 * TRI_K0: A[m][k] == 0 for k < m - off. */
enum { TRI_NONE, TRI_N, TRI_K, TRI_K0 };

enum {
	MQ = 64,          /* query rows per tile */
	SLD = 64,         /* leading dimension of the S / P tiles (>= NK) */
	KT_FLOATS = 16384 /* packed K^T / V^T block: NK * D floats (NK = 64 up to D = 256) */
};

static int key_block(int D)
{
	int nk = KT_FLOATS / D;
	if (nk > 64) nk = 64;
	if (nk >= 16) nk &= ~15;
	return nk < 1 ? 1 : nk;
}

/* ---- portable kernels ------------------------------------------------------------------ */

static void mm_generic(float *C, long ldc, const float *A, long sam, long sak, const float *Bm, long ldb, int M,
		       int N, int K, int acc)
{
	for (int m = 0; m < M; m++) {
		float *c = C + (size_t)m * ldc;
		if (!acc) memset(c, 0, (size_t)N * sizeof *c);
		for (int k = 0; k < K; k++) {
			float a = A[(size_t)m * sam + (size_t)k * sak];
			const float *b = Bm + (size_t)k * ldb;
			for (int n = 0; n < N; n++) c[n] += a * b[n];
		}
	}
}

/* Forward softmax of a tile: rows r < M of S (M x nk) hold raw q.k for query i0 + r and keys
 * kb0 + j, di = i0 - kb0. Turns them into exp(c - m) (0 where masked), updates the running
 * max m and sum l, and rescales the O rows when the max grows (O rows are written by the
 * first key block's P V, after this call: no rescale while m is still -inf). */
typedef struct {
	int M, nk, di, window, D;
	float scale, softcap;
	float *m, *l, *O;
	long ldo;
} fwd_tile;

/* Valid key columns of tile row r: [*jlo, *jhi]; returns 0 when none. */
static inline int row_range(int r, int di, int nk, int window, int *jlo, int *jhi)
{
	int ir = r + di; /* query index relative to the first key of the block */
	int hi = ir < nk - 1 ? ir : nk - 1;
	int lo = window > 0 && ir - window + 1 > 0 ? ir - window + 1 : 0;
	*jlo = lo;
	*jhi = hi;
	return hi >= lo;
}

static void softcap_row(float *row, int jlo, int jhi, float scale, float softcap)
{
	for (int j = jlo; j <= jhi; j++) row[j] = softcap * tanhf(scale * row[j] / softcap);
}

/* A forward tile row before its softmax: a fully masked row is zeroed (returns 0);
 * otherwise its valid columns [*jlo, *jhi], softcapped in place when the model has a
 * softcap, and the factor *sc the raw scores still need (scale, or 1 once capped). */
static int fwd_row_prep(float *row, int r, const fwd_tile *t, int *jlo, int *jhi, float *sc)
{
	if (!row_range(r, t->di, t->nk, t->window, jlo, jhi)) {
		memset(row, 0, (size_t)t->nk * sizeof *row);
		return 0;
	}
	*sc = t->scale;
	if (t->softcap > 0) {
		softcap_row(row, *jlo, *jhi, t->scale, t->softcap);
		*sc = 1;
	}
	return 1;
}

static void fwd_softmax_generic(float *S, const fwd_tile *t)
{
	for (int r = 0; r < t->M; r++) {
		float *row = S + (size_t)r * SLD, sc;
		int jlo, jhi;
		if (!fwd_row_prep(row, r, t, &jlo, &jhi, &sc)) continue;
		float bm = -INFINITY;
		for (int j = jlo; j <= jhi; j++) {
			row[j] *= sc;
			if (row[j] > bm) bm = row[j];
		}
		if (bm > t->m[r] && t->m[r] == -INFINITY) { /* first keys of the row: O not yet written */
			t->m[r] = bm;
		} else if (bm > t->m[r]) {
			float corr = expf(t->m[r] - bm);
			t->l[r] *= corr;
			float *o = t->O + (size_t)r * t->ldo;
			for (int d = 0; d < t->D; d++) o[d] *= corr;
			t->m[r] = bm;
		}
		float s = 0;
		for (int j = 0; j < t->nk; j++) {
			float p = j >= jlo && j <= jhi ? expf(row[j] - t->m[r]) : 0.0f;
			row[j] = p;
			s += p;
		}
		t->l[r] += s;
	}
}

/* Backward of a tile: S holds raw q.k, dP = dO V^T; afterwards S = P and dP = dS (the
 * gradient of the raw q.k, scale and softcap included). lse and delta of row r are at
 * r * hstride. */
typedef struct {
	int M, nk, di, window;
	float scale, softcap;
	const float *lse, *delta;
	long hstride;
} bwd_tile;

static void bwd_rows_generic(float *S, float *dP, const bwd_tile *t)
{
	for (int r = 0; r < t->M; r++) {
		float *row = S + (size_t)r * SLD, *drow = dP + (size_t)r * SLD;
		int jlo, jhi;
		if (!row_range(r, t->di, t->nk, t->window, &jlo, &jhi)) jlo = t->nk, jhi = -1;
		float L = t->lse[(size_t)r * t->hstride], dl = t->delta[(size_t)r * t->hstride];
		for (int j = 0; j < t->nk; j++) {
			if (j < jlo || j > jhi) {
				row[j] = drow[j] = 0;
				continue;
			}
			float c = t->scale * row[j], fac = 1;
			if (t->softcap > 0) {
				float th = tanhf(c / t->softcap);
				c = t->softcap * th;
				fac = 1 - th * th;
			}
			float p = expf(c - L);
			row[j] = p;
			drow[j] = p * (drow[j] - dl) * fac * t->scale;
		}
	}
}

/* ---- AVX-512 kernels -------------------------------------------------------------------- */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include "simd_exp.h"
#define ATTN_AVX512 1
#define T512 __attribute__((target("avx512f,fma")))

/* One register tile: MR rows x NV vectors of 16 columns (the last one masked by `last`). */
T512 static inline __attribute__((always_inline)) void mm512_tile(float *C, long ldc, const float *A, long sam,
								    long sak, const float *Bm, long ldb, int K,
								    int acc, const int MR, const int NV,
								    __mmask16 last)
{
	__m512 c[6][4];
#pragma GCC unroll 6
	for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++) {
			__mmask16 mk = v == NV - 1 ? last : 0xFFFF;
			c[r][v] = acc ? _mm512_maskz_loadu_ps(mk, C + (size_t)r * ldc + 16 * v) : _mm512_setzero_ps();
		}
	for (int k = 0; k < K; k++) {
		const float *bk = Bm + (size_t)k * ldb, *ak = A + (size_t)k * sak;
		__m512 b[4];
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++) b[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xFFFF, bk + 16 * v);
#pragma GCC unroll 6
		for (int r = 0; r < MR; r++) {
			__m512 a = _mm512_set1_ps(ak[(size_t)r * sam]);
#pragma GCC unroll 4
			for (int v = 0; v < NV; v++) c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
		}
	}
#pragma GCC unroll 6
	for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
		for (int v = 0; v < NV; v++)
			_mm512_mask_storeu_ps(C + (size_t)r * ldc + 16 * v, v == NV - 1 ? last : 0xFFFF, c[r][v]);
}

#define MM_CASE(MR, NV)                                                                       \
	case (MR) * 8 + (NV):                                                                 \
		mm512_tile(c, ldc, a, sam, sak, b, ldb, K, acc, MR, NV, last);                \
		break;
#define MM_CASES(MR) MM_CASE(MR, 1) MM_CASE(MR, 2) MM_CASE(MR, 3) MM_CASE(MR, 4)

T512 static void mm512(float *C, long ldc, const float *A, long sam, long sak, const float *Bm, long ldb, int M,
		       int N, int K, int acc, int tri, int off)
{
	for (int n0 = 0; n0 < N; n0 += 64) {
		for (int m0 = 0; m0 < M; m0 += 6) {
			int mr = M - m0 < 6 ? M - m0 : 6;
			int nn = N - n0 < 64 ? N - n0 : 64, k0 = 0, k1 = K;
			if (tri == TRI_N && m0 + mr + off - n0 < nn) nn = m0 + mr + off - n0;
			if (tri == TRI_K && m0 + mr + off < k1) k1 = m0 + mr + off;
			if (tri == TRI_K0 && m0 - off > 0) k0 = m0 - off;
			if (nn <= 0) continue; /* TRI_N: those columns are never read */
			if (k1 <= k0) {        /* all terms zero */
				if (!acc)
					for (int r = 0; r < mr; r++) memset(C + (size_t)(m0 + r) * ldc + n0, 0, (size_t)nn * sizeof *C);
				continue;
			}
			int nv = (nn + 15) / 16;
			__mmask16 last = (__mmask16)(nn % 16 ? (1u << (nn % 16)) - 1 : 0xFFFFu);
			const float *b = Bm + n0 + (size_t)k0 * ldb;
			float *c = C + (size_t)m0 * ldc + n0;
			const float *a = A + (size_t)m0 * sam + (size_t)k0 * sak;
			int K = k1 - k0;
			switch (mr * 8 + nv) {
				MM_CASES(1)
				MM_CASES(2)
				MM_CASES(3)
				MM_CASES(4)
				MM_CASES(5)
				MM_CASES(6)
			}
		}
	}
}

/* Lanes of vector v (columns 16v .. 16v+15) inside [jlo, jhi]. */
static inline __mmask16 lane_mask(int v, int jlo, int jhi)
{
	uint64_t m = (jhi >= 63 ? ~0ull : (1ull << (jhi + 1)) - 1) & (~0ull << jlo);
	return (__mmask16)(m >> (16 * v));
}

T512 static void fwd_softmax512(float *S, const fwd_tile *t)
{
	int nv = (t->nk + 15) / 16, nd = t->D / 16, dtail = t->D % 16;
	for (int r = 0; r < t->M; r++) {
		float *row = S + (size_t)r * SLD, sc;
		int jlo, jhi;
		if (!fwd_row_prep(row, r, t, &jlo, &jhi, &sc)) continue;
		__m512 scv = _mm512_set1_ps(sc), mx = _mm512_set1_ps(-INFINITY);
		for (int v = 0; v < nv; v++) {
			__mmask16 mk = lane_mask(v, jlo, jhi);
			__m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, row + 16 * v), scv);
			mx = _mm512_mask_max_ps(mx, mk, mx, x);
		}
		float bm = _mm512_reduce_max_ps(mx);
		if (bm > t->m[r] && t->m[r] == -INFINITY) { /* first keys of the row: O not yet written */
			t->m[r] = bm;
		} else if (bm > t->m[r]) {
			float corr = expf(t->m[r] - bm);
			t->l[r] *= corr;
			float *o = t->O + (size_t)r * t->ldo;
			__m512 cv = _mm512_set1_ps(corr);
			for (int d = 0; d < nd; d++) _mm512_storeu_ps(o + 16 * d, _mm512_mul_ps(_mm512_loadu_ps(o + 16 * d), cv));
			if (dtail) {
				__mmask16 tm = (__mmask16)((1u << dtail) - 1);
				_mm512_mask_storeu_ps(o + 16 * nd, tm, _mm512_mul_ps(_mm512_maskz_loadu_ps(tm, o + 16 * nd), cv));
			}
			t->m[r] = bm;
		}
		__m512 mv = _mm512_set1_ps(t->m[r]), sum = _mm512_setzero_ps();
		for (int v = 0; v < nv; v++) {
			__mmask16 mk = lane_mask(v, jlo, jhi);
			__m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, row + 16 * v), scv);
			__m512 p = _mm512_maskz_mov_ps(mk, simd_exp512(_mm512_sub_ps(x, mv)));
			sum = _mm512_add_ps(sum, p);
			_mm512_storeu_ps(row + 16 * v, p);
		}
		t->l[r] += _mm512_reduce_add_ps(sum);
	}
}

T512 static void bwd_rows512(float *S, float *dP, const bwd_tile *t)
{
	int nv = (t->nk + 15) / 16;
	__m512 scv = _mm512_set1_ps(t->scale);
	for (int r = 0; r < t->M; r++) {
		float *row = S + (size_t)r * SLD, *drow = dP + (size_t)r * SLD;
		int jlo, jhi;
		if (!row_range(r, t->di, t->nk, t->window, &jlo, &jhi)) {
			memset(row, 0, (size_t)t->nk * sizeof *row);
			memset(drow, 0, (size_t)t->nk * sizeof *drow);
			continue;
		}
		__m512 L = _mm512_set1_ps(t->lse[(size_t)r * t->hstride]);
		__m512 dl = _mm512_set1_ps(t->delta[(size_t)r * t->hstride]);
		if (t->softcap > 0) {
			softcap_row(row, jlo, jhi, t->scale, t->softcap);
			__m512 icap = _mm512_set1_ps(1 / t->softcap), one = _mm512_set1_ps(1);
			for (int v = 0; v < nv; v++) {
				__mmask16 mk = lane_mask(v, jlo, jhi);
				__m512 c = _mm512_maskz_loadu_ps(mk, row + 16 * v);
				__m512 p = _mm512_maskz_mov_ps(mk, simd_exp512(_mm512_sub_ps(c, L)));
				__m512 th = _mm512_mul_ps(c, icap);
				__m512 fac = _mm512_fnmadd_ps(th, th, one); /* 1 - tanh^2 */
				__m512 ds = _mm512_mul_ps(_mm512_mul_ps(p, _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, drow + 16 * v), dl)),
							  _mm512_mul_ps(fac, scv));
				_mm512_storeu_ps(row + 16 * v, p);
				_mm512_storeu_ps(drow + 16 * v, _mm512_maskz_mov_ps(mk, ds));
			}
			continue;
		}
		for (int v = 0; v < nv; v++) {
			__mmask16 mk = lane_mask(v, jlo, jhi);
			__m512 c = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, row + 16 * v), scv);
			__m512 p = _mm512_maskz_mov_ps(mk, simd_exp512(_mm512_sub_ps(c, L)));
			__m512 ds = _mm512_mul_ps(_mm512_mul_ps(p, _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, drow + 16 * v), dl)), scv);
			_mm512_storeu_ps(row + 16 * v, p);
			_mm512_storeu_ps(drow + 16 * v, _mm512_maskz_mov_ps(mk, ds));
		}
	}
}

/* dst (D, NK) <- the nk rows of src (stride ld) transposed, 16 x 16 blocks in registers;
 * columns nk .. of the last block get zeros. */
T512 static void pack_t512(float *dst, int NK, const float *src, long ld, int nk, int D)
{
	int d16 = D & ~15;
	for (int j0 = 0; j0 < nk; j0 += 16) {
		int nr = nk - j0 < 16 ? nk - j0 : 16;
		for (int d0 = 0; d0 < d16; d0 += 16) {
			__m512 r[16], t[16];
			for (int i = 0; i < 16; i++)
				r[i] = i < nr ? _mm512_loadu_ps(src + (size_t)(j0 + i) * ld + d0) : _mm512_setzero_ps();
			for (int i = 0; i < 8; i++) {
				t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
				t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
			}
			/* r[4g + c]: columns c, c+4, c+8, c+12 (one per 128-bit lane) of rows 4g .. 4g+3 */
			for (int g = 0; g < 4; g++) {
				r[4 * g + 0] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
				r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
				r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
				r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
			}
			for (int c = 0; c < 4; c++) {
				__m512 v0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), w0 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
				__m512 v1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD), w1 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
				float *o = dst + (size_t)(d0 + c) * NK + j0;
				_mm512_storeu_ps(o, _mm512_shuffle_f32x4(v0, w0, 0x88));
				_mm512_storeu_ps(o + (size_t)4 * NK, _mm512_shuffle_f32x4(v1, w1, 0x88));
				_mm512_storeu_ps(o + (size_t)8 * NK, _mm512_shuffle_f32x4(v0, w0, 0xDD));
				_mm512_storeu_ps(o + (size_t)12 * NK, _mm512_shuffle_f32x4(v1, w1, 0xDD));
			}
		}
		for (int j = j0; j < j0 + nr; j++)
			for (int d = d16; d < D; d++) dst[(size_t)d * NK + j] = src[(size_t)j * ld + d];
	}
}
#endif

/* ---- dispatch ----------------------------------------------------------------------------- */

static int use_avx512(void)
{
#ifdef ATTN_AVX512
	const char *e = getenv("SFT_ATTN_GENERIC");
	if (e && *e && strcmp(e, "0") != 0) return 0;
	return sft_cpu_avx512(); /* SFT_NO_AVX512 turns every AVX-512 path off */
#else
	return 0;
#endif
}

static void mm(int avx, float *C, long ldc, const float *A, long sam, long sak, const float *Bm, long ldb, int M,
	       int N, int K, int acc, int tri, int off)
{
#ifdef OPS_ATTN_CBLAS
	(void)avx, (void)tri, (void)off;
	/* A is (M, K) with element (m, k) at m*sam + k*sak: one of the strides is 1 */
	if (sak == 1)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, (int)sam, Bm, (int)ldb,
			    acc ? 1.0f : 0.0f, C, (int)ldc);
	else
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1.0f, A, (int)sak, Bm, (int)ldb,
			    acc ? 1.0f : 0.0f, C, (int)ldc);
	return;
#endif
#ifdef ATTN_AVX512
	if (avx) {
		mm512(C, ldc, A, sam, sak, Bm, ldb, M, N, K, acc, tri, off);
		return;
	}
#endif
	(void)avx, (void)tri, (void)off;
	mm_generic(C, ldc, A, sam, sak, Bm, ldb, M, N, K, acc);
}

static void fwd_softmax(int avx, float *S, const fwd_tile *t)
{
#ifdef ATTN_AVX512
	if (avx) {
		fwd_softmax512(S, t);
		return;
	}
#endif
	(void)avx;
	fwd_softmax_generic(S, t);
}

static void bwd_rows(int avx, float *S, float *dP, const bwd_tile *t)
{
#ifdef ATTN_AVX512
	if (avx) {
		bwd_rows512(S, dP, t);
		return;
	}
#endif
	(void)avx;
	bwd_rows_generic(S, dP, t);
}

/* dst (D, NK) <- the nk rows of src (stride ld) transposed. */
static void pack_t(int avx, float *dst, int NK, const float *src, long ld, int nk, int D)
{
#ifdef ATTN_AVX512
	if (avx && NK % 16 == 0) {
		pack_t512(dst, NK, src, ld, nk, D);
		return;
	}
#endif
	(void)avx;
	for (int j = 0; j < nk; j++) {
		const float *s = src + (size_t)j * ld;
		for (int d = 0; d < D; d++) dst[(size_t)d * NK + j] = s[d];
	}
}

/* ---- forward -------------------------------------------------------------------------------- */

typedef struct {
	const float *q, *k, *v, *dout, *out, *lse;
	float *o, *lse_out, *dq, *dk, *dv, *delta;
	const int32_t *seg;
	int T, Hq, Hkv, D, window, NK, avx;
	float scale, softcap;
} attn_ctx;

/* Query rows [i0, i1) of row b, all in the segment that starts at s0, for the query heads
 * of kv head g. Per head: online softmax over key blocks, O accumulated in `out`. */
static void fwd_piece(const attn_ctx *a, int b, int g, int i0, int i1, int s0, float *kt, float *S)
{
	int T = a->T, Hq = a->Hq, Hkv = a->Hkv, D = a->D, NK = a->NK, group = Hq / Hkv, M = i1 - i0;
	long ldq = (long)Hq * D, ldk = (long)Hkv * D;
	float m[group][MQ], l[group][MQ];
	for (int hh = 0; hh < group; hh++)
		for (int r = 0; r < M; r++) {
			m[hh][r] = -INFINITY;
			l[hh][r] = 0;
		}
	int klo = s0;
	if (a->window > 0 && i0 - a->window + 1 > klo) klo = i0 - a->window + 1;
	fwd_tile t = {.M = M, .window = a->window, .D = D, .scale = a->scale, .softcap = a->softcap, .ldo = ldq};
	for (int kb0 = klo; kb0 < i1; kb0 += NK) {
		int nk = i1 - kb0 < NK ? i1 - kb0 : NK;
		size_t ko = (((size_t)b * T + kb0) * Hkv + g) * D;
		pack_t(a->avx, kt, NK, a->k + ko, ldk, nk, D);
		t.nk = nk;
		t.di = i0 - kb0;
		for (int hh = 0; hh < group; hh++) {
			size_t qo = (((size_t)b * T + i0) * Hq + g * group + hh) * D;
			float *O = a->o + qo;
			mm(a->avx, S, SLD, a->q + qo, ldq, 1, kt, NK, M, nk, D, 0, TRI_N, t.di);
			t.m = m[hh];
			t.l = l[hh];
			t.O = O;
			fwd_softmax(a->avx, S, &t);
			/* the first block writes O (=), later ones accumulate */
			mm(a->avx, O, ldq, S, SLD, 1, a->v + ko, ldk, M, D, nk, kb0 != klo, TRI_K, t.di);
		}
	}
	for (int hh = 0; hh < group; hh++) {
		int h = g * group + hh;
		for (int r = 0; r < M; r++) {
			float inv = 1 / l[hh][r], *o = a->o + (((size_t)b * T + i0 + r) * Hq + h) * D;
#pragma omp simd
			for (int d = 0; d < D; d++) o[d] *= inv;
			a->lse_out[((size_t)b * T + i0 + r) * Hq + h] = m[hh][r] + logf(l[hh][r]);
		}
	}
}

void ops_attention_fast_forward(float *out, float *lse, const float *q, const float *k, const float *v,
				const int32_t *seg, int B, int T, int Hq, int Hkv, int D, float scale, int window,
				float softcap)
{
	attn_ctx a = {.q = q, .k = k, .v = v, .o = out, .lse_out = lse, .seg = seg, .T = T, .Hq = Hq,
		      .Hkv = Hkv, .D = D, .window = window, .NK = key_block(D), .avx = use_avx512(),
		      .scale = scale, .softcap = softcap};
	int nrb = (T + MQ - 1) / MQ;
	long ntask = (long)B * Hkv * nrb;
#pragma omp parallel
	{
		float kt[KT_FLOATS] __attribute__((aligned(64)));
		float S[MQ * SLD] __attribute__((aligned(64)));
		/* one task per (b, kv head, block of MQ rows); the block is cut at segment starts */
#pragma omp for schedule(dynamic, 1)
		for (long it = 0; it < ntask; it++) {
			int b = (int)(it / ((long)Hkv * nrb)), g = (int)(it / nrb % Hkv), tb = (int)(it % nrb);
			int t0 = tb * MQ, t1 = t0 + MQ < T ? t0 + MQ : T;
			const int32_t *sr = seg ? seg + (size_t)b * T : NULL;
			int s0 = 0;
			if (sr) {
				s0 = t0;
				while (s0 > 0 && sr[s0 - 1] == sr[t0]) s0--;
			}
			for (int i0 = t0; i0 < t1;) {
				int i1 = t1;
				if (sr) {
					if (i0 > t0) s0 = i0; /* a new segment starts at i0 */
					i1 = i0 + 1;
					while (i1 < t1 && sr[i1] == sr[i0]) i1++;
				}
				fwd_piece(&a, b, g, i0, i1, s0, kt, S);
				i0 = i1;
			}
		}
	}
}

/* ---- backward ------------------------------------------------------------------------------- */

/* Segment [s0, s1) of row b, kv head g: all of its query heads. */
static void bwd_segment(const attn_ctx *a, int b, int g, int s0, int s1, float *kt, float *vt, float *S, float *dP)
{
	int T = a->T, Hq = a->Hq, Hkv = a->Hkv, D = a->D, NK = a->NK, group = Hq / Hkv;
	long ldq = (long)Hq * D, ldk = (long)Hkv * D;
	bwd_tile t = {.window = a->window, .scale = a->scale, .softcap = a->softcap, .hstride = Hq};
	for (int kb0 = s0; kb0 < s1; kb0 += NK) {
		int nk = s1 - kb0 < NK ? s1 - kb0 : NK;
		size_t ko = (((size_t)b * T + kb0) * Hkv + g) * D;
		const float *Kb = a->k + ko, *Vb = a->v + ko;
		float *dKb = a->dk + ko, *dVb = a->dv + ko;
		pack_t(a->avx, kt, NK, Kb, ldk, nk, D);
		pack_t(a->avx, vt, NK, Vb, ldk, nk, D);
		/* query rows that see some key of the block: kb0 <= i < kb0 + nk - 1 + window */
		int qend = s1;
		if (a->window > 0 && kb0 + nk - 1 + a->window < qend) qend = kb0 + nk - 1 + a->window;
		int qfirst = s0 + (kb0 - s0) / MQ * MQ;
		for (int h = g * group; h < (g + 1) * group; h++) {
			for (int qb0 = qfirst; qb0 < qend; qb0 += MQ) {
				int M = s1 - qb0 < MQ ? s1 - qb0 : MQ;
				size_t qo = (((size_t)b * T + qb0) * Hq + h) * D, ro = ((size_t)b * T + qb0) * Hq + h;
				const float *Q = a->q + qo, *dO = a->dout + qo;
				int di = qb0 - kb0;
				mm(a->avx, S, SLD, Q, ldq, 1, kt, NK, M, nk, D, 0, TRI_N, di);
				mm(a->avx, dP, SLD, dO, ldq, 1, vt, NK, M, nk, D, 0, TRI_N, di);
				t.M = M;
				t.nk = nk;
				t.di = di;
				t.lse = a->lse + ro;
				t.delta = a->delta + ro;
				bwd_rows(a->avx, S, dP, &t);
				mm(a->avx, a->dq + qo, ldq, dP, SLD, 1, Kb, ldk, M, D, nk, 1, TRI_K, di);
				mm(a->avx, dKb, ldk, dP, 1, SLD, Q, ldq, nk, D, M, 1, TRI_K0, di);
				mm(a->avx, dVb, ldk, S, 1, SLD, dO, ldq, nk, D, M, 1, TRI_K0, di);
			}
		}
	}
}

size_t ops_attention_fast_scratch_size(int B, int T, int Hq, int Hkv, int D)
{
	(void)Hkv;
	(void)D;
	return (size_t)B * T * Hq;
}

void ops_attention_fast_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
				 const float *out, const float *lse, const float *q, const float *k, const float *v,
				 const int32_t *seg, int B, int T, int Hq, int Hkv, int D, float scale, int window,
				 float softcap)
{
	attn_ctx a = {.q = q, .k = k, .v = v, .dout = dout, .out = out, .lse = lse, .dq = dq, .dk = dk,
		      .dv = dv, .delta = scratch, .seg = seg, .T = T, .Hq = Hq, .Hkv = Hkv, .D = D,
		      .window = window, .NK = key_block(D), .avx = use_avx512(), .scale = scale,
		      .softcap = softcap};
	long nrows = (long)B * T * Hq, ntask = (long)B * Hkv * T;
#pragma omp parallel
	{
#pragma omp for schedule(static)
		for (long r = 0; r < nrows; r++) {
			const float *x = dout + (size_t)r * D, *y = out + (size_t)r * D;
			float s = 0;
			/* omp simd: a fixed vector-lane split of the sum, the same on every run */
#pragma omp simd reduction(+ : s)
			for (int d = 0; d < D; d++) s += x[d] * y[d];
			scratch[r] = s;
		}
		float kt[KT_FLOATS] __attribute__((aligned(64)));
		float vt[KT_FLOATS] __attribute__((aligned(64)));
		float S[MQ * SLD] __attribute__((aligned(64)));
		float dP[MQ * SLD] __attribute__((aligned(64)));
		/* one task per segment start: (b, g, t) with t the first token of a segment */
#pragma omp for schedule(dynamic, 1)
		for (long it = 0; it < ntask; it++) {
			int b = (int)(it / ((long)Hkv * T)), g = (int)(it / T % Hkv), s0 = (int)(it % T);
			const int32_t *sr = seg ? seg + (size_t)b * T : NULL;
			if (s0 > 0 && (!sr || sr[s0 - 1] == sr[s0])) continue;
			int s1 = T;
			if (sr) {
				s1 = s0 + 1;
				while (s1 < T && sr[s1] == sr[s0]) s1++;
			}
			bwd_segment(&a, b, g, s0, s1, kt, vt, S, dP);
		}
	}
}
