/* shard.h - sftkit's one binary token-shard format (specified byte by byte in
 * docs/FORMAT.md), its stream and file forms, and the JSONL twin.
 *
 *   stream form:  header | record* | end marker                (pipes; no seeking)
 *   file form:    header | record* | end marker | index | footer (mmap, O(1) row k)
 *
 * A record is one document (tok-encode output, not packed) or one packed row (pack
 * output: several documents, each a segment; padded rows end with n_pad pad tokens).
 *
 * Ownership rules (all functions):
 *  - shard_writer_open_* return a writer the caller finishes with exactly one of
 *    shard_writer_close (commit) or shard_writer_abort (both free it; NULL safe).
 *    The FILE* given to shard_writer_open_stream stays the caller's (never closed).
 *  - shard_reader_open returns a reader freed by shard_reader_close (NULL safe).
 *    The shard_record filled by shard_read points into the reader's buffers and is
 *    valid until the next shard_read / shard_reader_close.
 *  - shard_file_map returns a mapping freed by shard_file_unmap (NULL safe).
 *    shard_file_view fills pointers into the mapping (valid until unmap).
 *    shard_file_row decodes into a caller-owned shard_buf (zero-initialise it,
 *    release with shard_buf_free); the record points into that buffer.
 *  - Records passed to shard_write are only read during the call.
 *  - Errors: every function that can fail takes `sft_error *err` (may be NULL).
 *    Bad data is SFT_EXIT_DATA with "NAME: byte OFFSET: what was expected";
 *    I/O failures are SFT_EXIT_RUNTIME; misuse of the API is SFT_EXIT_INTERNAL.
 *
 * Tokens are uint32_t in shard_record (masks one byte per token: 0 = not trained,
 * 1 = trained); on disk they are u16 or u32 (header.token_width) with bit-packed masks.
 * The raw functions (shard_read_view, shard_write_reserve/commit, shard_file_view) move
 * records in their on-disk form instead, with no widening: the fast path for tools that
 * only move tokens around (pack). Not thread-safe per object; different objects may be
 * used from different threads. */
#ifndef SFT_SHARD_H
#define SFT_SHARD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "error.h"

#define SHARD_VERSION 1
#define SHARD_HEADER_SIZE 64
#define SHARD_FOOTER_SIZE 80

/* header.flags */
#define SHARD_PACKED 0x1u /* records are packed rows (segments describe the documents) */
#define SHARD_PADDED 0x2u /* rows are padded to seq_len (or a multiple): n_pad pad tokens */

typedef struct shard_header {
	uint32_t version;        /* SHARD_VERSION; set by the writer when 0 */
	uint8_t token_width;     /* 2 or 4 bytes on disk; 0 = writer picks (2 if vocab <= 65536) */
	uint32_t vocab_size;     /* every token id < vocab_size; 0 = unknown (JSONL input only) */
	uint8_t fingerprint[16]; /* tokenizer fingerprint (opaque; from tok-encode) */
	uint32_t flags;          /* SHARD_PACKED | SHARD_PADDED */
	uint32_t seq_len;        /* packed shards: the row length budget; else 0 */
	uint32_t pad_id;         /* token id used for pad tokens (SHARD_PADDED) */
	uint8_t is_file;         /* read side: 1 if the input has an index + footer */
} shard_header;

/* One document (or one piece of a document) inside a packed row. */
typedef struct shard_segment {
	uint64_t doc_id; /* ordinal of the source document over all of pack's inputs */
	uint32_t offset; /* token offset of this piece inside the source document (split/wrapped) */
	uint32_t len;    /* tokens in this segment; positions restart at 0 at each segment */
} shard_segment;

typedef struct shard_record {
	const uint32_t *tokens;     /* (n) token ids, pads included */
	const uint8_t *mask;        /* (n) 1 = trained, 0 = not (pads are 0) */
	size_t n;                   /* tokens in the record, pads included */
	const shard_segment *segs;  /* (n_seg) in row order; NULL/0 for an unpacked document */
	size_t n_seg;               /* sum(segs[i].len) + n_pad == n when n_seg > 0 */
	size_t n_pad;               /* trailing pad tokens (padded rows); 0 otherwise */
} shard_record;

/* Totals a writer or a file footer knows. */
typedef struct shard_counts {
	uint64_t records, tokens, segments, trained, pad;
} shard_counts;

