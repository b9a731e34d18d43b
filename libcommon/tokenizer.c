/* tokenizer.c - Hugging Face tokenizer.json loader, encoder and decoder.
 *
 * Pipeline (mirrors tokenizers' TokenizerImpl::encode):
 *   input bytes -> invalid UTF-8 replaced by U+FFFD (Python "replace" semantics)
 *   -> split on non-normalized added tokens -> normalizer -> split on normalized added
 *   tokens -> pre-tokenizer pieces -> BPE model -> post-processor (template).
 * Every byte of the working buffer carries the [start, end) range of the original input
 * bytes it came from, so offsets survive normalization and byte-level mapping.
 * Per-thread state (scratch buffers, PCRE2 match data, word cache) hangs off a
 * pthread key, so one tokenizer is safe to share between threads. */
#include "gguf.h"
#include "tokenizer_int.h"
#include "utf8.h"

#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <utf8proc.h>
#include <xxhash.h>

const char *const TOK_RE_GPT2 =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char *const TOK_RE_LLAMA3 =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const TOK_RE_QWEN2 =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static atomic_uint tok_serial_counter = 1;

/* ------------------------------------------------------------------ utilities */

char *tok_strndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (!p)
		return NULL;
	if (n)
		memcpy(p, s, n);
	p[n] = 0;
	return p;
}

/* Decodes one UTF-8 char from valid UTF-8 (the working buffer is always valid). */
static inline uint32_t u8_dec(const unsigned char *s, size_t n, size_t *len)
{
	unsigned c = s[0];
	if (c < 0x80 || n < 2) {
		*len = 1;
		return c;
	}
	if (c < 0xE0) {
		*len = 2;
		return ((c & 0x1F) << 6) | (s[1] & 0x3F);
	}
	if (c < 0xF0 || n < 4) {
		*len = n < 3 ? n : 3;
		if (n < 3)
			return 0xFFFD;
		return ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
	}
	*len = 4;
	return ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

static inline size_t u8_len(unsigned char c)
{
	return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 and *bad = length of the maximal
 * invalid subpart to replace with one U+FFFD (Unicode / Python "replace" semantics). */
static size_t u8_valid(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned c = s[0];
	size_t need;
	unsigned lo = 0x80, hi = 0xBF;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		need = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		*bad = 1;
		return 0;
	}
	size_t i = 1;
	for (; i < need; i++) {
		if (i >= n) {
			*bad = i;
			return 0;
		}
		unsigned b = s[i];
		unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
		if (b < l || b > h) {
			*bad = i;
			return 0;
		}
	}
	return need;
}

static int is_ws(uint32_t c) /* Rust char::is_whitespace */
{
	return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
	       c == 0x205F || c == 0x3000;
}

static int is_numeric(uint32_t c)
{
	if (c < 0x80)
		return c >= '0' && c <= '9';
	utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
	return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

static int is_punc(uint32_t c)
{
	if (c < 0x80)
		return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
		       (c >= 123 && c <= 126);
	utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
	return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

static int is_word(uint32_t c) /* regex \w */
{
	if (c < 0x80)
		return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
	utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
	return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ME) || k == UTF8PROC_CATEGORY_ND ||
	       k == UTF8PROC_CATEGORY_PC || c == 0x200C || c == 0x200D;
}

/* GPT-2 bytes_to_unicode */
static uint32_t byte_to_cp[256];
static int16_t cp_to_byte[324]; /* code points < 324 */
static pthread_once_t bytemap_once = PTHREAD_ONCE_INIT;
static void bytemap_init(void)
{
	int n = 0;
	for (int i = 0; i < 324; i++)
		cp_to_byte[i] = -1;
	for (int b = 0; b < 256; b++) {
		int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
		byte_to_cp[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
		cp_to_byte[byte_to_cp[b]] = (int16_t)b;
	}
}

/* ------------------------------------------------------------------ hashes */

static inline uint64_t hash_str(const char *s, size_t n) { return XXH3_64bits(s, n); }

static int hash_init(tok_hash *h, size_t n)
{
	size_t cap = 16;
	while (cap < n * 2 + 2)
		cap <<= 1;
	h->slots = malloc(cap * sizeof *h->slots);
	if (!h->slots)
		return -1;
	memset(h->slots, 0xFF, cap * sizeof *h->slots);
	h->mask = cap - 1;
	return 0;
}

int64_t tok_model_lookup(const tokenizer *t, const char *s, size_t n)
{
	const tok_hash *h = &t->model_hash;
	if (!h->slots)
		return -1;
	uint64_t hv = hash_str(s, n), tag = hv & 0xFFFFFFFF00000000ULL;
	size_t i = hv & h->mask;
	for (;;) {
		uint64_t e = h->slots[i];
		if (e == UINT64_MAX)
			return -1;
		if ((e & 0xFFFFFFFF00000000ULL) == tag) {
			uint32_t id = (uint32_t)e;
			if (t->model_len[id] == n && memcmp(t->model_str[id], s, n) == 0)
				return id;
		}
		i = (i + 1) & h->mask;
	}
}

int tok_set_token(tokenizer *t, uint32_t id, const char *s, size_t n)
{
	if (id >= t->model_cap) {
		uint32_t nc = t->model_cap ? t->model_cap : 1024;
		while (nc <= id)
			nc *= 2;
		char **ns = realloc(t->model_str, nc * sizeof *ns);
		if (!ns)
			return -1;
		t->model_str = ns;
		uint32_t *nl = realloc(t->model_len, nc * sizeof *nl);
		if (!nl)
			return -1;
		t->model_len = nl;
		for (uint32_t i = t->model_cap; i < nc; i++)
			t->model_str[i] = NULL, t->model_len[i] = 0;
		t->model_cap = nc;
	}
	free(t->model_str[id]);
	t->model_str[id] = tok_strndup(s, n);
	if (!t->model_str[id])
		return -1;
	t->model_len[id] = (uint32_t)n;
	if (id + 1 > t->n_ids)
		t->n_ids = id + 1;
	return 0;
}

int tok_finish_vocab(tokenizer *t, sft_error *err)
{
	if (hash_init(&t->model_hash, t->n_ids) < 0)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	for (uint32_t id = 0; id < t->n_ids && id < t->model_cap; id++) {
		if (!t->model_str[id])
			continue;
		uint64_t hv = hash_str(t->model_str[id], t->model_len[id]), tag = hv & 0xFFFFFFFF00000000ULL;
		size_t i = hv & t->model_hash.mask;
		int dup = 0;
		while (t->model_hash.slots[i] != UINT64_MAX) {
			uint64_t e = t->model_hash.slots[i];
			uint32_t o = (uint32_t)e;
			if ((e & 0xFFFFFFFF00000000ULL) == tag && t->model_len[o] == t->model_len[id] &&
			    memcmp(t->model_str[o], t->model_str[id], t->model_len[id]) == 0) {
				dup = 1; /* a duplicated token maps to its last id, like a dict built in id order */
				t->model_hash.slots[i] = tag | id;
				break;
			}
			i = (i + 1) & t->model_hash.mask;
		}
		if (!dup)
			t->model_hash.slots[i] = tag | id;
	}
	return 0;
}

static inline uint64_t mix64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

int tok_merges_alloc(tokenizer *t, size_t n)
{
	size_t cap = 16;
	while (cap < n * 2 + 2)
		cap <<= 1;
	free(t->merges);
	t->merges = malloc(cap * sizeof *t->merges);
	if (!t->merges)
		return -1;
	for (size_t i = 0; i < cap; i++)
		t->merges[i].key = UINT64_MAX;
	t->merge_mask = cap - 1;
	return 0;
}

static inline const merge_ent *merge_find(const tokenizer *t, uint32_t a, uint32_t b)
{
	if (!t->merges)
		return NULL;
	uint64_t key = ((uint64_t)a << 32) | b;
	size_t i = mix64(key) & t->merge_mask;
	for (;;) {
		const merge_ent *e = &t->merges[i];
		if (e->key == key)
			return e;
		if (e->key == UINT64_MAX)
			return NULL;
		i = (i + 1) & t->merge_mask;
	}
}

int tok_add_merge(tokenizer *t, uint32_t a, uint32_t b, uint32_t rank, sft_error *err)
{
	if (a >= t->n_ids || b >= t->n_ids || !t->model_str[a] || !t->model_str[b])
		return sft_error_set(err, SFT_EXIT_DATA, "merge %u refers to an unknown token", rank);
	size_t la = t->model_len[a], lb = t->model_len[b];
	char stackbuf[256];
	char *buf = la + lb <= sizeof stackbuf ? stackbuf : malloc(la + lb);
	if (!buf)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	memcpy(buf, t->model_str[a], la);
	memcpy(buf + la, t->model_str[b], lb);
	int64_t nid = tok_model_lookup(t, buf, la + lb);
	if (buf != stackbuf)
		free(buf);
	if (nid < 0)
		return sft_error_set(err, SFT_EXIT_DATA, "merge %u: merged token '%s%s' is not in the vocabulary",
		                     rank, t->model_str[a], t->model_str[b]);
	uint64_t key = ((uint64_t)a << 32) | b;
	size_t i = mix64(key) & t->merge_mask;
	for (;;) {
		merge_ent *e = &t->merges[i];
		if (e->key == key)
			return 0; /* duplicate merge: the first (lowest rank) wins */
		if (e->key == UINT64_MAX) {
			e->key = key;
			e->rank = rank;
			e->new_id = (uint32_t)nid;
			return 0;
		}
		i = (i + 1) & t->merge_mask;
	}
}

int tok_add_regex(tokenizer *t, const char *pat, sft_error *err)
{
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof msg);
		return sft_error_set(err, SFT_EXIT_DATA, "regex '%s' at offset %zu: %s", pat, (size_t)eo, (char *)msg);
	}
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* failure: the interpreter is used */
	pcre2_code **nr = realloc(t->res, (t->n_res + 1) * sizeof *nr);
	if (!nr) {
		pcre2_code_free(re);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	t->res = nr;
	t->res[t->n_res] = re;
	return (int)t->n_res++;
}

static int tok_add_literal_regex(tokenizer *t, const char *s, size_t n, sft_error *err)
{
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)s, n, PCRE2_UTF | PCRE2_LITERAL, &ec, &eo, NULL);
	if (!re)
		return sft_error_set(err, SFT_EXIT_DATA, "bad split pattern");
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	pcre2_code **nr = realloc(t->res, (t->n_res + 1) * sizeof *nr);
	if (!nr) {
		pcre2_code_free(re);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	t->res = nr;
	t->res[t->n_res] = re;
	return (int)t->n_res++;
}

/* ------------------------------------------------------------------ tries */

static int trie_node_new(tok_trie *tr)
{
	if (tr->n == tr->cap) {
		size_t nc = tr->cap ? tr->cap * 2 : 64;
		trie_node *nn = realloc(tr->nodes, nc * sizeof *nn);
		if (!nn)
			return -1;
		tr->nodes = nn;
		tr->cap = nc;
	}
	memset(tr->nodes[tr->n].next, 0xFF, sizeof tr->nodes[tr->n].next);
	tr->nodes[tr->n].tok = -1;
	return (int)tr->n++;
}

static int trie_add(tok_trie *tr, const char *s, size_t n, int32_t tok)
{
	if (n == 0)
		return 0;
	if (tr->n == 0 && trie_node_new(tr) < 0)
		return -1;
	int32_t cur = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i == 0)
			tr->first[c] = 1;
		int32_t nx = tr->nodes[cur].next[c];
		if (nx < 0) {
			int nn = trie_node_new(tr);
			if (nn < 0)
				return -1;
			tr->nodes[cur].next[c] = nn;
			nx = nn;
		}
		cur = nx;
	}
	if (tr->nodes[cur].tok < 0)
		tr->nodes[cur].tok = tok;
	tr->empty = 0;
	return 0;
}

