/* jinja.c - Jinja2 template engine for Hugging Face chat templates (see jinja.h).
 *
 * Structure: source normalisation and lexing (jinja2's lexer rules with trim_blocks and
 * lstrip_blocks), a recursive-descent parser producing an immutable AST in the template's
 * arena, and a tree-walking evaluator.  Every render owns its own arena, output buffers
 * and scope frames, so one compiled template can render from many threads at once.
 * Runtime errors unwind with longjmp to jinja_render: everything a render allocates lives
 * in its arena or in buffers the render state tracks, so nothing leaks on that path.
 * Values follow Python semantics (str() printing, repr floats, int/float arithmetic). */
#include "jinja.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "jsonl.h"
#include "utf8.h"

/* ------------------------------------------------------------------ arena */

typedef struct ablock {
	struct ablock *next;
	size_t used, cap;
	max_align_t data[];
} ablock;

typedef struct arena {
	ablock *head;
	size_t total, limit;
	ablock *fixed; /* a first block owned by someone else (not freed) */
} arena;

static void *arena_try_alloc(arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (!a->head || a->head->used + n > a->head->cap) {
		size_t cap = a->head ? a->head->cap * 2 : 16384;
		if (cap > (1u << 24))
			cap = 1u << 24;
		if (cap < n)
			cap = n;
		if (a->limit && a->total + cap > a->limit)
			return NULL;
		ablock *b = malloc(sizeof *b + cap);
		if (!b)
			return NULL;
		b->next = a->head;
		b->used = 0;
		b->cap = cap;
		a->head = b;
		a->total += cap;
	}
	void *p = (char *)a->head->data + a->head->used;
	a->head->used += n;
	/* allocations start cleared (values rely on zeroed flags); small ones inline */
	if (n <= 128) {
		uint64_t *q = p;
		for (size_t i = 0; i < n / 8; i++)
			q[i] = 0;
	} else
		memset(p, 0, n);
	return p;
}

static void arena_free_all(arena *a)
{
	ablock *b = a->head;
	while (b) {
		ablock *n = b->next;
		if (b != a->fixed)
			free(b);
		b = n;
	}
	a->head = NULL;
	a->total = 0;
}

/* ------------------------------------------------------------------ values */

enum {
	T_UNDEF, T_NONE, T_BOOL, T_INT, T_FLOAT, T_STR, T_LIST, T_TUPLE, T_DICT, T_NS, T_FUNC, T_LOOP,
	T_GEN, /* a one-shot Python iterator (map/select/items...): iterable, no len, not JSON */
};

struct jlist;
struct jdict;
struct jfunc;
struct jloop;

typedef struct jv {
	uint8_t t;
	uint8_t unsafe; /* T_UNDEF: produced by a forbidden attribute (SecurityError on use) */
	uint8_t mk;     /* T_STR: markupsafe.Markup (safe/escape): `+` escapes plain operands */
	size_t n;       /* T_STR: byte length; T_UNDEF: name length */
	union {
		int64_t i;
		double f;
		const char *s; /* T_STR: bytes; T_UNDEF: name (may be NULL) */
		struct jlist *l;
		struct jdict *d;
		struct jfunc *fn;
		struct jloop *loop;
	};
} jv;

typedef struct jlist {
	size_t n;
	jv *v;
} jlist;

typedef struct jdict {
	size_t n, cap;
	jv *k, *v;
} jdict;

static const jv V_NONE = {.t = T_NONE};

/* ------------------------------------------------------------------ AST */

enum {
	/* statements */
	N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK,
	N_BREAK, N_CONTINUE, N_GEN, N_WITH,
	/* expressions */
	N_CONST, N_NAME, N_GETATTR, N_GETITEM, N_SLICE, N_CALL, N_KWARG, N_FILTER, N_TEST, N_BIN,
	N_NEG, N_POS, N_NOT, N_AND, N_OR, N_CMP, N_CMPOP, N_COND, N_LIST, N_TUPLE, N_DICT, N_PAIR,
	N_HOLE,
};

enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
       OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

typedef struct node node;
struct node {
	uint8_t kind, op, flag;
	int line, col;
	const char *name; /* names, text, filter/test/attribute names */
	size_t nlen;
	node *a, *b, *c, *d;
	node **list; /* body / args / items */
	size_t n;
	node **list2; /* else body / params */
	size_t n2;
	jv cv; /* N_CONST */
};

struct jinja_template {
	arena ar;
	node **body;
	size_t n;
	char *name;
	jinja_options opts;
	int has_generation;
};

/* ------------------------------------------------------------------ utf-8 helpers */

static size_t utf8_dec(const char *s, size_t n, size_t i, uint32_t *cp)
{
	const unsigned char *u = (const unsigned char *)s;
	unsigned c = u[i];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	int len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
	if (len == 1 || i + (size_t)len > n) {
		*cp = c;
		return 1;
	}
	uint32_t v = c & (0x3f >> (len - 1));
	for (int k = 1; k < len; k++)
		v = (v << 6) | (u[i + k] & 0x3f);
	*cp = v;
	return (size_t)len;
}

/* Python str.isspace() */
static int py_isspace(uint32_t c)
{
	if (c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f))
		return 1;
	if (c < 0x85)
		return 0;
	return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
	       c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* length in bytes of the Python-whitespace run ending at `end` (scanning backwards) */
static size_t ws_suffix(const char *s, size_t end)
{
	size_t i = end;
	while (i > 0) {
		size_t j = i - 1;
		while (j > 0 && ((unsigned char)s[j] & 0xc0) == 0x80 && i - j < 4)
			j--;
		uint32_t cp;
		utf8_dec(s, end, j, &cp);
		if (!py_isspace(cp))
			break;
		i = j;
	}
	return end - i;
}

static size_t ws_prefix(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint32_t cp;
		size_t k = utf8_dec(s, n, i, &cp);
		if (!py_isspace(cp))
			break;
		i += k;
	}
	return i;
}

static int is_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 0;
	return 1;
}

static size_t utf8_len(const char *s, size_t n)
{
	size_t c = n && ((unsigned char)s[0] & 0xc0) == 0x80; /* stray leading continuation byte */
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			c++;
	return c;
}

/* next character boundary after i: a character is a non-continuation byte and the
 * continuation bytes after it (the same rule utf8_len counts by, also for invalid UTF-8) */
static size_t utf8_next(const char *s, size_t n, size_t i)
{
	i++;
	while (i < n && ((unsigned char)s[i] & 0xc0) == 0x80)
		i++;
	return i;
}

/* byte offset of code point index `ci` (clamped to n) */
static size_t utf8_off(const char *s, size_t n, size_t ci)
{
	size_t i = 0;
	while (i < n && ci > 0) {
		i++;
		while (i < n && ((unsigned char)s[i] & 0xc0) == 0x80)
			i++;
		ci--;
	}
	return i;
}

/* ------------------------------------------------------------------ lexer */

enum { TK_DATA, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END, TK_NAME, TK_STRING,
       TK_INT, TK_FLOAT, TK_OP, TK_EOF };

typedef struct token {
	int type;
	int line, col;
	const char *s; /* raw text (names, ops), or processed string/data */
	size_t n;
	int64_t ival;
	double fval;
} token;

typedef struct compiler {
	arena *ar;
	const char *src;
	size_t len;
	const char *name;
	const jinja_options *opts;
	token *toks;
	size_t ntok, cap;
	size_t pos; /* parser position */
	sft_error *err;
	int failed;
	int depth;
	jinja_template *tpl;
} compiler;

static int cfail(compiler *c, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int cfail(compiler *c, int line, int col, const char *fmt, ...)
{
	if (c->failed)
		return -1;
	c->failed = 1;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	sft_error_set(c->err, SFT_EXIT_DATA, "%s:%d:%d: %s", c->name, line, col, msg);
	return -1;
}

static void *calloc_ar(compiler *c, size_t n)
{
	void *p = arena_try_alloc(c->ar, n);
	if (!p) {
		cfail(c, 0, 0, "out of memory");
		return NULL;
	}
	memset(p, 0, n);
	return p;
}

typedef struct lexpos {
	size_t pos;
	int line, col;
} lexpos;

static void lp_advance(const char *src, lexpos *p, size_t to)
{
	for (size_t i = p->pos; i < to; i++) {
		if (src[i] == '\n') {
			p->line++;
			p->col = 1;
		} else if (((unsigned char)src[i] & 0xc0) != 0x80)
			p->col++;
	}
	p->pos = to;
}

static token *push_tok(compiler *c, int type, lexpos *p, const char *s, size_t n)
{
	if (c->ntok == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 256;
		token *nt = arena_try_alloc(c->ar, nc * sizeof *nt);
		if (!nt) {
			cfail(c, p->line, p->col, "out of memory");
			return NULL;
		}
		if (c->ntok)
			memcpy(nt, c->toks, c->ntok * sizeof *nt);
		c->toks = nt;
		c->cap = nc;
	}
	token *t = &c->toks[c->ntok++];
	memset(t, 0, sizeof *t);
	t->type = type;
	t->line = p->line;
	t->col = p->col;
	t->s = s;
	t->n = n;
	return t;
}

/* Python unicode-escape decoding of a string literal body */
static int unescape_str(compiler *c, const char *s, size_t n, char **out, size_t *on, int line, int col)
{
	*out = NULL;
	*on = 0;
	char *o = arena_try_alloc(c->ar, n + 1);
	if (!o)
		return -1;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\' || i + 1 >= n) {
			o[k++] = s[i];
			continue;
		}
		char e = s[++i];
		uint32_t cp;
		int hex = 0;
		switch (e) {
		case '\n': break;
		case '\\': o[k++] = '\\'; break;
		case '\'': o[k++] = '\''; break;
		case '"': o[k++] = '"'; break;
		case 'a': o[k++] = '\a'; break;
		case 'b': o[k++] = '\b'; break;
		case 'f': o[k++] = '\f'; break;
		case 'n': o[k++] = '\n'; break;
		case 'r': o[k++] = '\r'; break;
		case 't': o[k++] = '\t'; break;
		case 'v': o[k++] = '\v'; break;
		case 'x': hex = 2; break;
		case 'u': hex = 4; break;
		case 'U': hex = 8; break;
		default:
			if (e >= '0' && e <= '7') {
				cp = 0;
				int d = 0;
				while (d < 3 && i < n && s[i] >= '0' && s[i] <= '7') {
					cp = cp * 8 + (uint32_t)(s[i] - '0');
					i++;
					d++;
				}
				i--;
				k += utf8_encode(cp, o + k);
			} else {
				o[k++] = '\\';
				o[k++] = e;
			}
		}
		if (hex) {
			cp = 0;
			for (int d = 0; d < hex; d++) {
				if (i + 1 >= n || !isxdigit((unsigned char)s[i + 1]))
					return cfail(c, line, col, "truncated \\%c escape in string literal", e);
				char h = s[++i];
				cp = cp * 16 + (uint32_t)(isdigit((unsigned char)h) ? h - '0' : (tolower((unsigned char)h) - 'a' + 10));
			}
			if (cp > 0x10ffff)
				return cfail(c, line, col, "illegal unicode escape in string literal");
			k += utf8_encode(cp, o + k);
		}
	}
	o[k] = 0;
	*out = o;
	*on = k;
	return 0;
}

static int match_at(const char *s, size_t n, size_t i, const char *lit)
{
	size_t l = strlen(lit);
	return i + l <= n && memcmp(s + i, lit, l) == 0;
}

/* Tag-end matcher. kind: '%' block, '}' variable, '#' comment. Returns length of the
 * match at i (0 if none), following jinja2: "+%}" | "-%}\s*" | "%}\n?" (trim_blocks). */
static size_t match_end(compiler *c, size_t i, char kind)
{
	const char *s = c->src;
	size_t n = c->len;
	char e1 = kind == '}' ? '}' : kind;
	if (i + 3 <= n && s[i] == '+' && s[i + 1] == e1 && s[i + 2] == '}' && kind != '}')
		return 3;
	if (i + 3 <= n && s[i] == '-' && s[i + 1] == e1 && s[i + 2] == '}') {
		return 3 + ws_prefix(s + i + 3, n - i - 3);
	}
	if (i + 2 <= n && s[i] == e1 && s[i + 1] == '}') {
		if (kind != '}' && c->opts->trim_blocks && i + 2 < n && s[i + 2] == '\n')
			return 3;
		return 2;
	}
	return 0;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
	return i + ws_prefix(s + i, n - i);
}

/* "{%[-+]?\s*raw\s*(-%}\s*|%})" at i; returns match length or 0 */
static size_t match_raw_begin(compiler *c, size_t i, char *sign)
{
	const char *s = c->src;
	size_t n = c->len, j = i + 2;
	*sign = 0;
	if (j < n && (s[j] == '-' || s[j] == '+'))
		*sign = s[j++];
	j = skip_ws(s, n, j);
	if (!match_at(s, n, j, "raw"))
		return 0;
	j += 3;
	if (j < n && (isalnum((unsigned char)s[j]) || s[j] == '_'))
		return 0;
	j = skip_ws(s, n, j);
	if (match_at(s, n, j, "-%}"))
		return j + 3 + ws_prefix(s + j + 3, n - j - 3) - i;
	if (match_at(s, n, j, "%}"))
		return j + 2 - i;
	return 0;
}

/* finds "{%[-+]?\s*endraw\s*<end>" from i; sets *tag and *len */
static int find_endraw(compiler *c, size_t i, size_t *tag, size_t *len, char *sign)
{
	const char *s = c->src;
	size_t n = c->len;
	for (size_t p = i; p + 1 < n; p++) {
		if (s[p] != '{' || s[p + 1] != '%')
			continue;
		size_t j = p + 2;
		char sg = 0;
		if (j < n && (s[j] == '-' || s[j] == '+'))
			sg = s[j++];
		j = skip_ws(s, n, j);
		if (!match_at(s, n, j, "endraw"))
			continue;
		j = skip_ws(s, n, j + 6);
		size_t e = match_end(c, j, '%');
		if (!e)
			continue;
		*tag = p;
		*len = j + e - p;
		*sign = sg;
		return 1;
	}
	return 0;
}

/* Strip rules applied to the text before a tag (jinja2 OptionalLStrip). */
static size_t strip_text(compiler *c, size_t tstart, size_t tend, char sign, int is_var, int line_starting)
{
	const char *s = c->src;
	if (sign == '-')
		return tend - ws_suffix(s + tstart, tend - tstart);
	if (sign != '+' && c->opts->lstrip_blocks && !is_var) {
		size_t l = tend;
		while (l > tstart && s[l - 1] != '\n')
			l--;
		if (l > tstart || line_starting) {
			for (size_t k = l; k < tend; k++)
				if (s[k] != ' ' && s[k] != '\t')
					return tend;
			return l;
		}
	}
	return tend;
}

static int lex_expr_tokens(compiler *c, lexpos *p, char kind, int *line_starting);

static int lex(compiler *c)
{
	const char *s = c->src;
	size_t n = c->len;
	lexpos p = {0, 1, 1};
	int line_starting = 1;
	while (p.pos < n && !c->failed) {
		/* find the next tag start */
		size_t t = p.pos;
		while (t + 1 < n && !(s[t] == '{' && (s[t + 1] == '%' || s[t + 1] == '{' || s[t + 1] == '#')))
			t++;
		if (t + 1 >= n) {
			push_tok(c, TK_DATA, &p, s + p.pos, n - p.pos);
			lp_advance(s, &p, n);
			break;
		}
		char kind = s[t + 1];
		char sign = 0;
		size_t rawlen = 0;
		if (kind == '%')
			rawlen = match_raw_begin(c, t, &sign);
		if (!rawlen && t + 2 < n && (s[t + 2] == '-' || s[t + 2] == '+'))
			sign = s[t + 2];
		size_t tend = strip_text(c, p.pos, t, sign, kind == '{', line_starting);
		if (tend > p.pos)
			push_tok(c, TK_DATA, &p, s + p.pos, tend - p.pos);
		lp_advance(s, &p, t);
		if (rawlen) {
			lexpos rp = p;
			lp_advance(s, &rp, t + rawlen);
			line_starting = s[t + rawlen - 1] == '\n';
			size_t tag, tlen;
			char esign;
			if (!find_endraw(c, t + rawlen, &tag, &tlen, &esign))
				return cfail(c, p.line, p.col, "missing end of raw directive");
			size_t dend = strip_text(c, t + rawlen, tag, esign, 0, line_starting);
			if (dend > t + rawlen)
				push_tok(c, TK_DATA, &rp, s + t + rawlen, dend - (t + rawlen));
			lp_advance(s, &p, tag + tlen);
			line_starting = s[tag + tlen - 1] == '\n';
			continue;
		}
		size_t open = 2 + (sign ? 1 : 0);
		if (kind == '#') {
			size_t j = t + open, e = 0;
			for (; j < n; j++)
				if ((e = match_end(c, j, '#')))
					break;
			if (!e)
				return cfail(c, p.line, p.col, "missing end of comment tag");
			lp_advance(s, &p, j + e);
			line_starting = s[j + e - 1] == '\n';
			continue;
		}
		push_tok(c, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, &p, s + t, open);
		lp_advance(s, &p, t + open);
		if (lex_expr_tokens(c, &p, kind == '%' ? '%' : '}', &line_starting) < 0)
			return -1;
	}
	push_tok(c, TK_EOF, &p, s + n, 0);
	return c->failed ? -1 : 0;
}

static int lex_expr_tokens(compiler *c, lexpos *p, char kind, int *line_starting)
{
	const char *s = c->src;
	size_t n = c->len;
	for (;;) {
		if (c->failed)
			return -1;
		size_t i = p->pos;
		if (i >= n)
			return cfail(c, p->line, p->col, "unexpected end of template, expected end of %s",
				     kind == '%' ? "statement block" : "print statement");
		size_t e = match_end(c, i, kind);
		if (e) {
			push_tok(c, kind == '%' ? TK_BLOCK_END : TK_VAR_END, p, s + i, e);
			lp_advance(s, p, i + e);
			*line_starting = s[i + e - 1] == '\n';
			return 0;
		}
		unsigned char ch = (unsigned char)s[i];
		size_t w = ws_prefix(s + i, n - i);
		if (w) {
			lp_advance(s, p, i + w);
			continue;
		}
		if (isdigit(ch)) {
			size_t j = i;
			while (j < n && (isdigit((unsigned char)s[j]) || (s[j] == '_' && j + 1 < n && isdigit((unsigned char)s[j + 1]))))
				j++;
			int is_float = 0;
			if (j + 1 < n && s[j] == '.' && isdigit((unsigned char)s[j + 1])) {
				is_float = 1;
				j++;
				while (j < n && (isdigit((unsigned char)s[j]) || (s[j] == '_' && j + 1 < n && isdigit((unsigned char)s[j + 1]))))
					j++;
			}
			if (j < n && (s[j] == 'e' || s[j] == 'E')) {
				size_t k = j + 1;
				if (k < n && (s[k] == '+' || s[k] == '-'))
					k++;
				if (k < n && isdigit((unsigned char)s[k])) {
					is_float = 1;
					j = k;
					while (j < n && (isdigit((unsigned char)s[j]) || s[j] == '_'))
						j++;
				}
			}
			char buf[128];
			size_t bl = 0;
			for (size_t k = i; k < j && bl < sizeof buf - 1; k++)
				if (s[k] != '_')
					buf[bl++] = s[k];
			buf[bl] = 0;
			token *t = push_tok(c, is_float ? TK_FLOAT : TK_INT, p, s + i, j - i);
			if (!t)
				return -1;
			if (is_float)
				t->fval = strtod(buf, NULL);
			else {
				errno = 0;
				long long v = strtoll(buf, NULL, 10);
				if (errno)
					return cfail(c, p->line, p->col, "integer literal too large");
				t->ival = v;
			}
			lp_advance(s, p, j);
			continue;
		}
		if (isalpha(ch) || ch == '_' || ch >= 0x80) {
			size_t j = i;
			while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '_' || (unsigned char)s[j] >= 0x80))
				j++;
			push_tok(c, TK_NAME, p, s + i, j - i);
			lp_advance(s, p, j);
			continue;
		}
		if (ch == '\'' || ch == '"') {
			size_t j = i + 1;
			while (j < n && s[j] != (char)ch) {
				if (s[j] == '\\' && j + 1 < n)
					j++;
				j++;
			}
			if (j >= n)
				return cfail(c, p->line, p->col, "unexpected end of string literal");
			char *o = NULL;
			size_t on = 0;
			if (unescape_str(c, s + i + 1, j - i - 1, &o, &on, p->line, p->col) < 0) {
				if (!c->failed)
					cfail(c, p->line, p->col, "out of memory");
				return -1;
			}
			if (!push_tok(c, TK_STRING, p, o, on))
				return -1;
			lp_advance(s, p, j + 1);
			continue;
		}
		static const char *ops2[] = {"//", "**", "==", "!=", ">=", "<="};
		size_t ol = 0;
		for (size_t k = 0; k < sizeof ops2 / sizeof ops2[0]; k++)
			if (match_at(s, n, i, ops2[k]))
				ol = 2;
		if (!ol && strchr("+-/*%~[](){}><=.:|,;", ch) && ch)
			ol = 1;
		if (!ol)
			return cfail(c, p->line, p->col, "unexpected char '%c'", ch);
		push_tok(c, TK_OP, p, s + i, ol);
		lp_advance(s, p, i + ol);
	}
}

/* ------------------------------------------------------------------ parser */

#define MAX_PARSE_DEPTH 200

static token *cur(compiler *c) { return &c->toks[c->pos]; }
static token *peek(compiler *c, size_t k)
{
	size_t i = c->pos + k;
	return &c->toks[i < c->ntok ? i : c->ntok - 1];
}
static void adv(compiler *c)
{
	if (c->pos + 1 < c->ntok)
		c->pos++;
}
static int is_op(const token *t, const char *op)
{
	return t->type == TK_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
}
static int is_name(const token *t, const char *nm)
{
	return t->type == TK_NAME && t->n == strlen(nm) && memcmp(t->s, nm, t->n) == 0;
}

static const char *tok_desc(const token *t, char *buf, size_t cap)
{
	switch (t->type) {
	case TK_EOF: return "end of template";
	case TK_BLOCK_END: return "end of statement block";
	case TK_VAR_END: return "end of print statement";
	case TK_BLOCK_BEGIN: return "begin of statement block";
	case TK_VAR_BEGIN: return "begin of print statement";
	case TK_DATA: return "template data";
	case TK_STRING: return "string";
	}
	snprintf(buf, cap, "%.*s", (int)(t->n > 40 ? 40 : t->n), t->s);
	return buf;
}

static int unexpected(compiler *c, const char *what)
{
	char b[64];
	token *t = cur(c);
	if (what)
		return cfail(c, t->line, t->col, "expected %s, got '%s'", what, tok_desc(t, b, sizeof b));
	return cfail(c, t->line, t->col, "unexpected '%s'", tok_desc(t, b, sizeof b));
}

static int expect_op(compiler *c, const char *op)
{
	if (!is_op(cur(c), op)) {
		char w[16];
		snprintf(w, sizeof w, "'%s'", op);
		return unexpected(c, w);
	}
	adv(c);
	return 0;
}

static node *mk(compiler *c, int kind, const token *t)
{
	node *n = calloc_ar(c, sizeof *n);
	if (!n)
		return NULL;
	n->kind = (uint8_t)kind;
	n->line = t->line;
	n->col = t->col;
	return n;
}

/* growable node vector in the compile arena */
typedef struct nvec {
	node **v;
	size_t n, cap;
} nvec;

static int nvec_push(compiler *c, nvec *v, node *x)
{
	if (!x)
		return -1;
	if (v->n == v->cap) {
		size_t nc = v->cap ? v->cap * 2 : 4;
		node **nv = arena_try_alloc(c->ar, nc * sizeof *nv);
		if (!nv)
			return cfail(c, 0, 0, "out of memory");
		if (v->n)
			memcpy(nv, v->v, v->n * sizeof *nv);
		v->v = nv;
		v->cap = nc;
	}
	v->v[v->n++] = x;
	return 0;
}

static node *p_expr(compiler *c, int with_condexpr);
static node *p_tuple(compiler *c, int simplified, int with_condexpr, const char *extra_end, int explicit_parens);
static node *p_primary(compiler *c);
static node *p_postfix(compiler *c, node *n);
static node *p_filter(compiler *c, node *n, int start_inline);
static node *p_unary(compiler *c, int with_filter);

static int p_call_args(compiler *c, nvec *args)
{
	if (expect_op(c, "(") < 0)
		return -1;
	int require_comma = 0, seen_kw = 0;
	while (!is_op(cur(c), ")")) {
		if (c->failed)
			return -1;
		if (require_comma) {
			if (expect_op(c, ",") < 0)
				return -1;
			if (is_op(cur(c), ")"))
				break;
		}
		token *t = cur(c);
		if (is_op(t, "*") || is_op(t, "**"))
			return cfail(c, t->line, t->col, "*args and **kwargs in calls are not supported");
		if (t->type == TK_NAME && is_op(peek(c, 1), "=")) {
			node *kw = mk(c, N_KWARG, t);
			if (!kw)
				return -1;
			kw->name = t->s;
			kw->nlen = t->n;
			adv(c);
			adv(c);
			kw->a = p_expr(c, 1);
			if (nvec_push(c, args, kw->a ? kw : NULL) < 0)
				return -1;
			seen_kw = 1;
		} else {
			if (seen_kw)
				return cfail(c, t->line, t->col, "invalid syntax for function call expression");
			if (nvec_push(c, args, p_expr(c, 1)) < 0)
				return -1;
		}
		require_comma = 1;
	}
	adv(c);
	return 0;
}

static node *p_subscribed(compiler *c)
{
	token *t = cur(c);
	node *parts[3] = {NULL, NULL, NULL};
	if (is_op(t, ":")) {
		adv(c);
	} else {
		node *e = p_expr(c, 1);
		if (!e || !is_op(cur(c), ":"))
			return e;
		adv(c);
		parts[0] = e;
	}
	if (!is_op(cur(c), ":") && !is_op(cur(c), "]") && !is_op(cur(c), ",")) {
		if (!(parts[1] = p_expr(c, 1)))
			return NULL;
	}
	if (is_op(cur(c), ":")) {
		adv(c);
		if (!is_op(cur(c), "]") && !is_op(cur(c), ",")) {
			if (!(parts[2] = p_expr(c, 1)))
				return NULL;
		}
	}
	node *s = mk(c, N_SLICE, t);
	if (!s)
		return NULL;
	s->a = parts[0];
	s->b = parts[1];
	s->c = parts[2];
	return s;
}

