/* pack - pack token streams into fixed-budget rows and write sharded, indexed,
 * checksummed shard files (docs/pack.md, docs/FORMAT.md). Also inspects, verifies,
 * summarises and unpacks a packed directory. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic.h"
#include "cli.h"
#include "jsonl.h"
#include "log.h"
#include "pack.h"
#include "progress.h"
#include "shard.h"
#include "tokenizer.h"

enum strategy { ST_BFD, ST_BFD_SPLIT, ST_WRAPPED, ST_NONE };
static const char *const STRATEGY_NAMES[] = {"bfd", "bfd-split", "wrapped", "none"};
enum mode { MODE_PACK, MODE_INSPECT, MODE_STATS, MODE_VERIFY, MODE_UNPACK };

enum {
	OPT_OUT = 'o',
	OPT_SEQ_LEN = 256,
	OPT_SHARD_TOKENS,
	OPT_STRATEGY,
	OPT_TRUNCATION,
	OPT_PAD_MULT,
	OPT_PAD_ID,
	OPT_SEED,
	OPT_MAX_DOCS,
	OPT_VOCAB,
	OPT_FORCE,
	OPT_INSPECT,
	OPT_ROW,
	OPT_TOKENIZER,
	OPT_STATS,
	OPT_VERIFY,
	OPT_UNPACK,
	OPT_EMIT,
	OPT_THREADS = 'j', /* the short option's character is its id */
};

typedef struct opts {
	const char *out;
	long long seq_len, shard_tokens, pad_mult, pad_id, max_docs, vocab;
	long long seed;
	int has_seed;
	enum strategy strategy;
	int drop_long; /* --truncation drop */
	int force;
	enum mode mode;
	const char *target; /* DIR for inspect/stats/verify/unpack */
	long long row;      /* --row, -1 = all */
	const char *tokenizer;
	const char *emit;
	long long threads; /* -j: 1 = windows packed in the reading thread */
} opts;

static const cli_option OPTIONS[] = {
	{"out", 'o', CLI_REQ_ARG, "DIR", "output directory (created atomically; must not exist unless --force)", OPT_OUT},
	{"seq-len", 0, CLI_REQ_ARG, "N", "row length budget in tokens (default 2048)", OPT_SEQ_LEN},
	{"shard-tokens", 0, CLI_REQ_ARG, "N",
	 "at most N tokens per shard file (default 67108864); documents are\npacked in windows of this size, so memory is ~2 bytes x N\n(u16 ids; 4 for u32)",
	 OPT_SHARD_TOKENS},
	{"strategy", 0, CLI_REQ_ARG, "S",
	 "bfd (default: best-fit-decreasing, whole documents), bfd-split\n(split documents longer than a row), wrapped (concatenate and cut),\nnone (one document per row, padded)",
	 OPT_STRATEGY},
	{"truncation", 0, CLI_REQ_ARG, "T", "documents longer than --seq-len (bfd, none): keep-start (default) or drop",
	 OPT_TRUNCATION},
	{"pad-to-multiple-of", 0, CLI_REQ_ARG, "M", "strategy none: pad rows to a multiple of M (default: to --seq-len)",
	 OPT_PAD_MULT},
	{"pad-id", 0, CLI_REQ_ARG, "ID", "token id of pad tokens (strategy none; default 0)", OPT_PAD_ID},
	{"seed", 0, CLI_REQ_ARG, "N", "shuffle documents before packing and rows after (per window),\ndeterministically; default: keep input order",
	 OPT_SEED},
	{"max-docs-per-row", 0, CLI_REQ_ARG, "N", "at most N documents in a row (bfd, bfd-split; default unlimited)",
	 OPT_MAX_DOCS},
	{"vocab-size", 0, CLI_REQ_ARG, "N", "vocab size for JSONL inputs (binary inputs carry their own)", OPT_VOCAB},
	{"threads", 'j', CLI_REQ_ARG, "N",
	 "threads (default: the number of cores): with N >= 2, a window is\npacked and written while the next one is read (output identical)",
	 OPT_THREADS},
	{"force", 'f', CLI_NO_ARG, NULL, "replace an existing --out directory", OPT_FORCE},
	{"inspect", 0, CLI_REQ_ARG, "DIR", "show rows of DIR (or one shard FILE): document boundaries,\n[trained spans], pads", OPT_INSPECT},
	{"row", 0, CLI_REQ_ARG, "K", "--inspect: only row K (global row number)", OPT_ROW},
	{"tokenizer", 0, CLI_REQ_ARG, "T",
	 "--inspect: decode tokens to text with this tokenizer (tokenizer.json,\nmodel directory or .gguf); trained spans in [[...]]",
	 OPT_TOKENIZER},
	{"stats", 0, CLI_REQ_ARG, "DIR", "print the manifest in human form", OPT_STATS},
	{"verify", 0, CLI_REQ_ARG, "DIR", "check every file: checksum, bounds, totals against the manifest\n(or read a stream FILE / - to its end marker)", OPT_VERIFY},
	{"unpack", 0, CLI_REQ_ARG, "DIR", "write the documents back, in original input order, to stdout", OPT_UNPACK},
	{"emit", 0, CLI_REQ_ARG, "F", "--unpack output: jsonl (default) or stream (binary stream form)", OPT_EMIT},
	{NULL, 0, 0, NULL, NULL, 0},
};

static const cli_spec SPEC = {
	.prog = "pack",
	.usage = "[options] --out DIR [INPUT...]\n       pack --inspect|--stats|--verify|--unpack DIR",
	.summary = "Packs tokenized documents (sftkit token streams or files, or JSONL\n"
		   "{\"input_ids\":[...],\"mask\":[...]} lines; no INPUT or '-' = stdin) into rows of at\n"
		   "most --seq-len tokens and writes shard files of at most --shard-tokens tokens plus\n"
		   "DIR/manifest.json. Packed rows record their documents (segments) so attention never\n"
		   "crosses documents. All inputs must come from the same tokenizer.",
	.opts = OPTIONS,
	.examples = "  tok-encode --model models/SmolLM2-135M-Instruct --assistant-only chat.jsonl \\\n"
		    "    | pack --seq-len 2048 --out data/train\n"
		    "  pack --strategy none --pad-to-multiple-of 8 --seq-len 1024 --out data/test test.tok\n"
		    "  pack --stats data/train && pack --verify data/train\n"
		    "  pack --inspect data/train --row 3 --tokenizer models/SmolLM2-135M-Instruct\n"
		    "  pack --unpack data/train --emit jsonl > docs.jsonl\n",
	.footer = NULL, /* cli prints the exit codes */
};

static int on_opt(void *ctx, int id, const char *arg, const char *source, sft_error *err)
{
	opts *o = ctx;
	(void)source;
	switch (id) {
	case OPT_OUT: o->out = arg; return 0;
	case OPT_SEQ_LEN: return cli_parse_long("seq-len", arg, 1, 1 << 24, &o->seq_len, err);
	case OPT_SHARD_TOKENS: return cli_parse_long("shard-tokens", arg, 1, 1LL << 32, &o->shard_tokens, err);
	case OPT_PAD_MULT: return cli_parse_long("pad-to-multiple-of", arg, 1, 1 << 24, &o->pad_mult, err);
	case OPT_PAD_ID: return cli_parse_long("pad-id", arg, 0, UINT32_MAX, &o->pad_id, err);
	case OPT_MAX_DOCS: return cli_parse_long("max-docs-per-row", arg, 0, UINT32_MAX, &o->max_docs, err);
	case OPT_VOCAB: return cli_parse_long("vocab-size", arg, 1, UINT32_MAX, &o->vocab, err);
	case OPT_THREADS: return cli_parse_long("threads", arg, 1, 1024, &o->threads, err);
	case OPT_ROW: return cli_parse_long("row", arg, 0, INT64_MAX, &o->row, err);
	case OPT_SEED:
		o->has_seed = 1;
		return cli_parse_long("seed", arg, 0, INT64_MAX, &o->seed, err);
	case OPT_FORCE: o->force = 1; return 0;
	case OPT_TOKENIZER: o->tokenizer = arg; return 0;
	case OPT_EMIT:
		if (strcmp(arg, "jsonl") && strcmp(arg, "stream"))
			return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --emit: expected jsonl or stream", arg);
		o->emit = arg;
		return 0;
	case OPT_STRATEGY:
		for (int i = 0; i < 4; i++)
			if (!strcmp(arg, STRATEGY_NAMES[i])) {
				o->strategy = (enum strategy)i;
				return 0;
			}
		return sft_error_set(err, SFT_EXIT_USAGE,
				     "invalid value '%s' for --strategy: expected bfd, bfd-split, wrapped or none", arg);
	case OPT_TRUNCATION:
		if (!strcmp(arg, "keep-start") || !strcmp(arg, "drop")) {
			o->drop_long = !strcmp(arg, "drop");
			return 0;
		}
		return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --truncation: expected keep-start or drop",
				     arg);
	case OPT_INSPECT: case OPT_STATS: case OPT_VERIFY: case OPT_UNPACK:
		if (o->mode != MODE_PACK)
			return sft_error_set(err, SFT_EXIT_USAGE, "--inspect, --stats, --verify and --unpack exclude each other");
		o->mode = id == OPT_INSPECT ? MODE_INSPECT : id == OPT_STATS ? MODE_STATS : id == OPT_VERIFY ? MODE_VERIFY : MODE_UNPACK;
		o->target = arg;
		return 0;
	}
	return sft_error_set(err, SFT_EXIT_INTERNAL, "unhandled option %d", id);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die(SFT_EXIT_RUNTIME, "out of memory (%zu bytes)", n);
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die(SFT_EXIT_RUNTIME, "out of memory (%zu bytes)", n);
	return p;
}

