/* mappings.c - the built-in record formats of ds-template, each turned into chat
 * messages without a template: alpaca, sharegpt, openai, prompt-completion,
 * instruction-text ("### Instruction / ### Input / ### Output") and the CSV-style
 * "prompt" / "expected completion" pair. */
#include "tpl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const format_names[IN_N] = {
	[IN_AUTO] = "auto",
	[IN_ALPACA] = "alpaca",
	[IN_SHAREGPT] = "sharegpt",
	[IN_OPENAI] = "openai",
	[IN_PROMPT_COMPLETION] = "prompt-completion",
	[IN_INSTRUCTION_TEXT] = "instruction-text",
	[IN_CSV_PROMPT_COMPLETION] = "csv-prompt-completion",
};

const char *input_format_name(int fmt)
{
	return fmt > IN_AUTO && fmt < IN_N ? format_names[fmt] : NULL;
}

int input_format_parse(const char *s)
{
	for (int i = 0; i < IN_N; i++)
		if (!strcmp(s, format_names[i]))
			return i;
	return -1;
}

/* Fields each format reads (and so does not pass through by default). */
static const char *const consumed[IN_N][4] = {
	[IN_ALPACA] = {"instruction", "input", "output", "system"},
	[IN_SHAREGPT] = {"conversations", "system"},
	[IN_OPENAI] = {"messages"},
	[IN_PROMPT_COMPLETION] = {"prompt", "completion"},
	[IN_INSTRUCTION_TEXT] = {"text"},
	[IN_CSV_PROMPT_COMPLETION] = {"prompt", "expected completion"},
};

int mapping_consumes(int fmt, const char *key)
{
	if (fmt <= IN_AUTO || fmt >= IN_N)
		return 0;
	for (int i = 0; i < 4 && consumed[fmt][i]; i++)
		if (!strcmp(consumed[fmt][i], key))
			return 1;
	return 0;
}

static int has_text_header(const char *s);

int input_format_detect(const json_t *rec)
{
	if (json_is_array(json_object_get(rec, "messages")))
		return IN_OPENAI;
	if (json_is_array(json_object_get(rec, "conversations")))
		return IN_SHAREGPT;
	if (json_object_get(rec, "prompt") && json_object_get(rec, "expected completion"))
		return IN_CSV_PROMPT_COMPLETION;
	if (json_object_get(rec, "prompt") && json_object_get(rec, "completion"))
		return IN_PROMPT_COMPLETION;
	const json_t *t = json_object_get(rec, "text");
	if (json_is_string(t) && has_text_header(json_string_value(t)))
		return IN_INSTRUCTION_TEXT;
	/* last, so that a record lacking "output" is reported as a bad alpaca record */
	if (json_object_get(rec, "instruction"))
		return IN_ALPACA;
	return -1;
}

/* ---- helpers ---- */

static json_t *msg_new(const char *role, const char *content, size_t len)
{
	json_t *m = json_object();
	json_object_set_new(m, "role", json_string(role));
	/* slices and joins of the record's strings, which the parser validated */
	json_object_set_new(m, "content", json_stringn_nocheck(content, len));
	return m;
}

static int append_msg(json_t *msgs, const char *role, const char *content, size_t len)
{
	json_t *m = msg_new(role, content, len);
	if (!m || json_array_append_new(msgs, m))
		return -1;
	return 0;
}

/* A required string field; NULL with err set if absent or not a string. */
static const json_t *need_string(const json_t *rec, const char *key, const char *fmt,
				 sft_error *err)
{
	const json_t *v = json_object_get(rec, key);
	if (!v) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: missing field '%s'", fmt, key);
		return NULL;
	}
	if (!json_is_string(v)) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: field '%s' must be a string", fmt, key);
		return NULL;
	}
	return v;
}

/* An optional string field: NULL if absent or null; err set (and *bad = 1) if it has
 * another type. */
static const json_t *opt_string(const json_t *rec, const char *key, const char *fmt, int *bad,
				sft_error *err)
{
	const json_t *v = json_object_get(rec, key);
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_string(v)) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: field '%s' must be a string", fmt, key);
		*bad = 1;
		return NULL;
	}
	return v;
}

static const char *const valid_roles[] = {"system", "developer", "user", "assistant", "tool",
					  "function", "ipython", NULL};

