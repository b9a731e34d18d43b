/* Unit tests for libcommon/lora: target parsing, the carved adapter (shapes, names, init),
 * the adapted linear's forward/backward (against an fp64 reference here and against torch
 * through tests/fixtures/lora/linear.safetensors), PEFT adapter files (load a peft-saved
 * adapter, re-save, compare bytes and config), logits with the adapter merged into the base
 * weights against peft's logits, and the errors for bad adapter directories.
 *
 * Fixtures: tests/fixtures/lora/ from scripts/gen-lora-fixtures.py (torch + peft 0.21 +
 * transformers, base model tests/fixtures/models/llama).
 *
 * Tolerances:
 * - linear vs the fp64 reference and vs torch (fp32): max |got - want| <= 1e-5 * max(1,
 *   max |want|) per tensor (check_close). Each output is a chain of two fp32 dot products of
 *   <= 40 and <= 24 terms of O(1) operands (plus, vs torch, the base x @ W^T); fp32
 *   rounding gives ~sqrt(K) * 6e-8 relative to the sum of |terms|, ~1e-6 of the tensor's
 *   scale, and torch's own fp32 result carries the same. 1e-5 leaves a 10x margin; a wrong
 *   transpose, a missing scale or mask factor moves values by O(1) of that scale.
 * - logits with the merged adapter vs peft: max |diff| <= 1e-4 * max |logit|, the argument
 *   of test_model.c (same fp32 forward, different summation orders); merging W + s B A in
 *   fp32 rounds each weight once (~6e-8 relative). The base model alone must miss peft's
 *   logits by > 1e-2 of their scale, so the test cannot pass without the adapter.
 *
 * SFT_KEEP_ADAPTER=dir keeps the adapters saved here (dir/all, dir/qv_rslora, dir/c_init
 * with dir/c_init/logits.f32) for scripts/check-peft-adapter.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <dirent.h>
#include <jansson.h>
#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lora.h"
#include "safetensors.h"
#include "train_simd.h"
#include "test_util.h"

static const char *fixdir(void)
{
	const char *d = getenv("SFT_TEST_DATA");
	return d ? d : "tests/fixtures";
}

static uint64_t rng_state = 88172645463325252ull;
static double rnd(void) /* [-1, 1) */
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double)(rng_state >> 11) * 0x1.0p-52 - 1.0;
}

static void fill(float *p, size_t n)
{
	for (size_t i = 0; i < n; i++) p[i] = (float)rnd();
}

/* max |got - want| <= tol * max(1, max |want|) */
static void check_close(const char *what, const float *got, const double *want, size_t n, double tol)
{
	double m = 1, e = 0;
	size_t at = 0;
	for (size_t i = 0; i < n; i++) m = fmax(m, fabs(want[i]));
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - want[i]);
		if (!(d <= e)) e = d, at = i;
	}
	if (!(e <= tol * m))
		fail_msg("%s: max error %g at %zu (got %g want %g, scale %g)", what, e, at, (double)got[at],
			 want[at], m);
}

static model_config tiny_config(void)
{
	model_config mc;
	memset(&mc, 0, sizeof mc);
	mc.arch = MODEL_ARCH_LLAMA;
	mc.hidden_size = 64;
	mc.intermediate_size = 128;
	mc.n_layers = 2;
	mc.n_heads = 4;
	mc.n_kv_heads = 2;
	mc.head_dim = 16;
	mc.vocab_size = 256;
	return mc;
}

/* ---- targets --------------------------------------------------------------------------- */

static void test_parse_targets(void **state)
{
	(void)state;
	unsigned t;
	sft_error e = {0};
	assert_int_equal(lora_parse_targets("all-linear", &t, &e), 0);
	assert_int_equal(t, LORA_ALL_LINEAR);
	assert_int_equal(lora_parse_targets("q_proj,v_proj", &t, &e), 0);
	assert_int_equal(t, LORA_Q | LORA_V);
	assert_int_equal(lora_parse_targets(" q_proj  v_proj ", &t, &e), 0);
	assert_int_equal(t, LORA_Q | LORA_V);
	assert_int_equal(lora_parse_targets("[q_proj, v_proj]", &t, &e), 0);
	assert_int_equal(t, LORA_Q | LORA_V);
	assert_int_equal(lora_parse_targets("['q_proj','down_proj']", &t, &e), 0);
	assert_int_equal(t, LORA_Q | LORA_DOWN);
	assert_int_equal(lora_parse_targets("[\"gate_proj\", \"up_proj\"]", &t, &e), 0);
	assert_int_equal(t, LORA_GATE | LORA_UP);
	assert_int_equal(lora_parse_targets("self_attn.o_proj,mlp.down_proj,k_proj", &t, &e), 0);
	assert_int_equal(t, LORA_O | LORA_DOWN | LORA_K);

	assert_true(lora_parse_targets("q_proj,lm_head", &t, &e) < 0);
	assert_int_equal(e.code, SFT_EXIT_USAGE);
	assert_non_null(strstr(e.msg, "'lm_head'"));
	assert_non_null(strstr(e.msg, "down_proj"));
	assert_true(lora_parse_targets("mlp.q_proj", &t, &e) < 0);
	assert_non_null(strstr(e.msg, "'mlp.q_proj'"));
	assert_true(lora_parse_targets("", &t, &e) < 0);
	assert_int_equal(e.code, SFT_EXIT_USAGE);
	assert_true(lora_parse_targets("[]", &t, &e) < 0);
	assert_true(lora_parse_targets("[q_proj", &t, &e) < 0);

	assert_string_equal(lora_target_name(LORA_Q), "q_proj");
	assert_string_equal(lora_target_name(LORA_DOWN), "down_proj");
	assert_null(lora_target_name(3));
}

/* ---- adapter block, names, init --------------------------------------------------------- */

