/* fastjson.h - private to ds-template: a fast JSON reader building jansson values, and
 * a writer producing exactly the bytes of libcommon's json_dump_compact.
 *
 * Ownership: fastjson_parse returns a new reference (caller json_decref's) or NULL for
 * any input jansson would reject (ask json_parse_located for the message). An fj_buf is
 * caller-owned; the fj_put* functions grow b->buf with realloc (caller frees it). */
#ifndef DS_TEMPLATE_FASTJSON_H
#define DS_TEMPLATE_FASTJSON_H

#include <jansson.h>
#include <stddef.h>

json_t *fastjson_parse(const char *s, size_t n);

/* Frees the calling thread's scratch buffer (call before a thread that parsed exits). */
void fastjson_thread_free(void);

/* 1 if s[0..n) is valid UTF-8 (RFC 3629). */
int fastjson_utf8_valid(const char *s, size_t n);

typedef struct fj_buf {
	char *buf;
	size_t len, cap;
} fj_buf;

/* Each returns 0, or -1 when out of memory. */
int fj_put(fj_buf *b, const char *s, size_t n);
int fj_put_string(fj_buf *b, const char *s, size_t n);
int fj_put_value(fj_buf *b, const json_t *v);

#endif
