/* ds-template - raw dataset records (JSONL) -> chat records.
 *
 * Each input record becomes {"messages":[...]} (or {"prompt":[...],"completion":[...]},
 * or {"text":...} rendered with a model's chat template), either by rendering the
 * Jinja templates of a prompts directory with the record's fields as variables, or by a
 * built-in mapping of a known format (alpaca, sharegpt, openai, ...). Other fields pass
 * through. Records go through a pipeline: the main thread reads batches of lines, -j
 * worker threads render whole batches, and the main thread writes finished batches in
 * input order (no barrier: reading, rendering and writing overlap). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic.h"
#include "cli.h"
#include "jinja.h"
#include "jsonl.h"
#include "log.h"
#include "progress.h"
#include "json_scan.h"
#include "tpl.h"

enum out_format { OUT_DEFAULT = 0, OUT_MESSAGES, OUT_PC, OUT_TEXT };
enum { T_SYSTEM = 0, T_USER, T_ASSISTANT, T_N };
static const char *const tpl_files[T_N] = {"system.jinja", "user.jinja", "assistant.jinja"};
static const char *const tpl_roles[T_N] = {"system", "user", "assistant"};

/* Why a record was not written. */
enum reason { RS_OK = 0, RS_JSON, RS_RECORD, RS_TEMPLATE, RS_CHAT, RS_N };
static const char *const reason_names[RS_N] = {"", "invalid JSON", "bad record", "template error",
					      "chat template error"};

typedef struct list {
	char **v;
	size_t n;
} list;

typedef struct state {
	/* options */
	const char *prompts;
	int from;            /* enum input_format */
	int out;             /* enum out_format */
	const char *chat_path, *chat_name;
	json_t *chat_kwargs;
	int add_gen;
	const char *system;
	int strict, skip, jinja2_defaults;
	list keep, drop;
	int drop_all;
	const char *output;
	long long threads;
	/* compiled */
	jinja_template *tpl[T_N];    /* lenient (or strict with --strict) */
	jinja_template *probe[T_N];  /* strict twins that detect undefined variables */
	chat_tpl *chat;
} state;

typedef struct item {
	char *line;
	size_t len, cap;
	long lineno;
	const char *name; /* the input, for messages */
	char *out;
	size_t out_len, out_cap;
	int reason;
	int fmt;        /* the source format used (mapping mode) */
	int undef;      /* a template read an undefined variable (non-strict mode) */
	int empty_user, empty_asst;
	sft_error err;  /* why it failed */
	sft_error note; /* first undefined variable, for the warning */
} item;

/* ---- options ---- */

enum {
	O_PROMPTS = 'p', O_FORMAT = 'f', O_OUTPUT = 'o', O_THREADS = 'j',
	O_FROM = 256, O_CHAT, O_CHAT_NAME, O_CHAT_KWARGS, O_ADD_GEN, O_SYSTEM, O_STRICT, O_KEEP,
	O_DROP, O_ON_ERROR, O_JINJA2,
};

static const cli_option options[] = {
	{"prompts", 'p', CLI_REQ_ARG, "DIR",
	 "render DIR/system.jinja, user.jinja and\n"
	 "assistant.jinja (any may be absent) with each\n"
	 "record's fields as the variables",
	 O_PROMPTS},
	{"from", 0, CLI_REQ_ARG, "FORMAT",
	 "built-in mapping (no --prompts): auto (default,\n"
	 "per record), alpaca, sharegpt, openai,\n"
	 "prompt-completion, instruction-text,\n"
	 "csv-prompt-completion",
	 O_FROM},
	{"format", 'f', CLI_REQ_ARG, "FORMAT",
	 "messages (default), prompt-completion, or text\n"
	 "(the default with --chat-template)",
	 O_FORMAT},
	{"chat-template", 0, CLI_REQ_ARG, "PATH",
	 "render with a model's chat template: a tokenizer\n"
	 "directory, tokenizer_config.json or .jinja file",
	 O_CHAT},
	{"chat-template-name", 0, CLI_REQ_ARG, "NAME",
	 "template of a named list (default: 'default';\n"
	 "'tool_use' for records with tools)",
	 O_CHAT_NAME},
	{"chat-template-kwargs", 0, CLI_REQ_ARG, "JSON",
	 "more chat template variables, as a JSON object,\n"
	 "e.g. '{\"enable_thinking\":false}'",
	 O_CHAT_KWARGS},
	{"add-generation-prompt", 0, CLI_NO_ARG, NULL,
	 "end the text with the assistant's header", O_ADD_GEN},
	{"system", 0, CLI_REQ_ARG, "TEXT", "set (or replace) the system message", O_SYSTEM},
	{"strict", 0, CLI_NO_ARG, NULL,
	 "an undefined template variable is an error\n"
	 "(default: rendered empty, counted, reported)",
	 O_STRICT},
	{"keep", 0, CLI_REQ_ARG, "A,B", "pass only these input fields through", O_KEEP},
	{"drop", 0, CLI_REQ_ARG, "A,B",
	 "do not pass these input fields through\n"
	 "('*': pass none)",
	 O_DROP},
	{"on-error", 0, CLI_REQ_ARG, "MODE",
	 "fail (default: stop at the first bad record,\n"
	 "exit 3) or skip (report and count it, go on)",
	 O_ON_ERROR},
	{"jinja2-defaults", 0, CLI_NO_ARG, NULL,
	 "prompt templates without trim_blocks and\n"
	 "lstrip_blocks (jinja2.Environment() defaults)",
	 O_JINJA2},
	{"output", 'o', CLI_REQ_ARG, "FILE", "write here (atomically), not to stdout", O_OUTPUT},
	{"threads", 'j', CLI_REQ_ARG, "N", "threads (default: CPUs, at most 16)", O_THREADS},
	{NULL, 0, 0, NULL, NULL, 0},
};