/* splitmix64: the one PRNG behind --seed */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void shuffle_u32(uint32_t *a, size_t n, uint64_t *s)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(rng_next(s) % i);
		uint32_t t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

/* ================= packing ================= */

/* A document (or piece) held in the current window. Its tokens live in the window store
 * (xt NULL), or, zero copy, in a mapped input (xt: the record's first token there, xb its
 * mask bits, bit xbit = that token's). */
typedef struct doc {
	uint64_t doc_id;
	uint64_t start; /* index into the store, or of the first token after xt */
	uint32_t offset, len;
	const uint8_t *xt, *xb;
	uint64_t xbit;
} doc;

typedef struct file_info {
	char name[32];
	shard_counts c;
	uint64_t bytes;
	uint8_t sum[16];
} file_info;

typedef struct packer {
	const opts *o;
	shard_header out_h;
	char *tmp_dir;
	/* window store, in the output's on-disk form: tokens in its width (u16 or u32) and
	 * the loss mask bit-packed (bit i of the store = token i), so rows are assembled with
	 * memcpy and bit-range copies */
	void *tok;
	uint8_t *mbits;
	uint64_t n_tok, cap_tok;
	doc *docs;
	size_t n_docs, cap_docs;
	uint64_t budget; /* tokens the window's rows may hold */
	size_t n_carry;  /* wrapped: pieces of the last window's partial row, first in docs[] */
	uint64_t seed_state;
	/* totals */
	uint64_t docs_in, docs_out, truncated, truncated_tokens, dropped, split, empty;
	uint64_t tokens_in;
	file_info *files;
	size_t n_files;
	progress prog;
	/* zero copy: the reader being read, the record being added, the first record of the
	 * window being filled (pins of the reader's mapping) */
	shard_reader *cur_rd;
	const void *cur_rec, *win_at;
	/* -j >= 2: the previous window, packed and written by a second thread (job) while this
	 * one fills; its docs array is swapped with `spare` */
	struct packer *job;
	pthread_t job_th;
	int job_rc;
	sft_error job_err;
	doc *spare;
	size_t cap_spare;
	/* -j >= 2: the readers are not pinned (their pages go as they are read); a window's
	 * pages are mapped in when it is packed and given back once it is written
	 * (window_pages), so one window's input is resident, not two */
	int unpinned;
	int pinned_now; /* unpinned: the reader is pinned again (no job running, or it is done) */
	int job_done;   /* set by the second thread once its window is written (__atomic) */
} packer;

/* Files committed inside the temporary directory, so a signal can remove them (unlink and
 * rmdir are async-signal-safe; rm -rf is not). */
#define MAX_DONE 100000
static char *g_done[MAX_DONE];
static volatile size_t g_n_done;
static char *g_tmp_dir; /* removed on failure */

static void done_add(const char *path)
{
	if (g_n_done < MAX_DONE && (g_done[g_n_done] = strdup(path)))
		g_n_done++;
}

static void store_reserve(packer *p, uint64_t extra)
{
	if (p->n_tok + extra <= p->cap_tok)
		return;
	uint64_t nc = p->cap_tok ? p->cap_tok : 1 << 16;
	while (nc < p->n_tok + extra)
		nc *= 2;
	p->tok = xrealloc(p->tok, nc * p->out_h.token_width);
	p->mbits = xrealloc(p->mbits, nc / 8 + 8);
	p->cap_tok = nc;
}

/* A document's tokens as they arrive: decoded (uint32 ids + one mask byte per token: JSONL,
 * or an input whose width differs from the output's) or raw, already in the output's
 * on-disk form (the fast path: tokens copied as they are, mask bits as bit ranges). */
typedef struct doc_src {
	const uint32_t *t32; /* decoded, when not NULL */
	const uint8_t *m8;
	const uint8_t *raw; /* raw: tokens in the output width */
	const uint8_t *mbits;
	size_t bit0; /* raw: bit of the first token in mbits */
	int keep;    /* raw from a mapping valid until the end: referenced, not copied */
} doc_src;

/* The source k tokens further on. */
static doc_src src_skip(doc_src s, size_t k, unsigned width)
{
	if (s.t32) {
		s.t32 += k;
		s.m8 += k;
	} else {
		s.raw += k * width;
		s.bit0 += k;
	}
	return s;
}

static void store_doc(packer *p, uint64_t doc_id, uint32_t offset, const doc_src *s, uint32_t n)
{
	if (s->keep) { /* zero copy: the tokens stay in the input's mapping */
		if (p->n_docs == p->cap_docs) {
			p->cap_docs = p->cap_docs ? p->cap_docs * 2 : 4096;
			p->docs = xrealloc(p->docs, p->cap_docs * sizeof *p->docs);
		}
		p->docs[p->n_docs++] =
			(doc){.doc_id = doc_id, .offset = offset, .len = n, .xt = s->raw, .xb = s->mbits, .xbit = s->bit0};
		return;
	}
	store_reserve(p, n);
	unsigned width = p->out_h.token_width;
	uint8_t *dt = (uint8_t *)p->tok + p->n_tok * width;
	if (!s->t32) {
		memcpy(dt, s->raw, (size_t)n * width);
		shard_bits_copy(p->mbits, p->n_tok, s->mbits, s->bit0, n);
	} else {
		if (width == 2) {
			uint16_t *restrict d = (uint16_t *)(void *)dt;
			const uint32_t *restrict src = s->t32;
			for (uint32_t i = 0; i < n; i++)
				d[i] = (uint16_t)src[i];
		} else {
			memcpy(dt, s->t32, (size_t)n * 4);
		}
		for (uint32_t i = 0; i < n; i++) {
			uint64_t b = p->n_tok + i;
			uint8_t bit = (uint8_t)(1u << (b & 7));
			p->mbits[b >> 3] = (uint8_t)(s->m8[i] ? p->mbits[b >> 3] | bit : p->mbits[b >> 3] & ~bit);
		}
	}
	if (p->n_docs == p->cap_docs) {
		p->cap_docs = p->cap_docs ? p->cap_docs * 2 : 4096;
		p->docs = xrealloc(p->docs, p->cap_docs * sizeof *p->docs);
	}
	p->docs[p->n_docs++] = (doc){.doc_id = doc_id, .start = p->n_tok, .offset = offset, .len = n};
	p->n_tok += n;
}

/* A document's tokens, and its mask bits (from bit *bit of the returned array). */
static inline const uint8_t *doc_tokens(const packer *p, const doc *d)
{
	return (d->xt ? d->xt : (const uint8_t *)p->tok) + d->start * p->out_h.token_width;
}

static inline const uint8_t *doc_bits(const packer *p, const doc *d, uint64_t *bit)
{
	*bit = d->xt ? d->xbit + d->start : d->start;
	return d->xt ? d->xb : p->mbits;
}

/* Tokens a document costs in the window (what its rows will hold). */
static uint64_t doc_cost(const packer *p, uint64_t len)
{
	uint64_t L = (uint64_t)p->o->seq_len;
	switch (p->o->strategy) {
	case ST_NONE: {
		uint64_t l = len < L ? len : L;
		if (p->o->pad_mult <= 0)
			return L;
		uint64_t m = (uint64_t)p->o->pad_mult;
		l = (l + m - 1) / m * m;
		return l < L ? l : L;
	}
	case ST_BFD: return len < L ? len : L;
	default: return len;
	}
}

/* Writes one row: its items' tokens and mask bits copied from the window store straight
 * into the writer's buffer, then pad tokens up to pad_to. */
