/* ops.h - the compute ops interface (forward and backward) of the model core and trainer.
 * Owner: ops. CPU implementation: libcommon/ops_cpu.c (OpenBLAS + OpenMP). A CUDA
 * implementation (kernels/<op>.cu) will sit behind the same signatures; each kernel is
 * checked against the CPU twin declared here. Full description: docs/ops.md.
 *
 * Ownership: every function works on caller-owned buffers and allocates nothing. Where an
 * op needs working memory it takes a caller-provided `scratch` whose size in elements is
 * given by the matching *_scratch_size() function or documented beside it. Functions keep
 * no global state and are thread-safe on disjoint outputs.
 *
 * Conventions (see docs/ops.md):
 * - Row-major, contiguous. A shape comment `// (N, C)` means element [n][c] lies at
 *   n*C + c. Linear weights are stored as Hugging Face nn.Linear stores them:
 *   W (out_features, in_features), and y = x @ W^T + b.
 * - Every backward function ACCUMULATES (+=) into every gradient buffer it receives
 *   (parameter and input gradients alike); the caller zeroes them. Gradient pointers
 *   never alias inputs or other gradients. A NULL gradient pointer is skipped where the
 *   signature says "or NULL".
 * - Deterministic: the same inputs and the same OMP/OpenBLAS thread counts give the same
 *   bits. Every reduction has a fixed order (no atomics, no reduction clauses); outputs
 *   other than those of OpenBLAS gemm are also independent of the thread count.
 * - Each op exists twice: `ops_x` over float (the production path) and `ops_x_f64` over
 *   double (same code instantiated for double; used for finite-difference gradient checks).
 * - Preconditions (sizes > 0, ids in range, even head_dim, n_head % n_kv_head == 0) are the
 *   caller's to check; they are not re-checked in hot paths. */
#if !defined(SFT_OPS_H)
#define SFT_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* ---- rotary position embeddings: inverse frequencies ---------------------------------- */

enum ops_rope_scaling {
	OPS_ROPE_DEFAULT = 0, /* rope_scaling absent (or rope_type "default") */
	OPS_ROPE_LINEAR = 1,  /* rope_type "linear": inv_freq / factor */
	OPS_ROPE_LLAMA3 = 2,  /* rope_type "llama3" (Llama 3.1+) */
};

typedef struct ops_rope_config {
	int head_dim;          /* rotary dimension (= head_dim for every supported model) */
	double theta;          /* rope_theta (Gemma 3 local layers: rope_local_base_freq) */
	int scaling;           /* enum ops_rope_scaling */
	double factor;         /* linear, llama3 */
	double low_freq_factor;  /* llama3 */
	double high_freq_factor; /* llama3 */
	double original_max_position_embeddings; /* llama3 */
} ops_rope_config;

/* Fills inv_freq (head_dim/2) as transformers computes it, in fp32:
 * 1 / theta^(float(2i)/head_dim), then the scaling rule. Returns 0, or a negative
 * SFT_EXIT_USAGE error for an invalid config (odd head_dim, theta <= 0, bad factors). */
int ops_rope_inv_freq(float *inv_freq, const ops_rope_config *cfg, sft_error *err);

/* ---- fused linear + cross-entropy statistics ------------------------------------------ */

typedef struct ops_ce_stats {
	double loss_sum;  /* sum over trained rows of -log softmax(logits)[target] */
	long n_tokens;    /* trained rows (target >= 0) */
	long n_correct;   /* trained rows whose argmax logit (first on ties) == target */
} ops_ce_stats;

/* Trained rows per block in the fused CE (fixed: fixes the summation order). Each block
 * re-reads (OpenBLAS re-packs) all of W for each of its GEMMs: 64 rows meant 32 packs of
 * SmolLM2's 113 MB lm_head per GEMM for 2048 tokens; 256 rows cut the packing 4x for a
 * (256, V) logits block (50 MB at V 49152). */
#define OPS_CE_ROWS 256
#define OPS_CE_VFULL 65536  /* vocabularies up to this size: a block holds its rows' whole logits */
#define OPS_CE_VCHUNK 4096  /* larger vocabularies: swept in chunks of this many entries */

/* Scratch elements (of the op's real type) needed by ops_fused_linear_ce for hidden size C
 * and vocabulary V. */
size_t ops_fused_ce_scratch_size(int C, int V);

/* ---- AdamW ----------------------------------------------------------------------------- */

typedef struct ops_adamw_config {
	double beta1, beta2; /* 0.9, 0.999 in TRL/transformers */
	double eps;          /* 1e-8 */
} ops_adamw_config;

/* Global-norm clipping coefficient as torch.nn.utils.clip_grad_norm_ computes it:
 * min(1, max_norm / (total_norm + 1e-6)); 1 when max_norm <= 0 (clipping off). */