static const cli_spec spec = {
	.prog = "ds-template",
	.usage = "[options] [FILE.jsonl...]",
	.summary =
		"Turn raw dataset records (JSONL, stdin or files) into chat records:\n"
		"{\"messages\":[{\"role\":\"system\",...},{\"role\":\"user\",...},{\"role\":\"assistant\",...}]}.\n"
		"With --prompts the templates of a directory are rendered (Jinja2, trim_blocks and\n"
		"lstrip_blocks on as in chat templates); otherwise a built-in mapping is used.\n"
		"Other input fields pass through. A summary goes to stderr.",
	.opts = options,
	.examples =
		"  ds-template --prompts prompts/rcds/swiss_leading_decision_summarization train.jsonl\n"
		"  ds-fetch hf://datasets/gretelai/synthetic_text_to_sql \\\n"
		"    | ds-template --prompts prompts/gretelai/synthetic_text_to_sql --drop '*' > sql.jsonl\n"
		"  ds-template --from alpaca alpaca.jsonl --format prompt-completion\n"
		"  ds-template chat.jsonl --chat-template models/SmolLM2-135M-Instruct | head -1\n"
		"  ds-template --prompts prompts/medqa/med_qa_cot --strict --on-error skip in.jsonl\n",
	.footer = NULL,
};

static int split_list(const char *arg, list *l, sft_error *err, const char *opt)
{
	const char *p = arg;
	for (;;) {
		const char *c = strchr(p, ',');
		size_t n = c ? (size_t)(c - p) : strlen(p);
		if (n == 0)
			return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --%s: empty field name",
					     arg, opt);
		char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
		if (!nv)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		l->v = nv;
		l->v[l->n++] = strndup(p, n);
		if (!c)
			return 0;
		p = c + 1;
	}
}

static int in_list(const list *l, const char *k)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i], k))
			return 1;
	return 0;
}

static int on_option(void *ctx, int id, const char *arg, const char *source, sft_error *err)
{
	state *S = ctx;
	(void)source;
	switch (id) {
	case O_PROMPTS: S->prompts = arg; return 0;
	case O_FROM:
		S->from = input_format_parse(arg);
		if (S->from < 0)
			return sft_error_set(err, SFT_EXIT_USAGE,
					     "invalid value '%s' for --from: expected auto, alpaca, sharegpt, "
					     "openai, prompt-completion, instruction-text or "
					     "csv-prompt-completion",
					     arg);
		return 0;
	case O_FORMAT:
		if (!strcmp(arg, "messages"))
			S->out = OUT_MESSAGES;
		else if (!strcmp(arg, "prompt-completion"))
			S->out = OUT_PC;
		else if (!strcmp(arg, "text"))
			S->out = OUT_TEXT;
		else
			return sft_error_set(err, SFT_EXIT_USAGE,
					     "invalid value '%s' for --format: expected messages, "
					     "prompt-completion or text",
					     arg);
		return 0;
	case O_CHAT: S->chat_path = arg; return 0;
	case O_CHAT_NAME: S->chat_name = arg; return 0;
	case O_CHAT_KWARGS: {
		json_error_t je;
		json_decref(S->chat_kwargs);
		S->chat_kwargs = json_loads(arg, 0, &je);
		if (!json_is_object(S->chat_kwargs))
			return sft_error_set(err, SFT_EXIT_USAGE,
					     "invalid value '%s' for --chat-template-kwargs: expected a JSON "
					     "object%s%s",
					     arg, S->chat_kwargs ? "" : ": ", S->chat_kwargs ? "" : je.text);
		return 0;
	}
	case O_ADD_GEN: S->add_gen = 1; return 0;
	case O_SYSTEM:
		if (!json_utf8_valid(arg, strlen(arg)))
			return sft_error_set(err, SFT_EXIT_USAGE, "--system: not valid UTF-8");
		S->system = arg;
		return 0;
	case O_STRICT: S->strict = 1; return 0;
	case O_KEEP: return split_list(arg, &S->keep, err, "keep");
	case O_DROP:
		if (!strcmp(arg, "*")) {
			S->drop_all = 1;
			return 0;
		}
		return split_list(arg, &S->drop, err, "drop");
	case O_ON_ERROR:
		if (!strcmp(arg, "fail"))
			S->skip = 0;
		else if (!strcmp(arg, "skip"))
			S->skip = 1;
		else
			return sft_error_set(err, SFT_EXIT_USAGE,
					     "invalid value '%s' for --on-error: expected fail or skip", arg);
		return 0;
	case O_JINJA2: S->jinja2_defaults = 1; return 0;
	case O_OUTPUT: S->output = arg; return 0;
	case O_THREADS: return cli_parse_long("threads", arg, 1, 256, &S->threads, err);
	}
	return sft_error_set(err, SFT_EXIT_INTERNAL, "unhandled option %d", id);
}

