/* ckpt.c - checkpoints: output_dir/checkpoint-N/ holds the model (model.safetensors +
 * config.json + tokenizer files) or the adapter (adapter_config.json +
 * adapter_model.safetensors), optimizer.safetensors, trainer_state.json, sft_config.yaml and
 * COMPLETE (size and xxh3-64 of every other file).
 *
 * Atomicity: the directory is built as checkpoint-N.tmp-XXXXXX, every file is fsynced
 * (atomic.h), COMPLETE is written last, the directory is fsynced and renamed to
 * checkpoint-N, and output_dir is fsynced. A SIGKILL at any moment leaves either no
 * checkpoint-N or a complete one; leftovers (*.tmp-*) are removed at the next start, and
 * resume re-checks COMPLETE so a damaged checkpoint is refused, never half-loaded. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "atomic.h"
#include "fsutil.h"
#include "jsonl.h"
#include "log.h"
#include "progress.h"
#include "safetensors.h"
#include "sft-train.h"

static const char *const TOKENIZER_FILES[] = {"tokenizer.json",        "tokenizer_config.json",
					      "special_tokens_map.json", "chat_template.jinja",
					      "added_tokens.json",       "vocab.json",
					      "merges.txt",              "tokenizer.model",
					      NULL};

/* ---- small file helpers ---- */

static int write_file(const char *path, const void *data, size_t len, sft_error *err)
{
	atomic_file *af = atomic_open(path, err);
	if (!af)
		return -1;
	if (len && fwrite(data, 1, len, af->fp) != len) {
		atomic_abort(af);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write error: %s", path, strerror(errno));
	}
	return atomic_commit(af, err);
}

static int copy_file(const char *src, const char *dst, sft_error *err)
{
	FILE *in = fopen(src, "rb");
	if (!in)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot open: %s", src, strerror(errno));
	atomic_file *af = atomic_open(dst, err);
	if (!af) {
		fclose(in);
		return -1;
	}
	char buf[1 << 16];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		if (fwrite(buf, 1, n, af->fp) != n) {
			fclose(in);
			atomic_abort(af);
			return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write error: %s", dst, strerror(errno));
		}
	int bad = ferror(in);
	fclose(in);
	if (bad) {
		atomic_abort(af);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: read error", src);
	}
	return atomic_commit(af, err);
}

static int is_file(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int rmtree(const char *path)
{
	return nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A checkpoint leaves view atomically (renamed to *.tmp-del, which the next start's
 * ckpt_clean_tmp sweeps if this deletion is cut short), so a half-deleted directory is
 * never taken for a complete checkpoint. */
int ckpt_rmtree(const char *path)
{
	char dead[4200];
	snprintf(dead, sizeof dead, "%s.tmp-del", path);
	if (rename(path, dead) < 0)
		return -1;
	return rmtree(dead);
}

static int hash_file(const char *path, uint64_t *h, uint64_t *size)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	XXH3_state_t *s = XXH3_createState();
	XXH3_64bits_reset(s);
	char buf[1 << 16];
	size_t n;
	*size = 0;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		XXH3_64bits_update(s, buf, n);
		*size += n;
	}
	int bad = ferror(f);
	fclose(f);
	*h = XXH3_64bits_digest(s);
	XXH3_freeState(s);
	return bad ? -1 : 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted regular file names of dir (malloc'd array of malloc'd names). */
static char **list_files(const char *dir, size_t *n)
{
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	char **v = NULL;
	size_t cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char p[4096];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		if (e->d_name[0] == '.' || !is_file(p))
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			char **nv = realloc(v, cap * sizeof *v);
			if (!nv)
				break;
			v = nv;
		}
		v[(*n)++] = strdup(e->d_name);
	}
	closedir(d);
	if (v)
		qsort(v, *n, sizeof *v, cmp_str);
	return v;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- the model files ---- */

