/* Unit tests for libcommon/model: config parsing, safetensors loading (and its errors), the
 * packed-batch forward against transformers, the KV-cache decoder against the full forward,
 * and greedy generation against transformers' generate().
 *
 * Fixtures: tests/fixtures/models/<arch>/ from scripts/gen-model-fixtures.py (tiny random
 * models built by transformers from real config fields; logits of each document run alone,
 * and 32 greedy tokens).
 *
 * Tolerance for logits vs transformers: max |got - want| <= 1e-4 * max |want| per document.
 * Both sides compute in fp32 from identical weights; they differ only in summation order
 * (OpenBLAS vs torch's gemm, our online-softmax attention vs torch's softmax). Each logit
 * passes through ~2-4 layers of dot products of <= 128 terms, each contributing relative
 * rounding ~sqrt(K) * 6e-8 ~ 1e-6 of its operand magnitudes; compounded over the layers and
 * the final norm this stays ~1e-6..1e-5 of the logit scale. A real bug (wrong rope pair,
 * missed norm, off-by-one in the window, a crossed document) moves logits by O(1e-2) of
 * their scale or more, so 1e-4 separates the two by an order of magnitude either way.
 * KV-cache decode vs full forward: the same ops except the attention, so 1e-5. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "gguf.h"
#include "model.h"
#include "threads.h"

static const char *fixdir(void)
{
	const char *d = getenv("SFT_TEST_DATA");
	return d ? d : "tests/fixtures";
}

static void model_dir(char *buf, size_t n, const char *arch)
{
	snprintf(buf, n, "%s/models/%s", fixdir(), arch);
}

static json_t *load_cases(const char *arch)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/models/%s/cases.json", fixdir(), arch);
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (!j) fail_msg("%s: %s", path, je.text);
	return j;
}

static int32_t *json_ids(const json_t *a, int *n)
{
	*n = (int)json_array_size(a);
	int32_t *v = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *v);
	for (int i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
	return v;
}

static float *load_f32(const char *arch, const char *name, size_t n)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/models/%s/%s", fixdir(), arch, name);
	FILE *f = fopen(path, "rb");
	if (!f) fail_msg("cannot open %s", path);
	float *p = malloc(n * sizeof(float) + 4);
	size_t got = fread(p, sizeof(float), n + 1, f);
	fclose(f);
	if (got != n) fail_msg("%s: %zu floats, expected %zu", path, got, n);
	return p;
}

static model *load_model(const char *arch)
{
	char dir[4096];
	model_dir(dir, sizeof dir, arch);
	sft_error err = {0};
	model *m = model_load(dir, &err);
	if (!m) fail_msg("model_load(%s): %s", dir, err.msg);
	return m;
}

/* max |a - b| / max |b| over n values */
static double rel_err(const float *a, const float *b, size_t n)
{
	double md = 0, mb = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
		if (fabs(b[i]) > mb) mb = fabs(b[i]);
	}
	return md / (mb > 0 ? mb : 1);
}

/* ---- parity: packed batch forward vs transformers, per document ----------------------- */

