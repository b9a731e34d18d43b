/* train.c - the trainer's compute layer (see train.h and docs/training.md): a forward pass
 * that keeps what the backward needs, the backward of every supported architecture, LoRA
 * adapters on any of the seven linears, gradient checkpointing, NEFTune and evaluation
 * forwards.
 *
 * The forward is the same op sequence as model_forward (model.c): embedding (x embed
 * scale), per layer attn_norm -> q/k/v (+bias) -> [q/k norm] -> rope -> attention -> o_proj
 * -> [post-attention norm] -> residual -> ffn_norm -> gate/up -> act -> down ->
 * [post-feed-forward norm] -> residual, then the final norm and the fused lm_head + CE. It
 * is written out here (not called) because the backward needs the intermediate tensors.
 *
 * Memory: every buffer lives in one block carved at train_ctx_new for (max_B, max_T) by
 * carve_bufs(), which train_mem_plan runs in counting mode, so the plan is the allocation.
 * train_step allocates nothing. */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "train_simd.h"

/* ---- buffers ------------------------------------------------------------------------------ */

/* What one layer's forward keeps for its backward. N = B*T tokens, QD = Hq*D, KD = Hkv*D. */
typedef struct lsave {
	float *rstd1; // (N)     attn_norm rstd (the normed input itself is recomputed in backward)
	float *qp;    // (N, QD) q projection before q_norm (== q without qk norm)
	float *kp;    // (N, KD) k projection before k_norm (== k without qk norm)
	float *rq;    // (N, Hq) q_norm rstd (qk norm only)
	float *rk;    // (N, Hkv)
	float *q;     // (N, QD) after norm + rope
	float *k;     // (N, KD)
	float *v;     // (N, KD)
	float *att;   // (N, QD) attention output
	float *lse;   // (N, Hq)
	float *o;     // (N, C)  o_proj output (sandwich norm only; else NULL, tmpC serves)
	float *ro;    // (N)     its post-norm rstd
	float *h_mid; // (N, C)  residual after the attention block
	float *rstd2; // (N)     ffn_norm rstd (normed input recomputed in backward)
	float *gate;  // (N, F)  gate_proj output (pre activation)
	float *up;    // (N, F)
	float *d;     // (N, C)  down_proj output (sandwich norm only; else NULL, tmpC serves)
	float *rd;    // (N)
	float *xa[LORA_N_KINDS]; // (N, r) LoRA x @ A^T per targeted linear
	uint16_t *drop[LORA_N_KINDS]; // (N * in / 16) LoRA dropout keep bits (train_simd.h)
} lsave;

typedef struct tbufs {
	float *hs;    // (n_hs, N, C) layer inputs; hs[L] = last layer's output
	int n_hs;
	lsave *sets;  // (n_sets)
	int n_sets;
	float *tmpC;  // (N, C) normed block input, then the branch output before the residual
		      // add; in backward the recomputed normed input
	float *actF;  // (N, F) act(gate) * up; in backward reused for dgate
	float *xf;    // (N, C) final-normed hidden
	float *rstdf; // (N)
	/* backward */
	float *dh, *dxn, *dtmp;     // (N, C)
	float *dF1, *dF2;           // (N, F)
	float *dQ1, *dQ2;           // (N, QD)
	float *dK1, *dK2, *dV;      // (N, KD)
	float *dattn;               // (N, Hq) attention backward scratch
	float *ce;                  // ops_fused_ce_scratch_size(C, V)
	/* LoRA */
	float *xm;                  // (N, in_max) x * dropout mask
	float *lscr;                // (N * r + N * in_max) lora_linear_backward scratch
} tbufs;

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

/* memset split over the threads: the backward clears ~(3F + 2QD + 3KD + 3C) floats per token
 * per layer, which single-threaded would be a visible share of a step. */
static void zero(float *p, size_t n)
{
	enum { CHUNK = 1 << 16 };
	size_t nc = (n + CHUNK - 1) / CHUNK;
	if (nc <= 1) {
		memset(p, 0, n * sizeof(float));
		return;
	}
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < nc; i++) {
		size_t a = i * CHUNK, len = a + CHUNK <= n ? CHUNK : n - a;
		memset(p + a, 0, len * sizeof(float));
	}
}

static float *take(float *base, size_t *off, size_t n)
{
	float *p = base ? base + *off : NULL;
	*off += align16(n);
	return p;
}

/* Carves every activation/scratch buffer for N tokens out of base (NULL: count only) and
 * returns the float count. sets must hold n_sets entries when base is non-NULL. */
