/* model.c - config.json parsing, the carved weight block, safetensors loading, the CPU
 * forward over packed batches, the KV-cache decoder and greedy generation.
 * See model.h for the contract and ownership rules. */
#include "model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bigmem.h"
#include "dequant.h"
#include "fsutil.h"
#include "gguf.h"
#include "safetensors.h"

/* ---- config.json ----------------------------------------------------------------------- */

static double jnum(const json_t *o, const char *key, double def)
{
	const json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : def;
}

static int jint(const json_t *o, const char *key, int def)
{
	const json_t *v = json_object_get(o, key);
	if (json_is_integer(v)) return (int)json_integer_value(v);
	if (json_is_real(v)) return (int)json_real_value(v);
	return def;
}

static int jbool(const json_t *o, const char *key, int def)
{
	const json_t *v = json_object_get(o, key);
	return json_is_boolean(v) ? json_is_true(v) : def;
}

static const char *jstr(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jtoken(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	if (json_is_array(v) && json_array_size(v) > 0) v = json_array_get(v, 0);
	return json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

/* rope_scaling object (or NULL) into cfg; theta given. */
static int parse_rope(ops_rope_config *r, const json_t *scaling, double theta, int head_dim,
		      const char *name, sft_error *err)
{
	memset(r, 0, sizeof *r);
	r->head_dim = head_dim;
	r->theta = theta;
	r->scaling = OPS_ROPE_DEFAULT;
	if (!scaling || json_is_null(scaling)) return 0;
	if (!json_is_object(scaling))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: rope_scaling is not an object", name);
	const char *type = jstr(scaling, "rope_type");
	if (!type) type = jstr(scaling, "type");
	if (!type || !strcmp(type, "default")) return 0;
	if (!strcmp(type, "linear")) {
		r->scaling = OPS_ROPE_LINEAR;
		r->factor = jnum(scaling, "factor", 1.0);
		return 0;
	}
	if (!strcmp(type, "llama3")) {
		r->scaling = OPS_ROPE_LLAMA3;
		r->factor = jnum(scaling, "factor", 8.0);
		r->low_freq_factor = jnum(scaling, "low_freq_factor", 1.0);
		r->high_freq_factor = jnum(scaling, "high_freq_factor", 4.0);
		r->original_max_position_embeddings = jnum(scaling, "original_max_position_embeddings", 8192);
		return 0;
	}
	return sft_error_set(err, SFT_EXIT_DATA, "%s: unsupported rope_type '%s'", name, type);
}

int model_config_parse(model_config *cfg, const char *json, size_t len, const char *name, sft_error *err)
{
	memset(cfg, 0, sizeof *cfg);
	json_error_t je;
	json_t *root = json_loadb(json, len, 0, &je);
	if (!root)
		return sft_error_set(err, SFT_EXIT_DATA, "%s:%d:%d: invalid json: %s", name, je.line,
				     je.column, je.text);
	int rc = -1;
	if (!json_is_object(root)) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: not a json object", name);
		goto out;
	}
	/* Multimodal wrappers keep the text model under text_config (Gemma3ForConditionalGeneration
	 * is not supported: only the text-only checkpoints). */
	const char *arch = NULL;
	const json_t *archs = json_object_get(root, "architectures");
	if (json_is_array(archs) && json_array_size(archs) > 0 && json_is_string(json_array_get(archs, 0)))
		arch = json_string_value(json_array_get(archs, 0));
	const char *mt = jstr(root, "model_type");
	if (!mt) mt = "";
	if (!arch) arch = mt;
	snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", arch);
	if (!strcmp(arch, "LlamaForCausalLM") || !strcmp(mt, "llama")) cfg->arch = MODEL_ARCH_LLAMA;
	else if (!strcmp(arch, "Qwen2ForCausalLM") || !strcmp(mt, "qwen2")) cfg->arch = MODEL_ARCH_QWEN2;
	else if (!strcmp(arch, "Qwen3ForCausalLM") || !strcmp(mt, "qwen3")) cfg->arch = MODEL_ARCH_QWEN3;
	else if (!strcmp(arch, "Gemma3ForCausalLM") || !strcmp(mt, "gemma3_text")) cfg->arch = MODEL_ARCH_GEMMA3;
	else {
		rc = sft_error_set(err, SFT_EXIT_DATA,
				   "%s: unsupported architecture '%s' (model_type '%s'); supported: "
				   "LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM",
				   name, arch, mt);
		goto out;
	}
	int gemma = cfg->arch == MODEL_ARCH_GEMMA3;
	cfg->vocab_size = jint(root, "vocab_size", 0);
	cfg->hidden_size = jint(root, "hidden_size", 0);
	cfg->intermediate_size = jint(root, "intermediate_size", 0);
	cfg->n_layers = jint(root, "num_hidden_layers", 0);
	cfg->n_heads = jint(root, "num_attention_heads", 0);
	cfg->n_kv_heads = jint(root, "num_key_value_heads", cfg->n_heads);
	int hd_default = cfg->n_heads > 0 ? cfg->hidden_size / cfg->n_heads : 0;
	cfg->head_dim = jint(root, "head_dim", hd_default);
	if (cfg->head_dim <= 0) cfg->head_dim = hd_default;
	cfg->rms_eps = jnum(root, "rms_norm_eps", 1e-6);
	cfg->max_position_embeddings = jint(root, "max_position_embeddings", 0);
	cfg->tie_embeddings = jbool(root, "tie_word_embeddings", gemma ? 1 : 0);
	cfg->bos_token_id = jtoken(root, "bos_token_id");
	cfg->eos_token_id = jtoken(root, "eos_token_id");
	if (cfg->vocab_size <= 0 || cfg->hidden_size <= 0 || cfg->intermediate_size <= 0 ||
	    cfg->n_layers <= 0 || cfg->n_heads <= 0 || cfg->n_kv_heads <= 0 || cfg->head_dim <= 0 ||
	    cfg->head_dim % 2 || cfg->n_heads % cfg->n_kv_heads) {
		rc = sft_error_set(err, SFT_EXIT_DATA,
				   "%s: invalid sizes (vocab_size %d, hidden_size %d, intermediate_size %d, "
				   "num_hidden_layers %d, heads %d/%d, head_dim %d)",
				   name, cfg->vocab_size, cfg->hidden_size, cfg->intermediate_size,
				   cfg->n_layers, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim);
		goto out;
	}
	if (cfg->n_layers > MODEL_MAX_LAYERS) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: %d layers (at most %d supported)", name,
				   cfg->n_layers, MODEL_MAX_LAYERS);
		goto out;
	}
	const char *act = jstr(root, gemma ? "hidden_activation" : "hidden_act");
	if (!act) act = jstr(root, "hidden_act");
	if (!act) act = gemma ? "gelu_pytorch_tanh" : "silu";
	if (!strcmp(act, "silu") || !strcmp(act, "swish")) cfg->act = MODEL_ACT_SILU;
	else if (!strcmp(act, "gelu_pytorch_tanh") || !strcmp(act, "gelu_tanh")) cfg->act = MODEL_ACT_GELU_TANH;
	else {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: unsupported activation '%s'", name, act);
		goto out;
	}
	if (jbool(root, "mlp_bias", 0)) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: mlp_bias is not supported", name);
		goto out;
	}
	cfg->qkv_bias = cfg->arch == MODEL_ARCH_QWEN2 || jbool(root, "attention_bias", 0);
	cfg->o_bias = cfg->arch != MODEL_ARCH_QWEN2 && jbool(root, "attention_bias", 0);
	cfg->qk_norm = cfg->arch == MODEL_ARCH_QWEN3 || gemma;
	cfg->sandwich_norm = gemma;
	cfg->norm_offset = gemma ? 1.0f : 0.0f;
	cfg->embed_scale = gemma ? (float)sqrt((double)cfg->hidden_size) : 1.0f;
	double qpas = gemma ? jnum(root, "query_pre_attn_scalar", cfg->head_dim) : cfg->head_dim;
	cfg->attn_scale = (float)(1.0 / sqrt(qpas));
	/* transformers 4.57's Gemma 3 attention stores attn_logit_softcapping but never
	 * applies it (Gemma 2 did); none of the supported architectures caps attention logits */
	cfg->attn_softcap = 0;
	cfg->final_softcap = (float)jnum(root, "final_logit_softcapping", 0);
	if ((cfg->arch == MODEL_ARCH_QWEN2 || cfg->arch == MODEL_ARCH_QWEN3) && jbool(root, "use_sliding_window", 0)) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: use_sliding_window true is not supported for %s",
				   name, arch);
		goto out;
	}

	/* rope: transformers 4.x writes rope_theta + rope_scaling (+ Gemma 3 rope_local_base_freq);
	 * transformers 5 writes rope_parameters, per layer type for Gemma 3. */
	const json_t *rp = json_object_get(root, "rope_parameters");
	const json_t *rp_full = rp, *rp_slide = NULL;
	if (json_is_object(rp) && json_object_get(rp, "full_attention")) {
		rp_full = json_object_get(rp, "full_attention");
		rp_slide = json_object_get(rp, "sliding_attention");
	}
	double theta = jnum(root, "rope_theta", json_is_object(rp_full) ? jnum(rp_full, "rope_theta", 10000) : 10000);
	const json_t *scaling = json_object_get(root, "rope_scaling");
	if ((!scaling || json_is_null(scaling)) && json_is_object(rp_full)) scaling = rp_full;
	if (parse_rope(&cfg->rope, scaling, theta, cfg->head_dim, name, err) < 0) goto out;
	double theta_local = jnum(root, "rope_local_base_freq",
				  json_is_object(rp_slide) ? jnum(rp_slide, "rope_theta", 10000) : 10000);
	if (parse_rope(&cfg->rope_local, json_is_object(rp_slide) ? rp_slide : NULL,
		       gemma ? theta_local : theta, cfg->head_dim, name, err) < 0) goto out;
	if (!gemma) cfg->rope_local = cfg->rope;

	if (gemma && jbool(root, "use_bidirectional_attention", 0)) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: use_bidirectional_attention true is not supported", name);
		goto out;
	}
	if (gemma) {
		cfg->sliding_window = jint(root, "sliding_window", 0);
		const json_t *lt = json_object_get(root, "layer_types");
		if (json_is_array(lt)) {
			if ((int)json_array_size(lt) != cfg->n_layers) {
				rc = sft_error_set(err, SFT_EXIT_DATA, "%s: layer_types has %zu entries for %d layers",
						   name, json_array_size(lt), cfg->n_layers);
				goto out;
			}
			for (int i = 0; i < cfg->n_layers; i++) {
				const char *t = json_string_value(json_array_get(lt, (size_t)i));
				if (t && !strcmp(t, "sliding_attention")) cfg->layer_sliding[i] = 1;
				else if (t && !strcmp(t, "full_attention")) cfg->layer_sliding[i] = 0;
				else {
					rc = sft_error_set(err, SFT_EXIT_DATA, "%s: layer_types[%d]: unknown type '%s'",
							   name, i, t ? t : "(not a string)");
					goto out;
				}
			}
		} else {
			int pattern = jint(root, "sliding_window_pattern", 6);
			for (int i = 0; i < cfg->n_layers; i++)
				cfg->layer_sliding[i] = pattern > 0 && (i + 1) % pattern != 0;
		}
		if (cfg->sliding_window <= 0)
			for (int i = 0; i < cfg->n_layers; i++) cfg->layer_sliding[i] = 0;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int model_config_load(model_config *cfg, const char *dir, sft_error *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/config.json", dir);
	size_t len = 0;
	char *text = fs_read_file(path, &len, err);
	if (!text) return -(err ? err->code : SFT_EXIT_RUNTIME);
	int rc = model_config_parse(cfg, text, len, path, err);
	free(text);
	return rc;
}

/* ---- the carved block --------------------------------------------------------------------
 * Tensors are laid out in one fp32 block, each starting on a 16-float (64-byte) boundary.
 * carve() runs twice: with base NULL it only counts. */

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

static float *take(float *base, size_t *off, size_t n)
{
	float *p = base ? base + *off : NULL;
	*off += align16(n);
	return p;
}

static size_t carve(const model_config *c, float *base, model *m)
{
	size_t off = 0;
	size_t C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size, V = (size_t)c->vocab_size;
	size_t D = (size_t)c->head_dim, Q = (size_t)c->n_heads * D, K = (size_t)c->n_kv_heads * D;
	model tmp;
	model *t = m ? m : &tmp;
	t->embed = take(base, &off, V * C);
	t->final_norm = take(base, &off, C);
	t->lm_head = c->tie_embeddings ? t->embed : take(base, &off, V * C);
	for (int i = 0; i < c->n_layers; i++) {
		model_layer l;
		memset(&l, 0, sizeof l);
		l.attn_norm = take(base, &off, C);
		l.wq = take(base, &off, Q * C);
		l.wk = take(base, &off, K * C);
		l.wv = take(base, &off, K * C);
		l.wo = take(base, &off, C * Q);
		if (c->qkv_bias) {
			l.bq = take(base, &off, Q);
			l.bk = take(base, &off, K);
			l.bv = take(base, &off, K);
		}
		if (c->o_bias) l.bo = take(base, &off, C);
		if (c->qk_norm) {
			l.q_norm = take(base, &off, D);
			l.k_norm = take(base, &off, D);
		}
		if (c->sandwich_norm) {
			l.attn_post_norm = take(base, &off, C);
			l.ffn_post_norm = take(base, &off, C);
		}
		l.ffn_norm = take(base, &off, C);
		l.w_gate = take(base, &off, F * C);
		l.w_up = take(base, &off, F * C);
		l.w_down = take(base, &off, C * F);
		if (m) m->layers[i] = l;
	}
	return off;
}

size_t model_config_n_params(const model_config *cfg) { return carve(cfg, NULL, NULL); }

model *model_new(const model_config *cfg, sft_error *err)
{
	model *m = calloc(1, sizeof *m);
	if (!m) goto oom;
	m->cfg = *cfg;
	m->n_params = carve(cfg, NULL, NULL);
	m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
	m->inv_freq = calloc((size_t)cfg->head_dim, sizeof(float));
	m->inv_freq_local = calloc((size_t)cfg->head_dim, sizeof(float));
	if (!m->layers || !m->inv_freq || !m->inv_freq_local) goto oom;
	m->block = sft_big_calloc(align16(m->n_params) * sizeof(float));
	if (!m->block) goto oom;
	carve(cfg, m->block, m);
	if (ops_rope_inv_freq(m->inv_freq, &cfg->rope, err) < 0 ||
	    ops_rope_inv_freq(m->inv_freq_local, &cfg->rope_local, err) < 0) {
		if (err) err->code = SFT_EXIT_DATA;
		sft_error_prefix(err, "%s: rope", cfg->arch_name);
		model_free(m);
		return NULL;
	}
	return m;
oom:
	model_free(m);
	sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory allocating the model (%zu parameters)",
		      carve(cfg, NULL, NULL));
	return NULL;
}

