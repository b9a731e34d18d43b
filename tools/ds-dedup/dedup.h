/* dedup.h - shared state of ds-dedup (private to the tool). */
#ifndef DEDUP_DEDUP_H
#define DEDUP_DEDUP_H

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#include "jdom.h"
#include "minhash.h"
#include "rules.h"
#include "textnorm.h"

enum rec_status {
	ST_KEEP = 0,
	ST_FILTER,  /* rule index in rec.rule */
	ST_EXACT,
	ST_MINHASH,
	ST_CONTAM,
	ST_INVALID,
};

/* One input record (a non-blank line). 48 bytes; the text is never kept. */
typedef struct rec {
	uint64_t off;     /* byte offset of the line in its source */
	uint64_t line;    /* 1-based line number in its source */
	uint32_t len;     /* line length without '\n' */
	uint32_t nchars;  /* code points of the compared text (--keep longest) */
	uint32_t src;     /* source index (input shard) */
	uint32_t rule;    /* ST_FILTER: rule index */
	int64_t dup_of;   /* record index, or -(eval index + 1) */
	float jaccard;    /* verified Jaccard, or -1 */
	uint8_t status;
	uint8_t has_content;
	uint16_t err_col; /* ST_INVALID: column (clamped) */
} rec;

typedef struct evrec {
	uint64_t off, line;
	uint32_t len, src;
} evrec;

typedef struct source {
	const char *path; /* as shown in messages */
	int fd;           /* readable, seekable (input, spill file or eval file) */
} source;

#endif
