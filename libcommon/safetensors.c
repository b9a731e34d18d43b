/* safetensors.c - reader (mmap + jansson header parse + the same validation the Python
 * library does) and writer (header JSON written by hand so the bytes match serde_json's
 * output in the Rust library: compact, same escaping, space padding to 8 bytes). */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic.h"
#include "dequant.h"

/* The Python/Rust library refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER 100000000ull

static const struct { const char *name; uint8_t size; } dtab[ST_DTYPE_COUNT] = {
	[ST_BOOL] = { "BOOL", 1 }, [ST_U8] = { "U8", 1 },   [ST_I8] = { "I8", 1 },
	[ST_F8_E5M2] = { "F8_E5M2", 1 }, [ST_F8_E4M3] = { "F8_E4M3", 1 },
	[ST_I16] = { "I16", 2 },   [ST_U16] = { "U16", 2 }, [ST_F16] = { "F16", 2 },
	[ST_BF16] = { "BF16", 2 }, [ST_I32] = { "I32", 4 }, [ST_U32] = { "U32", 4 },
	[ST_F32] = { "F32", 4 },   [ST_C64] = { "C64", 8 }, [ST_F64] = { "F64", 8 },
	[ST_I64] = { "I64", 8 },   [ST_U64] = { "U64", 8 },
};

const char *st_dtype_name(int d) { return d >= 0 && d < ST_DTYPE_COUNT ? dtab[d].name : "unknown"; }
size_t st_dtype_size(int d) { return d >= 0 && d < ST_DTYPE_COUNT ? dtab[d].size : 0; }

int st_dtype_from_name(const char *name)
{
	for (int d = 0; name && d < ST_DTYPE_COUNT; d++)
		if (strcmp(dtab[d].name, name) == 0)
			return d;
	return -1;
}

/* ---------------------------------------------------------------- reader */

static void file_free(st_file *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n_tensors; i++)
		free((char *)f->tensors[i].name);
	free(f->tensors);
	for (size_t i = 0; i < f->n_meta; i++) {
		free(f->meta_keys[i]);
		free(f->meta_vals[i]);
	}
	free(f->meta_keys);
	free(f->meta_vals);
	if (f->mapped && f->base)
		munmap((void *)f->base, f->size);
	free(f->path);
	free(f);
}

void safetensors_close(st_file *f) { file_free(f); }

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
	const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
	if (x->file_offset != y->file_offset)
		return x->file_offset < y->file_offset ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return 0;
}

/* Reads a non-negative JSON integer. */
static int json_u64(const json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

#define TNAME(t) (int)(strlen(t) > 200 ? 200 : strlen(t)), (t)

static int parse_tensor(st_file *f, const char *name, const json_t *o, st_tensor *t, sft_error *err)
{
	const char *p = f->path;
	t->name = strdup(name);
	if (!t->name)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", p);
	t->file = f->path;
	if (!json_is_object(o))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%.*s': header entry is not an object", p, TNAME(name));
	const json_t *dt = json_object_get(o, "dtype"), *sh = json_object_get(o, "shape"),
	             *off = json_object_get(o, "data_offsets");
	if (!json_is_string(dt))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%.*s': missing or non-string \"dtype\"", p,
		                     TNAME(name));
	t->dtype = st_dtype_from_name(json_string_value(dt));
	if (t->dtype < 0)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%.*s': unknown dtype '%.40s'", p, TNAME(name),
		                     json_string_value(dt));
	if (!json_is_array(sh))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%.*s': missing or non-array \"shape\"", p,
		                     TNAME(name));
	if (json_array_size(sh) > ST_MAX_DIMS)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%.*s': %zu dimensions, at most %d supported", p,
		                     TNAME(name), json_array_size(sh), ST_MAX_DIMS);
	t->n_dims = (int)json_array_size(sh);
	uint64_t ne = 1;
	int overflow = 0;
	for (int d = 0; d < t->n_dims; d++) {
		if (json_u64(json_array_get(sh, (size_t)d), &t->shape[d]) < 0)
			return sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%.*s': shape[%d] is not a non-negative integer",
			                     p, TNAME(name), d);
		if (t->shape[d] && ne > UINT64_MAX / t->shape[d])
			overflow = 1;
		else
			ne *= t->shape[d];
	}
	uint64_t b, e;
	if (!json_is_array(off) || json_array_size(off) != 2 || json_u64(json_array_get(off, 0), &b) < 0 ||
	    json_u64(json_array_get(off, 1), &e) < 0)
		return sft_error_set(err, SFT_EXIT_DATA,
		                     "%s: tensor '%.*s': \"data_offsets\" must be two non-negative integers", p, TNAME(name));
	if (e < b)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%.*s': data_offsets [%llu, %llu] end before they begin",
		                     p, TNAME(name), (unsigned long long)b, (unsigned long long)e);
	uint64_t esz = dtab[t->dtype].size;
	if (overflow || ne > UINT64_MAX / esz || ne * esz != e - b)
		return sft_error_set(err, SFT_EXIT_DATA,
		                     "%s: tensor '%.*s': shape and dtype %s need %s%llu bytes but data_offsets [%llu, %llu] "
		                     "span %llu",
		                     p, TNAME(name), dtab[t->dtype].name, overflow || ne > UINT64_MAX / esz ? "more than " : "",
		                     overflow || ne > UINT64_MAX / esz ? (unsigned long long)UINT64_MAX
		                                                       : (unsigned long long)(ne * esz),
		                     (unsigned long long)b, (unsigned long long)e, (unsigned long long)(e - b));
	uint64_t data_size = f->size - f->data_offset;
	if (e > data_size)
		return sft_error_set(err, SFT_EXIT_DATA,
		                     "%s: tensor '%.*s': data_offsets [%llu, %llu] go past the end of the data section (%llu "
		                     "bytes): file truncated?",
		                     p, TNAME(name), (unsigned long long)b, (unsigned long long)e,
		                     (unsigned long long)data_size);
	t->n_elements = ne;
	t->nbytes = e - b;
	t->file_offset = f->data_offset + b;
	t->data = f->base + t->file_offset;
	return 0;
}