static size_t carve_bufs(const model_config *c, const lora_config *lc, const train_opts *o,
			 float *base, tbufs *b, lsave *sets)
{
	size_t N = (size_t)o->max_B * (size_t)o->max_T;
	size_t C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size, V = (size_t)c->vocab_size;
	size_t Hq = (size_t)c->n_heads, Hkv = (size_t)c->n_kv_heads, D = (size_t)c->head_dim;
	size_t QD = Hq * D, KD = Hkv * D;
	size_t inmax = C > QD ? C : QD;
	if (F > inmax) inmax = F;
	int L = c->n_layers;
	int train = !o->eval_only;
	int n_hs = train ? L + 1 : 1;
	int n_sets = train && !o->grad_checkpointing ? L : 1;
	size_t off = 0;
	tbufs tb;
	memset(&tb, 0, sizeof tb);
	tb.n_hs = n_hs;
	tb.n_sets = n_sets;
	tb.hs = take(base, &off, (size_t)n_hs * N * C);
	for (int i = 0; i < n_sets; i++) {
		lsave s;
		memset(&s, 0, sizeof s);
		s.rstd1 = take(base, &off, N);
		s.q = take(base, &off, N * QD);
		s.k = take(base, &off, N * KD);
		s.v = take(base, &off, N * KD);
		if (c->qk_norm) {
			s.qp = take(base, &off, N * QD);
			s.kp = take(base, &off, N * KD);
			s.rq = take(base, &off, N * Hq);
			s.rk = take(base, &off, N * Hkv);
		} else {
			s.qp = s.q;
			s.kp = s.k;
		}
		s.att = take(base, &off, N * QD);
		s.lse = take(base, &off, N * Hq);
		if (c->sandwich_norm) {
			s.o = take(base, &off, N * C);
			s.ro = take(base, &off, N);
			s.d = take(base, &off, N * C);
			s.rd = take(base, &off, N);
		}
		s.h_mid = take(base, &off, N * C);
		s.rstd2 = take(base, &off, N);
		s.gate = take(base, &off, N * F);
		s.up = take(base, &off, N * F);
		if (lc)
			for (int k = 0; k < LORA_N_KINDS; k++) {
				if (!(lc->targets & (1u << k))) continue;
				s.xa[k] = take(base, &off, N * (size_t)lc->r);
				if (lc->dropout > 0 && train) { /* eval forwards never drop */
					size_t in = k == 3 ? QD : k == 6 ? F : C;
					s.drop[k] = (uint16_t *)take(base, &off, (N * in + 31) / 32);
				}
			}
		if (sets) sets[i] = s;
	}
	tb.tmpC = take(base, &off, N * C);
	tb.actF = take(base, &off, N * F);
	tb.xf = take(base, &off, N * C);
	tb.rstdf = take(base, &off, N);
	tb.ce = take(base, &off, ops_fused_ce_scratch_size((int)C, (int)V));
	if (train) {
		tb.dh = take(base, &off, N * C);
		tb.dxn = take(base, &off, N * C);
		tb.dtmp = take(base, &off, N * C);
		tb.dF1 = take(base, &off, N * F);
		tb.dF2 = take(base, &off, N * F);
		tb.dQ1 = take(base, &off, N * QD);
		tb.dQ2 = take(base, &off, N * QD);
		tb.dK1 = take(base, &off, N * KD);
		tb.dK2 = take(base, &off, N * KD);
		tb.dV = take(base, &off, N * KD);
		tb.dattn = take(base, &off, N * Hq);
	}
	if (lc) {
		if (lc->dropout > 0 && train) tb.xm = take(base, &off, N * inmax);
		if (train) tb.lscr = take(base, &off, N * (size_t)lc->r + N * inmax);
	}
	if (b) *b = tb;
	return off;
}

/* ---- the context --------------------------------------------------------------------------- */

struct train_ctx {
	model *m;
	lora_adapter *lora;   /* borrowed; NULL for full fine-tuning */
	train_opts o;
	model *gm;            /* full FT gradients, laid out like m (NULL for LoRA / eval_only) */
	lora_adapter *gl;     /* LoRA gradients, laid out like lora */
	float *block;         /* every activation / scratch buffer */
	size_t block_floats;
	lsave *sets;
	tbufs b;
	uint64_t seed;
};

