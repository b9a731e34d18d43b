/* ops_cpu.c - CPU implementation of libcommon/ops.h (owner: ops).
 *
 * The typed ops are written once, in the second half of this file, over `real`, and
 * instantiated twice by including this file into itself: for float (cblas_sgemm) and for
 * double (cblas_dgemm, names suffixed _f64). Every parallel loop writes disjoint outputs
 * and every reduction runs in a fixed order, so results do not depend on the OpenMP
 * schedule; the only thread-count dependence is inside OpenBLAS gemm. */
#if !defined(OPS_CPU_PASS)

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "cpufeat.h"
#include "ops.h"
#include "ops_attn.h"

/* Team mode (ops.h): a loop shared by the team of the enclosing region (orphaned `omp for`,
 * its barrier included) or, outside team mode, a parallel region of its own. */
static _Thread_local int ops_team_on;
void ops_team_begin(void) { ops_team_on = omp_in_parallel(); }
void ops_team_end(void) { ops_team_on = 0; }
#define PAR_FOR(...)                                                                               \
	do {                                                                                       \
		if (ops_team_on) {                                                                 \
			_Pragma("omp for schedule(static)") __VA_ARGS__                            \
		} else {                                                                           \
			_Pragma("omp parallel for schedule(static)") __VA_ARGS__                   \
		}                                                                                  \
	} while (0)

int ops_rope_inv_freq(float *inv_freq, const ops_rope_config *cfg, sft_error *err)
{
	int dim = cfg->head_dim;
	if (dim <= 0 || dim % 2)
		return sft_error_set(err, SFT_EXIT_USAGE, "rope: head_dim %d must be positive and even", dim);
	if (!(cfg->theta > 0))
		return sft_error_set(err, SFT_EXIT_USAGE, "rope: rope_theta must be positive");
	if (cfg->scaling != OPS_ROPE_DEFAULT && !(cfg->factor > 0))
		return sft_error_set(err, SFT_EXIT_USAGE, "rope: scaling factor must be positive");
	if (cfg->scaling == OPS_ROPE_LLAMA3 &&
	    (!(cfg->high_freq_factor > cfg->low_freq_factor) || !(cfg->low_freq_factor > 0) ||
	     !(cfg->original_max_position_embeddings > 0)))
		return sft_error_set(err, SFT_EXIT_USAGE,
				     "rope: llama3 scaling needs 0 < low_freq_factor < high_freq_factor "
				     "and original_max_position_embeddings > 0");
	if (cfg->scaling < OPS_ROPE_DEFAULT || cfg->scaling > OPS_ROPE_LLAMA3)
		return sft_error_set(err, SFT_EXIT_USAGE, "rope: unknown scaling type %d", cfg->scaling);
	/* transformers: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), all fp32.
	 * The fp32 power is taken correctly rounded (double pow, rounded once); torch's
	 * vectorized powf is within 1 ulp of it, glibc powf and numpy may differ by 1 ulp. */
	float base = (float)cfg->theta;
	for (int i = 0; i < dim / 2; i++) {
		float e = (float)(2 * i) / (float)dim;
		float p = (float)pow((double)base, (double)e);
		inv_freq[i] = 1.0f / p;
	}
	if (cfg->scaling == OPS_ROPE_LINEAR) {
		for (int i = 0; i < dim / 2; i++) inv_freq[i] = inv_freq[i] / (float)cfg->factor;
	} else if (cfg->scaling == OPS_ROPE_LLAMA3) {
		/* transformers _compute_llama3_parameters, tensor ops in fp32 */
		float factor = (float)cfg->factor;
		float lo = (float)cfg->low_freq_factor;
		float old = (float)cfg->original_max_position_embeddings;
		double low_wavelen = cfg->original_max_position_embeddings / cfg->low_freq_factor;
		double high_wavelen = cfg->original_max_position_embeddings / cfg->high_freq_factor;
		for (int i = 0; i < dim / 2; i++) {
			float f = inv_freq[i];
			/* torch evaluates `scalar / tensor` as reciprocal(tensor) * scalar */
			float wavelen = (1.0f / f) * (float)(2 * M_PI);
			float g = wavelen > (float)low_wavelen ? f / factor : f;
			if (!(wavelen < (float)high_wavelen) && !(wavelen > (float)low_wavelen)) {
				float smooth = ((1.0f / wavelen) * old - lo) / (float)(cfg->high_freq_factor -
										    cfg->low_freq_factor);
				g = (1.0f - smooth) * g / factor + smooth * g;
			}
			inv_freq[i] = g;
		}
	}
	return 0;
}

size_t ops_fused_ce_scratch_size(int C, int V)
{
	size_t vc = (size_t)(V <= OPS_CE_VFULL ? V : OPS_CE_VCHUNK);
	return (size_t)OPS_CE_ROWS * vc + 2 * (size_t)OPS_CE_ROWS * (size_t)C;
}

double ops_clip_scale(double total_norm, double max_norm)
{
	if (!(max_norm > 0)) return 1.0;
	double c = max_norm / (total_norm + 1e-6);
	return c < 1.0 ? c : 1.0;
}

/* ---- decoding ops (float only) ----------------------------------------------------------
 * ops_matmul_rows_forward: tiles of 4 W rows x up to 4 x rows. Each (W row, x row) pair has
 * its own accumulator, fed in k order (16 lanes, then a fixed reduction), whatever tile the
 * pair falls in: an output element depends on IN only. */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include "simd_exp.h"
#define OPS_HAVE_AVX512 1

/* The 16 sums of v[0..15] as one vector, each summed in exactly _mm512_reduce_add_ps's
 * order (lanes i + i+8, then + i+4, then + i+2, then + i+1; a + b == b + a in IEEE), so a
 * pair's result does not depend on which path reduced it. 15 adds and 30 shuffles instead
 * of 16 separate reductions. Lane 4k + j of the result holds the sum of v[4j + k]. */
__attribute__((target("avx512f"), always_inline)) static inline __m512 reduce16_avx512(const __m512 *v)
{
	__m512 x[8], z[4], r[2];
	for (int j = 0; j < 8; j++) /* [A lo256 + A hi256 | B lo256 + B hi256] */
		x[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], 0x44),
				     _mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], 0xEE));
	for (int j = 0; j < 4; j++) /* 128-bit blocks: [A s4 | B s4 | C s4 | D s4] */
		z[j] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * j], x[2 * j + 1], 0x88),
				     _mm512_shuffle_f32x4(x[2 * j], x[2 * j + 1], 0xDD));
	for (int j = 0; j < 2; j++) /* per block k: [v s2 (2 lanes) of z[2j] | of z[2j+1]] */
		r[j] = _mm512_add_ps(_mm512_shuffle_ps(z[2 * j], z[2 * j + 1], _MM_SHUFFLE(1, 0, 1, 0)),
				     _mm512_shuffle_ps(z[2 * j], z[2 * j + 1], _MM_SHUFFLE(3, 2, 3, 2)));
	return _mm512_add_ps(_mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(2, 0, 2, 0)),
			     _mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* One tile: nr (<= 4) rows of W from row o times nc (<= 4) rows of x from row n, over all
 * of k; pf (or NULL): npf rows of W, pfs rows apart from pf on, prefetched while this tile
 * computes. */