static void check_parity(const char *arch, int want_arch)
{
	model *m = load_model(arch);
	assert_int_equal(m->cfg.arch, want_arch);
	json_t *cases = load_cases(arch);
	const json_t *rows = json_object_get(cases, "rows"), *docs = json_object_get(cases, "docs");
	int B = (int)json_array_size(rows), T = 0;
	int32_t *r0 = json_ids(json_array_get(rows, 0), &T);
	free(r0);
	int V = m->cfg.vocab_size;
	int32_t *tok = malloc((size_t)B * T * sizeof *tok); // (B, T)
	int32_t *pos = malloc((size_t)B * T * sizeof *pos); // (B, T)
	int32_t *seg = malloc((size_t)B * T * sizeof *seg); // (B, T)
	for (int b = 0; b < B; b++) {
		int n = 0;
		int32_t *ids = json_ids(json_array_get(rows, (size_t)b), &n);
		assert_int_equal(n, T);
		memcpy(tok + (size_t)b * T, ids, (size_t)T * sizeof *ids);
		free(ids);
	}
	size_t n_docs = json_array_size(docs), total = 0;
	for (size_t d = 0; d < n_docs; d++) {
		const json_t *e = json_array_get(docs, d);
		int r = (int)json_integer_value(json_array_get(e, 0));
		int s = (int)json_integer_value(json_array_get(e, 1));
		int n = (int)json_integer_value(json_array_get(e, 2));
		for (int i = 0; i < n; i++) {
			pos[(size_t)r * T + s + i] = i;         // positions restart per document
			seg[(size_t)r * T + s + i] = (int)d + 1;
		}
		total += (size_t)n;
	}
	float *want = load_f32(arch, "logits.f32", total * (size_t)V); // (sum of doc lengths, V)
	float *got = malloc((size_t)B * T * V * sizeof *got);           // (B, T, V)
	model_arena a;
	model_arena_init(&a);
	sft_error err = {0};
	assert_int_equal(model_forward(m, &a, tok, pos, seg, B, T, got, NULL, &err), 0);
	size_t off = 0;
	double worst = 0;
	for (size_t d = 0; d < n_docs; d++) {
		const json_t *e = json_array_get(docs, d);
		int r = (int)json_integer_value(json_array_get(e, 0));
		int s = (int)json_integer_value(json_array_get(e, 1));
		int n = (int)json_integer_value(json_array_get(e, 2));
		double re = rel_err(got + ((size_t)r * T + s) * V, want + off * V, (size_t)n * V);
		if (re > worst) worst = re;
		if (re > 1e-4) fail_msg("%s doc %zu: relative error %.3g > 1e-4", arch, d, re);
		off += (size_t)n;
	}
	print_message("# %s: max relative logit error vs transformers %.2e\n", arch, worst);

	/* hidden_out is the final-normed hidden state: hidden @ lm_head^T == logits (up to the
	 * softcap, which only gemma3 has). */
	if (m->cfg.final_softcap == 0) {
		int C = m->cfg.hidden_size;
		float *hid = malloc((size_t)B * T * C * sizeof *hid);  // (B, T, C)
		float *lg2 = malloc((size_t)B * T * V * sizeof *lg2);  // (B, T, V)
		assert_int_equal(model_forward(m, &a, tok, pos, seg, B, T, NULL, hid, &err), 0);
		ops_matmul_forward(lg2, hid, m->lm_head, NULL, B * T, C, V);
		assert_true(rel_err(lg2, got, (size_t)B * T * V) <= 1e-6);
		free(hid);
		free(lg2);
	}

	/* Without segment ids, row 0 (one document) must give the same logits. */
	float *got1 = malloc((size_t)T * V * sizeof *got1);
	for (int i = 0; i < T; i++) pos[i] = i;
	assert_int_equal(model_forward(m, &a, tok, pos, NULL, 1, T, got1, NULL, &err), 0);
	assert_true(rel_err(got1, got, (size_t)T * V) <= 1e-6);

	/* Greedy generation through the KV cache: identical tokens. */
	int np = 0, ng = 0;
	int32_t *prompt = json_ids(json_object_get(cases, "prompt"), &np);
	int32_t *greedy = json_ids(json_object_get(cases, "greedy"), &ng);
	model_kv_cache kv;
	assert_int_equal(model_kv_cache_init(&kv, m, np + ng, &err), 0);
	int32_t out[64];
	int n_out = 0;
	assert_int_equal(model_generate_greedy(m, &kv, prompt, np, ng, -1, out, &n_out, &err), 0);
	assert_int_equal(n_out, ng);
	for (int i = 0; i < ng; i++)
		if (out[i] != greedy[i]) fail_msg("%s: greedy token %d: got %d, transformers %d", arch, i, out[i], greedy[i]);

	model_kv_cache_free(&kv);
	model_kv_cache_free(NULL);
	free(prompt);
	free(greedy);
	free(got1);
	model_arena_free(&a);
	model_arena_free(NULL);
	free(got);
	free(want);
	free(tok);
	free(pos);
	free(seg);
	json_decref(cases);
	model_free(m);
}

static void test_parity_llama(void **s) { (void)s; check_parity("llama", MODEL_ARCH_LLAMA); }
static void test_parity_llama3(void **s) { (void)s; check_parity("llama3", MODEL_ARCH_LLAMA); }
static void test_parity_qwen2(void **s) { (void)s; check_parity("qwen2", MODEL_ARCH_QWEN2); }
static void test_parity_qwen3(void **s) { (void)s; check_parity("qwen3", MODEL_ARCH_QWEN3); }
static void test_parity_gemma3(void **s) { (void)s; check_parity("gemma3", MODEL_ARCH_GEMMA3); }

/* ---- KV-cache decode == full forward (chunked prefill, sliding window past the cache) --- */

