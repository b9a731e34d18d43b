/* extract.c - filter chains and exact match for sft-eval (see extract.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "extract.h"
#include "jsonl.h"

#include <ctype.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

enum step_kind { ST_REGEX = 1, ST_EXTRACT, ST_TAKE_FIRST, ST_LOWER, ST_UPPER, ST_STRIP };

struct ev_step {
	int kind;
	pcre2_code *re;
	int group;       /* regex: group_select; extract: group (-1 = default) */
	int match_last;  /* extract */
	char *fallback;
};

/* ---- small strings ---- */

/* A string being built: libcommon's growable json_buf, with an out-of-memory flag that
 * sticks so that callers check once, at sb_take. */
typedef struct sbuf {
	json_buf j;
	int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
	if (!b->oom && json_buf_put(&b->j, s, n) < 0) b->oom = 1;
}

/* The NUL-terminated string (the caller frees it), or NULL when out of memory. */
static char *sb_take(sbuf *b)
{
	sb_put(b, "", 1);
	if (b->oom) {
		free(b->j.buf);
		return NULL;
	}
	return b->j.buf;
}

static void sb_free(sbuf *b) { free(b->j.buf); }

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static char *strip_dup(const char *s, size_t n)
{
	while (n && is_ws((unsigned char)*s)) s++, n--;
	while (n && is_ws((unsigned char)s[n - 1])) n--;
	return strndup(s, n);
}

/* ---- regexes ---- */

void *ev_regex_compile(const char *pattern, const char *what, sft_error *err)
{
	int ec;
	PCRE2_SIZE off;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &off, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof msg);
		sft_error_set(err, SFT_EXIT_USAGE, "%s: invalid regex '%s': %s at offset %zu", what, pattern, (char *)msg,
			      (size_t)off);
		return NULL;
	}
	return re;
}

void ev_regex_free(void *re) { pcre2_code_free(re); }

/* All matches of re in s, as re.finditer yields them (empty matches included, the scan
 * advancing one character past an empty match). Calls fn(user, s, ovector, rc) for each;
 * fn returns nonzero to stop. Returns 0, or -1 when out of memory. */
typedef int (*match_fn)(void *user, const char *s, const PCRE2_SIZE *ov, int rc);

static int for_each_match(const pcre2_code *re, const char *s, size_t len, match_fn fn, void *user)
{
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
	if (!md) return -1;
	PCRE2_SIZE start = 0;
	uint32_t opts = 0;
	int ret = 0;
	for (;;) {
		int rc = pcre2_match(re, (PCRE2_SPTR)s, len, start, opts, md, NULL);
		if (rc == PCRE2_ERROR_NOMATCH) {
			if (opts == 0) break;
			/* after an empty match: advance one UTF-8 character and retry normally */
			if (start >= len) break;
			start++;
			while (start < len && ((unsigned char)s[start] & 0xC0) == 0x80) start++;
			opts = 0;
			continue;
		}
		if (rc < 0) {
			/* invalid UTF-8 in the subject, match limits: no further matches */
			ret = rc == PCRE2_ERROR_NOMEMORY ? -1 : 0;
			break;
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		if (fn(user, s, ov, rc)) break;
		if (ov[1] == ov[0]) {
			if (ov[1] >= len) break;
			opts = PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED;
		} else {
			opts = 0;
		}
		start = ov[1];
	}
	pcre2_match_data_free(md);
	return ret;
}

/* The findall value of one match: group 1 with one group, the first non-empty group with
 * several (NULL when all are empty: lm-eval then uses the fallback), the whole match with
 * none. */
static char *findall_value(const pcre2_code *re, const char *s, const PCRE2_SIZE *ov, int rc)
{
	uint32_t ng = 0;
	pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &ng);
	if (ng == 0) return strip_dup(s + ov[0], ov[1] - ov[0]);
	if (ng == 1) {
		if (rc < 2 || ov[2] == PCRE2_UNSET) return strdup("");
		return strip_dup(s + ov[2], ov[3] - ov[2]);
	}
	for (uint32_t g = 1; g <= ng && (int)g < rc; g++) {
		if (ov[2 * g] != PCRE2_UNSET && ov[2 * g + 1] > ov[2 * g])
			return strip_dup(s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
	}
	return NULL;
}

typedef struct collect {
	const pcre2_code *re;
	PCRE2_SIZE *ovs; /* (n, 2 * pairs) */
	int *rcs;
	size_t n, cap, pairs;
	int oom;
} collect;

static int collect_cb(void *user, const char *s, const PCRE2_SIZE *ov, int rc)
{
	(void)s;
	collect *c = user;
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 8;
		PCRE2_SIZE *no = realloc(c->ovs, nc * 2 * c->pairs * sizeof *no);
		if (!no) {
			c->oom = 1;
			return 1;
		}
		c->ovs = no;
		int *nr = realloc(c->rcs, nc * sizeof *nr);
		if (!nr) {
			c->oom = 1;
			return 1;
		}
		c->rcs = nr;
		c->cap = nc;
	}
	memcpy(c->ovs + c->n * 2 * c->pairs, ov, 2 * c->pairs * sizeof *ov);
	c->rcs[c->n++] = rc;
	return 0;
}

