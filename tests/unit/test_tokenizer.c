/* Tokenizer tests: token-for-token parity with Hugging Face tokenizers on real tokenizers
 * (fixtures from scripts/gen-tokenizer-fixtures.py), decode parity, offsets, invalid
 * UTF-8, special tokens, GGUF-embedded tokenizers, errors, threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "gguf.h"
#include "tokenizer.h"
#include "tokenizer_int.h"

/* ------------------------------------------------------------------ fixture helpers */

static char fixdir[1024];

static void init_fixdir(void)
{
	const char *d = getenv("SFT_TEST_DATA");
	snprintf(fixdir, sizeof fixdir, "%s/tokenizers", d ? d : "tests/fixtures");
}

/* reads a file, gunzipping when it is gzip (zlib reads plain files as they are) */
static char *read_all(const char *path, size_t *len)
{
	gzFile f = gzopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 20, n = 0;
	char *b = malloc(cap + 1);
	for (;;) {
		if (n == cap) {
			cap *= 2;
			b = realloc(b, cap + 1);
		}
		int r = gzread(f, b + n, (unsigned)(cap - n));
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	gzclose(f);
	b[n] = 0;
	*len = n;
	return b;
}

typedef struct rec { char *s; size_t n; } rec;
static rec *corpus;
static size_t n_corpus;

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static void load_corpus(void)
{
	if (corpus)
		return;
	char path[1200];
	snprintf(path, sizeof path, "%s/corpus.jsonl", fixdir);
	size_t len;
	char *all = read_all(path, &len);
	assert_non_null(all);
	size_t cap = 1024;
	corpus = malloc(cap * sizeof *corpus);
	char *p = all;
	while (*p) {
		char *nl = strchr(p, '\n');
		size_t ll = nl ? (size_t)(nl - p) : strlen(p);
		json_error_t je;
		json_t *o = json_loadb(p, ll, JSON_ALLOW_NUL, &je);
		assert_non_null(o);
		json_t *t = json_object_get(o, "text"), *h = json_object_get(o, "hex");
		rec r;
		if (t) {
			r.n = json_string_length(t);
			r.s = malloc(r.n + 1);
			memcpy(r.s, json_string_value(t), r.n);
		} else {
			const char *hx = json_string_value(h);
			r.n = strlen(hx) / 2;
			r.s = malloc(r.n + 1);
			for (size_t i = 0; i < r.n; i++)
				r.s[i] = (char)(hexval(hx[2 * i]) * 16 + hexval(hx[2 * i + 1]));
		}
		r.s[r.n] = 0;
		if (n_corpus == cap) {
			cap *= 2;
			corpus = realloc(corpus, cap * sizeof *corpus);
		}
		corpus[n_corpus++] = r;
		json_decref(o);
		if (!nl)
			break;
		p = nl + 1;
	}
	free(all);
}

static tokenizer *load_fixture(const char *name, const char *file)
{
	char path[1200];
	snprintf(path, sizeof path, "%s/%s", fixdir, file);
	sft_error e = { 0 };
	tokenizer *t;
	size_t pl = strlen(path);
	if (pl > 3 && !strcmp(path + pl - 3, ".gz")) {
		size_t len, cl = 0;
		char *js = read_all(path, &len);
		assert_non_null(js);
		char cpath[1300];
		snprintf(cpath, sizeof cpath, "%s/%s/tokenizer_config.json", fixdir, name);
		char *cfg = read_all(cpath, &cl);
		t = tokenizer_load_json(js, len, cfg, cl, path, &e);
		free(js);
		free(cfg);
	} else {
		t = tokenizer_load(path, &e);
	}
	if (!t)
		fail_msg("load %s: %s", path, e.msg);
	return t;
}

/* parses one line of space-separated ids */
static size_t parse_ids(const char *line, size_t ll, uint32_t **out)
{
	size_t cap = 64, n = 0;
	uint32_t *v = malloc(cap * sizeof *v);
	const char *p = line, *end = line + ll;
	while (p < end) {
		while (p < end && *p == ' ')
			p++;
		if (p >= end)
			break;
		uint32_t x = 0;
		while (p < end && *p >= '0' && *p <= '9')
			x = x * 10 + (uint32_t)(*p++ - '0');
		if (n == cap) {
			cap *= 2;
			v = realloc(v, cap * sizeof *v);
		}
		v[n++] = x;
	}
	*out = v;
	return n;
}

/* Encodes every corpus record and compares with NAME.ids.gz; decodes the expected ids
 * and compares with NAME.dec.gz. Prints each mismatch with its line and first differing
 * position. */
static void check_parity(tokenizer *t, const char *name, int add_special)
{
	load_corpus();
	char path[1200];
	size_t len, dlen = 0;
	snprintf(path, sizeof path, "%s/%s.ids.gz", fixdir, name);
	char *ids_all = read_all(path, &len);
	assert_non_null(ids_all);
	snprintf(path, sizeof path, "%s/%s.dec.gz", fixdir, name);
	char *dec_all = read_all(path, &dlen);
	char *p = ids_all, *dp = dec_all;
	size_t bad = 0, bad_dec = 0, lines = 0, tokens = 0;
	for (size_t i = 0; i < n_corpus; i++) {
		char *nl = strchr(p, '\n');
		assert_non_null(nl);
		uint32_t *exp;
		size_t ne = parse_ids(p, (size_t)(nl - p), &exp);
		p = nl + 1;
		uint32_t *got;
		size_t ng;
		sft_error e = { 0 };
		if (tokenizer_encode(t, corpus[i].s, corpus[i].n, add_special, &got, &ng, &e) < 0)
			fail_msg("%s line %zu: encode failed: %s", name, i + 1, e.msg);
		lines++;
		tokens += ne;
		if (ng != ne || memcmp(got, exp, ne * sizeof *exp) != 0) {
			size_t k = 0;
			while (k < ng && k < ne && got[k] == exp[k])
				k++;
			if (bad < 10)
				print_message("%s: corpus line %zu: first difference at token %zu: got %u, want %u (%zu vs %zu tokens)\n",
				              name, i + 1, k, k < ng ? got[k] : 0, k < ne ? exp[k] : 0, ng, ne);
			bad++;
		}
		if (dec_all) {
			char *dnl = strchr(dp, '\n');
			assert_non_null(dnl);
			json_error_t je;
			json_t *js = json_loadb(dp, (size_t)(dnl - dp), JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
			assert_non_null(js);
			char *out;
			size_t ol;
			if (tokenizer_decode(t, exp, ne, 0, &out, &ol, &e) < 0)
				fail_msg("%s line %zu: decode failed: %s", name, i + 1, e.msg);
			if (ol != json_string_length(js) || memcmp(out, json_string_value(js), ol) != 0) {
				if (bad_dec < 5)
					print_message("%s: corpus line %zu: decode differs: got \"%.80s\" want \"%.80s\"\n", name,
					              i + 1, out, json_string_value(js));
				bad_dec++;
			}
			free(out);
			json_decref(js);
			dp = dnl + 1;
		}
		free(got);
		free(exp);
	}
	print_message("%s: %zu/%zu lines identical (%zu tokens), decode %zu/%zu identical\n", name, lines - bad, lines,
	              tokens, dec_all ? lines - bad_dec : 0, dec_all ? lines : 0);
	free(ids_all);
	free(dec_all);
	assert_int_equal(bad, 0);
	assert_int_equal(bad_dec, 0);
}

static void parity_json(const char *name)
{
	char file[256];
	snprintf(file, sizeof file, "%s/tokenizer.json.gz", name);
	tokenizer *t = load_fixture(name, file);
	check_parity(t, name, 0);
	tokenizer_free(t);
}

/* synthetic tokenizers: encoded with add_special_tokens=True (post-processors) */
static void parity_syn(const char *name)
{
	char file[256];
	snprintf(file, sizeof file, "%s/tokenizer.json.gz", name);
	tokenizer *t = load_fixture(name, file);
	check_parity(t, name, 1);
	tokenizer_free(t);
}

static void parity_gguf(const char *name)
{
	char file[256];
	snprintf(file, sizeof file, "%s.gguf", name);
	tokenizer *t = load_fixture(name, file);
	check_parity(t, name, 0);
	tokenizer_free(t);
}

static void test_parity_smollm2(void **s) { (void)s; parity_json("smollm2"); }
static void test_parity_llama3(void **s) { (void)s; parity_json("llama-bpe"); }
static void test_parity_qwen2(void **s) { (void)s; parity_json("qwen2"); }
static void test_parity_llama2_spm(void **s) { (void)s; parity_json("llama-spm"); }
static void test_parity_phi3_spm(void **s) { (void)s; parity_json("phi-3"); }
static void test_parity_gpt2(void **s) { (void)s; parity_json("gpt-2"); }
static void test_parity_syn_nfkc_ws(void **s) { (void)s; parity_syn("syn-nfkc-ws"); }
static void test_parity_syn_nfd_punct(void **s) { (void)s; parity_syn("syn-nfd-punct"); }
static void test_parity_syn_metaspace(void **s) { (void)s; parity_syn("syn-metaspace"); }
static void test_parity_smollm2_gguf(void **s) { (void)s; parity_gguf("smollm2"); }
static void test_parity_llama2_gguf(void **s) { (void)s; parity_gguf("llama-spm"); }
/* Gemma 3's vocab-only GGUF is committed gzipped: parse it from memory */
static void test_parity_gemma3_gguf(void **s)
{
	(void)s;
	char path[1200];
	snprintf(path, sizeof path, "%s/gemma3.gguf.gz", fixdir);
	size_t len;
	char *buf = read_all(path, &len);
	assert_non_null(buf);
	sft_error e = { 0 };
	gguf_file *g = gguf_open_mem(buf, len, "gemma3.gguf", &e);
	if (!g)
		fail_msg("%s", e.msg);
	tokenizer *t = tokenizer_from_gguf(g, &e);
	if (!t)
		fail_msg("%s", e.msg);
	gguf_close(g);
	free(buf);
	assert_string_equal(tokenizer_special(t, "bos_token"), "<bos>");
	check_parity(t, "gemma3", 0);
	tokenizer_free(t);
}

/* ------------------------------------------------------------------ behaviour tests */

static tokenizer *smollm2(void) { return load_fixture("smollm2", "smollm2/tokenizer.json.gz"); }

static void test_roundtrip_bytelevel(void **s)
{
	(void)s;
	load_corpus();
	tokenizer *t = smollm2();
	size_t n_checked = 0;
	for (size_t i = 0; i < n_corpus; i++) {
		uint32_t *ids;
		size_t n;
		char *out;
		size_t ol;
		sft_error e = { 0 };
		assert_int_equal(tokenizer_encode(t, corpus[i].s, corpus[i].n, 0, &ids, &n, &e), 0);
		assert_int_equal(tokenizer_decode(t, ids, n, 0, &out, &ol, &e), 0);
		/* valid UTF-8 comes back byte for byte; invalid bytes come back as U+FFFD */
		int has_fffd = memmem(out, ol, "\xEF\xBF\xBD", 3) != NULL;
		if (!has_fffd) {
			if (ol != corpus[i].n || memcmp(out, corpus[i].s, ol) != 0)
				fail_msg("roundtrip differs at corpus line %zu", i + 1);
			n_checked++;
		}
		free(out);
		free(ids);
	}
	assert_true(n_checked > n_corpus * 9 / 10);
	tokenizer_free(t);
}

static void test_invalid_utf8(void **s)
{
	(void)s;
	tokenizer *t = smollm2();
	/* "a" FF "b" E2 82 "c": Python decodes to a\ufffdb\ufffdc */
	const char in[] = "a\xff" "b\xe2\x82" "c";
	const char ref[] = "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c";
	uint32_t *a, *b;
	size_t na, nb, *st, *en;
	sft_error e = { 0 };
	assert_int_equal(tokenizer_encode_offsets(t, in, sizeof in - 1, 0, &a, &st, &en, &na, &e), 0);
	assert_int_equal(tokenizer_encode(t, ref, sizeof ref - 1, 0, &b, &nb, &e), 0);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na * sizeof *a);
	/* offsets refer to the original bytes: the whole input is covered, in order */
	assert_int_equal(st[0], 0);
	assert_int_equal(en[na - 1], sizeof in - 1);
	for (size_t i = 0; i < na; i++) {
		assert_true(st[i] < en[i]);
		assert_true(en[i] <= sizeof in - 1);
		if (i)
			assert_true(st[i] >= st[i - 1]);
	}
	free(a);
	free(b);
	free(st);
	free(en);
	tokenizer_free(t);
}

static void test_offsets_cover_text(void **s)
{
	(void)s;
	load_corpus();
	tokenizer *t = smollm2();
	for (size_t i = 0; i < n_corpus && i < 3000; i++) {
		uint32_t *ids;
		size_t n, *st, *en;
		sft_error e = { 0 };
		assert_int_equal(tokenizer_encode_offsets(t, corpus[i].s, corpus[i].n, 0, &ids, &st, &en, &n, &e), 0);
		size_t covered = 0;
		for (size_t k = 0; k < n; k++) {
			if (st[k] >= en[k] || en[k] > corpus[i].n || (k && st[k] < st[k - 1]))
				fail_msg("line %zu token %zu: bad offsets [%zu,%zu)", i + 1, k, st[k], en[k]);
			if (st[k] > covered)
				fail_msg("line %zu token %zu: gap before offset %zu", i + 1, k, st[k]);
			if (en[k] > covered)
				covered = en[k];
		}
		assert_int_equal(covered, corpus[i].n);
		free(ids);
		free(st);
		free(en);
	}
	tokenizer_free(t);
}

static void test_special_tokens(void **s)
{
	(void)s;
	tokenizer *t = smollm2();
	const char *txt = "<|im_start|>user\nHi<|im_end|>";
	uint32_t *ids;
	size_t n, *st, *en;
	sft_error e = { 0 };
	assert_int_equal(tokenizer_encode_offsets(t, txt, strlen(txt), 0, &ids, &st, &en, &n, &e), 0);
	int64_t im_start = tokenizer_token_to_id(t, "<|im_start|>"), im_end = tokenizer_token_to_id(t, "<|im_end|>");
	assert_int_equal(im_start, 1);
	assert_int_equal(im_end, 2);
	assert_int_equal(ids[0], 1);
	assert_int_equal(st[0], 0);
	assert_int_equal(en[0], 12);
	assert_int_equal(ids[n - 1], 2);
	assert_int_equal(st[n - 1], strlen(txt) - 10);
	assert_true(tokenizer_is_special(t, 1));
	assert_false(tokenizer_is_special(t, ids[1]));
	assert_string_equal(tokenizer_id_to_token(t, 1), "<|im_start|>");
	assert_null(tokenizer_id_to_token(t, tokenizer_vocab_size(t)));
	assert_int_equal(tokenizer_token_to_id(t, "no-such-token-xyz"), -1);
	char *out;
	size_t ol;
	assert_int_equal(tokenizer_decode(t, ids, n, 1, &out, &ol, &e), 0);
	assert_string_equal(out, "user\nHi");
	free(out);
	assert_int_equal(tokenizer_decode(t, ids, n, 0, &out, &ol, &e), 0);
	assert_string_equal(out, txt);
	free(out);
	/* out-of-range ids are an error, not a crash */
	uint32_t badid = 4000000;
	assert_true(tokenizer_decode(t, &badid, 1, 0, &out, &ol, &e) < 0);
	assert_int_equal(e.code, SFT_EXIT_DATA);
	free(ids);
	free(st);
	free(en);
	tokenizer_free(t);
}

static void test_gguf_metadata_and_bos(void **s)
{
	(void)s;
	tokenizer *t = load_fixture("smollm2", "smollm2.gguf");
	assert_non_null(tokenizer_chat_template(t));
	assert_non_null(strstr(tokenizer_chat_template(t), "im_start"));
	assert_string_equal(tokenizer_special(t, "eos_token"), "<|im_end|>");
	assert_string_equal(tokenizer_special(t, "bos_token"), "<|im_start|>");
	assert_int_equal(tokenizer_add_bos(t), 0); /* tokenizer.ggml.add_bos_token = false */
	assert_int_equal(tokenizer_vocab_size(t), 49152);
	tokenizer_free(t);

	t = load_fixture("llama-spm", "llama-spm.gguf");
	assert_int_equal(tokenizer_add_bos(t), 1);
	uint32_t *ids;
	size_t n;
	sft_error e = { 0 };
	assert_int_equal(tokenizer_encode(t, "Hello world", 11, 1, &ids, &n, &e), 0);
	assert_int_equal(ids[0], 1); /* <s> */
	assert_string_equal(tokenizer_special(t, "bos_token"), "<s>");
	/* llama.cpp's vector for "Hello world" (models/ggml-vocab-llama-spm.gguf.out) */
	assert_int_equal(n, 3);
	assert_int_equal(ids[1], 15043);
	assert_int_equal(ids[2], 3186);
	free(ids);
	tokenizer_free(t);

	/* the converted tokenizer.json has no BOS in its template; its tokenizer_config.json
	 * says add_bos_token: true, which transformers 5.23 ignores too:
	 * AutoTokenizer(dir)("Hello world") == [15043, 3186] */
	t = load_fixture("llama-spm", "llama-spm/tokenizer.json.gz");
	assert_int_equal(tokenizer_add_bos(t), 0);
	assert_int_equal(tokenizer_encode(t, "Hello world", 11, 1, &ids, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 15043);
	free(ids);
	tokenizer_free(t);
}

static void test_fingerprint(void **s)
{
	(void)s;
	tokenizer *a = smollm2(), *b = smollm2(), *c = load_fixture("smollm2", "smollm2.gguf");
	uint8_t fa[16], fb[16], fc[16], zero[16] = { 0 };
	tokenizer_fingerprint(a, fa);
	tokenizer_fingerprint(b, fb);
	tokenizer_fingerprint(c, fc);
	assert_memory_equal(fa, fb, 16);
	assert_memory_not_equal(fa, fc, 16);
	assert_memory_not_equal(fa, zero, 16);
	tokenizer_free(a);
	tokenizer_free(b);
	tokenizer_free(c);
}

static void expect_load_error(const char *json, const char *needle)
{
	sft_error e = { 0 };
	tokenizer *t = tokenizer_load_json(json, strlen(json), NULL, 0, "x.json", &e);
	if (t)
		fail_msg("loaded although it should fail (%s)", needle);
	if (!strstr(e.msg, needle))
		fail_msg("error '%s' does not mention '%s'", e.msg, needle);
	assert_int_equal(e.code, SFT_EXIT_DATA);
}

static void test_load_errors(void **s)
{
	(void)s;
	expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "WordPiece");
	expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram");
	expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
	                  " \"normalizer\": {\"type\": \"BertNormalizer\"}}", "BertNormalizer");
	expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
	                  " \"pre_tokenizer\": {\"type\": \"UnicodeScripts\"}}", "UnicodeScripts");
	expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}", "merge 0");
	expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
	                  " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
	                  "regex");
	expect_load_error("{\"model\": \n {\"type\": ", "x.json:2:");
	sft_error e = { 0 };
	assert_null(tokenizer_load("/nonexistent/tokenizer.json", &e));
	assert_int_equal(e.code, SFT_EXIT_RUNTIME);
}

