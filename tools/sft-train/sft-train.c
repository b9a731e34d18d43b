/* sft-train - supervised fine-tuning (full or LoRA) on packed token shards, on the CPU
 * (docs/sft-train.md). main() wires the pieces: cfg.c (keys), loop.c (steps, eval, early
 * stopping), ckpt.c (atomic checkpoints, resume), metrics.c (metrics.jsonl, TensorBoard,
 * loss.svg, progress), plan.c (--plan). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bigmem.h"
#include "atomic.h"
#include "fsutil.h"
#include "jsonl.h"
#include "log.h"
#include "threads.h"
#include "progress.h"
#include "sft-train.h"
#include "shard.h"
#include "tokenizer.h"

static volatile int g_stop;

static void on_stop(int sig)
{
	(void)sig;
	g_stop++;
	if (g_stop >= 3) /* a third Ctrl-C: give up on the checkpoint */
		_exit(130);
}

static void install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* The model's tokenizer fingerprint, with a chat_template_path folded in the way
 * tok-encode --chat-template does. */
static int model_fingerprint(const st_cfg *c, uint8_t fp[16], sft_error *err)
{
	tokenizer *tok = tokenizer_load(c->model_name_or_path, err);
	if (!tok)
		return -1;
	char *t = NULL;
	size_t n = 0;
	if (c->chat_template_path && !(t = fs_read_file(c->chat_template_path, &n, err))) {
		tokenizer_free(tok);
		return -1;
	}
	int rc = tokenizer_fingerprint_template(tok, t, n, fp, err);
	free(t);
	tokenizer_free(tok);
	if (rc < 0)
		return -1;
	return 0;
}

static void check_data(const st_run *r, const batch_data *d, const char *key, const char *path, const uint8_t *mfp,
		       int have_fp)
{
	static const uint8_t zero[16];
	uint32_t dv = batch_data_vocab(d);
	if (dv > (uint32_t)r->m->cfg.vocab_size)
		die(SFT_EXIT_DATA, "%s: %s has vocab size %u but the model has %d ids", path, key, dv,
		    r->m->cfg.vocab_size);
	if (!batch_data_rows(d))
		die(SFT_EXIT_DATA, "%s: %s has no rows", path, key);
	const uint8_t *dfp = batch_data_fingerprint(d);
	if (!memcmp(dfp, zero, 16)) {
		log_warn("%s: %s carries no tokenizer fingerprint (packed from JSONL): not checked", path, key);
		return;
	}
	if (!have_fp || !memcmp(dfp, mfp, 16))
		return;
	char a[33], b[33];
	shard_hex16(dfp, a);
	shard_hex16(mfp, b);
	if (r->cfg->no_fingerprint_check) {
		log_warn("%s: tokenizer fingerprint %s differs from the model's %s (--no-fingerprint-check)", path, a, b);
		return;
	}
	die(SFT_EXIT_DATA,
	    "%s: %s was tokenized with another tokenizer (fingerprint %s, model %s: %s); re-encode with "
	    "tok-encode --model %s, give chat_template_path if tok-encode had --chat-template, or pass "
	    "--no-fingerprint-check",
	    path, key, a, r->cfg->model_name_or_path, b, r->cfg->model_name_or_path);
}

static int has_checkpoints(const char *dir)
{
	char latest[2048];
	return ckpt_find_latest(dir, latest, sizeof latest) > 0;
}

static void write_config_yaml(const st_cfg *c, const char *dir)
{
	sft_error err = {0};
	char path[2048];
	snprintf(path, sizeof path, "%s/sft_config.yaml", dir);
	char *y = cfg_dump_yaml(c);
	atomic_file *af = atomic_open(path, &err);
	if (!af)
		die_err(&err);
	fputs(y, af->fp);
	free(y);
	if (atomic_commit(af, &err) < 0)
		die_err(&err);
}