/* Leftmost-longest match in s[from..n): returns 1 and sets *ms, *me, *tok. */
static int trie_find(const tok_trie *tr, const char *s, size_t n, size_t from, size_t *ms, size_t *me, int32_t *tok)
{
	if (tr->n == 0)
		return 0;
	for (size_t i = from; i < n; i++) {
		if (!tr->first[(unsigned char)s[i]])
			continue;
		int32_t cur = 0, best = -1;
		size_t bend = 0;
		for (size_t j = i; j < n; j++) {
			cur = tr->nodes[cur].next[(unsigned char)s[j]];
			if (cur < 0)
				break;
			if (tr->nodes[cur].tok >= 0) {
				best = tr->nodes[cur].tok;
				bend = j + 1;
			}
		}
		if (best >= 0) {
			*ms = i;
			*me = bend;
			*tok = best;
			return 1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ thread state */

typedef struct wbuf { char *s; uint32_t *o, *e; size_t n, cap; } wbuf;
typedef struct span { uint32_t off, len; } span;
typedef struct spanvec { span *v; size_t n, cap; } spanvec;
typedef struct seg { uint32_t off, len; int32_t added; } seg;
typedef struct segvec { seg *v; size_t n, cap; } segvec;
typedef struct mspan { uint32_t s, e; int m; } mspan;

#define CACHE_BITS 14
#define CACHE_KEY 40
#define CACHE_TOK 12
typedef struct cache_ent {
	uint64_t h;
	uint8_t klen, ntok;
	char key[CACHE_KEY];
	uint32_t ids[CACHE_TOK];
	uint8_t st[CACHE_TOK], en[CACHE_TOK];
} cache_ent;

typedef struct sym { uint32_t id; int32_t prev, next; uint32_t st, en; int dead; } sym;
typedef struct hent { uint32_t rank, pos, new_id; } hent;

typedef struct outvec { uint32_t *ids; size_t *st, *en; size_t n, cap; int want_off; } outvec;

typedef struct tstate {
	const tokenizer *t;
	uint32_t serial;   /* t->serial when made: a pthread key can be reused by a later tokenizer */
	size_t n_md;
	wbuf w;
	spanvec pa, pb, pc;
	segvec sraw, snorm;
	mspan *m; size_t mn, mcap;
	pcre2_match_data **md;
	cache_ent *cache;
	sym *sy; size_t sycap;
	hent *hp; size_t hpcap;
	int oom, rxerr;
} tstate;

static void tstate_free(void *p)
{
	tstate *st = p;
	if (!st)
		return;
	free(st->w.s);
	free(st->w.o);
	free(st->w.e);
	free(st->pa.v);
	free(st->pb.v);
	free(st->pc.v);
	free(st->sraw.v);
	free(st->snorm.v);
	free(st->m);
	if (st->md) {
		for (size_t i = 0; i < st->n_md; i++)
			pcre2_match_data_free(st->md[i]);
		free(st->md);
	}
	free(st->cache);
	free(st->sy);
	free(st->hp);
	free(st);
}

static tstate *tstate_get(const tokenizer *t)
{
	tstate *st = pthread_getspecific(t->key);
	if (st && st->serial == t->serial && st->t == t)
		return st;
	if (st) { /* left by a freed tokenizer whose key this one reuses */
		pthread_setspecific(t->key, NULL);
		tstate_free(st);
	}
	st = calloc(1, sizeof *st);
	if (!st)
		return NULL;
	st->t = t;
	st->serial = t->serial;
	st->n_md = t->n_res;
	if (t->n_res) {
		st->md = calloc(t->n_res, sizeof *st->md);
		if (!st->md) {
			free(st);
			return NULL;
		}
		for (size_t i = 0; i < t->n_res; i++) {
			st->md[i] = pcre2_match_data_create_from_pattern(t->res[i], NULL);
			if (!st->md[i]) {
				tstate_free(st);
				return NULL;
			}
		}
	}
	st->cache = calloc((size_t)1 << CACHE_BITS, sizeof *st->cache);
	if (!st->cache || pthread_setspecific(t->key, st) != 0) {
		tstate_free(st);
		return NULL;
	}
	return st;
}

static int wb_reserve(tstate *st, size_t add)
{
	wbuf *w = &st->w;
	if (w->n + add <= w->cap)
		return 0;
	size_t nc = w->cap ? w->cap : 4096;
	while (nc < w->n + add)
		nc *= 2;
	if (nc > UINT32_MAX) {
		st->oom = 1;
		return -1;
	}
	char *s = realloc(w->s, nc);
	if (s)
		w->s = s;
	uint32_t *o = realloc(w->o, nc * sizeof *o);
	if (o)
		w->o = o;
	uint32_t *e = realloc(w->e, nc * sizeof *e);
	if (e)
		w->e = e;
	if (!s || !o || !e) {
		st->oom = 1;
		return -1;
	}
	w->cap = nc;
	return 0;
}

/* append n external bytes all mapped to original range [o, e) */
static void wb_put(tstate *st, const char *s, size_t n, uint32_t o, uint32_t e)
{
	if (n == 0 || wb_reserve(st, n) < 0)
		return;
	wbuf *w = &st->w;
	memcpy(w->s + w->n, s, n);
	for (size_t i = 0; i < n; i++)
		w->o[w->n + i] = o, w->e[w->n + i] = e;
	w->n += n;
}

/* append a copy of w[off, off+n) */
static void wb_copy(tstate *st, size_t off, size_t n)
{
	if (n == 0 || wb_reserve(st, n) < 0)
		return;
	wbuf *w = &st->w;
	memmove(w->s + w->n, w->s + off, n);
	memmove(w->o + w->n, w->o + off, n * sizeof *w->o);
	memmove(w->e + w->n, w->e + off, n * sizeof *w->e);
	w->n += n;
}

#define VEC_PUSH(st, vec, item)                                                  \
	do {                                                                     \
		if ((vec).n == (vec).cap) {                                      \
			size_t nc_ = (vec).cap ? (vec).cap * 2 : 64;             \
			void *nv_ = realloc((vec).v, nc_ * sizeof *(vec).v);    \
			if (!nv_) {                                              \
				(st)->oom = 1;                                   \
				break;                                           \
			}                                                        \
			(vec).v = nv_;                                           \
			(vec).cap = nc_;                                         \
		}                                                                \
		(vec).v[(vec).n++] = (item);                                     \
	} while (0)

static void m_push(tstate *st, uint32_t s, uint32_t e, int m)
{
	if (st->mn == st->mcap) {
		size_t nc = st->mcap ? st->mcap * 2 : 64;
		mspan *nv = realloc(st->m, nc * sizeof *nv);
		if (!nv) {
			st->oom = 1;
			return;
		}
		st->m = nv;
		st->mcap = nc;
	}
	st->m[st->mn++] = (mspan){ s, e, m };
}

static void out_push(tstate *st, outvec *ov, uint32_t id, size_t s, size_t e)
{
	if (ov->n == ov->cap) {
		size_t nc = ov->cap ? ov->cap * 2 : 256;
		uint32_t *ni = realloc(ov->ids, nc * sizeof *ni);
		if (!ni) {
			st->oom = 1;
			return;
		}
		ov->ids = ni;
		if (ov->want_off) {
			size_t *ns = realloc(ov->st, nc * sizeof *ns);
			if (ns)
				ov->st = ns;
			size_t *ne = realloc(ov->en, nc * sizeof *ne);
			if (ne)
				ov->en = ne;
			if (!ns || !ne) {
				st->oom = 1;
				return;
			}
		}
		ov->cap = nc;
	}
	ov->ids[ov->n] = id;
	if (ov->want_off) {
		ov->st[ov->n] = s;
		ov->en[ov->n] = e;
	}
	ov->n++;
}

/* ------------------------------------------------------------------ normalizers */

/* Unicode normalization, chunked before every ASCII byte so offsets stay fine-grained
 * (ASCII never composes with what precedes it). */
static void norm_unicode(tstate *st, size_t off, size_t n, int type)
{
	int opt = UTF8PROC_STABLE;
	if (type == NORM_NFC || type == NORM_NFKC)
		opt |= UTF8PROC_COMPOSE;
	else
		opt |= UTF8PROC_DECOMPOSE;
	if (type == NORM_NFKC || type == NORM_NFKD)
		opt |= UTF8PROC_COMPAT;
	size_t i = 0;
	while (i < n) {
		unsigned char c = (unsigned char)st->w.s[off + i];
		if (c < 0x80) {
			wb_copy(st, off + i, 1);
			i++;
			continue;
		}
		size_t j = i + 1;
		while (j < n && (unsigned char)st->w.s[off + j] >= 0x80)
			j++;
		/* include the preceding ASCII char? it was already emitted; compose with it is
		 * impossible for the first non-ASCII only when it is a combining mark after an
		 * ASCII letter: handle by re-normalizing that letter together with the run. */
		size_t cs = i;
		int back = 0;
		if (i > 0 && (unsigned char)st->w.s[off + i - 1] < 0x80 && st->w.n > 0) {
			cs = i - 1;
			back = 1;
		}
		utf8proc_uint8_t *dst = NULL;
		utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)st->w.s + off + cs,
		                                  (utf8proc_ssize_t)(j - cs), &dst, (utf8proc_option_t)opt);
		if (r < 0) {
			wb_copy(st, off + i, j - i);
		} else {
			uint32_t o0 = st->w.o[off + cs], e0 = st->w.e[off + j - 1];
			if (back)
				st->w.n--; /* drop the ASCII char emitted already */
			wb_put(st, (const char *)dst, (size_t)r, o0, e0);
			free(dst);
		}
		i = j;
	}
}

static void norm_lower(tstate *st, size_t off, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t l;
		uint32_t c = u8_dec((const unsigned char *)st->w.s + off + i, n - i, &l);
		uint32_t lc = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
		char b[4];
		size_t bl = utf8_encode(lc, b);
		uint32_t o = st->w.o[off + i], e = st->w.e[off + i + l - 1];
		if (c == 0x130) { /* İ lowercases to "i̇" in Rust */
			wb_put(st, "i\xCC\x87", 3, o, e);
		} else if (lc == c) {
			wb_copy(st, off + i, l);
		} else {
			wb_put(st, b, bl, o, e);
		}
		i += l;
	}
}

static void norm_replace_lit(tstate *st, size_t off, size_t n, const norm_op *op)
{
	size_t i = 0;
	while (i < n) {
		if (op->pat_len && i + op->pat_len <= n && memcmp(st->w.s + off + i, op->pat, op->pat_len) == 0) {
			uint32_t o = st->w.o[off + i], e = st->w.e[off + i + op->pat_len - 1];
			wb_put(st, op->content, op->content_len, o, e);
			i += op->pat_len;
		} else {
			size_t j = i + 1;
			while (j < n && (!op->pat_len || (unsigned char)st->w.s[off + j] != (unsigned char)op->pat[0]))
				j++;
			wb_copy(st, off + i, j - i);
			i = j;
		}
	}
}

static void norm_replace_re(tstate *st, size_t off, size_t n, const norm_op *op)
{
	pcre2_code *re = st->t->res[op->re];
	pcre2_match_data *md = st->md[op->re];
	size_t pos = 0;
	while (pos <= n) {
		int rc = pcre2_match(re, (PCRE2_SPTR)st->w.s + off, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
		if (rc < 0)
			break;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		size_t ms = ov[0], me = ov[1];
		if (ms > pos)
			wb_copy(st, off + pos, ms - pos);
		if (me == ms) {
			if (ms >= n)
				break;
			size_t l = u8_len((unsigned char)st->w.s[off + ms]);
			wb_copy(st, off + ms, l);
			pos = ms + l;
			continue;
		}
		wb_put(st, op->content, op->content_len, st->w.o[off + ms], st->w.e[off + me - 1]);
		pos = me;
	}
	if (pos < n)
		wb_copy(st, off + pos, n - pos);
}

/* Returns the new [off, n) of the normalized text (appended to w). */
static void normalize(tstate *st, size_t *poff, size_t *pn)
{
	const tokenizer *t = st->t;
	size_t off = *poff, n = *pn;
	for (size_t k = 0; k < t->n_norms; k++) {
		const norm_op *op = &t->norms[k];
		size_t start = st->w.n;
		switch (op->type) {
		case NORM_NFC: case NORM_NFD: case NORM_NFKC: case NORM_NFKD:
			norm_unicode(st, off, n, op->type);
			break;
		case NORM_LOWER:
			norm_lower(st, off, n);
			break;
		case NORM_REPLACE:
			if (op->re >= 0)
				norm_replace_re(st, off, n, op);
			else
				norm_replace_lit(st, off, n, op);
			break;
		case NORM_PREPEND:
			if (n) {
				wb_put(st, op->content, op->content_len, st->w.o[off], st->w.o[off]);
				wb_copy(st, off, n);
			}
			break;
		case NORM_STRIP: {
			size_t a = 0, b = n;
			while (op->left && a < b) {
				size_t l;
				uint32_t c = u8_dec((const unsigned char *)st->w.s + off + a, b - a, &l);
				if (!is_ws(c))
					break;
				a += l;
			}
			while (op->right && b > a) {
				size_t p = b - 1;
				while (p > a && ((unsigned char)st->w.s[off + p] & 0xC0) == 0x80)
					p--;
				size_t l;
				uint32_t c = u8_dec((const unsigned char *)st->w.s + off + p, b - p, &l);
				if (!is_ws(c))
					break;
				b = p;
			}
			wb_copy(st, off + a, b - a);
			break;
		}
		}
		if (st->oom)
			return;
		off = start;
		n = st->w.n - start;
	}
	*poff = off;
	*pn = n;
}

/* ------------------------------------------------------------------ pre-tokenizers */

/* Applies a split behavior to the match list st->m covering piece p; appends to out. */
static void apply_split(tstate *st, span p, int behavior, int invert, spanvec *out)
{
	size_t n = st->mn;
	mspan *m = st->m;
	if (invert)
		for (size_t i = 0; i < n; i++)
			m[i].m = !m[i].m;
	/* fold into (s, e, remove) list written in place */
	size_t k = 0;
	switch (behavior) {
	case BEH_ISOLATED:
		for (size_t i = 0; i < n; i++)
			m[i].m = 0;
		k = n;
		break;
	case BEH_REMOVED:
		k = n;
		break;
	case BEH_CONTIGUOUS: {
		int prev = 0;
		for (size_t i = 0; i < n; i++) {
			int im = m[i].m;
			if (im == prev && k > 0)
				m[k - 1].e = m[i].e;
			else
				m[k++] = (mspan){ m[i].s, m[i].e, 0 };
			prev = im;
		}
		break;
	}
	case BEH_MERGED_PREV: {
		int prev = 0;
		for (size_t i = 0; i < n; i++) {
			int im = m[i].m;
			if (im && !prev && k > 0)
				m[k - 1].e = m[i].e;
			else
				m[k++] = (mspan){ m[i].s, m[i].e, 0 };
			prev = im;
		}
		break;
	}
	case BEH_MERGED_NEXT: {
		/* fold from the right, then the result is reversed: emulate in reverse order */
		int prev = 0;
		size_t w = n; /* write from the end */
		for (size_t ii = n; ii-- > 0;) {
			int im = m[ii].m;
			if (im && !prev && w < n)
				m[w].s = m[ii].s;
			else
				m[--w] = (mspan){ m[ii].s, m[ii].e, 0 };
			prev = im;
		}
		if (n > w)
			memmove(m, m + w, (n - w) * sizeof *m);
		k = n - w;
		break;
	}
	}
	for (size_t i = 0; i < k; i++) {
		if (m[i].m || m[i].e <= m[i].s)
			continue;
		VEC_PUSH(st, *out, ((span){ p.off + m[i].s, m[i].e - m[i].s }));
	}
}

/* ------------------------------------------------------------------ fast splitters */

/* Hand-written equivalents of the GPT-2, Llama 3 and Qwen2 split regexes (TOK_RE_*).
 * Character classes come from PCRE2 itself (a table built once from \p{L}, \p{N}, \s),
 * so the splitters agree with the PCRE2 path by construction of the classes; the unit
 * tests compare both paths on the corpus and on random strings. */
enum { CL_OTHER = 0, CL_L = 1, CL_N = 2, CL_S = 3 };
static uint8_t *cls_table; /* planes 0-3, then plane 14 */
static pthread_once_t cls_once = PTHREAD_ONCE_INIT;

static void cls_init(void)
{
	size_t n = 0x40000 + 0x10000;
	uint8_t *tb = calloc(n, 1);
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR) "^(?:(\\p{L})|(\\p{N})|(\\s))", PCRE2_ZERO_TERMINATED,
	                               PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
	if (!tb || !re) {
		free(tb);
		if (re)
			pcre2_code_free(re);
		return; /* cls_table stays NULL: the fast splitters are not used */
	}
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
	for (size_t i = 0; md && i < n; i++) {
		uint32_t c = i < 0x40000 ? (uint32_t)i : (uint32_t)(0xE0000 + i - 0x40000);
		if (c >= 0xD800 && c <= 0xDFFF)
			continue;
		char b[4];
		size_t l = utf8_encode(c, b);
		int rc = pcre2_match(re, (PCRE2_SPTR)b, l, 0, PCRE2_NO_UTF_CHECK, md, NULL);
		if (rc > 1) {
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
			tb[i] = ov[2] != PCRE2_UNSET ? CL_L : (rc > 2 && ov[4] != PCRE2_UNSET) ? CL_N : CL_S;
		}
	}
	if (md)
		pcre2_match_data_free(md);
	pcre2_code_free(re);
	if (!md) {
		free(tb);
		return;
	}
	cls_table = tb;
}