/* ---- templates of a prompts directory ---- */

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	char *p = malloc(n + strlen(name) + 2);
	if (!p)
		die(SFT_EXIT_RUNTIME, "out of memory");
	sprintf(p, "%.*s/%s", (int)n, dir, name);
	return p;
}

static void load_prompts(state *S)
{
	struct stat st;
	if (stat(S->prompts, &st) != 0 || !S_ISDIR(st.st_mode))
		die_usage("--prompts %s: not a directory", S->prompts);
	int found = 0;
	for (int k = 0; k < T_N; k++) {
		char *path = path_join(S->prompts, tpl_files[k]);
		if (access(path, F_OK) != 0) {
			free(path);
			continue;
		}
		sft_error err = {0};
		size_t len;
		char *src = fs_read_file(path, &len, &err);
		if (!src)
			die_err(&err);
		jinja_options o;
		jinja_options_init(&o);
		if (S->jinja2_defaults)
			o.trim_blocks = o.lstrip_blocks = 0;
		o.strict = S->strict;
		S->tpl[k] = jinja_compile(src, len, path, &o, &err);
		if (!S->tpl[k])
			die_err(&err);
		if (!S->strict) {
			o.strict = 1;
			S->probe[k] = jinja_compile(src, len, path, &o, &err);
			if (!S->probe[k])
				die_err(&err);
		}
		free(src);
		free(path);
		found++;
	}
	if (!found)
		die_usage("--prompts %s: no system.jinja, user.jinja or assistant.jinja there", S->prompts);
}

/* ---- one record ---- */

static int fail(item *it, int reason, sft_error *e)
{
	it->reason = reason;
	if (e != &it->err)
		it->err = *e;
	if (reason != RS_JSON) /* json_parse_located already names the place */
		sft_error_prefix(&it->err, "%s:%ld", it->name, it->lineno);
	return -1;
}

static int blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return 0;
	return 1;
}

/* Renders template k; counts undefined variables through the strict twin. */
static int render_one(const state *S, int k, const json_t *rec, item *it, char **out, size_t *len)
{
	sft_error e = {0};
	if (S->probe[k]) {
		if (jinja_render(S->probe[k], rec, out, len, NULL, NULL, &e) == 0)
			return 0;
		sft_error probe_err = e;
		sft_error_clear(&e);
		if (jinja_render(S->tpl[k], rec, out, len, NULL, NULL, &e) == 0) {
			if (!it->undef)
				it->note = probe_err;
			it->undef = 1;
			return 0;
		}
		return fail(it, RS_TEMPLATE, &e);
	}
	if (jinja_render(S->tpl[k], rec, out, len, NULL, NULL, &e) == 0)
		return 0;
	return fail(it, RS_TEMPLATE, &e);
}

/* s must be valid UTF-8 */
static json_t *msg_new(const char *role, const char *s, size_t n)
{
	json_t *m = json_object();
	json_object_set_new_nocheck(m, "role", json_string_nocheck(role));
	json_object_set_new_nocheck(m, "content", json_stringn_nocheck(s, n));
	return m;
}

/* Renders the prompts directory's templates for `rec` into r[k] (NULL where there is
 * no template, or for a system prompt that renders blank: conditional system prompts
 * mean "no system message"). 0, or -1 with it->err set (r[] freed). */
static int render_templates(const state *S, const json_t *rec, item *it, char *r[T_N],
			    size_t n[T_N])
{
	for (int k = 0; k < T_N; k++)
		r[k] = NULL;
	for (int k = 0; k < T_N; k++) {
		if (!S->tpl[k])
			continue;
		if (render_one(S, k, rec, it, &r[k], &n[k]) < 0)
			goto fail;
		if (!json_utf8_valid(r[k], n[k])) {
			sft_error e;
			sft_error_set(&e, SFT_EXIT_INTERNAL, "%s rendered invalid UTF-8", tpl_files[k]);
			fail(it, RS_TEMPLATE, &e);
			goto fail;
		}
		if (k == T_SYSTEM && blank(r[k], n[k])) {
			free(r[k]);
			r[k] = NULL;
		}
	}
	return 0;
fail:
	for (int k = 0; k < T_N; k++)
		free(r[k]);
	return -1;
}

static json_t *messages_from_templates(const state *S, const json_t *rec, item *it)
{
	char *r[T_N];
	size_t n[T_N];
	if (render_templates(S, rec, it, r, n) < 0)
		return NULL;
	json_t *msgs = json_array();
	for (int k = 0; k < T_N; k++)
		if (r[k]) {
			json_array_append_new(msgs, msg_new(tpl_roles[k], r[k], n[k]));
			free(r[k]);
		}
	return msgs;
}

