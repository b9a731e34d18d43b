/* ds-dedup - exact and near-duplicate removal, contamination checks and rule-based
 * filters for JSONL records. Kept records go to stdout in input order; every removed
 * record is counted by reason and can be written to --removed.
 *
 * Two passes: pass 1 parses each line (in parallel batches), applies the filters and
 * computes the comparison key (xxh3-128 of the normalized text) and/or the MinHash band
 * keys, remembering only offsets and keys; the decisions are made on those; pass 2
 * re-reads the input (stdin is spilled to a temporary file) and writes what is kept. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic.h"
#include "cli.h"
#include "dedup.h"
#include "jsonl.h"
#include "log.h"
#include "progress.h"

/* ------------------------------------------------------------------ options */

enum {
	O_FIELD = 256, O_EXACT, O_MINHASH, O_PRESET, O_NGRAM, O_UNIT, O_NUM_PERM, O_BANDS, O_ROWS,
	O_THRESHOLD, O_SEED, O_HASH, O_KEEP, O_VERIFY, O_NO_NFC, O_NO_CASEFOLD, O_NO_WS, O_STRIP_PUNCT,
	O_STRIP_DIGITS, O_AGAINST, O_REMOVED, O_STATS, O_TMPDIR, O_THREADS, O_EMIT, O_MERGE, O_KEEP_DIR,
	O_MIN_LEN, O_MAX_LEN, O_FILTER_FIELD, O_EXCLUDE_FILE, O_IGNORE_CASE, O_REQUIRE, O_REQUIRE_JSON,
	O_MATCH, O_REJECT_EMPTY, O_KEEP_EMPTY, O_ON_ERROR,
};

static const cli_option options[] = {
	{"field", 'f', CLI_REQ_ARG, "PATH",
	 "compare this field (repeatable; dotted path, messages[*].content\n"
	 "joins all matches); default: every string value of the record", O_FIELD},
	{"exact", 0, CLI_NO_ARG, NULL, "exact dedup on normalized text (xxh3-128); the default mode", O_EXACT},
	{"minhash", 0, CLI_NO_ARG, NULL, "near-duplicate dedup with MinHash + LSH", O_MINHASH},
	{"preset", 0, CLI_REQ_ARG, "NAME",
	 "datatrove (5-gram words, 14x8, strip punctuation) or\n"
	 "nemo (24-char n-grams, 20x13)", O_PRESET},
	{"ngram", 0, CLI_REQ_ARG, "N", "shingle size (default 5)", O_NGRAM},
	{"unit", 0, CLI_REQ_ARG, "UNIT", "word (default) or char shingles", O_UNIT},
	{"num-perm", 0, CLI_REQ_ARG, "N", "signature length (default 128, or bands*rows)", O_NUM_PERM},
	{"bands", 0, CLI_REQ_ARG, "B", "LSH bands (with --rows)", O_BANDS},
	{"rows", 0, CLI_REQ_ARG, "R", "rows per band (with --bands)", O_ROWS},
	{"threshold", 0, CLI_REQ_ARG, "J",
	 "Jaccard threshold (default 0.8): picks bands x rows as datasketch\n"
	 "does, and is the bar for --verify", O_THRESHOLD},
	{"seed", 0, CLI_REQ_ARG, "N", "permutation seed (default 1, as datasketch)", O_SEED},
	{"hash", 0, CLI_REQ_ARG, "NAME",
	 "sha1 (default: bit-identical to datasketch) or xxh3 (faster)", O_HASH},
	{"keep", 0, CLI_REQ_ARG, "WHICH", "first (default) or longest record of a near-dup cluster", O_KEEP},
	{"verify", 0, CLI_NO_ARG, NULL,
	 "confirm LSH candidates by their true Jaccard (re-reads the text)", O_VERIFY},
	{"no-nfc", 0, CLI_NO_ARG, NULL, "do not apply Unicode NFC", O_NO_NFC},
	{"no-casefold", 0, CLI_NO_ARG, NULL, "compare case-sensitively", O_NO_CASEFOLD},
	{"no-collapse-ws", 0, CLI_NO_ARG, NULL, "keep whitespace as is (exact mode)", O_NO_WS},
	{"strip-punct", 0, CLI_NO_ARG, NULL, "ignore punctuation (Unicode P*)", O_STRIP_PUNCT},
	{"strip-digits", 0, CLI_NO_ARG, NULL, "ignore decimal digits", O_STRIP_DIGITS},
	{"against", 0, CLI_REQ_ARG, "FILE",
	 "remove records that duplicate a record of this evaluation\n"
	 "file (repeatable; exact and/or near, per the modes)", O_AGAINST},
	{"removed", 0, CLI_REQ_ARG, "FILE", "write every removed record with its reason (JSONL)", O_REMOVED},
	{"stats-json", 0, CLI_REQ_ARG, "FILE", "write the summary as JSON", O_STATS},
	{"tmpdir", 0, CLI_REQ_ARG, "DIR", "where stdin is spilled for pass 2 (default $TMPDIR or /tmp)", O_TMPDIR},
	{"threads", 'j', CLI_REQ_ARG, "N", "threads for pass 1 (default: all cores)", O_THREADS},
	{"emit-signatures", 0, CLI_REQ_ARG, "FILE",
	 "shard mode: filter, then write keys/signatures to FILE\n"
	 "instead of records (combine shards with --merge)", O_EMIT},
	{"merge", 0, CLI_REQ_ARG, "SIG",
	 "combine signature files (repeatable, in shard order); with the\n"
	 "shard inputs as arguments writes their kept records", O_MERGE},
	{"keep-dir", 0, CLI_REQ_ARG, "DIR",
	 "with --merge: write DIR/<sig name>.keep (kept line numbers)", O_KEEP_DIR},
	{"min-len", 0, CLI_REQ_ARG, "N[:UNIT]", "drop records shorter than N chars (or words, lines)", O_MIN_LEN},
	{"max-len", 0, CLI_REQ_ARG, "N[:UNIT]", "drop records longer than N chars (or words, lines)", O_MAX_LEN},
	{"filter-field", 0, CLI_REQ_ARG, "PATH",
	 "text the length and pattern rules look at (repeatable;\n"
	 "default: the compared text)", O_FILTER_FIELD},
	{"exclude-file", 0, CLI_REQ_ARG, "FILE",
	 "drop records matching any PCRE2 pattern of FILE (one per line,\n"
	 "# comments)", O_EXCLUDE_FILE},
	{"ignore-case", 'i', CLI_NO_ARG, NULL, "case-insensitive --exclude-file and --require", O_IGNORE_CASE},
	{"require", 0, CLI_REQ_ARG, "REGEX", "drop records not matching REGEX (repeatable)", O_REQUIRE},
	{"require-json", 0, CLI_REQ_ARG, "PATH", "drop records whose PATH is not a string holding valid JSON",
	 O_REQUIRE_JSON},
	{"match", 0, CLI_REQ_ARG, "PATH=REGEX",
	 "drop records whose PATH does not match REGEX, e.g.\n"
	 "'messages[2].content=;\\s*$' for SQL ending with ';'", O_MATCH},
	{"reject-empty-assistant", 0, CLI_NO_ARG, NULL,
	 "drop chat records with an empty or whitespace-only assistant\n"
	 "turn (the default)", O_REJECT_EMPTY},
	{"keep-empty-assistant", 0, CLI_NO_ARG, NULL, "do not check assistant turns", O_KEEP_EMPTY},
	{"on-error", 0, CLI_REQ_ARG, "WHAT", "invalid JSON line: fail (default, exit 3) or skip (count it)",
	 O_ON_ERROR},
	{NULL, 0, 0, NULL, NULL, 0},
};

static const cli_spec spec = {
	"ds-dedup",
	"[options] [INPUT.jsonl]",
	"Removes exact and near-duplicate records, evaluation-set contamination and records failing "
	"rule-based filters from JSONL (stdin or INPUT). Kept records are written to stdout in input "
	"order; every removal is counted per reason and rule, and written to --removed.",
	options,
	"  ds-dedup train.jsonl > dedup.jsonl                      # exact, normalized\n"
	"  ds-dedup --minhash --threshold 0.8 --removed gone.jsonl train.jsonl > out.jsonl\n"
	"  ds-dedup --minhash --preset datatrove -j 2 corpus.jsonl > out.jsonl\n"
	"  ds-dedup --exact --minhash --against test.jsonl --field 'messages[*].content' train.jsonl\n"
	"  ds-dedup --min-len 20:words --exclude-file banned.txt --match 'completion=;\\s*$' in.jsonl\n"
	"  ds-dedup --minhash --emit-signatures s0.sig shard0.jsonl   # per shard, then:\n"
	"  ds-dedup --merge s0.sig --merge s1.sig shard0.jsonl shard1.jsonl > all.jsonl",
	"Exit status: 0 ok, 1 runtime error, 2 usage (bad option, bad pattern file), 3 bad input data.",
};

enum { LEN_CHARS, LEN_WORDS, LEN_LINES };

typedef struct state {
	/* comparison */
	jpath *fields[64];
	int nfields;
	int exact, minhash;
	int ngram, unit, num_perm, bands, rows, hash, keep_longest, verify;
	long long seed;
	double threshold;
	int threshold_set;
	int norm;
	const char *preset;
	/* contamination, outputs */
	const char *against[64];
	int nagainst;
	const char *removed_path, *stats_path, *tmpdir, *emit_path, *keep_dir;
	const char *merge[1024];
	int nmerge;
	long long threads;
	int skip_errors;
	/* filters */
	long long min_len, max_len;
	int min_unit, max_unit, has_min, has_max;
	jpath *ffields[64];
	int nffields;
	const char *exclude_files[64];
	int nexclude;
	int ignore_case;
	const char *require[64];
	int nrequire;
	jpath *require_json[64];
	int nrequire_json;
	jpath *match_path[64];
	const char *match_re[64];
	int nmatch;
	int empty_assistant; /* 1 default */
	/* built */
	rule_list excl, req, mre; /* exclude patterns; required; --match regexes */
	char **rule_names;       /* index -> "min-len", "exclude:F:L", ... */
	size_t nrules;
	int rule_exclude0, rule_require0, rule_rjson0, rule_match0, rule_empty;
	minhash mh;
	sig_provider prov;
} state;

static state S;

