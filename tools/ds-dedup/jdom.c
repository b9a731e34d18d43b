/* jdom.c - validating JSON parser into a reusable arena (see jdom.h). */
#include "jdom.h"

#include <stdlib.h>
#include <string.h>

#include "json_scan.h"

#define MAX_DEPTH 1000

typedef struct P {
	jdom *d;
	const unsigned char *s;
	size_t len, i;
	int depth;
} P;

static int fail(P *p, const char *msg)
{
	p->d->err_msg = msg;
	p->d->err_col = p->i + 1;
	return -1;
}

static long new_node(P *p, int type)
{
	jdom *d = p->d;
	if (d->nn == d->ncap) {
		size_t nc = d->ncap ? d->ncap * 2 : 256;
		jnode *n = realloc(d->n, nc * sizeof *n);
		if (!n) return -2;
		d->n = n, d->ncap = nc;
	}
	jnode *x = &d->n[d->nn];
	memset(x, 0, sizeof *x);
	x->type = (uint8_t)type;
	return (long)d->nn++;
}

static int arena_reserve(jdom *d, size_t need)
{
	if (d->alen + need <= d->acap) return 0;
	size_t nc = d->acap ? d->acap : 1024;
	while (nc < d->alen + need) nc *= 2;
	char *a = realloc(d->arena, nc);
	if (!a) return -2;
	d->arena = a, d->acap = nc;
	return 0;
}

/* The lexing (whitespace, strings, numbers, UTF-8) is libcommon's json_scan, the one
 * the jansson reader of jsonl.c uses; jdom adds the arena, the byte columns and the
 * messages. */
static void skip_ws(P *p)
{
	p->i = (size_t)(json_scan_ws(p->s + p->i, p->s + p->len) - p->s);
}

/* Parses a string at p->i (the opening quote). On success sets the offset, length and
 * arena flag; strings without escapes stay in the line. */
static int parse_string(P *p, size_t *off, size_t *olen, uint8_t *in_arena)
{
	const unsigned char *s = p->s + ++p->i, *end = p->s + p->len, *q;
	int r = json_scan_string(s, end, &q);
	if (r == JSCAN_OK) {
		*off = p->i, *olen = (size_t)(q - s), *in_arena = 0;
		p->i = (size_t)(q + 1 - p->s);
		return 0;
	}
	if (r == JSCAN_ESCAPED) {
		/* decoded into the arena: the result is never longer than the source */
		jdom *d = p->d;
		int nul;
		if (arena_reserve(d, (size_t)(end - s) + 4) < 0) return -2;
		r = json_scan_unescape(s, q, end, 0, d->arena + d->alen, olen, &nul, &q);
		if (r == JSCAN_OK) {
			*off = d->alen, *in_arena = 1;
			d->alen += *olen;
			p->i = (size_t)(q - p->s);
			return 0;
		}
	}
	p->i = (size_t)(q - p->s);
	return fail(p, json_scan_strerror(r));
}

static int parse_number(P *p)
{
	const unsigned char *q;
	int is_real;
	int r = json_scan_number(p->s + p->i, p->s + p->len, &q, &is_real);
	p->i = (size_t)(q - p->s);
	return r ? fail(p, json_scan_strerror(r)) : 0;
}

static long parse_value(P *p);

static long parse_container(P *p, int obj)
{
	long me = new_node(p, obj ? J_OBJ : J_ARR);
	if (me < 0) return me;
	if (++p->depth > MAX_DEPTH) return fail(p, "nesting too deep");
	p->i++;
	skip_ws(p);
	uint32_t prev = 0;
	if (p->i < p->len && p->s[p->i] == (obj ? '}' : ']')) {
		p->i++;
		p->depth--;
		return me;
	}
	for (;;) {
		size_t koff = 0, klen = 0;
		uint8_t kin = 0;
		if (obj) {
			skip_ws(p);
			if (p->i >= p->len || p->s[p->i] != '"') return fail(p, "expected a string key");
			int r = parse_string(p, &koff, &klen, &kin);
			if (r) return r;
			skip_ws(p);
			if (p->i >= p->len || p->s[p->i] != ':') return fail(p, "expected ':'");
			p->i++;
		}
		skip_ws(p);
		long child = parse_value(p);
		if (child < 0) return child;
		jnode *c = &p->d->n[child];
		if (obj) c->key = koff, c->klen = klen, c->key_in_arena = kin;
		if (prev) p->d->n[prev - 1].next = (uint32_t)child + 1;
		else p->d->n[me].first = (uint32_t)child + 1;
		prev = (uint32_t)child + 1;
		skip_ws(p);
		if (p->i >= p->len) return fail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
		unsigned char c2 = p->s[p->i];
		if (c2 == ',') {
			p->i++;
			continue;
		}
		if (c2 == (obj ? '}' : ']')) {
			p->i++;
			break;
		}
		return fail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
	}
	p->depth--;
	return me;
}