/* --system: replace the first system message's content or insert one. */
static json_t *set_system(json_t *msgs, const char *text)
{
	json_t *copy = json_deep_copy(msgs);
	json_decref(msgs);
	json_t *first = json_array_get(copy, 0);
	const json_t *role = json_object_get(first, "role");
	if (json_is_string(role) && !strcmp(json_string_value(role), "system"))
		json_object_set_new(first, "content", json_string(text));
	else
		json_array_insert_new(copy, 0, msg_new("system", text, strlen(text)));
	return copy;
}

static void check_empty(const json_t *msgs, item *it)
{
	size_t i;
	json_t *m;
	json_array_foreach(msgs, i, m) {
		const json_t *c = json_object_get(m, "content");
		const char *r = json_string_value(json_object_get(m, "role"));
		if (!r || !json_is_string(c) || !blank(json_string_value(c), json_string_length(c)))
			continue;
		if (!strcmp(r, "user"))
			it->empty_user = 1;
		else if (!strcmp(r, "assistant"))
			it->empty_asst = 1;
	}
}

static int out_key(const state *S, const char *k)
{
	switch (S->out) {
	case OUT_PC: return !strcmp(k, "prompt") || !strcmp(k, "completion");
	case OUT_TEXT: return !strcmp(k, "text");
	default: return !strcmp(k, "messages");
	}
}

static int pass_field(const state *S, int fmt, const char *k)
{
	if (out_key(S, k))
		return 0;
	if (S->keep.n)
		return in_list(&S->keep, k);
	if (S->drop_all || in_list(&S->drop, k))
		return 0;
	return !mapping_consumes(fmt, k);
}

static int render_chat(const state *S, const json_t *msgs, const json_t *rec, int gen, char **s,
		       size_t *n, item *it)
{
	sft_error e = {0};
	if (chat_tpl_render(S->chat, msgs, json_object_get(rec, "tools"),
			    json_object_get(rec, "documents"), gen, s, n, &e) < 0)
		return fail(it, RS_CHAT, &e);
	return 0;
}

static int pass_field(const state *S, int fmt, const char *k);

/* Appends `,"key":value` for each field of rec that passes through, then "}\n". */
static int put_passthrough(const state *S, int fmt, const json_t *rec, json_buf *b)
{
	const char *k;
	json_t *v;
	int bad = 0;
	json_object_foreach((json_t *)rec, k, v) {
		if (!pass_field(S, fmt, k))
			continue;
		/* `,"key":` in one piece for a short printable-ASCII key without '"' or '\\'
		 * (what json_buf_string writes for it unescaped); others through json_buf_string */
		char head[128];
		size_t n = 0;
		head[n++] = ',';
		head[n++] = '"';
		for (const char *c = k; *c && n < sizeof head - 2; c++) {
			unsigned char ch = (unsigned char)*c;
			if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
				n = 0;
				break;
			}
			head[n++] = *c;
		}
		if (n && !k[n - 2] && n + 2 <= sizeof head) {
			head[n++] = '"';
			head[n++] = ':';
			bad |= json_buf_put(b, head, n) || json_buf_value(b, v);
		} else
			bad |= json_buf_put(b, ",", 1) || json_buf_string(b, k, strlen(k)) || json_buf_put(b, ":", 1) ||
			       json_buf_value(b, v);
	}
	return bad | json_buf_put(b, "}\n", 2);
}

/* The common case, templates to {"messages":[...]}, written without building jansson
 * values for the messages (a tenth of the run time). Same bytes as the general path. */
static void process_templates_direct(const state *S, item *it, const json_t *rec)
{
	char *r[T_N];
	size_t n[T_N];
	if (render_templates(S, rec, it, r, n) < 0)
		return;
	const char *sys = r[T_SYSTEM];
	size_t sys_n = n[T_SYSTEM];
	if (S->system) {
		sys = S->system;
		sys_n = strlen(S->system);
	}
	if (r[T_USER] && blank(r[T_USER], n[T_USER]))
		it->empty_user = 1;
	if (r[T_ASSISTANT] && blank(r[T_ASSISTANT], n[T_ASSISTANT]))
		it->empty_asst = 1;
	json_buf b = {it->out, 0, it->out_cap};
	int bad = json_buf_put(&b, "{\"messages\":[", 13);
	int first = 1;
	const char *content[T_N] = {sys, r[T_USER], r[T_ASSISTANT]};
	size_t len[T_N] = {sys_n, n[T_USER], n[T_ASSISTANT]};
	static const char *const head[T_N] = {"{\"role\":\"system\",\"content\":",
					      "{\"role\":\"user\",\"content\":",
					      "{\"role\":\"assistant\",\"content\":"};
	for (int k = 0; k < T_N; k++) {
		if (!content[k])
			continue;
		bad |= (!first && json_buf_put(&b, ",", 1)) || json_buf_put(&b, head[k], strlen(head[k])) ||
		       json_buf_string(&b, content[k], len[k]) || json_buf_put(&b, "}", 1);
		first = 0;
	}
	bad |= json_buf_put(&b, "]", 1) || put_passthrough(S, 0, rec, &b);
	it->out = b.buf;
	it->out_cap = b.cap;
	it->out_len = b.len;
	for (int k = 0; k < T_N; k++)
		free(r[k]);
	if (bad) {
		sft_error e;
		sft_error_set(&e, SFT_EXIT_RUNTIME, "out of memory");
		fail(it, RS_RECORD, &e);
	}
}