void model_free(model *m)
{
	if (!m) return;
	free(m->block);
	free(m->layers);
	free(m->inv_freq);
	free(m->inv_freq_local);
	free(m);
}

/* ---- tensor table (Hugging Face names) ------------------------------------------------- */

static int add_ref(model_tensor *out, int n, const char *name, float *data, int64_t r, int64_t c)
{
	if (!data) return n;
	if (out) {
		snprintf(out[n].name, sizeof out[n].name, "%s", name);
		out[n].data = data;
		out[n].n_dims = c > 0 ? 2 : 1;
		out[n].shape[0] = r;
		out[n].shape[1] = c;
	}
	return n + 1;
}

int model_tensors(const model *m, model_tensor *out)
{
	const model_config *c = &m->cfg;
	int64_t C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size, D = c->head_dim;
	int64_t Q = (int64_t)c->n_heads * D, K = (int64_t)c->n_kv_heads * D;
	int n = 0;
	char b[128];
	n = add_ref(out, n, "model.embed_tokens.weight", m->embed, V, C);
	n = add_ref(out, n, "model.norm.weight", m->final_norm, C, 0);
	if (!c->tie_embeddings) n = add_ref(out, n, "lm_head.weight", m->lm_head, V, C);
	for (int i = 0; i < c->n_layers; i++) {
		const model_layer *l = &m->layers[i];
#define L(suffix, ptr, r, cc) (snprintf(b, sizeof b, "model.layers.%d.%s", i, suffix), n = add_ref(out, n, b, ptr, r, cc))
		L("input_layernorm.weight", l->attn_norm, C, 0);
		L("self_attn.q_proj.weight", l->wq, Q, C);
		L("self_attn.k_proj.weight", l->wk, K, C);
		L("self_attn.v_proj.weight", l->wv, K, C);
		L("self_attn.o_proj.weight", l->wo, C, Q);
		L("self_attn.q_proj.bias", l->bq, Q, 0);
		L("self_attn.k_proj.bias", l->bk, K, 0);
		L("self_attn.v_proj.bias", l->bv, K, 0);
		L("self_attn.o_proj.bias", l->bo, C, 0);
		L("self_attn.q_norm.weight", l->q_norm, D, 0);
		L("self_attn.k_norm.weight", l->k_norm, D, 0);
		if (c->sandwich_norm) {
			L("post_attention_layernorm.weight", l->attn_post_norm, C, 0);
			L("pre_feedforward_layernorm.weight", l->ffn_norm, C, 0);
			L("post_feedforward_layernorm.weight", l->ffn_post_norm, C, 0);
		} else {
			L("post_attention_layernorm.weight", l->ffn_norm, C, 0);
		}
		L("mlp.gate_proj.weight", l->w_gate, F, C);
		L("mlp.up_proj.weight", l->w_up, F, C);
		L("mlp.down_proj.weight", l->w_down, C, F);
#undef L
	}
	return n;
}

