/* lora.c - LoRA adapters (see lora.h): target parsing, the carved adapter block, PEFT init,
 * PEFT tensor names, adapter_config.json + adapter_model.safetensors I/O, and the adapted
 * linear's forward/backward on top of ops.h. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cblas.h>

#include "lora.h"
#include "atomic.h"
#include "fsutil.h"
#include "jsonl.h"
#include "ops.h"
#include "safetensors.h"
#include "train_simd.h"

/* ---- target modules -------------------------------------------------------------------- */

static const char *const kind_names[LORA_N_KINDS] = {
	"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};
/* Parent module of each kind inside a decoder layer (PEFT key = "<parent>.<name>"). */
static const char *const kind_parent[LORA_N_KINDS] = {
	"self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp",
};

const char *lora_target_name(unsigned kind_bit)
{
	for (int k = 0; k < LORA_N_KINDS; k++)
		if (kind_bit == 1u << k) return kind_names[k];
	return NULL;
}

/* One name: "q_proj", or with its parent "self_attn.q_proj" (PEFT matches a key against a
 * module name when the name equals it or ends with "." + key, so both select the same
 * modules of a Llama-style layer). Returns the kind index, or -1. */
static int kind_of(const char *s, size_t n)
{
	for (int k = 0; k < LORA_N_KINDS; k++) {
		size_t kn = strlen(kind_names[k]), pn = strlen(kind_parent[k]);
		if (n == kn && !memcmp(s, kind_names[k], kn)) return k;
		if (n == pn + 1 + kn && !memcmp(s, kind_parent[k], pn) && s[pn] == '.' &&
		    !memcmp(s + pn + 1, kind_names[k], kn))
			return k;
	}
	return -1;
}

int lora_parse_targets(const char *s, unsigned *targets, sft_error *err)
{
	*targets = 0;
	if (!s) return sft_error_set(err, SFT_EXIT_USAGE, "lora_target_modules: empty");
	const char *p = s, *end = s + strlen(s);
	while (p < end && isspace((unsigned char)*p)) p++;
	while (end > p && isspace((unsigned char)end[-1])) end--;
	/* A YAML/JSON flow list: "[q_proj, v_proj]", "['q_proj','v_proj']". */
	if (p < end && *p == '[') {
		if (end[-1] != ']')
			return sft_error_set(err, SFT_EXIT_USAGE,
					     "lora_target_modules: unterminated list '%s'", s);
		p++, end--;
	}
	unsigned t = 0;
	int n_names = 0;
	while (p < end) {
		while (p < end && (isspace((unsigned char)*p) || *p == ',')) p++;
		if (p >= end) break;
		const char *q = p;
		while (q < end && !isspace((unsigned char)*q) && *q != ',') q++;
		const char *a = p, *b = q;
		p = q;
		if (b - a >= 2 && (*a == '"' || *a == '\'') && b[-1] == *a) a++, b--;
		size_t n = (size_t)(b - a);
		n_names++;
		if (n == 10 && !memcmp(a, "all-linear", 10)) {
			t |= LORA_ALL_LINEAR;
			continue;
		}
		int k = kind_of(a, n);
		if (k < 0)
			return sft_error_set(err, SFT_EXIT_USAGE,
					     "lora_target_modules: unknown module '%.*s' (valid: all-linear, "
					     "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; "
					     "optionally prefixed self_attn. or mlp.)",
					     (int)(n > 200 ? 200 : n), a);
		t |= 1u << k;
	}
	if (!n_names || !t)
		return sft_error_set(err, SFT_EXIT_USAGE, "lora_target_modules: no module named in '%s'", s);
	*targets = t;
	return 0;
}

/* ---- adapter block ------------------------------------------------------------------------ */

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

static void kind_shape(const model_config *mc, int k, int *in, int *out)
{
	int C = mc->hidden_size, F = mc->intermediate_size;
	int q = mc->n_heads * mc->head_dim, kv = mc->n_kv_heads * mc->head_dim;
	switch (k) {
	case 0: *in = C, *out = q; break;
	case 1:
	case 2: *in = C, *out = kv; break;
	case 3: *in = q, *out = C; break;
	case 4:
	case 5: *in = C, *out = F; break;
	default: *in = F, *out = C; break;
	}
}

lora_adapter *lora_new(const model_config *mc, const lora_config *lc, sft_error *err)
{
	if (lc->r <= 0) {
		sft_error_set(err, SFT_EXIT_USAGE, "lora_r must be > 0 (got %d)", lc->r);
		return NULL;
	}
	if (!(lc->targets & LORA_ALL_LINEAR) || (lc->targets & ~(unsigned)LORA_ALL_LINEAR)) {
		sft_error_set(err, SFT_EXIT_USAGE, "lora_target_modules: no valid module selected");
		return NULL;
	}
	if (!(lc->dropout >= 0 && lc->dropout < 1)) {
		sft_error_set(err, SFT_EXIT_USAGE, "lora_dropout must lie in [0, 1) (got %g)", lc->dropout);
		return NULL;
	}
	if (mc->n_layers <= 0 || mc->n_layers > MODEL_MAX_LAYERS) {
		sft_error_set(err, SFT_EXIT_USAGE, "lora: model has %d layers", mc->n_layers);
		return NULL;
	}
	lora_adapter *a = calloc(1, sizeof *a);
	if (!a) goto oom;
	a->cfg = *lc;
	/* PEFT: scaling = lora_alpha / r (or / math.sqrt(r)) in Python doubles; the fp32
	 * activations are multiplied by that Python float, i.e. by its fp32 rounding. */
	a->scale = (float)(lc->use_rslora ? lc->alpha / sqrt((double)lc->r) : lc->alpha / lc->r);
	a->n_layers = mc->n_layers;
	a->pairs = calloc((size_t)mc->n_layers, sizeof *a->pairs);
	if (!a->pairs) goto oom;
	size_t total = 0, r = (size_t)lc->r;
	for (int l = 0; l < mc->n_layers; l++)
		for (int k = 0; k < LORA_N_KINDS; k++) {
			if (!(lc->targets & (1u << k))) continue;
			int in, out;
			kind_shape(mc, k, &in, &out);
			total += align16(r * (size_t)in) + align16((size_t)out * r);
			a->n_params += r * (size_t)in + (size_t)out * r;
		}
	a->block = aligned_alloc(64, (total ? total : 16) * sizeof(float));
	if (!a->block) goto oom;
	memset(a->block, 0, total * sizeof(float));
	size_t off = 0;
	for (int l = 0; l < mc->n_layers; l++)
		for (int k = 0; k < LORA_N_KINDS; k++) {
			if (!(lc->targets & (1u << k))) continue;
			lora_pair *p = &a->pairs[l][k];
			kind_shape(mc, k, &p->in, &p->out);
			p->r = lc->r;
			p->A = a->block + off;
			off += align16(r * (size_t)p->in);
			p->B = a->block + off;
			off += align16((size_t)p->out * r);
		}
	return a;
oom:
	lora_free(a);
	sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory allocating the LoRA adapter");
	return NULL;
}

void lora_free(lora_adapter *a)
{
	if (!a) return;
	free(a->block);
	free(a->pairs);
	free(a);
}

/* splitmix64 seeds xoshiro256**; each (layer, kind) pair has its own stream derived from
 * (seed, layer, kind), so an A matrix's values do not depend on which other modules are
 * targeted or on the order of initialization. */
static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4])
{
	uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

void lora_init(lora_adapter *a, uint64_t seed)
{
	if (!a) return;
	for (int l = 0; l < a->n_layers; l++)
		for (int k = 0; k < LORA_N_KINDS; k++) {
			lora_pair *p = &a->pairs[l][k];
			if (!p->A) continue;
			uint64_t sm = seed ^ (0x6c6f7261ull << 32) ^ ((uint64_t)l * LORA_N_KINDS + (uint64_t)k + 1) *
							       0xd1b54a32d192ed03ull;
			uint64_t s[4];
			for (int i = 0; i < 4; i++) s[i] = splitmix64(&sm);
			/* kaiming_uniform_(a = sqrt(5)) on (r, in): gain = sqrt(2 / (1 + 5)), bound =
			 * sqrt(3) * gain / sqrt(fan_in) = 1 / sqrt(in). */
			double bound = 1.0 / sqrt((double)p->in);
			size_t n = (size_t)a->cfg.r * (size_t)p->in;
			for (size_t i = 0; i < n; i++) {
				double u = (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; /* [0, 1) */
				p->A[i] = (float)((2 * u - 1) * bound);
			}
			memset(p->B, 0, (size_t)p->out * (size_t)a->cfg.r * sizeof(float));
		}
}

int lora_tensors(const lora_adapter *a, model_tensor *out)
{
	int n = 0;
	for (int l = 0; l < a->n_layers; l++)
		for (int k = 0; k < LORA_N_KINDS; k++) {
			const lora_pair *p = &a->pairs[l][k];
			if (!p->A) continue;
			for (int ab = 0; ab < 2; ab++, n++) {
				if (!out) continue;
				model_tensor *t = &out[n];
				snprintf(t->name, sizeof t->name, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight",
					 l, kind_parent[k], kind_names[k], ab ? 'B' : 'A');
				t->data = ab ? p->B : p->A;
				t->n_dims = 2;
				t->shape[0] = ab ? p->out : a->cfg.r;
				t->shape[1] = ab ? a->cfg.r : p->in;
			}
		}
	return n;
}

/* ---- one adapted linear --------------------------------------------------------------------
 * Forward:  xm = x * mask;  xa = xm @ A^T;  y += scale * xa @ B^T.
 * Backward: dB += scale * dy^T @ xa;  dxa = scale * dy @ B;  dA += dxa^T @ xm;
 *           dx += (dxa @ A) * mask.
 * With keep bits (or no mask) and r <= TSIMD_LORA_MAX_R on an AVX-512 CPU, train_simd.h's
 * rank-r kernels do all of it, the mask applied on the fly. Otherwise (an explicit float
 * mask, a large r, the portable path) the products are cblas_sgemm calls (OpenBLAS), the
 * scale folded into their alpha and overwritten outputs written with beta = 0, and the
 * element-wise mask products train_simd.h's parallel loops. */

/* The mask of one call: an explicit float mask, keep bits, or none. */
typedef struct dmask {
	const float *m;
	const uint16_t *bits;
	float keep;
} dmask;

static int has_mask(const dmask *d) { return d->m || d->bits; }

/* dst = x * mask */
static void apply_mask(float *dst, const float *x, const dmask *d, size_t n)
{
	if (d->m) tsimd_mul(dst, x, d->m, n);
	else tsimd_mask_mul(dst, x, d->bits, d->keep, n);
}

/* dst += g * mask */
static void apply_mask_add(float *dst, const float *g, const dmask *d, size_t n)
{
	if (d->m) tsimd_mul_add(dst, g, d->m, n);
	else tsimd_mask_mul_add(dst, g, d->bits, d->keep, n);
}

static void fwd(float *y, float *xa, float *xm, const float *x, const dmask *d, const lora_pair *p, float scale,
		int N, int set)
{
	if (!d->m && tsimd_lora_ok(p->r)) {
		tsimd_lora_forward(y, xa, x, d->bits, d->keep, p->A, p->B, scale, N, p->in, p->r, p->out, set);
		return;
	}
	const float *xin = x;
	if (has_mask(d)) {
		apply_mask(xm, x, d, (size_t)N * p->in);
		xin = xm;
	}
	int r = p->r;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, p->in, 1.0f, xin, p->in, p->A, p->in, 0.0f, xa,
		    r);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, p->out, r, scale, xa, r, p->B, r, set ? 0.0f : 1.0f, y,
		    p->out);
}