double ops_clip_scale(double total_norm, double max_norm);

/* ---- decoding ops (float only; inference: no backward, no _f64 twin) -------------------- */

/* out = x @ W^T (+ bias) for a few rows (decode steps: N = sequences in the batch).
 * Every output element is one dot product summed in an order that depends only on IN:
 * never on N, on the row's place in the batch or on the thread count, so a sequence's
 * logits are bit-identical whether it is decoded alone or in a batch. W is streamed once
 * for all N rows (blocks of W rows in parallel; AVX-512 where the CPU has it). Any N
 * works; past a few dozen rows ops_matmul_forward (OpenBLAS gemm) is faster. */
void ops_matmul_rows_forward(float *out,        // (N, OUT)
			     const float *x,    // (N, IN)
			     const float *W,    // (OUT, IN)
			     const float *bias, // (OUT) or NULL
			     int N, int IN, int OUT);

/* Causal attention of n query rows over per-sequence KV caches (incremental decoding,
 * chunked prefill, several sequences at once). Row r belongs to sequence seq[r] at position
 * pos[r] and attends the keys/values K[seq[r]], V[seq[r]] (each (max_len, Hkv, D)) at
 * positions lo .. pos[r], lo = window > 0 ? max(0, pos[r] - window + 1) : 0; the caller
 * has already written those positions (the row's own key included). GQA, logits, softcap
 * and the blocked online softmax as ops_attention_forward. Parallel over (row, head); an
 * output row depends only on its own query and cache, never on n or the other rows. */
void ops_attention_kv_forward(float *out,             // (n, Hq, D)
			      const float *q,         // (n, Hq, D)
			      const float *const *K,  // (n_seq) -> (max_len, Hkv, D)
			      const float *const *V,  // (n_seq) -> (max_len, Hkv, D)
			      const int32_t *seq,     // (n) index into K / V
			      const int32_t *pos,     // (n)
			      int n, int Hq, int Hkv, int D, float scale, int window, float softcap);

/* The same attention for a chunk of n consecutive queries of ONE sequence (prefill), at
 * positions p0 .. p0+n-1 over K, V (max_len, Hkv, D) holding positions 0 .. p0+n-1.
 * Packs K transposed in blocks of 16 keys into scratch (ops_attention_prefill_scratch_size
 * floats for T = p0 + n) so a block's scores need no horizontal sums; softmax weights from
 * a vectorized exp (relative error < 2e-7), so results differ from ops_attention_kv_forward
 * by rounding only. Falls back to the row-by-row path without AVX-512, with softcap, or
 * when D is not a multiple of 16 (<= 256). */
size_t ops_attention_prefill_scratch_size(int T, int Hkv, int D);
void ops_attention_prefill_forward(float *out,       // (n, Hq, D)
				   const float *q,   // (n, Hq, D)
				   const float *K,   // (max_len, Hkv, D)
				   const float *V,   // (max_len, Hkv, D)
				   int p0, int n, int Hq, int Hkv, int D, float scale, int window,
				   float softcap,
				   float *scratch);  // (ops_attention_prefill_scratch_size(p0 + n, Hkv, D))

/* Team mode (CPU backend). A decode step at batch 1 is ~360 small ops; a fork and join of
 * the OpenMP threads per op cost more than the op itself. So model.c runs a whole step inside
 * ONE parallel region: every thread calls ops_team_begin(), then the same ops in the same
 * order with the same arguments, then ops_team_end(). In between, the ops decoding uses
 * (embedding, rmsnorm, rope, swiglu/geglu forward, matmul_rows, attention_kv) share their
 * loop among the team with an orphaned `omp for` (ending in its barrier) instead of opening
 * a region of their own; results are the same bits as outside team mode. No other op may be
 * called in team mode. The flag is per thread; begin/end outside a region do nothing. */
void ops_team_begin(void);
void ops_team_end(void);

/* The typed declarations, instantiated for float (ops_x) and double (ops_x_f64). */
#define OPS_DECL_PASS 1
#define OPS_REAL float
#define OPS_FN(name) name
#include "ops.h"
#undef OPS_REAL
#undef OPS_FN
#define OPS_REAL double
#define OPS_FN(name) name##_f64
#include "ops.h"
#undef OPS_REAL
#undef OPS_FN
#undef OPS_DECL_PASS

#elif defined(OPS_DECL_PASS)
/* ======== typed declarations (this part is included twice by the block above) ======== */

/* ---- linear: out = x @ W^T (+ bias) --------------------------------------------------- */
void OPS_FN(ops_matmul_forward)(OPS_REAL *out,        // (N, OUT)
				const OPS_REAL *x,    // (N, IN)
				const OPS_REAL *W,    // (OUT, IN)
				const OPS_REAL *bias, // (OUT) or NULL
				int N, int IN, int OUT);