static inline int cls_of(uint32_t c)
{
	if (c < 0x40000)
		return cls_table[c];
	if (c >= 0xE0000 && c < 0xF0000)
		return cls_table[0x40000 + c - 0xE0000];
	return CL_OTHER;
}

typedef struct cur { const unsigned char *s; size_t n; } cur;
static inline uint32_t at(const cur *c, size_t i, size_t *l)
{
	if (c->s[i] < 0x80) {
		*l = 1;
		return c->s[i];
	}
	return u8_dec(c->s + i, c->n - i, l);
}

static size_t run_of(const cur *c, size_t i, int cl)
{
	while (i < c->n) {
		size_t l;
		if (cls_of(at(c, i, &l)) != cl)
			break;
		i += l;
	}
	return i;
}

static int ci_eq(uint32_t c, char want) /* caseless ASCII letter, with U+017F for s */
{
	if (c == (uint32_t)want || c == (uint32_t)(want - 32))
		return 1;
	return want == 's' && c == 0x17F;
}

/* 's 't 're 've 'm 'll 'd at i (s[i] == '\''); returns the end or 0 */
static size_t contraction(const cur *c, size_t i, int caseless)
{
	size_t l1, l2;
	if (i + 1 >= c->n)
		return 0;
	uint32_t a = at(c, i + 1, &l1);
	static const char one[] = "stmd";
	for (int k = 0; k < 4; k++)
		if (caseless ? ci_eq(a, one[k]) : a == (uint32_t)one[k])
			return i + 1 + l1;
	if (i + 1 + l1 >= c->n)
		return 0;
	uint32_t b = at(c, i + 1 + l1, &l2);
	static const char two[][3] = { "re", "ve", "ll" };
	for (int k = 0; k < 3; k++) {
		if (caseless ? (ci_eq(a, two[k][0]) && ci_eq(b, two[k][1])) : (a == (uint32_t)two[k][0] && b == (uint32_t)two[k][1]))
			return i + 1 + l1 + l2;
	}
	return 0;
}

/* \s+(?!\S) | \s+ from i (s[i] is whitespace) */
static size_t ws_tail(const cur *c, size_t i)
{
	size_t k = i, last = i, nch = 0;
	while (k < c->n) {
		size_t l;
		if (cls_of(at(c, k, &l)) != CL_S)
			break;
		last = k;
		k += l;
		nch++;
	}
	if (k == c->n || nch < 2)
		return k;
	return last;
}

static size_t split_gpt2(const cur *c, size_t i)
{
	size_t l, l2;
	uint32_t ch = at(c, i, &l);
	if (ch == '\'') {
		size_t e = contraction(c, i, 0);
		if (e)
			return e;
	}
	size_t j = ch == ' ' ? i + 1 : i;
	if (j < c->n) {
		int cl = cls_of(at(c, j, &l2));
		if (cl != CL_S)
			return run_of(c, j, cl);
	}
	if (cls_of(ch) == CL_S)
		return ws_tail(c, i);
	return i + l;
}

static size_t split_llama3(const cur *c, size_t i, int max_digits)
{
	size_t l, l2;
	uint32_t ch = at(c, i, &l);
	int cl = cls_of(ch);
	if (ch == '\'') {
		size_t e = contraction(c, i, 1);
		if (e)
			return e;
	}
	if (cl == CL_L)
		return run_of(c, i, CL_L);
	if (cl != CL_N && ch != '\r' && ch != '\n' && i + l < c->n && cls_of(at(c, i + l, &l2)) == CL_L)
		return run_of(c, i + l, CL_L);
	if (cl == CL_N) {
		size_t k = i;
		for (int d = 0; d < max_digits && k < c->n; d++) {
			if (cls_of(at(c, k, &l2)) != CL_N)
				break;
			k += l2;
		}
		return k;
	}
	size_t j = ch == ' ' ? i + l : i;
	if (j < c->n && cls_of(at(c, j, &l2)) == CL_OTHER) {
		size_t k = run_of(c, j, CL_OTHER);
		while (k < c->n && (c->s[k] == '\r' || c->s[k] == '\n'))
			k++;
		return k;
	}
	if (cl == CL_S) {
		size_t k = i, nl = 0;
		int have = 0;
		while (k < c->n) {
			uint32_t x = at(c, k, &l2);
			if (cls_of(x) != CL_S)
				break;
			if (x == '\r' || x == '\n') {
				nl = k + 1;
				have = 1;
			}
			k += l2;
		}
		if (have)
			return nl;
		return ws_tail(c, i);
	}
	return i + l;
}

/* fills st->m like regex_matches() would for the pattern with fast id `fast` */
static void fast_matches(tstate *st, int fast, span p)
{
	cur c = { (const unsigned char *)st->w.s + p.off, p.len };
	st->mn = 0;
	size_t i = 0;
	while (i < p.len) {
		size_t e = fast == 1 ? split_gpt2(&c, i) : split_llama3(&c, i, fast == 2 ? 3 : 1);
		if (e <= i)
			e = i + u8_len(c.s[i]);
		if (e > p.len)
			e = p.len;
		m_push(st, (uint32_t)i, (uint32_t)e, 1);
		i = e;
	}
}

int tok_fast_id(const char *pat)
{
	if (!strcmp(pat, TOK_RE_GPT2))
		return 1;
	if (!strcmp(pat, TOK_RE_LLAMA3))
		return 2;
	if (!strcmp(pat, TOK_RE_QWEN2))
		return 3;
	return 0;
}

int tok_fast_ready(void)
{
	pthread_once(&cls_once, cls_init);
	return cls_table != NULL;
}

static int regex_matches(tstate *st, int rei, span p)
{
	pcre2_code *re = st->t->res[rei];
	pcre2_match_data *md = st->md[rei];
	const char *s = st->w.s + p.off;
	size_t n = p.len, pos = 0, prev = 0;
	st->mn = 0;
	uint32_t opts = PCRE2_NO_UTF_CHECK;
	while (pos < n) {
		int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, opts, md, NULL);
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !(opts & PCRE2_NO_JIT)) {
			opts |= PCRE2_NO_JIT;
			continue;
		}
		if (rc < 0) {
			st->rxerr = rc;
			return -1;
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		size_t ms = ov[0], me = ov[1];
		if (me == ms) { /* empty match: skip one char */
			pos = ms + u8_len((unsigned char)s[ms]);
			continue;
		}
		if (ms > prev)
			m_push(st, (uint32_t)prev, (uint32_t)ms, 0);
		m_push(st, (uint32_t)ms, (uint32_t)me, 1);
		prev = pos = me;
	}
	if (prev < n)
		m_push(st, (uint32_t)prev, (uint32_t)n, 0);
	return 0;
}

static void char_matches(tstate *st, span p, int kind, uint32_t cp)
{
	const unsigned char *s = (const unsigned char *)st->w.s + p.off;
	size_t n = p.len, i = 0, last = 0;
	st->mn = 0;
	while (i < n) {
		size_t l;
		uint32_t c = u8_dec(s + i, n - i, &l);
		int hit = kind == 0 ? is_numeric(c) : kind == 1 ? is_ws(c) : kind == 2 ? is_punc(c) : c == cp;
		if (hit) {
			if (last < i)
				m_push(st, (uint32_t)last, (uint32_t)i, 0);
			m_push(st, (uint32_t)i, (uint32_t)(i + l), 1);
			last = i + l;
		}
		i += l;
	}
	if (last < n)
		m_push(st, (uint32_t)last, (uint32_t)n, 0);
}

int tok_debug_split(int fast, int use_fast, const char *text, size_t len, size_t **ends, size_t *n)
{
	const char *pat = fast == 1 ? TOK_RE_GPT2 : fast == 2 ? TOK_RE_LLAMA3 : TOK_RE_QWEN2;
	tokenizer tk;
	memset(&tk, 0, sizeof tk);
	tstate st;
	memset(&st, 0, sizeof st);
	st.t = &tk;
	pcre2_code *re = NULL;
	pcre2_match_data *md = NULL;
	int rc = 0;
	for (size_t i = 0, l, bad; i < len; i += l)
		if (!(l = u8_valid((const unsigned char *)text + i, len - i, &bad)))
			return -2; /* the splitters run on valid UTF-8 only */
	wb_put(&st, text, len, 0, 0);
	span p = { 0, (uint32_t)len };
	if (use_fast) {
		if (!tok_fast_ready())
			rc = -1;
		else
			fast_matches(&st, fast, p);
	} else {
		int ec;
		PCRE2_SIZE eo;
		re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
		if (re)
			pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
		md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
		if (!md)
			rc = -1;
		else {
			tk.res = &re;
			tk.n_res = 1;
			st.md = &md;
			rc = regex_matches(&st, 0, p);
		}
	}
	if (rc == 0 && !st.oom) {
		*ends = malloc((st.mn ? st.mn : 1) * sizeof **ends);
		*n = 0;
		for (size_t i = 0; *ends && i < st.mn; i++)
			(*ends)[(*n)++] = st.m[i].e;
		if (!*ends)
			rc = -1;
	} else {
		rc = -1;
	}
	if (md)
		pcre2_match_data_free(md);
	if (re)
		pcre2_code_free(re);
	free(st.w.s);
	free(st.w.o);
	free(st.w.e);
	free(st.m);
	return rc;
}

static void bytelevel_map(tstate *st, span p, spanvec *out)
{
	size_t start = st->w.n;
	if (wb_reserve(st, p.len * 2) < 0)
		return;
	wbuf *w = &st->w;
	for (size_t i = 0; i < p.len; i++) {
		unsigned char b = (unsigned char)w->s[p.off + i];
		uint32_t c = byte_to_cp[b];
		size_t l = utf8_encode(c, w->s + w->n);
		for (size_t k = 0; k < l; k++) {
			w->o[w->n + k] = w->o[p.off + i];
			w->e[w->n + k] = w->e[p.off + i];
		}
		w->n += l;
	}
	VEC_PUSH(st, *out, ((span){ (uint32_t)start, (uint32_t)(w->n - start) }));
}

