/* Acceptance suite for the Jinja engine: renders every committed real chat template
 * (tests/fixtures/jinja/templates, from llama.cpp) over every committed conversation and
 * compares byte for byte with the output of transformers' render_jinja_template (jinja2),
 * including {% generation %} spans and the cases where jinja2 raises.
 * Fixtures come from scripts/gen-jinja-fixtures.py. Pairs listed in
 * tests/fixtures/jinja/known_failures.txt ("template conversation|* reason") may fail;
 * a listed pair that now passes is reported as an error so the list stays honest. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"

static const char *data_dir(void)
{
	const char *d = getenv("SFT_TEST_DATA");
	return d ? d : "tests/fixtures";
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	size_t got = fread(b, 1, (size_t)n, f);
	b[got] = 0;
	fclose(f);
	if (len)
		*len = got;
	return b;
}

static json_t *load_json(const char *path)
{
	json_error_t je;
	json_t *v = json_load_file(path, 0, &je);
	if (!v)
		fprintf(stderr, "%s:%d: %s\n", path, je.line, je.text);
	return v;
}

typedef struct known {
	char tpl[128], conv[64];
	int hit;
} known;

static known *load_known(size_t *n)
{
	char path[512];
	snprintf(path, sizeof path, "%s/jinja/known_failures.txt", data_dir());
	*n = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	known *k = calloc(1024, sizeof *k);
	char line[1024];
	while (fgets(line, sizeof line, f) && *n < 1024) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "%127s %63s", k[*n].tpl, k[*n].conv) == 2)
			(*n)++;
	}
	fclose(f);
	return k;
}

static known *find_known(known *k, size_t n, const char *tpl, const char *conv)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(k[i].tpl, tpl) && (!strcmp(k[i].conv, conv) || !strcmp(k[i].conv, "*")))
			return &k[i];
	return NULL;
}

static void test_all_templates(void **state)
{
	(void)state;
	char path[1024];
	snprintf(path, sizeof path, "%s/jinja/manifest.json", data_dir());
	json_t *man = load_json(path);
	assert_non_null(man);
	setenv("SFT_JINJA_NOW", json_string_value(json_object_get(man, "now")), 1);
	json_t *convs = json_object_get(man, "conversations"), *tpls = json_object_get(man, "templates");
	size_t nconv = json_array_size(convs);
	json_t **ctxs = calloc(nconv, sizeof *ctxs);
	for (size_t i = 0; i < nconv; i++) {
		snprintf(path, sizeof path, "%s/jinja/conversations/%s.json", data_dir(),
			 json_string_value(json_array_get(convs, i)));
		json_t *cf = load_json(path);
		assert_non_null(cf);
		ctxs[i] = json_incref(json_object_get(cf, "context"));
		assert_non_null(ctxs[i]);
		/* jinja_chat_context must rebuild the exact context transformers passed */
		json_t *in = json_object_get(cf, "input");
		json_t *tools = json_object_get(in, "tools");
		json_t *mine = jinja_chat_context(json_object_get(in, "messages"), json_is_null(tools) ? NULL : tools,
						  json_is_true(json_object_get(in, "add_generation_prompt")),
						  json_object_get(in, "extra"));
		char *a = json_dumps(mine, JSON_COMPACT), *b = json_dumps(ctxs[i], JSON_COMPACT);
		if (strcmp(a, b))
			fail_msg("jinja_chat_context differs for %s:\n got %s\nwant %s", path, a, b);
		free(a);
		free(b);
		json_decref(mine);
		json_decref(cf);
	}
	size_t nknown;
	known *kn = load_known(&nknown);
	int n_pass = 0, n_fail = 0, n_known = 0, n_err_match = 0;
	char report[1 << 16];
	size_t rl = 0;
	report[0] = 0;