model *model_load(const char *path, sft_error *err)
{
	model_config cfg;
	if (model_config_load(&cfg, path, err) < 0) return NULL;
	st_model *st = safetensors_model_open(path, err);
	if (!st) return NULL;
	model *m = model_new(&cfg, err);
	model_tensor *refs = NULL;
	if (!m) goto fail;
	int n = model_tensors(m, NULL);
	refs = calloc((size_t)n, sizeof *refs);
	if (!refs) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		goto fail;
	}
	model_tensors(m, refs);
	for (int i = 0; i < n; i++) {
		const model_tensor *r = &refs[i];
		const st_tensor *t = safetensors_model_get(st, r->name, err);
		if (!t) goto fail;
		int ok = t->n_dims == r->n_dims && (int64_t)t->shape[0] == r->shape[0] &&
			 (r->n_dims == 1 || (int64_t)t->shape[1] == r->shape[1]);
		if (!ok) {
			char got[96] = "", want[64];
			size_t o = 0;
			for (int d = 0; d < t->n_dims && o < sizeof got - 24; d++)
				o += (size_t)snprintf(got + o, sizeof got - o, "%s%llu", d ? ", " : "",
						      (unsigned long long)t->shape[d]);
			if (r->n_dims == 1) snprintf(want, sizeof want, "%lld", (long long)r->shape[0]);
			else snprintf(want, sizeof want, "%lld, %lld", (long long)r->shape[0], (long long)r->shape[1]);
			sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%s': shape [%s], expected [%s] from config.json",
				      t->file, r->name, got, want);
			goto fail;
		}
		if (safetensors_tensor_to_f32(t, r->data, err) < 0) goto fail;
	}
	free(refs);
	safetensors_model_close(st);
	return m;
fail:
	free(refs);
	model_free(m);
	safetensors_model_close(st);
	return NULL;
}