/* a tiny hand-written tokenizer: merges, added tokens with lstrip/rstrip, template */
static const char *TINY =
	"{\"added_tokens\": [{\"id\": 7, \"content\": \"<x>\", \"special\": true, \"lstrip\": true, \"rstrip\": true,"
	" \"normalized\": false, \"single_word\": false}],"
	" \"normalizer\": {\"type\": \"Lowercase\"},"
	" \"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"},"
	" \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<x>\", \"type_id\": 0}},"
	" {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {\"<x>\": {\"id\": \"<x>\", \"ids\": [7], \"tokens\": [\"<x>\"]}}},"
	" \"decoder\": null,"
	" \"model\": {\"type\": \"BPE\", \"unk_token\": \"?\", \"fuse_unk\": true,"
	" \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"abc\": 4, \"?\": 5, \"bc\": 6},"
	" \"merges\": [\"a b\", \"ab c\", \"b c\"]}}";

static void test_tiny_pipeline(void **s)
{
	(void)s;
	sft_error e = { 0 };
	tokenizer *t = tokenizer_load_json(TINY, strlen(TINY), NULL, 0, "tiny", &e);
	if (!t)
		fail_msg("%s", e.msg);
	uint32_t *ids;
	size_t n, *st, *en;
	/* lowercase; <x> strips the spaces around it; "xy" fuse into one unk. Expected ids and
	 * offsets checked with HF tokenizers: [7,4,7,6,5,0], (3,10) and (12,14) */
	const char *txt = "ABC  <x>  bcxya";
	assert_int_equal(tokenizer_encode_offsets(t, txt, strlen(txt), 1, &ids, &st, &en, &n, &e), 0);
	uint32_t want[] = { 7, 4, 7, 6, 5, 0 }; /* = HF tokenizers 0.23 */
	assert_int_equal(n, 6);
	assert_memory_equal(ids, want, sizeof want);
	assert_int_equal(st[2], 3); /* lstrip took the two spaces */
	assert_int_equal(en[2], 10);
	assert_int_equal(st[4], 12);
	assert_int_equal(en[4], 14);
	assert_int_equal(tokenizer_add_bos(t), 1);
	char *out;
	size_t ol;
	assert_int_equal(tokenizer_decode(t, ids, n, 1, &out, &ol, &e), 0);
	assert_string_equal(out, "abc bc ? a"); /* no decoder: tokens joined by spaces */
	free(out);
	free(ids);
	free(st);
	free(en);
	tokenizer_free(t);
}

