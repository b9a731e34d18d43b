/* Unit tests for libcommon's JSON: the fast reader (json_parse_fast, behind
 * json_parse_located and jsonl_next) against jansson's json_loadb on a corpus of valid
 * and invalid texts, the shared lexer (json_scan.h), and the compact writer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_scan.h"
#include "jsonl.h"

/* Parses with both; they must agree on acceptance, and on the value (json_equal and the
 * compact bytes). Returns 1 when accepted. */
static int same_as_jansson(const char *s, size_t n)
{
	json_error_t je;
	json_t *ref = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	json_t *mine = json_parse_fast(s, n);
	if (!ref != !mine)
		fail_msg("acceptance differs for [%.*s]: jansson %s, fast %s (%s)", (int)n, s, ref ? "ok" : "rejects",
			 mine ? "ok" : "rejects", ref ? "" : je.text);
	if (!ref)
		return 0;
	assert_true(json_equal(ref, mine));
	char *a = NULL, *b = NULL;
	size_t al = 0, ac = 0, bl = 0, bc = 0;
	assert_int_equal(json_dump_compact(ref, &a, &al, &ac), 0);
	assert_int_equal(json_dump_compact(mine, &b, &bl, &bc), 0);
	assert_int_equal(al, bl);
	assert_memory_equal(a, b, al);
	free(a);
	free(b);
	json_decref(ref);
	json_decref(mine);
	return 1;
}

static const char *valid[] = {
	"{}", "[]", "{\"a\":1}", " {\"a\" : [1, 2.5, -0, -0.0, 1e3, 1E-3, 2e+2, true, false, null]} ",
	"\"str\"", "0", "-1", "123456789012345678", "9223372036854775807", "-9223372036854775808",
	"1e-400", "4.9e-324", "1.7976931348623157e308", "0.1", "[[[[]]]]", "{\"a\":{\"b\":{\"c\":[{}]}}}",
	"\"\\u00e9 \\u20ac \\ud83d\\ude00 \\/ \\b\\f\\n\\r\\t \\\" \\\\\"", "\"\\u0000\"", "[\"a\\u0000b\"]",
	"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "\"\x7f\"", "{\"dup\":1,\"dup\":2}",
	"{\"a\":1,\"b\":2,\"a\":3}", "\t\r\n[1]\n", "{\"\":\"\"}", "\"\\uDBFF\\uDFFF\"", "\"\xf4\x8f\xbf\xbf\"",
	"{\"k\\n\\u00e9\":\"v\\t\"}", "[1,\"x\\\"y\",{\"z\":[\"\\\\\"]}]",
};

static const char *invalid[] = {
	"", " ", "{", "}", "[", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{'a':1}", "[1 2]", "tru", "nul",
	"falsey", "NaN", "Infinity", "-Infinity", "+1", "01", "-01", "1.", ".5", "1e", "1e+", "-", "--1",
	"0x10", "9223372036854775808", "-9223372036854775809", "99999999999999999999", "1e999", "-1e999",
	"\"unterminated", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"\\ud800\"", "\"\\udc00\"",
	"\"\\ud800\\u0041\"", "\"\\ud800\\n\"", "\"tab\tinside\"", "\"nl\ninside\"", "\"\x01\"",
	"\"\xc3\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xff\"", "\"\x80\"",
	"\"\xe0\x80\xaf\"", "\"\xf0\x80\x80\xaf\"", "{\"a\\u0000b\":1}", "[1]]", "{} {}", "{}x", "[1]\x01",
	"\"a\" \"b\"", "{\"a\":}", "{,}", "[,1]", "\xef\xbb\xbf{}", "\\", "{\"a\":1}}",
};

static void test_corpus_against_jansson(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof valid / sizeof *valid; i++)
		if (!same_as_jansson(valid[i], strlen(valid[i])))
			fail_msg("should be valid: [%s]", valid[i]);
	for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
		if (same_as_jansson(invalid[i], strlen(invalid[i])))
			fail_msg("should be invalid: [%s]", invalid[i]);
	/* raw NUL bytes inside and after a text */
	assert_int_equal(same_as_jansson("\"a\0b\"", 5), 0);
	assert_int_equal(same_as_jansson("{}\0", 3), 0);
	assert_int_equal(same_as_jansson("[1,\0]", 5), 0);
	/* jansson swallows one NUL byte after a number or a literal (its lookahead) */
	assert_int_equal(same_as_jansson("2\0\t", 3), 1);
	assert_int_equal(same_as_jansson("[1\0]", 4), 1);
	assert_int_equal(same_as_jansson("{\"a\":true\0,\"b\":null\0}", 21), 1);
	assert_int_equal(same_as_jansson("1\0\0", 3), 0);
	assert_int_equal(same_as_jansson("\"a\"\0", 4), 0);
	assert_int_equal(same_as_jansson("[\0]", 3), 0);
}

