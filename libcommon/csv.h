/* csv.h - RFC 4180 CSV/TSV reader (streaming, any record size).
 *
 * Fields may be quoted with '"'; inside quotes the delimiter, CR, LF and doubled quotes
 * ("") are literal, so a record may span several lines. A record ends at LF, CRLF or CR
 * outside quotes. Blank lines are skipped; a UTF-8 BOM at the start is dropped. Strict
 * where Python's csv module is lenient: a quote inside an unquoted field, text after a
 * closing quote, and an unterminated quote are errors naming "file:line" (the physical
 * line where the problem is). On well-formed input the fields equal what Python's
 * csv.reader returns.
 *
 * Ownership: csv_open_stream returns a reader owned by the caller (csv_close, NULL safe;
 * the FILE is not closed). Fields returned by csv_next belong to the reader and stay
 * valid until the next call. */
#ifndef SFT_CSV_H
#define SFT_CSV_H

#include <jansson.h>
#include <stdio.h>
#include "error.h"

typedef struct csv_reader csv_reader;

/* delim: ',' or '\t' (or any single byte other than '"', CR, LF). */
csv_reader *csv_open_stream(FILE *fp, const char *name, int delim);
void csv_close(csv_reader *r);

/* Reads one record: 1 with *fields (array of nfields NUL-terminated strings; a field
 * may also contain NUL bytes, lens[i] gives its length), 0 at end, <0 on error
 * (SFT_EXIT_DATA for bad quoting, SFT_EXIT_RUNTIME for I/O). After a data error the
 * reader resynchronizes at the next line so the caller may skip the record. */
int csv_next(csv_reader *r, char ***fields, size_t **lens, size_t *nfields, sft_error *err);

/* Physical line (1-based) where the last returned record started. */
long csv_record_line(const csv_reader *r);

/* Header-aware layer: the first record names the keys; each following record becomes
 * a JSON object of strings (key order = header order; a repeated header keeps the
 * last value, like Python's csv.DictReader). A record with a different number of
 * fields is an error "file:line: expected N fields, got M". */
int csv_next_object(csv_reader *r, json_t **out, sft_error *err);

#endif