/* A record in its on-disk form (shard_file_view, shard_read_view). */
typedef struct shard_view {
	const void *tokens;         /* (n) u16 or u32 little-endian, per token_width */
	const uint8_t *mask_bits;   /* ceil(n/8) bytes, bit i = byte i/8, bit i%8 (LSB first) */
	size_t n, n_pad, n_seg;
	const shard_segment *segs;  /* (n_seg), 8-byte aligned in the file */
} shard_view;

/* ---- writing ---- */
typedef struct shard_writer shard_writer;

/* Stream form to an open FILE (stdout for tok-encode). The header is written now. */
shard_writer *shard_writer_open_stream(FILE *fp, const shard_header *h, sft_error *err);
/* File form at `path`, written atomically (libcommon/atomic.h); adds index + footer.
 * Records are written in 512 KiB blocks by a second thread of the writer's own (it also
 * computes the checksum), so the caller assembles the next block meanwhile. */
shard_writer *shard_writer_open_file(const char *path, const shard_header *h, sft_error *err);
/* Validates (token < vocab, mask 0/1, segments sum) and appends one record. */
int shard_write(shard_writer *w, const shard_record *r, sft_error *err);
/* Raw writing, in the on-disk form. shard_write_reserve makes room for a record of n tokens
 * (n_pad of them trailing pads), n_seg segments in the writer's own buffer and points
 * `slot` at its parts; the caller fills slot->segs (n_seg), slot->tokens (n, in the
 * header's token width) and slot->mask_bits (ceil(n/8) bytes, zeroed; bit i = token i,
 * LSB first), then shard_write_commit checks it as shard_write does and appends it (on
 * error the reservation is dropped). The slot is valid until the commit. */
typedef struct shard_slot {
	shard_segment *segs;
	void *tokens;
	uint8_t *mask_bits;
} shard_slot;
int shard_write_reserve(shard_writer *w, size_t n, size_t n_seg, size_t n_pad, shard_slot *slot, sft_error *err);
int shard_write_commit(shard_writer *w, sft_error *err);
/* Writes the end marker (+ index and footer, fsync, rename for files) and frees w. */
int shard_writer_close(shard_writer *w, sft_error *err);
/* Frees w; a file writer removes its temporary (the target is untouched). */
void shard_writer_abort(shard_writer *w);
/* Counts so far (after close: undefined, read them before). */
const shard_counts *shard_writer_counts(const shard_writer *w);
/* shard_writer_close that also returns the final counts and, for the file form, the
 * footer checksum (XXH3-128 of the file before the footer; zeros for streams).
 * Either out pointer may be NULL. */
int shard_writer_close_ex(shard_writer *w, uint8_t checksum_out[16], shard_counts *counts_out,
			sft_error *err);

/* ---- sequential reading (pipes and files, either form, or the JSONL twin) ---- */
typedef struct shard_reader shard_reader;

/* path "-" or NULL = stdin (named "<stdin>" in errors). Detects the form: binary
 * shard (magic) or the JSONL twin (first non-blank byte '{'; an empty input counts as
 * JSONL with no documents). For JSONL the header has vocab_size 0, a zero fingerprint
 * and token_width 4. A binary shard in a regular file is read through mmap (pages
 * already read are given back as it goes); pipes and shard_reader_open_fp use stdio. */
shard_reader *shard_reader_open(const char *path, sft_error *err);
/* Reads from an open stream (not closed by shard_reader_close); `name` for errors. */
shard_reader *shard_reader_open_fp(FILE *fp, const char *name, sft_error *err);
const shard_header *shard_reader_header(const shard_reader *r);
/* 1 = record in *rec, 0 = clean end (end marker seen, and for files the index and
 * footer checksum verified), <0 = error (truncation, corruption, bad ids ...). */
int shard_read(shard_reader *r, shard_record *rec, sft_error *err);
/* shard_read without decoding (binary inputs only; JSONL is SFT_EXIT_INTERNAL): *v points
 * at the record in its on-disk form (tokens in the header's width, bit-packed mask) in the
 * reader's buffer or mapping, valid until the next read. Same checks, same returns. A
 * reader may mix shard_read and shard_read_view calls. */
int shard_read_view(shard_reader *r, shard_view *v, sft_error *err);
/* Byte offset of the next unread byte (for messages); JSONL: line number. */
uint64_t shard_reader_offset(const shard_reader *r);
int shard_reader_is_jsonl(const shard_reader *r);
/* Zero copy for mapped inputs (a regular binary file opened by path): returns 1 when the
 * reader's views point into a read-only mapping of the file that stays valid until
 * shard_reader_close (callers may keep them instead of copying), 0 otherwise (views are
 * valid until the next read only). On 1, `at` (a pointer into the mapping, e.g. a view's
 * tokens; NULL = the current read position) also pins the mapping: pages from `at` on are
 * no longer given back as reading goes on (they stay resident until the pin moves). */