static void process(const state *S, item *it)
{
	it->reason = RS_OK;
	it->undef = it->empty_user = it->empty_asst = 0;
	it->fmt = 0;
	it->out_len = 0;
	sft_error e = {0};
	json_t *rec = json_parse_located(it->line, it->len, it->name, it->lineno, 0, &e);
	if (!rec) {
		fail(it, RS_JSON, &e);
		return;
	}
	json_t *msgs = NULL, *res = NULL;
	if (S->prompts && S->out == OUT_MESSAGES) {
		process_templates_direct(S, it, rec);
		goto done;
	}
	if (S->prompts) {
		msgs = messages_from_templates(S, rec, it);
		if (!msgs)
			goto done;
	} else {
		it->fmt = S->from ? S->from : input_format_detect(rec);
		if (it->fmt < 0) {
			char fields[256] = "";
			const char *k;
			json_t *v;
			json_object_foreach(rec, k, v) {
				size_t u = strlen(fields);
				snprintf(fields + u, sizeof fields - u, "%s%s", u ? ", " : "", k);
			}
			sft_error_set(&e, SFT_EXIT_DATA,
				      "cannot tell the record's format from its fields (%s); use --from or "
				      "--prompts",
				      fields[0] ? fields : "none");
			it->fmt = 0;
			fail(it, RS_RECORD, &e);
			goto done;
		}
		msgs = mapping_messages(it->fmt, rec, &e);
		if (!msgs) {
			fail(it, RS_RECORD, &e);
			goto done;
		}
	}
	if (S->system)
		msgs = set_system(msgs, S->system);
	check_empty(msgs, it);

	res = json_object();
	if (S->out == OUT_PC) {
		size_t n = json_array_size(msgs);
		const json_t *last = json_array_get(msgs, n ? n - 1 : 0);
		const char *r = json_string_value(json_object_get(last, "role"));
		if (!r || strcmp(r, "assistant")) {
			sft_error_set(&e, SFT_EXIT_DATA,
				      "--format prompt-completion: the last message is not from the assistant");
			fail(it, RS_RECORD, &e);
			goto done;
		}
		json_t *prompt = json_array();
		for (size_t i = 0; i + 1 < n; i++)
			json_array_append(prompt, json_array_get(msgs, i));
		json_t *completion = json_array();
		json_array_append(completion, (json_t *)last);
		if (S->chat) {
			char *ps = NULL, *fs = NULL;
			size_t pn, fn;
			if (render_chat(S, prompt, rec, 1, &ps, &pn, it) < 0 ||
			    render_chat(S, msgs, rec, 0, &fs, &fn, it) < 0) {
				free(ps);
				json_decref(prompt);
				json_decref(completion);
				goto done;
			}
			if (fn < pn || memcmp(ps, fs, pn)) {
				free(ps);
				free(fs);
				json_decref(prompt);
				json_decref(completion);
				sft_error_set(&e, SFT_EXIT_DATA,
					      "the chat template's prompt (with the generation prompt) is not a "
					      "prefix of the whole conversation, so prompt and completion "
					      "cannot be split");
				fail(it, RS_CHAT, &e);
				goto done;
			}
			json_decref(prompt);
			json_decref(completion);
			/* a prefix of valid UTF-8 may end inside a character: check both */
			if (!json_utf8_valid(fs, fn) || !json_utf8_valid(ps, pn)) {
				free(ps);
				free(fs);
				sft_error_set(&e, SFT_EXIT_DATA, "the chat template rendered invalid UTF-8");
				fail(it, RS_CHAT, &e);
				goto done;
			}
			prompt = json_stringn_nocheck(ps, pn);
			completion = json_stringn_nocheck(fs + pn, fn - pn);
			free(ps);
			free(fs);
		}
		json_object_set_new(res, "prompt", prompt);
		json_object_set_new(res, "completion", completion);
	} else if (S->out == OUT_TEXT) {
		char *s;
		size_t n;
		if (render_chat(S, msgs, rec, S->add_gen, &s, &n, it) < 0)
			goto done;
		if (!json_utf8_valid(s, n)) {
			free(s);
			sft_error_set(&e, SFT_EXIT_DATA, "the chat template rendered invalid UTF-8");
			fail(it, RS_CHAT, &e);
			goto done;
		}
		json_object_set_new(res, "text", json_stringn_nocheck(s, n));
		free(s);
	} else {
		json_object_set(res, "messages", msgs);
	}
	/* {<output fields>, <passed-through fields>}\n, written straight into the item */
	json_buf b = {it->out, 0, it->out_cap};
	int bad = json_buf_put(&b, "{", 1);
	const char *k;
	json_t *v;
	int first = 1;
	json_object_foreach(res, k, v) {
		bad |= (!first && json_buf_put(&b, ",", 1)) || json_buf_string(&b, k, strlen(k)) ||
		       json_buf_put(&b, ":", 1) || json_buf_value(&b, v);
		first = 0;
	}
	bad |= put_passthrough(S, it->fmt, rec, &b);
	it->out = b.buf;
	it->out_cap = b.cap;
	it->out_len = b.len;
	if (bad) {
		sft_error_set(&e, SFT_EXIT_RUNTIME, "out of memory");
		fail(it, RS_RECORD, &e);
	}
done:
	json_decref(res);
	json_decref(msgs);
	json_decref(rec);
}