static int emit_row(packer *p, shard_writer *w, const uint32_t *items, size_t n_items, uint32_t pad_to, sft_error *err)
{
	unsigned width = p->out_h.token_width;
	size_t n = 0;
	for (size_t j = 0; j < n_items; j++)
		n += p->docs[items[j]].len;
	size_t n_pad = pad_to > n ? pad_to - n : 0;
	shard_slot sl;
	if (shard_write_reserve(w, n + n_pad, n_items, n_pad, &sl, err) < 0)
		return -1;
	uint8_t *dt = sl.tokens;
	size_t at = 0;
	for (size_t j = 0; j < n_items; j++) {
		const doc *d = &p->docs[items[j]];
		uint64_t bit;
		const uint8_t *mb = doc_bits(p, d, &bit);
		memcpy(dt + at * width, doc_tokens(p, d), (size_t)d->len * width);
		shard_bits_copy(sl.mask_bits, at, mb, bit, d->len);
		sl.segs[j] = (shard_segment){.doc_id = d->doc_id, .offset = d->offset, .len = d->len};
		at += d->len;
	}
	for (size_t i = at; i < at + n_pad; i++) { /* mask bits of pads stay 0 */
		if (width == 2)
			((uint16_t *)(void *)dt)[i] = (uint16_t)p->out_h.pad_id;
		else
			((uint32_t *)(void *)dt)[i] = p->out_h.pad_id;
	}
	return shard_write_commit(w, err);
}

/* Unpinned readers: maps in (populate) or gives back the input pages the window's
 * documents [0, nd) reference in a mapping, in runs of nearby documents (input order). */
static void window_pages(const packer *p, size_t nd, int populate)
{
	unsigned width = p->out_h.token_width;
	const uint8_t *lo = NULL, *hi = NULL;
	for (size_t i = 0; i < nd; i++) {
		const doc *d = &p->docs[i];
		if (!d->xt)
			continue;
		const uint8_t *a = d->xt + d->start * width, *b = a + (size_t)d->len * width;
		const uint8_t *ma = d->xb + (d->xbit + d->start) / 8, *mb = d->xb + (d->xbit + d->start + d->len + 7) / 8;
		if (ma < a)
			a = ma;
		if (mb > b)
			b = mb;
		if (lo && a >= lo && a <= hi + 65536) {
			if (b > hi)
				hi = b;
			continue;
		}
		if (lo)
			shard_map_release(lo, (size_t)(hi - lo), populate);
		lo = a;
		hi = b;
	}
	if (lo)
		shard_map_release(lo, (size_t)(hi - lo), populate);
}

/* Packs the window's documents into one shard file. `final`: last window (wrapped keeps
 * its partial last row for the next window otherwise). */
static int flush_window(packer *p, int final, sft_error *err)
{
	const opts *o = p->o;
	uint32_t L = (uint32_t)o->seq_len;
	size_t nd = p->n_docs;
	if (nd == 0)
		return 0;
	if (p->unpinned) /* its input pages, mapped in at once (the reader gave them back) */
		window_pages(p, nd, 1);
	/* document order: input order, or shuffled by --seed */
	uint32_t *perm = xmalloc(nd * sizeof *perm);
	for (size_t i = 0; i < nd; i++)
		perm[i] = (uint32_t)i;
	/* wrapped: the carried partial row stays first */
	if (o->has_seed)
		shuffle_u32(perm + p->n_carry, nd - p->n_carry, &p->seed_state);
	/* items: pieces of documents, each <= L; rows: CSR over items */
	size_t cap_items = nd;
	if (o->strategy == ST_BFD_SPLIT || o->strategy == ST_WRAPPED) {
		cap_items = 0;
		for (size_t i = 0; i < nd; i++)
			cap_items += p->docs[i].len / L + 2;
	}
	/* pieces are appended to p->docs after the originals */
	if (p->n_docs + cap_items > p->cap_docs) {
		p->cap_docs = p->n_docs + cap_items;
		p->docs = xrealloc(p->docs, p->cap_docs * sizeof *p->docs);
	}
	uint32_t *order = xmalloc((cap_items + 1) * sizeof *order);
	size_t *row_start = xmalloc((cap_items + 2) * sizeof *row_start);
	size_t rows = 0, n_items = 0;
	uint64_t carry_from = 0; /* wrapped: first item of the partial row kept for later */
	size_t carry_items = 0;
	switch (o->strategy) {
	case ST_BFD:
	case ST_BFD_SPLIT: {
		uint32_t *items = xmalloc((cap_items + 1) * sizeof *items);
		for (size_t k = 0; k < nd; k++) {
			doc d = p->docs[perm[k]];
			if (o->strategy == ST_BFD) {
				items[n_items++] = perm[k];
				continue;
			}
			for (uint32_t off = 0; off < d.len; off += L) {
				doc piece = d;
				piece.start = d.start + off;
				piece.offset = d.offset + off;
				piece.len = d.len - off < L ? d.len - off : L;
				if (off == L)
					p->split++;
				p->docs[p->n_docs] = piece;
				items[n_items++] = (uint32_t)p->n_docs++;
			}
		}
		uint32_t *lens = xmalloc((n_items + 1) * sizeof *lens);
		for (size_t i = 0; i < n_items; i++)
			lens[i] = p->docs[items[i]].len;
		long r = pack_bfd(lens, n_items, L, (uint32_t)o->max_docs, order, row_start);
		if (r < 0)
			die(SFT_EXIT_RUNTIME, "out of memory");
		rows = (size_t)r;
		for (size_t i = 0; i < n_items; i++)
			order[i] = items[order[i]];
		free(lens);
		free(items);
		break;
	}
	case ST_NONE:
		for (size_t k = 0; k < nd; k++) {
			row_start[k] = k;
			order[k] = perm[k];
		}
		rows = nd;
		n_items = nd;
		row_start[rows] = nd;
		break;
	case ST_WRAPPED: {
		uint32_t fill = 0;
		row_start[0] = 0;
		for (size_t k = 0; k < nd; k++) {
			doc d = p->docs[perm[k]];
			uint32_t off = 0;
			int n_pieces = 0;
			while (off < d.len) {
				uint32_t take = d.len - off < L - fill ? d.len - off : L - fill;
				doc piece = d;
				piece.start = d.start + off;
				piece.offset = d.offset + off;
				piece.len = take;
				if (++n_pieces == 2)
					p->split++;
				p->docs[p->n_docs] = piece;
				order[n_items++] = (uint32_t)p->n_docs++;
				off += take;
				fill += take;
				if (fill == L) {
					row_start[++rows] = n_items;
					fill = 0;
				}
			}
		}
		if (fill) {
			if (final) {
				row_start[++rows] = n_items;
			} else {
				carry_from = row_start[rows];
				carry_items = n_items - row_start[rows];
			}
		}
		break;
	}
	}
	/* row order: creation order, or shuffled by --seed */
	uint32_t *rperm = xmalloc((rows + 1) * sizeof *rperm);
	for (size_t i = 0; i < rows; i++)
		rperm[i] = (uint32_t)i;
	if (o->has_seed)
		shuffle_u32(rperm, rows, &p->seed_state);

	int rc = 0;
	if (rows > 0) {
		p->files = xrealloc(p->files, (p->n_files + 1) * sizeof *p->files);
		file_info *fi = &p->files[p->n_files];
		memset(fi, 0, sizeof *fi);
		snprintf(fi->name, sizeof fi->name, "part-%05zu.shard", p->n_files);
		size_t plen = strlen(p->tmp_dir) + strlen(fi->name) + 2;
		char *path = xmalloc(plen);
		snprintf(path, plen, "%s/%s", p->tmp_dir, fi->name);
		shard_writer *w = shard_writer_open_file(path, &p->out_h, err);
		if (!w) {
			free(path);
			rc = -1;
			goto out;
		}
		for (size_t ri = 0; ri < rows && rc == 0; ri++) {
			size_t r = rperm[ri];
			size_t a = row_start[r], b = row_start[r + 1];
			uint32_t pad_to = 0;
			if (o->strategy == ST_NONE) {
				uint32_t len = p->docs[order[a]].len;
				pad_to = L;
				if (o->pad_mult > 0) {
					uint64_t m = (uint64_t)o->pad_mult;
					uint64_t t = (len + m - 1) / m * m;
					pad_to = (uint32_t)(t < L ? t : L);
				}
			}
			rc = emit_row(p, w, order + a, b - a, pad_to, err);
		}
		if (rc < 0) {
			shard_writer_abort(w);
			free(path);
			goto out;
		}
		rc = shard_writer_close_ex(w, fi->sum, &fi->c, err);
		if (rc == 0) {
			struct stat st;
			if (stat(path, &st) == 0)
				fi->bytes = (uint64_t)st.st_size;
			p->n_files++;
			done_add(path);
			log_verbose("%s: %" PRIu64 " rows, %" PRIu64 " tokens", fi->name, fi->c.records, fi->c.tokens);
		}
		free(path);
	}
	if (p->unpinned) /* written: its input pages can go (wrapped carries read them again) */
		window_pages(p, nd, 0);
	if (rc == 0) {
		/* reset the window; wrapped moves the partial row's pieces to the front */
		if (carry_items) {
			doc *tmp = xmalloc(carry_items * sizeof *tmp);
			for (size_t i = 0; i < carry_items; i++)
				tmp[i] = p->docs[order[carry_from + i]];
			/* pieces may sit anywhere in the store (shuffled): stage them, then copy to the front */
			size_t wd = p->out_h.token_width;
			uint64_t w_at = 0;
			for (size_t i = 0; i < carry_items; i++)
				if (!tmp[i].xt) /* pieces in a mapping stay there */
					w_at += tmp[i].len;
			uint8_t *stage = xmalloc((size_t)w_at * wd + (size_t)w_at / 8 + 8);
			uint8_t *smask = stage + w_at * wd;
			w_at = 0;
			for (size_t i = 0; i < carry_items; i++) {
				if (tmp[i].xt)
					continue;
				memcpy(stage + w_at * wd, (uint8_t *)p->tok + tmp[i].start * wd, (size_t)tmp[i].len * wd);
				shard_bits_copy(smask, w_at, p->mbits, tmp[i].start, tmp[i].len);
				tmp[i].start = w_at;
				w_at += tmp[i].len;
			}
			if (w_at) { /* no store at all when every piece is in a mapping */
				memcpy(p->tok, stage, (size_t)w_at * wd);
				shard_bits_copy(p->mbits, 0, smask, 0, w_at);
			}
			free(stage);
			memcpy(p->docs, tmp, carry_items * sizeof *tmp);
			p->n_docs = carry_items;
			p->n_carry = carry_items;
			p->n_tok = w_at;
			free(tmp);
		} else {
			p->n_docs = 0;
			p->n_tok = 0;
			p->n_carry = 0;
		}
	}
out:
	free(rperm);
	free(order);
	free(row_start);
	free(perm);
	return rc;
}

