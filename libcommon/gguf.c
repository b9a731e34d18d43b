/* gguf.c - GGUF reader (see gguf.h). All reads are bounds-checked against the mapping;
 * every error carries the byte offset where parsing stopped. */
#include "gguf.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct rd {
	const uint8_t *p;
	size_t n, pos;
	const char *name;
	sft_error *err;
} rd;

static int rd_fail(rd *r, const char *what)
{
	return sft_error_set(r->err, SFT_EXIT_DATA, "%s: offset %zu: %s", r->name, r->pos, what);
}

static int rd_need(rd *r, uint64_t k, const char *what)
{
	if (k > r->n - r->pos) {
		char msg[256];
		snprintf(msg, sizeof msg, "truncated file: %s needs %llu bytes, %zu left", what, (unsigned long long)k,
		         r->n - r->pos);
		return rd_fail(r, msg);
	}
	return 0;
}

static int rd_u32(rd *r, uint32_t *v, const char *what)
{
	if (rd_need(r, 4, what) < 0)
		return -1;
	memcpy(v, r->p + r->pos, 4);
	r->pos += 4;
	return 0;
}

static int rd_u64(rd *r, uint64_t *v, const char *what)
{
	if (rd_need(r, 8, what) < 0)
		return -1;
	memcpy(v, r->p + r->pos, 8);
	r->pos += 8;
	return 0;
}

static int rd_str(rd *r, gguf_str *s, const char *what)
{
	uint64_t n;
	if (rd_u64(r, &n, what) < 0)
		return -1;
	if (rd_need(r, n, what) < 0)
		return -1;
	s->s = (const char *)r->p + r->pos;
	s->n = n;
	r->pos += n;
	return 0;
}

size_t gguf_type_size(uint32_t t)
{
	switch (t) {
	case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
	case GGUF_UINT16: case GGUF_INT16: return 2;
	case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
	case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
	default: return 0;
	}
}

const char *gguf_type_name(uint32_t t)
{
	static const char *names[] = { "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
		                       "bool", "string", "array", "uint64", "int64", "float64" };
	return t < GGUF_TYPE_COUNT ? names[t] : "unknown";
}

uint64_t gguf_ggml_nbytes(uint32_t type, uint64_t n)
{
	/* (type, bytes per block, elements per block) for ggml types */
	static const struct { uint16_t bytes, blk; } tb[40] = {
		[0] = { 4, 1 }, [1] = { 2, 1 }, [2] = { 18, 32 }, [3] = { 20, 32 }, [6] = { 22, 32 },
		[7] = { 24, 32 }, [8] = { 34, 32 }, [9] = { 36, 32 }, [10] = { 84, 256 }, [11] = { 110, 256 },
		[12] = { 144, 256 }, [13] = { 176, 256 }, [14] = { 210, 256 }, [15] = { 292, 256 },
		[16] = { 66, 256 }, [17] = { 74, 256 }, [18] = { 98, 256 }, [19] = { 50, 256 },
		[20] = { 18, 32 }, [21] = { 110, 256 }, [22] = { 82, 256 }, [23] = { 136, 256 },
		[24] = { 1, 1 }, [25] = { 2, 1 }, [26] = { 4, 1 }, [27] = { 8, 1 }, [28] = { 8, 1 },
		[29] = { 56, 256 }, [30] = { 2, 1 }, [34] = { 54, 256 }, [35] = { 66, 256 }, [39] = { 17, 32 },
	};
	if (type >= 40 || !tb[type].blk)
		return 0;
	if (n % tb[type].blk)
		return 0;
	uint64_t blocks = n / tb[type].blk;
	if (blocks > UINT64_MAX / tb[type].bytes)
		return 0;
	return blocks * tb[type].bytes;
}