typedef struct thr_arg { tokenizer *t; size_t bad; } thr_arg;

static void *thr_main(void *p)
{
	thr_arg *a = p;
	for (size_t i = 0; i < n_corpus; i += 3) {
		uint32_t *x, *y;
		size_t nx, ny;
		sft_error e = { 0 };
		if (tokenizer_encode(a->t, corpus[i].s, corpus[i].n, 0, &x, &nx, &e) < 0 ||
		    tokenizer_encode(a->t, corpus[(i * 7) % n_corpus].s, corpus[(i * 7) % n_corpus].n, 0, &y, &ny, &e) < 0) {
			a->bad++;
			continue;
		}
		uint32_t *z;
		size_t nz;
		tokenizer_encode(a->t, corpus[i].s, corpus[i].n, 0, &z, &nz, &e);
		if (nz != nx || memcmp(x, z, nx * sizeof *x))
			a->bad++;
		free(x);
		free(y);
		free(z);
	}
	return NULL;
}

static void test_threads(void **s)
{
	(void)s;
	load_corpus();
	tokenizer *t = smollm2();
	pthread_t th[4];
	thr_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (thr_arg){ t, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].bad, 0);
	}
	tokenizer_free(t);
}

/* llama.cpp's tokenizer test vectors (models/ggml-vocab-NAME.gguf.inp/.out, produced by
 * llama.cpp from the real Hugging Face tokenizers) against our fixtures */