static void *job_main(void *arg)
{
	packer *q = arg;
	q->job_rc = flush_window(q, 0, &q->job_err);
	__atomic_store_n(&q->job_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Waits for the window being packed by the second thread and takes its results back. */
static int job_join(packer *p, sft_error *err)
{
	packer *q = p->job;
	if (!q)
		return 0;
	pthread_join(p->job_th, NULL);
	p->job = NULL;
	p->files = q->files;
	p->n_files = q->n_files;
	p->seed_state = q->seed_state;
	p->split = q->split;
	p->spare = q->docs;
	p->cap_spare = q->cap_docs;
	int rc = q->job_rc;
	if (rc < 0)
		*err = q->job_err;
	free(q);
	return rc;
}

/* Writes the full window (not the last one): in a second thread when every document of it
 * is referenced in a mapping (nothing in the store, which the next window reuses) and
 * nothing carries over (wrapped), else here. Windows are packed one at a time, in order, so
 * the output is the same either way. */
static int window_flush(packer *p, sft_error *err)
{
	if (job_join(p, err) < 0)
		return -1;
	if (p->win_at && !p->unpinned) /* keep the window's pages resident while it is packed */
		shard_reader_pin(p->cur_rd, p->win_at);
	int rc = 0;
	if (p->o->threads >= 2 && p->n_tok == 0 && p->n_carry == 0 && p->o->strategy != ST_WRAPPED) {
		packer *q = xmalloc(sizeof *q);
		*q = *p;
		q->job = NULL;
		q->job_rc = 0;
		q->job_done = 0;
		if (pthread_create(&p->job_th, NULL, job_main, q) == 0) {
			/* the job maps the window in and gives it back: the reader leaves its pages
			 * alone and gives back what it reads while the job runs */
			if (p->unpinned && p->cur_rd && p->cur_rec) {
				shard_reader_leave_before(p->cur_rd, p->cur_rec);
				p->pinned_now = 0;
			}
			p->job = q;
			p->docs = p->spare;
			p->cap_docs = p->cap_spare;
			p->spare = NULL;
			p->cap_spare = 0;
			p->n_docs = 0;
			p->n_carry = 0;
		} else {
			free(q);
			rc = flush_window(p, 0, err);
		}
	} else {
		rc = flush_window(p, 0, err);
		if (p->cur_rd && p->cur_rec && !p->unpinned)
			shard_reader_pin(p->cur_rd, p->cur_rec);
	}
	p->win_at = p->cur_rec;
	return rc;
}

/* Adds one input document to the window (truncating / dropping per options). */
static int add_doc(packer *p, uint64_t doc_id, const doc_src *s, size_t n, sft_error *err)
{
	const opts *o = p->o;
	uint64_t L = (uint64_t)o->seq_len;
	p->docs_in++;
	p->tokens_in += n;
	if (n == 0) {
		p->empty++;
		return 0; /* nothing to train on; counted in the manifest */
	}
	if (n > UINT32_MAX / 2)
		return sft_error_set(err, SFT_EXIT_DATA, "document %" PRIu64 ": %zu tokens is too long", doc_id, n);
	if ((o->strategy == ST_BFD || o->strategy == ST_NONE) && n > L) {
		if (o->drop_long) {
			p->dropped++;
			return 0;
		}
		p->truncated++;
		p->truncated_tokens += n - L;
		n = L;
	}
	uint64_t cost = doc_cost(p, n);
	if (p->budget + cost > (uint64_t)o->shard_tokens && p->n_docs > 0) {
		if (window_flush(p, err) < 0)
			return -1;
		p->budget = 0;
		for (size_t i = 0; i < p->n_docs; i++) /* wrapped carry */
			p->budget += p->docs[i].len;
	}
	store_doc(p, doc_id, 0, s, (uint32_t)n);
	p->budget += cost;
	p->docs_out++;
	return 0;
}

static char *command_line(int argc, char **argv)
{
	size_t cap = 64, len = 0;
	char *s = xmalloc(cap);
	s[0] = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		int quote = !*a || strpbrk(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") != NULL;
		size_t need = strlen(a) * 4 + 4;
		if (len + need + 1 > cap) {
			cap = (len + need + 1) * 2;
			s = xrealloc(s, cap);
		}
		if (i)
			s[len++] = ' ';
		if (!quote) {
			memcpy(s + len, a, strlen(a));
			len += strlen(a);
		} else {
			s[len++] = '\'';
			for (; *a; a++) {
				if (*a == '\'') {
					memcpy(s + len, "'\\''", 4);
					len += 4;
				} else {
					s[len++] = *a;
				}
			}
			s[len++] = '\'';
		}
		s[len] = 0;
	}
	return s;
}

static json_t *hexj(const uint8_t b[16])
{
	char h[33];
	shard_hex16(b, h);
	return json_string(h);
}

static int write_manifest(packer *p, const char *cmd, char **inputs, size_t n_inputs, const uint64_t *input_docs,
			  sft_error *err)
{
	const opts *o = p->o;
	json_t *m = json_object();
	shard_counts tot = {0};
	uint64_t bytes = 0;
	json_t *files = json_array();
	for (size_t i = 0; i < p->n_files; i++) {
		file_info *f = &p->files[i];
		tot.records += f->c.records;
		tot.tokens += f->c.tokens;
		tot.segments += f->c.segments;
		tot.trained += f->c.trained;
		tot.pad += f->c.pad;
		bytes += f->bytes;
		json_t *fj = json_object();
		json_object_set_new(fj, "name", json_string(f->name));
		json_object_set_new(fj, "rows", json_integer((json_int_t)f->c.records));
		json_object_set_new(fj, "tokens", json_integer((json_int_t)f->c.tokens));
		json_object_set_new(fj, "trained_tokens", json_integer((json_int_t)f->c.trained));
		json_object_set_new(fj, "pad_tokens", json_integer((json_int_t)f->c.pad));
		json_object_set_new(fj, "segments", json_integer((json_int_t)f->c.segments));
		json_object_set_new(fj, "bytes", json_integer((json_int_t)f->bytes));
		json_object_set_new(fj, "xxh3_128", hexj(f->sum));
		json_array_append_new(files, fj);
	}
	uint64_t doc_tokens = tot.tokens - tot.pad;
	double slots = (double)tot.records * (double)o->seq_len;
	double eff = slots > 0 ? (double)doc_tokens / slots : 0;
	json_object_set_new(m, "format", json_string("sftkit-shard"));
	json_object_set_new(m, "format_version", json_integer(SHARD_VERSION));
	json_object_set_new(m, "command", json_string(cmd));
	json_object_set_new(m, "strategy", json_string(STRATEGY_NAMES[o->strategy]));
	json_object_set_new(m, "seq_len", json_integer(o->seq_len));
	json_object_set_new(m, "shard_tokens", json_integer(o->shard_tokens));
	json_object_set_new(m, "truncation", json_string(o->drop_long ? "drop" : "keep-start"));
	json_object_set_new(m, "seed", o->has_seed ? json_integer(o->seed) : json_null());
	json_object_set_new(m, "max_docs_per_row", json_integer(o->max_docs));
	json_object_set_new(m, "pad_to_multiple_of", json_integer(o->pad_mult));
	json_object_set_new(m, "pad_id", json_integer(p->out_h.pad_id));
	json_object_set_new(m, "vocab_size", json_integer(p->out_h.vocab_size));
	json_object_set_new(m, "token_width", json_integer(p->out_h.token_width));
	json_object_set_new(m, "tokenizer_fingerprint", hexj(p->out_h.fingerprint));
	json_t *ins = json_array();
	for (size_t i = 0; i < n_inputs; i++) {
		json_t *ij = json_object();
		json_object_set_new(ij, "path", json_string(inputs[i]));
		json_object_set_new(ij, "documents", json_integer((json_int_t)input_docs[i]));
		json_array_append_new(ins, ij);
	}
	json_object_set_new(m, "inputs", ins);
	json_object_set_new(m, "documents_in", json_integer((json_int_t)p->docs_in));
	json_object_set_new(m, "tokens_in", json_integer((json_int_t)p->tokens_in));
	json_object_set_new(m, "documents_packed", json_integer((json_int_t)p->docs_out));
	json_object_set_new(m, "documents_empty", json_integer((json_int_t)p->empty));
	json_object_set_new(m, "truncated", json_integer((json_int_t)p->truncated));
	json_object_set_new(m, "truncated_tokens", json_integer((json_int_t)p->truncated_tokens));
	json_object_set_new(m, "dropped", json_integer((json_int_t)p->dropped));
	json_object_set_new(m, "split", json_integer((json_int_t)p->split));
	json_object_set_new(m, "rows", json_integer((json_int_t)tot.records));
	json_object_set_new(m, "tokens", json_integer((json_int_t)tot.tokens));
	json_object_set_new(m, "document_tokens", json_integer((json_int_t)doc_tokens));
	json_object_set_new(m, "trained_tokens", json_integer((json_int_t)tot.trained));
	json_object_set_new(m, "pad_tokens", json_integer((json_int_t)tot.pad));
	json_object_set_new(m, "segments", json_integer((json_int_t)tot.segments));
	json_object_set_new(m, "packing_efficiency", json_real(eff));
	json_object_set_new(m, "padding_fraction", json_real(slots > 0 ? 1.0 - eff : 0));
	json_object_set_new(m, "bytes", json_integer((json_int_t)bytes));
	json_object_set_new(m, "files", files);
	size_t plen = strlen(p->tmp_dir) + 16;
	char *path = xmalloc(plen);
	snprintf(path, plen, "%s/manifest.json", p->tmp_dir);
	atomic_file *af = atomic_open(path, err);
	free(path);
	int rc = -1;
	if (af) {
		if (json_dumpf(m, af->fp, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) < 0 ||
		    fputc('\n', af->fp) == EOF) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "manifest.json: write failed: %s", strerror(errno));
			atomic_abort(af);
		} else {
			rc = atomic_commit(af, err);
		}
	}
	log_info("%" PRIu64 " documents -> %" PRIu64 " rows in %zu file%s, %" PRIu64 " tokens (%" PRIu64
		 " trained), packing efficiency %.2f%% (padding %.2f%%), %" PRIu64 " truncated, %" PRIu64 " dropped, %" PRIu64
		 " split, %" PRIu64 " empty",
		 p->docs_in, tot.records, p->n_files, p->n_files == 1 ? "" : "s", tot.tokens, tot.trained, 100 * eff,
		 100 * (slots > 0 ? 1 - eff : 0), p->truncated, p->dropped, p->split, p->empty);
	json_decref(m);
	return rc;
}

