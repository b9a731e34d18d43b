/* jdom.h - a small validating JSON parser into a per-thread arena, and dotted paths.
 *
 * ds-dedup parses every record only to pull text out of it, so instead of building
 * jansson objects (one malloc per value) it fills flat node arrays that are reused from
 * record to record. Strictness follows RFC 8259 (as jansson: UTF-8 checked, control
 * characters in strings rejected, no trailing commas, top-level must be an object); the
 * lexing is libcommon/json_scan.h, the same as the jansson reader's (jsonl.h).
 *
 * Ownership: a jdom is caller-owned; jdom_parse resets and refills it; jdom_free releases
 * it. Strings handed out point into the input line or into the jdom's string arena and
 * are valid until the next jdom_parse. jpath values are owned by the caller
 * (jpath_free). */
#ifndef DEDUP_JDOM_H
#define DEDUP_JDOM_H

#include <stddef.h>
#include <stdint.h>

enum jtype { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jnode {
	uint8_t type;
	uint8_t str_in_arena, key_in_arena;
	uint32_t first, next;    /* child / sibling node index + 1; 0 = none */
	size_t str, len;         /* string value: offset (line or arena) and length */
	size_t key, klen;        /* member key when the parent is an object */
} jnode;

typedef struct jdom {
	jnode *n;
	size_t nn, ncap;
	char *arena;
	size_t alen, acap;
	const char *line;
	/* error */
	size_t err_col;
	const char *err_msg;
} jdom;

/* Returns 0, or -1 with dom->err_msg / dom->err_col (1-based byte column) set; -2 on
 * allocation failure. */
int jdom_parse(jdom *dom, const char *line, size_t len, int top_object);
void jdom_free(jdom *dom);

static inline const char *jdom_str(const jdom *d, const jnode *x)
{
	return x->str_in_arena ? d->arena + x->str : d->line + x->str;
}
static inline const char *jdom_key(const jdom *d, const jnode *x)
{
	return x->key_in_arena ? d->arena + x->key : d->line + x->key;
}

/* Paths: "a.b", "messages[*].content", "messages[0].content", "[*]"; keys may be quoted
 * with backslash escapes for '.', '[' and '\'. */
typedef struct jpath_step {
	int kind; /* 0 key, 1 index, 2 all */
	char *key;
	size_t klen;
	long index;
} jpath_step;
typedef struct jpath {
	jpath_step *s;
	int n;
	char *text; /* as given */
} jpath;

/* Returns NULL with *why set on a malformed path. */
jpath *jpath_parse(const char *text, const char **why);
void jpath_free(jpath *p);

/* Appends the text of every node matching path (or the whole record for path == NULL)
 * to *buf: string values themselves, containers recursively (all string values in
 * document order), pieces joined with "\n"; *first tracks whether a separator is due.
 * Numbers, booleans, nulls and keys contribute nothing. Returns the number of matched
 * nodes, or -1 on allocation failure. */
long jdom_text(const jdom *d, const jpath *path, char **buf, size_t *len, size_t *cap, int *first);

/* Node indexes (0-based) matching the path, in document order, into out (up to max);
 * returns the total count. */
size_t jdom_select(const jdom *d, const jpath *path, uint32_t *out, size_t max);

#endif