static void bwd(float *dx, float *dA, float *dB, float *scratch, const float *dy, const float *x, const dmask *d,
		const float *xa, const lora_pair *p, float scale, int N, int set_dx)
{
	int r = p->r, in = p->in, out = p->out;
	size_t nr = (size_t)N * r, ni = (size_t)N * in;
	float *t = scratch;       // (N, r)
	float *xm = scratch + nr; // (N, in)
	if (!d->m && tsimd_lora_ok(r)) {
		tsimd_lora_backward(dx, dA, dB, t, dy, x, d->bits, d->keep, xa, p->A, p->B, scale, N, in, r, out,
				    set_dx);
		return;
	}
	/* dB += scale * dy^T @ xa */
	if (dB)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, N, scale, dy, out, xa, r, 1.0f, dB, r);
	if (!dA && !dx) return;
	/* t = dxa = scale * dy @ B */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, out, scale, dy, out, p->B, r, 0.0f, t, r);
	if (dA) {
		const float *xin = x;
		if (has_mask(d)) {
			apply_mask(xm, x, d, ni);
			xin = xm;
		}
		/* dA += t^T @ (x * mask) */
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, N, 1.0f, t, r, xin, in, 1.0f, dA, in);
	}
	if (dx) {
		if (!has_mask(d)) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, t, r, p->A, in,
				    set_dx ? 0.0f : 1.0f, dx, in);
		} else {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, t, r, p->A, in, 0.0f, xm,
				    in);
			if (set_dx) apply_mask(dx, xm, d, ni);
			else apply_mask_add(dx, xm, d, ni);
		}
	}
}

