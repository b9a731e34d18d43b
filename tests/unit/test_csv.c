/* Unit tests for libcommon/csv (RFC 4180 reader), plus the small helpers ds-fetch relies
 * on: SHA-256 (FIPS 180-2 test vectors), URL escaping, hf:// URL parsing, format names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "hfhub.h"
#include "http.h"
#include "source.h"

/* Reads all records of `text` as arrays of fields joined by '|' and records by '\n'. */
static char *read_all(const char *text, size_t len, int delim, sft_error *err, int *rc_out)
{
	FILE *fp = fmemopen((void *)text, len, "r");
	assert_non_null(fp);
	csv_reader *r = csv_open_stream(fp, "t.csv", delim);
	char *out = calloc(1, 1);
	size_t olen = 0;
	char **f;
	size_t *l, n;
	int rc;
	while ((rc = csv_next(r, &f, &l, &n, err)) > 0) {
		for (size_t i = 0; i < n; i++) {
			out = realloc(out, olen + l[i] + 3);
			memcpy(out + olen, f[i], l[i]);
			olen += l[i];
			out[olen++] = i + 1 < n ? '|' : '\n';
			out[olen] = '\0';
		}
	}
	*rc_out = rc;
	csv_close(r);
	fclose(fp);
	return out;
}

static void check(const char *in, int delim, const char *want)
{
	sft_error e = {0};
	int rc;
	char *got = read_all(in, strlen(in), delim, &e, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(got, want);
	free(got);
}

static void test_csv_basic(void **state)
{
	(void)state;
	check("a,b,c\n1,2,3\n", ',', "a|b|c\n1|2|3\n");
	check("a,b\r\n1,2\r\n", ',', "a|b\n1|2\n");      /* CRLF */
	check("a,b\r1,2", ',', "a|b\n1|2\n");            /* CR only, no final newline */
	check("a,,\n,,x\n", ',', "a||\n||x\n");          /* empty fields */
	check("\n\na\n\r\n\nb\n", ',', "a\nb\n");        /* blank lines skipped */
	check("a\tb,c\n", '\t', "a|b,c\n");              /* TSV */
	check("\xEF\xBB\xBFh1,h2\nx,y\n", ',', "h1|h2\nx|y\n"); /* BOM dropped */
	check("", ',', "");
}

static void test_csv_quoted(void **state)
{
	(void)state;
	check("\"a,b\",c\n", ',', "a,b|c\n");
	check("\"say \"\"hi\"\"\",x\n", ',', "say \"hi\"|x\n");
	check("\"line1\nline2\r\nline3\",z\n", ',', "line1\nline2\r\nline3|z\n"); /* newlines kept verbatim */
	check("\"\",\"\"\n", ',', "|\n");
	check("x,\"end\"", ',', "x|end\n");
}

static void test_csv_errors_and_lines(void **state)
{
	(void)state;
	const char *in = "h1,h2\n\"multi\nline\",ok\nbad\"q,1\nz,w\n";
	FILE *fp = fmemopen((void *)in, strlen(in), "r");
	csv_reader *r = csv_open_stream(fp, "t.csv", ',');
	char **f;
	size_t *l, n;
	sft_error e = {0};
	assert_int_equal(csv_next(r, &f, &l, &n, &e), 1);
	assert_int_equal(csv_record_line(r), 1);
	assert_int_equal(csv_next(r, &f, &l, &n, &e), 1);
	assert_int_equal(csv_record_line(r), 2);
	assert_string_equal(f[0], "multi\nline");
	assert_true(csv_next(r, &f, &l, &n, &e) < 0);
	assert_int_equal(e.code, SFT_EXIT_DATA);
	assert_string_equal(e.msg, "t.csv:4: bad CSV quoting: '\"' inside an unquoted field");
	/* resynchronizes at the next line */
	assert_int_equal(csv_next(r, &f, &l, &n, &e), 1);
	assert_int_equal(csv_record_line(r), 5);
	assert_string_equal(f[0], "z");
	assert_int_equal(csv_next(r, &f, &l, &n, &e), 0);
	csv_close(r);
	fclose(fp);

	int rc;
	char *got = read_all("a\n\"open\nmore\n", 13, ',', &e, &rc);
	assert_true(rc < 0);
	assert_string_equal(e.msg, "t.csv:3: bad CSV quoting: unterminated quoted field (opened on line 2)");
	free(got);
	got = read_all("\"x\"y\n", 5, ',', &e, &rc);
	assert_true(rc < 0);
	assert_non_null(strstr(e.msg, "t.csv:1: bad CSV quoting: unexpected character after closing"));
	free(got);
}

static void test_csv_objects(void **state)
{
	(void)state;
	const char *in = "prompt,completion,prompt\nA,B,C\nonly\n";
	FILE *fp = fmemopen((void *)in, strlen(in), "r");
	csv_reader *r = csv_open_stream(fp, "p.csv", ',');
	json_t *o = NULL;
	sft_error e = {0};
	assert_int_equal(csv_next_object(r, &o, &e), 1);
	/* a repeated header keeps the last value at the first position (csv.DictReader) */
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_string_equal(s, "{\"prompt\":\"C\",\"completion\":\"B\"}");
	free(s);
	json_decref(o);
	assert_true(csv_next_object(r, &o, &e) < 0);
	assert_string_equal(e.msg, "p.csv:3: expected 3 fields (as in the header), got 1");
	assert_int_equal(csv_next_object(r, &o, &e), 0);
	csv_close(r);
	fclose(fp);
}

static void test_csv_big_field(void **state)
{
	(void)state;
	/* fields and quote pairs straddling the reader's 64 KiB buffer */
	size_t n = 200000;
	char *in = malloc(n + 64);
	size_t k = 0;
	k += (size_t)sprintf(in, "h\n\"");
	for (size_t i = 0; i < n; i++)
		in[k++] = (i % 7 == 0) ? '"' : 'x';
	/* every '"' inside must be doubled: rewrite simply as a run of x and "" pairs */
	k = (size_t)sprintf(in, "h\n\"");
	size_t want_len = 0;
	while (k < n) {
		if (want_len % 5 == 4) {
			in[k++] = '"';
			in[k++] = '"';
		} else {
			in[k++] = 'x';
		}
		want_len++;
	}
	in[k++] = '"';
	in[k++] = '\r';
	in[k++] = '\n';
	FILE *fp = fmemopen(in, k, "r");
	csv_reader *r = csv_open_stream(fp, "big.csv", ',');
	char **f;
	size_t *l, nf;
	sft_error e = {0};
	assert_int_equal(csv_next(r, &f, &l, &nf, &e), 1);
	assert_int_equal(csv_next(r, &f, &l, &nf, &e), 1);
	assert_int_equal(nf, 1);
	assert_int_equal(l[0], want_len);
	for (size_t i = 0; i < want_len; i++)
		assert_int_equal(f[0][i], i % 5 == 4 ? '"' : 'x');
	assert_int_equal(csv_next(r, &f, &l, &nf, &e), 0);
	csv_close(r);
	fclose(fp);
	free(in);
}

static void hex(const unsigned char *d, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_sha256_vectors(void **state)
{
	(void)state;
	struct { const char *in; const char *want; } v[] = {
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	};
	for (size_t i = 0; i < 3; i++) {
		sha256_ctx c;
		unsigned char d[32];
		char h[65];
		sha256_init(&c);
		/* feed in uneven pieces to exercise the buffering */
		size_t n = strlen(v[i].in);
		for (size_t off = 0; off < n; off += 3)
			sha256_update(&c, v[i].in + off, n - off < 3 ? n - off : 3);
		sha256_final(&c, d);
		hex(d, h);
		assert_string_equal(h, v[i].want);
	}
	/* one million 'a' */
	sha256_ctx c;
	unsigned char d[32];
	char h[65];
	char block[1000];
	memset(block, 'a', sizeof block);
	sha256_init(&c);
	for (int i = 0; i < 1000; i++)
		sha256_update(&c, block, sizeof block);
	sha256_final(&c, d);
	hex(d, h);
	assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_escape_and_urls(void **state)
{
	(void)state;
	char *s = http_escape("refs/convert/parquet", 0);
	assert_string_equal(s, "refs%2Fconvert%2Fparquet");
	free(s);
	s = http_escape("data/a b+c.jsonl", 1);
	assert_string_equal(s, "data/a%20b%2Bc.jsonl");
	free(s);
	char *repo, *rev, *glob;
	sft_error e = {0};
	assert_int_equal(hf_parse_url("hf://datasets/org/name", &repo, &rev, &glob, &e), 0);
	assert_string_equal(repo, "org/name");
	assert_null(rev);
	assert_null(glob);
	free(repo);
	assert_int_equal(hf_parse_url("hf://datasets/org/name@v1.0/data/*.parquet", &repo, &rev, &glob, &e), 0);
	assert_string_equal(repo, "org/name");
	assert_string_equal(rev, "v1.0");
	assert_string_equal(glob, "data/*.parquet");
	free(repo);
	free(rev);
	free(glob);
	assert_true(hf_parse_url("hf://datasets/name", &repo, &rev, &glob, &e) < 0);
	assert_int_equal(e.code, SFT_EXIT_USAGE);
	assert_true(hf_parse_url("hf://models/a/b", &repo, &rev, &glob, &e) < 0);
}

static void test_format_names(void **state)
{
	(void)state;
	assert_int_equal(src_format_from_name("a/b.jsonl"), SRC_FMT_JSONL);
	assert_int_equal(src_format_from_name("x.JSONL.GZ"), SRC_FMT_JSONL);
	assert_int_equal(src_format_from_name("x.csv.zst"), SRC_FMT_CSV);
	assert_int_equal(src_format_from_name("x.tsv.bz2"), SRC_FMT_TSV);
	assert_int_equal(src_format_from_name("train-00000-of-00001.parquet"), SRC_FMT_PARQUET);
	assert_int_equal(src_format_from_name("d.json.xz"), SRC_FMT_JSON);
	assert_int_equal(src_format_from_name("README.md"), SRC_FMT_UNKNOWN);
	assert_int_equal(src_format_from_name("dir.jsonl/file"), SRC_FMT_UNKNOWN);
	assert_true(src_is_archive_name("a.tar.zst"));
	assert_true(src_is_archive_name("a.tgz"));
	assert_true(src_is_archive_name("a.ZIP"));
	assert_false(src_is_archive_name("a.jsonl.gz"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csv_basic),
		cmocka_unit_test(test_csv_quoted),
		cmocka_unit_test(test_csv_errors_and_lines),
		cmocka_unit_test(test_csv_objects),
		cmocka_unit_test(test_csv_big_field),
		cmocka_unit_test(test_sha256_vectors),
		cmocka_unit_test(test_escape_and_urls),
		cmocka_unit_test(test_format_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
