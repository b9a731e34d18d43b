/* sft-eval - evaluate a model: loss/perplexity/token accuracy over a pack dataset, or
 * generation + answer extraction + exact match over chat records, locally (libcommon
 * model/generate) or against an OpenAI-compatible server; --compare prints baseline vs
 * fine-tuned. See docs/sft-eval.md. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic.h"
#include "batch.h"
#include "cli.h"
#include "endpoint.h"
#include "evalloss.h"
#include "exit.h"
#include "extract.h"
#include "fsutil.h"
#include "generate.h"
#include "jinja.h"
#include "jsonl.h"
#include "log.h"
#include "threads.h"
#include "lora.h"
#include "model.h"
#include "ops.h"
#include "progress.h"
#include "report.h"
#include "shard.h"
#include "tokenizer.h"

/* options with a short name use it as their id (cli.h) */
enum {
	OPT_MODEL = 'm', OPT_DATA = 'd', OPT_BATCH = 'b', OPT_LIMIT = 'n', OPT_OUTPUT = 'o', OPT_EXTRACT = 'e',
	OPT_FILTER = 'f', OPT_CONC = 'c',
};
enum {
	OPT_MODE = 256, OPT_JSON, OPT_NO_FP, OPT_TEMPLATE, OPT_MAX_NEW, OPT_TEMP, OPT_TOP_K, OPT_TOP_P, OPT_MIN_P,
	OPT_REP, OPT_SEED, OPT_STOP, OPT_SAMPLE, OPT_GROUP, OPT_MATCH, OPT_GOLD, OPT_GOLD_EXTRACT, OPT_ICASE,
	OPT_IPUNCT, OPT_INUM, OPT_IGNORE_RE, OPT_COMPARE, OPT_ENDPOINT, OPT_TIMEOUT, OPT_RETRIES, OPT_ADAPTER,
	OPT_BASE,
};

static const cli_option options[] = {
	{"model", 'm', CLI_REQ_ARG, "PATH", "model directory (config.json, *.safetensors, tokenizer.json) or .gguf;\nwith --endpoint: the served model name; a PEFT adapter directory (adapter_config.json)\nis loaded onto its base model (--base, else its base_model_name_or_path)", OPT_MODEL},
	{"adapter", 0, CLI_REQ_ARG, "DIR", "a PEFT LoRA adapter (sft-train's output) merged into --model's\nweights in memory", OPT_ADAPTER},
	{"base", 0, CLI_REQ_ARG, "PATH", "base model for an adapter directory given as --model", OPT_BASE},
	{"mode", 0, CLI_REQ_ARG, "M", "loss or generate (default: loss for a directory or shard file,\ngenerate for .jsonl)", OPT_MODE},
	{"data", 'd', CLI_REQ_ARG, "PATH", "loss: pack output directory or shard file; generate: records.jsonl", OPT_DATA},
	{"batch-size", 'b', CLI_REQ_ARG, "N", "rows (loss) or prompts (generate) per batch (default 8)", OPT_BATCH},
	{"limit", 'n', CLI_REQ_ARG, "N", "evaluate only the first N rows / records", OPT_LIMIT},
	{"json", 0, CLI_NO_ARG, NULL, "print the summary as JSON instead of a markdown table", OPT_JSON},
	{"output", 'o', CLI_REQ_ARG, "DIR", "write DIR/summary.json (and DIR/items.jsonl in generate mode)", OPT_OUTPUT},
	{"no-fingerprint-check", 0, CLI_NO_ARG, NULL, "loss: accept a dataset encoded with another tokenizer", OPT_NO_FP},
	{"chat-template", 0, CLI_REQ_ARG, "FILE", "use this chat template instead of the model's (as tok-encode's\n--chat-template; folded into the fingerprint)", OPT_TEMPLATE},
	{"max-new-tokens", 0, CLI_REQ_ARG, "N", "generate at most N tokens per answer (default: generation_config,\nelse 256)", OPT_MAX_NEW},
	{"temperature", 0, CLI_REQ_ARG, "T", "sampling temperature (0 = greedy)", OPT_TEMP},
	{"top-k", 0, CLI_REQ_ARG, "K", "keep the K most likely tokens (0 = off)", OPT_TOP_K},
	{"top-p", 0, CLI_REQ_ARG, "P", "nucleus sampling (1 = off)", OPT_TOP_P},
	{"min-p", 0, CLI_REQ_ARG, "P", "min-p sampling (0 = off)", OPT_MIN_P},
	{"repetition-penalty", 0, CLI_REQ_ARG, "R", "repetition penalty (1 = off)", OPT_REP},
	{"seed", 0, CLI_REQ_ARG, "N", "random seed for sampling (default 0)", OPT_SEED},
	{"stop", 0, CLI_REQ_ARG, "STR", "stop generating when the answer ends with STR (repeatable;\nSTR is cut from the answer)", OPT_STOP},
	{"do-sample", 0, CLI_NO_ARG, NULL, "sample instead of greedy decoding", OPT_SAMPLE},
	{"extract", 'e', CLI_REQ_ARG, "REGEX", "answer = this PCRE2 regex's group (chain \"extract\")", OPT_EXTRACT},
	{"group", 0, CLI_REQ_ARG, "N", "--extract: capture group (default 1, or 0 without groups)", OPT_GROUP},
	{"match", 0, CLI_REQ_ARG, "W", "--extract: first or last match (default first)", OPT_MATCH},
	{"filter", 'f', CLI_REQ_ARG, "SPEC", "an lm-eval-style filter chain 'NAME: step | step ...' (repeatable;\nsee docs/sft-eval.md)", OPT_FILTER},
	{"gold-field", 0, CLI_REQ_ARG, "NAME", "gold answer = this top-level record field (default: the last\nassistant turn's content)", OPT_GOLD},
	{"extract-gold", 0, CLI_NO_ARG, NULL, "run each chain on the gold answer too (gold is a full answer)", OPT_GOLD_EXTRACT},
	{"ignore-case", 0, CLI_NO_ARG, NULL, "exact match: compare lowercased", OPT_ICASE},
	{"ignore-punctuation", 0, CLI_NO_ARG, NULL, "exact match: drop ASCII punctuation", OPT_IPUNCT},
	{"ignore-numbers", 0, CLI_NO_ARG, NULL, "exact match: drop digits", OPT_INUM},
	{"regexes-to-ignore", 0, CLI_REQ_ARG, "REGEX", "exact match: remove matches first (repeatable)", OPT_IGNORE_RE},
	{"compare", 0, CLI_NO_ARG, NULL, "compare two summary.json files: sft-eval --compare A.json B.json", OPT_COMPARE},
	{"endpoint", 0, CLI_REQ_ARG, "URL", "evaluate an OpenAI-compatible server (POST URL/v1/chat/completions);\nAPI key from OPENAI_API_KEY", OPT_ENDPOINT},
	{"concurrency", 'c', CLI_REQ_ARG, "N", "--endpoint: requests in flight (default 4)", OPT_CONC},
	{"timeout", 0, CLI_REQ_ARG, "S", "--endpoint: seconds per request (default 600)", OPT_TIMEOUT},
	{"retries", 0, CLI_REQ_ARG, "N", "--endpoint: attempts per request on 429/5xx/network errors (default 5)", OPT_RETRIES},
	{NULL, 0, 0, NULL, NULL, 0},
};