/* regex / extract steps: NULL only when out of memory. */
static char *run_regex(const ev_step *st, const char *s, size_t len)
{
	uint32_t ng = 0;
	pcre2_pattern_info(st->re, PCRE2_INFO_CAPTURECOUNT, &ng);
	collect c = {.re = st->re, .pairs = ng + 1};
	int rc = for_each_match(st->re, s, len, collect_cb, &c);
	char *out = NULL;
	if (c.oom || rc == -1) goto done;
	long k;
	if (st->kind == ST_REGEX) {
		k = st->group < 0 ? (long)c.n + st->group : st->group;
	} else {
		k = st->match_last ? (long)c.n - 1 : 0;
	}
	if (c.n == 0 || k < 0 || k >= (long)c.n) {
		out = strdup(st->fallback);
		goto done;
	}
	const PCRE2_SIZE *ov = c.ovs + (size_t)k * 2 * c.pairs;
	int mrc = c.rcs[k];
	if (st->kind == ST_REGEX) {
		out = findall_value(st->re, s, ov, mrc);
		if (!out) out = strdup(st->fallback);
	} else {
		uint32_t g = st->group >= 0 ? (uint32_t)st->group : (ng > 0 ? 1u : 0u);
		if ((int)g >= mrc || ov[2 * g] == PCRE2_UNSET) out = strdup(st->fallback);
		else out = strip_dup(s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
	}
done:
	free(c.ovs);
	free(c.rcs);
	return out;
}

static char *map_case(const char *s, size_t len, int upper)
{
	sbuf b = {0};
	size_t i = 0;
	while (i < len) {
		utf8proc_int32_t cp;
		utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
		if (n <= 0) { /* invalid byte: kept as is */
			sb_put(&b, s + i, 1);
			i++;
			continue;
		}
		cp = upper ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
		utf8proc_uint8_t enc[4];
		utf8proc_ssize_t m = utf8proc_encode_char(cp, enc);
		sb_put(&b, (const char *)enc, (size_t)m);
		i += (size_t)n;
	}
	return sb_take(&b);
}

char *ev_chain_apply(const ev_chain *c, const char *text, size_t len)
{
	char *cur = strndup(text, len);
	if (!cur) return NULL;
	for (int i = 0; i < c->n_steps && cur; i++) {
		const ev_step *st = &c->steps[i];
		char *next = NULL;
		size_t n = strlen(cur);
		switch (st->kind) {
		case ST_REGEX:
		case ST_EXTRACT: next = run_regex(st, cur, n); break;
		case ST_LOWER: next = map_case(cur, n, 0); break;
		case ST_UPPER: next = map_case(cur, n, 1); break;
		case ST_STRIP: next = strip_dup(cur, n); break;
		default: continue; /* take_first */
		}
		free(cur);
		cur = next;
	}
	return cur;
}

/* ---- parsing ---- */

typedef struct parser {
	const char *s;
	size_t i;
	sft_error *err;
} parser;

static void skip_ws(parser *p)
{
	while (is_ws((unsigned char)p->s[p->i])) p->i++;
}

static int is_ident(int c) { return isalnum(c) || c == '_' || c == '-' || c == '.'; }

static int perr(parser *p, const char *what)
{
	return sft_error_set(p->err, SFT_EXIT_USAGE, "--filter '%s': offset %zu: %s", p->s, p->i, what);
}

/* Reads an identifier into buf; returns its length (0: none). */
static size_t read_ident(parser *p, char *buf, size_t cap)
{
	size_t n = 0;
	while (is_ident((unsigned char)p->s[p->i])) {
		if (n + 1 < cap) buf[n] = p->s[p->i];
		n++;
		p->i++;
	}
	buf[n < cap ? n : cap - 1] = '\0';
	return n;
}

/* A VALUE: quoted text (doubled quote = literal), an integer or a word. malloc'd. */
static char *read_value(parser *p, int *quoted)
{
	*quoted = 0;
	char q = p->s[p->i];
	sbuf b = {0};
	if (q == '\'' || q == '"') {
		*quoted = 1;
		p->i++;
		for (;;) {
			char c = p->s[p->i];
			if (!c) {
				sb_free(&b);
				perr(p, "unterminated quoted string");
				return NULL;
			}
			if (c == q) {
				if (p->s[p->i + 1] == q) {
					sb_put(&b, &q, 1);
					p->i += 2;
					continue;
				}
				p->i++;
				break;
			}
			sb_put(&b, &c, 1);
			p->i++;
		}
		char *r = sb_take(&b);
		if (!r) sft_error_set(p->err, SFT_EXIT_RUNTIME, "out of memory");
		return r;
	}
	size_t st = p->i;
	if (p->s[p->i] == '-' || p->s[p->i] == '+') p->i++;
	while (is_ident((unsigned char)p->s[p->i])) p->i++;
	if (p->i == st) {
		perr(p, "expected a value ('text', \"text\", a number or a word)");
		return NULL;
	}
	char *r = strndup(p->s + st, p->i - st);
	if (!r) sft_error_set(p->err, SFT_EXIT_RUNTIME, "out of memory");
	return r;
}

static int parse_int(parser *p, const char *key, const char *v, int *out)
{
	char *end;
	long x = strtol(v, &end, 10);
	if (!*v || *end || x < INT_MIN / 2 || x > INT_MAX / 2) {
		char msg[160];
		snprintf(msg, sizeof msg, "%s must be an integer, not '%.60s'", key, v);
		return perr(p, msg);
	}
	*out = (int)x;
	return 0;
}

static const struct {
	const char *name;
	int kind;
} k_funcs[] = {
	{"regex", ST_REGEX},	   {"extract", ST_EXTRACT}, {"take_first", ST_TAKE_FIRST},
	{"lowercase", ST_LOWER},   {"uppercase", ST_UPPER}, {"strip", ST_STRIP},
	{"remove_whitespace", ST_STRIP},
};

static int add_step(ev_chain *c, const ev_step *st, sft_error *err)
{
	ev_step *ns = realloc(c->steps, (size_t)(c->n_steps + 1) * sizeof *ns);
	if (!ns) return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	c->steps = ns;
	c->steps[c->n_steps++] = *st;
	return 0;
}

static void step_free(ev_step *st)
{
	pcre2_code_free(st->re);
	free(st->fallback);
}

static int parse_step(parser *p, ev_chain *c)
{
	char fname[64];
	skip_ws(p);
	size_t at = p->i;
	if (!read_ident(p, fname, sizeof fname)) return perr(p, "expected a filter function (regex, extract, take_first, lowercase, uppercase, strip, remove_whitespace)");
	int kind = 0;
	for (size_t k = 0; k < sizeof k_funcs / sizeof k_funcs[0]; k++)
		if (!strcmp(fname, k_funcs[k].name)) kind = k_funcs[k].kind;
	if (!kind) {
		p->i = at;
		char msg[160];
		snprintf(msg, sizeof msg, "unknown filter function '%.60s'", fname);
		return perr(p, msg);
	}
	ev_step st = {.kind = kind, .group = kind == ST_EXTRACT ? -1 : 0};
	char *pattern = NULL;
	int rc = 0, npos = 0;
	skip_ws(p);
	if (p->s[p->i] == '(') {
		p->i++;
		skip_ws(p);
		if (p->s[p->i] == ')') p->i++;
		else
			for (;;) {
				skip_ws(p);
				/* KEY=VALUE or VALUE */
				char key[64] = "";
				size_t save = p->i;
				if (read_ident(p, key, sizeof key)) {
					skip_ws(p);
					if (p->s[p->i] == '=') {
						p->i++;
						skip_ws(p);
					} else {
						key[0] = '\0';
						p->i = save;
					}
				}
				int quoted;
				size_t vat = p->i;
				char *v = read_value(p, &quoted);
				if (!v) {
					rc = -1;
					break;
				}
				if (!key[0]) { /* positional: the pattern, then group_select / group */
					if (npos == 0) snprintf(key, sizeof key, "%s", "pattern");
					else if (npos == 1) snprintf(key, sizeof key, "%s", kind == ST_REGEX ? "group_select" : "group");
					else snprintf(key, sizeof key, "%s", "fallback");
					npos++;
				}
				size_t vend = p->i;
				p->i = vat; /* errors about the value point at it */
				if (kind != ST_REGEX && kind != ST_EXTRACT) {
					free(v);
					rc = perr(p, "this filter takes no arguments");
					break;
				}
				if (!strcmp(key, "pattern") || !strcmp(key, "regex_pattern")) {
					free(pattern);
					pattern = v;
					v = NULL;
				} else if (!strcmp(key, "fallback")) {
					free(st.fallback);
					st.fallback = v;
					v = NULL;
				} else if (kind == ST_REGEX && !strcmp(key, "group_select")) {
					rc = parse_int(p, key, v, &st.group);
				} else if (kind == ST_EXTRACT && !strcmp(key, "group")) {
					rc = parse_int(p, key, v, &st.group);
					if (rc == 0 && st.group < 0) rc = perr(p, "group must be >= 0");
				} else if (kind == ST_EXTRACT && !strcmp(key, "match")) {
					if (!strcmp(v, "first")) st.match_last = 0;
					else if (!strcmp(v, "last")) st.match_last = 1;
					else rc = perr(p, "match must be first or last");
				} else {
					char msg[160];
					snprintf(msg, sizeof msg, "unknown argument '%.60s' for %s", key, fname);
					rc = perr(p, msg);
				}
				free(v);
				if (rc < 0) break;
				p->i = vend;
				skip_ws(p);
				if (p->s[p->i] == ',') {
					p->i++;
					continue;
				}
				if (p->s[p->i] == ')') {
					p->i++;
					break;
				}
				rc = perr(p, "expected ',' or ')'");
				break;
			}
	}
	if (rc == 0 && (kind == ST_REGEX || kind == ST_EXTRACT)) {
		if (!pattern) {
			rc = perr(p, "regex/extract need a pattern: regex('...')");
		} else {
			char what[96];
			snprintf(what, sizeof what, "--filter %s", c->name);
			st.re = ev_regex_compile(pattern, what, p->err);
			if (!st.re) rc = -1;
		}
	}
	free(pattern);
	if (rc == 0 && (kind == ST_REGEX || kind == ST_EXTRACT) && !st.fallback && !(st.fallback = strdup(EV_FALLBACK)))
		rc = sft_error_set(p->err, SFT_EXIT_RUNTIME, "out of memory");
	if (rc == 0) rc = add_step(c, &st, p->err);
	if (rc < 0) step_free(&st);
	return rc;
}

static int chain_init(ev_chain *c, const char *name, const char *spec, sft_error *err)
{
	memset(c, 0, sizeof *c);
	c->name = strdup(name);
	c->spec = strdup(spec);
	if (!c->name || !c->spec) {
		ev_chain_free(c);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	return 0;
}

int ev_chain_parse(ev_chain *c, const char *spec, const char *default_name, sft_error *err)
{
	parser p = {.s = spec, .err = err};
	/* NAME: prefix? */
	char name[128];
	skip_ws(&p);
	size_t at = p.i;
	size_t nl = read_ident(&p, name, sizeof name);
	skip_ws(&p);
	if (nl && p.s[p.i] == ':') {
		if (nl >= sizeof name) return perr(&p, "chain name too long");
		p.i++;
	} else {
		p.i = at;
		snprintf(name, sizeof name, "%s", default_name);
	}
	if (chain_init(c, name, spec, err) < 0) return -SFT_EXIT_RUNTIME;
	for (;;) {
		if (parse_step(&p, c) < 0) {
			ev_chain_free(c);
			return -(err ? err->code : SFT_EXIT_USAGE);
		}
		skip_ws(&p);
		if (p.s[p.i] == '|') {
			p.i++;
			continue;
		}
		if (p.s[p.i] == '\0') break;
		perr(&p, "expected '|' or the end of the chain");
		ev_chain_free(c);
		return -SFT_EXIT_USAGE;
	}
	return 0;
}

int ev_chain_extract(ev_chain *c, const char *name, const char *regex, int group, int match_last, sft_error *err)
{
	char spec[64];
	snprintf(spec, sizeof spec, "--extract (group %d, %s match)", group, match_last ? "last" : "first");
	if (chain_init(c, name, regex, err) < 0) return -SFT_EXIT_RUNTIME;
	ev_step st = {.kind = ST_EXTRACT, .group = group, .match_last = match_last};
	st.re = ev_regex_compile(regex, "--extract", err);
	if (!st.re) {
		ev_chain_free(c);
		return -SFT_EXIT_USAGE;
	}
	uint32_t ng = 0;
	pcre2_pattern_info(st.re, PCRE2_INFO_CAPTURECOUNT, &ng);
	if (group > (int)ng) {
		step_free(&st);
		ev_chain_free(c);
		return sft_error_set(err, SFT_EXIT_USAGE, "--group %d: the regex '%s' has %u group%s", group, regex, ng,
				     ng == 1 ? "" : "s");
	}
	st.fallback = strdup(EV_FALLBACK);
	if (!st.fallback || add_step(c, &st, err) < 0) {
		step_free(&st);
		ev_chain_free(c);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	return 0;
}

int ev_chain_identity(ev_chain *c, const char *name, sft_error *err)
{
	if (chain_init(c, name, "strip", err) < 0) return -SFT_EXIT_RUNTIME;
	ev_step st = {.kind = ST_STRIP};
	return add_step(c, &st, err);
}

void ev_chain_free(ev_chain *c)
{
	if (!c) return;
	for (int i = 0; i < c->n_steps; i++) step_free(&c->steps[i]);
	free(c->steps);
	free(c->name);
	free(c->spec);
	memset(c, 0, sizeof *c);
}

/* ---- exact match ---- */

int ev_match_add_ignore(ev_match *m, const char *regex, sft_error *err)
{
	void *re = ev_regex_compile(regex, "--regexes-to-ignore", err);
	if (!re) return -SFT_EXIT_USAGE;
	void **n = realloc(m->ignore, (size_t)(m->n_ignore + 1) * sizeof *n);
	if (!n) {
		pcre2_code_free(re);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	m->ignore = n;
	m->ignore[m->n_ignore++] = re;
	return 0;
}

void ev_match_free(ev_match *m)
{
	if (!m) return;
	for (int i = 0; i < m->n_ignore; i++) pcre2_code_free(m->ignore[i]);
	free(m->ignore);
	m->ignore = NULL;
	m->n_ignore = 0;
}

typedef struct sub_ctx {
	sbuf *b;
	size_t last;
} sub_ctx;

static int sub_cb(void *user, const char *s, const PCRE2_SIZE *ov, int rc)
{
	(void)rc;
	sub_ctx *c = user;
	sb_put(c->b, s + c->last, ov[0] - c->last);
	c->last = ov[1];
	return 0;
}

/* re.sub(re, "", s) */
static char *remove_matches(const pcre2_code *re, const char *s)
{
	sbuf b = {0};
	sub_ctx c = {.b = &b};
	size_t len = strlen(s);
	if (for_each_match(re, s, len, sub_cb, &c) == -1) {
		sb_free(&b);
		return NULL;
	}
	sb_put(&b, s + c.last, len - c.last);
	return sb_take(&b);
}

static const char k_punct[] = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

char *ev_match_normalize(const ev_match *m, const char *s)
{
	char *cur = strdup(s);
	for (int i = 0; i < m->n_ignore && cur; i++) {
		char *n = remove_matches(m->ignore[i], cur);
		free(cur);
		cur = n;
	}
	if (cur && m->ignore_case) {
		char *n = map_case(cur, strlen(cur), 0);
		free(cur);
		cur = n;
	}
	if (cur && (m->ignore_punctuation || m->ignore_numbers)) {
		size_t o = 0;
		for (size_t i = 0; cur[i]; i++) {
			unsigned char ch = (unsigned char)cur[i];
			if (m->ignore_punctuation && ch && strchr(k_punct, ch)) continue;
			if (m->ignore_numbers && ch >= '0' && ch <= '9') continue;
			cur[o++] = cur[i];
		}
		cur[o] = '\0';
	}
	return cur;
}

int ev_exact_match(const ev_match *m, const char *pred, const char *gold)
{
	char *a = ev_match_normalize(m, pred), *b = ev_match_normalize(m, gold);
	int r = (a && b) ? strcmp(a, b) == 0 : -1;
	free(a);
	free(b);
	return r;
}