static int rm_rf(const char *dir)
{
	/* only ever called on directories this run created or that --force replaces */
	size_t l = strlen(dir) + 32;
	char *cmd = xmalloc(l);
	snprintf(cmd, l, "rm -rf -- '%s'", dir);
	int rc = strchr(dir, '\'') ? -1 : system(cmd);
	free(cmd);
	return rc;
}

static void on_signal(int sig)
{
	atomic_cleanup_all(); /* open temporaries (the shard being written, the manifest) */
	for (size_t i = 0; i < g_n_done; i++)
		unlink(g_done[i]);
	if (g_tmp_dir)
		rmdir(g_tmp_dir);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void cleanup_tmp(void)
{
	if (g_tmp_dir) {
		rm_rf(g_tmp_dir);
		g_tmp_dir = NULL;
	}
}

static int run_pack(const opts *o, char **inputs, size_t n_inputs, int argc, char **argv)
{
	sft_error err = {0};
	if (!o->out)
		die_usage("missing --out DIR");
	if (o->shard_tokens < o->seq_len)
		die_usage("--shard-tokens %lld is smaller than --seq-len %lld", o->shard_tokens, o->seq_len);
	if (o->pad_mult > 0 && o->strategy != ST_NONE)
		die_usage("--pad-to-multiple-of applies to --strategy none only");
	struct stat st;
	if (stat(o->out, &st) == 0 && !o->force)
		die(SFT_EXIT_USAGE, "%s: already exists (use --force to replace it)", o->out);
	char *inputs_default[] = {"-"};
	if (n_inputs == 0) {
		inputs = inputs_default;
		n_inputs = 1;
	}
	packer p = {0};
	p.o = o;
	p.unpinned = o->threads >= 2;
	p.seed_state = (uint64_t)o->seed;
	/* open the first input to learn the header */
	shard_reader **rd = xmalloc(n_inputs * sizeof *rd);
	for (size_t i = 0; i < n_inputs; i++) {
		rd[i] = shard_reader_open(inputs[i], &err);
		if (!rd[i])
			die_err(&err);
	}
	/* the output header: vocab + fingerprint of the binary inputs, all must agree */
	const shard_header *ref = NULL;
	const char *ref_name = NULL;
	for (size_t i = 0; i < n_inputs; i++) {
		const shard_header *h = shard_reader_header(rd[i]);
		if (ref && shard_header_check_compatible(ref, ref_name, h, inputs[i], &err) < 0)
			die_err(&err);
		if (!ref || (!ref->vocab_size && h->vocab_size)) {
			ref = h;
			ref_name = inputs[i];
		}
	}
	p.out_h.vocab_size = ref->vocab_size;
	memcpy(p.out_h.fingerprint, ref->fingerprint, 16);
	/* a fingerprint given by a later input wins over JSONL's zeros */
	for (size_t i = 0; i < n_inputs; i++) {
		static const uint8_t zero[16];
		const shard_header *h = shard_reader_header(rd[i]);
		if (memcmp(h->fingerprint, zero, 16)) {
			memcpy(p.out_h.fingerprint, h->fingerprint, 16);
			break;
		}
	}
	if (o->vocab > 0) {
		if (p.out_h.vocab_size && p.out_h.vocab_size != (uint32_t)o->vocab)
			die(SFT_EXIT_USAGE, "--vocab-size %lld differs from the inputs' vocab size %u", o->vocab,
			    p.out_h.vocab_size);
		p.out_h.vocab_size = (uint32_t)o->vocab;
	}
	p.out_h.flags = SHARD_PACKED | (o->strategy == ST_NONE ? SHARD_PADDED : 0);
	p.out_h.seq_len = (uint32_t)o->seq_len;
	p.out_h.pad_id = (uint32_t)o->pad_id;
	if (p.out_h.vocab_size && o->strategy == ST_NONE && p.out_h.pad_id >= p.out_h.vocab_size)
		die_usage("--pad-id %lld is not below the vocab size %u", o->pad_id, p.out_h.vocab_size);
	p.out_h.token_width = (p.out_h.vocab_size > 0 && p.out_h.vocab_size <= 65536) ? 2 : 4;

	/* temporary directory beside the target */
	size_t tl = strlen(o->out) + 16;
	p.tmp_dir = xmalloc(tl);
	snprintf(p.tmp_dir, tl, "%s.tmp-XXXXXX", o->out);
	{
		char *slash = strrchr(o->out, '/');
		if (slash && slash != o->out) {
			char *parent = strndup(o->out, (size_t)(slash - o->out));
			if (fs_mkdir_p(parent, &err) < 0)
				die_err(&err);
			free(parent);
		}
	}
	if (!mkdtemp(p.tmp_dir))
		die(SFT_EXIT_RUNTIME, "%s: cannot create: %s", p.tmp_dir, strerror(errno));
	g_tmp_dir = p.tmp_dir;
	atexit(cleanup_tmp);
	{ /* an interrupted run leaves no DIR.tmp-* behind */
		int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
		for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
			struct sigaction sa;
			memset(&sa, 0, sizeof sa);
			sa.sa_handler = on_signal;
			sigemptyset(&sa.sa_mask);
			sigaction(sigs[i], &sa, NULL);
		}
	}

	uint64_t *input_docs = calloc(n_inputs, sizeof *input_docs);
	progress_start(&p.prog, "tokens", 0, 0);
	uint64_t doc_id = 0;
	/* SFT_PACK_GENERIC=1 forces the decoded path (tests compare the two) */
	const char *generic_env = getenv("SFT_PACK_GENERIC");
	int force_generic = generic_env && *generic_env && strcmp(generic_env, "0");
	/* SFT_PACK_COPY=1 copies raw records into the window store instead of referencing
	 * them in the input's mapping (tests compare the two) */
	const char *copy_env = getenv("SFT_PACK_COPY");
	int force_copy = copy_env && *copy_env && strcmp(copy_env, "0");
	unsigned width = p.out_h.token_width;
	for (size_t i = 0; i < n_inputs; i++) {
		const shard_header *ih = shard_reader_header(rd[i]);
		/* fast path: a binary input already in the output's form (same width and vocab):
		 * records are taken as they are on disk, nothing widened or unpacked */
		int raw = !force_generic && !shard_reader_is_jsonl(rd[i]) && ih->token_width == width &&
			  ih->vocab_size == p.out_h.vocab_size;
		int check_ids = ih->vocab_size == 0 && p.out_h.vocab_size > 0;
		/* zero copy: a mapped input's records are referenced where they are, until the end
		 * (readers are closed after the last window); the pin keeps the current window's
		 * pages resident, moved on each time a window is written */
		int keep = raw && !force_copy && shard_reader_pin(rd[i], NULL);
		if (keep && p.unpinned)
			shard_reader_unpin(rd[i]);
		p.pinned_now = 0;
		p.cur_rd = keep ? rd[i] : NULL;
		p.cur_rec = p.win_at = NULL;
		log_verbose("%s: %s", strcmp(inputs[i], "-") ? inputs[i] : "<stdin>",
			    keep  ? "raw path, zero copy (records referenced in the input's mapping)"
			    : raw ? "raw path (records copied in their on-disk form)"
				  : "decoded path");
		int rc;
		for (;;) {
			shard_record rec;
			shard_view v;
			doc_src src = {0};
			size_t n, n_seg;
			const shard_segment *segs;
			if (raw) {
				if ((rc = shard_read_view(rd[i], &v, &err)) != 1)
					break;
				src = (doc_src){.raw = v.tokens, .mbits = v.mask_bits, .keep = keep};
				if (keep)
					p.cur_rec = v.segs;
				/* unpinned: once the previous window is written, this one's pages stay */
				if (keep && p.unpinned && !p.pinned_now &&
				    (!p.job || __atomic_load_n(&p.job->job_done, __ATOMIC_ACQUIRE))) {
					shard_reader_pin(rd[i], v.segs);
					p.pinned_now = 1;
				}
				n = v.n, n_seg = v.n_seg, segs = v.segs;
			} else {
				if ((rc = shard_read(rd[i], &rec, &err)) != 1)
					break;
				src = (doc_src){.t32 = rec.tokens, .m8 = rec.mask};
				n = rec.n, n_seg = rec.n_seg, segs = rec.segs;
			}
			if (check_ids) /* JSONL: the reader knew no vocab (never raw) */
				for (size_t t = 0; t < n; t++)
					if (rec.tokens[t] >= p.out_h.vocab_size)
						die(SFT_EXIT_DATA, "%s:%" PRIu64 ": input_ids[%zu]: token id %u >= vocab size %u",
						    strcmp(inputs[i], "-") ? inputs[i] : "<stdin>", shard_reader_offset(rd[i]), t,
						    rec.tokens[t], p.out_h.vocab_size);
			if (n_seg == 0) {
				if (add_doc(&p, doc_id++, &src, n, &err) < 0)
					die_err(&err);
				input_docs[i]++;
			} else { /* a packed input: its segments are the documents */
				size_t at = 0;
				for (size_t k = 0; k < n_seg; k++) {
					shard_segment sg;
					memcpy(&sg, &segs[k], sizeof sg);
					doc_src ss = src_skip(src, at, width);
					if (add_doc(&p, doc_id++, &ss, sg.len, &err) < 0)
						die_err(&err);
					at += sg.len;
					input_docs[i]++;
				}
			}
			progress_add(&p.prog, n, 0);
		}
		if (rc < 0)
			die_err(&err);
		if (!keep) {
			shard_reader_close(rd[i]);
			rd[i] = NULL;
		}
	}
	if (job_join(&p, &err) < 0 || flush_window(&p, 1, &err) < 0)
		die_err(&err);
	for (size_t i = 0; i < n_inputs; i++) /* the last window may have referenced them */
		shard_reader_close(rd[i]);
	progress_finish(&p.prog);
	char *cmd = command_line(argc, argv);
	if (write_manifest(&p, cmd, inputs, n_inputs, input_docs, &err) < 0)
		die_err(&err);
	fs_fsync_dir(p.tmp_dir);
	/* publish: rename the finished directory over the target */
	char *old = NULL;
	if (stat(o->out, &st) == 0) {
		size_t ol = strlen(o->out) + 16;
		old = xmalloc(ol);
		snprintf(old, ol, "%s.old-XXXXXX", o->out);
		if (!mkdtemp(old) || rmdir(old) < 0 || rename(o->out, old) < 0)
			die(SFT_EXIT_RUNTIME, "%s: cannot move aside: %s", o->out, strerror(errno));
	}
	if (rename(p.tmp_dir, o->out) < 0)
		die(SFT_EXIT_RUNTIME, "%s: cannot rename %s: %s", o->out, p.tmp_dir, strerror(errno));
	g_tmp_dir = NULL;
	{
		char *parent = strdup(o->out), *slash = strrchr(parent, '/');
		if (slash && slash != parent)
			*slash = 0;
		else
			strcpy(parent, ".");
		fs_fsync_dir(parent);
		free(parent);
	}
	if (old) {
		rm_rf(old);
		free(old);
	}
	free(cmd);
	free(input_docs);
	free(rd);
	free(p.tok);
	free(p.mbits);
	free(p.docs);
	free(p.spare);
	free(p.files);
	free(p.tmp_dir);
	return 0;
}