/* ---- GGUF (llama.cpp) ---------------------------------------------------------------------
 * general.architecture "llama" (SmolLM2, Llama), "qwen2", "qwen3", "gemma3". For llama
 * only, llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute) permutes the rows of Q and K
 * within each head from HF's rotate_half layout (pairs (i, i + D/2)) to the interleaved
 * layout (pairs (2i, 2i + 1)):
 *   gguf row h*D + 2*d + j  ==  hf row h*D + j*(D/2) + d   (j in {0, 1}, d < D/2)
 * so loading un-permutes them. Qwen2/Qwen3 (conversion/qwen.py) and Gemma 3 use llama.cpp's
 * NEOX rope, which is rotate_half: their rows are stored as HF has them. A GGUF tensor with dims [ne0, ne1] is row-major (ne1, ne0),
 * i.e. HF's (out_features, in_features). */

static int gguf_u(const gguf_file *g, const char *key, int *out, int required, sft_error *err)
{
	uint64_t v = 0;
	if (gguf_get_u64(g, key, &v) != 0 || v > (uint64_t)1 << 30) {
		if (!required) return 0;
		return sft_error_set(err, SFT_EXIT_DATA, "%s: missing or invalid key '%s'", g->path, key);
	}
	*out = (int)v;
	return 0;
}

/* HF tensor name -> llama.cpp name; 0 when it has none. */
static int gguf_name(const char *hf, char *out, size_t n, int gemma)
{
	static const char *const common[][2] = {
		{"input_layernorm.weight", "attn_norm.weight"},
		{"self_attn.q_proj.weight", "attn_q.weight"},
		{"self_attn.k_proj.weight", "attn_k.weight"},
		{"self_attn.v_proj.weight", "attn_v.weight"},
		{"self_attn.o_proj.weight", "attn_output.weight"},
		{"self_attn.q_proj.bias", "attn_q.bias"},
		{"self_attn.k_proj.bias", "attn_k.bias"},
		{"self_attn.v_proj.bias", "attn_v.bias"},
		{"self_attn.o_proj.bias", "attn_output.bias"},
		{"self_attn.q_norm.weight", "attn_q_norm.weight"},
		{"self_attn.k_norm.weight", "attn_k_norm.weight"},
		{"mlp.gate_proj.weight", "ffn_gate.weight"},
		{"mlp.up_proj.weight", "ffn_up.weight"},
		{"mlp.down_proj.weight", "ffn_down.weight"},
	};
	static const char *const llama[][2] = {
		{"post_attention_layernorm.weight", "ffn_norm.weight"},
	};
	static const char *const gemma3[][2] = {
		{"post_attention_layernorm.weight", "post_attention_norm.weight"},
		{"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
		{"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
	};
	if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, n, "token_embd.weight"), 1;
	if (!strcmp(hf, "model.norm.weight")) return snprintf(out, n, "output_norm.weight"), 1;
	if (!strcmp(hf, "lm_head.weight")) return snprintf(out, n, "output.weight"), 1;
	int layer = -1, used = 0;
	if (sscanf(hf, "model.layers.%d.%n", &layer, &used) != 1 || used == 0) return 0;
	const char *rest = hf + used;
	for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
		if (!strcmp(rest, common[i][0])) return snprintf(out, n, "blk.%d.%s", layer, common[i][1]), 1;
	if (gemma) {
		for (size_t i = 0; i < sizeof gemma3 / sizeof gemma3[0]; i++)
			if (!strcmp(rest, gemma3[i][0])) return snprintf(out, n, "blk.%d.%s", layer, gemma3[i][1]), 1;
	} else {
		for (size_t i = 0; i < sizeof llama / sizeof llama[0]; i++)
			if (!strcmp(rest, llama[i][0])) return snprintf(out, n, "blk.%d.%s", layer, llama[i][1]), 1;
	}
	return 0;
}

static void unpermute_rows(float *w, float *tmp, int H, int D, int cols)
{
	size_t row = (size_t)cols * sizeof(float);
	memcpy(tmp, w, (size_t)H * D * row);
	for (int h = 0; h < H; h++)
		for (int d = 0; d < D / 2; d++)
			for (int j = 0; j < 2; j++)
				memcpy(w + ((size_t)h * D + (size_t)j * (D / 2) + d) * cols,
				       tmp + ((size_t)h * D + 2 * (size_t)d + j) * cols, row);
}

model *model_load_gguf(const char *path, sft_error *err)
{
	gguf_file *g = gguf_open(path, err);
	if (!g) return NULL;
	model *m = NULL;
	model_tensor *refs = NULL;
	float *tmp = NULL;
	gguf_str arch = {0};
	if (gguf_get_str(g, "general.architecture", &arch) != 0) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: no general.architecture", path);
		goto fail;
	}
	static const struct {
		const char *gguf, *hf;
		int arch;
	} archs[] = {
		{"llama", "LlamaForCausalLM", MODEL_ARCH_LLAMA},
		{"qwen2", "Qwen2ForCausalLM", MODEL_ARCH_QWEN2},
		{"qwen3", "Qwen3ForCausalLM", MODEL_ARCH_QWEN3},
		{"gemma3", "Gemma3ForCausalLM", MODEL_ARCH_GEMMA3},
	};
	int ai = -1;
	for (int i = 0; i < (int)(sizeof archs / sizeof archs[0]); i++)
		if (arch.n == strlen(archs[i].gguf) && !memcmp(arch.s, archs[i].gguf, arch.n)) ai = i;
	if (ai < 0) {
		sft_error_set(err, SFT_EXIT_DATA,
			      "%s: unsupported GGUF architecture '%.*s' (supported: llama, qwen2, qwen3, gemma3)", path,
			      (int)(arch.n > 64 ? 64 : arch.n), arch.s);
		goto fail;
	}
	int gemma = archs[ai].arch == MODEL_ARCH_GEMMA3, permuted = archs[ai].arch == MODEL_ARCH_LLAMA;
	const char *a = archs[ai].gguf;
	char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", a, suffix), key)
	model_config c;
	memset(&c, 0, sizeof c);
	c.arch = archs[ai].arch;
	snprintf(c.arch_name, sizeof c.arch_name, "%s", archs[ai].hf);
	if (gguf_u(g, KEY("embedding_length"), &c.hidden_size, 1, err) < 0 ||
	    gguf_u(g, KEY("feed_forward_length"), &c.intermediate_size, 1, err) < 0 ||
	    gguf_u(g, KEY("block_count"), &c.n_layers, 1, err) < 0 ||
	    gguf_u(g, KEY("attention.head_count"), &c.n_heads, 1, err) < 0)
		goto fail;
	c.n_kv_heads = c.n_heads;
	gguf_u(g, KEY("attention.head_count_kv"), &c.n_kv_heads, 0, err);
	gguf_u(g, KEY("context_length"), &c.max_position_embeddings, 0, err);
	const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
	if (!emb || emb->n_dims != 2) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: no 2-d tensor 'token_embd.weight'", path);
		goto fail;
	}
	c.vocab_size = (int)emb->dims[1];
	c.head_dim = c.n_heads > 0 ? c.hidden_size / c.n_heads : 0;
	gguf_u(g, KEY("attention.key_length"), &c.head_dim, 0, err);
	double d = 0;
	c.rms_eps = gguf_get_f64(g, KEY("attention.layer_norm_rms_epsilon"), &d) == 0 ? d : 1e-5;
	double theta = gguf_get_f64(g, KEY("rope.freq_base"), &d) == 0 ? d : 10000.0;
	if (gguf_find_tensor(g, "rope_freqs.weight")) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: rope_freqs (llama3 rope scaling in GGUF) is not supported", path);
		goto fail;
	}
	if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.n_layers <= 0 ||
	    c.n_layers > MODEL_MAX_LAYERS || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 ||
	    c.head_dim % 2 || c.n_heads % c.n_kv_heads) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: invalid sizes in metadata", path);
		goto fail;
	}
	c.rope.head_dim = c.head_dim;
	c.rope.theta = theta;
	c.rope_local = c.rope;
	c.norm_offset = 0;
	c.act = MODEL_ACT_SILU;
	c.embed_scale = 1.0f;
	c.attn_scale = (float)(1.0 / sqrt((double)c.head_dim));
	if (!gemma) {
		/* rope scaling other than none (yarn, linear, ...) is not read from GGUF yet */
		gguf_str st = {0};
		if (gguf_get_str(g, KEY("rope.scaling.type"), &st) == 0 && !(st.n == 4 && !memcmp(st.s, "none", 4))) {
			sft_error_set(err, SFT_EXIT_DATA, "%s: unsupported %s '%.*s'", path, key,
				      (int)(st.n > 32 ? 32 : st.n), st.s);
			goto fail;
		}
	}
	if (c.arch == MODEL_ARCH_QWEN3) c.qk_norm = 1;
	if (gemma) {
		/* What the GGUF does not store, llama.cpp and transformers take from Gemma 3's
		 * defaults: sliding_window_pattern 6, rope_local_base_freq 10000,
		 * query_pre_attn_scalar = head_dim, no softcapping. */
		gguf_str st = {0};
		if (gguf_get_str(g, "gemma3.rope.scaling.type", &st) == 0 && !(st.n == 4 && !memcmp(st.s, "none", 4))) {
			if (st.n == 6 && !memcmp(st.s, "linear", 6) && gguf_get_f64(g, "gemma3.rope.scaling.factor", &d) == 0) {
				c.rope.scaling = OPS_ROPE_LINEAR;
				c.rope.factor = d;
			} else {
				sft_error_set(err, SFT_EXIT_DATA, "%s: unsupported gemma3.rope.scaling.type '%.*s'", path,
					      (int)(st.n > 32 ? 32 : st.n), st.s);
				goto fail;
			}
		}
		c.rope_local.theta = 10000.0;
		c.rope_local.scaling = OPS_ROPE_DEFAULT;
		c.qk_norm = 1;
		c.sandwich_norm = 1;
		c.norm_offset = 1.0f;
		c.act = MODEL_ACT_GELU_TANH;
		c.embed_scale = (float)sqrt((double)c.hidden_size);
		c.sliding_window = 0;
		gguf_u(g, "gemma3.attention.sliding_window", &c.sliding_window, 0, err);
		for (int i = 0; i < c.n_layers; i++) c.layer_sliding[i] = c.sliding_window > 0 && (i + 1) % 6 != 0;
	}
