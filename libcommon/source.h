/* source.h - open local dataset inputs as byte streams, whatever their packaging.
 *
 * A source path is one of:
 *   - "-"                      stdin (one member)
 *   - a file                   plain, or gzip/zstd/xz/bzip2 compressed (detected by magic
 *                              bytes, decompressed as a stream through libarchive)
 *   - an archive               .tar, .tar.gz/.tgz, .tar.zst, .tar.xz/.txz, .tar.bz2/.tbz2, .zip
 *   - a directory              walked recursively, members in byte order of their paths
 * Archives and directories yield one member per regular file whose path matches the
 * glob (fnmatch against the path inside the archive/directory or its basename), or,
 * without a glob, every file whose name has a known data format (.jsonl .ndjson .json
 * .csv .tsv .parquet, optionally followed by .gz .zst .xz .bz2). Archive members are
 * read into memory (and decompressed again if they are compressed files themselves).
 *
 * Ownership: src_open returns an iterator owned by the caller (src_close, NULL safe).
 * A member handed out by src_next belongs to the iterator and is valid until the next
 * src_next or src_close; its `fp` is closed by the iterator. */
#ifndef SFT_SOURCE_H
#define SFT_SOURCE_H

#include <stddef.h>
#include <stdio.h>
#include "error.h"

typedef enum src_format {
	SRC_FMT_UNKNOWN = 0,
	SRC_FMT_JSONL,
	SRC_FMT_JSON,
	SRC_FMT_CSV,
	SRC_FMT_TSV,
	SRC_FMT_PARQUET,
} src_format;

/* Format from a file name, ignoring a trailing compression suffix; UNKNOWN if none. */
src_format src_format_from_name(const char *name);
/* "jsonl", "json", "csv", "tsv", "parquet" -> format; UNKNOWN otherwise. */
src_format src_format_parse(const char *s);
const char *src_format_name(src_format f);
/* 1 if the name ends like a supported archive (.tar.gz, .zip, ...). */
int src_is_archive_name(const char *name);

typedef struct src_member {
	const char *name;     /* for messages: "path" or "archive.zip:inner/path" */
	const char *inner;    /* path inside the archive/directory ("" for a plain source) */
	FILE *fp;             /* decompressed bytes */
	src_format format;    /* from the member name (UNKNOWN if not recognizable) */
	const char *path;     /* a local uncompressed file holding exactly these bytes, or NULL */
	const void *mem;      /* or the whole content in memory (archive members), or NULL */
	size_t mem_len;
	int compressed;       /* decompressed through a filter */
} src_member;

typedef struct src_iter src_iter;

/* glob may be NULL. Fails (SFT_EXIT_RUNTIME) if the path cannot be opened. */
src_iter *src_open(const char *path, const char *glob, sft_error *err);
/* 1 = *m set, 0 = no more members, <0 = error (err filled). */
int src_next(src_iter *it, src_member **m, sft_error *err);
/* After a read error on m->fp: the decoder's message ("gzip: truncated input") if the
 * failure came from decompression or the archive, else NULL. */
const char *src_member_decode_error(const src_member *m);
/* Number of members handed out so far. */
size_t src_count(const src_iter *it);
void src_close(src_iter *it);

/* Reads the rest of fp into a malloc'ed buffer (for formats that need random access). */
int src_slurp(FILE *fp, char **buf, size_t *len, sft_error *err, const char *name);

#endif