static node *p_postfix(compiler *c, node *n)
{
	while (n && !c->failed) {
		token *t = cur(c);
		if (is_op(t, ".")) {
			adv(c);
			token *a = cur(c);
			if (a->type == TK_NAME) {
				node *g = mk(c, N_GETATTR, t);
				if (!g)
					return NULL;
				g->a = n;
				g->name = a->s;
				g->nlen = a->n;
				adv(c);
				n = g;
			} else if (a->type == TK_INT) {
				node *g = mk(c, N_GETITEM, t), *k = mk(c, N_CONST, a);
				if (!g || !k)
					return NULL;
				k->cv.t = T_INT;
				k->cv.i = a->ival;
				g->a = n;
				g->b = k;
				adv(c);
				n = g;
			} else {
				unexpected(c, "name or number");
				return NULL;
			}
		} else if (is_op(t, "[")) {
			adv(c);
			nvec args = {0};
			while (!is_op(cur(c), "]")) {
				if (c->failed)
					return NULL;
				if (args.n && expect_op(c, ",") < 0)
					return NULL;
				if (is_op(cur(c), "]"))
					break;
				if (nvec_push(c, &args, p_subscribed(c)) < 0)
					return NULL;
			}
			adv(c);
			node *g = mk(c, N_GETITEM, t);
			if (!g)
				return NULL;
			g->a = n;
			if (args.n == 1) {
				g->b = args.v[0];
			} else {
				node *tp = mk(c, N_TUPLE, t);
				if (!tp)
					return NULL;
				tp->list = args.v;
				tp->n = args.n;
				g->b = tp;
			}
			n = g;
		} else if (is_op(t, "(")) {
			node *call = mk(c, N_CALL, t);
			if (!call)
				return NULL;
			call->line = n->line;
			call->col = n->col;
			nvec args = {0};
			if (p_call_args(c, &args) < 0)
				return NULL;
			call->a = n;
			call->list = args.v;
			call->n = args.n;
			n = call;
		} else
			break;
	}
	return c->failed ? NULL : n;
}

static node *p_dotted_name(compiler *c, node *n)
{
	token *t = cur(c);
	if (t->type != TK_NAME) {
		unexpected(c, "name");
		return NULL;
	}
	n->name = t->s;
	n->nlen = t->n;
	adv(c);
	while (is_op(cur(c), ".") && peek(c, 1)->type == TK_NAME) {
		/* dotted filter names: keep the whole span of source text */
		token *x = peek(c, 1);
		n->nlen = (size_t)(x->s + x->n - n->name);
		adv(c);
		adv(c);
	}
	return n;
}

static node *p_filter(compiler *c, node *n, int start_inline)
{
	while (!c->failed && (is_op(cur(c), "|") || start_inline)) {
		if (!start_inline)
			adv(c);
		start_inline = 0;
		node *f = mk(c, N_FILTER, cur(c));
		if (!f || !p_dotted_name(c, f))
			return NULL;
		f->a = n;
		if (is_op(cur(c), "(")) {
			nvec args = {0};
			if (p_call_args(c, &args) < 0)
				return NULL;
			f->list = args.v;
			f->n = args.n;
		}
		n = f;
	}
	return c->failed ? NULL : n;
}

static node *p_test(compiler *c, node *n)
{
	token *is = cur(c);
	adv(c);
	node *t = mk(c, N_TEST, is);
	if (!t)
		return NULL;
	if (is_name(cur(c), "not")) {
		t->flag = 1;
		adv(c);
	}
	if (!p_dotted_name(c, t))
		return NULL;
	t->a = n;
	token *x = cur(c);
	if (is_op(x, "(")) {
		nvec args = {0};
		if (p_call_args(c, &args) < 0)
			return NULL;
		t->list = args.v;
		t->n = args.n;
	} else if ((x->type == TK_NAME || x->type == TK_STRING || x->type == TK_INT || x->type == TK_FLOAT ||
		    is_op(x, "(") || is_op(x, "[") || is_op(x, "{")) &&
		   !is_name(x, "else") && !is_name(x, "or") && !is_name(x, "and")) {
		if (is_name(x, "is")) {
			cfail(c, x->line, x->col, "you cannot chain multiple tests with is");
			return NULL;
		}
		node *arg = p_postfix(c, p_primary(c));
		if (!arg)
			return NULL;
		node **l = calloc_ar(c, sizeof *l);
		if (!l)
			return NULL;
		l[0] = arg;
		t->list = l;
		t->n = 1;
	}
	return t;
}

static node *p_filter_expr(compiler *c, node *n)
{
	while (n && !c->failed) {
		token *t = cur(c);
		if (is_op(t, "|"))
			n = p_filter(c, n, 0);
		else if (is_name(t, "is"))
			n = p_test(c, n);
		else if (is_op(t, "("))
			n = p_postfix(c, n);
		else
			break;
	}
	return c->failed ? NULL : n;
}

static node *p_primary(compiler *c)
{
	token *t = cur(c);
	if (c->depth > MAX_PARSE_DEPTH) {
		cfail(c, t->line, t->col, "expression nested too deeply");
		return NULL;
	}
	node *n = NULL;
	if (t->type == TK_NAME) {
		if (is_name(t, "true") || is_name(t, "True") || is_name(t, "false") || is_name(t, "False")) {
			if (!(n = mk(c, N_CONST, t)))
				return NULL;
			n->cv.t = T_BOOL;
			n->cv.i = t->s[0] == 't' || t->s[0] == 'T';
		} else if (is_name(t, "none") || is_name(t, "None")) {
			if (!(n = mk(c, N_CONST, t)))
				return NULL;
			n->cv.t = T_NONE;
		} else {
			if (!(n = mk(c, N_NAME, t)))
				return NULL;
			n->name = t->s;
			n->nlen = t->n;
		}
		adv(c);
	} else if (t->type == TK_STRING) {
		if (!(n = mk(c, N_CONST, t)))
			return NULL;
		n->cv.t = T_STR;
		if (peek(c, 1)->type != TK_STRING) {
			n->cv.s = t->s;
			n->cv.n = t->n;
			adv(c);
		} else {
			size_t total = 0, k = c->pos;
			while (c->toks[k].type == TK_STRING)
				total += c->toks[k++].n;
			char *b = arena_try_alloc(c->ar, total + 1);
			if (!b) {
				cfail(c, t->line, t->col, "out of memory");
				return NULL;
			}
			size_t o = 0;
			while (cur(c)->type == TK_STRING) {
				memcpy(b + o, cur(c)->s, cur(c)->n);
				o += cur(c)->n;
				adv(c);
			}
			n->cv.s = b;
			n->cv.n = o;
		}
	} else if (t->type == TK_INT || t->type == TK_FLOAT) {
		if (!(n = mk(c, N_CONST, t)))
			return NULL;
		if (t->type == TK_INT) {
			n->cv.t = T_INT;
			n->cv.i = t->ival;
		} else {
			n->cv.t = T_FLOAT;
			n->cv.f = t->fval;
		}
		adv(c);
	} else if (is_op(t, "(")) {
		adv(c);
		c->depth++;
		n = p_tuple(c, 0, 1, NULL, 1);
		c->depth--;
		if (!n || expect_op(c, ")") < 0)
			return NULL;
	} else if (is_op(t, "[")) {
		adv(c);
		if (!(n = mk(c, N_LIST, t)))
			return NULL;
		nvec items = {0};
		c->depth++;
		while (!is_op(cur(c), "]")) {
			if (c->failed)
				return NULL;
			if (items.n && expect_op(c, ",") < 0)
				return NULL;
			if (is_op(cur(c), "]"))
				break;
			if (nvec_push(c, &items, p_expr(c, 1)) < 0)
				return NULL;
		}
		c->depth--;
		adv(c);
		n->list = items.v;
		n->n = items.n;
	} else if (is_op(t, "{")) {
		adv(c);
		if (!(n = mk(c, N_DICT, t)))
			return NULL;
		nvec items = {0};
		c->depth++;
		while (!is_op(cur(c), "}")) {
			if (c->failed)
				return NULL;
			if (items.n && expect_op(c, ",") < 0)
				return NULL;
			if (is_op(cur(c), "}"))
				break;
			node *pr = mk(c, N_PAIR, cur(c));
			if (!pr)
				return NULL;
			pr->a = p_expr(c, 1);
			if (!pr->a || expect_op(c, ":") < 0)
				return NULL;
			pr->b = p_expr(c, 1);
			if (nvec_push(c, &items, pr->b ? pr : NULL) < 0)
				return NULL;
		}
		c->depth--;
		adv(c);
		n->list = items.v;
		n->n = items.n;
	} else {
		unexpected(c, NULL);
		return NULL;
	}
	return n;
}

static node *p_unary(compiler *c, int with_filter)
{
	token *t = cur(c);
	node *n;
	if (c->depth > MAX_PARSE_DEPTH) {
		cfail(c, t->line, t->col, "expression nested too deeply");
		return NULL;
	}
	if (is_op(t, "-") || is_op(t, "+")) {
		adv(c);
		c->depth++;
		node *x = p_unary(c, 0);
		c->depth--;
		if (!x)
			return NULL;
		if (!(n = mk(c, is_op(t, "-") ? N_NEG : N_POS, t)))
			return NULL;
		n->a = x;
	} else {
		n = p_primary(c);
	}
	n = p_postfix(c, n);
	if (with_filter)
		n = p_filter_expr(c, n);
	return n;
}

static node *mk_bin(compiler *c, int kind, int op, const token *t, node *a, node *b)
{
	if (!a || !b)
		return NULL;
	node *n = mk(c, kind, t);
	if (!n)
		return NULL;
	n->op = (uint8_t)op;
	n->a = a;
	n->b = b;
	return n;
}

static node *p_pow(compiler *c)
{
	node *n = p_unary(c, 1);
	while (n && is_op(cur(c), "**")) {
		token *t = cur(c);
		adv(c);
		n = mk_bin(c, N_BIN, OP_POW, t, n, p_unary(c, 1));
	}
	return n;
}

static node *p_math2(compiler *c)
{
	node *n = p_pow(c);
	for (;;) {
		token *t = cur(c);
		int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV : is_op(t, "%") ? OP_MOD : 0;
		if (!n || !op)
			return n;
		adv(c);
		n = mk_bin(c, N_BIN, op, t, n, p_pow(c));
	}
}

static node *p_concat(compiler *c)
{
	node *n = p_math2(c);
	while (n && is_op(cur(c), "~")) {
		token *t = cur(c);
		adv(c);
		n = mk_bin(c, N_BIN, OP_CONCAT, t, n, p_math2(c));
	}
	return n;
}

static node *p_math1(compiler *c)
{
	node *n = p_concat(c);
	for (;;) {
		token *t = cur(c);
		int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
		if (!n || !op)
			return n;
		adv(c);
		n = mk_bin(c, N_BIN, op, t, n, p_concat(c));
	}
}

static node *p_compare(compiler *c)
{
	token *t0 = cur(c);
	node *n = p_math1(c);
	if (!n)
		return NULL;
	nvec ops = {0};
	for (;;) {
		token *t = cur(c);
		int op = 0;
		if (is_op(t, "=="))
			op = OP_EQ;
		else if (is_op(t, "!="))
			op = OP_NE;
		else if (is_op(t, "<"))
			op = OP_LT;
		else if (is_op(t, "<="))
			op = OP_LE;
		else if (is_op(t, ">"))
			op = OP_GT;
		else if (is_op(t, ">="))
			op = OP_GE;
		else if (is_name(t, "in"))
			op = OP_IN;
		else if (is_name(t, "not") && is_name(peek(c, 1), "in")) {
			op = OP_NOTIN;
			adv(c);
		}
		if (!op)
			break;
		adv(c);
		node *o = mk(c, N_CMPOP, t);
		if (!o)
			return NULL;
		o->op = (uint8_t)op;
		o->a = p_math1(c);
		if (nvec_push(c, &ops, o->a ? o : NULL) < 0)
			return NULL;
	}
	if (!ops.n)
		return n;
	node *cmp = mk(c, N_CMP, t0);
	if (!cmp)
		return NULL;
	cmp->a = n;
	cmp->list = ops.v;
	cmp->n = ops.n;
	return cmp;
}

static node *p_not(compiler *c)
{
	token *t = cur(c);
	if (is_name(t, "not")) {
		adv(c);
		if (c->depth > MAX_PARSE_DEPTH) {
			cfail(c, t->line, t->col, "expression nested too deeply");
			return NULL;
		}
		c->depth++;
		node *x = p_not(c);
		c->depth--;
		if (!x)
			return NULL;
		node *n = mk(c, N_NOT, t);
		if (n)
			n->a = x;
		return n;
	}
	return p_compare(c);
}

static node *p_and(compiler *c)
{
	node *n = p_not(c);
	while (n && is_name(cur(c), "and")) {
		token *t = cur(c);
		adv(c);
		n = mk_bin(c, N_AND, 0, t, n, p_not(c));
	}
	return n;
}

static node *p_or(compiler *c)
{
	node *n = p_and(c);
	while (n && is_name(cur(c), "or")) {
		token *t = cur(c);
		adv(c);
		n = mk_bin(c, N_OR, 0, t, n, p_and(c));
	}
	return n;
}

static node *p_condexpr(compiler *c)
{
	node *n = p_or(c);
	while (n && is_name(cur(c), "if")) {
		token *t = cur(c);
		adv(c);
		node *cond = p_or(c);
		if (!cond)
			return NULL;
		node *els = NULL;
		if (is_name(cur(c), "else")) {
			adv(c);
			if (c->depth > MAX_PARSE_DEPTH) {
				cfail(c, t->line, t->col, "expression nested too deeply");
				return NULL;
			}
			c->depth++;
			els = p_condexpr(c);
			c->depth--;
			if (!els)
				return NULL;
		}
		node *ce = mk(c, N_COND, t);
		if (!ce)
			return NULL;
		ce->a = cond;
		ce->b = n;
		ce->c = els;
		n = ce;
	}
	return n;
}

static node *p_expr(compiler *c, int with_condexpr)
{
	if (c->depth > MAX_PARSE_DEPTH) {
		cfail(c, cur(c)->line, cur(c)->col, "expression nested too deeply");
		return NULL;
	}
	c->depth++;
	node *n = with_condexpr ? p_condexpr(c) : p_or(c);
	c->depth--;
	return n;
}

static int tuple_end(compiler *c, const char *extra_end)
{
	token *t = cur(c);
	if (t->type == TK_VAR_END || t->type == TK_BLOCK_END || is_op(t, ")") || t->type == TK_EOF)
		return 1;
	return extra_end && is_name(t, extra_end);
}

static node *p_tuple(compiler *c, int simplified, int with_condexpr, const char *extra_end, int explicit_parens)
{
	token *t0 = cur(c);
	nvec args = {0};
	int is_tuple = 0;
	for (;;) {
		if (args.n && expect_op(c, ",") < 0)
			return NULL;
		if (tuple_end(c, extra_end))
			break;
		node *x = simplified ? p_primary(c) : p_expr(c, with_condexpr);
		if (nvec_push(c, &args, x) < 0)
			return NULL;
		if (is_op(cur(c), ","))
			is_tuple = 1;
		else
			break;
	}
	if (!is_tuple) {
		if (args.n)
			return args.v[0];
		if (!explicit_parens) {
			unexpected(c, "an expression");
			return NULL;
		}
	}
	node *n = mk(c, N_TUPLE, t0);
	if (!n)
		return NULL;
	n->list = args.v;
	n->n = args.n;
	return n;
}

/* ---- statements ---- */

static int expect_block_end(compiler *c)
{
	if (cur(c)->type != TK_BLOCK_END)
		return unexpected(c, "end of statement block");
	adv(c);
	return 0;
}

static node **p_body(compiler *c, const char *const *ends, size_t *nout, int in_loop);

/* at "{% <one of ends>" ? returns the index+1 of the matched end, 0 otherwise */
static int at_end(compiler *c, const char *const *ends)
{
	if (!ends || cur(c)->type != TK_BLOCK_BEGIN)
		return 0;
	token *t = peek(c, 1);
	for (int i = 0; ends[i]; i++)
		if (is_name(t, ends[i]))
			return i + 1;
	return 0;
}

static int check_assign_target(compiler *c, node *t)
{
	if (t->kind == N_NAME)
		return 0;
	if (t->kind == N_TUPLE) {
		for (size_t i = 0; i < t->n; i++)
			if (t->list[i]->kind != N_NAME)
				return cfail(c, t->line, t->col, "can't assign to this target");
		return 0;
	}
	return cfail(c, t->line, t->col, "can't assign to this target");
}

static node *p_stmt(compiler *c, int in_loop)
{
	token *bt = cur(c); /* {% */
	adv(c);
	token *kw = cur(c);
	if (kw->type != TK_NAME) {
		unexpected(c, "statement name");
		return NULL;
	}
	adv(c);
	node *n = NULL;
	if (is_name(kw, "if")) {
		if (!(n = mk(c, N_IF, bt)))
			return NULL;
		node *top = n;
		for (;;) {
			n->a = p_tuple(c, 0, 1, NULL, 0);
			if (!n->a || expect_block_end(c) < 0)
				return NULL;
			static const char *const ends[] = {"elif", "else", "endif", NULL};
			n->list = p_body(c, ends, &n->n, in_loop);
			if (c->failed)
				return NULL;
			int e = at_end(c, ends);
			adv(c);
			adv(c);
			if (e == 1) {
				node *el = mk(c, N_IF, &c->toks[c->pos - 1]);
				if (!el)
					return NULL;
				node **l = calloc_ar(c, sizeof *l);
				if (!l)
					return NULL;
				l[0] = el;
				n->list2 = l;
				n->n2 = 1;
				n = el;
				continue;
			}
			if (e == 2) {
				if (expect_block_end(c) < 0)
					return NULL;
				static const char *const ends2[] = {"endif", NULL};
				n->list2 = p_body(c, ends2, &n->n2, in_loop);
				if (c->failed)
					return NULL;
				adv(c);
				adv(c);
			}
			break;
		}
		if (expect_block_end(c) < 0)
			return NULL;
		return top;
	}
	if (is_name(kw, "for")) {
		if (!(n = mk(c, N_FOR, bt)))
			return NULL;
		n->a = p_tuple(c, 1, 1, "in", 0);
		if (!n->a || check_assign_target(c, n->a) < 0)
			return NULL;
		if (!is_name(cur(c), "in")) {
			unexpected(c, "'in'");
			return NULL;
		}
		adv(c);
		n->b = p_tuple(c, 0, 0, "recursive", 0);
		if (!n->b)
			return NULL;
		if (is_name(cur(c), "if")) {
			adv(c);
			if (!(n->c = p_expr(c, 1)))
				return NULL;
		}
		if (is_name(cur(c), "recursive")) {
			cfail(c, cur(c)->line, cur(c)->col, "recursive for loops are not supported");
			return NULL;
		}
		if (expect_block_end(c) < 0)
			return NULL;
		static const char *const ends[] = {"endfor", "else", NULL};
		n->list = p_body(c, ends, &n->n, 1);
		if (c->failed)
			return NULL;
		int e = at_end(c, ends);
		adv(c);
		adv(c);
		if (e == 2) {
			if (expect_block_end(c) < 0)
				return NULL;
			static const char *const ends2[] = {"endfor", NULL};
			n->list2 = p_body(c, ends2, &n->n2, in_loop);
			if (c->failed)
				return NULL;
			adv(c);
			adv(c);
		}
		if (expect_block_end(c) < 0)
			return NULL;
		return n;
	}
	if (is_name(kw, "set")) {
		token *t = cur(c);
		node *target;
		if (t->type == TK_NAME && is_op(peek(c, 1), ".") && peek(c, 2)->type == TK_NAME) {
			target = mk(c, N_GETATTR, t);
			node *base = mk(c, N_NAME, t);
			if (!target || !base)
				return NULL;
			base->name = t->s;
			base->nlen = t->n;
			target->a = base;
			target->name = peek(c, 2)->s;
			target->nlen = peek(c, 2)->n;
			adv(c);
			adv(c);
			adv(c);
		} else {
			target = p_tuple(c, 1, 1, NULL, 0);
			if (!target || check_assign_target(c, target) < 0)
				return NULL;
		}
		if (is_op(cur(c), "=")) {
			adv(c);
			if (!(n = mk(c, N_SET, bt)))
				return NULL;
			n->a = target;
			n->b = p_tuple(c, 0, 1, NULL, 0);
			if (!n->b || expect_block_end(c) < 0)
				return NULL;
			return n;
		}
		if (!(n = mk(c, N_SETBLOCK, bt)))
			return NULL;
		n->a = target;
		if (is_op(cur(c), "|")) {
			node *hole = mk(c, N_HOLE, cur(c));
			if (!hole || !(n->c = p_filter(c, hole, 0)))
				return NULL;
		}
		if (expect_block_end(c) < 0)
			return NULL;
		static const char *const ends[] = {"endset", NULL};
		n->list = p_body(c, ends, &n->n, in_loop);
		if (c->failed)
			return NULL;
		adv(c);
		adv(c);
		if (expect_block_end(c) < 0)
			return NULL;
		return n;
	}
	if (is_name(kw, "macro") || is_name(kw, "call")) {
		int is_macro = is_name(kw, "macro");
		if (!(n = mk(c, is_macro ? N_MACRO : N_CALLBLOCK, bt)))
			return NULL;
		if (is_macro) {
			if (cur(c)->type != TK_NAME) {
				unexpected(c, "macro name");
				return NULL;
			}
			n->name = cur(c)->s;
			n->nlen = cur(c)->n;
			adv(c);
		}
		nvec params = {0};
		if (is_macro || is_op(cur(c), "(")) {
			if (expect_op(c, "(") < 0)
				return NULL;
			while (!is_op(cur(c), ")")) {
				if (params.n && expect_op(c, ",") < 0)
					return NULL;
				if (is_op(cur(c), ")"))
					break;
				token *pt = cur(c);
				if (pt->type != TK_NAME) {
					unexpected(c, "parameter name");
					return NULL;
				}
				node *pn = mk(c, N_NAME, pt);
				if (!pn)
					return NULL;
				pn->name = pt->s;
				pn->nlen = pt->n;
				adv(c);
				if (is_op(cur(c), "=")) {
					adv(c);
					if (!(pn->b = p_expr(c, 1)))
						return NULL;
				}
				if (nvec_push(c, &params, pn) < 0)
					return NULL;
			}
			adv(c);
		}
		n->list2 = params.v;
		n->n2 = params.n;
		if (!is_macro) {
			n->a = p_expr(c, 1);
			if (!n->a)
				return NULL;
			if (n->a->kind != N_CALL) {
				cfail(c, n->a->line, n->a->col, "expected call");
				return NULL;
			}
		}
		if (expect_block_end(c) < 0)
			return NULL;
		static const char *const mends[] = {"endmacro", NULL};
		static const char *const cends[] = {"endcall", NULL};
		n->list = p_body(c, is_macro ? mends : cends, &n->n, 0);
		if (c->failed)
			return NULL;
		adv(c);
		adv(c);
		if (is_macro && cur(c)->type == TK_NAME && cur(c)->n == n->nlen && !memcmp(cur(c)->s, n->name, n->nlen))
			adv(c);
		if (expect_block_end(c) < 0)
			return NULL;
		return n;
	}
	if (is_name(kw, "filter")) {
		if (!(n = mk(c, N_FILTERBLOCK, bt)))
			return NULL;
		node *hole = mk(c, N_HOLE, cur(c));
		if (!hole || !(n->a = p_filter(c, hole, 1)) || expect_block_end(c) < 0)
			return NULL;
		static const char *const ends[] = {"endfilter", NULL};
		n->list = p_body(c, ends, &n->n, in_loop);
		if (c->failed)
			return NULL;
		adv(c);
		adv(c);
		if (expect_block_end(c) < 0)
			return NULL;
		return n;
	}
	if (is_name(kw, "generation")) {
		if (!(n = mk(c, N_GEN, bt)))
			return NULL;
		c->tpl->has_generation = 1;
		if (expect_block_end(c) < 0)
			return NULL;
		static const char *const ends[] = {"endgeneration", NULL};
		n->list = p_body(c, ends, &n->n, 0);
		if (c->failed)
			return NULL;
		adv(c);
		adv(c);
		if (expect_block_end(c) < 0)
			return NULL;
		return n;
	}
	if (is_name(kw, "with")) {
		if (!(n = mk(c, N_WITH, bt)))
			return NULL;
		nvec as = {0};
		while (cur(c)->type != TK_BLOCK_END) {
			if (c->failed)
				return NULL;
			if (as.n && expect_op(c, ",") < 0)
				return NULL;
			node *s = mk(c, N_SET, cur(c));
			if (!s)
				return NULL;
			s->a = p_tuple(c, 1, 1, NULL, 0);
			if (!s->a || check_assign_target(c, s->a) < 0 || expect_op(c, "=") < 0)
				return NULL;
			s->b = p_expr(c, 1);
			if (nvec_push(c, &as, s->b ? s : NULL) < 0)
				return NULL;
		}
		adv(c);
		n->list2 = as.v;
		n->n2 = as.n;
		static const char *const ends[] = {"endwith", NULL};
		n->list = p_body(c, ends, &n->n, in_loop);
		if (c->failed)
			return NULL;
		adv(c);
		adv(c);
		if (expect_block_end(c) < 0)
			return NULL;
		return n;
	}
	if (is_name(kw, "break") || is_name(kw, "continue")) {
		if (!in_loop) {
			cfail(c, kw->line, kw->col, "'%.*s' outside of a loop", (int)kw->n, kw->s);
			return NULL;
		}
		if (!(n = mk(c, is_name(kw, "break") ? N_BREAK : N_CONTINUE, bt)) || expect_block_end(c) < 0)
			return NULL;
		return n;
	}
	cfail(c, kw->line, kw->col, "encountered unknown tag '%.*s'", (int)(kw->n > 40 ? 40 : kw->n), kw->s);
	return NULL;
}