#undef KEY
	c.tie_embeddings = gguf_find_tensor(g, "output.weight") == NULL;
	c.qkv_bias = gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
	c.o_bias = gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
	uint64_t tokid = 0;
	c.bos_token_id = gguf_get_u64(g, "tokenizer.ggml.bos_token_id", &tokid) == 0 ? (int)tokid : -1;
	c.eos_token_id = gguf_get_u64(g, "tokenizer.ggml.eos_token_id", &tokid) == 0 ? (int)tokid : -1;
	m = model_new(&c, err);
	if (!m) goto fail;
	int n = model_tensors(m, NULL);
	refs = calloc((size_t)n, sizeof *refs);
	size_t big = (size_t)c.n_heads * c.head_dim * c.hidden_size;
	tmp = malloc(big * sizeof(float)); // (Hq*D, C) un-permute buffer
	if (!refs || !tmp) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		goto fail;
	}
	model_tensors(m, refs);
	for (int i = 0; i < n; i++) {
		const model_tensor *r = &refs[i];
		char name[128];
		if (!gguf_name(r->name, name, sizeof name, gemma)) {
			sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%s' has no GGUF name", path, r->name);
			goto fail;
		}
		const gguf_tensor *t = gguf_find_tensor(g, name);
		if (!t) {
			sft_error_set(err, SFT_EXIT_DATA, "%s: no tensor '%s' (%s)", path, name, r->name);
			goto fail;
		}
		int64_t cols = r->n_dims == 2 ? r->shape[1] : r->shape[0], rows = r->n_dims == 2 ? r->shape[0] : 1;
		int ok = (int)t->n_dims == r->n_dims && (int64_t)t->dims[0] == cols &&
			 (r->n_dims == 1 || (int64_t)t->dims[1] == rows);
		if (!ok) {
			sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%s': dims [%llu, %llu], expected [%lld, %lld]",
				      path, name, (unsigned long long)t->dims[0],
				      (unsigned long long)(t->n_dims > 1 ? t->dims[1] : 1), (long long)cols,
				      (long long)rows);
			goto fail;
		}
		if (dequant_gguf_tensor(g, t, r->data, err) < 0) goto fail;
	}
	if (gemma) {
		/* llama.cpp stores Gemma norms as 1 + w (convert_hf_to_gguf.py's norm_shift); back to
		 * the HF weight w, as transformers' GGUF loader does. */
		for (int i = 0; i < n; i++)
			if (refs[i].n_dims == 1 && strstr(refs[i].name, "norm.weight"))
				for (int64_t j = 0; j < refs[i].shape[0]; j++) refs[i].data[j] -= 1.0f;
	}
	for (int li = 0; permuted && li < c.n_layers; li++) {
		model_layer *l = &m->layers[li];
		unpermute_rows(l->wq, tmp, c.n_heads, c.head_dim, c.hidden_size);
		unpermute_rows(l->wk, tmp, c.n_kv_heads, c.head_dim, c.hidden_size);
		if (l->bq) unpermute_rows(l->bq, tmp, c.n_heads, c.head_dim, 1);
		if (l->bk) unpermute_rows(l->bk, tmp, c.n_kv_heads, c.head_dim, 1);
	}
	free(tmp);
	free(refs);
	gguf_close(g);
	return m;
