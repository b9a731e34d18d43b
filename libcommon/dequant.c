/* dequant.c - GGML block formats to fp32. Each block is decoded on its own (OpenMP over
 * blocks for big tensors); inner loops are plain index arithmetic over the block's bytes
 * so the compiler can vectorize them. Multi-byte fields are read with memcpy because
 * GGUF tensor data is only 32-byte aligned as a whole and blocks have odd sizes. */
#include "dequant.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define QK_K 256

/* ---- scalar conversions ---- */

static inline float bits_to_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static inline uint32_t f32_to_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* Branch-free and exact: normal numbers are rebiased; a subnormal m*2^-24 is built as
 * the fp32 number 2^-14 + m*2^-24 from which 2^-14 is subtracted; the difference is a
 * normal fp32 number, so the subtraction is exact (also under FTZ/DAZ). Checked against
 * an ldexpf formula for all 65536 inputs in tests/unit/test_dequant.c. */
float sft_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t o = (uint32_t)(h & 0x7fff) << 13; /* exponent and mantissa in fp32 position */
	uint32_t e = o & 0x0f800000u;
	uint32_t normal = o + (112u << 23);        /* bias 15 -> 127 */
	uint32_t infnan = o + (224u << 23);        /* exponent 31 -> 255, payload kept */
	float sub = bits_to_f32(o + (113u << 23)) - bits_to_f32(113u << 23);
	uint32_t r = e == 0x0f800000u ? infnan : e == 0 ? f32_to_bits(sub) : normal;
	return bits_to_f32(r | sign);
}

float sft_bf16_to_f32(uint16_t b)
{
	return bits_to_f32((uint32_t)b << 16);
}

uint16_t sft_f32_to_f16(float f)
{
	uint32_t x = f32_to_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	uint32_t ax = x & 0x7fffffffu;
	if (ax > 0x7f800000u) /* NaN: quiet, keep the top payload bits */
		return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
	if (ax >= 0x47800000u) /* >= 65536 (and inf) */
		return (uint16_t)(sign | 0x7c00);
	if (ax < 0x38800000u) { /* below 2^-14: fp16 subnormal or zero */
		if (ax < 0x33000000u) /* < 2^-25: rounds to zero */
			return sign;
		uint32_t e = ax >> 23;
		uint32_t m = (ax & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e; /* 14..24 */
		uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (r & 1)))
			r++;
		return (uint16_t)(sign | r);
	}
	uint32_t r = (ax - 0x38000000u) >> 13, rem = ax & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
		r++; /* may carry into the exponent, up to 0x7c00 = inf: correct */
	return (uint16_t)(sign | r);
}

uint16_t sft_f32_to_bf16(float f)
{
	uint32_t x = f32_to_bits(f);
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 64); /* quiet NaN */
	return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* ---- type table ---- */

