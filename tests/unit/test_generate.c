/* test_generate.c - libcommon/generate.h: transformers' processor chain against goldens
 * from scripts/gen-generate-fixtures.py, sampling frequencies, seeded determinism, stop
 * strings across token boundaries, generate() end to end on the tiny llama fixture, and
 * continuous batching (results independent of the batch) on every tiny architecture. */
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
#include <zlib.h>

#include "generate.h"
#include "threads.h"

static const char *fixdir(void)
{
	const char *d = getenv("SFT_TEST_DATA");
	return d ? d : "tests/fixtures";
}

static json_t *load_json(const char *rel)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", fixdir(), rel);
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (!j) fail_msg("%s: %s", path, je.text);
	return j;
}

static int32_t *json_ids(json_t *a, int *n)
{
	*n = (int)json_array_size(a);
	int32_t *ids = malloc((size_t)(*n ? *n : 1) * sizeof *ids);
	for (int i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
	return ids;
}

static void case_cfg(json_t *c, gen_config *cfg)
{
	gen_config_init(cfg);
	json_t *o = json_object_get(c, "cfg");
	cfg->do_sample = json_is_true(json_object_get(o, "do_sample"));
	cfg->temperature = json_number_value(json_object_get(o, "temperature"));
	cfg->top_k = (int)json_integer_value(json_object_get(o, "top_k"));
	cfg->top_p = json_number_value(json_object_get(o, "top_p"));
	cfg->min_p = json_number_value(json_object_get(o, "min_p"));
	cfg->repetition_penalty = json_number_value(json_object_get(o, "repetition_penalty"));
}

static float *case_logits(json_t *c, int *V)
{
	json_t *a = json_object_get(c, "logits");
	*V = (int)json_array_size(a);
	float *l = malloc((size_t)*V * sizeof *l);
	for (int i = 0; i < *V; i++) l[i] = (float)json_number_value(json_array_get(a, (size_t)i));
	return l;
}

/* (1) Filtered log-probs vs transformers' LogitsProcessorList. Both sides work in double
 * on the same fp32 logits, so they differ by rounding only (~1e-15 relative over 64
 * terms); 1e-6 of max(1, |want|) leaves that a wide margin while any semantic slip (a
 * wrong penalty direction, temperature before the penalty, an off-by-one in top-p) moves
 * values by percents or flips the mask. Masks must agree exactly. */
static void test_processors(void **state)
{
	(void)state;
	json_t *root = load_json("generate/processors.json");
	json_t *cases = json_object_get(root, "cases");
	size_t ci;
	json_t *c;
	json_array_foreach(cases, ci, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		gen_config cfg;
		case_cfg(c, &cfg);
		int V, n_seq;
		float *logits = case_logits(c, &V);
		int32_t *seq = json_ids(json_object_get(c, "seq"), &n_seq);
		gen_sampler s;
		sft_error err = {0};
		assert_int_equal(gen_sampler_init(&s, V, 1, &err), 0);
		double *lp = malloc((size_t)V * sizeof *lp);
		gen_filter(&s, &cfg, logits, seq, n_seq, lp);
		json_t *want = json_object_get(c, "logprobs");
		for (int i = 0; i < V; i++) {
			json_t *w = json_array_get(want, (size_t)i);
			if (json_is_null(w)) {
				if (lp[i] != -INFINITY) fail_msg("%s: token %d kept (%g), transformers removed it", name, i, lp[i]);
				continue;
			}
			double wv = json_number_value(w);
			if (!(fabs(lp[i] - wv) <= 1e-6 * fmax(1.0, fabs(wv))))
				fail_msg("%s: token %d: logprob %.17g, transformers %.17g", name, i, lp[i], wv);
		}
		/* greedy picks transformers' argmax of the processed scores */
		if (!cfg.do_sample)
			assert_int_equal(gen_sample(&s, &cfg, logits, seq, n_seq),
					 json_integer_value(json_object_get(c, "argmax")));
		/* temperature 0 means greedy whatever do_sample says */
		gen_config g = cfg;
		g.do_sample = 1;
		g.temperature = 0;
		int32_t am = gen_sample(&s, &g, logits, seq, n_seq);
		g.do_sample = 0;
		g.temperature = 1;
		assert_int_equal(am, gen_sample(&s, &g, logits, seq, n_seq));
		free(lp);
		free(seq);
		free(logits);
		gen_sampler_free(&s);
	}
	json_decref(root);
}

/* (2) 20k seeded draws from the filtered distributions of the fixture: each count within
 * 5 binomial sigmas of N p (a false failure per token has probability ~6e-7; with at most
 * 64 tokens per case, ~4e-5 per case for a correct sampler, and the seed is fixed, so the
 * test is deterministic anyway), plus 1 for p near 0; removed tokens are never drawn. */
static void test_frequencies(void **state)
{
	(void)state;
	json_t *root = load_json("generate/processors.json");
	json_t *cases = json_object_get(root, "cases");
	size_t ci;
	json_t *c;
	enum { N = 20000 };
	json_array_foreach(cases, ci, c) {
		gen_config cfg;
		case_cfg(c, &cfg);
		if (!cfg.do_sample) continue;
		int V, n_seq;
		float *logits = case_logits(c, &V);
		int32_t *seq = json_ids(json_object_get(c, "seq"), &n_seq);
		gen_sampler s;
		sft_error err = {0};
		assert_int_equal(gen_sampler_init(&s, V, 42 + ci, &err), 0);
		int *count = calloc((size_t)V, sizeof *count);
		for (int k = 0; k < N; k++) count[gen_sample(&s, &cfg, logits, seq, n_seq)]++;
		json_t *want = json_object_get(c, "logprobs");
		for (int i = 0; i < V; i++) {
			json_t *w = json_array_get(want, (size_t)i);
			double p = json_is_null(w) ? 0 : exp(json_number_value(w));
			double sd = sqrt(N * p * (1 - p));
			if (fabs(count[i] - N * p) > 5 * sd + 1)
				fail_msg("%s: token %d drawn %d times, expected %.1f (sd %.1f)",
					 json_string_value(json_object_get(c, "name")), i, count[i], N * p, sd);
		}
		free(count);
		free(seq);
		free(logits);
		gen_sampler_free(&s);
	}
	json_decref(root);
}

/* (3) Same seed, same stream and same draws; another seed, another stream. */
static void test_determinism(void **state)
{
	(void)state;
	json_t *root = load_json("generate/processors.json");
	json_t *c = json_array_get(json_object_get(root, "cases"), 0); /* "plain": 64 tokens */
	gen_config cfg;
	case_cfg(c, &cfg);
	int V, n_seq;
	float *logits = case_logits(c, &V);
	int32_t *seq = json_ids(json_object_get(c, "seq"), &n_seq);
	gen_sampler a, b, d;
	sft_error err = {0};
	assert_int_equal(gen_sampler_init(&a, V, 7, &err), 0);
	assert_int_equal(gen_sampler_init(&b, V, 7, &err), 0);
	assert_int_equal(gen_sampler_init(&d, V, 8, &err), 0);
	int same_d = 0;
	for (int k = 0; k < 500; k++) {
		int32_t ta = gen_sample(&a, &cfg, logits, seq, n_seq);
		assert_int_equal(ta, gen_sample(&b, &cfg, logits, seq, n_seq));
		same_d += ta == gen_sample(&d, &cfg, logits, seq, n_seq);
	}
	assert_true(same_d < 250);
	gen_sampler_seed(&a, 123);
	gen_sampler_seed(&b, 123);
	for (int k = 0; k < 100; k++) assert_true(gen_rng_next(&a) == gen_rng_next(&b));
	for (int k = 0; k < 1000; k++) {
		double u = gen_rng_uniform(&a);
		assert_true(u >= 0 && u < 1);
	}
	gen_sampler_free(&a);
	gen_sampler_free(&b);
	gen_sampler_free(&d);
	gen_sampler_free(NULL);
	free(seq);
	free(logits);
	json_decref(root);
}

static tokenizer *gpt2(void)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/tokenizers/gpt-2/tokenizer.json.gz", fixdir());
	gzFile f = gzopen(path, "rb");
	assert_non_null(f);
	size_t cap = 1 << 20, n = 0;
	char *b = malloc(cap);
	int r;
	while ((r = gzread(f, b + n, (unsigned)(cap - n))) > 0) {
		n += (size_t)r;
		if (n == cap) b = realloc(b, cap *= 2);
	}
	gzclose(f);
	sft_error err = {0};
	tokenizer *t = tokenizer_load_json(b, n, NULL, 0, path, &err);
	free(b);
	if (!t) fail_msg("%s", err.msg);
	return t;
}