static void test_new_shapes_names(void **state)
{
	(void)state;
	model_config mc = tiny_config();
	lora_config lc = {.r = 4, .alpha = 8, .dropout = 0.1, .use_rslora = 0, .targets = LORA_ALL_LINEAR};
	sft_error e = {0};
	lora_adapter *a = lora_new(&mc, &lc, &e);
	assert_non_null(a);
	assert_true(fabsf(a->scale - 2.0f) == 0);
	static const int want_in[7] = {64, 64, 64, 64, 64, 64, 128};
	static const int want_out[7] = {64, 32, 32, 64, 128, 128, 64};
	size_t np = 0;
	for (int l = 0; l < 2; l++)
		for (int k = 0; k < 7; k++) {
			lora_pair *p = &a->pairs[l][k];
			assert_int_equal(p->in, want_in[k]);
			assert_int_equal(p->out, want_out[k]);
			assert_int_equal(p->r, 4);
			assert_true(((uintptr_t)p->A & 63) == 0 && ((uintptr_t)p->B & 63) == 0);
			np += (size_t)4 * (p->in + p->out);
			for (int i = 0; i < 4 * p->in; i++) assert_true(p->A[i] == 0);
		}
	assert_int_equal(a->n_params, np);
	int n = lora_tensors(a, NULL);
	assert_int_equal(n, 28);
	model_tensor *t = calloc((size_t)n, sizeof *t);
	assert_int_equal(lora_tensors(a, t), 28);
	assert_string_equal(t[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
	assert_int_equal(t[0].shape[0], 4);
	assert_int_equal(t[0].shape[1], 64);
	assert_string_equal(t[3].name, "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight");
	assert_int_equal(t[3].shape[0], 32);
	assert_int_equal(t[3].shape[1], 4);
	assert_true(t[3].data == a->pairs[0][1].B);
	assert_string_equal(t[27].name, "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
	free(t);
	lora_free(a);

	lc.targets = LORA_Q | LORA_V;
	lc.use_rslora = 1;
	lc.r = 16;
	lc.alpha = 16;
	a = lora_new(&mc, &lc, &e);
	assert_non_null(a);
	assert_true(a->scale == 4.0f);
	assert_null(a->pairs[1][LORA_N_KINDS - 1].A);
	assert_int_equal(lora_tensors(a, NULL), 8);
	lora_free(a);

	lc.r = 0;
	assert_null(lora_new(&mc, &lc, &e));
	assert_int_equal(e.code, SFT_EXIT_USAGE);
	lora_free(NULL);
}

static void test_init(void **state)
{
	(void)state;
	model_config mc = tiny_config();
	lora_config lc = {.r = 8, .alpha = 16, .targets = LORA_ALL_LINEAR};
	lora_adapter *a = lora_new(&mc, &lc, NULL), *b = lora_new(&mc, &lc, NULL);
	lora_init(a, 42);
	lora_init(b, 42);
	assert_memory_equal(a->block, b->block, a->n_params * sizeof(float));
	for (int l = 0; l < 2; l++)
		for (int k = 0; k < 7; k++) {
			const lora_pair *p = &a->pairs[l][k];
			double bound = 1 / sqrt((double)p->in), mx = 0, mean = 0, var = 0;
			size_t n = (size_t)8 * p->in;
			for (size_t i = 0; i < n; i++) {
				assert_true(fabs(p->A[i]) <= bound);
				mx = fmax(mx, fabs(p->A[i]));
				mean += p->A[i];
				var += (double)p->A[i] * p->A[i];
			}
			mean /= (double)n;
			var /= (double)n;
			/* U(-b, b): max near b, mean ~0 (sd b/sqrt(3n)), variance b^2/3 */
			assert_true(mx > 0.95 * bound);
			assert_true(fabs(mean) < 5 * bound / sqrt(3.0 * (double)n));
			assert_true(fabs(var / (bound * bound / 3) - 1) < 0.2);
			for (int i = 0; i < p->out * 8; i++) assert_true(p->B[i] == 0);
		}
	/* another seed differs; a pair's stream does not depend on the other targets */
	lora_init(b, 43);
	assert_memory_not_equal(a->pairs[0][0].A, b->pairs[0][0].A, 8 * 64 * sizeof(float));
	lora_config lq = lc;
	lq.targets = LORA_V;
	lora_adapter *c = lora_new(&mc, &lq, NULL);
	lora_init(c, 42);
	assert_memory_equal(c->pairs[1][2].A, a->pairs[1][2].A, 8 * 64 * sizeof(float));
	lora_free(a);
	lora_free(b);
	lora_free(c);
}

/* ---- the adapted linear vs an fp64 reference ------------------------------------------- */

static void ref_linear(double *y, double *dx, double *dA, double *dB, const float *x, const float *mask,
		       const float *A, const float *B, const float *dy, const float *y0, double s, int N,
		       int in, int r, int out)
{
	double *xa = calloc((size_t)N * r, sizeof *xa), *dxa = calloc((size_t)N * r, sizeof *dxa);
	for (int n = 0; n < N; n++)
		for (int j = 0; j < r; j++) {
			double acc = 0;
			for (int i = 0; i < in; i++)
				acc += (double)x[n * in + i] * (mask ? mask[n * in + i] : 1) * A[j * in + i];
			xa[n * r + j] = acc;
		}
	for (int n = 0; n < N; n++)
		for (int o = 0; o < out; o++) {
			double acc = 0;
			for (int j = 0; j < r; j++) acc += xa[n * r + j] * B[o * r + j];
			y[n * out + o] = y0[n * out + o] + s * acc;
		}
	for (int o = 0; o < out; o++)
		for (int j = 0; j < r; j++) {
			double acc = 0;
			for (int n = 0; n < N; n++) acc += (double)dy[n * out + o] * xa[n * r + j];
			dB[o * r + j] = 0.5 + s * acc; /* the buffers start at 0.5: backward accumulates */
		}
	for (int n = 0; n < N; n++)
		for (int j = 0; j < r; j++) {
			double acc = 0;
			for (int o = 0; o < out; o++) acc += (double)dy[n * out + o] * B[o * r + j];
			dxa[n * r + j] = s * acc;
		}
	for (int j = 0; j < r; j++)
		for (int i = 0; i < in; i++) {
			double acc = 0;
			for (int n = 0; n < N; n++)
				acc += dxa[n * r + j] * x[n * in + i] * (mask ? mask[n * in + i] : 1);
			dA[j * in + i] = 0.5 + acc;
		}
	for (int n = 0; n < N; n++)
		for (int i = 0; i < in; i++) {
			double acc = 0;
			for (int j = 0; j < r; j++) acc += dxa[n * r + j] * A[j * in + i];
			dx[n * in + i] = 0.5 + acc * (mask ? mask[n * in + i] : 1);
		}
	free(xa);
	free(dxa);
}

static void run_linear_case(int N, int in, int r, int out, int with_mask, float scale)
{
	size_t ni = (size_t)N * in, no = (size_t)N * out, nr = (size_t)N * r;
	float *x = malloc(ni * 4), *mask = malloc(ni * 4), *A = malloc((size_t)r * in * 4),
	      *B = malloc((size_t)out * r * 4), *dy = malloc(no * 4), *y = malloc(no * 4), *y0 = malloc(no * 4),
	      *xa = malloc(nr * 4), *xm = malloc(ni * 4), *scr = malloc((nr + ni) * 4), *dx = malloc(ni * 4),
	      *dA = malloc((size_t)r * in * 4), *dB = malloc((size_t)out * r * 4);
	double *ry = malloc(no * 8), *rdx = malloc(ni * 8), *rdA = malloc((size_t)r * in * 8),
	       *rdB = malloc((size_t)out * r * 8);
	fill(x, ni);
	fill(A, (size_t)r * in);
	fill(B, (size_t)out * r);
	fill(dy, no);
	fill(y0, no);
	const float p = 0.25f;
	for (size_t i = 0; i < ni; i++) mask[i] = rnd() < -0.5 ? 0.0f : 1.0f / (1.0f - p);
	const float *m = with_mask ? mask : NULL;
	memcpy(y, y0, no * 4);
	for (size_t i = 0; i < ni; i++) dx[i] = 0.5f;
	for (size_t i = 0; i < (size_t)r * in; i++) dA[i] = 0.5f;
	for (size_t i = 0; i < (size_t)out * r; i++) dB[i] = 0.5f;
	lora_pair pr = {.A = A, .B = B, .in = in, .out = out, .r = r};
	lora_linear_forward(y, xa, xm, x, m, &pr, scale, N);
	lora_linear_backward(dx, dA, dB, scr, dy, x, m, xa, &pr, scale, N);
	ref_linear(ry, rdx, rdA, rdB, x, m, A, B, dy, y0, scale, N, in, r, out);
	check_close("y", y, ry, no, 1e-5);
	check_close("dx", dx, rdx, ni, 1e-5);
	check_close("dA", dA, rdA, (size_t)r * in, 1e-5);
	check_close("dB", dB, rdB, (size_t)out * r, 1e-5);
	/* NULL gradients are skipped, the others unchanged */
	float *dA2 = malloc((size_t)r * in * 4);
	for (size_t i = 0; i < (size_t)r * in; i++) dA2[i] = 0.5f;
	lora_linear_backward(NULL, dA2, NULL, scr, dy, x, m, xa, &pr, scale, N);
	assert_memory_equal(dA2, dA, (size_t)r * in * 4);
	free(dA2);
	free(x), free(mask), free(A), free(B), free(dy), free(y), free(y0), free(xa), free(xm), free(scr);
	free(dx), free(dA), free(dB), free(ry), free(rdx), free(rdA), free(rdB);
}

static void test_linear_reference(void **state)
{
	(void)state;
	run_linear_case(5, 12, 3, 7, 0, 2.0f);
	run_linear_case(5, 12, 3, 7, 1, 2.0f);
	run_linear_case(9, 40, 8, 24, 1, (float)(16 / sqrt(8.0)));
	run_linear_case(1, 3, 1, 2, 1, 0.5f);
}

/* ---- dropout keep bits and the rank-r kernels (train_simd.h) ------------------------------ */

/* The bits follow tsimd_drop_hash element by element (the AVX-512 path and the portable
 * one compute the same function), do not depend on the thread count, and drop about p. */
static void test_drop_bits(void **state)
{
	(void)state;
	assert_int_equal(tsimd_drop_threshold(0), 0);
	assert_true(tsimd_drop_threshold(0.5) == 0x80000000u);
	size_t n = ((size_t)1 << 20) + 5, nw = (n + 15) / 16;
	uint16_t *b1 = malloc(nw * 2), *b2 = malloc(nw * 2), *b3 = malloc(nw * 2);
	uint64_t key = 0x0123456789abcdefull;
	uint32_t thr = tsimd_drop_threshold(0.1);
	int nthr = omp_get_max_threads();
	omp_set_num_threads(1);
	tsimd_drop_bits(b1, n, key, thr);
	omp_set_num_threads(2);
	tsimd_drop_bits(b2, n, key, thr);
	omp_set_num_threads(nthr);
	assert_memory_equal(b1, b2, nw * 2);
	size_t dropped = 0;
	for (size_t i = 0; i < n; i++) {
		int bit = (b1[i / 16] >> (i % 16)) & 1;
		assert_int_equal(bit, tsimd_drop_hash(key, i) >= thr);
		dropped += !bit;
	}
	/* binomial: sigma = sqrt(p (1 - p) / n) = 2.9e-4; 5 sigma */
	double frac = (double)dropped / (double)n;
	if (fabs(frac - 0.1) > 1.5e-3) fail_msg("dropped fraction %g, want 0.1", frac);
	tsimd_drop_bits(b3, n, key + 1, thr); /* another stream */
	size_t same = 0;
	for (size_t w = 0; w < nw; w++) same += b3[w] == b1[w];
	assert_true(same < nw / 4);
	free(b1), free(b2), free(b3);
}

/* lora_linear_*_bits (the rank-r kernels for r <= TSIMD_LORA_MAX_R on AVX-512 CPUs, else
 * the gemm path) against the fp64 reference with the equivalent float mask, in accumulate
 * and in set mode, and bit for bit the same with 1 and with 2 threads. Shapes with tails
 * everywhere (N, in, out not multiples of the tiles, r not a multiple of 16, r > the
 * kernels' limit). Tolerance as run_linear_case. */
static void run_bits_case(int N, int in, int r, int out, double p, float scale)
{
	size_t ni = (size_t)N * in, no = (size_t)N * out, nr = (size_t)N * r, na = (size_t)r * in, nb = (size_t)out * r;
	float *x = malloc(ni * 4), *mask = malloc(ni * 4), *A = malloc(na * 4), *B = malloc(nb * 4), *dy = malloc(no * 4),
	      *y0 = malloc(no * 4), *y = malloc(no * 4), *y1 = malloc(no * 4), *xa = malloc(nr * 4), *xm = malloc(ni * 4),
	      *scr = malloc((nr + ni) * 4), *dx = malloc(ni * 4), *dx1 = malloc(ni * 4), *dA = malloc(na * 4),
	      *dA1 = malloc(na * 4), *dB = malloc(nb * 4), *dB1 = malloc(nb * 4);
	double *ry = malloc(no * 8), *rdx = malloc(ni * 8), *rdA = malloc(na * 8), *rdB = malloc(nb * 8);
	uint16_t *bits = malloc((ni + 15) / 16 * 2);
	fill(x, ni);
	fill(A, na);
	fill(B, nb);
	fill(dy, no);
	fill(y0, no);
	float keep = (float)(1.0 / (1.0 - p));
	const uint16_t *bm = NULL;
	if (p > 0) {
		tsimd_drop_bits(bits, ni, 77 + (uint64_t)N, tsimd_drop_threshold(p));
		bm = bits;
	}
	for (size_t i = 0; i < ni; i++) mask[i] = !bm || ((bm[i / 16] >> (i % 16)) & 1) ? keep : 0.0f;
	ref_linear(ry, rdx, rdA, rdB, x, bm ? mask : NULL, A, B, dy, y0, scale, N, in, r, out);
	lora_pair pr = {.A = A, .B = B, .in = in, .out = out, .r = r};
	int nthr = omp_get_max_threads();
	for (int th = 1; th <= 2; th++) {
		omp_set_num_threads(th);
		float *Y = th == 1 ? y : y1, *DX = th == 1 ? dx : dx1, *DA = th == 1 ? dA : dA1, *DB = th == 1 ? dB : dB1;
		memcpy(Y, y0, no * 4);
		for (size_t i = 0; i < ni; i++) DX[i] = 0.5f;
		for (size_t i = 0; i < na; i++) DA[i] = 0.5f;
		for (size_t i = 0; i < nb; i++) DB[i] = 0.5f;
		lora_linear_forward_bits(Y, xa, xm, x, bm, keep, &pr, scale, N, 0);
		lora_linear_backward_bits(DX, DA, DB, scr, dy, x, bm, keep, xa, &pr, scale, N, 0);
	}
	omp_set_num_threads(nthr);
	check_close("bits y", y, ry, no, 1e-5);
	check_close("bits dx", dx, rdx, ni, 1e-5);
	check_close("bits dA", dA, rdA, na, 1e-5);
	check_close("bits dB", dB, rdB, nb, 1e-5);
	if (tsimd_lora_ok(r)) {
		/* thread-count independence is the rank-r kernels' property */
		assert_memory_equal(y, y1, no * 4);
		assert_memory_equal(dx, dx1, ni * 4);
		assert_memory_equal(dA, dA1, na * 4);
		assert_memory_equal(dB, dB1, nb * 4);
	} else {
		/* the gemm path (no AVX-512, or r > TSIMD_LORA_MAX_R): OpenBLAS gemm is deterministic
		 * for a fixed thread count only (docs/ops.md), e.g. with OPENBLAS_CORETYPE=Haswell
		 * its 1- and 2-thread results differ in the last bits; both must be right */
		check_close("bits y (2 threads)", y1, ry, no, 1e-5);
		check_close("bits dx (2 threads)", dx1, rdx, ni, 1e-5);
		check_close("bits dA (2 threads)", dA1, rdA, na, 1e-5);
		check_close("bits dB (2 threads)", dB1, rdB, nb, 1e-5);
	}
	/* set mode: y = the adapter's term, dx = its term (old contents ignored) */
	for (size_t i = 0; i < no; i++) y[i] = NAN, ry[i] -= y0[i];
	for (size_t i = 0; i < ni; i++) dx[i] = NAN, rdx[i] -= 0.5;
	lora_linear_forward_bits(y, xa, xm, x, bm, keep, &pr, scale, N, 1);
	lora_linear_backward_bits(dx, NULL, NULL, scr, dy, x, bm, keep, xa, &pr, scale, N, 1);
	check_close("bits set y", y, ry, no, 1e-5);
	check_close("bits set dx", dx, rdx, ni, 1e-5);
	free(x), free(mask), free(A), free(B), free(dy), free(y0), free(y), free(y1), free(xa), free(xm), free(scr);
	free(dx), free(dx1), free(dA), free(dA1), free(dB), free(dB1), free(ry), free(rdx), free(rdA), free(rdB);
	free(bits);
}

static void test_linear_bits(void **state)
{
	(void)state;
	run_bits_case(37, 40, 3, 24, 0.3, 2.0f);
	run_bits_case(70, 160, 16, 48, 0.05, 2.0f);
	run_bits_case(33, 50, 20, 17, 0.5, (float)(16 / sqrt(20.0)));
	run_bits_case(19, 64, 64, 80, 0.1, 0.5f);
	run_bits_case(300, 33, 8, 130, 0.2, 1.0f); /* more rows than one row tile */
	run_bits_case(9, 12, 8, 7, 0, 2.0f);       /* no dropout */
	run_bits_case(5, 20, 65, 9, 0.25, 2.0f);   /* r above TSIMD_LORA_MAX_R: the gemm path */
}

/* ---- the adapted linear vs peft's lora.Linear (torch autograd) --------------------------- */

static float *st_f32(const st_file *f, const char *name)
{
	sft_error e = {0};
	const st_tensor *t = safetensors_get(f, name, &e);
	if (!t) fail_msg("%s", e.msg);
	float *p = malloc(t->n_elements * sizeof(float));
	if (safetensors_tensor_to_f32(t, p, &e) < 0) fail_msg("%s", e.msg);
	return p;
}

static void check_close_f(const char *what, const float *got, const float *want, size_t n, double tol)
{
	double *w = malloc(n * sizeof *w);
	for (size_t i = 0; i < n; i++) w[i] = want[i];
	check_close(what, got, w, n, tol);
	free(w);
}

static void test_linear_torch(void **state)
{
	(void)state;
	char path[4096], nm[128];
	snprintf(path, sizeof path, "%s/lora/linear.safetensors", fixdir());
	sft_error e = {0};
	st_file *f = safetensors_open(path, &e);
	if (!f) fail_msg("%s", e.msg);
	const char *cases = safetensors_meta(f, "cases"); /* "name:scale,..." */
	assert_non_null(cases);
	char buf[256];
	snprintf(buf, sizeof buf, "%s", cases);
	int n_cases = 0;
	char *save = NULL;
	for (char *c = strtok_r(buf, ",", &save); c; c = strtok_r(NULL, ",", &save), n_cases++) {
		char *colon = strchr(c, ':');
		assert_non_null(colon);
		*colon = 0;
		float scale = (float)strtod(colon + 1, NULL);
#define T(x) (snprintf(nm, sizeof nm, "%s." x, c), nm)
		const st_tensor *tx = safetensors_find(f, T("x")), *tA = safetensors_find(f, T("A")),
				*tB = safetensors_find(f, T("B"));
		assert_non_null(tx);
		int N = (int)tx->shape[0], in = (int)tx->shape[1], r = (int)tA->shape[0], out = (int)tB->shape[0];
		float *x = st_f32(f, T("x")), *W = st_f32(f, T("W")), *A = st_f32(f, T("A")), *B = st_f32(f, T("B")),
		      *dy = st_f32(f, T("dy")), *wy = st_f32(f, T("y")), *wdx = st_f32(f, T("dx")),
		      *wdA = st_f32(f, T("dA")), *wdB = st_f32(f, T("dB"));
		float *mask = safetensors_find(f, T("mask")) ? st_f32(f, T("mask")) : NULL;
		float *y = calloc((size_t)N * out, 4), *xa = calloc((size_t)N * r, 4), *xm = calloc((size_t)N * in, 4),
		      *scr = calloc((size_t)N * (r + in), 4), *dx = calloc((size_t)N * in, 4),
		      *dA = calloc((size_t)r * in, 4), *dB = calloc((size_t)out * r, 4);
		lora_pair p = {.A = A, .B = B, .in = in, .out = out, .r = r};
		/* the base layer, then the adapter on top, as lora.Linear.forward */
		ops_matmul_forward(y, x, W, NULL, N, in, out);
		lora_linear_forward(y, xa, xm, x, mask, &p, scale, N);
		ops_matmul_backward(dx, NULL, NULL, dy, x, W, N, in, out);
		lora_linear_backward(dx, dA, dB, scr, dy, x, mask, xa, &p, scale, N);
		check_close_f(T("y"), y, wy, (size_t)N * out, 1e-5);
		check_close_f(T("dx"), dx, wdx, (size_t)N * in, 1e-5);
		check_close_f(T("dA"), dA, wdA, (size_t)r * in, 1e-5);
		check_close_f(T("dB"), dB, wdB, (size_t)out * r, 1e-5);
		/* the same through the keep-bits API (the torch mask's zeros as dropped bits) */
		size_t ni = (size_t)N * in;
		uint16_t *bits = calloc((ni + 15) / 16, 2);
		float keep = 1.0f;
		for (size_t i = 0; mask && i < ni; i++) {
			if (mask[i] != 0) bits[i / 16] |= (uint16_t)(1u << (i % 16)), keep = mask[i];
		}
		memset(y, 0, (size_t)N * out * 4), memset(dx, 0, ni * 4);
		memset(dA, 0, (size_t)r * in * 4), memset(dB, 0, (size_t)out * r * 4);
		ops_matmul_forward(y, x, W, NULL, N, in, out);
		lora_linear_forward_bits(y, xa, xm, x, mask ? bits : NULL, keep, &p, scale, N, 0);
		ops_matmul_backward(dx, NULL, NULL, dy, x, W, N, in, out);
		lora_linear_backward_bits(dx, dA, dB, scr, dy, x, mask ? bits : NULL, keep, xa, &p, scale, N, 0);
		check_close_f(T("bits y"), y, wy, (size_t)N * out, 1e-5);
		check_close_f(T("bits dx"), dx, wdx, ni, 1e-5);
		check_close_f(T("bits dA"), dA, wdA, (size_t)r * in, 1e-5);
		check_close_f(T("bits dB"), dB, wdB, (size_t)out * r, 1e-5);
		free(bits);
#undef T
		free(x), free(W), free(A), free(B), free(dy), free(wy), free(wdx), free(wdA), free(wdB), free(mask);
		free(y), free(xa), free(xm), free(scr), free(dx), free(dA), free(dB);
	}
	assert_int_equal(n_cases, 3);
	safetensors_close(f);
}

/* ---- PEFT adapter files ------------------------------------------------------------------- */

static void fix_path(char *buf, size_t n, const char *rel)
{
	snprintf(buf, n, "%s/%s", fixdir(), rel);
}

static model_config base_config(void)
{
	char dir[4096];
	fix_path(dir, sizeof dir, "models/llama");
	model_config mc;
	sft_error e = {0};
	if (model_config_load(&mc, dir, &e) < 0) fail_msg("%s", e.msg);
	return mc;
}

static lora_adapter *load_fixture(const char *name, const model_config *mc)
{
	char dir[4096], rel[256];
	snprintf(rel, sizeof rel, "lora/%s", name);
	fix_path(dir, sizeof dir, rel);
	sft_error e = {0};
	lora_adapter *a = lora_load(dir, mc, &e);
	if (!a) fail_msg("%s", e.msg);
	return a;
}

static char g_tmp[256];

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) return;
	struct dirent *de;
	char p[4096];
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
			unlink(p);
		}
	closedir(d);
	rmdir(dir);
}