static const struct {
	const char *name;
	uint16_t blk, bytes;
	uint8_t deq;
} ttab[GGML_TYPE_MAX] = {
	[GGML_TYPE_F32] = { "F32", 1, 4, 1 },       [GGML_TYPE_F16] = { "F16", 1, 2, 1 },
	[GGML_TYPE_Q4_0] = { "Q4_0", 32, 18, 1 },   [GGML_TYPE_Q4_1] = { "Q4_1", 32, 20, 1 },
	[GGML_TYPE_Q5_0] = { "Q5_0", 32, 22, 1 },   [GGML_TYPE_Q5_1] = { "Q5_1", 32, 24, 1 },
	[GGML_TYPE_Q8_0] = { "Q8_0", 32, 34, 1 },   [GGML_TYPE_Q8_1] = { "Q8_1", 32, 36, 0 },
	[GGML_TYPE_Q2_K] = { "Q2_K", 256, 84, 1 },  [GGML_TYPE_Q3_K] = { "Q3_K", 256, 110, 1 },
	[GGML_TYPE_Q4_K] = { "Q4_K", 256, 144, 1 }, [GGML_TYPE_Q5_K] = { "Q5_K", 256, 176, 1 },
	[GGML_TYPE_Q6_K] = { "Q6_K", 256, 210, 1 }, [GGML_TYPE_Q8_K] = { "Q8_K", 256, 292, 1 },
	[16] = { "IQ2_XXS", 256, 66, 0 },           [17] = { "IQ2_XS", 256, 74, 0 },
	[18] = { "IQ3_XXS", 256, 98, 0 },           [19] = { "IQ1_S", 256, 50, 0 },
	[20] = { "IQ4_NL", 32, 18, 0 },             [21] = { "IQ3_S", 256, 110, 0 },
	[22] = { "IQ2_S", 256, 82, 0 },             [23] = { "IQ4_XS", 256, 136, 0 },
	[GGML_TYPE_I8] = { "I8", 1, 1, 1 },         [GGML_TYPE_I16] = { "I16", 1, 2, 1 },
	[GGML_TYPE_I32] = { "I32", 1, 4, 1 },       [GGML_TYPE_I64] = { "I64", 1, 8, 1 },
	[GGML_TYPE_F64] = { "F64", 1, 8, 1 },       [29] = { "IQ1_M", 256, 56, 0 },
	[GGML_TYPE_BF16] = { "BF16", 1, 2, 1 },     [34] = { "TQ1_0", 256, 54, 0 },
	[35] = { "TQ2_0", 256, 66, 0 },             [39] = { "MXFP4", 32, 17, 0 },
};

static int known(int t) { return t >= 0 && t < GGML_TYPE_MAX && ttab[t].name; }

const char *ggml_type_name(int type) { return known(type) ? ttab[type].name : "unknown"; }

int ggml_type_from_name(const char *name)
{
	if (!name)
		return -1;
	for (int t = 0; t < GGML_TYPE_MAX; t++)
		if (ttab[t].name && strcasecmp(ttab[t].name, name) == 0)
			return t;
	return -1;
}

size_t ggml_type_block_size(int type) { return known(type) ? ttab[type].blk : 0; }

size_t ggml_type_size_bytes(int type, size_t n_elements)
{
	if (!known(type) || n_elements % ttab[type].blk)
		return 0;
	size_t nb = n_elements / ttab[type].blk;
	if (nb > SIZE_MAX / ttab[type].bytes)
		return 0;
	return nb * ttab[type].bytes;
}

int dequant_supported(int type) { return known(type) && ttab[type].deq; }

/* ---- block decoders: b = one block's bytes, y = its block-size outputs ---- */

static inline float rd_f16(const uint8_t *p)
{
	uint16_t h;
	memcpy(&h, p, 2);
	return sft_f16_to_f32(h);
}

static void blk_q4_0(const uint8_t *b, float *y) /* d f16 | qs[16] */
{
	const float d = rd_f16(b);
	const uint8_t *qs = b + 2;
	for (int j = 0; j < 16; j++) {
		y[j] = d * (float)((int)(qs[j] & 0x0f) - 8);
		y[j + 16] = d * (float)((int)(qs[j] >> 4) - 8);
	}
}

static void blk_q4_1(const uint8_t *b, float *y) /* d f16 | m f16 | qs[16] */
{
	const float d = rd_f16(b), m = rd_f16(b + 2);
	const uint8_t *qs = b + 4;
	for (int j = 0; j < 16; j++) {
		float p0 = d * (float)(qs[j] & 0x0f), p1 = d * (float)(qs[j] >> 4);
		y[j] = p0 + m;
		y[j + 16] = p1 + m;
	}
}

