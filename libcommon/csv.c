/* csv.c - RFC 4180 reader; see csv.h. A small state machine over getc_unlocked. */
#include "csv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct csv_reader {
	FILE *fp;
	char *name;
	int delim;
	long line;        /* current physical line (1-based) */
	long rec_line;    /* line where the last record started */
	int started;      /* BOM check done */
	unsigned char in[65536];
	size_t in_pos, in_len;
	int eof, io_err;
	char *buf;        /* all field bytes of the record, each NUL-terminated */
	size_t len, cap;
	size_t *offs;     /* field start offsets into buf */
	size_t *lens;
	char **fields;
	size_t nf, fcap;
	char **header;    /* header copy for csv_next_object */
	size_t nheader;
	int have_header;
};

csv_reader *csv_open_stream(FILE *fp, const char *name, int delim)
{
	csv_reader *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->fp = fp;
	r->name = strdup(name ? name : "<stdin>");
	r->delim = delim;
	r->line = 1;
	return r;
}

void csv_close(csv_reader *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->buf);
	free(r->offs);
	free(r->lens);
	free(r->fields);
	for (size_t i = 0; i < r->nheader; i++)
		free(r->header[i]);
	free(r->header);
	free(r);
}

static int fill(csv_reader *r)
{
	r->in_pos = 0;
	r->in_len = fread(r->in, 1, sizeof r->in, r->fp);
	if (r->in_len == 0) {
		r->eof = 1;
		if (ferror(r->fp)) {
			r->io_err = 1;
			return -1;
		}
	}
	return 0;
}

/* Next byte or EOF; after a byte, r->in_pos-- pushes it back (always inside the buffer). */
static inline int rd_getc(csv_reader *r)
{
	if (r->in_pos == r->in_len) {
		if (r->eof || fill(r) < 0 || r->in_len == 0)
			return EOF;
	}
	return r->in[r->in_pos++];
}

static int put_byte(csv_reader *r, int c)
{
	if (r->len + 1 >= r->cap) {
		size_t nc = r->cap ? r->cap * 2 : 256;
		char *nb = realloc(r->buf, nc);
		if (!nb)
			return -1;
		r->buf = nb;
		r->cap = nc;
	}
	r->buf[r->len++] = (char)c;
	return 0;
}

static int end_field(csv_reader *r, size_t start)
{
	if (r->nf == r->fcap) {
		size_t nc = r->fcap ? r->fcap * 2 : 16;
		size_t *no = realloc(r->offs, nc * sizeof *no);
		if (!no)
			return -1;
		r->offs = no;
		size_t *nl = realloc(r->lens, nc * sizeof *nl);
		if (!nl)
			return -1;
		r->lens = nl;
		char **nfp = realloc(r->fields, nc * sizeof *nfp);
		if (!nfp)
			return -1;
		r->fields = nfp;
		r->fcap = nc;
	}
	r->offs[r->nf] = start;
	r->lens[r->nf] = r->len - start;
	r->nf++;
	return put_byte(r, '\0');
}

/* Skips to the end of the current physical line (error recovery). */
static void skip_line(csv_reader *r)
{
	int c;
	while ((c = rd_getc(r)) != EOF && c != '\n')
		;
	if (c == '\n')
		r->line++;
}

static int oom(csv_reader *r, sft_error *err)
{
	return sft_error_set(err, SFT_EXIT_RUNTIME, "%s:%ld: out of memory", r->name, r->line);
}

