/* model.h - the decoder-only transformer core shared by sft-train, sft-eval, lora-merge and
 * sft-serve: config.json parsing into one per-architecture description, fp32 weights from
 * safetensors (single or sharded) or GGUF (llama, qwen2, qwen3, gemma3), CPU forward (ops.h) over
 * packed batches, a KV cache for incremental decoding, batched decoding of several sequences
 * (one cache each), and greedy generation.
 *
 * Supported architectures (config.json "architectures"[0] / "model_type"):
 *   LlamaForCausalLM (llama; SmolLM2, Llama 3.x with rope_type "llama3"),
 *   Qwen2ForCausalLM (qwen2; q/k/v bias), Qwen3ForCausalLM (qwen3; per-head q/k norm),
 *   Gemma3ForCausalLM (gemma3_text; scaled embeddings, (1+w) RMSNorm, sandwich norms,
 *   q/k norm, GeGLU (gelu tanh), interleaved sliding-window / global layers, softcapping).
 * Anything else is an SFT_EXIT_DATA error naming the architecture.
 *
 * Ownership:
 * - model_load / model_load_gguf return a model owned by the caller, freed by model_free
 *   (NULL safe). All weights live in ONE carved fp32 block (model->block); every weight
 *   pointer in model->w points into it (lm_head == embed_tokens when tied).
 * - model_arena holds forward activations: model_arena_init / model_arena_free; one
 *   block, reused by every model_forward call that fits its capacity.
 * - model_kv_cache: model_kv_cache_init / model_kv_cache_free (NULL safe); it owns its
 *   key/value block and its decode scratch.
 * - Output buffers (logits, generated tokens) are the caller's.
 * Errors: sft_error with SFT_EXIT_DATA for bad configs / missing or mis-shaped tensors
 * ("file: tensor 'x': ..."), SFT_EXIT_RUNTIME for I/O and allocation. Never prints. */
#ifndef SFT_MODEL_H
#define SFT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "ops.h"

#define MODEL_MAX_LAYERS 512

enum model_arch { MODEL_ARCH_LLAMA = 1, MODEL_ARCH_QWEN2, MODEL_ARCH_QWEN3, MODEL_ARCH_GEMMA3 };
enum model_act { MODEL_ACT_SILU = 1, MODEL_ACT_GELU_TANH };

/* One description per architecture: the forward reads only these fields. */
typedef struct model_config {
	int arch;                  /* enum model_arch */
	char arch_name[64];        /* "LlamaForCausalLM", ... */
	int vocab_size;            /* V */
	int hidden_size;           /* C */
	int intermediate_size;     /* F */
	int n_layers;              /* L */
	int n_heads;               /* Hq */
	int n_kv_heads;            /* Hkv (GQA: Hq % Hkv == 0) */
	int head_dim;              /* D */
	double rms_eps;
	float norm_offset;         /* 0: w * x (Llama/Qwen); 1: (1 + w) * x (Gemma) */
	int qkv_bias;              /* q/k/v projections carry a bias (Qwen2, Llama attention_bias) */
	int o_bias;                /* o_proj carries a bias (Llama attention_bias) */
	int qk_norm;               /* per-head RMSNorm of q and k before rope (Qwen3, Gemma 3) */
	int sandwich_norm;         /* post-attention and post-feed-forward norms (Gemma 3) */
	int act;                   /* enum model_act */
	float embed_scale;         /* 1, or sqrt(C) rounded to fp32 (Gemma) */
	float attn_scale;          /* head_dim^-0.5, or query_pre_attn_scalar^-0.5 (Gemma 3) */
	float attn_softcap;        /* 0 = off */
	float final_softcap;       /* 0 = off: logits = cap * tanh(logits / cap) */
	int tie_embeddings;        /* lm_head shares embed_tokens */
	int max_position_embeddings;
	int sliding_window;        /* window of sliding layers (0: none) */
	unsigned char layer_sliding[MODEL_MAX_LAYERS]; /* 1: layer uses sliding window + local rope */
	ops_rope_config rope;       /* global layers */
	ops_rope_config rope_local; /* sliding layers (Gemma 3 rope_local_base_freq) */
	int bos_token_id, eos_token_id; /* -1 when absent (first of a list) */
} model_config;