static void check_llamacpp_vectors(const char *name, const char *file)
{
	tokenizer *t = load_fixture(name, file);
	char path[1200];
	size_t ni, no;
	snprintf(path, sizeof path, "%s/llamacpp/ggml-vocab-%s.gguf.inp", fixdir, name);
	char *in = read_all(path, &ni);
	snprintf(path, sizeof path, "%s/llamacpp/ggml-vocab-%s.gguf.out", fixdir, name);
	char *out = read_all(path, &no);
	assert_non_null(in);
	assert_non_null(out);
	const char *sep = "\n__ggml_vocab_test__\n";
	char *s = in, *o = out;
	int ok = 0, bad = 0;
	for (;;) {
		char *x = strstr(s, sep);
		size_t l = x ? (size_t)(x - s) : strlen(s);
		char *nl = strchr(o, '\n');
		if ((!x && l == 0) || !nl)
			break;
		uint32_t *want, *got;
		size_t nw = parse_ids(o, (size_t)(nl - o), &want), ng;
		sft_error e = { 0 };
		assert_int_equal(tokenizer_encode(t, s, l, 0, &got, &ng, &e), 0);
		if (ng == nw && !memcmp(got, want, nw * sizeof *got))
			ok++;
		else {
			bad++;
			print_message("%s: llama.cpp vector %d (\"%.*s\") differs\n", name, ok + bad, (int)(l > 40 ? 40 : l), s);
		}
		free(got);
		free(want);
		o = nl + 1;
		if (!x)
			break;
		s = x + strlen(sep);
	}
	print_message("%s (%s): %d/%d llama.cpp vectors identical\n", name, file, ok, ok + bad);
	assert_true(ok >= 40);
	assert_int_equal(bad, 0);
	free(in);
	free(out);
	tokenizer_free(t);
}

