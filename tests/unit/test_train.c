/* Unit tests for libcommon/train: loss and every per-tensor gradient against transformers
 * (full fine-tuning) and peft (LoRA), 10 AdamW steps against torch.optim.AdamW, and the
 * internal identities (gradient accumulation, gradient checkpointing, eval == step loss,
 * NEFTune on/off, the memory plan).
 *
 * Fixtures: tests/fixtures/train/<arch>/ from scripts/gen-train-fixtures.py (tiny random
 * models; a batch with a packed row whose reference is its documents fed one by one).
 *
 * Tolerances.
 * - Gradients: ||got - want|| / ||want|| <= 1e-4 per tensor. Both sides are fp32 on
 *   identical weights and differ only in summation order (OpenBLAS vs torch gemm, online
 *   vs full softmax, fused chunked CE vs full log-softmax). Each step contributes relative
 *   rounding ~sqrt(K) * 6e-8 (K <= 128 terms); through 2 layers forward and back this
 *   stays around 1e-6 (measured worst below 1e-5); a wrong term (missed norm, rope sign,
 *   mask, scale) is an O(1e-2..1) relative error, so 1e-4 separates them both ways.
 * - Loss sums: 1e-5 relative (a sum of 15 fp32 token losses).
 * - AdamW: per-step losses 1e-4 relative; final weights 1e-3 relative in norm per tensor:
 *   Adam normalizes each element by its own gradient history, so elements whose gradient is
 *   at the rounding-noise level move by up to lr per step in either implementation.
 * - Gradient accumulation (4 x (1, T) vs (4, T)): 1e-6 relative in norm: the same products
 *   summed over the batch in a different grouping (gemm over N = 4T vs four N = T).
 * - Gradient checkpointing: bitwise (the recompute runs the same ops on the same inputs). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "lora.h"
#include "model.h"
#include "ops.h"
#include "safetensors.h"
#include "train.h"

static const char *fixdir(void)
{
	const char *d = getenv("SFT_TEST_DATA");
	return d ? d : "tests/fixtures";
}

static model *load_model(const char *arch)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/train/%s", fixdir(), arch);
	sft_error err = {0};
	model *m = model_load(dir, &err);
	if (!m) fail_msg("model_load(%s): %s", dir, err.msg);
	return m;
}

static json_t *load_cases(const char *arch)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/train/%s/cases.json", fixdir(), arch);
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (!j) fail_msg("%s: %s", path, je.text);
	return j;
}

static st_file *load_st(const char *arch, const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/train/%s/%s", fixdir(), arch, name);
	sft_error err = {0};
	st_file *f = safetensors_open(path, &err);
	if (!f) fail_msg("%s", err.msg);
	return f;
}

static void ints(const json_t *a, int32_t *out, size_t n)
{
	assert_int_equal(json_array_size(a), n);
	for (size_t i = 0; i < n; i++) out[i] = (int32_t)json_integer_value(json_array_get(a, i));
}

static void fixture_batch(const json_t *c, batch *b)
{
	int B = (int)json_integer_value(json_object_get(c, "B"));
	int T = (int)json_integer_value(json_object_get(c, "T"));
	sft_error err = {0};
	assert_int_equal(batch_alloc(b, B, T, &err), 0);
	b->B = B;
	b->T = T;
	size_t n = (size_t)B * T;
	ints(json_object_get(c, "tokens"), b->tokens, n);
	ints(json_object_get(c, "pos"), b->pos, n);
	ints(json_object_get(c, "seg"), b->seg, n);
	ints(json_object_get(c, "targets"), b->targets, n);
	b->n_targets = 0;
	b->n_tokens = 0;
	for (size_t i = 0; i < n; i++) {
		b->n_targets += b->targets[i] >= 0;
		b->n_tokens += b->seg[i] >= 0;
	}
}

/* ||a - b|| / ||b|| in double */
static double norm_err(const float *a, const float *b, size_t n)
{
	double dd = 0, bb = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];
		dd += d * d;
		bb += (double)b[i] * b[i];
	}
	if (isnan(dd)) return INFINITY;
	return sqrt(dd) / (bb > 0 ? sqrt(bb) : 1);
}

static float *st_floats(const st_file *f, const char *name)
{
	sft_error err = {0};
	const st_tensor *t = safetensors_get(f, name, &err);
	if (!t) fail_msg("%s", err.msg);
	float *v = malloc(t->n_elements * sizeof(float));
	assert_int_equal(safetensors_tensor_to_f32(t, v, &err), 0);
	return v;
}