static node **p_body(compiler *c, const char *const *ends, size_t *nout, int in_loop)
{
	nvec body = {0};
	if (c->depth > MAX_PARSE_DEPTH) {
		cfail(c, cur(c)->line, cur(c)->col, "statements nested too deeply");
		return NULL;
	}
	c->depth++;
	while (!c->failed) {
		token *t = cur(c);
		if (t->type == TK_EOF) {
			if (ends) {
				cfail(c, t->line, t->col, "unexpected end of template, expected '%s'", ends[0]);
				break;
			}
			break;
		}
		if (t->type == TK_DATA) {
			node *x = mk(c, N_TEXT, t);
			if (!x)
				break;
			x->name = t->s;
			x->nlen = t->n;
			nvec_push(c, &body, x);
			adv(c);
		} else if (t->type == TK_VAR_BEGIN) {
			adv(c);
			node *x = mk(c, N_OUTPUT, t);
			if (!x)
				break;
			x->a = p_tuple(c, 0, 1, NULL, 0);
			if (!x->a)
				break;
			if (cur(c)->type != TK_VAR_END) {
				unexpected(c, "end of print statement");
				break;
			}
			adv(c);
			nvec_push(c, &body, x);
		} else if (t->type == TK_BLOCK_BEGIN) {
			if (at_end(c, ends))
				break;
			token *k = peek(c, 1);
			if (k->type == TK_NAME && (is_name(k, "endif") || is_name(k, "endfor") || is_name(k, "endmacro") ||
						   is_name(k, "endset") || is_name(k, "endcall") || is_name(k, "endfilter") ||
						   is_name(k, "endgeneration") || is_name(k, "endwith") || is_name(k, "elif") ||
						   is_name(k, "else"))) {
				cfail(c, k->line, k->col, "unexpected '%.*s'%s%s", (int)k->n, k->s,
				      ends ? ", expected " : "", ends ? ends[0] : "");
				break;
			}
			nvec_push(c, &body, p_stmt(c, in_loop));
		} else {
			unexpected(c, NULL);
			break;
		}
	}
	c->depth--;
	*nout = body.n;
	return body.v;
}

/* ------------------------------------------------------------------ compile API */

void jinja_options_init(jinja_options *o)
{
	memset(o, 0, sizeof *o);
	o->trim_blocks = 1;
	o->lstrip_blocks = 1;
}

jinja_template *jinja_compile(const char *src, size_t len, const char *name, const jinja_options *opts,
			      sft_error *err)
{
	jinja_template *t = calloc(1, sizeof *t);
	if (!t) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	if (opts)
		t->opts = *opts;
	else
		jinja_options_init(&t->opts);
	if (!t->opts.max_output)
		t->opts.max_output = (size_t)64 << 20;
	if (!t->opts.max_memory)
		t->opts.max_memory = (size_t)1 << 30;
	if (!t->opts.max_depth)
		t->opts.max_depth = 200;
	if (!t->opts.max_steps)
		t->opts.max_steps = 100000000LL;
	t->name = strdup(name ? name : "<template>");
	/* normalise newlines (\r\n and \r become \n) and drop one trailing newline, as jinja2 */
	char *s = arena_try_alloc(&t->ar, len + 1);
	if (!s || !t->name) {
		jinja_free(t);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	size_t k = 0;
	for (size_t i = 0; i < len; i++) {
		if (src[i] == '\r') {
			s[k++] = '\n';
			if (i + 1 < len && src[i + 1] == '\n')
				i++;
		} else
			s[k++] = src[i];
	}
	if (!t->opts.keep_trailing_newline && k > 0 && s[k - 1] == '\n')
		k--;
	s[k] = 0;
	compiler c = {.ar = &t->ar, .src = s, .len = k, .name = t->name, .opts = &t->opts, .err = err, .tpl = t};
	if (lex(&c) < 0) {
		jinja_free(t);
		return NULL;
	}
	t->body = p_body(&c, NULL, &t->n, 0);
	if (c.failed) {
		jinja_free(t);
		return NULL;
	}
	return t;
}

void jinja_free(jinja_template *t)
{
	if (!t)
		return;
	arena_free_all(&t->ar);
	free(t->name);
	free(t);
}

int jinja_has_generation(const jinja_template *t)
{
	return t && t->has_generation;
}

/* ------------------------------------------------------------------ render state */

typedef struct sbuf {
	char *p;
	size_t n, cap;
} sbuf;

typedef struct var {
	const char *name;
	size_t n;
	jv v;
} var;

typedef struct frame {
	struct frame *parent;
	var *vars;
	size_t n, cap;
} frame;

enum { F_GLOBAL, F_METHOD, F_MACRO, F_CALLER, F_LOOPCYCLE, F_JOINER, F_UNSAFE };

typedef struct jfunc {
	int kind, id;
	jv self;
	const node *def; /* macro / call block */
	frame *closure;
	long state; /* joiner */
	const char *sep;
	size_t nsep;
} jfunc;

typedef struct jloop {
	size_t i, n;
	jv *items;
} jloop;

#define MAX_CAPS 512

typedef struct R {
	const jinja_template *t;
	arena ar;
	jmp_buf jb;
	sft_error *err;
	sbuf top;
	sbuf *out;
	int ncaps;
	jinja_span *spans;
	size_t nspans, capspans;
	long long steps;
	int depth;
	const json_t *ctx; /* top-level variables, converted on first use into ctx_cache */
	jdict *ctx_cache;
	frame *root;
	jv hole;
	int strict;
	int pdepth; /* nesting of put_str/py_cmp on containers */
	size_t top_phys; /* allocated size of top.p (a reused buffer can be larger than top.cap,
			  * which grows as for a fresh buffer so limits are checked alike) */
	sbuf *caps[MAX_CAPS]; /* not cleared at render start (only [0, ncaps) is used) */
	/* kept between renders of one thread (see rstate_get): the output buffer of the last
	 * render, reused as the next one's */
	char *scratch;
	size_t scratch_cap;
	int owned; /* the calling thread's cached block (freed at thread exit) */
} R;

static void rfail(R *r, const node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));
static void rfail(R *r, const node *n, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	sft_error_set(r->err, SFT_EXIT_DATA, "%s:%d:%d: %s", r->t->name, n ? n->line : 0, n ? n->col : 0, msg);
	longjmp(r->jb, 1);
}

static void *ralloc(R *r, size_t n)
{
	void *p = arena_try_alloc(&r->ar, n);
	if (!p)
		rfail(r, NULL, "render memory limit exceeded");
	return p;
}

static void sb_grow(R *r, sbuf *b, size_t need)
{
	if (b->n + need + 1 <= b->cap)
		return;
	if (b->n + need > r->t->opts.max_output)
		rfail(r, NULL, "output size limit (%zu bytes) exceeded", r->t->opts.max_output);
	size_t nc = b->cap ? b->cap * 2 : (b == &r->top ? 4096 : 256);
	while (nc < b->n + need + 1)
		nc *= 2;
	if (b == &r->top && nc <= r->top_phys) {
		b->cap = nc;
		return;
	}
	char *np = realloc(b->p, nc);
	if (!np)
		rfail(r, NULL, "out of memory");
	b->p = np;
	b->cap = nc;
	if (b == &r->top)
		r->top_phys = nc;
}

static inline void sb_put(R *r, sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		if (!n)
			return;
		sb_grow(r, b, n);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
}
static void sb_puts(R *r, sbuf *b, const char *s) { sb_put(r, b, s, strlen(s)); }
static inline void sb_putc(R *r, sbuf *b, char ch)
{
	if (b->n + 2 > b->cap)
		sb_grow(r, b, 1);
	b->p[b->n++] = ch;
}

static void sb_printf(R *r, sbuf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sb_printf(R *r, sbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (k >= 0 && (size_t)k < sizeof tmp) {
		sb_put(r, b, tmp, (size_t)k);
		return;
	}
	sb_grow(r, b, (size_t)k + 1);
	va_start(ap, fmt);
	vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
	va_end(ap);
	b->n += (size_t)k;
}

/* scratch buffers: tracked so an error unwinding through longjmp frees them */
static sbuf *cap_begin(R *r, const node *n)
{
	if (r->ncaps >= MAX_CAPS || r->ncaps >= r->t->opts.max_depth * 2)
		rfail(r, n, "maximum nesting depth exceeded");
	sbuf *b = ralloc(r, sizeof *b);
	memset(b, 0, sizeof *b);
	r->caps[r->ncaps++] = b;
	return b;
}

/* ends the innermost scratch buffer and returns its contents as an arena string */
static jv cap_end(R *r, sbuf *b)
{
	jv v = {.t = T_STR};
	char *s = ralloc(r, b->n + 1);
	if (b->n)
		memcpy(s, b->p, b->n);
	s[b->n] = 0;
	v.s = s;
	v.n = b->n;
	free(b->p);
	b->p = NULL;
	r->ncaps--;
	return v;
}

static jv mkstr(R *r, const char *s, size_t n)
{
	jv v = {.t = T_STR, .n = n};
	char *p = ralloc(r, n + 1);
	if (n)
		memcpy(p, s, n);
	p[n] = 0;
	v.s = p;
	return v;
}
static jv cstr(const char *s)
{
	jv v = {.t = T_STR, .n = strlen(s), .s = s};
	return v;
}
static jv mkint(int64_t i)
{
	jv v = {.t = T_INT, .i = i};
	return v;
}
static jv mkfloat(double f)
{
	jv v = {.t = T_FLOAT, .f = f};
	return v;
}
static jv mkbool(int b)
{
	jv v = {.t = T_BOOL, .i = b ? 1 : 0};
	return v;
}
static jlist *mklist(R *r, size_t n)
{
	size_t hdr = (sizeof(jlist) + 15) & ~(size_t)15;
	jlist *l = ralloc(r, hdr + n * sizeof(jv));
	l->n = n;
	l->v = n ? (jv *)((char *)l + hdr) : NULL;
	return l;
}
static jv listv(jlist *l, int tuple)
{
	jv v = {.t = (uint8_t)(tuple ? T_TUPLE : T_LIST), .l = l};
	return v;
}
static jdict *mkdict(R *r, size_t cap)
{
	/* one allocation: header, keys, values */
	size_t hdr = (sizeof(jdict) + 15) & ~(size_t)15;
	jdict *d = ralloc(r, hdr + 2 * cap * sizeof(jv));
	d->n = 0;
	d->cap = cap;
	d->k = cap ? (jv *)((char *)d + hdr) : NULL;
	d->v = cap ? d->k + cap : NULL;
	return d;
}

static int py_eq(const jv *a, const jv *b);

static jv *dict_find(jdict *d, const jv *k)
{
	if (k->t == T_STR) {
		for (size_t i = 0; i < d->n; i++)
			if (d->k[i].t == T_STR && d->k[i].n == k->n && (!k->n || d->k[i].s[0] == k->s[0]) &&
			    memcmp(d->k[i].s, k->s, k->n) == 0)
				return &d->v[i];
		return NULL;
	}
	for (size_t i = 0; i < d->n; i++)
		if (py_eq(&d->k[i], k))
			return &d->v[i];
	return NULL;
}
static jv *dict_finds(jdict *d, const char *s, size_t n)
{
	jv k = {.t = T_STR, .s = s, .n = n};
	return dict_find(d, &k);
}

static void dict_set(R *r, jdict *d, jv k, jv v)
{
	/* the key scan is linear: charge it to the step budget so huge dicts cannot stall */
	r->steps += (long long)d->n;
	if (r->steps > r->t->opts.max_steps)
		rfail(r, NULL, "evaluation step limit exceeded");
	jv *e = dict_find(d, &k);
	if (e) {
		*e = v;
		return;
	}
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 4;
		jv *nk = ralloc(r, nc * sizeof(jv)), *nv = ralloc(r, nc * sizeof(jv));
		if (d->n) {
			memcpy(nk, d->k, d->n * sizeof(jv));
			memcpy(nv, d->v, d->n * sizeof(jv));
		}
		d->k = nk;
		d->v = nv;
		d->cap = nc;
	}
	d->k[d->n] = k;
	d->v[d->n] = v;
	d->n++;
}

static jv from_json(R *r, const json_t *j)
{
	jv v = V_NONE;
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		jdict *d = mkdict(r, json_object_size(j));
		for (void *it = json_object_iter((json_t *)j); it; it = json_object_iter_next((json_t *)j, it)) {
			d->k[d->n].t = T_STR;
			d->k[d->n].s = json_object_iter_key(it);
			d->k[d->n].n = json_object_iter_key_len(it);
			d->v[d->n] = from_json(r, json_object_iter_value(it));
			d->n++;
		}
		v.t = T_DICT;
		v.d = d;
		break;
	}
	case JSON_ARRAY: {
		jlist *l = mklist(r, json_array_size(j));
		for (size_t i = 0; i < l->n; i++)
			l->v[i] = from_json(r, json_array_get(j, i));
		v = listv(l, 0);
		break;
	}
	case JSON_STRING:
		v.t = T_STR;
		v.s = json_string_value(j);
		v.n = json_string_length(j);
		break;
	case JSON_INTEGER:
		v = mkint(json_integer_value(j));
		break;
	case JSON_REAL:
		v = mkfloat(json_real_value(j));
		break;
	case JSON_TRUE:
		v = mkbool(1);
		break;
	case JSON_FALSE:
		v = mkbool(0);
		break;
	case JSON_NULL:
		break;
	}
	return v;
}

static const char *type_name(const jv *v)
{
	switch (v->t) {
	case T_UNDEF: return "Undefined";
	case T_NONE: return "NoneType";
	case T_BOOL: return "bool";
	case T_INT: return "int";
	case T_FLOAT: return "float";
	case T_STR: return "str";
	case T_LIST: return "list";
	case T_GEN: return "generator";
	case T_TUPLE: return "tuple";
	case T_DICT: return "dict";
	case T_NS: return "Namespace";
	case T_FUNC: return "function";
	case T_LOOP: return "LoopContext";
	}
	return "object";
}

static void undef_fail(R *r, const node *n, const jv *u)
{
	if (u->unsafe)
		rfail(r, n, "access to attribute '%.*s' is unsafe", (int)u->n, u->s ? u->s : "");
	if (u->s)
		rfail(r, n, "'%.*s' is undefined", (int)u->n, u->s);
	rfail(r, n, "undefined value");
}

static void fmt_float(double d, char *buf, size_t cap)
{
	if (isnan(d))
		snprintf(buf, cap, "nan");
	else if (isinf(d))
		snprintf(buf, cap, d < 0 ? "-inf" : "inf");
	else
		json_format_double(d, buf, cap);
}

static void put_repr_str(R *r, sbuf *b, const char *s, size_t n)
{
	int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
	char q = has_sq && !has_dq ? '"' : '\'';
	sb_putc(r, b, q);
	size_t i = 0;
	while (i < n) {
		uint32_t cp;
		size_t k = utf8_dec(s, n, i, &cp);
		if (cp == (uint32_t)q || cp == '\\') {
			sb_putc(r, b, '\\');
			sb_putc(r, b, (char)cp);
		} else if (cp == '\n')
			sb_puts(r, b, "\\n");
		else if (cp == '\r')
			sb_puts(r, b, "\\r");
		else if (cp == '\t')
			sb_puts(r, b, "\\t");
		else if (cp < 0x20 || cp == 0x7f)
			sb_printf(r, b, "\\x%02x", cp);
		else if (cp >= 0x80) {
			utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
			int printable = !(cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
					  cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CO ||
					  cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_ZL ||
					  cat == UTF8PROC_CATEGORY_ZP || cat == UTF8PROC_CATEGORY_ZS);
			if (k == 1 && cp >= 0x80 && cp < 0x100 && ((unsigned char)s[i] >= 0x80))
				printable = printable && 1;
			if (printable)
				sb_put(r, b, s + i, k);
			else if (cp < 0x100)
				sb_printf(r, b, "\\x%02x", cp);
			else if (cp < 0x10000)
				sb_printf(r, b, "\\u%04x", cp);
			else
				sb_printf(r, b, "\\U%08x", cp);
		} else
			sb_putc(r, b, (char)cp);
		i += k;
	}
	sb_putc(r, b, q);
}

static void put_str(R *r, sbuf *b, const jv *v, const node *at);

static void put_repr(R *r, sbuf *b, const jv *v, const node *at)
{
	if (v->t == T_STR)
		put_repr_str(r, b, v->s, v->n);
	else
		put_str(r, b, v, at);
}

/* Python str() */
static void put_str(R *r, sbuf *b, const jv *v, const node *at)
{
	char num[64];
	switch (v->t) {
	case T_UNDEF:
		if (r->strict)
			undef_fail(r, at, v);
		return;
	case T_NONE: sb_put(r, b, "None", 4); return;
	case T_BOOL: sb_puts(r, b, v->i ? "True" : "False"); return;
	case T_INT: sb_printf(r, b, "%lld", (long long)v->i); return;
	case T_FLOAT:
		fmt_float(v->f, num, sizeof num);
		sb_puts(r, b, num);
		return;
	case T_STR: sb_put(r, b, v->s, v->n); return;
	case T_LIST:
	case T_TUPLE:
		if (++r->pdepth > 1000)
			rfail(r, at, "maximum recursion depth exceeded while printing");
		sb_putc(r, b, v->t == T_LIST ? '[' : '(');
		for (size_t i = 0; i < v->l->n; i++) {
			if (i)
				sb_put(r, b, ", ", 2);
			put_repr(r, b, &v->l->v[i], at);
		}
		r->pdepth--;
		if (v->t == T_TUPLE && v->l->n == 1)
			sb_putc(r, b, ',');
		sb_putc(r, b, v->t == T_LIST ? ']' : ')');
		return;
	case T_DICT:
		if (++r->pdepth > 1000)
			rfail(r, at, "maximum recursion depth exceeded while printing");
		sb_putc(r, b, '{');
		for (size_t i = 0; i < v->d->n; i++) {
			if (i)
				sb_put(r, b, ", ", 2);
			put_repr(r, b, &v->d->k[i], at);
			sb_put(r, b, ": ", 2);
			put_repr(r, b, &v->d->v[i], at);
		}
		sb_putc(r, b, '}');
		r->pdepth--;
		return;
	case T_NS:
		if (++r->pdepth > 100)
			rfail(r, at, "maximum recursion depth exceeded while printing");
		sb_puts(r, b, "<Namespace {");
		for (size_t i = 0; i < v->d->n; i++) {
			if (i)
				sb_put(r, b, ", ", 2);
			put_repr(r, b, &v->d->k[i], at);
			sb_put(r, b, ": ", 2);
			put_repr(r, b, &v->d->v[i], at);
		}
		sb_puts(r, b, "}>");
		r->pdepth--;
		return;
	case T_FUNC:
		if (v->fn->kind == F_MACRO)
			sb_printf(r, b, "<Macro '%.*s'>", (int)v->fn->def->nlen, v->fn->def->name);
		else if (v->fn->kind == F_CALLER)
			sb_puts(r, b, "<Macro 'caller'>");
		else
			sb_puts(r, b, "<function>");
		return;
	case T_GEN: sb_puts(r, b, "<generator object>"); return;
	case T_LOOP: sb_puts(r, b, "<LoopContext>"); return;
	}
}

/* str(v) as a value (no copy for strings) */
static jv to_strv(R *r, const jv *v, const node *at)
{
	if (v->t == T_STR)
		return *v;
	if (v->t == T_UNDEF && !r->strict)
		return cstr("");
	sbuf *b = cap_begin(r, at);
	put_str(r, b, v, at);
	return cap_end(r, b);
}

static int truthy(R *r, const jv *v, const node *at)
{
	switch (v->t) {
	case T_UNDEF:
		if (r->strict)
			undef_fail(r, at, v);
		return 0;
	case T_NONE: return 0;
	case T_BOOL:
	case T_INT: return v->i != 0;
	case T_FLOAT: return v->f != 0.0;
	case T_STR: return v->n != 0;
	case T_LIST:
	case T_TUPLE: return v->l->n != 0;
	case T_DICT: return v->d->n != 0;
	default: return 1;
	}
}

static int is_num(const jv *v) { return v->t == T_INT || v->t == T_BOOL || v->t == T_FLOAT; }
static double num_f(const jv *v) { return v->t == T_FLOAT ? v->f : (double)v->i; }

/* Python ==; nesting deeper than Python's recursion limit compares unequal */
static int py_eq_d(const jv *a, const jv *b, int depth);
static int py_eq(const jv *a, const jv *b) { return py_eq_d(a, b, 0); }

static int py_eq_d(const jv *a, const jv *b, int depth)
{
	if (depth > 1000)
		return 0;
	if (is_num(a) && is_num(b)) {
		if (a->t != T_FLOAT && b->t != T_FLOAT)
			return a->i == b->i;
		return num_f(a) == num_f(b);
	}
	if (a->t != b->t) {
		if ((a->t == T_LIST || a->t == T_TUPLE) && (b->t == T_LIST || b->t == T_TUPLE))
			return 0;
		return 0;
	}
	switch (a->t) {
	case T_UNDEF:
	case T_NONE: return 1;
	case T_STR: return a->n == b->n && memcmp(a->s, b->s, a->n) == 0;
	case T_LIST:
	case T_TUPLE:
		if (a->l->n != b->l->n)
			return 0;
		for (size_t i = 0; i < a->l->n; i++)
			if (!py_eq_d(&a->l->v[i], &b->l->v[i], depth + 1))
				return 0;
		return 1;
	case T_DICT:
		if (a->d->n != b->d->n)
			return 0;
		for (size_t i = 0; i < a->d->n; i++) {
			jv *o = dict_find(b->d, &a->d->k[i]);
			if (!o || !py_eq_d(&a->d->v[i], o, depth + 1))
				return 0;
		}
		return 1;
	case T_NS: return a->d == b->d;
	case T_FUNC: return a->fn == b->fn;
	case T_LOOP: return a->loop == b->loop;
	case T_GEN: return a->l == b->l;
	}
	return 0;
}

/* Python ordering; errors where Python raises TypeError */
static int py_cmp(R *r, const jv *a, const jv *b, const node *at)
{
	if (is_num(a) && is_num(b)) {
		if (a->t != T_FLOAT && b->t != T_FLOAT)
			return a->i < b->i ? -1 : a->i > b->i;
		double x = num_f(a), y = num_f(b);
		return x < y ? -1 : x > y;
	}
	if (a->t == T_STR && b->t == T_STR) {
		size_t m = a->n < b->n ? a->n : b->n;
		int c = memcmp(a->s, b->s, m);
		if (c)
			return c < 0 ? -1 : 1;
		return a->n < b->n ? -1 : a->n > b->n;
	}
	if (a->t == b->t && (a->t == T_LIST || a->t == T_TUPLE)) {
		size_t m = a->l->n < b->l->n ? a->l->n : b->l->n;
		for (size_t i = 0; i < m; i++) {
			if (py_eq(&a->l->v[i], &b->l->v[i]))
				continue;
			if (++r->pdepth > 1000)
				rfail(r, at, "maximum recursion depth exceeded in comparison");
			int c = py_cmp(r, &a->l->v[i], &b->l->v[i], at);
			r->pdepth--;
			return c;
		}
		return a->l->n < b->l->n ? -1 : a->l->n > b->l->n;
	}
	if (a->t == T_UNDEF)
		undef_fail(r, at, a);
	if (b->t == T_UNDEF)
		undef_fail(r, at, b);
	rfail(r, at, "'<' not supported between instances of '%s' and '%s'", type_name(a), type_name(b));
}

/* iterate: returns items of an iterable as an array (strings: code points) */
static jlist *iter_list(R *r, const jv *v, const node *at)
{
	switch (v->t) {
	case T_LIST:
	case T_GEN:
	case T_TUPLE: return v->l;
	case T_DICT: {
		jlist *l = mklist(r, v->d->n);
		for (size_t i = 0; i < v->d->n; i++)
			l->v[i] = v->d->k[i];
		return l;
	}
	case T_STR: {
		size_t cnt = utf8_len(v->s, v->n) + 1;
		jlist *l = mklist(r, cnt);
		size_t i = 0, k = 0;
		while (i < v->n && k < cnt) {
			size_t w = utf8_next(v->s, v->n, i) - i;
			l->v[k].t = T_STR;
			l->v[k].s = v->s + i;
			l->v[k].n = w;
			k++;
			i += w;
		}
		l->n = k;
		return l;
	}
	case T_UNDEF:
		if (r->strict)
			undef_fail(r, at, v);
		return mklist(r, 0);
	default:
		rfail(r, at, "'%s' object is not iterable", type_name(v));
	}
}

static size_t py_len(R *r, const jv *v, const node *at)
{
	switch (v->t) {
	case T_STR: return utf8_len(v->s, v->n);
	case T_LIST:
	case T_TUPLE: return v->l->n;
	case T_DICT: return v->d->n;
	case T_UNDEF:
		if (r->strict)
			undef_fail(r, at, v);
		return 0;
	default: rfail(r, at, "object of type '%s' has no len()", type_name(v));
	}
}

/* ------------------------------------------------------------------ arithmetic */

#define T_MISSING 0xff

static void need_defined(R *r, const jv *v, const node *at)
{
	if (v->t == T_UNDEF)
		undef_fail(r, at, v);
}

static jv concat_seq(R *r, const jv *a, const jv *b)
{
	jlist *l = mklist(r, a->l->n + b->l->n);
	if (a->l->n)
		memcpy(l->v, a->l->v, a->l->n * sizeof(jv));
	if (b->l->n)
		memcpy(l->v + a->l->n, b->l->v, b->l->n * sizeof(jv));
	return listv(l, a->t == T_TUPLE);
}

static jv str_cat(R *r, const jv *a, const jv *b)
{
	jv v = {.t = T_STR, .n = a->n + b->n};
	char *p = ralloc(r, v.n + 1);
	memcpy(p, a->s, a->n);
	memcpy(p + a->n, b->s, b->n);
	p[v.n] = 0;
	v.s = p;
	return v;
}

static jv repeat(R *r, const jv *seq, int64_t k, const node *at)
{
	if (k < 0)
		k = 0;
	if ((seq->t == T_STR ? seq->n : seq->l->n) == 0)
		k = 0; /* empty * k is empty: no k-step loop */
	if (seq->t == T_STR) {
		if (seq->n && (uint64_t)k > r->t->opts.max_output / seq->n)
			rfail(r, at, "string repetition too large");
		sbuf b = {0};
		jv v = {.t = T_STR, .n = seq->n * (size_t)k};
		char *p = ralloc(r, v.n + 1);
		for (int64_t i = 0; i < k; i++)
			memcpy(p + (size_t)i * seq->n, seq->s, seq->n);
		p[v.n] = 0;
		v.s = p;
		(void)b;
		return v;
	}
	if (seq->l->n && (uint64_t)k > (1u << 24) / seq->l->n)
		rfail(r, at, "list repetition too large");
	jlist *l = mklist(r, seq->l->n * (size_t)k);
	for (int64_t i = 0; i < k; i++)
		if (seq->l->n)
			memcpy(l->v + (size_t)i * seq->l->n, seq->l->v, seq->l->n * sizeof(jv));
	return listv(l, seq->t == T_TUPLE);
}