static int add_path(jpath **arr, int *n, const char *arg, const char *opt, sft_error *err)
{
	if (*n >= 64) return sft_error_set(err, SFT_EXIT_USAGE, "too many --%s options (max 64)", opt);
	const char *why;
	jpath *p = jpath_parse(arg, &why);
	if (!p) return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --%s: %s", arg, opt, why);
	arr[(*n)++] = p;
	return 0;
}

static int parse_len(const char *opt, const char *arg, long long *v, int *unit, sft_error *err)
{
	char num[64];
	const char *colon = strchr(arg, ':');
	size_t nl = colon ? (size_t)(colon - arg) : strlen(arg);
	if (nl >= sizeof num) nl = sizeof num - 1;
	memcpy(num, arg, nl);
	num[nl] = 0;
	*unit = LEN_CHARS;
	if (colon) {
		const char *u = colon + 1;
		if (!strcmp(u, "chars")) *unit = LEN_CHARS;
		else if (!strcmp(u, "words")) *unit = LEN_WORDS;
		else if (!strcmp(u, "lines")) *unit = LEN_LINES;
		else
			return sft_error_set(err, SFT_EXIT_USAGE,
					     "invalid value '%s' for --%s: unit must be chars, words or lines", arg, opt);
	}
	return cli_parse_long(opt, num, 0, (long long)1 << 40, v, err);
}

#define PUSH(arr, n, v, opt)                                                                           \
	do {                                                                                           \
		if ((n) >= (int)(sizeof(arr) / sizeof(arr[0])))                                       \
			return sft_error_set(err, SFT_EXIT_USAGE, "too many --%s options", opt);       \
		(arr)[(n)++] = (v);                                                                    \
	} while (0)

static int on_option(void *ctx, int id, const char *arg, const char *source, sft_error *err)
{
	state *s = ctx;
	(void)source;
	long long v;
	/* getopt reports short options by their letter */
	if (id == 'f') id = O_FIELD;
	else if (id == 'j') id = O_THREADS;
	else if (id == 'i') id = O_IGNORE_CASE;
	switch (id) {
	case O_FIELD: return add_path(s->fields, &s->nfields, arg, "field", err);
	case O_EXACT: s->exact = 1; return 0;
	case O_MINHASH: s->minhash = 1; return 0;
	case O_PRESET:
		if (strcmp(arg, "datatrove") && strcmp(arg, "nemo"))
			return sft_error_set(err, SFT_EXIT_USAGE,
					     "invalid value '%s' for --preset: expected datatrove or nemo", arg);
		s->preset = arg;
		s->minhash = 1;
		return 0;
	case O_NGRAM:
		if (cli_parse_long("ngram", arg, 1, 4096, &v, err)) return -1;
		s->ngram = (int)v;
		return 0;
	case O_UNIT:
		if (!strcmp(arg, "word")) s->unit = MINHASH_WORD;
		else if (!strcmp(arg, "char")) s->unit = MINHASH_CHAR;
		else return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --unit: expected word or char", arg);
		return 0;
	case O_NUM_PERM:
		if (cli_parse_long("num-perm", arg, 1, 8192, &v, err)) return -1;
		s->num_perm = (int)v;
		return 0;
	case O_BANDS:
		if (cli_parse_long("bands", arg, 1, 8192, &v, err)) return -1;
		s->bands = (int)v;
		return 0;
	case O_ROWS:
		if (cli_parse_long("rows", arg, 1, 8192, &v, err)) return -1;
		s->rows = (int)v;
		return 0;
	case O_THRESHOLD:
		if (cli_parse_double("threshold", arg, 0.0, 1.0, &s->threshold, err)) return -1;
		if (s->threshold <= 0.0 || s->threshold >= 1.0)
			return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --threshold: must be in (0, 1)", arg);
		s->threshold_set = 1;
		return 0;
	case O_SEED: return cli_parse_long("seed", arg, 0, 0xffffffffLL, &s->seed, err);
	case O_HASH:
		if (!strcmp(arg, "sha1")) s->hash = MINHASH_SHA1;
		else if (!strcmp(arg, "xxh3")) s->hash = MINHASH_XXH3;
		else return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --hash: expected sha1 or xxh3", arg);
		return 0;
	case O_KEEP:
		if (!strcmp(arg, "first")) s->keep_longest = 0;
		else if (!strcmp(arg, "longest")) s->keep_longest = 1;
		else return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --keep: expected first or longest", arg);
		return 0;
	case O_VERIFY: s->verify = 1; return 0;
	case O_NO_NFC: s->norm &= ~TEXTNORM_NFC; return 0;
	case O_NO_CASEFOLD: s->norm &= ~TEXTNORM_CASEFOLD; return 0;
	case O_NO_WS: s->norm &= ~TEXTNORM_WS; return 0;
	case O_STRIP_PUNCT: s->norm |= TEXTNORM_STRIP_PUNCT; return 0;
	case O_STRIP_DIGITS: s->norm |= TEXTNORM_STRIP_DIGITS; return 0;
	case O_AGAINST: PUSH(s->against, s->nagainst, arg, "against"); return 0;
	case O_REMOVED: s->removed_path = arg; return 0;
	case O_STATS: s->stats_path = arg; return 0;
	case O_TMPDIR: s->tmpdir = arg; return 0;
	case O_THREADS: return cli_parse_long("threads", arg, 1, 256, &s->threads, err);
	case O_EMIT: s->emit_path = arg; return 0;
	case O_MERGE: PUSH(s->merge, s->nmerge, arg, "merge"); return 0;
	case O_KEEP_DIR: s->keep_dir = arg; return 0;
	case O_MIN_LEN: s->has_min = 1; return parse_len("min-len", arg, &s->min_len, &s->min_unit, err);
	case O_MAX_LEN: s->has_max = 1; return parse_len("max-len", arg, &s->max_len, &s->max_unit, err);
	case O_FILTER_FIELD: return add_path(s->ffields, &s->nffields, arg, "filter-field", err);
	case O_EXCLUDE_FILE: PUSH(s->exclude_files, s->nexclude, arg, "exclude-file"); return 0;
	case O_IGNORE_CASE: s->ignore_case = 1; return 0;
	case O_REQUIRE: PUSH(s->require, s->nrequire, arg, "require"); return 0;
	case O_REQUIRE_JSON: return add_path(s->require_json, &s->nrequire_json, arg, "require-json", err);
	case O_MATCH: {
		const char *eq = strchr(arg, '=');
		if (!eq || eq == arg)
			return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --match: expected PATH=REGEX", arg);
		char *path = strndup(arg, (size_t)(eq - arg));
		if (!path) return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		int n = s->nmatch;
		int r = add_path(s->match_path, &n, path, "match", err);
		free(path);
		if (r) return r;
		s->match_re[s->nmatch++] = eq + 1;
		return 0;
	}
	case O_REJECT_EMPTY: s->empty_assistant = 1; return 0;
	case O_KEEP_EMPTY: s->empty_assistant = 0; return 0;
	case O_ON_ERROR:
		if (!strcmp(arg, "fail")) s->skip_errors = 0;
		else if (!strcmp(arg, "skip")) s->skip_errors = 1;
		else return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --on-error: expected fail or skip", arg);
		return 0;
	}
	return sft_error_set(err, SFT_EXIT_INTERNAL, "unhandled option %d", id);
}

/* ------------------------------------------------------------------ growable arrays */

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) die(SFT_EXIT_RUNTIME, "out of memory");
	return q;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d) die(SFT_EXIT_RUNTIME, "out of memory");
	return d;
}

static void add_rule_name(const char *name)
{
	S.rule_names = xrealloc(S.rule_names, sizeof(char *) * (S.nrules + 1));
	S.rule_names[S.nrules++] = xstrdup(name);
}

/* ------------------------------------------------------------------ per-thread work */

typedef struct worker {
	jdom dom, sub;
	textnorm_buf tn;
	minhash_scratch ms;
	char *tbuf, *fbuf;
	size_t tlen, tcap, flen, fcap;
	pcre2_match_data *md;
	uint32_t *sig;
} worker;

static worker *workers; /* nworkers for the parallel parts, then one for the main thread */
static int nworkers;
#define SERIAL_W (&workers[nworkers])

static void workers_init(int n)
{
	nworkers = n;
	workers = calloc((size_t)n + 1, sizeof *workers);
	if (!workers) die(SFT_EXIT_RUNTIME, "out of memory");
	for (int i = 0; i <= n; i++) {
		workers[i].md = pcre2_match_data_create(1, NULL);
		workers[i].sig = malloc(sizeof(uint32_t) * (size_t)(S.num_perm > 0 ? S.num_perm : 1));
		if (!workers[i].md || !workers[i].sig) die(SFT_EXIT_RUNTIME, "out of memory");
	}
}

static void workers_free(void)
{
	for (int i = 0; i <= nworkers; i++) {
		worker *w = &workers[i];
		jdom_free(&w->dom);
		jdom_free(&w->sub);
		textnorm_buf_free(&w->tn);
		minhash_scratch_free(&w->ms);
		free(w->tbuf);
		free(w->fbuf);
		free(w->sig);
		pcre2_match_data_free(w->md);
	}
	free(workers);
}

/* Text of the given paths (or the whole record) into *buf. -1 on OOM. */
static int extract(const jdom *d, jpath **paths, int np, char **buf, size_t *len, size_t *cap)
{
	*len = 0;
	int first = 1;
	if (np == 0) return jdom_text(d, NULL, buf, len, cap, &first) < 0 ? -1 : 0;
	for (int i = 0; i < np; i++)
		if (jdom_text(d, paths[i], buf, len, cap, &first) < 0) return -1;
	return 0;
}

static size_t count_units(const char *s, size_t n, int unit)
{
	if (unit == LEN_WORDS) return textnorm_count_words(s, n);
	if (unit == LEN_LINES) return textnorm_count_lines(s, n);
	return textnorm_count_chars(s, n);
}

/* Any non-blank string value under node x? */
static int subtree_has_text(const jdom *d, uint32_t x)
{
	const jnode *n = &d->n[x];
	if (n->type == J_STR) return !textnorm_is_blank(jdom_str(d, n), n->len);
	if (n->type == J_OBJ || n->type == J_ARR)
		for (uint32_t c = n->first; c; c = d->n[c - 1].next)
			if (subtree_has_text(d, c - 1)) return 1;
	return 0;
}

