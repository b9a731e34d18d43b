/* parquet.h - Apache Parquet reader (rows as jansson values).
 *
 * Supports what Hugging Face datasets store: PLAIN, PLAIN_DICTIONARY/RLE_DICTIONARY,
 * RLE/bit-packed levels, DELTA_BINARY_PACKED, DELTA_LENGTH_BYTE_ARRAY,
 * DELTA_BYTE_ARRAY, BYTE_STREAM_SPLIT, data pages v1 and v2; codecs UNCOMPRESSED,
 * SNAPPY, GZIP, ZSTD (others: clear error); all physical types; nested columns
 * (lists, structs, maps) assembled into JSON arrays/objects. See docs/parquet.md for
 * the JSON mapping of logical types (dates, timestamps, decimals, binary).
 *
 * Ownership: parquet_open*() returns a file owned by the caller (parquet_close, NULL
 * safe). parquet_open_mem copies nothing: buf must outlive the file. Strings returned
 * by parquet_column_name belong to the file. A parquet_rows iterator borrows its file
 * (close the iterator first); each row handed out by parquet_rows_next is a new
 * reference the caller must json_decref.
 *
 * Errors: malformed data fails with SFT_EXIT_DATA and a message naming the file and,
 * where known, the row group, column path and page (0-based), e.g.
 * "x.parquet: row group 2, column 'messages.list.element.content', page 3: snappy
 * decompression failed". I/O failures are SFT_EXIT_RUNTIME. */
#ifndef SFT_PARQUET_H
#define SFT_PARQUET_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "error.h"

typedef struct parquet_file parquet_file;

/* Opens and validates footer/metadata (mmap). NULL + err on failure. */
parquet_file *parquet_open(const char *path, sft_error *err);
/* From memory (archive members, fuzzing); copies nothing: buf must outlive the file. */
parquet_file *parquet_open_mem(const void *buf, size_t len, const char *name, sft_error *err);
void parquet_close(parquet_file *pf); /* NULL safe */

int64_t parquet_num_rows(const parquet_file *pf);
size_t parquet_num_columns(const parquet_file *pf); /* top-level fields */
const char *parquet_column_name(const parquet_file *pf, size_t i);
size_t parquet_num_row_groups(const parquet_file *pf);
/* Guard against files that claim absurd value counts (memory is proportional to them):
 * a column chunk with more than n entries fails with SFT_EXIT_DATA. Default 2^31. */
void parquet_set_max_chunk_values(parquet_file *pf, int64_t n);

typedef struct parquet_rows parquet_rows;

/* Iterate rows; columns = NULL for all top-level fields, else names to read (others
 * skipped entirely: their column chunks are never read). An unknown name is a usage
 * error (SFT_EXIT_USAGE). Field order in rows = schema order. */
parquet_rows *parquet_rows_open(parquet_file *pf, const char *const *columns, size_t ncols,
				sft_error *err);
/* 1 = *row is a new JSON object reference (caller json_decref), 0 = end, <0 = error
 * (*row is NULL then). row may be NULL to skip a row. */
int parquet_rows_next(parquet_rows *it, json_t **row, sft_error *err);
/* Fast path: appends the next row serialized exactly as json_dump_compact would
 * (no newline) to the growable buffer (*buf, *len, *cap; realloc'ed).
 * 1 = row appended, 0 = end, <0 = error (*len unchanged then). Calls may be
 * interleaved with parquet_rows_next: each call consumes one row. */
int parquet_rows_next_json(parquet_rows *it, char **buf, size_t *len, size_t *cap,
			   sft_error *err);
void parquet_rows_close(parquet_rows *it); /* NULL safe */

#endif
