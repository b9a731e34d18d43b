/* ds-fetch - load dataset records from local files, archives, URLs and the Hugging Face
 * Hub, and write them as JSONL. See docs/ds-fetch.md. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "atomic.h"
#include "cli.h"
#include "csv.h"
#include "hfhub.h"
#include "http.h"
#include "jsonl.h"
#include "log.h"
#include "parquet.h"
#include "progress.h"
#include "source.h"

enum {
	OPT_OUTPUT = 'o',
	OPT_FORMAT = 256,
	OPT_GLOB,
	OPT_SPLIT,
	OPT_SUBSET,
	OPT_REVISION,
	OPT_COLUMNS,
	OPT_SAMPLE,
	OPT_SEED,
	OPT_RATIOS,
	OPT_TAKE,
	OPT_LIMIT,
	OPT_ON_ERROR,
	OPT_STATS,
	OPT_LIST,
	OPT_RETRIES,
	OPT_CACHE,
};

static const cli_option options[] = {
	{"output", 'o', CLI_REQ_ARG, "FILE", "write to FILE (atomically: all or nothing) instead of stdout", OPT_OUTPUT},
	{"format", 0, CLI_REQ_ARG, "FMT", "input format when the name does not tell: jsonl, json, csv, tsv, parquet",
	 OPT_FORMAT},
	{"glob", 0, CLI_REQ_ARG, "GLOB", "members of archives/directories (and hf:// files) to read, e.g. '*.jsonl'",
	 OPT_GLOB},
	{"split", 0, CLI_REQ_ARG, "NAME", "split of an hf:// dataset, of a directory laid out like one,\nor of a JSON {split: [...]} file",
	 OPT_SPLIT},
	{"subset", 0, CLI_REQ_ARG, "NAME", "subset (config) of an hf:// dataset or such a directory, e.g. fr_de",
	 OPT_SUBSET},
	{"revision", 0, CLI_REQ_ARG, "REV", "hf:// branch, tag or commit (default main; refs/convert/parquet)",
	 OPT_REVISION},
	{"columns", 0, CLI_REQ_ARG, "LIST", "keep these fields, in this order; a:b keeps a renamed to b", OPT_COLUMNS},
	{"sample", 0, CLI_REQ_ARG, "N", "keep N records chosen uniformly at random (input order kept)", OPT_SAMPLE},
	{"seed", 0, CLI_REQ_ARG, "N", "seed for --sample and --split-ratios (default 0)", OPT_SEED},
	{"split-ratios", 0, CLI_REQ_ARG, "LIST",
	 "assign records to named parts by a hash of their content,\ne.g. train=0.8,validation=0.1,test=0.1",
	 OPT_RATIOS},
	{"take", 0, CLI_REQ_ARG, "NAME", "the part of --split-ratios to write", OPT_TAKE},
	{"limit", 0, CLI_REQ_ARG, "N", "stop after writing N records", OPT_LIMIT},
	{"on-error", 0, CLI_REQ_ARG, "MODE", "fail (default) or skip bad records (counted in the summary)",
	 OPT_ON_ERROR},
	{"stats-json", 0, CLI_REQ_ARG, "FILE", "write a JSON summary (records, sources, skipped, ...) to FILE",
	 OPT_STATS},
	{"list", 0, CLI_NO_ARG, NULL, "for hf:// sources and directories: print subset, split, file and size;\nread nothing",
	 OPT_LIST},
	{"retries", 0, CLI_REQ_ARG, "N", "HTTP attempts per request (default 5)", OPT_RETRIES},
	{"cache-dir", 0, CLI_REQ_ARG, "DIR", "download cache (default $SFT_CACHE or ~/.cache/sftkit/hub)", OPT_CACHE},
	{NULL, 0, 0, NULL, NULL, 0},
};

static const cli_spec spec = {
	.prog = "ds-fetch",
	.usage = "[options] [SOURCE...]",
	.summary = "Reads dataset records and writes them to stdout as JSONL, one object per line.\n"
		   "SOURCE: a .jsonl, .json, .csv, .tsv or .parquet file (optionally .gz/.zst/.xz/.bz2),\n"
		   "a .tar.*/.zip archive or a directory (members chosen by --glob; with --split,\n"
		   "--subset or --list, subsets and splits as for hf://), '-' for stdin,\n"
		   "an http(s):// URL, or hf://datasets/ORG/NAME (HF_TOKEN, HF_ENDPOINT honoured).\n"
		   "Several sources are read in order; none means stdin.",
	.opts = options,
	.examples = "  ds-fetch train.jsonl.gz --columns sql_prompt:prompt,sql:completion\n"
		    "  ds-fetch hf://datasets/ORG/NAME --subset fr_de --split train -o train.jsonl\n"
		    "  ds-fetch hf://datasets/ORG/NAME --list\n"
		    "  ds-fetch ./cloned-dataset --subset fr_de --split validation\n"
		    "  ds-fetch data.tar.zst --glob 'data/*.csv' --sample 1000 --seed 7\n"
		    "  ds-fetch all.jsonl --split-ratios train=0.9,test=0.1 --take test > test.jsonl\n",
	.footer = "  3: malformed record (file:line:column), bad CSV quoting, corrupt archive or Parquet,\n"
		  "     checksum mismatch; 1: network or I/O; 2: bad options, unknown split or subset\n"
		  "     (the message lists what exists).\n"
		  "Environment: HF_TOKEN (sent as a Bearer token), HF_ENDPOINT (default\n"
		  "https://huggingface.co), SFT_CACHE (download cache). See docs/ds-fetch.md.\n",
};