__attribute__((target("avx512f,fma"), always_inline)) static inline void
rows_tile_avx512(float *out, const float *x, const float *W, const float *bias, int nr, int nc,
		 int IN, int OUT, int o, int n, const float *pf, int npf, int pfs)
{
	const float *w0 = W + (size_t)o * IN, *w1 = W + (size_t)(o + (nr > 1)) * IN;
	const float *w2 = W + (size_t)(o + (nr > 2 ? 2 : 0)) * IN, *w3 = W + (size_t)(o + (nr > 3 ? 3 : 0)) * IN;
	const float *x0 = x + (size_t)n * IN, *x1 = x + (size_t)(n + (nc > 1)) * IN;
	const float *x2 = x + (size_t)(n + (nc > 2 ? 2 : 0)) * IN, *x3 = x + (size_t)(n + (nc > 3 ? 3 : 0)) * IN;
	__m512 a[4][4];
#pragma GCC unroll 4
	for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
		for (int c = 0; c < 4; c++) a[r][c] = _mm512_setzero_ps();
	int k = 0;
	for (; k + 16 <= IN; k += 16) {
		if (pf)
			for (int i = 0; i < npf; i++) _mm_prefetch((const char *)(pf + (size_t)i * pfs * IN + k), _MM_HINT_T0);
		__m512 wv[4] = {_mm512_loadu_ps(w0 + k), _mm512_loadu_ps(w1 + k), _mm512_loadu_ps(w2 + k),
				_mm512_loadu_ps(w3 + k)};
		__m512 xv[4] = {_mm512_loadu_ps(x0 + k), _mm512_loadu_ps(x1 + k), _mm512_loadu_ps(x2 + k),
				_mm512_loadu_ps(x3 + k)};
#pragma GCC unroll 4
		for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
				if (r < nr && c < nc) a[r][c] = _mm512_fmadd_ps(wv[r], xv[c], a[r][c]);
	}
	if (k < IN) {
		__mmask16 m = (__mmask16)((1u << (IN - k)) - 1);
		__m512 wv[4] = {_mm512_maskz_loadu_ps(m, w0 + k), _mm512_maskz_loadu_ps(m, w1 + k),
				_mm512_maskz_loadu_ps(m, w2 + k), _mm512_maskz_loadu_ps(m, w3 + k)};
		__m512 xv[4] = {_mm512_maskz_loadu_ps(m, x0 + k), _mm512_maskz_loadu_ps(m, x1 + k),
				_mm512_maskz_loadu_ps(m, x2 + k), _mm512_maskz_loadu_ps(m, x3 + k)};
#pragma GCC unroll 4
		for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
				if (r < nr && c < nc) a[r][c] = _mm512_fmadd_ps(wv[r], xv[c], a[r][c]);
	}
	if (nr == 4 && nc == 4) {
		/* lane 4c + r = pair (W row o + r, x row n + c): block c is out row n + c, o..o+3 */
		__m512 sums = reduce16_avx512(&a[0][0]);
		__m128 b4 = bias ? _mm_loadu_ps(bias + o) : _mm_setzero_ps();
		_mm_storeu_ps(out + (size_t)n * OUT + o, _mm_add_ps(_mm512_extractf32x4_ps(sums, 0), b4));
		_mm_storeu_ps(out + (size_t)(n + 1) * OUT + o, _mm_add_ps(_mm512_extractf32x4_ps(sums, 1), b4));
		_mm_storeu_ps(out + (size_t)(n + 2) * OUT + o, _mm_add_ps(_mm512_extractf32x4_ps(sums, 2), b4));
		_mm_storeu_ps(out + (size_t)(n + 3) * OUT + o, _mm_add_ps(_mm512_extractf32x4_ps(sums, 3), b4));
		return;
	}
	for (int r = 0; r < nr; r++)
		for (int c = 0; c < nc; c++)
			out[(size_t)(n + c) * OUT + o + r] = _mm512_reduce_add_ps(a[r][c]) + (bias ? bias[o + r] : 0.0f);
}

/* nr, nc as compile-time constants in the common cases, so the tile is fully unrolled */
__attribute__((target("avx512f,fma"))) static void rows_block_avx512(float *out, const float *x, const float *W,
								    const float *bias, int N, int IN, int OUT,
								    int o0, int o1)
{
	if (N == 1) {
		/* One row of W after the other: a single sequential stream that the hardware
		 * prefetchers follow (4 interleaved rows of ~2 KiB each are 4 short streams they
		 * barely ramp up on: 45 -> 26 ms per SmolLM2 token on one core). Same per-pair
		 * accumulation as the 4x4 tiles, so the same bits. */
		for (int o = o0; o < o1; o++) rows_tile_avx512(out, x, W, bias, 1, 1, IN, OUT, o, 0, NULL, 0, 0);
		return;
	}
	/* Tiles of 4 W rows x 4 x rows over the whole of k: x rows (N * IN floats, 36 KB at
	 * N 16 and IN 576) are read from L1/L2 once per tile. (Chunking k to keep them in L1,
	 * with the accumulators parked between chunks, was 8% slower at N 16: the parking
	 * costs more than the L2 reads.) */
	int nt = (N + 3) / 4; /* x tiles per row group */
	for (int o = o0; o < o1; o += 4) {
		int nr = o1 - o < 4 ? o1 - o : 4;
		/* The next 4 rows of W are prefetched while this group computes, spread over its x
		 * tiles (tile j: rows j, j + nt, ...): one prefetch per k step instead of a burst
		 * of 4 in the first tile. 58 -> 72 GFLOP/s on one core at N 16, W from memory. */
		const float *next = o + 8 <= OUT ? W + (size_t)(o + 4) * IN : NULL;
		for (int n = 0, j = 0; n < N; n += 4, j++) {
			int nc = N - n < 4 ? N - n : 4;
			const float *pf = next && j < 4 ? next + (size_t)j * IN : NULL;
			int npf = pf ? (4 - j + nt - 1) / nt : 0;
			if (nr == 4 && nc == 4) rows_tile_avx512(out, x, W, bias, 4, 4, IN, OUT, o, n, pf, npf, nt);
			else if (nr == 4 && nc == 1) rows_tile_avx512(out, x, W, bias, 4, 1, IN, OUT, o, n, pf, npf, nt);
			else if (nr == 4 && nc == 2) rows_tile_avx512(out, x, W, bias, 4, 2, IN, OUT, o, n, pf, npf, nt);
			else if (nr == 4 && nc == 3) rows_tile_avx512(out, x, W, bias, 4, 3, IN, OUT, o, n, pf, npf, nt);
			else rows_tile_avx512(out, x, W, bias, nr, nc, IN, OUT, o, n, pf, npf, nt);
		}
	}
}
#endif

/* Portable path: 16 partial sums per pair in k order, then a fixed pairwise reduction. */
static void rows_block_generic(float *out, const float *x, const float *W, const float *bias, int N, int IN,
			       int OUT, int o0, int o1)
{
	for (int o = o0; o < o1; o++) {
		const float *w = W + (size_t)o * IN;
		for (int n = 0; n < N; n++) {
			const float *xr = x + (size_t)n * IN;
			float acc[16] = {0};
			int k = 0;
			for (; k + 16 <= IN; k += 16)
				for (int l = 0; l < 16; l++) acc[l] += w[k + l] * xr[k + l];
			for (int l = 0; k + l < IN; l++) acc[l] += w[k + l] * xr[k + l];
			for (int s = 8; s > 0; s /= 2)
				for (int l = 0; l < s; l++) acc[l] += acc[l + s];
			out[(size_t)n * OUT + o] = acc[0] + (bias ? bias[o] : 0.0f);
		}
	}
}