/* Parses a config.json text (name is used in messages). */
int model_config_parse(model_config *cfg, const char *json, size_t len, const char *name, sft_error *err);
/* Reads dir/config.json. */
int model_config_load(model_config *cfg, const char *dir, sft_error *err);
/* Number of fp32 parameters of the model described (the carved block's size). */
size_t model_config_n_params(const model_config *cfg);

typedef struct model_layer {
	float *attn_norm;      // (C)  input_layernorm
	float *wq;             // (Hq*D, C)
	float *bq;             // (Hq*D) or NULL
	float *wk;             // (Hkv*D, C)
	float *bk;             // (Hkv*D) or NULL
	float *wv;             // (Hkv*D, C)
	float *bv;             // (Hkv*D) or NULL
	float *wo;             // (C, Hq*D)
	float *bo;             // (C) or NULL
	float *q_norm;         // (D) or NULL
	float *k_norm;         // (D) or NULL
	float *attn_post_norm; // (C) or NULL  Gemma post_attention_layernorm
	float *ffn_norm;       // (C)  Llama/Qwen post_attention_layernorm, Gemma pre_feedforward_layernorm
	float *ffn_post_norm;  // (C) or NULL  Gemma post_feedforward_layernorm
	float *w_gate;         // (F, C)
	float *w_up;           // (F, C)
	float *w_down;         // (C, F)
} model_layer;

typedef struct model {
	model_config cfg;
	float *block;          // (n_params) every weight below points into it
	size_t n_params;
	float *embed;          // (V, C)  model.embed_tokens.weight
	float *final_norm;     // (C)     model.norm.weight
	float *lm_head;        // (V, C)  == embed when tied
	model_layer *layers;   // (L)
	float *inv_freq;       // (D/2) global rope
	float *inv_freq_local; // (D/2) sliding-layer rope
} model;

/* One weight under its Hugging Face name; data points into model->block. */
typedef struct model_tensor {
	char name[128];   /* "model.layers.0.self_attn.q_proj.weight" */
	float *data;      /* n_dims 2: (shape[0], shape[1]) row-major; 1: (shape[0]) */
	int n_dims;       /* 1 or 2 */
	int64_t shape[2]; /* shape[1] = 0 when n_dims is 1 */
} model_tensor;

/* Fills out (when non-NULL) with every weight of m in a fixed order (embed_tokens, norm,
 * lm_head unless tied, then each layer's tensors; absent biases/norms skipped) and returns
 * the count. Call with NULL first to size out. */
int model_tensors(const model *m, model_tensor *out);

/* Allocates the carved block and points every weight into it (contents zero). */
model *model_new(const model_config *cfg, sft_error *err);
/* path: a Hugging Face model directory (config.json + model.safetensors or shards with
 * model.safetensors.index.json). bf16/f16/f32 tensors are converted to fp32. */
model *model_load(const char *path, sft_error *err);
/* A llama.cpp GGUF file, general.architecture "llama", "qwen2", "qwen3" or "gemma3";
 * tensors dequantized to fp32 and brought back to the Hugging Face layout (llama: Q/K rows
 * un-permuted; qwen2/qwen3 are stored unpermuted; gemma3: norm weights stored as 1 + w
 * turned back into w). Other architectures, or rope scaling in the GGUF: SFT_EXIT_DATA. */
model *model_load_gguf(const char *path, sft_error *err);
/* What the tools take as a model path: a GGUF file (told by its magic, whatever its name),
 * else a Hugging Face model directory; a regular file that is not GGUF is SFT_EXIT_DATA.
 * is_gguf (or NULL): which of the two it was. */