static void test_llamacpp_vectors(void **s)
{
	(void)s;
	check_llamacpp_vectors("llama-spm", "llama-spm.gguf");
	check_llamacpp_vectors("llama-spm", "llama-spm/tokenizer.json.gz");
	check_llamacpp_vectors("llama-bpe", "llama-bpe/tokenizer.json.gz");
	check_llamacpp_vectors("qwen2", "qwen2/tokenizer.json.gz");
	check_llamacpp_vectors("gpt-2", "gpt-2/tokenizer.json.gz");
	check_llamacpp_vectors("phi-3", "phi-3/tokenizer.json.gz");
}

static void write_file(const char *path, const char *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	fclose(f);
}

static void test_directory_load(void **s)
{
	(void)s;
	/* several .gguf files and no tokenizer.json: a clear error */
	sft_error e = { 0 };
	assert_null(tokenizer_load(fixdir, &e));
	assert_non_null(strstr(e.msg, "no tokenizer.json"));
	assert_non_null(strstr(e.msg, "more than one .gguf"));

	char dir[] = "/tmp/sft-tok-test-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[1200], src[1200];
	/* a model directory: tokenizer.json + tokenizer_config.json */
	size_t n, cn;
	snprintf(src, sizeof src, "%s/smollm2/tokenizer.json.gz", fixdir);
	char *js = read_all(src, &n);
	snprintf(src, sizeof src, "%s/smollm2/tokenizer_config.json", fixdir);
	char *cfg = read_all(src, &cn);
	assert_non_null(js);
	assert_non_null(cfg);
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);
	write_file(path, js, n);
	snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
	write_file(path, cfg, cn);
	tokenizer *t = tokenizer_load(dir, &e);
	if (!t)
		fail_msg("%s", e.msg);
	assert_non_null(tokenizer_chat_template(t));
	assert_string_equal(tokenizer_special(t, "eos_token"), "<|im_end|>");
	uint8_t f1[16], f2[16];
	tokenizer_fingerprint(t, f1);
	tokenizer_free(t);
	/* the same tokenizer.json without the config: no template, another fingerprint */
	unlink(path);
	t = tokenizer_load(dir, &e);
	assert_non_null(t);
	assert_null(tokenizer_chat_template(t));
	tokenizer_fingerprint(t, f2);
	assert_memory_not_equal(f1, f2, 16);
	tokenizer_free(t);
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);
	unlink(path);
	/* a directory holding one GGUF */
	snprintf(src, sizeof src, "%s/llama-spm.gguf", fixdir);
	char *g = read_all(src, &n);
	snprintf(path, sizeof path, "%s/model.gguf", dir);
	write_file(path, g, n);
	t = tokenizer_load(dir, &e);
	if (!t)
		fail_msg("%s", e.msg);
	assert_int_equal(tokenizer_vocab_size(t), 32000);
	tokenizer_free(t);
	unlink(path);
	rmdir(dir);
	free(js);
	free(cfg);
	free(g);
}