void lora_linear_forward(float *y, float *xa, float *xm, const float *x, const float *mask,
			 const lora_pair *p, float scale, int N)
{
	dmask d = {.m = mask};
	fwd(y, xa, xm, x, &d, p, scale, N, 0);
}

void lora_linear_backward(float *dx, float *dA, float *dB, float *scratch, const float *dy,
			  const float *x, const float *mask, const float *xa, const lora_pair *p,
			  float scale, int N)
{
	dmask d = {.m = mask};
	bwd(dx, dA, dB, scratch, dy, x, &d, xa, p, scale, N, 0);
}

void lora_linear_forward_bits(float *y, float *xa, float *xm, const float *x, const uint16_t *bits, float keep,
			      const lora_pair *p, float scale, int N, int set)
{
	dmask d = {.bits = bits, .keep = keep};
	fwd(y, xa, xm, x, &d, p, scale, N, set);
}

void lora_linear_backward_bits(float *dx, float *dA, float *dB, float *scratch, const float *dy, const float *x,
			       const uint16_t *bits, float keep, const float *xa, const lora_pair *p, float scale,
			       int N, int set_dx)
{
	dmask d = {.bits = bits, .keep = keep};
	bwd(dx, dA, dB, scratch, dy, x, &d, xa, p, scale, N, set_dx);
}

