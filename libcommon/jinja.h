/* jinja.h - a Jinja2 template engine that renders Hugging Face chat templates exactly as
 * transformers' apply_chat_template does (sandboxed jinja2 Environment with
 * trim_blocks=True, lstrip_blocks=True, loop controls, raise_exception, strftime_now,
 * tojson with ensure_ascii=False, and {% generation %} blocks).
 *
 * Ownership: jinja_compile returns a template owned by the caller (jinja_free, NULL
 * safe); a compiled template is immutable and may be rendered from several threads at
 * once. jinja_render allocates *out (caller frees with free()) and *spans (caller frees).
 * The context is borrowed: jinja_render does not keep references to it. */
#ifndef SFT_JINJA_H
#define SFT_JINJA_H

#include <jansson.h>
#include <stddef.h>
#include "error.h"

typedef struct jinja_template jinja_template;

typedef struct jinja_options {
	int strict;         /* undefined variables are errors (jinja2 StrictUndefined) */
	int trim_blocks;    /* default on (set by jinja_options_init) */
	int lstrip_blocks;  /* default on */
	int keep_trailing_newline; /* default off, as jinja2 */
	/* Resource limits (0 = default): a render fails with SFT_EXIT_DATA when exceeded, so
	 * fuzzed or hostile templates cannot hang or exhaust memory. */
	size_t max_output;  /* bytes of output, default 64 MiB */
	size_t max_memory;  /* bytes of per-render scratch memory, default 1 GiB */
	int max_depth;      /* nested macro calls / captures, default 200 */
	long long max_steps; /* evaluation steps, default 100 million */
} jinja_options;

void jinja_options_init(jinja_options *o);

/* Compiles `src` (len bytes). `name` is used in error messages: "name:line:col: msg".
 * opts may be NULL for the defaults. Errors: SFT_EXIT_DATA for syntax errors. */
jinja_template *jinja_compile(const char *src, size_t len, const char *name,
			      const jinja_options *opts, sft_error *err);
void jinja_free(jinja_template *t);

/* Byte range [start, end) of the rendered output produced inside one
 * {% generation %}...{% endgeneration %} block. */
typedef struct jinja_span {
	size_t start, end;
} jinja_span;

/* Renders with `ctx` (a JSON object: variables such as messages, add_generation_prompt,
 * bos_token, tools ...). On success returns 0 with *out (NUL-terminated, *out_len bytes)
 * and, if spans != NULL, the generation spans in output order.
 * Errors (negative return, err filled, *out untouched):
 *   raise_exception("msg")  -> SFT_EXIT_DATA, "name:line:col: template raised: msg"
 *   undefined in strict mode, type errors -> SFT_EXIT_DATA with name:line:col. */
int jinja_render(const jinja_template *t, const json_t *ctx, char **out, size_t *out_len,
		 jinja_span **spans, size_t *n_spans, sft_error *err);

/* Builds the variables transformers' apply_chat_template (render_jinja_template) hands to a
 * chat template, so callers render exactly what Python would:
 *   messages  a new array of `messages`' items (shared references); a message with a non-null "reasoning_content",
 *             "thinking" or "reasoning" (first found) becomes
 *             {"thinking": r, ...message, "reasoning_content": r} as transformers aliases it
 *   tools     `tools` or null (a defined None, as Python passes tools=None)
 *   documents null
 *   add_generation_prompt
 *   and every key of `extra` (bos_token, eos_token, enable_thinking ...; may be NULL).
 * Values are shared with the arguments (reference counts), not copied: do not modify
 * them while the context is alive. Returns a new reference (NULL only on allocation failure). */
json_t *jinja_chat_context(const json_t *messages, const json_t *tools, int add_generation_prompt,
			   const json_t *extra);

/* strftime_now() uses the current local time unless the environment variable
 * SFT_JINJA_NOW="YYYY-MM-DDTHH:MM:SS" is set (tests fix it that way). */

/* 1 if the template contains a {% generation %} block. */
int jinja_has_generation(const jinja_template *t);

#endif