static const char *new_tmp(void)
{
	const char *t = getenv("TMPDIR");
	snprintf(g_tmp, sizeof g_tmp, "%s/test_lora.XXXXXX", t && *t ? t : "/tmp");
	assert_non_null(mkdtemp(g_tmp));
	return g_tmp;
}

/* Every tensor of a and b (same names, shapes, fp32 values bit for bit). */
static void compare_files(const char *pa, const char *pb)
{
	sft_error e = {0};
	st_file *a = safetensors_open(pa, &e), *b = a ? safetensors_open(pb, &e) : NULL;
	if (!a || !b) fail_msg("%s", e.msg);
	assert_int_equal(a->n_tensors, b->n_tensors);
	for (size_t i = 0; i < a->n_tensors; i++) {
		const st_tensor *ta = &a->tensors[i], *tb = &b->tensors[i];
		assert_string_equal(ta->name, tb->name);
		assert_int_equal(ta->n_dims, tb->n_dims);
		for (int d = 0; d < ta->n_dims; d++) assert_int_equal(ta->shape[d], tb->shape[d]);
		float *va = malloc(ta->n_elements * 4), *vb = malloc(tb->n_elements * 4);
		assert_int_equal(safetensors_tensor_to_f32(ta, va, &e), 0);
		assert_int_equal(safetensors_tensor_to_f32(tb, vb, &e), 0);
		if (memcmp(va, vb, ta->n_elements * 4)) fail_msg("tensor %s differs", ta->name);
		if (ta->dtype == tb->dtype) assert_memory_equal(ta->data, tb->data, ta->nbytes);
		free(va), free(vb);
	}
	assert_string_equal(safetensors_meta(b, "format"), "pt");
	safetensors_close(a);
	safetensors_close(b);
}