/* ---- adapter_config.json ------------------------------------------------------------------
 * Read: the keys that change what the adapter computes are interpreted; anything this
 * implementation cannot reproduce is an error naming the key (never silently ignored).
 * Keys that only matter for initialization or for other PEFT methods (init_lora_weights,
 * loftq_config, eva_config, corda_config, megatron_*, qalora_group_size, revision, ...)
 * are ignored. */

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* The module names a target key can select in a decoder layer l: "model.layers.l.<parent>.
 * <kind>"; PEFT matches a list entry e against a module name m when m == e or m ends with
 * "." + e. */
static int key_matches(const char *module, const char *e)
{
	size_t ml = strlen(module), el = strlen(e);
	if (ml == el) return !strcmp(module, e);
	return ml > el && module[ml - el - 1] == '.' && !strcmp(module + ml - el, e);
}

/* Other modules of a Llama-style causal LM (names as named_modules() lists them; layer 0
 * stands for every layer) that a regular expression could select: the lm_head and the
 * embeddings, which PEFT can adapt and we do not, and containers / norms, which PEFT
 * refuses. Either way, selecting one is an error. */
static const char *const other_modules[] = {
	"lm_head", "model.embed_tokens", "model", "model.layers", "model.norm", "model.rotary_emb",
	"model.layers.0", "model.layers.0.self_attn", "model.layers.0.mlp", "model.layers.0.mlp.act_fn",
	"model.layers.0.input_layernorm", "model.layers.0.post_attention_layernorm",
};
#define N_OTHER ((int)(sizeof other_modules / sizeof *other_modules))

static int targets_from_list(const json_t *tm, const char *name, int n_layers, unsigned *per_layer,
			     sft_error *err)
{
	size_t i;
	const json_t *v;
	char mod[128];
	json_array_foreach(tm, i, v) {
		if (!json_is_string(v))
			return sft_error_set(err, SFT_EXIT_DATA, "%s: target_modules[%zu] is not a string", name, i);
		const char *e = json_string_value(v);
		int hit = 0;
		for (int l = 0; l < n_layers; l++)
			for (int k = 0; k < LORA_N_KINDS; k++) {
				snprintf(mod, sizeof mod, "model.layers.%d.%s.%s", l, kind_parent[k], kind_names[k]);
				if (key_matches(mod, e)) per_layer[l] |= 1u << k, hit = 1;
			}
		if (!hit && !strcmp(e, "all-linear")) {
			for (int l = 0; l < n_layers; l++) per_layer[l] = LORA_ALL_LINEAR;
			hit = 1;
		}
		if (!hit)
			return sft_error_set(err, SFT_EXIT_DATA,
					     "%s: target_modules: '%.200s' is not supported (LoRA applies only to "
					     "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj of "
					     "the decoder layers)",
					     name, e);
	}
	return 0;
}

