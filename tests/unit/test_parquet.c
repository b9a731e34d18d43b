/* Unit tests for the Parquet reader (libcommon/parquet.h).
 *
 * Golden fixtures: tests/fixtures/parquet/NAME.parquet were written by pyarrow
 * (scripts/gen-parquet-fixtures.py) and NAME.jsonl is pyarrow's own reading of each file,
 * serialized compactly with the conversions docs/parquet.md documents. Every record we
 * read must serialize to exactly the same line, through both the json_t path
 * (parquet_rows_next + json_dump_compact) and the direct text path
 * (parquet_rows_next_json). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"
#include "parquet.h"

static const char *fixtures[] = {
	"types_plain_none_v1", "types_dict_snappy_v2", "types_dict_zstd_v1", "types_plain_gzip_v2",
	"decimal_as_int", "int96", "encodings_v1", "encodings_v2_zstd", "many_pages_dict",
	"nested_v1", "nested_v2_plain", "nested_legacy_lists", "seed_text_to_sql",
	"seed_court_decisions", "seed_medqa_struct", "seed_medqa_list", "seed_conversations",
	"legacy_layouts",
};
#define NFIX (sizeof fixtures / sizeof fixtures[0])

static char *fix_path(const char *name, const char *ext)
{
	static char buf[4][512];
	static int k;
	const char *dir = getenv("SFT_TEST_DATA");
	char *b = buf[k++ & 3];
	snprintf(b, 512, "%s/parquet/%s%s", dir ? dir : "tests/fixtures", name, ext);
	return b;
}

/* expected lines of NAME.jsonl (pointers into one buffer, newline-terminated strings) */
typedef struct {
	char *buf;
	char **line;
	size_t n;
} lines;

static lines read_lines(const char *path)
{
	lines L = {0};
	size_t len;
	L.buf = test_slurp(path, &len);
	L.line = calloc(len + 1, sizeof *L.line);
	assert_non_null(L.line);
	char *p = L.buf;
	while (*p) {
		char *nl = strchr(p, '\n');
		assert_non_null(nl);
		*nl = 0;
		L.line[L.n++] = p;
		p = nl + 1;
	}
	return L;
}

static void free_lines(lines *L)
{
	free(L->buf);
	free(L->line);
}

/* Reads every row of pf (all columns or a projection) through both paths and compares
 * each record with want[i]. */
static void check_rows(parquet_file *pf, const char *const *cols, size_t ncols, char **want, size_t nwant,
		       const char *name)
{
	for (int mode = 0; mode < 2; mode++) {
		sft_error err = {0};
		parquet_rows *it = parquet_rows_open(pf, cols, ncols, &err);
		assert_non_null(it);
		char *buf = NULL;
		size_t len = 0, cap = 0, i = 0;
		for (;;) {
			int rc;
			len = 0;
			if (mode == 0) {
				json_t *row = NULL;
				rc = parquet_rows_next(it, &row, &err);
				if (rc == 1) {
					assert_int_equal(json_dump_compact(row, &buf, &len, &cap), 0);
					json_decref(row);
				}
			} else {
				rc = parquet_rows_next_json(it, &buf, &len, &cap, &err);
			}
			if (rc < 0)
				fail_msg("%s (mode %d): %s", name, mode, err.msg);
			if (rc == 0)
				break;
			if (i >= nwant)
				fail_msg("%s: more rows than expected", name);
			if (len != strlen(want[i]) || memcmp(buf, want[i], len) != 0)
				fail_msg("%s (mode %d) row %zu:\n got  %.*s\n want %s", name, mode, i, (int)len, buf, want[i]);
			i++;
		}
		assert_int_equal(i, nwant);
		/* after the end it stays at the end */
		assert_int_equal(parquet_rows_next_json(it, &buf, &len, &cap, &err), 0);
		free(buf);
		parquet_rows_close(it);
	}
}

static void test_fixtures_match_pyarrow(void **state)
{
	(void)state;
	for (size_t f = 0; f < NFIX; f++) {
		sft_error err = {0};
		parquet_file *pf = parquet_open(fix_path(fixtures[f], ".parquet"), &err);
		if (!pf)
			fail_msg("%s: %s", fixtures[f], err.msg);
		lines L = read_lines(fix_path(fixtures[f], ".jsonl"));
		assert_true(L.n > 0);
		assert_int_equal(parquet_num_rows(pf), (int64_t)L.n);
		check_rows(pf, NULL, 0, L.line, L.n, fixtures[f]);
		free_lines(&L);
		parquet_close(pf);
	}
}