typedef struct column {
	char *from, *to;
} column;

typedef struct part {
	char *name;
	double upper; /* cumulative upper bound in [0, 1] */
} part;

typedef struct sampled {
	uint64_t key;
	uint64_t idx;
	json_t *rec;
} sampled;

typedef struct app {
	/* options */
	const char *output, *glob, *split, *subset, *revision, *stats_path, *cache_dir;
	src_format force_format;
	column *cols;
	size_t ncols;
	long long sample, limit, retries;
	uint64_t seed;
	part *parts;
	size_t nparts;
	const char *take;
	int take_idx;
	int skip_errors, list;
	int in_hf, warned_split;
	/* state */
	FILE *out;
	atomic_file *af;
	http_opts http;
	uint64_t written, read, skipped, filtered, passed;
	size_t sources, files;
	int done; /* --limit reached */
	sampled *heap;
	size_t nheap;
	progress prog;
	char *dump, *canon;
	size_t dump_cap, canon_cap;
} app;

/* ---- options ---- */

static int parse_columns(app *a, const char *arg, sft_error *err)
{
	char *s = strdup(arg), *save = NULL;
	for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		if (colon)
			*colon = '\0';
		const char *to = colon ? colon + 1 : tok;
		if (!*tok || !*to) {
			free(s);
			return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --columns: empty name", arg);
		}
		a->cols = realloc(a->cols, (a->ncols + 1) * sizeof *a->cols);
		a->cols[a->ncols].from = strdup(tok);
		a->cols[a->ncols].to = strdup(to);
		a->ncols++;
	}
	free(s);
	if (!a->ncols)
		return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --columns: no names", arg);
	return 0;
}

static int parse_ratios(app *a, const char *arg, sft_error *err)
{
	char *s = strdup(arg), *save = NULL;
	double sum = 0;
	for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		char *end = NULL;
		double v = eq ? strtod(eq + 1, &end) : -1;
		if (!eq || eq == tok || !end || *end || !(v >= 0 && v <= 1)) {
			free(s);
			return sft_error_set(err, SFT_EXIT_USAGE,
					     "invalid value '%s' for --split-ratios: expected NAME=FRACTION,...", arg);
		}
		*eq = '\0';
		for (size_t i = 0; i < a->nparts; i++)
			if (!strcmp(a->parts[i].name, tok)) {
				free(s);
				return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --split-ratios: '%s' twice",
						     arg, tok);
			}
		sum += v;
		a->parts = realloc(a->parts, (a->nparts + 1) * sizeof *a->parts);
		a->parts[a->nparts].name = strdup(tok);
		a->parts[a->nparts].upper = sum;
		a->nparts++;
	}
	free(s);
	if (!a->nparts || sum < 0.999999 || sum > 1.000001)
		return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --split-ratios: fractions sum to %g, not 1",
				     arg, sum);
	a->parts[a->nparts - 1].upper = 1.0;
	return 0;
}

