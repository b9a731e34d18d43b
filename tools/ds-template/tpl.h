/* tpl.h - private to ds-template: built-in record mappings and chat-template loading.
 *
 * Ownership: functions returning json_t * return a new reference the caller must
 * json_decref; `rec` arguments are borrowed. A chat_tpl is owned by the caller
 * (chat_tpl_free, NULL safe) and is read-only after chat_tpl_load, so several threads
 * may render with it at once. */
#ifndef DS_TEMPLATE_TPL_H
#define DS_TEMPLATE_TPL_H

#include <jansson.h>
#include "error.h"
#include "fsutil.h"
#include "jinja.h"

/* ---- built-in mappings (mappings.c) ---- */

enum input_format {
	IN_AUTO = 0,
	IN_ALPACA,
	IN_SHAREGPT,
	IN_OPENAI,
	IN_PROMPT_COMPLETION,
	IN_INSTRUCTION_TEXT,
	IN_CSV_PROMPT_COMPLETION,
	IN_N
};

/* "alpaca", ... ; NULL for IN_AUTO. */
const char *input_format_name(int fmt);
/* Parses a --from value; -1 if unknown. */
int input_format_parse(const char *s);

/* Which built-in format a record looks like, from its fields; -1 if none fits. */
int input_format_detect(const json_t *rec);

/* Builds the chat messages of `rec` read as format `fmt` (not IN_AUTO). On a record
 * that does not fit: NULL with err = SFT_EXIT_DATA "what is wrong" (no location; the
 * caller adds it). */
json_t *mapping_messages(int fmt, const json_t *rec, sft_error *err);

/* 1 if field `key` of a record in format `fmt` is consumed by the mapping (so it does
 * not pass through by default). */
int mapping_consumes(int fmt, const char *key);

/* Checks an OpenAI-style messages array (roles, content types); 0 or -SFT_EXIT_DATA. */
int messages_validate(const json_t *msgs, const char *what, sft_error *err);

/* ---- chat templates (chat.c) ---- */

typedef struct chat_tpl {
	char *path;             /* what the user named */
	jinja_template *tpl;    /* the default template */
	jinja_template *tool_tpl; /* "tool_use" template of a named list, or NULL */
	json_t *base;           /* special tokens + --chat-template-kwargs (object) */
} chat_tpl;

/* Loads a chat template from a tokenizer directory (tokenizer_config.json,
 * chat_template.jinja or chat_template.json), a tokenizer_config.json-like .json file,
 * or a raw Jinja file. `name` selects one of a named list (NULL = "default", and
 * "tool_use" for records with tools when present). `kwargs` (borrowed, may be NULL) are
 * extra template variables. Errors: SFT_EXIT_USAGE for a missing file, SFT_EXIT_DATA
 * for a malformed config or template. */
chat_tpl *chat_tpl_load(const char *path, const char *name, const json_t *kwargs,
			sft_error *err);
void chat_tpl_free(chat_tpl *c);

/* Renders `msgs` with the template; `tools` and `documents` (NULL = none) are the
 * record's fields of those names. *out is malloc'ed (caller frees). */
int chat_tpl_render(const chat_tpl *c, const json_t *msgs, const json_t *tools,
		    const json_t *documents, int add_generation_prompt, char **out, size_t *out_len,
		    sft_error *err);

/* Reads a whole file (NUL-terminated); NULL with err (SFT_EXIT_USAGE if it does not
 * exist, SFT_EXIT_RUNTIME otherwise). */

#endif