static int parse_meta(st_file *f, const json_t *m, sft_error *err)
{
	if (!json_is_object(m))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: \"__metadata__\" is not an object", f->path);
	size_t n = json_object_size(m);
	f->meta_keys = calloc(n ? n : 1, sizeof *f->meta_keys);
	f->meta_vals = calloc(n ? n : 1, sizeof *f->meta_vals);
	if (!f->meta_keys || !f->meta_vals)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", f->path);
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)m, k, v) {
		if (!json_is_string(v))
			return sft_error_set(err, SFT_EXIT_DATA, "%s: __metadata__ '%.*s': value is not a string", f->path,
			                     TNAME(k));
		f->meta_keys[f->n_meta] = strdup(k);
		f->meta_vals[f->n_meta] = strdup(json_string_value(v));
		f->n_meta++;
		if (!f->meta_keys[f->n_meta - 1] || !f->meta_vals[f->n_meta - 1])
			return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", f->path);
	}
	return 0;
}

static int parse_file(st_file *f, sft_error *err)
{
	const char *p = f->path;
	if (f->size < 8)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: truncated: %zu bytes, need at least 8 for the header length", p,
		                     f->size);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | f->base[i];
	if (n > f->size - 8)
		return sft_error_set(err, SFT_EXIT_DATA,
		                     "%s: header length %llu goes beyond the end of the file (%zu bytes): truncated or not a "
		                     "safetensors file",
		                     p, (unsigned long long)n, f->size);
	if (n > ST_MAX_HEADER)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: header length %llu is above the %llu byte limit", p,
		                     (unsigned long long)n, ST_MAX_HEADER);
	if (n < 2 || f->base[8] != '{')
		return sft_error_set(err, SFT_EXIT_DATA, "%s: header at byte 8 does not start with '{'", p);
	f->header_len = n;
	f->data_offset = 8 + n;

	json_error_t je;
	json_t *root = json_loadb((const char *)f->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
	if (!root) /* je.position counts the bytes read, the offending one included */
		return sft_error_set(err, SFT_EXIT_DATA, "%s: invalid json header at byte %llu (line %d, column %d): %s", p,
		                     (unsigned long long)(8 + (je.position > 0 ? (uint64_t)je.position - 1 : 0)), je.line,
		                     je.column, je.text);
	int rc = 0;
	if (!json_is_object(root)) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: json header is not an object", p);
		goto out;
	}
	size_t cap = json_object_size(root);
	f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
	if (!f->tensors) {
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", p);
		goto out;
	}
	const char *k;
	json_t *v;
	json_object_foreach(root, k, v) {
		if (strcmp(k, "__metadata__") == 0) {
			if ((rc = parse_meta(f, v, err)) < 0)
				goto out;
			continue;
		}
		st_tensor *t = &f->tensors[f->n_tensors++];
		if ((rc = parse_tensor(f, k, v, t, err)) < 0)
			goto out;
	}

	/* The data section must be covered exactly: sorted by offset, each tensor starts
	 * where the previous ends (zero-size tensors may sit anywhere on a boundary). */
	const st_tensor **by_off = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *by_off);
	if (!by_off) {
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", p);
		goto out;
	}
	for (size_t i = 0; i < f->n_tensors; i++)
		by_off[i] = &f->tensors[i];
	qsort(by_off, f->n_tensors, sizeof *by_off, cmp_offset);
	uint64_t end = f->data_offset;
	const st_tensor *prev = NULL;
	for (size_t i = 0; i < f->n_tensors; i++) {
		const st_tensor *t = by_off[i];
		if (t->file_offset < end) {
			rc = sft_error_set(err, SFT_EXIT_DATA,
			                   "%s: tensor '%.*s' (data bytes %llu..%llu) overlaps tensor '%.*s' (ending at %llu)", p,
			                   TNAME(t->name), (unsigned long long)(t->file_offset - f->data_offset),
			                   (unsigned long long)(t->file_offset - f->data_offset + t->nbytes),
			                   TNAME(prev ? prev->name : "?"), (unsigned long long)(end - f->data_offset));
			break;
		}
		if (t->file_offset > end) {
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s: gap in the data section: bytes %llu..%llu belong to no tensor",
			                   p, (unsigned long long)(end - f->data_offset),
			                   (unsigned long long)(t->file_offset - f->data_offset));
			break;
		}
		end = t->file_offset + t->nbytes;
		prev = t;
	}
	free(by_off);
	if (rc < 0)
		goto out;
	if (end != f->size) {
		rc = sft_error_set(err, SFT_EXIT_DATA,
		                   "%s: tensors cover %llu data bytes but the file has %llu after the header", p,
		                   (unsigned long long)(end - f->data_offset), (unsigned long long)(f->size - f->data_offset));
		goto out;
	}
	qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_name);