train_ctx *train_ctx_new(model *m, lora_adapter *lora, const train_opts *o, sft_error *err)
{
	const model_config *c = &m->cfg;
	if (c->final_softcap > 0) {
		sft_error_set(err, SFT_EXIT_USAGE,
			      "%s: final_logit_softcapping is not supported by the fused lm_head + cross-entropy "
		    "(set it to null in config.json to train without it)", c->arch_name);
		return NULL;
	}
	if (o->max_B <= 0 || o->max_T <= 0) {
		sft_error_set(err, SFT_EXIT_USAGE, "train: invalid batch capacity (%d, %d)", o->max_B, o->max_T);
		return NULL;
	}
	if (lora && lora->n_layers != c->n_layers) {
		sft_error_set(err, SFT_EXIT_USAGE, "train: adapter has %d layers, model %d", lora->n_layers,
			      c->n_layers);
		return NULL;
	}
	if (lora) /* the carve sizes x @ A^T buffers from cfg.targets: every pair must be covered */
		for (int l = 0; l < c->n_layers; l++)
			for (int k = 0; k < LORA_N_KINDS; k++)
				if (lora->pairs[l][k].A && !(lora->cfg.targets & (1u << k))) {
					sft_error_set(err, SFT_EXIT_USAGE,
						      "train: adapter layer %d %s: tensors present but not in target_modules",
						      l, lora_target_name(1u << k));
					return NULL;
				}
	train_ctx *t = calloc(1, sizeof *t);
	if (!t) goto oom;
	t->m = m;
	t->lora = lora;
	t->o = *o;
	const lora_config *lc = lora ? &lora->cfg : NULL;
	tbufs tb;
	t->block_floats = carve_bufs(c, lc, o, NULL, &tb, NULL);
	t->sets = calloc((size_t)tb.n_sets, sizeof *t->sets);
	if (!t->sets) goto oom;
	t->block = aligned_alloc(64, t->block_floats * sizeof(float));
	if (!t->block) goto oom;
	carve_bufs(c, lc, o, t->block, &t->b, t->sets);
	t->b.sets = t->sets;
	if (!o->eval_only) {
		if (lora) {
			t->gl = lora_new(c, lc, err);
			if (!t->gl) {
				train_ctx_free(t);
				return NULL;
			}
		} else {
			t->gm = model_new(c, err);
			if (!t->gm) {
				train_ctx_free(t);
				return NULL;
			}
		}
	}
	return t;
oom:
	train_ctx_free(t);
	sft_error_set(err, SFT_EXIT_RUNTIME, "train: out of memory for activations (batch %d x %d)",
		      o->max_B, o->max_T);
	return NULL;
}

void train_ctx_free(train_ctx *t)
{
	if (!t) return;
	model_free(t->gm);
	lora_free(t->gl);
	free(t->block);
	free(t->sets);
	free(t);
}

/* transformers' Trainer.get_decay_parameter_names (4.57): a parameter is excluded from
 * weight decay when its lowercased name matches bias, layernorm, rmsnorm, (^|.)norm($|.)
 * or _norm($|.) (or it sits in an nn.LayerNorm, which none of these models has). */
static int name_no_decay(const char *name)
{
	char low[160];
	size_t i = 0;
	for (; name[i] && i + 1 < sizeof low; i++)
		low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	low[i] = 0;
	if (strstr(low, "bias") || strstr(low, "layernorm") || strstr(low, "rmsnorm")) return 1;
	for (const char *p = low; (p = strstr(p, "norm")) != NULL; p++) {
		char after = p[4];
		int end_ok = after == 0 || after == '.';
		if (!end_ok) continue;
		if (p == low || p[-1] == '.' || p[-1] == '_') return 1;
	}
	return 0;
}

int train_params(const train_ctx *t, train_param *out)
{
	if (t->lora) {
		int n = lora_tensors(t->lora, NULL);
		if (!out) return n;
		model_tensor *a = malloc((size_t)(2 * n > 0 ? 2 * n : 1) * sizeof *a);
		if (!a) return -SFT_EXIT_RUNTIME;
		lora_tensors(t->lora, a);
		if (t->gl) lora_tensors(t->gl, a + n);
		for (int i = 0; i < n; i++) {
			train_param *p = &out[i];
			memset(p, 0, sizeof *p);
			snprintf(p->name, sizeof p->name, "%s", a[i].name);
			p->p = a[i].data;
			p->g = t->gl ? a[n + i].data : NULL;
			p->n_dims = a[i].n_dims;
			p->shape[0] = a[i].shape[0];
			p->shape[1] = a[i].shape[1];
			p->n = (size_t)a[i].shape[0] * (size_t)(a[i].n_dims == 2 ? a[i].shape[1] : 1);
			p->no_decay = name_no_decay(p->name);
			p->is_embedding = 0;
		}
		free(a);
		return n;
	}
	int n = model_tensors(t->m, NULL);
	if (!out) return n;
	model_tensor *a = malloc((size_t)(2 * n) * sizeof *a);
	if (!a) return -SFT_EXIT_RUNTIME;
	model_tensors(t->m, a);
	if (t->gm) model_tensors(t->gm, a + n);
	for (int i = 0; i < n; i++) {
		train_param *p = &out[i];
		memset(p, 0, sizeof *p);
		snprintf(p->name, sizeof p->name, "%s", a[i].name);
		p->p = a[i].data;
		p->g = t->gm ? a[n + i].data : NULL;
		p->n_dims = a[i].n_dims;
		p->shape[0] = a[i].shape[0];
		p->shape[1] = a[i].shape[1];
		p->n = (size_t)a[i].shape[0] * (size_t)(a[i].n_dims == 2 ? a[i].shape[1] : 1);
		p->no_decay = name_no_decay(p->name);
		p->is_embedding = strstr(p->name, "embed_tokens") != NULL || !strcmp(p->name, "lm_head.weight");
	}
	free(a);
	return n;
}

