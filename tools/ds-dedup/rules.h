/* rules.h - regex rule lists for ds-dedup filters (PCRE2, UTF mode).
 *
 * A rule file holds one PCRE2 pattern per line; blank lines and lines whose first
 * character is '#' are skipped (write "\#" for a pattern starting with '#'); a trailing
 * "\r" is dropped. Each pattern becomes a rule named "exclude:FILE:LINE".
 *
 * Ownership: a rule_list is caller-owned (zero-initialize it); rules_* functions append to
 * it; rules_free releases every pattern. Compiled patterns are shared read-only between
 * threads; each thread needs its own pcre2_match_data (rule_match_data_new). */
#ifndef DEDUP_RULES_H
#define DEDUP_RULES_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include "error.h"

typedef struct rule {
	pcre2_code *re;
	char *name; /* "exclude:FILE:LINE", "require:N", ... */
} rule;

typedef struct rule_list {
	rule *r;
	size_t n, cap;
} rule_list;

/* Compiles one pattern; on error fills err (SFT_EXIT_USAGE) with
 * "<where>: bad pattern: <pcre2 message> at offset N". */
int rules_add(rule_list *l, const char *pattern, size_t len, int ignore_case, const char *name,
	      const char *where, sft_error *err);
/* Parses rule-file text; `fname` names the rules and the error locations. */
int rules_parse_buffer(rule_list *l, const char *fname, const char *buf, size_t len, int ignore_case,
		       sft_error *err);
int rules_load_file(rule_list *l, const char *path, int ignore_case, sft_error *err);
void rules_free(rule_list *l);

/* 1 if the pattern matches anywhere in s, 0 if not, <0 on a matching error (e.g. the
 * match limit). md from pcre2_match_data_create(1, NULL). */
int rule_search(const rule *r, const char *s, size_t len, pcre2_match_data *md);

#endif