static int targets_from_regex(const char *re_s, const char *name, int n_layers, unsigned *per_layer,
			      sft_error *err)
{
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)re_s, PCRE2_ZERO_TERMINATED,
				       PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF, &ec, &eo, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof msg);
		return sft_error_set(err, SFT_EXIT_DATA, "%s: target_modules: bad regular expression at offset %zu: %s",
				     name, (size_t)eo, (const char *)msg);
	}
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
	/* Module names are short: a legitimate pattern needs few steps; a pathological one
	 * (catastrophic backtracking) stops at the limit instead of hanging. */
	pcre2_match_context *mctx = pcre2_match_context_create(NULL);
	int rc = md && mctx ? 0 : sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	if (mctx) pcre2_set_match_limit(mctx, 100000);
	char mod[128];
	/* PEFT: re.fullmatch(target_modules, module_name) over every module of the model. */
	for (int l = -1; !rc && l < n_layers; l++)
		for (int k = 0; !rc && k < (l < 0 ? N_OTHER : LORA_N_KINDS); k++) {
			const char *m = mod;
			if (l < 0)
				m = other_modules[k];
			else
				snprintf(mod, sizeof mod, "model.layers.%d.%s.%s", l, kind_parent[k], kind_names[k]);
			int mr = pcre2_match(re, (PCRE2_SPTR)m, PCRE2_ZERO_TERMINATED, 0, 0, md, mctx);
			if (mr >= 0 && l < 0)
				rc = sft_error_set(err, SFT_EXIT_DATA,
						   "%s: target_modules: '%.200s' selects %s, which is not supported", name,
						   re_s, m);
			else if (mr >= 0)
				per_layer[l] |= 1u << k;
			else if (mr != PCRE2_ERROR_NOMATCH)
				rc = sft_error_set(err, SFT_EXIT_DATA,
						   "%s: target_modules: regular expression '%.200s' failed on '%s' (error %d)",
						   name, re_s, m, mr);
		}
	pcre2_match_context_free(mctx);
	pcre2_match_data_free(md);
	pcre2_code_free(re);
	return rc;
}

/* A key that must be absent, null, false, "" or an empty list/object. */
static int must_be_empty(const json_t *root, const char *key, const char *name, const char *why, sft_error *err)
{
	const json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v) || json_is_false(v)) return 0;
	if (json_is_array(v) && json_array_size(v) == 0) return 0;
	if (json_is_object(v) && json_object_size(v) == 0) return 0;
	if (json_is_string(v) && json_string_length(v) == 0) return 0;
	return sft_error_set(err, SFT_EXIT_DATA, "%s: %s is not supported (%s)", name, key, why);
}

static int get_number(const json_t *root, const char *key, const char *name, double *out, int required,
		      sft_error *err)
{
	const json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v)) {
		if (required) return sft_error_set(err, SFT_EXIT_DATA, "%s: missing key '%s'", name, key);
		return 0;
	}
	if (!json_is_number(v)) return sft_error_set(err, SFT_EXIT_DATA, "%s: %s is not a number", name, key);
	*out = json_number_value(v);
	return 0;
}

static int get_bool(const json_t *root, const char *key, const char *name, int *out, sft_error *err)
{
	const json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v)) return 0;
	if (!json_is_boolean(v)) return sft_error_set(err, SFT_EXIT_DATA, "%s: %s is not true or false", name, key);
	*out = json_is_true(v);
	return 0;
}