void train_zero_grad(train_ctx *t)
{
	if (t->gm) zero(t->gm->block, t->gm->n_params);
	if (t->gl) /* pair by pair: the adapter's n_params does not count alignment padding */
		for (int l = 0; l < t->gl->n_layers; l++)
			for (int k = 0; k < LORA_N_KINDS; k++) {
				lora_pair *p = &t->gl->pairs[l][k];
				if (!p->A) continue;
				memset(p->A, 0, (size_t)t->gl->cfg.r * p->in * sizeof(float));
				memset(p->B, 0, (size_t)p->out * t->gl->cfg.r * sizeof(float));
			}
}

void train_set_seed(train_ctx *t, uint64_t seed) { t->seed = seed; }

/* ---- randomness ------------------------------------------------------------------------------
 * Counter-based streams keyed by (seed, tag): element i's draw is a hash of (key, i), so a
 * checkpointed recompute regenerates it bit for bit and the draw does not depend on the
 * thread count.
 * - NEFTune noise: 64-bit word j of the stream is splitmix64's output for state
 *   key + j * gamma and gives elements 2j and 2j+1 24 bits each (rng_fill).
 * - LoRA dropout: element i of a (layer, module)'s (N, in) input is dropped when the 32-bit
 *   tsimd_drop_hash(key, i) < round(p * 2^32) (train_simd.c, 16 lanes at a time); the
 *   forward draws the keep bits once into the layer's lsave and the backward reads them. */

static inline uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ULL;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t stream_key(uint64_t seed, uint64_t tag) { return mix64(mix64(seed) ^ tag); }

#define TAG_NEFTUNE 0xfeedULL
#define TAG_DROPOUT(layer, kind) (0x10000ULL + (uint64_t)(layer) * 16 + (uint64_t)(kind))

/* out[i] += lo + (hi - lo) * u_i, where u_i in [0, 1) is element i of the stream. */
static void rng_fill(float *out, size_t n, uint64_t key, float lo, float hi)
{
	size_t pairs = (n + 1) / 2;
#pragma omp parallel for schedule(static)
	for (size_t j = 0; j < pairs; j++) {
		uint64_t h = mix64(key + j * 0x9e3779b97f4a7c15ULL);
		float u[2] = {(float)((h >> 8) & 0xffffff) * 0x1p-24f, (float)(h >> 40) * 0x1p-24f};
		for (size_t e = 0; e < 2 && 2 * j + e < n; e++) out[2 * j + e] += lo + (hi - lo) * u[e];
	}
}

/* Inverted dropout of a LoRA input (N * in): keep bits drawn into bits (0 with probability
 * p, else kept and scaled by 1 / (1 - p)). */
static void make_mask(const train_ctx *t, int li, int kind, uint16_t *bits, size_t n)
{
	tsimd_drop_bits(bits, n, stream_key(t->seed, TAG_DROPOUT(li, kind)),
			tsimd_drop_threshold(t->lora->cfg.dropout));
}

static float drop_keep(const train_ctx *t) { return (float)(1.0 / (1.0 - t->lora->cfg.dropout)); }

/* ---- forward ------------------------------------------------------------------------------- */

static const lora_pair *pair_of(const train_ctx *t, int li, int kind)
{
	if (!t->lora) return NULL;
	const lora_pair *p = &t->lora->pairs[li][kind];
	return p->A ? p : NULL;
}

/* y[n] += bias */
static void add_bias(float *y, const float *bias, int N, int out)
{
#pragma omp parallel for schedule(static)
	for (int n = 0; n < N; n++)
		for (int o = 0; o < out; o++) y[(size_t)n * out + o] += bias[o];
}

/* y = x @ W^T + bias (+ LoRA). With an adapter, its term is written first (and the bias
 * added), then the base product accumulated onto it by the gemm (beta = 1): no separate
 * clearing pass of y. */
