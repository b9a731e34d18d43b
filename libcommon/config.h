/* config.h - YAML configuration files flattened into key/value entries (libyaml).
 *
 * `a: 1`, nested `Section: {b: 2}` -> entries (a,1) and (b,2) with `section` = "Section";
 * lists `k: [x, y]` -> two entries (k,x), (k,y). Values are scalars as written.
 * Ownership: config_load returns a config that owns all strings; config_free releases it
 * (config_free(NULL) is safe). */
#ifndef SFT_CONFIG_H
#define SFT_CONFIG_H

#include <stddef.h>
#include "error.h"

typedef struct config_entry {
	char *key;      /* as written in the file */
	char *value;    /* scalar text; "" for null */
	char *section;  /* enclosing mapping key for nested entries, or NULL */
	int line;       /* 1-based line of the value */
	int is_list;    /* element of a sequence */
} config_entry;

typedef struct config {
	char *path;
	config_entry *entries;
	size_t n;
} config;

config *config_load(const char *path, sft_error *err);
void config_free(config *c);

/* Returns the last entry with that key (dashes and underscores equal), or NULL. */
const config_entry *config_get(const config *c, const char *key);

/* 1 if the names are equal treating '-' and '_' as the same character. */
int config_key_eq(const char *a, const char *b);

#endif