int lora_config_parse_json(const char *text, size_t len, const char *name, int n_layers, lora_config *out,
			   sft_error *err)
{
	if (n_layers <= 0 || n_layers > MODEL_MAX_LAYERS)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: model has %d layers", name, n_layers);
	json_t *root = json_parse_located(text, len, name, 1, 0, err);
	if (!root) return -SFT_EXIT_DATA;
	int rc = 0;
	unsigned per_layer[MODEL_MAX_LAYERS] = {0};
	/* PEFT's LoraConfig defaults for absent keys */
	lora_config c = {.r = 8, .alpha = 8, .dropout = 0, .use_rslora = 0, .targets = 0};
	const json_t *v;
	double r = 8;

	v = json_object_get(root, "peft_type");
	if (!json_is_string(v) || strcmp(json_string_value(v), "LORA")) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: peft_type is %s, expected \"LORA\"", name,
				   json_is_string(v) ? json_string_value(v) : "missing or not a string");
		goto out;
	}
	v = json_object_get(root, "task_type");
	if (v && !json_is_null(v) && (!json_is_string(v) || strcmp(json_string_value(v), "CAUSAL_LM"))) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: task_type %s is not supported (expected \"CAUSAL_LM\")",
				   name, json_is_string(v) ? json_string_value(v) : "(not a string)");
		goto out;
	}
	if ((rc = get_number(root, "r", name, &r, 0, err)) < 0) goto out;
	v = json_object_get(root, "r");
	if (v && !json_is_null(v) && (!json_is_integer(v) || r <= 0 || r > 1 << 20)) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: r must be a positive integer", name);
		goto out;
	}
	c.r = (int)r;
	if ((rc = get_number(root, "lora_alpha", name, &c.alpha, 0, err)) < 0) goto out;
	if (!isfinite(c.alpha)) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: lora_alpha is not finite", name);
		goto out;
	}
	if ((rc = get_number(root, "lora_dropout", name, &c.dropout, 0, err)) < 0) goto out;
	if (!(c.dropout >= 0 && c.dropout < 1)) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: lora_dropout %g is outside [0, 1)", name, c.dropout);
		goto out;
	}
	if ((rc = get_bool(root, "use_rslora", name, &c.use_rslora, err)) < 0) goto out;
	v = json_object_get(root, "bias");
	if (v && !json_is_null(v) && (!json_is_string(v) || strcmp(json_string_value(v), "none"))) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: bias %s is not supported (only \"none\")", name,
				   json_is_string(v) ? json_string_value(v) : "(not a string)");
		goto out;
	}
	static const struct {
		const char *key, *why;
	} unsupported[] = {
		{"fan_in_fan_out", "Conv1D-style weights"},
		{"use_dora", "DoRA"},
		{"modules_to_save", "fully trained extra modules"},
		{"layers_to_transform", "adapting a subset of layers"},
		{"rank_pattern", "per-module ranks"},
		{"alpha_pattern", "per-module alphas"},
		{"exclude_modules", "module exclusions"},
		{"target_parameters", "adapted parameters"},
		{"trainable_token_indices", "trainable token embeddings"},
		{"layer_replication", "replicated layers"},
		{"lora_bias", "a bias on lora_B"},
		{"use_qalora", "QA-LoRA"},
		{"use_bdlora", "BD-LoRA"},
		{"alora_invocation_tokens", "activated LoRA"},
	};
	for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
		if ((rc = must_be_empty(root, unsupported[i].key, name, unsupported[i].why, err)) < 0) goto out;

	v = json_object_get(root, "target_modules");
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		if (!strcmp(s, "all-linear"))
			for (int l = 0; l < n_layers; l++) per_layer[l] = LORA_ALL_LINEAR;
		else if ((rc = targets_from_regex(s, name, n_layers, per_layer, err)) < 0)
			goto out;
	} else if (json_is_array(v)) {
		if ((rc = targets_from_list(v, name, n_layers, per_layer, err)) < 0) goto out;
	} else {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: target_modules is %s (expected a list of module names)",
				   name, v ? "not a list or string" : "missing");
		goto out;
	}
	for (int l = 0; l < n_layers; l++)
		if (per_layer[l] != per_layer[0]) {
			rc = sft_error_set(err, SFT_EXIT_DATA,
					   "%s: target_modules selects different modules in layers 0 and %d "
					   "(per-layer targets are not supported)",
					   name, l);
			goto out;
		}
	if (!per_layer[0]) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: target_modules selects no module", name);
		goto out;
	}
	c.targets = per_layer[0];
	*out = c;
out:
	json_decref(root);
	return rc < 0 ? rc : 0;
}

/* ---- save ----------------------------------------------------------------------------------
 * adapter_config.json as PEFT 0.21 writes it: json.dumps(indent=2, sort_keys=True), no
 * trailing newline, the same 41 keys (defaults for everything we do not use). The keys
 * below are already in sorted order. */

static int put(json_buf *b, const char *s) { return json_buf_put(b, s, strlen(s)); }

static int put_key(json_buf *b, const char *key, int *first)
{
	int rc = put(b, *first ? "\n  " : ",\n  ");
	*first = 0;
	return rc | json_buf_string(b, key, strlen(key)) | put(b, ": ");
}

