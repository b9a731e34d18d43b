/* lora.h - LoRA adapters: configuration, PEFT-compatible tensors and files, and the
 * forward/backward of one adapted linear layer. train.c applies them inside the model's
 * layers; lora-merge folds them into the base weights.
 *
 * The adapted linear (PEFT's lora.Linear, fan_in_fan_out false, bias "none"):
 *   y = x @ W^T (+ b) + scale * (dropout(x) @ A^T) @ B^T
 * Ownership: lora_new / lora_load return an adapter owned by the caller (lora_free, NULL
 * safe); all its tensors live in one block (a->block). The linear functions work on
 * caller-owned buffers and allocate nothing.
 * Errors: sft_error; SFT_EXIT_USAGE for bad options (unknown target module, r <= 0),
 * SFT_EXIT_DATA for bad adapter files (naming file and tensor), SFT_EXIT_RUNTIME for I/O
 * and memory. Never prints. */
#ifndef SFT_LORA_H
#define SFT_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model.h"

/* ---- LoRA -------------------------------------------------------------------------------- */

/* Target modules (bit per linear layer kind). "all-linear" = all seven (PEFT excludes the
 * lm_head from all-linear; so do we). */
enum lora_target {
	LORA_Q = 1 << 0,    /* self_attn.q_proj */
	LORA_K = 1 << 1,    /* self_attn.k_proj */
	LORA_V = 1 << 2,    /* self_attn.v_proj */
	LORA_O = 1 << 3,    /* self_attn.o_proj */
	LORA_GATE = 1 << 4, /* mlp.gate_proj */
	LORA_UP = 1 << 5,   /* mlp.up_proj */
	LORA_DOWN = 1 << 6, /* mlp.down_proj */
	LORA_ALL_LINEAR = 0x7f,
};
#define LORA_N_KINDS 7

typedef struct lora_config {
	int r;              /* lora_r (> 0) */
	double alpha;       /* lora_alpha */
	double dropout;     /* lora_dropout in [0, 1) */
	int use_rslora;     /* scale = alpha / sqrt(r) instead of alpha / r */
	unsigned targets;   /* enum lora_target bits */
} lora_config;

/* Parses lora_target_modules: "all-linear", or a comma/space separated list of module
 * names (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj; a YAML/JSON list text
 * "[q_proj, v_proj]" or "['q_proj','v_proj']" also). A name may carry its parent module
 * as PEFT suffix-matches it ("self_attn.q_proj", "mlp.down_proj"); per-layer paths are not
 * accepted (every targeted module is adapted in every layer). Unknown names, an empty
 * list: SFT_EXIT_USAGE naming the name and the valid ones. */
int lora_parse_targets(const char *s, unsigned *targets, sft_error *err);
/* PEFT's module name of kind bit k ("q_proj", ...). */
const char *lora_target_name(unsigned kind_bit);

typedef struct lora_pair {
	float *A;  // (r, in)  lora_A.weight
	float *B;  // (out, r) lora_B.weight
	int in, out;
	int r;     /* rank (= the adapter's cfg.r; set by lora_new, read by lora_linear_*) */
} lora_pair;

typedef struct lora_adapter {
	lora_config cfg;
	float scale;          /* alpha / r, or alpha / sqrt(r) with rslora */
	int n_layers;
	lora_pair (*pairs)[LORA_N_KINDS]; // (L, 7) A == NULL where the kind is not targeted
	float *block;
	size_t n_params;
} lora_adapter;

/* Zeroed adapter for the model's shapes. */
lora_adapter *lora_new(const model_config *mc, const lora_config *lc, sft_error *err);
/* PEFT init: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)) from our own
 * seeded stream (not torch's), B = 0. */
void lora_init(lora_adapter *a, uint64_t seed);
void lora_free(lora_adapter *a);
/* Every adapter tensor under its PEFT name in adapter_model.safetensors
 * ("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"), layer-major, kinds
 * in enum order, A before B. Call with NULL to count. */
int lora_tensors(const lora_adapter *a, model_tensor *out);
/* Writes dir/adapter_config.json (the keys peft's LoraConfig.save_pretrained writes:
 * peft_type "LORA", task_type "CAUSAL_LM", r, lora_alpha, lora_dropout, target_modules
 * (sorted list), use_rslora, bias "none", fan_in_fan_out false, base_model_name_or_path,
 * ...) and dir/adapter_model.safetensors (fp32), each atomically. dir must exist. */
