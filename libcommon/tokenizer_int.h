/* tokenizer_int.h - private structures shared by tokenizer*.c (not a public API). */
#ifndef SFT_TOKENIZER_INT_H
#define SFT_TOKENIZER_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>
#include <stddef.h>
#include "tokenizer.h"

/* string -> id open-addressing hash (ids index into a string table) */
typedef struct tok_hash {
	uint64_t *slots; /* UINT64_MAX = empty; else (hash >> 32) << 32 | id: the tag spares a
	                  * string comparison (and its cache misses) on most probes */
	size_t mask;
} tok_hash;

enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_REPLACE, NORM_PREPEND, NORM_LOWER, NORM_STRIP };
typedef struct norm_op {
	int type;
	char *pat; size_t pat_len;   /* Replace: literal pattern (re == NULL) */
	int re;                      /* Replace: regex index or -1 */
	char *content; size_t content_len;
	int left, right;             /* Strip */
} norm_op;

enum { PRE_BYTELEVEL, PRE_SPLIT, PRE_DIGITS, PRE_METASPACE, PRE_WHITESPACE, PRE_WSSPLIT, PRE_PUNCT };
enum { BEH_REMOVED, BEH_ISOLATED, BEH_MERGED_PREV, BEH_MERGED_NEXT, BEH_CONTIGUOUS };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
typedef struct pre_op {
	int type;
	int re;               /* regex index (Split, ByteLevel with use_regex, Whitespace) or -1 */
	int behavior, invert;
	int add_prefix_space;
	int individual_digits;
	char repl[8]; size_t repl_len; uint32_t repl_cp;
	int prepend_scheme, split;
	int fast;             /* hand-written splitter id (0 = use PCRE2) */
} pre_op;

enum { DEC_BYTELEVEL, DEC_BYTEFALLBACK, DEC_METASPACE, DEC_FUSE, DEC_STRIP, DEC_REPLACE };
typedef struct dec_op {
	int type;
	char *pat; size_t pat_len;
	char *content; size_t content_len;
	uint32_t cp; int start, stop; int prepend_scheme;
} dec_op;

typedef struct added_tok {
	uint32_t id;
	char *content; size_t len;
	char *norm; size_t norm_len; /* normalized content (normalized tokens) */
	int single_word, lstrip, rstrip, normalized, special;
} added_tok;

/* byte trie for added-token matching (leftmost-longest) */
typedef struct trie_node { int32_t next[256]; int32_t tok; } trie_node;
typedef struct tok_trie { trie_node *nodes; size_t n, cap; uint8_t first[256]; int empty; } tok_trie;

typedef struct merge_ent { uint64_t key; uint32_t rank, new_id; } merge_ent;

struct tokenizer {
	uint32_t serial;
	/* model (BPE) */
	uint32_t n_ids;             /* max id + 1 over model vocab and added tokens */
	char **model_str; uint32_t *model_len; uint32_t model_cap; /* by id; NULL for gaps */
	tok_hash model_hash;        /* model vocab */
	merge_ent *merges; size_t merge_mask;
	int64_t unk_id; int fuse_unk, byte_fallback, ignore_merges;
	int spm_split;              /* see bpe_piece() */
	uint32_t byte_ids[256]; int have_byte_ids; /* <0xXX> ids for byte fallback */
	/* added tokens */
	added_tok *added; size_t n_added;
	int32_t *added_by_id;       /* id -> index in added or -1 (size n_ids) */
	tok_trie trie_raw, trie_norm;
	/* pipeline */
	norm_op *norms; size_t n_norms;
	pre_op *pres; size_t n_pres;
	dec_op *decs; size_t n_decs; int have_decoder;
	pcre2_code **res; size_t n_res;
	/* post-processor (single sequence) */
	uint32_t *pre_ids; size_t n_pre_ids;
	uint32_t *post_ids; size_t n_post_ids;
	/* metadata */
	char *chat_template;
	char *bos, *eos, *pad, *unk;
	int add_bos, add_eos;
	uint8_t fp[16];
	pthread_key_t key;
};

/* library-private helpers in tokenizer.c used by tokenizer_gguf.c */
tokenizer *tok_new(void);
int tok_set_token(tokenizer *t, uint32_t id, const char *s, size_t n);
int tok_finish_vocab(tokenizer *t, sft_error *err);
int tok_add_merge(tokenizer *t, uint32_t a, uint32_t b, uint32_t rank, sft_error *err);
int tok_merges_alloc(tokenizer *t, size_t n);
int tok_add_regex(tokenizer *t, const char *pat, sft_error *err);
int tok_add_added(tokenizer *t, uint32_t id, const char *s, size_t n, int special, int lstrip,
                  int rstrip, int normalized, int single_word);
int tok_finalize(tokenizer *t, sft_error *err);
int64_t tok_model_lookup(const tokenizer *t, const char *s, size_t n);
char *tok_strndup(const char *s, size_t n);

extern const char *const TOK_RE_GPT2;
extern const char *const TOK_RE_LLAMA3;
extern const char *const TOK_RE_QWEN2;

tokenizer *tokenizer_load_gguf(const char *path, sft_error *err);

/* fast splitters: id of a known split regex (1 GPT-2, 2 Llama 3, 3 Qwen2) or 0; whether
 * the class table could be built; and a test hook that splits text with pattern `fast`
 * by the hand-written splitter (use_fast) or PCRE2, returning the end of each piece */
int tok_fast_id(const char *pat);
int tok_fast_ready(void);
int tok_debug_split(int fast, int use_fast, const char *text, size_t len, size_t **ends, size_t *n);

#endif