/* (4) Stop strings on the incrementally decoded text: "\nUser:" is the three GPT-2 tokens
 * 'Ċ' 'User' ':' and must stop exactly at ':' (index 7), "r: hi" at 'Ġhi' (index 8). */
static void test_stop_strings(void **state)
{
	(void)state;
	tokenizer *t = gpt2();
	const char *text = "The answer is 42.\nUser: hi";
	uint32_t *ids;
	size_t n;
	sft_error err = {0};
	assert_int_equal(tokenizer_encode(t, text, strlen(text), 0, &ids, &n, &err), 0);
	assert_int_equal(n, 9);
	const char *stops[] = {"\nUser:", "r: hi", "zzz"};
	int at[3] = {-1, -1, -1};
	for (size_t k = 1; k <= n; k++) {
		char *s;
		size_t len;
		assert_int_equal(tokenizer_decode(t, ids, k, 1, &s, &len, &err), 0);
		for (int j = 0; j < 3; j++)
			if (at[j] < 0 && gen_stop_match(s, len, stops + j, 1) == 0) at[j] = (int)k - 1;
		if (k == 8) assert_int_equal(gen_stop_match(s, len, stops, 3), 0);
		free(s);
	}
	assert_int_equal(at[0], 7);
	assert_int_equal(at[1], 8);
	assert_int_equal(at[2], -1);
	assert_int_equal(gen_stop_match("ab", 2, stops, 3), -1);
	assert_int_equal(gen_stop_match("", 0, stops, 3), -1);
	free(ids);
	tokenizer_free(t);
}