static void test_open_mem(void **state)
{
	(void)state;
	size_t len;
	char *data = test_slurp(fix_path("nested_v1", ".parquet"), &len);
	sft_error err = {0};
	parquet_file *pf = parquet_open_mem(data, len, "mem.parquet", &err);
	assert_non_null(pf);
	lines L = read_lines(fix_path("nested_v1", ".jsonl"));
	check_rows(pf, NULL, 0, L.line, L.n, "nested_v1 (mem)");
	free_lines(&L);
	parquet_close(pf);
	free(data);
}

static void test_columns_and_counts(void **state)
{
	(void)state;
	sft_error err = {0};
	parquet_file *pf = parquet_open(fix_path("seed_text_to_sql", ".parquet"), &err);
	assert_non_null(pf);
	const char *names[] = {"id", "domain", "domain_description", "sql_complexity", "sql_task_type",
			       "sql_prompt", "sql_context", "sql", "sql_explanation"};
	assert_int_equal(parquet_num_columns(pf), 9);
	for (size_t i = 0; i < 9; i++)
		assert_string_equal(parquet_column_name(pf, i), names[i]);
	assert_null(parquet_column_name(pf, 9));
	assert_int_equal(parquet_num_rows(pf), 6);
	assert_int_equal(parquet_num_row_groups(pf), 2); /* row_group_size=4 */
	/* rows can be skipped (row = NULL); the count across both row groups is exact */
	parquet_rows *it = parquet_rows_open(pf, NULL, 0, &err);
	int rc, n = 0;
	while ((rc = parquet_rows_next(it, NULL, &err)) == 1)
		n++;
	assert_int_equal(rc, 0);
	assert_int_equal(n, 6);
	parquet_rows_close(it);
	parquet_close(pf);
	parquet_close(NULL);
	parquet_rows_close(NULL);
}

/* Projection: the expected records are the full records reduced to the chosen fields
 * (in schema order, whatever order they were asked in). */
static void test_projection(void **state)
{
	(void)state;
	sft_error err = {0};
	parquet_file *pf = parquet_open(fix_path("nested_v1", ".parquet"), &err);
	assert_non_null(pf);
	lines L = read_lines(fix_path("nested_v1", ".jsonl"));
	char **want = calloc(L.n, sizeof *want);
	for (size_t i = 0; i < L.n; i++) {
		json_t *full = json_loads(L.line[i], 0, NULL);
		assert_non_null(full);
		json_t *o = json_object();
		json_object_set(o, "id", json_object_get(full, "id"));
		json_object_set(o, "attrs", json_object_get(full, "attrs"));
		json_object_set(o, "doc", json_object_get(full, "doc"));
		size_t len = 0, cap = 0;
		assert_int_equal(json_dump_compact(o, &want[i], &len, &cap), 0);
		json_decref(o);
		json_decref(full);
	}
	const char *cols[] = {"doc", "id", "attrs"};
	check_rows(pf, cols, 3, want, L.n, "nested_v1 projected");
	for (size_t i = 0; i < L.n; i++)
		free(want[i]);
	free(want);
	free_lines(&L);

	const char *bad[] = {"id", "nope"};
	assert_null(parquet_rows_open(pf, bad, 2, &err));
	assert_int_equal(err.code, SFT_EXIT_USAGE);
	assert_non_null(strstr(err.msg, "'nope'"));
	parquet_close(pf);
}

/* corrupt_page.parquet: valid footer, one dictionary page of messages...content in row
 * group 1 has garbage in its snappy body (pyarrow also fails on it). */
