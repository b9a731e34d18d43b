#include "jsonl.h"

#include "json_scan.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct jsonl_reader {
	FILE *fp;
	int own;
	char *name;
	char *buf;
	size_t cap;
	long line;
};

jsonl_reader *jsonl_open_stream(FILE *fp, const char *name)
{
	jsonl_reader *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->fp = fp;
	r->name = strdup(name ? name : "<stdin>");
	return r;
}

jsonl_reader *jsonl_open(const char *path, sft_error *err)
{
	if (!path || !strcmp(path, "-"))
		return jsonl_open_stream(stdin, "<stdin>");
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	jsonl_reader *r = jsonl_open_stream(fp, path);
	if (!r) {
		fclose(fp);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	r->own = 1;
	return r;
}

void jsonl_close(jsonl_reader *r)
{
	if (!r)
		return;
	if (r->own)
		fclose(r->fp);
	free(r->name);
	free(r->buf);
	free(r);
}

long jsonl_line(const jsonl_reader *r) { return r->line; }
const char *jsonl_name(const jsonl_reader *r) { return r->name; }

int jsonl_next_line(jsonl_reader *r, const char **line, size_t *len, sft_error *err)
{
	for (;;) {
		errno = 0;
		ssize_t n = getline(&r->buf, &r->cap, r->fp);
		if (n < 0) {
			if (ferror(r->fp))
				return sft_error_set(err, SFT_EXIT_RUNTIME, "%s:%ld: read error: %s", r->name,
						     r->line + 1, strerror(errno));
			return 0;
		}
		r->line++;
		while (n > 0 && (r->buf[n - 1] == '\n' || r->buf[n - 1] == '\r'))
			r->buf[--n] = '\0';
		size_t i = 0;
		while (i < (size_t)n && (r->buf[i] == ' ' || r->buf[i] == '\t'))
			i++;
		if (i == (size_t)n)
			continue; /* blank line */
		*line = r->buf;
		*len = (size_t)n;
		return 1;
	}
}

/* ---- reader ----
 *
 * jansson's json_loadb reads a character at a time through a stream layer (5.5 us for a
 * 330-byte record). This recursive-descent reader over json_scan builds the same jansson
 * values through the *_nocheck constructors (UTF-8 is validated by the scanner), about
 * 10x faster. It accepts exactly what json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL)
 * accepts: RFC 8259, UTF-8, no NaN, 64-bit integers, finite reals, \u0000 in values but
 * not in keys, duplicate keys (the last wins), nesting up to 2048. On anything else it
 * returns NULL and json_parse_located asks jansson, whose message (line:column) is the
 * one the user sees. tests/unit/test_json.c and tests/fuzz/fuzz_json_fast.c hold the
 * two to the same answers. */

#define FAST_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

typedef struct fast_parser {
	const unsigned char *s, *end;
	int depth;
	char *tmp;   /* unescaped strings, one after the other: never more than the input */
	size_t used;
} fast_parser;

static json_t *fast_value(fast_parser *p);

/* jansson's quirk, kept so both accept the same texts: a token read with one byte of
 * lookahead (a number, true/false/null) swallows a NUL byte right after it, because its
 * stream takes a NUL in its pushback buffer for "empty" ("2\0" is the number 2). */
static void fast_after_lookahead(fast_parser *p)
{
	if (p->s < p->end && *p->s == '\0')
		p->s++;
}

/* The string after an opening quote: its bytes in the input (no escapes) or in p->tmp. */
static int fast_string(fast_parser *p, int allow_nul, const char **out, size_t *len)
{
	const unsigned char *q;
	int r = json_scan_string(p->s, p->end, &q);
	if (r == JSCAN_OK) {
		*out = (const char *)p->s;
		*len = (size_t)(q - p->s);
		p->s = q + 1;
		return 0;
	}
	if (r != JSCAN_ESCAPED)
		return -1;
	char *dst = p->tmp + p->used;
	int nul;
	if (json_scan_unescape(p->s, q, p->end, allow_nul, dst, len, &nul, &q))
		return -1;
	p->s = q;
	p->used += *len;
	*out = dst;
	return 0;
}

static json_t *fast_number(fast_parser *p)
{
	const unsigned char *b = p->s;
	int is_real;
	if (json_scan_number(b, p->end, &p->s, &is_real))
		return NULL;
	size_t n = (size_t)(p->s - b);
	fast_after_lookahead(p);
	char small[64], *buf = n < sizeof small ? small : malloc(n + 1);
	if (!buf)
		return NULL;
	memcpy(buf, b, n);
	buf[n] = '\0';
	json_t *v = NULL;
	errno = 0;
	if (!is_real) {
		long long x = strtoll(buf, NULL, 10);
		if (errno != ERANGE) /* jansson: too big integer */
			v = json_integer((json_int_t)x);
	} else {
		double d = strtod(buf, NULL);
		if (!(errno == ERANGE && isinf(d))) /* jansson: real number overflow */
			v = json_real(d);
	}
	if (buf != small)
		free(buf);
	return v;
}

static int fast_literal(fast_parser *p, const char *w, size_t n)
{
	if ((size_t)(p->end - p->s) < n || memcmp(p->s, w, n))
		return -1;
	p->s += n;
	fast_after_lookahead(p);
	return 0;
}

/* After '{' or '['. */
static json_t *fast_container(fast_parser *p, int obj)
{
	json_t *c = obj ? json_object() : json_array();
	if (!c)
		return NULL;
	p->s = json_scan_ws(p->s, p->end);
	if (p->s < p->end && *p->s == (obj ? '}' : ']')) {
		p->s++;
		return c;
	}
	for (;;) {
		json_t *v;
		if (obj) {
			const char *k;
			size_t kn;
			p->s = json_scan_ws(p->s, p->end);
			if (p->s >= p->end || *p->s != '"')
				goto fail;
			p->s++;
			if (fast_string(p, 0, &k, &kn)) /* jansson: no NUL in keys */
				goto fail;
			p->s = json_scan_ws(p->s, p->end);
			if (p->s >= p->end || *p->s != ':')
				goto fail;
			p->s++;
			if (!(v = fast_value(p)) || json_object_setn_new_nocheck(c, k, kn, v))
				goto fail; /* setn_new releases v on failure */
		} else if (!(v = fast_value(p)) || json_array_append_new(c, v)) {
			goto fail;
		}
		p->s = json_scan_ws(p->s, p->end);
		if (p->s < p->end && *p->s == ',') {
			p->s++;
			continue;
		}
		if (p->s < p->end && *p->s == (obj ? '}' : ']')) {
			p->s++;
			return c;
		}
		goto fail;
	}
fail:
	json_decref(c);
	return NULL;
}

static json_t *fast_value(fast_parser *p)
{
	p->s = json_scan_ws(p->s, p->end);
	if (p->s >= p->end)
		return NULL;
	switch (*p->s) {
	case '{':
	case '[': {
		if (++p->depth > FAST_MAX_DEPTH)
			return NULL;
		int obj = *p->s++ == '{';
		json_t *v = fast_container(p, obj);
		p->depth--;
		return v;
	}
	case '"': {
		const char *s;
		size_t n;
		p->s++;
		return fast_string(p, 1, &s, &n) ? NULL : json_stringn_nocheck(s, n);
	}
	case 't': return fast_literal(p, "true", 4) ? NULL : json_true();
	case 'f': return fast_literal(p, "false", 5) ? NULL : json_false();
	case 'n': return fast_literal(p, "null", 4) ? NULL : json_null();
	default: return fast_number(p);
	}
}

json_t *json_parse_fast(const char *buf, size_t len)
{
	char stack[4096];
	fast_parser p = {(const unsigned char *)buf, (const unsigned char *)buf + len, 0, stack, 0};
	if (len > sizeof stack && !(p.tmp = malloc(len)))
		return NULL;
	json_t *v = fast_value(&p);
	if (v && json_scan_ws(p.s, p.end) != p.end) {
		json_decref(v);
		v = NULL;
	}
	if (p.tmp != stack)
		free(p.tmp);
	return v;
}

json_t *json_parse_located(const char *buf, size_t len, const char *name, long line, int any_value,
			   sft_error *err)
{
	json_t *v = json_parse_fast(buf, len);
	if (!v) {
		json_error_t je;
		v = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
		if (!v) {
			/* jansson counts columns in characters from 1 within the buffer */
			sft_error_set(err, SFT_EXIT_DATA, "%s:%ld:%d: invalid JSON: %s", name,
				      line + (je.line > 1 ? je.line - 1 : 0), je.column > 0 ? je.column : 1,
				      je.text);
			return NULL;
		}
	}
	if (!any_value && !json_is_object(v)) {
		json_decref(v);
		sft_error_set(err, SFT_EXIT_DATA, "%s:%ld:1: expected a JSON object per line", name, line);
		return NULL;
	}
	return v;
}

int jsonl_next(jsonl_reader *r, json_t **out, sft_error *err)
{
	const char *line;
	size_t len;
	int rc = jsonl_next_line(r, &line, &len, err);
	if (rc <= 0)
		return rc;
	*out = json_parse_located(line, len, r->name, r->line, 0, err);
	return *out ? 1 : -SFT_EXIT_DATA;
}

/* ---- writer ---- */

int json_format_double(double d, char *buf, size_t cap)
{
	if (isnan(d))
		return snprintf(buf, cap, "NaN");
	if (isinf(d))
		return snprintf(buf, cap, d < 0 ? "-Infinity" : "Infinity");
	char tmp[40];
	int prec;
	for (prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	/* tmp = "d.ddde[+-]XX" with `prec` significant digits; format like Python repr:
	 * positional when -4 <= exp < 16, else scientific "1e+16", "1.5e-05". */
	char digits[32];
	int nd = 0;
	const char *p = tmp;
	int neg = 0;
	if (*p == '-') {
		neg = 1;
		p++;
	}
	for (; *p && *p != 'e'; p++)
		if (*p >= '0' && *p <= '9')
			digits[nd++] = *p;
	int exp = atoi(p + 1);
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	digits[nd] = '\0';
	char out[64];
	int o = 0;
	if (neg)
		out[o++] = '-';
	if (exp >= -4 && exp < 16) {
		if (exp < 0) {
			out[o++] = '0';
			out[o++] = '.';
			for (int i = 0; i < -exp - 1; i++)
				out[o++] = '0';
			for (int i = 0; i < nd; i++)
				out[o++] = digits[i];
		} else {
			for (int i = 0; i <= exp; i++)
				out[o++] = i < nd ? digits[i] : '0';
			out[o++] = '.';
			if (nd > exp + 1)
				for (int i = exp + 1; i < nd; i++)
					out[o++] = digits[i];
			else
				out[o++] = '0';
		}
		out[o] = '\0';
	} else {
		out[o++] = digits[0];
		if (nd > 1) {
			out[o++] = '.';
			for (int i = 1; i < nd; i++)
				out[o++] = digits[i];
		}
		o += snprintf(out + o, sizeof out - (size_t)o, "e%c%02d", exp < 0 ? '-' : '+',
			      exp < 0 ? -exp : exp);
	}
	return snprintf(buf, cap, "%s", out);
}

static int buf_reserve(json_buf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 1024;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *nb = realloc(b->buf, cap);
	if (!nb)
		return -1;
	b->buf = nb;
	b->cap = cap;
	return 0;
}

int json_buf_put(json_buf *b, const char *s, size_t n)
{
	if (buf_reserve(b, n))
		return -1;
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	return 0;
}

int json_buf_string(json_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	if (buf_reserve(b, n + 2))
		return -1;
	b->buf[b->len++] = '"';
	for (;;) {
		/* UTF-8 and DEL (as Python's json.dumps) are copied as they are */
		size_t run = json_scan_plain(p, (size_t)(end - p), 0, 0);
		memcpy(b->buf + b->len, p, run);
		b->len += run;
		p += run;
		if (p == end)
			break;
		if (buf_reserve(b, (size_t)(end - p) + 6)) /* the escape and the rest */
			return -1;
		unsigned c = *p++;
		char *o = b->buf + b->len;
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
		b->len = (size_t)(o - b->buf);
	}
	b->buf[b->len++] = '"';
	return 0;
}

int json_buf_value(json_buf *b, const json_t *v)
{
	char num[64];
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		if (json_buf_put(b, "{", 1))
			return -1;
		const char *k;
		json_t *x;
		int first = 1;
		json_object_foreach((json_t *)v, k, x) {
			if (!first && json_buf_put(b, ",", 1))
				return -1;
			first = 0;
			if (json_buf_string(b, k, strlen(k)) || json_buf_put(b, ":", 1) || json_buf_value(b, x))
				return -1;
		}
		return json_buf_put(b, "}", 1);
	}
	case JSON_ARRAY: {
		if (json_buf_put(b, "[", 1))
			return -1;
		for (size_t i = 0; i < json_array_size(v); i++)
			if ((i && json_buf_put(b, ",", 1)) || json_buf_value(b, json_array_get(v, i)))
				return -1;
		return json_buf_put(b, "]", 1);
	}
	case JSON_STRING:
		return json_buf_string(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER: {
		/* decimal digits right to left (snprintf was 3% of ds-template's run) */
		json_int_t x = json_integer_value(v);
		unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
		char *e = num + sizeof num, *q = e;
		do {
			*--q = (char)('0' + u % 10);
			u /= 10;
		} while (u);
		if (x < 0)
			*--q = '-';
		return json_buf_put(b, q, (size_t)(e - q));
	}
	case JSON_REAL: {
		int n = json_format_double(json_real_value(v), num, sizeof num);
		return json_buf_put(b, num, (size_t)n);
	}
	case JSON_TRUE: return json_buf_put(b, "true", 4);
	case JSON_FALSE: return json_buf_put(b, "false", 5);
	case JSON_NULL: return json_buf_put(b, "null", 4);
	}
	return -1;
}

int json_dump_compact(const json_t *v, char **buf, size_t *len, size_t *cap)
{
	json_buf b = {*buf, *len, *cap};
	int rc = json_buf_value(&b, v);
	if (!rc && !buf_reserve(&b, 0))
		b.buf[b.len] = '\0';
	*buf = b.buf;
	*len = b.len;
	*cap = b.cap;
	return rc;
}

json_t *json_real_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

int json_write_compact(FILE *fp, const json_t *v)
{
	/* a per-thread scratch buffer keeps the hot path allocation-free */
	static _Thread_local char *buf;
	static _Thread_local size_t cap;
	size_t len = 0;
	if (json_dump_compact(v, &buf, &len, &cap))
		return -1;
	return fwrite(buf, 1, len, fp) == len ? 0 : -1;
}

int jsonl_write(FILE *fp, const json_t *v)
{
	if (json_write_compact(fp, v))
		return -1;
	return putc('\n', fp) == EOF ? -1 : 0;
}