static void check_decode(const char *arch)
{
	model *m = load_model(arch);
	/* prefill crosses the 512-token chunk once: the first chunk (from position 0) takes the
	 * tiled attention, the second (38 tokens at offset 512) the blocked prefill attention;
	 * then single-token steps */
	enum { T = 560, SPLIT = 550 };
	int V = m->cfg.vocab_size;
	int32_t tok[T], pos[T];
	for (int i = 0; i < T; i++) {
		tok[i] = (int32_t)((i * 37 + 11) % V);
		pos[i] = i;
	}
	float *full = malloc((size_t)T * V * sizeof *full); // (T, V)
	model_arena a;
	model_arena_init(&a);
	sft_error err = {0};
	assert_int_equal(model_forward(m, &a, tok, pos, NULL, 1, T, full, NULL, &err), 0);
	model_kv_cache kv;
	assert_int_equal(model_kv_cache_init(&kv, m, T, &err), 0);
	float *lg = malloc((size_t)V * sizeof *lg);
	assert_int_equal(model_decode(m, &kv, tok, SPLIT, lg, &err), 0);
	double re = rel_err(lg, full + (size_t)(SPLIT - 1) * V, (size_t)V);
	if (re > 1e-5) fail_msg("%s: prefill logits rel err %.3g", arch, re);
	for (int i = SPLIT; i < T; i++) {
		assert_int_equal(model_decode(m, &kv, tok + i, 1, lg, &err), 0);
		re = rel_err(lg, full + (size_t)i * V, (size_t)V);
		if (re > 1e-5) fail_msg("%s: decode step %d rel err %.3g", arch, i, re);
	}
	assert_int_equal(kv.len, T);
	/* Full cache: the next token is an error, not an overflow. */
	assert_true(model_decode(m, &kv, tok, 1, lg, &err) < 0);
	assert_non_null(strstr(err.msg, "kv cache full"));
	model_kv_cache_free(&kv);
	model_arena_free(&a);
	free(lg);
	free(full);
	model_free(m);
}

/* ---- batched decoding: model_decode_batch row i == model_decode of sequence i alone ----
 * Three sequences at different lengths (one past a sliding window, gemma3), decoded
 * together for a few steps, one of them leaving and a new one joining: every logits row
 * must be bit-identical to the same sequence decoded alone (each op of a step computes a
 * row from that row only), so the comparison is exact. */
static void check_decode_batch(const char *arch)
{
	model *m = load_model(arch);
	int V = m->cfg.vocab_size;
	enum { NS = 4, STEPS = 6, MAXP = 70 };
	const int plen[NS] = {5, 67, 1, 23};
	int32_t toks[NS][MAXP + STEPS];
	for (int i = 0; i < NS; i++)
		for (int j = 0; j < MAXP + STEPS; j++) toks[i][j] = (int32_t)((j * 13 + i * 101 + 7) % V);
	sft_error err = {0};
	model_kv_cache alone[NS], bat[NS];
	float *la = malloc((size_t)V * sizeof *la), *lb = malloc((size_t)NS * V * sizeof *lb);
	for (int i = 0; i < NS; i++) {
		assert_int_equal(model_kv_cache_init(&alone[i], m, MAXP + STEPS, &err), 0);
		assert_int_equal(model_kv_cache_init(&bat[i], m, MAXP + STEPS, &err), 0);
		assert_int_equal(model_decode(m, &alone[i], toks[i], plen[i], la, &err), 0);
		assert_int_equal(model_decode(m, &bat[i], toks[i], plen[i], lb, &err), 0);
	}
	model_arena a;
	model_arena_init(&a);
	int len[NS] = {plen[0], plen[1], plen[2], plen[3]};
	for (int step = 0; step < STEPS; step++) {
		/* sequences 0-2 for the first half, then 1 leaves and 3 joins */
		int ids[3] = {0, step < STEPS / 2 ? 1 : 3, 2};
		model_kv_cache *kv[3];
		int32_t next[3];
		for (int j = 0; j < 3; j++) {
			kv[j] = &bat[ids[j]];
			next[j] = toks[ids[j]][len[ids[j]]];
		}
		assert_int_equal(model_decode_batch(m, &a, kv, next, 3, lb, &err), 0);
		for (int j = 0; j < 3; j++) {
			int i = ids[j];
			assert_int_equal(model_decode(m, &alone[i], &next[j], 1, la, &err), 0);
			len[i]++;
			assert_int_equal(bat[i].len, len[i]);
			if (memcmp(la, lb + (size_t)j * V, (size_t)V * sizeof *la) != 0)
				fail_msg("%s: step %d sequence %d: batched logits differ from alone", arch, step, i);
		}
	}
	/* a full cache is an error and nothing is appended to any sequence */
	model_kv_cache small;
	assert_int_equal(model_kv_cache_init(&small, m, 2, &err), 0);
	assert_int_equal(model_decode(m, &small, toks[0], 2, la, &err), 0);
	model_kv_cache *kv2[2] = {&bat[0], &small};
	int32_t nx[2] = {1, 1};
	int before = bat[0].len;
	assert_true(model_decode_batch(m, &a, kv2, nx, 2, lb, &err) < 0);
	assert_non_null(strstr(err.msg, "kv cache full"));
	assert_int_equal(bat[0].len, before);
	nx[1] = (int32_t)V;
	kv2[1] = &bat[1];
	assert_true(model_decode_batch(m, &a, kv2, nx, 2, lb, &err) < 0);
	assert_int_equal(err.code, SFT_EXIT_DATA);
	model_kv_cache_free(&small);
	for (int i = 0; i < NS; i++) {
		model_kv_cache_free(&alone[i]);
		model_kv_cache_free(&bat[i]);
	}
	model_arena_free(&a);
	free(la);
	free(lb);
	model_free(m);
}