static json_t *load_json(const char *path)
{
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (!j) fail_msg("%s: %s", path, je.text);
	return j;
}

static void compare_configs(const char *pa, const char *pb, int same_target_list)
{
	json_t *a = load_json(pa), *b = load_json(pb);
	/* the same key set */
	const char *k;
	json_t *v;
	json_object_foreach(a, k, v) if (!json_object_get(b, k)) fail_msg("%s: key %s missing", pb, k);
	json_object_foreach(b, k, v) if (!json_object_get(a, k)) fail_msg("%s: extra key %s", pb, k);
	/* equal values and types for every key, except the PEFT version and target_modules */
	json_object_foreach(a, k, v) {
		if (!strcmp(k, "target_modules") || !strcmp(k, "peft_version")) continue;
		if (!json_equal(v, json_object_get(b, k)) || json_typeof(v) != json_typeof(json_object_get(b, k)))
			fail_msg("key %s differs", k);
	}
	/* target_modules: the same set (peft writes its set in hash order) */
	json_t *ta = json_object_get(a, "target_modules"), *tb = json_object_get(b, "target_modules");
	if (same_target_list) {
		assert_int_equal(json_array_size(ta), json_array_size(tb));
		size_t i;
		json_array_foreach(ta, i, v) {
			int found = 0;
			for (size_t j = 0; j < json_array_size(tb); j++)
				found |= json_equal(v, json_array_get(tb, j));
			if (!found) fail_msg("target %s missing", json_string_value(v));
		}
	}
	/* ours is sorted */
	for (size_t i = 1; i < json_array_size(tb); i++)
		assert_true(strcmp(json_string_value(json_array_get(tb, i - 1)),
				   json_string_value(json_array_get(tb, i))) < 0);
	json_decref(a);
	json_decref(b);
}

