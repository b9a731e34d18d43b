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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ascii),
		cmocka_unit_test(test_unicode),
		cmocka_unit_test(test_long_input_grows_buffer),
		cmocka_unit_test(test_counts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
