/* GGUF dequantization tests: every supported ggml type against gguf-py's numpy reference
 * (fixtures from scripts/gen-weights-fixtures.py), compared bit for bit; exhaustive fp16
 * conversion checks; a tiny GGUF written by gguf-py's GGUFWriter read through gguf.h;
 * optionally (not in CI) a real GGUF: SFT_REAL_GGUF=model.gguf SFT_REAL_GGUF_REF=ref.safetensors
 * where ref comes from `scripts/gen-weights-fixtures.py --real-gguf model.gguf --out ref`. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dequant.h"
#include "gguf.h"
#include "safetensors.h"

static char fixdir[1024];

static void *slurp(const char *rel, size_t *len)
{
	char path[1200];
	snprintf(path, sizeof path, "%s/weights/%s", fixdir, rel);
	return test_slurp(path, len);
}

static uint32_t fbits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* Dequantizes dequant/<case>.q as `type` and compares bit for bit with <case>.f32. */
static void check_golden(const char *cs, int type)
{
	char a[256], b[256];
	snprintf(a, sizeof a, "dequant/%s.q", cs);
	snprintf(b, sizeof b, "dequant/%s.f32", cs);
	size_t qn, fn;
	uint8_t *q = slurp(a, &qn);
	float *ref = slurp(b, &fn); // (n,)
	size_t n = fn / 4;
	assert_true(n > 0);
	assert_int_equal(ggml_type_size_bytes(type, n), qn);
	float *out = malloc(n * sizeof *out); // (n,)
	sft_error e = { 0 };
	assert_int_equal(dequant_to_f32(type, q, n, out, &e), 0);
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		if (fbits(out[i]) != fbits(ref[i])) {
			if (bad++ < 5)
				print_error("%s[%zu]: got %.9g (0x%08x), want %.9g (0x%08x)\n", cs, i, out[i], fbits(out[i]),
				            ref[i], fbits(ref[i]));
		}
	assert_int_equal(bad, 0);
	/* unaligned source: same result */
	uint8_t *qu = malloc(qn + 1);
	memcpy(qu + 1, q, qn);
	memset(out, 0, n * sizeof *out);
	assert_int_equal(dequant_to_f32(type, qu + 1, n, out, &e), 0);
	assert_memory_equal(out, ref, n * 4);
	free(qu);
	free(out);
	free(q);
	free(ref);
}

static void test_q4_0(void **s) { (void)s; check_golden("Q4_0", GGML_TYPE_Q4_0); }
static void test_q4_1(void **s) { (void)s; check_golden("Q4_1", GGML_TYPE_Q4_1); }
static void test_q5_0(void **s) { (void)s; check_golden("Q5_0", GGML_TYPE_Q5_0); }
static void test_q5_1(void **s) { (void)s; check_golden("Q5_1", GGML_TYPE_Q5_1); }
static void test_q8_0(void **s) { (void)s; check_golden("Q8_0", GGML_TYPE_Q8_0); }
static void test_q2_k(void **s) { (void)s; check_golden("Q2_K", GGML_TYPE_Q2_K); }
static void test_q3_k(void **s) { (void)s; check_golden("Q3_K", GGML_TYPE_Q3_K); }
static void test_q4_k(void **s) { (void)s; check_golden("Q4_K", GGML_TYPE_Q4_K); }
static void test_q5_k(void **s) { (void)s; check_golden("Q5_K", GGML_TYPE_Q5_K); }
static void test_q6_k(void **s) { (void)s; check_golden("Q6_K", GGML_TYPE_Q6_K); }
static void test_q8_k(void **s) { (void)s; check_golden("Q8_K", GGML_TYPE_Q8_K); }
static void test_f16(void **s) { (void)s; check_golden("F16", GGML_TYPE_F16); }
static void test_bf16(void **s)
{
	(void)s;
	check_golden("BF16", GGML_TYPE_BF16);
	check_golden("BF16_bits", GGML_TYPE_BF16);
}
static void test_f32(void **s) { (void)s; check_golden("F32", GGML_TYPE_F32); }