static void same_config(const lora_config *a, const lora_config *b)
{
	assert_int_equal(a->r, b->r);
	assert_true(a->alpha == b->alpha);
	assert_true(a->dropout == b->dropout);
	assert_int_equal(a->use_rslora, b->use_rslora);
	assert_int_equal(a->targets, b->targets);
}

static void resave_case(const char *name, unsigned targets, int r, double alpha, double dropout, int rslora,
			float scale, int file_bytes_equal)
{
	model_config mc = base_config();
	lora_adapter *a = load_fixture(name, &mc);
	assert_int_equal(a->cfg.r, r);
	assert_true(a->cfg.alpha == alpha);
	assert_true(a->cfg.dropout == dropout);
	assert_int_equal(a->cfg.use_rslora, rslora);
	assert_int_equal(a->cfg.targets, targets);
	assert_true(a->scale == scale);
	/* values: every tensor equals the file's (converted) */
	char dir[4096], rel[256], p1[4200], p2[4200];
	snprintf(rel, sizeof rel, "lora/%s", name);
	fix_path(dir, sizeof dir, rel);
	snprintf(p1, sizeof p1, "%s/adapter_model.safetensors", dir);
	sft_error e = {0};
	st_file *f = safetensors_open(p1, &e);
	int n = lora_tensors(a, NULL);
	model_tensor *t = calloc((size_t)n, sizeof *t);
	lora_tensors(a, t);
	assert_int_equal((size_t)n, f->n_tensors);
	int nonzero_b = 0;
	for (int i = 0; i < n; i++) {
		float *v = st_f32(f, t[i].name);
		assert_memory_equal(v, t[i].data, (size_t)(t[i].shape[0] * t[i].shape[1]) * 4);
		if (strstr(t[i].name, "lora_B"))
			for (int j = 0; j < t[i].shape[0] * t[i].shape[1]; j++) nonzero_b |= v[j] != 0;
		free(v);
	}
	assert_true(nonzero_b);
	safetensors_close(f);
	free(t);

	/* re-save: the same tensors and config */
	const char *keep = getenv("SFT_KEEP_ADAPTER");
	char out[4096];
	if (keep && *keep) {
		snprintf(out, sizeof out, "%s/%s", keep, name);
		mkdir(keep, 0777);
		mkdir(out, 0777);
	} else {
		snprintf(out, sizeof out, "%s", new_tmp());
	}
	assert_int_equal(lora_save(a, out, "tests/fixtures/models/llama", &e), 0);
	snprintf(p2, sizeof p2, "%s/adapter_model.safetensors", out);
	compare_files(p1, p2);
	if (file_bytes_equal) { /* fp32 file: byte-identical to safetensors' save_file */
		size_t l1, l2;
		char *b1 = test_slurp(p1, &l1), *b2 = test_slurp(p2, &l2);
		assert_int_equal(l1, l2);
		assert_memory_equal(b1, b2, l1);
		free(b1), free(b2);
	}
	snprintf(p1, sizeof p1, "%s/adapter_config.json", dir);
	snprintf(p2, sizeof p2, "%s/adapter_config.json", out);
	compare_configs(p1, p2, targets != LORA_ALL_LINEAR);
	/* and it loads back to the same adapter */
	lora_adapter *b = lora_load(out, &mc, &e);
	if (!b) fail_msg("%s", e.msg);
	assert_int_equal(b->n_params, a->n_params);
	same_config(&b->cfg, &a->cfg);
	for (int l = 0; l < a->n_layers; l++)
		for (int k = 0; k < LORA_N_KINDS; k++)
			if (a->pairs[l][k].A) {
				assert_memory_equal(a->pairs[l][k].A, b->pairs[l][k].A, (size_t)r * a->pairs[l][k].in * 4);
				assert_memory_equal(a->pairs[l][k].B, b->pairs[l][k].B, (size_t)r * a->pairs[l][k].out * 4);
			}
	lora_free(b);
	lora_free(a);
	if (!(keep && *keep)) rm_dir(out);
}

