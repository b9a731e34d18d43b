/* jsonl.h - JSON Lines in and out (jansson values).
 *
 * Reader: one record per line, UTF-8; blank lines are skipped; errors name
 * "file:line:column: message". Ownership: jsonl_open returns a reader owned by the
 * caller (jsonl_close frees it; NULL safe); jsonl_next hands out a new reference the
 * caller must json_decref; jsonl_next_line's buffer belongs to the reader and is valid
 * until the next call. json_parse_located / jsonl_next read with a fast scanner
 * (libcommon/json_scan.h) that builds exactly the values json_loadb builds and asks
 * jansson only for the message of an error.
 *
 * Writer: json_write_compact emits `{"k":"v"}` (no spaces, UTF-8 kept as is, "/" not
 * escaped) with floats in shortest round-trip form as Python's repr writes them
 * (0.1, 1.0, 1e+16), so values pass through sftkit unchanged. A json_buf is
 * caller-owned; the json_buf_* functions grow b->buf with realloc (the caller frees it). */
#ifndef SFT_JSONL_H
#define SFT_JSONL_H

#include <jansson.h>
#include <stdio.h>
#include "error.h"

typedef struct jsonl_reader jsonl_reader;

/* path "-" or NULL = stdin. `name` is what errors print (defaults to path or "<stdin>"). */
jsonl_reader *jsonl_open(const char *path, sft_error *err);
/* Reads from an already open stream (not closed by jsonl_close). */
jsonl_reader *jsonl_open_stream(FILE *fp, const char *name);
void jsonl_close(jsonl_reader *r);

/* 1 = record in *out (a JSON object), 0 = end of input, <0 = error (err filled:
 * SFT_EXIT_DATA for malformed JSON or a non-object line, SFT_EXIT_RUNTIME for I/O). */
int jsonl_next(jsonl_reader *r, json_t **out, sft_error *err);
/* Raw line access (newline stripped, blank lines skipped): 1, 0 at EOF, <0 on I/O error. */
int jsonl_next_line(jsonl_reader *r, const char **line, size_t *len, sft_error *err);
/* Line number (1-based) of the last line returned. */
long jsonl_line(const jsonl_reader *r);
const char *jsonl_name(const jsonl_reader *r);

/* Parses one JSON text (object or any value if any_value) with location "name:line". */
json_t *json_parse_located(const char *buf, size_t len, const char *name, long line, int any_value,
			   sft_error *err);

/* The fast reader alone: a new reference, or NULL (no message) for any input that
 * json_loadb(JSON_DECODE_ANY | JSON_ALLOW_NUL) rejects; any JSON value. */
json_t *json_parse_fast(const char *buf, size_t len);

/* Compact serialization (see above). Returns 0 or -1 on write error. */
int json_write_compact(FILE *fp, const json_t *v);
/* A JSON number for x, or null when x is NaN or infinite (jansson's json_real refuses
 * those). New reference. */
json_t *json_real_or_null(double x);
/* Appends the serialization to a growable buffer (*buf, *len, *cap; realloc'ed). */
int json_dump_compact(const json_t *v, char **buf, size_t *len, size_t *cap);
/* A growable output buffer (not NUL-terminated by these; json_dump_compact is). */
typedef struct json_buf {
	char *buf;
	size_t len, cap;
} json_buf;
/* Each returns 0, or -1 when out of memory. */
int json_buf_put(json_buf *b, const char *s, size_t n);        /* raw bytes */
int json_buf_string(json_buf *b, const char *s, size_t n);     /* a JSON string literal */
int json_buf_value(json_buf *b, const json_t *v);              /* compact serialization */
/* json_write_compact + '\n'. */
int jsonl_write(FILE *fp, const json_t *v);

/* Shortest round-trip decimal for a double, Python repr style; returns length. */
int json_format_double(double d, char *buf, size_t cap);

#endif
