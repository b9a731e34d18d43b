/* safetensors.h - safetensors reader (one file, or a sharded Hugging Face model directory
 * with model.safetensors.index.json) and writer (one file, or shards + index as
 * transformers' save_pretrained lays them out).
 *
 * File format: u64 little-endian header length N, N bytes of JSON header
 * {"__metadata__":{str:str}, "<name>":{"dtype":"F32","shape":[..],"data_offsets":[b,e]}},
 * then the data section; offsets are relative to the data section, which tensors must
 * cover exactly (no gaps, no overlap), as the Python library checks.
 *
 * Ownership: safetensors_open, safetensors_open_mem and safetensors_model_open
 * return objects owned by the caller,
 * released with safetensors_close / safetensors_model_close (NULL safe). Every pointer
 * obtained from them (tensor structs, names, metadata strings, tensor data) lives until
 * that close. Tensor data points into an mmap and may be unaligned for files written by
 * other tools: read it with memcpy or convert with safetensors_tensor_to_f32.
 * A safetensors_writer borrows the name/shape/data pointers passed to _add until _write
 * returns (names and metadata are copied); free it with safetensors_writer_free.
 * Errors: SFT_EXIT_DATA for malformed files ("file: tensor 'x': what went wrong",
 * "file: invalid json header at byte N (line L, column C): ..."), SFT_EXIT_RUNTIME for
 * I/O. Thread safety: opened files are immutable; concurrent reads are safe. */
#ifndef SFT_SAFETENSORS_H
#define SFT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"

/* Values follow the order of the Rust library's Dtype enum: the writer sorts tensors by
 * this value descending (bigger alignment first), then by name, as safetensors does. */
enum st_dtype {
	ST_BOOL, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32,
	ST_U32, ST_F32, ST_C64, ST_F64, ST_I64, ST_U64, ST_DTYPE_COUNT
};

#define ST_MAX_DIMS 8

typedef struct st_tensor {
	const char *name;             /* NUL-terminated */
	int dtype;                    /* enum st_dtype */
	int n_dims;                   /* 0 for a scalar */
	uint64_t shape[ST_MAX_DIMS];  /* row-major, shape[n_dims-1] fastest (PyTorch order) */
	uint64_t n_elements;          /* product of shape (1 for a scalar) */
	uint64_t nbytes;              /* n_elements * dtype size */
	uint64_t file_offset;         /* absolute offset of the data in its file */
	const void *data;             /* nbytes bytes inside the mapping */
	const char *file;             /* path of the file holding it */
} st_tensor;

typedef struct st_file {
	char *path;
	const uint8_t *base; size_t size; int mapped;
	uint64_t header_len;          /* N: JSON header bytes (with padding) */
	uint64_t data_offset;         /* 8 + N */
	size_t n_tensors;
	st_tensor *tensors;           /* sorted by name (strcmp) for lookup */
	size_t n_meta;
	char **meta_keys, **meta_vals; /* __metadata__ in file order */
} st_file;

/* Single file (mmap) or a caller's buffer (kept alive until close). */
st_file *safetensors_open(const char *path, sft_error *err);
st_file *safetensors_open_mem(const void *buf, size_t len, const char *name, sft_error *err);
void safetensors_close(st_file *f);

const st_tensor *safetensors_find(const st_file *f, const char *name);   /* NULL if absent */
/* Like find, but a missing tensor is an error "file: no tensor 'name'" (SFT_EXIT_DATA). */
const st_tensor *safetensors_get(const st_file *f, const char *name, sft_error *err);
const char *safetensors_meta(const st_file *f, const char *key);        /* NULL if absent */

const char *st_dtype_name(int dtype);          /* "F32"; "unknown" */
int st_dtype_from_name(const char *name);      /* -1 if unknown */
size_t st_dtype_size(int dtype);               /* bytes per element, 0 if unknown */

/* Converts the tensor to fp32 into out (t->n_elements floats). F32/F16/BF16 exactly
 * (subnormals, inf, NaN kept); F64 and integer/bool types by value (rounded to nearest);
 * C64/F8 are an error "file: tensor 'x': cannot convert C64 to f32". */
int safetensors_tensor_to_f32(const st_tensor *t, float *out, sft_error *err);

/* ---- model: one file or a sharded directory ---- */

typedef struct st_model {
	char *path;                   /* directory (or the single file) given to open */
	char *index_path;             /* model.safetensors.index.json, NULL if none */
	size_t n_files;
	st_file **files;
	size_t n_tensors;
	const st_tensor **tensors;    /* every tensor of the model, sorted by name */
	uint64_t total_size;          /* metadata.total_size of the index (0 if absent) */
} st_model;

/* path: a .safetensors file, or a directory holding model.safetensors.index.json (shards
 * named in its weight_map, each required to hold the tensors mapped to it) or a single
 * model.safetensors. */
st_model *safetensors_model_open(const char *path, sft_error *err);
void safetensors_model_close(st_model *m);
const st_tensor *safetensors_model_find(const st_model *m, const char *name); /* NULL if absent */
/* Missing tensor: "<file or index>: no tensor 'name'" (SFT_EXIT_DATA). */
const st_tensor *safetensors_model_get(const st_model *m, const char *name, sft_error *err);

/* ---- writer ---- */

typedef struct st_writer st_writer;

st_writer *safetensors_writer_new(void);
void safetensors_writer_free(st_writer *w);
/* Adds a tensor; shape has n_dims entries (row-major), data holds product(shape) *
 * st_dtype_size(dtype) bytes. Name must be valid UTF-8 and unique. The name is copied;
 * shape and data are borrowed until the last write call. Insertion order matters only
 * for sharding (as in save_pretrained); inside a file tensors are sorted as the Python
 * library sorts them. */
int safetensors_writer_add(st_writer *w, const char *name, int dtype, int n_dims, const uint64_t *shape,
                           const void *data, sft_error *err);
/* Adds a __metadata__ entry (copied). Entries are written in insertion order; a key
 * set twice keeps its first position and the last value. */
int safetensors_writer_meta(st_writer *w, const char *key, const char *value, sft_error *err);
/* Writes one file atomically (temp + fsync + rename). With no metadata or a single
 * entry the bytes equal safetensors.numpy.save_file's for the same dict; with several
 * entries Python's own order is a random hash order, so only the entry order differs. */
int safetensors_writer_write(st_writer *w, const char *path, sft_error *err);
/* Writes dir/model-0000k-of-0000n.safetensors and dir/model.safetensors.index.json
 * (metadata.total_size, weight_map sorted, indent 2, as transformers writes it), splitting
 * in insertion order when the next tensor would push a shard past max_shard_bytes (a
 * tensor larger than that gets a shard of its own). With a single shard, writes
 * dir/model.safetensors and no index. Creates dir if needed; each file is atomic, the
 * index is written last. */
int safetensors_writer_write_sharded(st_writer *w, const char *dir, uint64_t max_shard_bytes, sft_error *err);

#endif
