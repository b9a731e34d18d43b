/* Unit tests for the Jinja engine (libcommon/jinja.c); expected strings are what jinja2
 * (configured as transformers does) renders for the same template. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "jinja.h"

static char *render(const char *src, const char *ctx_json, sft_error *err)
{
	json_error_t je;
	json_t *ctx = json_loads(ctx_json ? ctx_json : "{}", 0, &je);
	assert_non_null(ctx);
	jinja_template *t = jinja_compile(src, strlen(src), "t.jinja", NULL, err);
	char *out = NULL;
	if (t) {
		size_t n;
		if (jinja_render(t, ctx, &out, &n, NULL, NULL, err) < 0)
			out = NULL;
	}
	jinja_free(t);
	json_decref(ctx);
	return out;
}

static void check(const char *src, const char *ctx, const char *want)
{
	sft_error err = {0};
	char *out = render(src, ctx, &err);
	if (!out)
		fail_msg("%s: %s", src, err.msg);
	if (strcmp(out, want))
		fail_msg("template %s\n got: [%s]\nwant: [%s]", src, out, want);
	free(out);
}

static void check_error(const char *src, const char *ctx, const char *substr)
{
	sft_error err = {0};
	char *out = render(src, ctx, &err);
	if (out)
		fail_msg("%s: expected an error, rendered [%s]", src, out);
	if (!strstr(err.msg, substr))
		fail_msg("%s: error [%s] lacks [%s]", src, err.msg, substr);
}

/* Every case of tests/fixtures/jinja/unit_cases.json: output (and generation spans) equal
 * to jinja2's, or an error where jinja2 raised. */
static void test_oracle_cases(void **state)
{
	(void)state;
	const char *dir = getenv("SFT_TEST_DATA") ? getenv("SFT_TEST_DATA") : "tests/fixtures";
	char path[512];
	snprintf(path, sizeof path, "%s/jinja/unit_cases.json", dir);
	json_error_t je;
	json_t *cases = json_load_file(path, 0, &je);
	assert_non_null(cases);
	setenv("SFT_JINJA_NOW", "2024-07-26T12:00:00", 1);
	size_t i;
	json_t *c;
	int failures = 0;
	json_array_foreach(cases, i, c) {
		const char *name = json_string_value(json_object_get(c, "name"));
		const char *src = json_string_value(json_object_get(c, "template"));
		jinja_options o;
		jinja_options_init(&o);
		o.strict = json_is_true(json_object_get(c, "strict"));
		sft_error err = {0};
		jinja_template *t = jinja_compile(src, strlen(src), name, &o, &err);
		char *out = NULL;
		size_t n = 0, nsp = 0;
		jinja_span *sp = NULL;
		int rc = t ? jinja_render(t, json_object_get(c, "context"), &out, &n, &sp, &nsp, &err) : -1;
		json_t *want_err = json_object_get(c, "error");
		if (want_err) {
			const char *we = json_string_value(want_err);
			if (rc >= 0) {
				fprintf(stderr, "%s: jinja2 raised [%s] but we rendered [%s]\n", name, we, out);
				failures++;
			} else if (!strncmp(we, "TemplateError: ", 15) && !strstr(err.msg, we + 15)) {
				fprintf(stderr, "%s: error [%s] lacks the raised message [%s]\n", name, err.msg, we + 15);
				failures++;
			} else if (strncmp(err.msg, name, strlen(name)) || err.msg[strlen(name)] != ':') {
				fprintf(stderr, "%s: error [%s] does not start with the template name\n", name, err.msg);
				failures++;
			}
		} else {
			const char *want = json_string_value(json_object_get(c, "output"));
			if (rc < 0) {
				fprintf(stderr, "%s: unexpected error [%s]\n", name, err.msg);
				failures++;
			} else if (n != json_string_length(json_object_get(c, "output")) || memcmp(out, want, n)) {
				fprintf(stderr, "%s:\n got [%s]\nwant [%s]\n", name, out, want);
				failures++;
			} else {
				json_t *ws = json_object_get(c, "spans");
				int ok = json_array_size(ws) == nsp;
				for (size_t k = 0; ok && k < nsp; k++)
					ok = (size_t)json_integer_value(json_array_get(json_array_get(ws, k), 0)) == sp[k].start &&
					     (size_t)json_integer_value(json_array_get(json_array_get(ws, k), 1)) == sp[k].end;
				if (!ok) {
					fprintf(stderr, "%s: generation spans differ\n", name);
					failures++;
				}
			}
		}
		free(out);
		free(sp);
		jinja_free(t);
	}
	fprintf(stderr, "%zu oracle cases, %d failures\n", json_array_size(cases), failures);
	json_decref(cases);
	assert_int_equal(failures, 0);
}