static void test_load_resave(void **state)
{
	(void)state;
	/* all-linear, r 4, alpha 8: scale 2; peft wrote target_modules as full module paths */
	resave_case("all", LORA_ALL_LINEAR, 4, 8, 0.05, 0, 2.0f, 1);
	/* q/v, r 8, alpha 16, rslora: scale 16/sqrt(8); BF16 file */
	resave_case("qv_rslora", LORA_Q | LORA_V, 8, 16, 0.0, 1, (float)(16 / sqrt(8.0)), 0);
}

/* ---- logits: adapter merged into the base weights vs peft -------------------------------- */

static void merge(model *m, const lora_adapter *a)
{
	for (int l = 0; l < a->n_layers; l++) {
		model_layer *ly = &m->layers[l];
		float *W[LORA_N_KINDS] = {ly->wq, ly->wk, ly->wv, ly->wo, ly->w_gate, ly->w_up, ly->w_down};
		for (int k = 0; k < LORA_N_KINDS; k++) {
			const lora_pair *p = &a->pairs[l][k];
			if (!p->A) continue;
			/* W (out, in) += scale * B (out, r) @ A (r, in) */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->out, p->in, p->r, a->scale, p->B,
				    p->r, p->A, p->in, 1.0f, W[k], p->in);
		}
	}
}

static void logits_case(const char *name, model_config *mc_out, float *c_logits_out)
{
	char dir[4096], rel[256];
	fix_path(dir, sizeof dir, "models/llama");
	sft_error e = {0};
	model *m = model_load(dir, &e);
	if (!m) fail_msg("%s", e.msg);
	fix_path(rel, sizeof rel, "lora/cases.json");
	json_t *cj = load_json(rel);
	json_t *tj = json_object_get(cj, "tokens");
	int T = (int)json_array_size(tj), V = m->cfg.vocab_size;
	int32_t *tok = malloc((size_t)T * 4), *pos = malloc((size_t)T * 4);
	for (int i = 0; i < T; i++) tok[i] = (int32_t)json_integer_value(json_array_get(tj, (size_t)i)), pos[i] = i;
	json_decref(cj);
	float *want = malloc((size_t)T * V * 4), *got = malloc((size_t)T * V * 4);
	snprintf(rel, sizeof rel, "lora/%s/logits.f32", name);
	fix_path(dir, sizeof dir, rel);
	size_t len;
	char *raw = test_slurp(dir, &len);
	assert_int_equal(len, (size_t)T * V * 4);
	memcpy(want, raw, len);
	free(raw);
	model_arena ar;
	model_arena_init(&ar);
	assert_int_equal(model_arena_reserve(&ar, &m->cfg, 1, T, &e), 0);
	/* the base alone is far from peft's logits (the adapter matters) ... */
	assert_int_equal(model_forward(m, &ar, tok, pos, NULL, 1, T, got, NULL, &e), 0);
	double scale = 0, err0 = 0, err1 = 0;
	for (size_t i = 0; i < (size_t)T * V; i++) scale = fmax(scale, fabs(want[i]));
	for (size_t i = 0; i < (size_t)T * V; i++) err0 = fmax(err0, fabs(got[i] - want[i]));
	/* ... and with the adapter merged they agree */
	lora_adapter *a = load_fixture(name, &m->cfg);
	merge(m, a);
	assert_int_equal(model_forward(m, &ar, tok, pos, NULL, 1, T, got, NULL, &e), 0);
	for (size_t i = 0; i < (size_t)T * V; i++) err1 = fmax(err1, fabs(got[i] - want[i]));
	if (!(err0 > 1e-2 * scale)) fail_msg("%s: the adapter does not move the logits (%g)", name, err0);
	if (!(err1 <= 1e-4 * scale)) fail_msg("%s: logits max error %g (scale %g)", name, err1, scale);
	if (mc_out) *mc_out = m->cfg;
	if (c_logits_out) memcpy(c_logits_out, got, (size_t)T * V * 4);
	lora_free(a);
	model_arena_free(&ar);
	model_free(m);
	free(tok), free(pos), free(want), free(got);
}

static void test_logits_merged(void **state)
{
	(void)state;
	logits_case("all", NULL, NULL);
	logits_case("qv_rslora", NULL, NULL);
}