static int on_option(void *ctx, int id, const char *arg, const char *source, sft_error *err)
{
	(void)source;
	app *a = ctx;
	long long v;
	switch (id) {
	case OPT_OUTPUT:
		a->output = arg;
		return 0;
	case OPT_FORMAT:
		a->force_format = src_format_parse(arg);
		if (a->force_format == SRC_FMT_UNKNOWN)
			return sft_error_set(err, SFT_EXIT_USAGE,
					     "invalid value '%s' for --format: expected jsonl, json, csv, tsv or parquet", arg);
		return 0;
	case OPT_GLOB:
		a->glob = arg;
		return 0;
	case OPT_SPLIT:
		a->split = arg;
		return 0;
	case OPT_SUBSET:
		a->subset = arg;
		return 0;
	case OPT_REVISION:
		a->revision = arg;
		return 0;
	case OPT_COLUMNS:
		return parse_columns(a, arg, err);
	case OPT_SAMPLE:
		return cli_parse_long("sample", arg, 1, (long long)1 << 32, &a->sample, err);
	case OPT_SEED:
		if (cli_parse_long("seed", arg, 0, INT64_MAX, &v, err) < 0)
			return -1;
		a->seed = (uint64_t)v;
		return 0;
	case OPT_RATIOS:
		return parse_ratios(a, arg, err);
	case OPT_TAKE:
		a->take = arg;
		return 0;
	case OPT_LIMIT:
		return cli_parse_long("limit", arg, 0, INT64_MAX, &a->limit, err);
	case OPT_ON_ERROR:
		if (!strcmp(arg, "fail"))
			a->skip_errors = 0;
		else if (!strcmp(arg, "skip"))
			a->skip_errors = 1;
		else
			return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --on-error: expected fail or skip",
					     arg);
		return 0;
	case OPT_STATS:
		a->stats_path = arg;
		return 0;
	case OPT_LIST:
		a->list = 1;
		return 0;
	case OPT_RETRIES:
		return cli_parse_long("retries", arg, 1, 100, &a->retries, err);
	case OPT_CACHE:
		a->cache_dir = arg;
		return 0;
	}
	return sft_error_set(err, SFT_EXIT_INTERNAL, "unhandled option %d", id);
}

/* ---- record pipeline ---- */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static int cmp_cstr(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Deep copy with object keys in byte order (= code point order for UTF-8). */
static json_t *canon_copy(json_t *v)
{
	if (json_is_object(v)) {
		size_t n = json_object_size(v), i = 0;
		const char **keys = malloc((n ? n : 1) * sizeof *keys);
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x) keys[i++] = k;
		qsort(keys, n, sizeof *keys, cmp_cstr);
		json_t *o = json_object();
		for (i = 0; i < n; i++)
			json_object_set_new(o, keys[i], canon_copy(json_object_get(v, keys[i])));
		free(keys);
		return o;
	}
	if (json_is_array(v)) {
		json_t *a = json_array();
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x) json_array_append_new(a, canon_copy(x));
		return a;
	}
	return json_incref(v);
}

/* Which --split-ratios part a record falls in: XXH3-64 (seeded with --seed) of its
 * canonical JSON (keys sorted, compact, UTF-8, floats as Python's repr: the bytes of
 * Python's json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)),
 * mapped to u = (h >> 11) / 2^53 in [0, 1) and compared with the cumulative fractions.
 * It depends on nothing but the record and the seed, so appending records never moves
 * earlier ones, and the same record lands in the same part on every machine. */
static int part_of(app *a, json_t *rec)
{
	json_t *c = canon_copy(rec);
	size_t len = 0;
	uint64_t h = 0;
	if (json_dump_compact(c, &a->canon, &len, &a->canon_cap) == 0)
		h = XXH3_64bits_withSeed(a->canon, len, a->seed);
	json_decref(c);
	double u = (double)(h >> 11) * (1.0 / 9007199254740992.0);
	for (size_t i = 0; i < a->nparts; i++)
		if (u < a->parts[i].upper)
			return (int)i;
	return (int)a->nparts - 1;
}

static void heap_sift_down(sampled *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && h[l].key > h[m].key)
			m = l;
		if (r < n && h[r].key > h[m].key)
			m = r;
		if (m == i)
			return;
		sampled t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void heap_sift_up(sampled *h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h[p].key >= h[i].key)
			return;
		sampled t = h[i];
		h[i] = h[p];
		h[p] = t;
		i = p;
	}
}

static int write_record(app *a, json_t *rec, sft_error *err)
{
	size_t len = 0;
	if (json_dump_compact(rec, &a->dump, &len, &a->dump_cap) < 0)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	if (len + 1 > a->dump_cap) {
		a->dump = realloc(a->dump, len + 1);
		a->dump_cap = len + 1;
	}
	a->dump[len] = '\n';
	if (fwrite(a->dump, 1, len + 1, a->out) != len + 1)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write error: %s", a->output ? a->output : "<stdout>",
				     strerror(errno));
	a->written++;
	progress_add(&a->prog, 1, len + 1);
	if (a->limit > 0 && !a->sample && a->written >= (uint64_t)a->limit)
		a->done = 1;
	return 0;
}