static void test_decode_batch_llama(void **s) { (void)s; check_decode_batch("llama"); }
static void test_decode_batch_qwen3(void **s) { (void)s; check_decode_batch("qwen3"); }
static void test_decode_batch_gemma3(void **s) { (void)s; check_decode_batch("gemma3"); }

/* ---- ops_matmul_rows_forward: any N, every shape class (full 4x4 tiles and partial ones, IN not a
 * multiple of 16, OUT not a multiple of the 4-row tile): each row bit-identical to the
 * same row computed alone, and within fp32 rounding of a double reference (|err| <=
 * 1e-5 * sum |w x|: IN = 600 products, each rounded once, summed in 16 lanes). */
static void test_rows_kernel(void **state)
{
	(void)state;
	enum { OUT = 37, IN = 600, NMAX = 21 };
	float *W = malloc(sizeof(float) * OUT * IN), *x = malloc(sizeof(float) * NMAX * IN);
	float *b = malloc(sizeof(float) * OUT), *out = malloc(sizeof(float) * NMAX * OUT), one[OUT];
	uint32_t r = 12345;
	for (int i = 0; i < OUT * IN; i++) W[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
	for (int i = 0; i < NMAX * IN; i++) x[i] = (float)((r = r * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
	for (int i = 0; i < OUT; i++) b[i] = 0.01f * (float)i;
	for (int N = 1; N <= NMAX; N += (N < 6 ? 1 : 5)) {
		ops_matmul_rows_forward(out, x, W, b, N, IN, OUT);
		for (int n = 0; n < N; n++) {
			ops_matmul_rows_forward(one, x + (size_t)n * IN, W, b, 1, IN, OUT);
			assert_memory_equal(one, out + (size_t)n * OUT, sizeof one);
			for (int o = 0; o < OUT; o++) {
				double ref = b[o], mag = fabs(b[o]);
				for (int k = 0; k < IN; k++) {
					ref += (double)W[(size_t)o * IN + k] * x[(size_t)n * IN + k];
					mag += fabs((double)W[(size_t)o * IN + k] * x[(size_t)n * IN + k]);
				}
				if (fabs(out[(size_t)n * OUT + o] - ref) > 1e-5 * mag)
					fail_msg("N %d row %d out %d: %g vs %g", N, n, o, out[(size_t)n * OUT + o], ref);
			}
		}
	}
	free(W);
	free(x);
	free(b);
	free(out);
}

static void test_decode_llama3(void **s) { (void)s; check_decode("llama3"); }
static void test_decode_gemma3(void **s) { (void)s; check_decode("gemma3"); }
static void test_decode_qwen2(void **s) { (void)s; check_decode("qwen2"); }

/* ---- config ---------------------------------------------------------------------------- */

static void test_config_fields(void **s)
{
	(void)s;
	model_config c;
	sft_error err = {0};
	char dir[4096];
	model_dir(dir, sizeof dir, "gemma3");
	assert_int_equal(model_config_load(&c, dir, &err), 0);
	assert_int_equal(c.arch, MODEL_ARCH_GEMMA3);
	assert_int_equal(c.n_layers, 4);
	assert_int_equal(c.sliding_window, 5);
	assert_int_equal(c.layer_sliding[0], 1);
	assert_int_equal(c.layer_sliding[1], 0);
	assert_int_equal(c.layer_sliding[2], 1);
	assert_int_equal(c.layer_sliding[3], 0);
	assert_true(c.norm_offset == 1.0f);
	assert_true(c.embed_scale == 8.0f);
	assert_true(c.final_softcap == 30.0f);
	assert_true(c.attn_scale == 0.25f); /* query_pre_attn_scalar 16 */
	assert_true(c.rope_local.theta == 10000.0 && c.rope.theta == 1000000.0);
	assert_int_equal(c.act, MODEL_ACT_GELU_TANH);
	assert_int_equal(c.qk_norm, 1);
	assert_int_equal(c.sandwich_norm, 1);

	model_dir(dir, sizeof dir, "llama3");
	assert_int_equal(model_config_load(&c, dir, &err), 0);
	assert_int_equal(c.arch, MODEL_ARCH_LLAMA);
	assert_int_equal(c.rope.scaling, OPS_ROPE_LLAMA3);
	assert_true(c.rope.factor == 8.0 && c.rope.original_max_position_embeddings == 64);
	assert_int_equal(c.tie_embeddings, 0);
	assert_int_equal(c.head_dim, 16);
	assert_int_equal(c.n_kv_heads, 2);

	model_dir(dir, sizeof dir, "qwen2");
	assert_int_equal(model_config_load(&c, dir, &err), 0);
	assert_int_equal(c.qkv_bias, 1);
	assert_int_equal(c.o_bias, 0);
	assert_int_equal(c.act, MODEL_ACT_SILU);

	/* The qwen3 fixture is sharded (3 files + index): its parity test covers that path. */
	char idx[4200];
	snprintf(idx, sizeof idx, "%s/models/qwen3/model.safetensors.index.json", fixdir());
	assert_int_equal(access(idx, R_OK), 0);

	/* Parameter count: the carved block holds exactly the tensors (+ 64-byte padding). */
	model *m = load_model("llama");
	size_t n = 0;
	const model_config *lc = &m->cfg;
	size_t C = (size_t)lc->hidden_size, F = (size_t)lc->intermediate_size;
	size_t per_layer = 2 * C + C * C * 2 + 2 * C * (size_t)lc->n_kv_heads * lc->head_dim + 3 * C * F;
	n = (size_t)lc->vocab_size * C + C + (size_t)lc->n_layers * per_layer;
	assert_true(m->n_params >= n && m->n_params < n + 16 * 64);
	assert_ptr_equal(m->lm_head, m->embed); /* tied */
	/* The tensor table covers the block exactly once: sizes add up (modulo padding),
	 * every tensor lies inside the block, no two overlap (sorted by address). */
	int nt = model_tensors(m, NULL);
	assert_int_equal(nt, 2 + 9 * lc->n_layers);
	model_tensor *tt = calloc((size_t)nt, sizeof *tt);
	assert_int_equal(model_tensors(m, tt), nt);
	size_t sum = 0;
	for (int i = 0; i < nt; i++) {
		size_t e = (size_t)tt[i].shape[0] * (size_t)(tt[i].n_dims == 2 ? tt[i].shape[1] : 1);
		sum += e;
		assert_true(tt[i].data >= m->block && tt[i].data + e <= m->block + m->n_params);
		if (i > 0) assert_true(tt[i - 1].data < tt[i].data);
	}
	assert_true(sum == n);
	assert_string_equal(tt[2].name, "model.layers.0.input_layernorm.weight");
	free(tt);
	model_free(m);
	model_free(NULL);
}

static void test_config_errors(void **s)
{
	(void)s;
	model_config c;
	sft_error err = {0};
	const char *mistral = "{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\","
			      "\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,"
			      "\"num_hidden_layers\":1,\"num_attention_heads\":2}";
	assert_true(model_config_parse(&c, mistral, strlen(mistral), "m/config.json", &err) < 0);
	assert_int_equal(err.code, SFT_EXIT_DATA);
	assert_non_null(strstr(err.msg, "MistralForCausalLM"));
	assert_non_null(strstr(err.msg, "m/config.json"));

	const char *bad = "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":10}";
	assert_true(model_config_parse(&c, bad, strlen(bad), "x", &err) < 0);
	assert_int_equal(err.code, SFT_EXIT_DATA);
	assert_non_null(strstr(err.msg, "invalid sizes"));

	const char *rope = "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":10,\"hidden_size\":8,"
			   "\"intermediate_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
			   "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}";
	assert_true(model_config_parse(&c, rope, strlen(rope), "x", &err) < 0);
	assert_non_null(strstr(err.msg, "yarn"));

	assert_true(model_config_parse(&c, "{", 1, "y.json", &err) < 0);
	assert_int_equal(err.code, SFT_EXIT_DATA);
	assert_non_null(strstr(err.msg, "y.json"));
}

/* A copy of a fixture directory with an edited config.json: missing tensors and shape
 * mismatches must name the file and the tensor. */
static void make_dir_with_config(char *tmp, const char *arch, const char *from, const char *to)
{
	strcpy(tmp, "/tmp/sft_test_model_XXXXXX");
	assert_non_null(mkdtemp(tmp));
	char src[4096], dst[4200];
	snprintf(src, sizeof src, "%s/models/%s/config.json", fixdir(), arch);
	size_t len = 0;
	sft_error err = {0};
	char *text = fs_read_file(src, &len, &err);
	assert_non_null(text);
	char *at = strstr(text, from);
	assert_non_null(at);
	snprintf(dst, sizeof dst, "%s/config.json", tmp);
	FILE *f = fopen(dst, "wb");
	fwrite(text, 1, (size_t)(at - text), f);
	fputs(to, f);
	fputs(at + strlen(from), f);
	fclose(f);
	free(text);
	char abs[4096];
	snprintf(src, sizeof src, "%s/models/%s/model.safetensors", fixdir(), arch);
	assert_non_null(realpath(src, abs));
	snprintf(dst, sizeof dst, "%s/model.safetensors", tmp);
	assert_int_equal(symlink(abs, dst), 0);
}

static void remove_dir(const char *tmp)
{
	char p[4200];
	snprintf(p, sizeof p, "%s/config.json", tmp);
	unlink(p);
	snprintf(p, sizeof p, "%s/model.safetensors", tmp);
	unlink(p);
	rmdir(tmp);
}

static void test_load_errors(void **s)
{
	(void)s;
	char tmp[64];
	sft_error err = {0};
	/* untied config over a tied checkpoint: lm_head.weight is missing */
	make_dir_with_config(tmp, "llama", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
	assert_null(model_load(tmp, &err));
	assert_int_equal(err.code, SFT_EXIT_DATA);
	assert_non_null(strstr(err.msg, "lm_head.weight"));
	assert_non_null(strstr(err.msg, "model.safetensors"));
	remove_dir(tmp);

	/* intermediate_size disagrees with the tensors */
	make_dir_with_config(tmp, "llama3", "\"intermediate_size\": 128", "\"intermediate_size\": 100");
	assert_null(model_load(tmp, &err));
	assert_int_equal(err.code, SFT_EXIT_DATA);
	assert_non_null(strstr(err.msg, "model.layers.0.mlp.gate_proj.weight"));
	assert_non_null(strstr(err.msg, "[128, 64]"));
	assert_non_null(strstr(err.msg, "model.safetensors"));
	remove_dir(tmp);

	/* token ids out of range are an error, not a read past the table */
	model *m = load_model("llama");
	model_arena a;
	model_arena_init(&a);
	int32_t tok[2] = {1, 100000}, pos[2] = {0, 1};
	assert_true(model_forward(m, &a, tok, pos, NULL, 1, 2, NULL, NULL, &err) < 0);
	assert_int_equal(err.code, SFT_EXIT_DATA);
	model_arena_free(&a);
	model_free(m);
}

/* ---- GGUF loading: the llama fixture written as llama.cpp lays it out (Q/K rows permuted)
 * must give back exactly the safetensors weights, hence the same logits. */
static void test_gguf_tiny_llama(void **s)
{
	(void)s;
	char path[4200];
	snprintf(path, sizeof path, "%s/models/llama/model.gguf", fixdir());
	sft_error err = {0};
	model *g = model_load_gguf(path, &err);
	if (!g) fail_msg("model_load_gguf: %s", err.msg);
	model *m = load_model("llama");
	/* model_load_any: GGUF told by its magic, not its name; a directory as model_load; a
	 * regular file of another kind is bad data naming the file */
	{
		char tmp[] = "/tmp/sftkit-anyXXXXXX";
		int fd = mkstemp(tmp);
		assert_true(fd >= 0);
		FILE *in = fopen(path, "rb");
		assert_non_null(in);
		char buf[65536];
		size_t k;
		while ((k = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(write(fd, buf, k), (ssize_t)k);
		fclose(in);
		close(fd);
		assert_true(gguf_path_is_gguf(tmp) && !gguf_path_is_gguf(fixdir()));
		int kind = -1;
		model *a = model_load_any(tmp, &kind, &err);
		if (!a) fail_msg("model_load_any(%s): %s", tmp, err.msg);
		assert_int_equal(kind, 1);
		assert_memory_equal(a->block, g->block, g->n_params * sizeof(float));
		model_free(a);
		char d[4200];
		snprintf(d, sizeof d, "%s/models/llama", fixdir());
		a = model_load_any(d, &kind, &err);
		if (!a) fail_msg("model_load_any(%s): %s", d, err.msg);
		assert_int_equal(kind, 0);
		assert_memory_equal(a->block, m->block, m->n_params * sizeof(float));
		model_free(a);
		snprintf(d, sizeof d, "%s/models/llama/config.json", fixdir());
		assert_null(model_load_any(d, &kind, &err));
		assert_int_equal(err.code, SFT_EXIT_DATA);
		assert_non_null(strstr(err.msg, "not a GGUF file"));
		unlink(tmp);
	}
	assert_int_equal(g->cfg.arch, MODEL_ARCH_LLAMA);
	assert_int_equal(g->cfg.tie_embeddings, 1);
	assert_int_equal(g->cfg.n_kv_heads, m->cfg.n_kv_heads);
	assert_true(g->n_params == m->n_params);
	/* same layout, same values (both fp32): bit-identical blocks */
	assert_memory_equal(g->block, m->block, m->n_params * sizeof(float));
	int T = 16, V = g->cfg.vocab_size;
	json_t *cases = load_cases("llama");
	int n = 0;
	int32_t *ids = json_ids(json_array_get(json_object_get(cases, "rows"), 0), &n);
	assert_int_equal(n, T);
	int32_t pos[16];
	for (int i = 0; i < T; i++) pos[i] = i;
	float *want = load_f32("llama", "logits.f32", (size_t)(T + T) * V); /* docs: row 0, then row 1's two */
	float *got = malloc((size_t)T * V * sizeof *got);
	model_arena a;
	model_arena_init(&a);
	assert_int_equal(model_forward(g, &a, ids, pos, NULL, 1, T, got, NULL, &err), 0);
	assert_true(rel_err(got, want, (size_t)T * V) <= 1e-4);
	model_arena_free(&a);
	free(got);
	free(want);
	free(ids);
	json_decref(cases);
	model_free(m);
	model_free(g);

	/* a vocab-only GGUF has no weights: the error names the tensor */
	snprintf(path, sizeof path, "%s/tokenizers/smollm2.gguf", fixdir());
	assert_null(model_load_gguf(path, &err));
	assert_int_equal(err.code, SFT_EXIT_DATA);
	assert_non_null(strstr(err.msg, "token_embd.weight"));
	assert_null(model_load_gguf("/nonexistent/x.gguf", &err));
	assert_true(err.code != 0);
}

/* ---- Qwen2 / Qwen3 GGUF: the tiny fixtures as llama.cpp converts them (no Q/K permutation;
 * q/k/v biases, per-head q/k norms; scripts/gen-qwen-gguf-fixtures.py, which also checks
 * that transformers loading the GGUF reproduces the HF logits). Same weights bit for bit as
 * the safetensors copy, and the transformers logits of the fixture within 1e-4 (see top). */
static void check_gguf_qwen(const char *arch, int want_arch)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/models/%s-gguf/model.gguf", fixdir(), arch);
	sft_error err = {0};
	model *g = model_load_gguf(path, &err);
	if (!g) fail_msg("model_load_gguf(%s): %s", path, err.msg);
	model *m = load_model(arch);
	assert_int_equal(g->cfg.arch, want_arch);
	assert_int_equal(g->cfg.head_dim, m->cfg.head_dim);
	assert_int_equal(g->cfg.qkv_bias, m->cfg.qkv_bias);
	assert_int_equal(g->cfg.qk_norm, m->cfg.qk_norm);
	assert_int_equal(g->cfg.tie_embeddings, m->cfg.tie_embeddings);
	assert_true(g->cfg.rope.theta == m->cfg.rope.theta);
	assert_true(g->n_params == m->n_params);
	assert_memory_equal(g->block, m->block, m->n_params * sizeof(float));
	json_t *cases = load_cases(arch);
	int T = 0, V = g->cfg.vocab_size;
	int32_t *ids = json_ids(json_array_get(json_object_get(cases, "rows"), 0), &T);
	int32_t pos[64];
	assert_true(T <= 64);
	for (int i = 0; i < T; i++) pos[i] = i;
	float *want = load_f32(arch, "logits.f32", (size_t)(T + T) * V); /* row 0, then row 1's two docs */
	float *got = malloc((size_t)T * V * sizeof *got);
	model_arena a;
	model_arena_init(&a);
	assert_int_equal(model_forward(g, &a, ids, pos, NULL, 1, T, got, NULL, &err), 0);
	double re = rel_err(got, want, (size_t)T * V);
	print_message("# %s GGUF: relative logit error vs transformers %.2e\n", arch, re);
	assert_true(re <= 1e-4);
	model_arena_free(&a);
	free(got);
	free(want);
	free(ids);
	json_decref(cases);
	model_free(m);
	model_free(g);
}

static void test_gguf_qwen2(void **s) { (void)s; check_gguf_qwen("qwen2", MODEL_ARCH_QWEN2); }
static void test_gguf_qwen3(void **s) { (void)s; check_gguf_qwen("qwen3", MODEL_ARCH_QWEN3); }

/* ---- the real SmolLM2-135M-Instruct Q4_1 GGUF vs transformers loading the same file ----
 * The GGUF (~90 MB) is not committed: $SFT_SMOLLM2_GGUF or models/SmolLM2-135M-Instruct.Q4_1.gguf
 * (scripts/get-model smollm2-135m-instruct), and Gemma 3 270M Q4_K_M ($SFT_GEMMA3_GGUF or
 * models/gemma-3-270m-q4_k_m.gguf); a case is not registered when its file is absent. Both sides dequantize the
 * same blocks to fp32 and run fp32 (30 layers, K up to 1536), so the error budget is larger
 * than for the 2-layer fixtures: <= 1e-3 of the logit scale. */
typedef struct real_gguf {
	const char *env, *default_path, *fixture;
	int arch, n_layers, n_kv_heads;
} real_gguf;

static const real_gguf REAL[] = {
	{"SFT_SMOLLM2_GGUF", "models/SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-gguf", MODEL_ARCH_LLAMA, 30, 3},
	{"SFT_GEMMA3_GGUF", "models/gemma-3-270m-q4_k_m.gguf", "gemma3-270m-gguf", MODEL_ARCH_GEMMA3, 18, 1},
};

static const char *real_path(const real_gguf *r)
{
	const char *path = getenv(r->env);
	return path ? path : r->default_path;
}

static void test_gguf_real(void **state)
{
	const real_gguf *r = *state;
	const char *path = real_path(r);
	sft_error err = {0};
	model *m = model_load_gguf(path, &err);
	if (!m) fail_msg("model_load_gguf: %s", err.msg);
	assert_int_equal(m->cfg.arch, r->arch);
	assert_int_equal(m->cfg.n_layers, r->n_layers);
	assert_int_equal(m->cfg.n_kv_heads, r->n_kv_heads);
	assert_ptr_equal(m->lm_head, m->embed);
	json_t *cases = load_cases(r->fixture);
	int T = 0, ng = 0;
	int32_t *ids = json_ids(json_object_get(cases, "ids"), &T);
	int32_t *greedy = json_ids(json_object_get(cases, "greedy"), &ng);
	int stride = (int)json_integer_value(json_object_get(cases, "stride"));
	int V = m->cfg.vocab_size;
	assert_int_equal(V, (int)json_integer_value(json_object_get(cases, "vocab")));
	int last_stride = (int)json_integer_value(json_object_get(cases, "last_stride"));
	assert_true(stride > 0 && last_stride > 0);
	int nsub = (V + stride - 1) / stride, nlast = (V + last_stride - 1) / last_stride;
	float *want = load_f32(r->fixture, "logits.f32", (size_t)T * nsub + (size_t)nlast);
	float *got = malloc((size_t)T * V * sizeof *got); // (T, V)
	size_t nbuf = (size_t)T * nsub > (size_t)nlast ? (size_t)T * nsub : (size_t)nlast;
	float *sub = malloc(nbuf * sizeof *sub); // (T, V/stride), then (V/last_stride)
	int32_t *pos = malloc((size_t)T * sizeof *pos);
	for (int i = 0; i < T; i++) pos[i] = i;
	model_arena a;
	model_arena_init(&a);
	assert_int_equal(model_forward(m, &a, ids, pos, NULL, 1, T, got, NULL, &err), 0);
	for (int t = 0; t < T; t++)
		for (int j = 0; j < nsub; j++) sub[(size_t)t * nsub + j] = got[(size_t)t * V + (size_t)j * stride];
	double re_sub = rel_err(sub, want, (size_t)T * nsub);
	for (int j = 0; j < nlast; j++) sub[j] = got[(size_t)(T - 1) * V + (size_t)j * last_stride];
	double re_last = rel_err(sub, want + (size_t)T * nsub, (size_t)nlast);
	print_message("# %s: relative logit error vs transformers: %.2e (all positions, "
		      "every %dth entry), %.2e (last position, stride %d)\n", r->fixture, re_sub, stride, re_last, last_stride);
	assert_true(re_sub <= 1e-3);
	assert_true(re_last <= 1e-3);
	model_kv_cache kv;
	assert_int_equal(model_kv_cache_init(&kv, m, T + ng, &err), 0);
	int32_t out[32];
	assert_true(ng <= 32);
	int n_out = 0;
	assert_int_equal(model_generate_greedy(m, &kv, ids, T, ng, -1, out, &n_out, &err), 0);
	assert_int_equal(n_out, ng);
	for (int i = 0; i < ng; i++)
		if (out[i] != greedy[i]) fail_msg("greedy token %d: got %d, transformers %d", i, out[i], greedy[i]);
	model_kv_cache_free(&kv);
	model_arena_free(&a);
	free(pos);
	free(sub);
	free(got);
	free(want);
	free(ids);
	free(greedy);
	json_decref(cases);
	model_free(m);
}

int main(int argc, char **argv)
{
	/* libgomp's default active wait spins its idle threads between parallel regions while
	 * OpenBLAS (a pthreads build) runs its own threads: on 2 cores the 30-layer GGUF case
	 * takes 14 s instead of 1.5 s (threads.h). */
	sft_threads_init(argc, argv);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_fields),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_parity_llama),
		cmocka_unit_test(test_parity_llama3),
		cmocka_unit_test(test_parity_qwen2),
		cmocka_unit_test(test_parity_qwen3),
		cmocka_unit_test(test_parity_gemma3),
		cmocka_unit_test(test_decode_llama3),
		cmocka_unit_test(test_decode_gemma3),
		cmocka_unit_test(test_decode_qwen2),
		cmocka_unit_test(test_rows_kernel),
		cmocka_unit_test(test_decode_batch_llama),
		cmocka_unit_test(test_decode_batch_qwen3),
		cmocka_unit_test(test_decode_batch_gemma3),
		cmocka_unit_test(test_gguf_tiny_llama),
		cmocka_unit_test(test_gguf_qwen2),
		cmocka_unit_test(test_gguf_qwen3),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	/* The real GGUFs (not in CI) run only where present. */
	for (size_t i = 0; i < sizeof REAL / sizeof REAL[0]; i++) {
		if (access(real_path(&REAL[i]), R_OK) != 0) continue;
		struct CMUnitTest real[] = {cmocka_unit_test_prestate(test_gguf_real, (void *)&REAL[i])};
		real[0].name = REAL[i].fixture;
		rc |= cmocka_run_group_tests(real, NULL, NULL);
	}
	return rc;
}