/* Skips (and validates) one value of type t; for string arrays records offsets. */
static int rd_value(rd *r, gguf_kv *kv, uint32_t t, int top)
{
	if (t == GGUF_STRING) {
		gguf_str s;
		if (rd_str(r, &s, "string value") < 0)
			return -1;
		if (top)
			kv->v.s = s;
		return 0;
	}
	if (t == GGUF_ARRAY) {
		if (!top)
			return rd_fail(r, "nested arrays are not supported");
		uint32_t at;
		uint64_t n;
		if (rd_u32(r, &at, "array type") < 0 || rd_u64(r, &n, "array length") < 0)
			return -1;
		if (at >= GGUF_TYPE_COUNT || at == GGUF_ARRAY)
			return rd_fail(r, "bad array element type");
		kv->arr_type = at;
		kv->arr_n = n;
		kv->data = r->p + r->pos;
		if (at == GGUF_STRING) {
			if (n > (r->n - r->pos) / 8)
				return rd_fail(r, "truncated file: string array longer than the file");
			kv->str_off = malloc((n ? n : 1) * sizeof *kv->str_off);
			if (!kv->str_off)
				return sft_error_set(r->err, SFT_EXIT_RUNTIME, "out of memory");
			size_t base = r->pos;
			for (uint64_t i = 0; i < n; i++) {
				kv->str_off[i] = r->pos - base;
				gguf_str s;
				if (rd_str(r, &s, "string array element") < 0)
					return -1;
			}
			return 0;
		}
		size_t es = gguf_type_size(at);
		if (n > (r->n - r->pos) / es)
			return rd_fail(r, "truncated file: array longer than the file");
		r->pos += n * es;
		return 0;
	}
	size_t es = gguf_type_size(t);
	if (!es)
		return rd_fail(r, "bad value type");
	if (rd_need(r, es, "value") < 0)
		return -1;
	const uint8_t *p = r->p + r->pos;
	if (top) {
		kv->data = p;
		switch (t) {
		case GGUF_UINT8: kv->v.u = p[0]; break;
		case GGUF_BOOL: kv->v.u = p[0] != 0; break;
		case GGUF_INT8: kv->v.i = (int8_t)p[0]; break;
		case GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); kv->v.u = x; break; }
		case GGUF_INT16: { int16_t x; memcpy(&x, p, 2); kv->v.i = x; break; }
		case GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); kv->v.u = x; break; }
		case GGUF_INT32: { int32_t x; memcpy(&x, p, 4); kv->v.i = x; break; }
		case GGUF_FLOAT32: { float x; memcpy(&x, p, 4); kv->v.f = x; break; }
		case GGUF_UINT64: { uint64_t x; memcpy(&x, p, 8); kv->v.u = x; break; }
		case GGUF_INT64: { int64_t x; memcpy(&x, p, 8); kv->v.i = x; break; }
		case GGUF_FLOAT64: { double x; memcpy(&x, p, 8); kv->v.f = x; break; }
		}
	}
	r->pos += es;
	return 0;
}