static void lin_fwd(const train_ctx *t, int li, int kind, float *y, const float *x, const float *W,
		    const float *bias, int in, int out, lsave *s, int N, int train)
{
	const lora_pair *p = pair_of(t, li, kind);
	if (!p) {
		ops_matmul_forward(y, x, W, bias, N, in, out);
		return;
	}
	const uint16_t *bits = NULL;
	if (train && t->lora->cfg.dropout > 0) {
		make_mask(t, li, kind, s->drop[kind], (size_t)N * in);
		bits = s->drop[kind];
	}
	lora_linear_forward_bits(y, s->xa[kind], t->b.xm, x, bits, drop_keep(t), p, t->lora->scale, N, 1);
	if (bias) add_bias(y, bias, N, out);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in, 1.0f, x, in, W, in, 1.0f, y, out);
}

static void add_into(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static)
	for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* One layer: h_out = layer(h_in) keeping what the backward needs in s. h_out may equal h_in;
 * h_out NULL skips the final residual add (checkpoint recompute). */
static void layer_fwd(const train_ctx *t, int li, lsave *s, const float *h_in, float *h_out,
		      const batch *b, int train)
{
	const model *m = t->m;
	const model_config *c = &m->cfg;
	const model_layer *l = &m->layers[li];
	int N = b->B * b->T;
	int C = c->hidden_size, F = c->intermediate_size, D = c->head_dim;
	int Hq = c->n_heads, Hkv = c->n_kv_heads, QD = Hq * D, KD = Hkv * D;
	float eps = (float)c->rms_eps, off = c->norm_offset;
	size_t NC = (size_t)N * C, NF = (size_t)N * F;

	/* x: the normed input of each block, then that block's output (dead inputs reused) */
	float *x = t->b.tmpC;
	ops_rmsnorm_forward(x, s->rstd1, h_in, l->attn_norm, off, eps, N, C);
	lin_fwd(t, li, 0, s->qp, x, l->wq, l->bq, C, QD, s, N, train);
	lin_fwd(t, li, 1, s->kp, x, l->wk, l->bk, C, KD, s, N, train);
	lin_fwd(t, li, 2, s->v, x, l->wv, l->bv, C, KD, s, N, train);
	if (c->qk_norm) {
		ops_rmsnorm_forward(s->q, s->rq, s->qp, l->q_norm, off, eps, N * Hq, D);
		ops_rmsnorm_forward(s->k, s->rk, s->kp, l->k_norm, off, eps, N * Hkv, D);
	}
	const float *inv = c->layer_sliding[li] ? m->inv_freq_local : m->inv_freq;
	ops_rope_forward(s->q, s->q, b->pos, inv, N, Hq, D);
	ops_rope_forward(s->k, s->k, b->pos, inv, N, Hkv, D);
	int window = c->layer_sliding[li] ? c->sliding_window : 0;
	ops_attention_forward(s->att, s->lse, s->q, s->k, s->v, b->seg, b->B, b->T, Hq, Hkv, D,
			      c->attn_scale, window, c->attn_softcap);
	if (c->sandwich_norm) {
		lin_fwd(t, li, 3, s->o, s->att, l->wo, l->bo, QD, C, s, N, train);
		ops_rmsnorm_forward(x, s->ro, s->o, l->attn_post_norm, off, eps, N, C);
	} else {
		lin_fwd(t, li, 3, x, s->att, l->wo, l->bo, QD, C, s, N, train);
	}
	add_into(s->h_mid, h_in, x, NC);
	ops_rmsnorm_forward(x, s->rstd2, s->h_mid, l->ffn_norm, off, eps, N, C);
	lin_fwd(t, li, 4, s->gate, x, l->w_gate, NULL, C, F, s, N, train);
	lin_fwd(t, li, 5, s->up, x, l->w_up, NULL, C, F, s, N, train);
	float *a = t->b.actF;
	if (c->act == MODEL_ACT_GELU_TANH) ops_geglu_forward(a, s->gate, s->up, NF);
	else ops_swiglu_forward(a, s->gate, s->up, NF);
	if (c->sandwich_norm) {
		lin_fwd(t, li, 6, s->d, a, l->w_down, NULL, F, C, s, N, train);
		ops_rmsnorm_forward(x, s->rd, s->d, l->ffn_post_norm, off, eps, N, C);
	} else {
		lin_fwd(t, li, 6, x, a, l->w_down, NULL, F, C, s, N, train);
	}
	if (h_out) add_into(h_out, s->h_mid, x, NC);
}