static json_t *config_from_model(const model_config *mc)
{
	json_t *o = json_object();
	int gemma = mc->arch == MODEL_ARCH_GEMMA3;
	const char *mt = mc->arch == MODEL_ARCH_LLAMA ? "llama"
			 : mc->arch == MODEL_ARCH_QWEN2 ? "qwen2"
			 : mc->arch == MODEL_ARCH_QWEN3 ? "qwen3"
							: "gemma3_text";
	const char *an = mc->arch == MODEL_ARCH_LLAMA ? "LlamaForCausalLM"
			 : mc->arch == MODEL_ARCH_QWEN2 ? "Qwen2ForCausalLM"
			 : mc->arch == MODEL_ARCH_QWEN3 ? "Qwen3ForCausalLM"
							: "Gemma3ForCausalLM";
	json_t *archs = json_array();
	json_array_append_new(archs, json_string(an));
	json_object_set_new(o, "architectures", archs);
	json_object_set_new(o, "model_type", json_string(mt));
	json_object_set_new(o, "vocab_size", json_integer(mc->vocab_size));
	json_object_set_new(o, "hidden_size", json_integer(mc->hidden_size));
	json_object_set_new(o, "intermediate_size", json_integer(mc->intermediate_size));
	json_object_set_new(o, "num_hidden_layers", json_integer(mc->n_layers));
	json_object_set_new(o, "num_attention_heads", json_integer(mc->n_heads));
	json_object_set_new(o, "num_key_value_heads", json_integer(mc->n_kv_heads));
	json_object_set_new(o, "head_dim", json_integer(mc->head_dim));
	json_object_set_new(o, "rms_norm_eps", json_real(mc->rms_eps));
	json_object_set_new(o, "rope_theta", json_real(mc->rope.theta));
	if (mc->rope.scaling == OPS_ROPE_LINEAR) {
		json_t *rs = json_object();
		json_object_set_new(rs, "rope_type", json_string("linear"));
		json_object_set_new(rs, "factor", json_real(mc->rope.factor));
		json_object_set_new(o, "rope_scaling", rs);
	} else if (mc->rope.scaling == OPS_ROPE_LLAMA3) {
		json_t *rs = json_object();
		json_object_set_new(rs, "rope_type", json_string("llama3"));
		json_object_set_new(rs, "factor", json_real(mc->rope.factor));
		json_object_set_new(rs, "low_freq_factor", json_real(mc->rope.low_freq_factor));
		json_object_set_new(rs, "high_freq_factor", json_real(mc->rope.high_freq_factor));
		json_object_set_new(rs, "original_max_position_embeddings",
				    json_integer((json_int_t)mc->rope.original_max_position_embeddings));
		json_object_set_new(o, "rope_scaling", rs);
	} else {
		json_object_set_new(o, "rope_scaling", json_null());
	}
	json_object_set_new(o, "max_position_embeddings",
			    json_integer(mc->max_position_embeddings > 0 ? mc->max_position_embeddings : 2048));
	json_object_set_new(o, "tie_word_embeddings", json_boolean(mc->tie_embeddings));
	if (mc->bos_token_id >= 0)
		json_object_set_new(o, "bos_token_id", json_integer(mc->bos_token_id));
	if (mc->eos_token_id >= 0)
		json_object_set_new(o, "eos_token_id", json_integer(mc->eos_token_id));
	if (gemma) {
		json_object_set_new(o, "hidden_activation", json_string("gelu_pytorch_tanh"));
		json_object_set_new(o, "query_pre_attn_scalar",
				    json_real(1.0 / ((double)mc->attn_scale * (double)mc->attn_scale)));
		json_object_set_new(o, "rope_local_base_freq", json_real(mc->rope_local.theta));
		json_object_set_new(o, "sliding_window", mc->sliding_window > 0 ? json_integer(mc->sliding_window) : json_null());
		json_t *lt = json_array();
		for (int i = 0; i < mc->n_layers; i++)
			json_array_append_new(lt, json_string(mc->layer_sliding[i] ? "sliding_attention" : "full_attention"));
		json_object_set_new(o, "layer_types", lt);
		json_object_set_new(o, "attn_logit_softcapping", mc->attn_softcap > 0 ? json_real(mc->attn_softcap) : json_null());
		json_object_set_new(o, "final_logit_softcapping",
				    mc->final_softcap > 0 ? json_real(mc->final_softcap) : json_null());
	} else {
		json_object_set_new(o, "hidden_act", json_string(mc->act == MODEL_ACT_SILU ? "silu" : "gelu_pytorch_tanh"));
		if (mc->arch == MODEL_ARCH_LLAMA) {
			json_object_set_new(o, "attention_bias", json_boolean(mc->qkv_bias));
			json_object_set_new(o, "mlp_bias", json_false());
		}
	}
	json_object_set_new(o, "torch_dtype", json_string("float32"));
	return o;
}

