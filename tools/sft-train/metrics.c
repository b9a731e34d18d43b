/* metrics.c - what a run reports: output_dir/metrics.jsonl (one line per logging step and
 * per evaluation), trainer_state's log_history entries, TensorBoard scalars, loss.svg, the
 * progress line on a terminal (a log line per logging step otherwise). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "atomic.h"
#include "fsutil.h"
#include "jsonl.h"
#include "log.h"
#include "progress.h"
#include "sft-train.h"
#include "svgplot.h"

double metrics_peak_rss_mb(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

static int push_pt(log_point **v, size_t *n, size_t *cap, long step, double loss)
{
	if (*n == *cap) {
		size_t nc = *cap ? 2 * *cap : 64;
		log_point *nv = realloc(*v, nc * sizeof *nv);
		if (!nv)
			return -1;
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = (log_point){step, loss};
	return 0;
}

static void path_in(const st_run *r, const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", r->cfg->output_dir, name);
}

int metrics_open(st_run *r, long keep_upto_step, sft_error *err)
{
	char path[4096];
	path_in(r, "metrics.jsonl", path, sizeof path);
	st_state *s = &r->st;
	if (!s->log_history)
		s->log_history = json_array();
	json_buf kept = {0};
	if (keep_upto_step >= 0) {
		/* a resumed run continues the file from its checkpoint: later lines are dropped */
		size_t len;
		sft_error e2 = {0};
		char *txt = fs_read_file(path, &len, &e2);
		char *save = NULL;
		for (char *line = txt ? strtok_r(txt, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
			json_t *o = json_parse_fast(line, strlen(line));
			json_t *st = json_object_get(o, "step");
			if (json_is_integer(st) && json_integer_value(st) <= keep_upto_step) {
				json_buf_put(&kept, line, strlen(line));
				json_buf_put(&kept, "\n", 1);
				json_t *l = json_object_get(o, "loss"), *el = json_object_get(o, "eval_loss");
				if (json_is_number(l))
					push_pt(&s->train_pts, &s->n_train, &s->cap_train, (long)json_integer_value(st),
						json_number_value(l));
				if (json_is_number(el))
					push_pt(&s->eval_pts, &s->n_eval, &s->cap_eval, (long)json_integer_value(st),
						json_number_value(el));
			}
			json_decref(o);
		}
		free(txt);
	}
	atomic_file *af = atomic_open(path, err);
	if (!af) {
		free(kept.buf);
		return -1;
	}
	if (kept.len)
		fwrite(kept.buf, 1, kept.len, af->fp);
	free(kept.buf);
	if (atomic_commit(af, err) < 0)
		return -1;
	r->metrics = fopen(path, "a");
	if (!r->metrics)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot open for appending", path);
	r->tty = isatty(2) && log_level() >= LOG_NORMAL;
	return 0;
}

void metrics_close(st_run *r)
{
	if (r->metrics)
		fclose(r->metrics);
	r->metrics = NULL;
}

static double now_time(const st_run *r)
{
	return r->st.train_seconds + (clock_now() - r->t_start);
}

/* Appends one metrics.jsonl line: o (consumed) plus the fields every line ends with. */
static int emit(st_run *r, json_t *o, sft_error *err)
{
	json_object_set_new(o, "peak_rss_mb", json_real(metrics_peak_rss_mb()));
	json_object_set_new(o, "time", json_real(now_time(r)));
	int rc = jsonl_write(r->metrics, o);
	json_decref(o);
	if (rc < 0 || fflush(r->metrics) != 0)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s/metrics.jsonl: write error", r->cfg->output_dir);
	return 0;
}

/* A trainer_state log_history entry: epoch first, step last (transformers' key order). */
static json_t *history_new(const st_state *s)
{
	json_t *h = json_object();
	json_object_set_new(h, "epoch", json_real(s->epoch));
	return h;
}

static void history_push(st_state *s, json_t *h)
{
	json_object_set_new(h, "step", json_integer(s->global_step));
	json_array_append_new(s->log_history, h);
}

static void tb(st_run *r, const char *tag, double v)
{
	sft_error e = {0};
	if (r->tb && isfinite(v) && tb_scalar(r->tb, tag, v, r->st.global_step, -1, &e) < 0) {
		log_warn("%s", e.msg);
		tb_close(r->tb);
		r->tb = NULL;
	}
}

static void clear_line(st_run *r)
{
	if (r->tty)
		fprintf(stderr, "\r\033[K");
}