/* dx += dout @ W; dW += dout^T @ x; db += sum_n dout[n]. */
void OPS_FN(ops_matmul_backward)(OPS_REAL *dx,         // (N, IN) or NULL
				 OPS_REAL *dW,         // (OUT, IN) or NULL
				 OPS_REAL *db,         // (OUT) or NULL
				 const OPS_REAL *dout, // (N, OUT)
				 const OPS_REAL *x,    // (N, IN)
				 const OPS_REAL *W,    // (OUT, IN)
				 int N, int IN, int OUT);

/* ---- token embedding: out[n] = wte[ids[n]] * scale ------------------------------------
 * scale = 1, or sqrt(hidden_size) rounded to the weight dtype for Gemma's scaled
 * embeddings. ids must lie in [0, V). */
void OPS_FN(ops_embedding_forward)(OPS_REAL *out,        // (N, C)
				   const int32_t *ids,   // (N)
				   const OPS_REAL *wte,  // (V, C)
				   OPS_REAL scale, int N, int C);
/* dwte[ids[n]] += dout[n] * scale, scattered in token order (deterministic). */
void OPS_FN(ops_embedding_backward)(OPS_REAL *dwte,       // (V, C)
				    const OPS_REAL *dout, // (N, C)
				    const int32_t *ids,   // (N)
				    OPS_REAL scale, int N, int C);

/* ---- RMSNorm: out = x * rstd * (w_offset + w), rstd = 1/sqrt(mean(x^2) + eps) ---------
 * w_offset = 0: Llama/Qwen (weight * x); w_offset = 1: Gemma ((1 + weight) * x).
 * Per-head q/k norm (Qwen3, Gemma 3): N = tokens * heads, C = head_dim. */
void OPS_FN(ops_rmsnorm_forward)(OPS_REAL *out,       // (N, C)
				 OPS_REAL *rstd,      // (N) saved for backward, or NULL
				 const OPS_REAL *x,   // (N, C)
				 const OPS_REAL *w,   // (C)
				 OPS_REAL w_offset, OPS_REAL eps, int N, int C);
void OPS_FN(ops_rmsnorm_backward)(OPS_REAL *dx,         // (N, C) or NULL
				  OPS_REAL *dw,         // (C) or NULL
				  const OPS_REAL *dout, // (N, C)
				  const OPS_REAL *x,    // (N, C)
				  const OPS_REAL *w,    // (C)
				  const OPS_REAL *rstd, // (N) from the forward
				  OPS_REAL w_offset, int N, int C);

/* ---- rotary embedding (HF rotate_half: pairs (i, i + D/2)) ---------------------------
 * angle = float(pos[n]) * inv_freq[i] (in fp32 for the float path, as transformers);
 * out[i] = x[i] cos - x[i+D/2] sin, out[i+D/2] = x[i+D/2] cos + x[i] sin.
 * pos is per token, so packed rows restart positions per document. out may equal x. */
void OPS_FN(ops_rope_forward)(OPS_REAL *out,           // (N, H, D)
			      const OPS_REAL *x,       // (N, H, D)
			      const int32_t *pos,      // (N)
			      const float *inv_freq,   // (D/2)
			      int N, int H, int D);
/* dx += R(-angle) dout. */
void OPS_FN(ops_rope_backward)(OPS_REAL *dx,           // (N, H, D)
			       const OPS_REAL *dout,   // (N, H, D)
			       const int32_t *pos,     // (N)
			       const float *inv_freq,  // (D/2)
			       int N, int H, int D);

/* ---- causal attention with GQA, segment ids, sliding window, softcap ------------------
 * Query head h reads kv head h / (Hq / Hkv). Query t attends key s iff s <= t, s and t lie
 * in the same contiguous run of equal seg ids (seg NULL: the whole row is one document),
 * and (window <= 0 or t - s < window). Logits: c = scale * q.k, then
 * softcap > 0 ? softcap * tanh(c / softcap) : c. Blocked online softmax: no (T, T)
 * buffer. lse (logsumexp per query row) is saved for backward. */
void OPS_FN(ops_attention_forward)(OPS_REAL *out,        // (B, T, Hq, D)
				   OPS_REAL *lse,        // (B, T, Hq)
				   const OPS_REAL *q,    // (B, T, Hq, D)
				   const OPS_REAL *k,    // (B, T, Hkv, D)
				   const OPS_REAL *v,    // (B, T, Hkv, D)
				   const int32_t *seg,   // (B, T) or NULL
				   int B, int T, int Hq, int Hkv, int D,
				   OPS_REAL scale, int window, OPS_REAL softcap);