static int write_json(const char *path, json_t *o, sft_error *err)
{
	char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
	if (!s)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	size_t n = strlen(s);
	char *t = realloc(s, n + 2);
	if (!t) {
		free(s);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	t[n] = '\n';
	t[n + 1] = '\0';
	int rc = write_file(path, t, n + 1, err);
	free(t);
	return rc;
}

static int write_config_json(st_run *r, const char *dir, sft_error *err)
{
	char src[4096], dst[4096];
	snprintf(dst, sizeof dst, "%s/config.json", dir);
	json_t *o = NULL;
	if (!r->base_is_gguf) {
		snprintf(src, sizeof src, "%s/config.json", r->cfg->model_name_or_path);
		json_error_t je;
		o = json_load_file(src, 0, &je);
		if (!o)
			return sft_error_set(err, SFT_EXIT_DATA, "%s:%d: %s", src, je.line, je.text);
		/* the weights we write are fp32 */
		json_object_set_new(o, "torch_dtype", json_string("float32"));
		if (json_object_get(o, "dtype"))
			json_object_set_new(o, "dtype", json_string("float32"));
	} else {
		o = config_from_model(&r->m->cfg);
	}
	int rc = write_json(dst, o, err);
	json_decref(o);
	return rc;
}

static int copy_tokenizer_files(st_run *r, const char *dir, sft_error *err)
{
	if (r->base_is_gguf)
		return 0;
	for (int i = 0; TOKENIZER_FILES[i]; i++) {
		char src[4096], dst[4096];
		snprintf(src, sizeof src, "%s/%s", r->cfg->model_name_or_path, TOKENIZER_FILES[i]);
		snprintf(dst, sizeof dst, "%s/%s", dir, TOKENIZER_FILES[i]);
		if (is_file(src) && copy_file(src, dst, err) < 0)
			return -1;
	}
	if (r->cfg->chat_template_path) {
		char dst[4096];
		snprintf(dst, sizeof dst, "%s/chat_template.jinja", dir);
		if (copy_file(r->cfg->chat_template_path, dst, err) < 0)
			return -1;
	}
	return 0;
}

int ckpt_write_model(st_run *r, const char *dir, sft_error *err)
{
	if (r->lora) {
		if (lora_save(r->lora, dir, r->cfg->model_name_or_path, err) < 0)
			return -1;
		return copy_tokenizer_files(r, dir, err);
	}
	int n = model_tensors(r->m, NULL);
	model_tensor *t = calloc((size_t)n, sizeof *t);
	uint64_t(*shapes)[2] = calloc((size_t)n, sizeof *shapes);
	st_writer *w = safetensors_writer_new();
	int rc = -1;
	if (!t || !shapes || !w) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		goto out;
	}
	model_tensors(r->m, t);
	if (safetensors_writer_meta(w, "format", "pt", err) < 0)
		goto out;
	for (int i = 0; i < n; i++) {
		shapes[i][0] = (uint64_t)t[i].shape[0];
		shapes[i][1] = (uint64_t)t[i].shape[1];
		if (safetensors_writer_add(w, t[i].name, ST_F32, t[i].n_dims, shapes[i], t[i].data, err) < 0)
			goto out;
	}
	/* transformers' default max_shard_size is 5GB */
	if (safetensors_writer_write_sharded(w, dir, 5000000000ULL, err) < 0)
		goto out;
	if (write_config_json(r, dir, err) < 0)
		goto out;
	if (!r->base_is_gguf) {
		char src[4096], dst[4096];
		snprintf(src, sizeof src, "%s/generation_config.json", r->cfg->model_name_or_path);
		snprintf(dst, sizeof dst, "%s/generation_config.json", dir);
		if (is_file(src) && copy_file(src, dst, err) < 0)
			goto out;
	}
	rc = copy_tokenizer_files(r, dir, err);
out:
	safetensors_writer_free(w);
	free(shapes);
	free(t);
	return rc;
}