/* Every line of ds-template's JSON edge-case fixtures (tests/cli/ds-template/json-edge-*). */
static void test_ds_template_edge_fixtures(void **state)
{
	(void)state;
	const char *files[] = {"tests/fixtures/ds-template/json_edge_valid.jsonl",
			       "tests/fixtures/ds-template/json_edge_invalid.jsonl"};
	int ok[2] = {0, 0}, bad[2] = {0, 0};
	for (int f = 0; f < 2; f++) {
		FILE *fp = fopen(files[f], "rb");
		assert_non_null(fp);
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		while ((n = getline(&line, &cap, fp)) > 0) {
			while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
				n--;
			size_t k = 0;
			while (k < (size_t)n && (line[k] == ' ' || line[k] == '\t'))
				k++;
			if (k == (size_t)n)
				continue; /* blank lines are skipped by jsonl_next */
			if (same_as_jansson(line, (size_t)n))
				ok[f]++;
			else
				bad[f]++;
		}
		free(line);
		fclose(fp);
	}
	assert_int_equal(ok[0], 3);
	assert_int_equal(bad[0], 0);
	/* 16 lines: one valid record, [1,2] is valid JSON (not an object), 14 invalid */
	assert_int_equal(ok[1], 2);
	assert_int_equal(bad[1], 14);
}

static void test_depth_limit_as_jansson(void **state)
{
	(void)state;
	size_t n = 2100;
	char *s = malloc(2 * n);
	for (size_t d = 2040; d <= 2060; d++) {
		memset(s, '[', d);
		memset(s + d, ']', d);
		int ok = same_as_jansson(s, 2 * d);
		assert_int_equal(ok, d <= 2048);
	}
	free(s);
}

/* Strings longer than the reader's stack scratch, with and without escapes, many per text. */
static void test_long_and_many_strings(void **state)
{
	(void)state;
	size_t n = 50000;
	char *s = malloc(n * 8 + 64);
	size_t o = 0;
	s[o++] = '[';
	for (size_t i = 0; i < n; i++) {
		if (i)
			s[o++] = ',';
		const char *piece = i % 3 == 0 ? "\"a\\n\"" : i % 3 == 1 ? "\"\\u00e9x\"" : "\"plain\"";
		memcpy(s + o, piece, strlen(piece));
		o += strlen(piece);
	}
	s[o++] = ']';
	assert_int_equal(same_as_jansson(s, o), 1);
	/* one long string with an escape at its end */
	o = 0;
	s[o++] = '"';
	for (size_t i = 0; i < 20000; i++)
		s[o++] = (char)('a' + i % 26);
	memcpy(s + o, "\\t\xc3\xa9\"", 5);
	o += 5;
	assert_int_equal(same_as_jansson(s, o), 1);
	free(s);
}

static void test_located_errors_are_janssons(void **state)
{
	(void)state;
	sft_error e = {0};
	assert_null(json_parse_located("{\"a\":\"\\x\"}", 10, "in.jsonl", 4, 0, &e));
	assert_int_equal(e.code, SFT_EXIT_DATA);
	json_error_t je;
	assert_null(json_loadb("{\"a\":\"\\x\"}", 10, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je));
	char want[512];
	snprintf(want, sizeof want, "in.jsonl:4:%d: invalid JSON: %s", je.column, je.text);
	assert_string_equal(e.msg, want);
	assert_null(json_parse_located("[1]", 3, "in.jsonl", 2, 0, &e));
	assert_string_equal(e.msg, "in.jsonl:2:1: expected a JSON object per line");
	json_t *v = json_parse_located("[1]", 3, "in.jsonl", 2, 1, &e);
	assert_non_null(v);
	json_decref(v);
}