static int config_text(const lora_adapter *a, const char *base, json_buf *b)
{
	char num[64];
	int first = 1, rc = put(b, "{");
#define KV(key, value) (rc |= put_key(b, key, &first) | put(b, value))
	KV("alora_invocation_tokens", "null");
	KV("alpha_pattern", "{}");
	KV("arrow_config", "null");
	KV("auto_mapping", "null");
	rc |= put_key(b, "base_model_name_or_path", &first);
	rc |= base ? json_buf_string(b, base, strlen(base)) : put(b, "null");
	KV("bias", "\"none\"");
	KV("corda_config", "null");
	KV("ensure_weight_tying", "false");
	KV("eva_config", "null");
	KV("exclude_modules", "null");
	KV("fan_in_fan_out", "false");
	KV("inference_mode", "true");
	KV("init_lora_weights", "true");
	KV("kasa_config", "null");
	KV("layer_replication", "null");
	KV("layers_pattern", "null");
	KV("layers_to_transform", "null");
	KV("loftq_config", "{}");
	/* peft types lora_alpha as int: integral values are written as integers */
	double al = a->cfg.alpha;
	if (al == floor(al) && fabs(al) < 1e15)
		snprintf(num, sizeof num, "%lld", (long long)al);
	else
		json_format_double(al, num, sizeof num);
	KV("lora_alpha", num);
	KV("lora_bias", "false");
	json_format_double(a->cfg.dropout, num, sizeof num);
	KV("lora_dropout", num);
	KV("lora_ga_config", "null");
	KV("megatron_config", "null");
	KV("megatron_core", "\"megatron.core\"");
	KV("modules_to_save", "null");
	KV("monteclora_config", "null");
	KV("peft_type", "\"LORA\"");
	KV("peft_version", "\"0.21.2\""); /* the PEFT release whose format this mirrors */
	KV("qalora_group_size", "16");
	snprintf(num, sizeof num, "%d", a->cfg.r);
	KV("r", num);
	KV("rank_pattern", "{}");
	KV("revision", "null");
	/* sorted module names (PEFT writes its set as a list in hash order) */
	rc |= put_key(b, "target_modules", &first) | put(b, "[");
	const char *names[LORA_N_KINDS];
	int n = 0;
	for (int k = 0; k < LORA_N_KINDS; k++)
		if (a->cfg.targets & (1u << k)) names[n++] = kind_names[k];
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			const char *t = names[j];
			names[j] = names[j - 1], names[j - 1] = t;
		}
	for (int i = 0; i < n; i++) {
		rc |= put(b, i ? ",\n    " : "\n    ");
		rc |= json_buf_string(b, names[i], strlen(names[i]));
	}
	rc |= put(b, "\n  ]");
	KV("target_parameters", "null");
	KV("task_type", "\"CAUSAL_LM\"");
	KV("trainable_token_indices", "null");
	KV("use_bdlora", "null");
	KV("use_dora", "false");
	KV("use_qalora", "false");
	KV("use_rslora", a->cfg.use_rslora ? "true" : "false");
	KV("velora_config", "null");
#undef KV
	rc |= put(b, "\n}");
	return rc;
}

static int check_dir(const char *dir, sft_error *err)
{
	struct stat st;
	if (stat(dir, &st) != 0)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode)) return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: not a directory", dir);
	return 0;
}

int lora_save(const lora_adapter *a, const char *dir, const char *base_model_name, sft_error *err)
{
	int rc = check_dir(dir, err);
	if (rc < 0) return rc;
	size_t plen = strlen(dir) + 64;
	char *path = malloc(plen);
	json_buf b = {0};
	int n = lora_tensors(a, NULL);
	model_tensor *t = calloc((size_t)(n > 0 ? n : 1), sizeof *t);
	uint64_t(*shapes)[2] = calloc((size_t)(n > 0 ? n : 1), sizeof *shapes);
	st_writer *w = safetensors_writer_new();
	if (!path || !t || !shapes || !w) {
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory saving the LoRA adapter");
		goto out;
	}
	lora_tensors(a, t);
	for (int i = 0; i < n && rc >= 0; i++) {
		shapes[i][0] = (uint64_t)t[i].shape[0];
		shapes[i][1] = (uint64_t)t[i].shape[1];
		rc = safetensors_writer_add(w, t[i].name, ST_F32, 2, shapes[i], t[i].data, err);
	}
	if (rc >= 0) rc = safetensors_writer_meta(w, "format", "pt", err);
	snprintf(path, plen, "%s/adapter_model.safetensors", dir);
	if (rc >= 0) rc = safetensors_writer_write(w, path, err);
	if (rc < 0) goto out;
	if (config_text(a, base_model_name, &b) != 0) {
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory saving the LoRA adapter");
		goto out;
	}
	snprintf(path, plen, "%s/adapter_config.json", dir);
	atomic_file *af = atomic_open(path, err);
	if (!af) {
		rc = -SFT_EXIT_RUNTIME;
		goto out;
	}
	if (fwrite(b.buf, 1, b.len, af->fp) != b.len) {
		atomic_abort(af);
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write failed: %s", path, strerror(errno));
		goto out;
	}
	rc = atomic_commit(af, err);
out:
	safetensors_writer_free(w);
	free(shapes);
	free(t);
	free(b.buf);
	free(path);
	return rc < 0 ? rc : 0;
}

/* ---- load ------------------------------------------------------------------------------------ */

/* name with ".default" before ".weight" (PEFT's in-memory name; some tools save it) */
static void default_name(char *dst, size_t cap, const char *name)
{
	size_t n = strlen(name);
	snprintf(dst, cap, "%.*s.default.weight", (int)(n - 7), name); /* strip ".weight" */
}

