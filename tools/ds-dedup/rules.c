/* rules.c - regex rule lists (see rules.h). */
#include "rules.h"
#include "fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rules_add(rule_list *l, const char *pattern, size_t len, int ignore_case, const char *name,
	      const char *where, sft_error *err)
{
	int ec = 0;
	PCRE2_SIZE eo = 0;
	uint32_t opts = PCRE2_UTF | PCRE2_UCP | (ignore_case ? PCRE2_CASELESS : 0);
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &ec, &eo, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof msg);
		return sft_error_set(err, SFT_EXIT_USAGE, "%s: bad pattern: %s at offset %zu", where,
				     (const char *)msg, (size_t)eo);
	}
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* best effort: falls back to the interpreter */
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 16;
		rule *nr = realloc(l->r, nc * sizeof *nr);
		if (!nr) {
			pcre2_code_free(re);
			return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		}
		l->r = nr, l->cap = nc;
	}
	char *nm = strdup(name);
	if (!nm) {
		pcre2_code_free(re);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	l->r[l->n].re = re;
	l->r[l->n].name = nm;
	l->n++;
	return 0;
}

int rules_parse_buffer(rule_list *l, const char *fname, const char *buf, size_t len, int ignore_case,
		       sft_error *err)
{
	size_t i = 0;
	long lineno = 0;
	char where[512], name[512];
	while (i < len) {
		size_t e = i;
		while (e < len && buf[e] != '\n') e++;
		lineno++;
		size_t n = e - i;
		if (n && buf[i + n - 1] == '\r') n--;
		const char *s = buf + i;
		i = e + 1;
		size_t k = 0;
		while (k < n && (s[k] == ' ' || s[k] == '\t')) k++;
		if (k == n || s[0] == '#') continue;
		snprintf(where, sizeof where, "%s:%ld", fname, lineno);
		snprintf(name, sizeof name, "exclude:%s:%ld", fname, lineno);
		int r = rules_add(l, s, n, ignore_case, name, where, err);
		if (r) return r;
	}
	return 0;
}

int rules_load_file(rule_list *l, const char *path, int ignore_case, sft_error *err)
{
	size_t len;
	char *buf = fs_read_file(path, &len, err);
	if (!buf) return -err->code;
	int r = rules_parse_buffer(l, path, buf, len, ignore_case, err);
	free(buf);
	return r;
}

void rules_free(rule_list *l)
{
	if (!l) return;
	for (size_t i = 0; i < l->n; i++) {
		pcre2_code_free(l->r[i].re);
		free(l->r[i].name);
	}
	free(l->r);
	memset(l, 0, sizeof *l);
}

int rule_search(const rule *r, const char *s, size_t len, pcre2_match_data *md)
{
	int rc = pcre2_match(r->re, (PCRE2_SPTR)s, len, 0, PCRE2_NO_UTF_CHECK, md, NULL);
	if (rc >= 0) return 1;
	if (rc == PCRE2_ERROR_NOMATCH) return 0;
	return rc;
}