int messages_validate(const json_t *msgs, const char *what, sft_error *err)
{
	if (!json_is_array(msgs))
		return sft_error_set(err, SFT_EXIT_DATA, "'%s' must be an array of messages", what);
	if (json_array_size(msgs) == 0)
		return sft_error_set(err, SFT_EXIT_DATA, "'%s' is empty", what);
	for (size_t i = 0; i < json_array_size(msgs); i++) {
		const json_t *m = json_array_get(msgs, i);
		if (!json_is_object(m))
			return sft_error_set(err, SFT_EXIT_DATA, "%s[%zu] must be an object", what, i);
		const json_t *role = json_object_get(m, "role");
		if (!json_is_string(role))
			return sft_error_set(err, SFT_EXIT_DATA, "%s[%zu] has no string 'role'", what, i);
		const char *r = json_string_value(role);
		int ok = 0;
		for (int k = 0; valid_roles[k]; k++)
			if (!strcmp(r, valid_roles[k]))
				ok = 1;
		if (!ok)
			return sft_error_set(err, SFT_EXIT_DATA, "%s[%zu] has unknown role '%s'", what, i, r);
		const json_t *c = json_object_get(m, "content");
		int has_calls = json_is_array(json_object_get(m, "tool_calls")) ||
				json_is_object(json_object_get(m, "function_call"));
		if (json_is_string(c) || json_is_array(c))
			continue;
		if ((!c || json_is_null(c)) && has_calls)
			continue;
		if (!c)
			return sft_error_set(err, SFT_EXIT_DATA, "%s[%zu] (%s) has no 'content'", what, i, r);
		return sft_error_set(err, SFT_EXIT_DATA,
				     "%s[%zu] (%s): 'content' must be a string or an array of parts", what,
				     i, r);
	}
	return 0;
}

/* user content of an instruction with an optional input: "instruction\n\ninput" */
static int append_instruction(json_t *msgs, const char *ins, size_t ins_len, const char *inp,
			      size_t inp_len)
{
	if (!inp || !inp_len)
		return append_msg(msgs, "user", ins, ins_len);
	char *buf = malloc(ins_len + inp_len + 3);
	if (!buf)
		return -1;
	memcpy(buf, ins, ins_len);
	memcpy(buf + ins_len, "\n\n", 2);
	memcpy(buf + ins_len + 2, inp, inp_len);
	int rc = append_msg(msgs, "user", buf, ins_len + inp_len + 2);
	free(buf);
	return rc;
}

/* ---- alpaca ---- */

static json_t *map_alpaca(const json_t *rec, sft_error *err)
{
	const char *F = "alpaca";
	int bad = 0;
	const json_t *ins = need_string(rec, "instruction", F, err);
	if (!ins)
		return NULL;
	const json_t *out = need_string(rec, "output", F, err);
	if (!out)
		return NULL;
	const json_t *inp = opt_string(rec, "input", F, &bad, err);
	const json_t *sys = bad ? NULL : opt_string(rec, "system", F, &bad, err);
	if (bad)
		return NULL;
	json_t *msgs = json_array();
	if (sys && json_string_length(sys))
		append_msg(msgs, "system", json_string_value(sys), json_string_length(sys));
	append_instruction(msgs, json_string_value(ins), json_string_length(ins),
			   inp ? json_string_value(inp) : NULL, inp ? json_string_length(inp) : 0);
	append_msg(msgs, "assistant", json_string_value(out), json_string_length(out));
	return msgs;
}

/* ---- sharegpt ---- */

static const char *sharegpt_role(const char *from)
{
	static const char *const map[][2] = {
		{"human", "user"},       {"user", "user"},           {"gpt", "assistant"},
		{"assistant", "assistant"}, {"chatgpt", "assistant"}, {"system", "system"},
		{"tool", "tool"},        {"function_response", "tool"}, {"observation", "tool"},
		{NULL, NULL},
	};
	for (int i = 0; map[i][0]; i++)
		if (!strcmp(map[i][0], from))
			return map[i][1];
	return NULL;
}