static void rows_block(int fast, float *out, const float *x, const float *W, const float *bias, int N, int IN,
		       int OUT, int o0, int o1)
{
#ifdef OPS_HAVE_AVX512
	if (fast) {
		rows_block_avx512(out, x, W, bias, N, IN, OUT, o0, o1);
		return;
	}
#endif
	(void)fast;
	rows_block_generic(out, x, W, bias, N, IN, OUT, o0, o1);
}

void ops_matmul_rows_forward(float *out, const float *x, const float *W, const float *bias, int N, int IN,
			     int OUT)
{
	/* W rows per work item (a multiple of the 4-row tile): 64, or 16 where blocks of 64
	 * would not split evenly over the threads (SmolLM2's 576 and 192 rows on 2 threads) */
	int nt = ops_team_on ? omp_get_num_threads() : omp_get_max_threads();
	int RB = (OUT / 64) % nt == 0 || OUT / 64 >= 8 * nt ? 64 : 16;
	int nb = (OUT + RB - 1) / RB, fast = sft_cpu_avx512();
	PAR_FOR(for (int b = 0; b < nb; b++) {
		int o0 = b * RB, o1 = o0 + RB < OUT ? o0 + RB : OUT;
		rows_block(fast, out, x, W, bias, N, IN, OUT, o0, o1);
	});
}

/* One query row of one head over its cache: blocked online softmax (as attn_fwd_row). */
__attribute__((always_inline)) static inline void attn_kv_row(float *o, const float *qr, const float *K,
							      const float *V, int lo, int t, int Hkv, int g,
							      int D, float scale, float softcap)
{
	enum { KB = 64 };
	float sc[KB];
	float m = -INFINITY, l = 0;
	for (int d = 0; d < D; d++) o[d] = 0;
	for (int s0 = lo; s0 <= t; s0 += KB) {
		int s1 = s0 + KB <= t + 1 ? s0 + KB : t + 1;
		float bm = -INFINITY;
		for (int s = s0; s < s1; s++) {
			const float *kr = K + ((size_t)s * Hkv + g) * D;
			float dot = 0;
#pragma omp simd reduction(+ : dot)
			for (int d = 0; d < D; d++) dot += qr[d] * kr[d];
			float c = scale * dot;
			if (softcap > 0) c = softcap * tanhf(c / softcap);
			sc[s - s0] = c;
			if (c > bm) bm = c;
		}
		if (bm > m) {
			float corr = expf(m - bm);
			l *= corr;
#pragma omp simd
			for (int d = 0; d < D; d++) o[d] *= corr;
			m = bm;
		}
		for (int s = s0; s < s1; s++) {
			const float *vr = V + ((size_t)s * Hkv + g) * D;
			float p = expf(sc[s - s0] - m);
			l += p;
#pragma omp simd
			for (int d = 0; d < D; d++) o[d] += p * vr[d];
		}
	}
	float inv = 1 / l;
	for (int d = 0; d < D; d++) o[d] *= inv;
}

#ifdef OPS_HAVE_AVX512
/* Online softmax: a block whose maximum bm exceeds the running maximum m rescales the
 * running sum l and the nv accumulator vectors by exp(m - bm). */
__attribute__((target("avx512f"), always_inline)) static inline void online_rescale_avx512(float bm, float *m, float *l,
											  __m512 *acc, int nv)
{
	if (!(bm > *m)) return;
	float corr = expf(*m - bm);
	*l *= corr;
	__m512 cv = _mm512_set1_ps(corr);
	for (int j = 0; j < nv; j++) acc[j] = _mm512_mul_ps(acc[j], cv);
	*m = bm;
}

/* The same blocked online softmax with D in 16-lane vectors (D % 16 == 0, D <= 256; the
 * output row stays in registers), a block's 64 weights from simd_exp512 (relative error
 * < 2e-7) and its sums in a fixed order: a row still depends only on its query and cache.
 * Other D: the scalar-exp kernel above. (perf, SmolLM2 batch 16: 16% of a decode step in
 * scalar expf and per-key loops before; see docs/perf/infer_cpu.md.) */
__attribute__((target("avx512f,fma"))) static void attn_kv_row_avx512(float *o, const float *qr, const float *K,
								       const float *V, int lo, int t, int Hkv,
								       int g, int D, float scale, float softcap)
{
	enum { KB = 64, MAXV = 16 };
	if (D % 16 != 0 || D > 16 * MAXV) {
		attn_kv_row(o, qr, K, V, lo, t, Hkv, g, D, scale, softcap);
		return;
	}
	int nv = D / 16;
	__m512 q[MAXV], acc[MAXV];
	for (int j = 0; j < nv; j++) {
		q[j] = _mm512_loadu_ps(qr + 16 * j);
		acc[j] = _mm512_setzero_ps();
	}
	float sc[KB];
	float m = -INFINITY, l = 0;
	size_t stride = (size_t)Hkv * D;
	const __m512i key_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
	for (int s0 = lo; s0 <= t; s0 += KB) {
		int nb = t + 1 - s0 < KB ? t + 1 - s0 : KB;
		const float *kb = K + (size_t)s0 * stride + (size_t)g * D;
		int s = 0;
		for (; s + 16 <= nb; s += 16) { /* 16 keys: one transposed reduction, same bits */
			__m512 d[16];
			for (int i = 0; i < 16; i++) {
				const float *kr = kb + (size_t)(s + i) * stride;
				d[i] = _mm512_mul_ps(q[0], _mm512_loadu_ps(kr));
				for (int j = 1; j < nv; j++) d[i] = _mm512_fmadd_ps(q[j], _mm512_loadu_ps(kr + 16 * j), d[i]);
			}
			/* reduce16_avx512 puts key 4j + k in lane 4k + j: back to key order */
			__m512 sums = _mm512_permutexvar_ps(key_order, reduce16_avx512(d));
			_mm512_storeu_ps(sc + s, _mm512_mul_ps(_mm512_set1_ps(scale), sums));
		}
		for (; s < nb; s++) {
			const float *kr = kb + (size_t)s * stride;
			__m512 d0 = _mm512_mul_ps(q[0], _mm512_loadu_ps(kr));
			for (int j = 1; j < nv; j++) d0 = _mm512_fmadd_ps(q[j], _mm512_loadu_ps(kr + 16 * j), d0);
			sc[s] = scale * _mm512_reduce_add_ps(d0);
		}
		if (softcap > 0)
			for (int i = 0; i < nb; i++) sc[i] = softcap * tanhf(sc[i] / softcap);
		int nw = (nb + 15) / 16;
		__m512 mx = _mm512_set1_ps(-INFINITY);
		for (int w = 0; w < nw; w++) {
			__mmask16 mk = nb - 16 * w >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nb - 16 * w)) - 1);
			mx = _mm512_mask_max_ps(mx, mk, mx, _mm512_maskz_loadu_ps(mk, sc + 16 * w));
		}
		online_rescale_avx512(_mm512_reduce_max_ps(mx), &m, &l, acc, nv);
		__m512 mv = _mm512_set1_ps(m), lsum = _mm512_setzero_ps();
		for (int w = 0; w < nw; w++) {
			__mmask16 mk = nb - 16 * w >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nb - 16 * w)) - 1);
			__m512 pw = _mm512_maskz_mov_ps(mk, simd_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, sc + 16 * w), mv)));
			_mm512_storeu_ps(sc + 16 * w, pw);
			lsum = _mm512_add_ps(lsum, pw);
		}
		l += _mm512_reduce_add_ps(lsum);
		const float *vb = V + (size_t)s0 * stride + (size_t)g * D;
		for (int s = 0; s < nb; s++) {
			const float *vr = vb + (size_t)s * stride;
			__m512 pv = _mm512_set1_ps(sc[s]);
			for (int j = 0; j < nv; j++) acc[j] = _mm512_fmadd_ps(pv, _mm512_loadu_ps(vr + 16 * j), acc[j]);
		}
	}
	__m512 inv = _mm512_set1_ps(1 / l);
	for (int j = 0; j < nv; j++) _mm512_storeu_ps(o + 16 * j, _mm512_mul_ps(acc[j], inv));
}
#endif

