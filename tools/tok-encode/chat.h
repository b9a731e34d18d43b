/* chat.h - tok-encode's per-record work: classify a JSONL record, render it with the chat
 * template, tokenize it, derive the loss mask, add EOS, truncate.
 *
 * Ownership: te_config is filled once by main() and only read afterwards (it borrows the
 * tokenizer and the template, which must outlive every call); te_encode_record may run
 * on many threads at once with the same te_config. A te_result is caller-owned: zero it
 * (or te_result_reset) before use and release its arrays with te_result_free. */
#ifndef TOK_ENCODE_CHAT_H
#define TOK_ENCODE_CHAT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "jinja.h"
#include "tokenizer.h"

enum te_trunc { TE_TRUNC_NONE = 0, TE_TRUNC_KEEP_START, TE_TRUNC_KEEP_END, TE_TRUNC_DROP };
enum te_eos { TE_EOS_AUTO = 0, TE_EOS_YES, TE_EOS_NO };

/* Why a record produced no output. TE_SKIP_TOO_LONG is a normal outcome of
 * --truncation drop; the others are data errors (fatal unless --on-error=skip). */
enum te_skip {
	TE_SKIP_NONE = 0,
	TE_SKIP_TOO_LONG,    /* longer than --max-length with --truncation drop */
	TE_SKIP_BAD_JSON,    /* the line is not a JSON object */
	TE_SKIP_BAD_RECORD,  /* no messages / prompt+completion / text field, wrong types */
	TE_SKIP_TEMPLATE,    /* the chat template failed (raise_exception, type error) */
	TE_SKIP_TOKENIZE,    /* the tokenizer failed */
	TE_SKIP_EMPTY_MASK,  /* nothing left to train on */
	TE_SKIP_N
};
extern const char *const te_skip_names[TE_SKIP_N];

typedef struct te_config {
	const tokenizer *tok;
	const jinja_template *tmpl; /* NULL: no chat template (chat records are then an error) */
	int has_generation;         /* tmpl has {% generation %} blocks */
	const char *special[4];     /* bos_token, eos_token, pad_token, unk_token or NULL */
	int64_t eos_id;             /* -1 if the tokenizer has no EOS token */
	int assistant_only;
	int completion_only;
	int eos_mode;               /* enum te_eos */
	const char *text_field;     /* "text" */
	size_t max_length;          /* 0 = no limit */
	int truncation;             /* enum te_trunc */
	int show;                   /* fill te_result.show (decoded text with markers) */
	int color;                  /* --show: ANSI colours instead of [[ ]] */
} te_config;

typedef struct te_result {
	uint32_t *ids;   /* (n) */
	uint8_t *mask;   /* (n) 1 = trained */
	size_t n;
	size_t n_before_trunc; /* tokens before truncation */
	int truncated;
	int skip;        /* enum te_skip: TE_SKIP_NONE = output this record */
	sft_error err;   /* when skip is a data error (or err.code set for fatal errors) */
	char *show;      /* --show text for this record (malloc'd) or NULL */
	size_t show_len;
} te_result;

/* Encodes one JSONL line (`line`, `len` bytes) named `name`:`lineno` in messages.
 * Returns 0 (result filled: skip == TE_SKIP_NONE, or a skip reason with err set), or
 * negative for an error that no --on-error policy may skip (out of memory, a chat
 * record without a chat template: err.code says which). */
int te_encode_record(const te_config *c, const char *line, size_t len, const char *name,
		     long lineno, te_result *r);

void te_result_free(te_result *r);

/* ---- pure helpers (exposed for the unit test) ---- */

/* transformers' apply_chat_template(return_assistant_tokens_mask=True) rule, on bytes:
 * for each span, the tokens from char_to_token(start) through char_to_token(last char)
 * are trained; char_to_token(c) = the first token whose [start,end) contains c.
 * If the start is in no token, this and every later span are ignored (transformers
 * breaks out of its loop); if the last char is in no token (or in token 0), the range
 * runs to the end of the sequence. `text` is the rendered string (for UTF-8 char starts). */
void te_mask_from_spans(const char *text, size_t text_len, const size_t *starts, const size_t *ends,
			size_t n, const jinja_span *spans, size_t n_spans, uint8_t *mask);

/* Prefix-diff rule: every token that overlaps [s, e) (shares a byte with it) is trained. */
void te_mask_overlap(const size_t *starts, const size_t *ends, size_t n, size_t s, size_t e,
		     uint8_t *mask);

/* The trained end of one assistant turn found by prefix diffing, whose rendering is
 * text[s, e): the end of the last special token inside it when only whitespace follows
 * that token, else e with trailing whitespace removed. `special[k]` says whether token
 * k is special. */
size_t te_turn_end(const char *text, size_t s, size_t e, const size_t *starts, const size_t *ends,
		   const uint8_t *special, size_t n);

/* Truncation: returns 1 if the record is to be dropped, else 0 with ids/mask/n cut. */
int te_truncate(uint32_t *ids, uint8_t *mask, size_t *n, size_t max_length, int mode);

#endif