/* dq, dk, dv += gradients. scratch: B*T*Hq elements (rowwise dout.out). */
void OPS_FN(ops_attention_backward)(OPS_REAL *dq,         // (B, T, Hq, D)
				    OPS_REAL *dk,         // (B, T, Hkv, D)
				    OPS_REAL *dv,         // (B, T, Hkv, D)
				    OPS_REAL *scratch,    // (B, T, Hq)
				    const OPS_REAL *dout, // (B, T, Hq, D)
				    const OPS_REAL *out,  // (B, T, Hq, D) from the forward
				    const OPS_REAL *lse,  // (B, T, Hq) from the forward
				    const OPS_REAL *q,    // (B, T, Hq, D)
				    const OPS_REAL *k,    // (B, T, Hkv, D)
				    const OPS_REAL *v,    // (B, T, Hkv, D)
				    const int32_t *seg,   // (B, T) or NULL
				    int B, int T, int Hq, int Hkv, int D,
				    OPS_REAL scale, int window, OPS_REAL softcap);

/* ---- gated MLP activations: out = act(gate) * up ----------------------------------------
 * swiglu: act = silu (Llama, Qwen); geglu: act = gelu tanh approximation
 * (Gemma "gelu_pytorch_tanh"). n = number of elements (N * intermediate). */
void OPS_FN(ops_swiglu_forward)(OPS_REAL *out, const OPS_REAL *gate, const OPS_REAL *up,
				size_t n); // all (N, F)
void OPS_FN(ops_swiglu_backward)(OPS_REAL *dgate, OPS_REAL *dup, const OPS_REAL *dout,
				 const OPS_REAL *gate, const OPS_REAL *up, size_t n); // all (N, F)
void OPS_FN(ops_geglu_forward)(OPS_REAL *out, const OPS_REAL *gate, const OPS_REAL *up,
			       size_t n); // all (N, F)
void OPS_FN(ops_geglu_backward)(OPS_REAL *dgate, OPS_REAL *dup, const OPS_REAL *dout,
				const OPS_REAL *gate, const OPS_REAL *up, size_t n); // all (N, F)

/* ---- fused lm_head + cross-entropy -----------------------------------------------------
 * logits = hidden @ W^T are never materialized: trained rows go in blocks of OPS_CE_ROWS.
 * V <= OPS_CE_VFULL: a block's (OPS_CE_ROWS, V) logits, three GEMMs (logits, dhidden, dW)
 * as an unfused lm_head would do (<= 64 MiB); larger V: chunks of OPS_CE_VCHUNK with an
 * online logsumexp, recomputed for the backward (four GEMMs, <= 4 MiB of logits). Rows with target < 0 (-100, or loss mask 0) are skipped entirely. Returns the SUM
 * of per-token losses (normalization is the caller's), trained rows and correct argmax
 * predictions. When dhidden/dW are given: dhidden += grad_scale * dL/dhidden,
 * dW += grad_scale * dL/dW, where L = loss_sum (e.g. grad_scale = 1 / total trained tokens
 * of the optimizer step for mean reduction). scratch: ops_fused_ce_scratch_size(C, V). */
ops_ce_stats OPS_FN(ops_fused_linear_ce)(OPS_REAL *dhidden,        // (N, C) or NULL
					 OPS_REAL *dW,             // (V, C) or NULL
					 OPS_REAL *scratch,        // (see above)
					 const OPS_REAL *hidden,   // (N, C)
					 const OPS_REAL *W,        // (V, C)
					 const int32_t *targets,   // (N), < 0 = ignored
					 OPS_REAL grad_scale, int N, int C, int V);

/* ---- optimizer --------------------------------------------------------------------------
 * Sum of squares of g in double, in a fixed blocked order (deterministic for any thread
 * count). Global norm = sqrt(sum over all tensors). */
double OPS_FN(ops_sq_sum)(const OPS_REAL *g, size_t n); // (n)
/* One AdamW step on one tensor, exactly torch.optim.AdamW (non-amsgrad, maximize off):
 * g = grad * grad_scale (clip coefficient); p *= 1 - lr*wd; m = lerp(m, g, 1-beta1);
 * v = beta2 v + (1-beta2) g^2; p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps).
 * step is the 1-based step count after this update. lr and weight_decay per tensor
 * (weight_decay 0 for tensors excluded from decay). */
void OPS_FN(ops_adamw_step)(OPS_REAL *param,      // (n)
			    const OPS_REAL *grad, // (n)
			    OPS_REAL *m,          // (n) first moment, zero-initialized
			    OPS_REAL *v,          // (n) second moment, zero-initialized
			    size_t n, const ops_adamw_config *cfg, long step, double lr,
			    double weight_decay, double grad_scale);

#endif /* OPS_DECL_PASS */