/* Takes ownership of rec. `where` names the record for errors ("x.jsonl:12"). */
static int handle_record(app *a, json_t *rec, const char *where, sft_error *err)
{
	a->read++;
	if (a->nparts) {
		if (part_of(a, rec) != a->take_idx) {
			a->filtered++;
			json_decref(rec);
			return 0;
		}
	}
	if (a->ncols) {
		json_t *o = json_object();
		for (size_t i = 0; i < a->ncols; i++) {
			json_t *v = json_object_get(rec, a->cols[i].from);
			if (!v) {
				json_decref(o);
				json_decref(rec);
				return sft_error_set(err, SFT_EXIT_DATA, "%s: no field '%s' (for --columns)", where,
						     a->cols[i].from);
			}
			json_object_set(o, a->cols[i].to, v);
		}
		json_decref(rec);
		rec = o;
	}
	uint64_t idx = a->passed++;
	if (a->sample > 0) {
		uint64_t key = splitmix64(splitmix64(a->seed) ^ idx);
		if (a->nheap < (size_t)a->sample) {
			a->heap[a->nheap] = (sampled){key, idx, rec};
			heap_sift_up(a->heap, a->nheap++);
		} else if (key < a->heap[0].key) {
			json_decref(a->heap[0].rec);
			a->heap[0] = (sampled){key, idx, rec};
			heap_sift_down(a->heap, a->nheap, 0);
		} else {
			json_decref(rec);
		}
		return 0;
	}
	int rc = write_record(a, rec, err);
	json_decref(rec);
	return rc;
}

static int cmp_sampled(const void *x, const void *y)
{
	const sampled *p = x, *q = y;
	return p->idx < q->idx ? -1 : p->idx > q->idx;
}

static int flush_sample(app *a, sft_error *err)
{
	if (!a->heap)
		return 0;
	qsort(a->heap, a->nheap, sizeof *a->heap, cmp_sampled);
	int rc = 0;
	for (size_t i = 0; i < a->nheap; i++) {
		if (rc == 0 && !(a->limit > 0 && a->written >= (uint64_t)a->limit))
			rc = write_record(a, a->heap[i].rec, err);
		json_decref(a->heap[i].rec);
	}
	a->nheap = 0;
	return rc;
}

/* A bad record: counted and reported under --on-error=skip, else fatal. */
static int bad_record(app *a, sft_error *err)
{
	if (!a->skip_errors || err->code != SFT_EXIT_DATA)
		return -1;
	a->skipped++;
	if (a->skipped <= 10)
		log_warn("skipped: %s", err->msg);
	else if (a->skipped == 11)
		log_warn("more bad records skipped; the count is in the summary");
	sft_error_clear(err);
	return 0;
}

/* Turns a read error on a decompressed stream into the decoder's message. */
static int stream_error(const src_member *m, const char *name, sft_error *err)
{
	const char *d = src_member_decode_error(m);
	if (d)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: corrupt compressed data: %s", name, d);
	return -err->code;
}

/* JSONL and CSV records go through the same loop; a reader is its next and line. */
typedef struct rec_reader {
	void *r;
	int (*next)(void *r, json_t **rec, sft_error *err);
	long (*line)(const void *r);
} rec_reader;

static int jsonl_next_rec(void *r, json_t **rec, sft_error *err) { return jsonl_next(r, rec, err); }
static long jsonl_line_rec(const void *r) { return jsonl_line(r); }
static int csv_next_rec(void *r, json_t **rec, sft_error *err) { return csv_next_object(r, rec, err); }
static long csv_line_rec(const void *r) { return csv_record_line(r); }

static int read_records(app *a, src_member *m, const char *name, const rec_reader *rr, sft_error *err)
{
	int rc = 0;
	while (!a->done) {
		json_t *rec = NULL;
		rc = rr->next(rr->r, &rec, err);
		if (rc == 0)
			break;
		if (rc < 0) {
			if (err->code == SFT_EXIT_RUNTIME) {
				rc = stream_error(m, name, err);
				break;
			}
			if ((rc = bad_record(a, err)) < 0)
				break;
			continue;
		}
		char where[1100];
		snprintf(where, sizeof where, "%s:%ld", name, rr->line(rr->r));
		if ((rc = handle_record(a, rec, where, err)) < 0 && (rc = bad_record(a, err)) < 0)
			break;
	}
	return rc < 0 ? rc : 0;
}