static int lit(P *p, const char *w)
{
	size_t n = strlen(w);
	if (p->len - p->i < n || memcmp(p->s + p->i, w, n) != 0) return fail(p, "invalid literal");
	p->i += n;
	return 0;
}

static long parse_value(P *p)
{
	if (p->i >= p->len) return fail(p, "unexpected end of input");
	unsigned char c = p->s[p->i];
	long me;
	int r;
	switch (c) {
	case '{': return parse_container(p, 1);
	case '[': return parse_container(p, 0);
	case '"':
		me = new_node(p, J_STR);
		if (me < 0) return me;
		{
			size_t off, len;
			uint8_t in;
			r = parse_string(p, &off, &len, &in);
			if (r) return r;
			jnode *x = &p->d->n[me];
			x->str = off, x->len = len, x->str_in_arena = in;
		}
		return me;
	case 't': me = new_node(p, J_TRUE); r = me < 0 ? (int)me : lit(p, "true"); return r ? r : me;
	case 'f': me = new_node(p, J_FALSE); r = me < 0 ? (int)me : lit(p, "false"); return r ? r : me;
	case 'n': me = new_node(p, J_NULL); r = me < 0 ? (int)me : lit(p, "null"); return r ? r : me;
	default:
		if (c == '-' || (c >= '0' && c <= '9')) {
			me = new_node(p, J_NUM);
			if (me < 0) return me;
			r = parse_number(p);
			return r ? r : me;
		}
		return fail(p, "unexpected character");
	}
}

int jdom_parse(jdom *dom, const char *line, size_t len, int top_object)
{
	dom->nn = 0;
	dom->alen = 0;
	dom->line = line;
	dom->err_msg = NULL;
	dom->err_col = 0;
	P p = {dom, (const unsigned char *)line, len, 0, 0};
	skip_ws(&p);
	if (top_object && (p.i >= len || line[p.i] != '{')) {
		if (p.i >= len) return fail(&p, "empty record");
		return fail(&p, "expected a JSON object");
	}
	long r = parse_value(&p);
	if (r < 0) return r == -2 ? -2 : -1;
	skip_ws(&p);
	if (p.i != len) return fail(&p, "end of file expected");
	return 0;
}

void jdom_free(jdom *dom)
{
	if (!dom) return;
	free(dom->n);
	free(dom->arena);
	memset(dom, 0, sizeof *dom);
}

/* ---------------- paths ---------------- */

void jpath_free(jpath *p)
{
	if (!p) return;
	for (int i = 0; i < p->n; i++) free(p->s[i].key);
	free(p->s);
	free(p->text);
	free(p);
}

static int push_step(jpath *p, jpath_step st)
{
	jpath_step *n = realloc(p->s, sizeof *n * (size_t)(p->n + 1));
	if (!n) return -1;
	p->s = n;
	p->s[p->n++] = st;
	return 0;
}

jpath *jpath_parse(const char *text, const char **why)
{
	*why = NULL;
	jpath *p = calloc(1, sizeof *p);
	if (!p || !(p->text = strdup(text))) {
		free(p);
		*why = "out of memory";
		return NULL;
	}
	const char *s = text;
	size_t n = strlen(s), i = 0;
	if (n == 0) {
		*why = "empty path";
		goto bad;
	}
	int need_key = s[0] != '[';
	while (i < n) {
		if (s[i] == '[') {
			i++;
			jpath_step st = {0};
			if (i < n && s[i] == '*') {
				st.kind = 2;
				i++;
			} else {
				if (i >= n || s[i] < '0' || s[i] > '9') {
					*why = "expected an index or '*' after '['";
					goto bad;
				}
				long v = 0;
				while (i < n && s[i] >= '0' && s[i] <= '9') {
					v = v * 10 + (s[i] - '0');
					if (v > 1000000000L) {
						*why = "index too large";
						goto bad;
					}
					i++;
				}
				st.kind = 1, st.index = v;
			}
			if (i >= n || s[i] != ']') {
				*why = "expected ']'";
				goto bad;
			}
			i++;
			if (push_step(p, st) < 0) goto oom;
		} else {
			if (!need_key) {
				*why = "expected '.' or '['";
				goto bad;
			}
			/* key up to '.' or '[' (backslash escapes) */
			char *k = malloc(n - i + 1);
			if (!k) goto oom;
			size_t kl = 0;
			while (i < n && s[i] != '.' && s[i] != '[') {
				if (s[i] == '\\' && i + 1 < n) i++;
				k[kl++] = s[i++];
			}
			k[kl] = 0;
			if (kl == 0) {
				free(k);
				*why = "empty key";
				goto bad;
			}
			jpath_step st = {0, k, kl, 0};
			if (push_step(p, st) < 0) {
				free(k);
				goto oom;
			}
		}
		/* after a step: '.' and a key, '[' or the end (a key always stops at one of them) */
		need_key = 0;
		if (i < n && s[i] == '.') {
			i++;
			need_key = 1;
			if (i >= n) {
				*why = "path ends with '.'";
				goto bad;
			}
		} else if (i < n && s[i] != '[') {
			*why = "expected '.' or '[' after ']'";
			goto bad;
		}
	}
	return p;
oom:
	*why = "out of memory";
bad:
	jpath_free(p);
	return NULL;
}