/* the hand-written GPT-2 / Llama 3 / Qwen2 splitters against PCRE2: corpus + random text */
static int same_split(int fast, const char *s, size_t n, const char *what, size_t idx)
{
	size_t *a, *b, na, nb;
	int rc = tok_debug_split(fast, 1, s, n, &a, &na);
	if (rc == -2)
		return 1; /* invalid UTF-8 never reaches a splitter */
	assert_int_equal(rc, 0);
	assert_int_equal(tok_debug_split(fast, 0, s, n, &b, &nb), 0);
	int same = na == nb && memcmp(a, b, na * sizeof *a) == 0;
	if (!same) {
		size_t k = 0;
		while (k < na && k < nb && a[k] == b[k])
			k++;
		print_message("splitter %d differs from PCRE2 on %s %zu at piece %zu (fast end %zu, pcre2 end %zu): \"%.60s\"\n",
		              fast, what, idx, k, k < na ? a[k] : 0, k < nb ? b[k] : 0, s);
	}
	free(a);
	free(b);
	return same;
}

static void test_fast_splitters_match_pcre2(void **st)
{
	(void)st;
	load_corpus();
	static const uint32_t alpha[] = { 'a', 'Z', 'x', 's', 'S', 't', 'r', 'e', 'v', 'm', 'l', 'L', 'd', 'D', '\'', '\'',
		'0', '7', '9', ' ', ' ', ' ', '\t', '\n', '\r', '\v', '\f', '.', ',', '!', '-', '_', '(', '"', '/',
		0x85, 0xA0, 0x1680, 0x2000, 0x2028, 0x2029, 0x202F, 0x3000, 0x200B, 0x17F, 0xE9, 0x301, 0x663, 0xFF11,
		0xB2, 0x2166, 0x4E2D, 0x65E5, 0xAC00, 0x0416, 0x3B1, 0x5D0, 0x627, 0x915, 0x94D, 0xE01, 0x1F600,
		0x1F44D, 0x1F3FD, 0x200D, 0xFE0F, 0x20AC, 0x2211, 0x1D573, 0x20000, 0xE0041, 0x10FFFD, 0xFFFD };
	size_t na = sizeof alpha / sizeof alpha[0], bad = 0;
	for (int fast = 1; fast <= 3; fast++) {
		for (size_t i = 0; i < n_corpus; i++)
			if (!same_split(fast, corpus[i].s, corpus[i].n, "corpus line", i + 1))
				bad++;
		uint64_t x = 88172645463325252ull;
		for (size_t r = 0; r < 20000; r++) {
			char buf[256];
			size_t n = 0;
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t len = 1 + x % 24;
			for (size_t k = 0; k < len; k++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				uint32_t c = alpha[x % na];
				if (c < 0x80)
					buf[n++] = (char)c;
				else if (c < 0x800)
					buf[n++] = (char)(0xC0 | (c >> 6)), buf[n++] = (char)(0x80 | (c & 0x3F));
				else if (c < 0x10000)
					buf[n++] = (char)(0xE0 | (c >> 12)), buf[n++] = (char)(0x80 | ((c >> 6) & 0x3F)),
					buf[n++] = (char)(0x80 | (c & 0x3F));
				else
					buf[n++] = (char)(0xF0 | (c >> 18)), buf[n++] = (char)(0x80 | ((c >> 12) & 0x3F)),
					buf[n++] = (char)(0x80 | ((c >> 6) & 0x3F)), buf[n++] = (char)(0x80 | (c & 0x3F));
			}
			buf[n] = 0;
			if (!same_split(fast, buf, n, "random string", r))
				bad++;
		}
	}
	assert_int_equal(bad, 0);
}