/* Big tensor (takes the OpenMP path): 64 copies of the Q4_K golden blocks. */
static void test_large_parallel(void **s)
{
	(void)s;
	size_t qn, fn;
	uint8_t *q = slurp("dequant/Q4_K.q", &qn);
	float *ref = slurp("dequant/Q4_K.f32", &fn); // (1024,)
	const size_t copies = 64, n1 = fn / 4, n = n1 * copies;
	uint8_t *big = malloc(qn * copies);
	for (size_t c = 0; c < copies; c++)
		memcpy(big + c * qn, q, qn);
	float *out = malloc(n * sizeof *out); // (65536,)
	sft_error e = { 0 };
	assert_int_equal(dequant_to_f32(GGML_TYPE_Q4_K, big, n, out, &e), 0);
	for (size_t c = 0; c < copies; c++)
		assert_memory_equal(out + c * n1, ref, fn);
	free(big);
	free(out);
	free(q);
	free(ref);
}

/* Independent fp16 decoding by formula: (-1)^s * m * 2^(e-25) etc. */
static void test_f16_exhaustive(void **s)
{
	(void)s;
	for (uint32_t h = 0; h < 65536; h++) {
		float got = sft_f16_to_f32((uint16_t)h);
		int sign = h >> 15, ex = (h >> 10) & 31, m = h & 1023;
		if (ex == 31) {
			if (m == 0)
				assert_true(isinf(got) && (signbit(got) != 0) == sign);
			else {
				assert_true(isnan(got));
				assert_int_equal(fbits(got), ((uint32_t)sign << 31) | 0x7f800000u | ((uint32_t)m << 13));
			}
			continue;
		}
		float want = ex == 0 ? ldexpf((float)m, -24) : ldexpf((float)(1024 + m), ex - 25);
		if (sign)
			want = -want;
		assert_int_equal(fbits(got), fbits(want));
		/* round trip */
		assert_int_equal(sft_f32_to_f16(got), h);
	}
}