/* ---- the run ---- */

#define WARN_MAX 5 /* per kind; -v shows all */

typedef struct counts {
	unsigned long long read, written, skipped[RS_N], undef, empty_user, empty_asst;
	unsigned long long fmt[IN_N];
	unsigned long long warned[RS_N + 3];
} counts;

static int may_warn(counts *C, int kind)
{
	return C->warned[kind]++ < WARN_MAX || log_level() >= LOG_VERBOSE;
}

static void die_flushed(const sft_error *e, atomic_file *af)
{
	if (af)
		atomic_abort(af);
	else
		fflush(stdout);
	die_err(e);
}

static void write_or_die(FILE *out, const char *buf, size_t n, atomic_file *af)
{
	if (fwrite(buf, 1, n, out) != n) {
		sft_error e;
		sft_error_set(&e, SFT_EXIT_RUNTIME, "%s: write error: %s",
			      af && af->tmp_path ? af->path : "<stdout>", strerror(errno));
		die_flushed(&e, af);
	}
}

/* ---- the pipeline ---- */

#define BATCH 256 /* records per batch */

enum { B_FREE = 0, B_READY, B_BUSY, B_DONE };

typedef struct batch {
	item items[BATCH];
	size_t n;
	int st;
} batch;

typedef struct pool {
	const state *S;
	batch *ring;
	size_t nb;                   /* ring slots */
	size_t submitted, claimed;   /* batch sequence numbers */
	int quit;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	pthread_t *th;
	int nt;                      /* worker threads; 0 = render in the main thread */
} pool;

static void *worker(void *arg)
{
	pool *P = arg;
	pthread_mutex_lock(&P->mu);
	for (;;) {
		while (!P->quit && P->claimed == P->submitted)
			pthread_cond_wait(&P->work, &P->mu);
		if (P->claimed == P->submitted)
			break; /* quit and nothing left */
		batch *b = &P->ring[P->claimed++ % P->nb];
		b->st = B_BUSY;
		pthread_mutex_unlock(&P->mu);
		for (size_t i = 0; i < b->n; i++)
			process(P->S, &b->items[i]);
		pthread_mutex_lock(&P->mu);
		b->st = B_DONE;
		pthread_cond_broadcast(&P->done);
	}
	pthread_mutex_unlock(&P->mu);
	return NULL;
}

static void pool_start(pool *P, const state *S, int nt)
{
	memset(P, 0, sizeof *P);
	P->S = S;
	P->nt = nt > 1 ? nt : 0;
	P->nb = P->nt ? 3 * (size_t)P->nt : 1;
	P->ring = calloc(P->nb, sizeof *P->ring);
	P->th = calloc((size_t)P->nt + 1, sizeof *P->th);
	if (!P->ring || !P->th)
		die(SFT_EXIT_RUNTIME, "out of memory");
	pthread_mutex_init(&P->mu, NULL);
	pthread_cond_init(&P->work, NULL);
	pthread_cond_init(&P->done, NULL);
	for (int i = 0; i < P->nt; i++)
		if (pthread_create(&P->th[i], NULL, worker, P))
			die(SFT_EXIT_RUNTIME, "cannot start thread %d: %s", i, strerror(errno));
}

static void pool_stop(pool *P)
{
	pthread_mutex_lock(&P->mu);
	P->quit = 1;
	pthread_cond_broadcast(&P->work);
	pthread_mutex_unlock(&P->mu);
	for (int i = 0; i < P->nt; i++)
		pthread_join(P->th[i], NULL);
	for (size_t k = 0; k < P->nb; k++)
		for (size_t i = 0; i < BATCH; i++) {
			free(P->ring[k].items[i].line);
			free(P->ring[k].items[i].out);
		}
	pthread_mutex_destroy(&P->mu);
	pthread_cond_destroy(&P->work);
	pthread_cond_destroy(&P->done);
	free(P->ring);
	free(P->th);
}