static const cli_spec spec = {
	.prog = "sft-eval",
	.usage = "[options] --model PATH --data PATH\n       sft-eval --compare BASELINE.json FINETUNED.json",
	.summary =
		"Evaluates a model. --mode loss: mean cross-entropy over the trained tokens of a pack dataset,\n"
		"perplexity and token accuracy, per shard file and in total. --mode generate: renders each chat\n"
		"record's prompt with the model's chat template, generates an answer, extracts it (--extract,\n"
		"--filter chains) and scores exact match against the gold answer. --endpoint runs the same\n"
		"scoring against an OpenAI-compatible server. The markdown table goes to stdout.",
	.opts = options,
	.examples =
		"  sft-eval --model runs/sql/merged --data data/sql/test     # loss, perplexity\n"
		"  sft-eval --model runs/med/merged --data medqa.jsonl --gold-field answer \\\n"
		"      --extract 'the answer is \\(([A-E])\\)' --output eval/tuned\n"
		"  sft-eval --model M --data gsm8k.jsonl --gold-field answer \\\n"
		"      --filter \"strict-match: regex('#### (\\-?[0-9\\.\\,]+)') | take_first\" \\\n"
		"      --filter \"flexible-extract: regex('(-?[$0-9.,]{2,})|(-?[0-9]+)', group_select=-1) | take_first\"\n"
		"  sft-eval --endpoint http://127.0.0.1:8080 --model local --data medqa.jsonl -c 8 ...\n"
		"  sft-eval --compare eval/base/summary.json eval/tuned/summary.json\n",
	.footer = "Also 130: interrupted by SIGINT (the finished items are written, marked \"partial\").\n"
		  "Invalid regexes and filter specs exit 2; bad JSONL lines, missing model files and a\n"
		  "tokenizer fingerprint mismatch exit 3. See docs/sft-eval.md.\n",
};

typedef struct opts {
	const char *model, *data, *output, *chat_template, *endpoint, *gold_field;
	const char *adapter, *base; /* --adapter DIR, --base PATH */
	int mode; /* 0 auto, 1 loss, 2 generate */
	long long batch, limit, max_new, top_k, seed, conc, timeout, retries, group;
	double temperature, top_p, min_p, rep;
	int has_temp, has_top_k, has_top_p, has_min_p, has_rep, has_seed, do_sample, json, no_fp, compare;
	int match_last, gold_extract;
	const char **stops;
	int n_stops;
	const char *extract;
	const char **filters;
	int n_filters;
	const char **ignores;
	int n_ignores;
	ev_match match;
} opts;

static int push(const char ***arr, int *n, const char *v, sft_error *err)
{
	const char **a = realloc(*arr, (size_t)(*n + 1) * sizeof *a);
	if (!a) return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	a[(*n)++] = v;
	*arr = a;
	return 0;
}

static int on_opt(void *ctx, int id, const char *arg, const char *source, sft_error *err)
{
	opts *o = ctx;
	(void)source;
	switch (id) {
	case OPT_MODEL: o->model = arg; return 0;
	case OPT_ADAPTER: o->adapter = arg; return 0;
	case OPT_BASE: o->base = arg; return 0;
	case OPT_MODE:
		if (!strcmp(arg, "loss")) o->mode = 1;
		else if (!strcmp(arg, "generate")) o->mode = 2;
		else return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --mode: expected loss or generate", arg);
		return 0;
	case OPT_DATA: o->data = arg; return 0;
	case OPT_BATCH: return cli_parse_long("batch-size", arg, 1, 1 << 16, &o->batch, err);
	case OPT_LIMIT: return cli_parse_long("limit", arg, 1, (long long)1 << 50, &o->limit, err);
	case OPT_JSON: o->json = 1; return 0;
	case OPT_OUTPUT: o->output = arg; return 0;
	case OPT_NO_FP: o->no_fp = 1; return 0;
	case OPT_TEMPLATE: o->chat_template = arg; return 0;
	case OPT_MAX_NEW: return cli_parse_long("max-new-tokens", arg, 1, 1 << 24, &o->max_new, err);
	case OPT_TEMP: o->has_temp = 1; return cli_parse_double("temperature", arg, 0, 1e6, &o->temperature, err);
	case OPT_TOP_K: o->has_top_k = 1; return cli_parse_long("top-k", arg, 0, 1 << 30, &o->top_k, err);
	case OPT_TOP_P: o->has_top_p = 1; return cli_parse_double("top-p", arg, 0, 1, &o->top_p, err);
	case OPT_MIN_P: o->has_min_p = 1; return cli_parse_double("min-p", arg, 0, 1, &o->min_p, err);
	case OPT_REP: o->has_rep = 1; return cli_parse_double("repetition-penalty", arg, 1e-6, 1e6, &o->rep, err);
	case OPT_SEED: o->has_seed = 1; return cli_parse_long("seed", arg, 0, INT64_MAX, &o->seed, err);
	case OPT_STOP:
		if (!*arg) return sft_error_set(err, SFT_EXIT_USAGE, "--stop: empty string");
		return push(&o->stops, &o->n_stops, arg, err);
	case OPT_SAMPLE: o->do_sample = 1; return 0;
	case OPT_EXTRACT: o->extract = arg; return 0;
	case OPT_GROUP: return cli_parse_long("group", arg, 0, 1000, &o->group, err);
	case OPT_MATCH:
		if (!strcmp(arg, "first")) o->match_last = 0;
		else if (!strcmp(arg, "last")) o->match_last = 1;
		else return sft_error_set(err, SFT_EXIT_USAGE, "invalid value '%s' for --match: expected first or last", arg);
		return 0;
	case OPT_FILTER: return push(&o->filters, &o->n_filters, arg, err);
	case OPT_GOLD: o->gold_field = arg; return 0;
	case OPT_GOLD_EXTRACT: o->gold_extract = 1; return 0;
	case OPT_ICASE: o->match.ignore_case = 1; return 0;
	case OPT_IPUNCT: o->match.ignore_punctuation = 1; return 0;
	case OPT_INUM: o->match.ignore_numbers = 1; return 0;
	case OPT_IGNORE_RE: return push(&o->ignores, &o->n_ignores, arg, err);
	case OPT_COMPARE: o->compare = 1; return 0;
	case OPT_ENDPOINT: o->endpoint = arg; return 0;
	case OPT_CONC: return cli_parse_long("concurrency", arg, 1, 1024, &o->conc, err);
	case OPT_TIMEOUT: return cli_parse_long("timeout", arg, 1, 86400, &o->timeout, err);
	case OPT_RETRIES: return cli_parse_long("retries", arg, 1, 100, &o->retries, err);
	}
	return sft_error_set(err, SFT_EXIT_INTERNAL, "unhandled option %d", id);
}

/* ---- SIGINT: finish what is done, write it, exit 130 ---- */

static volatile sig_atomic_t g_interrupted;
static struct sigaction g_old_sigint; /* atomic.h's (removes temporaries) or the default */
static const char *volatile g_tmp_items; /* items.jsonl's temporary while it is open */