/* Every trainable tensor's gradient (or value, with prefix "final.") against the file. */
static double check_tensors(const char *what, train_param *ps, int n, const st_file *f, const char *prefix,
			    int use_grad, double tol)
{
	double worst = 0;
	for (int i = 0; i < n; i++) {
		char key[256];
		snprintf(key, sizeof key, "%s%s", prefix, ps[i].name);
		const st_tensor *t = safetensors_find(f, key);
		if (!t) fail_msg("%s: reference has no '%s'", what, key);
		assert_int_equal(t->n_elements, ps[i].n);
		float *want = st_floats(f, key);
		double e = norm_err(use_grad ? ps[i].g : ps[i].p, want, ps[i].n);
		if (e > worst) worst = e;
		if (!(e <= tol)) fail_msg("%s: %s: relative error %.3g > %.3g", what, ps[i].name, e, tol);
		free(want);
	}
	/* and the reference holds nothing we did not check */
	size_t nref = 0, plen = strlen(prefix);
	for (size_t i = 0; i < f->n_tensors; i++) nref += !strncmp(f->tensors[i].name, prefix, plen);
	assert_int_equal(nref, (size_t)n);
	return worst;
}

static double jnum(const json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

static train_param *params_of(train_ctx *t, int *n)
{
	*n = train_params(t, NULL);
	assert_true(*n > 0);
	train_param *ps = calloc((size_t)*n, sizeof *ps);
	assert_int_equal(train_params(t, ps), *n);
	return ps;
}

/* ---- 1. full fine-tuning: loss and gradients vs transformers ------------------------------ */

static void check_full(const char *arch)
{
	model *m = load_model(arch);
	json_t *c = load_cases(arch);
	batch b;
	fixture_batch(c, &b);
	train_opts o = {.max_B = b.B, .max_T = b.T};
	sft_error err = {0};
	train_ctx *t = train_ctx_new(m, NULL, &o, &err);
	if (!t) fail_msg("%s", err.msg);
	int n;
	train_param *ps = params_of(t, &n);
	train_zero_grad(t);
	ops_ce_stats st;
	assert_int_equal(train_step(t, &b, jnum(c, "grad_scale"), &st, &err), 0);
	double want = jnum(c, "loss_sum");
	if (!(fabs(st.loss_sum - want) <= 1e-5 * want)) fail_msg("%s: loss %.6f, want %.6f", arch, st.loss_sum, want);
	assert_int_equal(st.n_tokens, json_integer_value(json_object_get(c, "n_tokens")));
	assert_int_equal(st.n_tokens, b.n_targets);
	assert_int_equal(st.n_correct, json_integer_value(json_object_get(c, "n_correct")));
	/* weight-decay groups as transformers' get_decay_parameter_names */
	const json_t *nd = json_object_get(c, "no_decay");
	int n_nd = 0;
	for (int i = 0; i < n; i++) {
		int want_nd = 0;
		for (size_t j = 0; j < json_array_size(nd); j++)
			want_nd |= !strcmp(ps[i].name, json_string_value(json_array_get(nd, j)));
		if (ps[i].no_decay != want_nd) fail_msg("%s: %s: no_decay %d, transformers %d", arch, ps[i].name, ps[i].no_decay, want_nd);
		n_nd += want_nd;
		assert_int_equal(ps[i].is_embedding, !strcmp(ps[i].name, "model.embed_tokens.weight") ||
							  !strcmp(ps[i].name, "lm_head.weight"));
	}
	assert_int_equal(n_nd, (int)json_array_size(nd));
	st_file *g = load_st(arch, "grads.safetensors");
	double worst = check_tensors(arch, ps, n, g, "grad.", 1, 1e-4);
	print_message("%s: loss %.6f (want %.6f), worst gradient relative error %.2e over %d tensors\n", arch,
		      st.loss_sum, want, worst, n);

	/* train_eval == the loss part of train_step, and == model_forward + fused CE */
	ops_ce_stats ev;
	assert_int_equal(train_eval(t, &b, &ev, &err), 0);
	assert_true(ev.loss_sum == st.loss_sum);
	assert_int_equal(ev.n_tokens, st.n_tokens);
	assert_int_equal(ev.n_correct, st.n_correct);
	int N = b.B * b.T, C = m->cfg.hidden_size, V = m->cfg.vocab_size;
	model_arena a;
	model_arena_init(&a);
	float *hid = malloc((size_t)N * C * sizeof *hid);
	float *scr = malloc(ops_fused_ce_scratch_size(C, V) * sizeof *scr);
	assert_int_equal(model_forward(m, &a, b.tokens, b.pos, b.seg, b.B, b.T, NULL, hid, &err), 0);
	ops_ce_stats mf = ops_fused_linear_ce(NULL, NULL, scr, hid, m->lm_head, b.targets, 0, N, C, V);
	assert_true(mf.loss_sum == ev.loss_sum);
	free(hid);
	free(scr);
	model_arena_free(&a);
	safetensors_close(g);
	free(ps);
	train_ctx_free(t);
	batch_free(&b);
	json_decref(c);
	model_free(m);
}

static void test_full_llama(void **s) { (void)s; check_full("llama"); }
static void test_full_llama3(void **s) { (void)s; check_full("llama3"); }
static void test_full_qwen2(void **s) { (void)s; check_full("qwen2"); }
static void test_full_qwen3(void **s) { (void)s; check_full("qwen3"); }
static void test_full_gemma3(void **s) { (void)s; check_full("gemma3"); }

/* ---- 2. LoRA: adapter gradients vs peft, base frozen ----------------------------------------- */

static lora_adapter *fixture_adapter(const model *m, const json_t *v, const st_file *f, double dropout)
{
	lora_config lc = {.r = (int)json_integer_value(json_object_get(v, "r")),
			  .alpha = json_number_value(json_object_get(v, "alpha")),
			  .dropout = dropout,
			  .use_rslora = json_is_true(json_object_get(v, "rslora"))};
	sft_error err = {0};
	assert_int_equal(lora_parse_targets(json_string_value(json_object_get(v, "targets")), &lc.targets, &err), 0);
	lora_adapter *a = lora_new(&m->cfg, &lc, &err);
	if (!a) fail_msg("%s", err.msg);
	int n = lora_tensors(a, NULL);
	model_tensor *ts = calloc((size_t)n, sizeof *ts);
	lora_tensors(a, ts);
	for (int i = 0; i < n; i++) {
		char key[256];
		snprintf(key, sizeof key, "init.%s", ts[i].name);
		float *val = st_floats(f, key);
		memcpy(ts[i].data, val, (size_t)(ts[i].shape[0] * ts[i].shape[1]) * sizeof(float));
		free(val);
	}
	free(ts);
	return a;
}

static void check_lora(const char *arch, const char *var)
{
	model *m = load_model(arch);
	json_t *c = load_cases(arch);
	const json_t *v = json_object_get(json_object_get(c, "lora"), var);
	assert_non_null(v);
	char fname[64];
	snprintf(fname, sizeof fname, "lora_%s.safetensors", var);
	st_file *f = load_st(arch, fname);
	lora_adapter *a = fixture_adapter(m, v, f, 0);
	batch b;
	fixture_batch(c, &b);
	train_opts o = {.max_B = b.B, .max_T = b.T};
	sft_error err = {0};
	train_ctx *t = train_ctx_new(m, a, &o, &err);
	if (!t) fail_msg("%s", err.msg);
	int n;
	train_param *ps = params_of(t, &n);
	assert_int_equal(n, lora_tensors(a, NULL));
	for (int i = 0; i < n; i++) {
		assert_false(ps[i].no_decay); /* no LoRA name matches the no-decay patterns */
		assert_false(ps[i].is_embedding);
	}
	size_t nb = m->n_params * sizeof(float);
	float *before = malloc(nb);
	memcpy(before, m->block, nb);
	train_zero_grad(t);
	ops_ce_stats st;
	assert_int_equal(train_step(t, &b, jnum(c, "grad_scale"), &st, &err), 0);
	double want = jnum(v, "loss_sum");
	if (!(fabs(st.loss_sum - want) <= 1e-5 * want)) fail_msg("%s/%s: loss %.6f, want %.6f", arch, var, st.loss_sum, want);
	double worst = check_tensors(var, ps, n, f, "grad.", 1, 1e-4);
	assert_memory_equal(before, m->block, nb); /* the base is frozen */
	print_message("%s lora %s: loss %.6f, worst gradient relative error %.2e over %d tensors\n", arch, var,
		      st.loss_sum, worst, n);
	free(before);
	free(ps);
	train_ctx_free(t);
	lora_free(a);
	safetensors_close(f);
	batch_free(&b);
	json_decref(c);
	model_free(m);
}

static void test_lora_llama_all(void **s) { (void)s; check_lora("llama", "all"); }
static void test_lora_llama_qv(void **s) { (void)s; check_lora("llama", "qv"); }
static void test_lora_llama_rs(void **s) { (void)s; check_lora("llama", "rs"); }
static void test_lora_gemma3_all(void **s) { (void)s; check_lora("gemma3", "all"); }
static void test_lora_gemma3_qv(void **s) { (void)s; check_lora("gemma3", "qv"); }
static void test_lora_gemma3_rs(void **s) { (void)s; check_lora("gemma3", "rs"); }

/* ---- 3. 10 AdamW steps vs torch.optim.AdamW --------------------------------------------------- */

static void check_adam(const char *arch, int use_lora)
{
	model *m = load_model(arch);
	json_t *c = load_cases(arch);
	const json_t *want = json_object_get(json_object_get(c, "adam"), use_lora ? "lora" : "full");
	assert_int_equal(json_array_size(want), 10);
	st_file *init = use_lora ? load_st(arch, "lora_all.safetensors") : NULL;
	lora_adapter *a = use_lora ? fixture_adapter(m, json_object_get(json_object_get(c, "lora"), "all"), init, 0) : NULL;
	st_file *fin = load_st(arch, use_lora ? "adam_lora.safetensors" : "adam_full.safetensors");
	batch b;
	fixture_batch(c, &b);
	train_opts o = {.max_B = b.B, .max_T = b.T};
	sft_error err = {0};
	train_ctx *t = train_ctx_new(m, a, &o, &err);
	if (!t) fail_msg("%s", err.msg);
	int n;
	train_param *ps = params_of(t, &n);
	float **mom = calloc((size_t)n, sizeof *mom), **var = calloc((size_t)n, sizeof *var);
	for (int i = 0; i < n; i++) {
		mom[i] = calloc(ps[i].n, sizeof(float));
		var[i] = calloc(ps[i].n, sizeof(float));
	}
	ops_adamw_config ac = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
	double worst_loss = 0;
	for (int step = 1; step <= 10; step++) {
		train_zero_grad(t);
		ops_ce_stats st;
		assert_int_equal(train_step(t, &b, jnum(c, "grad_scale"), &st, &err), 0);
		double wl = json_number_value(json_array_get(want, (size_t)step - 1));
		double e = fabs(st.loss_sum - wl) / wl;
		if (e > worst_loss) worst_loss = e;
		if (!(e <= 1e-4)) fail_msg("%s step %d: loss %.6f, want %.6f", arch, step, st.loss_sum, wl);
		double sq = 0;
		for (int i = 0; i < n; i++) sq += ops_sq_sum(ps[i].g, ps[i].n);
		double clip = ops_clip_scale(sqrt(sq), 1.0);
		for (int i = 0; i < n; i++)
			ops_adamw_step(ps[i].p, ps[i].g, mom[i], var[i], ps[i].n, &ac, step, 1e-3,
				       ps[i].no_decay ? 0.0 : 0.01, clip);
	}
	double worst = check_tensors("adamw", ps, n, fin, "final.", 0, 1e-3);
	print_message("%s adamw %s: worst step loss relative error %.2e, worst final weight error %.2e\n", arch,
		      use_lora ? "lora" : "full", worst_loss, worst);
	for (int i = 0; i < n; i++) {
		free(mom[i]);
		free(var[i]);
	}
	free(mom);
	free(var);
	free(ps);
	train_ctx_free(t);
	lora_free(a);
	safetensors_close(init);
	safetensors_close(fin);
	batch_free(&b);
	json_decref(c);
	model_free(m);
}

static void test_adam_llama_full(void **s) { (void)s; check_adam("llama", 0); }
static void test_adam_llama_lora(void **s) { (void)s; check_adam("llama", 1); }
static void test_adam_gemma3_full(void **s) { (void)s; check_adam("gemma3", 0); }
static void test_adam_gemma3_lora(void **s) { (void)s; check_adam("gemma3", 1); }

/* ---- 4. identities: accumulation, checkpointing, eval, NEFTune, dropout --------------------- */

/* A (4, T) batch: the fixture's two rows, then both again with tokens shifted (targets
 * follow their tokens, the mask pattern is kept). */
static void batch4(const json_t *c, int V, batch *b4)
{
	batch b;
	fixture_batch(c, &b);
	sft_error err = {0};
	assert_int_equal(batch_alloc(b4, 4, b.T, &err), 0);
	b4->B = 4;
	b4->T = b.T;
	b4->n_targets = 0;
	b4->n_tokens = 0;
	for (int r = 0; r < 4; r++) {
		size_t o = (size_t)r * b.T, src = (size_t)(r % 2) * b.T;
		int shift = r >= 2 ? 7 : 0;
		for (int j = 0; j < b.T; j++) {
			int32_t tk = b.tokens[src + j];
			b4->tokens[o + j] = b.seg[src + j] >= 0 ? (tk + shift) % V : tk;
			b4->pos[o + j] = b.pos[src + j];
			b4->seg[o + j] = b.seg[src + j];
		}
		for (int j = 0; j < b.T; j++) {
			b4->targets[o + j] = b.targets[src + j] >= 0 ? b4->tokens[o + j + 1] : -100;
			b4->n_targets += b4->targets[o + j] >= 0;
			b4->n_tokens += b4->seg[o + j] >= 0;
		}
	}
	batch_free(&b);
}

/* Row r of b as a (1, T) batch view (no copy). */
static batch row_view(const batch *b, int r)
{
	batch v = *b;
	size_t o = (size_t)r * b->T;
	v.B = 1;
	v.tokens = b->tokens + o;
	v.pos = b->pos + o;
	v.seg = b->seg + o;
	v.targets = b->targets + o;
	return v;
}

static float *grads_copy(train_ctx *t)
{
	int n;
	train_param *ps = params_of(t, &n);
	size_t tot = 0;
	for (int i = 0; i < n; i++) tot += ps[i].n;
	float *g = malloc(tot * sizeof *g), *p = g;
	for (int i = 0; i < n; i++) {
		memcpy(p, ps[i].g, ps[i].n * sizeof *p);
		p += ps[i].n;
	}
	free(ps);
	return g;
}

static void check_ga(const char *arch, int use_lora)
{
	model *m = load_model(arch);
	json_t *c = load_cases(arch);
	st_file *init = use_lora ? load_st(arch, "lora_all.safetensors") : NULL;
	lora_adapter *a = use_lora ? fixture_adapter(m, json_object_get(json_object_get(c, "lora"), "all"), init, 0) : NULL;
	batch b;
	batch4(c, m->cfg.vocab_size, &b);
	train_opts o = {.max_B = 4, .max_T = b.T};
	sft_error err = {0};
	train_ctx *t = train_ctx_new(m, a, &o, &err);
	if (!t) fail_msg("%s", err.msg);
	double scale = 1.0 / (double)b.n_targets;
	ops_ce_stats s4, s1, acc = {0, 0, 0};
	train_zero_grad(t);
	assert_int_equal(train_step(t, &b, scale, &s4, &err), 0);
	int n;
	train_param *ps = params_of(t, &n);
	float *g4 = grads_copy(t);
	train_zero_grad(t);
	for (int r = 0; r < 4; r++) {
		batch v = row_view(&b, r);
		assert_int_equal(train_step(t, &v, scale, &s1, &err), 0);
		acc.loss_sum += s1.loss_sum;
		acc.n_tokens += s1.n_tokens;
		acc.n_correct += s1.n_correct;
	}
	assert_int_equal(acc.n_tokens, s4.n_tokens);
	assert_int_equal(acc.n_correct, s4.n_correct);
	assert_true(fabs(acc.loss_sum - s4.loss_sum) <= 1e-6 * s4.loss_sum);
	const float *p = g4;
	double worst = 0;
	for (int i = 0; i < n; i++) {
		double e = norm_err(ps[i].g, p, ps[i].n);
		if (e > worst) worst = e;
		if (!(e <= 2e-6)) fail_msg("%s: GA: %s: relative error %.3g", arch, ps[i].name, e);
		if (getenv("TRAIN_TEST_VERBOSE")) print_message("  %s %.3g\n", ps[i].name, e);
		p += ps[i].n;
	}
	print_message("%s%s: 4 x (1, T) vs (4, T): worst gradient relative error %.2e\n", arch,
		      use_lora ? " lora" : "", worst);
	free(g4);
	free(ps);
	train_ctx_free(t);
	lora_free(a);
	safetensors_close(init);
	batch_free(&b);
	json_decref(c);
	model_free(m);
}

static void test_ga_llama(void **s) { (void)s; check_ga("llama", 0); }
static void test_ga_gemma3_lora(void **s) { (void)s; check_ga("gemma3", 1); }

/* A tiny model, its cases, optionally the all-linear LoRA fixture adapter (dropout p) and a
 * batch of 4 rows: the setup the checkpointing and thread-count checks share. */
typedef struct tcase {
	model *m;
	json_t *c;
	st_file *init;
	lora_adapter *a;
	batch b;
} tcase;

static void tcase_open(tcase *tc, const char *arch, int use_lora, double dropout)
{
	tc->m = load_model(arch);
	tc->c = load_cases(arch);
	tc->init = use_lora ? load_st(arch, "lora_all.safetensors") : NULL;
	const json_t *lv = json_object_get(json_object_get(tc->c, "lora"), "all");
	tc->a = use_lora ? fixture_adapter(tc->m, lv, tc->init, dropout) : NULL;
	batch4(tc->c, tc->m->cfg.vocab_size, &tc->b);
}

static void tcase_close(tcase *tc)
{
	lora_free(tc->a);
	safetensors_close(tc->init);
	batch_free(&tc->b);
	json_decref(tc->c);
	model_free(tc->m);
}

/* Checkpointing gives the same bits as keeping every activation, with NEFTune and LoRA
 * dropout active (both regenerated from the seed). */
static void check_ckpt(const char *arch, int use_lora)
{
	tcase tc;
	tcase_open(&tc, arch, use_lora, 0.25);
	model *m = tc.m;
	lora_adapter *a = tc.a;
	batch b = tc.b;
	sft_error err = {0};
	train_opts o = {.max_B = 4, .max_T = b.T, .neftune_alpha = 5};
	train_opts oc = o;
	oc.grad_checkpointing = 1;
	train_ctx *t0 = train_ctx_new(m, a, &o, &err), *t1 = train_ctx_new(m, a, &oc, &err);
	assert_non_null(t0);
	assert_non_null(t1);
	double scale = 1.0 / (double)b.n_targets;
	for (int k = 0; k < 2; k++) { /* twice: accumulation on top of existing gradients too */
		train_set_seed(t0, 99 + k);
		train_set_seed(t1, 99 + k);
		ops_ce_stats s0, s1;
		assert_int_equal(train_step(t0, &b, scale, &s0, &err), 0);
		assert_int_equal(train_step(t1, &b, scale, &s1, &err), 0);
		assert_true(s0.loss_sum == s1.loss_sum);
	}
	int n;
	train_param *p0 = params_of(t0, &n), *p1 = params_of(t1, &n);
	for (int i = 0; i < n; i++) {
		assert_ptr_not_equal(p0[i].g, p1[i].g);
		assert_memory_equal(p0[i].g, p1[i].g, p0[i].n * sizeof(float));
	}
	free(p0);
	free(p1);
	train_ctx_free(t0);
	train_ctx_free(t1);
	tcase_close(&tc);
}

/* The thread count changes nothing: the same step with 1 and with 2 OpenMP threads gives
 * the same loss and the same gradient bits (LoRA with dropout and NEFTune; full FT). */
static void check_threads(const char *arch, int use_lora)
{
	tcase tc;
	tcase_open(&tc, arch, use_lora, 0.2);
	model *m = tc.m;
	lora_adapter *a = tc.a;
	batch b = tc.b;
	sft_error err = {0};
	train_opts o = {.max_B = 4, .max_T = b.T, .neftune_alpha = 5};
	train_ctx *t = train_ctx_new(m, a, &o, &err);
	assert_non_null(t);
	double scale = 1.0 / (double)b.n_targets;
	int nthr = omp_get_max_threads();
	float *g[2];
	double loss[2];
	for (int k = 0; k < 2; k++) {
		omp_set_num_threads(k ? 2 : 1);
		train_zero_grad(t);
		train_set_seed(t, 1234);
		ops_ce_stats st;
		assert_int_equal(train_step(t, &b, scale, &st, &err), 0);
		loss[k] = st.loss_sum;
		g[k] = grads_copy(t);
	}
	omp_set_num_threads(nthr);
	assert_true(loss[0] == loss[1]);
	int n;
	train_param *ps = params_of(t, &n);
	size_t tot = 0;
	for (int i = 0; i < n; i++) tot += ps[i].n;
	assert_memory_equal(g[0], g[1], tot * sizeof(float));
	free(ps);
	free(g[0]);
	free(g[1]);
	train_ctx_free(t);
	tcase_close(&tc);
}

static void test_threads_llama_lora(void **s) { (void)s; check_threads("llama", 1); }
static void test_threads_gemma3_full(void **s) { (void)s; check_threads("gemma3", 0); }

static void test_ckpt_llama(void **s) { (void)s; check_ckpt("llama", 0); }
static void test_ckpt_qwen3(void **s) { (void)s; check_ckpt("qwen3", 0); }
static void test_ckpt_gemma3_lora(void **s) { (void)s; check_ckpt("gemma3", 1); }

/* NEFTune: alpha 0 == off; alpha > 0 changes the training loss (deterministically per
 * seed), never the eval loss. Eval contexts give the training context's eval loss. */
static void test_neftune_eval(void **s)
{
	(void)s;
	model *m = load_model("gemma3");
	json_t *c = load_cases("gemma3");
	batch b;
	fixture_batch(c, &b);
	sft_error err = {0};
	train_opts off = {.max_B = b.B, .max_T = b.T};
	train_opts zero = off, on = off, ev = off;
	zero.neftune_alpha = 0.0;
	on.neftune_alpha = 5.0;
	ev.eval_only = 1;
	train_ctx *t_off = train_ctx_new(m, NULL, &off, &err), *t_zero = train_ctx_new(m, NULL, &zero, &err);
	train_ctx *t_on = train_ctx_new(m, NULL, &on, &err), *t_ev = train_ctx_new(m, NULL, &ev, &err);
	assert_non_null(t_off);
	assert_non_null(t_zero);
	assert_non_null(t_on);
	assert_non_null(t_ev);
	double scale = jnum(c, "grad_scale");
	ops_ce_stats a, z, n1, n2, n3, e_off, e_on, e_ev;
	train_set_seed(t_zero, 5);
	train_set_seed(t_on, 5);
	assert_int_equal(train_step(t_off, &b, scale, &a, &err), 0);
	assert_int_equal(train_step(t_zero, &b, scale, &z, &err), 0);
	assert_true(a.loss_sum == z.loss_sum);
	assert_int_equal(train_step(t_on, &b, scale, &n1, &err), 0);
	assert_int_equal(train_step(t_on, &b, scale, &n2, &err), 0);
	train_set_seed(t_on, 6);
	assert_int_equal(train_step(t_on, &b, scale, &n3, &err), 0);
	assert_true(n1.loss_sum != a.loss_sum);
	assert_true(n1.loss_sum == n2.loss_sum); /* same seed, same noise */
	assert_true(n3.loss_sum != n1.loss_sum);
	assert_int_equal(train_eval(t_off, &b, &e_off, &err), 0);
	assert_int_equal(train_eval(t_on, &b, &e_on, &err), 0);
	assert_int_equal(train_eval(t_ev, &b, &e_ev, &err), 0);
	assert_true(e_on.loss_sum == e_off.loss_sum);
	assert_true(e_ev.loss_sum == e_off.loss_sum);
	assert_true(e_off.loss_sum == a.loss_sum);
	/* an eval-only context has no gradients and refuses train_step */
	assert_true(train_step(t_ev, &b, scale, &a, &err) < 0);
	assert_int_equal(err.code, SFT_EXIT_USAGE);
	print_message("gemma3: loss %.4f, with NEFTune alpha 5: %.4f / %.4f (seeds 5, 6)\n", a.loss_sum,
		      n1.loss_sum, n3.loss_sum);
	train_ctx_free(t_off);
	train_ctx_free(t_zero);
	train_ctx_free(t_on);
	train_ctx_free(t_ev);
	batch_free(&b);
	json_decref(c);
	model_free(m);
}

/* LoRA dropout: the gradient is that of the loss under the seed's mask. Directional
 * derivative along the gradient by central differences of the fp32 loss (eps 1e-3: the
 * O(eps^2) truncation and the loss rounding ~1e-5 / eps both stay well under 1%). */
static void test_lora_dropout_grad(void **s)
{
	(void)s;
	model *m = load_model("llama");
	json_t *c = load_cases("llama");
	st_file *init = load_st("llama", "lora_all.safetensors");
	lora_adapter *a = fixture_adapter(m, json_object_get(json_object_get(c, "lora"), "all"), init, 0.3);
	batch b;
	fixture_batch(c, &b);
	sft_error err = {0};
	train_opts o = {.max_B = b.B, .max_T = b.T};
	train_ctx *t = train_ctx_new(m, a, &o, &err);
	assert_non_null(t);
	int n;
	train_param *ps = params_of(t, &n);
	train_set_seed(t, 7);
	train_zero_grad(t);
	ops_ce_stats st, sp, sm, se;
	assert_int_equal(train_step(t, &b, 1.0, &st, &err), 0);
	assert_int_equal(train_eval(t, &b, &se, &err), 0);
	assert_true(se.loss_sum != st.loss_sum); /* dropout is active in training forwards only */
	train_opts oe = o;
	oe.eval_only = 1;
	train_ctx *te = train_ctx_new(m, a, &oe, &err);
	assert_non_null(te);
	ops_ce_stats se2;
	assert_int_equal(train_eval(te, &b, &se2, &err), 0);
	assert_true(se2.loss_sum == se.loss_sum);
	train_ctx_free(te);
	double gg = 0;
	for (int i = 0; i < n; i++) gg += ops_sq_sum(ps[i].g, ps[i].n);
	double gn = sqrt(gg), eps = 1e-3;
	float *g = grads_copy(t);
	for (int sign = 1; sign >= -1; sign -= 2) {
		const float *q = g;
		for (int i = 0; i < n; i++, q += ps[i - 1].n)
			for (size_t j = 0; j < ps[i].n; j++) ps[i].p[j] += (float)(sign * eps * q[j] / gn);
		assert_int_equal(train_step(t, &b, 0.0, sign > 0 ? &sp : &sm, &err), 0);
		q = g;
		for (int i = 0; i < n; i++, q += ps[i - 1].n)
			for (size_t j = 0; j < ps[i].n; j++) ps[i].p[j] -= (float)(sign * eps * q[j] / gn);
	}
	double fd = (sp.loss_sum - sm.loss_sum) / (2 * eps);
	print_message("llama lora dropout 0.3: |grad| %.6f, finite difference %.6f\n", gn, fd);
	assert_true(fabs(fd - gn) <= 1e-2 * gn);
	free(g);
	free(ps);
	train_ctx_free(t);
	lora_free(a);
	safetensors_close(init);
	batch_free(&b);
	json_decref(c);
	model_free(m);
}

/* ---- errors and the memory plan -------------------------------------------------------------- */

static void test_errors(void **s)
{
	(void)s;
	sft_error err = {0};
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/models/gemma3", fixdir()); /* final_logit_softcapping 30 */
	model *g = model_load(dir, &err);
	assert_non_null(g);
	train_opts o = {.max_B = 1, .max_T = 8};
	assert_null(train_ctx_new(g, NULL, &o, &err));
	assert_int_equal(err.code, SFT_EXIT_USAGE);
	assert_non_null(strstr(err.msg, "final_logit_softcapping"));
	model_free(g);

	model *m = load_model("llama");
	json_t *c = load_cases("llama");
	batch b;
	fixture_batch(c, &b);
	train_opts small = {.max_B = 1, .max_T = b.T};
	train_ctx *t = train_ctx_new(m, NULL, &small, &err);
	assert_non_null(t);
	ops_ce_stats st;
	assert_true(train_step(t, &b, 1.0, &st, &err) < 0); /* B = 2 > max_B */
	assert_int_equal(err.code, SFT_EXIT_USAGE);
	batch v = row_view(&b, 0);
	v.tokens[3] = m->cfg.vocab_size;
	assert_true(train_eval(t, &v, &st, &err) < 0);
	assert_int_equal(err.code, SFT_EXIT_DATA);
	train_ctx_free(t);
	train_opts bad = {.max_B = 0, .max_T = 4};
	assert_null(train_ctx_new(m, NULL, &bad, &err));
	assert_int_equal(err.code, SFT_EXIT_USAGE);
	batch_free(&b);
	json_decref(c);
	model_free(m);
}

static void test_mem_plan(void **s)
{
	(void)s;
	model *m = load_model("qwen3");
	size_t P = model_config_n_params(&m->cfg);
	train_opts o = {.max_B = 4, .max_T = 64};
	train_mem full, ck, ev, lo;
	train_mem_plan(&m->cfg, NULL, &o, &full);
	assert_int_equal(full.weights, P * sizeof(float));
	assert_int_equal(full.grads, P * sizeof(float));
	assert_int_equal(full.logits, ops_fused_ce_scratch_size(m->cfg.hidden_size, m->cfg.vocab_size) * sizeof(float));
	train_opts oc = o;
	oc.grad_checkpointing = 1;
	train_mem_plan(&m->cfg, NULL, &oc, &ck);
	assert_true(ck.activations < full.activations);
	train_opts oe = o;
	oe.eval_only = 1;
	train_mem_plan(&m->cfg, NULL, &oe, &ev);
	assert_int_equal(ev.grads, 0);
	assert_true(ev.activations < ck.activations);
	lora_config lc = {.r = 4, .alpha = 8, .targets = LORA_ALL_LINEAR};
	train_mem_plan(&m->cfg, &lc, &o, &lo);
	sft_error err = {0};
	lora_adapter *a = lora_new(&m->cfg, &lc, &err);
	assert_non_null(a);
	assert_int_equal(lo.grads, lo.weights - P * sizeof(float));
	assert_true(lo.grads >= a->n_params * sizeof(float) && lo.grads < a->n_params * sizeof(float) + 4096);
	assert_true(lo.activations > full.activations); /* + x @ A^T per adapted linear, scratch */
	lora_free(a);
	model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_llama),
		cmocka_unit_test(test_full_llama3),
		cmocka_unit_test(test_full_qwen2),
		cmocka_unit_test(test_full_qwen3),
		cmocka_unit_test(test_full_gemma3),
		cmocka_unit_test(test_lora_llama_all),
		cmocka_unit_test(test_lora_llama_qv),
		cmocka_unit_test(test_lora_llama_rs),
		cmocka_unit_test(test_lora_gemma3_all),
		cmocka_unit_test(test_lora_gemma3_qv),
		cmocka_unit_test(test_lora_gemma3_rs),
		cmocka_unit_test(test_adam_llama_full),
		cmocka_unit_test(test_adam_llama_lora),
		cmocka_unit_test(test_adam_gemma3_full),
		cmocka_unit_test(test_adam_gemma3_lora),
		cmocka_unit_test(test_ga_llama),
		cmocka_unit_test(test_ga_gemma3_lora),
		cmocka_unit_test(test_threads_llama_lora),
		cmocka_unit_test(test_threads_gemma3_full),
		cmocka_unit_test(test_ckpt_llama),
		cmocka_unit_test(test_ckpt_qwen3),
		cmocka_unit_test(test_ckpt_gemma3_lora),
		cmocka_unit_test(test_neftune_eval),
		cmocka_unit_test(test_lora_dropout_grad),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_mem_plan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