int csv_next(csv_reader *r, char ***fields, size_t **lens, size_t *nfields, sft_error *err)
{
	int c;
	if (!r->started) {
		r->started = 1;
		if (fill(r) < 0)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "%s:1: read error: %s", r->name, strerror(errno));
		if (r->in_len >= 3 && memcmp(r->in, "\xEF\xBB\xBF", 3) == 0)
			r->in_pos = 3;
	}
	/* skip blank lines */
	for (;;) {
		c = rd_getc(r);
		if (c == '\n') {
			r->line++;
			continue;
		}
		if (c == '\r') {
			int d = rd_getc(r);
			if (d != '\n' && d != EOF)
				r->in_pos--;
			r->line++;
			continue;
		}
		break;
	}
	if (c == EOF) {
		if (r->io_err)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "%s:%ld: read error: %s", r->name, r->line,
					     strerror(errno));
		return 0;
	}
	r->in_pos--;
	r->len = 0;
	r->nf = 0;
	r->rec_line = r->line;
	size_t start = 0;
	int prev = 0; /* last byte inside the current quoted field */
	enum { FIELD_START, UNQUOTED, QUOTED, QUOTE_IN_QUOTED } st = FIELD_START;
	for (;;) {
		c = rd_getc(r);
		switch (st) {
		case FIELD_START:
			if (c == '"') {
				st = QUOTED;
				break;
			}
			st = UNQUOTED;
			/* fall through */
		case UNQUOTED:
			if (c == r->delim) {
				if (end_field(r, start) < 0)
					return oom(r, err);
				start = r->len;
				st = FIELD_START;
			} else if (c == '\n' || c == '\r' || c == EOF) {
				goto end_record;
			} else if (c == '"') {
				long ln = r->line;
				skip_line(r);
				return sft_error_set(err, SFT_EXIT_DATA,
						     "%s:%ld: bad CSV quoting: '\"' inside an unquoted field", r->name, ln);
			} else if (put_byte(r, c) < 0) {
				return oom(r, err);
			}
			break;
		case QUOTED:
			if (c == '"') {
				st = QUOTE_IN_QUOTED;
			} else if (c == EOF) {
				if (r->io_err)
					return sft_error_set(err, SFT_EXIT_RUNTIME, "%s:%ld: read error: %s", r->name,
							     r->line, strerror(errno));
				/* name the last line that has text, not the empty one after a final newline */
				return sft_error_set(err, SFT_EXIT_DATA,
						     "%s:%ld: bad CSV quoting: unterminated quoted field (opened on line %ld)",
						     r->name, r->line - (prev == '\n' && r->line > r->rec_line),
						     r->rec_line);
			} else {
				prev = c;
				if (c == '\n')
					r->line++;
				if (put_byte(r, c) < 0)
					return oom(r, err);
			}
			break;
		case QUOTE_IN_QUOTED:
			if (c == '"') {
				if (put_byte(r, '"') < 0)
					return oom(r, err);
				st = QUOTED;
			} else if (c == r->delim) {
				if (end_field(r, start) < 0)
					return oom(r, err);
				start = r->len;
				st = FIELD_START;
			} else if (c == '\n' || c == '\r' || c == EOF) {
				goto end_record;
			} else {
				long ln = r->line;
				skip_line(r);
				return sft_error_set(err, SFT_EXIT_DATA,
						     "%s:%ld: bad CSV quoting: unexpected character after closing '\"'",
						     r->name, ln);
			}
			break;
		}
	}
end_record:
	if (c == '\r') {
		int d = rd_getc(r);
		if (d != '\n' && d != EOF)
			r->in_pos--;
	}
	if (c != EOF)
		r->line++;
	else if (r->io_err)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s:%ld: read error: %s", r->name, r->line,
				     strerror(errno));
	if (end_field(r, start) < 0)
		return oom(r, err);
	for (size_t i = 0; i < r->nf; i++)
		r->fields[i] = r->buf + r->offs[i];
	*fields = r->fields;
	*lens = r->lens;
	*nfields = r->nf;
	return 1;
}

long csv_record_line(const csv_reader *r)
{
	return r->rec_line;
}

int csv_next_object(csv_reader *r, json_t **out, sft_error *err)
{
	char **f;
	size_t *l, n;
	int rc;
	if (!r->have_header) {
		rc = csv_next(r, &f, &l, &n, err);
		if (rc <= 0)
			return rc;
		r->header = calloc(n, sizeof *r->header);
		if (!r->header)
			return oom(r, err);
		for (size_t i = 0; i < n; i++) {
			r->header[i] = strndup(f[i], l[i]);
			if (!r->header[i])
				return oom(r, err);
			r->nheader = i + 1;
		}
		r->have_header = 1;
	}
	rc = csv_next(r, &f, &l, &n, err);
	if (rc <= 0)
		return rc;
	if (n != r->nheader)
		return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: expected %zu fields (as in the header), got %zu",
				     r->name, r->rec_line, r->nheader, n);
	json_t *o = json_object();
	if (!o)
		return oom(r, err);
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_stringn(f[i], l[i]);
		if (!s) {
			json_decref(o);
			return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: field %zu is not valid UTF-8", r->name,
					     r->rec_line, i + 1);
		}
		json_object_set_new(o, r->header[i], s);
	}
	*out = o;
	return 1;
}