/* First SIGINT: finish what is done. Second: remove the temporary, then the previous action
 * (unlink, sigaction and raise are async-signal-safe). */
static void on_sigint(int sig)
{
	if (g_interrupted) {
		const char *t = g_tmp_items;
		if (t) unlink(t);
		sigaction(sig, &g_old_sigint, NULL);
		raise(sig);
		return;
	}
	g_interrupted = 1;
}

/* Call after the output files are opened, so the previous action cleans them up. */
static void install_sigint(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &g_old_sigint);
	if (g_old_sigint.sa_handler == SIG_IGN) g_old_sigint.sa_handler = SIG_DFL; /* background job */
}

/* ---- model files ---- */

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *dir, const char *name)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return access(p, R_OK) == 0;
}

/* Missing model files are bad input (exit 3), named before anything is loaded. */
static void check_model_files(const char *path, int need_tokenizer)
{
	if (access(path, R_OK) != 0) die(SFT_EXIT_DATA, "%s: %s", path, strerror(errno));
	if (!is_dir(path)) return; /* a .gguf file: checked by its loader */
	if (!exists(path, "config.json")) die(SFT_EXIT_DATA, "%s/config.json: missing (not a model directory)", path);
	if (!exists(path, "model.safetensors") && !exists(path, "model.safetensors.index.json"))
		die(SFT_EXIT_DATA, "%s/model.safetensors: missing (nor model.safetensors.index.json)", path);
	if (need_tokenizer && !exists(path, "tokenizer.json"))
		die(SFT_EXIT_DATA, "%s/tokenizer.json: missing (needed for the %s)", path,
		    need_tokenizer == 1 ? "tokenizer fingerprint" : "chat template and tokenizer");
}


/* The base model, with --adapter folded into its weights (W += scale * B @ A). */
static model *load_model(const opts *o, sft_error *err)
{
	model *m = model_load_any(o->model, NULL, err);
	if (!m || !o->adapter) return m;
	lora_adapter *a = lora_load(o->adapter, &m->cfg, err);
	if (!a || lora_merge_into(m, a, err) < 0) {
		lora_free(a);
		model_free(m);
		return NULL;
	}
	log_info("%s: LoRA r %d on %s merged (%zu adapter parameters)", o->adapter, a->cfg.r, o->model, a->n_params);
	lora_free(a);
	return m;
}

/* --model DIR holding adapter_config.json and no config.json: the adapter is DIR, the
 * model its base (--base, else adapter_config.json's base_model_name_or_path). */
static char *g_base_buf; /* base_model_name_or_path read from an adapter directory */

static void resolve_adapter(opts *o)
{
	char p[4096];
	if (!o->model || !is_dir(o->model)) return;
	snprintf(p, sizeof p, "%s/config.json", o->model);
	if (access(p, F_OK) == 0) return;
	snprintf(p, sizeof p, "%s/adapter_config.json", o->model);
	if (access(p, F_OK) != 0) return;
	if (o->adapter) die_usage("--model %s is an adapter directory; --adapter is given too", o->model);
	o->adapter = o->model;
	if (o->base) {
		o->model = o->base;
		return;
	}
	sft_error err = {0};
	size_t len;
	char *text = fs_read_file(p, &len, &err);
	if (!text) die_err(&err);
	json_t *j = json_parse_located(text, len, p, 1, 0, &err);
	free(text);
	if (!j) die_err(&err);
	const char *b = json_string_value(json_object_get(j, "base_model_name_or_path"));
	if (!b || !*b) die(SFT_EXIT_USAGE, "%s: no base_model_name_or_path: give the base model with --base", p);
	g_base_buf = strdup(b);
	json_decref(j);
	if (!g_base_buf) die(SFT_EXIT_RUNTIME, "out of memory");
	if (access(g_base_buf, F_OK) != 0)
		die(SFT_EXIT_USAGE, "%s: base model '%s' not found: give it with --base", p, g_base_buf);
	o->model = g_base_buf;
}

static json_t *settings_common(const opts *o)
{
	json_t *s = json_object();
	json_object_set_new(s, "batch_size", json_integer(o->batch));
	json_object_set_new(s, "limit", o->limit ? json_integer(o->limit) : json_null());
	return s;
}

static void emit_summary(const opts *o, json_t *summary, int loss_mode)
{
	sft_error err = {0};
	if (o->output) {
		char p[4096];
		snprintf(p, sizeof p, "%s/summary.json", o->output);
		if (rep_write_json(p, summary, &err) < 0) die_err(&err);
	}
	if (o->json) {
		if (jsonl_write(stdout, summary) < 0) die(SFT_EXIT_RUNTIME, "stdout: write failed");
	} else if (loss_mode) {
		rep_loss_table(stdout, summary);
	} else {
		rep_generate_table(stdout, summary);
	}
}

/* ==== loss mode ==== */

typedef struct loss_ctx {
	const model *m;
	model_arena arena;
	float *hidden;  // (B, T, C)
	float *scratch; // fused CE scratch, or (64, V) logits block with softcap
	size_t hidden_cap;
	int V;
	progress prog;
} loss_ctx;

/* CE over explicit logits blocks, for models with final_logit_softcapping (the fused CE
 * has no softcap). logits = cap * tanh((h @ W^T) / cap), statistics in double. */
static ops_ce_stats ce_softcap(loss_ctx *c, const batch *b)
{
	const model_config *cfg = &c->m->cfg;
	int C = cfg->hidden_size, V = cfg->vocab_size;
	ops_ce_stats st = {0};
	int N = b->B * b->T;
	float *x = malloc((size_t)64 * C * sizeof *x);
	int32_t idx[64];
	if (!x) die(SFT_EXIT_RUNTIME, "out of memory");
	for (int n0 = 0; n0 < N;) {
		int k = 0;
		while (n0 < N && k < 64) {
			if (b->targets[n0] >= 0) {
				memcpy(x + (size_t)k * C, c->hidden + (size_t)n0 * C, (size_t)C * sizeof *x);
				idx[k++] = n0;
			}
			n0++;
		}
		if (!k) continue;
		ops_matmul_forward(c->scratch, x, c->m->lm_head, NULL, k, C, V);
		for (int r = 0; r < k; r++) {
			const float *lg = c->scratch + (size_t)r * V;
			float cap = cfg->final_softcap;
			double mx = -INFINITY;
			int arg = 0;
			for (int v = 0; v < V; v++) {
				double z = cap * tanh((double)lg[v] / cap);
				if (z > mx) mx = z, arg = v;
			}
			double se = 0;
			for (int v = 0; v < V; v++) se += exp(cap * tanh((double)lg[v] / cap) - mx);
			int32_t y = b->targets[idx[r]];
			st.loss_sum += log(se) + mx - cap * tanh((double)lg[y] / cap);
			st.n_tokens++;
			st.n_correct += arg == y;
		}
	}
	free(x);
	return st;
}