static int check_batch(const train_ctx *t, const batch *b, sft_error *err)
{
	const model_config *c = &t->m->cfg;
	if (b->B <= 0 || b->T <= 0)
		return sft_error_set(err, SFT_EXIT_USAGE, "train: empty batch (%d, %d)", b->B, b->T);
	if (b->B > t->o.max_B || b->T > t->o.max_T)
		return sft_error_set(err, SFT_EXIT_USAGE, "train: batch (%d, %d) exceeds the capacity (%d, %d)",
				     b->B, b->T, t->o.max_B, t->o.max_T);
	size_t n = (size_t)b->B * b->T;
	for (size_t i = 0; i < n; i++) {
		if (b->tokens[i] < 0 || b->tokens[i] >= c->vocab_size)
			return sft_error_set(err, SFT_EXIT_DATA, "train: token %zu: id %d outside the vocabulary [0, %d)",
					     i, (int)b->tokens[i], c->vocab_size);
		if (b->targets[i] >= c->vocab_size)
			return sft_error_set(err, SFT_EXIT_DATA, "train: target %zu: id %d outside the vocabulary [0, %d)",
					     i, (int)b->targets[i], c->vocab_size);
	}
	return 0;
}

/* Embeddings (+ NEFTune when train) into h (N, C). */
static void embed_fwd(const train_ctx *t, const batch *b, float *h, int train)
{
	const model_config *c = &t->m->cfg;
	int N = b->B * b->T, C = c->hidden_size;
	ops_embedding_forward(h, b->tokens, t->m->embed, c->embed_scale, N, C);
	if (train && t->o.neftune_alpha > 0) {
		/* transformers neftune_post_forward_hook: dims = T * C of the embedding output,
		 * noise U(-mag, mag), mag = alpha / sqrt(dims), added after Gemma's scale. */
		float mag = (float)(t->o.neftune_alpha / sqrt((double)b->T * (double)C));
		rng_fill(h, (size_t)N * C, stream_key(t->seed, TAG_NEFTUNE), -mag, mag);
	}
}

int train_eval(train_ctx *t, const batch *b, ops_ce_stats *st, sft_error *err)
{
	if (check_batch(t, b, err) < 0) return -(err ? err->code : SFT_EXIT_DATA);
	const model_config *c = &t->m->cfg;
	int N = b->B * b->T;
	float *h = t->b.hs; /* in place, layer after layer */
	embed_fwd(t, b, h, 0);
	for (int li = 0; li < c->n_layers; li++) layer_fwd(t, li, &t->sets[0], h, h, b, 0);
	ops_rmsnorm_forward(t->b.xf, NULL, h, t->m->final_norm, c->norm_offset, (float)c->rms_eps, N,
			    c->hidden_size);
	ops_ce_stats s = ops_fused_linear_ce(NULL, NULL, t->b.ce, t->b.xf, t->m->lm_head, b->targets, 0, N,
					     c->hidden_size, c->vocab_size);
	if (st) *st = s;
	return 0;
}

/* ---- backward ------------------------------------------------------------------------------ */


/* dx (or NULL) += dy @ W (set: dx = dy @ W, no clearing pass needed); dW, db (or NULL) +=
 * ...; plus the LoRA pair's gradients. gemm with beta = 0 gives the same bits as clearing
 * dx and accumulating with beta = 1 (OpenBLAS clears C, then runs the same kernels). With
 * an adapter and set, the adapter's dx term is written first and the base product
 * accumulated onto it. */
static void lin_bwd(const train_ctx *t, int li, int kind, float *dx, int set, float *dW, float *db,
		    const float *dy, const float *x, const float *W, int in, int out, const lsave *s, int N)
{
	const lora_pair *p = pair_of(t, li, kind);
	const uint16_t *bits = p && t->lora->cfg.dropout > 0 ? s->drop[kind] : NULL;
	lora_pair *g = p ? &t->gl->pairs[li][kind] : NULL;
	int lora_first = p && dx && set;
	if (lora_first)
		lora_linear_backward_bits(dx, g->A, g->B, t->b.lscr, dy, x, bits, drop_keep(t), s->xa[kind], p,
					  t->lora->scale, N, 1);
	if (dx)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out, 1.0f, dy, out, W, in,
			    set && !lora_first ? 0.0f : 1.0f, dx, in);
	if (dW || db) ops_matmul_backward(NULL, dW, db, dy, x, W, N, in, out);
	if (p && !lora_first)
		lora_linear_backward_bits(dx, g->A, g->B, t->b.lscr, dy, x, bits, drop_keep(t), s->xa[kind], p,
					  t->lora->scale, N, 0);
}

/* In: t->b.dh = dL/dh_out. Out: t->b.dh = dL/dh_in (when need_dx), parameter gradients
 * accumulated. */