/* Reads up to BATCH lines into b; returns the bytes read. */
static uint64_t read_batch(jsonl_reader *r, batch *b, const char *name, atomic_file *af)
{
	sft_error err = {0};
	uint64_t bytes = 0;
	b->n = 0;
	while (b->n < BATCH) {
		const char *line;
		size_t len;
		int rc = jsonl_next_line(r, &line, &len, &err);
		if (rc < 0)
			die_flushed(&err, af);
		if (rc == 0)
			break;
		item *it = &b->items[b->n++];
		if (len + 1 > it->cap) {
			free(it->line);
			it->cap = len + 1 > 256 ? len + 1 : 256;
			it->line = malloc(it->cap);
			if (!it->line)
				die(SFT_EXIT_RUNTIME, "out of memory");
		}
		memcpy(it->line, line, len);
		it->line[len] = '\0';
		it->len = len;
		it->lineno = jsonl_line(r);
		it->name = name;
		bytes += len + 1;
	}
	return bytes;
}

/* Writes a finished batch in order; counts, warns, or dies at a bad record. */
static void write_batch(const state *S, batch *b, FILE *out, atomic_file *af, counts *C,
			progress *P)
{
	for (size_t i = 0; i < b->n; i++) {
		item *it = &b->items[i];
		C->read++;
		if (it->reason) {
			if (!S->skip) {
				progress_finish(P);
				if (!it->err.code)
					it->err.code = SFT_EXIT_DATA;
				die_flushed(&it->err, af);
			}
			C->skipped[it->reason]++;
			if (may_warn(C, it->reason)) {
				progress_finish(P);
				log_warn("%s (skipped)", it->err.msg);
			}
			continue;
		}
		C->fmt[it->fmt]++;
		write_or_die(out, it->out, it->out_len, af);
		C->written++;
		if (it->undef) {
			C->undef++;
			if (may_warn(C, RS_N)) {
				progress_finish(P);
				log_warn("%s:%ld: %s (rendered as empty)", it->name, it->lineno, it->note.msg);
			}
		}
		if (it->empty_user) {
			C->empty_user++;
			if (may_warn(C, RS_N + 1)) {
				progress_finish(P);
				log_warn("%s:%ld: empty user message", it->name, it->lineno);
			}
		}
		if (it->empty_asst) {
			C->empty_asst++;
			if (may_warn(C, RS_N + 2)) {
				progress_finish(P);
				log_warn("%s:%ld: empty assistant message", it->name, it->lineno);
			}
		}
	}
}

/* One input through the pipeline. */
static void run_input(const state *S, const char *path, FILE *out, atomic_file *af, counts *C,
		      int nt)
{
	/* open the input ourselves to give it a large buffer (fewer read calls) */
	sft_error err = {0};
	int is_stdin = !path || !strcmp(path, "-");
	FILE *fp = is_stdin ? stdin : fopen(path, "rb");
	if (!fp) {
		sft_error_set(&err, SFT_EXIT_RUNTIME, "%s: cannot open: %s", path, strerror(errno));
		die_flushed(&err, af);
	}
	static char filebuf[1 << 20], stdinbuf[1 << 20];
	static int stdin_used;
	if (!is_stdin) /* each file is closed before the next is opened */
		setvbuf(fp, filebuf, _IOFBF, sizeof filebuf);
	else if (!stdin_used++) /* setvbuf only before the stream's first read */
		setvbuf(fp, stdinbuf, _IOFBF, sizeof stdinbuf);
	jsonl_reader *r = jsonl_open_stream(fp, is_stdin ? "<stdin>" : path);
	if (!r)
		die(SFT_EXIT_RUNTIME, "out of memory");
	const char *name = jsonl_name(r);
	uint64_t total_bytes = 0;
	struct stat st;
	if (path && strcmp(path, "-") && stat(path, &st) == 0 && S_ISREG(st.st_mode))
		total_bytes = (uint64_t)st.st_size;
	progress prog;
	progress_start(&prog, "records", 0, total_bytes);
	pool P;
	pool_start(&P, S, nt);
	size_t written = 0; /* batches written */
	int eof = 0;
	for (;;) {
		if (!eof && P.submitted - written < P.nb) {
			batch *b = &P.ring[P.submitted % P.nb];
			uint64_t bytes = read_batch(r, b, name, af);
			if (b->n == 0) {
				eof = 1;
				continue;
			}
			progress_add(&prog, b->n, bytes);
			if (!P.nt) {
				for (size_t i = 0; i < b->n; i++)
					process(S, &b->items[i]);
				P.submitted++;
				write_batch(S, b, out, af, C, &prog);
				written++;
				continue;
			}
			pthread_mutex_lock(&P.mu);
			b->st = B_READY;
			P.submitted++;
			pthread_cond_signal(&P.work);
			pthread_mutex_unlock(&P.mu);
			continue;
		}
		if (written == P.submitted)
			break; /* end of input, all written */
		batch *b = &P.ring[written % P.nb];
		pthread_mutex_lock(&P.mu);
		while (b->st != B_DONE)
			pthread_cond_wait(&P.done, &P.mu);
		pthread_mutex_unlock(&P.mu);
		write_batch(S, b, out, af, C, &prog);
		b->st = B_FREE;
		written++;
	}
	pool_stop(&P);
	progress_finish(&prog);
	jsonl_close(r);
	if (!is_stdin)
		fclose(fp);
}