static int loss_forward(void *user, const batch *b, ops_ce_stats *st, sft_error *err)
{
	loss_ctx *c = user;
	const model_config *cfg = &c->m->cfg;
	size_t need = (size_t)b->B * b->T * cfg->hidden_size;
	if (need > c->hidden_cap) {
		free(c->hidden);
		c->hidden = malloc(need * sizeof *c->hidden);
		if (!c->hidden) return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		c->hidden_cap = need;
	}
	for (long i = 0; i < (long)b->B * b->T; i++)
		if (b->tokens[i] < 0 || b->tokens[i] >= cfg->vocab_size)
			return sft_error_set(err, SFT_EXIT_DATA, "token id %d is outside the model's vocabulary (%d)",
					     b->tokens[i], cfg->vocab_size);
	if (model_arena_reserve(&c->arena, cfg, b->B, b->T, err) < 0) return -1;
	if (model_forward(c->m, &c->arena, b->tokens, b->pos, b->seg, b->B, b->T, NULL, c->hidden, err) < 0) return -1;
	if (cfg->final_softcap > 0) *st = ce_softcap(c, b);
	else
		*st = ops_fused_linear_ce(NULL, NULL, c->scratch, c->hidden, c->m->lm_head, b->targets, 0.0f, b->B * b->T,
					  cfg->hidden_size, cfg->vocab_size);
	return 0;
}

static int loss_progress(void *user, size_t rows_done, size_t rows_total, uint64_t tokens_done)
{
	loss_ctx *c = user;
	(void)rows_total;
	progress_add(&c->prog, rows_done - c->prog.done, tokens_done - c->prog.bytes);
	return g_interrupted != 0;
}

static json_t *part_json(const eval_loss_part *p, int with_name)
{
	json_t *o = json_object();
	if (with_name) json_object_set_new(o, "name", json_string(p->name));
	json_object_set_new(o, "rows", json_integer((json_int_t)p->rows));
	json_object_set_new(o, "tokens", json_integer((json_int_t)p->tokens));
	json_object_set_new(o, "targets", json_integer((json_int_t)p->n_targets));
	json_object_set_new(o, "correct", json_integer((json_int_t)p->n_correct));
	json_object_set_new(o, "loss_sum", json_real_or_null(p->loss_sum));
	json_object_set_new(o, "loss", json_real_or_null(p->loss));
	json_object_set_new(o, "ppl", json_real_or_null(p->ppl));
	json_object_set_new(o, "accuracy", json_real_or_null(p->accuracy));
	return o;
}

static int run_loss(opts *o)
{
	sft_error err = {0};
	if (o->endpoint) die_usage("--mode loss needs a local --model (an endpoint returns no token losses)");
	if (o->n_filters || o->extract || o->gold_field) die_usage("--extract/--filter/--gold-field apply to --mode generate");
	check_model_files(o->model, 0);
	batch_data *d = batch_data_open(o->data, &err);
	if (!d) die_err(&err);
	const uint8_t *dfp = batch_data_fingerprint(d);
	static const uint8_t zero[16];
	if (!o->no_fp && !memcmp(dfp, zero, 16)) {
		log_warn("%s: the data carries no tokenizer fingerprint (JSONL input to pack): not checked", o->data);
	} else if (!o->no_fp) {
		check_model_files(o->model, 1);
		tokenizer *tok = tokenizer_load(o->model, &err);
		if (!tok) die_err(&err);
		char *tmpl = NULL;
		size_t tl = 0;
		if (o->chat_template && !(tmpl = fs_read_file(o->chat_template, &tl, &err))) die_err(&err);
		uint8_t fp[16];
		if (tokenizer_fingerprint_template(tok, tmpl, tl, fp, &err) < 0) die_err(&err);
		free(tmpl);
		tokenizer_free(tok);
		char a[33], b[33];
		shard_hex16(dfp, a);
		shard_hex16(fp, b);
		if (memcmp(dfp, fp, 16))
			die(SFT_EXIT_DATA,
			    "%s: tokenizer fingerprint %s differs from the model's %s (%s): the data was encoded with "
			    "another tokenizer or chat template (--no-fingerprint-check to evaluate anyway)",
			    o->data, a, b, o->model);
	}
	model *m = load_model(o, &err);
	if (!m) die_err(&err);
	if (batch_data_vocab(d) > (uint32_t)m->cfg.vocab_size)
		die(SFT_EXIT_DATA, "%s: vocabulary of %u ids is larger than the model's %d", o->data, batch_data_vocab(d),
		    m->cfg.vocab_size);
	loss_ctx c = {.m = m, .V = m->cfg.vocab_size};
	model_arena_init(&c.arena);
	size_t sc = m->cfg.final_softcap > 0 ? (size_t)64 * m->cfg.vocab_size
					     : ops_fused_ce_scratch_size(m->cfg.hidden_size, m->cfg.vocab_size);
	c.scratch = malloc(sc * sizeof(float));
	if (!c.scratch) die(SFT_EXIT_RUNTIME, "out of memory");
	size_t rows = batch_data_rows(d);
	if (o->limit && (size_t)o->limit < rows) rows = (size_t)o->limit;
	install_sigint();
	progress_start_rate(&c.prog, "rows", rows, "tokens");
	eval_loss_result r;
	double t0 = clock_now();
	if (eval_loss_run(d, (int)o->batch, (size_t)o->limit, loss_forward, &c, loss_progress, &c, &r, &err) < 0) {
		progress_finish(&c.prog);
		die_err(&err);
	}
	progress_finish(&c.prog);
	double secs = clock_now() - t0;

	json_t *s = json_object();
	json_object_set_new(s, "mode", json_string("loss"));
	json_object_set_new(s, "model", json_string(o->model));
	json_object_set_new(s, "data", json_string(o->data));
	json_object_set_new(s, "partial", json_boolean(r.stopped));
	json_object_set_new(s, "total", part_json(&r.total, 0));
	json_t *files = json_array();
	for (int i = 0; i < r.n_files; i++)
		if (r.files[i].rows) json_array_append_new(files, part_json(&r.files[i], 1));
	json_object_set_new(s, "files", files);
	json_t *set = settings_common(o);
	json_object_set_new(set, "fingerprint_check", json_boolean(!o->no_fp));
	json_object_set_new(s, "settings", set);
	json_t *tm = json_object();
	json_object_set_new(tm, "seconds", json_real_or_null(secs));
	json_object_set_new(tm, "tokens_per_s", json_real_or_null(secs > 0 ? (double)r.total.tokens / secs : NAN));
	json_object_set_new(s, "timings", tm);
	emit_summary(o, s, 1);
	log_info("%zu rows, %llu targets: loss %.6f, ppl %.4f, accuracy %.4f (%.1fs)%s", r.total.rows,
		 (unsigned long long)r.total.n_targets, r.total.loss, r.total.ppl, r.total.accuracy, secs,
		 r.stopped ? " [interrupted: partial]" : "");
	json_decref(s);
	eval_loss_result_free(&r);
	free(c.hidden);
	free(c.scratch);
	model_arena_free(&c.arena);
	model_free(m);
	batch_data_close(d);
	return r.stopped ? 130 : 0;
}

/* ==== generate mode ==== */

typedef struct item {
	json_t *messages;  /* prompt messages (chat) or NULL */
	char *text_prompt; /* plain-text prompt ({"prompt": "..."}) or NULL */
	char *gold;
	long line;
} item;