/* ================= reading a packed directory ================= */

typedef struct pset {
	json_t *manifest; /* NULL when a single shard file was given */
	size_t n;
	char **paths;
	char **names;
	shard_file **f;
	uint64_t *row0; /* global row number of each file's first row */
	uint64_t rows;
} pset;

/* populate: map each file in full at once (whole scans); else pages come as rows are read */
static void pset_open(pset *s, const char *target, int populate)
{
	sft_error err = {0};
	memset(s, 0, sizeof *s);
	struct stat st;
	if (stat(target, &st) < 0)
		die(SFT_EXIT_USAGE, "%s: %s", target, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		size_t l = strlen(target) + 32;
		char *mp = xmalloc(l);
		snprintf(mp, l, "%s/manifest.json", target);
		json_error_t je;
		s->manifest = json_load_file(mp, 0, &je);
		if (!s->manifest)
			die(SFT_EXIT_DATA, "%s:%d:%d: %s", mp, je.line, je.column, je.text);
		json_t *files = json_object_get(s->manifest, "files");
		if (!json_is_array(files))
			die(SFT_EXIT_DATA, "%s: expected \"files\": an array", mp);
		s->n = json_array_size(files);
		s->paths = xmalloc((s->n + 1) * sizeof *s->paths);
		s->names = xmalloc((s->n + 1) * sizeof *s->names);
		for (size_t i = 0; i < s->n; i++) {
			const char *nm = json_string_value(json_object_get(json_array_get(files, i), "name"));
			if (!nm || strchr(nm, '/'))
				die(SFT_EXIT_DATA, "%s: files[%zu]: expected \"name\": a file name", mp, i);
			size_t pl = strlen(target) + strlen(nm) + 2;
			s->paths[i] = xmalloc(pl);
			snprintf(s->paths[i], pl, "%s/%s", target, nm);
			s->names[i] = s->paths[i] + strlen(target) + 1;
		}
		free(mp);
	} else {
		s->n = 1;
		s->paths = xmalloc(sizeof *s->paths);
		s->names = xmalloc(sizeof *s->names);
		s->paths[0] = strdup(target);
		s->names[0] = s->paths[0];
	}
	s->f = xmalloc((s->n + 1) * sizeof *s->f);
	s->row0 = xmalloc((s->n + 1) * sizeof *s->row0);
	for (size_t i = 0; i < s->n; i++) {
		s->f[i] = shard_file_map_ex(s->paths[i], populate, &err);
		if (!s->f[i])
			die_err(&err);
		if (i > 0 && shard_header_check_compatible(shard_file_header(s->f[0]), s->paths[0],
							    shard_file_header(s->f[i]), s->paths[i], &err) < 0)
			die_err(&err);
		s->row0[i] = s->rows;
		s->rows += shard_file_rows(s->f[i]);
	}
	s->row0[s->n] = s->rows;
}

static void pset_close(pset *s)
{
	for (size_t i = 0; i < s->n; i++) {
		shard_file_unmap(s->f[i]);
		free(s->paths[i]);
	}
	free(s->f);
	free(s->paths);
	free(s->names);
	free(s->row0);
	json_decref(s->manifest);
}

/* A regular file that is not a file-form shard (a stream from tok-encode, or JSONL):
 * returns a sequential reader on it, else NULL. */