/* Is there an assistant turn (in messages or completion) whose content is missing,
 * null, empty or whitespace-only? An assistant turn that only calls tools is fine. */
static int has_empty_assistant(const jdom *d)
{
	static const char *lists[] = {"messages", "completion"};
	if (d->nn == 0) return 0;
	for (uint32_t c = d->n[0].first; c; c = d->n[c - 1].next) {
		const jnode *lst = &d->n[c - 1];
		int hit = 0;
		for (int k = 0; k < 2; k++)
			if (lst->klen == strlen(lists[k]) && !memcmp(jdom_key(d, lst), lists[k], lst->klen)) hit = 1;
		if (!hit || lst->type != J_ARR) continue;
		for (uint32_t m = lst->first; m; m = d->n[m - 1].next) {
			const jnode *msg = &d->n[m - 1];
			if (msg->type != J_OBJ) continue;
			int is_asst = 0, tools = 0;
			uint32_t content = 0;
			for (uint32_t f = msg->first; f; f = d->n[f - 1].next) {
				const jnode *fn = &d->n[f - 1];
				const char *k = jdom_key(d, fn);
				if (fn->klen == 4 && !memcmp(k, "role", 4) && fn->type == J_STR && fn->len == 9 &&
				    !memcmp(jdom_str(d, fn), "assistant", 9))
					is_asst = 1;
				if (fn->klen == 7 && !memcmp(k, "content", 7)) content = f;
				if (fn->klen == 10 && !memcmp(k, "tool_calls", 10) && fn->type == J_ARR && fn->first) tools = 1;
			}
			if (!is_asst || tools) continue;
			if (!content || !subtree_has_text(d, content - 1)) return 1;
		}
	}
	return 0;
}

typedef struct line_result {
	uint8_t status, has_content;
	uint32_t rule, nchars;
	uint16_t err_col;
} line_result;

/* Parses, filters and keys one line. eh: 16 bytes (exact); bk: bands u64 (minhash);
 * sig_out: num_perm u32 (only when emitting signatures, else NULL). */
static void process_line(worker *w, const char *line, size_t len, int filters, line_result *res,
			 XXH128_hash_t *eh, uint64_t *bk, uint32_t *sig_out)
{
	memset(res, 0, sizeof *res);
	int pr = jdom_parse(&w->dom, line, len, 1);
	if (pr == -2) die(SFT_EXIT_RUNTIME, "out of memory");
	if (pr < 0) {
		res->status = ST_INVALID;
		res->err_col = (uint16_t)(w->dom.err_col > 65535 ? 65535 : w->dom.err_col);
		return;
	}
	if (extract(&w->dom, S.fields, S.nfields, &w->tbuf, &w->tlen, &w->tcap) < 0)
		die(SFT_EXIT_RUNTIME, "out of memory");
	if (S.minhash || S.emit_path) /* --keep longest, signature files */
		res->nchars = (uint32_t)textnorm_count_chars(w->tbuf, w->tlen);
	if (filters) {
		const char *ft = w->tbuf;
		size_t fl = w->tlen;
		if (S.nffields) {
			if (extract(&w->dom, S.ffields, S.nffields, &w->fbuf, &w->flen, &w->fcap) < 0)
				die(SFT_EXIT_RUNTIME, "out of memory");
			ft = w->fbuf, fl = w->flen;
		}
		int rule = -1;
		if (S.has_min && (long long)count_units(ft, fl, S.min_unit) < S.min_len) rule = 0;
		else if (S.has_max && (long long)count_units(ft, fl, S.max_unit) > S.max_len) rule = 1;
		for (size_t i = 0; rule < 0 && i < S.excl.n; i++)
			if (rule_search(&S.excl.r[i], ft, fl, w->md) != 0) rule = S.rule_exclude0 + (int)i;
		for (size_t i = 0; rule < 0 && i < S.req.n; i++)
			if (rule_search(&S.req.r[i], ft, fl, w->md) <= 0) rule = S.rule_require0 + (int)i;
		for (int i = 0; rule < 0 && i < S.nrequire_json; i++) {
			uint32_t sel[16];
			size_t n = jdom_select(&w->dom, S.require_json[i], sel, 16);
			int ok = n > 0 && n <= 16;
			for (size_t k = 0; ok && k < n; k++) {
				const jnode *x = &w->dom.n[sel[k]];
				if (x->type != J_STR) ok = 0;
				else {
					int r = jdom_parse(&w->sub, jdom_str(&w->dom, x), x->len, 0);
					if (r == -2) die(SFT_EXIT_RUNTIME, "out of memory");
					ok = r == 0;
				}
			}
			if (!ok) rule = S.rule_rjson0 + i;
		}
		for (int i = 0; rule < 0 && i < S.nmatch; i++) {
			uint32_t sel[16];
			size_t n = jdom_select(&w->dom, S.match_path[i], sel, 16);
			int ok = n > 0 && n <= 16;
			for (size_t k = 0; ok && k < n; k++) {
				const jnode *x = &w->dom.n[sel[k]];
				ok = x->type == J_STR && rule_search(&S.mre.r[i], jdom_str(&w->dom, x), x->len, w->md) > 0;
			}
			if (!ok) rule = S.rule_match0 + i;
		}
		if (rule < 0 && S.empty_assistant && has_empty_assistant(&w->dom)) rule = S.rule_empty;
		if (rule >= 0) {
			res->status = ST_FILTER;
			res->rule = (uint32_t)rule;
			return;
		}
	}
	size_t nl;
	const char *norm = NULL;
	if (S.exact) {
		norm = textnorm_apply(&w->tn, w->tbuf, w->tlen, S.norm, &nl);
		if (!norm) die(SFT_EXIT_RUNTIME, "out of memory");
		*eh = XXH3_128bits(norm, nl);
		res->has_content = nl > 0;
	}
	if (S.minhash) {
		if (!norm || !(S.norm & TEXTNORM_WS)) {
			norm = textnorm_apply(&w->tn, w->tbuf, w->tlen, S.norm | TEXTNORM_WS, &nl);
			if (!norm) die(SFT_EXIT_RUNTIME, "out of memory");
		}
		uint32_t *sig = sig_out ? sig_out : w->sig;
		long k = S.prov.compute(S.prov.self, norm, nl, sig, &w->ms);
		if (k < 0) die(SFT_EXIT_RUNTIME, "out of memory");
		res->has_content = k > 0;
		for (int b = 0; b < S.bands; b++)
			bk[b] = XXH3_64bits(sig + (size_t)b * (size_t)S.rows, sizeof(uint32_t) * (size_t)S.rows);
	}
}

/* Sorted shingle-hash set of a line (for --verify). Returns count; set in w->ms.h. */
static long line_shingles(worker *w, const char *line, size_t len)
{
	if (jdom_parse(&w->dom, line, len, 1) != 0) return 0;
	if (extract(&w->dom, S.fields, S.nfields, &w->tbuf, &w->tlen, &w->tcap) < 0)
		die(SFT_EXIT_RUNTIME, "out of memory");
	size_t nl;
	const char *norm = textnorm_apply(&w->tn, w->tbuf, w->tlen, S.norm | TEXTNORM_WS, &nl);
	if (!norm) die(SFT_EXIT_RUNTIME, "out of memory");
	long n = minhash_shingle_hashes(&S.mh, norm, nl, &w->ms);
	if (n < 0) die(SFT_EXIT_RUNTIME, "out of memory");
	return n;
}

/* ------------------------------------------------------------------ line reading */

typedef struct reader {
	int fd;
	int spill_fd; /* -1: no spill */
	const char *name;
	char *buf;
	size_t cap, beg, end; /* unread bytes buf[beg..end) */
	uint64_t buf_off;     /* file offset of buf[0] */
	uint64_t line;        /* lines consumed so far */
	int eof;
	/* double buffering (pass1_stream): a batch handed out stays valid while the next one
	 * is read. `live`: the last batch lies in buf, so a refill moves the unread tail into
	 * buf2 (which holds only batches already written) and swaps. Errors are kept in
	 * fatal/fatal_code instead of dying, to be reported where a one-buffer run would. */
	char *buf2;
	size_t cap2;
	int live, pipe, defer, fatal_code;
	char *fatal;
	/* a regular file may be mapped instead (pass1_stream): buf is then a window of the
	 * mapping that moves exactly as the read() buffer would, without the copy */
	char *map;
	size_t map_size;  /* whole mapping */
	uint64_t map_len; /* bytes from the starting offset to the end of the file */
	size_t released;  /* bytes from the mapping's start given back (MADV_DONTNEED) */
} reader;

static void reader_init(reader *r, int fd, int spill_fd, const char *name)
{
	memset(r, 0, sizeof *r);
	r->fd = fd, r->spill_fd = spill_fd, r->name = name;
	r->cap = 16 << 20;
	r->buf = xrealloc(NULL, r->cap);
}

static void write_all(int fd, const char *p, size_t n, const char *what)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0) {
			if (errno == EINTR) continue;
			die(SFT_EXIT_RUNTIME, "%s: write error: %s", what, strerror(errno));
		}
		p += k, n -= (size_t)k;
	}
}