static int read_jsonl(app *a, src_member *m, const char *name, sft_error *err)
{
	jsonl_reader *r = jsonl_open_stream(m->fp, name);
	if (!r)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	int rc = read_records(a, m, name, &(rec_reader){r, jsonl_next_rec, jsonl_line_rec}, err);
	jsonl_close(r);
	return rc;
}

static int read_csv(app *a, src_member *m, const char *name, int delim, sft_error *err)
{
	csv_reader *r = csv_open_stream(m->fp, name, delim);
	if (!r)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	int rc = read_records(a, m, name, &(rec_reader){r, csv_next_rec, csv_line_rec}, err);
	csv_close(r);
	return rc;
}

static int read_json(app *a, src_member *m, const char *name, sft_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	if (src_slurp(m->fp, &buf, &len, err, name) < 0)
		return stream_error(m, name, err);
	json_t *doc = json_parse_located(buf, len, name, 1, 1, err);
	free(buf);
	if (!doc)
		return -1;
	json_t *arr = NULL;
	const char *split_name = NULL;
	if (json_is_array(doc)) {
		arr = doc;
		if (a->split)
			log_verbose("%s: a JSON array has no splits; --split %s ignored for it", name, a->split);
	} else if (json_is_object(doc)) {
		/* {split: [records...]} when every value is an array, else a single record */
		int all_arrays = json_object_size(doc) > 0;
		const char *k;
		json_t *v;
		json_object_foreach(doc, k, v) if (!json_is_array(v)) all_arrays = 0;
		if (!all_arrays) {
			json_incref(doc);
			char where[1100];
			snprintf(where, sizeof where, "%s", name);
			int rc = handle_record(a, doc, where, err);
			json_decref(doc);
			return rc < 0 && bad_record(a, err) < 0 ? -1 : 0;
		}
		char names[700] = "";
		size_t n = 0;
		json_object_foreach(doc, k, v) if (n + strlen(k) + 3 < sizeof names) n +=
			(size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", k);
		if (a->split) {
			arr = json_object_get(doc, a->split);
			split_name = a->split;
			if (!arr) {
				json_decref(doc);
				return sft_error_set(err, SFT_EXIT_USAGE, "%s: unknown split '%s'; available: %s", name,
						     a->split, names);
			}
		} else if (json_object_size(doc) == 1) {
			json_object_foreach(doc, k, v) {
				arr = v;
				split_name = k;
			}
		} else {
			json_decref(doc);
			return sft_error_set(err, SFT_EXIT_USAGE, "%s has several splits; choose one with --split: %s", name,
					     names);
		}
	} else {
		json_decref(doc);
		return sft_error_set(err, SFT_EXIT_DATA, "%s: expected a JSON array of objects or {split: [...]}", name);
	}
	size_t i;
	json_t *e;
	int rc = 0;
	json_array_foreach(arr, i, e) {
		if (a->done)
			break;
		char where[1100];
		if (split_name)
			snprintf(where, sizeof where, "%s: %s[%zu]", name, split_name, i);
		else
			snprintf(where, sizeof where, "%s: [%zu]", name, i);
		if (!json_is_object(e)) {
			sft_error_set(err, SFT_EXIT_DATA, "%s: expected an object, got %s", where,
				      json_is_array(e) ? "an array" : json_is_string(e) ? "a string" : "a scalar");
			if ((rc = bad_record(a, err)) < 0)
				break;
			continue;
		}
		if ((rc = handle_record(a, json_incref(e), where, err)) < 0 && (rc = bad_record(a, err)) < 0)
			break;
	}
	json_decref(doc);
	return rc < 0 ? -1 : 0;
}

static int read_parquet(app *a, src_member *m, const char *name, sft_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	parquet_file *pf;
	if (m->path && !m->compressed) {
		pf = parquet_open(m->path, err);
	} else if (m->mem) {
		pf = parquet_open_mem(m->mem, m->mem_len, name, err);
	} else {
		if (src_slurp(m->fp, &buf, &len, err, name) < 0)
			return stream_error(m, name, err);
		pf = parquet_open_mem(buf, len, name, err);
	}
	if (!pf) {
		free(buf);
		return -1;
	}
	/* read only the selected columns: the others' pages are never decoded */
	const char **names = NULL;
	size_t nn = 0;
	if (a->ncols && !a->nparts) {
		names = calloc(a->ncols, sizeof *names);
		for (size_t i = 0; i < a->ncols; i++) {
			size_t j;
			for (j = 0; j < parquet_num_columns(pf); j++)
				if (!strcmp(parquet_column_name(pf, j), a->cols[i].from))
					break;
			if (j == parquet_num_columns(pf)) {
				free(names);
				parquet_close(pf);
				free(buf);
				return sft_error_set(err, SFT_EXIT_DATA, "%s: no column '%s' (for --columns)", name,
						     a->cols[i].from);
			}
			names[nn++] = a->cols[i].from;
		}
	}
	parquet_rows *it = parquet_rows_open(pf, names, nn, err);
	free(names);
	int rc = it ? 0 : -1;
	for (int64_t row = 0; it && !a->done; row++) {
		json_t *rec = NULL;
		rc = parquet_rows_next(it, &rec, err);
		if (rc <= 0)
			break; /* corrupt pages cannot be skipped reliably: fatal even with skip */
		char where[1100];
		snprintf(where, sizeof where, "%s: row %lld", name, (long long)row);
		if ((rc = handle_record(a, rec, where, err)) < 0 && (rc = bad_record(a, err)) < 0)
			break;
	}
	parquet_rows_close(it);
	parquet_close(pf);
	free(buf);
	return rc < 0 ? -1 : 0;
}

static int read_member(app *a, src_member *m, const char *name, sft_error *err)
{
	src_format f = a->force_format ? a->force_format : m->format;
	if (f == SRC_FMT_UNKNOWN) {
		if (!strcmp(m->name, "<stdin>"))
			f = SRC_FMT_JSONL;
		else
			return sft_error_set(err, SFT_EXIT_USAGE,
					     "%s: cannot tell the format from the name; use --format jsonl|json|csv|tsv|parquet",
					     name);
	}
	a->files++;
	if (a->split && f != SRC_FMT_JSON && !a->in_hf && !a->warned_split) {
		log_warn("--split %s ignored for %s: it applies to hf:// sources, directories and JSON {split: [...]} "
			 "files",
			 a->split, name);
		a->warned_split = 1;
	}
	log_verbose("reading %s (%s%s)", name, src_format_name(f), m->compressed ? ", compressed" : "");
	switch (f) {
	case SRC_FMT_JSONL:
		return read_jsonl(a, m, name, err);
	case SRC_FMT_JSON:
		return read_json(a, m, name, err);
	case SRC_FMT_CSV:
		return read_csv(a, m, name, ',', err);
	case SRC_FMT_TSV:
		return read_csv(a, m, name, '\t', err);
	case SRC_FMT_PARQUET:
		return read_parquet(a, m, name, err);
	default:
		return sft_error_set(err, SFT_EXIT_INTERNAL, "unknown format");
	}
}

/* A local path (or a cached download): every member of it. display: name for messages
 * (NULL = the member's own). */
static int read_local(app *a, const char *path, const char *display, sft_error *err)
{
	src_iter *it = src_open(path, display ? NULL : a->glob, err);
	if (!it)
		return -1;
	int rc = 0;
	src_member *m;
	while (!a->done && (rc = src_next(it, &m, err)) > 0) {
		const char *name = display ? display : m->name;
		if ((rc = read_member(a, m, name, err)) < 0)
			break;
	}
	if (rc == 0 && src_count(it) == 0 && !a->done)
		log_warn("%s: no members%s%s", path, a->glob ? " match " : " with a known data format",
			 a->glob ? a->glob : "");
	src_close(it);
	return rc < 0 ? -1 : 0;
}

static void list_layout(app *a, const hf_repo *r)
{
	for (size_t i = 0; i < r->nsplits; i++)
		for (size_t j = 0; j < r->splits[i].nfiles; j++) {
			const hf_file *f = &r->files[r->splits[i].files[j]];
			fprintf(a->out, "%s\t%s\t%s\t%lld\n", r->splits[i].subset, r->splits[i].split, f->path,
				(long long)f->size);
		}
}

/* A local directory laid out like a Hub dataset repo: the files of the chosen subset and
 * split, in path order (see hf_repo_open_local). */
static int read_dir_layout(app *a, hf_repo *r, sft_error *err)
{
	if (a->list) {
		list_layout(a, r);
		return 0;
	}
	const hf_split *sp;
	if (hf_select(r, a->subset, a->split, &sp, err) < 0)
		return -1;
	log_verbose("%s: subset %s, split %s: %zu files", r->label, sp->subset, sp->split, sp->nfiles);
	if (sp->nfiles == 0)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: split %s of subset %s has no data files", r->label,
				     sp->split, sp->subset);
	int rc = 0;
	for (size_t j = 0; j < sp->nfiles && !a->done && rc == 0; j++) {
		char *local = NULL;
		if (hf_fetch(r, &a->http, sp->files[j], &local, err) < 0)
			return -1;
		a->in_hf = 1;
		rc = read_local(a, local, local, err);
		a->in_hf = 0;
		free(local);
	}
	return rc;
}