static jv py_mod_format(R *r, const jv *fmt, const jv *args, const node *at);

/* int(f) for finite f; beyond 64 bits Python would make a big integer: an error here */
static int64_t float_to_int(R *r, double f, const node *at)
{
	if (!(f > -9.2e18 && f < 9.2e18))
		rfail(r, at, isnan(f) || isinf(f) ? "cannot convert float %g to integer" : "integer overflow (%g)", f);
	return (int64_t)f;
}
static jv html_escape(R *r, const jv *s);

static const char *op_sym(int op)
{
	static const char *s[] = {"?", "+", "-", "*", "/", "//", "%", "**", "~"};
	return op <= OP_CONCAT ? s[op] : "?";
}

static jv binop(R *r, int op, const jv *a, const jv *b, const node *at)
{
	if (op == OP_CONCAT) {
		jv x = to_strv(r, a, at), y = to_strv(r, b, at);
		return str_cat(r, &x, &y);
	}
	need_defined(r, a, at);
	need_defined(r, b, at);
	if (is_num(a) && is_num(b)) {
		int ints = a->t != T_FLOAT && b->t != T_FLOAT;
		int64_t x = a->i, y = b->i, z;
		double fx = num_f(a), fy = num_f(b);
		switch (op) {
		case OP_ADD:
			if (ints) {
				if (__builtin_add_overflow(x, y, &z))
					rfail(r, at, "integer overflow");
				return mkint(z);
			}
			return mkfloat(fx + fy);
		case OP_SUB:
			if (ints) {
				if (__builtin_sub_overflow(x, y, &z))
					rfail(r, at, "integer overflow");
				return mkint(z);
			}
			return mkfloat(fx - fy);
		case OP_MUL:
			if (ints) {
				if (__builtin_mul_overflow(x, y, &z))
					rfail(r, at, "integer overflow");
				return mkint(z);
			}
			return mkfloat(fx * fy);
		case OP_DIV:
			if (fy == 0)
				rfail(r, at, "division by zero");
			return mkfloat(fx / fy);
		case OP_FLOORDIV:
			if (fy == 0)
				rfail(r, at, "integer division or modulo by zero");
			if (ints) {
				if (x == INT64_MIN && y == -1)
					rfail(r, at, "integer overflow");
				int64_t q = x / y;
				if ((x % y != 0) && ((x < 0) != (y < 0)))
					q--;
				return mkint(q);
			}
			return mkfloat(floor(fx / fy));
		case OP_MOD:
			if (fy == 0)
				rfail(r, at, "integer division or modulo by zero");
			if (ints) {
				if (y == -1)
					return mkint(0);
				int64_t m = x % y;
				if (m != 0 && ((m < 0) != (y < 0)))
					m += y;
				return mkint(m);
			} else {
				double m = fmod(fx, fy);
				if (m != 0 && ((m < 0) != (fy < 0)))
					m += fy;
				return mkfloat(m);
			}
		case OP_POW:
			if (ints && y >= 0) {
				int64_t acc = 1;
				for (int64_t i = 0; i < y; i++) {
					if (__builtin_mul_overflow(acc, x, &acc))
						rfail(r, at, "integer overflow");
					if (acc == 0 || acc == 1)
						break;
				}
				if (acc == 1 && x == -1)
					acc = (y % 2) ? -1 : 1;
				return mkint(acc);
			}
			if (fx == 0 && fy < 0)
				rfail(r, at, "zero to a negative power");
			return mkfloat(pow(fx, fy));
		}
	}
	if (op == OP_ADD) {
		if (a->t == T_STR && b->t == T_STR) {
			if (a->mk == b->mk) {
				jv res = str_cat(r, a, b);
				res.mk = a->mk;
				return res;
			}
			/* markupsafe: Markup + str escapes the plain operand */
			jv x = a->mk ? *a : html_escape(r, a), y = b->mk ? *b : html_escape(r, b);
			jv res = str_cat(r, &x, &y);
			res.mk = 1;
			return res;
		}
		if ((a->t == T_LIST && b->t == T_LIST) || (a->t == T_TUPLE && b->t == T_TUPLE))
			return concat_seq(r, a, b);
	}
	if (op == OP_MUL) {
		if ((a->t == T_STR || a->t == T_LIST || a->t == T_TUPLE) && (b->t == T_INT || b->t == T_BOOL))
			return repeat(r, a, b->i, at);
		if ((b->t == T_STR || b->t == T_LIST || b->t == T_TUPLE) && (a->t == T_INT || a->t == T_BOOL))
			return repeat(r, b, a->i, at);
	}
	if (op == OP_MOD && a->t == T_STR)
		return py_mod_format(r, a, b, at);
	rfail(r, at, "unsupported operand type(s) for %s: '%s' and '%s'", op_sym(op), type_name(a), type_name(b));
}

/* ------------------------------------------------------------------ attribute access */

enum {
	/* str methods */
	M_STRIP = 1, M_LSTRIP, M_RSTRIP, M_SPLIT, M_RSPLIT, M_STARTSWITH, M_ENDSWITH, M_UPPER, M_LOWER,
	M_REPLACE, M_FORMAT, M_FIND, M_RFIND, M_COUNT, M_TITLE, M_CAPITALIZE, M_ISDIGIT, M_ISALPHA,
	M_ISSPACE, M_ISALNUM, M_ISUPPER, M_ISLOWER, M_SPLITLINES, M_JOIN, M_INDEX, M_RINDEX, M_ZFILL,
	M_LJUST, M_RJUST, M_CENTER, M_REMOVEPREFIX, M_REMOVESUFFIX, M_SWAPCASE, M_ISNUMERIC,
	M_ISDECIMAL, M_CASEFOLD, M_PARTITION, M_RPARTITION,
	/* dict */
	M_GET, M_ITEMS, M_KEYS, M_VALUES, M_COPY,
	/* list */
	M_LINDEX, M_LCOUNT, M_LCOPY,
};

typedef struct mname {
	const char *name;
	int id;
} mname;

static const mname str_methods[] = {
	{"strip", M_STRIP}, {"lstrip", M_LSTRIP}, {"rstrip", M_RSTRIP}, {"split", M_SPLIT},
	{"rsplit", M_RSPLIT}, {"startswith", M_STARTSWITH}, {"endswith", M_ENDSWITH}, {"upper", M_UPPER},
	{"lower", M_LOWER}, {"replace", M_REPLACE}, {"format", M_FORMAT}, {"find", M_FIND},
	{"rfind", M_RFIND}, {"count", M_COUNT}, {"title", M_TITLE}, {"capitalize", M_CAPITALIZE},
	{"isdigit", M_ISDIGIT}, {"isalpha", M_ISALPHA}, {"isspace", M_ISSPACE}, {"isalnum", M_ISALNUM},
	{"isupper", M_ISUPPER}, {"islower", M_ISLOWER}, {"splitlines", M_SPLITLINES}, {"join", M_JOIN},
	{"index", M_INDEX}, {"rindex", M_RINDEX}, {"zfill", M_ZFILL}, {"ljust", M_LJUST},
	{"rjust", M_RJUST}, {"center", M_CENTER}, {"removeprefix", M_REMOVEPREFIX},
	{"removesuffix", M_REMOVESUFFIX}, {"swapcase", M_SWAPCASE}, {"isnumeric", M_ISNUMERIC},
	{"isdecimal", M_ISDECIMAL}, {"casefold", M_CASEFOLD}, {"partition", M_PARTITION},
	{"rpartition", M_RPARTITION}, {NULL, 0}};
static const mname dict_methods[] = {
	{"get", M_GET}, {"items", M_ITEMS}, {"keys", M_KEYS}, {"values", M_VALUES}, {"copy", M_COPY}, {NULL, 0}};
static const char *const dict_unsafe[] = {"pop", "popitem", "setdefault", "update", "clear", NULL};
static const mname list_methods[] = {{"index", M_LINDEX}, {"count", M_LCOUNT}, {"copy", M_LCOPY}, {NULL, 0}};
static const char *const list_unsafe[] = {"append", "extend", "insert", "pop", "remove", "reverse", "sort",
					  "clear", NULL};

static int name_eq(const char *a, size_t an, const char *b)
{
	return an && b[0] == a[0] && strlen(b) == an && memcmp(a, b, an) == 0;
}

static int find_method(const mname *t, const char *s, size_t n)
{
	for (; t->name; t++)
		if (t->name[0] == s[0] && name_eq(s, n, t->name))
			return t->id;
	return 0;
}

static jv mkmethod(R *r, int id, const jv *self)
{
	jfunc *f = ralloc(r, sizeof *f);
	memset(f, 0, sizeof *f);
	f->kind = F_METHOD;
	f->id = id;
	f->self = *self;
	jv v = {.t = T_FUNC, .fn = f};
	return v;
}

static jv undef_named(const char *s, size_t n)
{
	jv u = {.t = T_UNDEF, .s = s, .n = n};
	return u;
}

static jv loop_attr(R *r, jloop *lp, const char *s, size_t n, const node *at)
{
	(void)at;
	if (name_eq(s, n, "index"))
		return mkint((int64_t)lp->i + 1);
	if (name_eq(s, n, "index0"))
		return mkint((int64_t)lp->i);
	if (name_eq(s, n, "revindex"))
		return mkint((int64_t)(lp->n - lp->i));
	if (name_eq(s, n, "revindex0"))
		return mkint((int64_t)(lp->n - lp->i - 1));
	if (name_eq(s, n, "first"))
		return mkbool(lp->i == 0);
	if (name_eq(s, n, "last"))
		return mkbool(lp->i + 1 == lp->n);
	if (name_eq(s, n, "length"))
		return mkint((int64_t)lp->n);
	if (name_eq(s, n, "depth"))
		return mkint(1);
	if (name_eq(s, n, "depth0"))
		return mkint(0);
	if (name_eq(s, n, "previtem"))
		return lp->i > 0 ? lp->items[lp->i - 1] : undef_named("previtem", 8);
	if (name_eq(s, n, "nextitem"))
		return lp->i + 1 < lp->n ? lp->items[lp->i + 1] : undef_named("nextitem", 8);
	if (name_eq(s, n, "cycle")) {
		jfunc *f = ralloc(r, sizeof *f);
		memset(f, 0, sizeof *f);
		f->kind = F_LOOPCYCLE;
		f->self.t = T_LOOP;
		f->self.loop = lp;
		jv v = {.t = T_FUNC, .fn = f};
		return v;
	}
	return undef_named(s, n);
}

static jv unsafe_undef(const char *s, size_t n)
{
	jv u = {.t = T_UNDEF, .unsafe = 1, .s = s, .n = n};
	return u;
}

/* Python attribute lookup only (no item fallback); sets *found */
static jv py_attr(R *r, const jv *obj, const char *s, size_t n, int *found)
{
	int id;
	*found = 1;
	switch (obj->t) {
	case T_STR:
		if ((id = find_method(str_methods, s, n)))
			return mkmethod(r, id, obj);
		break;
	case T_DICT:
		/* fast exit: dict attribute names are 3..10 bytes starting with one of "cgikpsuv" */
		if (n < 3 || n > 10)
			break;
		switch (s[0]) {
		case 'c': case 'g': case 'i': case 'k': case 'p': case 's': case 'u': case 'v': break;
		default: goto not_found;
		}
		if ((id = find_method(dict_methods, s, n)))
			return mkmethod(r, id, obj);
		for (int i = 0; dict_unsafe[i]; i++)
			if (name_eq(s, n, dict_unsafe[i]))
				return unsafe_undef(s, n);
		break;
	case T_LIST:
	case T_TUPLE:
		if ((id = find_method(list_methods, s, n)))
			return mkmethod(r, id, obj);
		if (obj->t == T_LIST)
			for (int i = 0; list_unsafe[i]; i++)
				if (name_eq(s, n, list_unsafe[i]))
					return unsafe_undef(s, n);
		break;
	case T_NS: {
		jv *v = dict_finds(obj->d, s, n);
		if (v)
			return *v;
		break;
	}
	case T_LOOP: {
		jv v = loop_attr(r, obj->loop, s, n, NULL);
		if (v.t != T_UNDEF)
			return v;
		break;
	}
	}
not_found:
	*found = 0;
	return undef_named(s, n);
}

static jv get_index(R *r, const jv *obj, const jv *key, const node *at, int *found);

/* obj.name (jinja2 sandbox getattr: attribute first, then item) */
static jv get_attr(R *r, const jv *obj, const char *s, size_t n, const node *at)
{
	if (obj->t == T_UNDEF)
		undef_fail(r, at, obj);
	int found;
	jv v = py_attr(r, obj, s, n, &found);
	if (found)
		return v;
	if (obj->t == T_DICT) {
		jv *x = dict_finds(obj->d, s, n);
		if (x)
			return *x;
	}
	return undef_named(s, n);
}

static int64_t norm_index(int64_t i, size_t len, int *ok)
{
	if (i < 0)
		i += (int64_t)len;
	*ok = i >= 0 && (uint64_t)i < len;
	return i;
}

/* obj[key] (jinja2 getitem: item first, then attribute for string keys) */
static jv get_index(R *r, const jv *obj, const jv *key, const node *at, int *found)
{
	if (obj->t == T_UNDEF)
		undef_fail(r, at, obj);
	*found = 1;
	if (obj->t == T_DICT) {
		jv *x = dict_find(obj->d, key);
		if (x)
			return *x;
	} else if ((obj->t == T_LIST || obj->t == T_TUPLE) && (key->t == T_INT || key->t == T_BOOL)) {
		int ok;
		int64_t i = norm_index(key->i, obj->l->n, &ok);
		if (ok)
			return obj->l->v[i];
	} else if (obj->t == T_STR && (key->t == T_INT || key->t == T_BOOL)) {
		int ok;
		if (is_ascii(obj->s, obj->n)) {
			int64_t i = norm_index(key->i, obj->n, &ok);
			if (ok)
				return mkstr(r, obj->s + i, 1);
		} else {
			int64_t i = norm_index(key->i, utf8_len(obj->s, obj->n), &ok);
			if (ok) {
				size_t o = utf8_off(obj->s, obj->n, (size_t)i), e = utf8_off(obj->s + o, obj->n - o, 1);
				return mkstr(r, obj->s + o, e);
			}
		}
	}
	if (key->t == T_STR) {
		int f;
		jv v = py_attr(r, obj, key->s, key->n, &f);
		if (f)
			return v;
		*found = 0;
		return undef_named(key->s, key->n);
	}
	*found = 0;
	return undef_named(NULL, 0);
}

static int64_t slice_arg(R *r, const jv *v, const node *at, int64_t dflt)
{
	if (v->t == T_NONE || v->t == T_MISSING)
		return dflt;
	if (v->t == T_INT || v->t == T_BOOL)
		return v->i;
	rfail(r, at, "slice indices must be integers or None");
}

static jv do_slice(R *r, const jv *obj, const jv *a, const jv *b, const jv *c, const node *at)
{
	if (obj->t == T_UNDEF)
		undef_fail(r, at, obj);
	int64_t step = slice_arg(r, c, at, 1);
	if (step == 0)
		rfail(r, at, "slice step cannot be zero");
	int ascii = obj->t == T_STR && is_ascii(obj->s, obj->n);
	int64_t len;
	if (obj->t == T_STR)
		len = ascii ? (int64_t)obj->n : (int64_t)utf8_len(obj->s, obj->n);
	else if (obj->t == T_LIST || obj->t == T_TUPLE)
		len = (int64_t)obj->l->n;
	else
		rfail(r, at, "'%s' object is not subscriptable", type_name(obj));
	int64_t start = slice_arg(r, a, at, step < 0 ? len - 1 : 0);
	int64_t stop = slice_arg(r, b, at, step < 0 ? -len - 1 : len);
	if (a->t != T_NONE && a->t != T_MISSING) {
		if (start < 0) {
			start += len;
			if (start < 0)
				start = step < 0 ? -1 : 0;
		} else if (start >= len)
			start = step < 0 ? len - 1 : len;
	}
	if (b->t != T_NONE && b->t != T_MISSING) {
		if (stop < 0) {
			stop += len;
			if (stop < 0)
				stop = step < 0 ? -1 : 0;
		} else if (stop >= len)
			stop = step < 0 ? len - 1 : len;
	} else if (step < 0)
		stop = -1;
	int64_t cnt = 0;
	if (step > 0 && start < stop)
		cnt = (stop - start - 1) / step + 1;
	else if (step < 0 && stop < start)
		cnt = (start - stop - 1) / (-step) + 1;
	if (obj->t == T_STR) {
		if (ascii && step == 1)
			return mkstr(r, obj->s + start, (size_t)cnt);
		/* code point offsets */
		size_t *off = ralloc(r, ((size_t)len + 1) * sizeof *off);
		size_t i = 0, k = 0;
		while (i < obj->n && k < (size_t)len) {
			off[k++] = i;
			i = utf8_next(obj->s, obj->n, i);
		}
		off[k] = obj->n;
		sbuf sb = {0};
		char *p = ralloc(r, obj->n + 1);
		size_t o = 0;
		for (int64_t j = 0; j < cnt; j++) {
			int64_t idx = start + j * step; /* |j * step| <= len: no overflow */
			size_t w = off[idx + 1] - off[idx];
			memcpy(p + o, obj->s + off[idx], w);
			o += w;
		}
		(void)sb;
		p[o] = 0;
		jv v = {.t = T_STR, .s = p, .n = o};
		return v;
	}
	jlist *l = mklist(r, (size_t)cnt);
	for (int64_t j = 0; j < cnt; j++)
		l->v[j] = obj->l->v[start + j * step];
	return listv(l, obj->t == T_TUPLE);
}

/* ------------------------------------------------------------------ call arguments */

typedef struct args {
	jv *pos;
	size_t np;
	const char **kn;
	size_t *kl;
	jv *kv;
	size_t nk;
} args;

/* Binds positional and keyword arguments to `params` (NULL-terminated); unfilled slots
 * get T_MISSING. Errors on unknown keywords or too many positional arguments. */
static void bind_args(R *r, const node *at, const char *fname, const args *a, const char *const *params, jv *out)
{
	size_t np = 0;
	while (params[np])
		np++;
	for (size_t i = 0; i < np; i++)
		out[i].t = T_MISSING;
	if (a->np > np)
		rfail(r, at, "%s() takes at most %zu arguments (%zu given)", fname, np, a->np);
	for (size_t i = 0; i < a->np; i++)
		out[i] = a->pos[i];
	for (size_t k = 0; k < a->nk; k++) {
		size_t i;
		for (i = 0; i < np; i++)
			if (name_eq(a->kn[k], a->kl[k], params[i]))
				break;
		if (i == np)
			rfail(r, at, "%s() got an unexpected keyword argument '%.*s'", fname, (int)a->kl[k], a->kn[k]);
		out[i] = a->kv[k];
	}
}

static int missing(const jv *v) { return v->t == T_MISSING; }

static jv need_str(R *r, const jv *v, const node *at, const char *what)
{
	if (v->t != T_STR)
		rfail(r, at, "%s must be str, not %s", what, type_name(v));
	return *v;
}

static int64_t need_int(R *r, const jv *v, const node *at, const char *what)
{
	if (v->t != T_INT && v->t != T_BOOL)
		rfail(r, at, "%s must be an integer, not %s", what, type_name(v));
	return v->i;
}

/* ------------------------------------------------------------------ string helpers */

typedef utf8proc_int32_t (*cpmap)(utf8proc_int32_t);