int shard_reader_pin(shard_reader *r, const void *at);
/* Removes the pin (as at open): consumed pages are given back as reading goes on. Views
 * into the mapping stay valid (a page given back is read again from the file if touched),
 * so a caller that keeps them may also drop its own pages (shard_map_release). */
void shard_reader_unpin(shard_reader *r);
/* Unpinned: pages before `at` (a pointer into the mapping) are left to the caller, who
 * gives them back itself; reading on gives back only the pages after them. */
void shard_reader_leave_before(shard_reader *r, const void *at);
/* Gives the pages of [p, p + n) of a read-only file mapping back (MADV_DONTNEED, the range
 * widened to whole pages); `populate` != 0 maps them in instead (MADV_POPULATE_READ, else
 * MADV_WILLNEED). Residency only: the bytes read there stay the same. */
void shard_map_release(const void *p, size_t n, int populate);
void shard_reader_close(shard_reader *r);

/* Fails (SFT_EXIT_DATA) when two inputs can't be mixed: different fingerprints,
 * vocab sizes. A zero fingerprint / vocab 0 (JSONL) is compatible with anything. */
int shard_header_check_compatible(const shard_header *a, const char *name_a,
				  const shard_header *b, const char *name_b, sft_error *err);

/* ---- random access through mmap (file form only) ---- */
typedef struct shard_file shard_file;

/* Maps `path` (read-only, MAP_POPULATE: the whole file is faulted in at once, which is
 * what a training epoch wants), validates header, footer, end marker and index (bounds,
 * order) - O(rows), no checksum pass. Use shard_file_verify for the full check. */
shard_file *shard_file_map(const char *path, sft_error *err);
/* shard_file_map with populate = 0: no prefaulting, pages are read as rows are touched
 * (a lookup of a few rows, or the footer and index only, then costs little). */
shard_file *shard_file_map_ex(const char *path, int populate, sft_error *err);
void shard_file_unmap(shard_file *f);
const shard_header *shard_file_header(const shard_file *f);
const shard_counts *shard_file_counts(const shard_file *f);
const uint8_t *shard_file_checksum(const shard_file *f); /* 16 bytes, from the footer */
size_t shard_file_rows(const shard_file *f);

/* Zero-copy view of row k (pointers into the mapping). Validates the record's bounds. */
int shard_file_view(const shard_file *f, size_t k, shard_view *v, sft_error *err);

/* Decoded row k into caller-owned scratch `buf`. */
typedef struct shard_buf {
	uint32_t *tokens;
	uint8_t *mask;
	shard_segment *segs;
	size_t cap_tokens, cap_segs;
} shard_buf;
int shard_file_row(const shard_file *f, size_t k, shard_record *rec, shard_buf *buf,
		   sft_error *err);
void shard_buf_free(shard_buf *b);
/* Full validation: checksum of the whole file, every record (bounds, token < vocab,
 * segment lengths), the index and footer totals. */
int shard_file_verify(const shard_file *f, sft_error *err);
/* Only the footer checksum (XXH3-128 of the file before the footer): one pass at memory
 * speed, what readers that use every row anyway (batch.c: training, evaluation) run at
 * open so that a flipped byte in token data is an error, not a silently different run. */
int shard_file_verify_checksum(const shard_file *f, sft_error *err);

/* ---- the JSONL twin: {"input_ids":[...],"mask":[...]} one document per line ---- */

/* Writes one line (mask as 0/1 ints). Returns 0 or -1 (err set) on write error. */
int shard_jsonl_write(FILE *fp, const uint32_t *tokens, const uint8_t *mask, size_t n,
		      sft_error *err);
/* Parses one line into buf->tokens / buf->mask (grown as needed), *n = length.
 * "mask" may be absent (all 1). Errors are "name:line: ..." SFT_EXIT_DATA. */
int shard_jsonl_parse(const char *line, size_t len, const char *name, long lineno,
		      shard_buf *buf, size_t *n, sft_error *err);

/* Copies n mask bits (LSB-first bit order, as on disk) from src starting at bit src_bit to
 * dst starting at bit dst_bit; dst bits outside the range are kept. Reads only the src
 * bytes that hold the range. */
void shard_bits_copy(uint8_t *dst, size_t dst_bit, const uint8_t *src, size_t src_bit, size_t n);

/* Lowercase hex of a 16-byte fingerprint/checksum into out[33]. */
void shard_hex16(const uint8_t b[16], char out[33]);

#endif