/* ---- trainer_state.json ---- */

static json_t *state_json(st_run *r)
{
	const st_cfg *c = r->cfg;
	st_state *s = &r->st;
	json_t *o = json_object();
	json_object_set_new(o, "best_global_step", s->has_best ? json_integer(s->best_step) : json_null());
	json_object_set_new(o, "best_metric", s->has_best ? json_real(s->best_metric) : json_null());
	json_object_set_new(o, "best_model_checkpoint", s->best_checkpoint[0] ? json_string(s->best_checkpoint) : json_null());
	json_object_set_new(o, "epoch", json_real(s->epoch));
	json_object_set_new(o, "eval_steps", json_integer(s->eval_every));
	json_object_set_new(o, "global_step", json_integer(s->global_step));
	json_object_set_new(o, "is_hyper_param_search", json_false());
	json_object_set_new(o, "is_local_process_zero", json_true());
	json_object_set_new(o, "is_world_process_zero", json_true());
	if (s->log_history)
		json_object_set(o, "log_history", s->log_history);
	else
		json_object_set_new(o, "log_history", json_array());
	json_object_set_new(o, "logging_steps", json_integer(s->log_every));
	json_object_set_new(o, "max_steps", json_integer(s->max_steps));
	json_object_set_new(o, "num_input_tokens_seen", json_integer((json_int_t)s->tokens_seen));
	json_object_set_new(o, "num_train_epochs", json_integer((json_int_t)ceil((double)s->max_steps / (double)s->steps_per_epoch)));
	json_object_set_new(o, "save_steps", json_integer(s->save_every));
	json_object_set_new(o, "total_flos", json_integer(0));
	json_object_set_new(o, "train_batch_size", json_integer(c->per_device_train_batch_size));
	json_object_set_new(o, "trial_name", json_null());
	json_object_set_new(o, "trial_params", json_null());
	/* what resuming needs beyond transformers' fields */
	json_t *x = json_object();
	long e = s->global_step / s->steps_per_epoch, j = s->global_step % s->steps_per_epoch;
	json_object_set_new(x, "seed", json_integer(c->seed));
	json_object_set_new(x, "data_epoch", json_integer(e));
	json_object_set_new(x, "data_step_in_epoch", json_integer(j));
	json_object_set_new(x, "micro_batches_done",
			    json_integer(e * s->micro_per_epoch + j * (long)c->gradient_accumulation_steps));
	json_object_set_new(x, "micro_per_epoch", json_integer(s->micro_per_epoch));
	json_object_set_new(x, "steps_per_epoch", json_integer(s->steps_per_epoch));
	json_object_set_new(x, "train_rows", json_integer((json_int_t)batch_data_rows(r->train)));
	json_t *sch = json_object();
	json_object_set_new(sch, "type", json_string(lr_sched_name(r->sched.kind)));
	json_object_set_new(sch, "base_lr", json_real(r->sched.base_lr));
	json_object_set_new(sch, "warmup_steps", json_integer(r->sched.warmup_steps));
	json_object_set_new(sch, "total_steps", json_integer(r->sched.total_steps));
	json_object_set_new(sch, "last_epoch", json_integer(s->global_step));
	json_object_set_new(sch, "next_lr", json_real(lr_at(&r->sched, s->global_step)));
	json_object_set_new(x, "scheduler", sch);
	json_object_set_new(x, "patience_counter", json_integer(s->patience_counter));
	json_object_set_new(x, "last_eval_loss", json_real_or_null(s->last_eval_loss));
	json_object_set_new(x, "last_eval_step", json_integer(s->last_eval_step));
	json_object_set_new(x, "win_loss", json_real(s->win_loss));
	json_object_set_new(x, "win_steps", json_integer(s->win_steps));
	json_object_set_new(x, "win_loss_sum", json_real(s->win_loss_sum));
	json_object_set_new(x, "win_targets", json_integer(s->win_targets));
	json_object_set_new(x, "win_correct", json_integer(s->win_correct));
	json_object_set_new(x, "tokens_seen", json_integer((json_int_t)s->tokens_seen));
	json_object_set_new(x, "targets_seen", json_integer((json_int_t)s->targets_seen));
	json_object_set_new(x, "train_seconds", json_real(s->train_seconds + (clock_now() - r->t_start)));
	json_object_set_new(x, "peft", json_boolean(r->lora != NULL));
	/* transformers' TrainerState loads this file: our extras ride in stateful_callbacks,
	 * the one place it keeps callback-specific state */
	json_t *cbs = json_object();
	json_t *ctl = json_object(), *ctl_args = json_object();
	const char *flags[] = {"should_epoch_stop", "should_evaluate", "should_log", "should_save",
			       "should_training_stop"};
	for (int i = 0; i < 5; i++)
		json_object_set_new(ctl_args, flags[i], json_false());
	json_object_set_new(ctl, "args", ctl_args);
	json_object_set_new(ctl, "attributes", json_object());
	json_object_set_new(cbs, "TrainerControl", ctl);
	if (c->early_stopping_patience > 0) {
		json_t *es = json_object(), *ea = json_object(), *et = json_object();
		json_object_set_new(ea, "early_stopping_patience", json_integer(c->early_stopping_patience));
		json_object_set_new(ea, "early_stopping_threshold", json_real(c->early_stopping_threshold));
		json_object_set_new(et, "early_stopping_patience_counter", json_integer(s->patience_counter));
		json_object_set_new(es, "args", ea);
		json_object_set_new(es, "attributes", et);
		json_object_set_new(cbs, "EarlyStoppingCallback", es);
	}
	json_t *sk = json_object();
	json_object_set_new(sk, "args", json_object());
	json_object_set_new(sk, "attributes", x);
	json_object_set_new(cbs, "SftkitState", sk);
	json_object_set_new(o, "stateful_callbacks", cbs);
	return o;
}