static void test_corrupt_page_error_names_location(void **state)
{
	(void)state;
	const char *path = fix_path("corrupt_page", ".parquet");
	sft_error err = {0};
	parquet_file *pf = parquet_open(path, &err);
	assert_non_null(pf);
	for (int mode = 0; mode < 2; mode++) {
		parquet_rows *it = parquet_rows_open(pf, NULL, 0, &err);
		assert_non_null(it);
		int rc, rows = 0;
		char *buf = NULL;
		size_t len = 0, cap = 0;
		json_t *row;
		while ((rc = mode ? parquet_rows_next_json(it, &buf, &len, &cap, &err)
				  : parquet_rows_next(it, &row, &err)) == 1) {
			if (!mode)
				json_decref(row);
			rows++;
		}
		assert_true(rc < 0);
		assert_int_equal(rows, 2); /* row group 0 (2 rows) is intact */
		assert_int_equal(err.code, SFT_EXIT_DATA);
		char want[700];
		snprintf(want, sizeof want,
			 "%s: row group 1, column 'messages.list.element.content', page 0: snappy decompression failed", path);
		assert_string_equal(err.msg, want);
		/* the iterator stays failed */
		assert_true(parquet_rows_next_json(it, &buf, &len, &cap, &err) < 0);
		free(buf);
		parquet_rows_close(it);
	}
	/* projection skips the broken chunk entirely: the other column reads fine */
	const char *cols[] = {"source"};
	parquet_rows *it = parquet_rows_open(pf, cols, 1, &err);
	json_t *row;
	int rc, rows = 0;
	while ((rc = parquet_rows_next(it, &row, &err)) == 1) {
		assert_string_equal(json_string_value(json_object_get(row, "source")), "synthetic");
		json_decref(row);
		rows++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(rows, 6);
	parquet_rows_close(it);
	parquet_close(pf);
}

/* brotli / lz4 are not linked: a clear error naming the codec and the location */
static void test_unsupported_codecs(void **state)
{
	(void)state;
	const char *names[] = {"codec_brotli", "codec_lz4"};
	const char *codec[] = {"brotli (4)", "lz4_raw (7)"};
	for (int k = 0; k < 2; k++) {
		const char *path = fix_path(names[k], ".parquet");
		sft_error err = {0};
		parquet_file *pf = parquet_open(path, &err);
		assert_non_null(pf);
		parquet_rows *it = parquet_rows_open(pf, NULL, 0, &err);
		json_t *row = json_null(); /* must be reset to NULL on error */
		assert_true(parquet_rows_next(it, &row, &err) < 0);
		assert_null(row);
		assert_int_equal(err.code, SFT_EXIT_DATA);
		char want[700];
		snprintf(want, sizeof want,
			 "%s: row group 0, column 'x', page 0: compression codec %s is not supported "
			 "(supported: uncompressed, snappy, gzip, zstd)", path, codec[k]);
		assert_string_equal(err.msg, want);
		parquet_rows_close(it);
		parquet_close(pf);
	}
}

/* the value-count guard fails cleanly and names the first chunk over the limit */
static void test_max_chunk_values(void **state)
{
	(void)state;
	const char *path = fix_path("seed_conversations", ".parquet");
	sft_error err = {0};
	parquet_file *pf = parquet_open(path, &err);
	assert_non_null(pf);
	parquet_set_max_chunk_values(pf, 4); /* row group 0: 2 rows, 5 messages */
	parquet_rows *it = parquet_rows_open(pf, NULL, 0, &err);
	json_t *row;
	assert_true(parquet_rows_next(it, &row, &err) < 0);
	assert_int_equal(err.code, SFT_EXIT_DATA);
	char want[700];
	snprintf(want, sizeof want, "%s: row group 0, column 'messages.list.element.role': column chunk claims 5 values (limit 4)",
		 path);
	assert_string_equal(err.msg, want);
	parquet_rows_close(it);
	parquet_close(pf);
}

static void test_open_errors(void **state)
{
	(void)state;
	sft_error err = {0};
	assert_null(parquet_open("tests/fixtures/parquet/does-not-exist.parquet", &err));
	assert_int_equal(err.code, SFT_EXIT_RUNTIME);
	assert_non_null(strstr(err.msg, "does-not-exist.parquet"));

	size_t len;
	char *data = test_slurp(fix_path("seed_medqa_struct", ".parquet"), &len);
	data[len - 1] = 'X';
	assert_null(parquet_open_mem(data, len, "bad.parquet", &err));
	assert_int_equal(err.code, SFT_EXIT_DATA);
	assert_string_equal(err.msg, "bad.parquet: not a parquet file (bad magic)");
	data[len - 1] = '1';
	/* every truncation fails cleanly at open: the footer magic is gone */
	for (size_t n = 0; n < len; n++) {
		sft_error e = {0};
		char *cut = malloc(n ? n : 1);
		memcpy(cut, data, n);
		parquet_file *pf = parquet_open_mem(cut, n, "cut.parquet", &e);
		assert_null(pf);
		assert_int_equal(e.code, SFT_EXIT_DATA);
		assert_true(strncmp(e.msg, "cut.parquet: ", 13) == 0);
		free(cut);
	}
	/* a footer length pointing before the file start */
	data[len - 8] = (char)0xff;
	data[len - 7] = (char)0xff;
	assert_null(parquet_open_mem(data, len, "len.parquet", &err));
	assert_int_equal(err.code, SFT_EXIT_DATA);
	assert_non_null(strstr(err.msg, "footer length"));
	free(data);
}

/* Reads everything; returns 1 if all rows came back, 0 on a clean error. Any error must be
 * classed SFT_EXIT_DATA and name the file. */
static int read_all(const void *buf, size_t len, int only_mode)
{
	sft_error err = {0};
	parquet_file *pf = parquet_open_mem(buf, len, "m.parquet", &err);
	if (!pf) {
		assert_int_equal(err.code, SFT_EXIT_DATA);
		assert_true(strncmp(err.msg, "m.parquet: ", 11) == 0);
		return 0;
	}
	int ok = 1;
	for (int mode = 0; mode < 2; mode++) {
		if (only_mode >= 0 && mode != only_mode)
			continue;
		parquet_rows *it = parquet_rows_open(pf, NULL, 0, &err);
		assert_non_null(it);
		char *b = NULL;
		size_t l = 0, cap = 0;
		int rc;
		json_t *row;
		while ((rc = mode ? parquet_rows_next_json(it, &b, &l, &cap, &err) : parquet_rows_next(it, &row, &err)) == 1)
			if (!mode)
				json_decref(row);
		if (rc < 0) {
			assert_int_equal(err.code, SFT_EXIT_DATA);
			assert_true(strncmp(err.msg, "m.parquet: ", 11) == 0);
			ok = 0;
		}
		free(b);
		parquet_rows_close(it);
	}
	parquet_close(pf);
	return ok;
}

/* Single-byte corruptions of small files either read or fail cleanly (never a crash;
 * under `make sanitize` never a memory error). Every byte of the two smaller files, every
 * 3rd byte of the larger ones (keeps the test to a few seconds under ASan); the two
 * reading paths alternate. */
static void test_byte_corruptions_never_crash(void **state)
{
	(void)state;
	const char *names[] = {"seed_conversations", "nested_v2_plain", "encodings_v1", "types_dict_snappy_v2"};
	for (size_t f = 0; f < 4; f++) {
		size_t len;
		unsigned char *data = (unsigned char *)test_slurp(fix_path(names[f], ".parquet"), &len);
		assert_int_equal(read_all(data, len, -1), 1);
		size_t failed = 0, step = f < 2 ? 1 : 3;
		for (size_t i = 0; i < len; i += step) {
			unsigned char old = data[i];
			data[i] = (unsigned char)(i & 1 ? old ^ 0xff : old + 1);
			failed += !read_all(data, len, (int)((i / step) & 1));
			data[i] = old;
		}
		assert_true(failed > 0); /* the corruptions were noticed at least sometimes */
		free(data);
	}
}

/* inputs the fuzzer once broke (a zero-length value array offset from NULL; a STRING
 * annotation on an INT32 column read as a byte array): must read or fail cleanly */
static void test_fuzz_regressions(void **state)
{
	(void)state;
	const char *names[] = {"regress_null_offset", "regress_annotation_mismatch"};
	for (int k = 0; k < 2; k++) {
		size_t len;
		char *data = test_slurp(fix_path(names[k], ".bin"), &len);
		read_all(data, len, -1);
		free(data);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures_match_pyarrow),
		cmocka_unit_test(test_open_mem),
		cmocka_unit_test(test_columns_and_counts),
		cmocka_unit_test(test_projection),
		cmocka_unit_test(test_corrupt_page_error_names_location),
		cmocka_unit_test(test_unsupported_codecs),
		cmocka_unit_test(test_max_chunk_values),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_byte_corruptions_never_crash),
		cmocka_unit_test(test_fuzz_regressions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