static void attn_kv_row_generic(float *o, const float *qr, const float *K, const float *V, int lo, int t,
				int Hkv, int g, int D, float scale, float softcap)
{
	attn_kv_row(o, qr, K, V, lo, t, Hkv, g, D, scale, softcap);
}

void ops_attention_kv_forward(float *out, const float *q, const float *const *K, const float *const *V,
			      const int32_t *seq, const int32_t *pos, int n, int Hq, int Hkv, int D, float scale,
			      int window, float softcap)
{
	int group = Hq / Hkv, fast = sft_cpu_avx512();
	long rows = (long)n * Hq;
	PAR_FOR(for (long idx = 0; idx < rows; idx++) {
		int r = (int)(idx / Hq), h = (int)(idx % Hq);
		int t = pos[r], lo = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
		const float *Kc = K[seq[r]], *Vc = V[seq[r]];
#ifdef OPS_HAVE_AVX512
		if (fast) {
			attn_kv_row_avx512(out + (size_t)idx * D, q + (size_t)idx * D, Kc, Vc, lo, t, Hkv, h / group, D,
					   scale, softcap);
			continue;
		}
#endif
		(void)fast;
		attn_kv_row_generic(out + (size_t)idx * D, q + (size_t)idx * D, Kc, Vc, lo, t, Hkv, h / group, D, scale,
				    softcap);
	});
}

/* ---- prefill attention: a chunk of one sequence's queries over its cache ----------------
 * K is packed once per call into blocks of 16 keys transposed (D, 16), so the scores of 16
 * keys are D broadcast FMAs with no horizontal sums, and the softmax weights of a block come
 * from one vector exp. */

size_t ops_attention_prefill_scratch_size(int T, int Hkv, int D)
{
	return (size_t)Hkv * (size_t)((T + 15) / 16) * 16 * (size_t)D;
}

#ifdef OPS_HAVE_AVX512
__attribute__((target("avx512f,fma"))) static void attn_prefill_row_avx512(float *o, const float *qr, const float *KT,
									    const float *V, int lo, int t, int Hkv,
									    int g, int D, float scale)
{
	enum { MAXD = 256 };
	__m512 acc[MAXD / 16];
	int nd = D / 16;
	for (int j = 0; j < nd; j++) acc[j] = _mm512_setzero_ps();
	float m = -INFINITY, l = 0;
	float pj[16];
	for (int b = lo / 16; b <= t / 16; b++) {
		const float *kt = KT + (size_t)b * 16 * D; // (D, 16)
		__m512 sc = _mm512_setzero_ps();
		for (int d = 0; d < D; d++) sc = _mm512_fmadd_ps(_mm512_set1_ps(qr[d]), _mm512_loadu_ps(kt + (size_t)d * 16), sc);
		sc = _mm512_mul_ps(sc, _mm512_set1_ps(scale));
		int s0 = b * 16, a0 = lo > s0 ? lo - s0 : 0, a1 = t - s0 + 1 < 16 ? t - s0 + 1 : 16;
		__mmask16 valid = (__mmask16)(((1u << a1) - 1) & ~((1u << a0) - 1));
		online_rescale_avx512(_mm512_mask_reduce_max_ps(valid, sc), &m, &l, acc, nd);
		__m512 p = _mm512_maskz_mov_ps(valid, simd_exp512(_mm512_sub_ps(sc, _mm512_set1_ps(m))));
		l += _mm512_reduce_add_ps(p);
		_mm512_storeu_ps(pj, p);
		for (int s = a0; s < a1; s++) {
			const float *vr = V + ((size_t)(s0 + s) * Hkv + g) * D;
			__m512 pv = _mm512_set1_ps(pj[s]);
			for (int j = 0; j < nd; j++) acc[j] = _mm512_fmadd_ps(pv, _mm512_loadu_ps(vr + 16 * j), acc[j]);
		}
	}
	__m512 inv = _mm512_set1_ps(1 / l);
	for (int j = 0; j < nd; j++) _mm512_storeu_ps(o + 16 * j, _mm512_mul_ps(acc[j], inv));
}
#endif

void ops_attention_prefill_forward(float *out, const float *q, const float *K, const float *V, int p0, int n, int Hq,
				   int Hkv, int D, float scale, int window, float softcap, float *scratch)
{
	int group = Hq / Hkv;
#ifdef OPS_HAVE_AVX512
	if (sft_cpu_avx512() && softcap <= 0 && D % 16 == 0 && D <= 256) {
		int T = p0 + n, nb = (T + 15) / 16;
#pragma omp parallel
		{
#pragma omp for collapse(2) schedule(static)
			for (int g = 0; g < Hkv; g++)
				for (int b = 0; b < nb; b++) {
					float *kt = scratch + ((size_t)g * nb + b) * 16 * D; // (D, 16)
					for (int j = 0; j < 16; j++) {
						int s = b * 16 + j;
						if (s >= T) { /* past the last key: zeros (masked anyway) */
							for (int d = 0; d < D; d++) kt[(size_t)d * 16 + j] = 0.0f;
							continue;
						}
						const float *kr = K + ((size_t)s * Hkv + g) * D;
						for (int d = 0; d < D; d++) kt[(size_t)d * 16 + j] = kr[d];
					}
				}
#pragma omp for schedule(dynamic, 4)
			for (long idx = 0; idx < (long)n * Hq; idx++) {
				int i = (int)(idx / Hq), h = (int)(idx % Hq), g = h / group, t = p0 + i;
				int lo = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
				attn_prefill_row_avx512(out + (size_t)idx * D, q + (size_t)idx * D,
							scratch + (size_t)g * nb * 16 * D, V, lo, t, Hkv, g, D, scale);
			}
		}
		return;
	}
#endif
	(void)scratch;
#pragma omp parallel for schedule(dynamic, 4)
	for (long idx = 0; idx < (long)n * Hq; idx++) {
		int i = (int)(idx / Hq), h = (int)(idx % Hq), t = p0 + i;
		int lo = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
		attn_kv_row_generic(out + (size_t)idx * D, q + (size_t)idx * D, K, V, lo, t, Hkv, h / group, D,
				    scale, softcap);
	}
}