static void free_corpus(void)
{
	for (size_t i = 0; i < n_corpus; i++)
		free(corpus[i].s);
	free(corpus);
}

int main(void)
{
	init_fixdir();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parity_smollm2),
		cmocka_unit_test(test_parity_llama3),
		cmocka_unit_test(test_parity_qwen2),
		cmocka_unit_test(test_parity_llama2_spm),
		cmocka_unit_test(test_parity_phi3_spm),
		cmocka_unit_test(test_parity_gpt2),
		cmocka_unit_test(test_parity_syn_nfkc_ws),
		cmocka_unit_test(test_parity_syn_nfd_punct),
		cmocka_unit_test(test_parity_syn_metaspace),
		cmocka_unit_test(test_parity_smollm2_gguf),
		cmocka_unit_test(test_parity_llama2_gguf),
		cmocka_unit_test(test_parity_gemma3_gguf),
		cmocka_unit_test(test_llamacpp_vectors),
		cmocka_unit_test(test_fast_splitters_match_pcre2),
		cmocka_unit_test(test_roundtrip_bytelevel),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_offsets_cover_text),
		cmocka_unit_test(test_special_tokens),
		cmocka_unit_test(test_gguf_metadata_and_bos),
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_tiny_pipeline),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_directory_load),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	free_corpus();
	return rc;
}