static void layer_bwd(const train_ctx *t, int li, const lsave *s, const float *h_in, const batch *b,
		      int need_dx)
{
	const model *m = t->m;
	const model_config *c = &m->cfg;
	const model_layer *l = &m->layers[li];
	model_layer *gl = t->gm ? &t->gm->layers[li] : NULL;
#define GL(f) (gl ? gl->f : NULL)
	int N = b->B * b->T;
	int C = c->hidden_size, F = c->intermediate_size, D = c->head_dim;
	int Hq = c->n_heads, Hkv = c->n_kv_heads, QD = Hq * D, KD = Hkv * D;
	float off = c->norm_offset;
	size_t NC = (size_t)N * C, NF = (size_t)N * F;
	const tbufs *B = &t->b;
	float *dh = B->dh;

	/* feed-forward block: h_out = h_mid + [post_norm](down(act(gate(xn2), up(xn2)))) */
	const float *dd = dh;
	if (c->sandwich_norm) {
		zero(B->dtmp, NC);
		ops_rmsnorm_backward(B->dtmp, GL(ffn_post_norm), dh, s->d, l->ffn_post_norm, s->rd, off, N, C);
		dd = B->dtmp;
	}
	/* act output, recomputed (cheaper than keeping (N, F) per layer); SwiGLU with the
	 * vectorized exp of train_simd.h (within 2e-7 of the forward's values) */
	float *a = B->actF;
	if (c->act == MODEL_ACT_GELU_TANH) ops_geglu_forward(a, s->gate, s->up, NF);
	else tsimd_swiglu_fwd(a, s->gate, s->up, NF);
	lin_bwd(t, li, 6, B->dF1, 1, GL(w_down), NULL, dd, a, l->w_down, F, C, s, N);
	float *dgate = a, *dup = B->dF2;
	if (c->act == MODEL_ACT_GELU_TANH) {
		zero(dgate, NF);
		zero(dup, NF);
		ops_geglu_backward(dgate, dup, B->dF1, s->gate, s->up, NF);
	} else {
		tsimd_swiglu_bwd(dgate, dup, B->dF1, s->gate, s->up, NF);
	}
	/* the forward's ffn_norm output, recomputed bit for bit (cheaper than (N, C) per layer) */
	float *xr = B->tmpC;
	ops_rmsnorm_forward(xr, NULL, s->h_mid, l->ffn_norm, off, (float)c->rms_eps, N, C);
	lin_bwd(t, li, 4, B->dxn, 1, GL(w_gate), NULL, dgate, xr, l->w_gate, C, F, s, N);
	lin_bwd(t, li, 5, B->dxn, 0, GL(w_up), NULL, dup, xr, l->w_up, C, F, s, N);
	ops_rmsnorm_backward(dh, GL(ffn_norm), B->dxn, s->h_mid, l->ffn_norm, s->rstd2, off, N, C);

	/* attention block: h_mid = h_in + [post_norm](o_proj(attention(rope(norm(q/k/v(xn1)))))) */
	const float *dout = dh;
	if (c->sandwich_norm) {
		zero(B->dtmp, NC);
		ops_rmsnorm_backward(B->dtmp, GL(attn_post_norm), dh, s->o, l->attn_post_norm, s->ro, off, N, C);
		dout = B->dtmp;
	}
	lin_bwd(t, li, 3, B->dQ1, 1, GL(wo), GL(bo), dout, s->att, l->wo, QD, C, s, N);
	zero(B->dQ2, (size_t)N * QD);
	zero(B->dK1, (size_t)N * KD);
	zero(B->dV, (size_t)N * KD);
	int window = c->layer_sliding[li] ? c->sliding_window : 0;
	ops_attention_backward(B->dQ2, B->dK1, B->dV, B->dattn, B->dQ1, s->att, s->lse, s->q, s->k, s->v,
			       b->seg, b->B, b->T, Hq, Hkv, D, c->attn_scale, window, c->attn_softcap);
	const float *inv = c->layer_sliding[li] ? m->inv_freq_local : m->inv_freq;
	zero(B->dQ1, (size_t)N * QD);
	ops_rope_backward(B->dQ1, B->dQ2, b->pos, inv, N, Hq, D);
	zero(B->dK2, (size_t)N * KD);
	ops_rope_backward(B->dK2, B->dK1, b->pos, inv, N, Hkv, D);
	const float *dqp = B->dQ1, *dkp = B->dK2;
	if (c->qk_norm) {
		zero(B->dQ2, (size_t)N * QD);
		ops_rmsnorm_backward(B->dQ2, GL(q_norm), B->dQ1, s->qp, l->q_norm, s->rq, off, N * Hq, D);
		zero(B->dK1, (size_t)N * KD);
		ops_rmsnorm_backward(B->dK1, GL(k_norm), B->dK2, s->kp, l->k_norm, s->rk, off, N * Hkv, D);
		dqp = B->dQ2;
		dkp = B->dK1;
	}
	float *dx = need_dx ? B->dxn : NULL;
	ops_rmsnorm_forward(xr, NULL, h_in, l->attn_norm, off, (float)c->rms_eps, N, C);
	lin_bwd(t, li, 0, dx, 1, GL(wq), GL(bq), dqp, xr, l->wq, C, QD, s, N);
	lin_bwd(t, li, 1, dx, 0, GL(wk), GL(bk), dkp, xr, l->wk, C, KD, s, N);
	lin_bwd(t, li, 2, dx, 0, GL(wv), GL(bv), B->dV, xr, l->wv, C, KD, s, N);
	if (need_dx) ops_rmsnorm_backward(dh, GL(attn_norm), dx, h_in, l->attn_norm, s->rstd1, off, N, C);
#undef GL
}