/* (5) generate() on the tiny llama fixture (vocab 256; GPT-2's first 256 ids are its byte
 * symbols, so the GPT-2 tokenizer decodes its ids: 54 = "W", 230 = a lone byte -> U+FFFD). */
static void test_generate_llama(void **state)
{
	(void)state;
	char dir[1024];
	snprintf(dir, sizeof dir, "%s/models/llama", fixdir());
	sft_error err = {0};
	model *m = model_load(dir, &err);
	if (!m) fail_msg("%s", err.msg);
	json_t *cases = load_json("models/llama/cases.json");
	int np, ng;
	int32_t *prompt = json_ids(json_object_get(cases, "prompt"), &np);
	int32_t *greedy = json_ids(json_object_get(cases, "greedy"), &ng);

	gen_config cfg;
	assert_int_equal(gen_config_load(dir, &cfg, &err), 0); /* no generation_config.json */
	assert_int_equal(cfg.n_eos, 1);
	assert_int_equal(cfg.eos_ids[0], 2);
	assert_int_equal(cfg.bos_token_id, 1);
	assert_int_equal(cfg.pad_token_id, 0);
	assert_int_equal(cfg.do_sample, 0);
	cfg.max_new_tokens = ng;

	/* greedy == transformers' generate() tokens (the ones test_model.c checks) */
	const int32_t *prompts[2] = {prompt, prompt};
	int nps[2] = {np, np};
	gen_result r[2];
	assert_int_equal(generate(m, NULL, prompts, nps, 1, &cfg, 0, NULL, NULL, r, &err), 0);
	assert_int_equal(r[0].n_tokens, ng);
	assert_int_equal(r[0].stop_reason, GEN_STOP_LENGTH);
	assert_null(r[0].text);
	for (int i = 0; i < ng; i++)
		if (r[0].tokens[i] != greedy[i]) fail_msg("greedy token %d: got %d, transformers %d", i, r[0].tokens[i], greedy[i]);
	gen_result_free(&r[0]);

	/* stop token: 230 as eos stops right after the first 230 (kept) */
	cfg.eos_ids[cfg.n_eos++] = 230;
	assert_int_equal(generate(m, NULL, prompts, nps, 1, &cfg, 0, NULL, NULL, r, &err), 0);
	assert_int_equal(r[0].n_tokens, 24);
	assert_int_equal(r[0].tokens[23], 230);
	assert_int_equal(r[0].stop_reason, GEN_STOP_EOS);
	gen_result_free(&r[0]);
	cfg.n_eos = 1;

	/* stop strings through generate(): "WWW" after 3 tokens; "W\uFFFD" across the
	 * 54 -> 230 boundary after 24; the text keeps the stop string, text_keep cuts it */
	tokenizer *t = gpt2();
	const char *st1[] = {"WWW"}, *st2[] = {"nope", "W\xef\xbf\xbd"};
	cfg.stop = st1;
	cfg.n_stop = 1;
	assert_int_equal(generate(m, t, prompts, nps, 1, &cfg, 0, NULL, NULL, r, &err), 0);
	assert_int_equal(r[0].n_tokens, 3);
	assert_int_equal(r[0].stop_reason, GEN_STOP_STRING);
	assert_int_equal(r[0].stop_index, 0);
	assert_string_equal(r[0].text, "WWW");
	assert_int_equal(r[0].text_len, 3);
	assert_int_equal(r[0].text_keep, 0);
	gen_result_free(&r[0]);
	cfg.stop = st2;
	cfg.n_stop = 2;
	assert_int_equal(generate(m, t, prompts, nps, 1, &cfg, 0, NULL, NULL, r, &err), 0);
	assert_int_equal(r[0].n_tokens, 24);
	assert_int_equal(r[0].stop_index, 1);
	assert_int_equal(r[0].text_len, 23 + 3);
	assert_int_equal(r[0].text_keep, 22);
	gen_result_free(&r[0]);
	cfg.stop = NULL;
	cfg.n_stop = 0;
	/* without stop strings no tokenizer is needed; with them it is */
	cfg.stop = st1;
	cfg.n_stop = 1;
	assert_true(generate(m, NULL, prompts, nps, 1, &cfg, 0, NULL, NULL, r, &err) < 0);
	cfg.stop = NULL;
	cfg.n_stop = 0;

	/* sampled: reproducible for a seed, sequence 0 of a batch of 2 == the single run */
	cfg.do_sample = 1;
	cfg.temperature = 1.5;
	cfg.top_k = 100;
	cfg.top_p = 0.98;
	gen_result a, b[2];
	assert_int_equal(generate(m, t, prompts, nps, 1, &cfg, 99, NULL, NULL, &a, &err), 0);
	assert_int_equal(generate(m, t, prompts, nps, 2, &cfg, 99, NULL, NULL, b, &err), 0);
	assert_int_equal(a.n_tokens, b[0].n_tokens);
	assert_memory_equal(a.tokens, b[0].tokens, (size_t)a.n_tokens * sizeof *a.tokens);
	assert_string_equal(a.text, b[0].text);
	int same = a.n_tokens == b[1].n_tokens &&
		   !memcmp(a.tokens, b[1].tokens, (size_t)a.n_tokens * sizeof *a.tokens);
	assert_false(same); /* sequence 1 draws from its own stream */
	int differs_from_greedy = 0;
	for (int i = 0; i < a.n_tokens; i++) differs_from_greedy |= a.tokens[i] != greedy[i];
	assert_true(differs_from_greedy);
	gen_result_free(&a);
	gen_result_free(&b[0]);
	gen_result_free(&b[1]);
	gen_result_free(NULL);

	tokenizer_free(t);
	free(prompt);
	free(greedy);
	json_decref(cases);
	model_free(m);
}