lora_adapter *lora_load(const char *dir, const model_config *mc, sft_error *err)
{
	lora_adapter *a = NULL;
	st_file *f = NULL;
	char *text = NULL;
	model_tensor *t = NULL;
	char *expect = NULL; /* per file tensor: 1 when it was matched */
	size_t plen = strlen(dir) + 64, len = 0;
	char *cpath = malloc(plen), *spath = malloc(plen);
	int rc = 0;
	if (!cpath || !spath) {
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		goto out;
	}
	snprintf(cpath, plen, "%s/adapter_config.json", dir);
	snprintf(spath, plen, "%s/adapter_model.safetensors", dir);
	text = fs_read_file(cpath, &len, err); /* a missing file: SFT_EXIT_USAGE, as fs_read_file */
	if (!text) {
		rc = -(err ? err->code : SFT_EXIT_RUNTIME);
		goto out;
	}
	lora_config lc;
	if ((rc = lora_config_parse_json(text, len, cpath, mc->n_layers, &lc, err)) < 0) goto out;
	if (!(a = lora_new(mc, &lc, err))) {
		rc = -1;
		if (err && err->code == SFT_EXIT_USAGE) err->code = SFT_EXIT_DATA;
		sft_error_prefix(err, "%s", cpath);
		goto out;
	}
	if (!(f = safetensors_open(spath, err))) {
		rc = -1;
		goto out;
	}
	int n = lora_tensors(a, NULL);
	t = calloc((size_t)n, sizeof *t);
	expect = calloc(f->n_tensors + 1, 1);
	if (!t || !expect) {
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		goto out;
	}
	lora_tensors(a, t);
	for (int i = 0; i < n; i++) {
		char alt[160];
		const st_tensor *st = safetensors_find(f, t[i].name);
		if (!st) {
			default_name(alt, sizeof alt, t[i].name);
			st = safetensors_find(f, alt);
		}
		if (!st) {
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%s': missing", spath, t[i].name);
			goto out;
		}
		expect[st - f->tensors] = 1;
		if (st->n_dims != 2 || st->shape[0] != (uint64_t)t[i].shape[0] ||
		    st->shape[1] != (uint64_t)t[i].shape[1]) {
			char got[96] = "";
			size_t gl = 0;
			for (int d = 0; d < st->n_dims && gl < sizeof got - 24; d++)
				gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%llu", d ? ", " : "",
						       (unsigned long long)st->shape[d]);
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%s': shape [%s], expected [%lld, %lld]",
					   spath, st->name, got, (long long)t[i].shape[0], (long long)t[i].shape[1]);
			goto out;
		}
		if (st->dtype != ST_F32 && st->dtype != ST_BF16 && st->dtype != ST_F16) {
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%s': dtype %s (expected F32, BF16 or F16)",
					   spath, st->name, st_dtype_name(st->dtype));
			goto out;
		}
		if ((rc = safetensors_tensor_to_f32(st, t[i].data, err)) < 0) goto out;
	}
	for (size_t i = 0; i < f->n_tensors; i++)
		if (!expect[i]) {
			rc = sft_error_set(err, SFT_EXIT_DATA,
					   "%s: tensor '%s': not a LoRA tensor of the targeted modules (%s)", spath,
					   f->tensors[i].name, cpath);
			goto out;
		}
out:
	safetensors_close(f);
	free(expect);
	free(t);
	free(text);
	free(cpath);
	free(spath);
	if (rc < 0) {
		lora_free(a);
		return NULL;
	}
	return a;
}

/* W += scale * B @ A for each targeted linear; the weight of kind bit k in layer l. */
static float *lora_base_weight(model *m, int l, int k)
{
	model_layer *ly = &m->layers[l];
	float *w[LORA_N_KINDS] = {ly->wq, ly->wk, ly->wv, ly->wo, ly->w_gate, ly->w_up, ly->w_down};
	return w[k];
}

int lora_merge_into(model *m, const lora_adapter *a, sft_error *err)
{
	if (a->n_layers != m->cfg.n_layers)
		return sft_error_set(err, SFT_EXIT_DATA, "adapter has %d layers, the model %d", a->n_layers,
				     m->cfg.n_layers);
	for (int l = 0; l < a->n_layers; l++)
		for (int k = 0; k < LORA_N_KINDS; k++) {
			const lora_pair *p = &a->pairs[l][k];
			if (!p->A) continue;
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->out, p->in, p->r, a->scale, p->B, p->r,
				    p->A, p->in, 1.0f, lora_base_weight(m, l, k), p->in);
		}
	return 0;
}