out:
	json_decref(root);
	return rc;
}

st_file *safetensors_open_mem(const void *buf, size_t len, const char *name, sft_error *err)
{
	st_file *f = calloc(1, sizeof *f);
	if (!f || !(f->path = strdup(name ? name : "<memory>"))) {
		free(f);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	f->base = buf;
	f->size = len;
	if (parse_file(f, err) < 0) {
		file_free(f);
		return NULL;
	}
	return f;
}

st_file *safetensors_open(const char *path, sft_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		sft_error_set(err, errno == ENOENT ? SFT_EXIT_USAGE : SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(sb.st_mode)) {
		sft_error_set(err, SFT_EXIT_USAGE, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	st_file *f = calloc(1, sizeof *f);
	if (!f || !(f->path = strdup(path))) {
		free(f);
		close(fd);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	f->size = (size_t)sb.st_size;
	if (f->size) {
		void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "%s: mmap: %s", path, strerror(errno));
			close(fd);
			file_free(f);
			return NULL;
		}
		f->base = m;
		f->mapped = 1;
	} else {
		f->base = (const uint8_t *)"";
	}
	close(fd);
	if (parse_file(f, err) < 0) {
		file_free(f);
		return NULL;
	}
	return f;
}

const st_tensor *safetensors_find(const st_file *f, const char *name)
{
	if (!f || !name)
		return NULL;
	st_tensor key = { .name = name };
	return bsearch(&key, f->tensors, f->n_tensors, sizeof key, cmp_name);
}

const st_tensor *safetensors_get(const st_file *f, const char *name, sft_error *err)
{
	const st_tensor *t = safetensors_find(f, name);
	if (!t)
		sft_error_set(err, SFT_EXIT_DATA, "%s: no tensor '%.*s'", f ? f->path : "?", TNAME(name ? name : ""));
	return t;
}

const char *safetensors_meta(const st_file *f, const char *key)
{
	for (size_t i = 0; f && key && i < f->n_meta; i++)
		if (strcmp(f->meta_keys[i], key) == 0)
			return f->meta_vals[i];
	return NULL;
}

int safetensors_tensor_to_f32(const st_tensor *t, float *out, sft_error *err)
{
	const uint8_t *s = t->data;
	size_t n = (size_t)t->n_elements;
	switch (t->dtype) {
	case ST_F32: return dequant_to_f32(GGML_TYPE_F32, s, n, out, err);
	case ST_F16: return dequant_to_f32(GGML_TYPE_F16, s, n, out, err);
	case ST_BF16: return dequant_to_f32(GGML_TYPE_BF16, s, n, out, err);
	case ST_F64: return dequant_to_f32(GGML_TYPE_F64, s, n, out, err);
	case ST_I64: return dequant_to_f32(GGML_TYPE_I64, s, n, out, err);
	case ST_I32: return dequant_to_f32(GGML_TYPE_I32, s, n, out, err);
	case ST_I16: return dequant_to_f32(GGML_TYPE_I16, s, n, out, err);
	case ST_I8: return dequant_to_f32(GGML_TYPE_I8, s, n, out, err);
	case ST_U8:
	case ST_BOOL:
		for (size_t i = 0; i < n; i++)
			out[i] = (float)s[i];
		return 0;
	case ST_U16:
		for (size_t i = 0; i < n; i++) {
			uint16_t v;
			memcpy(&v, s + 2 * i, 2);
			out[i] = (float)v;
		}
		return 0;
	case ST_U32:
		for (size_t i = 0; i < n; i++) {
			uint32_t v;
			memcpy(&v, s + 4 * i, 4);
			out[i] = (float)v;
		}
		return 0;
	case ST_U64:
		for (size_t i = 0; i < n; i++) {
			uint64_t v;
			memcpy(&v, s + 8 * i, 8);
			out[i] = (float)v;
		}
		return 0;
	default:
		return sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%.*s': cannot convert %s to f32", t->file,
		                     TNAME(t->name), st_dtype_name(t->dtype));
	}
}

/* ---------------------------------------------------------------- model */

void safetensors_model_close(st_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_files; i++)
		file_free(m->files[i]);
	free(m->files);
	free(m->tensors);
	free(m->path);
	free(m->index_path);
	free(m);
}