int train_step(train_ctx *t, const batch *b, double grad_scale, ops_ce_stats *st, sft_error *err)
{
	if (t->o.eval_only)
		return sft_error_set(err, SFT_EXIT_USAGE, "train_step on an eval_only context");
	if (check_batch(t, b, err) < 0) return -(err ? err->code : SFT_EXIT_DATA);
	const model *m = t->m;
	const model_config *c = &m->cfg;
	int N = b->B * b->T, C = c->hidden_size, L = c->n_layers;
	size_t NC = (size_t)N * C;
	/* hs[li] is layer li's input; the stride is the capacity's N so the carve stays fixed */
	size_t hstride = (size_t)t->o.max_B * t->o.max_T * C;
	float *hs = t->b.hs;
	int ckpt = t->o.grad_checkpointing;

	embed_fwd(t, b, hs, 1);
	for (int li = 0; li < L; li++)
		layer_fwd(t, li, &t->sets[ckpt ? 0 : li], hs + li * hstride, hs + (li + 1) * hstride, b, 1);
	const float *hL = hs + (size_t)L * hstride;
	ops_rmsnorm_forward(t->b.xf, t->b.rstdf, hL, m->final_norm, c->norm_offset, (float)c->rms_eps, N, C);
	zero(t->b.dxn, NC);
	ops_ce_stats s = ops_fused_linear_ce(t->b.dxn, t->gm ? t->gm->lm_head : NULL, t->b.ce, t->b.xf,
					     m->lm_head, b->targets, (float)grad_scale, N, C, c->vocab_size);
	if (st) *st = s;
	zero(t->b.dh, NC);
	ops_rmsnorm_backward(t->b.dh, t->gm ? t->gm->final_norm : NULL, t->b.dxn, hL, m->final_norm,
			     t->b.rstdf, c->norm_offset, N, C);
	for (int li = L - 1; li >= 0; li--) {
		lsave *sv = &t->sets[ckpt ? 0 : li];
		const float *h_in = hs + li * hstride;
		if (ckpt) layer_fwd(t, li, sv, h_in, NULL, b, 1);
		layer_bwd(t, li, sv, h_in, b, t->gm != NULL || li > 0);
	}
	if (t->gm) ops_embedding_backward(t->gm->embed, t->b.dh, b->tokens, c->embed_scale, N, C);
	return 0;
}

/* ---- memory plan ----------------------------------------------------------------------------- */

static size_t lora_floats(const model_config *c, const lora_config *lc)
{
	size_t C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
	size_t QD = (size_t)c->n_heads * c->head_dim, KD = (size_t)c->n_kv_heads * c->head_dim;
	size_t in[LORA_N_KINDS] = {C, C, C, QD, C, C, F};
	size_t out[LORA_N_KINDS] = {QD, KD, KD, C, F, F, C};
	size_t r = (size_t)lc->r, per = 0;
	for (int k = 0; k < LORA_N_KINDS; k++)
		if (lc->targets & (1u << k)) per += align16(r * in[k]) + align16(out[k] * r);
	return per * (size_t)c->n_layers;
}

void train_mem_plan(const model_config *mc, const lora_config *lora, const train_opts *o, train_mem *out)
{
	memset(out, 0, sizeof *out);
	size_t P = align16(model_config_n_params(mc)) * sizeof(float);
	size_t A = lora ? lora_floats(mc, lora) * sizeof(float) : 0;
	out->weights = P + A;
	if (!o->eval_only) out->grads = lora ? A : P;
	size_t total = carve_bufs(mc, lora, o, NULL, NULL, NULL) * sizeof(float);
	out->logits = align16(ops_fused_ce_scratch_size(mc->hidden_size, mc->vocab_size)) * sizeof(float);
	out->activations = total - out->logits;
}