/* instantiate the typed ops */
#define OPS_CPU_PASS 1
#define real float
#define FN(name) name
#define GEMM cblas_sgemm
#define EXP expf
#define LOG logf
#define SQRT sqrtf
#define TANH tanhf
#include "ops_cpu.c"
#undef real
#undef FN
#undef GEMM
#undef EXP
#undef LOG
#undef SQRT
#undef TANH
#define real double
#define FN(name) name##_f64
#define GEMM cblas_dgemm
#define EXP exp
#define LOG log
#define SQRT sqrt
#define TANH tanh
#include "ops_cpu.c"

#else /* OPS_CPU_PASS: typed implementation, included twice */

/* acc[c] += sum_n a[n,c] (* b[n,c] * r[n] when b is given), rows summed in order per
 * column; column blocks in parallel, rows streamed contiguously. */
static void FN(colsum_acc)(real *acc, const real *a, const real *b, const real *r, int N, int C)
{
	enum { CB = 64 };
	int nb = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static)
	for (int blk = 0; blk < nb; blk++) {
		int c0 = blk * CB, w = c0 + CB <= C ? CB : C - c0;
		real s[CB] = {0};
		for (int n = 0; n < N; n++) {
			const real *ar = a + (size_t)n * C + c0;
			if (b) {
				const real *br = b + (size_t)n * C + c0;
				real rn = r[n];
				for (int c = 0; c < w; c++) s[c] += ar[c] * br[c] * rn;
			} else {
				for (int c = 0; c < w; c++) s[c] += ar[c];
			}
		}
		for (int c = 0; c < w; c++) acc[c0 + c] += s[c];
	}
}

/* ---- linear ---------------------------------------------------------------------------- */

void FN(ops_matmul_forward)(real *out, const real *x, const real *W, const real *bias, int N,
			    int IN, int OUT)
{
	if (bias) {
#pragma omp parallel for schedule(static)
		for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OUT, bias, sizeof(real) * OUT);
	}
	GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, N, OUT, IN, 1, x, IN, W, IN, bias ? 1 : 0,
	     out, OUT);
}

void FN(ops_matmul_backward)(real *dx, real *dW, real *db, const real *dout, const real *x,
			     const real *W, int N, int IN, int OUT)
{
	if (dx) GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IN, OUT, 1, dout, OUT, W, IN, 1, dx, IN);
	if (dW) GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, N, 1, dout, OUT, x, IN, 1, dW, IN);
	if (db) FN(colsum_acc)(db, dout, NULL, NULL, N, OUT);
}

/* ---- embedding ------------------------------------------------------------------------- */

void FN(ops_embedding_forward)(real *out, const int32_t *ids, const real *wte, real scale, int N,
			       int C)
{
	PAR_FOR(for (int n = 0; n < N; n++) {
		const real *e = wte + (size_t)ids[n] * C;
		real *o = out + (size_t)n * C;
		for (int c = 0; c < C; c++) o[c] = e[c] * scale;
	});
}

void FN(ops_embedding_backward)(real *dwte, const real *dout, const int32_t *ids, real scale,
				int N, int C)
{
	/* Parallel over channel blocks, tokens in order inside each: no two threads write the
	 * same element, and each element sums its tokens in token order. */
	enum { CB = 64 };
	int nb = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static)
	for (int b = 0; b < nb; b++) {
		int c0 = b * CB, c1 = c0 + CB < C ? c0 + CB : C;
		for (int n = 0; n < N; n++) {
			real *d = dwte + (size_t)ids[n] * C;
			const real *g = dout + (size_t)n * C;
			for (int c = c0; c < c1; c++) d[c] += g[c] * scale;
		}
	}
}

/* ---- rmsnorm --------------------------------------------------------------------------- */

void FN(ops_rmsnorm_forward)(real *out, real *rstd, const real *x, const real *w, real w_offset,
			     real eps, int N, int C)
{
	PAR_FOR(for (int n = 0; n < N; n++) {
		const real *xr = x + (size_t)n * C;
		real *o = out + (size_t)n * C;
		real ss = 0;
		for (int c = 0; c < C; c++) ss += xr[c] * xr[c];
		real r = 1 / SQRT(ss / C + eps);
		for (int c = 0; c < C; c++) o[c] = (xr[c] * r) * (w_offset + w[c]);
		if (rstd) rstd[n] = r;
	});
}

void FN(ops_rmsnorm_backward)(real *dx, real *dw, const real *dout, const real *x, const real *w,
			      const real *rstd, real w_offset, int N, int C)
{
	if (dx) {
		/* y = xhat * g_w, xhat = x * r: dx = r * (dxhat - xhat * mean(dxhat * xhat)) */
#pragma omp parallel for schedule(static)
		for (int n = 0; n < N; n++) {
			const real *xr = x + (size_t)n * C, *d = dout + (size_t)n * C;
			real *o = dx + (size_t)n * C;
			real r = rstd[n], dot = 0;
			for (int c = 0; c < C; c++) dot += d[c] * (w_offset + w[c]) * xr[c] * r;
			dot /= C;
			for (int c = 0; c < C; c++)
				o[c] += r * (d[c] * (w_offset + w[c]) - xr[c] * r * dot);
		}
	}
	if (dw) FN(colsum_acc)(dw, dout, x, rstd, N, C);
}

/* ---- rope ------------------------------------------------------------------------------ */

/* cos/sin of the angle for position p and frequency f. The float path forms the angle in
 * fp32 exactly as transformers does (inv_freq @ position_ids in fp32), then rounds the
 * accurate cos/sin of that fp32 angle. */
static inline void FN(rope_cs)(int32_t p, float f, real *c, real *s)
{
	real ang = (real)((real)p * (real)f);
	*c = (real)cos((double)ang);
	*s = (real)sin((double)ang);
}

void FN(ops_rope_forward)(real *out, const real *x, const int32_t *pos, const float *inv_freq,
			  int N, int H, int D)
{
	int half = D / 2;
	PAR_FOR(for (int n = 0; n < N; n++) {
		for (int i = 0; i < half; i++) {
			real c, s;
			FN(rope_cs)(pos[n], inv_freq[i], &c, &s);
			for (int h = 0; h < H; h++) {
				size_t o = ((size_t)n * H + h) * D;
				real a = x[o + i], b = x[o + i + half];
				out[o + i] = a * c - b * s;
				out[o + i + half] = b * c + a * s;
			}
		}
	});
}

void FN(ops_rope_backward)(real *dx, const real *dout, const int32_t *pos, const float *inv_freq,
			   int N, int H, int D)
{
	int half = D / 2;
#pragma omp parallel for schedule(static)
	for (int n = 0; n < N; n++) {
		for (int i = 0; i < half; i++) {
			real c, s;
			FN(rope_cs)(pos[n], inv_freq[i], &c, &s);
			for (int h = 0; h < H; h++) {
				size_t o = ((size_t)n * H + h) * D;
				real a = dout[o + i], b = dout[o + i + half];
				dx[o + i] += a * c + b * s;
				dx[o + i + half] += b * c - a * s;
			}
		}
	}
}