static void test_f32_to_f16_rounding(void **s)
{
	(void)s;
	assert_int_equal(sft_f32_to_f16(65504.0f), 0x7bff);
	assert_int_equal(sft_f32_to_f16(65519.0f), 0x7bff);
	assert_int_equal(sft_f32_to_f16(65520.0f), 0x7c00); /* tie to even goes up to inf */
	assert_int_equal(sft_f32_to_f16(1e10f), 0x7c00);
	assert_int_equal(sft_f32_to_f16(-INFINITY), 0xfc00);
	assert_int_equal(sft_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);           /* tie to even: 0 */
	assert_int_equal(sft_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
	assert_int_equal(sft_f32_to_f16(ldexpf(3.0f, -25)), 0x0002);           /* 1.5 ulp tie: up to 2 */
	assert_int_equal(sft_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);    /* tie, even stays */
	assert_int_equal(sft_f32_to_f16(1.0f + ldexpf(3.0f, -11)), 0x3c02);    /* tie, odd rounds up */
	assert_int_equal(sft_f32_to_f16(-0.0f), 0x8000);
	assert_int_equal(sft_f32_to_f16(NAN) & 0x7c00, 0x7c00);
	assert_true(sft_f32_to_f16(NAN) & 0x3ff);
	assert_int_equal(sft_f32_to_bf16(1.0f), 0x3f80);
	assert_int_equal(sft_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80);    /* tie to even */
	assert_int_equal(sft_f32_to_bf16(1.0f + ldexpf(3.0f, -8)), 0x3f82);
	assert_true((sft_f32_to_bf16(NAN) & 0x7f80) == 0x7f80 && (sft_f32_to_bf16(NAN) & 0x7f));
	assert_int_equal(fbits(sft_bf16_to_f32(0xc040)), 0xc0400000u);
}

static void test_names_sizes(void **s)
{
	(void)s;
	assert_string_equal(ggml_type_name(GGML_TYPE_Q4_K), "Q4_K");
	assert_string_equal(ggml_type_name(GGML_TYPE_BF16), "BF16");
	assert_string_equal(ggml_type_name(4), "unknown");
	assert_string_equal(ggml_type_name(-1), "unknown");
	assert_string_equal(ggml_type_name(1000), "unknown");
	assert_int_equal(ggml_type_from_name("q6_k"), GGML_TYPE_Q6_K);
	assert_int_equal(ggml_type_from_name("nope"), -1);
	assert_int_equal(ggml_type_block_size(GGML_TYPE_Q8_0), 32);
	assert_int_equal(ggml_type_block_size(GGML_TYPE_Q2_K), 256);
	assert_int_equal(ggml_type_size_bytes(GGML_TYPE_Q4_0, 64), 36);
	assert_int_equal(ggml_type_size_bytes(GGML_TYPE_Q4_0, 65), 0);
	assert_int_equal(ggml_type_size_bytes(GGML_TYPE_Q6_K, 512), 420);
	assert_int_equal(ggml_type_size_bytes(GGML_TYPE_F16, 3), 6);
	assert_int_equal(ggml_type_size_bytes(99, 32), 0);
	assert_int_equal(ggml_type_size_bytes(GGML_TYPE_F32, SIZE_MAX), 0);
	/* our table agrees with gguf.c's for every known id */
	for (int t = 0; t < GGML_TYPE_MAX; t++) {
		size_t blk = ggml_type_block_size(t);
		if (blk)
			assert_int_equal(ggml_type_size_bytes(t, blk * 4), gguf_ggml_nbytes((uint32_t)t, blk * 4));
	}
	assert_true(dequant_supported(GGML_TYPE_Q3_K));
	assert_false(dequant_supported(16)); /* IQ2_XXS */
}

static void test_errors(void **s)
{
	(void)s;
	uint8_t buf[512] = { 0 };
	float out[512];
	sft_error e = { 0 };
	assert_int_equal(dequant_to_f32(GGML_TYPE_Q4_0, buf, 48, out, &e), -SFT_EXIT_DATA);
	assert_int_equal(e.code, SFT_EXIT_DATA);
	assert_string_equal(e.msg, "48 elements is not a multiple of the Q4_0 block size 32");
	assert_int_equal(dequant_to_f32(GGML_TYPE_Q4_K, buf, 32, out, &e), -SFT_EXIT_DATA);
	assert_string_equal(e.msg, "32 elements is not a multiple of the Q4_K block size 256");
	assert_int_equal(dequant_to_f32(16, buf, 256, out, &e), -SFT_EXIT_DATA);
	assert_string_equal(e.msg, "cannot dequantize ggml type IQ2_XXS (16)");
	assert_int_equal(dequant_to_f32(77, buf, 1, out, &e), -SFT_EXIT_DATA);
	assert_string_equal(e.msg, "cannot dequantize ggml type unknown (77)");
	assert_int_equal(dequant_to_f32(GGML_TYPE_Q8_0, buf, 0, out, NULL), 0);
}

/* Compares every tensor of gguf file g with the same-named F32 tensor of ref; returns the
 * number of tensors compared. */
static size_t compare_gguf(const gguf_file *g, const st_file *ref, int need_all)
{
	size_t compared = 0;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const gguf_tensor *t = &g->tensors[i];
		char name[512];
		snprintf(name, sizeof name, "%.*s", (int)t->name.n, t->name.s);
		const st_tensor *rt = safetensors_find(ref, name);
		if (!rt) {
			if (need_all)
				fail_msg("tensor %s missing from the reference", name);
			continue;
		}
		uint64_t ne = 1;
		for (uint32_t d = 0; d < t->n_dims; d++)
			ne *= t->dims[d];
		assert_int_equal(rt->dtype, ST_F32);
		assert_int_equal(rt->n_elements, ne);
		assert_non_null(t->data);
		assert_int_equal(ggml_type_size_bytes((int)t->type, ne), t->size);
		assert_int_equal(gguf_tensor_n_elements(t), ne);
		float *out = malloc(ne * sizeof *out); // (ne,) ggml order == row-major numpy order
		sft_error e = { 0 };
		if (dequant_gguf_tensor(g, t, out, &e) < 0)
			fail_msg("%s", e.msg);
		size_t bad = 0;
		for (uint64_t k = 0; k < ne; k++) {
			uint32_t want;
			memcpy(&want, (const uint8_t *)rt->data + 4 * k, 4);
			if (fbits(out[k]) != want && bad++ < 3)
				print_error("%s (%s)[%llu]: got 0x%08x want 0x%08x\n", name, ggml_type_name((int)t->type),
				            (unsigned long long)k, fbits(out[k]), want);
		}
		assert_int_equal(bad, 0);
		free(out);
		compared++;
	}
	return compared;
}