int metrics_log_train(st_run *r, double lr, double grad_norm, sft_error *err)
{
	st_state *s = &r->st;
	double loss = s->win_steps ? s->win_loss / (double)s->win_steps : NAN;
	double acc = s->win_targets ? (double)s->win_correct / (double)s->win_targets : NAN;
	double el = clock_now() - r->t_start;
	double tps = el > 0 ? (double)(s->tokens_seen - r->tokens0) / el : 0;
	json_t *o = json_object();
	json_object_set_new(o, "step", json_integer(s->global_step));
	json_object_set_new(o, "epoch", json_real(s->epoch));
	json_object_set_new(o, "loss", json_real(loss));
	json_object_set_new(o, "lr", json_real(lr));
	json_object_set_new(o, "grad_norm", json_real(grad_norm));
	json_object_set_new(o, "tokens", json_integer((json_int_t)s->tokens_seen));
	json_object_set_new(o, "trained_tokens", json_integer((json_int_t)s->targets_seen));
	json_object_set_new(o, "tokens_per_s", json_real(tps));
	json_object_set_new(o, "accuracy", json_real_or_null(acc));
	if (emit(r, o, err) < 0)
		return -1;
	json_t *h = history_new(s);
	json_object_set_new(h, "grad_norm", json_real(grad_norm));
	json_object_set_new(h, "learning_rate", json_real(lr));
	json_object_set_new(h, "loss", json_real(loss));
	json_object_set_new(h, "mean_token_accuracy", json_real_or_null(acc));
	json_object_set_new(h, "num_tokens", json_integer((json_int_t)s->tokens_seen));
	history_push(s, h);
	tb(r, "train/loss", loss);
	tb(r, "train/learning_rate", lr);
	tb(r, "train/grad_norm", grad_norm);
	tb(r, "train/mean_token_accuracy", acc);
	tb(r, "train/epoch", s->epoch);
	tb(r, "train/tokens_per_s", tps);
	push_pt(&s->train_pts, &s->n_train, &s->cap_train, s->global_step, loss);
	clear_line(r);
	log_info("step %ld/%ld epoch %.2f loss %.4f lr %.3g grad_norm %.3g accuracy %.3f %.0f tokens/s",
			 s->global_step, s->max_steps, s->epoch, loss, lr, grad_norm, isnan(acc) ? 0 : acc, tps);
	s->win_loss = 0;
	s->win_steps = 0;
	s->win_loss_sum = 0;
	s->win_targets = 0;
	s->win_correct = 0;
	return 0;
}

int metrics_log_eval(st_run *r, double loss, double acc, uint64_t tokens, double secs, sft_error *err)
{
	st_state *s = &r->st;
	json_t *o = json_object();
	json_object_set_new(o, "step", json_integer(s->global_step));
	json_object_set_new(o, "epoch", json_real(s->epoch));
	json_object_set_new(o, "eval_loss", json_real_or_null(loss));
	json_object_set_new(o, "eval_accuracy", json_real_or_null(acc));
	json_object_set_new(o, "eval_tokens", json_integer((json_int_t)tokens));
	json_object_set_new(o, "eval_seconds", json_real(secs));
	if (emit(r, o, err) < 0)
		return -1;
	json_t *h = history_new(s);
	json_object_set_new(h, "eval_loss", json_real_or_null(loss));
	json_object_set_new(h, "eval_mean_token_accuracy", json_real_or_null(acc));
	json_object_set_new(h, "eval_runtime", json_real(secs));
	json_object_set_new(h, "eval_num_tokens", json_integer((json_int_t)tokens));
	history_push(s, h);
	tb(r, "eval/loss", loss);
	tb(r, "eval/mean_token_accuracy", acc);
	push_pt(&s->eval_pts, &s->n_eval, &s->cap_eval, s->global_step, loss);
	clear_line(r);
	log_info("eval at step %ld (epoch %.2f): eval_loss %.4f (ppl %.3g), accuracy %.3f, %.1f s", s->global_step,
		 s->epoch, loss, exp(loss), acc, secs);
	return 0;
}

int metrics_plot(st_run *r, sft_error *err)
{
	st_state *s = &r->st;
	size_t nt = s->n_train, ne = s->n_eval;
	double *v = malloc((2 * (nt + ne) + 1) * sizeof *v);
	size_t nv = s->steps_per_epoch > 0 ? (size_t)(s->global_step / s->steps_per_epoch) : 0;
	if (nv > 1000)
		nv = 0; /* too many to draw */
	double *vl = malloc((nv + 1) * sizeof *vl);
	if (!v || !vl) {
		free(v);
		free(vl);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	double *tx = v, *ty = v + nt, *ex = v + 2 * nt, *ey = v + 2 * nt + ne;
	for (size_t i = 0; i < nt; i++) {
		tx[i] = (double)s->train_pts[i].step;
		ty[i] = s->train_pts[i].loss;
	}
	for (size_t i = 0; i < ne; i++) {
		ex[i] = (double)s->eval_pts[i].step;
		ey[i] = s->eval_pts[i].loss;
	}
	for (size_t k = 0; k < nv; k++)
		vl[k] = (double)((long)(k + 1) * s->steps_per_epoch);
	svg_series ser[2] = {{"train loss", tx, ty, nt, NULL, 0, 0}, {"eval loss", ex, ey, ne, NULL, 1, 0}};
	svg_plot p = {"sft-train loss", "step", "loss", 0, 0, 0, vl, nv};
	char path[4096];
	path_in(r, "loss.svg", path, sizeof path);
	int rc = svg_plot_write(path, &p, ser, ne ? 2 : 1, err);
	free(v);
	free(vl);
	return rc;
}

void metrics_progress(st_run *r, double lr, int final)
{
	if (!r->tty)
		return;
	if (final) {
		clear_line(r);
		return;
	}
	const st_state *s = &r->st;
	double el = clock_now() - r->t_start;
	double tps = el > 0 ? (double)(s->tokens_seen - r->tokens0) / el : 0;
	long done = s->global_step - r->step0;
	double eta = done > 0 ? el / (double)done * (double)(s->max_steps - s->global_step) : 0;
	double loss = s->win_steps ? s->win_loss / (double)s->win_steps : s->n_train ? s->train_pts[s->n_train - 1].loss : NAN;
	fprintf(stderr, "\r%s: step %ld/%ld (%.0f%%) epoch %.2f loss %.4f lr %.2e %.0f tok/s eta %dm%02ds\033[K", log_prog(),
		s->global_step, s->max_steps, 100.0 * (double)s->global_step / (double)s->max_steps, s->epoch, loss, lr, tps,
		(int)(eta / 60), (int)fmod(eta, 60));
	fflush(stderr);
}