/* ---- attention ------------------------------------------------------------------------- */

/* First key index query t may attend to (segment run start, window). */
static inline int FN(attn_lo)(const int32_t *segrow, int t, int window)
{
	int lo = 0;
	if (segrow) {
		lo = t;
		while (lo > 0 && segrow[lo - 1] == segrow[t]) lo--;
	}
	if (window > 0 && t - window + 1 > lo) lo = t - window + 1;
	return lo;
}

/* Last query index that may attend to key s. */
static inline int FN(attn_hi)(const int32_t *segrow, int s, int T, int window)
{
	int hi = T - 1;
	if (segrow) {
		hi = s;
		while (hi < T - 1 && segrow[hi + 1] == segrow[s]) hi++;
	}
	if (window > 0 && s + window - 1 < hi) hi = s + window - 1;
	return hi;
}

static inline real FN(dot)(const real *a, const real *b, int D)
{
	real s = 0;
	/* omp simd: a fixed vector-lane split of the sum, the same on every run */
#pragma omp simd reduction(+ : s)
	for (int d = 0; d < D; d++) s += a[d] * b[d];
	return s;
}

/* Logit of (q, k) after scale and optional softcap; *dfac gets d logit / d (scale q.k). */
static inline real FN(attn_logit)(const real *q, const real *k, int D, real scale, real softcap,
				  real *dfac)
{
	real c = scale * FN(dot)(q, k, D);
	if (softcap > 0) {
		real th = TANH(c / softcap);
		if (dfac) *dfac = 1 - th * th;
		return softcap * th;
	}
	if (dfac) *dfac = 1;
	return c;
}

typedef struct {
	const real *q, *k, *v, *dout, *out, *lse;
	const int32_t *seg;
	int T, Hq, Hkv, D, window;
	real scale, softcap;
} FN(attn_args);

/* Forward for query row idx = (b*T + t)*Hq + h: blocked online softmax into o. */
static void FN(attn_fwd_row)(const FN(attn_args) *a, long idx, real *out, real *lse)
{
	enum { KB = 64 }; /* keys per block of the online softmax */
	int T = a->T, Hq = a->Hq, Hkv = a->Hkv, D = a->D;
	int h = (int)(idx % Hq), t = (int)((idx / Hq) % T), b = (int)(idx / ((long)Hq * T));
	int g = h / (Hq / Hkv);
	const int32_t *segrow = a->seg ? a->seg + (size_t)b * T : NULL;
	const real *qr = a->q + (size_t)idx * D;
	real *o = out + (size_t)idx * D;
	int lo = FN(attn_lo)(segrow, t, a->window);
	real sc[KB];
	real m = -INFINITY, l = 0;
	for (int d = 0; d < D; d++) o[d] = 0;
	for (int s0 = lo; s0 <= t; s0 += KB) {
		int s1 = s0 + KB <= t + 1 ? s0 + KB : t + 1;
		real bm = -INFINITY;
		for (int s = s0; s < s1; s++) {
			const real *kr = a->k + (((size_t)b * T + s) * Hkv + g) * D;
			real c = FN(attn_logit)(qr, kr, D, a->scale, a->softcap, NULL);
			sc[s - s0] = c;
			if (c > bm) bm = c;
		}
		if (bm > m) { /* rescale what was accumulated under the old max */
			real corr = EXP(m - bm);
			l *= corr;
#pragma omp simd
			for (int d = 0; d < D; d++) o[d] *= corr;
			m = bm;
		}
		for (int s = s0; s < s1; s++) {
			const real *vr = a->v + (((size_t)b * T + s) * Hkv + g) * D;
			real p = EXP(sc[s - s0] - m);
			l += p;
#pragma omp simd
			for (int d = 0; d < D; d++) o[d] += p * vr[d];
		}
	}
	real inv = 1 / l;
	for (int d = 0; d < D; d++) o[d] *= inv;
	lse[idx] = m + LOG(l);
}

/* Backward pass 1 for query row idx: delta = dout.out (saved), dq. */
static void FN(attn_bwd_q_row)(const FN(attn_args) *a, long idx, real *dq, real *delta)
{
	int T = a->T, Hq = a->Hq, Hkv = a->Hkv, D = a->D;
	int h = (int)(idx % Hq), t = (int)((idx / Hq) % T), b = (int)(idx / ((long)Hq * T));
	int g = h / (Hq / Hkv);
	const int32_t *segrow = a->seg ? a->seg + (size_t)b * T : NULL;
	size_t qo = (size_t)idx * D;
	const real *qr = a->q + qo, *dor = a->dout + qo;
	real *dqr = dq + qo;
	real dl = FN(dot)(dor, a->out + qo, D);
	delta[idx] = dl;
	real L = a->lse[idx];
	int lo = FN(attn_lo)(segrow, t, a->window);
	for (int s = lo; s <= t; s++) {
		size_t ko = (((size_t)b * T + s) * Hkv + g) * D;
		real fac;
		real p = EXP(FN(attn_logit)(qr, a->k + ko, D, a->scale, a->softcap, &fac) - L);
		real ds = p * (FN(dot)(dor, a->v + ko, D) - dl) * fac * a->scale;
#pragma omp simd
		for (int d = 0; d < D; d++) dqr[d] += ds * a->k[ko + d];
	}
}

/* Backward pass 2 for key row idx = (b*T + s)*Hkv + g: dk, dv summed over the group's
 * query heads and the queries that see this key, in a fixed order. */
static void FN(attn_bwd_kv_row)(const FN(attn_args) *a, long idx, real *dk, real *dv,
					   const real *delta)
{
	int T = a->T, Hq = a->Hq, Hkv = a->Hkv, D = a->D, group = Hq / Hkv;
	int g = (int)(idx % Hkv), s = (int)((idx / Hkv) % T), b = (int)(idx / ((long)Hkv * T));
	const int32_t *segrow = a->seg ? a->seg + (size_t)b * T : NULL;
	size_t ko = (size_t)idx * D;
	const real *kr = a->k + ko, *vr = a->v + ko;
	real *dkr = dk + ko, *dvr = dv + ko;
	int hi = FN(attn_hi)(segrow, s, T, a->window);
	for (int h = g * group; h < (g + 1) * group; h++) {
		for (int t = s; t <= hi; t++) {
			size_t ri = ((size_t)b * T + t) * Hq + h;
			const real *qr = a->q + ri * D, *dor = a->dout + ri * D;
			real fac;
			real p = EXP(FN(attn_logit)(qr, kr, D, a->scale, a->softcap, &fac) - a->lse[ri]);
			real ds = p * (FN(dot)(dor, vr, D) - delta[ri]) * fac * a->scale;
#pragma omp simd
			for (int d = 0; d < D; d++) {
				dvr[d] += p * dor[d];
				dkr[d] += ds * qr[d];
			}
		}
	}
}