/* ---- save ---- */

static int write_complete(const char *dir, sft_error *err)
{
	size_t n;
	char **names = list_files(dir, &n);
	json_buf b = {0};
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		char p[4096], line[4400];
		uint64_t h, size;
		snprintf(p, sizeof p, "%s/%s", dir, names[i]);
		if (hash_file(p, &h, &size) < 0) {
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: read error", p);
			break;
		}
		int k = snprintf(line, sizeof line, "%016llx %llu %s\n", (unsigned long long)h, (unsigned long long)size,
				 names[i]);
		if (json_buf_put(&b, line, (size_t)k) < 0)
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	free_list(names, n);
	if (!rc) {
		char p[4096];
		snprintf(p, sizeof p, "%s/COMPLETE", dir);
		rc = write_file(p, b.buf ? b.buf : "", b.len, err);
	}
	free(b.buf);
	return rc;
}

static int verify_complete(const char *dir, sft_error *err)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/COMPLETE", dir);
	size_t len;
	sft_error e2 = {0};
	char *txt = fs_read_file(p, &len, &e2);
	if (!txt)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: not a complete checkpoint (no COMPLETE file)", dir);
	int rc = 0, nfiles = 0;
	char *save = NULL;
	for (char *line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned long long h, size;
		char name[1024];
		if (sscanf(line, "%llx %llu %1023s", &h, &size, name) != 3) {
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s/COMPLETE: malformed line '%s'", dir, line);
			break;
		}
		char fp[4096];
		uint64_t gh, gs;
		snprintf(fp, sizeof fp, "%s/%s", dir, name);
		if (hash_file(fp, &gh, &gs) < 0) {
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s: missing or unreadable (checkpoint is damaged)", fp);
			break;
		}
		if (gs != size || gh != h) {
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s: size or checksum differs from COMPLETE (checkpoint is damaged)",
					   fp);
			break;
		}
		nfiles++;
	}
	free(txt);
	if (!rc && !nfiles)
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: COMPLETE lists no files", dir);
	return rc;
}

