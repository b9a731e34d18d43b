/* Unit tests for the libcommon foundation: errors, YAML config, JSONL I/O, atomic files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic.h"
#include "cli.h"
#include "config.h"
#include "jsonl.h"
#include "progress.h"

static void test_error_set_and_prefix(void **state)
{
	(void)state;
	sft_error e = {0};
	assert_int_equal(sft_error_set(&e, SFT_EXIT_DATA, "%s:%d: bad", "x.jsonl", 3), -SFT_EXIT_DATA);
	assert_string_equal(e.msg, "x.jsonl:3: bad");
	sft_error_prefix(&e, "outer");
	assert_string_equal(e.msg, "outer: x.jsonl:3: bad");
	assert_int_equal(e.code, SFT_EXIT_DATA);
}

static void test_double_format_matches_python_repr(void **state)
{
	(void)state;
	/* expected strings are Python's repr() of the same doubles */
	struct { double d; const char *s; } cases[] = {
		{0.1, "0.1"}, {1.0, "1.0"}, {-2.5, "-2.5"}, {1e16, "1e+16"}, {1e15, "1000000000000000.0"},
		{123456789012345.0, "123456789012345.0"}, {1.5e-5, "1.5e-05"}, {0.0001, "0.0001"},
		{1e-5, "1e-05"}, {0.3333333333333333, "0.3333333333333333"}, {1e300, "1e+300"},
		{0.0, "0.0"}, {2.0 / 3.0, "0.6666666666666666"}, {5e-324, "5e-324"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char buf[64];
		json_format_double(cases[i].d, buf, sizeof buf);
		assert_string_equal(buf, cases[i].s);
	}
}

static void test_json_compact_roundtrip(void **state)
{
	(void)state;
	const char *in = "{\"b\":[1,2.5,\"x\\\"y\\n\",null,true],\"a\":{\"é\":\"日本\"},\"c\":\"\\u0001/\"}";
	sft_error e = {0};
	json_t *v = json_parse_located(in, strlen(in), "t", 1, 0, &e);
	assert_non_null(v);
	char *buf = NULL;
	size_t len = 0, cap = 0;
	assert_int_equal(json_dump_compact(v, &buf, &len, &cap), 0);
	/* key order preserved, UTF-8 kept, control char escaped, "/" unescaped */
	assert_string_equal(buf, "{\"b\":[1,2.5,\"x\\\"y\\n\",null,true],\"a\":{\"é\":\"日本\"},\"c\":\"\\u0001/\"}");
	free(buf);
	json_decref(v);
	/* DEL is not escaped by Python's json.dumps(ensure_ascii=False): keep it raw */
	v = json_string("a\x7f");
	buf = NULL;
	len = cap = 0;
	assert_int_equal(json_dump_compact(v, &buf, &len, &cap), 0);
	assert_string_equal(buf, "\"a\x7f\"");
	free(buf);
	json_decref(v);
}

static void test_json_error_location(void **state)
{
	(void)state;
	sft_error e = {0};
	json_t *v = json_parse_located("{\"a\": tru}", 10, "in.jsonl", 7, 0, &e);
	assert_null(v);
	assert_int_equal(e.code, SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "in.jsonl:7:"));
	v = json_parse_located("[1]", 3, "in.jsonl", 2, 0, &e);
	assert_null(v);
	assert_non_null(strstr(e.msg, "expected a JSON object"));
}

static void test_config_flatten(void **state)
{
	(void)state;
	char path[] = "/tmp/sftcfgXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *yaml = "ModelConfig:\n  model_name_or_path: m\nSFTConfig:\n  seq_len: 2048\n"
			   "  targets: [q_proj, v_proj]\nflag: true\nnothing: ~\n";
	assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	sft_error e = {0};
	config *c = config_load(path, &e);
	assert_non_null(c);
	assert_int_equal(c->n, 6);
	assert_string_equal(config_get(c, "seq-len")->value, "2048");
	assert_int_equal(config_get(c, "seq_len")->line, 4);
	assert_string_equal(config_get(c, "model_name_or_path")->section, "ModelConfig");
	assert_string_equal(config_get(c, "targets")->value, "v_proj");
	assert_string_equal(config_get(c, "nothing")->value, "");
	config_free(c);
	config_free(NULL);
	unlink(path);

	/* invalid YAML names file:line:col */
	strcpy(path, "/tmp/sftcfgXXXXXX");
	fd = mkstemp(path);
	assert_int_equal(write(fd, "a: [1, 2\n", 9), 9);
	close(fd);
	c = config_load(path, &e);
	assert_null(c);
	assert_int_equal(e.code, SFT_EXIT_USAGE);
	assert_non_null(strstr(e.msg, path));
	unlink(path);
}