/* An adapter made here (lora_init + random B), saved by lora_save; with SFT_KEEP_ADAPTER=dir
 * it is kept in dir/c_init with the logits of the merged model (dir/c_init/logits.f32), so
 * scripts/check-peft-adapter.py can load it in peft and compare. */
static void test_c_adapter(void **state)
{
	(void)state;
	model_config mc = base_config();
	lora_config lc = {.r = 4, .alpha = 8, .dropout = 0.1, .use_rslora = 1, .targets = LORA_ALL_LINEAR};
	sft_error e = {0};
	lora_adapter *a = lora_new(&mc, &lc, &e);
	assert_non_null(a);
	lora_init(a, 7);
	for (int l = 0; l < a->n_layers; l++)
		for (int k = 0; k < LORA_N_KINDS; k++) {
			lora_pair *p = &a->pairs[l][k];
			for (int i = 0; i < p->out * p->r; i++) p->B[i] = (float)(0.5 * rnd());
		}
	const char *keep = getenv("SFT_KEEP_ADAPTER");
	char out[4096];
	if (keep && *keep) {
		mkdir(keep, 0777);
		snprintf(out, sizeof out, "%s/c_init", keep);
		mkdir(out, 0777);
	} else {
		snprintf(out, sizeof out, "%s", new_tmp());
	}
	assert_int_equal(lora_save(a, out, "tests/fixtures/models/llama", &e), 0);
	lora_adapter *b = lora_load(out, &mc, &e);
	if (!b) fail_msg("%s", e.msg);
	same_config(&a->cfg, &b->cfg);
	assert_true(a->scale == b->scale);
	model_tensor *ta = calloc(28, sizeof *ta), *tb = calloc(28, sizeof *tb);
	assert_int_equal(lora_tensors(a, ta), 28);
	assert_int_equal(lora_tensors(b, tb), 28);
	for (int i = 0; i < 28; i++)
		assert_memory_equal(ta[i].data, tb[i].data, (size_t)(ta[i].shape[0] * ta[i].shape[1]) * 4);
	free(ta), free(tb);
	if (keep && *keep) {
		char dir[4096], path[4200];
		fix_path(dir, sizeof dir, "models/llama");
		model *m = model_load(dir, &e);
		if (!m) fail_msg("%s", e.msg);
		merge(m, a);
		fix_path(path, sizeof path, "lora/cases.json");
		json_t *cj = load_json(path), *tj = json_object_get(cj, "tokens");
		int T = (int)json_array_size(tj), V = m->cfg.vocab_size;
		int32_t tok[64], pos[64];
		assert_true(T <= 64);
		for (int i = 0; i < T; i++) tok[i] = (int32_t)json_integer_value(json_array_get(tj, (size_t)i)), pos[i] = i;
		json_decref(cj);
		float *lg = malloc((size_t)T * V * 4);
		model_arena ar;
		model_arena_init(&ar);
		assert_int_equal(model_arena_reserve(&ar, &m->cfg, 1, T, &e), 0);
		assert_int_equal(model_forward(m, &ar, tok, pos, NULL, 1, T, lg, NULL, &e), 0);
		snprintf(path, sizeof path, "%s/logits.f32", out);
		FILE *fp = fopen(path, "wb");
		assert_non_null(fp);
		assert_int_equal(fwrite(lg, 4, (size_t)T * V, fp), (size_t)T * V);
		fclose(fp);
		free(lg);
		model_arena_free(&ar);
		model_free(m);
	} else {
		rm_dir(out);
	}
	lora_free(a);
	lora_free(b);
}

/* ---- bad adapter directories --------------------------------------------------------------- */

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* dir/adapter_config.json = the "all" fixture's config with key set to value (JSON text;
 * NULL: deleted). */
static void write_config(const char *dir, const char *key, const char *value)
{
	char path[4096];
	fix_path(path, sizeof path, "lora/all/adapter_config.json");
	json_t *c = load_json(path);
	if (key && value) {
		json_error_t je;
		json_t *v = json_loads(value, JSON_DECODE_ANY, &je);
		if (!v) fail_msg("bad test value %s", value);
		json_object_set_new(c, key, v);
	} else if (key) {
		json_object_del(c, key);
	}
	snprintf(path, sizeof path, "%s/adapter_config.json", dir);
	assert_int_equal(json_dump_file(c, path, JSON_INDENT(2) | JSON_SORT_KEYS), 0);
	json_decref(c);
}

/* dir/adapter_model.safetensors from adapter a; drop: name of a tensor to leave out;
 * transpose: name of a tensor to write with its shape swapped; suffix: appended before
 * ".weight" in every name (".default"); extra: one more tensor. */