int ckpt_save(st_run *r, char *path_out, size_t cap, sft_error *err)
{
	const char *od = r->cfg->output_dir;
	char final[4096], tmp[4200], p[4300];
	snprintf(final, sizeof final, "%s/checkpoint-%ld", od, r->st.global_step);
	snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", final);
	if (!mkdtemp(tmp))
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot create: %s", tmp, strerror(errno));
	/* best_model_checkpoint names this checkpoint when it is the best so far */
	char saved_best[1024];
	snprintf(saved_best, sizeof saved_best, "%s", r->st.best_checkpoint);
	if (r->st.has_best && r->st.best_step == r->st.global_step)
		snprintf(r->st.best_checkpoint, sizeof r->st.best_checkpoint, "%s", final);
	int rc = ckpt_write_model(r, tmp, err);
	if (!rc && !r->cfg->save_only_model) {
		st_writer *w = safetensors_writer_new();
		uint64_t(*shapes)[2] = calloc((size_t)r->n_params + 1, sizeof *shapes);
		if (!w || !shapes)
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		for (int i = 0; !rc && i < r->n_params; i++) {
			const train_param *tp = &r->params[i];
			char name[256];
			shapes[i][0] = (uint64_t)tp->shape[0];
			shapes[i][1] = (uint64_t)tp->shape[1];
			snprintf(name, sizeof name, "%s.exp_avg", tp->name);
			rc = safetensors_writer_add(w, name, ST_F32, tp->n_dims, shapes[i], r->exp_avg[i], err);
			if (!rc) {
				snprintf(name, sizeof name, "%s.exp_avg_sq", tp->name);
				rc = safetensors_writer_add(w, name, ST_F32, tp->n_dims, shapes[i], r->exp_avg_sq[i], err);
			}
		}
		if (!rc) {
			snprintf(p, sizeof p, "%s/optimizer.safetensors", tmp);
			rc = safetensors_writer_write(w, p, err);
		}
		safetensors_writer_free(w);
		free(shapes);
	}
	if (!rc) {
		json_t *st = state_json(r);
		snprintf(p, sizeof p, "%s/trainer_state.json", tmp);
		rc = write_json(p, st, err);
		json_decref(st);
	}
	if (!rc) {
		char *y = cfg_dump_yaml(r->cfg);
		snprintf(p, sizeof p, "%s/sft_config.yaml", tmp);
		rc = write_file(p, y, strlen(y), err);
		free(y);
	}
	if (!rc)
		rc = write_complete(tmp, err);
	if (!rc && fs_fsync_dir(tmp) < 0)
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: fsync: %s", tmp, strerror(errno));
	if (!rc && is_dir(final) && ckpt_rmtree(final) < 0)
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot replace: %s", final, strerror(errno));
	if (!rc && rename(tmp, final) < 0)
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: rename: %s", final, strerror(errno));
	if (!rc && fs_fsync_dir(od) < 0)
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: fsync: %s", od, strerror(errno));
	if (rc) {
		rmtree(tmp);
		snprintf(r->st.best_checkpoint, sizeof r->st.best_checkpoint, "%s", saved_best);
		return -1;
	}
	snprintf(path_out, cap, "%s", final);
	log_verbose("saved %s", final);
	return 0;
}

/* ---- discovery, rotation ---- */

static long ckpt_step(const char *name)
{
	if (strncmp(name, "checkpoint-", 11) || !name[11])
		return -1;
	char *end;
	long v = strtol(name + 11, &end, 10);
	return *end || v < 0 ? -1 : v;
}

typedef struct ck {
	long step;
	char path[2048];
} ck;

static int cmp_ck(const void *a, const void *b)
{
	long x = ((const ck *)a)->step, y = ((const ck *)b)->step;
	return (x > y) - (x < y);
}

static ck *list_ckpts(const char *dir, size_t *n)
{
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	ck *v = NULL;
	size_t cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		long s = ckpt_step(e->d_name);
		if (s < 0)
			continue;
		char p[4096], c[4200];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		snprintf(c, sizeof c, "%s/COMPLETE", p);
		if (!is_dir(p) || !is_file(c))
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			ck *nv = realloc(v, cap * sizeof *v);
			if (!nv)
				break;
			v = nv;
		}
		v[*n].step = s;
		snprintf(v[*n].path, sizeof v[*n].path, "%s", p);
		(*n)++;
	}
	closedir(d);
	if (v)
		qsort(v, *n, sizeof *v, cmp_ck);
	return v;
}

int ckpt_find_latest(const char *dir, char *out, size_t cap)
{
	size_t n;
	ck *v = list_ckpts(dir, &n);
	out[0] = '\0';
	if (n)
		snprintf(out, cap, "%s", v[n - 1].path);
	free(v);
	return n ? 1 : 0;
}