static shard_reader *open_if_stream(const char *target)
{
	struct stat st;
	if (strcmp(target, "-") && (stat(target, &st) < 0 || !S_ISREG(st.st_mode)))
		return NULL;
	sft_error err = {0};
	shard_reader *r = shard_reader_open(target, &err);
	if (!r)
		die_err(&err);
	if (!shard_reader_is_jsonl(r) && shard_reader_header(r)->is_file && strcmp(target, "-")) {
		shard_reader_close(r);
		return NULL;
	}
	return r;
}

static int run_verify(const char *target)
{
	sft_error err = {0};
	shard_reader *r = open_if_stream(target);
	if (r) { /* a stream: read it to the end marker, which checks everything incl. XXH3-64 */
		shard_record rec;
		uint64_t n = 0, tokens = 0;
		int rc;
		while ((rc = shard_read(r, &rec, &err)) == 1) {
			n++;
			tokens += rec.n;
		}
		if (rc < 0)
			die_err(&err);
		printf("%s: ok: stream, %" PRIu64 " records, %" PRIu64 " tokens\n", target, n, tokens);
		shard_reader_close(r);
		return 0;
	}
	pset s;
	pset_open(&s, target, 1);
	uint64_t tokens = 0, trained = 0;
	for (size_t i = 0; i < s.n; i++) {
		if (shard_file_verify(s.f[i], &err) < 0)
			die_err(&err);
		const shard_counts *c = shard_file_counts(s.f[i]);
		tokens += c->tokens;
		trained += c->trained;
		if (s.manifest) {
			json_t *fj = json_array_get(json_object_get(s.manifest, "files"), i);
			char hx[33];
			shard_hex16(shard_file_checksum(s.f[i]), hx);
			const char *want = json_string_value(json_object_get(fj, "xxh3_128"));
			if (!want || strcmp(want, hx))
				die(SFT_EXIT_DATA, "%s: checksum %s differs from manifest.json (%s)", s.paths[i], hx,
				    want ? want : "missing");
			if ((uint64_t)json_integer_value(json_object_get(fj, "rows")) != c->records ||
			    (uint64_t)json_integer_value(json_object_get(fj, "tokens")) != c->tokens ||
			    (uint64_t)json_integer_value(json_object_get(fj, "trained_tokens")) != c->trained)
				die(SFT_EXIT_DATA, "%s: rows/tokens differ from manifest.json", s.paths[i]);
			char fp[33];
			shard_hex16(shard_file_header(s.f[i])->fingerprint, fp);
			const char *mfp = json_string_value(json_object_get(s.manifest, "tokenizer_fingerprint"));
			if (!mfp || strcmp(mfp, fp))
				die(SFT_EXIT_DATA, "%s: byte 32: tokenizer fingerprint %s differs from manifest.json (%s)",
				    s.paths[i], fp, mfp ? mfp : "missing");
		}
		log_verbose("%s: ok", s.paths[i]);
	}
	if (s.manifest && ((uint64_t)json_integer_value(json_object_get(s.manifest, "rows")) != s.rows ||
			   (uint64_t)json_integer_value(json_object_get(s.manifest, "tokens")) != tokens))
		die(SFT_EXIT_DATA, "%s/manifest.json: totals differ from the files", target);
	printf("%s: ok: %zu file%s, %" PRIu64 " rows, %" PRIu64 " tokens, %" PRIu64 " trained\n", target, s.n,
	       s.n == 1 ? "" : "s", s.rows, tokens, trained);
	pset_close(&s);
	return 0;
}

static int run_stats(const char *target)
{
	pset s;
	pset_open(&s, target, 0);
	json_t *m = s.manifest;
	if (!m) { /* a single file: what its footer knows */
		const shard_counts *c = shard_file_counts(s.f[0]);
		const shard_header *h = shard_file_header(s.f[0]);
		char fp[33];
		shard_hex16(h->fingerprint, fp);
		printf("file:            %s\nrows:            %" PRIu64 "\ntokens:          %" PRIu64
		       "\ntrained tokens:  %" PRIu64 "\npad tokens:      %" PRIu64 "\nsegments:        %" PRIu64
		       "\nseq len:         %u\nvocab size:      %u (u%d tokens)\ntokenizer:       %s\n",
		       target, c->records, c->tokens, c->trained, c->pad, c->segments, h->seq_len, h->vocab_size,
		       h->token_width * 8, fp);
		pset_close(&s);
		return 0;
	}
#define MI(k) ((long long)json_integer_value(json_object_get(m, k)))
#define MS(k) (json_string_value(json_object_get(m, k)) ? json_string_value(json_object_get(m, k)) : "?")
	double eff = json_number_value(json_object_get(m, "packing_efficiency"));
	long long tokens = MI("tokens"), trained = MI("trained_tokens");
	printf("directory:        %s\n", target);
	printf("command:          %s\n", MS("command"));
	printf("strategy:         %s, seq len %lld, truncation %s, max docs/row %lld\n", MS("strategy"), MI("seq_len"),
	       MS("truncation"), MI("max_docs_per_row"));
	printf("tokenizer:        %s (vocab %lld, u%lld tokens)\n", MS("tokenizer_fingerprint"), MI("vocab_size"),
	       8 * MI("token_width"));
	printf("documents:        %lld in, %lld packed, %lld truncated (%lld tokens cut), %lld dropped, %lld split, %lld empty\n",
	       MI("documents_in"), MI("documents_packed"), MI("truncated"), MI("truncated_tokens"), MI("dropped"),
	       MI("split"), MI("documents_empty"));
	printf("rows:             %lld in %zu file%s (%lld bytes)\n", MI("rows"), s.n, s.n == 1 ? "" : "s", MI("bytes"));
	printf("tokens:           %lld (%lld from documents, %lld pad)\n", tokens, MI("document_tokens"), MI("pad_tokens"));
	printf("trained tokens:   %lld (%.2f%% of tokens)\n", trained, tokens ? 100.0 * (double)trained / (double)tokens : 0.0);
	printf("packing:          %.2f%% efficiency, %.2f%% padding\n", 100 * eff, 100 * (1 - eff));
	json_t *files = json_object_get(m, "files");
	for (size_t i = 0; i < json_array_size(files); i++) {
		json_t *f = json_array_get(files, i);
		printf("  %-18s %8lld rows %12lld tokens  xxh3 %s\n", json_string_value(json_object_get(f, "name")),
		       (long long)json_integer_value(json_object_get(f, "rows")),
		       (long long)json_integer_value(json_object_get(f, "tokens")),
		       json_string_value(json_object_get(f, "xxh3_128")));
	}
#undef MI
#undef MS
	pset_close(&s);
	return 0;
}

/* ---- --inspect ---- */

/* Prints tokens as ids, trained spans in [...]. */
static void print_span(const uint32_t *t, const uint8_t *m, size_t n)
{
	int in = 0;
	for (size_t i = 0; i < n; i++) {
		if (m[i] && !in) {
			fputs(i ? " [" : "[", stdout);
			in = 1;
		} else if (!m[i] && in) {
			fputs("]", stdout);
			in = 0;
		}
		printf((i && !(in && i > 0 && m[i - 1] == 0)) ? " %u" : "%u", t[i]);
	}
	if (in)
		fputs("]", stdout);
}

/* Prints text decoded span by span: trained spans in [[...]], others as they are; text is
 * written raw (a JSON string would hide the newlines the model sees). */
static void print_text(const tokenizer *tk, const uint32_t *t, const uint8_t *m, size_t n)
{
	sft_error err = {0};
	size_t a = 0;
	while (a < n) {
		size_t b = a;
		while (b < n && m[b] == m[a])
			b++;
		char *txt = NULL;
		size_t len = 0;
		if (tokenizer_decode(tk, t + a, b - a, 0, &txt, &len, &err) < 0)
			die_err(&err);
		fputs(m[a] ? "[[" : "", stdout);
		fwrite(txt, 1, len, stdout);
		fputs(m[a] ? "]]" : "", stdout);
		free(txt);
		a = b;
	}
}

