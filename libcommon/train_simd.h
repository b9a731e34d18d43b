/* train_simd.h - element-wise kernels of the trainer (train.c, lora.c): LoRA dropout masks
 * from a counter-based generator, kept as bits, and the gated-MLP activations with a
 * vectorized exp. Each has an AVX-512 path and a portable one (SFT_NO_AVX512=1 selects the
 * portable one, as ops_cpu.c); both give the same mask bits. Every function splits its loop
 * over the OpenMP threads in fixed chunks: results do not depend on the thread count.
 * Nothing owned, nothing allocated. */
#ifndef SFT_TRAIN_SIMD_H
#define SFT_TRAIN_SIMD_H

#include <stddef.h>
#include <stdint.h>

/* Dropout keep bits for n elements of the stream `key`: bit (i % 16) of bits[i / 16] is 1
 * when element i is kept, i.e. when the 32-bit hash of (key, i) is >= thr (drop probability
 * thr / 2^32, see tsimd_drop_threshold). bits must hold (n + 15) / 16 words. */
void tsimd_drop_bits(uint16_t *bits, size_t n, uint64_t key, uint32_t thr);
/* The threshold for drop probability p in [0, 1): round(p * 2^32). */
uint32_t tsimd_drop_threshold(double p);
/* The hash itself (tests: the mask of element i is kept iff tsimd_drop_hash(key, i) >= thr). */
uint32_t tsimd_drop_hash(uint64_t key, uint64_t i);

/* dst[i] = bit i ? x[i] * keep : 0 (dst may equal x). */
void tsimd_mask_mul(float *dst, const float *x, const uint16_t *bits, float keep, size_t n);
/* dst[i] += bit i ? g[i] * keep : 0. */
void tsimd_mask_mul_add(float *dst, const float *g, const uint16_t *bits, float keep, size_t n);
/* dst[i] = x[i] * mask[i] (an explicit float mask). */
void tsimd_mul(float *dst, const float *x, const float *mask, size_t n);
/* dst[i] += g[i] * mask[i]. */
void tsimd_mul_add(float *dst, const float *g, const float *mask, size_t n);

/* SwiGLU: out = silu(gate) * up; backward dgate = dout * up * silu'(gate),
 * dup = dout * silu(gate) (both written, not accumulated; either may be NULL). The exp is
 * simd_exp512's on the AVX-512 path (|relative error| < 2e-7), libm's otherwise. */
void tsimd_swiglu_fwd(float *out, const float *gate, const float *up, size_t n);
void tsimd_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);

/* LoRA's rank-r products with the dropout mask applied from its bits (bits NULL: none),
 * AVX-512 only: call them when tsimd_lora_ok(r) (AVX-512 present, SFT_NO_AVX512 unset,
 * 1 <= r <= TSIMD_LORA_MAX_R); otherwise lora.c uses cblas_sgemm and the masked products
 * above. Forward: xa = (x * mask) @ A^T; y += scale * xa @ B^T (set: y = ...). Backward:
 * dB (or NULL) += scale * dy^T @ xa; t = scale * dy @ B (N, r) scratch; dA (or NULL) +=
 * t^T @ (x * mask); dx (or NULL) += (t @ A) * mask (set_dx: dx = ...). */
#define TSIMD_LORA_MAX_R 64
int tsimd_lora_ok(int r);
void tsimd_lora_forward(float *y, float *xa, const float *x, const uint16_t *bits, float keep, const float *A,
			const float *B, float scale, int N, int in, int r, int out, int set);
void tsimd_lora_backward(float *dx, float *dA, float *dB, float *t, const float *dy, const float *x,
			 const uint16_t *bits, float keep, const float *xa, const float *A, const float *B, float scale,
			 int N, int in, int r, int out, int set_dx);

#endif