void ckpt_rotate(st_run *r)
{
	long limit = (long)r->cfg->save_total_limit;
	if (limit <= 0)
		return;
	size_t n;
	ck *v = list_ckpts(r->cfg->output_dir, &n);
	const char *best = r->st.best_checkpoint[0] ? strrchr(r->st.best_checkpoint, '/') : NULL;
	/* keep the newest `limit` checkpoints and the best one */
	for (size_t i = 0; i + (size_t)limit < n; i++) {
		if (best && !strcmp(strrchr(v[i].path, '/'), best))
			continue;
		if (ckpt_rmtree(v[i].path) < 0)
			log_warn("%s: cannot delete: %s", v[i].path, strerror(errno));
		else
			log_verbose("deleted %s (save_total_limit %ld)", v[i].path, limit);
	}
	free(v);
}

void ckpt_clean_tmp(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "checkpoint-", 11) || !strstr(e->d_name, ".tmp-"))
			continue;
		char p[4096];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		if (rmtree(p) == 0)
			log_verbose("removed %s (left by an interrupted save or deletion)", p);
	}
	closedir(d);
}

/* ---- load ---- */

static long jint_of(json_t *o, const char *k, long dflt)
{
	json_t *v = json_object_get(o, k);
	return json_is_integer(v) ? (long)json_integer_value(v) : dflt;
}

static double jnum_of(json_t *o, const char *k, double dflt)
{
	json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : dflt;
}

int ckpt_load(st_run *r, const char *path, sft_error *err)
{
	if (!is_dir(path))
		return sft_error_set(err, SFT_EXIT_USAGE, "resume_from_checkpoint: %s is not a directory", path);
	if (verify_complete(path, err) < 0)
		return -1;
	char p[4096];
	snprintf(p, sizeof p, "%s/trainer_state.json", path);
	json_error_t je;
	json_t *o = json_load_file(p, 0, &je);
	if (!o)
		return sft_error_set(err, SFT_EXIT_DATA, "%s:%d: %s", p, je.line, je.text);
	json_t *x = json_object_get(json_object_get(json_object_get(o, "stateful_callbacks"), "SftkitState"),
				    "attributes");
	st_state *s = &r->st;
	int rc = 0;
	if (!json_is_object(x)) {
		rc = sft_error_set(err, SFT_EXIT_DATA,
				   "%s: no stateful_callbacks.SftkitState (not an sft-train checkpoint)", p);
		goto out;
	}
	if (json_is_true(json_object_get(x, "peft")) != (r->lora != NULL)) {
		rc = sft_error_set(err, SFT_EXIT_USAGE, "%s: the checkpoint is %s but use_peft is %s", path,
				   r->lora ? "a full fine-tuning one" : "a LoRA adapter", r->lora ? "true" : "false");
		goto out;
	}
	if (jint_of(x, "micro_per_epoch", -1) != s->micro_per_epoch || jint_of(x, "steps_per_epoch", -1) != s->steps_per_epoch ||
	    jint_of(x, "seed", -1) != (long)r->cfg->seed)
		log_warn("%s: train data, batch settings or seed differ from the checkpoint's: the run continues but "
			 "is not the one that was interrupted",
			 path);
	s->global_step = jint_of(o, "global_step", 0);
	s->epoch = jnum_of(o, "epoch", 0);
	json_t *bm = json_object_get(o, "best_metric");
	s->has_best = json_is_number(bm);
	s->best_metric = s->has_best ? json_number_value(bm) : 0;
	s->best_step = jint_of(o, "best_global_step", -1);
	json_t *bc = json_object_get(o, "best_model_checkpoint");
	snprintf(s->best_checkpoint, sizeof s->best_checkpoint, "%s", json_is_string(bc) ? json_string_value(bc) : "");
	json_decref(s->log_history);
	s->log_history = json_incref(json_object_get(o, "log_history"));
	if (!json_is_array(s->log_history)) {
		json_decref(s->log_history);
		s->log_history = json_array();
	}
	s->patience_counter = jint_of(x, "patience_counter", 0);
	s->last_eval_loss = jnum_of(x, "last_eval_loss", NAN);
	s->last_eval_step = jint_of(x, "last_eval_step", -1);
	s->win_loss = jnum_of(x, "win_loss", 0);
	s->win_steps = jint_of(x, "win_steps", 0);
	s->win_loss_sum = jnum_of(x, "win_loss_sum", 0);
	s->win_targets = jint_of(x, "win_targets", 0);
	s->win_correct = jint_of(x, "win_correct", 0);
	s->tokens_seen = (uint64_t)jint_of(x, "tokens_seen", 0);
	s->targets_seen = (uint64_t)jint_of(x, "targets_seen", 0);
	s->train_seconds = jnum_of(x, "train_seconds", 0);
	r->last_save_step = s->global_step;

	/* weights */
	if (r->lora) {
		lora_adapter *a = lora_load(path, &r->m->cfg, err);
		if (!a) {
			rc = -1;
			goto out;
		}
		lora_free(r->lora);
		r->lora = a;
	} else {
		st_model *sm = safetensors_model_open(path, err);
		if (!sm) {
			rc = -1;
			goto out;
		}
		int n = model_tensors(r->m, NULL);
		model_tensor *t = calloc((size_t)n, sizeof *t);
		if (!t) {
			safetensors_model_close(sm);
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			goto out;
		}
		model_tensors(r->m, t);
		for (int i = 0; i < n && !rc; i++) {
			const st_tensor *st = safetensors_model_get(sm, t[i].name, err);
			uint64_t want = (uint64_t)t[i].shape[0] * (uint64_t)(t[i].n_dims == 2 ? t[i].shape[1] : 1);
			if (!st)
				rc = -1;
			else if (st->n_elements != want)
				rc = sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%s' has %llu elements, the model %llu",
						   path, t[i].name, (unsigned long long)st->n_elements,
						   (unsigned long long)want);
			else
				rc = safetensors_tensor_to_f32(st, t[i].data, err);
		}
		free(t);
		safetensors_model_close(sm);
	}