#define REPORT(...) rl += (size_t)snprintf(report + rl, rl < sizeof report ? sizeof report - rl : 0, __VA_ARGS__)
	for (size_t t = 0; t < json_array_size(tpls); t++) {
		json_t *te = json_array_get(tpls, t);
		const char *name = json_string_value(json_object_get(te, "name"));
		snprintf(path, sizeof path, "%s/jinja/templates/%s.jinja", data_dir(), name);
		size_t len = 0;
		char *src = slurp(path, &len);
		assert_non_null(src);
		snprintf(path, sizeof path, "%s/jinja/expected/%s.json", data_dir(), name);
		json_t *exp = load_json(path);
		assert_non_null(exp);
		sft_error err = {0};
		jinja_template *tpl = jinja_compile(src, len, name, NULL, &err);
		char cerr[SFT_ERROR_MSG_MAX];
		snprintf(cerr, sizeof cerr, "%s", tpl ? "" : err.msg);
		for (size_t c = 0; c < nconv; c++) {
			const char *cname = json_string_value(json_array_get(convs, c));
			json_t *e = json_object_get(exp, cname);
			json_t *ctx = json_deep_copy(ctxs[c]);
			json_object_set(ctx, "bos_token", json_object_get(te, "bos_token"));
			json_object_set(ctx, "eos_token", json_object_get(te, "eos_token"));
			char why[600] = "";
			int ok = 0;
			char *out = NULL;
			size_t olen = 0, nsp = 0;
			jinja_span *sp = NULL;
			int rc = -1;
			if (tpl)
				rc = jinja_render(tpl, ctx, &out, &olen, &sp, &nsp, &err);
			const char *want = json_string_value(json_object_get(e, "output"));
			if (json_object_get(e, "error")) {
				const char *jerr = json_string_value(json_object_get(e, "error"));
				if (rc < 0 && !strncmp(jerr, "TemplateError: ", 15) &&
				    (!strstr(err.msg, "template raised: ") ||
				     strncmp(strstr(err.msg, "template raised: ") + 17, jerr + 15, strlen(jerr + 15)))) {
					/* raise_exception: the message must be the template's */
					snprintf(why, sizeof why, "raised [%.200s], jinja2 raised [%.200s]", err.msg, jerr);
				} else if (rc < 0) {
					ok = 1;
					n_err_match++;
				} else
					snprintf(why, sizeof why, "jinja2 raised (%.200s) but we rendered",
						 json_string_value(json_object_get(e, "error")));
			} else if (rc < 0) {
				snprintf(why, sizeof why, "error: %.400s", tpl ? err.msg : cerr);
			} else if (olen != json_string_length(json_object_get(e, "output")) || memcmp(out, want, olen)) {
				size_t i = 0, wl = json_string_length(json_object_get(e, "output"));
				while (i < olen && i < wl && out[i] == want[i])
					i++;
				size_t from = i > 20 ? i - 20 : 0;
				snprintf(why, sizeof why, "output differs at byte %zu: got \"%.40s\" want \"%.40s\"", i,
					 out + from, want + from);
				for (char *p = why; *p; p++)
					if (*p == '\n')
						*p = '|';
			} else {
				json_t *ws = json_object_get(e, "spans");
				ok = json_array_size(ws) == nsp;
				for (size_t i = 0; ok && i < nsp; i++) {
					json_t *pr = json_array_get(ws, i);
					ok = (size_t)json_integer_value(json_array_get(pr, 0)) == sp[i].start &&
					     (size_t)json_integer_value(json_array_get(pr, 1)) == sp[i].end;
				}
				if (!ok)
					snprintf(why, sizeof why, "generation spans differ (%zu spans, want %zu)", nsp,
						 json_array_size(ws));
			}
			free(out);
			free(sp);
			json_decref(ctx);
			known *k = find_known(kn, nknown, name, cname);
			if (ok) {
				n_pass++;
				if (k)
					k->hit |= 2;
			} else if (k) {
				n_known++;
				k->hit |= 1;
			} else {
				n_fail++;
				REPORT("  FAIL %-50s %-18s %s\n", name, cname, why);
			}
		}
		jinja_free(tpl);
		json_decref(exp);
		free(src);
	}
	int stale = 0;
	for (size_t i = 0; i < nknown; i++)
		if (!(kn[i].hit & 1)) {
			stale++;
			REPORT("  NOW PASSES (remove from known_failures.txt): %s %s\n", kn[i].tpl, kn[i].conv);
		}
	fprintf(stderr, "jinja acceptance: %zu templates x %zu conversations: %d identical (%d of them expected errors), "
			"%d known failures, %d unexpected failures, %d stale known failures\n%s",
		json_array_size(tpls), nconv, n_pass, n_err_match, n_known, n_fail, stale, report);
	for (size_t i = 0; i < nconv; i++)
		json_decref(ctxs[i]);
	free(ctxs);
	free(kn);
	json_decref(man);
	assert_int_equal(n_fail, 0);
	assert_int_equal(stale, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_templates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