static void pretokenize(tstate *st, size_t off, size_t n)
{
	const tokenizer *t = st->t;
	st->pa.n = 0;
	if (n == 0)
		return;
	VEC_PUSH(st, st->pa, ((span){ (uint32_t)off, (uint32_t)n }));
	for (size_t k = 0; k < t->n_pres && !st->oom && !st->rxerr; k++) {
		const pre_op *op = &t->pres[k];
		st->pb.n = 0;
		for (size_t pi = 0; pi < st->pa.n && !st->oom && !st->rxerr; pi++) {
			span p = st->pa.v[pi];
			switch (op->type) {
			case PRE_BYTELEVEL: {
				if (op->add_prefix_space && st->w.s[p.off] != ' ') {
					size_t s0 = st->w.n;
					wb_put(st, " ", 1, st->w.o[p.off], st->w.o[p.off]);
					wb_copy(st, p.off, p.len);
					if (st->oom)
						return;
					p = (span){ (uint32_t)s0, p.len + 1 };
				}
				if (op->fast || op->re >= 0) {
					if (op->fast)
						fast_matches(st, op->fast, p);
					else if (regex_matches(st, op->re, p) < 0)
						return;
					st->pc.n = 0;
					apply_split(st, p, BEH_ISOLATED, 0, &st->pc);
					for (size_t i = 0; i < st->pc.n; i++)
						bytelevel_map(st, st->pc.v[i], &st->pb);
				} else {
					bytelevel_map(st, p, &st->pb);
				}
				break;
			}
			case PRE_SPLIT:
			case PRE_WHITESPACE:
				if (op->fast)
					fast_matches(st, op->fast, p);
				else if (regex_matches(st, op->re, p) < 0)
					return;
				apply_split(st, p, op->behavior, op->invert, &st->pb);
				break;
			case PRE_DIGITS:
				char_matches(st, p, 0, 0);
				apply_split(st, p, op->individual_digits ? BEH_ISOLATED : BEH_CONTIGUOUS, 0, &st->pb);
				break;
			case PRE_WSSPLIT:
				char_matches(st, p, 1, 0);
				apply_split(st, p, BEH_REMOVED, 0, &st->pb);
				break;
			case PRE_PUNCT:
				char_matches(st, p, 2, 0);
				apply_split(st, p, op->behavior, 0, &st->pb);
				break;
			case PRE_METASPACE: {
				size_t s0 = st->w.n;
				uint32_t first_o = st->w.o[p.off];
				for (size_t i = 0; i < p.len;) {
					size_t j = i;
					while (j < p.len && st->w.s[p.off + j] != ' ')
						j++;
					if (j > i)
						wb_copy(st, p.off + i, j - i);
					if (j < p.len) {
						wb_put(st, op->repl, op->repl_len, st->w.o[p.off + j], st->w.e[p.off + j]);
						j++;
					}
					i = j;
				}
				if (st->oom)
					return;
				span q = { (uint32_t)s0, (uint32_t)(st->w.n - s0) };
				int starts = q.len >= op->repl_len && memcmp(st->w.s + q.off, op->repl, op->repl_len) == 0;
				if (!starts && (op->prepend_scheme == PREPEND_ALWAYS ||
				                (op->prepend_scheme == PREPEND_FIRST && first_o == 0))) {
					size_t s1 = st->w.n;
					wb_put(st, op->repl, op->repl_len, first_o, first_o);
					wb_copy(st, q.off, q.len);
					if (st->oom)
						return;
					q = (span){ (uint32_t)s1, (uint32_t)(st->w.n - s1) };
				}
				if (op->split) {
					char_matches(st, q, 3, op->repl_cp);
					apply_split(st, q, BEH_MERGED_NEXT, 0, &st->pb);
				} else if (q.len) {
					VEC_PUSH(st, st->pb, q);
				}
				break;
			}
			}
		}
		spanvec tmp = st->pa;
		st->pa = st->pb;
		st->pb = tmp;
	}
}

/* ------------------------------------------------------------------ BPE */

static void heap_push(tstate *st, size_t *hn, hent h)
{
	if (*hn == st->hpcap) {
		size_t nc = st->hpcap ? st->hpcap * 2 : 256;
		hent *nh = realloc(st->hp, nc * sizeof *nh);
		if (!nh) {
			st->oom = 1;
			return;
		}
		st->hp = nh;
		st->hpcap = nc;
	}
	hent *a = st->hp;
	size_t i = (*hn)++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (a[p].rank < h.rank || (a[p].rank == h.rank && a[p].pos <= h.pos))
			break;
		a[i] = a[p];
		i = p;
	}
	a[i] = h;
}

static hent heap_pop(tstate *st, size_t *hn)
{
	hent *a = st->hp;
	hent top = a[0], last = a[--(*hn)];
	size_t n = *hn, i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && (a[c + 1].rank < a[c].rank || (a[c + 1].rank == a[c].rank && a[c + 1].pos < a[c].pos)))
			c++;
		if (last.rank < a[c].rank || (last.rank == a[c].rank && last.pos <= a[c].pos))
			break;
		a[i] = a[c];
		i = c;
	}
	if (n)
		a[i] = last;
	return top;
}

static void sym_push(tstate *st, size_t *n, uint32_t id, uint32_t s, uint32_t e)
{
	if (*n == st->sycap) {
		size_t nc = st->sycap ? st->sycap * 2 : 256;
		sym *ns = realloc(st->sy, nc * sizeof *ns);
		if (!ns) {
			st->oom = 1;
			return;
		}
		st->sy = ns;
		st->sycap = nc;
	}
	st->sy[*n] = (sym){ id, (int32_t)*n - 1, (int32_t)*n + 1, s, e, 0 };
	(*n)++;
}

/* Tokenizes piece p with BPE; appends to ov with original offsets. */
static void bpe_word(tstate *st, span p, outvec *ov)
{
	const tokenizer *t = st->t;
	const char *s = st->w.s + p.off;
	size_t n = p.len;
	cache_ent *ce = NULL;
	uint64_t h = 0;
	if (n <= CACHE_KEY) {
		h = hash_str(s, n);
		ce = &st->cache[h & (((size_t)1 << CACHE_BITS) - 1)];
		if (ce->h == h && ce->klen == n && ce->ntok && memcmp(ce->key, s, n) == 0) {
			for (size_t i = 0; i < ce->ntok; i++)
				out_push(st, ov, ce->ids[i], st->w.o[p.off + ce->st[i]], st->w.e[p.off + ce->en[i] - 1]);
			return;
		}
	}
	if (t->ignore_merges) {
		int64_t id = tok_model_lookup(t, s, n);
		if (id >= 0) {
			out_push(st, ov, (uint32_t)id, st->w.o[p.off], st->w.e[p.off + n - 1]);
			return;
		}
	}
	size_t ns = 0;
	int prev_unk = 0;
	for (size_t i = 0; i < n;) {
		size_t l = u8_len((unsigned char)s[i]);
		if (i + l > n)
			l = n - i;
		int64_t id = tok_model_lookup(t, s + i, l);
		if (id >= 0) {
			sym_push(st, &ns, (uint32_t)id, (uint32_t)i, (uint32_t)(i + l));
			prev_unk = 0;
		} else if (t->byte_fallback && t->have_byte_ids) {
			for (size_t k = 0; k < l; k++)
				sym_push(st, &ns, t->byte_ids[(unsigned char)s[i + k]], (uint32_t)i, (uint32_t)(i + l));
			prev_unk = 0;
		} else if (t->unk_id >= 0) {
			if (t->fuse_unk && prev_unk && ns > 0)
				st->sy[ns - 1].en = (uint32_t)(i + l);
			else
				sym_push(st, &ns, (uint32_t)t->unk_id, (uint32_t)i, (uint32_t)(i + l));
			prev_unk = 1;
		}
		i += l;
	}
	if (st->oom || ns == 0)
		return;
	sym *sy = st->sy;
	sy[ns - 1].next = -1;
	size_t hn = 0;
	for (size_t i = 0; i + 1 < ns; i++) {
		const merge_ent *me = merge_find(t, sy[i].id, sy[i + 1].id);
		if (me)
			heap_push(st, &hn, (hent){ me->rank, (uint32_t)i, me->new_id });
	}
	while (hn > 0 && !st->oom) {
		hent top = heap_pop(st, &hn);
		sym *a = &sy[top.pos];
		if (a->dead || a->next < 0)
			continue;
		sym *b = &sy[a->next];
		const merge_ent *me = merge_find(t, a->id, b->id);
		if (!me || me->new_id != top.new_id)
			continue;
		a->id = top.new_id;
		a->en = b->en;
		b->dead = 1;
		a->next = b->next;
		if (b->next >= 0)
			sy[b->next].prev = (int32_t)top.pos;
		if (a->prev >= 0) {
			const merge_ent *m2 = merge_find(t, sy[a->prev].id, a->id);
			if (m2)
				heap_push(st, &hn, (hent){ m2->rank, (uint32_t)a->prev, m2->new_id });
		}
		if (a->next >= 0) {
			const merge_ent *m2 = merge_find(t, a->id, sy[a->next].id);
			if (m2)
				heap_push(st, &hn, (hent){ m2->rank, top.pos, m2->new_id });
		}
	}
	size_t cnt = 0;
	for (int32_t i = 0; i >= 0; i = sy[i].next) {
		out_push(st, ov, sy[i].id, st->w.o[p.off + sy[i].st], st->w.e[p.off + sy[i].en - 1]);
		cnt++;
	}
	if (ce && cnt <= CACHE_TOK) {
		ce->h = h;
		ce->klen = (uint8_t)n;
		memcpy(ce->key, s, n);
		size_t k = 0;
		for (int32_t i = 0; i >= 0; i = sy[i].next, k++) {
			ce->ids[k] = sy[i].id;
			ce->st[k] = (uint8_t)sy[i].st;
			ce->en[k] = (uint8_t)sy[i].en;
		}
		ce->ntok = (uint8_t)cnt;
	}
}

static inline int is_meta(const char *s) { return (unsigned char)s[0] == 0xE2 && (unsigned char)s[1] == 0x96 && (unsigned char)s[2] == 0x81; }

/* SentencePiece-style vocabularies (no pre-tokenizer: the whole text is one piece) are cut
 * before every "▁" that follows another character when no vocabulary token holds such a
 * pair (t->spm_split): no merge can then cross the cut, so BPE on the parts equals BPE on
 * the whole, and the parts fit the word cache. */
static void bpe_piece(tstate *st, span p, outvec *ov)
{
	const tokenizer *t = st->t;
	if (!t->spm_split || p.len <= 8) {
		bpe_word(st, p, ov);
		return;
	}
	const char *s = st->w.s + p.off;
	size_t start = 0;
	for (size_t i = 1; i + 3 <= p.len; i++) {
		if (is_meta(s + i) && !(i >= 3 && is_meta(s + i - 3))) {
			bpe_word(st, (span){ p.off + (uint32_t)start, (uint32_t)(i - start) }, ov);
			s = st->w.s + p.off;
			start = i;
		}
	}
	bpe_word(st, (span){ p.off + (uint32_t)start, (uint32_t)(p.len - start) }, ov);
}

/* ------------------------------------------------------------------ encode */

static void fix_utf8(tstate *st, const char *text, size_t len)
{
	if (wb_reserve(st, len + len / 2 + 16) < 0)
		return;
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;
	while (i < len) {
		/* fast ASCII run */
		wbuf *w = &st->w;
		while (i < len && s[i] < 0x80) {
			if (w->n == w->cap && wb_reserve(st, 64) < 0)
				return;
			w = &st->w;
			w->s[w->n] = (char)s[i];
			w->o[w->n] = (uint32_t)i;
			w->e[w->n] = (uint32_t)i + 1;
			w->n++;
			i++;
		}
		if (i >= len)
			break;
		size_t bad = 0, l = u8_valid(s + i, len - i, &bad);
		if (l) {
			wb_put(st, text + i, l, (uint32_t)i, (uint32_t)(i + l));
			i += l;
		} else {
			wb_put(st, "\xEF\xBF\xBD", 3, (uint32_t)i, (uint32_t)(i + bad));
			i += bad;
		}
		if (st->oom)
			return;
	}
}

static void split_added(tstate *st, const tok_trie *tr, size_t off, size_t n, segvec *out, int use_norm)
{
	const tokenizer *t = st->t;
	out->n = 0;
	size_t from = 0, last = 0;
	if (tr->n) {
		size_t ms, me;
		int32_t ti;
		while (from < n && trie_find(tr, st->w.s + off, n, from, &ms, &me, &ti)) {
			const added_tok *a = &t->added[ti];
			const unsigned char *s = (const unsigned char *)st->w.s + off;
			(void)use_norm;
			if (a->single_word) {
				int ok = 1;
				if (ms > 0) {
					size_t p = ms - 1;
					while (p > 0 && (s[p] & 0xC0) == 0x80)
						p--;
					size_t l;
					if (is_word(u8_dec(s + p, n - p, &l)))
						ok = 0;
				}
				if (me < n) {
					size_t l;
					if (is_word(u8_dec(s + me, n - me, &l)))
						ok = 0;
				}
				if (!ok) {
					from = ms + u8_len(s[ms]);
					continue;
				}
			}
			if (ms < last) { /* overlaps a previous rstrip: skip */
				from = ms + u8_len(s[ms]);
				continue;
			}
			size_t a0 = ms, a1 = me;
			if (a->lstrip) {
				while (a0 > last) {
					size_t p = a0 - 1;
					while (p > last && (s[p] & 0xC0) == 0x80)
						p--;
					size_t l;
					if (!is_ws(u8_dec(s + p, n - p, &l)))
						break;
					a0 = p;
				}
			}
			if (a->rstrip) {
				while (a1 < n) {
					size_t l;
					if (!is_ws(u8_dec(s + a1, n - a1, &l)))
						break;
					a1 += l;
				}
			}
			if (a0 > last)
				VEC_PUSH(st, *out, ((seg){ (uint32_t)(off + last), (uint32_t)(a0 - last), -1 }));
			VEC_PUSH(st, *out, ((seg){ (uint32_t)(off + a0), (uint32_t)(a1 - a0), ti }));
			last = from = a1;
		}
	}
	if (last < n || n == 0)
		VEC_PUSH(st, *out, ((seg){ (uint32_t)(off + last), (uint32_t)(n - last), -1 }));
}