fail:
	free(tmp);
	free(refs);
	model_free(m);
	gguf_close(g);
	return NULL;
}

/* ---- forward ----------------------------------------------------------------------------- */

/* Per token: h, x (C); q, att (Hq*D); k, v (Hkv*D); lse (Hq); gate, up (F). */
static size_t per_token_floats(const model_config *c)
{
	size_t C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size, D = (size_t)c->head_dim;
	return 2 * C + 2 * (size_t)c->n_heads * D + 2 * (size_t)c->n_kv_heads * D + (size_t)c->n_heads + 2 * F;
}

size_t model_forward_arena_floats(const model_config *cfg, int B, int T)
{
	return per_token_floats(cfg) * (size_t)B * (size_t)T;
}

void model_arena_init(model_arena *a) { a->base = NULL; a->cap = 0; }

void model_arena_free(model_arena *a)
{
	if (!a) return;
	free(a->base);
	a->base = NULL;
	a->cap = 0;
}

int model_arena_reserve(model_arena *a, const model_config *cfg, int B, int T, sft_error *err)
{
	size_t need = model_forward_arena_floats(cfg, B, T);
	if (need <= a->cap) return 0;
	float *p = sft_big_alloc(need * sizeof(float));
	if (!p) return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory for activations (%zu floats)", need);
	free(a->base);
	a->base = p;
	a->cap = need;
	return 0;
}

/* Linear layers: OpenBLAS gemm (model_forward, long prefill chunks), or, with rows set,
 * ops_matmul_rows_forward (decode steps: few rows, each row's result independent of the
 * others, W streamed once). */
static void linear(int rows, float *out, const float *x, const float *W, const float *b, int N, int IN, int OUT)
{
	if (rows) ops_matmul_rows_forward(out, x, W, b, N, IN, OUT);
	else ops_matmul_forward(out, x, W, b, N, IN, OUT);
}

/* Projections for N tokens of layer l from the normed input x: q (N, Hq, D), k and v
 * (N, Hkv, D), with bias, per-head q/k norm and rope applied. */
static void layer_qkv(const model *m, int li, int rows, const float *x, const int32_t *pos, int N,
		      float *q, float *k, float *v)
{
	const model_config *c = &m->cfg;
	const model_layer *l = &m->layers[li];
	int C = c->hidden_size, D = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads;
	linear(rows, q, x, l->wq, l->bq, N, C, Hq * D);  // (N, Hq*D)
	linear(rows, k, x, l->wk, l->bk, N, C, Hkv * D); // (N, Hkv*D)
	linear(rows, v, x, l->wv, l->bv, N, C, Hkv * D); // (N, Hkv*D)
	if (c->qk_norm) {
		ops_rmsnorm_forward(q, NULL, q, l->q_norm, c->norm_offset, (float)c->rms_eps, N * Hq, D);
		ops_rmsnorm_forward(k, NULL, k, l->k_norm, c->norm_offset, (float)c->rms_eps, N * Hkv, D);
	}
	const float *inv = c->layer_sliding[li] ? m->inv_freq_local : m->inv_freq;
	ops_rope_forward(q, q, pos, inv, N, Hq, D);
	ops_rope_forward(k, k, pos, inv, N, Hkv, D);
}

/* After attention: h += [post_norm](att @ Wo^T); h += [post_norm](mlp(norm(h))).
 * x, gate, up are scratch: x (N, C), gate and up (N, F). */
static void layer_rest(const model *m, int li, int rows, float *h, const float *att, int N, float *x,
		       float *gate, float *up)
{
	const model_config *c = &m->cfg;
	const model_layer *l = &m->layers[li];
	int C = c->hidden_size, F = c->intermediate_size, QD = c->n_heads * c->head_dim;
	float eps = (float)c->rms_eps, off = c->norm_offset;
	size_t NC = (size_t)N * C;
	linear(rows, x, att, l->wo, l->bo, N, QD, C); // (N, C)
	if (l->attn_post_norm) ops_rmsnorm_forward(x, NULL, x, l->attn_post_norm, off, eps, N, C);
	/* (orphaned: shared by the team in a decode step's region, serial elsewhere) */
#pragma omp for schedule(static)
	for (size_t i = 0; i < NC; i++) h[i] += x[i];
	ops_rmsnorm_forward(x, NULL, h, l->ffn_norm, off, eps, N, C);
	linear(rows, gate, x, l->w_gate, NULL, N, C, F); // (N, F)
	linear(rows, up, x, l->w_up, NULL, N, C, F);     // (N, F)
	if (c->act == MODEL_ACT_GELU_TANH) ops_geglu_forward(gate, gate, up, (size_t)N * F);
	else ops_swiglu_forward(gate, gate, up, (size_t)N * F);
	linear(rows, x, gate, l->w_down, NULL, N, F, C); // (N, C)
	if (l->ffn_post_norm) ops_rmsnorm_forward(x, NULL, x, l->ffn_post_norm, off, eps, N, C);
#pragma omp for schedule(static)
	for (size_t i = 0; i < NC; i++) h[i] += x[i];
}

/* Final norm into x, then logits (N, V) with softcapping. */
static void head(const model *m, int rows, const float *h, int N, float *x, float *logits)
{
	const model_config *c = &m->cfg;
	int C = c->hidden_size, V = c->vocab_size;
	ops_rmsnorm_forward(x, NULL, h, m->final_norm, c->norm_offset, (float)c->rms_eps, N, C);
	if (!logits) return;
	linear(rows, logits, x, m->lm_head, NULL, N, C, V); // (N, V)
	if (c->final_softcap > 0) {
		float cap = c->final_softcap;
		size_t NV = (size_t)N * V;
#pragma omp for schedule(static)
		for (size_t i = 0; i < NV; i++) logits[i] = cap * tanhf(logits[i] / cap);
	}
}

static int check_tokens(const model_config *c, const int32_t *tokens, size_t n, sft_error *err)
{
	for (size_t i = 0; i < n; i++)
		if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
			return sft_error_set(err, SFT_EXIT_DATA, "token %zu: id %d outside the vocabulary [0, %d)",
					     i, (int)tokens[i], c->vocab_size);
	return 0;
}