static void test_tiny_gguf(void **s)
{
	(void)s;
	char gp[1200], rp[1200];
	snprintf(gp, sizeof gp, "%s/weights/tiny.gguf", fixdir);
	snprintf(rp, sizeof rp, "%s/weights/tiny-expected.safetensors", fixdir);
	sft_error e = { 0 };
	gguf_file *g = gguf_open(gp, &e);
	if (!g)
		fail_msg("%s", e.msg);
	st_file *ref = safetensors_open(rp, &e);
	if (!ref)
		fail_msg("%s", e.msg);
	assert_int_equal(g->n_tensors, 13);
	assert_int_equal(compare_gguf(g, ref, 1), 13);
	const gguf_tensor *t = gguf_find_tensor(g, "blk.0.ffn_gate.weight");
	assert_non_null(t);
	assert_int_equal(t->type, GGML_TYPE_Q4_K);
	assert_int_equal(t->dims[0], 256);
	assert_int_equal(t->dims[1], 2);
	/* errors name the file and the tensor */
	gguf_tensor bad = *t;
	float out[512]; // (2, 256)
	bad.type = 16; /* IQ2_XXS */
	assert_true(dequant_gguf_tensor(g, &bad, out, &e) < 0);
	char want[1400];
	snprintf(want, sizeof want, "%s: tensor 'blk.0.ffn_gate.weight': cannot dequantize ggml type IQ2_XXS (16)", gp);
	assert_string_equal(e.msg, want);
	bad = *t;
	bad.data = NULL;
	assert_true(dequant_gguf_tensor(g, &bad, out, &e) < 0);
	snprintf(want, sizeof want, "%s: tensor 'blk.0.ffn_gate.weight': its data is not in the file", gp);
	assert_string_equal(e.msg, want);
	bad = *t;
	bad.size = 100;
	assert_true(dequant_gguf_tensor(g, &bad, out, &e) < 0);
	assert_non_null(strstr(e.msg, "size does not match Q4_K x 512"));
	safetensors_close(ref);
	gguf_close(g);
}

static void test_real_gguf(void **s)
{
	(void)s;
	const char *gp = getenv("SFT_REAL_GGUF"), *rp = getenv("SFT_REAL_GGUF_REF");
	sft_error e = { 0 };
	gguf_file *g = gguf_open(gp, &e);
	if (!g)
		fail_msg("%s", e.msg);
	st_file *ref = safetensors_open(rp, &e);
	if (!ref)
		fail_msg("%s", e.msg);
	size_t n = compare_gguf(g, ref, 0);
	print_message("# %s: %zu tensors bit-identical to gguf-py\n", gp, n);
	assert_int_equal(n, ref->n_tensors);
	safetensors_close(ref);
	gguf_close(g);
}

int main(void)
{
	const char *d = getenv("SFT_TEST_DATA");
	snprintf(fixdir, sizeof fixdir, "%s", d ? d : "tests/fixtures");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_q4_0),         cmocka_unit_test(test_q4_1),
		cmocka_unit_test(test_q5_0),         cmocka_unit_test(test_q5_1),
		cmocka_unit_test(test_q8_0),         cmocka_unit_test(test_q2_k),
		cmocka_unit_test(test_q3_k),         cmocka_unit_test(test_q4_k),
		cmocka_unit_test(test_q5_k),         cmocka_unit_test(test_q6_k),
		cmocka_unit_test(test_q8_k),         cmocka_unit_test(test_f16),
		cmocka_unit_test(test_bf16),         cmocka_unit_test(test_f32),
		cmocka_unit_test(test_large_parallel), cmocka_unit_test(test_f16_exhaustive),
		cmocka_unit_test(test_f32_to_f16_rounding), cmocka_unit_test(test_names_sizes),
		cmocka_unit_test(test_errors),       cmocka_unit_test(test_tiny_gguf),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	/* The real-model check runs only when asked for (the model is not in the repo). */
	if (getenv("SFT_REAL_GGUF") && getenv("SFT_REAL_GGUF_REF")) {
		const struct CMUnitTest real[] = { cmocka_unit_test(test_real_gguf) };
		rc += cmocka_run_group_tests(real, NULL, NULL);
	}
	return rc;
}