static void emit_added(tstate *st, const seg *g, outvec *ov)
{
	const added_tok *a = &st->t->added[g->added];
	size_t s = g->len ? st->w.o[g->off] : 0, e = g->len ? st->w.e[g->off + g->len - 1] : 0;
	out_push(st, ov, a->id, s, e);
}

static int encode_impl(const tokenizer *t, const char *text, size_t len, int add_special, outvec *ov, sft_error *err)
{
	if (!t || (!text && len))
		return sft_error_set(err, SFT_EXIT_INTERNAL, "tokenizer_encode: bad arguments");
	if (len > UINT32_MAX / 4)
		return sft_error_set(err, SFT_EXIT_DATA, "text of %zu bytes is too long to tokenize", len);
	tstate *st = tstate_get(t);
	if (!st)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	st->oom = 0;
	st->rxerr = 0;
	st->w.n = 0;
	if (add_special)
		for (size_t i = 0; i < t->n_pre_ids; i++)
			out_push(st, ov, t->pre_ids[i], 0, 0);
	fix_utf8(st, text, len);
	size_t n0 = st->w.n;
	split_added(st, &t->trie_raw, 0, n0, &st->sraw, 0);
	for (size_t si = 0; si < st->sraw.n && !st->oom && !st->rxerr; si++) {
		seg g = st->sraw.v[si];
		if (g.added >= 0) {
			emit_added(st, &g, ov);
			continue;
		}
		if (g.len == 0)
			continue;
		size_t off = g.off, n = g.len;
		normalize(st, &off, &n);
		if (st->oom)
			break;
		split_added(st, &t->trie_norm, off, n, &st->snorm, 1);
		for (size_t sj = 0; sj < st->snorm.n && !st->oom && !st->rxerr; sj++) {
			seg h = st->snorm.v[sj];
			if (h.added >= 0) {
				emit_added(st, &h, ov);
				continue;
			}
			if (h.len == 0)
				continue;
			pretokenize(st, h.off, h.len);
			for (size_t pi = 0; pi < st->pa.n && !st->oom; pi++)
				bpe_piece(st, st->pa.v[pi], ov);
		}
	}
	if (add_special)
		for (size_t i = 0; i < t->n_post_ids; i++)
			out_push(st, ov, t->post_ids[i], len, len);
	if (st->rxerr) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(st->rxerr, msg, sizeof msg);
		return sft_error_set(err, SFT_EXIT_DATA, "pre-tokenizer regex failed: %s", (char *)msg);
	}
	if (st->oom)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory while tokenizing %zu bytes", len);
	/* keep scratch memory bounded after huge inputs */
	if (st->w.cap > ((size_t)64 << 20)) {
		free(st->w.s);
		free(st->w.o);
		free(st->w.e);
		st->w = (wbuf){ 0 };
	}
	return 0;
}

int tokenizer_encode_offsets(const tokenizer *t, const char *text, size_t len, int add_special,
                             uint32_t **ids, size_t **starts, size_t **ends, size_t *n_ids, sft_error *err)
{
	outvec ov = { 0 };
	ov.want_off = starts || ends;
	int rc = encode_impl(t, text, len, add_special, &ov, err);
	if (rc == 0 && !ov.ids) {
		ov.ids = malloc(sizeof *ov.ids);
		if (ov.want_off) {
			ov.st = malloc(sizeof *ov.st);
			ov.en = malloc(sizeof *ov.en);
		}
		if (!ov.ids || (ov.want_off && (!ov.st || !ov.en)))
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	if (rc < 0) {
		free(ov.ids);
		free(ov.st);
		free(ov.en);
		if (ids)
			*ids = NULL;
		if (starts)
			*starts = NULL;
		if (ends)
			*ends = NULL;
		if (n_ids)
			*n_ids = 0;
		return rc;
	}
	*ids = ov.ids;
	if (starts)
		*starts = ov.st;
	else
		free(ov.st);
	if (ends)
		*ends = ov.en;
	else
		free(ov.en);
	*n_ids = ov.n;
	return 0;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_special, uint32_t **ids,
                     size_t *n_ids, sft_error *err)
{
	return tokenizer_encode_offsets(t, text, len, add_special, ids, NULL, NULL, n_ids, err);
}

/* ------------------------------------------------------------------ decode */

typedef struct sbuf { char *s; size_t n, cap; int oom; } sbuf;
static void sb_put(sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 256;
		while (nc < b->n + n + 1)
			nc *= 2;
		char *p = realloc(b->s, nc);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->s = p;
		b->cap = nc;
	}
	if (n)
		memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = 0;
}

/* token list: strings in one buffer */
typedef struct tlist { sbuf buf; size_t *off, *len; size_t n, cap; int oom; } tlist;
static void tl_push(tlist *l, const char *s, size_t n)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		size_t *no = realloc(l->off, nc * sizeof *no);
		if (no)
			l->off = no;
		size_t *nl = realloc(l->len, nc * sizeof *nl);
		if (nl)
			l->len = nl;
		if (!no || !nl) {
			l->oom = 1;
			return;
		}
		l->cap = nc;
	}
	l->off[l->n] = l->buf.n;
	l->len[l->n] = n;
	l->n++;
	sb_put(&l->buf, s, n);
	if (l->buf.oom)
		l->oom = 1;
}
static void tl_free(tlist *l)
{
	free(l->buf.s);
	free(l->off);
	free(l->len);
}

/* Appends bytes to sb replacing invalid UTF-8 with U+FFFD (from_utf8_lossy). */
static void sb_put_lossy(sbuf *b, const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t bad = 0, l = u8_valid((const unsigned char *)s + i, n - i, &bad);
		if (l) {
			sb_put(b, s + i, l);
			i += l;
		} else {
			sb_put(b, "\xEF\xBF\xBD", 3);
			i += bad;
		}
	}
}

static int valid_utf8(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t bad, l = u8_valid((const unsigned char *)s + i, n - i, &bad);
		if (!l)
			return 0;
		i += l;
	}
	return 1;
}

static void dec_apply(const dec_op *d, tlist *in, tlist *out)
{
	switch (d->type) {
	case DEC_BYTELEVEL: {
		sbuf raw = { 0 };
		for (size_t i = 0; i < in->n; i++) {
			const char *s = in->buf.s + in->off[i];
			size_t n = in->len[i], j = 0, start = raw.n;
			int ok = 1;
			while (j < n) {
				size_t l;
				uint32_t c = u8_dec((const unsigned char *)s + j, n - j, &l);
				if (c >= 324 || cp_to_byte[c] < 0) {
					ok = 0;
					break;
				}
				char b = (char)cp_to_byte[c];
				sb_put(&raw, &b, 1);
				j += l;
			}
			if (!ok) {
				raw.n = start;
				sb_put(&raw, s, n);
			}
		}
		sbuf o = { 0 };
		sb_put_lossy(&o, raw.s ? raw.s : "", raw.n);
		tl_push(out, o.s ? o.s : "", o.n);
		if (raw.oom || o.oom)
			out->oom = 1;
		free(raw.s);
		free(o.s);
		break;
	}
	case DEC_BYTEFALLBACK: {
		sbuf pend = { 0 };
		for (size_t i = 0; i <= in->n; i++) {
			const char *s = i < in->n ? in->buf.s + in->off[i] : NULL;
			size_t n = i < in->n ? in->len[i] : 0;
			int isbyte = 0;
			unsigned v = 0;
			if (s && n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>') {
				char hx[3] = { s[3], s[4], 0 };
				char *endp;
				int okhex = ((hx[0] >= '0' && hx[0] <= '9') || (hx[0] >= 'A' && hx[0] <= 'F') || (hx[0] >= 'a' && hx[0] <= 'f')) &&
				            ((hx[1] >= '0' && hx[1] <= '9') || (hx[1] >= 'A' && hx[1] <= 'F') || (hx[1] >= 'a' && hx[1] <= 'f'));
				v = (unsigned)strtoul(hx, &endp, 16);
				isbyte = okhex;
			}
			if (isbyte) {
				char b = (char)v;
				sb_put(&pend, &b, 1);
				continue;
			}
			if (pend.n) {
				if (valid_utf8(pend.s, pend.n))
					tl_push(out, pend.s, pend.n);
				else
					for (size_t k = 0; k < pend.n; k++)
						tl_push(out, "\xEF\xBF\xBD", 3);
				pend.n = 0;
			}
			if (s)
				tl_push(out, s, n);
		}
		free(pend.s);
		break;
	}
	case DEC_METASPACE: {
		char rep[4];
		size_t rl = utf8_encode(d->cp, rep);
		for (size_t i = 0; i < in->n; i++) {
			const char *s = in->buf.s + in->off[i];
			size_t n = in->len[i];
			sbuf o = { 0 };
			sb_put(&o, "", 0);
			for (size_t j = 0; j < n;) {
				if (j + rl <= n && memcmp(s + j, rep, rl) == 0) {
					if (!(i == 0 && d->prepend_scheme != PREPEND_NEVER))
						sb_put(&o, " ", 1);
					j += rl;
				} else {
					size_t l = u8_len((unsigned char)s[j]);
					if (j + l > n)
						l = n - j;
					sb_put(&o, s + j, l);
					j += l;
				}
			}
			tl_push(out, o.s, o.n);
			free(o.s);
		}
		break;
	}
	case DEC_FUSE: {
		sbuf o = { 0 };
		sb_put(&o, "", 0);
		for (size_t i = 0; i < in->n; i++)
			sb_put(&o, in->buf.s + in->off[i], in->len[i]);
		tl_push(out, o.s ? o.s : "", o.n);
		free(o.s);
		break;
	}
	case DEC_STRIP: {
		char c[4];
		size_t cl = utf8_encode(d->cp, c);
		for (size_t i = 0; i < in->n; i++) {
			const char *s = in->buf.s + in->off[i];
			size_t n = in->len[i], a = 0, b = n;
			for (int k = 0; k < d->start && a + cl <= b && memcmp(s + a, c, cl) == 0; k++)
				a += cl;
			for (int k = 0; k < d->stop && b >= a + cl && memcmp(s + b - cl, c, cl) == 0; k++)
				b -= cl;
			tl_push(out, s + a, b - a);
		}
		break;
	}
	case DEC_REPLACE: {
		for (size_t i = 0; i < in->n; i++) {
			const char *s = in->buf.s + in->off[i];
			size_t n = in->len[i];
			sbuf o = { 0 };
			sb_put(&o, "", 0);
			for (size_t j = 0; j < n;) {
				if (d->pat_len && j + d->pat_len <= n && memcmp(s + j, d->pat, d->pat_len) == 0) {
					sb_put(&o, d->content, d->content_len);
					j += d->pat_len;
				} else {
					sb_put(&o, s + j, 1);
					j++;
				}
			}
			tl_push(out, o.s, o.n);
			free(o.s);
		}
		break;
	}
	}
}

static const char *tok_id_str(const tokenizer *t, uint32_t id, size_t *len)
{
	if (!t || id >= t->n_ids)
		return NULL;
	if (t->added_by_id && t->added_by_id[id] >= 0) {
		*len = t->added[t->added_by_id[id]].len;
		return t->added[t->added_by_id[id]].content;
	}
	if (id < t->model_cap && t->model_str[id]) {
		*len = t->model_len[id];
		return t->model_str[id];
	}
	return NULL;
}