static void test_atomic_commit_and_abort(void **state)
{
	(void)state;
	char dir[] = "/tmp/sftatomXXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof path, "%s/out.txt", dir);
	sft_error e = {0};
	atomic_file *af = atomic_open(path, &e);
	assert_non_null(af);
	fputs("hello", af->fp);
	assert_int_equal(access(path, F_OK), -1); /* not visible before commit */
	assert_int_equal(atomic_commit(af, &e), 0);
	assert_int_equal(access(path, F_OK), 0);
	af = atomic_open(path, &e);
	fputs("partial", af->fp);
	atomic_abort(af);
	FILE *f = fopen(path, "r");
	char buf[16] = {0};
	assert_non_null(fgets(buf, sizeof buf, f));
	fclose(f);
	assert_string_equal(buf, "hello"); /* abort left the old file intact */
	unlink(path);
	assert_int_equal(rmdir(dir), 0); /* and no temporary litter */
}

static void test_atomic_non_regular_target(void **state)
{
	(void)state;
	/* must write through, never rename over the device node */
	sft_error e = {0};
	atomic_file *af = atomic_open("/dev/null", &e);
	assert_non_null(af);
	assert_null(af->tmp_path);
	fputs("x", af->fp);
	assert_int_equal(atomic_commit(af, &e), 0);
	struct stat st;
	assert_int_equal(stat("/dev/null", &st), 0);
	assert_true(S_ISCHR(st.st_mode));
}

static void test_cli_number_parsers(void **state)
{
	(void)state;
	sft_error e = {0};
	long long v;
	double d;
	assert_int_equal(cli_parse_long("n", "42", 0, 100, &v, &e), 0);
	assert_int_equal(v, 42);
	assert_true(cli_parse_long("n", "4x", 0, 100, &v, &e) < 0);
	assert_non_null(strstr(e.msg, "--n"));
	assert_true(cli_parse_long("n", "101", 0, 100, &v, &e) < 0);
	assert_int_equal(cli_parse_double("lr", "2e-4", 0, 1, &d, &e), 0);
	assert_true(d == 2e-4);
	assert_true(cli_parse_double("lr", "nan", 0, 1, &d, &e) < 0);
}

struct seen {
	char log[256];
};

static int record_opt(void *ctx, int id, const char *arg, const char *source, sft_error *err)
{
	(void)source;
	(void)err;
	struct seen *s = ctx;
	size_t n = strlen(s->log);
	snprintf(s->log + n, sizeof s->log - n, "%c=%s;", id, arg ? arg : "");
	return 0;
}

static void test_cli_parse_short_and_long(void **state)
{
	(void)state;
	static const cli_option opts[] = {
		{"output", 'o', CLI_REQ_ARG, "FILE", "output", 'o'},
		{"seq-len", 0, CLI_REQ_ARG, "N", "length", 's'},
		{"flag", 'f', CLI_NO_ARG, NULL, "a flag", 'f'},
		{NULL, 0, 0, NULL, NULL, 0},
	};
	cli_spec spec = {"t", "[options]", NULL, opts, "", NULL};
	char *argv[] = {"t", "-o", "x.bin", "in1", "--seq-len=8", "-f", "in2", NULL};
	struct seen s = {{0}};
	char **pos = NULL;
	int n = cli_parse(&spec, 7, argv, record_opt, &s, &pos);
	/* the first short option of a table must work too (regression: '-o' was lost) */
	assert_string_equal(s.log, "o=x.bin;s=8;f=;");
	assert_int_equal(n, 2);
	assert_string_equal(pos[0], "in1");
	assert_string_equal(pos[1], "in2");
	free(pos);
}

/* progress lines: bytes/s by default; progress_start_rate draws a second unit's rate and
 * redraws on every add (slow items), including the final one. Drawn to a file here by
 * forcing `enabled` (the line is normally TTY-only). */
static void test_progress_units(void **state)
{
	(void)state;
	char path[] = "/tmp/sftkit-progXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	int saved = dup(2);
	assert_true(dup2(fd, 2) >= 0);
	progress p;
	progress_start_rate(&p, "items", 3, "tokens");
	p.enabled = 1;
	progress_add(&p, 1, 40);
	progress_add(&p, 1, 40);
	progress_add(&p, 1, 20); /* the last one draws even within 0.1 s */
	progress_finish(&p);
	progress q;
	progress_start(&q, "records", 0, 0);
	q.enabled = 1;
	q.last_draw = -1e9;
	progress_add(&q, 256, 4096);
	progress_finish(&q);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char buf[4096] = {0};
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	unlink(path);
	close(fd);
	buf[n] = 0;
	assert_non_null(strstr(buf, "3 items"));
	assert_non_null(strstr(buf, "100%"));
	assert_non_null(strstr(buf, "tokens/s"));
	assert_non_null(strstr(buf, "256 records"));
	assert_non_null(strstr(buf, "B/s"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_set_and_prefix),
		cmocka_unit_test(test_double_format_matches_python_repr),
		cmocka_unit_test(test_json_compact_roundtrip),
		cmocka_unit_test(test_json_error_location),
		cmocka_unit_test(test_config_flatten),
		cmocka_unit_test(test_atomic_commit_and_abort),
		cmocka_unit_test(test_atomic_non_regular_target),
		cmocka_unit_test(test_cli_number_parsers),
		cmocka_unit_test(test_cli_parse_short_and_long),
		cmocka_unit_test(test_progress_units),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