static void write_tensors(const char *dir, const lora_adapter *a, const char *drop, const char *transpose,
			  const char *suffix, const char *extra)
{
	int n = lora_tensors(a, NULL);
	model_tensor *t = calloc((size_t)n, sizeof *t);
	uint64_t(*sh)[2] = calloc((size_t)n + 1, sizeof *sh);
	lora_tensors(a, t);
	st_writer *w = safetensors_writer_new();
	sft_error e = {0};
	for (int i = 0; i < n; i++) {
		if (drop && !strcmp(t[i].name, drop)) continue;
		int tr = transpose && !strcmp(t[i].name, transpose);
		sh[i][0] = (uint64_t)t[i].shape[tr];
		sh[i][1] = (uint64_t)t[i].shape[!tr];
		char name[160];
		size_t l = strlen(t[i].name) - 7;
		snprintf(name, sizeof name, "%.*s%s.weight", (int)l, t[i].name, suffix ? suffix : "");
		assert_int_equal(safetensors_writer_add(w, name, ST_F32, 2, sh[i], t[i].data, &e), 0);
	}
	if (extra) {
		sh[n][0] = 1;
		sh[n][1] = 1;
		assert_int_equal(safetensors_writer_add(w, extra, ST_F32, 2, sh[n], t[0].data, &e), 0);
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
	assert_int_equal(safetensors_writer_write(w, path, &e), 0);
	safetensors_writer_free(w);
	free(sh);
	free(t);
}

/* lora_load(dir) fails with code and a message containing each of the needles */
static void expect_fail(const char *dir, const model_config *mc, int code, const char *needle,
			const char *needle2)
{
	sft_error e = {0};
	lora_adapter *a = lora_load(dir, mc, &e);
	if (a) fail_msg("loaded, expected an error with '%s'", needle);
	if (e.code != code) fail_msg("code %d, expected %d: %s", e.code, code, e.msg);
	if (!strstr(e.msg, needle)) fail_msg("message '%s' lacks '%s'", e.msg, needle);
	if (needle2 && !strstr(e.msg, needle2)) fail_msg("message '%s' lacks '%s'", e.msg, needle2);
}

static void test_bad_inputs(void **state)
{
	(void)state;
	model_config mc = base_config();
	lora_adapter *a = load_fixture("all", &mc);
	const char *dir = new_tmp();
	sft_error e = {0};
	char path[4096];
	const char *q0A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
	const char *d1B = "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight";

	/* no files at all */
	expect_fail(dir, &mc, SFT_EXIT_USAGE, "adapter_config.json: cannot open", NULL);
	/* good files load; names with ".default" too */
	write_config(dir, NULL, NULL);
	write_tensors(dir, a, NULL, NULL, NULL, NULL);
	lora_adapter *b = lora_load(dir, &mc, &e);
	if (!b) fail_msg("%s", e.msg);
	lora_free(b);
	write_tensors(dir, a, NULL, NULL, ".default", NULL);
	b = lora_load(dir, &mc, &e);
	if (!b) fail_msg("%s", e.msg);
	assert_memory_equal(b->block, a->block, 64 * 4);
	lora_free(b);

	/* tensors */
	write_tensors(dir, a, q0A, NULL, NULL, NULL);
	expect_fail(dir, &mc, SFT_EXIT_DATA, "adapter_model.safetensors: tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': missing", NULL);
	write_tensors(dir, a, NULL, d1B, NULL, NULL);
	expect_fail(dir, &mc, SFT_EXIT_DATA, "tensor 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight': shape [4, 64], expected [64, 4]", NULL);
	write_tensors(dir, a, NULL, NULL, NULL, "base_model.model.lm_head.lora_A.weight");
	expect_fail(dir, &mc, SFT_EXIT_DATA, "'base_model.model.lm_head.lora_A.weight': not a LoRA tensor", NULL);
	snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
	write_text(path, "garbage");
	expect_fail(dir, &mc, SFT_EXIT_DATA, "adapter_model.safetensors", NULL);
	write_tensors(dir, a, NULL, NULL, NULL, NULL);
	/* a model with other shapes */
	model_config wide = mc;
	wide.intermediate_size = 96;
	expect_fail(dir, &wide, SFT_EXIT_DATA, "gate_proj.lora_B.weight': shape [128, 4], expected [96, 4]", NULL);

	/* bad JSON */
	snprintf(path, sizeof path, "%s/adapter_config.json", dir);
	write_text(path, "{\n  \"r\": 4,\n  \"peft_type\": \"LORA\",,\n}");
	expect_fail(dir, &mc, SFT_EXIT_DATA, "adapter_config.json:3", NULL);
	write_text(path, "[1, 2]");
	expect_fail(dir, &mc, SFT_EXIT_DATA, "adapter_config.json", NULL);

	/* unsupported or invalid settings, each named */
	static const struct {
		const char *key, *value, *needle;
	} bad[] = {
		{"bias", "\"all\"", "bias"},
		{"fan_in_fan_out", "true", "fan_in_fan_out"},
		{"use_dora", "true", "use_dora"},
		{"modules_to_save", "[\"lm_head\"]", "modules_to_save"},
		{"layers_to_transform", "[0]", "layers_to_transform"},
		{"rank_pattern", "{\"q_proj\": 8}", "rank_pattern"},
		{"alpha_pattern", "{\"q_proj\": 8}", "alpha_pattern"},
		{"exclude_modules", "[\"q_proj\"]", "exclude_modules"},
		{"lora_bias", "true", "lora_bias"},
		{"peft_type", "\"IA3\"", "peft_type"},
		{"peft_type", NULL, "peft_type"},
		{"task_type", "\"SEQ_CLS\"", "task_type"},
		{"r", "0", "r must be"},
		{"r", "\"4\"", "r is not a number"},
		{"lora_alpha", "\"8\"", "lora_alpha"},
		{"lora_dropout", "1.5", "lora_dropout"},
		{"use_rslora", "1", "use_rslora"},
		{"target_modules", NULL, "target_modules is missing"},
		{"target_modules", "[\"q_proj\", \"lm_head\"]", "'lm_head' is not supported"},
		{"target_modules", "[\"embed_tokens\"]", "'embed_tokens' is not supported"},
		{"target_modules", "[\"model.layers.0.self_attn.q_proj\"]", "different modules in layers 0 and 1"},
		{"target_modules", "\".*\"", "selects lm_head"},
		{"target_modules", "\"(unclosed\"", "bad regular expression"},
		{"target_modules", "\"model\\\\.layers\\\\.\\\\d+\\\\.mlp\"", "selects model.layers.0.mlp"},
		{"target_modules", "\"(a|aa)*b\"", "selects no module"},
		{"target_modules", "\"nothing\"", "selects no module"},
		{"target_modules", "[1]", "target_modules[0]"},
		{"target_modules", "4", "target_modules is not a list"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		write_config(dir, bad[i].key, bad[i].value ? bad[i].value : NULL);
		if (!bad[i].value) { /* delete the key */
			char p[4096];
			fix_path(p, sizeof p, "lora/all/adapter_config.json");
			json_t *c = load_json(p);
			json_object_del(c, bad[i].key);
			snprintf(p, sizeof p, "%s/adapter_config.json", dir);
			assert_int_equal(json_dump_file(c, p, JSON_INDENT(2)), 0);
			json_decref(c);
		}
		expect_fail(dir, &mc, SFT_EXIT_DATA, bad[i].needle, "adapter_config.json");
	}

	/* target_modules forms that select the same modules: parsed, not errors */
	static const struct {
		const char *value;
		unsigned targets;
	} good[] = {
		{"\"all-linear\"", LORA_ALL_LINEAR},
		{"[\"all-linear\"]", LORA_ALL_LINEAR},
		{"[\"q_proj\", \"v_proj\"]", LORA_Q | LORA_V},
		{"[\"self_attn.q_proj\", \"mlp.down_proj\"]", LORA_Q | LORA_DOWN},
		{"\"model\\\\.layers\\\\.\\\\d+\\\\.self_attn\\\\.(q|v)_proj\"", LORA_Q | LORA_V},
		{"\".*\\\\.(gate|up)_proj\"", LORA_GATE | LORA_UP},
	};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		write_config(dir, "target_modules", good[i].value);
		snprintf(path, sizeof path, "%s/adapter_config.json", dir);
		size_t len;
		char *text = test_slurp(path, &len);
		lora_config lc;
		if (lora_config_parse_json(text, len, path, 2, &lc, &e) < 0) fail_msg("%s: %s", good[i].value, e.msg);
		assert_int_equal(lc.targets, good[i].targets);
		free(text);
	}
	/* lora_save into a missing directory */
	snprintf(path, sizeof path, "%s/missing", dir);
	assert_true(lora_save(a, path, NULL, &e) < 0);
	assert_int_equal(e.code, SFT_EXIT_RUNTIME);
	assert_non_null(strstr(e.msg, "missing"));
	lora_free(a);
	rm_dir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_targets),
		cmocka_unit_test(test_new_shapes_names),
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_linear_reference),
		cmocka_unit_test(test_linear_torch),
		cmocka_unit_test(test_drop_bits),
		cmocka_unit_test(test_linear_bits),
		cmocka_unit_test(test_load_resave),
		cmocka_unit_test(test_logits_merged),
		cmocka_unit_test(test_c_adapter),
		cmocka_unit_test(test_bad_inputs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