model *model_load_any(const char *path, int *is_gguf, sft_error *err);
void model_free(model *m);

/* ---- forward over a packed batch ---- */

typedef struct model_arena {
	float *base;
	size_t cap;   /* floats */
} model_arena;

size_t model_forward_arena_floats(const model_config *cfg, int B, int T);
/* Ensures capacity for (B, T); returns 0 or a negative error. model_arena_free(NULL) safe. */
int model_arena_reserve(model_arena *a, const model_config *cfg, int B, int T, sft_error *err);
void model_arena_init(model_arena *a);
void model_arena_free(model_arena *a);

/* logits (B, T, V) for tokens (B, T) with per-token positions pos (B, T) (restarting per
 * document in packed rows) and seg (B, T) segment ids (a query attends only keys in the
 * same contiguous run of equal ids; NULL: one document per row). hidden_out, when
 * non-NULL, receives the final-normed hidden states (B, T, C). logits may be NULL. */
int model_forward(const model *m, model_arena *a,
		  const int32_t *tokens, // (B, T)
		  const int32_t *pos,    // (B, T)
		  const int32_t *seg,    // (B, T) or NULL
		  int B, int T,
		  float *logits,         // (B, T, V) or NULL
		  float *hidden_out,     // (B, T, C) or NULL
		  sft_error *err);

/* ---- KV cache, incremental decoding (one sequence) ---- */

typedef struct model_kv_cache {
	int max_len;   /* positions the cache holds */
	int len;       /* positions filled */
	int chunk;     /* tokens per decode pass (scratch sized for it) */
	float *k;      // (L, max_len, Hkv, D)
	float *v;      // (L, max_len, Hkv, D)
	float *scratch;
	size_t scratch_floats;
} model_kv_cache;

int model_kv_cache_init(model_kv_cache *kv, const model *m, int max_len, sft_error *err);
void model_kv_cache_free(model_kv_cache *kv);
void model_kv_cache_reset(model_kv_cache *kv);

/* Appends n tokens at positions kv->len .. kv->len + n - 1 and writes the logits of the
 * last one to logits (V). Error when the cache would overflow. */
int model_decode(const model *m, model_kv_cache *kv, const int32_t *tokens, int n,
		 float *logits, // (V)
		 sft_error *err);

/* ---- batched decoding: several sequences, one cache each ----
 * A batch is n caches (slots), each holding one sequence at its own length (prefill each
 * with model_decode, the prompt's own length). model_decode_batch then appends ONE token
 * to each of the n sequences in one pass: every projection, the MLP and the lm_head are one
 * ops_matmul_rows_forward over n rows (weights streamed once per step instead of once per
 * sequence), attention runs per sequence over its own cache (ops_attention_kv_forward).
 * Sequences may join (prefill into a free cache) or leave between steps: the caller
 * passes whichever caches are active (continuous batching; generate() does this).
 * A sequence's logits are bit-identical to decoding it alone with model_decode: every op
 * of a step computes each row from that row's inputs only. The caches must be distinct.
 * a: scratch activations (model_arena, grown to n tokens). logits: (n, V), row i for kv[i].
 * Error (nothing appended) when a cache is full or a token is out of the vocabulary. */
int model_decode_batch(const model *m, model_arena *a, model_kv_cache *const *kv,
		       const int32_t *tokens, // (n) the next token of each sequence
		       int n,
		       float *logits,         // (n, V)
		       sft_error *err);

/* Greedy decoding: resets the cache, feeds the prompt, then appends up to max_new argmax
 * tokens (first on ties) to out, stopping after eos_id (>= 0; -1 = never). *n_out = count. */
int model_generate_greedy(const model *m, model_kv_cache *kv, const int32_t *prompt, int n_prompt,
			  int max_new, int eos_id, int32_t *out, int *n_out, sft_error *err);

#endif