out:
	json_decref(o);
	return rc < 0 ? -1 : 0;
}

int ckpt_load_optimizer(st_run *r, const char *path, sft_error *err)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/optimizer.safetensors", path);
	if (!is_file(p))
		return sft_error_set(err, SFT_EXIT_DATA,
				     "%s: no optimizer state (saved with save_only_model): cannot resume exactly", path);
	st_file *f = safetensors_open(p, err);
	if (!f)
		return -1;
	int rc = 0;
	for (int i = 0; i < r->n_params && !rc; i++) {
		const char *suf[2] = {"exp_avg", "exp_avg_sq"};
		float *dst[2] = {r->exp_avg[i], r->exp_avg_sq[i]};
		for (int k = 0; k < 2 && !rc; k++) {
			char name[256];
			snprintf(name, sizeof name, "%s.%s", r->params[i].name, suf[k]);
			const st_tensor *t = safetensors_get(f, name, err);
			if (!t)
				rc = -1;
			else if (t->n_elements != r->params[i].n)
				rc = sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%s' has %llu elements, expected %zu", p,
						   name, (unsigned long long)t->n_elements, r->params[i].n);
			else
				rc = safetensors_tensor_to_f32(t, dst[k], err);
		}
	}
	safetensors_close(f);
	return rc < 0 ? -1 : 0;
}

/* ---- final model ---- */

int ckpt_save_final(st_run *r, const char *src_ckpt, sft_error *err)
{
	const char *od = r->cfg->output_dir;
	if (!src_ckpt)
		return ckpt_write_model(r, od, err);
	size_t n;
	char **names = list_files(src_ckpt, &n);
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		const char *nm = names[i];
		if (!strcmp(nm, "optimizer.safetensors") || !strcmp(nm, "trainer_state.json") || !strcmp(nm, "COMPLETE") ||
		    !strcmp(nm, "sft_config.yaml"))
			continue;
		char s[4096], d[4096];
		snprintf(s, sizeof s, "%s/%s", src_ckpt, nm);
		snprintf(d, sizeof d, "%s/%s", od, nm);
		rc = copy_file(s, d, err);
	}
	free_list(names, n);
	return rc;
}
