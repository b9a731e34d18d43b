/* Unit tests for libcommon/textnorm: expected strings are what Python computes with
 * unicodedata (NFC, str.casefold, category P and Nd filters, str.split() whitespace). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "textnorm.h"

#define ALL (TEXTNORM_NFC | TEXTNORM_CASEFOLD | TEXTNORM_WS)

static const char *norm(textnorm_buf *b, const char *s, int flags)
{
	size_t n;
	const char *r = textnorm_apply(b, s, strlen(s), flags, &n);
	assert_non_null(r);
	assert_int_equal(n, strlen(r));
	return r;
}

static void test_ascii(void **state)
{
	(void)state;
	textnorm_buf b = {0};
	assert_string_equal(norm(&b, "  Hello\t\n WORLD \r\n", ALL), "hello world");
	assert_string_equal(norm(&b, "  Hello\t\n WORLD ", TEXTNORM_WS), "Hello WORLD");
	assert_string_equal(norm(&b, "A  b", 0), "A  b");
	assert_string_equal(norm(&b, "$5+3! (ok), a-b_c", ALL | TEXTNORM_STRIP_PUNCT), "$5+3 ok abc");
	assert_string_equal(norm(&b, "abc123 x9", ALL | TEXTNORM_STRIP_DIGITS), "abc x");
	assert_string_equal(norm(&b, "x\x1c\x1fy", ALL), "x y"); /* \x1c-\x1f are Python whitespace */
	assert_string_equal(norm(&b, "", ALL), "");
	assert_string_equal(norm(&b, " \t ", ALL), "");
	textnorm_buf_free(&b);
}

static void test_unicode(void **state)
{
	(void)state;
	textnorm_buf b = {0};
	/* NFC composes e + U+0301; casefold maps sharp s to "ss" */
	assert_string_equal(norm(&b, "Stra\xc3\x9f" "e  E\xcc\x81" "COLE", ALL), "strasse \xc3\xa9" "cole");
	assert_string_equal(norm(&b, "E\xcc\x81", TEXTNORM_NFC), "\xc3\x89");
	assert_string_equal(norm(&b, "\xc3\x89", TEXTNORM_CASEFOLD), "\xc3\xa9");
	/* guillemets (Pi/Pf) and em dash (Pd) are punctuation; '+' is a symbol */
	assert_string_equal(norm(&b, "\xc2\xab" "bonjour\xc2\xbb\xe2\x80\x94x, +3!", ALL | TEXTNORM_STRIP_PUNCT),
			    "bonjourx +3");
	/* ARABIC-INDIC DIGIT THREE is Nd */
	assert_string_equal(norm(&b, "abc123 \xd9\xa3x", ALL | TEXTNORM_STRIP_DIGITS), "abc x");
	/* ideographic space, no-break space, line separator */
	assert_string_equal(norm(&b, "\xe3\x80\x80" "a\xc2\xa0" "b\xe2\x80\xa8" "c", ALL), "a b c");
	/* dotted capital I folds to i + combining dot above, as Python */
	assert_string_equal(norm(&b, "\xc4\xb0stanbul", ALL), "i\xcc\x87stanbul");
	textnorm_buf_free(&b);
}

static void test_long_input_grows_buffer(void **state)
{
	(void)state;
	textnorm_buf b = {0};
	char big[20001];
	for (int i = 0; i < 20000; i++) big[i] = (i % 7 == 0) ? ' ' : 'A';
	big[20000] = 0;
	size_t n;
	const char *r = textnorm_apply(&b, big, 20000, ALL, &n);
	assert_non_null(r);
	assert_int_equal(r[0], 'a');
	assert_null(strchr(r, 'A'));
	assert_null(strstr(r, "  "));
	textnorm_buf_free(&b);
}

static void test_counts(void **state)
{
	(void)state;
	assert_int_equal(textnorm_count_chars("h\xc3\xa9llo", 6), 5);
	assert_int_equal(textnorm_count_words("  one two\xe3\x80\x80three  ", 17), 3);
	assert_int_equal(textnorm_count_words("", 0), 0);
	assert_int_equal(textnorm_count_lines("", 0), 0);
	assert_int_equal(textnorm_count_lines("a", 1), 1);
	assert_int_equal(textnorm_count_lines("a\nb\n", 4), 2);
	assert_int_equal(textnorm_count_lines("a\n\nb", 4), 3);
	assert_true(textnorm_is_blank(" \t\xc2\xa0\n", 5));
	assert_false(textnorm_is_blank(" x ", 3));
	assert_true(textnorm_is_blank("", 0));
}

/* Reference for ASCII input: Python " ".join(s.split()) with optional lower(). */
static size_t ref_ascii(const char *s, size_t len, int fold, char *out)
{
	size_t n = 0;
	int pend = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) {
			pend = n > 0;
			continue;
		}
		if (pend) out[n++] = ' ', pend = 0;
		out[n++] = (char)(fold && c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	out[n] = 0;
	return n;
}

/* The 16-byte block path must equal the byte loop for every mix of whitespace runs,
 * block boundaries and case; a non-ASCII byte anywhere falls back to the Unicode path. */
static void test_ascii_blocks_random(void **state)
{
	(void)state;
	static const char alpha[] = "aZ  \t\n\r\x1c\x1f\x0b.9Qz~ ";
	char in[200], ref[220];
	textnorm_buf b = {0};
	unsigned seed = 12345;
	for (int it = 0; it < 20000; it++) {
		size_t len = (size_t)(it % 97);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			unsigned r = (seed >> 16) % 64;
			in[i] = r < 24 ? alpha[r % (sizeof alpha - 1)] : (char)('a' + r % 26);
			if (r >= 50) in[i] = ' ';
		}
		for (int fold = 0; fold < 2; fold++) {
			int flags = TEXTNORM_WS | TEXTNORM_NFC | (fold ? TEXTNORM_CASEFOLD : 0);
			size_t n, rn = ref_ascii(in, len, fold, ref);
			const char *o = textnorm_apply(&b, in, len, flags, &n);
			assert_non_null(o);
			assert_int_equal(n, rn);
			assert_memory_equal(o, ref, rn + 1);
		}
	}
	/* non-ASCII in the middle of a long ASCII run: NFC + folding still apply */
	char u[100];
	memset(u, 'A', sizeof u);
	memcpy(u + 40, "\xc3\x9f", 2); /* sharp s folds to "ss" */
	size_t n;
	const char *o = textnorm_apply(&b, u, sizeof u, TEXTNORM_WS | TEXTNORM_NFC | TEXTNORM_CASEFOLD, &n);
	assert_non_null(o);
	assert_int_equal(n, 100);
	assert_memory_equal(o + 40, "ss", 2);
	assert_int_equal(o[39], 'a');
	textnorm_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ascii),
		cmocka_unit_test(test_unicode),
		cmocka_unit_test(test_long_input_grows_buffer),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_ascii_blocks_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