/* A local SOURCE. A directory goes through the Hub layout when --split, --subset or
 * --list is given or its README.md declares `configs:`; otherwise (and for files) every
 * member matching --glob is read, as src_open lists them. */
static int read_path(app *a, const char *path, sft_error *err)
{
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		if (a->list) {
			log_warn("%s: --list applies to hf:// sources and directories only", path);
			return 0;
		}
		return read_local(a, path, NULL, err);
	}
	int want = a->split || a->subset || a->list;
	if (!want) {
		char *readme = NULL;
		if (asprintf(&readme, "%s/README.md", path) < 0)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		want = access(readme, R_OK) == 0;
		free(readme);
	}
	if (!want)
		return read_local(a, path, NULL, err);
	hf_repo *r = hf_repo_open_local(path, a->glob, err);
	if (!r)
		return -1;
	int rc;
	if (!a->split && !a->subset && !a->list && !r->has_configs)
		rc = read_local(a, path, NULL, err); /* a README.md without configs: as before */
	else
		rc = read_dir_layout(a, r, err);
	hf_repo_close(r);
	return rc;
}

static int read_hf(app *a, const char *url, sft_error *err)
{
	char *repo = NULL, *rev = NULL, *glob = NULL;
	if (hf_parse_url(url, &repo, &rev, &glob, err) < 0)
		return -1;
	const char *revision = a->revision ? a->revision : rev;
	hf_repo *r = hf_repo_open(&a->http, repo, revision, glob ? glob : a->glob, err);
	int rc = 0;
	if (!r) {
		rc = -1;
		goto out;
	}
	if (r->offline)
		log_warn("%s unreachable: using the cached file list of hf://datasets/%s@%s", r->endpoint, r->repo,
			 r->revision);
	if (a->list) {
		list_layout(a, r);
		goto out;
	}
	const hf_split *sp;
	if (hf_select(r, a->subset, a->split, &sp, err) < 0) {
		rc = -1;
		goto out;
	}
	log_verbose("hf://datasets/%s@%s: subset %s, split %s: %zu files", r->repo, r->revision, sp->subset,
		    sp->split, sp->nfiles);
	if (sp->nfiles == 0) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "hf://datasets/%s: split %s of subset %s has no data files",
				   r->repo, sp->split, sp->subset);
		goto out;
	}
	for (size_t j = 0; j < sp->nfiles && !a->done; j++) {
		size_t fi = sp->files[j];
		char *local = NULL;
		if (hf_fetch(r, &a->http, fi, &local, err) < 0) {
			rc = -1;
			break;
		}
		char *display = NULL;
		if (asprintf(&display, "hf://datasets/%s/%s", r->repo, r->files[fi].path) < 0)
			display = NULL;
		a->in_hf = 1;
		rc = read_local(a, local, display, err);
		a->in_hf = 0;
		free(display);
		free(local);
		if (rc < 0)
			break;
	}