static int stop_after_5(void *user, int seq, int32_t token)
{
	(void)seq;
	(void)token;
	return ++*(int *)user >= 5;
}

static void test_callback_and_config(void **state)
{
	(void)state;
	char dir[1024];
	snprintf(dir, sizeof dir, "%s/models/llama", fixdir());
	sft_error err = {0};
	model *m = model_load(dir, &err);
	if (!m) fail_msg("%s", err.msg);
	int32_t prompt[3] = {10, 216, 58};
	const int32_t *prompts[1] = {prompt};
	int np = 3, calls = 0;
	gen_config cfg;
	gen_config_init(&cfg);
	cfg.max_new_tokens = 20;
	gen_result r;
	assert_int_equal(generate(m, NULL, prompts, &np, 1, &cfg, 0, stop_after_5, &calls, &r, &err), 0);
	assert_int_equal(r.n_tokens, 5);
	assert_int_equal(r.stop_reason, GEN_STOP_CALLBACK);
	gen_result_free(&r);
	cfg.max_new_tokens = 0;
	assert_true(generate(m, NULL, prompts, &np, 1, &cfg, 0, NULL, NULL, &r, &err) < 0);
	model_free(m);

	/* generation_config.json: eos list, sampling fields; a bad file is an error */
	char tmp[] = "/tmp/test_generate_XXXXXX";
	assert_non_null(mkdtemp(tmp));
	char path[1100];
	snprintf(path, sizeof path, "%s/generation_config.json", tmp);
	FILE *f = fopen(path, "w");
	fputs("{\"do_sample\": true, \"temperature\": 0.6, \"top_k\": 20, \"top_p\": 0.95, \"min_p\": 0.0,"
	      " \"repetition_penalty\": 1.05, \"max_new_tokens\": 77, \"bos_token_id\": 151643,"
	      " \"eos_token_id\": [151645, 151643], \"pad_token_id\": 151643}", f);
	fclose(f);
	assert_int_equal(gen_config_load(tmp, &cfg, &err), 0);
	assert_int_equal(cfg.do_sample, 1);
	assert_true(cfg.temperature == 0.6 && cfg.top_p == 0.95 && cfg.repetition_penalty == 1.05);
	assert_int_equal(cfg.top_k, 20);
	assert_int_equal(cfg.max_new_tokens, 77);
	assert_int_equal(cfg.n_eos, 2);
	assert_int_equal(cfg.eos_ids[1], 151643);
	assert_int_equal(cfg.bos_token_id, 151643);
	f = fopen(path, "w");
	fputs("{\"temperature\": \"hot\"}", f);
	fclose(f);
	assert_true(gen_config_load(tmp, &cfg, &err) < 0);
	assert_non_null(strstr(err.msg, "temperature"));
	f = fopen(path, "w");
	fputs("{\"top_k\": ", f);
	fclose(f);
	assert_true(gen_config_load(tmp, &cfg, &err) < 0);
	remove(path);
	assert_int_equal(gen_config_load(tmp, &cfg, &err), 0); /* neither file: defaults */
	assert_int_equal(cfg.top_k, 50);
	assert_int_equal(cfg.n_eos, 0);
	rmdir(tmp);
}