static void summary(const state *S, const counts *C, double secs)
{
	char buf[1024];
	unsigned long long skipped = 0;
	for (int r = 1; r < RS_N; r++)
		skipped += C->skipped[r];
	int n = snprintf(buf, sizeof buf, "%llu record%s read, %llu written, %llu skipped", C->read,
			 C->read == 1 ? "" : "s", C->written, skipped);
	if (skipped) {
		const char *sep = " (";
		for (int r = 1; r < RS_N; r++)
			if (C->skipped[r]) {
				n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%llu %s", sep, C->skipped[r],
					      reason_names[r]);
				sep = ", ";
			}
		n += snprintf(buf + n, sizeof buf - (size_t)n, ")");
	}
	if (!S->prompts && C->written) {
		const char *sep = "; from ";
		for (int f = 1; f < IN_N; f++)
			if (C->fmt[f]) {
				n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%s %llu", sep,
					      input_format_name(f), C->fmt[f]);
				sep = ", ";
			}
	}
	if (secs > 0 && C->read)
		snprintf(buf + n, sizeof buf - (size_t)n, "; %.0f records/s", (double)C->read / secs);
	if (C->undef)
		log_warn("%llu record%s used undefined variables (rendered as empty; --strict makes this "
			 "an error)",
			 C->undef, C->undef == 1 ? "" : "s");
	if (C->empty_user)
		log_warn("%llu record%s with an empty user message", C->empty_user,
			 C->empty_user == 1 ? "" : "s");
	if (C->empty_asst)
		log_warn("%llu record%s with an empty assistant message", C->empty_asst,
			 C->empty_asst == 1 ? "" : "s");
	log_info("%s", buf); /* last, so `2>&1 | tail -1` shows it */
}

int main(int argc, char **argv)
{
	log_init(argv[0]);
	json_object_seed(0); /* before any thread touches jansson objects */
	static state S;
	char **pos = NULL;
	int npos = cli_parse(&spec, argc, argv, on_option, &S, &pos);

	if (S.prompts && S.from)
		die_usage("--from and --prompts cannot be used together (templates replace the mapping)");
	if (S.keep.n && (S.drop.n || S.drop_all))
		die_usage("--keep and --drop cannot be used together");
	if (S.out == OUT_TEXT && !S.chat_path)
		die_usage("--format text needs --chat-template");
	if (S.out == OUT_MESSAGES && S.chat_path)
		die_usage("--chat-template renders text: use --format text or prompt-completion");
	if ((S.chat_name || S.chat_kwargs || S.add_gen) && !S.chat_path)
		die_usage("--chat-template-name, --chat-template-kwargs and --add-generation-prompt need "
			  "--chat-template");
	if (S.add_gen && S.out == OUT_PC)
		die_usage("--add-generation-prompt is implied for the prompt of --format prompt-completion");
	if (S.out == OUT_DEFAULT)
		S.out = S.chat_path ? OUT_TEXT : OUT_MESSAGES;
	if (S.prompts) {
		load_prompts(&S);
		if (S.out == OUT_PC && !S.tpl[T_ASSISTANT])
			die_usage("--format prompt-completion needs %s/assistant.jinja", S.prompts);
	}
	if (S.chat_path) {
		sft_error err = {0};
		S.chat = chat_tpl_load(S.chat_path, S.chat_name, S.chat_kwargs, &err);
		if (!S.chat) {
			if (err.code == SFT_EXIT_USAGE)
				die_usage("--chat-template %s", err.msg);
			die_err(&err);
		}
	}
	int nt = (int)S.threads;
	if (nt <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		nt = c < 1 ? 1 : c > 16 ? 16 : (int)c;
	}

	sft_error err = {0};
	atomic_file *af = NULL;
	FILE *out = stdout;
	if (S.output && strcmp(S.output, "-")) {
		af = atomic_open(S.output, &err);
		if (!af)
			die_err(&err);
		out = af->fp;
	}
	static char outbuf[1 << 20];
	if (!isatty(fileno(out)))
		setvbuf(out, outbuf, _IOFBF, sizeof outbuf);
	counts C;
	memset(&C, 0, sizeof C);
	double t0 = clock_now();
	if (npos == 0)
		run_input(&S, "-", out, af, &C, nt);
	for (int i = 0; i < npos; i++)
		run_input(&S, pos[i], out, af, &C, nt);

	if (af) {
		if (atomic_commit(af, &err) < 0)
			die_err(&err);
	} else {
		stdout_close_or_die();
	}
	summary(&S, &C, clock_now() - t0);

	free(pos);
	for (int k = 0; k < T_N; k++) {
		jinja_free(S.tpl[k]);
		jinja_free(S.probe[k]);
	}
	chat_tpl_free(S.chat);
	json_decref(S.chat_kwargs);
	for (size_t i = 0; i < S.keep.n; i++)
		free(S.keep.v[i]);
	for (size_t i = 0; i < S.drop.n; i++)
		free(S.drop.v[i]);
	free(S.keep.v);
	free(S.drop.v);
	return 0;
}
