#include "jsonl.h"

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

json_t *json_parse_located(const char *buf, size_t len, const char *name, long line, int any_value,
			   sft_error *err)
{
	json_error_t je;
	json_t *v = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (!v) {
		/* jansson counts columns in characters from 1 within the buffer */
		sft_error_set(err, SFT_EXIT_DATA, "%s:%ld:%d: invalid JSON: %s", name,
			      line + (je.line > 1 ? je.line - 1 : 0), je.column > 0 ? je.column : 1,
			      je.text);
		return NULL;
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

typedef struct sbuf {
	char **buf;
	size_t *len, *cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n)
{
	if (*b->len + n + 1 > *b->cap) {
		size_t nc = *b->cap ? *b->cap : 256;
		while (nc < *b->len + n + 1)
			nc *= 2;
		char *nb = realloc(*b->buf, nc);
		if (!nb)
			return -1;
		*b->buf = nb;
		*b->cap = nc;
	}
	memcpy(*b->buf + *b->len, s, n);
	*b->len += n;
	(*b->buf)[*b->len] = '\0';
	return 0;
}

static int put_string(sbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (sb_put(b, "\"", 1))
		return -1;
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		char u[7];
		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		default:
			if (c < 0x20) { /* as Python json.dumps: DEL (0x7f) stays raw */
				u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
				u[4] = hex[c >> 4]; u[5] = hex[c & 15]; u[6] = 0;
				esc = u;
			}
		}
		if (esc) {
			if (sb_put(b, s + start, i - start) || sb_put(b, esc, strlen(esc)))
				return -1;
			start = i + 1;
		}
	}
	if (sb_put(b, s + start, n - start))
		return -1;
	return sb_put(b, "\"", 1);
}

static int put_value(sbuf *b, const json_t *v)
{
	char num[64];
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		if (sb_put(b, "{", 1))
			return -1;
		const char *k;
		json_t *x;
		int first = 1;
		json_object_foreach((json_t *)v, k, x) {
			if (!first && sb_put(b, ",", 1))
				return -1;
			first = 0;
			if (put_string(b, k, strlen(k)) || sb_put(b, ":", 1) || put_value(b, x))
				return -1;
		}
		return sb_put(b, "}", 1);
	}
	case JSON_ARRAY: {
		if (sb_put(b, "[", 1))
			return -1;
		for (size_t i = 0; i < json_array_size(v); i++)
			if ((i && sb_put(b, ",", 1)) || put_value(b, json_array_get(v, i)))
				return -1;
		return sb_put(b, "]", 1);
	}
	case JSON_STRING:
		return put_string(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER: {
		int n = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return sb_put(b, num, (size_t)n);
	}
	case JSON_REAL: {
		int n = json_format_double(json_real_value(v), num, sizeof num);
		return sb_put(b, num, (size_t)n);
	}
	case JSON_TRUE:
		return sb_put(b, "true", 4);
	case JSON_FALSE:
		return sb_put(b, "false", 5);
	case JSON_NULL:
		return sb_put(b, "null", 4);
	}
	return -1;
}

int json_dump_compact(const json_t *v, char **buf, size_t *len, size_t *cap)
{
	sbuf b = {buf, len, cap};
	return put_value(&b, v);
}

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
