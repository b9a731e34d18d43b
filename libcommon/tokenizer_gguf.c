/* tokenizer_gguf.c - builds a tokenizer from GGUF tokenizer.ggml.* metadata.
 *
 * The result mirrors what transformers' GGUF conversion (integrations/gguf/
 * gguf_tokenizer_mapping.py) builds, so a GGUF file and the tokenizer.json converted
 * from it encode identically:
 *   gpt2  -> byte-level BPE; vocab entries outside the byte alphabet are respelled; the
 *            tokenizer.ggml.pre name picks the split regex (llama-bpe, qwen2, ...);
 *            "smollm" gets SmolLM's real pre-tokenizer (Digits(individual) + ByteLevel).
 *   llama -> SentencePiece-style BPE with byte fallback; merges from the file or
 *            recovered from the scores (generate_merges); Prepend("▁") (when
 *            add_space_prefix, default true) + Replace(" ", "▁") normalizers, as Llama 2's
 *            and Phi-3's tokenizer.json and llama.cpp (transformers' conversion uses a
 *            Metaspace(first) pre-tokenizer instead, which differs on leading spaces);
 *            gemma* use Replace + Split(" ").
 * Also beyond transformers, following the real tokenizers and llama.cpp: ignore_merges
 * for the Llama 3 family; Digits(individual) + ByteLevel for smollm, starcoder, refact.
 *   gemma4 -> as gemma.
 * CONTROL tokens become special added tokens, USER_DEFINED ones plain added tokens. */
#include "tokenizer_int.h"
#include "gguf.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static int byte_alphabet(uint32_t c)
{
	if ((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))
		return 1;
	return c >= 256 && c < 256 + 68;
}

/* decodes UTF-8 (possibly invalid: then returns 0) */
static int next_cp(const char *s, size_t n, size_t *i, uint32_t *cp)
{
	const unsigned char *u = (const unsigned char *)s + *i;
	size_t left = n - *i;
	unsigned c = u[0];
	size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
	if (!l || l > left)
		return 0;
	uint32_t v = l == 1 ? c : l == 2 ? (c & 0x1F) : l == 3 ? (c & 0x0F) : (c & 0x07);
	for (size_t k = 1; k < l; k++) {
		if ((u[k] & 0xC0) != 0x80)
			return 0;
		v = (v << 6) | (u[k] & 0x3F);
	}
	*cp = v;
	*i += l;
	return 1;
}

static uint32_t b2u_map[256];
static pthread_once_t b2u_once = PTHREAD_ONCE_INIT;
static void b2u_init(void)
{
	int n = 0;
	for (int x = 0; x < 256; x++) {
		int keep = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF);
		b2u_map[x] = keep ? (uint32_t)x : (uint32_t)(256 + n++);
	}
}

static uint32_t b2u(unsigned b)
{
	pthread_once(&b2u_once, b2u_init);
	return b2u_map[b];
}

static int all_in_alphabet(const char *s, size_t n)
{
	size_t i = 0;
	uint32_t c;
	while (i < n) {
		if (!next_cp(s, n, &i, &c) || !byte_alphabet(c))
			return 0;
	}
	return 1;
}

typedef struct gmerge { uint32_t l, r; float score; uint32_t ll, lr; uint32_t tok; } gmerge;

static int gmerge_cmp(const void *a, const void *b)
{
	const gmerge *x = a, *y = b;
	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	if (x->ll != y->ll)
		return x->ll > y->ll ? -1 : 1;
	if (x->lr != y->lr)
		return x->lr > y->lr ? -1 : 1;
	if (x->tok != y->tok)
		return x->tok < y->tok ? -1 : 1;
	if (x->l != y->l)
		return x->l < y->l ? -1 : 1;
	return x->r < y->r ? -1 : x->r > y->r;
}

/* transformers' generate_merges(vocab, vocab_scores): every split of every token whose two
 * halves are tokens, best score first, then longer left, then longer right. */