int lora_save(const lora_adapter *a, const char *dir, const char *base_model_name, sft_error *err);
/* Reads a PEFT adapter directory for model config mc (shapes checked against it, names
 * with or without the ".default" adapter segment accepted; F32, BF16 or F16 tensors,
 * converted to fp32). Every expected tensor must be present with its exact shape, and
 * every tensor of the file must be one of them. Errors: a missing adapter_config.json is
 * SFT_EXIT_USAGE (as fs_read_file: a wrong path), bad or unsupported contents
 * SFT_EXIT_DATA naming the file and the key or tensor (see lora_config_parse_json). */
lora_adapter *lora_load(const char *dir, const model_config *mc, sft_error *err);
/* Interprets an adapter_config.json text (name is used in messages) for a model with
 * n_layers decoder layers into *out (r, alpha, dropout, use_rslora, targets); lora_load's
 * first step, exposed for tests and the fuzz target. target_modules may be "all-linear",
 * a list (an entry selects module m when m == entry or m ends with "." + entry, as PEFT
 * matches: "q_proj", "self_attn.q_proj", "model.layers.3.self_attn.q_proj") or a regular
 * expression string (full match, as PEFT). Settings we cannot reproduce are SFT_EXIT_DATA
 * errors naming the key: bias other than "none", fan_in_fan_out, use_dora, lora_bias,
 * modules_to_save, layers_to_transform, rank_pattern, alpha_pattern, exclude_modules,
 * target_parameters, trainable_token_indices, layer_replication, use_qalora, use_bdlora,
 * alora_invocation_tokens, targets outside the decoder layers' seven linears, different
 * targets in different layers, peft_type other than "LORA", task_type other than
 * "CAUSAL_LM". */
int lora_config_parse_json(const char *text, size_t len, const char *name, int n_layers, lora_config *out,
			   sft_error *err);

/* ---- one adapted linear ------------------------------------------------------------------
 * x (N, in); mask (N, in) holds 0 or 1/(1-p) (inverted dropout), or NULL (no dropout);
 * xa (N, r) receives (x * mask) @ A^T and is kept for the backward. */
void lora_linear_forward(float *y,         // (N, out) accumulated: y += scale * xa @ B^T
			 float *xa,        // (N, r) written
			 float *xm,        // (N, in) scratch for x * mask (unused when mask NULL)
			 const float *x,   // (N, in)
			 const float *mask,// (N, in) or NULL
			 const lora_pair *p, float scale, int N);
/* Accumulates dA, dB (either may be NULL) and dx (or NULL: frozen input) from dy.
 * scratch: N * r + N * in floats. */
void lora_linear_backward(float *dx,         // (N, in) or NULL
			  float *dA,         // (r, in) or NULL
			  float *dB,         // (out, r) or NULL
			  float *scratch,
			  const float *dy,   // (N, out)
			  const float *x,    // (N, in)
			  const float *mask, // (N, in) or NULL
			  const float *xa,   // (N, r) from the forward
			  const lora_pair *p, float scale, int N);

/* The same with the dropout mask given as keep bits (train_simd.h's layout: element i of
 * (N, in) is kept, i.e. multiplied by keep = 1/(1-p), when bit i % 16 of bits[i / 16] is
 * set, else zeroed); bits NULL: no dropout. What train.c uses: the bits of a (layer,
 * module) are drawn once per forward (tsimd_drop_bits) and kept for the backward, N*in/8
 * bytes instead of an (N, in) float mask. On AVX-512 CPUs with r <= TSIMD_LORA_MAX_R the
 * products run in train_simd.c's rank-r kernels (xm and the scratch's (N, in) part are then
 * unused). set (forward): y = the adapter's term instead of y +=; set_dx (backward):
 * dx = its term instead of dx += (the caller adds the base layer's product afterwards,
 * gemm with beta = 1, saving a pass over y / dx). */
void lora_linear_forward_bits(float *y, float *xa, float *xm, const float *x, const uint16_t *bits, float keep,
			      const lora_pair *p, float scale, int N, int set);
void lora_linear_backward_bits(float *dx, float *dA, float *dB, float *scratch, const float *dy, const float *x,
			       const uint16_t *bits, float keep, const float *xa, const lora_pair *p, float scale,
			       int N, int set_dx);

/* Folds the adapter into the base weights in place (what peft's merge_and_unload does):
 * W (out, in) += scale * B (out, r) @ A (r, in) for every targeted linear of every layer.
 * The adapter must have been made for m's config (lora_new / lora_load with m->cfg).
 * Used by sft-eval --adapter and lora-merge. */
int lora_merge_into(model *m, const lora_adapter *a, sft_error *err);

#endif
