/* chat.c - one record in, token ids and a loss mask out (see chat.h and docs/tok-encode.md
 * for the rules). Everything here is re-entrant: a te_config is shared read-only by the
 * worker threads, and every JSON value built here belongs to the calling thread. */
#include "chat.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"

const char *const te_skip_names[TE_SKIP_N] = {
	"none", "too-long", "bad-json", "bad-record", "template-error", "tokenize-error", "empty-mask",
};

static const char *const special_names[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};

void te_result_free(te_result *r)
{
	if (!r)
		return;
	free(r->ids);
	free(r->mask);
	free(r->show);
	memset(r, 0, sizeof *r);
}

/* ---- pure helpers ---- */

static long token_at(const size_t *starts, const size_t *ends, size_t n, size_t b)
{
	for (size_t k = 0; k < n; k++)
		if (starts[k] <= b && b < ends[k])
			return (long)k;
	return -1;
}

void te_mask_from_spans(const char *text, size_t text_len, const size_t *starts, const size_t *ends,
			size_t n, const jinja_span *spans, size_t n_spans, uint8_t *mask)
{
	for (size_t j = 0; j < n_spans; j++) {
		long st = token_at(starts, ends, n, spans[j].start);
		if (st < 0)
			break; /* transformers: "start_token is out of bounds" -> break */
		long en = -1;
		if (spans[j].end > 0 && spans[j].end <= text_len) {
			/* the first byte of the last character of the span */
			size_t b = spans[j].end - 1;
			while (b > 0 && ((unsigned char)text[b] & 0xC0) == 0x80)
				b--;
			en = token_at(starts, ends, n, b);
		}
		/* range(start_token, end_token + 1 if end_token else len(input_ids)) */
		size_t upto = en > 0 ? (size_t)en + 1 : n;
		for (size_t k = (size_t)st; k < upto; k++)
			mask[k] = 1;
	}
}

void te_mask_overlap(const size_t *starts, const size_t *ends, size_t n, size_t s, size_t e,
		     uint8_t *mask)
{
	for (size_t k = 0; k < n; k++)
		if (ends[k] > starts[k] && starts[k] < e && ends[k] > s)
			mask[k] = 1;
}

static int is_ws(unsigned char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static int all_ws(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_ws((unsigned char)p[i]))
			return 0;
	return 1;
}

size_t te_turn_end(const char *text, size_t s, size_t e, const size_t *starts, const size_t *ends,
		   const uint8_t *special, size_t n)
{
	long last = -1;
	for (size_t k = 0; k < n; k++)
		if (special[k] && ends[k] > starts[k] && starts[k] >= s && ends[k] <= e)
			last = (long)k;
	if (last >= 0 && all_ws(text + ends[last], e - ends[last]))
		return ends[last];
	while (e > s && is_ws((unsigned char)text[e - 1]))
		e--;
	return e;
}

int te_truncate(uint32_t *ids, uint8_t *mask, size_t *n, size_t max_length, int mode)
{
	if (!max_length || *n <= max_length || mode == TE_TRUNC_NONE)
		return 0;
	if (mode == TE_TRUNC_DROP)
		return 1;
	if (mode == TE_TRUNC_KEEP_END) {
		size_t cut = *n - max_length;
		memmove(ids, ids + cut, max_length * sizeof *ids);
		memmove(mask, mask + cut, max_length);
	}
	*n = max_length;
	return 0;
}

/* ---- rendering ---- */

typedef struct rec_ctx {
	const te_config *c;
	const char *name;
	long lineno;
	te_result *r;
	json_t *msgs;   /* normalized messages (owned) */
	json_t *tools;  /* borrowed from the record or NULL */
	json_t *kwargs; /* borrowed chat_template_kwargs or NULL */
} rec_ctx;