void FN(ops_attention_forward)(real *out, real *lse, const real *q, const real *k, const real *v,
			       const int32_t *seg, int B, int T, int Hq, int Hkv, int D, real scale,
			       int window, real softcap)
{
	if (sizeof(real) == sizeof(float)) { /* float: the tiled kernels of ops_attn.c */
		ops_attention_fast_forward((float *)out, (float *)lse, (const float *)q, (const float *)k,
					   (const float *)v, seg, B, T, Hq, Hkv, D, (float)scale, window,
					   (float)softcap);
		return;
	}
	FN(attn_args) a = {.q = q, .k = k, .v = v, .seg = seg, .T = T, .Hq = Hq, .Hkv = Hkv,
			   .D = D, .window = window, .scale = scale, .softcap = softcap};
	long total = (long)B * T * Hq;
#pragma omp parallel for schedule(static, 1)
	for (long idx = 0; idx < total; idx++) FN(attn_fwd_row)(&a, idx, out, lse);
}

void FN(ops_attention_backward)(real *dq, real *dk, real *dv, real *scratch, const real *dout,
				const real *out, const real *lse, const real *q, const real *k,
				const real *v, const int32_t *seg, int B, int T, int Hq, int Hkv,
				int D, real scale, int window, real softcap)
{
	if (sizeof(real) == sizeof(float)) { /* float: the tiled kernels of ops_attn.c */
		ops_attention_fast_backward((float *)dq, (float *)dk, (float *)dv, (float *)scratch,
					    (const float *)dout, (const float *)out, (const float *)lse,
					    (const float *)q, (const float *)k, (const float *)v, seg, B, T, Hq,
					    Hkv, D, (float)scale, window, (float)softcap);
		return;
	}
	FN(attn_args) a = {.q = q, .k = k, .v = v, .dout = dout, .out = out, .lse = lse,
			   .seg = seg, .T = T, .Hq = Hq, .Hkv = Hkv, .D = D, .window = window,
			   .scale = scale, .softcap = softcap};
	/* pass 1, per query row (dq is private to the row); pass 2, per key row (dk, dv) */
	long total = (long)B * T * Hq, ktotal = (long)B * T * Hkv;
#pragma omp parallel for schedule(static, 1)
	for (long idx = 0; idx < total; idx++) FN(attn_bwd_q_row)(&a, idx, dq, scratch);
#pragma omp parallel for schedule(static, 1)
	for (long idx = 0; idx < ktotal; idx++) FN(attn_bwd_kv_row)(&a, idx, dk, dv, scratch);
}

/* ---- gated activations ----------------------------------------------------------------- */

void FN(ops_swiglu_forward)(real *out, const real *gate, const real *up, size_t n)
{
	PAR_FOR(for (size_t i = 0; i < n; i++) {
		real g = gate[i];
		out[i] = g / (1 + EXP(-g)) * up[i];
	});
}

void FN(ops_swiglu_backward)(real *dgate, real *dup, const real *dout, const real *gate,
			     const real *up, size_t n)
{
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < n; i++) {
		real g = gate[i], sg = 1 / (1 + EXP(-g));
		real silu = g * sg;
		if (dgate) dgate[i] += dout[i] * up[i] * sg * (1 + g * (1 - sg));
		if (dup) dup[i] += dout[i] * silu;
	}
}

/* gelu tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
#define GELU_K ((real)0.7978845608028654)
#define GELU_A ((real)0.044715)

void FN(ops_geglu_forward)(real *out, const real *gate, const real *up, size_t n)
{
	PAR_FOR(for (size_t i = 0; i < n; i++) {
		real x = gate[i];
		real th = TANH(GELU_K * (x + GELU_A * x * x * x));
		out[i] = (real)0.5 * x * (1 + th) * up[i];
	});
}

void FN(ops_geglu_backward)(real *dgate, real *dup, const real *dout, const real *gate,
			    const real *up, size_t n)
{
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < n; i++) {
		real x = gate[i];
		real th = TANH(GELU_K * (x + GELU_A * x * x * x));
		real gelu = (real)0.5 * x * (1 + th);
		real dgelu = (real)0.5 * (1 + th) +
			     (real)0.5 * x * (1 - th * th) * GELU_K * (1 + 3 * GELU_A * x * x);
		if (dgate) dgate[i] += dout[i] * up[i] * dgelu;
		if (dup) dup[i] += dout[i] * gelu;
	}
}
#undef GELU_K
#undef GELU_A

/* ---- fused linear + cross-entropy ------------------------------------------------------ */

/* Next block of up to OPS_CE_ROWS trained rows from *n on: their indices (idx) and hidden
 * rows gathered into hb (r, C). Untrained rows cost nothing. Returns r (0: no more). */
static int FN(ce_gather)(int *n, int N, const int32_t *targets, const real *hidden, int C, int *idx, real *hb)
{
	int r = 0;
	for (; *n < N && r < OPS_CE_ROWS; (*n)++)
		if (targets[*n] >= 0) idx[r++] = *n;
	for (int i = 0; i < r; i++)
		memcpy(hb + (size_t)i * C, hidden + (size_t)idx[i] * C, sizeof(real) * C);
	return r;
}

/* dhidden[idx[i]] += dhb[i] for the block's r rows. */
static void FN(ce_scatter_add)(real *dhidden, const real *dhb, const int *idx, int r, int C)
{
	for (int i = 0; i < r; i++) {
		real *d = dhidden + (size_t)idx[i] * C;
		const real *g = dhb + (size_t)i * C;
		for (int c = 0; c < C; c++) d[c] += g[c];
	}
}

static ops_ce_stats FN(fused_ce_fullrow)(real *dhidden, real *dW, real *scratch, const real *hidden,
					 const real *W, const int32_t *targets, real grad_scale, int N,
					 int C, int V)
{
	/* One block of up to R trained rows at a time, with the whole vocabulary: one GEMM
	 * for the logits, then (training) one for dhidden and one for dW, as an unfused
	 * lm_head + cross-entropy would do, but never more than (R, V) logits alive. */
	enum { R = OPS_CE_ROWS };
	real *logits = scratch;                 // (R, V)
	real *hb = logits + (size_t)R * V;      // (R, C) gathered hidden rows
	real *dhb = hb + (size_t)R * C;         // (R, C) their gradient
	ops_ce_stats st = {0, 0, 0};
	int idx[R], arg[R];
	double lse[R];
	int n = 0;
	while (n < N) {
		int r = FN(ce_gather)(&n, N, targets, hidden, C, idx, hb);
		if (r == 0) break;
		GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, r, V, C, 1, hb, C, W, C, 0, logits, V);
		/* per row, in vocabulary order: argmax (first on ties), max, sum of exp in double */
#pragma omp parallel for schedule(static)
		for (int i = 0; i < r; i++) {
			const real *lg = logits + (size_t)i * V;
			real bm = lg[0];
			int ba = 0;
			for (int j = 1; j < V; j++)
				if (lg[j] > bm) { bm = lg[j]; ba = j; }
			double sum = 0;
			for (int j = 0; j < V; j++) sum += (double)EXP(lg[j] - bm);
			lse[i] = (double)bm + log(sum);
			arg[i] = ba;
		}
		for (int i = 0; i < r; i++) {
			int tg = targets[idx[i]];
			st.loss_sum += lse[i] - (double)logits[(size_t)i * V + tg];
			st.n_tokens++;
			if (arg[i] == tg) st.n_correct++;
		}
		if (!dhidden && !dW) continue;
		/* dL/dlogit = softmax - onehot(target), times grad_scale, in place */
#pragma omp parallel for schedule(static)
		for (int i = 0; i < r; i++) {
			real *lg = logits + (size_t)i * V;
			real li = (real)lse[i];
			for (int j = 0; j < V; j++) lg[j] = EXP(lg[j] - li) * grad_scale;
			lg[targets[idx[i]]] -= grad_scale;
		}
		if (dhidden) {
			GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, C, V, 1, logits, V, W, C, 0, dhb, C);
			FN(ce_scatter_add)(dhidden, dhb, idx, r, C);
		}
		if (dW)
			GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, r, 1, logits, V, hb, C, 1, dW, C);
	}
	return st;
}