static int cmp_tensor_ptr(const void *a, const void *b)
{
	return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static char *path_join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);
	if (!p)
		return NULL;
	memcpy(p, dir, a);
	size_t o = a;
	if (a && dir[a - 1] != '/')
		p[o++] = '/';
	memcpy(p + o, name, b + 1);
	return p;
}

static int model_add_file(st_model *m, st_file *f, sft_error *err)
{
	st_file **nf = realloc(m->files, (m->n_files + 1) * sizeof *nf);
	if (!nf) {
		file_free(f);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	m->files = nf;
	m->files[m->n_files++] = f;
	return 0;
}

static int model_open_single(st_model *m, const char *file, sft_error *err)
{
	st_file *f = safetensors_open(file, err);
	if (!f || model_add_file(m, f, err) < 0)
		return -(err ? err->code : SFT_EXIT_RUNTIME);
	m->n_tensors = f->n_tensors;
	m->tensors = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *m->tensors);
	if (!m->tensors)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	for (size_t i = 0; i < f->n_tensors; i++)
		m->tensors[i] = &f->tensors[i]; /* already sorted by name */
	return 0;
}

static int model_open_index(st_model *m, const char *dir, sft_error *err)
{
	const char *ip = m->index_path;
	json_error_t je;
	json_t *root = json_load_file(ip, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		int code = access(ip, R_OK) == 0 ? SFT_EXIT_DATA : SFT_EXIT_RUNTIME;
		return sft_error_set(err, code, "%s:%d:%d: %s", ip, je.line, je.column, je.text);
	}
	int rc = 0;
	json_t *wm = json_object_get(root, "weight_map"), *md = json_object_get(root, "metadata");
	if (!json_is_object(root) || !json_is_object(wm)) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: no \"weight_map\" object", ip);
		goto out;
	}
	json_t *ts = md ? json_object_get(md, "total_size") : NULL;
	if (json_is_integer(ts) && json_integer_value(ts) >= 0)
		m->total_size = (uint64_t)json_integer_value(ts);
	else if (json_is_real(ts) && json_real_value(ts) >= 0)
		m->total_size = (uint64_t)json_real_value(ts);
	size_t n = json_object_size(wm);
	m->tensors = malloc((n ? n : 1) * sizeof *m->tensors);
	if (!m->tensors) {
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		goto out;
	}
	const char *name;
	json_t *v;
	json_object_foreach(wm, name, v) {
		if (!json_is_string(v) || !json_string_value(v)[0] || json_string_value(v)[0] == '/' ||
		    strstr(json_string_value(v), "..")) {
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s: weight_map '%.*s': not a relative file name", ip,
			                   TNAME(name));
			goto out;
		}
		char *fp = path_join(dir, json_string_value(v));
		if (!fp) {
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			goto out;
		}
		st_file *f = NULL;
		for (size_t i = 0; i < m->n_files; i++)
			if (strcmp(m->files[i]->path, fp) == 0)
				f = m->files[i];
		if (!f) {
			f = safetensors_open(fp, err);
			if (!f) {
				if (err)
					sft_error_prefix(err, "%s: weight_map '%.*s'", ip, TNAME(name));
				rc = -(err ? err->code : SFT_EXIT_DATA);
				free(fp);
				goto out;
			}
			if ((rc = model_add_file(m, f, err)) < 0) {
				free(fp);
				goto out;
			}
		}
		free(fp);
		const st_tensor *t = safetensors_find(f, name);
		if (!t) {
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s: no tensor '%.*s' (listed in %s)", f->path, TNAME(name), ip);
			goto out;
		}
		m->tensors[m->n_tensors++] = t;
	}
	qsort(m->tensors, m->n_tensors, sizeof *m->tensors, cmp_tensor_ptr);