static int rec_fail(rec_ctx *x, int skip, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rec_fail(rec_ctx *x, int skip, const char *fmt, ...)
{
	char msg[SFT_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	x->r->skip = skip;
	sft_error_set(&x->r->err, SFT_EXIT_DATA, "%s:%ld: %s", x->name, x->lineno, msg);
	return 0;
}

static int oom(rec_ctx *x)
{
	sft_error_set(&x->r->err, SFT_EXIT_RUNTIME, "out of memory");
	return -1;
}

/* Drops None-valued keys, as TRL does before applying the chat template (datasets pads
 * struct columns with None); the reasoning-field aliasing transformers adds is done by
 * jinja_chat_context() at render time. */
static json_t *strip_none(json_t *m)
{
	json_t *out = json_object();
	if (!out)
		return NULL;
	const char *k;
	json_t *v;
	json_object_foreach(m, k, v) {
		if (!json_is_null(v))
			json_object_set(out, k, v);
	}
	return out;
}

static int build_messages(rec_ctx *x, json_t *const *parts, const char *const *part_names, int n_parts)
{
	x->msgs = json_array();
	if (!x->msgs)
		return oom(x);
	for (int p = 0; p < n_parts; p++) {
		size_t i;
		json_t *m;
		json_array_foreach(parts[p], i, m) {
			if (!json_is_object(m))
				return rec_fail(x, TE_SKIP_BAD_RECORD, "%s[%zu] is not an object", part_names[p], i);
			json_t *nm = strip_none(m);
			if (!nm || json_array_append_new(x->msgs, nm))
				return oom(x);
		}
	}
	return 0;
}

static const char *msg_role(const rec_ctx *x, size_t i)
{
	return json_string_value(json_object_get(json_array_get(x->msgs, i), "role"));
}

/* Renders messages[:count]. Returns 0, or <0 with a template message in *err. */
static int render(const rec_ctx *x, size_t count, int agp, int want_spans, char **out, size_t *out_len,
		  jinja_span **spans, size_t *n_spans, sft_error *err)
{
	const te_config *c = x->c;
	json_t *msgs = json_array();
	json_t *extra = json_object(); /* special tokens, then the record's template kwargs */
	json_t *ctx = NULL;
	if (msgs && extra) {
		for (size_t i = 0; i < count; i++)
			json_array_append(msgs, json_array_get(x->msgs, i));
		for (int i = 0; i < 4; i++)
			if (c->special[i])
				json_object_set_new(extra, special_names[i], json_string(c->special[i]));
		if (x->kwargs)
			json_object_update(extra, x->kwargs);
		ctx = jinja_chat_context(msgs, x->tools, agp, extra);
	}
	json_decref(msgs);
	json_decref(extra);
	if (!ctx)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	int rc = jinja_render(c->tmpl, ctx, out, out_len, want_spans ? spans : NULL,
			      want_spans ? n_spans : NULL, err);
	json_decref(ctx);
	return rc;
}

static int render_fail(rec_ctx *x, const sft_error *e)
{
	if (e->code != SFT_EXIT_DATA) {
		x->r->err = *e;
		return -1;
	}
	return rec_fail(x, TE_SKIP_TEMPLATE, "chat template: %s", e->msg);
}

/* ---- tokenization ---- */

typedef struct toks {
	uint32_t *ids;
	size_t *starts, *ends;
	uint8_t *special;
	size_t n;
} toks;

static void toks_free(toks *t)
{
	free(t->ids);
	free(t->starts);
	free(t->ends);
	free(t->special);
	memset(t, 0, sizeof *t);
}

static int tokenize(rec_ctx *x, const char *text, size_t len, int add_special, toks *t)
{
	sft_error e = {0};
	if (tokenizer_encode_offsets(x->c->tok, text, len, add_special, &t->ids, &t->starts, &t->ends,
				     &t->n, &e) < 0) {
		if (e.code != SFT_EXIT_DATA) {
			x->r->err = e;
			return -1;
		}
		rec_fail(x, TE_SKIP_TOKENIZE, "%s", e.msg);
		return 1;
	}
	t->special = malloc(t->n ? t->n : 1);
	if (!t->special)
		return oom(x);
	for (size_t k = 0; k < t->n; k++)
		t->special[k] = tokenizer_is_special(x->c->tok, t->ids[k]) != 0;
	return 0;
}

/* ---- masks for chat records ---- */

static const char *content_text(json_t *m)
{
	json_t *c = json_object_get(m, "content");
	if (json_is_string(c))
		return json_string_value(c);
	const char *last = NULL;
	size_t i;
	json_t *part;
	json_array_foreach(c, i, part) {
		const char *t = json_string_value(json_object_get(part, "text"));
		if (t)
			last = t;
	}
	return last;
}

static const char *find_bytes(const char *hay, size_t hay_len, const char *needle, size_t nlen)
{
	if (nlen == 0 || nlen > hay_len)
		return NULL;
	return memmem(hay, hay_len, needle, nlen);
}

/* Locates assistant message i's content in text[from..). Returns 1 with [*s,*e), else 0. */
static int locate_content(const rec_ctx *x, size_t i, const char *text, size_t from, size_t to,
			  size_t *s, size_t *e)
{
	const char *ct = content_text(json_array_get(x->msgs, i));
	if (!ct)
		return 0;
	size_t len = strlen(ct);
	/* templates often trim the content: try it as given, then stripped */
	for (int pass = 0; pass < 2; pass++) {
		const char *p = ct;
		size_t l = len;
		if (pass == 1) {
			while (l && is_ws((unsigned char)*p))
				p++, l--;
			while (l && is_ws((unsigned char)p[l - 1]))
				l--;
		}
		const char *hit = find_bytes(text + from, to - from, p, l);
		if (hit) {
			*s = (size_t)(hit - text);
			*e = *s + l;
			return 1;
		}
	}
	return 0;
}

/* Assistant spans without generation tags: diff the renderings of prefixes. */
static int mask_by_prefix_diff(rec_ctx *x, const char *full, size_t full_len, const toks *t,
			       uint8_t *mask)
{
	size_t nmsg = json_array_size(x->msgs);
	size_t cursor = 0;
	int agp_checked = 0, agp_empty = 0;
	for (size_t i = 0; i < nmsg; i++) {
		const char *role = msg_role(x, i);
		if (!role || strcmp(role, "assistant"))
			continue;
		char *P = NULL, *Q = NULL;
		size_t pl = 0, ql = 0;
		sft_error e1 = {0}, e2 = {0};
		int okP = render(x, i, 1, 0, &P, &pl, NULL, NULL, &e1) == 0;
		int okQ = render(x, i + 1, 0, 0, &Q, &ql, NULL, NULL, &e2) == 0;
		if ((!okP && e1.code != SFT_EXIT_DATA) || (!okQ && e2.code != SFT_EXIT_DATA)) {
			free(P);
			free(Q);
			x->r->err = okP ? e2 : e1;
			return -1;
		}
		size_t s = 0, e = 0;
		if (okP && okQ && ql > pl && pl >= cursor && !memcmp(Q, P, pl) && ql <= full_len &&
		    !memcmp(full, Q, ql)) {
			s = pl;
			e = ql;
			if (!agp_checked) {
				/* A template that ignores add_generation_prompt leaves the assistant
				 * header inside the diff: then start at the content instead. */
				char *P0 = NULL;
				size_t p0l = 0;
				sft_error e0 = {0};
				if (render(x, i, 0, 0, &P0, &p0l, NULL, NULL, &e0) == 0)
					agp_empty = p0l == pl && !memcmp(P0, P, pl);
				free(P0);
				agp_checked = 1;
			}
			size_t cs, ce;
			if (agp_empty && locate_content(x, i, full, s, e, &cs, &ce))
				s = cs;
			e = te_turn_end(full, s, e, t->starts, t->ends, t->special, t->n);
		} else if (locate_content(x, i, full, cursor, full_len, &s, &e)) {
			/* the rendered prefix is not a prefix: fall back to the content itself,
			 * plus an end-of-turn special token right after it */
			for (size_t k = 0; k < t->n; k++) {
				if (t->starts[k] < e)
					continue;
				if (t->special[k] && t->ends[k] > t->starts[k] &&
				    all_ws(full + e, t->starts[k] - e))
					e = t->ends[k];
				break;
			}
		} else {
			const char *ct = content_text(json_array_get(x->msgs, i));
			free(P);
			free(Q);
			if (ct && *ct)
				return rec_fail(x, TE_SKIP_TEMPLATE,
					    "messages[%zu]: cannot find the assistant content in the rendered conversation",
					    i);
			continue; /* nothing to train on in this message (e.g. only tool calls) */
		}
		free(P);
		free(Q);
		if (e > s) {
			te_mask_overlap(t->starts, t->ends, t->n, s, e, mask);
			cursor = e;
		}
	}
	return 0;
}

/* ---- EOS ---- */

static int last_is_eos(const te_config *c, const uint32_t *ids, size_t n)
{
	return n && c->eos_id >= 0 && ids[n - 1] == (uint32_t)c->eos_id;
}

static int append_token(rec_ctx *x, uint32_t **ids, uint8_t **mask, size_t *n, uint32_t id, uint8_t m)
{
	uint32_t *ni = realloc(*ids, (*n + 1) * sizeof *ni);
	if (!ni)
		return oom(x);
	*ids = ni;
	uint8_t *nm = realloc(*mask, *n + 1);
	if (!nm)
		return oom(x);
	*mask = nm;
	ni[*n] = id;
	nm[*n] = m;
	(*n)++;
	return 0;
}

/* ---- the record kinds ---- */

/* Completion mask by prompt prefix: TRL's rule (the prompt's tokens are a prefix of the
 * whole: mask by count), else by bytes (tokens that end past the prompt text). */
static void mask_completion(const toks *whole, const toks *prompt, size_t prompt_bytes, uint8_t *mask)
{
	int prefix = prompt->n <= whole->n &&
		     !memcmp(prompt->ids, whole->ids, prompt->n * sizeof *prompt->ids);
	for (size_t k = 0; k < whole->n; k++)
		mask[k] = prefix ? k >= prompt->n : whole->ends[k] > prompt_bytes;
}

static int encode_chat(rec_ctx *x, size_t n_prompt_msgs, uint32_t **ids, uint8_t **mask, size_t *n)
{
	const te_config *c = x->c;
	if (!c->tmpl) {
		sft_error_set(&x->r->err, SFT_EXIT_USAGE,
			      "%s:%ld: chat record but the model has no chat template: pass --chat-template FILE",
			      x->name, x->lineno);
		return -1;
	}
	size_t nmsg = json_array_size(x->msgs);
	if (!nmsg)
		return rec_fail(x, TE_SKIP_BAD_RECORD, "empty conversation");
	char *full = NULL;
	size_t full_len = 0;
	jinja_span *spans = NULL;
	size_t n_spans = 0;
	int want_spans = c->assistant_only && c->has_generation;
	sft_error e = {0};
	if (render(x, nmsg, 0, want_spans, &full, &full_len, &spans, &n_spans, &e) < 0)
		return render_fail(x, &e);
	toks t = {0};
	int rc = tokenize(x, full, full_len, 0, &t);
	if (rc) {
		free(full);
		free(spans);
		return rc < 0 ? -1 : 0;
	}
	uint8_t *m = calloc(t.n ? t.n : 1, 1);
	if (!m) {
		rc = oom(x);
		goto out;
	}
	if (c->assistant_only) {
		if (want_spans)
			te_mask_from_spans(full, full_len, t.starts, t.ends, t.n, spans, n_spans, m);
		else if ((rc = mask_by_prefix_diff(x, full, full_len, &t, m)) < 0 || x->r->skip)
			goto out;
	} else {
		memset(m, 1, t.n);
	}
	if (c->completion_only && n_prompt_msgs) {
		/* conversational prompt/completion: the prompt is rendered with the generation
		 * prompt, as TRL does, and everything after it is the completion */
		char *P = NULL;
		size_t pl = 0;
		if (render(x, n_prompt_msgs, 1, 0, &P, &pl, NULL, NULL, &e) < 0) {
			rc = render_fail(x, &e);
			goto out;
		}
		if (pl > full_len || memcmp(P, full, pl)) {
			free(P);
			rc = rec_fail(x, TE_SKIP_TEMPLATE,
				  "the rendered prompt is not a prefix of the rendered prompt+completion");
			goto out;
		}
		toks pt = {0};
		rc = tokenize(x, P, pl, 0, &pt);
		free(P);
		if (rc) {
			toks_free(&pt);
			rc = rc < 0 ? -1 : 0;
			goto out;
		}
		uint8_t *cm = malloc(t.n ? t.n : 1);
		if (!cm) {
			toks_free(&pt);
			rc = oom(x);
			goto out;
		}
		mask_completion(&t, &pt, pl, cm);
		for (size_t k = 0; k < t.n; k++)
			m[k] &= cm[k];
		free(cm);
		toks_free(&pt);
	}
	/* EOS: "auto" adds it only where the template leaves the final assistant turn
	 * without a special end-of-turn token */
	const char *last_role = msg_role(x, nmsg - 1);
	long last_tok = -1;
	for (size_t k = t.n; k-- > 0;)
		if (t.ends[k] <= t.starts[k] || !all_ws(full + t.starts[k], t.ends[k] - t.starts[k])) {
			last_tok = (long)k;
			break;
		}
	int add = 0;
	if (c->eos_id >= 0 && !last_is_eos(c, t.ids, t.n)) {
		if (c->eos_mode == TE_EOS_YES)
			add = 1;
		else if (c->eos_mode == TE_EOS_AUTO)
			add = last_role && !strcmp(last_role, "assistant") &&
			      (last_tok < 0 || !t.special[last_tok]);
	}
	*ids = t.ids;
	t.ids = NULL;
	*mask = m;
	*n = t.n;
	m = NULL;
	if (add) {
		uint8_t em = last_tok >= 0 ? (*mask)[last_tok] : 1;
		rc = append_token(x, ids, mask, n, (uint32_t)c->eos_id, em);
	}
out:
	free(m);
	free(full);
	free(spans);
	toks_free(&t);
	return rc;
}

static int encode_text(rec_ctx *x, const char *prompt, size_t plen, const char *text, size_t len,
		       uint32_t **ids, uint8_t **mask, size_t *n)
{
	const te_config *c = x->c;
	toks t = {0}, pt = {0};
	int rc = tokenize(x, text, len, 1, &t);
	uint8_t *m = NULL;
	if (rc)
		goto out;
	m = malloc(t.n ? t.n : 1);
	if (!m) {
		rc = oom(x);
		goto out;
	}
	if (prompt && (c->completion_only || c->assistant_only)) {
		if ((rc = tokenize(x, prompt, plen, 1, &pt)))
			goto out;
		mask_completion(&t, &pt, plen, m);
	} else {
		memset(m, 1, t.n);
	}
	*ids = t.ids;
	*mask = m;
	*n = t.n;
	t.ids = NULL;
	m = NULL;
	if (c->eos_mode != TE_EOS_NO && c->eos_id >= 0 && !last_is_eos(c, *ids, *n))
		rc = append_token(x, ids, mask, n, (uint32_t)c->eos_id, 1);
out:
	free(m);
	toks_free(&t);
	toks_free(&pt);
	return rc < 0 ? -1 : 0;
}

/* ---- --show ---- */

/* the text grows in libcommon's json_buf (a plain growable byte buffer here) */
static int sb_str(json_buf *b, const char *s) { return json_buf_put(b, s, strlen(s)); }

/* The decoded text of every run of equally-masked tokens. Decoding ids[:k] for each run
 * boundary k and taking differences keeps characters split across tokens and
 * SentencePiece's leading spaces intact; if a decoded prefix is not a prefix of the next
 * (a decoder that strips), each run is decoded on its own instead. */
static int build_show(rec_ctx *x, const uint32_t *ids, const uint8_t *mask, size_t n)
{
	const te_config *c = x->c;
	te_result *r = x->r;
	size_t trained = 0;
	for (size_t k = 0; k < n; k++)
		trained += mask[k];
	json_buf b = {0};
	char *prev = NULL;
	size_t prev_len = 0;
	char head[256];
	if (r->truncated)
		snprintf(head, sizeof head, "### %s:%ld: %zu tokens (truncated from %zu), %zu trained\n", x->name,
			 x->lineno, n, r->n_before_trunc, trained);
	else
		snprintf(head, sizeof head, "### %s:%ld: %zu tokens, %zu trained\n", x->name, x->lineno, n,
			 trained);
	if (sb_str(&b, head) < 0)
		goto nomem;
	const char *on = c->color ? "\033[1;32m" : "[[";
	const char *off = c->color ? "\033[0m" : "]]";
	int prefix_ok = 1;
	size_t run_start = 0;
	sft_error e = {0};
	while (run_start < n) {
		size_t run_end = run_start;
		while (run_end < n && mask[run_end] == mask[run_start])
			run_end++;
		char *cur = NULL, *piece;
		size_t cur_len = 0, piece_len;
		if (prefix_ok) {
			if (tokenizer_decode(c->tok, ids, run_end, 0, &cur, &cur_len, &e) < 0)
				goto decode_err;
			if (cur_len >= prev_len && (!prev_len || !memcmp(cur, prev, prev_len))) {
				piece = cur + prev_len;
				piece_len = cur_len - prev_len;
			} else {
				prefix_ok = 0;
				free(cur);
				cur = NULL;
			}
		}
		if (!prefix_ok) {
			if (tokenizer_decode(c->tok, ids + run_start, run_end - run_start, 0, &cur, &cur_len, &e) < 0)
				goto decode_err;
			piece = cur;
			piece_len = cur_len;
		}
		int hl = mask[run_start] != 0;
		if ((hl && sb_str(&b, on) < 0) || json_buf_put(&b, piece, piece_len) < 0 || (hl && sb_str(&b, off) < 0)) {
			free(cur);
			goto nomem;
		}
		free(prev);
		prev = cur;
		prev_len = cur_len;
		run_start = run_end;
	}
	free(prev);
	if (b.buf[b.len - 1] != '\n' && json_buf_put(&b, "\n", 1) < 0)
		goto nomem;
	r->show = b.buf;
	r->show_len = b.len;
	return 0;
decode_err:
	free(prev);
	free(b.buf);
	r->err = e;
	return -1;
nomem:
	free(prev);
	free(b.buf);
	return oom(x);
}

/* ---- entry point ---- */

static int classify_and_encode(rec_ctx *x, json_t *rec, uint32_t **ids, uint8_t **mask, size_t *n)
{
	const te_config *c = x->c;
	te_result *r = x->r;
	json_t *messages = json_object_get(rec, "messages");
	json_t *prompt = json_object_get(rec, "prompt");
	json_t *completion = json_object_get(rec, "completion");
	x->tools = json_object_get(rec, "tools");
	if (x->tools && json_is_null(x->tools))
		x->tools = NULL;
	x->kwargs = json_object_get(rec, "chat_template_kwargs");
	if (x->kwargs && !json_is_object(x->kwargs))
		return rec_fail(x, TE_SKIP_BAD_RECORD, "\"chat_template_kwargs\" is not an object");
	if (messages) {
		if (!json_is_array(messages))
			return rec_fail(x, TE_SKIP_BAD_RECORD, "\"messages\" is not an array");
		json_t *parts[1] = {messages};
		const char *names[1] = {"messages"};
		if (build_messages(x, parts, names, 1) < 0 || r->skip)
			return r->skip ? 0 : -1;
		return encode_chat(x, 0, ids, mask, n);
	}
	if (prompt || completion) {
		if (!prompt || !completion)
			return rec_fail(x, TE_SKIP_BAD_RECORD, "\"%s\" without \"%s\"", prompt ? "prompt" : "completion",
				    prompt ? "completion" : "prompt");
		if (json_is_array(prompt) && json_is_array(completion)) {
			json_t *parts[2] = {prompt, completion};
			const char *names[2] = {"prompt", "completion"};
			if (build_messages(x, parts, names, 2) < 0 || r->skip)
				return r->skip ? 0 : -1;
			if (!json_array_size(prompt))
				return rec_fail(x, TE_SKIP_BAD_RECORD, "\"prompt\" is an empty conversation");
			return encode_chat(x, json_array_size(prompt), ids, mask, n);
		}
		if (json_is_string(prompt) && json_is_string(completion)) {
			size_t pl = json_string_length(prompt), cl = json_string_length(completion);
			char *both = malloc(pl + cl + 1);
			if (!both)
				return oom(x);
			memcpy(both, json_string_value(prompt), pl);
			memcpy(both + pl, json_string_value(completion), cl);
			both[pl + cl] = '\0';
			int rc = encode_text(x, json_string_value(prompt), pl, both, pl + cl, ids, mask, n);
			free(both);
			return rc;
		}
		return rec_fail(x, TE_SKIP_BAD_RECORD,
			    "\"prompt\" and \"completion\" must both be strings or both be message lists");
	}
	json_t *text = json_object_get(rec, c->text_field);
	if (text) {
		if (!json_is_string(text))
			return rec_fail(x, TE_SKIP_BAD_RECORD, "\"%s\" is not a string", c->text_field);
		if (c->assistant_only)
			return rec_fail(x, TE_SKIP_EMPTY_MASK,
				    "text record has no assistant turn to train on (--assistant-only)");
		return encode_text(x, NULL, 0, json_string_value(text), json_string_length(text), ids, mask, n);
	}
	return rec_fail(x, TE_SKIP_BAD_RECORD, "record has no \"messages\", \"prompt\"/\"completion\" or \"%s\" field",
		    c->text_field);
}

int te_encode_record(const te_config *c, const char *line, size_t len, const char *name,
		     long lineno, te_result *r)
{
	memset(r, 0, sizeof *r);
	rec_ctx x = {.c = c, .name = name, .lineno = lineno, .r = r};
	sft_error e = {0};
	json_t *rec = json_parse_located(line, len, name, lineno, 0, &e);
	if (!rec) {
		r->skip = TE_SKIP_BAD_JSON;
		r->err = e;
		return 0;
	}
	uint32_t *ids = NULL;
	uint8_t *mask = NULL;
	size_t n = 0;
	int rc = classify_and_encode(&x, rec, &ids, &mask, &n);
	json_decref(x.msgs);
	json_decref(rec);
	if (rc < 0 || r->skip) {
		free(ids);
		free(mask);
		return rc < 0 ? -1 : 0;
	}
	size_t trained = 0;
	for (size_t k = 0; k < n; k++)
		trained += mask[k];
	if (!trained) {
		free(ids);
		free(mask);
		if (!n)
			return rec_fail(&x, TE_SKIP_EMPTY_MASK, "record encodes to no tokens");
		return rec_fail(&x, TE_SKIP_EMPTY_MASK, "no token is trained (%zu tokens, all masked%s)", n,
			    c->assistant_only ? ": no assistant turn" : "");
	}
	r->n_before_trunc = n;
	if (te_truncate(ids, mask, &n, c->max_length, c->truncation)) {
		free(ids);
		free(mask);
		r->skip = TE_SKIP_TOO_LONG;
		sft_error_set(&r->err, SFT_EXIT_DATA, "%s:%ld: %zu tokens, longer than --max-length %zu", name,
			      lineno, r->n_before_trunc, c->max_length);
		return 0;
	}
	r->truncated = n < r->n_before_trunc;
	if (r->truncated) {
		trained = 0;
		for (size_t k = 0; k < n; k++)
			trained += mask[k];
		if (!trained) {
			free(ids);
			free(mask);
			return rec_fail(&x, TE_SKIP_EMPTY_MASK,
				    "no token is trained after truncation to %zu of %zu tokens", n,
				    r->n_before_trunc);
		}
	}
	r->ids = ids;
	r->mask = mask;
	r->n = n;
	if (c->show && build_show(&x, ids, mask, n) < 0)
		return -1;
	return 0;
}