int tokenizer_decode(const tokenizer *t, const uint32_t *ids, size_t n, int skip_special, char **out,
                     size_t *out_len, sft_error *err)
{
	pthread_once(&bytemap_once, bytemap_init);
	tlist a = { 0 }, b = { 0 };
	for (size_t i = 0; i < n; i++) {
		size_t sl;
		const char *s = tok_id_str(t, ids[i], &sl);
		if (!s) {
			tl_free(&a);
			return sft_error_set(err, SFT_EXIT_DATA, "token id %u at position %zu is out of the vocabulary",
			                     ids[i], i);
		}
		if (skip_special && tokenizer_is_special(t, ids[i]))
			continue;
		tl_push(&a, s, sl);
	}
	if (t->have_decoder) {
		for (size_t k = 0; k < t->n_decs; k++) {
			b.n = 0;
			b.buf.n = 0;
			dec_apply(&t->decs[k], &a, &b);
			tlist tmp = a;
			a = b;
			b = tmp;
		}
	}
	sbuf o = { 0 };
	sb_put(&o, "", 0);
	for (size_t i = 0; i < a.n; i++) {
		if (!t->have_decoder && i > 0)
			sb_put(&o, " ", 1);
		sb_put(&o, a.buf.s + a.off[i], a.len[i]);
	}
	int oom = a.oom || b.oom || o.oom;
	tl_free(&a);
	tl_free(&b);
	if (oom) {
		free(o.s);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	*out = o.s;
	if (out_len)
		*out_len = o.n;
	return 0;
}

/* ------------------------------------------------------------------ accessors */

uint32_t tokenizer_vocab_size(const tokenizer *t) { return t ? t->n_ids : 0; }

const char *tokenizer_id_to_token(const tokenizer *t, uint32_t id)
{
	if (!t || id >= t->n_ids)
		return NULL;
	if (t->added_by_id && t->added_by_id[id] >= 0)
		return t->added[t->added_by_id[id]].content;
	if (id < t->model_cap)
		return t->model_str[id];
	return NULL;
}

int64_t tokenizer_token_to_id(const tokenizer *t, const char *tok)
{
	if (!t || !tok)
		return -1;
	size_t n = strlen(tok);
	for (size_t i = 0; i < t->n_added; i++)
		if (t->added[i].len == n && memcmp(t->added[i].content, tok, n) == 0)
			return t->added[i].id;
	return tok_model_lookup(t, tok, n);
}

int tokenizer_is_special(const tokenizer *t, uint32_t id)
{
	if (!t || id >= t->n_ids || !t->added_by_id || t->added_by_id[id] < 0)
		return 0;
	return t->added[t->added_by_id[id]].special;
}

const char *tokenizer_chat_template(const tokenizer *t) { return t ? t->chat_template : NULL; }

const char *tokenizer_special(const tokenizer *t, const char *name)
{
	if (!t || !name)
		return NULL;
	if (!strcmp(name, "bos_token"))
		return t->bos;
	if (!strcmp(name, "eos_token"))
		return t->eos;
	if (!strcmp(name, "pad_token"))
		return t->pad;
	if (!strcmp(name, "unk_token"))
		return t->unk;
	return NULL;
}

int tokenizer_add_bos(const tokenizer *t) { return t ? t->add_bos : 0; }
int tokenizer_add_eos(const tokenizer *t) { return t ? t->add_eos : 0; }

void tokenizer_fingerprint(const tokenizer *t, uint8_t out[16])
{
	if (!t) {
		memset(out, 0, 16);
		return;
	}
	memcpy(out, t->fp, 16);
}

int tokenizer_fingerprint_template(const tokenizer *t, const char *tmpl, size_t tmpl_len, uint8_t out[16],
				   sft_error *err)
{
	tokenizer_fingerprint(t, out);
	if (!tmpl)
		return 0;
	XXH3_state_t *s = XXH3_createState();
	if (!s)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	XXH3_128bits_reset(s);
	XXH3_128bits_update(s, out, 16);
	XXH3_128bits_update(s, tmpl, tmpl_len);
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(s));
	XXH3_freeState(s);
	memcpy(out, c.digest, 16);
	return 0;
}

/* ------------------------------------------------------------------ lifecycle */

tokenizer *tok_new(void)
{
	pthread_once(&bytemap_once, bytemap_init);
	tokenizer *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	if (pthread_key_create(&t->key, tstate_free) != 0) {
		free(t);
		return NULL;
	}
	t->serial = atomic_fetch_add(&tok_serial_counter, 1);
	t->unk_id = -1;
	return t;
}

void tokenizer_free(tokenizer *t)
{
	if (!t)
		return;
	tstate *st = pthread_getspecific(t->key);
	if (st) {
		pthread_setspecific(t->key, NULL);
		tstate_free(st);
	}
	pthread_key_delete(t->key);
	for (uint32_t i = 0; i < t->model_cap; i++)
		free(t->model_str[i]);
	free(t->model_str);
	free(t->model_len);
	free(t->model_hash.slots);
	free(t->merges);
	for (size_t i = 0; i < t->n_added; i++) {
		free(t->added[i].content);
		free(t->added[i].norm);
	}
	free(t->added);
	free(t->added_by_id);
	free(t->trie_raw.nodes);
	free(t->trie_norm.nodes);
	for (size_t i = 0; i < t->n_norms; i++) {
		free(t->norms[i].pat);
		free(t->norms[i].content);
	}
	free(t->norms);
	free(t->pres);
	for (size_t i = 0; i < t->n_decs; i++) {
		free(t->decs[i].pat);
		free(t->decs[i].content);
	}
	free(t->decs);
	for (size_t i = 0; i < t->n_res; i++)
		pcre2_code_free(t->res[i]);
	free(t->res);
	free(t->pre_ids);
	free(t->post_ids);
	free(t->chat_template);
	free(t->bos);
	free(t->eos);
	free(t->pad);
	free(t->unk);
	free(t);
}

int tok_add_added(tokenizer *t, uint32_t id, const char *s, size_t n, int special, int lstrip, int rstrip,
                  int normalized, int single_word)
{
	added_tok *na = realloc(t->added, (t->n_added + 1) * sizeof *na);
	if (!na)
		return -1;
	t->added = na;
	added_tok *a = &t->added[t->n_added];
	memset(a, 0, sizeof *a);
	a->id = id;
	a->content = tok_strndup(s, n);
	if (!a->content)
		return -1;
	a->len = n;
	a->special = special;
	a->lstrip = lstrip;
	a->rstrip = rstrip;
	a->normalized = normalized;
	a->single_word = single_word;
	t->n_added++;
	if (id + 1 > t->n_ids)
		t->n_ids = id + 1;
	return 0;
}

/* Normalizes an added token's content (for matching normalized tokens). */
static char *normalize_string(tokenizer *t, const char *s, size_t n, size_t *outn)
{
	tstate *st = tstate_get(t);
	if (!st)
		return NULL;
	st->w.n = 0;
	st->oom = 0;
	fix_utf8(st, s, n);
	size_t off = 0, len = st->w.n;
	normalize(st, &off, &len);
	if (st->oom)
		return NULL;
	*outn = len;
	return tok_strndup(st->w.s + off, len);
}

int tok_finalize(tokenizer *t, sft_error *err)
{
	free(t->added_by_id);
	t->added_by_id = malloc((size_t)(t->n_ids ? t->n_ids : 1) * sizeof *t->added_by_id);
	if (!t->added_by_id)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	for (uint32_t i = 0; i < t->n_ids; i++)
		t->added_by_id[i] = -1;
	for (size_t i = 0; i < t->n_added; i++) {
		added_tok *a = &t->added[i];
		t->added_by_id[a->id] = (int32_t)i;
		int rc;
		if (a->normalized && !a->special) {
			a->norm = normalize_string(t, a->content, a->len, &a->norm_len);
			if (!a->norm)
				return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			rc = trie_add(&t->trie_norm, a->norm, a->norm_len, (int32_t)i);
		} else {
			rc = trie_add(&t->trie_raw, a->content, a->len, (int32_t)i);
		}
		if (rc < 0)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	/* byte fallback table */
	t->have_byte_ids = 1;
	for (int b = 0; b < 256; b++) {
		char name[8];
		snprintf(name, sizeof name, "<0x%02X>", b);
		int64_t id = tok_model_lookup(t, name, 6);
		if (id < 0) {
			t->have_byte_ids = 0;
			break;
		}
		t->byte_ids[b] = (uint32_t)id;
	}
	/* SentencePiece cut points (see bpe_piece) */
	t->spm_split = tok_model_lookup(t, "\xE2\x96\x81", 3) >= 0;
	for (uint32_t id = 0; t->spm_split && id < t->n_ids && id < t->model_cap; id++) {
		const char *s = t->model_str[id];
		uint32_t n = t->model_len[id];
		for (uint32_t i = 1; s && i + 3 <= n; i++)
			if (is_meta(s + i) && !(i >= 3 && is_meta(s + i - 3))) {
				t->spm_split = 0;
				break;
			}
	}
	/* the thread state made while normalizing added tokens predates all regexes: drop it */
	tstate *st = pthread_getspecific(t->key);
	if (st) {
		pthread_setspecific(t->key, NULL);
		tstate_free(st);
	}
	return 0;
}

/* ------------------------------------------------------------------ JSON loading */

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jbool(json_t *o, const char *k, int def)
{
	json_t *v = json_object_get(o, k);
	if (json_is_boolean(v))
		return json_is_true(v);
	return def;
}

static int parse_behavior(const char *s, int *out)
{
	if (!s)
		return -1;
	if (!strcmp(s, "Removed"))
		*out = BEH_REMOVED;
	else if (!strcmp(s, "Isolated"))
		*out = BEH_ISOLATED;
	else if (!strcmp(s, "MergedWithPrevious"))
		*out = BEH_MERGED_PREV;
	else if (!strcmp(s, "MergedWithNext"))
		*out = BEH_MERGED_NEXT;
	else if (!strcmp(s, "Contiguous"))
		*out = BEH_CONTIGUOUS;
	else
		return -1;
	return 0;
}

static int parse_prepend(json_t *o, int def)
{
	const char *s = jstr(o, "prepend_scheme");
	if (s) {
		if (!strcmp(s, "first"))
			return PREPEND_FIRST;
		if (!strcmp(s, "never"))
			return PREPEND_NEVER;
		return PREPEND_ALWAYS;
	}
	json_t *aps = json_object_get(o, "add_prefix_space");
	if (json_is_boolean(aps))
		return json_is_true(aps) ? PREPEND_ALWAYS : PREPEND_NEVER;
	return def;
}

static int first_cp(const char *s, uint32_t *cp)
{
	if (!s || !*s)
		return -1;
	size_t n = strlen(s), bad, l = u8_valid((const unsigned char *)s, n, &bad);
	if (!l || l != n)
		return -1;
	size_t ll;
	*cp = u8_dec((const unsigned char *)s, n, &ll);
	return 0;
}

typedef int (*component_loader)(tokenizer *t, json_t *o, sft_error *err);

/* A "Sequence" component (normalizer, pre_tokenizer, post_processor, decoder): loads
 * every element of o[key] in order with `load`. */
static int load_sequence(tokenizer *t, json_t *o, const char *key, const char *what,
			 component_loader load, sft_error *err)
{
	json_t *arr = json_object_get(o, key);
	if (!json_is_array(arr))
		return sft_error_set(err, SFT_EXIT_DATA, "Sequence %s without %s", what, key);
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) {
		if (load(t, v, err) < 0)
			return -1;
	}
	return 0;
}