/* Walks matches of steps[k..] under node x (index). cb for each match. */
typedef struct walk {
	const jdom *d;
	const jpath *path;
	uint32_t *out;
	size_t max, count;
} walk;

static void walk_path(walk *w, uint32_t x, int k)
{
	const jdom *d = w->d;
	if (k == w->path->n) {
		if (w->count < w->max) w->out[w->count] = x;
		w->count++;
		return;
	}
	const jpath_step *st = &w->path->s[k];
	const jnode *nx = &d->n[x];
	if (st->kind == 0) {
		if (nx->type != J_OBJ) return;
		/* duplicate keys: the last one wins, as in jansson and Python */
		uint32_t found = 0;
		for (uint32_t c = nx->first; c; c = d->n[c - 1].next) {
			const jnode *cn = &d->n[c - 1];
			if (cn->klen == st->klen && memcmp(jdom_key(d, cn), st->key, st->klen) == 0) found = c;
		}
		if (found) walk_path(w, found - 1, k + 1);
		return;
	}
	if (nx->type != J_ARR) return;
	long idx = 0;
	for (uint32_t c = nx->first; c; c = d->n[c - 1].next, idx++) {
		if (st->kind == 2 || idx == st->index) walk_path(w, c - 1, k + 1);
		if (st->kind == 1 && idx == st->index) break;
	}
}

size_t jdom_select(const jdom *d, const jpath *path, uint32_t *out, size_t max)
{
	if (d->nn == 0) return 0;
	walk w = {d, path, out, max, 0};
	walk_path(&w, 0, 0);
	return w.count;
}

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = *cap ? *cap : 256;
		while (nc < *len + n + 1) nc *= 2;
		char *b = realloc(*buf, nc);
		if (!b) return -1;
		*buf = b, *cap = nc;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = 0;
	return 0;
}

static int node_text(const jdom *d, uint32_t x, char **buf, size_t *len, size_t *cap, int *first)
{
	const jnode *n = &d->n[x];
	if (n->type == J_STR) {
		if (!*first && append(buf, len, cap, "\n", 1) < 0) return -1;
		*first = 0;
		return append(buf, len, cap, jdom_str(d, n), n->len);
	}
	if (n->type == J_OBJ || n->type == J_ARR)
		for (uint32_t c = n->first; c; c = d->n[c - 1].next)
			if (node_text(d, c - 1, buf, len, cap, first) < 0) return -1;
	return 0;
}

long jdom_text(const jdom *d, const jpath *path, char **buf, size_t *len, size_t *cap, int *first)
{
	if (*cap == 0 && append(buf, len, cap, "", 0) < 0) return -1;
	if (d->nn == 0) return 0;
	if (!path) return node_text(d, 0, buf, len, cap, first) < 0 ? -1 : 1;
	uint32_t sel[64];
	size_t cnt = jdom_select(d, path, sel, 64);
	uint32_t *all = sel;
	if (cnt > 64) {
		all = malloc(sizeof(uint32_t) * cnt);
		if (!all) return -1;
		jdom_select(d, path, all, cnt);
	}
	for (size_t i = 0; i < cnt; i++)
		if (node_text(d, all[i], buf, len, cap, first) < 0) {
			if (all != sel) free(all);
			return -1;
		}
	if (all != sel) free(all);
	return (long)cnt;
}