out:
	json_decref(root);
	return rc;
}

st_model *safetensors_model_open(const char *path, sft_error *err)
{
	st_model *m = calloc(1, sizeof *m);
	if (!m || !(m->path = strdup(path))) {
		free(m);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	struct stat sb;
	int rc;
	if (stat(path, &sb) < 0) {
		rc = sft_error_set(err, errno == ENOENT ? SFT_EXIT_USAGE : SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
	} else if (!S_ISDIR(sb.st_mode)) {
		rc = model_open_single(m, path, err);
	} else {
		m->index_path = path_join(path, "model.safetensors.index.json");
		char *single = path_join(path, "model.safetensors");
		if (!m->index_path || !single)
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		else if (access(m->index_path, F_OK) == 0)
			rc = model_open_index(m, path, err);
		else if (access(single, F_OK) == 0) {
			free(m->index_path);
			m->index_path = NULL;
			rc = model_open_single(m, single, err);
		} else
			rc = sft_error_set(err, SFT_EXIT_USAGE, "%s: no model.safetensors.index.json or model.safetensors", path);
		free(single);
	}
	if (rc < 0) {
		safetensors_model_close(m);
		return NULL;
	}
	return m;
}

const st_tensor *safetensors_model_find(const st_model *m, const char *name)
{
	if (!m || !name)
		return NULL;
	st_tensor key = { .name = name };
	const st_tensor *kp = &key;
	const st_tensor **r = bsearch(&kp, m->tensors, m->n_tensors, sizeof *m->tensors, cmp_tensor_ptr);
	return r ? *r : NULL;
}

const st_tensor *safetensors_model_get(const st_model *m, const char *name, sft_error *err)
{
	const st_tensor *t = safetensors_model_find(m, name);
	if (!t) {
		const char *where = !m ? "?" : m->index_path ? m->index_path : m->n_files ? m->files[0]->path : m->path;
		sft_error_set(err, SFT_EXIT_DATA, "%s: no tensor '%.*s'", where, TNAME(name ? name : ""));
	}
	return t;
}

/* ---------------------------------------------------------------- writer */

typedef struct wtensor {
	char *name;
	int dtype, n_dims;
	uint64_t shape[ST_MAX_DIMS];
	const void *data;
	uint64_t nbytes;
} wtensor;

struct st_writer {
	wtensor *t;
	size_t n, cap;
	char **mk, **mv;
	size_t n_meta;
};

typedef struct sbuf { char *p; size_t n, cap; int oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 256;
		while (c < b->n + n + 1)
			c *= 2;
		char *np = realloc(b->p, c);
		if (!np) {
			b->oom = 1;
			return;
		}
		b->p = np;
		b->cap = c;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* fmt: one %llu and at most a few characters around it */
static void sb_fmt(sbuf *b, const char *fmt, unsigned long long v)
{
	char tmp[64];
	int n = snprintf(tmp, sizeof tmp, fmt, v);
	sb_put(b, tmp, (size_t)n);
}

/* Decodes one UTF-8 sequence at s (valid input assumed); returns its length. */
static int utf8_dec(const unsigned char *s, uint32_t *cp)
{
	if (s[0] < 0x80) { *cp = s[0]; return 1; }
	if (s[0] < 0xe0) { *cp = (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f); return 2; }
	if (s[0] < 0xf0) { *cp = (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f); return 3; }
	*cp = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 | (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
	return 4;
}

static int utf8_valid(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	while (*s) {
		int n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
		if (!n || (n == 2 && s[0] < 0xc2))
			return 0;
		for (int i = 1; i < n; i++)
			if ((s[i] & 0xc0) != 0x80)
				return 0;
		uint32_t cp;
		utf8_dec(s, &cp);
		if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return 0;
		s += n;
	}
	return 1;
}

/* JSON string. ascii=0: serde_json's escaping (", \, \b\f\n\r\t, other controls as
 * \u00xx, everything else raw UTF-8). ascii=1: Python json.dumps' default
 * (ensure_ascii: anything outside ' '..'~' escaped, surrogate pairs above U+FFFF). */
static void sb_json_str(sbuf *b, const char *str, int ascii)
{
	const unsigned char *s = (const unsigned char *)str;
	sb_put(b, "\"", 1);
	while (*s) {
		char tmp[16];
		unsigned c = *s;
		const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
		                  : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
		if (esc) {
			sb_str(b, esc);
			s++;
		} else if (c < 0x20 || (ascii && c == 0x7f)) {
			snprintf(tmp, sizeof tmp, "\\u%04x", c);
			sb_str(b, tmp);
			s++;
		} else if (ascii && c >= 0x80) {
			uint32_t cp;
			s += utf8_dec(s, &cp);
			if (cp >= 0x10000) {
				cp -= 0x10000;
				snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
			} else {
				snprintf(tmp, sizeof tmp, "\\u%04x", cp);
			}
			sb_str(b, tmp);
		} else {
			sb_put(b, (const char *)s, 1);
			s++;
		}
	}
	sb_put(b, "\"", 1);
}

st_writer *safetensors_writer_new(void) { return calloc(1, sizeof(st_writer)); }

void safetensors_writer_free(st_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++)
		free(w->t[i].name);
	free(w->t);
	for (size_t i = 0; i < w->n_meta; i++) {
		free(w->mk[i]);
		free(w->mv[i]);
	}
	free(w->mk);
	free(w->mv);
	free(w);
}

int safetensors_writer_add(st_writer *w, const char *name, int dtype, int n_dims, const uint64_t *shape,
                           const void *data, sft_error *err)
{
	if (!name || !utf8_valid(name))
		return sft_error_set(err, SFT_EXIT_USAGE, "tensor name is not valid utf-8");
	if (strcmp(name, "__metadata__") == 0)
		return sft_error_set(err, SFT_EXIT_USAGE, "tensor name '__metadata__' is reserved");
	if (dtype < 0 || dtype >= ST_DTYPE_COUNT)
		return sft_error_set(err, SFT_EXIT_USAGE, "tensor '%.*s': unknown dtype %d", TNAME(name), dtype);
	if (n_dims < 0 || n_dims > ST_MAX_DIMS || (n_dims && !shape))
		return sft_error_set(err, SFT_EXIT_USAGE, "tensor '%.*s': %d dimensions, at most %d supported", TNAME(name),
		                     n_dims, ST_MAX_DIMS);
	for (size_t i = 0; i < w->n; i++)
		if (strcmp(w->t[i].name, name) == 0)
			return sft_error_set(err, SFT_EXIT_USAGE, "tensor '%.*s' added twice", TNAME(name));
	uint64_t nb = dtab[dtype].size;
	for (int d = 0; d < n_dims; d++) {
		if (shape[d] && nb > UINT64_MAX / shape[d])
			return sft_error_set(err, SFT_EXIT_USAGE, "tensor '%.*s': size overflows", TNAME(name));
		nb *= shape[d];
	}
	if (nb && !data)
		return sft_error_set(err, SFT_EXIT_USAGE, "tensor '%.*s': no data", TNAME(name));
	if (w->n == w->cap) {
		size_t c = w->cap ? 2 * w->cap : 16;
		wtensor *nt = realloc(w->t, c * sizeof *nt);
		if (!nt)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		w->t = nt;
		w->cap = c;
	}
	wtensor *t = &w->t[w->n];
	memset(t, 0, sizeof *t);
	if (!(t->name = strdup(name)))
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	t->dtype = dtype;
	t->n_dims = n_dims;
	for (int d = 0; d < n_dims; d++)
		t->shape[d] = shape[d];
	t->data = data;
	t->nbytes = nb;
	w->n++;
	return 0;
}

int safetensors_writer_meta(st_writer *w, const char *key, const char *value, sft_error *err)
{
	if (!key || !value || !utf8_valid(key) || !utf8_valid(value))
		return sft_error_set(err, SFT_EXIT_USAGE, "metadata key or value is not valid utf-8");
	for (size_t i = 0; i < w->n_meta; i++)
		if (strcmp(w->mk[i], key) == 0) {
			char *v = strdup(value);
			if (!v)
				return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			free(w->mv[i]);
			w->mv[i] = v;
			return 0;
		}
	char **nk = realloc(w->mk, (w->n_meta + 1) * sizeof *nk);
	if (nk)
		w->mk = nk;
	char **nv = realloc(w->mv, (w->n_meta + 1) * sizeof *nv);
	if (nv)
		w->mv = nv;
	if (!nk || !nv)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	w->mk[w->n_meta] = strdup(key);
	w->mv[w->n_meta] = strdup(value);
	if (!w->mk[w->n_meta] || !w->mv[w->n_meta]) {
		free(w->mk[w->n_meta]);
		free(w->mv[w->n_meta]);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	w->n_meta++;
	return 0;
}

/* Python/Rust order: dtype descending (by the Dtype enum order), then name. */
static int cmp_write_order(const void *a, const void *b)
{
	const wtensor *x = *(const wtensor *const *)a, *y = *(const wtensor *const *)b;
	if (x->dtype != y->dtype)
		return y->dtype - x->dtype;
	return strcmp(x->name, y->name);
}

/* Writes the tensors ts[0..n) (sorted in place) to path. */
static int write_file(const st_writer *w, const wtensor **ts, size_t n, const char *path, sft_error *err)
{
	qsort(ts, n, sizeof *ts, cmp_write_order);
	sbuf h = { 0 };
	sb_put(&h, "{", 1);
	if (w->n_meta) {
		sb_str(&h, "\"__metadata__\":{");
		for (size_t i = 0; i < w->n_meta; i++) {
			if (i)
				sb_put(&h, ",", 1);
			sb_json_str(&h, w->mk[i], 0);
			sb_put(&h, ":", 1);
			sb_json_str(&h, w->mv[i], 0);
		}
		sb_str(&h, n ? "}," : "}");
	}
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		const wtensor *t = ts[i];
		if (i)
			sb_put(&h, ",", 1);
		sb_json_str(&h, t->name, 0);
		sb_str(&h, ":{\"dtype\":\"");
		sb_str(&h, dtab[t->dtype].name);
		sb_str(&h, "\",\"shape\":[");
		for (int d = 0; d < t->n_dims; d++)
			sb_fmt(&h, d ? ",%llu" : "%llu", (unsigned long long)t->shape[d]);
		sb_fmt(&h, "],\"data_offsets\":[%llu,", (unsigned long long)off);
		off += t->nbytes;
		sb_fmt(&h, "%llu]}", (unsigned long long)off);
	}
	sb_put(&h, "}", 1);
	while (h.n % 8)
		sb_put(&h, " ", 1);
	if (h.oom) {
		free(h.p);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", path);
	}
	atomic_file *af = atomic_open(path, err);
	if (!af) {
		free(h.p);
		return -(err ? err->code : SFT_EXIT_RUNTIME);
	}
	uint8_t len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
	int ok = fwrite(len, 1, 8, af->fp) == 8 && fwrite(h.p, 1, h.n, af->fp) == h.n;
	free(h.p);
	for (size_t i = 0; ok && i < n; i++)
		if (ts[i]->nbytes && fwrite(ts[i]->data, 1, (size_t)ts[i]->nbytes, af->fp) != ts[i]->nbytes)
			ok = 0;
	if (!ok) {
		int e = errno;
		atomic_abort(af);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write: %s", path, strerror(e));
	}
	return atomic_commit(af, err);
}

int safetensors_writer_write(st_writer *w, const char *path, sft_error *err)
{
	const wtensor **ts = malloc((w->n ? w->n : 1) * sizeof *ts);
	if (!ts)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	for (size_t i = 0; i < w->n; i++)
		ts[i] = &w->t[i];
	int rc = write_file(w, ts, w->n, path, err);
	free(ts);
	return rc;
}

static int cmp_wname(const void *a, const void *b)
{
	return strcmp((*(const wtensor *const *)a)->name, (*(const wtensor *const *)b)->name);
}

int safetensors_writer_write_sharded(st_writer *w, const char *dir, uint64_t max_shard_bytes, sft_error *err)
{
	if (fs_mkdir_p(dir, err) < 0)
		return -(err ? err->code : SFT_EXIT_RUNTIME);
	size_t n = w->n;
	/* shard_of[i]: shard index of tensor i, assigned as huggingface_hub's
	 * split_state_dict_into_shards does: a tensor bigger than the limit gets its own shard
	 * (appended at once, before the one being filled); otherwise a new shard starts when
	 * the tensor would push the current one past the limit. */
	size_t *shard_of = malloc((n ? n : 1) * sizeof *shard_of);
	size_t *cur_members = malloc((n ? n : 1) * sizeof *cur_members);
	const wtensor **ts = malloc((n ? n : 1) * sizeof *ts);
	int rc = 0;
	if (!shard_of || !cur_members || !ts) {
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		goto out;
	}
	size_t n_shards = 0, n_cur = 0;
	uint64_t cur_size = 0, total = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t sz = w->t[i].nbytes;
		total += sz;
		if (sz > max_shard_bytes) {
			shard_of[i] = n_shards++;
			continue;
		}
		if (n_cur && cur_size + sz > max_shard_bytes) {
			for (size_t k = 0; k < n_cur; k++)
				shard_of[cur_members[k]] = n_shards;
			n_shards++;
			n_cur = 0;
			cur_size = 0;
		}
		cur_members[n_cur++] = i;
		cur_size += sz;
	}
	if (n_cur || n_shards == 0) {
		for (size_t k = 0; k < n_cur; k++)
			shard_of[cur_members[k]] = n_shards;
		n_shards++;
	}
	if (n_shards == 1) {
		char *p = path_join(dir, "model.safetensors");
		if (!p) {
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			goto out;
		}
		rc = safetensors_writer_write(w, p, err);
		free(p);
		goto out;
	}
	for (size_t s = 0; s < n_shards && rc == 0; s++) {
		size_t m = 0;
		for (size_t i = 0; i < n; i++)
			if (shard_of[i] == s)
				ts[m++] = &w->t[i];
		char name[64];
		snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, n_shards);
		char *p = path_join(dir, name);
		if (!p) {
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			goto out;
		}
		rc = write_file(w, ts, m, p, err);
		free(p);
	}
	if (rc < 0)
		goto out;
	/* index: json.dumps(index, indent=2, sort_keys=True) + "\n" */
	sbuf h = { 0 };
	sb_str(&h, "{\n  \"metadata\": {\n    \"total_size\": ");
	sb_fmt(&h, "%llu", (unsigned long long)total);
	sb_str(&h, "\n  },\n  \"weight_map\": {");
	for (size_t i = 0; i < n; i++)
		ts[i] = &w->t[i];
	qsort(ts, n, sizeof *ts, cmp_wname);
	for (size_t i = 0; i < n; i++) {
		char name[64];
		snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", shard_of[ts[i] - w->t] + 1, n_shards);
		sb_str(&h, i ? ",\n    " : "\n    ");
		sb_json_str(&h, ts[i]->name, 1);
		sb_str(&h, ": \"");
		sb_str(&h, name);
		sb_str(&h, "\"");
	}
	sb_str(&h, n ? "\n  }\n}\n" : "}\n}\n");
	char *ip = path_join(dir, "model.safetensors.index.json");
	atomic_file *af = (h.oom || !ip) ? NULL : atomic_open(ip, err);
	if (!af) {
		rc = (h.oom || !ip) ? sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory") : -(err ? err->code : 1);
	} else if (fwrite(h.p, 1, h.n, af->fp) != h.n) {
		int e = errno;
		atomic_abort(af);
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write: %s", ip, strerror(e));
	} else {
		rc = atomic_commit(af, err);
	}
	free(ip);
	free(h.p);
out:
	free(shard_of);
	free(cur_members);
	free(ts);
	return rc;
}