static int load_normalizer(tokenizer *t, json_t *o, sft_error *err)
{
	if (json_is_null(o) || !o)
		return 0;
	const char *ty = jstr(o, "type");
	if (!ty)
		return sft_error_set(err, SFT_EXIT_DATA, "normalizer without a type");
	if (!strcmp(ty, "Sequence"))
		return load_sequence(t, o, "normalizers", "normalizer", load_normalizer, err);
	norm_op op = { 0 };
	op.re = -1;
	if (!strcmp(ty, "NFC"))
		op.type = NORM_NFC;
	else if (!strcmp(ty, "NFD"))
		op.type = NORM_NFD;
	else if (!strcmp(ty, "NFKC"))
		op.type = NORM_NFKC;
	else if (!strcmp(ty, "NFKD"))
		op.type = NORM_NFKD;
	else if (!strcmp(ty, "Lowercase"))
		op.type = NORM_LOWER;
	else if (!strcmp(ty, "Strip")) {
		op.type = NORM_STRIP;
		op.left = jbool(o, "strip_left", 1);
		op.right = jbool(o, "strip_right", 1);
	} else if (!strcmp(ty, "Prepend")) {
		op.type = NORM_PREPEND;
		const char *p = jstr(o, "prepend");
		if (!p)
			return sft_error_set(err, SFT_EXIT_DATA, "Prepend normalizer without prepend");
		op.content = tok_strndup(p, strlen(p));
		op.content_len = strlen(p);
	} else if (!strcmp(ty, "Replace")) {
		op.type = NORM_REPLACE;
		json_t *pat = json_object_get(o, "pattern");
		const char *c = jstr(o, "content");
		if (!json_is_object(pat) || !c)
			return sft_error_set(err, SFT_EXIT_DATA, "Replace normalizer without pattern/content");
		const char *ps = jstr(pat, "String"), *pr = jstr(pat, "Regex");
		if (ps) {
			op.pat = tok_strndup(ps, strlen(ps));
			op.pat_len = strlen(ps);
		} else if (pr) {
			int r = tok_add_regex(t, pr, err);
			if (r < 0)
				return -1;
			op.re = r;
		} else {
			return sft_error_set(err, SFT_EXIT_DATA, "Replace normalizer pattern is neither String nor Regex");
		}
		op.content = tok_strndup(c, strlen(c));
		op.content_len = strlen(c);
	} else {
		return sft_error_set(err, SFT_EXIT_DATA, "unsupported normalizer type '%s'", ty);
	}
	norm_op *nn = realloc(t->norms, (t->n_norms + 1) * sizeof *nn);
	if (!nn) {
		free(op.pat);
		free(op.content);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	t->norms = nn;
	t->norms[t->n_norms++] = op;
	return 0;
}

static int push_pre(tokenizer *t, pre_op *op, sft_error *err)
{
	pre_op *np = realloc(t->pres, (t->n_pres + 1) * sizeof *np);
	if (!np)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	t->pres = np;
	t->pres[t->n_pres++] = *op;
	return 0;
}

static int load_pretok(tokenizer *t, json_t *o, sft_error *err)
{
	if (json_is_null(o) || !o)
		return 0;
	const char *ty = jstr(o, "type");
	if (!ty)
		return sft_error_set(err, SFT_EXIT_DATA, "pre_tokenizer without a type");
	if (!strcmp(ty, "Sequence"))
		return load_sequence(t, o, "pretokenizers", "pre_tokenizer", load_pretok, err);
	pre_op op = { 0 };
	op.re = -1;
	if (!strcmp(ty, "ByteLevel")) {
		op.type = PRE_BYTELEVEL;
		op.add_prefix_space = jbool(o, "add_prefix_space", 1);
		if (jbool(o, "use_regex", 1)) {
			int r = tok_add_regex(t, TOK_RE_GPT2, err);
			if (r < 0)
				return -1;
			op.re = r;
			op.fast = tok_fast_ready() ? 1 : 0;
		}
	} else if (!strcmp(ty, "Split")) {
		op.type = PRE_SPLIT;
		json_t *pat = json_object_get(o, "pattern");
		const char *ps = json_is_object(pat) ? jstr(pat, "String") : NULL;
		const char *pr = json_is_object(pat) ? jstr(pat, "Regex") : NULL;
		int r;
		if (pr) {
			r = tok_add_regex(t, pr, err);
			op.fast = tok_fast_ready() ? tok_fast_id(pr) : 0;
		}
		else if (ps)
			r = tok_add_literal_regex(t, ps, strlen(ps), err);
		else
			return sft_error_set(err, SFT_EXIT_DATA, "Split pre_tokenizer pattern is neither String nor Regex");
		if (r < 0)
			return -1;
		op.re = r;
		if (parse_behavior(jstr(o, "behavior"), &op.behavior) < 0)
			return sft_error_set(err, SFT_EXIT_DATA, "Split pre_tokenizer: unknown behavior");
		op.invert = jbool(o, "invert", 0);
	} else if (!strcmp(ty, "Digits")) {
		op.type = PRE_DIGITS;
		op.individual_digits = jbool(o, "individual_digits", 0);
	} else if (!strcmp(ty, "Metaspace")) {
		op.type = PRE_METASPACE;
		const char *r = jstr(o, "replacement");
		if (!r)
			r = "\xE2\x96\x81";
		if (first_cp(r, &op.repl_cp) < 0 || strlen(r) >= sizeof op.repl)
			return sft_error_set(err, SFT_EXIT_DATA, "Metaspace replacement must be one character");
		memcpy(op.repl, r, strlen(r) + 1);
		op.repl_len = strlen(r);
		op.prepend_scheme = parse_prepend(o, PREPEND_ALWAYS);
		op.split = jbool(o, "split", 1);
	} else if (!strcmp(ty, "Whitespace")) {
		op.type = PRE_WHITESPACE;
		int r = tok_add_regex(t, "\\w+|[^\\w\\s]+", err);
		if (r < 0)
			return -1;
		op.re = r;
		op.behavior = BEH_REMOVED;
		op.invert = 1;
	} else if (!strcmp(ty, "WhitespaceSplit")) {
		op.type = PRE_WSSPLIT;
	} else if (!strcmp(ty, "Punctuation")) {
		op.type = PRE_PUNCT;
		op.behavior = BEH_ISOLATED;
		const char *b = jstr(o, "behavior");
		if (b && parse_behavior(b, &op.behavior) < 0)
			return sft_error_set(err, SFT_EXIT_DATA, "Punctuation pre_tokenizer: unknown behavior");
	} else {
		return sft_error_set(err, SFT_EXIT_DATA, "unsupported pre_tokenizer type '%s'", ty);
	}
	return push_pre(t, &op, err);
}

static int ids_append(uint32_t **arr, size_t *n, uint32_t id)
{
	uint32_t *na = realloc(*arr, (*n + 1) * sizeof *na);
	if (!na)
		return -1;
	*arr = na;
	na[(*n)++] = id;
	return 0;
}

static int load_post(tokenizer *t, json_t *o, sft_error *err)
{
	if (json_is_null(o) || !o)
		return 0;
	const char *ty = jstr(o, "type");
	if (!ty)
		return sft_error_set(err, SFT_EXIT_DATA, "post_processor without a type");
	if (!strcmp(ty, "Sequence"))
		return load_sequence(t, o, "processors", "post_processor", load_post, err);
	if (!strcmp(ty, "ByteLevel"))
		return 0; /* only trims offsets */
	if (!strcmp(ty, "TemplateProcessing")) {
		json_t *single = json_object_get(o, "single"), *sp = json_object_get(o, "special_tokens");
		if (!json_is_array(single))
			return sft_error_set(err, SFT_EXIT_DATA, "TemplateProcessing without single");
		free(t->pre_ids);
		free(t->post_ids);
		t->pre_ids = t->post_ids = NULL;
		t->n_pre_ids = t->n_post_ids = 0;
		int seen_seq = 0;
		size_t i;
		json_t *v;
		json_array_foreach(single, i, v) {
			json_t *stok = json_object_get(v, "SpecialToken");
			if (json_object_get(v, "Sequence")) {
				seen_seq = 1;
				continue;
			}
			const char *name = json_is_object(stok) ? jstr(stok, "id") : NULL;
			json_t *def = name ? json_object_get(sp, name) : NULL;
			json_t *ids = json_object_get(def, "ids");
			if (!json_is_array(ids))
				return sft_error_set(err, SFT_EXIT_DATA, "TemplateProcessing: special token '%s' is not defined",
				                     name ? name : "?");
			size_t k;
			json_t *iv;
			json_array_foreach(ids, k, iv) {
				json_int_t id = json_integer_value(iv);
				if (!json_is_integer(iv) || id < 0 || id > INT32_MAX)
					return sft_error_set(err, SFT_EXIT_DATA, "TemplateProcessing: bad id for '%s'", name);
				if (ids_append(seen_seq ? &t->post_ids : &t->pre_ids, seen_seq ? &t->n_post_ids : &t->n_pre_ids,
				               (uint32_t)id) < 0)
					return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			}
		}
		return 0;
	}
	if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
		json_t *cls = json_object_get(o, "cls"), *sep = json_object_get(o, "sep");
		if (!json_is_array(cls) || !json_is_array(sep) || !json_is_integer(json_array_get(cls, 1)) ||
		    !json_is_integer(json_array_get(sep, 1)))
			return sft_error_set(err, SFT_EXIT_DATA, "%s without cls/sep", ty);
		json_int_t c = json_integer_value(json_array_get(cls, 1)), s = json_integer_value(json_array_get(sep, 1));
		if (c < 0 || s < 0 || c > INT32_MAX || s > INT32_MAX)
			return sft_error_set(err, SFT_EXIT_DATA, "%s: bad ids", ty);
		free(t->pre_ids);
		free(t->post_ids);
		t->pre_ids = t->post_ids = NULL;
		t->n_pre_ids = t->n_post_ids = 0;
		if (ids_append(&t->pre_ids, &t->n_pre_ids, (uint32_t)c) < 0 ||
		    ids_append(&t->post_ids, &t->n_post_ids, (uint32_t)s) < 0)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return 0;
	}
	return sft_error_set(err, SFT_EXIT_DATA, "unsupported post_processor type '%s'", ty);
}

static int load_decoder(tokenizer *t, json_t *o, sft_error *err)
{
	if (json_is_null(o) || !o)
		return 0;
	const char *ty = jstr(o, "type");
	if (!ty)
		return sft_error_set(err, SFT_EXIT_DATA, "decoder without a type");
	t->have_decoder = 1;
	if (!strcmp(ty, "Sequence"))
		return load_sequence(t, o, "decoders", "decoder", load_decoder, err);
	dec_op d = { 0 };
	if (!strcmp(ty, "ByteLevel"))
		d.type = DEC_BYTELEVEL;
	else if (!strcmp(ty, "ByteFallback"))
		d.type = DEC_BYTEFALLBACK;
	else if (!strcmp(ty, "Fuse"))
		d.type = DEC_FUSE;
	else if (!strcmp(ty, "Metaspace")) {
		d.type = DEC_METASPACE;
		const char *r = jstr(o, "replacement");
		if (first_cp(r ? r : "\xE2\x96\x81", &d.cp) < 0)
			return sft_error_set(err, SFT_EXIT_DATA, "Metaspace decoder replacement must be one character");
		d.prepend_scheme = parse_prepend(o, PREPEND_ALWAYS);
	} else if (!strcmp(ty, "Strip")) {
		d.type = DEC_STRIP;
		if (first_cp(jstr(o, "content"), &d.cp) < 0)
			return sft_error_set(err, SFT_EXIT_DATA, "Strip decoder content must be one character");
		json_int_t a = json_integer_value(json_object_get(o, "start")), b = json_integer_value(json_object_get(o, "stop"));
		d.start = a < 0 ? 0 : a > 1000000 ? 1000000 : (int)a;
		d.stop = b < 0 ? 0 : b > 1000000 ? 1000000 : (int)b;
	} else if (!strcmp(ty, "Replace")) {
		d.type = DEC_REPLACE;
		json_t *pat = json_object_get(o, "pattern");
		const char *ps = json_is_object(pat) ? jstr(pat, "String") : NULL;
		const char *c = jstr(o, "content");
		if (!ps || !c)
			return sft_error_set(err, SFT_EXIT_DATA, "Replace decoder: only String patterns are supported");
		d.pat = tok_strndup(ps, strlen(ps));
		d.pat_len = strlen(ps);
		d.content = tok_strndup(c, strlen(c));
		d.content_len = strlen(c);
	} else {
		return sft_error_set(err, SFT_EXIT_DATA, "unsupported decoder type '%s'", ty);
	}
	dec_op *nd = realloc(t->decs, (t->n_decs + 1) * sizeof *nd);
	if (!nd) {
		free(d.pat);
		free(d.content);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	t->decs = nd;
	t->decs[t->n_decs++] = d;
	return 0;
}

/* jansson cannot hold U+0000 in object keys, but vocabularies may contain it: before
 * parsing, "\u0000" escapes become U+10FFFF (a noncharacter) and tok_unnul() maps them
 * back in token strings. */
#define NUL_STANDIN "\xF4\x8F\xBF\xBF"
static char *json_nul_standin(const char *json, size_t len, size_t *outlen)
{
	char *o = malloc(len * 2 + 16); /* each 6-byte escape becomes 12 bytes */
	if (!o)
		return NULL;
	size_t j = 0;
	for (size_t i = 0; i < len;) {
		if (json[i] == '\\' && i + 1 < len) {
			if (json[i + 1] == 'u' && i + 6 <= len && !memcmp(json + i + 2, "0000", 4)) {
				memcpy(o + j, "\\udbff\\udfff", 12);
				j += 12;
				i += 6;
				continue;
			}
			o[j++] = json[i++];
			o[j++] = json[i++];
			continue;
		}
		o[j++] = json[i++];
	}
	*outlen = j;
	return o;
}

/* copies s[0..n) mapping the U+0000 stand-in back to NUL; *outn gets the new length */
static char *tok_unnul(const char *s, size_t n, size_t *outn)
{
	char *o = malloc(n + 1);
	if (!o)
		return NULL;
	size_t j = 0;
	for (size_t i = 0; i < n;) {
		if (i + 4 <= n && !memcmp(s + i, NUL_STANDIN, 4)) {
			o[j++] = 0;
			i += 4;
		} else {
			o[j++] = s[i++];
		}
	}
	o[j] = 0;
	*outn = j;
	return o;
}

static int load_model(tokenizer *t, json_t *m, sft_error *err)
{
	if (!json_is_object(m))
		return sft_error_set(err, SFT_EXIT_DATA, "tokenizer.json has no model");
	const char *ty = jstr(m, "type");
	json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
	if (ty && strcmp(ty, "BPE") != 0)
		return sft_error_set(err, SFT_EXIT_DATA, "unsupported model type '%s' (only BPE is supported)", ty);
	if (!ty && !json_is_array(merges))
		return sft_error_set(err, SFT_EXIT_DATA, "unsupported model (no type and no merges; only BPE is supported)");
	if (!json_is_object(vocab))
		return sft_error_set(err, SFT_EXIT_DATA, "BPE model without a vocab object");
	const char *csp = jstr(m, "continuing_subword_prefix"), *eow = jstr(m, "end_of_word_suffix");
	if ((csp && *csp) || (eow && *eow))
		return sft_error_set(err, SFT_EXIT_DATA, "unsupported BPE option continuing_subword_prefix/end_of_word_suffix");
	json_t *drop = json_object_get(m, "dropout");
	if (json_is_number(drop) && json_number_value(drop) > 0)
		return sft_error_set(err, SFT_EXIT_DATA, "unsupported BPE option dropout");
	const char *k;
	json_t *v;
	json_object_foreach(vocab, k, v) {
		json_int_t id = json_integer_value(v);
		if (!json_is_integer(v) || id < 0 || id >= (1 << 24))
			return sft_error_set(err, SFT_EXIT_DATA, "vocab entry '%s' has a bad id", k);
		size_t kl = json_object_iter_key_len(json_object_key_to_iter(k)), ul;
		char *u = tok_unnul(k, kl, &ul);
		if (!u || tok_set_token(t, (uint32_t)id, u, ul) < 0) {
			free(u);
			return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		}
		free(u);
	}
	if (tok_finish_vocab(t, err) < 0)
		return -1;
	t->fuse_unk = jbool(m, "fuse_unk", 0);
	t->byte_fallback = jbool(m, "byte_fallback", 0);
	t->ignore_merges = jbool(m, "ignore_merges", 0);
	const char *unk = jstr(m, "unk_token");
	if (unk) {
		t->unk_id = tok_model_lookup(t, unk, strlen(unk));
		if (t->unk_id < 0)
			return sft_error_set(err, SFT_EXIT_DATA, "unk_token '%s' is not in the vocab", unk);
	}
	size_t nm = json_is_array(merges) ? json_array_size(merges) : 0;
	if (tok_merges_alloc(t, nm) < 0)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	for (size_t i = 0; i < nm; i++) {
		json_t *e = json_array_get(merges, i);
		const char *a, *b;
		size_t la, lb;
		if (json_is_string(e)) {
			const char *s = json_string_value(e);
			const char *sp = strchr(s, ' ');
			if (!sp || strchr(sp + 1, ' '))
				return sft_error_set(err, SFT_EXIT_DATA, "merge %zu '%s' is not two tokens", i, s);
			a = s;
			la = (size_t)(sp - s);
			b = sp + 1;
			lb = strlen(b);
		} else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
		           json_is_string(json_array_get(e, 1))) {
			a = json_string_value(json_array_get(e, 0));
			b = json_string_value(json_array_get(e, 1));
			la = json_string_length(json_array_get(e, 0));
			lb = json_string_length(json_array_get(e, 1));
		} else {
			return sft_error_set(err, SFT_EXIT_DATA, "merge %zu is not a pair of strings", i);
		}
		int64_t ia, ib;
		if (!memchr(a, 0xF4, la) && !memchr(b, 0xF4, lb)) { /* no U+0000 stand-in: the common case */
			ia = tok_model_lookup(t, a, la);
			ib = tok_model_lookup(t, b, lb);
		} else {
			size_t ula, ulb;
			char *ua = tok_unnul(a, la, &ula), *ub = tok_unnul(b, lb, &ulb);
			if (!ua || !ub) {
				free(ua);
				free(ub);
				return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			}
			ia = tok_model_lookup(t, ua, ula);
			ib = tok_model_lookup(t, ub, ulb);
			free(ua);
			free(ub);
		}
		if (ia < 0 || ib < 0)
			return sft_error_set(err, SFT_EXIT_DATA, "merge %zu refers to a token not in the vocab", i);
		if (tok_add_merge(t, (uint32_t)ia, (uint32_t)ib, (uint32_t)i, err) < 0)
			return -1;
	}
	return 0;
}

