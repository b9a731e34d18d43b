/* dequant.h - GGML tensor types (as stored in GGUF files) dequantized to fp32, plus the
 * exact fp16/bf16 -> fp32 conversions shared with the safetensors reader.
 *
 * Ownership: nothing here allocates. Callers own src and dst; dst must hold n_elements
 * floats. src may be unaligned (every multi-byte field is read with memcpy).
 * Thread safety: all functions are pure; dequant_to_f32 may use OpenMP over blocks for
 * large tensors.
 *
 * Block layouts follow ggml (llama.cpp ggml-common.h / gguf-py quants.py). The arithmetic
 * is done in fp32 in the same order as the reference (e.g. Q4_K: (d*sc)*q - (dmin*m)), so
 * results are bit-identical to gguf-py's numpy dequantization (checked by
 * tests/unit/test_dequant.c against fixtures from scripts/gen-weights-fixtures.py). */
#ifndef SFT_DEQUANT_H
#define SFT_DEQUANT_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"
#include "gguf.h"

/* ggml type ids (the numbers stored in GGUF tensor infos). */
enum ggml_type_id {
	GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3,
	GGML_TYPE_Q5_0 = 6, GGML_TYPE_Q5_1 = 7, GGML_TYPE_Q8_0 = 8, GGML_TYPE_Q8_1 = 9,
	GGML_TYPE_Q2_K = 10, GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12, GGML_TYPE_Q5_K = 13,
	GGML_TYPE_Q6_K = 14, GGML_TYPE_Q8_K = 15,
	GGML_TYPE_I8 = 24, GGML_TYPE_I16 = 25, GGML_TYPE_I32 = 26, GGML_TYPE_I64 = 27,
	GGML_TYPE_F64 = 28, GGML_TYPE_BF16 = 30,
	GGML_TYPE_MAX = 42
};

/* Exact conversions (subnormals, signed zeros, inf kept; NaN payload kept, quiet bit
 * unchanged). */
float sft_f16_to_f32(uint16_t h);
float sft_bf16_to_f32(uint16_t b);
/* Round-to-nearest-even conversions from fp32 (NaN stays NaN, overflow -> inf). */
uint16_t sft_f32_to_f16(float f);
uint16_t sft_f32_to_bf16(float f);

/* "Q4_K" etc.; "unknown" for ids we do not know. */
const char *ggml_type_name(int type);
/* ggml id from a name such as "q4_k" (case-insensitive); -1 if unknown. */
int ggml_type_from_name(const char *name);
/* Elements per block (1 for scalar types), 0 if unknown. */
size_t ggml_type_block_size(int type);
/* Bytes for n_elements of `type`; 0 if the type is unknown, n_elements is not a multiple
 * of the block size, or the size overflows. */
size_t ggml_type_size_bytes(int type, size_t n_elements);
/* 1 if dequant_to_f32 supports the type. */
int dequant_supported(int type);

/* Dequantizes n_elements values of ggml type `ggml_type` from src (ggml_type_size_bytes
 * bytes) into dst (n_elements floats). Errors (SFT_EXIT_DATA): unsupported type,
 * n_elements not a multiple of the block size. Returns 0 or a negative code. */
int dequant_to_f32(int ggml_type, const void *src, size_t n_elements, float *dst, sft_error *err);

/* Dequantizes a whole GGUF tensor (product of its dims elements) into dst. Errors name
 * the file and the tensor: "m.gguf: tensor 'blk.0.attn_q.weight': cannot dequantize ...",
 * also when the tensor's bytes are not in the file (vocab-only GGUF). */
int dequant_gguf_tensor(const gguf_file *g, const gguf_tensor *t, float *dst, sft_error *err);
/* Element count of a GGUF tensor (product of dims). */
uint64_t gguf_tensor_n_elements(const gguf_tensor *t);

#endif