static int run_inspect(const opts *o)
{
	sft_error err = {0};
	shard_reader *sr = open_if_stream(o->target);
	pset s = {0};
	if (!sr)
		pset_open(&s, o->target, o->row < 0);
	tokenizer *tk = NULL;
	if (o->tokenizer) {
		tk = tokenizer_load(o->tokenizer, &err);
		if (!tk)
			die_err(&err);
		uint32_t tv = tokenizer_vocab_size(tk);
		uint32_t sv = sr ? shard_reader_header(sr)->vocab_size : s.n ? shard_file_header(s.f[0])->vocab_size : 0;
		if (sv && tv < sv)
			die(SFT_EXIT_USAGE, "--tokenizer %s: vocab size %u is smaller than the shards' %u: wrong tokenizer?",
			    o->tokenizer, tv, sv);
	}
	uint64_t first = 0, last = sr ? UINT64_MAX : s.rows;
	if (o->row >= 0) {
		if (!sr && (uint64_t)o->row >= s.rows)
			die(SFT_EXIT_USAGE, "--row %lld: out of range (%" PRIu64 " rows)", o->row, s.rows);
		first = (uint64_t)o->row;
		last = first + 1;
	}
	shard_buf buf = {0};
	size_t fi = 0;
	for (uint64_t g = sr ? 0 : first; g < last; g++) {
		shard_record rec;
		if (sr) { /* a stream: read sequentially up to row `first` */
			int rc = shard_read(sr, &rec, &err);
			if (rc < 0)
				die_err(&err);
			if (rc == 0) {
				if (o->row >= 0)
					die(SFT_EXIT_USAGE, "--row %lld: out of range (%" PRIu64 " records)", o->row, g);
				break;
			}
			if (g < first)
				continue;
		} else {
			while (g >= s.row0[fi + 1])
				fi++;
			if (shard_file_row(s.f[fi], (size_t)(g - s.row0[fi]), &rec, &buf, &err) < 0)
				die_err(&err);
		}
		size_t tr = 0;
		for (size_t i = 0; i < rec.n; i++)
			tr += rec.mask[i];
		printf("%s %" PRIu64 " (%s %s %" PRIu64 "): %zu tokens, %zu trained, %zu document%s, %zu pad\n",
		       sr ? "record" : "row", g, sr ? (strcmp(o->target, "-") ? o->target : "<stdin>") : s.names[fi],
		       sr ? "record" : "row", sr ? g : g - s.row0[fi], rec.n, tr, rec.n_seg ? rec.n_seg : 1,
		       rec.n_seg > 1 ? "s" : "", rec.n_pad);
		size_t at = 0;
		for (size_t k = 0; k < rec.n_seg; k++) {
			const shard_segment *sg = &rec.segs[k];
			printf("  | doc %" PRIu64 " tokens %u..%u (%u): ", sg->doc_id, sg->offset, sg->offset + sg->len, sg->len);
			if (tk)
				print_text(tk, rec.tokens + at, rec.mask + at, sg->len);
			else
				print_span(rec.tokens + at, rec.mask + at, sg->len);
			putchar('\n');
			at += sg->len;
		}
		if (rec.n_seg == 0) {
			fputs("  | ", stdout);
			if (tk)
				print_text(tk, rec.tokens, rec.mask, rec.n);
			else
				print_span(rec.tokens, rec.mask, rec.n);
			putchar('\n');
		}
		if (rec.n_pad)
			printf("  | pad x%zu (id %u)\n", rec.n_pad, rec.tokens[rec.n - 1]);
	}
	shard_buf_free(&buf);
	tokenizer_free(tk);
	if (sr)
		shard_reader_close(sr);
	else
		pset_close(&s);
	return 0;
}

/* ---- --unpack: documents back in input order ---- */

typedef struct piece {
	uint64_t doc_id;
	uint32_t offset, len;
	uint32_t file, seg;
	uint64_t row;
} piece;

static int cmp_piece(const void *a, const void *b)
{
	const piece *x = a, *y = b;
	if (x->doc_id != y->doc_id)
		return x->doc_id < y->doc_id ? -1 : 1;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int run_unpack(const opts *o)
{
	sft_error err = {0};
	pset s;
	pset_open(&s, o->target, 1);
	const char *emit = o->emit ? o->emit : "jsonl";
	size_t np = 0, cap = 0;
	piece *pcs = NULL;
	for (size_t i = 0; i < s.n; i++) {
		size_t rows = shard_file_rows(s.f[i]);
		for (size_t k = 0; k < rows; k++) {
			shard_view v;
			if (shard_file_view(s.f[i], k, &v, &err) < 0)
				die_err(&err);
			for (size_t j = 0; j < v.n_seg; j++) {
				if (np == cap) {
					cap = cap ? 2 * cap : 4096;
					pcs = xrealloc(pcs, cap * sizeof *pcs);
				}
				shard_segment sg;
				memcpy(&sg, &v.segs[j], sizeof sg);
				pcs[np++] = (piece){sg.doc_id, sg.offset, sg.len, (uint32_t)i, (uint32_t)j, k};
			}
		}
	}
	qsort(pcs, np, sizeof *pcs, cmp_piece);
	shard_buf buf = {0};
	uint32_t *dt = NULL;
	uint8_t *dm = NULL;
	size_t dn = 0, dcap = 0;
	shard_writer *w = NULL;
	if (!strcmp(emit, "stream")) {
		shard_header h = {0};
		if (s.n) {
			h = *shard_file_header(s.f[0]);
		} else { /* no rows at all: vocab and fingerprint from the manifest */
			h.vocab_size = (uint32_t)json_integer_value(json_object_get(s.manifest, "vocab_size"));
			const char *hx = json_string_value(json_object_get(s.manifest, "tokenizer_fingerprint"));
			for (int i = 0; hx && strlen(hx) == 32 && i < 16; i++) {
				unsigned v;
				if (sscanf(hx + 2 * i, "%2x", &v) == 1)
					h.fingerprint[i] = (uint8_t)v;
			}
		}
		h.version = 0;
		h.token_width = 0;
		h.is_file = 0;
		h.flags = 0;
		h.seq_len = 0;
		h.pad_id = 0;
		w = shard_writer_open_stream(stdout, &h, &err);
		if (!w)
			die_err(&err);
	}
	for (size_t i = 0; i < np; i++) {
		piece *pc = &pcs[i];
		if (i > 0 && pcs[i - 1].doc_id == pc->doc_id && pcs[i - 1].offset + pcs[i - 1].len != pc->offset)
			die(SFT_EXIT_DATA, "%s: document %" PRIu64 ": pieces overlap or leave a gap at token %u", o->target,
			    pc->doc_id, pc->offset);
		if (i == 0 || pcs[i - 1].doc_id != pc->doc_id) {
			if (pc->offset != 0)
				die(SFT_EXIT_DATA, "%s: document %" PRIu64 ": first piece starts at token %u", o->target,
				    pc->doc_id, pc->offset);
			dn = 0;
		}
		shard_record rec;
		if (shard_file_row(s.f[pc->file], (size_t)pc->row, &rec, &buf, &err) < 0)
			die_err(&err);
		size_t at = 0;
		for (uint32_t j = 0; j < pc->seg; j++)
			at += rec.segs[j].len;
		if (dn + pc->len > dcap) {
			dcap = (dn + pc->len) * 2;
			dt = xrealloc(dt, dcap * sizeof *dt);
			dm = xrealloc(dm, dcap);
		}
		memcpy(dt + dn, rec.tokens + at, (size_t)pc->len * 4);
		memcpy(dm + dn, rec.mask + at, pc->len);
		dn += pc->len;
		if (i + 1 == np || pcs[i + 1].doc_id != pc->doc_id) {
			int rc;
			if (w) {
				shard_record d = {.tokens = dt, .mask = dm, .n = dn};
				rc = shard_write(w, &d, &err);
			} else {
				rc = shard_jsonl_write(stdout, dt, dm, dn, &err);
			}
			if (rc < 0)
				die_err(&err);
		}
	}
	if (w && shard_writer_close(w, &err) < 0)
		die_err(&err);
	free(dt);
	free(dm);
	free(pcs);
	shard_buf_free(&buf);
	pset_close(&s);
	return 0;
}

int main(int argc, char **argv)
{
	log_init("pack");
	opts o = {.seq_len = 2048, .shard_tokens = 1LL << 26, .row = -1};
	char **pos = NULL;
	int npos = cli_parse(&SPEC, argc, argv, on_opt, &o, &pos);
	int rc = 0;
	if (o.mode != MODE_PACK && npos > 0)
		die_usage("unexpected argument '%s' (--%s takes one DIR)", pos[0],
			  o.mode == MODE_INSPECT ? "inspect" : o.mode == MODE_STATS ? "stats" : o.mode == MODE_VERIFY ? "verify" : "unpack");
	if (o.mode != MODE_INSPECT && (o.row >= 0 || o.tokenizer))
		die_usage("--row and --tokenizer go with --inspect");
	if (o.mode != MODE_UNPACK && o.emit)
		die_usage("--emit goes with --unpack");
	if (o.threads <= 0) {
		long nc = sysconf(_SC_NPROCESSORS_ONLN);
		o.threads = nc > 0 ? nc : 1;
	}
	switch (o.mode) {
	case MODE_PACK: rc = run_pack(&o, pos, (size_t)npos, argc, argv); break;
	case MODE_VERIFY: rc = run_verify(o.target); break;
	case MODE_STATS: rc = run_stats(o.target); break;
	case MODE_INSPECT: rc = run_inspect(&o); break;
	case MODE_UNPACK: rc = run_unpack(&o); break;
	}
	free(pos);
	stdout_close_or_die();
	return rc;
}