static char *dup_token_field(json_t *v)
{
	if (json_is_string(v))
		return tok_strndup(json_string_value(v), json_string_length(v));
	if (json_is_object(v)) {
		json_t *c = json_object_get(v, "content");
		if (json_is_string(c))
			return tok_strndup(json_string_value(c), json_string_length(c));
	}
	return NULL;
}

/* add_bos_token / add_eos_token from tokenizer_config.json: -1 when absent */
typedef struct cfg_flags { int add_bos, add_eos; } cfg_flags;

static int load_config(tokenizer *t, const char *cfg, size_t len, cfg_flags *fl, sft_error *err)
{
	json_error_t je;
	json_t *c = json_loadb(cfg, len, JSON_DECODE_INT_AS_REAL, &je); /* model_max_length is often int(1e30) */
	if (!c)
		return sft_error_set(err, SFT_EXIT_DATA, "tokenizer_config.json:%d:%d: %s", je.line, je.column, je.text);
	if (!json_is_object(c)) {
		json_decref(c);
		return sft_error_set(err, SFT_EXIT_DATA, "tokenizer_config.json: not a JSON object");
	}
	json_t *ct = json_object_get(c, "chat_template");
	if (json_is_string(ct)) {
		t->chat_template = tok_strndup(json_string_value(ct), json_string_length(ct));
	} else if (json_is_array(ct)) {
		size_t i;
		json_t *v;
		json_array_foreach(ct, i, v) {
			const char *nm = jstr(v, "name"), *tp = jstr(v, "template");
			if (nm && tp && !strcmp(nm, "default"))
				t->chat_template = tok_strndup(tp, strlen(tp));
		}
	}
	json_t *ab = json_object_get(c, "add_bos_token"), *ae = json_object_get(c, "add_eos_token");
	fl->add_bos = json_is_boolean(ab) ? json_is_true(ab) : -1;
	fl->add_eos = json_is_boolean(ae) ? json_is_true(ae) : -1;
	const char *names[4] = { "bos_token", "eos_token", "pad_token", "unk_token" };
	char **dst[4] = { &t->bos, &t->eos, &t->pad, &t->unk };
	for (int i = 0; i < 4; i++) {
		char *s = dup_token_field(json_object_get(c, names[i]));
		if (s) {
			free(*dst[i]);
			*dst[i] = s;
		}
	}
	json_decref(c);
	return 0;
}

static char *read_file(const char *path, size_t *len, sft_error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		return NULL;
	}
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap);
	while (b) {
		if (n == cap) {
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
			cap *= 2;
		}
		size_t r = fread(b + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	int bad = ferror(f);
	fclose(f);
	if (!b || bad) {
		free(b);
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: read error", path);
		return NULL;
	}
	*len = n;
	return b;
}

static void special_from_ids(tokenizer *t)
{
	if (!t->bos && t->n_pre_ids) {
		const char *s = tokenizer_id_to_token(t, t->pre_ids[0]);
		if (s)
			t->bos = tok_strndup(s, strlen(s));
	}
	if (!t->eos && t->n_post_ids) {
		const char *s = tokenizer_id_to_token(t, t->post_ids[0]);
		if (s)
			t->eos = tok_strndup(s, strlen(s));
	}
}

tokenizer *tokenizer_load_json(const char *json, size_t len, const char *config_json, size_t config_len,
                               const char *name, sft_error *err)
{
	if (!name)
		name = "tokenizer.json";
	tokenizer *t = tok_new();
	if (!t) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	json_error_t je;
	json_t *root;
	if (memmem(json, len, "\\u0000", 6)) {
		size_t nl;
		char *cp = json_nul_standin(json, len, &nl);
		if (!cp) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			tokenizer_free(t);
			return NULL;
		}
		root = json_loadb(cp, nl, 0, &je);
		free(cp);
	} else {
		root = json_loadb(json, len, 0, &je);
	}
	if (!root) {
		sft_error_set(err, SFT_EXIT_DATA, "%s:%d:%d: %s", name, je.line, je.column, je.text);
		tokenizer_free(t);
		return NULL;
	}
	int rc = 0;
	if (!json_is_object(root))
		rc = sft_error_set(err, SFT_EXIT_DATA, "not a JSON object");
	if (!rc)
		rc = load_model(t, json_object_get(root, "model"), err);
	if (!rc)
		rc = load_normalizer(t, json_object_get(root, "normalizer"), err);
	if (!rc)
		rc = load_pretok(t, json_object_get(root, "pre_tokenizer"), err);
	if (!rc)
		rc = load_post(t, json_object_get(root, "post_processor"), err);
	if (!rc)
		rc = load_decoder(t, json_object_get(root, "decoder"), err);
	if (!rc) {
		json_t *at = json_object_get(root, "added_tokens");
		size_t i;
		json_t *v;
		if (at && !json_is_array(at) && !json_is_null(at))
			rc = sft_error_set(err, SFT_EXIT_DATA, "added_tokens is not an array");
		json_array_foreach(at, i, v) {
			json_t *idv = json_object_get(v, "id"), *cv = json_object_get(v, "content");
			json_int_t id = json_integer_value(idv);
			if (!json_is_integer(idv) || id < 0 || id >= (1 << 24) || !json_is_string(cv) || json_string_length(cv) == 0) {
				rc = sft_error_set(err, SFT_EXIT_DATA, "added_tokens[%zu]: needs an id and a non-empty content", i);
				break;
			}
			size_t ul;
			char *u = tok_unnul(json_string_value(cv), json_string_length(cv), &ul);
			if (!u || tok_add_added(t, (uint32_t)id, u, ul, jbool(v, "special", 0), jbool(v, "lstrip", 0),
			                        jbool(v, "rstrip", 0), jbool(v, "normalized", 1), jbool(v, "single_word", 0)) < 0) {
				free(u);
				rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
				break;
			}
			free(u);
		}
	}
	json_decref(root);
	for (size_t i = 0; !rc && i < t->n_pre_ids + t->n_post_ids; i++) {
		uint32_t id = i < t->n_pre_ids ? t->pre_ids[i] : t->post_ids[i - t->n_pre_ids];
		if (id >= t->n_ids)
			rc = sft_error_set(err, SFT_EXIT_DATA, "post_processor id %u is out of the vocabulary", id);
	}
	if (!rc)
		rc = tok_finalize(t, err);
	cfg_flags fl = { -1, -1 };
	if (!rc && config_json)
		rc = load_config(t, config_json, config_len, &fl, err);
	/* add_bos_token / add_eos_token in tokenizer_config.json are read but not applied:
	 * transformers 5 (TokenizersBackend, LlamaTokenizer, GemmaTokenizer) keeps the
	 * tokenizer.json post-processor too (checked with transformers 5.23) */
	(void)fl;
	if (rc) {
		sft_error_prefix(err, "%s", name);
		tokenizer_free(t);
		return NULL;
	}
	t->add_bos = t->n_pre_ids > 0;
	t->add_eos = t->n_post_ids > 0;
	special_from_ids(t);
	XXH3_state_t *xs = XXH3_createState();
	if (xs) {
		XXH3_128bits_reset(xs);
		XXH3_128bits_update(xs, json, len);
		if (t->chat_template)
			XXH3_128bits_update(xs, t->chat_template, strlen(t->chat_template));
		XXH128_hash_t hh = XXH3_128bits_digest(xs);
		XXH128_canonical_t c;
		XXH128_canonicalFromHash(&c, hh);
		memcpy(t->fp, c.digest, 16);
		XXH3_freeState(xs);
	}
	return t;
}

tokenizer *tokenizer_load(const char *path, sft_error *err)
{
	if (!path) {
		sft_error_set(err, SFT_EXIT_USAGE, "no tokenizer path");
		return NULL;
	}
	struct stat sb;
	if (stat(path, &sb) != 0) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		return NULL;
	}
	size_t pl = strlen(path);
	if (!S_ISDIR(sb.st_mode) && pl >= 5 && !strcmp(path + pl - 5, ".gguf"))
		return tokenizer_load_gguf(path, err);
	char *jpath = NULL, *cpath = NULL;
	if (S_ISDIR(sb.st_mode)) {
		jpath = malloc(pl + 32);
		cpath = malloc(pl + 32);
		if (!jpath || !cpath) {
			free(jpath);
			free(cpath);
			sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			return NULL;
		}
		sprintf(jpath, "%s/tokenizer.json", path);
		sprintf(cpath, "%s/tokenizer_config.json", path);
		if (stat(jpath, &sb) != 0) {
			free(jpath);
			free(cpath);
			/* a directory holding exactly one GGUF file */
			DIR *d = opendir(path);
			char *gguf = NULL;
			int n_gguf = 0;
			struct dirent *de;
			while (d && (de = readdir(d))) {
				size_t l = strlen(de->d_name);
				if (l > 5 && !strcmp(de->d_name + l - 5, ".gguf")) {
					n_gguf++;
					free(gguf);
					gguf = malloc(pl + l + 2);
					if (gguf)
						sprintf(gguf, "%s/%s", path, de->d_name);
				}
			}
			if (d)
				closedir(d);
			if (n_gguf == 1 && gguf) {
				tokenizer *t = tokenizer_load_gguf(gguf, err);
				free(gguf);
				return t;
			}
			free(gguf);
			sft_error_set(err, SFT_EXIT_DATA, "%s: no tokenizer.json in the model directory (and %s)", path,
			              n_gguf ? "more than one .gguf file" : "no .gguf file");
			return NULL;
		}
	} else {
		if (gguf_path_is_gguf(path))
			return tokenizer_load_gguf(path, err);
		jpath = tok_strndup(path, pl);
		/* tokenizer_config.json beside it */
		const char *slash = strrchr(path, '/');
		size_t dl = slash ? (size_t)(slash - path + 1) : 0;
		cpath = malloc(dl + 32);
		if (cpath) {
			memcpy(cpath, path, dl);
			strcpy(cpath + dl, "tokenizer_config.json");
		}
	}
	size_t jl = 0, cl = 0;
	char *js = read_file(jpath, &jl, err);
	if (!js) {
		free(jpath);
		free(cpath);
		return NULL;
	}
	char *cs = NULL;
	if (cpath && stat(cpath, &sb) == 0) {
		cs = read_file(cpath, &cl, err);
		if (!cs) {
			free(js);
			free(jpath);
			free(cpath);
			return NULL;
		}
	}
	tokenizer *t = tokenizer_load_json(js, jl, cs, cl, jpath, err);
	free(js);
	free(cs);
	free(jpath);
	free(cpath);
	return t;
}