static void test_scan_positions(void **state)
{
	(void)state;
	const unsigned char *q;
#define S(lit) (const unsigned char *)(lit), (const unsigned char *)(lit) + sizeof(lit) - 1
	const char *t1 = "ab\"rest";
	assert_int_equal(json_scan_string(S("ab\"rest"), &q), JSCAN_OK);
	assert_int_equal(q - (const unsigned char *)t1, 0 + 2);
	assert_int_equal(json_scan_string(S("ab\\n\""), &q), JSCAN_ESCAPED);
	assert_int_equal(json_scan_string(S("ab\x01\""), &q), JSCAN_CTRL);
	assert_int_equal(json_scan_string(S("ab\xff\""), &q), JSCAN_UTF8);
	assert_int_equal(json_scan_string(S("abc"), &q), JSCAN_UNTERMINATED);

	char dst[64];
	size_t n;
	int nul;
	const char *in = "x\\u00e9\\n\\ud83d\\ude00\"tail";
	const unsigned char *s = (const unsigned char *)in, *end = s + strlen(in);
	assert_int_equal(json_scan_unescape(s, s + 1, end, 0, dst, &n, &nul, &q), JSCAN_OK);
	assert_int_equal(n, 1 + 2 + 1 + 4);
	assert_memory_equal(dst, "x\xc3\xa9\n\xf0\x9f\x98\x80", n);
	assert_string_equal((const char *)q, "tail");
	const char *e1 = "ab\\qc\"";
	s = (const unsigned char *)e1;
	assert_int_equal(json_scan_unescape(s, s + 2, s + strlen(e1), 0, dst, &n, &nul, &q), JSCAN_ESCAPE);
	assert_int_equal(q - s, 3); /* at the 'q' */
	const char *e2 = "\\u0000\"";
	s = (const unsigned char *)e2;
	assert_int_equal(json_scan_unescape(s, s, s + strlen(e2), 0, dst, &n, &nul, &q), JSCAN_NUL);
	assert_int_equal(json_scan_unescape(s, s, s + strlen(e2), 1, dst, &n, &nul, &q), JSCAN_OK);
	assert_int_equal(nul, 1);
	assert_int_equal(n, 1);
	const char *e3 = "\\ud800x\"";
	s = (const unsigned char *)e3;
	assert_int_equal(json_scan_unescape(s, s, s + strlen(e3), 0, dst, &n, &nul, &q), JSCAN_SURROGATE);
	assert_int_equal(q - s, 6);

	int real;
	const char *n1 = "-12.5e3,";
	s = (const unsigned char *)n1;
	assert_int_equal(json_scan_number(s, s + strlen(n1), &q, &real), JSCAN_OK);
	assert_int_equal(q - s, 7);
	assert_int_equal(real, 1);
	const char *n2 = "1.x";
	s = (const unsigned char *)n2;
	assert_int_equal(json_scan_number(s, s + 3, &q, &real), JSCAN_NUMBER);
	assert_int_equal(q - s, 2);
	const char *n3 = "-x";
	s = (const unsigned char *)n3;
	assert_int_equal(json_scan_number(s, s + 2, &q, &real), JSCAN_NUMBER);
	assert_int_equal(q - s, 0);
	assert_string_equal(json_scan_strerror(JSCAN_CTRL), "control character in string");
#undef S
}

static void test_utf8_valid(void **state)
{
	(void)state;
	assert_true(json_utf8_valid("plain ascii, long enough to use the 16-byte loop", 49));
	assert_true(json_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
	assert_false(json_utf8_valid("0123456789abcdef\xc3", 17));
	assert_false(json_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
	assert_false(json_utf8_valid("\xc0\xaf", 2));     /* overlong */
	assert_false(json_utf8_valid("\xf4\x90\x80\x80", 4));
	assert_true(json_utf8_valid("", 0));
}

static void test_writer_bytes(void **state)
{
	(void)state;
	json_buf b = {0};
	const char *in = "q\" b\\ s/ \x01\x1f\x7f \xc3\xa9 \b\f\n\r\t";
	assert_int_equal(json_buf_string(&b, in, strlen(in)), 0);
	const char *want = "\"q\\\" b\\\\ s/ \\u0001\\u001f\x7f \xc3\xa9 \\b\\f\\n\\r\\t\"";
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(b.buf, want, b.len);
	/* a long string of nothing but escapes grows the buffer as it goes */
	char many[3000];
	memset(many, '\x02', sizeof many);
	b.len = 0;
	assert_int_equal(json_buf_string(&b, many, sizeof many), 0);
	assert_int_equal(b.len, 2 + 6 * sizeof many);
	free(b.buf);

	json_t *v = json_pack("{s:I,s:i,s:f,s:[b,n,s]}", "a", (json_int_t)(-9223372036854775807LL - 1), "b", 0, "c", 1e16, "d", 1,
			      "x");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	assert_int_equal(json_dump_compact(v, &buf, &len, &cap), 0);
	assert_string_equal(buf, "{\"a\":-9223372036854775808,\"b\":0,\"c\":1e+16,\"d\":[true,null,\"x\"]}");
	/* appends */
	assert_int_equal(json_dump_compact(json_array_get(json_object_get(v, "d"), 2), &buf, &len, &cap), 0);
	assert_string_equal(buf + len - 3, "\"x\"");
	free(buf);
	json_decref(v);
}

/* json_real_or_null: finite numbers as reals, NaN and infinities as null */
static void test_real_or_null(void **state)
{
	(void)state;
	json_t *v = json_real_or_null(1.5);
	assert_true(json_is_real(v) && json_real_value(v) == 1.5);
	json_decref(v);
	double bad[3] = {NAN, INFINITY, -INFINITY};
	for (int i = 0; i < 3; i++) {
		v = json_real_or_null(bad[i]);
		assert_true(json_is_null(v));
		json_decref(v);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus_against_jansson),
		cmocka_unit_test(test_ds_template_edge_fixtures),
		cmocka_unit_test(test_depth_limit_as_jansson),
		cmocka_unit_test(test_long_and_many_strings),
		cmocka_unit_test(test_located_errors_are_janssons),
		cmocka_unit_test(test_scan_positions),
		cmocka_unit_test(test_utf8_valid),
		cmocka_unit_test(test_writer_bytes),
		cmocka_unit_test(test_real_or_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