static void reader_fatal(reader *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reader_fatal(reader *r, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (!r->defer) die(code, "%s", msg);
	if (!r->fatal) r->fatal = xstrdup(msg), r->fatal_code = code;
}

/* Refills: keeps buf[beg..end), reads more. Returns bytes read (0 at EOF). */
static size_t reader_fill(reader *r)
{
	if (r->map) {
		r->buf_off += r->beg;
		r->buf += r->beg;
		r->end -= r->beg;
		r->beg = 0;
		if (r->end == r->cap) r->cap *= 2;
		uint64_t avail = r->map_len - r->buf_off - r->end;
		size_t k = r->cap - r->end < avail ? r->cap - r->end : (size_t)avail;
		if (k == 0) r->eof = 1;
		r->end += k;
		return k;
	}
	if (r->live && r->buf2) {
		size_t tail = r->end - r->beg, need = tail == r->cap ? r->cap * 2 : r->cap;
		if (r->cap2 < need) {
			free(r->buf2);
			r->buf2 = xrealloc(NULL, need);
			r->cap2 = need;
		}
		memcpy(r->buf2, r->buf + r->beg, tail);
		char *t = r->buf;
		size_t tc = r->cap;
		r->buf = r->buf2, r->cap = r->cap2;
		r->buf2 = t, r->cap2 = tc;
		r->buf_off += r->beg;
		r->end = tail;
		r->beg = 0;
		r->live = 0;
	}
	if (r->beg > 0) {
		memmove(r->buf, r->buf + r->beg, r->end - r->beg);
		r->buf_off += r->beg;
		r->end -= r->beg;
		r->beg = 0;
	}
	if (r->end == r->cap) {
		r->cap *= 2;
		r->buf = xrealloc(r->buf, r->cap);
	}
	size_t got = 0;
	for (;;) {
		ssize_t k = read(r->fd, r->buf + r->end, r->cap - r->end);
		if (k < 0) {
			if (errno == EINTR) continue;
			reader_fatal(r, SFT_EXIT_RUNTIME, "%s: read error: %s", r->name, strerror(errno));
			r->eof = 1;
			return got;
		}
		if (k == 0) r->eof = 1;
		if (k > 0 && r->spill_fd >= 0) write_all(r->spill_fd, r->buf + r->end, (size_t)k, "spill file");
		r->end += (size_t)k;
		got += (size_t)k;
		/* a pipe gives at most its capacity per read: gather 4 MB for a batch */
		if (r->pipe && r->buf2 && k > 0 && got < (4u << 20) && r->end < r->cap) continue;
		return got;
	}
}

typedef struct span {
	const char *p;
	uint64_t off, line;
	uint32_t len;
} span;

static int is_blank_line(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return 0;
	return 1;
}

/* Collects up to max non-blank complete lines from the buffer (reading as needed).
 * Returns the count; 0 at end of input. Spans point into r->buf and are valid until the
 * next call. */
static size_t reader_batch(reader *r, span *out, size_t max)
{
	size_t n = 0;
	for (;;) {
		while (n < max) {
			char *nl = memchr(r->buf + r->beg, '\n', r->end - r->beg);
			size_t e;
			if (nl) e = (size_t)(nl - r->buf);
			else if (r->eof && r->end > r->beg) e = r->end;
			else break;
			r->line++;
			size_t len = e - r->beg;
			if (len > 0xffffffffULL) {
				reader_fatal(r, SFT_EXIT_DATA, "%s:%llu: line too long", r->name, (unsigned long long)r->line);
				return 0;
			}
			if (!is_blank_line(r->buf + r->beg, len)) {
				out[n].p = r->buf + r->beg;
				out[n].off = r->buf_off + r->beg;
				out[n].line = r->line;
				out[n].len = (uint32_t)len;
				n++;
			}
			r->beg = nl ? e + 1 : e;
		}
		if (n > 0 || (r->eof && r->beg == r->end)) {
			if (n > 0 && r->defer) r->live = 1;
			return n;
		}
		reader_fill(r);
		if (r->fatal) return 0;
	}
}

/* ------------------------------------------------------------------ record store */

static rec *recs;
static size_t nrec, caprec;
static XXH128_hash_t *ehash;   /* (nrec) when exact */
static uint64_t *bkeys;        /* (nrec, bands) when minhash */
static evrec *evs;
static size_t nev, capev;
static XXH128_hash_t *ev_ehash;
static uint64_t *ev_bkeys;
static source *srcs;
static size_t nsrc;

static size_t add_source(const char *path, int fd)
{
	srcs = xrealloc(srcs, sizeof(source) * (nsrc + 1));
	srcs[nsrc].path = path;
	srcs[nsrc].fd = fd;
	return nsrc++;
}

static void grow_recs(size_t need)
{
	if (need <= caprec) return;
	size_t nc = caprec ? caprec : 4096;
	while (nc < need) nc *= 2;
	recs = xrealloc(recs, nc * sizeof *recs);
	if (S.exact) ehash = xrealloc(ehash, nc * sizeof *ehash);
	if (S.minhash) bkeys = xrealloc(bkeys, nc * sizeof(uint64_t) * (size_t)S.bands);
	caprec = nc;
}

/* ------------------------------------------------------------------ signature files */

#define SIG_MAGIC "SFTDSIG1"
#define SIG_END "SFTDEND1"

typedef struct sig_header {
	char magic[8];
	uint32_t version, modes, num_perm, ngram, unit, hash, seed, norm;
	uint8_t reserved[24];
} sig_header;

typedef struct sig_rec {
	uint64_t line, off;
	uint32_t len, nchars, flags, pad;
} sig_rec;

typedef struct sig_writer {
	atomic_file *af;
	XXH64_state_t *xs;
	uint64_t count;
} sig_writer;

static void sw_write(sig_writer *w, const void *p, size_t n)
{
	if (fwrite(p, 1, n, w->af->fp) != n) die(SFT_EXIT_RUNTIME, "%s: write error", S.emit_path);
	XXH64_update(w->xs, p, n);
}

/* ------------------------------------------------------------------ pass 1 */

/* Exact-only runs decide each record as it arrives and write it at once (one pass). */
static FILE *stream_out, *stream_rm;
static int exact_streamed;
static void exact_check(size_t i);
static void emit_batch(const char *buf_end, const span *sp, size_t n, size_t *kp, size_t hi, FILE *out, FILE *rm);

#define BATCH 8192

typedef struct pass1_out {
	uint64_t read, invalid;
	uint64_t first_invalid_line; /* for --on-error fail */
	uint16_t first_invalid_col;
} pass1_out;

/* Reads one source; for eval sources (filters off) results go to evs. */
static void pass1(reader *r, uint32_t src, int is_eval, sig_writer *sw, progress *pg, pass1_out *po)
{
	span *sp = xrealloc(NULL, sizeof(span) * BATCH);
	line_result *lr = xrealloc(NULL, sizeof(line_result) * BATCH);
	XXH128_hash_t *beh = xrealloc(NULL, sizeof(XXH128_hash_t) * BATCH);
	uint64_t *bbk = S.minhash ? xrealloc(NULL, sizeof(uint64_t) * (size_t)S.bands * BATCH) : NULL;
	uint32_t *bsig = sw && S.minhash ? xrealloc(NULL, sizeof(uint32_t) * (size_t)S.num_perm * BATCH) : NULL;
	size_t n;
	while ((n = reader_batch(r, sp, BATCH)) > 0) {
#pragma omp parallel for num_threads(nworkers) schedule(dynamic, 16)
		for (size_t i = 0; i < n; i++) {
			worker *w = &workers[omp_get_thread_num()];
			process_line(w, sp[i].p, sp[i].len, !is_eval, &lr[i], &beh[i],
				     bbk ? bbk + i * (size_t)S.bands : NULL, bsig ? bsig + i * (size_t)S.num_perm : NULL);
		}
		uint64_t bytes = 0;
		for (size_t i = 0; i < n; i++) {
			bytes += sp[i].len + 1;
			po->read++;
			if (lr[i].status == ST_INVALID) {
				po->invalid++;
				if (!po->first_invalid_line)
					po->first_invalid_line = sp[i].line, po->first_invalid_col = lr[i].err_col;
				if (is_eval || !S.skip_errors) {
					/* re-parse for the message */
					worker *w = SERIAL_W;
					jdom_parse(&w->dom, sp[i].p, sp[i].len, 1);
					die(SFT_EXIT_DATA, "%s:%llu:%zu: %s", r->name, (unsigned long long)sp[i].line,
					    w->dom.err_col, w->dom.err_msg);
				}
			}
			if (is_eval) {
				if (nev == capev) {
					capev = capev ? capev * 2 : 1024;
					evs = xrealloc(evs, capev * sizeof *evs);
					if (S.exact) ev_ehash = xrealloc(ev_ehash, capev * sizeof *ev_ehash);
					if (S.minhash) ev_bkeys = xrealloc(ev_bkeys, capev * sizeof(uint64_t) * (size_t)S.bands);
				}
				evs[nev] = (evrec){sp[i].off, sp[i].line, sp[i].len, src};
				if (S.exact) ev_ehash[nev] = lr[i].has_content ? beh[i] : (XXH128_hash_t){0, 0};
				if (S.minhash)
					memcpy(ev_bkeys + nev * (size_t)S.bands, bbk + i * (size_t)S.bands,
					       sizeof(uint64_t) * (size_t)S.bands);
				/* an eval record without content matches nothing */
				if (!lr[i].has_content) evs[nev].len = 0;
				nev++;
				continue;
			}
			grow_recs(nrec + 1);
			rec *x = &recs[nrec];
			memset(x, 0, sizeof *x);
			x->off = sp[i].off, x->line = sp[i].line, x->len = sp[i].len, x->src = src;
			x->nchars = lr[i].nchars, x->status = lr[i].status, x->has_content = lr[i].has_content;
			x->rule = lr[i].rule, x->err_col = lr[i].err_col, x->jaccard = -1, x->dup_of = -1;
			if (S.exact) ehash[nrec] = beh[i];
			if (S.minhash)
				memcpy(bkeys + nrec * (size_t)S.bands, bbk + i * (size_t)S.bands, sizeof(uint64_t) * (size_t)S.bands);
			if (sw && x->status == ST_KEEP) {
				sig_rec sr = {x->line, x->off, x->len, x->nchars, x->has_content, 0};
				sw_write(sw, &sr, sizeof sr);
				if (S.exact) sw_write(sw, &beh[i], sizeof beh[i]);
				if (S.minhash) sw_write(sw, bsig + i * (size_t)S.num_perm, sizeof(uint32_t) * (size_t)S.num_perm);
				sw->count++;
			}
			nrec++;
		}
		if (exact_streamed && !is_eval) {
			size_t base = nrec - n, k = base; /* every span became a record */
			for (size_t i = base; i < nrec; i++) exact_check(i);
			emit_batch(r->buf + r->end, sp, n, &k, nrec, stream_out, stream_rm);
		}
		if (pg) progress_add(pg, n, bytes);
	}
	free(sp);
	free(lr);
	free(beh);
	free(bbk);
	free(bsig);
}

/* Exact-only input (pass1_stream): batches are keyed by the worker threads while the
 * main thread decides and writes the previous batch and reads the next one, so the
 * sequential part (reading, keep-first decisions, output) overlaps the parallel one.
 * Batches, decisions and output are those of pass1 + emit_batch, in the same order. */
typedef struct sbatch {
	span *sp;
	line_result *lr;
	XXH128_hash_t *eh;
	size_t n;
	const char *buf_end;
} sbatch;

/* Records, decides and writes one keyed batch. Returns 0, or 1 + the index of an
 * invalid line that stops the run (nothing of the batch is written then). */
static size_t stream_finish(reader *r, sbatch *b, uint32_t src, progress *pg, pass1_out *po)
{
	uint64_t bytes = 0;
	size_t base = nrec;
	for (size_t i = 0; i < b->n; i++) {
		const span *sp = &b->sp[i];
		const line_result *lr = &b->lr[i];
		bytes += sp->len + 1;
		po->read++;
		if (lr->status == ST_INVALID) {
			po->invalid++;
			if (!po->first_invalid_line) po->first_invalid_line = sp->line, po->first_invalid_col = lr->err_col;
			if (!S.skip_errors) return i + 1;
		}
		grow_recs(nrec + 1);
		rec *x = &recs[nrec];
		memset(x, 0, sizeof *x);
		x->off = sp->off, x->line = sp->line, x->len = sp->len, x->src = src;
		x->nchars = lr->nchars, x->status = lr->status, x->has_content = lr->has_content;
		x->rule = lr->rule, x->err_col = lr->err_col, x->jaccard = -1, x->dup_of = -1;
		ehash[nrec] = b->eh[i];
		nrec++;
	}
	size_t k = base;
	for (size_t i = base; i < nrec; i++) exact_check(i);
	emit_batch(b->buf_end, b->sp, b->n, &k, nrec, stream_out, stream_rm);
	if (pg) progress_add(pg, b->n, bytes);
	if (r->map && b->n) {
		/* the pages before this batch's end are not needed again: keep the RSS small */
		size_t done = (size_t)(b->sp[b->n - 1].p + b->sp[b->n - 1].len - r->map);
		size_t pg_sz = 1 << 16, upto = done / pg_sz * pg_sz;
		if (upto > r->released + (4u << 20)) {
			madvise(r->map + r->released, upto - r->released, MADV_DONTNEED);
			r->released = upto;
		}
	}
	return 0;
}

static void pass1_stream(reader *r, uint32_t src, progress *pg, pass1_out *po)
{
	struct stat st;
	int reg = fstat(r->fd, &st) == 0 && S_ISREG(st.st_mode);
	r->pipe = !reg;
	r->defer = 1;
	off_t pos = reg ? lseek(r->fd, 0, SEEK_CUR) : -1;
	if (reg && pos >= 0 && st.st_size > pos && (uint64_t)st.st_size <= SIZE_MAX) {
		void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, r->fd, 0);
		if (m != MAP_FAILED) {
			madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
			r->map = m;
			r->map_size = (size_t)st.st_size;
			r->map_len = (uint64_t)(st.st_size - pos);
			free(r->buf);
			r->buf = r->map + pos;
		}
	}
	if (!r->map) {
		r->cap2 = r->cap;
		r->buf2 = xrealloc(NULL, r->cap2);
	}
	sbatch b[3];
	for (int q = 0; q < 3; q++) {
		b[q].sp = xrealloc(NULL, sizeof(span) * BATCH);
		b[q].lr = xrealloc(NULL, sizeof(line_result) * BATCH);
		b[q].eh = xrealloc(NULL, sizeof(XXH128_hash_t) * BATCH);
		b[q].n = 0;
	}
	int cur = 0, prev = -1;
	size_t stop = 0;
	b[cur].n = reader_batch(r, b[cur].sp, BATCH);
	b[cur].buf_end = r->buf + r->end;
	while (b[cur].n > 0) {
		int nxt = (cur + 1) % 3;
		sbatch *c = &b[cur];
		b[nxt].n = 0;
#pragma omp parallel num_threads(nworkers)
		{
#pragma omp single nowait
			{
				if (prev >= 0) stop = stream_finish(r, &b[prev], src, pg, po);
				if (!stop) {
					b[nxt].n = reader_batch(r, b[nxt].sp, BATCH);
					b[nxt].buf_end = r->buf + r->end;
				}
			}
#pragma omp for schedule(dynamic, 16)
			for (size_t i = 0; i < c->n; i++)
				process_line(&workers[omp_get_thread_num()], c->sp[i].p, c->sp[i].len, 1, &c->lr[i], &c->eh[i],
					     NULL, NULL);
		}
		if (stop) break;
		prev = cur;
		cur = nxt;
	}
	if (!stop && prev >= 0) stop = stream_finish(r, &b[prev], src, pg, po);
	if (stop) {
		const span *sp = &b[prev].sp[stop - 1];
		worker *w = SERIAL_W;
		jdom_parse(&w->dom, sp->p, sp->len, 1);
		die(SFT_EXIT_DATA, "%s:%llu:%zu: %s", r->name, (unsigned long long)sp->line, w->dom.err_col, w->dom.err_msg);
	}
	if (r->fatal) die(r->fatal_code, "%s", r->fatal);
	for (int q = 0; q < 3; q++) {
		free(b[q].sp);
		free(b[q].lr);
		free(b[q].eh);
	}
	free(r->buf2);
	r->buf2 = NULL;
	if (r->map) {
		munmap(r->map, r->map_size);
		r->map = NULL;
		r->buf = NULL; /* the caller frees buf */
	}
}