static void run_free(st_run *r)
{
	metrics_close(r);
	tb_close(r->tb);
	batch_free(&r->b);
	free(r->perm);
	free(r->opt_block);
	free(r->exp_avg);
	free(r->exp_avg_sq);
	free(r->params);
	train_ctx_free(r->tc);
	lora_free(r->lora);
	batch_data_close(r->train);
	batch_data_close(r->eval);
	model_free(r->m);
	free(r->st.train_pts);
	free(r->st.eval_pts);
	json_decref(r->st.log_history);
}

int main(int argc, char **argv)
{
	sft_threads_init(argc, argv); /* short OpenMP spin (libcommon/threads.h) */
	log_init("sft-train");
	install_signals();
	st_cfg cfg;
	cfg_parse(&cfg, argc, argv);
	cfg_finish(&cfg);
	sft_error err = {0};
	double t0 = clock_now();

	st_run r;
	memset(&r, 0, sizeof r);
	r.cfg = &cfg;
	r.stop_signal = &g_stop;
	r.perm_epoch = -1;
	r.st.last_eval_loss = NAN;
	r.st.last_eval_step = -1;
	r.st.best_step = -1;
	r.last_save_step = -1;

	/* model */
	r.m = model_load_any(cfg.model_name_or_path, &r.base_is_gguf, &err);
	if (!r.m)
		die_err(&err);

	/* data */
	r.train = batch_data_open(cfg.train_data, &err);
	if (!r.train)
		die_err(&err);
	if (cfg.eval_data) {
		r.eval = batch_data_open(cfg.eval_data, &err);
		if (!r.eval)
			die_err(&err);
	}
	uint8_t mfp[16];
	int have_fp = 1;
	static const uint8_t zero16[16];
	int any_fp = memcmp(batch_data_fingerprint(r.train), zero16, 16) ||
		     (r.eval && memcmp(batch_data_fingerprint(r.eval), zero16, 16));
	if (!any_fp) {
		have_fp = 0; /* nothing to compare (shards packed from JSONL): check_data warns */
	} else if (model_fingerprint(&cfg, mfp, &err) < 0) {
		if (!cfg.no_fingerprint_check)
			die(err.code ? err.code : SFT_EXIT_DATA,
			    "cannot check the data's tokenizer fingerprint: %s (pass --no-fingerprint-check to train anyway)",
			    err.msg);
		have_fp = 0;
		sft_error_clear(&err);
	}
	log_verbose("peak RSS after loading the model and tokenizer: %.0f MB", metrics_peak_rss_mb());
	check_data(&r, r.train, "train_data", cfg.train_data, mfp, have_fp);
	if (r.eval)
		check_data(&r, r.eval, "eval_data", cfg.eval_data, mfp, have_fp);
	uint32_t maxT = batch_data_max_len(r.train);
	if (r.eval && batch_data_max_len(r.eval) > maxT)
		maxT = batch_data_max_len(r.eval);
	if (maxT > (uint32_t)cfg.max_length)
		log_warn("rows of up to %u tokens exceed max_length %lld (the rows are as pack --seq-len made them)",
			 maxT, cfg.max_length);
	loop_plan_steps(&r);

	/* LoRA adapter */
	if (cfg.use_peft) {
		r.lcfg = (lora_config){(int)cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.use_rslora, cfg.lora_targets};
		r.lora = lora_new(&r.m->cfg, &r.lcfg, &err);
		if (!r.lora)
			die_err(&err);
		lora_init(r.lora, (uint64_t)cfg.seed);
	}
	/* Evaluation batches are capped at the training micro-batch (loop_eval), so the
	 * training context sized for it is all the memory a run needs. */
	train_opts to = {.max_B = (int)cfg.per_device_train_batch_size,
			 .max_T = (int)maxT,
			 .grad_checkpointing = cfg.gradient_checkpointing,
			 .neftune_alpha = cfg.neftune_noise_alpha,
			 .eval_only = 0};
	if (cfg.plan) {
		plan_print(&r, stdout, &to);
		run_free(&r);
		cfg_free(&cfg);
		stdout_close_or_die();
		return 0;
	}

	/* output_dir, resume */
	if (fs_mkdir_p(cfg.output_dir, &err) < 0)
		die_err(&err);
	ckpt_clean_tmp(cfg.output_dir);
	char resume[2048] = "";
	if (cfg.resume_from_checkpoint) {
		if (!strcmp(cfg.resume_from_checkpoint, "true") || !strcmp(cfg.resume_from_checkpoint, "True") ||
		    !strcmp(cfg.resume_from_checkpoint, "yes") || !strcmp(cfg.resume_from_checkpoint, "1")) {
			if (ckpt_find_latest(cfg.output_dir, resume, sizeof resume) <= 0)
				die(SFT_EXIT_USAGE, "resume_from_checkpoint: no complete checkpoint in %s", cfg.output_dir);
		} else {
			snprintf(resume, sizeof resume, "%s", cfg.resume_from_checkpoint);
		}
		if (ckpt_load(&r, resume, &err) < 0)
			die_err(&err);
	} else if (has_checkpoints(cfg.output_dir)) {
		if (!cfg.overwrite_output_dir)
			die(SFT_EXIT_USAGE,
			    "%s already holds checkpoints: continue with resume_from_checkpoint: true, or start over "
			    "with overwrite_output_dir: true",
			    cfg.output_dir);
		char latest[2048];
		while (ckpt_find_latest(cfg.output_dir, latest, sizeof latest) > 0)
			if (ckpt_rmtree(latest) < 0)
				die(SFT_EXIT_RUNTIME, "%s: cannot remove: %s", latest, strerror(errno));
	}

	r.tc = train_ctx_new(r.m, r.lora, &to, &err);
	if (!r.tc)
		die_err(&err);
	r.n_params = train_params(r.tc, NULL);
	r.params = calloc((size_t)r.n_params, sizeof *r.params);
	r.exp_avg = calloc((size_t)r.n_params, sizeof *r.exp_avg);
	r.exp_avg_sq = calloc((size_t)r.n_params, sizeof *r.exp_avg_sq);
	if (!r.params || !r.exp_avg || !r.exp_avg_sq)
		die(SFT_EXIT_RUNTIME, "out of memory");
	train_params(r.tc, r.params);
	for (int i = 0; i < r.n_params; i++)
		r.n_trainable += r.params[i].n;
	r.opt_block = sft_big_calloc((r.n_trainable > 0 ? 2 * r.n_trainable : 1) * sizeof(float));
	if (!r.opt_block)
		die(SFT_EXIT_RUNTIME, "out of memory: optimizer state of %zu parameters", r.n_trainable);
	size_t off = 0;
	for (int i = 0; i < r.n_params; i++) {
		r.exp_avg[i] = r.opt_block + off;
		r.exp_avg_sq[i] = r.opt_block + r.n_trainable + off;
		off += r.params[i].n;
	}
	log_verbose("peak RSS after allocating the training state: %.0f MB", metrics_peak_rss_mb());
	if (resume[0] && ckpt_load_optimizer(&r, resume, &err) < 0)
		die_err(&err);
	if (batch_alloc(&r.b, (int)cfg.per_device_train_batch_size, (int)maxT, &err) < 0)
		die_err(&err);
	r.perm = malloc(batch_data_rows(r.train) * sizeof *r.perm);
	if (!r.perm)
		die(SFT_EXIT_RUNTIME, "out of memory");

	write_config_yaml(&cfg, cfg.output_dir);
	if (metrics_open(&r, resume[0] ? r.st.global_step : -1, &err) < 0)
		die_err(&err);
	if (cfg.tensorboard) {
		char tbdir[2048];
		if (cfg.logging_dir)
			snprintf(tbdir, sizeof tbdir, "%s", cfg.logging_dir);
		else
			snprintf(tbdir, sizeof tbdir, "%s/runs", cfg.output_dir);
		r.tb = tb_open(tbdir, &err);
		if (!r.tb)
			die_err(&err);
	}
	log_info("%s %s: %zu trainable parameters (%s), %zu rows, %ld steps (%ld per epoch), batch %lld x %lld%s%s",
		 resume[0] ? "resuming" : "training", r.m->cfg.arch_name, r.n_trainable,
		 r.lora ? "LoRA" : "full fine-tuning", batch_data_rows(r.train), r.st.max_steps, r.st.steps_per_epoch,
		 cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps, resume[0] ? " from " : "", resume);

	if (loop_run(&r, &err) < 0)
		die_err(&err);

	/* final model */
	if (!r.interrupted) {
		const char *src = NULL;
		if (cfg.load_best_model_at_end && r.st.best_checkpoint[0]) {
			src = r.st.best_checkpoint;
			log_info("loading the best model from %s (eval_loss %.6g)", src, r.st.best_metric);
		}
		if (ckpt_save_final(&r, src, &err) < 0)
			die_err(&err);
	}
	if (metrics_plot(&r, &err) < 0)
		log_warn("%s", err.msg);
	metrics_progress(&r, 0, 1);

	double secs = clock_now() - t0;
	/* tokens fed per second of training, over the whole run (resumes included) */
	double tps = r.st.train_seconds > 0 ? (double)r.st.tokens_seen / r.st.train_seconds : 0;
	double rss = metrics_peak_rss_mb();
	char evalpart[512] = "";
	if (!isnan(r.st.last_eval_loss))
		snprintf(evalpart, sizeof evalpart, ", final eval loss %.4f", r.st.last_eval_loss);
	if (r.st.has_best)
		snprintf(evalpart + strlen(evalpart), sizeof evalpart - strlen(evalpart), ", best eval loss %.4f%s%s%s",
			 r.st.best_metric, r.st.best_checkpoint[0] ? " (" : "",
			 r.st.best_checkpoint[0] ? strrchr(r.st.best_checkpoint, '/') + 1 : "",
			 r.st.best_checkpoint[0] ? ")" : "");
	log_info("%s: %ld steps, %.2f epochs%s, %.0f tokens/s, %.1f s, peak RSS %.0f MB%s%s",
		 r.interrupted ? "interrupted (checkpoint saved)" : r.early_stopped ? "early stopped" : "done",
		 r.st.global_step, r.st.epoch, evalpart, tps, secs, rss, r.interrupted ? "" : ", model in ",
		 r.interrupted ? "" : cfg.output_dir);
	if (cfg.json) {
		json_t *o = json_object();
		json_object_set_new(o, "steps", json_integer(r.st.global_step));
		json_object_set_new(o, "max_steps", json_integer(r.st.max_steps));
		json_object_set_new(o, "epoch", json_real(r.st.epoch));
		json_object_set_new(o, "eval_loss", isnan(r.st.last_eval_loss) ? json_null() : json_real(r.st.last_eval_loss));
		json_object_set_new(o, "best_metric", r.st.has_best ? json_real(r.st.best_metric) : json_null());
		json_object_set_new(o, "best_model_checkpoint",
				    r.st.best_checkpoint[0] ? json_string(r.st.best_checkpoint) : json_null());
		json_object_set_new(o, "tokens", json_integer((json_int_t)r.st.tokens_seen));
		json_object_set_new(o, "trained_tokens", json_integer((json_int_t)r.st.targets_seen));
		json_object_set_new(o, "tokens_per_s", json_real(tps));
		json_object_set_new(o, "seconds", json_real(secs));
		json_object_set_new(o, "peak_rss_mb", json_real(rss));
		json_object_set_new(o, "trainable_params", json_integer((json_int_t)r.n_trainable));
		json_object_set_new(o, "interrupted", json_boolean(r.interrupted));
		json_object_set_new(o, "early_stopped", json_boolean(r.early_stopped));
		json_object_set_new(o, "output_dir", json_string(cfg.output_dir));
		jsonl_write(stdout, o);
		json_decref(o);
	}

	run_free(&r);
	cfg_free(&cfg);
	stdout_close_or_die();
	return 0;
}