static char *content_text(const json_t *content)
{
	if (json_is_string(content)) return strdup(json_string_value(content));
	if (!json_is_array(content)) return NULL;
	/* content parts: the concatenated text parts */
	size_t n = 0, i;
	const json_t *p;
	json_array_foreach(content, i, p) {
		const char *t = json_string_value(json_object_get(p, "text"));
		if (t) n += strlen(t);
	}
	char *s = malloc(n + 1);
	if (!s) return NULL;
	s[0] = '\0';
	json_array_foreach(content, i, p) {
		const char *t = json_string_value(json_object_get(p, "text"));
		if (t) strcat(s, t);
	}
	return s;
}

static char *value_text(const json_t *v)
{
	if (json_is_string(v)) return strdup(json_string_value(v));
	if (json_is_number(v) || json_is_boolean(v)) {
		char *buf = NULL;
		size_t len = 0, cap = 0;
		if (json_dump_compact(v, &buf, &len, &cap) < 0) {
			free(buf);
			return NULL;
		}
		return buf;
	}
	return NULL;
}

/* A message without its null-valued keys, as TRL passes messages to the chat template
 * (datasets pads struct columns with None); tok-encode does the same. New reference. */
static json_t *strip_none(json_t *m)
{
	if (!json_is_object(m)) return json_incref(m);
	json_t *out = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(m, k, v) {
		if (!json_is_null(v)) json_object_set(out, k, v);
	}
	return out;
}

/* One record -> item. Errors are "file:line: what" (exit 3). */
static int parse_item(const opts *o, json_t *rec, const char *file, long line, item *it, sft_error *err)
{
	memset(it, 0, sizeof *it);
	it->line = line;
	json_t *msgs = json_object_get(rec, "messages");
	json_t *prompt = json_object_get(rec, "prompt"), *completion = json_object_get(rec, "completion");
	const json_t *gold_msg = NULL;
	if (json_is_array(msgs)) {
		size_t n = json_array_size(msgs), last = n;
		for (size_t i = n; i-- > 0;) {
			const char *role = json_string_value(json_object_get(json_array_get(msgs, i), "role"));
			if (role && !strcmp(role, "assistant")) {
				last = i;
				break;
			}
		}
		if (last == n && !o->gold_field)
			return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: no assistant turn to take the gold answer from (use --gold-field)",
					     file, line);
		size_t np = last == n ? n : last;
		if (np == 0) return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: no prompt messages before the assistant turn", file, line);
		it->messages = json_array();
		for (size_t i = 0; i < np; i++) json_array_append_new(it->messages, strip_none(json_array_get(msgs, i)));
		if (last < n) gold_msg = json_array_get(msgs, last);
	} else if (json_is_array(prompt)) {
		if (json_array_size(prompt) == 0) return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: empty \"prompt\"", file, line);
		it->messages = json_array();
		for (size_t i = 0; i < json_array_size(prompt); i++)
			json_array_append_new(it->messages, strip_none(json_array_get(prompt, i)));
		size_t nc = json_array_size(completion);
		for (size_t i = nc; i-- > 0;) {
			const char *role = json_string_value(json_object_get(json_array_get(completion, i), "role"));
			if (role && !strcmp(role, "assistant")) {
				gold_msg = json_array_get(completion, i);
				break;
			}
		}
		if (!gold_msg && !o->gold_field)
			return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: \"completion\" has no assistant turn (use --gold-field)", file, line);
	} else if (json_is_string(prompt)) {
		if (o->endpoint)
			return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: a plain-text \"prompt\" needs a local model (--endpoint takes chat records)",
					     file, line);
		it->text_prompt = strdup(json_string_value(prompt));
		if (!o->gold_field) {
			if (!json_is_string(completion))
				return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: no string \"completion\" (use --gold-field)", file, line);
			it->gold = strdup(json_string_value(completion));
		}
	} else {
		return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: expected {\"messages\": [...]} or {\"prompt\", \"completion\"}", file, line);
	}
	if (it->messages) {
		size_t i;
		json_t *m;
		json_array_foreach(it->messages, i, m) {
			if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")))
				return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: prompt message %zu has no \"role\"", file, line, i);
		}
	}
	if (o->gold_field) {
		json_t *g = json_object_get(rec, o->gold_field);
		if (!g || json_is_null(g))
			return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: no \"%s\" field (--gold-field)", file, line, o->gold_field);
		it->gold = value_text(g);
		if (!it->gold)
			return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: \"%s\" is not a string or number", file, line, o->gold_field);
	} else if (gold_msg) {
		it->gold = content_text(json_object_get(gold_msg, "content"));
		if (!it->gold)
			return sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: the assistant turn has no text content", file, line);
	}
	return 0;
}

static void item_free(item *it)
{
	json_decref(it->messages);
	free(it->text_prompt);
	free(it->gold);
}

static item *load_items(const opts *o, size_t *n_out)
{
	sft_error err = {0};
	jsonl_reader *r = jsonl_open(o->data, &err);
	if (!r) die_err(&err);
	item *items = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (o->limit && n >= (size_t)o->limit) break;
		json_t *rec;
		int rc = jsonl_next(r, &rec, &err);
		if (rc < 0) die_err(&err);
		if (rc == 0) break;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			items = realloc(items, cap * sizeof *items);
			if (!items) die(SFT_EXIT_RUNTIME, "out of memory");
		}
		if (parse_item(o, rec, jsonl_name(r), jsonl_line(r), &items[n], &err) < 0) die_err(&err);
		json_decref(rec);
		n++;
	}
	jsonl_close(r);
	if (n == 0) die(SFT_EXIT_DATA, "%s: no records", o->data);
	*n_out = n;
	return items;
}

typedef struct scorer {
	ev_chain *chains;
	int n_chains;
	long *correct; /* (n_chains) */
	size_t n;      /* items scored */
	uint64_t prompt_tokens, output_tokens;
	atomic_file *items_out; /* DIR/items.jsonl or NULL */
	int gold_extract;
	const ev_match *match;
} scorer;

/* Scores one answer and appends its line to items.jsonl. prompt: string or JSON (borrowed). */
static void score_item(scorer *s, size_t index, json_t *prompt, const char *output, size_t out_len, const item *it,
		       long n_prompt, long n_output, const char *finish)
{
	json_t *ext = json_object(), *cor = json_object();
	for (int c = 0; c < s->n_chains; c++) {
		char *e = ev_chain_apply(&s->chains[c], output, out_len);
		char *g = s->gold_extract ? ev_chain_apply(&s->chains[c], it->gold, strlen(it->gold)) : strdup(it->gold);
		if (!e || !g) die(SFT_EXIT_RUNTIME, "out of memory");
		int ok = ev_exact_match(s->match, e, g);
		if (ok < 0) die(SFT_EXIT_RUNTIME, "out of memory");
		s->correct[c] += ok;
		json_object_set_new(ext, s->chains[c].name, json_string(e));
		json_object_set_new(cor, s->chains[c].name, json_boolean(ok));
		free(e);
		free(g);
	}
	s->n++;
	if (n_prompt > 0) s->prompt_tokens += (uint64_t)n_prompt;
	if (n_output > 0) s->output_tokens += (uint64_t)n_output;
	if (!s->items_out) {
		json_decref(ext);
		json_decref(cor);
		return;
	}
	json_t *line = json_object();
	json_object_set_new(line, "index", json_integer((json_int_t)index));
	json_object_set(line, "prompt", prompt);
	json_object_set_new(line, "output", json_stringn(output, out_len));
	json_object_set_new(line, "gold", json_string(it->gold));
	json_object_set_new(line, "extracted", ext);
	json_object_set_new(line, "correct", cor);
	json_t *tk = json_object();
	json_object_set_new(tk, "prompt", n_prompt >= 0 ? json_integer(n_prompt) : json_null());
	json_object_set_new(tk, "output", n_output >= 0 ? json_integer(n_output) : json_null());
	json_object_set_new(line, "tokens", tk);
	if (finish && *finish) json_object_set_new(line, "finish_reason", json_string(finish));
	if (jsonl_write(s->items_out->fp, line) < 0) die(SFT_EXIT_RUNTIME, "%s: write failed", s->items_out->path);
	json_decref(line);
}