/* ------------------------------------------------------------------ decisions */

static uint32_t *parent;

static uint32_t uf_find(uint32_t x)
{
	while (parent[x] != x) {
		parent[x] = parent[parent[x]];
		x = parent[x];
	}
	return x;
}

static void uf_union(uint32_t a, uint32_t b)
{
	a = uf_find(a), b = uf_find(b);
	if (a == b) return;
	if (a < b) parent[b] = a; /* the root is always the smallest index */
	else parent[a] = b;
}

typedef struct kv {
	uint64_t key;
	uint64_t idx; /* record index, or (1<<63 | eval index) */
} kv;

static int cmp_kv(const void *x, const void *y)
{
	const kv *a = x, *b = y;
	if (a->key != b->key) return a->key < b->key ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

#define EVBIT (1ULL << 63)

static void read_at(int fd, uint64_t off, char *buf, size_t len, const char *name)
{
	size_t got = 0;
	while (got < len) {
		ssize_t k = pread(fd, buf + got, len - got, (off_t)(off + got));
		if (k < 0 && errno == EINTR) continue;
		if (k <= 0) die(SFT_EXIT_RUNTIME, "%s: cannot re-read input at byte %llu: %s", name,
				(unsigned long long)(off + got), k < 0 ? strerror(errno) : "file shrank");
		got += (size_t)k;
	}
}

/* Shingle set of a record or eval record into a malloc'ed array. */
static uint64_t *shingles_of(int is_eval, size_t idx, size_t *n)
{
	int fd;
	uint64_t off;
	size_t len;
	const char *name;
	if (is_eval) fd = srcs[evs[idx].src].fd, off = evs[idx].off, len = evs[idx].len, name = srcs[evs[idx].src].path;
	else fd = srcs[recs[idx].src].fd, off = recs[idx].off, len = recs[idx].len, name = srcs[recs[idx].src].path;
	if (fd < 0) die(SFT_EXIT_USAGE, "--verify needs the shard inputs");
	char *buf = xrealloc(NULL, len + 1);
	read_at(fd, off, buf, len, name);
	worker *w = &workers[0];
	long k = line_shingles(w, buf, len);
	free(buf);
	uint64_t *out = xrealloc(NULL, sizeof(uint64_t) * (size_t)(k > 0 ? k : 1));
	memcpy(out, w->ms.h, sizeof(uint64_t) * (size_t)k);
	*n = (size_t)k;
	return out;
}

typedef struct decide_out {
	uint64_t clusters, largest, candidate_pairs;
} decide_out;

static int eligible(size_t i) { return recs[i].status == ST_KEEP && recs[i].has_content; }

/* Exact-duplicate table: open addressing over record indexes (idx + 1, EVBIT for eval
 * records), grown as records arrive so that exact-only runs decide in one pass. */
static uint64_t *xtab;
static size_t xcap, xcount;

static const XXH128_hash_t *xkey(uint64_t t)
{
	return t & EVBIT ? &ev_ehash[(t & ~EVBIT) - 1] : &ehash[t - 1];
}

static void xtab_insert_raw(uint64_t t)
{
	size_t h = (size_t)xkey(t)->low64 & (xcap - 1);
	while (xtab[h]) h = (h + 1) & (xcap - 1);
	xtab[h] = t;
}

static void xtab_grow(void)
{
	uint64_t *old = xtab;
	size_t oc = xcap;
	xcap = xcap ? xcap * 2 : 1 << 16;
	xtab = calloc(xcap, sizeof(uint64_t));
	if (!xtab) die(SFT_EXIT_RUNTIME, "out of memory");
	for (size_t k = 0; k < oc; k++)
		if (old[k]) xtab_insert_raw(old[k]);
	free(old);
}

/* Looks the key up; inserts it when absent. Returns 0 (new) or the entry found. */
static uint64_t xtab_find_or_insert(uint64_t t)
{
	if ((xcount + 1) * 2 > xcap) xtab_grow();
	const XXH128_hash_t *k = xkey(t);
	size_t h = (size_t)k->low64 & (xcap - 1);
	for (;; h = (h + 1) & (xcap - 1)) {
		if (!xtab[h]) {
			xtab[h] = t;
			xcount++;
			return 0;
		}
		if (XXH128_isEqual(*xkey(xtab[h]), *k)) return xtab[h];
	}
}

static void exact_load_evals(void)
{
	for (size_t e = 0; e < nev; e++)
		if (evs[e].len) xtab_find_or_insert((e + 1) | EVBIT);
}

/* Decides record i (which must be in ehash) against everything before it. */
static void exact_check(size_t i)
{
	if (!(recs[i].status == ST_KEEP && recs[i].has_content)) return;
	uint64_t t = xtab_find_or_insert(i + 1);
	if (!t) return;
	int ev = (t & EVBIT) != 0;
	size_t j = (size_t)(t & ~EVBIT) - 1;
	recs[i].status = ev ? ST_CONTAM : ST_EXACT;
	recs[i].dup_of = ev ? -(int64_t)j - 1 : (int64_t)j;
	if (ev && S.verify) recs[i].jaccard = 1.0f;
}

static void decide(decide_out *dout)
{
	memset(dout, 0, sizeof *dout);
	/* exact: eval set first (contamination), then first occurrence wins */
	if (S.exact && !exact_streamed)
		for (size_t i = 0; i < nrec; i++) exact_check(i);
	if (!S.minhash) return;
	if (nrec > 0xfffffffeULL) die(SFT_EXIT_RUNTIME, "too many records for one run: use shards");
	parent = xrealloc(NULL, sizeof(uint32_t) * (nrec ? nrec : 1));
	for (size_t i = 0; i < nrec; i++) parent[i] = (uint32_t)i;
	kv *arr = xrealloc(NULL, sizeof(kv) * (nrec + nev + 1));
	uint64_t *set0 = NULL;
	size_t n0 = 0, set0_of = (size_t)-1;
	/* phase 1: contamination (a train record sharing a bucket with an eval record);
	 * phase 2: clusters among the remaining train records */
	for (int phase = nev ? 1 : 2; phase <= 2; phase++) {
		for (int b = 0; b < S.bands; b++) {
			size_t m = 0;
			if (phase == 1)
				for (size_t e = 0; e < nev; e++)
					if (evs[e].len) arr[m++] = (kv){ev_bkeys[e * (size_t)S.bands + (size_t)b], e | EVBIT};
			for (size_t i = 0; i < nrec; i++)
				if (eligible(i)) arr[m++] = (kv){bkeys[i * (size_t)S.bands + (size_t)b], i};
			qsort(arr, m, sizeof(kv), cmp_kv);
			for (size_t g = 0; g < m;) {
				size_t h = g + 1;
				while (h < m && arr[h].key == arr[g].key) h++;
				/* group [g, h): eval entries sort last (EVBIT) */
				if (phase == 1) {
					size_t fe = g;
					while (fe < h && !(arr[fe].idx & EVBIT)) fe++;
					if (fe < h) {
						size_t e = (size_t)(arr[fe].idx & ~EVBIT);
						for (size_t k = g; k < fe; k++) {
							size_t i = (size_t)arr[k].idx;
							if (recs[i].status != ST_KEEP) continue;
							double j = -1;
							if (S.verify) {
								if (set0_of != (e | EVBIT)) {
									free(set0);
									set0 = shingles_of(1, e, &n0);
									set0_of = e | EVBIT;
								}
								size_t n1;
								uint64_t *s1 = shingles_of(0, i, &n1);
								j = minhash_jaccard_sets(set0, n0, s1, n1);
								free(s1);
								if (j < S.threshold) continue;
							}
							recs[i].status = ST_CONTAM;
							recs[i].dup_of = -(int64_t)e - 1;
							recs[i].jaccard = (float)j;
						}
					}
				} else if (h - g > 1) {
					size_t first = (size_t)arr[g].idx;
					for (size_t k = g + 1; k < h; k++) {
						size_t i = (size_t)arr[k].idx;
						dout->candidate_pairs++;
						if (uf_find((uint32_t)i) == uf_find((uint32_t)first)) continue;
						if (S.verify) {
							if (set0_of != first) {
								free(set0);
								set0 = shingles_of(0, first, &n0);
								set0_of = first;
							}
							size_t n1;
							uint64_t *s1 = shingles_of(0, i, &n1);
							double j = minhash_jaccard_sets(set0, n0, s1, n1);
							free(s1);
							if (j < S.threshold) continue;
						}
						uf_union((uint32_t)first, (uint32_t)i);
					}
				}
				g = h;
			}
		}
	}
	free(set0);
	free(arr);
	/* clusters: root = smallest index; pick the representative */
	uint32_t *rep = xrealloc(NULL, sizeof(uint32_t) * (nrec ? nrec : 1));
	uint32_t *size = calloc(nrec ? nrec : 1, sizeof(uint32_t));
	if (!size) die(SFT_EXIT_RUNTIME, "out of memory");
	for (size_t i = 0; i < nrec; i++) {
		if (!eligible(i)) continue;
		uint32_t r = uf_find((uint32_t)i);
		if (size[r]++ == 0) rep[r] = r;
		else if (S.keep_longest && recs[i].nchars > recs[rep[r]].nchars) rep[r] = (uint32_t)i;
	}
	for (size_t i = 0; i < nrec; i++) {
		if (!eligible(i)) continue;
		uint32_t r = uf_find((uint32_t)i);
		if (i == r && size[r] > 1) {
			dout->clusters++;
			if (size[r] > dout->largest) dout->largest = size[r];
		}
		if (rep[r] != i) {
			recs[i].status = ST_MINHASH;
			recs[i].dup_of = rep[r];
		}
	}
	free(rep);
	free(size);
	free(parent);
	parent = NULL;
}

/* ------------------------------------------------------------------ outputs */

static const char *reason_name(const rec *x, char *buf, size_t cap)
{
	switch (x->status) {
	case ST_FILTER: snprintf(buf, cap, "filter:%s", S.rule_names[x->rule]); return buf;
	case ST_EXACT: return "exact";
	case ST_MINHASH: return "minhash";
	case ST_CONTAM: return "contamination";
	case ST_INVALID: return "invalid-json";
	}
	return "kept";
}

static void put_json_string(FILE *fp, const char *s, size_t n)
{
	json_t *v = json_stringn_nocheck(s, n);
	if (!v) die(SFT_EXIT_RUNTIME, "out of memory");
	json_write_compact(fp, v);
	json_decref(v);
}

static int merge_mode;

static void write_dup_ref(FILE *fp, const rec *x)
{
	if (x->dup_of < 0) {
		const evrec *e = &evs[-x->dup_of - 1];
		char ref[4200];
		snprintf(ref, sizeof ref, "%s:%llu", srcs[e->src].path, (unsigned long long)e->line);
		put_json_string(fp, ref, strlen(ref));
	} else if (merge_mode) {
		const rec *k = &recs[x->dup_of];
		char ref[4200];
		snprintf(ref, sizeof ref, "%s:%llu", srcs[k->src].path, (unsigned long long)k->line);
		put_json_string(fp, ref, strlen(ref));
	} else {
		fprintf(fp, "%llu", (unsigned long long)recs[x->dup_of].line);
	}
}

static void write_removed(FILE *fp, size_t i, const char *line)
{
	rec *x = &recs[i];
	char rb[600];
	fprintf(fp, "{\"line\":%llu,", (unsigned long long)x->line);
	if (merge_mode) {
		fputs("\"shard\":", fp);
		put_json_string(fp, srcs[x->src].path, strlen(srcs[x->src].path));
		fputc(',', fp);
	}
	fputs("\"reason\":", fp);
	const char *rn = reason_name(x, rb, sizeof rb);
	put_json_string(fp, rn, strlen(rn));
	if (x->status == ST_EXACT || x->status == ST_MINHASH || x->status == ST_CONTAM) {
		fputs(",\"duplicate_of\":", fp);
		write_dup_ref(fp, x);
		double j = x->jaccard;
		if (S.verify && x->status == ST_MINHASH && line) {
			size_t na, nb;
			uint64_t *a = shingles_of(0, i, &na);
			uint64_t *b = shingles_of(0, (size_t)x->dup_of, &nb);
			j = minhash_jaccard_sets(a, na, b, nb);
			free(a);
			free(b);
		}
		if (S.verify && x->status == ST_EXACT) j = 1.0;
		if (j >= 0) {
			char d[64];
			json_format_double(j, d, sizeof d);
			fprintf(fp, ",\"jaccard\":%s", d);
		}
	}
	if (x->status == ST_INVALID) {
		worker *w = SERIAL_W;
		jdom_parse(&w->dom, line, x->len, 1);
		char msg[256];
		snprintf(msg, sizeof msg, "%zu: %s", w->dom.err_col, w->dom.err_msg ? w->dom.err_msg : "invalid");
		fputs(",\"error\":", fp);
		put_json_string(fp, msg, strlen(msg));
		fputs(",\"text\":", fp);
		put_json_string(fp, line, x->len);
	} else if (line) {
		fputs(",\"record\":", fp);
		fwrite(line, 1, x->len, fp);
	}
	fputs("}\n", fp);
}

/* Writes a batch: kept lines to out, removed ones to rm. *k walks records [.., hi) of
 * this source by line number. Kept lines that follow each other in the read buffer are
 * written as one run (the bytes, newlines included, are the input's own). */
static void emit_batch(const char *buf_end, const span *sp, size_t n, size_t *kp, size_t hi, FILE *out, FILE *rm)
{
	size_t k = *kp;
	const char *run = NULL, *run_end = NULL;
	for (size_t i = 0; i < n; i++) {
		while (k < hi && recs[k].line < sp[i].line) k++;
		if (k >= hi || recs[k].line != sp[i].line) continue; /* filtered in the shard run */
		if (recs[k].status == ST_KEEP) {
			if (out) {
				const char *e = sp[i].p + sp[i].len;
				if (e < buf_end && *e == '\n') {
					if (run && run_end == sp[i].p) {
						run_end = e + 1;
					} else {
						if (run && fwrite(run, 1, (size_t)(run_end - run), out) != (size_t)(run_end - run))
							die(SFT_EXIT_RUNTIME, "write error: %s", strerror(errno));
						run = sp[i].p, run_end = e + 1;
					}
				} else { /* last line without a newline */
					if (run) fwrite(run, 1, (size_t)(run_end - run), out);
					run = NULL;
					fwrite(sp[i].p, 1, sp[i].len, out);
					putc('\n', out);
				}
			}
		} else if (rm) {
			write_removed(rm, k, sp[i].p);
		}
		k++;
	}
	if (run && fwrite(run, 1, (size_t)(run_end - run), out) != (size_t)(run_end - run))
		die(SFT_EXIT_RUNTIME, "write error: %s", strerror(errno));
	*kp = k;
}

/* Pass 2 over one source: records [lo, hi) of recs belong to it (sorted by line). */
static void pass2(reader *r, size_t lo, size_t hi, FILE *out, FILE *rm)
{
	span *sp = xrealloc(NULL, sizeof(span) * BATCH);
	size_t n, k = lo;
	while ((n = reader_batch(r, sp, BATCH)) > 0) emit_batch(r->buf + r->end, sp, n, &k, hi, out, rm);
	free(sp);
}

/* ------------------------------------------------------------------ main */

static void setup_rules(void)
{
	sft_error err = {0};
	add_rule_name("min-len");
	add_rule_name("max-len");
	S.rule_exclude0 = (int)S.nrules;
	for (int i = 0; i < S.nexclude; i++)
		if (rules_load_file(&S.excl, S.exclude_files[i], S.ignore_case, &err)) die_err(&err);
	for (size_t i = 0; i < S.excl.n; i++) add_rule_name(S.excl.r[i].name);
	S.rule_require0 = (int)S.nrules;
	for (int i = 0; i < S.nrequire; i++) {
		char name[64], where[64];
		snprintf(name, sizeof name, "require:%d", i + 1);
		snprintf(where, sizeof where, "--require #%d", i + 1);
		if (rules_add(&S.req, S.require[i], strlen(S.require[i]), S.ignore_case, name, where, &err)) die_err(&err);
		add_rule_name(name);
	}
	S.rule_rjson0 = (int)S.nrules;
	for (int i = 0; i < S.nrequire_json; i++) {
		char name[600];
		snprintf(name, sizeof name, "require-json:%s", S.require_json[i]->text);
		add_rule_name(name);
	}
	S.rule_match0 = (int)S.nrules;
	for (int i = 0; i < S.nmatch; i++) {
		char name[600], where[600];
		snprintf(name, sizeof name, "match:%s", S.match_path[i]->text);
		snprintf(where, sizeof where, "--match %s", S.match_path[i]->text);
		if (rules_add(&S.mre, S.match_re[i], strlen(S.match_re[i]), 0, name, where, &err)) die_err(&err);
		add_rule_name(name);
	}
	S.rule_empty = (int)S.nrules;
	add_rule_name("empty-assistant");
}

static void setup_minhash(void)
{
	if (S.preset && !strcmp(S.preset, "datatrove")) {
		if (!S.ngram) S.ngram = 5;
		if (!S.bands && !S.rows && !S.threshold_set) S.bands = 14, S.rows = 8;
		S.norm |= TEXTNORM_STRIP_PUNCT;
	} else if (S.preset && !strcmp(S.preset, "nemo")) {
		if (!S.ngram) S.ngram = 24;
		if (S.unit < 0) S.unit = MINHASH_CHAR;
		if (!S.bands && !S.rows && !S.threshold_set) S.bands = 20, S.rows = 13;
	}
	if (!S.ngram) S.ngram = 5;
	if (S.unit < 0) S.unit = MINHASH_WORD;
	if (!S.threshold_set) S.threshold = 0.8;
	if ((S.bands > 0) != (S.rows > 0)) die_usage("--bands and --rows go together");
	if (S.bands) {
		if (!S.num_perm) S.num_perm = S.bands * S.rows;
		if (S.bands * S.rows > S.num_perm)
			die_usage("--bands x --rows (%d) exceeds --num-perm (%d)", S.bands * S.rows, S.num_perm);
	} else {
		if (!S.num_perm) S.num_perm = 128;
		minhash_optimal_param(S.threshold, S.num_perm, 0.5, 0.5, &S.bands, &S.rows);
	}
	minhash_params p = {S.num_perm, S.ngram, S.unit, S.hash, (uint32_t)S.seed};
	sft_error err = {0};
	if (minhash_init(&S.mh, &p, &err)) die_err(&err);
	S.prov = minhash_provider(&S.mh);
}

static int open_input(const char *path, const char **name)
{
	if (!path || !strcmp(path, "-")) {
		*name = "<stdin>";
		return 0;
	}
	int fd = open(path, O_RDONLY);
	if (fd < 0) die(SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
	*name = path;
	return fd;
}

/* Spill file for a non-seekable input: created and unlinked at once, so nothing is
 * left behind whatever happens. */
static int make_spill(void)
{
	const char *dir = S.tmpdir ? S.tmpdir : getenv("TMPDIR");
	if (!dir || !*dir) dir = "/tmp";
	size_t n = strlen(dir) + 32;
	char *tmpl = xrealloc(NULL, n);
	snprintf(tmpl, n, "%s/ds-dedup-XXXXXX", dir);
	int fd = mkstemp(tmpl);
	if (fd < 0) die(SFT_EXIT_RUNTIME, "%s: cannot create spill file: %s", dir, strerror(errno));
	unlink(tmpl);
	free(tmpl);
	return fd;
}

/* Output files go through atomic.h, except an existing non-regular target such as
 * /dev/stdout or a FIFO, which is written in place (renaming over it would replace the
 * device node). */
typedef struct outfile {
	atomic_file *af;
	FILE *fp;
	const char *path;
} outfile;

static FILE *out_open(outfile *o, const char *path)
{
	memset(o, 0, sizeof *o);
	o->path = path;
	struct stat st;
	if (strcmp(path, "-") && stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		o->fp = fopen(path, "w");
		if (!o->fp) die(SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		return o->fp;
	}
	sft_error err = {0};
	o->af = atomic_open(path, &err);
	if (!o->af) die_err(&err);
	return o->fp = o->af->fp;
}

static void out_commit(outfile *o)
{
	if (!o->fp) return;
	if (o->af) {
		sft_error err = {0};
		if (atomic_commit(o->af, &err)) die_err(&err);
	} else if (fclose(o->fp) != 0) {
		die(SFT_EXIT_RUNTIME, "%s: write error: %s", o->path, strerror(errno));
	}
	o->fp = NULL;
}

static FILE *open_removed(outfile *o)
{
	memset(o, 0, sizeof *o);
	if (!S.removed_path) return NULL;
	return out_open(o, S.removed_path);
}

/* Merge: loads every signature file into recs (src = shard index). */
static void load_sigs(void)
{
	sig_header h0 = {0};
	for (int s = 0; s < S.nmerge; s++) {
		const char *path = S.merge[s];
		FILE *f = fopen(path, "rb");
		if (!f) die(SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		XXH64_state_t *xs = XXH64_createState();
		XXH64_reset(xs, 0);
		sig_header h;
		if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, SIG_MAGIC, 8))
			die(SFT_EXIT_DATA, "%s: byte 0: not a ds-dedup signature file", path);
		if (h.version != 1) die(SFT_EXIT_DATA, "%s: byte 8: unsupported version %u", path, h.version);
		XXH64_update(xs, &h, sizeof h);
		if (s == 0) {
			h0 = h;
			S.exact = (h.modes & 1) != 0;
			S.minhash = (h.modes & 2) != 0;
			S.num_perm = (int)h.num_perm, S.ngram = (int)h.ngram, S.unit = (int)h.unit, S.hash = (int)h.hash;
			S.seed = h.seed, S.norm = (int)h.norm;
			if (S.minhash) setup_minhash();
		} else if (memcmp(&h, &h0, sizeof h))
			die(SFT_EXIT_DATA, "%s: parameters differ from %s (all shards need the same options)", path, S.merge[0]);
		size_t src = add_source(path, -1);
		uint32_t *sig = xrealloc(NULL, sizeof(uint32_t) * (size_t)(S.num_perm > 0 ? S.num_perm : 1));
		uint64_t off = sizeof h;
		for (;;) {
			sig_rec sr;
			if (fread(&sr, sizeof sr, 1, f) != 1) die(SFT_EXIT_DATA, "%s: byte %llu: truncated", path, (unsigned long long)off);
			if (!memcmp(&sr, SIG_END, 8)) {
				/* footer: magic, count, checksum (the checksum covers all before it) */
				uint64_t cnt = sr.off, sum;
				XXH64_update(xs, &sr, 16);
				uint64_t calc = XXH64_digest(xs);
				memcpy(&sum, &sr.len, 8);
				if (sum != calc) die(SFT_EXIT_DATA, "%s: byte %llu: checksum mismatch", path, (unsigned long long)off);
				size_t have = 0;
				for (size_t i = 0; i < nrec; i++) have += recs[i].src == src;
				if (cnt != have) die(SFT_EXIT_DATA, "%s: byte %llu: record count mismatch", path, (unsigned long long)off);
				break;
			}
			XXH64_update(xs, &sr, sizeof sr);
			off += sizeof sr;
			grow_recs(nrec + 1);
			rec *x = &recs[nrec];
			memset(x, 0, sizeof *x);
			x->off = sr.off, x->line = sr.line, x->len = sr.len, x->nchars = sr.nchars;
			x->has_content = sr.flags & 1, x->src = (uint32_t)src, x->jaccard = -1, x->dup_of = -1;
			if (nrec > 0 && recs[nrec - 1].src == src && recs[nrec - 1].line >= x->line)
				die(SFT_EXIT_DATA, "%s: byte %llu: lines out of order", path, (unsigned long long)off);
			if (S.exact) {
				if (fread(&ehash[nrec], sizeof(XXH128_hash_t), 1, f) != 1)
					die(SFT_EXIT_DATA, "%s: byte %llu: truncated", path, (unsigned long long)off);
				XXH64_update(xs, &ehash[nrec], sizeof(XXH128_hash_t));
				off += sizeof(XXH128_hash_t);
			}
			if (S.minhash) {
				size_t sz = sizeof(uint32_t) * (size_t)S.num_perm;
				if (fread(sig, 1, sz, f) != sz) die(SFT_EXIT_DATA, "%s: byte %llu: truncated", path, (unsigned long long)off);
				XXH64_update(xs, sig, sz);
				off += sz;
				for (int b = 0; b < S.bands; b++)
					bkeys[nrec * (size_t)S.bands + (size_t)b] =
						XXH3_64bits(sig + (size_t)b * (size_t)S.rows, sizeof(uint32_t) * (size_t)S.rows);
			}
			nrec++;
		}
		free(sig);
		XXH64_freeState(xs);
		fclose(f);
	}
}

int main(int argc, char **argv)
{
	log_init(argv[0]);
	json_object_seed(0);
	S.norm = TEXTNORM_NFC | TEXTNORM_CASEFOLD | TEXTNORM_WS;
	S.unit = -1;
	S.seed = 1;
	S.empty_assistant = 1;
	char **pos = NULL;
	int npos = cli_parse(&spec, argc, argv, on_option, &S, &pos);
	merge_mode = S.nmerge > 0;
	if (!merge_mode && npos > 1) die_usage("one INPUT at a time (use --emit-signatures/--merge for shards)");
	if (merge_mode && S.emit_path) die_usage("--merge and --emit-signatures cannot be used together");
	if (merge_mode && npos && npos != S.nmerge)
		die_usage("--merge: give one input per signature file (%d), or none with --keep-dir", S.nmerge);
	if (merge_mode && !npos && !S.keep_dir) die_usage("--merge needs the shard inputs or --keep-dir");
	if (S.keep_dir && !merge_mode) die_usage("--keep-dir goes with --merge");
	if (merge_mode && S.verify && !npos) die_usage("--verify with --merge needs the shard inputs");
	if (!merge_mode && !S.exact && !S.minhash) S.exact = 1;
	if (S.threads <= 0) S.threads = omp_get_num_procs();

	if (merge_mode) load_sigs();
	else if (S.minhash) setup_minhash();
	setup_rules();
	workers_init((int)S.threads);

	/* evaluation sets */
	for (int a = 0; a < S.nagainst; a++) {
		const char *name;
		int fd = open_input(S.against[a], &name);
		if (fd == 0) die_usage("--against needs a file, not stdin");
		size_t src = add_source(S.against[a], fd);
		reader r;
		reader_init(&r, fd, -1, name);
		pass1_out po = {0};
		pass1(&r, (uint32_t)src, 1, NULL, NULL, &po);
		free(r.buf);
	}

	if (S.exact) exact_load_evals();
	exact_streamed = S.exact && !S.minhash && !merge_mode && !S.emit_path;
	outfile rm_of;
	FILE *rm = open_removed(&rm_of);
	static char obuf[1 << 20];
	setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
	stream_out = stdout, stream_rm = rm;

	progress pg;
	pass1_out po = {0};
	const char *in_name = NULL;
	int in_fd = -1, spill = -1;
	sig_writer sw = {0};
	size_t in_src = 0;
	if (!merge_mode) {
		in_fd = open_input(npos ? pos[0] : NULL, &in_name);
		struct stat st = {0};
		if (fstat(in_fd, &st) == 0 && !S_ISREG(st.st_mode) && !exact_streamed) spill = make_spill();
		in_src = add_source(in_name, spill >= 0 ? spill : in_fd);
		if (S.emit_path) {
			sft_error err = {0};
			sw.af = atomic_open(S.emit_path, &err);
			if (!sw.af) die_err(&err);
			sw.xs = XXH64_createState();
			XXH64_reset(sw.xs, 0);
			sig_header h = {.version = 1};
			memcpy(h.magic, SIG_MAGIC, 8);
			h.modes = (uint32_t)(S.exact | (S.minhash << 1));
			if (S.minhash)
				h.num_perm = (uint32_t)S.num_perm, h.ngram = (uint32_t)S.ngram, h.unit = (uint32_t)S.unit,
				h.hash = (uint32_t)S.hash, h.seed = (uint32_t)S.seed;
			h.norm = (uint32_t)S.norm;
			sw_write(&sw, &h, sizeof h);
		}
		reader r;
		reader_init(&r, in_fd, spill, in_name);
		progress_start(&pg, "records", 0, (uint64_t)(S_ISREG(st.st_mode) ? st.st_size : 0));
		if (exact_streamed) pass1_stream(&r, (uint32_t)in_src, &pg, &po);
		else pass1(&r, (uint32_t)in_src, 0, S.emit_path ? &sw : NULL, &pg, &po);
		progress_finish(&pg);
		free(r.buf);
		if (S.emit_path) {
			char foot[32] = {0};
			memcpy(foot, SIG_END, 8);
			memcpy(foot + 8, &sw.count, 8);
			XXH64_update(sw.xs, foot, 16);
			uint64_t sum = XXH64_digest(sw.xs);
			memcpy(foot + 16, &sum, 8);
			if (fwrite(foot, 1, 32, sw.af->fp) != 32) die(SFT_EXIT_RUNTIME, "%s: write error", S.emit_path);
			XXH64_freeState(sw.xs);
			sft_error err = {0};
			if (atomic_commit(sw.af, &err)) die_err(&err);
		}
	}

	decide_out dout = {0};
	if (!S.emit_path) decide(&dout);

	/* pass 2 */
	if (exact_streamed) {
		/* written during pass 1 */
	} else if (!merge_mode) {
		int fd2 = spill >= 0 ? spill : in_fd;
		if (lseek(fd2, 0, SEEK_SET) < 0) die(SFT_EXIT_RUNTIME, "%s: cannot rewind: %s", in_name, strerror(errno));
		reader r;
		reader_init(&r, fd2, -1, in_name);
		pass2(&r, 0, nrec, S.emit_path ? NULL : stdout, rm);
		free(r.buf);
	} else if (npos) {
		size_t lo = 0;
		for (int s = 0; s < S.nmerge; s++) {
			const char *name;
			int fd = open_input(pos[s], &name);
			if (fd == 0) die_usage("--merge inputs must be files");
			srcs[s].fd = fd;
			srcs[s].path = pos[s]; /* the audit names the shard input */
		}
		for (int s = 0; s < S.nmerge; s++) {
			size_t hi = lo;
			while (hi < nrec && recs[hi].src == (uint32_t)s) hi++;
			reader r;
			reader_init(&r, srcs[s].fd, -1, pos[s]);
			pass2(&r, lo, hi, stdout, rm);
			free(r.buf);
			lo = hi;
		}
	} else {
		sft_error err = {0};
		if (fs_mkdir_p(S.keep_dir, &err)) die_err(&err);
		size_t i = 0;
		for (int s = 0; s < S.nmerge; s++) {
			const char *base = strrchr(S.merge[s], '/');
			base = base ? base + 1 : S.merge[s];
			size_t n = strlen(S.keep_dir) + strlen(base) + 8;
			char *path = xrealloc(NULL, n);
			snprintf(path, n, "%s/%s.keep", S.keep_dir, base);
			atomic_file *af = atomic_open(path, &err);
			if (!af) die_err(&err);
			for (; i < nrec && recs[i].src == (uint32_t)s; i++) {
				if (recs[i].status == ST_KEEP) fprintf(af->fp, "%llu\n", (unsigned long long)recs[i].line);
				else if (rm) write_removed(rm, i, NULL);
			}
			if (atomic_commit(af, &err)) die_err(&err);
			free(path);
		}
	}
	out_commit(&rm_of);

	/* summary */
	uint64_t by[8] = {0};
	uint64_t *per_rule = calloc(S.nrules + 1, sizeof(uint64_t));
	uint64_t *per_ev_src = calloc(nsrc + 1, sizeof(uint64_t));
	if (!per_rule || !per_ev_src) die(SFT_EXIT_RUNTIME, "out of memory");
	for (size_t i = 0; i < nrec; i++) {
		by[recs[i].status]++;
		if (recs[i].status == ST_FILTER) per_rule[recs[i].rule]++;
		if (recs[i].status == ST_CONTAM) per_ev_src[evs[-recs[i].dup_of - 1].src]++;
	}
	uint64_t read_n = merge_mode ? nrec : po.read;
	uint64_t kept = by[ST_KEEP], removed = read_n - kept;
	if (S.emit_path) kept = by[ST_KEEP];
	log_info("read %llu, kept %llu, removed %llu (exact %llu, minhash %llu, contamination %llu, filter %llu, "
		 "invalid %llu)",
		 (unsigned long long)read_n, (unsigned long long)kept, (unsigned long long)removed,
		 (unsigned long long)by[ST_EXACT], (unsigned long long)by[ST_MINHASH], (unsigned long long)by[ST_CONTAM],
		 (unsigned long long)by[ST_FILTER], (unsigned long long)by[ST_INVALID]);
	for (size_t k = 0; k < S.nrules; k++)
		if (per_rule[k]) log_info("  filter:%s: %llu", S.rule_names[k], (unsigned long long)per_rule[k]);
	for (size_t k = 0; k < nsrc; k++)
		if (per_ev_src[k]) log_info("  contamination from %s: %llu", srcs[k].path, (unsigned long long)per_ev_src[k]);
	if (S.minhash && !S.emit_path)
		log_info("minhash: %d bands x %d rows, %llu clusters, largest %llu", S.bands, S.rows,
			 (unsigned long long)dout.clusters, (unsigned long long)dout.largest);
	if (S.emit_path) log_info("wrote %llu signatures to %s", (unsigned long long)sw.count, S.emit_path);
	if (S.stats_path) {
		outfile so;
		FILE *f = out_open(&so, S.stats_path);
		fprintf(f, "{\"read\":%llu,\"kept\":%llu,\"removed\":%llu,\"removed_by_reason\":{", (unsigned long long)read_n,
			(unsigned long long)kept, (unsigned long long)removed);
		fprintf(f, "\"exact\":%llu,\"minhash\":%llu,\"contamination\":%llu,\"invalid-json\":%llu",
			(unsigned long long)by[ST_EXACT], (unsigned long long)by[ST_MINHASH], (unsigned long long)by[ST_CONTAM],
			(unsigned long long)by[ST_INVALID]);
		for (size_t k = 0; k < S.nrules; k++)
			if (per_rule[k]) {
				char nm[700];
				snprintf(nm, sizeof nm, "filter:%s", S.rule_names[k]);
				fputc(',', f);
				put_json_string(f, nm, strlen(nm));
				fprintf(f, ":%llu", (unsigned long long)per_rule[k]);
			}
		fputs("},\"contamination_by_file\":{", f);
		int first = 1;
		for (size_t k = 0; k < nsrc; k++)
			if (per_ev_src[k]) {
				if (!first) fputc(',', f);
				first = 0;
				put_json_string(f, srcs[k].path, strlen(srcs[k].path));
				fprintf(f, ":%llu", (unsigned long long)per_ev_src[k]);
			}
		fprintf(f, "},\"clusters\":%llu,\"largest_cluster\":%llu", (unsigned long long)dout.clusters,
			(unsigned long long)dout.largest);
		if (S.minhash)
			fprintf(f, ",\"bands\":%d,\"rows\":%d,\"num_perm\":%d,\"candidate_pairs\":%llu", S.bands, S.rows,
				S.num_perm, (unsigned long long)dout.candidate_pairs);
		fputs("}\n", f);
		out_commit(&so);
	}
	free(per_rule);
	free(per_ev_src);
	stdout_close_or_die();
	workers_free();
	rules_free(&S.excl);
	rules_free(&S.req);
	rules_free(&S.mre);
	minhash_free(&S.mh);
	free(pos);
	return 0;
}