/* (6) Continuous batching: every sequence's result is the same whatever batch it ran in.
 * Five prompts of different lengths (1 .. 40 tokens) on each tiny architecture, generated
 * one at a time (batch_size 1), two at a time (slots freed and refilled as sequences stop
 * at different points) and all together must give identical tokens and stop reasons,
 * equal to model_generate_greedy (the single-sequence model_decode path); the fixture's
 * prompt must still give transformers' 32 greedy tokens inside a batch. Greedy decoding
 * compares exactly: model_decode_batch computes each row from that row only. */
static int32_t *make_prompt(int n, int salt, int V)
{
	int32_t *p = malloc((size_t)n * sizeof *p);
	for (int i = 0; i < n; i++) p[i] = (int32_t)((i * 31 + salt * 17 + 3) % V);
	return p;
}

static void check_batching(const char *arch)
{
	char dir[1024], rel[256];
	snprintf(dir, sizeof dir, "%s/models/%s", fixdir(), arch);
	snprintf(rel, sizeof rel, "models/%s/cases.json", arch);
	sft_error err = {0};
	model *m = model_load(dir, &err);
	if (!m) fail_msg("%s", err.msg);
	int V = m->cfg.vocab_size;
	json_t *cases = load_json(rel);
	int np, ng;
	int32_t *golden_prompt = json_ids(json_object_get(cases, "prompt"), &np);
	int32_t *golden = json_ids(json_object_get(cases, "greedy"), &ng);
	enum { NS = 5 };
	const int lens[NS] = {17, 1, 40, np, 9};
	int32_t *p[NS];
	for (int i = 0; i < NS; i++) p[i] = i == 3 ? golden_prompt : make_prompt(lens[i], i, V);
	const int32_t *prompts[NS] = {p[0], p[1], p[2], p[3], p[4]};
	gen_config cfg;
	gen_config_init(&cfg);
	cfg.max_new_tokens = ng;

	/* reference: each prompt alone through model_generate_greedy */
	int32_t ref[NS][64];
	int nref[NS];
	model_kv_cache kv;
	assert_int_equal(model_kv_cache_init(&kv, m, 40 + ng, &err), 0);
	for (int i = 0; i < NS; i++)
		assert_int_equal(model_generate_greedy(m, &kv, prompts[i], lens[i], ng, -1, ref[i], &nref[i], &err), 0);
	model_kv_cache_free(&kv);
	for (int k = 0; k < ng; k++)
		if (ref[3][k] != golden[k]) fail_msg("%s: greedy token %d: got %d, transformers %d", arch, k, ref[3][k], golden[k]);

	/* eos: a token sequence 0 produces mid-way, so sequences stop at different steps */
	cfg.eos_ids[0] = ref[0][ng / 2];
	cfg.n_eos = 1;
	int want_n[NS];
	for (int i = 0; i < NS; i++) {
		want_n[i] = nref[i];
		for (int k = 0; k < nref[i]; k++)
			if (ref[i][k] == cfg.eos_ids[0]) {
				want_n[i] = k + 1;
				break;
			}
	}
	assert_true(want_n[0] <= ng / 2 + 1);
	int longer = 0;
	for (int i = 1; i < NS; i++) longer |= want_n[i] > want_n[0];
	assert_true(longer); /* the sequences do stop at different steps */
	const int batch[] = {1, 2, 3, 16};
	for (size_t b = 0; b < sizeof batch / sizeof batch[0]; b++) {
		cfg.batch_size = batch[b];
		gen_result r[NS];
		assert_int_equal(generate(m, NULL, prompts, lens, NS, &cfg, 0, NULL, NULL, r, &err), 0);
		for (int i = 0; i < NS; i++) {
			if (r[i].n_tokens != want_n[i])
				fail_msg("%s batch %d seq %d: %d tokens, want %d", arch, batch[b], i, r[i].n_tokens, want_n[i]);
			assert_memory_equal(r[i].tokens, ref[i], (size_t)want_n[i] * sizeof(int32_t));
			assert_int_equal(r[i].stop_reason, want_n[i] < ng || ref[i][ng - 1] == cfg.eos_ids[0] ? GEN_STOP_EOS
												      : GEN_STOP_LENGTH);
			gen_result_free(&r[i]);
		}
	}

	/* sampling: the same seed gives each sequence the same draws in any batch */
	cfg.n_eos = 0;
	cfg.do_sample = 1;
	cfg.temperature = 1.3;
	cfg.top_p = 0.95;
	gen_result a[NS], c[NS];
	cfg.batch_size = 1;
	assert_int_equal(generate(m, NULL, prompts, lens, NS, &cfg, 5, NULL, NULL, a, &err), 0);
	cfg.batch_size = 3;
	assert_int_equal(generate(m, NULL, prompts, lens, NS, &cfg, 5, NULL, NULL, c, &err), 0);
	for (int i = 0; i < NS; i++) {
		assert_int_equal(a[i].n_tokens, c[i].n_tokens);
		assert_memory_equal(a[i].tokens, c[i].tokens, (size_t)a[i].n_tokens * sizeof(int32_t));
		gen_result_free(&a[i]);
		gen_result_free(&c[i]);
	}
	for (int i = 0; i < NS; i++)
		if (i != 3) free(p[i]);
	free(golden_prompt);
	free(golden);
	json_decref(cases);
	model_free(m);
}

