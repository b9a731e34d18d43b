/* gguf.h - GGUF (v2/v3) reader: header, key/value metadata (all types, arrays), tensor
 * infos with absolute data offsets, over an mmap of the file (or a caller's buffer).
 *
 * Ownership: gguf_open()/gguf_open_mem() return a gguf_file owned by the caller, released
 * with gguf_close(). Every pointer obtained from it (keys, strings, array data, tensor
 * names, tensor data) points into the mapping and lives until gguf_close(). Strings are
 * NOT NUL-terminated: use the gguf_str length. Numeric array data may be unaligned: read
 * it with memcpy (or the gguf_arr_* helpers).
 * Errors name the byte offset: "file: offset N: what went wrong". Thread safety: a
 * gguf_file is immutable after open; concurrent reads are safe. */
#ifndef SFT_GGUF_H
#define SFT_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"

enum gguf_type {
	GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4, GGUF_INT32 = 5,
	GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10, GGUF_INT64 = 11,
	GGUF_FLOAT64 = 12, GGUF_TYPE_COUNT
};

typedef struct gguf_str { const char *s; uint64_t n; } gguf_str;

typedef struct gguf_kv {
	gguf_str key;
	uint32_t type;          /* enum gguf_type */
	uint32_t arr_type;      /* element type when type == GGUF_ARRAY */
	uint64_t arr_n;         /* element count when type == GGUF_ARRAY */
	const uint8_t *data;    /* scalar value, or first array element (strings: u64 len + bytes each) */
	uint64_t offset;        /* byte offset of the key in the file */
	uint64_t size;          /* bytes of the whole KV record (key + type + value) */
	union { uint64_t u; int64_t i; double f; gguf_str s; } v; /* decoded scalar */
	uint64_t *str_off;      /* private: offsets of string-array elements from data */
} gguf_kv;

typedef struct gguf_tensor {
	gguf_str name;
	uint32_t n_dims;
	uint64_t dims[4];       /* ne[0] is the fastest-varying dimension (ggml order) */
	uint32_t type;          /* ggml type id */
	uint64_t offset;        /* offset relative to the data section */
	uint64_t file_offset;   /* absolute offset in the file */
	uint64_t size;          /* bytes, 0 when the type is unknown */
	const void *data;       /* pointer into the mapping, NULL if the data lies past the end */
} gguf_tensor;

typedef struct gguf_file {
	uint32_t version;
	uint64_t n_kv, n_tensors;
	gguf_kv *kv;
	gguf_tensor *tensors;
	uint64_t alignment;     /* general.alignment or 32 */
	uint64_t data_offset;   /* absolute offset of the tensor data section */
	uint64_t kv_begin, kv_end; /* byte range of the KV section */
	const uint8_t *base; size_t size;
	int mapped;             /* 1 when base is an mmap owned by this struct */
	char *path;
} gguf_file;

/* Opens and parses path. vocab-only files (no tensors, or data past EOF) are accepted;
 * tensor->data is NULL for tensors whose bytes are not in the file. */
gguf_file *gguf_open(const char *path, sft_error *err);
/* 1 when path is a regular file that starts with the GGUF magic (read: 4 bytes), else 0:
 * how the model and tokenizer loaders tell a GGUF file from anything else, whatever its name. */
int gguf_path_is_gguf(const char *path);
/* Parses a buffer the caller keeps alive until gguf_close(). */
gguf_file *gguf_open_mem(const void *buf, size_t len, const char *name, sft_error *err);
void gguf_close(gguf_file *g); /* NULL safe */

const gguf_kv *gguf_find(const gguf_file *g, const char *key); /* NULL if absent */
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);

/* Typed getters: 0 on success, -1 if absent or of an incompatible type. */
int gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out); /* any unsigned/signed int >= 0, bool */
int gguf_get_i64(const gguf_file *g, const char *key, int64_t *out);
int gguf_get_f64(const gguf_file *g, const char *key, double *out);
int gguf_get_bool(const gguf_file *g, const char *key, int *out);
int gguf_get_str(const gguf_file *g, const char *key, gguf_str *out);

/* Array access. gguf_arr_str walks string arrays in O(1) per call after the first full
 * walk (offsets are cached at open). Element index must be < kv->arr_n. */
int gguf_arr_str(const gguf_kv *kv, uint64_t i, gguf_str *out);
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);  /* numeric arrays */
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i); /* integer/bool arrays (floats truncated, 0 when out of range) */

size_t gguf_type_size(uint32_t type); /* scalar size, 0 for string/array/unknown */
const char *gguf_type_name(uint32_t type);
/* bytes for n elements of ggml type `type`, 0 if unknown */
uint64_t gguf_ggml_nbytes(uint32_t type, uint64_t n);

#endif