static gguf_file *parse(gguf_file *g, sft_error *err)
{
	rd r = { g->base, g->size, 0, g->path, err };
	uint32_t magic;
	if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0) {
		rd_fail(&r, g->size < 4 ? "truncated file: no GGUF magic" : "bad magic (not a GGUF file)");
		gguf_close(g);
		return NULL;
	}
	rd_u32(&r, &magic, "magic");
	if (rd_u32(&r, &g->version, "version") < 0)
		goto fail;
	if (g->version != 2 && g->version != 3) {
		r.pos -= 4;
		sft_error_set(err, SFT_EXIT_DATA, "%s: offset 4: unsupported GGUF version %u", g->path, g->version);
		goto fail;
	}
	if (rd_u64(&r, &g->n_tensors, "tensor count") < 0 || rd_u64(&r, &g->n_kv, "kv count") < 0)
		goto fail;
	if (g->n_kv > (g->size - r.pos) / 13 || g->n_tensors > (g->size - r.pos) / 24) {
		char msg[200];
		snprintf(msg, sizeof msg, "truncated file or corrupt kv count/tensor count: %llu kvs and %llu tensors cannot fit in %zu bytes",
		         (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors, g->size - r.pos);
		r.pos = 8;
		rd_fail(&r, msg);
		goto fail;
	}
	g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
	g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
	if (!g->kv || !g->tensors) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		goto fail;
	}
	g->kv_begin = r.pos;
	g->alignment = 32;
	for (uint64_t i = 0; i < g->n_kv; i++) {
		gguf_kv *kv = &g->kv[i];
		kv->offset = r.pos;
		if (rd_str(&r, &kv->key, "kv key") < 0 || rd_u32(&r, &kv->type, "kv type") < 0)
			goto fail;
		if (kv->type >= GGUF_TYPE_COUNT) {
			r.pos -= 4;
			rd_fail(&r, "bad kv value type");
			goto fail;
		}
		if (rd_value(&r, kv, kv->type, 1) < 0)
			goto fail;
		kv->size = r.pos - kv->offset;
		if (kv->key.n == 17 && !memcmp(kv->key.s, "general.alignment", 17)) {
			if (kv->type != GGUF_UINT32 || kv->v.u == 0 || (kv->v.u & (kv->v.u - 1))) {
				r.pos = kv->offset;
				rd_fail(&r, "general.alignment must be a power-of-two uint32");
				goto fail;
			}
			g->alignment = kv->v.u;
		}
	}
	g->kv_end = r.pos;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		gguf_tensor *t = &g->tensors[i];
		size_t at = r.pos;
		if (rd_str(&r, &t->name, "tensor name") < 0 || rd_u32(&r, &t->n_dims, "tensor n_dims") < 0)
			goto fail;
		if (t->n_dims > 4) {
			r.pos = at;
			rd_fail(&r, "tensor has more than 4 dimensions");
			goto fail;
		}
		uint64_t ne = 1;
		for (uint32_t d = 0; d < 4; d++)
			t->dims[d] = 1;
		for (uint32_t d = 0; d < t->n_dims; d++) {
			if (rd_u64(&r, &t->dims[d], "tensor dim") < 0)
				goto fail;
			if (t->dims[d] && ne > UINT64_MAX / t->dims[d]) {
				rd_fail(&r, "tensor element count overflows");
				goto fail;
			}
			ne *= t->dims[d];
		}
		if (rd_u32(&r, &t->type, "tensor type") < 0 || rd_u64(&r, &t->offset, "tensor offset") < 0)
			goto fail;
		t->size = gguf_ggml_nbytes(t->type, ne);
	}
	uint64_t pos = r.pos;
	pos = (pos + g->alignment - 1) / g->alignment * g->alignment;
	g->data_offset = pos;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		gguf_tensor *t = &g->tensors[i];
		if (t->offset % g->alignment) {
			sft_error_set(err, SFT_EXIT_DATA, "%s: tensor '%.*s': offset %llu is not aligned to %llu", g->path,
			              (int)(t->name.n > 200 ? 200 : t->name.n), t->name.s, (unsigned long long)t->offset,
			              (unsigned long long)g->alignment);
			goto fail;
		}
		t->file_offset = g->data_offset + t->offset;
		if (t->file_offset >= g->data_offset && t->size && t->file_offset <= g->size &&
		    t->size <= g->size - t->file_offset)
			t->data = g->base + t->file_offset;
	}
	return g;
fail:
	gguf_close(g);
	return NULL;
}

gguf_file *gguf_open_mem(const void *buf, size_t len, const char *name, sft_error *err)
{
	gguf_file *g = calloc(1, sizeof *g);
	if (!g) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	g->base = buf;
	g->size = len;
	g->path = strdup(name ? name : "<memory>");
	if (!g->path) {
		free(g);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	return parse(g, err);
}

int gguf_path_is_gguf(const char *path)
{
	struct stat sb;
	if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode)) return 0;
	FILE *f = fopen(path, "rb");
	if (!f) return 0;
	char m[4] = {0};
	int ok = fread(m, 1, 4, f) == 4 && !memcmp(m, "GGUF", 4);
	fclose(f);
	return ok;
}

gguf_file *gguf_open(const char *path, sft_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	gguf_file *g = calloc(1, sizeof *g);
	if (!g) {
		close(fd);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	g->path = strdup(path);
	g->size = (size_t)sb.st_size;
	if (g->size) {
		void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "%s: mmap: %s", path, strerror(errno));
			close(fd);
			free(g->path);
			free(g);
			return NULL;
		}
		g->base = m;
		g->mapped = 1;
	} else {
		g->base = (const uint8_t *)"";
	}
	close(fd);
	if (!g->path) {
		gguf_close(g);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	return parse(g, err);
}

void gguf_close(gguf_file *g)
{
	if (!g)
		return;
	if (g->kv)
		for (uint64_t i = 0; i < g->n_kv; i++)
			free(g->kv[i].str_off);
	free(g->kv);
	free(g->tensors);
	if (g->mapped)
		munmap((void *)g->base, g->size);
	free(g->path);
	free(g);
}

const gguf_kv *gguf_find(const gguf_file *g, const char *key)
{
	if (!g || !key)
		return NULL;
	size_t n = strlen(key);
	for (uint64_t i = 0; i < g->n_kv; i++)
		if (g->kv[i].key.n == n && memcmp(g->kv[i].key.s, key, n) == 0)
			return &g->kv[i];
	return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name)
{
	if (!g || !name)
		return NULL;
	size_t n = strlen(name);
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if (g->tensors[i].name.n == n && memcmp(g->tensors[i].name.s, name, n) == 0)
			return &g->tensors[i];
	return NULL;
}