static void test_error_locations(void **state)
{
	(void)state;
	/* compile errors: name:line:col */
	check_error("line1\n{% if x %}\n  {{ 1 + }}", NULL, "t.jinja:3:");
	check_error("{% for x in y %}", NULL, "t.jinja:1:");
	check_error("ab\n{% frob %}", NULL, "t.jinja:2:4: encountered unknown tag 'frob'");
	/* runtime errors point at the expression */
	check_error("\n\n  {{ raise_exception('boom') }}", NULL, "t.jinja:3:6: template raised: boom");
	check_error("{{ x.y.z }}", "{}", "t.jinja:1:");
	check_error("{{ 1 < 'a' }}", NULL, "not supported between instances of 'int' and 'str'");
	check_error("{% set l = [] %}{{ l.append(1) }}", NULL, "unsafe");
}

static void test_limits(void **state)
{
	(void)state;
	jinja_options o;
	jinja_options_init(&o);
	o.max_output = 1000;
	sft_error err = {0};
	const char *big = "{% for i in range(100000) %}xxxxxxxxxx{% endfor %}";
	jinja_template *t = jinja_compile(big, strlen(big), "big", &o, &err);
	assert_non_null(t);
	char *out = NULL;
	size_t n;
	json_t *ctx = json_object();
	assert_true(jinja_render(t, ctx, &out, &n, NULL, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "output size limit"));
	jinja_free(t);
	/* unbounded recursion stops at max_depth */
	const char *rec = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
	t = jinja_compile(rec, strlen(rec), "rec", NULL, &err);
	assert_non_null(t);
	assert_true(jinja_render(t, ctx, &out, &n, NULL, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "recursion"));
	jinja_free(t);
	/* step limit */
	jinja_options_init(&o);
	o.max_steps = 10000;
	const char *loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
	t = jinja_compile(loop, strlen(loop), "loop", &o, &err);
	assert_non_null(t);
	assert_true(jinja_render(t, ctx, &out, &n, NULL, NULL, &err) < 0);
	assert_non_null(strstr(err.msg, "step limit"));
	jinja_free(t);
	json_decref(ctx);
	jinja_free(NULL);
}

static void test_has_generation_and_spans(void **state)
{
	(void)state;
	sft_error err = {0};
	const char *src = "a{% generation %}bé{% endgeneration %}c{% generation %}{% endgeneration %}";
	jinja_template *t = jinja_compile(src, strlen(src), "g", NULL, &err);
	assert_non_null(t);
	assert_true(jinja_has_generation(t));
	char *out;
	size_t n, ns;
	jinja_span *sp;
	json_t *ctx = json_object();
	assert_int_equal(jinja_render(t, ctx, &out, &n, &sp, &ns, &err), 0);
	assert_string_equal(out, "abéc");
	assert_int_equal(ns, 2);
	assert_int_equal(sp[0].start, 1);
	assert_int_equal(sp[0].end, 4); /* byte offsets: é is 2 bytes */
	assert_int_equal(sp[1].start, 5);
	assert_int_equal(sp[1].end, 5);
	free(out);
	free(sp);
	jinja_free(t);
	t = jinja_compile("x", 1, "x", NULL, &err);
	assert_false(jinja_has_generation(t));
	jinja_free(t);
	json_decref(ctx);
}

typedef struct thr {
	const jinja_template *t;
	json_t *ctx;
	const char *want;
	int bad;
} thr;

static void *thread_main(void *p)
{
	thr *a = p;
	for (int i = 0; i < 200; i++) {
		char *out = NULL;
		size_t n;
		sft_error err;
		if (jinja_render(a->t, a->ctx, &out, &n, NULL, NULL, &err) < 0 || strcmp(out, a->want))
			a->bad++;
		free(out);
	}
	return NULL;
}