static int generate_merges(tokenizer *t, const float *scores, uint32_t n, sft_error *err)
{
	size_t cap = 1024, cnt = 0;
	gmerge *m = malloc(cap * sizeof *m);
	if (!m)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	for (uint32_t id = 0; id < n; id++) {
		const char *s = t->model_str[id];
		if (!s)
			continue;
		/* the dict comprehension keeps the last id of a duplicated token */
		if (tok_model_lookup(t, s, t->model_len[id]) != (int64_t)id)
			continue;
		size_t len = t->model_len[id], i = 0, nch = 0;
		uint32_t c;
		size_t pos[1024];
		while (i < len && nch < 1024) {
			pos[nch++] = i;
			if (!next_cp(s, len, &i, &c))
				break;
		}
		if (i != len)
			continue;
		size_t first = cnt;
		for (size_t k = 1; k < nch; k++) {
			int64_t l = tok_model_lookup(t, s, pos[k]), r = tok_model_lookup(t, s + pos[k], len - pos[k]);
			if (l < 0 || r < 0)
				continue;
			if (cnt == cap) {
				gmerge *nm = realloc(m, cap * 2 * sizeof *nm);
				if (!nm) {
					free(m);
					return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
				}
				m = nm;
				cap *= 2;
			}
			m[cnt++] = (gmerge){ (uint32_t)l, (uint32_t)r, scores[id], (uint32_t)k, (uint32_t)(nch - k), id };
		}
		(void)first;
	}
	qsort(m, cnt, sizeof *m, gmerge_cmp);
	if (tok_merges_alloc(t, cnt) < 0) {
		free(m);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	for (size_t i = 0; i < cnt; i++)
		if (tok_add_merge(t, m[i].l, m[i].r, (uint32_t)i, err) < 0) {
			free(m);
			return -1;
		}
	free(m);
	return 0;
}

static char *gstrdup(gguf_str s) { return tok_strndup(s.s, (size_t)s.n); }

static int add_pre(tokenizer *t, pre_op op, sft_error *err)
{
	pre_op *np = realloc(t->pres, (t->n_pres + 1) * sizeof *np);
	if (!np)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	t->pres = np;
	t->pres[t->n_pres++] = op;
	return 0;
}

static int add_norm(tokenizer *t, int type, const char *pat, const char *content, sft_error *err)
{
	norm_op *nn = realloc(t->norms, (t->n_norms + 1) * sizeof *nn);
	if (!nn)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	t->norms = nn;
	norm_op *o = &t->norms[t->n_norms++];
	memset(o, 0, sizeof *o);
	o->type = type;
	o->re = -1;
	if (pat) {
		o->pat = tok_strndup(pat, strlen(pat));
		o->pat_len = strlen(pat);
	}
	if (content) {
		o->content = tok_strndup(content, strlen(content));
		o->content_len = strlen(content);
	}
	return 0;
}

static int add_dec(tokenizer *t, int type, const char *pat, const char *content, uint32_t cp, int start,
                   sft_error *err)
{
	dec_op *nd = realloc(t->decs, (t->n_decs + 1) * sizeof *nd);
	if (!nd)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	t->decs = nd;
	dec_op *d = &t->decs[t->n_decs++];
	memset(d, 0, sizeof *d);
	d->type = type;
	if (pat) {
		d->pat = tok_strndup(pat, strlen(pat));
		d->pat_len = strlen(pat);
	}
	if (content) {
		d->content = tok_strndup(content, strlen(content));
		d->content_len = strlen(content);
	}
	d->cp = cp;
	d->start = start;
	t->have_decoder = 1;
	return 0;
}

static const char *split_regex_for(const char *pre)
{
	static const char *const l3[] = { "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
		                          "midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe", NULL };
	static const char *const q2[] = { "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", NULL };
	for (int i = 0; l3[i]; i++)
		if (!strcmp(pre, l3[i]))
			return TOK_RE_LLAMA3;
	for (int i = 0; q2[i]; i++)
		if (!strcmp(pre, q2[i]))
			return TOK_RE_QWEN2;
	if (!strcmp(pre, "qwen35"))
		return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
	if (!strcmp(pre, "tekken"))
		return "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
		       "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
		       "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
	if (!strcmp(pre, "gpt-4o") || !strcmp(pre, "llama4") || !strcmp(pre, "kanana2") || !strcmp(pre, "talkie") ||
	    !strcmp(pre, "minimax-m2"))
		return "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
		       "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
		       "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
	return NULL;
}

static char *id_str(tokenizer *t, uint64_t id)
{
	if (id >= t->n_ids || id >= t->model_cap || !t->model_str[id])
		return NULL;
	return tok_strndup(t->model_str[id], t->model_len[id]);
}

static tokenizer *build(const gguf_file *g, sft_error *err)
{
	gguf_str model, arch = { "", 0 }, pre = { "default", 7 };
	if (gguf_get_str(g, "tokenizer.ggml.model", &model) < 0) {
		sft_error_set(err, SFT_EXIT_DATA, "no tokenizer.ggml.model string in the GGUF metadata");
		return NULL;
	}
	gguf_get_str(g, "general.architecture", &arch);
	gguf_get_str(g, "tokenizer.ggml.pre", &pre);
	char *m = gstrdup(model), *a = gstrdup(arch), *p = gstrdup(pre);
	tokenizer *t = tok_new();
	float *scores = NULL;
	if (!m || !a || !p || !t) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		goto fail;
	}
	int gpt2 = !strcmp(m, "gpt2"), llama = !strcmp(m, "llama"), gemma4 = !strcmp(m, "gemma4");
	if (!gpt2 && !llama && !gemma4) {
		sft_error_set(err, SFT_EXIT_DATA, "unsupported GGUF tokenizer model '%s' (supported: gpt2, llama, gemma4)", m);
		goto fail;
	}
	int gemma = gemma4 || (llama && (!strcmp(a, "gemma") || !strcmp(a, "gemma2") || !strcmp(a, "gemma3")));
	const gguf_kv *toks = gguf_find(g, "tokenizer.ggml.tokens");
	if (!toks || toks->type != GGUF_ARRAY || toks->arr_type != GGUF_STRING || toks->arr_n == 0 ||
	    toks->arr_n >= (1u << 24)) {
		sft_error_set(err, SFT_EXIT_DATA, "tokenizer.ggml.tokens is missing or not a string array");
		goto fail;
	}
	uint32_t n = (uint32_t)toks->arr_n;
	const gguf_kv *types = gguf_find(g, "tokenizer.ggml.token_type");
	if (types && (types->type != GGUF_ARRAY || types->arr_n != n || !gguf_type_size(types->arr_type)))
		types = NULL;
	const gguf_kv *sc = gguf_find(g, "tokenizer.ggml.scores");
	if (sc && (sc->type != GGUF_ARRAY || sc->arr_n != n || !gguf_type_size(sc->arr_type)))
		sc = NULL;
	const gguf_kv *merges = gguf_find(g, "tokenizer.ggml.merges");
	if (merges && (merges->type != GGUF_ARRAY || merges->arr_type != GGUF_STRING))
		merges = NULL;

	/* vocab */
	for (uint32_t id = 0; id < n; id++) {
		gguf_str s;
		gguf_arr_str(toks, id, &s);
		if (gpt2 && !all_in_alphabet(s.s, (size_t)s.n)) {
			char *buf = malloc((size_t)s.n * 2 + 1);
			if (!buf) {
				sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
				goto fail;
			}
			size_t o = 0;
			for (uint64_t k = 0; k < s.n; k++)
				o += utf8_encode(b2u((unsigned char)s.s[k]), buf + o);
			int rc = tok_set_token(t, id, buf, o);
			free(buf);
			if (rc < 0) {
				sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
				goto fail;
			}
			continue;
		}
		if (gemma && !gemma4 && s.n > 0) {
			int spaces = 1, has = 0;
			for (uint64_t k = 0; k < s.n; k++) {
				char c = s.s[k];
				if (c == ' ')
					has = 1;
				else if (!(c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'))
					spaces = 0;
			}
			if (spaces && has) {
				char *buf = malloc((size_t)s.n * 3 + 1);
				if (!buf) {
					sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
					goto fail;
				}
				for (uint64_t k = 0; k < s.n; k++)
					memcpy(buf + 3 * k, "\xE2\x96\x81", 3);
				int rc = tok_set_token(t, id, buf, (size_t)s.n * 3);
				free(buf);
				if (rc < 0) {
					sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
					goto fail;
				}
				continue;
			}
		}
		if (tok_set_token(t, id, s.s, (size_t)s.n) < 0) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			goto fail;
		}
	}
	if (tok_finish_vocab(t, err) < 0)
		goto fail;

	/* merges */
	if (merges) {
		if (tok_merges_alloc(t, (size_t)merges->arr_n) < 0) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			goto fail;
		}
		uint32_t rank = 0;
		for (uint64_t i = 0; i < merges->arr_n; i++) {
			gguf_str s;
			gguf_arr_str(merges, i, &s);
			const char *sp = memchr(s.s, ' ', (size_t)s.n);
			if (!sp || memchr(sp + 1, ' ', (size_t)(s.s + s.n - sp - 1))) {
				sft_error_set(err, SFT_EXIT_DATA, "tokenizer.ggml.merges[%llu] is not two tokens",
				              (unsigned long long)i);
				goto fail;
			}
			int64_t l = tok_model_lookup(t, s.s, (size_t)(sp - s.s));
			int64_t r = tok_model_lookup(t, sp + 1, (size_t)(s.s + s.n - sp - 1));
			if (l < 0 || r < 0) {
				sft_error_set(err, SFT_EXIT_DATA, "tokenizer.ggml.merges[%llu] refers to a token not in the vocab",
				              (unsigned long long)i);
				goto fail;
			}
			if (tok_add_merge(t, (uint32_t)l, (uint32_t)r, rank++, err) < 0)
				goto fail;
		}
	} else if (!gpt2) {
		scores = malloc((size_t)n * sizeof *scores);
		if (!scores) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			goto fail;
		}
		for (uint32_t i = 0; i < n; i++) {
			double v = sc ? gguf_arr_f64(sc, i) : 0.0;
			if (!(v >= -3.0e38 && v <= 3.0e38)) /* NaN or beyond float: no valid score */
				v = v > 0 ? 3.0e38 : -3.0e38;
			scores[i] = gemma ? -(float)i : (float)v;
		}
		if (!gemma && !sc) {
			sft_error_set(err, SFT_EXIT_DATA, "SentencePiece GGUF without tokenizer.ggml.scores or merges");
			goto fail;
		}
		if (generate_merges(t, scores, n, err) < 0)
			goto fail;
	} else {
		sft_error_set(err, SFT_EXIT_DATA, "gpt2 GGUF tokenizer without tokenizer.ggml.merges");
		goto fail;
	}

	/* model options and pipeline */
	if (gpt2) {
		const char *re = split_regex_for(p);
		if (re) {
			pre_op s = { 0 };
			s.type = PRE_SPLIT;
			s.behavior = BEH_ISOLATED;
			s.re = tok_add_regex(t, re, err);
			s.fast = tok_fast_ready() ? tok_fast_id(re) : 0;
			if (s.re < 0 || add_pre(t, s, err) < 0)
				goto fail;
			pre_op b = { 0 };
			b.type = PRE_BYTELEVEL;
			b.re = -1;
			if (add_pre(t, b, err) < 0)
				goto fail;
		} else {
			if (!strcmp(p, "smollm") || !strcmp(p, "starcoder") || !strcmp(p, "refact")) {
				pre_op d = { 0 };
				d.type = PRE_DIGITS;
				d.individual_digits = 1;
				d.re = -1;
				if (add_pre(t, d, err) < 0)
					goto fail;
			}
			pre_op b = { 0 };
			b.type = PRE_BYTELEVEL;
			b.re = tok_add_regex(t, TOK_RE_GPT2, err);
			b.fast = tok_fast_ready() ? 1 : 0;
			if (b.re < 0 || add_pre(t, b, err) < 0)
				goto fail;
		}
		if (add_dec(t, DEC_BYTELEVEL, NULL, NULL, 0, 0, err) < 0)
			goto fail;
		/* Llama 3's tokenizer.json sets ignore_merges (so does llama.cpp for these) */
		static const char *const ign[] = { "llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "tekken", NULL };
		for (int k = 0; ign[k]; k++)
			if (!strcmp(p, ign[k]))
				t->ignore_merges = 1;
	} else {
		t->byte_fallback = 1;
		t->fuse_unk = 1;
		if (gemma) {
			int64_t unk = tok_model_lookup(t, "<unk>", 5);
			t->unk_id = unk;
			if (add_norm(t, NORM_REPLACE, " ", "\xE2\x96\x81", err) < 0)
				goto fail;
			pre_op s = { 0 };
			s.type = PRE_SPLIT;
			s.behavior = BEH_MERGED_PREV;
			s.re = tok_add_regex(t, "\\x20", err);
			if (s.re < 0 || add_pre(t, s, err) < 0)
				goto fail;
		} else {
			/* Llama 2 / Mistral / Phi-3: the "legacy" SentencePiece normalizers of their
			 * tokenizer.json (and llama.cpp): every segment gets a "▁" prefix, as
			 * tokenizer.ggml.add_space_prefix (default true) says */
			int asp = 1;
			gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &asp);
			if ((asp && add_norm(t, NORM_PREPEND, NULL, "\xE2\x96\x81", err) < 0) ||
			    add_norm(t, NORM_REPLACE, " ", "\xE2\x96\x81", err) < 0)
				goto fail;
		}
		if (add_dec(t, DEC_REPLACE, "\xE2\x96\x81", " ", 0, 0, err) < 0 ||
		    add_dec(t, DEC_BYTEFALLBACK, NULL, NULL, 0, 0, err) < 0 || add_dec(t, DEC_FUSE, NULL, NULL, 0, 0, err) < 0)
			goto fail;
		if (!gemma && add_dec(t, DEC_STRIP, NULL, NULL, ' ', 1, err) < 0)
			goto fail;
	}

	/* added tokens: CONTROL -> special, USER_DEFINED -> plain; plus the defaults the
	 * transformers tokenizer classes register as special tokens */
	for (uint32_t id = 0; id < n; id++) {
		int64_t ty = types ? gguf_arr_i64(types, id) : TT_NORMAL;
		const char *s = t->model_str[id];
		if (!s)
			continue;
		size_t len = t->model_len[id];
		if (ty == TT_CONTROL) {
			gguf_str raw;
			gguf_arr_str(toks, id, &raw);
			if (gpt2 && !all_in_alphabet(raw.s, (size_t)raw.n))
				continue;
			int64_t vid = tok_model_lookup(t, s, len);
			if (tok_add_added(t, (uint32_t)vid, s, len, 1, 0, 0, 0, 0) < 0) {
				sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
				goto fail;
			}
		}
	}
	{
		static const char *const llama_def[] = { "<unk>", "<s>", "</s>", NULL };
		static const char *const gemma_def[] = { "<pad>", "<eos>", "<bos>", "<unk>", "<mask>", NULL };
		static const char *const gpt2_def[] = { "<|endoftext|>", NULL };
		const char *const *defs = gpt2 ? gpt2_def : gemma ? gemma_def : llama_def;
		for (int k = 0; defs[k]; k++) {
			int64_t vid = tok_model_lookup(t, defs[k], strlen(defs[k]));
			if (vid < 0)
				continue;
			int dup = 0;
			for (size_t j = 0; j < t->n_added; j++)
				if (t->added[j].id == (uint32_t)vid)
					dup = 1;
			if (!dup && tok_add_added(t, (uint32_t)vid, defs[k], strlen(defs[k]), 1, 0, 0, 0, 0) < 0) {
				sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
				goto fail;
			}
		}
	}
	for (uint32_t id = 0; id < n; id++) {
		int64_t ty = types ? gguf_arr_i64(types, id) : TT_NORMAL;
		if (ty != TT_USER || !t->model_str[id])
			continue;
		const char *s = t->model_str[id];
		size_t len = t->model_len[id];
		int64_t vid = tok_model_lookup(t, s, len);
		int dup = 0;
		for (size_t j = 0; j < t->n_added; j++)
			if (t->added[j].len == len && !memcmp(t->added[j].content, s, len))
				dup = 1;
		if (!dup && tok_add_added(t, (uint32_t)vid, s, len, 0, 0, 0, 0, 0) < 0) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			goto fail;
		}
	}

	/* special tokens and BOS/EOS policy */
	uint64_t v;
	if (gguf_get_u64(g, "tokenizer.ggml.bos_token_id", &v) == 0)
		t->bos = id_str(t, v);
	if (gguf_get_u64(g, "tokenizer.ggml.eos_token_id", &v) == 0)
		t->eos = id_str(t, v);
	if (gguf_get_u64(g, "tokenizer.ggml.padding_token_id", &v) == 0)
		t->pad = id_str(t, v);
	if (gguf_get_u64(g, "tokenizer.ggml.unknown_token_id", &v) == 0)
		t->unk = id_str(t, v);
	int add_bos = llama, add_eos = 0, b;
	if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) == 0)
		add_bos = b;
	if (gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b) == 0)
		add_eos = b;
	if (gemma4)
		add_bos = 0; /* the chat template writes <bos> itself (transformers follows the reference) */
	if (add_bos && gguf_get_u64(g, "tokenizer.ggml.bos_token_id", &v) == 0 && v < n) {
		t->pre_ids = malloc(sizeof *t->pre_ids);
		if (!t->pre_ids) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			goto fail;
		}
		t->pre_ids[0] = (uint32_t)v;
		t->n_pre_ids = 1;
	}
	if (add_eos && gguf_get_u64(g, "tokenizer.ggml.eos_token_id", &v) == 0 && v < n) {
		t->post_ids = malloc(sizeof *t->post_ids);
		if (!t->post_ids) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			goto fail;
		}
		t->post_ids[0] = (uint32_t)v;
		t->n_post_ids = 1;
	}
	t->add_bos = t->n_pre_ids > 0;
	t->add_eos = t->n_post_ids > 0;
	gguf_str ct;
	if (gguf_get_str(g, "tokenizer.chat_template", &ct) == 0)
		t->chat_template = gstrdup(ct);
	if (tok_finalize(t, err) < 0)
		goto fail;

	/* fingerprint: every tokenizer.* KV record as stored, then the chat template */
	XXH3_state_t *xs = XXH3_createState();
	if (xs) {
		XXH3_128bits_reset(xs);
		for (uint64_t i = 0; i < g->n_kv; i++) {
			const gguf_kv *kv = &g->kv[i];
			if (kv->key.n >= 10 && !memcmp(kv->key.s, "tokenizer.", 10))
				XXH3_128bits_update(xs, g->base + kv->offset, (size_t)kv->size);
		}
		if (t->chat_template)
			XXH3_128bits_update(xs, t->chat_template, strlen(t->chat_template));
		XXH128_canonical_t c;
		XXH128_canonicalFromHash(&c, XXH3_128bits_digest(xs));
		memcpy(t->fp, c.digest, 16);
		XXH3_freeState(xs);
	}
	free(m);
	free(a);
	free(p);
	free(scores);
	return t;
fail:
	free(m);
	free(a);
	free(p);
	free(scores);
	tokenizer_free(t);
	return NULL;
}

tokenizer *tokenizer_from_gguf(const gguf_file *g, sft_error *err)
{
	tokenizer *t = build(g, err);
	if (!t)
		sft_error_prefix(err, "%s", g->path ? g->path : "gguf");
	return t;
}

tokenizer *tokenizer_load_gguf(const char *path, sft_error *err)
{
	gguf_file *g = gguf_open(path, err);
	if (!g)
		return NULL;
	tokenizer *t = tokenizer_from_gguf(g, err);
	gguf_close(g);
	return t;
}