static int is_signed(uint32_t t) { return t == GGUF_INT8 || t == GGUF_INT16 || t == GGUF_INT32 || t == GGUF_INT64; }
static int is_unsigned(uint32_t t)
{
	return t == GGUF_UINT8 || t == GGUF_UINT16 || t == GGUF_UINT32 || t == GGUF_UINT64 || t == GGUF_BOOL;
}

int gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out)
{
	const gguf_kv *kv = gguf_find(g, key);
	if (!kv)
		return -1;
	if (is_unsigned(kv->type)) {
		*out = kv->v.u;
		return 0;
	}
	if (is_signed(kv->type) && kv->v.i >= 0) {
		*out = (uint64_t)kv->v.i;
		return 0;
	}
	return -1;
}

int gguf_get_i64(const gguf_file *g, const char *key, int64_t *out)
{
	const gguf_kv *kv = gguf_find(g, key);
	if (!kv)
		return -1;
	if (is_signed(kv->type)) {
		*out = kv->v.i;
		return 0;
	}
	if (is_unsigned(kv->type) && kv->v.u <= INT64_MAX) {
		*out = (int64_t)kv->v.u;
		return 0;
	}
	return -1;
}

int gguf_get_f64(const gguf_file *g, const char *key, double *out)
{
	const gguf_kv *kv = gguf_find(g, key);
	if (!kv)
		return -1;
	if (kv->type == GGUF_FLOAT32 || kv->type == GGUF_FLOAT64)
		*out = kv->v.f;
	else if (is_signed(kv->type))
		*out = (double)kv->v.i;
	else if (is_unsigned(kv->type))
		*out = (double)kv->v.u;
	else
		return -1;
	return 0;
}

int gguf_get_bool(const gguf_file *g, const char *key, int *out)
{
	const gguf_kv *kv = gguf_find(g, key);
	if (!kv || kv->type != GGUF_BOOL)
		return -1;
	*out = kv->v.u != 0;
	return 0;
}

int gguf_get_str(const gguf_file *g, const char *key, gguf_str *out)
{
	const gguf_kv *kv = gguf_find(g, key);
	if (!kv || kv->type != GGUF_STRING)
		return -1;
	*out = kv->v.s;
	return 0;
}

int gguf_arr_str(const gguf_kv *kv, uint64_t i, gguf_str *out)
{
	if (!kv || kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || i >= kv->arr_n || !kv->str_off)
		return -1;
	const uint8_t *p = kv->data + kv->str_off[i];
	uint64_t n;
	memcpy(&n, p, 8);
	out->s = (const char *)p + 8;
	out->n = n;
	return 0;
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i)
{
	if (!kv || kv->type != GGUF_ARRAY || i >= kv->arr_n)
		return 0;
	const uint8_t *p = kv->data + i * gguf_type_size(kv->arr_type);
	switch (kv->arr_type) {
	case GGUF_FLOAT32: { float x; memcpy(&x, p, 4); return x; }
	case GGUF_FLOAT64: { double x; memcpy(&x, p, 8); return x; }
	default: return (double)gguf_arr_i64(kv, i);
	}
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i)
{
	if (!kv || kv->type != GGUF_ARRAY || i >= kv->arr_n)
		return 0;
	size_t es = gguf_type_size(kv->arr_type);
	if (!es)
		return 0;
	const uint8_t *p = kv->data + i * es;
	switch (kv->arr_type) {
	case GGUF_UINT8: case GGUF_BOOL: return p[0];
	case GGUF_INT8: return (int8_t)p[0];
	case GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); return x; }
	case GGUF_INT16: { int16_t x; memcpy(&x, p, 2); return x; }
	case GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); return x; }
	case GGUF_INT32: { int32_t x; memcpy(&x, p, 4); return x; }
	case GGUF_UINT64: { uint64_t x; memcpy(&x, p, 8); return (int64_t)x; }
	case GGUF_INT64: { int64_t x; memcpy(&x, p, 8); return x; }
	case GGUF_FLOAT32: { float x; memcpy(&x, p, 4); return x >= -9.2e18f && x <= 9.2e18f ? (int64_t)x : 0; }
	case GGUF_FLOAT64: { double x; memcpy(&x, p, 8); return x >= -9.2e18 && x <= 9.2e18 ? (int64_t)x : 0; }
	}
	return 0;
}