static ops_ce_stats FN(fused_ce_vchunked)(real *dhidden, real *dW, real *scratch, const real *hidden,
					  const real *W, const int32_t *targets, real grad_scale, int N,
					  int C, int V)
{
	/* large vocabularies: the vocabulary in OPS_CE_VCHUNK chunks with an online logsumexp,
	 * the chunks' logits recomputed for the backward (four gemms per block) */
	enum { R = OPS_CE_ROWS };
	int VC = OPS_CE_VCHUNK;
	real *logits = scratch;                  // (R, VC)
	real *hb = logits + (size_t)R * VC;      // (R, C) gathered hidden rows
	real *dhb = hb + (size_t)R * C;          // (R, C) their gradient
	ops_ce_stats st = {0, 0, 0};
	int idx[R];
	double m[R], l[R], lse[R];
	real best[R], tl[R];
	int arg[R];
	int n = 0;
	while (n < N) {
		int r = FN(ce_gather)(&n, N, targets, hidden, C, idx, hb);
		if (r == 0) break;
		for (int i = 0; i < r; i++) {
			m[i] = -INFINITY; l[i] = 0; best[i] = -INFINITY; arg[i] = -1; tl[i] = 0;
		}
		for (int v0 = 0; v0 < V; v0 += VC) {
			int vc = v0 + VC <= V ? VC : V - v0;
			GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, r, vc, C, 1, hb, C,
			     W + (size_t)v0 * C, C, 0, logits, vc);
#pragma omp parallel for schedule(static)
			for (int i = 0; i < r; i++) {
				const real *lg = logits + (size_t)i * vc;
				real bm = lg[0];
				int ba = 0;
				for (int j = 1; j < vc; j++)
					if (lg[j] > bm) { bm = lg[j]; ba = j; }
				if (bm > best[i]) { best[i] = bm; arg[i] = v0 + ba; }
				double nm = m[i] > (double)bm ? m[i] : (double)bm;
				double s = 0;
				real nmr = (real)nm;
				for (int j = 0; j < vc; j++) s += (double)EXP(lg[j] - nmr);
				l[i] = l[i] * exp(m[i] - nm) + s;
				m[i] = nm;
				int tg = targets[idx[i]];
				if (tg >= v0 && tg < v0 + vc) tl[i] = lg[tg - v0];
			}
		}
		for (int i = 0; i < r; i++) {
			lse[i] = m[i] + log(l[i]);
			st.loss_sum += lse[i] - (double)tl[i];
			st.n_tokens++;
			if (arg[i] == targets[idx[i]]) st.n_correct++;
		}
		if (!dhidden && !dW) continue;
		memset(dhb, 0, sizeof(real) * (size_t)r * C);
		for (int v0 = 0; v0 < V; v0 += VC) {
			int vc = v0 + VC <= V ? VC : V - v0;
			GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, r, vc, C, 1, hb, C,
			     W + (size_t)v0 * C, C, 0, logits, vc);
			/* dL/dlogit = softmax - onehot(target), times grad_scale */
#pragma omp parallel for schedule(static)
			for (int i = 0; i < r; i++) {
				real *lg = logits + (size_t)i * vc;
				real li = (real)lse[i];
				for (int j = 0; j < vc; j++) lg[j] = EXP(lg[j] - li) * grad_scale;
				int tg = targets[idx[i]];
				if (tg >= v0 && tg < v0 + vc) lg[tg - v0] -= grad_scale;
			}
			if (dhidden)
				GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, C, vc, 1, logits, vc,
				     W + (size_t)v0 * C, C, 1, dhb, C);
			if (dW)
				GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, vc, C, r, 1, logits, vc, hb,
				     C, 1, dW + (size_t)v0 * C, C);
		}
		if (dhidden) FN(ce_scatter_add)(dhidden, dhb, idx, r, C);
	}
	return st;
}

ops_ce_stats FN(ops_fused_linear_ce)(real *dhidden, real *dW, real *scratch, const real *hidden,
				     const real *W, const int32_t *targets, real grad_scale, int N,
				     int C, int V)
{
	if (V <= OPS_CE_VFULL)
		return FN(fused_ce_fullrow)(dhidden, dW, scratch, hidden, W, targets, grad_scale, N, C, V);
	return FN(fused_ce_vchunked)(dhidden, dW, scratch, hidden, W, targets, grad_scale, N, C, V);
}

/* ---- optimizer ------------------------------------------------------------------------- */

double FN(ops_sq_sum)(const real *g, size_t n)
{
	/* fixed 64 blocks summed in order: the same bits for any thread count */
	enum { NB = 64 };
	double part[NB];
	size_t per = (n + NB - 1) / NB;
#pragma omp parallel for schedule(static)
	for (int b = 0; b < NB; b++) {
		size_t i0 = (size_t)b * per, i1 = i0 + per < n ? i0 + per : n;
		double s = 0;
		for (size_t i = i0; i < i1; i++) s += (double)g[i] * (double)g[i];
		part[b] = s;
	}
	double s = 0;
	for (int b = 0; b < NB; b++) s += part[b];
	return s;
}

void FN(ops_adamw_step)(real *param, const real *grad, real *m, real *v, size_t n,
			const ops_adamw_config *cfg, long step, double lr, double weight_decay,
			double grad_scale)
{
	/* scalars formed in double and rounded once, as torch does with Python floats */
	real b2 = (real)cfg->beta2, eps = (real)cfg->eps;
	real omb1 = (real)(1.0 - cfg->beta1), omb2 = (real)(1.0 - cfg->beta2);
	real decay = (real)(1.0 - lr * weight_decay);
	double bc1 = 1.0 - pow(cfg->beta1, (double)step);
	double bc2 = 1.0 - pow(cfg->beta2, (double)step);
	real step_size = (real)(lr / bc1);
	real bc2_sqrt = (real)sqrt(bc2);
	real gs = (real)grad_scale;
	/* simd: the same bits (each element on its own; IEEE sqrt and division are correctly
	 * rounded in vector form too, and ISO C mode does not contract into FMAs) */
#pragma omp parallel for simd schedule(static)
	for (size_t i = 0; i < n; i++) {
		real g = grad[i] * gs;
		real p = param[i] * decay;
		real mi = m[i] + omb1 * (g - m[i]); /* torch lerp */
		real vi = v[i] * b2 + omb2 * g * g;
		m[i] = mi;
		v[i] = vi;
		param[i] = p - step_size * (mi / (SQRT(vi) / bc2_sqrt + eps));
	}
}

#endif /* OPS_CPU_PASS */