static void test_batching_llama(void **s) { (void)s; check_batching("llama"); }
static void test_batching_llama3(void **s) { (void)s; check_batching("llama3"); }
static void test_batching_qwen2(void **s) { (void)s; check_batching("qwen2"); }
static void test_batching_qwen3(void **s) { (void)s; check_batching("qwen3"); }
static void test_batching_gemma3(void **s) { (void)s; check_batching("gemma3"); }

/* (7) Batching with stop strings and a callback: the callback sees every sequence's
 * tokens in order, and stop strings cut each sequence as they do alone. */
static int count_tokens(void *user, int seq, int32_t token)
{
	(void)token;
	((int *)user)[seq]++;
	return 0;
}

static void test_batching_stops(void **state)
{
	(void)state;
	char dir[1024];
	snprintf(dir, sizeof dir, "%s/models/llama", fixdir());
	sft_error err = {0};
	model *m = model_load(dir, &err);
	if (!m) fail_msg("%s", err.msg);
	json_t *cases = load_json("models/llama/cases.json");
	int np;
	int32_t *prompt = json_ids(json_object_get(cases, "prompt"), &np);
	int32_t q1[2] = {10, 216}, q2[4] = {58, 58, 7, 99};
	const int32_t *prompts[4] = {prompt, q1, prompt, q2};
	int lens[4] = {np, 2, np, 4};
	tokenizer *t = gpt2();
	const char *st[] = {"WWW"};
	gen_config cfg;
	gen_config_init(&cfg);
	cfg.max_new_tokens = 12;
	cfg.stop = st;
	cfg.n_stop = 1;
	gen_result one[4], all[4];
	int calls[4] = {0};
	for (int i = 0; i < 4; i++) {
		cfg.batch_size = 1;
		assert_int_equal(generate(m, t, prompts + i, lens + i, 1, &cfg, 0, NULL, NULL, &one[i], &err), 0);
	}
	cfg.batch_size = 2;
	assert_int_equal(generate(m, t, prompts, lens, 4, &cfg, 0, count_tokens, calls, all, &err), 0);
	assert_int_equal(one[0].stop_reason, GEN_STOP_STRING); /* "WWW" after 3 tokens (test 5) */
	assert_int_equal(one[0].n_tokens, 3);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(all[i].n_tokens, one[i].n_tokens);
		assert_int_equal(calls[i], one[i].n_tokens);
		assert_int_equal(all[i].stop_reason, one[i].stop_reason);
		assert_memory_equal(all[i].tokens, one[i].tokens, (size_t)one[i].n_tokens * sizeof(int32_t));
		assert_string_equal(all[i].text, one[i].text);
		assert_int_equal(all[i].text_keep, one[i].text_keep);
		gen_result_free(&one[i]);
		gen_result_free(&all[i]);
	}
	tokenizer_free(t);
	free(prompt);
	json_decref(cases);
	model_free(m);
}

int main(int argc, char **argv)
{
	sft_threads_init(argc, argv); /* OpenMP wait policy: see threads.h */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_processors),
		cmocka_unit_test(test_frequencies),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_stop_strings),
		cmocka_unit_test(test_generate_llama),
		cmocka_unit_test(test_callback_and_config),
		cmocka_unit_test(test_batching_llama),
		cmocka_unit_test(test_batching_llama3),
		cmocka_unit_test(test_batching_qwen2),
		cmocka_unit_test(test_batching_qwen3),
		cmocka_unit_test(test_batching_gemma3),
		cmocka_unit_test(test_batching_stops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