static json_t *map_sharegpt(const json_t *rec, sft_error *err)
{
	const json_t *conv = json_object_get(rec, "conversations");
	if (!json_is_array(conv)) {
		sft_error_set(err, SFT_EXIT_DATA, "sharegpt: 'conversations' must be an array");
		return NULL;
	}
	if (json_array_size(conv) == 0) {
		sft_error_set(err, SFT_EXIT_DATA, "sharegpt: 'conversations' is empty");
		return NULL;
	}
	int bad = 0;
	const json_t *sys = opt_string(rec, "system", "sharegpt", &bad, err);
	if (bad)
		return NULL;
	json_t *msgs = json_array();
	if (sys && json_string_length(sys)) {
		const json_t *first = json_object_get(json_array_get(conv, 0), "from");
		if (!json_is_string(first) || strcmp(json_string_value(first), "system"))
			append_msg(msgs, "system", json_string_value(sys), json_string_length(sys));
	}
	for (size_t i = 0; i < json_array_size(conv); i++) {
		const json_t *t = json_array_get(conv, i);
		const json_t *from = json_object_get(t, "from");
		const json_t *value = json_object_get(t, "value");
		if (!from && !value) { /* the role/content variant */
			from = json_object_get(t, "role");
			value = json_object_get(t, "content");
		}
		if (!json_is_object(t) || !json_is_string(from) || !json_is_string(value)) {
			sft_error_set(err, SFT_EXIT_DATA,
				      "sharegpt: conversations[%zu] needs string 'from' and 'value'", i);
			json_decref(msgs);
			return NULL;
		}
		const char *role = sharegpt_role(json_string_value(from));
		if (!role) {
			sft_error_set(err, SFT_EXIT_DATA,
				      "sharegpt: conversations[%zu] has unknown 'from' '%s' (expected human, "
				      "gpt, system or tool)",
				      i, json_string_value(from));
			json_decref(msgs);
			return NULL;
		}
		append_msg(msgs, role, json_string_value(value), json_string_length(value));
	}
	return msgs;
}

/* ---- openai ---- */

static json_t *map_openai(const json_t *rec, sft_error *err)
{
	json_t *msgs = json_object_get(rec, "messages");
	if (messages_validate(msgs, "messages", err) < 0) {
		sft_error_prefix(err, "openai");
		return NULL;
	}
	return json_incref(msgs);
}

/* ---- prompt/completion (plain strings or conversational lists) ---- */

static json_t *map_pc(const json_t *rec, const char *pkey, const char *ckey, const char *F,
		      sft_error *err)
{
	const json_t *p = json_object_get(rec, pkey), *c = json_object_get(rec, ckey);
	if (!p || !c) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: missing field '%s'", F, !p ? pkey : ckey);
		return NULL;
	}
	json_t *msgs = json_array();
	if (json_is_string(p) && json_is_string(c)) {
		append_msg(msgs, "user", json_string_value(p), json_string_length(p));
		append_msg(msgs, "assistant", json_string_value(c), json_string_length(c));
		return msgs;
	}
	if (json_is_array(p) && json_is_array(c) && strcmp(ckey, "completion") == 0) {
		if (messages_validate(p, pkey, err) < 0 || messages_validate(c, ckey, err) < 0) {
			sft_error_prefix(err, "%s", F);
			json_decref(msgs);
			return NULL;
		}
		json_array_extend(msgs, (json_t *)p);
		json_array_extend(msgs, (json_t *)c);
		return msgs;
	}
	json_decref(msgs);
	sft_error_set(err, SFT_EXIT_DATA, "%s: '%s' and '%s' must both be strings%s", F, pkey, ckey,
		      strcmp(ckey, "completion") ? "" : " or both lists of messages");
	return NULL;
}

/* ---- "### Instruction:\n...\n\n### Input:\n...\n\n### Output:\n..." ---- */

enum { SEC_NONE = -1, SEC_INSTRUCTION = 0, SEC_INPUT, SEC_OUTPUT, SEC_N };

/* If s (at a line start) is a section header "### Name[:]", returns the section and
 * sets *body to where its text begins (after the colon and blanks on the same line, or
 * at the next line). */