static void blk_q5_0(const uint8_t *b, float *y) /* d f16 | qh u32 | qs[16] */
{
	const float d = rd_f16(b);
	uint32_t qh;
	memcpy(&qh, b + 2, 4);
	const uint8_t *qs = b + 6;
	for (int j = 0; j < 16; j++) {
		int x0 = (int)((qs[j] & 0x0f) | (((qh >> j) & 1) << 4)) - 16;
		int x1 = (int)((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
		y[j] = d * (float)x0;
		y[j + 16] = d * (float)x1;
	}
}

static void blk_q5_1(const uint8_t *b, float *y) /* d f16 | m f16 | qh u32 | qs[16] */
{
	const float d = rd_f16(b), m = rd_f16(b + 2);
	uint32_t qh;
	memcpy(&qh, b + 4, 4);
	const uint8_t *qs = b + 8;
	for (int j = 0; j < 16; j++) {
		float p0 = d * (float)((qs[j] & 0x0f) | (((qh >> j) & 1) << 4));
		float p1 = d * (float)((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
		y[j] = p0 + m;
		y[j + 16] = p1 + m;
	}
}

static void blk_q8_0(const uint8_t *b, float *y) /* d f16 | qs int8[32] */
{
	const float d = rd_f16(b);
	const int8_t *qs = (const int8_t *)(b + 2);
	for (int j = 0; j < 32; j++)
		y[j] = d * (float)qs[j];
}

/* Q2_K: scales[16] (lo nibble scale, hi nibble min) | qs[64] (2 bits) | d f16 | dmin f16.
 * Element e: half = e/128, shift = (e%128)/32, l = e%32, group of 16 = e/16. */
static void blk_q2_k(const uint8_t *b, float *y)
{
	const uint8_t *sc = b, *qs = b + 16;
	const float d = rd_f16(b + 80), dmin = rd_f16(b + 82);
	for (int g = 0; g < 16; g++) {
		const float dl = d * (float)(sc[g] & 0x0f), ml = dmin * (float)(sc[g] >> 4);
		for (int k = 0; k < 16; k++) {
			int e = g * 16 + k;
			int q = (qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
			float p = dl * (float)q;
			y[e] = p - ml;
		}
	}
}

/* Q3_K: hmask[32] | qs[64] (low 2 bits) | scales[12] (16 x 6-bit, biased by 32) | d f16.
 * The high bit (hmask) set means no -4 offset. */
static void blk_q3_k(const uint8_t *b, float *y)
{
	const uint8_t *hm = b, *qs = b + 32, *s = b + 96;
	const float d = rd_f16(b + 108);
	for (int g = 0; g < 16; g++) {
		int lo = (s[g % 8] >> (4 * (g / 8))) & 0x0f;
		int hi = (s[8 + g % 4] >> (2 * (g / 4))) & 0x03;
		const float dl = d * (float)((int8_t)(uint8_t)(lo | (hi << 4)) - 32);
		for (int k = 0; k < 16; k++) {
			int e = g * 16 + k;
			int ql = (qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
			int h = (hm[e % 32] >> (e / 32)) & 1;
			y[e] = dl * (float)(ql - ((h ^ 1) << 2));
		}
	}
}

/* 6-bit scales and mins of Q4_K/Q5_K, 8 of each packed in 12 bytes. */
static void k_scale_min(const uint8_t *s, uint8_t sc[8], uint8_t mn[8])
{
	for (int j = 0; j < 4; j++) {
		sc[j] = s[j] & 0x3f;
		mn[j] = s[4 + j] & 0x3f;
		sc[4 + j] = (uint8_t)((s[8 + j] & 0x0f) | ((s[j] >> 2) & 0x30));
		mn[4 + j] = (uint8_t)((s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30));
	}
}

/* Q4_K: d f16 | dmin f16 | scales[12] | qs[128]; 8 sub-blocks of 32, sub-block sb uses
 * nibble sb%2 of bytes (sb/2)*32 .. +32. */
static void blk_q4_k(const uint8_t *b, float *y)
{
	const float d = rd_f16(b), dmin = rd_f16(b + 2);
	uint8_t sc[8], mn[8];
	k_scale_min(b + 4, sc, mn);
	const uint8_t *qs = b + 16;
	for (int sb = 0; sb < 8; sb++) {
		const float dl = d * (float)sc[sb], ml = dmin * (float)mn[sb];
		const uint8_t *q = qs + (sb / 2) * 32;
		const int sh = 4 * (sb % 2);
		for (int l = 0; l < 32; l++) {
			float p = dl * (float)((q[l] >> sh) & 0x0f);
			y[sb * 32 + l] = p - ml;
		}
	}
}

/* Q5_K: d f16 | dmin f16 | scales[12] | qh[32] | qs[128]; high bit of sub-block sb is bit
 * sb of qh[l]. */
static void blk_q5_k(const uint8_t *b, float *y)
{
	const float d = rd_f16(b), dmin = rd_f16(b + 2);
	uint8_t sc[8], mn[8];
	k_scale_min(b + 4, sc, mn);
	const uint8_t *qh = b + 16, *qs = b + 48;
	for (int sb = 0; sb < 8; sb++) {
		const float dl = d * (float)sc[sb], ml = dmin * (float)mn[sb];
		const uint8_t *q = qs + (sb / 2) * 32;
		const int sh = 4 * (sb % 2);
		for (int l = 0; l < 32; l++) {
			int v = ((q[l] >> sh) & 0x0f) | (((qh[l] >> sb) & 1) << 4);
			float p = dl * (float)v;
			y[sb * 32 + l] = p - ml;
		}
	}
}

/* Q6_K: ql[128] | qh[64] | scales int8[16] | d f16. Element e: half = e/128, r = e%128;
 * low nibble from ql[half*64 + r%64] (nibble r/64), 2 high bits from
 * qh[half*32 + r%32] (shift 2*(r/32)); value - 32; scale per 16 elements. */
static void blk_q6_k(const uint8_t *b, float *y)
{
	const uint8_t *ql = b, *qh = b + 128;
	const int8_t *sc = (const int8_t *)(b + 192);
	const float d = rd_f16(b + 208);
	for (int g = 0; g < 16; g++) {
		const float dl = d * (float)sc[g];
		for (int k = 0; k < 16; k++) {
			int e = g * 16 + k, half = e / 128, r = e % 128;
			int lo = (ql[half * 64 + r % 64] >> (4 * (r / 64))) & 0x0f;
			int hi = (qh[half * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
			y[e] = dl * (float)((lo | (hi << 4)) - 32);
		}
	}
}

static void blk_q8_k(const uint8_t *b, float *y) /* d f32 | qs int8[256] | bsums int16[16] */
{
	float d;
	memcpy(&d, b, 4);
	const int8_t *qs = (const int8_t *)(b + 4);
	for (int j = 0; j < QK_K; j++)
		y[j] = d * (float)qs[j];
}

typedef void (*blk_fn)(const uint8_t *, float *);

static blk_fn block_decoder(int t)
{
	switch (t) {
	case GGML_TYPE_Q4_0: return blk_q4_0;
	case GGML_TYPE_Q4_1: return blk_q4_1;
	case GGML_TYPE_Q5_0: return blk_q5_0;
	case GGML_TYPE_Q5_1: return blk_q5_1;
	case GGML_TYPE_Q8_0: return blk_q8_0;
	case GGML_TYPE_Q2_K: return blk_q2_k;
	case GGML_TYPE_Q3_K: return blk_q3_k;
	case GGML_TYPE_Q4_K: return blk_q4_k;
	case GGML_TYPE_Q5_K: return blk_q5_k;
	case GGML_TYPE_Q6_K: return blk_q6_k;
	case GGML_TYPE_Q8_K: return blk_q8_k;
	default: return NULL;
	}
}

/* Parallelize only where the thread start-up cost is amortized. */
#define PAR_MIN_ELEMS (1u << 16)

static void convert_scalar(int t, const uint8_t *s, size_t n, float *dst)
{
	ptrdiff_t i, nn = (ptrdiff_t)n;
	switch (t) {
	case GGML_TYPE_F32:
		memcpy(dst, s, n * 4);
		break;
	case GGML_TYPE_F16:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
		for (i = 0; i < nn; i++)
			dst[i] = rd_f16(s + 2 * i);
		break;
	case GGML_TYPE_BF16:
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
		for (i = 0; i < nn; i++) {
			uint16_t h;
			memcpy(&h, s + 2 * i, 2);
			dst[i] = sft_bf16_to_f32(h);
		}
		break;
	case GGML_TYPE_F64:
		for (i = 0; i < nn; i++) {
			double v;
			memcpy(&v, s + 8 * i, 8);
			dst[i] = (float)v;
		}
		break;
	case GGML_TYPE_I8:
		for (i = 0; i < nn; i++)
			dst[i] = (float)(int8_t)s[i];
		break;
	case GGML_TYPE_I16:
		for (i = 0; i < nn; i++) {
			int16_t v;
			memcpy(&v, s + 2 * i, 2);
			dst[i] = (float)v;
		}
		break;
	case GGML_TYPE_I32:
		for (i = 0; i < nn; i++) {
			int32_t v;
			memcpy(&v, s + 4 * i, 4);
			dst[i] = (float)v;
		}
		break;
	case GGML_TYPE_I64:
		for (i = 0; i < nn; i++) {
			int64_t v;
			memcpy(&v, s + 8 * i, 8);
			dst[i] = (float)v;
		}
		break;
	}
}

int dequant_to_f32(int ggml_type, const void *src, size_t n_elements, float *dst, sft_error *err)
{
	if (!dequant_supported(ggml_type))
		return sft_error_set(err, SFT_EXIT_DATA, "cannot dequantize ggml type %s (%d)", ggml_type_name(ggml_type),
		                     ggml_type);
	size_t blk = ttab[ggml_type].blk, bytes = ttab[ggml_type].bytes;
	if (n_elements % blk)
		return sft_error_set(err, SFT_EXIT_DATA, "%zu elements is not a multiple of the %s block size %zu",
		                     n_elements, ttab[ggml_type].name, blk);
	if (n_elements == 0)
		return 0;
	const uint8_t *s = src;
	blk_fn fn = block_decoder(ggml_type);
	if (!fn) {
		convert_scalar(ggml_type, s, n_elements, dst);
		return 0;
	}
	ptrdiff_t nb = (ptrdiff_t)(n_elements / blk);
#pragma omp parallel for schedule(static) if (n_elements >= PAR_MIN_ELEMS)
	for (ptrdiff_t i = 0; i < nb; i++)
		fn(s + (size_t)i * bytes, dst + (size_t)i * blk);
	return 0;
}

uint64_t gguf_tensor_n_elements(const gguf_tensor *t)
{
	uint64_t ne = 1;
	for (uint32_t d = 0; d < t->n_dims && d < 4; d++)
		ne *= t->dims[d]; /* gguf_open checked this product for overflow */
	return ne;
}

int dequant_gguf_tensor(const gguf_file *g, const gguf_tensor *t, float *dst, sft_error *err)
{
	const char *file = g && g->path ? g->path : "gguf";
	int nl = (int)(t->name.n > 200 ? 200 : t->name.n);
	uint64_t ne = gguf_tensor_n_elements(t);
	if (!t->data)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%.*s': its data is not in the file", file, nl,
		                     t->name.s);
	if (ne > SIZE_MAX || (dequant_supported((int)t->type) && ggml_type_size_bytes((int)t->type, (size_t)ne) != t->size))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%.*s': size does not match %s x %llu", file, nl,
		                     t->name.s, ggml_type_name((int)t->type), (unsigned long long)ne);
	if (dequant_to_f32((int)t->type, t->data, (size_t)ne, dst, err) < 0)
		return sft_error_prefix(err, "%s: tensor '%.*s'", file, nl, t->name.s);
	return 0;
}