out:
	hf_repo_close(r);
	free(repo);
	free(rev);
	free(glob);
	return rc;
}

static int read_url(app *a, const char *url, sft_error *err)
{
	/* cache key: sha256 of the URL; file name: the URL's last path segment (for the format) */
	sha256_ctx c;
	unsigned char d[32];
	sha256_init(&c);
	sha256_update(&c, url, strlen(url));
	sha256_final(&c, d);
	char key[17];
	for (int i = 0; i < 8; i++)
		snprintf(key + 2 * i, 3, "%02x", d[i]);
	const char *start = strstr(url, "://") + 3;
	size_t end = strcspn(start, "?#");
	const char *base = start + end;
	while (base > start && base[-1] != '/')
		base--;
	char name[256];
	snprintf(name, sizeof name, "%.*s", (int)(start + end - base), base);
	if (!name[0])
		snprintf(name, sizeof name, "download");
	char *cache = a->cache_dir ? strdup(a->cache_dir) : hf_cache_dir();
	char *dest = NULL;
	if (asprintf(&dest, "%s/urls/%s/%s", cache, key, name) < 0)
		dest = NULL;
	free(cache);
	if (!dest)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	int rc = 0;
	if (access(dest, R_OK) != 0)
		rc = http_download(&a->http, url, dest, -1, NULL, err);
	else
		log_verbose("%s: cached as %s", url, dest);
	if (rc == 0)
		rc = read_local(a, dest, url, err);
	free(dest);
	return rc;
}