/* one compiled template rendered from several threads at once gives the same bytes */
static void test_threads(void **state)
{
	(void)state;
	const char *src = "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
			  "<{{ m.role }}>{{ m.content | upper }}{% endfor %}{{ ns.n }}";
	sft_error err = {0};
	jinja_template *t = jinja_compile(src, strlen(src), "thr", NULL, &err);
	assert_non_null(t);
	json_error_t je;
	json_t *ctx = json_loads("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}",
				 0, &je);
	thr a[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		a[i] = (thr){t, ctx, "<user>HI<assistant>YO2", 0};
		pthread_create(&th[i], NULL, thread_main, &a[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(a[i].bad, 0);
	}
	json_decref(ctx);
	jinja_free(t);
}

/* Each thread reuses its render state and output buffer between renders: renders of
 * different sizes (small, over the 4 KiB first buffer, over the 1 MiB kept scratch), with
 * failing renders and spans in between, give the same bytes in any order, in threads that
 * start and exit (their cached state is freed then; ASan checks). */
typedef struct reuse_arg {
	jinja_template *small, *big, *huge, *bad, *gen, *lim;
	json_t *ctx;
	int bad_count;
} reuse_arg;

static int expect(const jinja_template *t, const json_t *ctx, size_t want_n, char want_first, char want_last)
{
	char *out = NULL;
	size_t n = 0;
	sft_error err = {0};
	if (jinja_render(t, ctx, &out, &n, NULL, NULL, &err) < 0)
		return 1;
	int bad = n != want_n || strlen(out) != n || (n && (out[0] != want_first || out[n - 1] != want_last));
	free(out);
	return bad;
}

static void *reuse_main(void *p)
{
	reuse_arg *a = p;
	for (int i = 0; i < 6; i++) {
		a->bad_count += expect(a->small, a->ctx, 7, 'H', '!');
		a->bad_count += expect(a->big, a->ctx, 3 * 5000, 'a', 'c');
		a->bad_count += expect(a->small, a->ctx, 7, 'H', '!');
		/* max_output is checked when the output buffer grows, as for a fresh buffer
		 * (4 KiB, then doubling) also after a large render left a larger one */
		a->bad_count += expect(a->lim, a->ctx, 5500, 'x', 'y');
		if (i % 3 == 0)
			a->bad_count += expect(a->huge, a->ctx, 4 * 300000, 'w', 'z');
		a->bad_count += expect(a->lim, a->ctx, 5500, 'x', 'y');
		char *out = NULL;
		size_t n;
		sft_error err = {0};
		a->bad_count += jinja_render(a->bad, a->ctx, &out, &n, NULL, NULL, &err) >= 0;
		a->bad_count += strstr(err.msg, "template raised: no") == NULL;
		jinja_span *sp = NULL;
		size_t ns = 0;
		if (jinja_render(a->gen, a->ctx, &out, &n, &sp, &ns, &err) < 0 || strcmp(out, "a[Hi!]b") || ns != 1 ||
		    sp[0].start != 2 || sp[0].end != 5)
			a->bad_count++;
		else
			free(out);
		free(sp);
		a->bad_count += expect(a->small, a->ctx, 7, 'H', '!');
	}
	return NULL;
}

static void test_state_reuse(void **state)
{
	(void)state;
	sft_error err = {0};
#define C(s) jinja_compile(s, strlen(s), "reuse", NULL, &err)
	reuse_arg a = {C("Hi {{ name }}!"), C("{% for i in range(5000) %}abc{% endfor %}"),
		       C("{% for i in range(1000) %}{% for j in range(300) %}wxyz{% endfor %}{% endfor %}"),
		       C("{{ 'x' * 5000 }}{{ raise_exception('no') }}"), C("a[{% generation %}Hi!{% endgeneration %}]b"), NULL,
		       NULL, 0};
#undef C
	jinja_options o;
	jinja_options_init(&o);
	o.max_output = 5000;
	const char *lsrc = "{{ 'x' * 4500 }}{{ 'y' * 1000 }}";
	a.lim = jinja_compile(lsrc, strlen(lsrc), "lim", &o, &err);
	assert_true(a.small && a.big && a.huge && a.bad && a.gen && a.lim);
	json_error_t je;
	a.ctx = json_loads("{\"name\":\"you\"}", 0, &je);
	reuse_main(&a); /* the main thread */
	assert_int_equal(a.bad_count, 0);
	reuse_arg b[2] = {a, a};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, reuse_main, &b[i]);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(b[i].bad_count, 0);
	}
	json_decref(a.ctx);
	jinja_free(a.small);
	jinja_free(a.big);
	jinja_free(a.huge);
	jinja_free(a.bad);
	jinja_free(a.gen);
	jinja_free(a.lim);
}

static void test_chat_context(void **state)
{
	(void)state;
	json_error_t je;
	json_t *msgs = json_loads("[{\"role\":\"assistant\",\"content\":\"x\",\"reasoning\":\"r\"},{\"role\":\"user\",\"content\":\"u\"}]", 0, &je);
	json_t *extra = json_loads("{\"bos_token\":\"<s>\"}", 0, &je);
	json_t *ctx = jinja_chat_context(msgs, NULL, 1, extra);
	char *s = json_dumps(ctx, JSON_COMPACT);
	assert_string_equal(s, "{\"messages\":[{\"thinking\":\"r\",\"role\":\"assistant\",\"content\":\"x\",\"reasoning\":\"r\","
			       "\"reasoning_content\":\"r\"},{\"role\":\"user\",\"content\":\"u\"}],\"tools\":null,"
			       "\"documents\":null,\"add_generation_prompt\":true,\"bos_token\":\"<s>\"}");
	free(s);
	json_decref(ctx);
	json_decref(msgs);
	json_decref(extra);
}

static void test_basics(void **state)
{
	(void)state;
	check("Hello {{ name }}!", "{\"name\": \"world\"}", "Hello world!");
	check("{{ messages[0].content }}", "{\"messages\": [{\"content\": 1.5}]}", "1.5");
	check("{{ x }}", "{\"x\": 12345678901234}", "12345678901234");
	check_error("{{ raise_exception('boom') }}", NULL, "t.jinja:1:4: template raised: boom");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basics),
		cmocka_unit_test(test_oracle_cases),
		cmocka_unit_test(test_error_locations),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_has_generation_and_spans),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_state_reuse),
		cmocka_unit_test(test_chat_context),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
