/* Unit tests for libcommon/minhash: SHA-1 vectors, numpy's MT19937 stream, and
 * signatures / LSH parameters bit-identical to datasketch (fixtures from
 * scripts/gen-dedup-fixtures.py in tests/fixtures/dedup). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "minhash.h"
#include "textnorm.h"

static char path_buf[4096];
static const char *fix(const char *name)
{
	const char *d = getenv("SFT_TEST_DATA");
	snprintf(path_buf, sizeof path_buf, "%s/dedup/%s", d ? d : "tests/fixtures", name);
	return path_buf;
}

static void hex(const uint8_t *d, char *out)
{
	for (int i = 0; i < 20; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha1_vectors(void **state)
{
	(void)state;
	uint8_t d[20];
	char h[41];
	sha1_digest("abc", 3, d);
	hex(d, h);
	assert_string_equal(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
	sha1_digest("", 0, d);
	hex(d, h);
	assert_string_equal(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: 2 tail blocks */
	sha1_digest(m, strlen(m), d);
	hex(d, h);
	assert_string_equal(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
	char *a = malloc(1000000);
	memset(a, 'a', 1000000);
	sha1_digest(a, 1000000, d);
	free(a);
	hex(d, h);
	assert_string_equal(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

/* The SHA-NI and portable block functions agree on every length around block edges. */
static void test_sha1_paths_agree(void **state)
{
	(void)state;
	uint8_t buf[300], a[20], b[20];
	for (int i = 0; i < 300; i++) buf[i] = (uint8_t)(i * 37 + 11);
	for (size_t n = 0; n <= 300; n++) {
		sha1_digest(buf, n, a);
		sha1_digest_portable(buf, n, b);
		if (memcmp(a, b, 20)) fail_msg("length %zu: digests differ", n);
	}
	char h[41];
	sha1_digest_portable("abc", 3, a);
	hex(a, h);
	assert_string_equal(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
}

static void test_mt19937_and_permutations(void **state)
{
	(void)state;
	mt19937 mt;
	mt19937_seed(&mt, 5489); /* the reference implementation's default seed */
	assert_int_equal(mt19937_next32(&mt), 3499211612U);
	/* numpy.random.RandomState(1): randint(1, 2**61-1, dtype=uint64), randint(0, 2**61-1) */
	minhash m;
	minhash_params p = {4, 5, MINHASH_WORD, MINHASH_SHA1, 1};
	assert_int_equal(minhash_init(&m, &p, NULL), 0);
	assert_true(m.a[0] == 775169054918279404ULL);
	assert_true(m.b[0] == 1758426461858698312ULL);
	for (int i = 0; i < 4; i++) assert_true(m.a[i] >= 1 && m.a[i] < (1ULL << 61) - 1);
	minhash_free(&m);
	minhash_free(&m); /* idempotent */
}

/* Reads corpus line `want` (1-based) text, normalized as ds-dedup's default. */
static char *corpus_text(int want, textnorm_buf *tb, size_t *len)
{
	FILE *f = fopen(fix("corpus.jsonl"), "r");
	assert_non_null(f);
	char *line = NULL;
	size_t cap = 0;
	char *out = NULL;
	for (int ln = 1; getline(&line, &cap, f) > 0; ln++) {
		if (ln != want) continue;
		json_t *v = json_loads(line, 0, NULL);
		assert_non_null(v);
		const char *t = json_string_value(json_object_get(v, "text"));
		assert_non_null(t);
		const char *n = textnorm_apply(tb, t, strlen(t), TEXTNORM_NFC | TEXTNORM_CASEFOLD | TEXTNORM_WS, len);
		out = malloc(*len + 1);
		memcpy(out, n, *len + 1);
		json_decref(v);
		break;
	}
	free(line);
	fclose(f);
	assert_non_null(out);
	return out;
}

static void check_sigs(const char *file, int num_perm, int ngram, int unit, uint32_t seed)
{
	minhash m;
	minhash_params p = {num_perm, ngram, unit, MINHASH_SHA1, seed};
	assert_int_equal(minhash_init(&m, &p, NULL), 0);
	minhash_scratch s = {0};
	textnorm_buf tb = {0};
	FILE *f = fopen(fix(file), "r");
	assert_non_null(f);
	int ln, rows = 0;
	uint32_t *sig = malloc(sizeof(uint32_t) * (size_t)num_perm);
	while (fscanf(f, "%d", &ln) == 1) {
		size_t len;
		char *t = corpus_text(ln, &tb, &len);
		assert_true(minhash_signature(&m, t, len, sig, &s) > 0);
		for (int i = 0; i < num_perm; i++) {
			unsigned long v;
			assert_int_equal(fscanf(f, "%lu", &v), 1);
			if (sig[i] != v) fail_msg("%s line %d perm %d: got %u, datasketch %lu", file, ln, i, sig[i], v);
		}
		free(t);
		rows++;
	}
	assert_true(rows >= 10);
	fclose(f);
	free(sig);
	minhash_scratch_free(&s);
	textnorm_buf_free(&tb);
	minhash_free(&m);
}

static void test_signatures_match_datasketch_words(void **state)
{
	(void)state;
	/* every permutation kernel this CPU can run (portable, AVX2, AVX-512) */
	int ran = 0;
	for (int level = 0; level <= 2; level++) {
		if (minhash_force_kernel(level) < 0) continue;
		check_sigs("signatures.tsv", 128, 5, MINHASH_WORD, 1);
		ran++;
	}
	minhash_force_kernel(-1);
	assert_true(ran >= 1);
	check_sigs("signatures.tsv", 128, 5, MINHASH_WORD, 1);
}

static void test_signatures_match_datasketch_chars(void **state)
{
	(void)state;
	check_sigs("signatures_char.tsv", 64, 5, MINHASH_CHAR, 7);
}

static void test_optimal_param_matches_datasketch(void **state)
{
	(void)state;
	FILE *f = fopen(fix("optimal_params.tsv"), "r");
	assert_non_null(f);
	double th;
	int np, b, r, n = 0;
	while (fscanf(f, "%lf %d %d %d", &th, &np, &b, &r) == 4) {
		int gb, gr;
		minhash_optimal_param(th, np, 0.5, 0.5, &gb, &gr);
		if (gb != b || gr != r) fail_msg("threshold %g num_perm %d: got %dx%d, datasketch %dx%d", th, np, gb, gr, b, r);
		n++;
	}
	fclose(f);
	assert_int_equal(n, 7);
}

/* True Jaccard of planted pairs from truth.tsv (Python sets of shingle strings). */
static void test_jaccard_of_planted_pairs(void **state)
{
	(void)state;
	minhash m;
	minhash_params p = {8, 5, MINHASH_WORD, MINHASH_XXH3, 1};
	assert_int_equal(minhash_init(&m, &p, NULL), 0);
	minhash_scratch s = {0};
	textnorm_buf tb = {0};
	FILE *f = fopen(fix("truth.tsv"), "r");
	assert_non_null(f);
	int a, b, n = 0;
	double j;
	while (n < 40 && fscanf(f, "%d %d %lf", &a, &b, &j) == 3) {
		size_t la, lb;
		char *ta = corpus_text(a, &tb, &la);
		char *tbt = corpus_text(b, &tb, &lb);
		long na = minhash_shingle_hashes(&m, ta, la, &s);
		uint64_t *ha = malloc(sizeof(uint64_t) * (size_t)na);
		memcpy(ha, s.h, sizeof(uint64_t) * (size_t)na);
		long nb = minhash_shingle_hashes(&m, tbt, lb, &s);
		double got = minhash_jaccard_sets(ha, (size_t)na, s.h, (size_t)nb);
		if (got < j - 0.0051 || got > j + 0.0051) fail_msg("pair %d %d: jaccard %f, python %f", a, b, got, j);
		free(ha);
		free(ta);
		free(tbt);
		n++;
	}
	fclose(f);
	assert_int_equal(n, 40);
	minhash_scratch_free(&s);
	textnorm_buf_free(&tb);
	minhash_free(&m);
}

/* Property: with the fast hash, the fraction of equal signature slots estimates the
 * Jaccard similarity (within 4 standard deviations for 512 permutations). */
static void test_xxh3_estimates_jaccard(void **state)
{
	(void)state;
	minhash m;
	minhash_params p = {512, 2, MINHASH_WORD, MINHASH_XXH3, 3};
	assert_int_equal(minhash_init(&m, &p, NULL), 0);
	minhash_scratch s = {0};
	char ta[8000], tb[8000];
	size_t la = 0, lb = 0;
	for (int i = 0; i < 600; i++) { /* 600 tokens; the second text changes every 4th */
		la += (size_t)sprintf(ta + la, "w%d ", i);
		lb += (size_t)sprintf(tb + lb, i % 4 == 0 ? "x%d " : "w%d ", i);
	}
	ta[--la] = 0;
	tb[--lb] = 0;
	uint32_t sa[512], sb[512];
	assert_int_equal(minhash_signature(&m, ta, la, sa, &s), 599);
	minhash_signature(&m, tb, lb, sb, &s);
	long na = minhash_shingle_hashes(&m, ta, la, &s);
	uint64_t *ha = malloc(sizeof(uint64_t) * (size_t)na);
	memcpy(ha, s.h, sizeof(uint64_t) * (size_t)na);
	long nb = minhash_shingle_hashes(&m, tb, lb, &s);
	double j = minhash_jaccard_sets(ha, (size_t)na, s.h, (size_t)nb);
	free(ha);
	int eq = 0;
	for (int i = 0; i < 512; i++) eq += sa[i] == sb[i];
	double est = eq / 512.0;
	assert_true(j > 0.2 && j < 0.4); /* bigrams survive when neither token changed: ~0.33 */
	assert_true(est > j - 0.09 && est < j + 0.09);
	/* the same text gives the same signature; sha1 and xxh3 differ */
	minhash_signature(&m, ta, la, sb, &s);
	assert_memory_equal(sa, sb, sizeof sa);
	minhash_scratch_free(&s);
	minhash_free(&m);
}

static void test_short_and_empty_texts(void **state)
{
	(void)state;
	minhash m;
	minhash_params p = {16, 5, MINHASH_WORD, MINHASH_SHA1, 1};
	assert_int_equal(minhash_init(&m, &p, NULL), 0);
	minhash_scratch s = {0};
	uint32_t sig[16];
	assert_int_equal(minhash_signature(&m, "", 0, sig, &s), 0);
	for (int i = 0; i < 16; i++) assert_true(sig[i] == 0xffffffffU);
	/* fewer tokens than n: one shingle of the whole text */
	assert_int_equal(minhash_shingle_hashes(&m, "a b c", 5, &s), 1);
	assert_int_equal(minhash_shingle_hashes(&m, "a b c d e f", 11, &s), 2);
	minhash_free(&m);
	minhash_params pc = {16, 3, MINHASH_CHAR, MINHASH_SHA1, 1};
	assert_int_equal(minhash_init(&m, &pc, NULL), 0);
	/* code points, not bytes: "h\xc3\xa9llo" has 5 code points, 3 trigrams */
	assert_int_equal(minhash_shingle_hashes(&m, "h\xc3\xa9llo", 6, &s), 3);
	assert_int_equal(minhash_shingle_hashes(&m, "\xc3\xa9t", 3, &s), 1);
	minhash_free(&m);
	minhash_params bad = {0, 3, MINHASH_CHAR, MINHASH_SHA1, 1};
	sft_error e = {0};
	assert_true(minhash_init(&m, &bad, &e) < 0);
	assert_int_equal(e.code, SFT_EXIT_USAGE);
	minhash_scratch_free(&s);
	minhash_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha1_vectors),
		cmocka_unit_test(test_sha1_paths_agree),
		cmocka_unit_test(test_mt19937_and_permutations),
		cmocka_unit_test(test_signatures_match_datasketch_words),
		cmocka_unit_test(test_signatures_match_datasketch_chars),
		cmocka_unit_test(test_optimal_param_matches_datasketch),
		cmocka_unit_test(test_jaccard_of_planted_pairs),
		cmocka_unit_test(test_xxh3_estimates_jaccard),
		cmocka_unit_test(test_short_and_empty_texts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