static int write_stats(app *a, double secs, sft_error *err)
{
	json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "records", (json_int_t)a->written, "read",
			      (json_int_t)a->read, "skipped", (json_int_t)a->skipped, "filtered",
			      (json_int_t)a->filtered, "sources", (json_int_t)a->sources, "files",
			      (json_int_t)a->files, "seconds", secs);
	atomic_file *af = atomic_open(a->stats_path, err);
	if (!af) {
		json_decref(o);
		return -1;
	}
	jsonl_write(af->fp, o);
	json_decref(o);
	return atomic_commit(af, err);
}

int main(int argc, char **argv)
{
	log_init("ds-fetch");
	app a = {0};
	a.take_idx = -1;
	http_opts_default(&a.http);
	char **pos = NULL;
	int npos = cli_parse(&spec, argc, argv, on_option, &a, &pos);
	static char *stdin_only[] = {"-", NULL};
	if (npos == 0) { /* no SOURCE: stdin, like every sftkit tool */
		free(pos);
		pos = NULL;
		npos = 1;
	}
	char **srcs = pos ? pos : stdin_only;
	if (a.nparts && !a.take)
		die_usage("--split-ratios needs --take NAME (one of its parts)");
	if (a.take && !a.nparts)
		die_usage("--take needs --split-ratios");
	for (size_t i = 0; i < a.nparts; i++)
		if (!strcmp(a.parts[i].name, a.take))
			a.take_idx = (int)i;
	if (a.nparts && a.take_idx < 0)
		die_usage("--take %s: not a part of --split-ratios", a.take);
	if (a.retries)
		a.http.max_attempts = (int)a.retries;
	const char *tok = getenv("HF_TOKEN");
	if (tok && *tok)
		a.http.token = tok;
	if (a.cache_dir)
		setenv("SFT_CACHE", a.cache_dir, 1);
	a.http.progress = log_level() >= LOG_NORMAL && isatty(2);
	if (a.sample > 0) {
		/* the reservoir holds at most N records */
		a.heap = calloc((size_t)a.sample, sizeof *a.heap);
		if (!a.heap)
			die(SFT_EXIT_RUNTIME, "--sample %lld: out of memory", a.sample);
	}

	sft_error err = {0};
	if (a.output && strcmp(a.output, "-") != 0) {
		a.af = atomic_open(a.output, &err);
		if (!a.af)
			die_err(&err);
		a.out = a.af->fp;
	} else {
		a.out = stdout;
	}
	progress_start(&a.prog, "records", 0, 0);
	int rc = 0;
	for (int i = 0; i < npos && !a.done && rc == 0; i++) {
		const char *s = srcs[i];
		a.sources++;
		if (!strncmp(s, "hf://", 5))
			rc = read_hf(&a, s, &err);
		else if (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8))
			rc = read_url(&a, s, &err);
		else
			rc = read_path(&a, s, &err);
	}
	if (rc == 0)
		rc = flush_sample(&a, &err);
	else
		for (size_t i = 0; i < a.nheap; i++)
			json_decref(a.heap[i].rec);
	progress_finish(&a.prog);
	if (rc < 0) {
		if (a.af)
			atomic_abort(a.af); /* nothing half-written is left behind */
		die_err(&err);
	}
	if (a.af) {
		if (atomic_commit(a.af, &err) < 0)
			die_err(&err);
	} else if (fflush(stdout) != 0) {
		die(SFT_EXIT_RUNTIME, "<stdout>: write error: %s", strerror(errno));
	}
	double secs = progress_elapsed(&a.prog);
	if (!a.list) {
		char extra[128] = "";
		if (a.filtered)
			snprintf(extra, sizeof extra, ", %llu in other --split-ratios parts",
				 (unsigned long long)a.filtered);
		log_info("wrote %llu records from %zu source%s (%zu file%s), %llu skipped%s",
			 (unsigned long long)a.written, a.sources, a.sources == 1 ? "" : "s", a.files,
			 a.files == 1 ? "" : "s", (unsigned long long)a.skipped, extra);
	}
	if (a.stats_path && write_stats(&a, secs, &err) < 0)
		die_err(&err);
	for (size_t i = 0; i < a.ncols; i++) {
		free(a.cols[i].from);
		free(a.cols[i].to);
	}
	free(a.cols);
	for (size_t i = 0; i < a.nparts; i++)
		free(a.parts[i].name);
	free(a.parts);
	free(a.heap);
	free(a.dump);
	free(a.canon);
	free(pos);
	stdout_close_or_die();
	return 0;
}