int model_forward(const model *m, model_arena *a, const int32_t *tokens, const int32_t *pos,
		  const int32_t *seg, int B, int T, float *logits, float *hidden_out, sft_error *err)
{
	const model_config *c = &m->cfg;
	if (B <= 0 || T <= 0) return sft_error_set(err, SFT_EXIT_USAGE, "model_forward: empty batch (%d, %d)", B, T);
	int N = B * T;
	if (check_tokens(c, tokens, (size_t)N, err) < 0) return -SFT_EXIT_DATA;
	if (model_arena_reserve(a, c, B, T, err) < 0) return -SFT_EXIT_RUNTIME;
	int C = c->hidden_size, F = c->intermediate_size, D = c->head_dim;
	int Hq = c->n_heads, Hkv = c->n_kv_heads;
	float *p = a->base;
	float *h = p;    p += (size_t)N * C;       // (B, T, C) residual stream
	float *x = p;    p += (size_t)N * C;       // (B, T, C) normed input / branch output
	float *q = p;    p += (size_t)N * Hq * D;  // (B, T, Hq, D)
	float *att = p;  p += (size_t)N * Hq * D;  // (B, T, Hq, D)
	float *k = p;    p += (size_t)N * Hkv * D; // (B, T, Hkv, D)
	float *v = p;    p += (size_t)N * Hkv * D; // (B, T, Hkv, D)
	float *lse = p;  p += (size_t)N * Hq;      // (B, T, Hq)
	float *gate = p; p += (size_t)N * F;       // (B, T, F)
	float *up = p;                             // (B, T, F)
	ops_embedding_forward(h, tokens, m->embed, c->embed_scale, N, C);
	for (int li = 0; li < c->n_layers; li++) {
		ops_rmsnorm_forward(x, NULL, h, m->layers[li].attn_norm, c->norm_offset, (float)c->rms_eps, N, C);
		layer_qkv(m, li, 0, x, pos, N, q, k, v);
		int window = c->layer_sliding[li] ? c->sliding_window : 0;
		ops_attention_forward(att, lse, q, k, v, seg, B, T, Hq, Hkv, D, c->attn_scale, window,
				      c->attn_softcap);
		layer_rest(m, li, 0, h, att, N, x, gate, up);
	}
	head(m, 0, h, N, x, logits);
	if (hidden_out) memcpy(hidden_out, x, (size_t)N * C * sizeof(float));
	return 0;
}

model *model_load_any(const char *path, int *is_gguf, sft_error *err)
{
	int gguf = gguf_path_is_gguf(path);
	if (is_gguf) *is_gguf = gguf;
	if (gguf) return model_load_gguf(path, err);
	struct stat sb;
	if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
		sft_error_set(err, SFT_EXIT_DATA,
			      "%s: not a GGUF file (no GGUF magic) and not a model directory (config.json + "
			      "model.safetensors)", path);
		return NULL;
	}
	return model_load(path, err);
}

/* ---- KV cache decoding -------------------------------------------------------------------- */

#define MODEL_DECODE_CHUNK 512

int model_kv_cache_init(model_kv_cache *kv, const model *m, int max_len, sft_error *err)
{
	const model_config *c = &m->cfg;
	memset(kv, 0, sizeof *kv);
	if (max_len <= 0) return sft_error_set(err, SFT_EXIT_USAGE, "kv cache: max_len %d", max_len);
	size_t per = (size_t)c->n_layers * (size_t)max_len * (size_t)c->n_kv_heads * (size_t)c->head_dim;
	kv->max_len = max_len;
	kv->chunk = MODEL_DECODE_CHUNK;
	/* activations of one chunk, then the packed keys of the prefill attention */
	kv->scratch_floats = per_token_floats(c) * (size_t)kv->chunk + (size_t)c->vocab_size +
			     ops_attention_prefill_scratch_size(max_len, c->n_kv_heads, c->head_dim);
	kv->k = sft_big_alloc(per * sizeof(float));
	kv->v = sft_big_alloc(per * sizeof(float));
	kv->scratch = sft_big_alloc(kv->scratch_floats * sizeof(float));
	if (!kv->k || !kv->v || !kv->scratch) {
		model_kv_cache_free(kv);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory for a kv cache of %d positions", max_len);
	}
	return 0;
}

void model_kv_cache_free(model_kv_cache *kv)
{
	if (!kv) return;
	free(kv->k);
	free(kv->v);
	free(kv->scratch);
	memset(kv, 0, sizeof *kv);
}

void model_kv_cache_reset(model_kv_cache *kv) { kv->len = 0; }

/* Chunks of at most this many tokens run through ops_matmul_rows_forward (W streamed once
 * for all rows); longer ones through OpenBLAS gemm. */
#define MODEL_ROWS_MAX 16

static int decode_chunk(const model *m, model_kv_cache *kv, const int32_t *tokens, int n, float *logits)
{
	const model_config *c = &m->cfg;
	int C = c->hidden_size, F = c->intermediate_size, D = c->head_dim;
	int Hq = c->n_heads, Hkv = c->n_kv_heads, p0 = kv->len, rows = n <= MODEL_ROWS_MAX;
	float *p = kv->scratch;
	float *h = p;    p += (size_t)n * C;       // (n, C)
	float *x = p;    p += (size_t)n * C;       // (n, C)
	float *q = p;    p += (size_t)n * Hq * D;  // (n, Hq, D)
	float *att = p;  p += (size_t)n * Hq * D;  // (n, Hq, D)
	float *gate = p; p += (size_t)n * F;       // (n, F)
	float *up = p;   p += (size_t)n * F;       // (n, F)
	float *packed = p;                         // prefill attention scratch
	int32_t pos[MODEL_DECODE_CHUNK], seq[MODEL_DECODE_CHUNK];
	for (int i = 0; i < n; i++) {
		pos[i] = p0 + i;
		seq[i] = 0;
	}
	size_t layer_stride = (size_t)kv->max_len * Hkv * D;
	/* A short chunk runs in one parallel region (ops team mode, ops.h); a long one calls
	 * OpenBLAS gemm, which must not run inside a region, op by op. */
#pragma omp parallel if (rows)
	{
	if (rows) ops_team_begin();
	ops_embedding_forward(h, tokens, m->embed, c->embed_scale, n, C);
	for (int li = 0; li < c->n_layers; li++) {
		const float *K = kv->k + li * layer_stride;  // (max_len, Hkv, D)
		const float *Vc = kv->v + li * layer_stride; // (max_len, Hkv, D)
		ops_rmsnorm_forward(x, NULL, h, m->layers[li].attn_norm, c->norm_offset, (float)c->rms_eps, n, C);
		layer_qkv(m, li, rows, x, pos, n, q, kv->k + li * layer_stride + (size_t)p0 * Hkv * D,
			  kv->v + li * layer_stride + (size_t)p0 * Hkv * D);
		int window = c->layer_sliding[li] ? c->sliding_window : 0;
		if (rows) /* few queries: row by row, as model_decode_batch */
			ops_attention_kv_forward(att, q, &K, &Vc, seq, pos, n, Hq, Hkv, D, c->attn_scale, window,
						 c->attn_softcap);
		else if (p0 == 0) /* the chunk is the whole sequence so far: the tiled attention of
				    * training (ops_attn.c), keys and values as one (1, n) row */
			ops_attention_forward(att, packed, q, K, Vc, NULL, 1, n, Hq, Hkv, D, c->attn_scale, window,
					      c->attn_softcap);
		else
			ops_attention_prefill_forward(att, q, K, Vc, p0, n, Hq, Hkv, D, c->attn_scale, window,
						      c->attn_softcap, packed);
		layer_rest(m, li, rows, h, att, n, x, gate, up);
	}
	if (logits) head(m, 1, h + (size_t)(n - 1) * C, 1, x, logits);
	ops_team_end();
	}
	kv->len += n;
	return 0;
}