static jv map_case(R *r, const jv *s, int mode) /* 0 lower, 1 upper, 2 capitalize, 3 py title, 4 swapcase */
{
	char *p = ralloc(r, s->n * 2 + 8);
	size_t o = 0, i = 0;
	int prev_cased = 0, first = 1;
	while (i < s->n) {
		uint32_t cp;
		size_t k = utf8_dec(s->s, s->n, i, &cp);
		uint32_t m = cp;
		if (mode == 0)
			m = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
		else if (mode == 1)
			m = (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp);
		else if (mode == 2)
			m = first ? (uint32_t)utf8proc_totitle((utf8proc_int32_t)cp) : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
		else if (mode == 3) {
			int cased = utf8proc_tolower((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp ||
				    utf8proc_toupper((utf8proc_int32_t)cp) != (utf8proc_int32_t)cp;
			m = prev_cased ? (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp) : (uint32_t)utf8proc_totitle((utf8proc_int32_t)cp);
			prev_cased = cased;
		} else {
			uint32_t lo = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
			m = lo != cp ? lo : (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp);
		}
		first = 0;
		if (k == 1 && cp >= 0x80)
			p[o++] = s->s[i]; /* invalid byte: keep */
		else
			o += utf8_encode(m, p + o);
		i += k;
	}
	p[o] = 0;
	jv v = {.t = T_STR, .s = p, .n = o};
	return v;
}

static int in_chars(uint32_t cp, const jv *chars)
{
	if (!chars)
		return py_isspace(cp);
	size_t i = 0;
	while (i < chars->n) {
		uint32_t c;
		i += utf8_dec(chars->s, chars->n, i, &c);
		if (c == cp)
			return 1;
	}
	return 0;
}

static jv py_strip(const jv *s, const jv *chars, int left, int right)
{
	size_t b = 0, e = s->n;
	if (left)
		while (b < e) {
			uint32_t cp;
			size_t k = utf8_dec(s->s, e, b, &cp);
			if (!in_chars(cp, chars))
				break;
			b += k;
		}
	if (right)
		while (e > b) {
			size_t j = e - 1;
			while (j > b && ((unsigned char)s->s[j] & 0xc0) == 0x80)
				j--;
			uint32_t cp;
			utf8_dec(s->s, e, j, &cp);
			if (!in_chars(cp, chars))
				break;
			e = j;
		}
	jv v = {.t = T_STR, .s = s->s + b, .n = e - b};
	return v;
}

/* growable value list */
typedef struct vvec {
	jv *v;
	size_t n, cap;
} vvec;

static void vpush(R *r, vvec *x, jv v)
{
	if (x->n == x->cap) {
		size_t nc = x->cap ? x->cap * 2 : 8;
		jv *nv = ralloc(r, nc * sizeof(jv));
		if (x->n)
			memcpy(nv, x->v, x->n * sizeof(jv));
		x->v = nv;
		x->cap = nc;
	}
	x->v[x->n++] = v;
}

static jv vvec_list(R *r, vvec *x)
{
	jlist *l = ralloc(r, sizeof *l);
	l->n = x->n;
	l->v = x->v;
	return listv(l, 0);
}

static jv as_gen(jv v)
{
	v.t = T_GEN;
	return v;
}

static jv substr(const jv *s, size_t b, size_t e)
{
	jv v = {.t = T_STR, .s = s->s + b, .n = e - b};
	return v;
}

static jv py_split(R *r, const jv *s, const jv *sep, int64_t maxsplit, int rev, const node *at)
{
	vvec out = {0};
	if (!sep || sep->t == T_NONE) {
		/* whitespace split */
		if (!rev) {
			size_t i = 0;
			int64_t splits = 0;
			for (;;) {
				i += ws_prefix(s->s + i, s->n - i);
				if (i >= s->n)
					break;
				if (maxsplit >= 0 && splits >= maxsplit) {
					vpush(r, &out, substr(s, i, s->n)); /* Python keeps the remainder's trailing space */
					break;
				}
				size_t j = i;
				while (j < s->n) {
					uint32_t cp;
					size_t k = utf8_dec(s->s, s->n, j, &cp);
					if (py_isspace(cp))
						break;
					j += k;
				}
				vpush(r, &out, substr(s, i, j));
				splits++;
				i = j;
			}
		} else {
			size_t e = s->n;
			int64_t splits = 0;
			vvec tmp = {0};
			for (;;) {
				e -= ws_suffix(s->s, e);
				if (e == 0)
					break;
				if (maxsplit >= 0 && splits >= maxsplit) {
					vpush(r, &tmp, substr(s, 0, e));
					break;
				}
				size_t b = e;
				while (b > 0) {
					size_t j = b - 1;
					while (j > 0 && ((unsigned char)s->s[j] & 0xc0) == 0x80)
						j--;
					uint32_t cp;
					utf8_dec(s->s, b, j, &cp);
					if (py_isspace(cp))
						break;
					b = j;
				}
				vpush(r, &tmp, substr(s, b, e));
				splits++;
				e = b;
			}
			for (size_t i = tmp.n; i-- > 0;)
				vpush(r, &out, tmp.v[i]);
		}
		return vvec_list(r, &out);
	}
	jv sp = need_str(r, sep, at, "separator");
	if (!sp.n)
		rfail(r, at, "empty separator");
	if (!rev) {
		size_t i = 0;
		int64_t splits = 0;
		for (;;) {
			const char *f = (maxsplit < 0 || splits < maxsplit) ? memmem(s->s + i, s->n - i, sp.s, sp.n) : NULL;
			if (!f) {
				vpush(r, &out, substr(s, i, s->n));
				break;
			}
			size_t j = (size_t)(f - s->s);
			vpush(r, &out, substr(s, i, j));
			i = j + sp.n;
			splits++;
		}
	} else {
		vvec tmp = {0};
		size_t e = s->n;
		int64_t splits = 0;
		for (;;) {
			size_t found = (size_t)-1;
			if ((maxsplit < 0 || splits < maxsplit) && e >= sp.n)
				for (size_t j = e - sp.n + 1; j-- > 0;)
					if (memcmp(s->s + j, sp.s, sp.n) == 0) {
						found = j;
						break;
					}
			if (found == (size_t)-1) {
				vpush(r, &tmp, substr(s, 0, e));
				break;
			}
			vpush(r, &tmp, substr(s, found + sp.n, e));
			e = found;
			splits++;
		}
		for (size_t i = tmp.n; i-- > 0;)
			vpush(r, &out, tmp.v[i]);
	}
	return vvec_list(r, &out);
}

static int is_linebreak(uint32_t cp)
{
	return cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || cp == 0x1c || cp == 0x1d || cp == 0x1e ||
	       cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

static jv py_splitlines(R *r, const jv *s, int keepends)
{
	vvec out = {0};
	size_t i = 0, start = 0;
	while (i < s->n) {
		uint32_t cp;
		size_t k = utf8_dec(s->s, s->n, i, &cp);
		if (is_linebreak(cp)) {
			size_t e = i;
			i += k;
			if (cp == '\r' && i < s->n && s->s[i] == '\n')
				i++;
			vpush(r, &out, substr(s, start, keepends ? i : e));
			start = i;
		} else
			i += k;
	}
	if (start < s->n)
		vpush(r, &out, substr(s, start, s->n));
	return vvec_list(r, &out);
}

static jv py_replace(R *r, const jv *s, const jv *old, const jv *nw, int64_t count)
{
	sbuf *bp = cap_begin(r, NULL);
#define b (*bp)
	if (old->n == 0) {
		/* insert between every character */
		size_t i = 0;
		int64_t done = 0;
		while (i <= s->n) {
			if (count < 0 || done < count) {
				sb_put(r, &b, nw->s, nw->n);
				done++;
			}
			if (i == s->n)
				break;
			uint32_t cp;
			size_t k = utf8_dec(s->s, s->n, i, &cp);
			sb_put(r, &b, s->s + i, k);
			i += k;
		}
	} else {
		size_t i = 0;
		int64_t done = 0;
		while (i < s->n) {
			const char *f = (count < 0 || done < count) ? memmem(s->s + i, s->n - i, old->s, old->n) : NULL;
			if (!f) {
				sb_put(r, &b, s->s + i, s->n - i);
				break;
			}
			sb_put(r, &b, s->s + i, (size_t)(f - (s->s + i)));
			sb_put(r, &b, nw->s, nw->n);
			i = (size_t)(f - s->s) + old->n;
			done++;
		}
	}
#undef b
	return cap_end(r, bp);
}

/* byte offset -> code point index */
static int64_t cp_index(const jv *s, size_t off) { return (int64_t)utf8_len(s->s, off); }

static int64_t py_find(const jv *s, const jv *sub, int rev, int64_t start, int64_t end)
{
	/* start/end are code point indices already clamped */
	size_t bs = utf8_off(s->s, s->n, (size_t)start), be = utf8_off(s->s, s->n, (size_t)end);
	if (be < bs || sub->n > be - bs)
		return -1;
	if (!rev) {
		const char *f = memmem(s->s + bs, be - bs, sub->s, sub->n);
		return f ? cp_index(s, (size_t)(f - s->s)) : -1;
	}
	for (size_t j = be - sub->n + 1; j-- > bs;)
		if (memcmp(s->s + j, sub->s, sub->n) == 0)
			return cp_index(s, j);
	return -1;
}

static void clamp_range(R *r, const jv *s, const jv *a, const jv *b, const node *at, int64_t *start, int64_t *end)
{
	int64_t len = (int64_t)utf8_len(s->s, s->n);
	*start = (a && !missing(a) && a->t != T_NONE) ? need_int(r, a, at, "start") : 0;
	*end = (b && !missing(b) && b->t != T_NONE) ? need_int(r, b, at, "end") : len;
	if (*start < 0)
		*start = *start + len < 0 ? 0 : *start + len;
	if (*end < 0)
		*end = *end + len < 0 ? 0 : *end + len;
	if (*start > len)
		*start = len;
	if (*end > len)
		*end = len;
}

static int str_startswith(const jv *s, const jv *p, int ends, int64_t start, int64_t end)
{
	size_t bs = utf8_off(s->s, s->n, (size_t)start), be = utf8_off(s->s, s->n, (size_t)end);
	if (be < bs || p->n > be - bs)
		return 0;
	return ends ? memcmp(s->s + be - p->n, p->s, p->n) == 0 : memcmp(s->s + bs, p->s, p->n) == 0;
}

/* ------------------------------------------------------------------ Python formatting */

typedef struct fspec {
	char fill, align, sign, type;
	int alt, zero, width, prec, comma;
} fspec;

static void pad_out(R *r, sbuf *b, const char *s, size_t n, const fspec *f, char default_align)
{
	size_t len = utf8_len(s, n);
	char align = f->align ? f->align : default_align;
	if (f->width <= 0 || (size_t)f->width <= len) {
		sb_put(r, b, s, n);
		return;
	}
	size_t pad = (size_t)f->width - len, left = 0, right = 0;
	if (align == '<')
		right = pad;
	else if (align == '>')
		left = pad;
	else if (align == '^') {
		left = pad / 2;
		right = pad - left;
	} else if (align == '=') {
		size_t sg = (n && (s[0] == '-' || s[0] == '+' || s[0] == ' ')) ? 1 : 0;
		sb_put(r, b, s, sg);
		for (size_t i = 0; i < pad; i++)
			sb_putc(r, b, f->fill ? f->fill : ' ');
		sb_put(r, b, s + sg, n - sg);
		return;
	}
	for (size_t i = 0; i < left; i++)
		sb_putc(r, b, f->fill ? f->fill : ' ');
	sb_put(r, b, s, n);
	for (size_t i = 0; i < right; i++)
		sb_putc(r, b, f->fill ? f->fill : ' ');
}

static void format_number(R *r, sbuf *b, const jv *v, fspec *f, const node *at)
{
	char tmp[512];
	char type = f->type;
	if (v->t == T_STR || (!is_num(v))) {
		if (type && type != 's')
			rfail(r, at, "unknown format code '%c' for object of type '%s'", type, type_name(v));
		jv s = to_strv(r, v, at);
		size_t n = s.n;
		if (f->prec >= 0)
			n = utf8_off(s.s, s.n, (size_t)f->prec);
		pad_out(r, b, s.s, n, f, '<');
		return;
	}
	int prec = f->prec;
	if (!type) {
		if (v->t == T_FLOAT) {
			if (prec >= 0)
				snprintf(tmp, sizeof tmp, "%.*g", prec ? prec : 1, v->f);
			else
				fmt_float(v->f, tmp, sizeof tmp);
		} else if (v->t == T_BOOL && f->width <= 0)
			snprintf(tmp, sizeof tmp, "%s", v->i ? "True" : "False");
		else
			snprintf(tmp, sizeof tmp, "%lld", (long long)v->i);
	} else if (type == 'd' || type == 'n') {
		if (v->t == T_FLOAT)
			rfail(r, at, "unknown format code 'd' for object of type 'float'");
		snprintf(tmp, sizeof tmp, "%lld", (long long)v->i);
	} else if (type == 'f' || type == 'F' || type == 'e' || type == 'E' || type == 'g' || type == 'G' || type == '%') {
		double d = num_f(v);
		if (type == '%') {
			snprintf(tmp, sizeof tmp, "%.*f%%", prec < 0 ? 6 : prec, d * 100);
		} else {
			char fm[8] = {'%', '.', '*', type, 0};
			snprintf(tmp, sizeof tmp, fm, prec < 0 ? 6 : prec, d);
		}
	} else if (type == 'x' || type == 'X' || type == 'o' || type == 'b' || type == 'c') {
		if (v->t == T_FLOAT)
			rfail(r, at, "unknown format code '%c' for object of type 'float'", type);
		long long x = (long long)v->i;
		if (type == 'c') {
			int k = (int)utf8_encode((uint32_t)x, tmp);
			tmp[k] = 0;
		} else if (type == 'b') {
			char bits[70];
			int k = 0;
			unsigned long long ux = x < 0 ? (unsigned long long)-x : (unsigned long long)x;
			do {
				bits[k++] = (char)('0' + (ux & 1));
				ux >>= 1;
			} while (ux);
			int o = 0;
			if (x < 0)
				tmp[o++] = '-';
			while (k)
				tmp[o++] = bits[--k];
			tmp[o] = 0;
		} else {
			char fm[8] = {'%', 'l', 'l', type, 0};
			if (x < 0) {
				tmp[0] = '-';
				snprintf(tmp + 1, sizeof tmp - 1, fm, -x);
			} else
				snprintf(tmp, sizeof tmp, fm, x);
		}
	} else if (type == 's') {
		rfail(r, at, "unknown format code 's' for object of type '%s'", type_name(v));
	} else
		rfail(r, at, "unknown format code '%c'", type);
	if (f->sign == '+' && tmp[0] != '-') {
		memmove(tmp + 1, tmp, strlen(tmp) + 1);
		tmp[0] = '+';
	} else if (f->sign == ' ' && tmp[0] != '-') {
		memmove(tmp + 1, tmp, strlen(tmp) + 1);
		tmp[0] = ' ';
	}
	if (f->zero && !f->align) {
		f->fill = '0';
		f->align = '=';
	}
	pad_out(r, b, tmp, strlen(tmp), f, '>');
}

static void parse_spec(R *r, const char *s, size_t n, fspec *f, const node *at)
{
	memset(f, 0, sizeof *f);
	f->prec = -1;
	size_t i = 0;
	if (n >= 2 && strchr("<>=^", s[1])) {
		f->fill = s[0];
		f->align = s[1];
		i = 2;
	} else if (n >= 1 && strchr("<>=^", s[0])) {
		f->align = s[0];
		i = 1;
	}
	if (i < n && strchr("+- ", s[i]))
		f->sign = s[i++];
	if (i < n && s[i] == '#') {
		f->alt = 1;
		i++;
	}
	if (i < n && s[i] == '0') {
		f->zero = 1;
		i++;
	}
	while (i < n && isdigit((unsigned char)s[i]) && f->width < 100000)
		f->width = f->width * 10 + (s[i++] - '0');
	if (i < n && (s[i] == ',' || s[i] == '_')) {
		f->comma = 1;
		i++;
	}
	if (i < n && s[i] == '.') {
		i++;
		f->prec = 0;
		while (i < n && isdigit((unsigned char)s[i]) && f->prec < 100000)
			f->prec = f->prec * 10 + (s[i++] - '0');
	}
	if (i < n)
		f->type = s[i++];
	if (i < n || f->width > 10000 || f->prec > 400)
		rfail(r, at, "invalid format specifier");
}

/* str.format(*args, **kwargs) */
static jv py_format(R *r, const jv *fmt, const args *a, const node *at)
{
	sbuf *bp = cap_begin(r, at);
#define b (*bp)
	size_t i = 0, autoi = 0;
	const char *s = fmt->s;
	size_t n = fmt->n;
	while (i < n) {
		char ch = s[i];
		if (ch == '{' && i + 1 < n && s[i + 1] == '{') {
			sb_putc(r, &b, '{');
			i += 2;
			continue;
		}
		if (ch == '}' && i + 1 < n && s[i + 1] == '}') {
			sb_putc(r, &b, '}');
			i += 2;
			continue;
		}
		if (ch == '}')
			rfail(r, at, "single '}' encountered in format string");
		if (ch != '{') {
			sb_putc(r, &b, ch);
			i++;
			continue;
		}
		size_t j = i + 1;
		int depth = 1;
		while (j < n && depth) {
			if (s[j] == '{')
				depth++;
			else if (s[j] == '}')
				depth--;
			if (depth)
				j++;
		}
		if (j >= n)
			rfail(r, at, "single '{' encountered in format string");
		const char *field = s + i + 1;
		size_t flen = j - i - 1;
		const char *spec = NULL, *conv = NULL;
		size_t speclen = 0;
		for (size_t k = 0; k < flen; k++) {
			if (field[k] == ':') {
				spec = field + k + 1;
				speclen = flen - k - 1;
				flen = k;
				break;
			}
		}
		for (size_t k = 0; k < flen; k++)
			if (field[k] == '!') {
				conv = field + k + 1;
				flen = k;
				break;
			}
		/* argument name: up to '.' or '[' */
		size_t nl = 0;
		while (nl < flen && field[nl] != '.' && field[nl] != '[')
			nl++;
		jv val;
		if (nl == 0) {
			if (autoi >= a->np)
				rfail(r, at, "replacement index %zu out of range for positional args tuple", autoi);
			val = a->pos[autoi++];
		} else if (isdigit((unsigned char)field[0])) {
			size_t idx = (size_t)strtoul(field, NULL, 10);
			if (idx >= a->np)
				rfail(r, at, "replacement index %zu out of range for positional args tuple", idx);
			val = a->pos[idx];
		} else {
			size_t k;
			for (k = 0; k < a->nk; k++)
				if (a->kl[k] == nl && memcmp(a->kn[k], field, nl) == 0)
					break;
			if (k == a->nk)
				rfail(r, at, "format key '%.*s' not found", (int)nl, field);
			val = a->kv[k];
		}
		size_t p = nl;
		while (p < flen) {
			if (field[p] == '.') {
				size_t q = p + 1;
				while (q < flen && field[q] != '.' && field[q] != '[')
					q++;
				val = get_attr(r, &val, field + p + 1, q - p - 1, at);
				p = q;
			} else {
				size_t q = p + 1;
				while (q < flen && field[q] != ']')
					q++;
				jv key;
				if (q > p + 1 && isdigit((unsigned char)field[p + 1]))
					key = mkint(strtoll(field + p + 1, NULL, 10));
				else
					key = mkstr(r, field + p + 1, q - p - 1);
				int found;
				val = get_index(r, &val, &key, at, &found);
				p = q + 1;
			}
		}
		if (conv && (*conv == 'r' || *conv == 'a')) {
			sbuf *t = cap_begin(r, at);
			put_repr(r, t, &val, at);
			val = cap_end(r, t);
		} else if (conv && *conv == 's')
			val = to_strv(r, &val, at);
		fspec f;
		parse_spec(r, spec ? spec : "", speclen, &f, at);
		if (!spec && val.t == T_STR)
			sb_put(r, &b, val.s, val.n);
		else if (!spec)
			put_str(r, &b, &val, at);
		else
			format_number(r, &b, &val, &f, at);
		i = j + 1;
	}
#undef b
	return cap_end(r, bp);
}

/* printf-style "fmt % args" */
static jv py_mod_format(R *r, const jv *fmt, const jv *argv, const node *at)
{
	sbuf *bp = cap_begin(r, at);
#define b (*bp)
	const jv *items;
	size_t nitems, used = 0;
	if (argv->t == T_TUPLE) {
		items = argv->l->v;
		nitems = argv->l->n;
	} else {
		items = argv;
		nitems = 1;
	}
	const char *s = fmt->s;
	size_t n = fmt->n, i = 0;
	while (i < n) {
		if (s[i] != '%') {
			sb_putc(r, &b, s[i++]);
			continue;
		}
		i++;
		if (i < n && s[i] == '%') {
			sb_putc(r, &b, '%');
			i++;
			continue;
		}
		jv val;
		int have = 0;
		if (i < n && s[i] == '(') {
			size_t q = i + 1;
			while (q < n && s[q] != ')')
				q++;
			if (q >= n || argv->t != T_DICT)
				rfail(r, at, "format requires a mapping");
			jv *x = dict_finds(argv->d, s + i + 1, q - i - 1);
			if (!x)
				rfail(r, at, "format key '%.*s' not found", (int)(q - i - 1), s + i + 1);
			val = *x;
			have = 1;
			i = q + 1;
		}
		fspec f;
		memset(&f, 0, sizeof f);
		f.prec = -1;
		while (i < n && strchr("-+ #0", s[i])) {
			if (s[i] == '-')
				f.align = '<';
			else if (s[i] == '+' || s[i] == ' ')
				f.sign = s[i];
			else if (s[i] == '0')
				f.zero = 1;
			i++;
		}
		while (i < n && isdigit((unsigned char)s[i]) && f.width < 10000)
			f.width = f.width * 10 + (s[i++] - '0');
		if (i < n && s[i] == '.') {
			i++;
			f.prec = 0;
			while (i < n && isdigit((unsigned char)s[i]) && f.prec < 400)
				f.prec = f.prec * 10 + (s[i++] - '0');
		}
		if (i >= n)
			rfail(r, at, "incomplete format");
		char type = s[i++];
		if (!have) {
			if (used >= nitems)
				rfail(r, at, "not enough arguments for format string");
			val = items[used++];
		}
		if (!f.align)
			f.align = 0;
		if (type == 's' || type == 'r' || type == 'a') {
			jv sv;
			if (type == 's')
				sv = to_strv(r, &val, at);
			else {
				sbuf *t = cap_begin(r, at);
				put_repr(r, t, &val, at);
				sv = cap_end(r, t);
			}
			size_t len = sv.n;
			if (f.prec >= 0)
				len = utf8_off(sv.s, sv.n, (size_t)f.prec);
			fspec g = f;
			g.zero = 0;
			pad_out(r, &b, sv.s, len, &g, '>');
		} else if (type == 'd' || type == 'i' || type == 'u') {
			if (!is_num(&val))
				rfail(r, at, "%%d format: a real number is required, not %s", type_name(&val));
			jv iv = val.t == T_FLOAT ? mkint(float_to_int(r, val.f, at)) : mkint(val.i);
			f.type = 'd';
			format_number(r, &b, &iv, &f, at);
		} else if (strchr("feEgGxXoc", type)) {
			if (!is_num(&val))
				rfail(r, at, "%%%c format: a real number is required, not %s", type, type_name(&val));
			f.type = type;
			if (strchr("xXoc", type) && val.t == T_FLOAT)
				rfail(r, at, "%%%c format: an integer is required, not float", type);
			format_number(r, &b, &val, &f, at);
		} else
			rfail(r, at, "unsupported format character '%c'", type);
	}
	if (argv->t != T_DICT && used < nitems)
		rfail(r, at, "not all arguments converted during string formatting");
#undef b
	return cap_end(r, bp);
}

/* ------------------------------------------------------------------ tojson */

typedef struct jsonopt {
	const char *indent; /* NULL = compact */
	size_t nindent;
	const char *isep, *ksep;
	size_t nisep, nksep;
	int sort_keys, ensure_ascii;
} jsonopt;

static void json_str(R *r, sbuf *b, const char *s, size_t n, int ensure_ascii)
{
	/* bytes that need escaping: control characters, '"', '\\' (and non-ASCII for ensure_ascii) */
	static const uint8_t esc[256] = {
		[0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xff] = 2,
	};
	uint8_t stop = ensure_ascii ? 3 : 1;
	if (n < 64) {
		/* short strings (keys, names): one scan, one copy when nothing needs escaping */
		size_t k = 0;
		while (k < n && !(esc[(unsigned char)s[k]] & stop))
			k++;
		if (k == n) {
			sb_grow(r, b, n + 2);
			char *p = b->p + b->n;
			p[0] = '"';
			memcpy(p + 1, s, n);
			p[n + 1] = '"';
			b->n += n + 2;
			return;
		}
	}
	sb_putc(r, b, '"');
	size_t i = 0;
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	while (i < n) {
		size_t j = i;
		/* 8 bytes at a time while none needs escaping (SWAR: a byte < 0x20, '"' or '\\') */
		while (j + 8 <= n) {
			uint64_t w, q, bs;
			memcpy(&w, s + j, 8);
			q = w ^ (ones * '"');
			bs = w ^ (ones * '\\');
			uint64_t hit = ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs);
			if ((hit & highs) || (ensure_ascii && (w & highs)))
				break;
			j += 8;
		}
		while (j < n && !(esc[(unsigned char)s[j]] & stop))
			j++;
		if (j > i) {
			sb_put(r, b, s + i, j - i);
			i = j;
			continue;
		}
		unsigned char c = (unsigned char)s[i];
		if (c == '"')
			sb_put(r, b, "\\\"", 2);
		else if (c == '\\')
			sb_put(r, b, "\\\\", 2);
		else if (c == '\n')
			sb_put(r, b, "\\n", 2);
		else if (c == '\r')
			sb_put(r, b, "\\r", 2);
		else if (c == '\t')
			sb_put(r, b, "\\t", 2);
		else if (c == '\b')
			sb_put(r, b, "\\b", 2);
		else if (c == '\f')
			sb_put(r, b, "\\f", 2);
		else if (c < 0x20)
			sb_printf(r, b, "\\u%04x", c);
		else if (c >= 0x80 && ensure_ascii) {
			uint32_t cp;
			size_t k = utf8_dec(s, n, i, &cp);
			if (cp >= 0x10000) {
				cp -= 0x10000;
				sb_printf(r, b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
			} else
				sb_printf(r, b, "\\u%04x", cp);
			i += k;
			continue;
		} else {
			sb_putc(r, b, (char)c);
		}
		i++;
	}
	sb_putc(r, b, '"');
}

static void json_newline(R *r, sbuf *b, const jsonopt *o, int level)
{
	size_t need = 1 + (size_t)level * o->nindent;
	sb_grow(r, b, need);
	char *p = b->p + b->n;
	*p++ = '\n';
	if (o->nindent == 1)
		memset(p, o->indent[0], (size_t)level);
	else
		for (int i = 0; i < level; i++, p += o->nindent)
			memcpy(p, o->indent, o->nindent);
	b->n += need;
}

static void json_key(R *r, sbuf *b, const jv *k, const jsonopt *o, const node *at)
{
	char num[64];
	switch (k->t) {
	case T_STR: json_str(r, b, k->s, k->n, o->ensure_ascii); return;
	case T_INT: snprintf(num, sizeof num, "\"%lld\"", (long long)k->i); break;
	case T_BOOL: snprintf(num, sizeof num, "\"%s\"", k->i ? "true" : "false"); break;
	case T_NONE: snprintf(num, sizeof num, "\"null\""); break;
	case T_FLOAT: {
		char f[48];
		json_format_double(k->f, f, sizeof f);
		snprintf(num, sizeof num, "\"%s\"", f);
		break;
	}
	default: rfail(r, at, "keys must be str, int, float, bool or None, not %s", type_name(k));
	}
	sb_puts(r, b, num);
}

static void merge_sort(R *r, jv *v, size_t n, int (*cmp)(R *, const jv *, const jv *, void *), void *ctx);

static void json_val(R *r, sbuf *b, const jv *v, const jsonopt *o, int level, const node *at)
{
	char num[64];
	if (level > 500)
		rfail(r, at, "maximum recursion depth exceeded in tojson");
	switch (v->t) {
	case T_NONE: sb_put(r, b, "null", 4); return;
	case T_BOOL: sb_puts(r, b, v->i ? "true" : "false"); return;
	case T_INT: sb_printf(r, b, "%lld", (long long)v->i); return;
	case T_FLOAT:
		json_format_double(v->f, num, sizeof num);
		sb_puts(r, b, num);
		return;
	case T_STR: json_str(r, b, v->s, v->n, o->ensure_ascii); return;
	case T_LIST:
	case T_TUPLE:
		if (!v->l->n) {
			sb_put(r, b, "[]", 2);
			return;
		}
		sb_putc(r, b, '[');
		for (size_t i = 0; i < v->l->n; i++) {
			if (i)
				sb_put(r, b, o->isep, o->nisep);
			if (o->indent)
				json_newline(r, b, o, level + 1);
			json_val(r, b, &v->l->v[i], o, level + 1, at);
		}
		if (o->indent)
			json_newline(r, b, o, level);
		sb_putc(r, b, ']');
		return;
	case T_DICT: {
		if (!v->d->n) {
			sb_put(r, b, "{}", 2);
			return;
		}
		size_t n = v->d->n;
		size_t *ord = ralloc(r, n * sizeof *ord);
		for (size_t i = 0; i < n; i++)
			ord[i] = i;
		if (o->sort_keys) {
			jlist *keys = mklist(r, n);
			for (size_t i = 0; i < n; i++) {
				keys->v[i] = v->d->k[i];
				keys->v[i].n = v->d->k[i].t == T_STR ? v->d->k[i].n : 0;
			}
			/* sort indices by key: simple insertion sort on index array (dicts are small) */
			for (size_t i = 1; i < n; i++) {
				size_t x = ord[i], j = i;
				while (j > 0 && py_cmp(r, &v->d->k[ord[j - 1]], &v->d->k[x], at) > 0) {
					ord[j] = ord[j - 1];
					j--;
				}
				ord[j] = x;
			}
		}
		sb_putc(r, b, '{');
		for (size_t i = 0; i < n; i++) {
			if (i)
				sb_put(r, b, o->isep, o->nisep);
			if (o->indent)
				json_newline(r, b, o, level + 1);
			json_key(r, b, &v->d->k[ord[i]], o, at);
			sb_put(r, b, o->ksep, o->nksep);
			json_val(r, b, &v->d->v[ord[i]], o, level + 1, at);
		}
		if (o->indent)
			json_newline(r, b, o, level);
		sb_putc(r, b, '}');
		return;
	}
	default:
		rfail(r, at, "object of type %s is not JSON serializable", type_name(v));
	}
}

/* ------------------------------------------------------------------ sorting */

static void merge_sort(R *r, jv *v, size_t n, int (*cmp)(R *, const jv *, const jv *, void *), void *ctx)
{
	if (n < 2)
		return;
	jv *tmp = ralloc(r, n * sizeof(jv));
	for (size_t w = 1; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
			size_t i = lo, j = mid, k = lo;
			while (i < mid && j < hi)
				tmp[k++] = cmp(r, &v[j], &v[i], ctx) < 0 ? v[j++] : v[i++];
			while (i < mid)
				tmp[k++] = v[i++];
			while (j < hi)
				tmp[k++] = v[j++];
		}
		memcpy(v, tmp, n * sizeof(jv));
	}
}

/* ------------------------------------------------------------------ filters and tests */

static jv call_value(R *r, const jv *fn, const args *a, const node *at);
static int apply_test(R *r, const char *name, size_t nlen, const jv *v, const args *a, const node *at);
static jv apply_filter(R *r, const char *name, size_t nlen, const jv *v, const args *a, const node *at);

static int py_in(R *r, const jv *needle, const jv *hay, const node *at);

/* jinja2 make_attrgetter: "a.b.0" path lookup with environment.getitem semantics */
static jv attr_path(R *r, const jv *item, const jv *path, const node *at)
{
	jv cur = *item;
	if (path->t == T_INT) {
		int f;
		return get_index(r, &cur, path, at, &f);
	}
	jv p = need_str(r, path, at, "attribute");
	size_t i = 0;
	for (;;) {
		size_t j = i;
		while (j < p.n && p.s[j] != '.')
			j++;
		int digits = j > i;
		for (size_t k = i; k < j; k++)
			if (!isdigit((unsigned char)p.s[k]))
				digits = 0;
		jv key = digits ? mkint(strtoll(p.s + i, NULL, 10)) : substr(&p, i, j);
		int f;
		cur = get_index(r, &cur, &key, at, &f);
		if (j >= p.n)
			break;
		i = j + 1;
	}
	return cur;
}

static jv lower_if_str(R *r, const jv *v, int case_sensitive)
{
	if (!case_sensitive && v->t == T_STR)
		return map_case(r, v, 0);
	return *v;
}

typedef struct sortctx {
	const node *at;
	int case_sensitive, reverse, by_value;
	const jv *attr;
} sortctx;

static int cmp_sort(R *r, const jv *a, const jv *b, void *vctx)
{
	sortctx *c = vctx;
	jv x = *a, y = *b;
	if (c->attr) {
		x = attr_path(r, &x, c->attr, c->at);
		y = attr_path(r, &y, c->attr, c->at);
	}
	x = lower_if_str(r, &x, c->case_sensitive);
	y = lower_if_str(r, &y, c->case_sensitive);
	int k = py_cmp(r, &x, &y, c->at);
	return c->reverse ? -k : k;
}

static int cmp_items(R *r, const jv *a, const jv *b, void *vctx)
{
	sortctx *c = vctx;
	const jv *x = &a->l->v[c->by_value], *y = &b->l->v[c->by_value];
	jv xx = lower_if_str(r, x, c->case_sensitive), yy = lower_if_str(r, y, c->case_sensitive);
	int k = py_cmp(r, &xx, &yy, c->at);
	return c->reverse ? -k : k;
}

static jv dict_items(R *r, const jdict *d)
{
	jlist *l = mklist(r, d->n);
	for (size_t i = 0; i < d->n; i++) {
		jlist *t = mklist(r, 2);
		t->v[0] = d->k[i];
		t->v[1] = d->v[i];
		l->v[i] = listv(t, 1);
	}
	return listv(l, 0);
}

static jv html_escape(R *r, const jv *s)
{
	sbuf *b = cap_begin(r, NULL);
	for (size_t i = 0; i < s->n; i++) {
		char c = s->s[i];
		switch (c) {
		case '&': sb_puts(r, b, "&amp;"); break;
		case '<': sb_puts(r, b, "&lt;"); break;
		case '>': sb_puts(r, b, "&gt;"); break;
		case '"': sb_puts(r, b, "&#34;"); break;
		case '\'': sb_puts(r, b, "&#39;"); break;
		default: sb_putc(r, b, c);
		}
	}
	return cap_end(r, b);
}

static jv do_round(R *r, const jv *v, int64_t prec, const char *method, const node *at)
{
	if (!is_num(v))
		rfail(r, at, "type %s doesn't define __round__ method", type_name(v));
	if (!strcmp(method, "common")) {
		if (v->t != T_FLOAT)
			return mkint(v->i);
		if (prec > 300 || prec < -300)
			return *v;
		char buf[512];
		if (prec >= 0) {
			snprintf(buf, sizeof buf, "%.*f", (int)prec, v->f);
			return mkfloat(strtod(buf, NULL));
		}
		double p = pow(10, (double)-prec);
		return mkfloat(nearbyint(v->f / p) * p);
	}
	double p = pow(10, (double)prec);
	double x = num_f(v) * p;
	if (!strcmp(method, "ceil"))
		return mkfloat(ceil(x) / p);
	if (!strcmp(method, "floor"))
		return mkfloat(floor(x) / p);
	rfail(r, at, "method must be common, ceil or floor");
}

static int parse_py_int(const char *s, size_t n, int base, int64_t *out)
{
	char buf[80];
	size_t b = ws_prefix(s, n), e = n - ws_suffix(s, n);
	if (e <= b || e - b >= sizeof buf)
		return -1;
	size_t k = 0;
	for (size_t i = b; i < e; i++) {
		if (s[i] == '_' && i > b && i + 1 < e && isdigit((unsigned char)s[i - 1]) && isdigit((unsigned char)s[i + 1]))
			continue;
		buf[k++] = s[i];
	}
	buf[k] = 0;
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, base);
	if (*end || errno || !isxdigit((unsigned char)buf[k - 1]))
		return -1;
	if (!isdigit((unsigned char)buf[0]) && !(buf[0] == '-' || buf[0] == '+'))
		return -1;
	*out = v;
	return 0;
}

static int parse_py_float(const char *s, size_t n, double *out)
{
	char buf[128];
	size_t b = ws_prefix(s, n), e = n - ws_suffix(s, n);
	if (e <= b || e - b >= sizeof buf)
		return -1;
	memcpy(buf, s + b, e - b);
	buf[e - b] = 0;
	for (size_t i = 0; buf[i]; i++)
		if (!(isdigit((unsigned char)buf[i]) || strchr("+-.eE", buf[i]) || isalpha((unsigned char)buf[i])))
			return -1;
	char *end;
	double v = strtod(buf, &end);
	if (*end || end == buf)
		return -1;
	if (isalpha((unsigned char)buf[0]) || ((buf[0] == '-' || buf[0] == '+') && isalpha((unsigned char)buf[1]))) {
		/* only inf/nan/infinity spelled out are valid */
		const char *w = buf + (buf[0] == '-' || buf[0] == '+');
		if (strcasecmp(w, "inf") && strcasecmp(w, "infinity") && strcasecmp(w, "nan"))
			return -1;
	} else if (strchr(buf, 'x') || strchr(buf, 'X'))
		return -1;
	*out = v;
	return 0;
}

static jv do_indent(R *r, const jv *sv, const jv *width, int first, int blank, const node *at)
{
	jv ind;
	if (width->t == T_STR)
		ind = *width;
	else {
		int64_t w = width->t == T_MISSING ? 4 : need_int(r, width, at, "width");
		if (w < 0)
			w = 0;
		if (w > 10000)
			rfail(r, at, "indent width too large");
		char *p = ralloc(r, (size_t)w + 1);
		memset(p, ' ', (size_t)w);
		p[w] = 0;
		ind.t = T_STR;
		ind.s = p;
		ind.n = (size_t)w;
	}
	jv nl = cstr("\n");
	jv s = str_cat(r, sv, &nl);
	jv lines = py_splitlines(r, &s, 0);
	sbuf *b = cap_begin(r, at);
	jlist *l = lines.l;
	if (blank) {
		for (size_t i = 0; i < l->n; i++) {
			if (i) {
				sb_putc(r, b, '\n');
				sb_put(r, b, ind.s, ind.n);
			}
			sb_put(r, b, l->v[i].s, l->v[i].n);
		}
	} else if (l->n) {
		sb_put(r, b, l->v[0].s, l->v[0].n);
		for (size_t i = 1; i < l->n; i++) {
			sb_putc(r, b, '\n');
			if (l->v[i].n)
				sb_put(r, b, ind.s, ind.n);
			sb_put(r, b, l->v[i].s, l->v[i].n);
		}
	}
	jv out = cap_end(r, b);
	if (first)
		out = str_cat(r, &ind, &out);
	return out;
}

static jv join_list(R *r, jlist *l, const jv *sep, const node *at)
{
	sbuf *b = cap_begin(r, at);
	for (size_t i = 0; i < l->n; i++) {
		if (i)
			sb_put(r, b, sep->s, sep->n);
		if (l->v[i].t == T_STR)
			sb_put(r, b, l->v[i].s, l->v[i].n);
		else
			put_str(r, b, &l->v[i], at);
	}
	return cap_end(r, b);
}

static jv select_impl(R *r, const jv *v, const args *a, const node *at, int attr_mode, int reject)
{
	if (!truthy(r, v, at))
		return as_gen(listv(mklist(r, 0), 0));
	jlist *l = iter_list(r, v, at);
	size_t first = attr_mode ? 1 : 0;
	if (attr_mode && a->np < 1)
		rfail(r, at, "missing attribute argument");
	const jv *attr = attr_mode ? &a->pos[0] : NULL;
	const char *tname = NULL;
	size_t tlen = 0;
	if (a->np > first) {
		jv t = need_str(r, &a->pos[first], at, "test name");
		tname = t.s;
		tlen = t.n;
	}
	args ta = {.pos = a->np > first + 1 ? a->pos + first + 1 : NULL, .np = a->np > first + 1 ? a->np - first - 1 : 0,
		   .kn = a->kn, .kl = a->kl, .kv = a->kv, .nk = a->nk};
	vvec out = {0};
	for (size_t i = 0; i < l->n; i++) {
		jv x = attr ? attr_path(r, &l->v[i], attr, at) : l->v[i];
		int ok = tname ? apply_test(r, tname, tlen, &x, &ta, at) : truthy(r, &x, at);
		if (ok != reject)
			vpush(r, &out, l->v[i]);
	}
	return as_gen(vvec_list(r, &out));
}

static jv minmax(R *r, const jv *v, const args *a, const node *at, int want_max)
{
	static const char *const p[] = {"case_sensitive", "attribute", NULL};
	jv ar[2];
	bind_args(r, at, want_max ? "max" : "min", a, p, ar);
	jlist *l = iter_list(r, v, at);
	if (!l->n)
		return undef_named(NULL, 0);
	sortctx c = {.at = at, .case_sensitive = !missing(&ar[0]) && truthy(r, &ar[0], at), .attr = missing(&ar[1]) ? NULL : &ar[1]};
	size_t best = 0;
	for (size_t i = 1; i < l->n; i++) {
		int k = cmp_sort(r, &l->v[i], &l->v[best], &c);
		if (want_max ? k > 0 : k < 0)
			best = i;
	}
	return l->v[best];
}

static int fname_is(const char *name, size_t n, const char *want) { return name_eq(name, n, want); }

static jv apply_filter(R *r, const char *name, size_t nlen, const jv *v, const args *a, const node *at)
{
#define IS(x) fname_is(name, nlen, x)
	jv ar[6];
	if (IS("tojson")) {
		static const char *const p[] = {"ensure_ascii", "indent", "separators", "sort_keys", NULL};
		bind_args(r, at, "tojson", a, p, ar);
		jsonopt o = {0};
		o.ensure_ascii = !missing(&ar[0]) && truthy(r, &ar[0], at);
		if (!missing(&ar[1]) && ar[1].t != T_NONE) {
			if (ar[1].t == T_STR) {
				o.indent = ar[1].s;
				o.nindent = ar[1].n;
			} else {
				int64_t w = need_int(r, &ar[1], at, "indent");
				if (w < 0)
					w = 0;
				if (w > 1000)
					rfail(r, at, "indent too large");
				char *sp = ralloc(r, (size_t)w + 1);
				memset(sp, ' ', (size_t)w);
				o.indent = sp;
				o.nindent = (size_t)w;
			}
		}
		o.isep = o.indent ? "," : ", ";
		o.ksep = ": ";
		if (!missing(&ar[2]) && ar[2].t != T_NONE) {
			if ((ar[2].t != T_LIST && ar[2].t != T_TUPLE) || ar[2].l->n != 2 || ar[2].l->v[0].t != T_STR ||
			    ar[2].l->v[1].t != T_STR)
				rfail(r, at, "separators must be a pair of strings");
			o.isep = ar[2].l->v[0].s;
			o.ksep = ar[2].l->v[1].s;
			o.nisep = ar[2].l->v[0].n;
			o.nksep = ar[2].l->v[1].n;
		} else {
			o.nisep = strlen(o.isep);
			o.nksep = strlen(o.ksep);
		}
		o.sort_keys = !missing(&ar[3]) && truthy(r, &ar[3], at);
		sbuf *b = cap_begin(r, at);
		json_val(r, b, v, &o, 0, at);
		return cap_end(r, b);
	}
	if (IS("default") || IS("d")) {
		static const char *const p[] = {"default_value", "boolean", NULL};
		bind_args(r, at, "default", a, p, ar);
		int boolean = !missing(&ar[1]) && truthy(r, &ar[1], at);
		if (v->t == T_UNDEF || (boolean && !truthy(r, v, at)))
			return missing(&ar[0]) ? cstr("") : ar[0];
		return *v;
	}
	if (IS("length") || IS("count"))
		return mkint((int64_t)py_len(r, v, at));
	if (IS("string")) {
		return to_strv(r, v, at);
	}
	if (IS("safe")) {
		jv s = to_strv(r, v, at);
		s.mk = 1;
		return s;
	}
	if (IS("e") || IS("escape") || IS("forceescape")) {
		if (v->t == T_STR && v->mk && !IS("forceescape"))
			return *v;
		jv s = to_strv(r, v, at);
		s = html_escape(r, &s);
		s.mk = 1;
		return s;
	}
	if (IS("trim")) {
		static const char *const p[] = {"chars", NULL};
		bind_args(r, at, "trim", a, p, ar);
		jv s = to_strv(r, v, at);
		return py_strip(&s, missing(&ar[0]) || ar[0].t == T_NONE ? NULL : &ar[0], 1, 1);
	}
	if (IS("upper") || IS("lower") || IS("capitalize")) {
		jv s = to_strv(r, v, at);
		return map_case(r, &s, IS("lower") ? 0 : IS("upper") ? 1 : 2);
	}
	if (IS("title")) {
		/* jinja2 do_title: split on runs of [-\s({\[<], capitalise each piece */
		jv s = to_strv(r, v, at);
		sbuf *b = cap_begin(r, at);
		size_t i = 0;
		int at_start = 1;
		while (i < s.n) {
			uint32_t cp;
			size_t k = utf8_dec(s.s, s.n, i, &cp);
			int delim = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || py_isspace(cp);
			char o[4];
			if (delim) {
				sb_put(r, b, s.s + i, k);
				at_start = 1;
			} else {
				uint32_t m = at_start ? (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp) : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
				sb_put(r, b, o, utf8_encode(m, o));
				at_start = 0;
			}
			i += k;
		}
		return cap_end(r, b);
	}
	if (IS("replace")) {
		static const char *const p[] = {"old", "new", "count", NULL};
		bind_args(r, at, "replace", a, p, ar);
		jv s = to_strv(r, v, at);
		if (missing(&ar[0]) || missing(&ar[1]))
			rfail(r, at, "replace() missing arguments");
		jv o = to_strv(r, &ar[0], at), nw = to_strv(r, &ar[1], at);
		int64_t cnt = missing(&ar[2]) || ar[2].t == T_NONE ? -1 : need_int(r, &ar[2], at, "count");
		return py_replace(r, &s, &o, &nw, cnt);
	}
	if (IS("join")) {
		static const char *const p[] = {"d", "attribute", NULL};
		bind_args(r, at, "join", a, p, ar);
		jlist *l = iter_list(r, v, at);
		jv sep = missing(&ar[0]) ? cstr("") : to_strv(r, &ar[0], at);
		if (!missing(&ar[1]) && ar[1].t != T_NONE) {
			jlist *m = mklist(r, l->n);
			for (size_t i = 0; i < l->n; i++)
				m->v[i] = attr_path(r, &l->v[i], &ar[1], at);
			l = m;
		}
		return join_list(r, l, &sep, at);
	}
	if (IS("first")) {
		jlist *l = iter_list(r, v, at);
		return l->n ? l->v[0] : undef_named(NULL, 0);
	}
	if (IS("last")) {
		if (v->t == T_GEN)
			rfail(r, at, "'generator' object is not reversible");
		jlist *l = iter_list(r, v, at);
		return l->n ? l->v[l->n - 1] : undef_named(NULL, 0);
	}
	if (IS("list")) {
		jlist *l = iter_list(r, v, at);
		jlist *c = mklist(r, l->n);
		if (l->n)
			memcpy(c->v, l->v, l->n * sizeof(jv));
		return listv(c, 0);
	}
	if (IS("int")) {
		static const char *const p[] = {"default", "base", NULL};
		bind_args(r, at, "int", a, p, ar);
		jv dflt = missing(&ar[0]) ? mkint(0) : ar[0];
		if (v->t == T_INT)
			return *v;
		if (v->t == T_BOOL)
			return mkint(v->i);
		if (v->t == T_FLOAT) {
			if (isnan(v->f) || isinf(v->f))
				return dflt;
			return mkint(float_to_int(r, v->f, at));
		}
		if (v->t == T_STR) {
			int64_t x;
			double d;
			int base = missing(&ar[1]) ? 10 : (int)need_int(r, &ar[1], at, "base");
			if (base < 0 || base == 1 || base > 36)
				base = 10;
			if (parse_py_int(v->s, v->n, base, &x) == 0)
				return mkint(x);
			if (parse_py_float(v->s, v->n, &d) == 0 && !isnan(d) && !isinf(d))
				return mkint(float_to_int(r, d, at));
		}
		return dflt;
	}
	if (IS("float")) {
		static const char *const p[] = {"default", NULL};
		bind_args(r, at, "float", a, p, ar);
		if (is_num(v))
			return mkfloat(num_f(v));
		double d;
		if (v->t == T_STR && parse_py_float(v->s, v->n, &d) == 0)
			return mkfloat(d);
		return missing(&ar[0]) ? mkfloat(0.0) : ar[0];
	}
	if (IS("abs")) {
		if (v->t == T_FLOAT)
			return mkfloat(fabs(v->f));
		if (v->t == T_INT || v->t == T_BOOL) {
			if (v->i == INT64_MIN)
				rfail(r, at, "integer overflow");
			return mkint(v->i < 0 ? -v->i : v->i);
		}
		rfail(r, at, "bad operand type for abs(): '%s'", type_name(v));
	}
	if (IS("round")) {
		static const char *const p[] = {"precision", "method", NULL};
		bind_args(r, at, "round", a, p, ar);
		int64_t prec = missing(&ar[0]) ? 0 : need_int(r, &ar[0], at, "precision");
		const char *m = "common";
		if (!missing(&ar[1])) {
			jv ms = need_str(r, &ar[1], at, "method");
			m = mkstr(r, ms.s, ms.n).s;
		}
		return do_round(r, v, prec, m, at);
	}
	if (IS("items")) {
		if (v->t == T_UNDEF) {
			if (r->strict)
				undef_fail(r, at, v);
			return listv(mklist(r, 0), 0);
		}
		if (v->t != T_DICT)
			rfail(r, at, "can only get item pairs from a mapping");
		return as_gen(dict_items(r, v->d));
	}
	if (IS("dictsort")) {
		static const char *const p[] = {"case_sensitive", "by", "reverse", NULL};
		bind_args(r, at, "dictsort", a, p, ar);
		if (v->t != T_DICT)
			rfail(r, at, "dictsort requires a mapping");
		jv items = dict_items(r, v->d);
		sortctx c = {.at = at, .case_sensitive = !missing(&ar[0]) && truthy(r, &ar[0], at),
			     .reverse = !missing(&ar[2]) && truthy(r, &ar[2], at)};
		if (!missing(&ar[1])) {
			jv by = need_str(r, &ar[1], at, "by");
			if (name_eq(by.s, by.n, "value"))
				c.by_value = 1;
			else if (!name_eq(by.s, by.n, "key"))
				rfail(r, at, "you can only sort by either \"key\" or \"value\"");
		}
		merge_sort(r, items.l->v, items.l->n, cmp_items, &c);
		return items;
	}
	if (IS("sort")) {
		static const char *const p[] = {"reverse", "case_sensitive", "attribute", NULL};
		bind_args(r, at, "sort", a, p, ar);
		jlist *l = iter_list(r, v, at);
		jlist *c = mklist(r, l->n);
		if (l->n)
			memcpy(c->v, l->v, l->n * sizeof(jv));
		sortctx sc = {.at = at, .reverse = !missing(&ar[0]) && truthy(r, &ar[0], at),
			      .case_sensitive = !missing(&ar[1]) && truthy(r, &ar[1], at),
			      .attr = missing(&ar[2]) || ar[2].t == T_NONE ? NULL : &ar[2]};
		merge_sort(r, c->v, c->n, cmp_sort, &sc);
		return listv(c, 0);
	}
	if (IS("reverse")) {
		if (v->t == T_STR) {
			jv nn = {.t = T_NONE}, step = mkint(-1);
			return do_slice(r, v, &nn, &nn, &step, at);
		}
		jlist *l = iter_list(r, v, at);
		jlist *c = mklist(r, l->n);
		for (size_t i = 0; i < l->n; i++)
			c->v[i] = l->v[l->n - 1 - i];
		return v->t == T_GEN ? listv(c, 0) : as_gen(listv(c, 0));
	}
	if (IS("unique")) {
		static const char *const p[] = {"case_sensitive", "attribute", NULL};
		bind_args(r, at, "unique", a, p, ar);
		int cs = !missing(&ar[0]) && truthy(r, &ar[0], at);
		jlist *l = iter_list(r, v, at);
		vvec out = {0}, keys = {0};
		if (l->n > 32) {
			/* many items with keys all str or all int: stable sort of (key, index) pairs,
			 * keep the first of each run, output in the original order: O(n log n) */
			jlist *pairs = mklist(r, l->n);
			int kind = -1;
			for (size_t i = 0; i < l->n; i++) {
				jv k = missing(&ar[1]) || ar[1].t == T_NONE ? l->v[i] : attr_path(r, &l->v[i], &ar[1], at);
				k = lower_if_str(r, &k, cs);
				if ((k.t != T_STR && k.t != T_INT) || (kind >= 0 && k.t != kind)) {
					kind = -2;
					break;
				}
				kind = k.t;
				jlist *pr = mklist(r, 2);
				pr->v[0] = k;
				pr->v[1] = mkint((int64_t)i);
				pairs->v[i] = listv(pr, 1);
			}
			if (kind >= 0) {
				sortctx sc = {.at = at, .case_sensitive = 1};
				merge_sort(r, pairs->v, pairs->n, cmp_items, &sc);
				uint8_t *keep = ralloc(r, l->n);
				for (size_t i = 0; i < pairs->n; i++)
					if (i == 0 || !py_eq(&pairs->v[i].l->v[0], &pairs->v[i - 1].l->v[0]))
						keep[pairs->v[i].l->v[1].i] = 1;
				for (size_t i = 0; i < l->n; i++)
					if (keep[i])
						vpush(r, &out, l->v[i]);
				return as_gen(vvec_list(r, &out));
			}
		}
		for (size_t i = 0; i < l->n; i++) {
			jv k = missing(&ar[1]) || ar[1].t == T_NONE ? l->v[i] : attr_path(r, &l->v[i], &ar[1], at);
			k = lower_if_str(r, &k, cs);
			if (k.t == T_LIST || k.t == T_DICT || k.t == T_NS)
				rfail(r, at, "unhashable type: '%s'", type_name(&k));
			int seen = 0;
			r->steps += (long long)keys.n;
			if (r->steps > r->t->opts.max_steps)
				rfail(r, at, "evaluation step limit exceeded");
			for (size_t j = 0; j < keys.n && !seen; j++)
				seen = py_eq(&keys.v[j], &k);
			if (!seen) {
				vpush(r, &keys, k);
				vpush(r, &out, l->v[i]);
			}
		}
		return as_gen(vvec_list(r, &out));
	}
	if (IS("map")) {
		if (!truthy(r, v, at))
			return as_gen(listv(mklist(r, 0), 0));
		jlist *l = iter_list(r, v, at);
		jlist *o = mklist(r, l->n);
		const jv *attr = NULL, *dflt = NULL;
		for (size_t k = 0; k < a->nk; k++) {
			if (name_eq(a->kn[k], a->kl[k], "attribute"))
				attr = &a->kv[k];
			else if (name_eq(a->kn[k], a->kl[k], "default"))
				dflt = &a->kv[k];
		}
		if (attr) {
			for (size_t i = 0; i < l->n; i++) {
				o->v[i] = attr_path(r, &l->v[i], attr, at);
				if (o->v[i].t == T_UNDEF && dflt)
					o->v[i] = *dflt;
			}
			return as_gen(listv(o, 0));
		}
		if (a->np < 1)
			rfail(r, at, "map requires a filter argument");
		jv fn = need_str(r, &a->pos[0], at, "filter name");
		args fa = {.pos = a->pos + 1, .np = a->np - 1, .kn = a->kn, .kl = a->kl, .kv = a->kv, .nk = a->nk};
		for (size_t i = 0; i < l->n; i++)
			o->v[i] = apply_filter(r, fn.s, fn.n, &l->v[i], &fa, at);
		return as_gen(listv(o, 0));
	}
	if (IS("select"))
		return select_impl(r, v, a, at, 0, 0);
	if (IS("reject"))
		return select_impl(r, v, a, at, 0, 1);
	if (IS("selectattr"))
		return select_impl(r, v, a, at, 1, 0);
	if (IS("rejectattr"))
		return select_impl(r, v, a, at, 1, 1);
	if (IS("sum")) {
		static const char *const p[] = {"attribute", "start", NULL};
		bind_args(r, at, "sum", a, p, ar);
		jlist *l = iter_list(r, v, at);
		jv acc = missing(&ar[1]) ? mkint(0) : ar[1];
		for (size_t i = 0; i < l->n; i++) {
			jv x = missing(&ar[0]) ? l->v[i] : attr_path(r, &l->v[i], &ar[0], at);
			acc = binop(r, OP_ADD, &acc, &x, at);
		}
		return acc;
	}
	if (IS("min") || IS("max"))
		return minmax(r, v, a, at, IS("max"));
	if (IS("batch")) {
		static const char *const p[] = {"linecount", "fill_with", NULL};
		bind_args(r, at, "batch", a, p, ar);
		int64_t cnt = need_int(r, &ar[0], at, "linecount");
		if (cnt <= 0)
			rfail(r, at, "batch size must be positive");
		jlist *l = iter_list(r, v, at);
		vvec out = {0};
		for (size_t i = 0; i < l->n; i += (size_t)cnt) {
			size_t m = l->n - i < (size_t)cnt ? l->n - i : (size_t)cnt;
			size_t full = missing(&ar[1]) || ar[1].t == T_NONE ? m : (size_t)cnt;
			jlist *b = mklist(r, full);
			for (size_t j = 0; j < full; j++)
				b->v[j] = j < m ? l->v[i + j] : ar[1];
			vpush(r, &out, listv(b, 0));
		}
		return as_gen(vvec_list(r, &out));
	}
	if (IS("wordcount")) {
		jv s = to_strv(r, v, at);
		int64_t cnt = 0;
		int inw = 0;
		size_t i = 0;
		while (i < s.n) {
			uint32_t cp;
			size_t k = utf8_dec(s.s, s.n, i, &cp);
			utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
			int w = cp == '_' || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
				(cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
			if (w && !inw)
				cnt++;
			inw = w;
			i += k;
		}
		return mkint(cnt);
	}
	if (IS("striptags")) {
		jv s = to_strv(r, v, at);
		sbuf *b = cap_begin(r, at);
		size_t i = 0;
		while (i < s.n) {
			if (s.s[i] == '<') {
				const char *e = s.n - i >= 4 && !memcmp(s.s + i, "<!--", 4) ? memmem(s.s + i, s.n - i, "-->", 3) : memchr(s.s + i, '>', s.n - i);
				if (e) {
					i = (size_t)(e - s.s) + (s.s[i + 1] == '!' && e[0] == '-' ? 3 : 1);
					continue;
				}
			}
			sb_putc(r, b, s.s[i++]);
		}
		jv t = cap_end(r, b);
		jv parts = py_split(r, &t, NULL, -1, 0, at);
		jv sp = cstr(" ");
		return join_list(r, parts.l, &sp, at);
	}
	if (IS("center")) {
		static const char *const p[] = {"width", NULL};
		bind_args(r, at, "center", a, p, ar);
		jv s = to_strv(r, v, at);
		int64_t w = missing(&ar[0]) ? 80 : need_int(r, &ar[0], at, "width");
		int64_t len = (int64_t)utf8_len(s.s, s.n);
		if (w <= len)
			return s;
		if (w > 100000)
			rfail(r, at, "width too large");
		int64_t marg = w - len, left = marg / 2 + (marg & w & 1);
		sbuf *b = cap_begin(r, at);
		for (int64_t i = 0; i < left; i++)
			sb_putc(r, b, ' ');
		sb_put(r, b, s.s, s.n);
		for (int64_t i = 0; i < marg - left; i++)
			sb_putc(r, b, ' ');
		return cap_end(r, b);
	}
	if (IS("truncate")) {
		static const char *const p[] = {"length", "killwords", "end", "leeway", NULL};
		bind_args(r, at, "truncate", a, p, ar);
		jv s = to_strv(r, v, at);
		int64_t length = missing(&ar[0]) ? 255 : need_int(r, &ar[0], at, "length");
		int kill = !missing(&ar[1]) && truthy(r, &ar[1], at);
		jv end = missing(&ar[2]) ? cstr("...") : to_strv(r, &ar[2], at);
		int64_t leeway = missing(&ar[3]) || ar[3].t == T_NONE ? 5 : need_int(r, &ar[3], at, "leeway");
		int64_t len = (int64_t)utf8_len(s.s, s.n), elen = (int64_t)utf8_len(end.s, end.n);
		if (length < elen)
			rfail(r, at, "expected length >= %lld, got %lld", (long long)elen, (long long)length);
		if (leeway < 0)
			rfail(r, at, "expected leeway >= 0");
		if (len <= length + leeway)
			return s;
		jv nn = {.t = T_NONE}, stop = mkint(length - elen), one = mkint(1);
		jv head = do_slice(r, &s, &nn, &stop, &one, at);
		if (!kill) {
			jv sp = cstr(" ");
			jv parts = py_split(r, &head, &sp, 1, 1, at);
			head = parts.l->v[0];
		}
		return str_cat(r, &head, &end);
	}
	if (IS("indent")) {
		static const char *const p[] = {"width", "first", "blank", NULL};
		bind_args(r, at, "indent", a, p, ar);
		jv s = to_strv(r, v, at);
		return do_indent(r, &s, &ar[0], !missing(&ar[1]) && truthy(r, &ar[1], at),
				 !missing(&ar[2]) && truthy(r, &ar[2], at), at);
	}
	if (IS("format")) {
		jv s = to_strv(r, v, at);
		if (a->nk && a->np)
			rfail(r, at, "can't handle positional and keyword arguments at the same time");
		if (a->nk) {
			jdict *d = mkdict(r, a->nk);
			for (size_t k = 0; k < a->nk; k++)
				dict_set(r, d, mkstr(r, a->kn[k], a->kl[k]), a->kv[k]);
			jv dv = {.t = T_DICT, .d = d};
			return py_mod_format(r, &s, &dv, at);
		}
		jlist *t = mklist(r, a->np);
		if (a->np)
			memcpy(t->v, a->pos, a->np * sizeof(jv));
		jv tv = listv(t, 1);
		return py_mod_format(r, &s, &tv, at);
	}
	if (IS("attr")) {
		if (a->np < 1)
			rfail(r, at, "attr requires a name");
		jv nm = need_str(r, &a->pos[0], at, "attribute name");
		int f;
		jv x = py_attr(r, v, nm.s, nm.n, &f);
		return x;
	}
	if (IS("pprint")) {
		sbuf *b = cap_begin(r, at);
		put_repr(r, b, v, at);
		return cap_end(r, b);
	}
	rfail(r, at, "no filter named '%.*s'", (int)nlen, name);
#undef IS
}

static int apply_test(R *r, const char *name, size_t nlen, const jv *v, const args *a, const node *at)
{
#define IS(x) fname_is(name, nlen, x)
	const jv *arg = a->np ? &a->pos[0] : a->nk ? &a->kv[0] : NULL;
	if (IS("defined"))
		return v->t != T_UNDEF;
	if (IS("undefined"))
		return v->t == T_UNDEF;
	if (IS("none"))
		return v->t == T_NONE;
	if (IS("string"))
		return v->t == T_STR;
	if (IS("number"))
		return is_num(v);
	if (IS("integer"))
		return v->t == T_INT;
	if (IS("float"))
		return v->t == T_FLOAT;
	if (IS("mapping"))
		return v->t == T_DICT;
	if (IS("boolean"))
		return v->t == T_BOOL;
	if (IS("true"))
		return v->t == T_BOOL && v->i;
	if (IS("false"))
		return v->t == T_BOOL && !v->i;
	if (IS("iterable"))
		return v->t == T_GEN || v->t == T_STR || v->t == T_LIST || v->t == T_TUPLE || v->t == T_DICT || v->t == T_UNDEF;
	if (IS("sequence"))
		return v->t == T_STR || v->t == T_LIST || v->t == T_TUPLE || v->t == T_DICT || v->t == T_UNDEF;
	if (IS("callable"))
		return v->t == T_FUNC;
	if (IS("escaped"))
		return 0;
	if (IS("lower") || IS("upper")) {
		jv s = to_strv(r, v, at);
		jv m = map_case(r, &s, IS("upper"));
		return m.n == s.n && !memcmp(m.s, s.s, s.n);
	}
	if (IS("odd") || IS("even")) {
		if (v->t != T_INT && v->t != T_BOOL) {
			if (v->t == T_FLOAT)
				return IS("odd") ? fmod(v->f, 2) == 1 : fmod(v->f, 2) == 0;
			rfail(r, at, "unsupported operand type for %%: '%s'", type_name(v));
		}
		int64_t m = ((v->i % 2) + 2) % 2;
		return IS("odd") ? m == 1 : m == 0;
	}
	if (!arg)
		rfail(r, at, "test '%.*s' requires an argument or is not supported", (int)nlen, name);
	if (IS("divisibleby")) {
		jv m = binop(r, OP_MOD, v, arg, at);
		return !truthy(r, &m, at);
	}
	if (IS("equalto") || IS("eq") || IS("=="))
		return py_eq(v, arg);
	if (IS("ne") || IS("!="))
		return !py_eq(v, arg);
	if (IS("lt") || IS("lessthan") || IS("<"))
		return py_cmp(r, v, arg, at) < 0;
	if (IS("le") || IS("<="))
		return py_cmp(r, v, arg, at) <= 0;
	if (IS("gt") || IS("greaterthan") || IS(">"))
		return py_cmp(r, v, arg, at) > 0;
	if (IS("ge") || IS(">="))
		return py_cmp(r, v, arg, at) >= 0;
	if (IS("sameas")) {
		if (v->t != arg->t)
			return 0;
		if (v->t == T_NONE || v->t == T_UNDEF)
			return 1;
		if (v->t == T_BOOL || v->t == T_INT)
			return v->i == arg->i;
		if (v->t == T_STR)
			return v->s == arg->s && v->n == arg->n;
		return v->l == arg->l;
	}
	if (IS("in")) {
		return py_in(r, v, arg, at);
	}
	rfail(r, at, "no test named '%.*s'", (int)nlen, name);
#undef IS
}

static int py_in(R *r, const jv *needle, const jv *hay, const node *at)
{
	switch (hay->t) {
	case T_STR: {
		if (needle->t != T_STR)
			rfail(r, at, "'in <string>' requires string as left operand, not %s", type_name(needle));
		return needle->n == 0 || memmem(hay->s, hay->n, needle->s, needle->n) != NULL;
	}
	case T_GEN:
	case T_LIST:
	case T_TUPLE:
		for (size_t i = 0; i < hay->l->n; i++)
			if (py_eq(&hay->l->v[i], needle))
				return 1;
		return 0;
	case T_DICT: return dict_find(hay->d, needle) != NULL;
	case T_NS: return 0;
	case T_UNDEF:
		if (r->strict)
			undef_fail(r, at, hay);
		return 0;
	default: rfail(r, at, "argument of type '%s' is not iterable", type_name(hay));
	}
}

/* ------------------------------------------------------------------ methods and globals */

static jv call_method(R *r, int id, const jv *self, const args *a, const node *at)
{
	jv ar[4];
	if (self->t == T_STR) {
		const jv *s = self;
		switch (id) {
		case M_STRIP:
		case M_LSTRIP:
		case M_RSTRIP: {
			static const char *const p[] = {"chars", NULL};
			bind_args(r, at, "strip", a, p, ar);
			const jv *chars = missing(&ar[0]) || ar[0].t == T_NONE ? NULL : &ar[0];
			if (chars)
				need_str(r, chars, at, "strip arg");
			return py_strip(s, chars, id != M_RSTRIP, id != M_LSTRIP);
		}
		case M_SPLIT:
		case M_RSPLIT: {
			static const char *const p[] = {"sep", "maxsplit", NULL};
			bind_args(r, at, "split", a, p, ar);
			int64_t mx = missing(&ar[1]) ? -1 : need_int(r, &ar[1], at, "maxsplit");
			return py_split(r, s, missing(&ar[0]) ? NULL : &ar[0], mx, id == M_RSPLIT, at);
		}
		case M_STARTSWITH:
		case M_ENDSWITH: {
			static const char *const p[] = {"prefix", "start", "end", NULL};
			bind_args(r, at, "startswith", a, p, ar);
			int64_t st, en;
			clamp_range(r, s, &ar[1], &ar[2], at, &st, &en);
			if (ar[0].t == T_TUPLE || ar[0].t == T_LIST) {
				for (size_t i = 0; i < ar[0].l->n; i++) {
					jv x = need_str(r, &ar[0].l->v[i], at, "startswith arg");
					if (str_startswith(s, &x, id == M_ENDSWITH, st, en))
						return mkbool(1);
				}
				return mkbool(0);
			}
			if (ar[0].t != T_STR)
				rfail(r, at, "startswith first arg must be str or a tuple of str, not %s", type_name(&ar[0]));
			return mkbool(str_startswith(s, &ar[0], id == M_ENDSWITH, st, en));
		}
		case M_UPPER: return map_case(r, s, 1);
		case M_LOWER:
		case M_CASEFOLD: return map_case(r, s, 0);
		case M_CAPITALIZE: return map_case(r, s, 2);
		case M_TITLE: return map_case(r, s, 3);
		case M_SWAPCASE: return map_case(r, s, 4);
		case M_REPLACE: {
			static const char *const p[] = {"old", "new", "count", NULL};
			bind_args(r, at, "replace", a, p, ar);
			if (missing(&ar[0]) || missing(&ar[1]))
				rfail(r, at, "replace expected at least 2 arguments");
			jv o = need_str(r, &ar[0], at, "replace arg"), nw = need_str(r, &ar[1], at, "replace arg");
			return py_replace(r, s, &o, &nw, missing(&ar[2]) ? -1 : need_int(r, &ar[2], at, "count"));
		}
		case M_FORMAT: return py_format(r, s, a, at);
		case M_FIND:
		case M_RFIND:
		case M_INDEX:
		case M_RINDEX:
		case M_COUNT: {
			static const char *const p[] = {"sub", "start", "end", NULL};
			bind_args(r, at, "find", a, p, ar);
			jv sub = need_str(r, &ar[0], at, "substring");
			int64_t st, en;
			clamp_range(r, s, &ar[1], &ar[2], at, &st, &en);
			if (id == M_COUNT) {
				size_t bs = utf8_off(s->s, s->n, (size_t)st), be = utf8_off(s->s, s->n, (size_t)en);
				if (be < bs)
					return mkint(0);
				if (!sub.n)
					return mkint(en - st + 1);
				int64_t cnt = 0;
				const char *p0 = s->s + bs, *pe = s->s + be;
				while (p0 < pe) {
					const char *f = memmem(p0, (size_t)(pe - p0), sub.s, sub.n);
					if (!f)
						break;
					cnt++;
					p0 = f + sub.n;
				}
				return mkint(cnt);
			}
			int64_t k = py_find(s, &sub, id == M_RFIND || id == M_RINDEX, st, en);
			if (k < 0 && (id == M_INDEX || id == M_RINDEX))
				rfail(r, at, "substring not found");
			return mkint(k);
		}
		case M_ISDIGIT:
		case M_ISALPHA:
		case M_ISSPACE:
		case M_ISALNUM:
		case M_ISNUMERIC:
		case M_ISDECIMAL: {
			if (!s->n)
				return mkbool(0);
			size_t i = 0;
			while (i < s->n) {
				uint32_t cp;
				i += utf8_dec(s->s, s->n, i, &cp);
				utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
				int alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
				int digit = cat == UTF8PROC_CATEGORY_ND;
				int numeric = cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
				int ok = id == M_ISALPHA ? alpha : id == M_ISSPACE ? py_isspace(cp) : id == M_ISALNUM ? (alpha || numeric)
					: id == M_ISNUMERIC ? numeric : digit;
				if (!ok)
					return mkbool(0);
			}
			return mkbool(1);
		}
		case M_ISUPPER:
		case M_ISLOWER: {
			int cased = 0;
			size_t i = 0;
			while (i < s->n) {
				uint32_t cp;
				i += utf8_dec(s->s, s->n, i, &cp);
				utf8proc_int32_t lo = utf8proc_tolower((utf8proc_int32_t)cp), up = utf8proc_toupper((utf8proc_int32_t)cp);
				if (lo != up) {
					if (id == M_ISUPPER && (utf8proc_int32_t)cp != up)
						return mkbool(0);
					if (id == M_ISLOWER && (utf8proc_int32_t)cp != lo)
						return mkbool(0);
					cased = 1;
				}
			}
			return mkbool(cased);
		}
		case M_SPLITLINES: {
			static const char *const p[] = {"keepends", NULL};
			bind_args(r, at, "splitlines", a, p, ar);
			return py_splitlines(r, s, !missing(&ar[0]) && truthy(r, &ar[0], at));
		}
		case M_JOIN: {
			static const char *const p[] = {"iterable", NULL};
			bind_args(r, at, "join", a, p, ar);
			jlist *l = iter_list(r, &ar[0], at);
			for (size_t i = 0; i < l->n; i++)
				if (l->v[i].t != T_STR)
					rfail(r, at, "sequence item %zu: expected str instance, %s found", i, type_name(&l->v[i]));
			return join_list(r, l, s, at);
		}
		case M_ZFILL:
		case M_LJUST:
		case M_RJUST:
		case M_CENTER: {
			static const char *const p[] = {"width", "fillchar", NULL};
			bind_args(r, at, "ljust", a, p, ar);
			int64_t w = need_int(r, &ar[0], at, "width");
			if (w > 100000)
				rfail(r, at, "width too large");
			fspec f = {0};
			f.width = (int)w;
			f.fill = ' ';
			if (!missing(&ar[1])) {
				jv fc = need_str(r, &ar[1], at, "fillchar");
				if (fc.n != 1)
					rfail(r, at, "the fill character must be exactly one character long");
				f.fill = fc.s[0];
			}
			sbuf *b = cap_begin(r, at);
			if (id == M_ZFILL) {
				f.fill = '0';
				f.align = '=';
			} else
				f.align = id == M_LJUST ? '<' : id == M_RJUST ? '>' : '^';
			if (id == M_CENTER) {
				int64_t len = (int64_t)utf8_len(s->s, s->n);
				if (w > len) {
					int64_t marg = w - len, left = marg / 2 + (marg & w & 1);
					for (int64_t i = 0; i < left; i++)
						sb_putc(r, b, f.fill);
					sb_put(r, b, s->s, s->n);
					for (int64_t i = 0; i < marg - left; i++)
						sb_putc(r, b, f.fill);
				} else
					sb_put(r, b, s->s, s->n);
			} else
				pad_out(r, b, s->s, s->n, &f, '<');
			return cap_end(r, b);
		}
		case M_REMOVEPREFIX:
		case M_REMOVESUFFIX: {
			static const char *const p[] = {"affix", NULL};
			bind_args(r, at, "removeprefix", a, p, ar);
			jv x = need_str(r, &ar[0], at, "affix");
			if (x.n <= s->n) {
				if (id == M_REMOVEPREFIX && !memcmp(s->s, x.s, x.n))
					return substr(s, x.n, s->n);
				if (id == M_REMOVESUFFIX && x.n && !memcmp(s->s + s->n - x.n, x.s, x.n))
					return substr(s, 0, s->n - x.n);
			}
			return *s;
		}
		case M_PARTITION:
		case M_RPARTITION: {
			static const char *const p[] = {"sep", NULL};
			bind_args(r, at, "partition", a, p, ar);
			jv sep = need_str(r, &ar[0], at, "sep");
			if (!sep.n)
				rfail(r, at, "empty separator");
			jlist *t = mklist(r, 3);
			const char *f = NULL;
			if (id == M_PARTITION)
				f = memmem(s->s, s->n, sep.s, sep.n);
			else if (s->n >= sep.n)
				for (size_t j = s->n - sep.n + 1; j-- > 0;)
					if (!memcmp(s->s + j, sep.s, sep.n)) {
						f = s->s + j;
						break;
					}
			jv empty = cstr("");
			if (!f) {
				t->v[0] = id == M_PARTITION ? *s : empty;
				t->v[1] = empty;
				t->v[2] = id == M_PARTITION ? empty : *s;
			} else {
				size_t o = (size_t)(f - s->s);
				t->v[0] = substr(s, 0, o);
				t->v[1] = sep;
				t->v[2] = substr(s, o + sep.n, s->n);
			}
			return listv(t, 1);
		}
		}
	}
	if (self->t == T_DICT) {
		switch (id) {
		case M_GET: {
			static const char *const p[] = {"key", "default", NULL};
			bind_args(r, at, "get", a, p, ar);
			if (missing(&ar[0]))
				rfail(r, at, "get expected at least 1 argument");
			jv *x = dict_find(self->d, &ar[0]);
			if (x)
				return *x;
			return missing(&ar[1]) ? V_NONE : ar[1];
		}
		case M_ITEMS: return dict_items(r, self->d);
		case M_KEYS:
		case M_VALUES: {
			jlist *l = mklist(r, self->d->n);
			for (size_t i = 0; i < self->d->n; i++)
				l->v[i] = id == M_KEYS ? self->d->k[i] : self->d->v[i];
			return listv(l, 0);
		}
		case M_COPY: {
			jdict *d = mkdict(r, self->d->n);
			for (size_t i = 0; i < self->d->n; i++)
				dict_set(r, d, self->d->k[i], self->d->v[i]);
			jv v = {.t = T_DICT, .d = d};
			return v;
		}
		}
	}
	if (self->t == T_LIST || self->t == T_TUPLE) {
		switch (id) {
		case M_LINDEX:
			if (!a->np)
				rfail(r, at, "index expected an argument");
			for (size_t i = 0; i < self->l->n; i++)
				if (py_eq(&self->l->v[i], &a->pos[0]))
					return mkint((int64_t)i);
			rfail(r, at, "value is not in list");
		case M_LCOUNT: {
			if (!a->np)
				rfail(r, at, "count expected an argument");
			int64_t c = 0;
			for (size_t i = 0; i < self->l->n; i++)
				c += py_eq(&self->l->v[i], &a->pos[0]);
			return mkint(c);
		}
		case M_LCOPY: {
			jlist *l = mklist(r, self->l->n);
			if (l->n)
				memcpy(l->v, self->l->v, l->n * sizeof(jv));
			return listv(l, 0);
		}
		}
	}
	rfail(r, at, "unsupported method call");
}

enum { G_RANGE = 1, G_DICT, G_NAMESPACE, G_RAISE, G_STRFTIME, G_JOINER, G_CYCLER_UNUSED };

static const mname global_funcs[] = {
	{"range", G_RANGE}, {"dict", G_DICT}, {"namespace", G_NAMESPACE}, {"raise_exception", G_RAISE},
	{"strftime_now", G_STRFTIME}, {"joiner", G_JOINER}, {NULL, 0}};

static int parse_now(const char *s, struct tm *tm)
{
	memset(tm, 0, sizeof *tm);
	int y, mo, d, h = 0, mi = 0, se = 0;
	if (sscanf(s, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &se) < 3 &&
	    sscanf(s, "%d-%d-%d %d:%d:%d", &y, &mo, &d, &h, &mi, &se) < 3)
		return -1;
	tm->tm_year = y - 1900;
	tm->tm_mon = mo - 1;
	tm->tm_mday = d;
	tm->tm_hour = h;
	tm->tm_min = mi;
	tm->tm_sec = se;
	tm->tm_isdst = -1;
	time_t t = timegm(tm);
	gmtime_r(&t, tm); /* fills weekday and yday */
	return 0;
}

static jv call_global(R *r, int id, jfunc *f, const args *a, const node *at)
{
	switch (id) {
	case G_RANGE: {
		int64_t st = 0, en, step = 1;
		if (a->np == 1)
			en = need_int(r, &a->pos[0], at, "range arg");
		else if (a->np == 2 || a->np == 3) {
			st = need_int(r, &a->pos[0], at, "range arg");
			en = need_int(r, &a->pos[1], at, "range arg");
			if (a->np == 3)
				step = need_int(r, &a->pos[2], at, "range arg");
		} else
			rfail(r, at, "range expected 1 to 3 arguments");
		if (step == 0)
			rfail(r, at, "range() arg 3 must not be zero");
		int64_t cnt = 0, span;
		if ((step > 0 && st < en) || (step < 0 && st > en)) {
			if (__builtin_sub_overflow(step > 0 ? en : st, step > 0 ? st : en, &span) || step == INT64_MIN)
				rfail(r, at, "range too big");
			cnt = (span - 1) / (step > 0 ? step : -step) + 1;
		}
		if (cnt > 100000)
			rfail(r, at, "range too big, the sandbox blocks ranges larger than MAX_RANGE (100000)");
		jlist *l = mklist(r, (size_t)cnt);
		for (int64_t i = 0; i < cnt; i++)
			l->v[i] = mkint(st + i * step);
		return listv(l, 0);
	}
	case G_DICT:
	case G_NAMESPACE: {
		jdict *d = mkdict(r, a->nk + 4);
		for (size_t i = 0; i < a->np; i++) {
			if (a->pos[i].t == T_DICT || a->pos[i].t == T_NS) {
				for (size_t k = 0; k < a->pos[i].d->n; k++)
					dict_set(r, d, a->pos[i].d->k[k], a->pos[i].d->v[k]);
			} else if (a->pos[i].t == T_LIST || a->pos[i].t == T_TUPLE) {
				for (size_t k = 0; k < a->pos[i].l->n; k++) {
					jv *pr = &a->pos[i].l->v[k];
					if ((pr->t != T_LIST && pr->t != T_TUPLE) || pr->l->n != 2)
						rfail(r, at, "dictionary update sequence element has wrong length");
					dict_set(r, d, pr->l->v[0], pr->l->v[1]);
				}
			} else
				rfail(r, at, "'%s' object is not iterable", type_name(&a->pos[i]));
		}
		for (size_t k = 0; k < a->nk; k++)
			dict_set(r, d, mkstr(r, a->kn[k], a->kl[k]), a->kv[k]);
		if (id == G_NAMESPACE)
			for (size_t k = 0; k < d->n; k++)
				if (d->k[k].t == T_STR && d->k[k].n && d->k[k].s[0] == '_')
					rfail(r, at, "chat templates cannot store underscore-prefixed attributes on a namespace, but got '%.*s'",
					      (int)d->k[k].n, d->k[k].s);
		jv v = {.t = (uint8_t)(id == G_DICT ? T_DICT : T_NS), .d = d};
		return v;
	}
	case G_RAISE: {
		jv msg = a->np ? to_strv(r, &a->pos[0], at) : cstr("");
		rfail(r, at, "template raised: %.*s", (int)(msg.n > 600 ? 600 : msg.n), msg.s);
	}
	case G_STRFTIME: {
		if (!a->np)
			rfail(r, at, "strftime_now expects a format");
		jv fmt = need_str(r, &a->pos[0], at, "format");
		struct tm tm;
		const char *env = getenv("SFT_JINJA_NOW");
		if (!env || parse_now(env, &tm) < 0) {
			time_t now = time(NULL);
			localtime_r(&now, &tm);
		}
		char *zf = ralloc(r, fmt.n + 1);
		memcpy(zf, fmt.s, fmt.n);
		zf[fmt.n] = 0;
		char out[1024];
		size_t k = fmt.n ? strftime(out, sizeof out, zf, &tm) : 0;
		return mkstr(r, out, k);
	}
	case G_JOINER: {
		if (!f) {
			jfunc *j = ralloc(r, sizeof *j);
			memset(j, 0, sizeof *j);
			j->kind = F_JOINER;
			jv sep = a->np ? to_strv(r, &a->pos[0], at) : cstr(", ");
			j->sep = sep.s;
			j->nsep = sep.n;
			jv v = {.t = T_FUNC, .fn = j};
			return v;
		}
		break;
	}
	}
	rfail(r, at, "unsupported function");
}

/* ------------------------------------------------------------------ scopes */

static inline int same_name(const char *a, const char *b, size_t n)
{
	if (a == b)
		return 1;
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

static jv *frame_find(frame *f, const char *s, size_t n)
{
	for (; f; f = f->parent)
		for (size_t i = f->n; i-- > 0;)
			if (f->vars[i].n == n && f->vars[i].name[0] == s[0] && same_name(f->vars[i].name, s, n))
				return &f->vars[i].v;
	return NULL;
}

static void frame_set(R *r, frame *f, const char *s, size_t n, jv v)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->vars[i].n == n && same_name(f->vars[i].name, s, n)) {
			f->vars[i].v = v;
			return;
		}
	if (f->n == f->cap) {
		size_t nc = f->cap ? f->cap * 2 : 8;
		var *nv = ralloc(r, nc * sizeof *nv);
		if (f->n)
			memcpy(nv, f->vars, f->n * sizeof *nv);
		f->vars = nv;
		f->cap = nc;
	}
	f->vars[f->n].name = s;
	f->vars[f->n].n = n;
	f->vars[f->n].v = v;
	f->n++;
}

static frame *frame_new(R *r, frame *parent)
{
	frame *f = ralloc(r, sizeof *f);
	memset(f, 0, sizeof *f);
	f->parent = parent;
	return f;
}

static jv lookup(R *r, frame *f, const char *s, size_t n)
{
	jv *v = frame_find(f, s, n);
	if (v)
		return *v;
	if (r->ctx) {
		if ((v = dict_finds(r->ctx_cache, s, n)))
			return *v;
		json_t *j = json_object_getn(r->ctx, s, n);
		if (j) {
			jv x = from_json(r, j);
			/* the name is the template's (lookup's callers pass node names), which
			 * outlives the render: no copy */
			jv k = {.t = T_STR, .s = s, .n = n};
			dict_set(r, r->ctx_cache, k, x);
			return x;
		}
	}
	int id = find_method(global_funcs, s, n);
	if (id) {
		jfunc *fn = ralloc(r, sizeof *fn);
		memset(fn, 0, sizeof *fn);
		fn->kind = F_GLOBAL;
		fn->id = id;
		jv x = {.t = T_FUNC, .fn = fn};
		return x;
	}
	return undef_named(s, n);
}

/* ------------------------------------------------------------------ evaluation */

static jv eval(R *r, frame *f, const node *n);
static int exec_body(R *r, frame *f, node *const *body, size_t n);

static void step(R *r, const node *n)
{
	if (++r->steps > r->t->opts.max_steps)
		rfail(r, n, "evaluation step limit exceeded");
}

static void eval_args(R *r, frame *f, node *const *list, size_t n, args *a, size_t extra_kw)
{
	memset(a, 0, sizeof *a);
	size_t np = 0, nk = extra_kw;
	for (size_t i = 0; i < n; i++) {
		if (list[i]->kind == N_KWARG)
			nk++;
		else
			np++;
	}
	if (np + nk) {
		/* one allocation for all argument arrays */
		char *blk = ralloc(r, (np + nk) * sizeof(jv) + nk * (sizeof(char *) + sizeof(size_t)));
		a->pos = np ? (jv *)blk : NULL;
		if (nk) {
			a->kv = (jv *)blk + np;
			a->kn = (const char **)(a->kv + nk);
			a->kl = (size_t *)(a->kn + nk);
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (list[i]->kind == N_KWARG) {
			a->kn[a->nk] = list[i]->name;
			a->kl[a->nk] = list[i]->nlen;
			a->kv[a->nk++] = eval(r, f, list[i]->a);
		} else
			a->pos[a->np++] = eval(r, f, list[i]);
	}
}

static jv call_macro(R *r, jfunc *fn, const args *a, const node *at)
{
	const node *def = fn->def;
	if (r->depth >= r->t->opts.max_depth)
		rfail(r, at, "maximum recursion depth exceeded");
	frame *mf = frame_new(r, fn->closure);
	size_t np = def->n2;
	vvec extra = {0};
	for (size_t i = 0; i < a->np; i++) {
		if (i < np)
			frame_set(r, mf, def->list2[i]->name, def->list2[i]->nlen, a->pos[i]);
		else
			vpush(r, &extra, a->pos[i]);
	}
	jdict *kw = mkdict(r, 0);
	int has_caller = 0;
	for (size_t k = 0; k < a->nk; k++) {
		size_t i;
		for (i = 0; i < np; i++)
			if (def->list2[i]->nlen == a->kl[k] && !memcmp(def->list2[i]->name, a->kn[k], a->kl[k]))
				break;
		if (i < np) {
			if (i < a->np)
				rfail(r, at, "macro got multiple values for argument '%.*s'", (int)a->kl[k], a->kn[k]);
			frame_set(r, mf, a->kn[k], a->kl[k], a->kv[k]);
		} else if (name_eq(a->kn[k], a->kl[k], "caller")) {
			frame_set(r, mf, "caller", 6, a->kv[k]);
			has_caller = 1;
		} else
			dict_set(r, kw, mkstr(r, a->kn[k], a->kl[k]), a->kv[k]);
	}
	for (size_t i = a->np; i < np; i++) {
		const node *p = def->list2[i];
		jv *have = NULL;
		for (size_t j = 0; j < mf->n; j++)
			if (mf->vars[j].n == p->nlen && !memcmp(mf->vars[j].name, p->name, p->nlen))
				have = &mf->vars[j].v;
		if (have)
			continue;
		frame_set(r, mf, p->name, p->nlen, p->b ? eval(r, mf, p->b) : undef_named(p->name, p->nlen));
	}
	if (fn->kind == F_MACRO) {
		jv va = vvec_list(r, &extra);
		va.t = T_TUPLE;
		frame_set(r, mf, "varargs", 7, va);
		jv kv = {.t = T_DICT, .d = kw};
		frame_set(r, mf, "kwargs", 6, kv);
		if (!has_caller && !frame_find(mf, "caller", 6))
			frame_set(r, mf, "caller", 6, undef_named("caller", 6));
	}
	r->depth++;
	sbuf *saved = r->out;
	sbuf *b = cap_begin(r, at);
	r->out = b;
	exec_body(r, mf, def->list, def->n);
	r->out = saved;
	r->depth--;
	return cap_end(r, b);
}

static jv call_value(R *r, const jv *fv, const args *a, const node *at)
{
	if (fv->t == T_UNDEF) {
		if (fv->unsafe)
			rfail(r, at, "access to attribute '%.*s' of a mutable object is unsafe (sandbox)", (int)fv->n, fv->s);
		undef_fail(r, at, fv);
	}
	if (fv->t != T_FUNC)
		rfail(r, at, "'%s' object is not callable", type_name(fv));
	jfunc *fn = fv->fn;
	switch (fn->kind) {
	case F_GLOBAL: return call_global(r, fn->id, NULL, a, at);
	case F_METHOD: return call_method(r, fn->id, &fn->self, a, at);
	case F_MACRO:
	case F_CALLER: return call_macro(r, fn, a, at);
	case F_LOOPCYCLE: {
		if (!a->np)
			rfail(r, at, "no items for cycling given");
		return a->pos[fn->self.loop->i % a->np];
	}
	case F_JOINER:
		if (fn->state++ == 0)
			return cstr("");
		return mkstr(r, fn->sep, fn->nsep);
	}
	rfail(r, at, "object is not callable");
}

static jv eval(R *r, frame *f, const node *n)
{
	step(r, n);
	switch (n->kind) {
	case N_CONST: return n->cv;
	case N_NAME: {
		return lookup(r, f, n->name, n->nlen);
	}
	case N_HOLE: return r->hole;
	case N_GETATTR: {
		jv o = eval(r, f, n->a);
		return get_attr(r, &o, n->name, n->nlen, n);
	}
	case N_GETITEM: {
		jv o = eval(r, f, n->a);
		if (n->b->kind == N_SLICE) {
			const node *s = n->b;
			jv x = s->a ? eval(r, f, s->a) : V_NONE, y = s->b ? eval(r, f, s->b) : V_NONE,
			   z = s->c ? eval(r, f, s->c) : V_NONE;
			return do_slice(r, &o, &x, &y, &z, n);
		}
		jv k = eval(r, f, n->b);
		int found;
		return get_index(r, &o, &k, n, &found);
	}
	case N_SLICE: rfail(r, n, "slice outside subscript");
	case N_CALL: {
		jv fv = eval(r, f, n->a);
		args a;
		eval_args(r, f, n->list, n->n, &a, 0);
		return call_value(r, &fv, &a, n);
	}
	case N_FILTER: {
		jv v = n->a ? eval(r, f, n->a) : r->hole;
		args a;
		eval_args(r, f, n->list, n->n, &a, 0);
		return apply_filter(r, n->name, n->nlen, &v, &a, n);
	}
	case N_TEST: {
		jv v = eval(r, f, n->a);
		args a;
		eval_args(r, f, n->list, n->n, &a, 0);
		int res = apply_test(r, n->name, n->nlen, &v, &a, n);
		return mkbool(n->flag ? !res : res);
	}
	case N_BIN: {
		jv a = eval(r, f, n->a), b = eval(r, f, n->b);
		return binop(r, n->op, &a, &b, n);
	}
	case N_NEG:
	case N_POS: {
		jv a = eval(r, f, n->a);
		need_defined(r, &a, n);
		if (a.t == T_FLOAT)
			return mkfloat(n->kind == N_NEG ? -a.f : a.f);
		if (a.t == T_INT || a.t == T_BOOL) {
			if (n->kind == N_NEG && a.i == INT64_MIN)
				rfail(r, n, "integer overflow");
			return mkint(n->kind == N_NEG ? -a.i : a.i);
		}
		rfail(r, n, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+', type_name(&a));
	}
	case N_NOT: {
		jv a = eval(r, f, n->a);
		return mkbool(!truthy(r, &a, n));
	}
	case N_AND: {
		jv a = eval(r, f, n->a);
		if (!truthy(r, &a, n))
			return a;
		return eval(r, f, n->b);
	}
	case N_OR: {
		jv a = eval(r, f, n->a);
		if (truthy(r, &a, n))
			return a;
		return eval(r, f, n->b);
	}
	case N_CMP: {
		jv left = eval(r, f, n->a);
		for (size_t i = 0; i < n->n; i++) {
			const node *o = n->list[i];
			jv right = eval(r, f, o->a);
			int ok;
			switch (o->op) {
			case OP_EQ: ok = py_eq(&left, &right); break;
			case OP_NE: ok = !py_eq(&left, &right); break;
			case OP_LT: ok = py_cmp(r, &left, &right, o) < 0; break;
			case OP_LE: ok = py_cmp(r, &left, &right, o) <= 0; break;
			case OP_GT: ok = py_cmp(r, &left, &right, o) > 0; break;
			case OP_GE: ok = py_cmp(r, &left, &right, o) >= 0; break;
			case OP_IN: ok = py_in(r, &left, &right, o); break;
			default: ok = !py_in(r, &left, &right, o); break;
			}
			if (!ok)
				return mkbool(0);
			left = right;
		}
		return mkbool(1);
	}
	case N_COND: {
		jv c = eval(r, f, n->a);
		if (truthy(r, &c, n))
			return eval(r, f, n->b);
		return n->c ? eval(r, f, n->c) : undef_named(NULL, 0);
	}
	case N_LIST:
	case N_TUPLE: {
		jlist *l = mklist(r, n->n);
		for (size_t i = 0; i < n->n; i++)
			l->v[i] = eval(r, f, n->list[i]);
		return listv(l, n->kind == N_TUPLE);
	}
	case N_DICT: {
		jdict *d = mkdict(r, n->n);
		for (size_t i = 0; i < n->n; i++) {
			jv k = eval(r, f, n->list[i]->a);
			jv v = eval(r, f, n->list[i]->b);
			if (k.t == T_LIST || k.t == T_DICT || k.t == T_NS)
				rfail(r, n->list[i], "unhashable type: '%s'", type_name(&k));
			dict_set(r, d, k, v);
		}
		jv v = {.t = T_DICT, .d = d};
		return v;
	}
	}
	rfail(r, n, "internal error: cannot evaluate node kind %d", n->kind);
}

/* ------------------------------------------------------------------ statements */

static void assign(R *r, frame *f, const node *target, const jv *v, const node *at)
{
	if (target->kind == N_NAME) {
		frame_set(r, f, target->name, target->nlen, *v);
		return;
	}
	if (target->kind == N_TUPLE) {
		jlist *l = iter_list(r, v, at);
		if (l->n != target->n)
			rfail(r, at, "%s values to unpack (expected %zu, got %zu)", l->n > target->n ? "too many" : "not enough",
			      target->n, l->n);
		for (size_t i = 0; i < target->n; i++)
			frame_set(r, f, target->list[i]->name, target->list[i]->nlen, l->v[i]);
		return;
	}
	if (target->kind == N_GETATTR) {
		jv ns = lookup(r, f, target->a->name, target->a->nlen);
		if (ns.t != T_NS)
			rfail(r, at, "cannot assign attribute on non-namespace object");
		if (target->nlen && target->name[0] == '_')
			rfail(r, at, "chat templates cannot store underscore-prefixed attributes on a namespace, but got '%.*s'",
			      (int)target->nlen, target->name);
		dict_set(r, ns.d, mkstr(r, target->name, target->nlen), *v);
		return;
	}
	rfail(r, at, "can't assign to this target");
}

static void out_value(R *r, const jv *v, const node *at)
{
	if (v->t == T_STR)
		sb_put(r, r->out, v->s, v->n);
	else
		put_str(r, r->out, v, at);
}

/* {{ a + b ~ c ... }}: evaluates the operands of a left-leaning chain of `+`/`~` in order
 * and, when every `+` joins plain strings, writes them straight to the output instead of
 * building the intermediate strings. Otherwise folds them with binop (same result, same
 * evaluation order: binop has no side effects). */
static void output_chain(R *r, frame *f, const node *top)
{
	const node *chain[64];
	int k = 0;
	const node *x = top;
	while (x->kind == N_BIN && (x->op == OP_ADD || x->op == OP_CONCAT) && k < 63) {
		chain[k++] = x;
		x = x->a;
	}
	if (x->kind == N_BIN && (x->op == OP_ADD || x->op == OP_CONCAT)) {
		jv v = eval(r, f, top);
		out_value(r, &v, top);
		return;
	}
	/* operands: x, then chain[k-1]->b, ..., chain[0]->b */
	jv *vals = ralloc(r, (size_t)(k + 1) * sizeof(jv));
	vals[0] = eval(r, f, x);
	int plain = vals[0].t == T_STR && !vals[0].mk;
	for (int i = k - 1, j = 1; i >= 0; i--, j++) {
		vals[j] = eval(r, f, chain[i]->b);
		if (chain[i]->op == OP_ADD && !(vals[j].t == T_STR && !vals[j].mk))
			plain = 0;
		if (chain[i]->op == OP_CONCAT && vals[j].t == T_STR && vals[j].mk)
			plain = 0;
	}
	/* a `~` anywhere turns the running value into a str, so `+` after it needs str too;
	 * `+` before a `~` needs its own operands to be strings: checked above */
	if (plain) {
		for (int j = 0; j <= k; j++) {
			if (vals[j].t == T_STR)
				sb_put(r, r->out, vals[j].s, vals[j].n);
			else
				put_str(r, r->out, &vals[j], top);
		}
		return;
	}
	jv acc = vals[0];
	for (int i = k - 1, j = 1; i >= 0; i--, j++)
		acc = binop(r, chain[i]->op, &acc, &vals[j], chain[i]);
	out_value(r, &acc, top);
}

static jv capture_body(R *r, frame *f, node *const *body, size_t n, const node *at)
{
	sbuf *saved = r->out;
	sbuf *b = cap_begin(r, at);
	r->out = b;
	exec_body(r, f, body, n);
	r->out = saved;
	return cap_end(r, b);
}

static int exec_for(R *r, frame *f, const node *n)
{
	jv it = eval(r, f, n->b);
	jlist *items = iter_list(r, &it, n->b);
	if (n->c) {
		frame *tf = frame_new(r, f);
		vvec keep = {0};
		for (size_t i = 0; i < items->n; i++) {
			tf->n = 0;
			assign(r, tf, n->a, &items->v[i], n);
			jv c = eval(r, tf, n->c);
			if (truthy(r, &c, n->c))
				vpush(r, &keep, items->v[i]);
		}
		jlist *l = ralloc(r, sizeof *l);
		l->n = keep.n;
		l->v = keep.v;
		items = l;
	}
	if (!items->n)
		return n->n2 ? exec_body(r, f, n->list2, n->n2) : 0;
	jloop *lp = ralloc(r, sizeof *lp);
	lp->n = items->n;
	lp->items = items->v;
	frame *lf = frame_new(r, f);
	jv lv = {.t = T_LOOP, .loop = lp};
	for (size_t i = 0; i < items->n; i++) {
		step(r, n);
		lp->i = i;
		lf->n = 0;
		assign(r, lf, n->a, &items->v[i], n);
		frame_set(r, lf, "loop", 4, lv);
		int st = exec_body(r, lf, n->list, n->n);
		if (st == 1)
			break;
	}
	return 0;
}

static int exec_node(R *r, frame *f, const node *n)
{
	step(r, n);
	switch (n->kind) {
	case N_TEXT: sb_put(r, r->out, n->name, n->nlen); return 0;
	case N_OUTPUT: {
		if (n->a->kind == N_BIN && (n->a->op == OP_ADD || n->a->op == OP_CONCAT)) {
			output_chain(r, f, n->a);
			return 0;
		}
		jv v = eval(r, f, n->a);
		out_value(r, &v, n);
		return 0;
	}
	case N_IF: {
		jv c = eval(r, f, n->a);
		if (truthy(r, &c, n->a))
			return exec_body(r, f, n->list, n->n);
		return exec_body(r, f, n->list2, n->n2);
	}
	case N_FOR: return exec_for(r, f, n);
	case N_SET: {
		jv v = eval(r, f, n->b);
		assign(r, f, n->a, &v, n);
		return 0;
	}
	case N_SETBLOCK: {
		jv v = capture_body(r, f, n->list, n->n, n);
		if (n->c) {
			jv saved = r->hole;
			r->hole = v;
			v = eval(r, f, n->c);
			r->hole = saved;
		}
		assign(r, f, n->a, &v, n);
		return 0;
	}
	case N_MACRO: {
		jfunc *fn = ralloc(r, sizeof *fn);
		memset(fn, 0, sizeof *fn);
		fn->kind = F_MACRO;
		fn->def = n;
		fn->closure = f;
		jv v = {.t = T_FUNC, .fn = fn};
		frame_set(r, f, n->name, n->nlen, v);
		return 0;
	}
	case N_CALLBLOCK: {
		jfunc *cf = ralloc(r, sizeof *cf);
		memset(cf, 0, sizeof *cf);
		cf->kind = F_CALLER;
		cf->def = n;
		cf->closure = f;
		const node *call = n->a;
		jv fv = eval(r, f, call->a);
		args a;
		eval_args(r, f, call->list, call->n, &a, 1);
		a.kn[a.nk] = "caller";
		a.kl[a.nk] = 6;
		a.kv[a.nk].t = T_FUNC;
		a.kv[a.nk].fn = cf;
		a.nk++;
		jv v = call_value(r, &fv, &a, n);
		out_value(r, &v, n);
		return 0;
	}
	case N_FILTERBLOCK: {
		jv v = capture_body(r, f, n->list, n->n, n);
		jv saved = r->hole;
		r->hole = v;
		jv res = eval(r, f, n->a);
		r->hole = saved;
		out_value(r, &res, n);
		return 0;
	}
	case N_BREAK: return 1;
	case N_CONTINUE: return 2;
	case N_GEN: {
		jv v = capture_body(r, frame_new(r, f), n->list, n->n, n);
		size_t start = r->top.n;
		if (r->nspans == r->capspans) {
			size_t nc = r->capspans ? r->capspans * 2 : 8;
			jinja_span *ns = realloc(r->spans, nc * sizeof *ns);
			if (!ns)
				rfail(r, n, "out of memory");
			r->spans = ns;
			r->capspans = nc;
		}
		r->spans[r->nspans].start = start;
		r->spans[r->nspans].end = start + v.n;
		r->nspans++;
		sb_put(r, r->out, v.s, v.n);
		return 0;
	}
	case N_WITH: {
		frame *wf = frame_new(r, f);
		for (size_t i = 0; i < n->n2; i++) {
			jv v = eval(r, f, n->list2[i]->b);
			assign(r, wf, n->list2[i]->a, &v, n->list2[i]);
		}
		return exec_body(r, wf, n->list, n->n);
	}
	}
	rfail(r, n, "internal error: cannot execute node kind %d", n->kind);
}

static int exec_body(R *r, frame *f, node *const *body, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int st = exec_node(r, f, body[i]);
		if (st)
			return st;
	}
	return 0;
}

/* ------------------------------------------------------------------ render API */

static int render_run(R *r, const json_t *ctx)
{
	if (setjmp(r->jb))
		return -1;
	r->ctx = ctx;
	r->ctx_cache = mkdict(r, 8);
	r->root = frame_new(r, NULL);
	exec_body(r, r->root, r->t->body, r->t->n);
	sb_grow(r, &r->top, 1);
	r->top.p[r->top.n] = 0;
	return 0;
}

/* Each thread keeps one render state block (R, the arena's first block and an output
 * scratch buffer) between renders: allocating, clearing and freeing ~33 KB plus a 4 KB
 * output buffer per render was a tenth of a short template's render time. The block is
 * taken from the thread while a render runs (so a nested or concurrent use just allocates
 * another) and freed at thread exit. */
enum { FIRST_BLOCK = 32768, SCRATCH_KEEP = 1 << 20 };
static pthread_key_t rstate_key; /* its value: the thread's block, for the exit destructor */
static pthread_once_t rstate_once = PTHREAD_ONCE_INIT;
static int rstate_ok;
static _Thread_local R *rstate_idle; /* the thread's block while no render uses it */
static _Thread_local int rstate_owned;

static void rstate_destroy(void *p)
{
	R *r = p;
	if (r == rstate_idle)
		rstate_idle = NULL;
	free(r->scratch);
	free(r);
}

static void rstate_init(void)
{
	rstate_ok = pthread_key_create(&rstate_key, rstate_destroy) == 0;
}

static R *rstate_get(void)
{
	R *r = rstate_idle;
	if (r) {
		rstate_idle = NULL;
		return r;
	}
	size_t rsz = (sizeof(R) + 63) & ~(size_t)63;
	r = malloc(rsz + sizeof(ablock) + FIRST_BLOCK);
	if (!r)
		return NULL;
	r->scratch = NULL;
	r->scratch_cap = 0;
	r->owned = 0;
	if (!rstate_owned) { /* the thread's first render: this block becomes its cached one */
		pthread_once(&rstate_once, rstate_init);
		if (rstate_ok && pthread_setspecific(rstate_key, r) == 0)
			r->owned = rstate_owned = 1;
	}
	return r;
}

/* Frees what the render allocated and gives the block back to the thread; `keep` is the
 * output buffer to reuse next time (NULL when it was handed to the caller). */
static void rstate_put(R *r, char *keep, size_t keep_cap)
{
	arena_free_all(&r->ar);
	if (keep && keep_cap > SCRATCH_KEEP) {
		free(keep);
		keep = NULL;
	}
	r->scratch = keep;
	r->scratch_cap = keep ? keep_cap : 0;
	if (r->owned)
		rstate_idle = r;
	else
		rstate_destroy(r);
}

int jinja_render(const jinja_template *t, const json_t *ctx, char **out, size_t *out_len, jinja_span **spans,
		 size_t *n_spans, sft_error *err)
{
	sft_error local;
	if (!err)
		err = &local;
	if (!t) {
		return sft_error_set(err, SFT_EXIT_INTERNAL, "jinja_render: no template");
	}
	if (ctx && !json_is_object(ctx))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: render context must be a JSON object", t->name);
	/* one allocation: the render state, then the arena's first block */
	R *r = rstate_get();
	if (!r)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	char *scratch = r->scratch;
	size_t scratch_cap = r->scratch_cap;
	memset(r, 0, offsetof(R, caps));
	size_t rsz = (sizeof(R) + 63) & ~(size_t)63;
	ablock *first = (ablock *)((char *)r + rsz);
	first->next = NULL;
	first->used = 0;
	first->cap = FIRST_BLOCK;
	r->ar.head = r->ar.fixed = first;
	r->ar.total = FIRST_BLOCK;
	r->t = t;
	r->err = err;
	r->ar.limit = t->opts.max_memory;
	r->strict = t->opts.strict;
	r->top.p = scratch;
	r->top_phys = scratch_cap;
	r->out = &r->top;
	if (render_run(r, ctx) < 0) {
		for (int i = 0; i < r->ncaps; i++)
			free(r->caps[i]->p);
		free(r->spans);
		int code = err->code ? err->code : SFT_EXIT_DATA;
		rstate_put(r, r->top.p, r->top_phys);
		return -code;
	}
	/* hand out a copy of a small output (the scratch buffer stays for the next render),
	 * the buffer itself when large */
	char *o = r->top.p;
	int keep = r->top.n < r->top_phys / 4 || r->top.n < 4096;
	if (keep) {
		o = malloc(r->top.n + 1);
		if (!o) {
			free(r->spans);
			rstate_put(r, r->top.p, r->top_phys);
			return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		}
		memcpy(o, r->top.p, r->top.n + 1);
	}
	*out = o;
	if (out_len)
		*out_len = r->top.n;
	if (spans) {
		*spans = r->spans;
		if (n_spans)
			*n_spans = r->nspans;
	} else {
		free(r->spans);
		if (n_spans)
			*n_spans = r->nspans;
	}
	rstate_put(r, keep ? r->top.p : NULL, r->top_phys);
	return 0;
}

/* ------------------------------------------------------------------ chat context */

json_t *jinja_chat_context(const json_t *messages, const json_t *tools, int add_generation_prompt,
			   const json_t *extra)
{
	json_t *ctx = json_object();
	json_t *msgs = json_array();
	if (!ctx || !msgs) {
		json_decref(ctx);
		json_decref(msgs);
		return NULL;
	}
	size_t i;
	json_t *m;
	json_array_foreach((json_t *)messages, i, m) {
		static const char *const fields[] = {"reasoning_content", "thinking", "reasoning"};
		json_t *reasoning = NULL;
		if (json_is_object(m))
			for (int k = 0; k < 3 && !reasoning; k++) {
				json_t *x = json_object_get(m, fields[k]);
				if (x && !json_is_null(x))
					reasoning = x;
			}
		if (!reasoning) {
			json_array_append(msgs, m); /* shared: renders never modify values */
			continue;
		}
		json_t *c = json_object();
		json_object_set(c, "thinking", reasoning);
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)m, key, v)
			json_object_set(c, key, v);
		json_object_set(c, "reasoning_content", reasoning);
		json_array_append_new(msgs, c);
	}
	json_object_set_new(ctx, "messages", msgs);
	json_object_set_new(ctx, "tools", tools ? json_incref((json_t *)tools) : json_null());
	json_object_set_new(ctx, "documents", json_null());
	json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt));
	if (extra) {
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)extra, key, v)
			json_object_set(ctx, key, v);
	}
	return ctx;
}