static int header_at(const char *s, const char *end, const char **body)
{
	static const struct {
		const char *name;
		int sec;
	} names[] = {{"instruction", SEC_INSTRUCTION}, {"input", SEC_INPUT},
		     {"output", SEC_OUTPUT},           {"response", SEC_OUTPUT},
		     {NULL, 0}};
	if (end - s < 4 || memcmp(s, "### ", 4))
		return SEC_NONE;
	const char *p = s + 4;
	while (p < end && *p == ' ')
		p++;
	for (int i = 0; names[i].name; i++) {
		size_t n = strlen(names[i].name);
		if ((size_t)(end - p) < n || strncasecmp(p, names[i].name, n))
			continue;
		const char *q = p + n;
		if (q < end && *q == ':')
			q++;
		else if (q < end && *q != '\n' && *q != ' ' && *q != '\r')
			continue; /* "### Inputs", "### Outputting" are not headers */
		while (q < end && (*q == ' ' || *q == '\t'))
			q++;
		if (q < end && *q == '\r')
			q++;
		if (q < end && *q == '\n')
			q++;
		*body = q;
		return names[i].sec;
	}
	return SEC_NONE;
}

static int has_text_header(const char *s)
{
	const char *end = s + strlen(s), *body;
	for (const char *p = s; p < end;) {
		if (header_at(p, end, &body) == SEC_INSTRUCTION)
			return 1;
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		p = nl + 1;
	}
	return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void trim(const char **b, const char **e)
{
	while (*b < *e && is_space(**b))
		(*b)++;
	while (*e > *b && is_space((*e)[-1]))
		(*e)--;
}

static json_t *map_instruction_text(const json_t *rec, sft_error *err)
{
	const char *F = "instruction-text";
	const json_t *t = need_string(rec, "text", F, err);
	if (!t)
		return NULL;
	const char *s = json_string_value(t), *end = s + json_string_length(t);
	const char *beg[SEC_N] = {0}, *fin[SEC_N] = {0};
	const char *pre_end = end;
	int cur = SEC_NONE;
	for (const char *p = s; p < end;) {
		const char *body;
		int sec = header_at(p, end, &body);
		if (sec != SEC_NONE) {
			if (beg[sec]) {
				sft_error_set(err, SFT_EXIT_DATA, "%s: more than one '### %s' section", F,
					      sec == SEC_INSTRUCTION ? "Instruction"
					      : sec == SEC_INPUT     ? "Input"
								     : "Output");
				return NULL;
			}
			if (cur == SEC_NONE)
				pre_end = p;
			else
				fin[cur] = p;
			cur = sec;
			beg[sec] = body;
			fin[sec] = end;
			p = body;
			continue;
		}
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		p = nl ? nl + 1 : end;
	}
	if (!beg[SEC_INSTRUCTION]) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: no '### Instruction' section in 'text'", F);
		return NULL;
	}
	if (!beg[SEC_OUTPUT]) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: no '### Output' (or '### Response') section in 'text'",
			      F);
		return NULL;
	}
	json_t *msgs = json_array();
	const char *pb = s, *pe = pre_end;
	trim(&pb, &pe);
	if (pe > pb)
		append_msg(msgs, "system", pb, (size_t)(pe - pb));
	const char *b[SEC_N], *e[SEC_N];
	for (int i = 0; i < SEC_N; i++) {
		b[i] = beg[i];
		e[i] = fin[i];
		if (b[i])
			trim(&b[i], &e[i]);
	}
	append_instruction(msgs, b[SEC_INSTRUCTION], (size_t)(e[SEC_INSTRUCTION] - b[SEC_INSTRUCTION]),
			   b[SEC_INPUT], b[SEC_INPUT] ? (size_t)(e[SEC_INPUT] - b[SEC_INPUT]) : 0);
	append_msg(msgs, "assistant", b[SEC_OUTPUT], (size_t)(e[SEC_OUTPUT] - b[SEC_OUTPUT]));
	return msgs;
}

json_t *mapping_messages(int fmt, const json_t *rec, sft_error *err)
{
	switch (fmt) {
	case IN_ALPACA: return map_alpaca(rec, err);
	case IN_SHAREGPT: return map_sharegpt(rec, err);
	case IN_OPENAI: return map_openai(rec, err);
	case IN_PROMPT_COMPLETION: return map_pc(rec, "prompt", "completion", "prompt-completion", err);
	case IN_CSV_PROMPT_COMPLETION:
		return map_pc(rec, "prompt", "expected completion", "csv-prompt-completion", err);
	case IN_INSTRUCTION_TEXT: return map_instruction_text(rec, err);
	default:
		sft_error_set(err, SFT_EXIT_INTERNAL, "no mapping for format %d", fmt);
		return NULL;
	}
}