int model_decode_batch(const model *m, model_arena *a, model_kv_cache *const *kv, const int32_t *tokens, int n,
		       float *logits, sft_error *err)
{
	const model_config *c = &m->cfg;
	if (n <= 0) return sft_error_set(err, SFT_EXIT_USAGE, "model_decode_batch: no sequences");
	for (int i = 0; i < n; i++)
		if (kv[i]->len + 1 > kv[i]->max_len)
			return sft_error_set(err, SFT_EXIT_USAGE, "kv cache full: sequence %d: %d + 1 tokens exceed %d positions",
					     i, kv[i]->len, kv[i]->max_len);
	if (check_tokens(c, tokens, (size_t)n, err) < 0) return -SFT_EXIT_DATA;
	if (model_arena_reserve(a, c, 1, n, err) < 0) return -SFT_EXIT_RUNTIME;
	int C = c->hidden_size, F = c->intermediate_size, D = c->head_dim;
	int Hq = c->n_heads, Hkv = c->n_kv_heads, KD = Hkv * D;
	int32_t *idx = malloc((size_t)n * 2 * sizeof *idx); // seq (n), pos (n)
	const float **ptr = malloc((size_t)n * 2 * sizeof *ptr); // K (n), V (n) of one layer
	if (!idx || !ptr) {
		free(idx);
		free(ptr);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	int32_t *seq = idx, *pos = idx + n;
	const float **Kp = ptr, **Vp = ptr + n;
	for (int i = 0; i < n; i++) {
		seq[i] = i;
		pos[i] = kv[i]->len;
	}
	float *p = a->base;
	float *h = p;    p += (size_t)n * C;      // (n, C) residual stream
	float *x = p;    p += (size_t)n * C;      // (n, C)
	float *q = p;    p += (size_t)n * Hq * D; // (n, Hq, D)
	float *att = p;  p += (size_t)n * Hq * D; // (n, Hq, D)
	float *k = p;    p += (size_t)n * KD;     // (n, Hkv, D)
	float *v = p;    p += (size_t)n * KD;     // (n, Hkv, D)
	p += n * Hq;                              // (lse: unused here)
	float *gate = p; p += (size_t)n * F;      // (n, F)
	float *up = p;                            // (n, F)
	/* the whole step in one parallel region (ops team mode, ops.h) */
#pragma omp parallel
	{
	ops_team_begin();
	ops_embedding_forward(h, tokens, m->embed, c->embed_scale, n, C);
	for (int li = 0; li < c->n_layers; li++) {
		ops_rmsnorm_forward(x, NULL, h, m->layers[li].attn_norm, c->norm_offset, (float)c->rms_eps, n, C);
		layer_qkv(m, li, 1, x, pos, n, q, k, v);
#pragma omp for schedule(static)
		for (int i = 0; i < n; i++) { /* each sequence's new key/value into its own cache */
			size_t off = (size_t)li * kv[i]->max_len * KD;
			Kp[i] = kv[i]->k + off;
			Vp[i] = kv[i]->v + off;
			memcpy(kv[i]->k + off + (size_t)pos[i] * KD, k + (size_t)i * KD, (size_t)KD * sizeof(float));
			memcpy(kv[i]->v + off + (size_t)pos[i] * KD, v + (size_t)i * KD, (size_t)KD * sizeof(float));
		}
		int window = c->layer_sliding[li] ? c->sliding_window : 0;
		ops_attention_kv_forward(att, q, Kp, Vp, seq, pos, n, Hq, Hkv, D, c->attn_scale, window, c->attn_softcap);
		layer_rest(m, li, 1, h, att, n, x, gate, up);
	}
	head(m, 1, h, n, x, logits);
	ops_team_end();
	}
	for (int i = 0; i < n; i++) kv[i]->len++;
	free(idx);
	free(ptr);
	return 0;
}

int model_decode(const model *m, model_kv_cache *kv, const int32_t *tokens, int n, float *logits,
		 sft_error *err)
{
	if (n <= 0) return sft_error_set(err, SFT_EXIT_USAGE, "model_decode: no tokens");
	if (kv->len + n > kv->max_len)
		return sft_error_set(err, SFT_EXIT_USAGE, "kv cache full: %d + %d tokens exceed %d positions",
				     kv->len, n, kv->max_len);
	if (check_tokens(&m->cfg, tokens, (size_t)n, err) < 0) return -SFT_EXIT_DATA;
	for (int i = 0; i < n; i += kv->chunk) {
		int len = n - i < kv->chunk ? n - i : kv->chunk;
		decode_chunk(m, kv, tokens + i, len, i + len == n ? logits : NULL);
	}
	return 0;
}

int model_generate_greedy(const model *m, model_kv_cache *kv, const int32_t *prompt, int n_prompt,
			  int max_new, int eos_id, int32_t *out, int *n_out, sft_error *err)
{
	*n_out = 0;
	model_kv_cache_reset(kv);
	int V = m->cfg.vocab_size;
	float *logits = malloc((size_t)V * sizeof(float)); // (V)
	if (!logits) return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	int rc = model_decode(m, kv, prompt, n_prompt, logits, err);
	for (int i = 0; rc == 0 && i < max_new; i++) {
		int best = 0;
		for (int j = 1; j < V; j++)
			if (logits[j] > logits[best]) best = j;
		out[(*n_out)++] = best;
		if (best == eos_id || i + 1 == max_new) break;
		int32_t tok = best;
		rc = model_decode(m, kv, &tok, 1, logits, err);
	}
	free(logits);
	return rc;
}