typedef struct gen_cb_ctx {
	progress *prog;
} gen_cb_ctx;

static int on_token(void *user, int seq, int32_t token)
{
	gen_cb_ctx *c = user;
	(void)seq;
	(void)token;
	progress_add(c->prog, 0, 1);
	return g_interrupted != 0;
}

static const char *stop_reason_name(int r)
{
	switch (r) {
	case GEN_STOP_LENGTH: return "length";
	case GEN_STOP_EOS: return "stop";
	case GEN_STOP_STRING: return "stop_string";
	default: return "";
	}
}

/* Loads the model, then generates; *t0 is reset once the model is loaded (timings and the
 * progress rates cover generation only). */
static void gen_local(const opts *o, item *items, size_t n, scorer *s, progress *prog, gen_config *gcfg,
		      uint64_t seed, json_t *model_info, double *t0)
{
	sft_error err = {0};
	check_model_files(o->model, 2);
	tokenizer *tok = tokenizer_load(o->model, &err);
	if (!tok) die_err(&err);
	char *tmpl_file = NULL;
	size_t tmpl_len = 0;
	const char *tmpl_src = NULL, *tmpl_name = "chat_template";
	if (o->chat_template) {
		if (!(tmpl_file = fs_read_file(o->chat_template, &tmpl_len, &err))) die_err(&err);
		tmpl_src = tmpl_file;
		tmpl_name = o->chat_template;
	} else if ((tmpl_src = tokenizer_chat_template(tok))) {
		tmpl_len = strlen(tmpl_src);
	}
	jinja_template *tmpl = NULL;
	int need_tmpl = 0;
	for (size_t i = 0; i < n; i++) need_tmpl |= items[i].messages != NULL;
	if (need_tmpl) {
		if (!tmpl_src) die(SFT_EXIT_DATA, "%s: the model has no chat template (use --chat-template FILE)", o->model);
		if (!(tmpl = jinja_compile(tmpl_src, tmpl_len, tmpl_name, NULL, &err))) die_err(&err);
	}
	model *m = load_model(o, &err);
	if (!m) die_err(&err);
	if (tokenizer_vocab_size(tok) > (uint32_t)m->cfg.vocab_size)
		log_warn("%s: tokenizer has %u ids, the model %d", o->model, tokenizer_vocab_size(tok), m->cfg.vocab_size);
	json_object_set_new(model_info, "architecture", json_string(m->cfg.arch_name));
	if (gcfg->n_eos == 0) { /* no generation_config (GGUF): the tokenizer's EOS, else config.json's */
		const char *eos = tokenizer_special(tok, "eos_token");
		int64_t id = eos ? tokenizer_token_to_id(tok, eos) : -1;
		if (id < 0) id = m->cfg.eos_token_id;
		if (id >= 0) gcfg->eos_ids[gcfg->n_eos++] = (int32_t)id;
	}
	if (gcfg->n_eos == 0) log_warn("%s: no end-of-sequence token known: answers run to --max-new-tokens", o->model);

	json_t *extra = json_object();
	static const char *const special_names[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
	for (int i = 0; i < 4; i++) {
		const char *sp = tokenizer_special(tok, special_names[i]);
		if (sp) json_object_set_new(extra, special_names[i], json_string(sp));
	}
	int B = (int)o->batch;
	int32_t **pr = calloc((size_t)B, sizeof *pr);
	int *npr = calloc((size_t)B, sizeof *npr);
	char **ptext = calloc((size_t)B, sizeof *ptext);
	gen_result *res = calloc((size_t)B, sizeof *res);
	if (!pr || !npr || !ptext || !res) die(SFT_EXIT_RUNTIME, "out of memory");
	gen_cb_ctx cbc = {.prog = prog};
	*t0 = prog->t0 = clock_now();
	for (size_t k = 0; k < n && !g_interrupted; k += (size_t)B) {
		int nb = (int)(n - k < (size_t)B ? n - k : (size_t)B);
		for (int i = 0; i < nb; i++) {
			item *it = &items[k + (size_t)i];
			char *text;
			size_t tl;
			int add_special = 0;
			if (it->messages) {
				json_t *ctx = jinja_chat_context(it->messages, NULL, 1, extra);
				if (!ctx) die(SFT_EXIT_RUNTIME, "out of memory");
				if (jinja_render(tmpl, ctx, &text, &tl, NULL, NULL, &err) < 0) {
					sft_error_prefix(&err, "%s:%ld: chat template", o->data, it->line);
					die_err(&err);
				}
				json_decref(ctx);
			} else {
				text = strdup(it->text_prompt);
				if (!text) die(SFT_EXIT_RUNTIME, "out of memory");
				tl = strlen(text);
				add_special = 1; /* plain text: BOS etc. as the tokenizer's post-processor adds */
			}
			uint32_t *ids;
			size_t nid;
			if (tokenizer_encode(tok, text, tl, add_special, &ids, &nid, &err) < 0) {
				sft_error_prefix(&err, "%s:%ld", o->data, it->line);
				die_err(&err);
			}
			if (nid == 0) die(SFT_EXIT_DATA, "%s:%ld: the prompt encodes to no tokens", o->data, it->line);
			if ((long long)nid + gcfg->max_new_tokens > m->cfg.max_position_embeddings && m->cfg.max_position_embeddings > 0)
				log_warn("%s:%ld: prompt (%zu tokens) + --max-new-tokens exceeds the model's %d positions", o->data,
					 it->line, nid, m->cfg.max_position_embeddings);
			pr[i] = malloc(nid * sizeof(int32_t));
			if (!pr[i]) die(SFT_EXIT_RUNTIME, "out of memory");
			for (size_t t = 0; t < nid; t++) pr[i][t] = (int32_t)ids[t];
			npr[i] = (int)nid;
			free(ids);
			ptext[i] = text;
		}
		if (generate(m, tok, (const int32_t *const *)pr, npr, nb, gcfg, seed + k, on_token, &cbc, res, &err) < 0)
			die_err(&err);
		for (int i = 0; i < nb; i++) {
			if (res[i].stop_reason != GEN_STOP_CALLBACK) {
				json_t *pj = json_string(ptext[i]);
				score_item(s, k + (size_t)i, pj, res[i].text ? res[i].text : "", res[i].text ? res[i].text_keep : 0,
					   &items[k + (size_t)i], npr[i], res[i].n_tokens, stop_reason_name(res[i].stop_reason));
				json_decref(pj);
				progress_add(prog, 1, 0);
			}
			gen_result_free(&res[i]);
			free(pr[i]);
			free(ptext[i]);
			pr[i] = NULL;
			ptext[i] = NULL;
		}
	}
	free(pr);
	free(npr);
	free(ptext);
	free(res);
	json_decref(extra);
	jinja_free(tmpl);
	free(tmpl_file);
	model_free(m);
	tokenizer_free(tok);
}

static void gen_endpoint(const opts *o, item *items, size_t n, scorer *s, progress *prog, const gen_config *gcfg)
{
	ep_client c = {.url = o->endpoint, .model = o->model};
	http_opts_default(&c.http);
	c.http.token = getenv("OPENAI_API_KEY");
	c.http.max_attempts = (int)o->retries;
	c.http.timeout_s = o->timeout;
	c.http.stall_timeout_s = o->timeout; /* a server may think for long before its first byte */
	c.max_tokens = gcfg->max_new_tokens;
	c.temperature = o->has_temp ? o->temperature : (o->do_sample ? -1 : 0.0);
	c.top_p = o->has_top_p ? o->top_p : -1;
	c.seed = o->has_seed ? o->seed : -1;
	c.stop = o->stops;
	c.n_stop = o->n_stops;
	int chunk = (int)(o->conc * 4 > o->batch ? o->conc * 4 : o->batch);
	ep_job *jobs = calloc((size_t)chunk, sizeof *jobs);
	if (!jobs) die(SFT_EXIT_RUNTIME, "out of memory");
	for (size_t k = 0; k < n && !g_interrupted; k += (size_t)chunk) {
		int nb = (int)(n - k < (size_t)chunk ? n - k : (size_t)chunk);
		for (int i = 0; i < nb; i++) {
			memset(&jobs[i], 0, sizeof jobs[i]);
			jobs[i].messages = items[k + (size_t)i].messages;
		}
		sft_error err = {0};
		if (ep_run(&c, jobs, nb, (int)o->conc, (volatile int *)&g_interrupted, &err) < 0) die_err(&err);
		int failed = -1;
		for (int i = 0; i < nb; i++) {
			if (jobs[i].err.code > 0 && failed < 0) failed = i;
			if (jobs[i].err.code == 0 && failed < 0) {
				score_item(s, k + (size_t)i, items[k + (size_t)i].messages, jobs[i].text, strlen(jobs[i].text),
					   &items[k + (size_t)i], jobs[i].prompt_tokens, jobs[i].completion_tokens,
					   jobs[i].finish_reason);
				progress_add(prog, 1, jobs[i].completion_tokens > 0 ? (uint64_t)jobs[i].completion_tokens : 0);
			}
		}
		if (failed >= 0) {
			sft_error e = jobs[failed].err;
			for (int i = 0; i < nb; i++) free(jobs[i].text);
			free(jobs);
			sft_error_prefix(&e, "%s:%ld", o->data, items[k + (size_t)failed].line);
			progress_finish(prog);
			/* what was scored before stays in items.jsonl's temporary: discarded (a failed run) */
			die_err(&e);
		}
		for (int i = 0; i < nb; i++) free(jobs[i].text);
	}
	free(jobs);
}

static json_t *string_array(const char *const *v, int n)
{
	json_t *a = json_array();
	for (int i = 0; i < n; i++) json_array_append_new(a, json_string(v[i]));
	return a;
}

static int run_generate(opts *o)
{
	sft_error err = {0};
	/* chains first: a bad regex or spec is a usage error before anything is loaded */
	int n_chains = o->n_filters + (o->extract ? 1 : 0);
	if (n_chains == 0) n_chains = 1;
	ev_chain *chains = calloc((size_t)n_chains, sizeof *chains);
	if (!chains) die(SFT_EXIT_RUNTIME, "out of memory");
	int ci = 0;
	if (o->extract) {
		if (ev_chain_extract(&chains[ci++], "extract", o->extract, (int)o->group, o->match_last, &err) < 0) die_err(&err);
	} else if (o->group >= 0 || o->match_last) {
		die_usage("--group and --match refine --extract");
	}
	for (int i = 0; i < o->n_filters; i++) {
		char dn[32];
		snprintf(dn, sizeof dn, "filter%d", i + 1);
		if (ev_chain_parse(&chains[ci], o->filters[i], dn, &err) < 0) die_err(&err);
		for (int j = 0; j < ci; j++)
			if (!strcmp(chains[j].name, chains[ci].name)) die_usage("two filter chains are named '%s'", chains[ci].name);
		ci++;
	}
	if (ci == 0 && ev_chain_identity(&chains[ci++], "exact", &err) < 0) die_err(&err);
	for (int i = 0; i < o->n_ignores; i++)
		if (ev_match_add_ignore(&o->match, o->ignores[i], &err) < 0) die_err(&err);

	gen_config gcfg;
	if (o->endpoint) {
		gen_config_init(&gcfg);
	} else {
		check_model_files(o->model, 2);
		if (is_dir(o->model)) {
			if (gen_config_load(o->model, &gcfg, &err) < 0) die_err(&err);
		} else {
			gen_config_init(&gcfg); /* a GGUF file: eos from its tokenizer (gen_local) */
		}
	}
	if (o->max_new) gcfg.max_new_tokens = (int)o->max_new;
	if (o->do_sample) gcfg.do_sample = 1;
	if (o->has_temp) gcfg.temperature = o->temperature;
	if (o->has_top_k) gcfg.top_k = (int)o->top_k;
	if (o->has_top_p) gcfg.top_p = o->top_p;
	if (o->has_min_p) gcfg.min_p = o->min_p;
	if (o->has_rep) gcfg.repetition_penalty = o->rep;
	gcfg.stop = o->stops;
	gcfg.n_stop = o->n_stops;
	if (o->endpoint && (o->has_top_k || o->has_min_p || o->has_rep))
		log_warn("--top-k/--min-p/--repetition-penalty are not part of the OpenAI chat API: not sent");

	size_t n;
	item *items = load_items(o, &n);
	for (size_t i = 0; i < n; i++)
		if (!items[i].gold) die(SFT_EXIT_DATA, "%s:%ld: no gold answer", o->data, items[i].line);

	scorer s = {.chains = chains, .n_chains = n_chains, .gold_extract = o->gold_extract, .match = &o->match};
	s.correct = calloc((size_t)n_chains, sizeof *s.correct);
	if (!s.correct) die(SFT_EXIT_RUNTIME, "out of memory");
	if (o->output) {
		char p[4096];
		snprintf(p, sizeof p, "%s/items.jsonl", o->output);
		if (!(s.items_out = atomic_open(p, &err))) die_err(&err);
		g_tmp_items = s.items_out->tmp_path;
	}
	install_sigint();
	progress prog;
	progress_start_rate(&prog, "items", n, "tokens");
	json_t *model_info = json_object();
	double t_start = clock_now(), t0 = t_start;
	uint64_t seed = o->has_seed ? (uint64_t)o->seed : 0;
	if (o->endpoint) gen_endpoint(o, items, n, &s, &prog, &gcfg);
	else gen_local(o, items, n, &s, &prog, &gcfg, seed, model_info, &t0);
	double secs = clock_now() - t0;
	progress_finish(&prog);
	int partial = s.n < n;
	g_tmp_items = NULL;
	if (s.items_out && atomic_commit(s.items_out, &err) < 0) die_err(&err);

	json_t *sum = json_object();
	json_object_set_new(sum, "mode", json_string("generate"));
	json_object_set_new(sum, "model", json_string(o->model));
	if (o->endpoint) json_object_set_new(sum, "endpoint", json_string(o->endpoint));
	json_object_set_new(sum, "data", json_string(o->data));
	json_object_set_new(sum, "n", json_integer((json_int_t)s.n));
	json_object_set_new(sum, "n_records", json_integer((json_int_t)n));
	json_object_set_new(sum, "partial", json_boolean(partial));
	json_t *acc = json_object(), *cl = json_array();
	for (int c = 0; c < n_chains; c++) {
		double a = s.n ? (double)s.correct[c] / (double)s.n : NAN;
		json_object_set_new(acc, chains[c].name, json_real_or_null(a));
		json_t *cj = json_object();
		json_object_set_new(cj, "name", json_string(chains[c].name));
		json_object_set_new(cj, "filter", json_string(chains[c].spec));
		json_object_set_new(cj, "n", json_integer((json_int_t)s.n));
		json_object_set_new(cj, "correct", json_integer(s.correct[c]));
		json_object_set_new(cj, "accuracy", json_real_or_null(a));
		json_array_append_new(cl, cj);
	}
	json_object_set_new(sum, "accuracy", acc);
	json_object_set_new(sum, "chains", cl);
	json_t *set = settings_common(o);
	json_object_set_new(set, "max_new_tokens", json_integer(gcfg.max_new_tokens));
	json_object_set_new(set, "do_sample", json_boolean(gcfg.do_sample && gcfg.temperature > 0));
	json_object_set_new(set, "temperature", json_real_or_null(gcfg.temperature));
	json_object_set_new(set, "top_k", json_integer(gcfg.top_k));
	json_object_set_new(set, "top_p", json_real_or_null(gcfg.top_p));
	json_object_set_new(set, "min_p", json_real_or_null(gcfg.min_p));
	json_object_set_new(set, "repetition_penalty", json_real_or_null(gcfg.repetition_penalty));
	json_object_set_new(set, "seed", json_integer((json_int_t)seed));
	json_object_set_new(set, "stop", string_array(o->stops, o->n_stops));
	json_object_set_new(set, "gold_field", o->gold_field ? json_string(o->gold_field) : json_null());
	json_object_set_new(set, "extract_gold", json_boolean(o->gold_extract));
	json_object_set_new(set, "ignore_case", json_boolean(o->match.ignore_case));
	json_object_set_new(set, "ignore_punctuation", json_boolean(o->match.ignore_punctuation));
	json_object_set_new(set, "ignore_numbers", json_boolean(o->match.ignore_numbers));
	json_object_set_new(set, "regexes_to_ignore", string_array(o->ignores, o->n_ignores));
	json_object_set_new(set, "chat_template", o->chat_template ? json_string(o->chat_template) : json_null());
	if (o->endpoint) json_object_set_new(set, "concurrency", json_integer(o->conc));
	json_object_set_new(sum, "settings", set);
	json_object_set_new(sum, "model_info", model_info);
	json_t *tm = json_object();
	json_object_set_new(tm, "load_seconds", json_real_or_null(t0 - t_start));
	json_object_set_new(tm, "seconds", json_real_or_null(secs));
	json_object_set_new(tm, "items_per_s", json_real_or_null(secs > 0 ? (double)s.n / secs : NAN));
	json_object_set_new(tm, "prompt_tokens", json_integer((json_int_t)s.prompt_tokens));
	json_object_set_new(tm, "output_tokens", json_integer((json_int_t)s.output_tokens));
	json_object_set_new(tm, "output_tokens_per_s", json_real_or_null(secs > 0 ? (double)s.output_tokens / secs : NAN));
	json_object_set_new(sum, "timings", tm);
	emit_summary(o, sum, 0);
	char accs[512] = "";
	for (int c = 0; c < n_chains && strlen(accs) < 400; c++)
		snprintf(accs + strlen(accs), sizeof accs - strlen(accs), "%s%s %.4f", c ? ", " : "", chains[c].name,
			 s.n ? (double)s.correct[c] / (double)s.n : NAN);
	log_info("%zu/%zu items in %.1fs (%.2f items/s, %.1f tokens/s): %s%s", s.n, n, secs,
		 secs > 0 ? (double)s.n / secs : 0.0, secs > 0 ? (double)s.output_tokens / secs : 0.0, accs,
		 partial ? " [interrupted: partial]" : "");
	json_decref(sum);
	for (size_t i = 0; i < n; i++) item_free(&items[i]);
	free(items);
	for (int c = 0; c < n_chains; c++) ev_chain_free(&chains[c]);
	free(chains);
	free(s.correct);
	return partial ? 130 : 0;
}

int main(int argc, char **argv)
{
	sft_threads_init(argc, argv); /* short OpenMP spin (libcommon/threads.h) */
	log_init("sft-eval");
	opts o = {.batch = 0, .conc = 4, .timeout = 600, .retries = 5, .group = -1};
	char **pos = NULL;
	int npos = cli_parse(&spec, argc, argv, on_opt, &o, &pos);
	if (o.compare) {
		if (npos != 2) die_usage("--compare takes two summary.json files: BASELINE FINETUNED");
		sft_error err = {0};
		json_t *a = rep_load_summary(pos[0], &err);
		if (!a) die_err(&err);
		json_t *b = rep_load_summary(pos[1], &err);
		if (!b) die_err(&err);
		if (rep_compare(stdout, a, pos[0], b, pos[1], &err) < 0) die_err(&err);
		json_decref(a);
		json_decref(b);
		free(pos);
		stdout_close_or_die();
		return 0;
	}
	if (npos > 0) die_usage("unexpected argument '%s' (use --data)", pos[0]);
	free(pos);
	if (!o.model) die_usage("--model is required");
	if (o.adapter && o.endpoint) die_usage("--adapter applies to local models, not --endpoint");
	if (!o.endpoint) resolve_adapter(&o);
	if (!o.data) die_usage("--data is required");
	if (!o.batch) o.batch = 8;
	if (o.mode == 0) {
		size_t n = strlen(o.data);
		if (is_dir(o.data)) o.mode = 1;
		else if ((n > 6 && !strcmp(o.data + n - 6, ".jsonl")) || (n > 5 && !strcmp(o.data + n - 5, ".json")) ||
			 (n > 9 && !strcmp(o.data + n - 9, ".jsonl.gz")) || !strcmp(o.data, "-"))
			o.mode = 2;
		else if (access(o.data, R_OK) == 0) o.mode = 1; /* a shard file */
		else die(SFT_EXIT_DATA, "%s: %s", o.data, strerror(errno));
	}
	if (o.output) {
		sft_error err = {0};
		if (fs_mkdir_p(o.output, &err) < 0) die_err(&err);
	}
	int rc = o.mode == 1 ? run_loss(&o) : run_generate(&o);
	ev_match_free(&o.match);
	free(o.stops);
	free(o.filters);
	free(o.ignores);
	stdout_close_or_die();
	return rc;
}
