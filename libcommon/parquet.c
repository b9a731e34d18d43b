/* parquet.c - Apache Parquet reader: Thrift compact footer, page decoding, Dremel
 * record assembly into JSON. See parquet.h for the contract, docs/parquet.md for the
 * JSON mapping.
 *
 * Design: one row group at a time, every needed column chunk is decoded whole into
 * level arrays (def/rep, one byte per entry) and a value array (pq_val, 16 bytes each;
 * byte arrays point into the mapped file or into decompressed page buffers kept alive
 * until the row group is done). Rows are then assembled by walking the schema tree with
 * one cursor per leaf column. Every length read from the file is checked against the
 * bytes that remain, so malformed input fails with an error instead of a crash. */
#include "parquet.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include "jsonl.h"

/* ---- limits that keep malformed files from exhausting memory ---- */
#define PQ_MAX_DEPTH 64                   /* schema nesting */
#define PQ_MAX_PAGE_VALUES (1u << 24)      /* entries in one data page */
#define PQ_MAX_PAGE_BYTES (1u << 30)       /* uncompressed page size */
#define PQ_MAX_CHUNK_VALUES ((int64_t)1 << 31)
#define PQ_MAX_DBA_BYTES (1u << 28)        /* decoded DELTA_BYTE_ARRAY bytes of one page */

/* physical types */
enum { PT_BOOLEAN, PT_INT32, PT_INT64, PT_INT96, PT_FLOAT, PT_DOUBLE, PT_BYTE_ARRAY, PT_FLBA };
/* repetition */
enum { REP_REQUIRED, REP_OPTIONAL, REP_REPEATED };
/* logical kinds (our own enumeration, merged from LogicalType and ConvertedType) */
enum {
	LK_NONE, LK_STRING, LK_MAP, LK_LIST, LK_ENUM, LK_DECIMAL, LK_DATE, LK_TIME, LK_TIMESTAMP,
	LK_INT, LK_UNKNOWN, LK_JSON, LK_BSON, LK_UUID, LK_FLOAT16, LK_INTERVAL
};
enum { TU_MILLIS = 1, TU_MICROS = 2, TU_NANOS = 3 };
/* page types */
enum { PG_DATA = 0, PG_INDEX = 1, PG_DICT = 2, PG_DATA_V2 = 3 };
/* encodings */
enum {
	ENC_PLAIN = 0, ENC_PLAIN_DICT = 2, ENC_RLE = 3, ENC_BIT_PACKED = 4, ENC_DELTA_BP = 5,
	ENC_DELTA_LBA = 6, ENC_DELTA_BA = 7, ENC_RLE_DICT = 8, ENC_BSS = 9
};
/* codecs */
enum { CODEC_NONE = 0, CODEC_SNAPPY = 1, CODEC_GZIP = 2, CODEC_LZO = 3, CODEC_BROTLI = 4,
       CODEC_LZ4 = 5, CODEC_ZSTD = 6, CODEC_LZ4_RAW = 7 };

static const char *codec_name(int c)
{
	static const char *n[] = {"uncompressed", "snappy", "gzip", "lzo", "brotli", "lz4", "zstd", "lz4_raw"};
	return c >= 0 && c < 8 ? n[c] : "unknown";
}

/* ======================= Thrift compact protocol ======================= */

typedef struct {
	const uint8_t *p, *end;
	int err;
	int depth;
} tc_reader;

static uint64_t tc_varint(tc_reader *r)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 70 && r->p < r->end; shift += 7) {
		uint8_t b = *r->p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	r->err = 1;
	return 0;
}

static int64_t tc_zigzag(tc_reader *r)
{
	uint64_t v = tc_varint(r);
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static int32_t tc_i32(tc_reader *r)
{
	int64_t v = tc_zigzag(r);
	if (v < INT32_MIN || v > INT32_MAX)
		r->err = 1;
	return (int32_t)v;
}

static int tc_binary(tc_reader *r, const uint8_t **s, size_t *n)
{
	uint64_t len = tc_varint(r);
	if (r->err || len > (uint64_t)(r->end - r->p)) {
		r->err = 1;
		return -1;
	}
	*s = r->p;
	*n = (size_t)len;
	r->p += len;
	return 0;
}

/* 1 = a field (id, type), 0 = stop or error */
static int tc_field(tc_reader *r, int16_t *id, int *type)
{
	if (r->err)
		return 0;
	if (r->p >= r->end) {
		r->err = 1;
		return 0;
	}
	uint8_t b = *r->p++;
	if (b == 0)
		return 0;
	*type = b & 15;
	int d = b >> 4;
	if (d)
		*id = (int16_t)(*id + d);
	else
		*id = (int16_t)tc_zigzag(r);
	return !r->err;
}

static size_t tc_list(tc_reader *r, int *etype)
{
	if (r->p >= r->end) {
		r->err = 1;
		return 0;
	}
	uint8_t b = *r->p++;
	*etype = b & 15;
	uint64_t n = b >> 4;
	if (n == 15)
		n = tc_varint(r);
	/* every element takes at least one byte */
	if (r->err || n > (uint64_t)(r->end - r->p)) {
		r->err = 1;
		return 0;
	}
	return (size_t)n;
}

static void tc_skip(tc_reader *r, int type, int in_list)
{
	if (r->err)
		return;
	if (++r->depth > 64) {
		r->err = 1;
		return;
	}
	switch (type) {
	case 1: case 2: /* bool: no payload in a field, one byte in a list/map */
		if (in_list) {
			if (r->p >= r->end)
				r->err = 1;
			else
				r->p++;
		}
		break;
	case 3:
		if (r->p >= r->end)
			r->err = 1;
		else
			r->p++;
		break;
	case 4: case 5: case 6:
		tc_varint(r);
		break;
	case 7:
		if (r->end - r->p < 8)
			r->err = 1;
		else
			r->p += 8;
		break;
	case 8: {
		const uint8_t *s;
		size_t n;
		tc_binary(r, &s, &n);
		break;
	}
	case 9: case 10: {
		int et;
		size_t n = tc_list(r, &et);
		for (size_t i = 0; i < n && !r->err; i++)
			tc_skip(r, et, 1);
		break;
	}
	case 11: {
		uint64_t n = tc_varint(r);
		if (r->err || n > (uint64_t)(r->end - r->p)) {
			r->err = 1;
			break;
		}
		if (n) {
			if (r->p >= r->end) {
				r->err = 1;
				break;
			}
			uint8_t kv = *r->p++;
			for (uint64_t i = 0; i < n && !r->err; i++) {
				tc_skip(r, kv >> 4, 1);
				tc_skip(r, kv & 15, 1);
			}
		}
		break;
	}
	case 12: {
		int16_t id = 0;
		int t;
		while (tc_field(r, &id, &t))
			tc_skip(r, t, 0);
		break;
	}
	default:
		r->err = 1;
	}
	r->depth--;
}

static int tc_bool(tc_reader *r, int type)
{
	if (type == 1)
		return 1;
	if (type == 2)
		return 0;
	tc_skip(r, type, 0);
	return 0;
}

/* ============================ metadata ============================ */

typedef struct {
	char *name;
	int type; /* physical type or -1 for a group */
	int type_length;
	int repetition; /* -1 when unset (root) */
	int num_children;
	int converted; /* ConvertedType or -1 */
	int scale, precision;
	int lk;        /* LK_* from LogicalType, LK_NONE when absent */
	int lt_utc;    /* TIME/TIMESTAMP isAdjustedToUTC */
	int lt_unit;   /* TU_* */
	int lt_bits;   /* INT bitWidth */
	int lt_signed; /* INT isSigned */
} pq_selem;

typedef struct {
	int64_t data_off, dict_off, comp_size, num_values;
	int codec, type;
	int has_meta;
	int external; /* file_path set: the chunk lives in another file */
} pq_chunk;

typedef struct {
	int64_t num_rows;
	pq_chunk *cols;
	size_t ncols;
} pq_rowgroup;

/* schema tree node */
typedef struct {
	const pq_selem *e;
	int *child;
	int nchild;
	int def, rep;          /* max definition / repetition level at this node */
	int leaf_lo, leaf_hi;  /* leaf columns [lo, hi) under this node */
	int leaf;              /* leaf column index or -1 */
	/* JSON shaping */
	int kind;              /* NK_* */
	int unwrap;            /* repeated group of a LIST: an instance is its single child */
	/* leaf value conversion */
	int conv;              /* CV_* */
	char *path;            /* dotted path (leaves) */
} pq_node;

enum { NK_LEAF, NK_STRUCT, NK_LIST, NK_MAP };
enum {
	CV_BOOL, CV_INT, CV_UINT32, CV_UINT64, CV_FLOAT, CV_DATE, CV_TIME, CV_TIMESTAMP, CV_INT96,
	CV_DECIMAL, CV_STRING, CV_BINARY, CV_UUID, CV_FLOAT16
};

struct parquet_file {
	char *name;
	const uint8_t *data;
	size_t len;
	void *map; /* mmap'ed region (parquet_open) or NULL */
	size_t maplen;
	int64_t num_rows;
	pq_selem *elems;
	size_t nelems;
	pq_rowgroup *rgs;
	size_t nrgs;
	pq_node *nodes;
	size_t nnodes;
	int *leaf_node; /* leaf column -> node */
	size_t nleaves;
	int64_t max_chunk_values; /* guard: entries one column chunk may claim */
};

static int pq_fail(sft_error *err, const parquet_file *pf, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int pq_fail(sft_error *err, const parquet_file *pf, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return sft_error_set(err, SFT_EXIT_DATA, "%s: %s", pf->name, msg);
}

static char *dup_n(const uint8_t *s, size_t n)
{
	char *d = malloc(n + 1);
	if (!d)
		return NULL;
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

static void parse_time_unit(tc_reader *r, pq_selem *e)
{
	int16_t id = 0;
	int t;
	while (tc_field(r, &id, &t)) {
		if (t == 12 && id >= 1 && id <= 3)
			e->lt_unit = id;
		tc_skip(r, t, 0);
	}
}

static void parse_logical(tc_reader *r, pq_selem *e)
{
	int16_t id = 0;
	int t;
	while (tc_field(r, &id, &t)) {
		if (t != 12) {
			tc_skip(r, t, 0);
			continue;
		}
		static const int map[] = {LK_NONE, LK_STRING, LK_MAP, LK_LIST, LK_ENUM, LK_DECIMAL, LK_DATE,
					  LK_TIME, LK_TIMESTAMP, LK_NONE, LK_INT, LK_UNKNOWN, LK_JSON, LK_BSON,
					  LK_UUID, LK_FLOAT16};
		e->lk = id >= 0 && id < 16 ? map[id] : LK_NONE;
		int16_t fid = 0;
		int ft;
		while (tc_field(r, &fid, &ft)) {
			if (e->lk == LK_DECIMAL && fid == 1 && ft == 5)
				e->scale = tc_i32(r);
			else if (e->lk == LK_DECIMAL && fid == 2 && ft == 5)
				e->precision = tc_i32(r);
			else if ((e->lk == LK_TIME || e->lk == LK_TIMESTAMP) && fid == 1 && (ft == 1 || ft == 2))
				e->lt_utc = tc_bool(r, ft);
			else if ((e->lk == LK_TIME || e->lk == LK_TIMESTAMP) && fid == 2 && ft == 12)
				parse_time_unit(r, e);
			else if (e->lk == LK_INT && fid == 1 && ft == 3) {
				if (r->p >= r->end)
					r->err = 1;
				else
					e->lt_bits = (int8_t)*r->p++;
			} else if (e->lk == LK_INT && fid == 2 && (ft == 1 || ft == 2))
				e->lt_signed = tc_bool(r, ft);
			else
				tc_skip(r, ft, 0);
		}
	}
}

static void parse_schema_elem(tc_reader *r, pq_selem *e)
{
	memset(e, 0, sizeof *e);
	e->type = -1;
	e->repetition = -1;
	e->converted = -1;
	e->lt_signed = 1;
	int16_t id = 0;
	int t;
	while (tc_field(r, &id, &t)) {
		if (id == 1 && t == 5)
			e->type = tc_i32(r);
		else if (id == 2 && t == 5)
			e->type_length = tc_i32(r);
		else if (id == 3 && t == 5)
			e->repetition = tc_i32(r);
		else if (id == 4 && t == 8) {
			const uint8_t *s;
			size_t n;
			if (tc_binary(r, &s, &n) == 0 && !e->name)
				e->name = dup_n(s, n);
		} else if (id == 5 && t == 5)
			e->num_children = tc_i32(r);
		else if (id == 6 && t == 5)
			e->converted = tc_i32(r);
		else if (id == 7 && t == 5)
			e->scale = tc_i32(r);
		else if (id == 8 && t == 5)
			e->precision = tc_i32(r);
		else if (id == 10 && t == 12)
			parse_logical(r, e);
		else
			tc_skip(r, t, 0);
	}
}

static void parse_col_meta(tc_reader *r, pq_chunk *c)
{
	int16_t id = 0;
	int t;
	c->has_meta = 1;
	while (tc_field(r, &id, &t)) {
		if (id == 1 && t == 5)
			c->type = tc_i32(r);
		else if (id == 4 && t == 5)
			c->codec = tc_i32(r);
		else if (id == 5 && t == 6)
			c->num_values = tc_zigzag(r);
		else if (id == 7 && t == 6)
			c->comp_size = tc_zigzag(r);
		else if (id == 9 && t == 6)
			c->data_off = tc_zigzag(r);
		else if (id == 11 && t == 6)
			c->dict_off = tc_zigzag(r);
		else
			tc_skip(r, t, 0);
	}
}

static void parse_chunk(tc_reader *r, pq_chunk *c)
{
	int16_t id = 0;
	int t;
	c->dict_off = -1;
	while (tc_field(r, &id, &t)) {
		if (id == 3 && t == 12)
			parse_col_meta(r, c);
		else if (id == 1 && t == 8) {
			const uint8_t *s;
			size_t n;
			if (tc_binary(r, &s, &n) == 0 && n > 0)
				c->external = 1;
		} else
			tc_skip(r, t, 0);
	}
}

/* Reads a list header whose elements must be structs (type 12) and returns a zeroed
 * array of n elements of `size` bytes (at least one allocated), or NULL with r->err set
 * (1 malformed, 2 out of memory). */
static void *tc_struct_list(tc_reader *r, size_t size, size_t *n)
{
	int et;
	*n = tc_list(r, &et);
	if (r->err)
		return NULL;
	if (et != 12) {
		r->err = 1;
		return NULL;
	}
	void *a = calloc(*n ? *n : 1, size);
	if (!a)
		r->err = 2;
	return a;
}

static void parse_rowgroup(tc_reader *r, pq_rowgroup *g)
{
	int16_t id = 0;
	int t;
	while (tc_field(r, &id, &t)) {
		if (id == 1 && t == 9 && !g->cols) {
			size_t n;
			g->cols = tc_struct_list(r, sizeof *g->cols, &n);
			if (!g->cols)
				return;
			g->ncols = n;
			for (size_t i = 0; i < n && !r->err; i++)
				parse_chunk(r, &g->cols[i]);
		} else if (id == 3 && t == 6)
			g->num_rows = tc_zigzag(r);
		else
			tc_skip(r, t, 0);
	}
}

static void parse_filemeta(tc_reader *r, parquet_file *pf)
{
	int16_t id = 0;
	int t;
	while (tc_field(r, &id, &t)) {
		if (id == 2 && t == 9 && !pf->elems) {
			size_t n;
			pf->elems = tc_struct_list(r, sizeof *pf->elems, &n);
			if (!pf->elems)
				return;
			pf->nelems = n;
			for (size_t i = 0; i < n && !r->err; i++)
				parse_schema_elem(r, &pf->elems[i]);
		} else if (id == 3 && t == 6)
			pf->num_rows = tc_zigzag(r);
		else if (id == 4 && t == 9 && !pf->rgs) {
			size_t n;
			pf->rgs = tc_struct_list(r, sizeof *pf->rgs, &n);
			if (!pf->rgs)
				return;
			pf->nrgs = n;
			for (size_t i = 0; i < n && !r->err; i++)
				parse_rowgroup(r, &pf->rgs[i]);
		} else
			tc_skip(r, t, 0);
	}
}

/* ============================ schema tree ============================ */

static int conv_physical(int type)
{
	switch (type) {
	case PT_BOOLEAN: return CV_BOOL;
	case PT_INT32: case PT_INT64: return CV_INT;
	case PT_INT96: return CV_INT96;
	case PT_FLOAT: case PT_DOUBLE: return CV_FLOAT;
	default: return CV_BINARY;
	}
}

static int conv_annotated(const pq_selem *e);

/* The conversion for a leaf: its annotation when that fits the physical type (the value
 * union is read as the physical type dictates), else the physical type's default. */
static int conv_for_leaf(const pq_selem *e)
{
	int cv = conv_annotated(e), t = e->type;
	int bytes = t == PT_BYTE_ARRAY || t == PT_FLBA;
	int ok;
	switch (cv) {
	case CV_STRING: case CV_BINARY: ok = bytes; break;
	case CV_UUID: ok = t == PT_FLBA && e->type_length == 16; break;
	case CV_FLOAT16: ok = t == PT_FLBA && e->type_length == 2; break;
	case CV_UINT32: case CV_DATE: ok = t == PT_INT32; break;
	case CV_UINT64: case CV_TIMESTAMP: ok = t == PT_INT64; break;
	case CV_TIME: ok = t == PT_INT32 || t == PT_INT64; break;
	case CV_DECIMAL: ok = t == PT_INT32 || t == PT_INT64 || bytes; break;
	default: ok = cv == conv_physical(t); break;
	}
	return ok ? cv : conv_physical(t);
}

static int conv_annotated(const pq_selem *e)
{
	int lk = e->lk;
	if (lk == LK_NONE) { /* legacy ConvertedType */
		switch (e->converted) {
		case 0: return CV_STRING;
		case 4: return CV_STRING; /* ENUM */
		case 19: return CV_STRING; /* JSON */
		case 5: return CV_DECIMAL;
		case 6: return CV_DATE;
		case 7: case 8: return CV_TIME;
		case 9: case 10: return CV_TIMESTAMP;
		case 11: case 12: case 13: return e->type == PT_INT64 ? CV_UINT64 : CV_UINT32;
		case 14: return CV_UINT64;
		default: break;
		}
	} else {
		switch (lk) {
		case LK_STRING: case LK_ENUM: case LK_JSON: return CV_STRING;
		case LK_DECIMAL: return CV_DECIMAL;
		case LK_DATE: return CV_DATE;
		case LK_TIME: return CV_TIME;
		case LK_TIMESTAMP: return CV_TIMESTAMP;
		case LK_INT:
			if (!e->lt_signed)
				return e->type == PT_INT64 ? CV_UINT64 : CV_UINT32;
			break;
		case LK_UUID: return e->type == PT_FLBA && e->type_length == 16 ? CV_UUID : CV_BINARY;
		case LK_FLOAT16: return e->type == PT_FLBA && e->type_length == 2 ? CV_FLOAT16 : CV_BINARY;
		default: break;
		}
	}
	return conv_physical(e->type);
}

static int utf8_valid(const uint8_t *s, size_t n);

/* Builds node `ni` from elems[*pos]; recursion bounded by PQ_MAX_DEPTH. */
static int build_node(parquet_file *pf, size_t *pos, int depth, int pdef, int prep, char *path,
		      size_t pathlen, sft_error *err)
{
	if (depth > PQ_MAX_DEPTH)
		return pq_fail(err, pf, "schema nested deeper than %d levels", PQ_MAX_DEPTH);
	if (*pos >= pf->nelems)
		return pq_fail(err, pf, "schema ends early (num_children larger than the element list)");
	size_t ni = pf->nnodes++;
	const pq_selem *e = &pf->elems[(*pos)++];
	pq_node *n = &pf->nodes[ni];
	n->e = e;
	n->leaf = -1;
	if (!e->name)
		return pq_fail(err, pf, "schema element %zu has no name", *pos - 1);
	if (!utf8_valid((const uint8_t *)e->name, strlen(e->name)))
		return pq_fail(err, pf, "schema element %zu has a name that is not valid UTF-8", *pos - 1);
	int rep = depth == 0 ? REP_REQUIRED : e->repetition;
	if (rep < 0 || rep > 2)
		return pq_fail(err, pf, "schema element '%s' has invalid repetition %d", e->name, rep);
	n->def = pdef + (rep != REP_REQUIRED);
	n->rep = prep + (rep == REP_REPEATED);
	size_t plen = pathlen;
	if (depth > 0) {
		size_t nl = strlen(e->name);
		if (pathlen + nl + 2 > 4096)
			return pq_fail(err, pf, "schema path too long");
		if (pathlen)
			path[plen++] = '.';
		memcpy(path + plen, e->name, nl);
		plen += nl;
		path[plen] = 0;
	}
	n->leaf_lo = (int)pf->nleaves;
	if (e->num_children <= 0 && depth > 0) {
		if (e->type < 0 || e->type > PT_FLBA)
			return pq_fail(err, pf, "column '%s' has invalid physical type %d", path, e->type);
		if (e->type == PT_FLBA && (e->type_length <= 0 || e->type_length > (1 << 24)))
			return pq_fail(err, pf, "column '%s' has invalid fixed length %d", path, e->type_length);
		n->kind = NK_LEAF;
		n->leaf = (int)pf->nleaves++;
		n->conv = conv_for_leaf(e);
		n->path = strdup(path);
		if (!n->path)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		n->leaf_hi = (int)pf->nleaves;
		return 0;
	}
	int nc = e->num_children;
	if (nc < 0 || (size_t)nc > pf->nelems - *pos)
		return pq_fail(err, pf, "schema element '%s' claims %d children", e->name, nc);
	n->child = calloc(nc ? (size_t)nc : 1, sizeof *n->child);
	if (!n->child)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	n->nchild = nc;
	for (int i = 0; i < nc; i++) {
		n->child[i] = (int)pf->nnodes;
		if (build_node(pf, pos, depth + 1, n->def, n->rep, path, plen, err))
			return -1;
		n = &pf->nodes[ni]; /* nodes array is preallocated: pointer stays valid */
	}
	path[pathlen] = 0;
	n->leaf_hi = (int)pf->nleaves;
	n->kind = NK_STRUCT;
	if (nc == 0)
		return pq_fail(err, pf, "group '%s' has no fields", e->name);
	int is_list = e->lk == LK_LIST || e->converted == 3;
	int is_map = e->lk == LK_MAP || e->converted == 1 || e->converted == 2;
	if (depth > 0 && rep != REP_REPEATED && nc == 1) {
		pq_node *c = &pf->nodes[n->child[0]];
		if (is_list && c->e->repetition == REP_REPEATED) {
			n->kind = NK_LIST;
			/* backward-compatibility rules of the LIST spec: a repeated group with one
			 * field is the element wrapper unless it is named "array" or "<x>_tuple" */
			if (c->kind != NK_LEAF && c->nchild == 1 && strcmp(c->e->name, "array") != 0) {
				size_t cl = strlen(c->e->name), pl = strlen(e->name);
				if (!(cl == pl + 6 && strncmp(c->e->name, e->name, pl) == 0 &&
				      strcmp(c->e->name + pl, "_tuple") == 0))
					c->unwrap = 1;
			}
		} else if (is_map && c->e->repetition == REP_REPEATED && c->kind != NK_LEAF &&
			   (c->nchild == 1 || c->nchild == 2)) {
			n->kind = NK_MAP;
		}
	}
	return 0;
}

static int build_schema(parquet_file *pf, sft_error *err)
{
	if (pf->nelems == 0)
		return pq_fail(err, pf, "empty schema");
	pf->nodes = calloc(pf->nelems, sizeof *pf->nodes);
	if (!pf->nodes)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	char path[4096];
	path[0] = 0;
	size_t pos = 0;
	if (build_node(pf, &pos, 0, 0, 0, path, 0, err))
		return -1;
	if (pos != pf->nelems)
		return pq_fail(err, pf, "schema has %zu elements outside the root", pf->nelems - pos);
	pf->leaf_node = calloc(pf->nleaves ? pf->nleaves : 1, sizeof *pf->leaf_node);
	if (!pf->leaf_node)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	for (size_t i = 0; i < pf->nnodes; i++)
		if (pf->nodes[i].leaf >= 0)
			pf->leaf_node[pf->nodes[i].leaf] = (int)i;
	return 0;
}

/* ============================ open / close ============================ */

void parquet_close(parquet_file *pf)
{
	if (!pf)
		return;
	for (size_t i = 0; i < pf->nelems; i++)
		free(pf->elems[i].name);
	free(pf->elems);
	for (size_t i = 0; i < pf->nrgs; i++)
		free(pf->rgs[i].cols);
	free(pf->rgs);
	for (size_t i = 0; i < pf->nnodes; i++) {
		free(pf->nodes[i].child);
		free(pf->nodes[i].path);
	}
	free(pf->nodes);
	free(pf->leaf_node);
	if (pf->map)
		munmap(pf->map, pf->maplen);
	free(pf->name);
	free(pf);
}

static int open_parse(parquet_file *pf, sft_error *err)
{
	const uint8_t *d = pf->data;
	size_t len = pf->len;
	if (len < 12)
		return pq_fail(err, pf, "not a parquet file (only %zu bytes)", len);
	if (memcmp(d, "PAR1", 4) != 0 || memcmp(d + len - 4, "PAR1", 4) != 0) {
		if (memcmp(d + len - 4, "PARE", 4) == 0)
			return pq_fail(err, pf, "encrypted parquet files are not supported");
		return pq_fail(err, pf, "not a parquet file (bad magic)");
	}
	uint32_t mlen = (uint32_t)d[len - 8] | (uint32_t)d[len - 7] << 8 | (uint32_t)d[len - 6] << 16 |
			(uint32_t)d[len - 5] << 24;
	if ((size_t)mlen > len - 12)
		return pq_fail(err, pf, "footer length %u exceeds the file size %zu (truncated file?)", mlen, len);
	tc_reader r = {d + len - 8 - mlen, d + len - 8, 0, 0};
	parse_filemeta(&r, pf);
	if (r.err == 2)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", pf->name);
	if (r.err)
		return pq_fail(err, pf, "corrupt footer metadata (thrift decoding failed at byte %zu of %u)",
			       (size_t)(r.p - (d + len - 8 - mlen)), mlen);
	if (build_schema(pf, err))
		return -1;
	if (pf->num_rows < 0)
		return pq_fail(err, pf, "negative row count");
	int64_t total = 0;
	for (size_t g = 0; g < pf->nrgs; g++) {
		pq_rowgroup *rg = &pf->rgs[g];
		if (rg->ncols != pf->nleaves)
			return pq_fail(err, pf, "row group %zu has %zu columns, schema has %zu", g, rg->ncols,
				       pf->nleaves);
		if (rg->num_rows < 0 || rg->num_rows > INT64_MAX - total)
			return pq_fail(err, pf, "row group %zu has invalid row count", g);
		total += rg->num_rows;
		for (size_t c = 0; c < rg->ncols; c++) {
			pq_chunk *ch = &rg->cols[c];
			const pq_node *n = &pf->nodes[pf->leaf_node[c]];
			if (ch->external)
				return pq_fail(err, pf, "row group %zu, column '%s': column chunks in external files are not supported",
					       g, n->path);
			if (!ch->has_meta)
				return pq_fail(err, pf, "row group %zu, column '%s': no column metadata", g, n->path);
			if (ch->type != n->e->type)
				return pq_fail(err, pf, "row group %zu, column '%s': type %d differs from schema type %d",
					       g, n->path, ch->type, n->e->type);
			if (ch->num_values < 0 || ch->num_values > PQ_MAX_CHUNK_VALUES)
				return pq_fail(err, pf, "row group %zu, column '%s': invalid value count", g, n->path);
		}
	}
	if (total != pf->num_rows)
		return pq_fail(err, pf, "row groups hold %lld rows, footer says %lld", (long long)total,
			       (long long)pf->num_rows);
	return 0;
}

parquet_file *parquet_open_mem(const void *buf, size_t len, const char *name, sft_error *err)
{
	parquet_file *pf = calloc(1, sizeof *pf);
	if (!pf || !(pf->name = strdup(name ? name : "<memory>"))) {
		free(pf);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	pf->data = buf;
	pf->len = len;
	pf->max_chunk_values = PQ_MAX_CHUNK_VALUES;
	if (open_parse(pf, err)) {
		parquet_close(pf);
		return NULL;
	}
	return pf;
}

parquet_file *parquet_open(const char *path, sft_error *err)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	size_t len = (size_t)st.st_size;
	void *map = NULL;
	if (len > 0) {
		map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "%s: mmap: %s", path, strerror(errno));
			close(fd);
			return NULL;
		}
	}
	close(fd);
	parquet_file *pf = calloc(1, sizeof *pf);
	if (!pf || !(pf->name = strdup(path))) {
		free(pf);
		if (map)
			munmap(map, len);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	pf->map = map;
	pf->maplen = len;
	pf->data = map ? map : (const uint8_t *)"";
	pf->len = len;
	pf->max_chunk_values = PQ_MAX_CHUNK_VALUES;
	if (open_parse(pf, err)) {
		parquet_close(pf);
		return NULL;
	}
	return pf;
}

int64_t parquet_num_rows(const parquet_file *pf) { return pf->num_rows; }

void parquet_set_max_chunk_values(parquet_file *pf, int64_t n)
{
	pf->max_chunk_values = n > 0 && n < PQ_MAX_CHUNK_VALUES ? n : PQ_MAX_CHUNK_VALUES;
}
size_t parquet_num_row_groups(const parquet_file *pf) { return pf->nrgs; }
size_t parquet_num_columns(const parquet_file *pf) { return (size_t)pf->nodes[0].nchild; }

const char *parquet_column_name(const parquet_file *pf, size_t i)
{
	if (i >= (size_t)pf->nodes[0].nchild)
		return NULL;
	return pf->nodes[pf->nodes[0].child[i]].e->name;
}

/* ============================ page decoding ============================ */

typedef union {
	int64_t i;
	double d;
	struct {
		const uint8_t *p;
		uint32_t n;
	} b;
} pq_val;

typedef struct {
	uint8_t *def, *rep;
	size_t n, cap;
	pq_val *vals;
	size_t nvals, capv;
	pq_val *dict;
	size_t ndict;
	void **bufs;
	size_t nbufs, capbufs;
	size_t pos, vpos;
	uint32_t *idx; /* scratch: dictionary indices / lengths */
	size_t capidx;
	int64_t *i64; /* scratch for delta decoding */
	size_t capi64;
} pq_col;

/* error context while decoding one page */
typedef struct {
	const parquet_file *pf;
	size_t rg;
	const pq_node *node;
	int page;
	sft_error *err;
} pq_ctx;

static int page_fail(pq_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int page_fail(pq_ctx *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (c->page >= 0)
		return sft_error_set(c->err, SFT_EXIT_DATA, "%s: row group %zu, column '%s', page %d: %s",
				     c->pf->name, c->rg, c->node->path, c->page, msg);
	return sft_error_set(c->err, SFT_EXIT_DATA, "%s: row group %zu, column '%s': %s", c->pf->name,
			     c->rg, c->node->path, msg);
}

static int oom(pq_ctx *c)
{
	return sft_error_set(c->err, SFT_EXIT_RUNTIME, "%s: out of memory", c->pf->name);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap : 64;
	while (nc < need)
		nc *= 2;
	void *q = realloc(*p, nc * elem);
	if (!q)
		return -1;
	*p = q;
	*cap = nc;
	return 0;
}

static void col_reset(pq_col *c)
{
	for (size_t i = 0; i < c->nbufs; i++)
		free(c->bufs[i]);
	c->nbufs = 0;
	c->n = c->nvals = c->ndict = 0;
	free(c->dict);
	c->dict = NULL;
	c->pos = c->vpos = 0;
}

static void col_free(pq_col *c)
{
	col_reset(c);
	free(c->bufs);
	free(c->def);
	free(c->rep);
	free(c->vals);
	free(c->idx);
	free(c->i64);
	memset(c, 0, sizeof *c);
}

static int col_keep(pq_col *c, void *buf)
{
	if (grow((void **)&c->bufs, &c->capbufs, c->nbufs + 1, sizeof *c->bufs)) {
		free(buf);
		return -1;
	}
	c->bufs[c->nbufs++] = buf;
	return 0;
}

static inline uint64_t bits_get(const uint8_t *p, size_t nbytes, uint64_t bitoff, int bw)
{
	size_t byte = (size_t)(bitoff >> 3);
	int sh = (int)(bitoff & 7);
	if (bw <= 32 && byte + 8 <= nbytes) {
		uint64_t w;
		memcpy(&w, p + byte, 8);
		return (w >> sh) & ((1ull << bw) - 1);
	}
	uint64_t v = 0;
	int got = 0;
	while (got < bw) {
		uint8_t b = byte < nbytes ? p[byte] : 0;
		v |= (uint64_t)(b >> sh) << got;
		got += 8 - sh;
		sh = 0;
		byte++;
	}
	if (bw < 64)
		v &= (1ull << bw) - 1;
	return v;
}

static int read_uleb(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	const uint8_t *p = *pp;
	for (int shift = 0; shift < 70; shift += 7) {
		if (p >= end)
			return -1;
		uint8_t b = *p++;
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			*pp = p;
			return 0;
		}
	}
	return -1;
}

/* RLE / bit-packed hybrid: decodes `count` values of width bw (0..32) into out. */
static int rle_decode(const uint8_t *p, const uint8_t *end, int bw, uint32_t *out, size_t count)
{
	size_t i = 0;
	size_t vb = (size_t)(bw + 7) / 8;
	while (i < count) {
		uint64_t h;
		if (read_uleb(&p, end, &h))
			return -1;
		if (h & 1) {
			uint64_t groups = h >> 1;
			if (groups > (uint64_t)(end - p) + 1)
				return -1;
			size_t nbytes = (size_t)groups * (size_t)bw;
			size_t avail = (size_t)(end - p);
			if (nbytes > avail)
				nbytes = avail; /* a truncated last run: missing bits are an error below */
			size_t nv = (size_t)groups * 8;
			if (nv > count - i)
				nv = count - i;
			if (((uint64_t)nv * (uint64_t)bw + 7) / 8 > nbytes)
				return -1;
			if (bw == 0)
				memset(out + i, 0, nv * sizeof *out);
			else
				for (size_t k = 0; k < nv; k++)
					out[i + k] = (uint32_t)bits_get(p, nbytes, (uint64_t)k * (uint64_t)bw, bw);
			i += nv;
			p += nbytes;
		} else {
			uint64_t run = h >> 1;
			if ((size_t)(end - p) < vb)
				return -1;
			uint32_t v = 0;
			for (size_t k = 0; k < vb; k++)
				v |= (uint32_t)p[k] << (8 * k);
			p += vb;
			if (run > count - i)
				run = count - i;
			for (size_t k = 0; k < run; k++)
				out[i + k] = v;
			i += (size_t)run;
		}
	}
	return 0;
}

static int bit_width(unsigned v)
{
	int w = 0;
	while (v) {
		w++;
		v >>= 1;
	}
	return w;
}

/* Decodes `count` levels (max level `maxl`) into out. */
static int levels_decode(pq_col *c, const uint8_t *p, const uint8_t *end, int maxl, uint8_t *out,
			 size_t count)
{
	if (grow((void **)&c->idx, &c->capidx, count, sizeof *c->idx))
		return -2;
	if (rle_decode(p, end, bit_width((unsigned)maxl), c->idx, count))
		return -1;
	for (size_t i = 0; i < count; i++) {
		if (c->idx[i] > (uint32_t)maxl)
			return -1;
		out[i] = (uint8_t)c->idx[i];
	}
	return 0;
}

static int decompress(pq_ctx *cx, int codec, const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
	switch (codec) {
	case CODEC_SNAPPY: {
		size_t ul;
		if (snappy_uncompressed_length((const char *)src, slen, &ul) != SNAPPY_OK || ul != dlen)
			return page_fail(cx, "snappy decompression failed (bad length header)");
		size_t out = dlen;
		if (snappy_uncompress((const char *)src, slen, (char *)dst, &out) != SNAPPY_OK || out != dlen)
			return page_fail(cx, "snappy decompression failed");
		return 0;
	}
	case CODEC_ZSTD: {
		size_t r = ZSTD_decompress(dst, dlen, src, slen);
		if (ZSTD_isError(r))
			return page_fail(cx, "zstd decompression failed: %s", ZSTD_getErrorName(r));
		if (r != dlen)
			return page_fail(cx, "zstd decompression gave %zu bytes, expected %zu", r, dlen);
		return 0;
	}
	case CODEC_GZIP: {
		z_stream z;
		memset(&z, 0, sizeof z);
		if (inflateInit2(&z, 15 + 32) != Z_OK)
			return oom(cx);
		z.next_in = (Bytef *)src;
		z.avail_in = (uInt)slen;
		z.next_out = dst;
		z.avail_out = (uInt)dlen;
		int rc = inflate(&z, Z_FINISH);
		size_t got = dlen - z.avail_out;
		inflateEnd(&z);
		if (rc != Z_STREAM_END || got != dlen)
			return page_fail(cx, "gzip decompression failed");
		return 0;
	}
	default:
		return page_fail(cx, "compression codec %s (%d) is not supported (supported: uncompressed, snappy, gzip, zstd)",
				 codec_name(codec), codec);
	}
}

/* PLAIN: decodes n values; *used = bytes consumed. */
static int plain_decode(const pq_node *node, const uint8_t *p, size_t len, size_t n, pq_val *out,
			size_t *used)
{
	size_t off = 0;
	switch (node->e->type) {
	case PT_BOOLEAN:
		if ((n + 7) / 8 > len)
			return -1;
		for (size_t i = 0; i < n; i++)
			out[i].i = (p[i >> 3] >> (i & 7)) & 1;
		off = (n + 7) / 8;
		break;
	case PT_INT32:
		if (n > len / 4)
			return -1;
		for (size_t i = 0; i < n; i++) {
			int32_t v;
			memcpy(&v, p + 4 * i, 4);
			out[i].i = v;
		}
		off = 4 * n;
		break;
	case PT_INT64:
		if (n > len / 8)
			return -1;
		for (size_t i = 0; i < n; i++)
			memcpy(&out[i].i, p + 8 * i, 8);
		off = 8 * n;
		break;
	case PT_FLOAT:
		if (n > len / 4)
			return -1;
		for (size_t i = 0; i < n; i++) {
			float f;
			memcpy(&f, p + 4 * i, 4);
			out[i].d = f;
		}
		off = 4 * n;
		break;
	case PT_DOUBLE:
		if (n > len / 8)
			return -1;
		for (size_t i = 0; i < n; i++)
			memcpy(&out[i].d, p + 8 * i, 8);
		off = 8 * n;
		break;
	case PT_INT96:
		if (n > len / 12)
			return -1;
		for (size_t i = 0; i < n; i++) {
			out[i].b.p = p + 12 * i;
			out[i].b.n = 12;
		}
		off = 12 * n;
		break;
	case PT_FLBA: {
		size_t w = (size_t)node->e->type_length;
		if (n > len / w)
			return -1;
		for (size_t i = 0; i < n; i++) {
			out[i].b.p = p + w * i;
			out[i].b.n = (uint32_t)w;
		}
		off = w * n;
		break;
	}
	case PT_BYTE_ARRAY:
		for (size_t i = 0; i < n; i++) {
			if (len - off < 4)
				return -1;
			uint32_t l;
			memcpy(&l, p + off, 4);
			off += 4;
			if (l > len - off)
				return -1;
			out[i].b.p = p + off;
			out[i].b.n = l;
			off += l;
		}
		break;
	default:
		return -1;
	}
	*used = off;
	return 0;
}

/* DELTA_BINARY_PACKED: decodes the whole stream into c->i64 (*count values). */
static int delta_decode(pq_col *c, const uint8_t **pp, const uint8_t *end, size_t maxcount, size_t *count)
{
	const uint8_t *p = *pp;
	uint64_t block, nmini, total, zz;
	if (read_uleb(&p, end, &block) || read_uleb(&p, end, &nmini) || read_uleb(&p, end, &total) ||
	    read_uleb(&p, end, &zz))
		return -1;
	if (block == 0 || block % 128 || block > (1u << 20) || nmini == 0 || block % nmini ||
	    (block / nmini) % 32 || total > maxcount)
		return -1;
	size_t per = (size_t)(block / nmini);
	if (grow((void **)&c->i64, &c->capi64, total ? (size_t)total : 1, sizeof *c->i64))
		return -2;
	uint64_t last = (zz >> 1) ^ -(zz & 1);
	size_t i = 0;
	if (total)
		c->i64[i++] = (int64_t)last;
	while (i < total) {
		uint64_t mzz;
		if (read_uleb(&p, end, &mzz))
			return -1;
		uint64_t mind = (mzz >> 1) ^ -(mzz & 1);
		if ((uint64_t)(end - p) < nmini)
			return -1;
		const uint8_t *widths = p;
		p += nmini;
		for (size_t m = 0; m < nmini && i < total; m++) {
			int bw = widths[m];
			if (bw > 64)
				return -1;
			size_t nbytes = per * (size_t)bw / 8;
			if ((size_t)(end - p) < nbytes)
				return -1;
			for (size_t j = 0; j < per && i < total; j++) {
				uint64_t v = bw ? bits_get(p, nbytes, (uint64_t)j * (uint64_t)bw, bw) : 0;
				last = last + mind + v;
				c->i64[i++] = (int64_t)last;
			}
			p += nbytes;
		}
	}
	*count = (size_t)total;
	*pp = p;
	return 0;
}

/* Decodes n values of the data page body [p, end) with encoding enc, appending to c->vals. */
static int values_decode(pq_ctx *cx, pq_col *c, int enc, const uint8_t *p, const uint8_t *end, size_t n)
{
	const pq_node *node = cx->node;
	int type = node->e->type;
	if (grow((void **)&c->vals, &c->capv, c->nvals + n + 1, sizeof *c->vals))
		return oom(cx);
	pq_val *out = c->vals + c->nvals;
	size_t len = (size_t)(end - p);
	switch (enc) {
	case ENC_PLAIN: {
		size_t used;
		if (plain_decode(node, p, len, n, out, &used))
			return page_fail(cx, "PLAIN values run past the end of the page");
		break;
	}
	case ENC_PLAIN_DICT:
	case ENC_RLE_DICT: {
		if (!c->dict)
			return page_fail(cx, "dictionary-encoded page without a dictionary page");
		if (n == 0)
			break;
		if (len < 1)
			return page_fail(cx, "dictionary indices missing");
		int bw = p[0];
		if (bw > 32)
			return page_fail(cx, "dictionary index bit width %d is invalid", bw);
		if (grow((void **)&c->idx, &c->capidx, n, sizeof *c->idx))
			return oom(cx);
		if (rle_decode(p + 1, end, bw, c->idx, n))
			return page_fail(cx, "dictionary indices are corrupt");
		for (size_t i = 0; i < n; i++) {
			if (c->idx[i] >= c->ndict)
				return page_fail(cx, "dictionary index %u out of range (dictionary has %zu entries)",
						 c->idx[i], c->ndict);
			out[i] = c->dict[c->idx[i]];
		}
		break;
	}
	case ENC_RLE: {
		if (type != PT_BOOLEAN)
			return page_fail(cx, "RLE encoding is only valid for booleans");
		if (len < 4)
			return page_fail(cx, "RLE boolean data missing");
		uint32_t l = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
		if (l > len - 4)
			return page_fail(cx, "RLE boolean data runs past the end of the page");
		if (grow((void **)&c->idx, &c->capidx, n ? n : 1, sizeof *c->idx))
			return oom(cx);
		if (rle_decode(p + 4, p + 4 + l, 1, c->idx, n))
			return page_fail(cx, "RLE boolean data is corrupt");
		for (size_t i = 0; i < n; i++)
			out[i].i = c->idx[i];
		break;
	}
	case ENC_DELTA_BP: {
		if (type != PT_INT32 && type != PT_INT64)
			return page_fail(cx, "DELTA_BINARY_PACKED is only valid for INT32/INT64");
		size_t cnt;
		int rc = delta_decode(c, &p, end, n, &cnt);
		if (rc == -2)
			return oom(cx);
		if (rc || cnt != n)
			return page_fail(cx, "DELTA_BINARY_PACKED data is corrupt");
		for (size_t i = 0; i < n; i++)
			out[i].i = type == PT_INT32 ? (int64_t)(int32_t)c->i64[i] : c->i64[i];
		break;
	}
	case ENC_DELTA_LBA: {
		if (type != PT_BYTE_ARRAY)
			return page_fail(cx, "DELTA_LENGTH_BYTE_ARRAY is only valid for BYTE_ARRAY");
		size_t cnt;
		int rc = delta_decode(c, &p, end, n, &cnt);
		if (rc == -2)
			return oom(cx);
		if (rc || cnt != n)
			return page_fail(cx, "DELTA_LENGTH_BYTE_ARRAY lengths are corrupt");
		for (size_t i = 0; i < n; i++) {
			int64_t l = c->i64[i];
			if (l < 0 || l > end - p)
				return page_fail(cx, "DELTA_LENGTH_BYTE_ARRAY value runs past the end of the page");
			out[i].b.p = p;
			out[i].b.n = (uint32_t)l;
			p += l;
		}
		break;
	}
	case ENC_DELTA_BA: {
		if (type != PT_BYTE_ARRAY && type != PT_FLBA)
			return page_fail(cx, "DELTA_BYTE_ARRAY is only valid for byte arrays");
		size_t cnt;
		int rc = delta_decode(c, &p, end, n, &cnt);
		if (rc == -2)
			return oom(cx);
		if (rc || cnt != n)
			return page_fail(cx, "DELTA_BYTE_ARRAY prefix lengths are corrupt");
		/* prefix lengths -> keep in idx (they fit: checked against previous length) */
		if (grow((void **)&c->idx, &c->capidx, n ? n : 1, sizeof *c->idx))
			return oom(cx);
		for (size_t i = 0; i < n; i++) {
			if (c->i64[i] < 0 || c->i64[i] > UINT32_MAX)
				return page_fail(cx, "DELTA_BYTE_ARRAY prefix length is invalid");
			c->idx[i] = (uint32_t)c->i64[i];
		}
		rc = delta_decode(c, &p, end, n, &cnt);
		if (rc == -2)
			return oom(cx);
		if (rc || cnt != n)
			return page_fail(cx, "DELTA_BYTE_ARRAY suffix lengths are corrupt");
		size_t total = 0, avail = (size_t)(end - p);
		uint64_t prev = 0, sufsum = 0;
		for (size_t i = 0; i < n; i++) {
			int64_t sl = c->i64[i];
			if (sl < 0 || (uint64_t)sl > avail - sufsum || c->idx[i] > prev)
				return page_fail(cx, "DELTA_BYTE_ARRAY value is corrupt");
			sufsum += (uint64_t)sl;
			prev = c->idx[i] + (uint64_t)sl;
			if (prev > PQ_MAX_DBA_BYTES || total > PQ_MAX_DBA_BYTES)
				return page_fail(cx, "DELTA_BYTE_ARRAY values too large");
			total += (size_t)prev;
		}
		uint8_t *buf = malloc(total ? total : 1);
		if (!buf || col_keep(c, buf))
			return oom(cx);
		uint8_t *w = buf;
		const uint8_t *prevp = buf;
		for (size_t i = 0; i < n; i++) {
			size_t pl = c->idx[i], sl = (size_t)c->i64[i];
			memmove(w, prevp, pl);
			memcpy(w + pl, p, sl);
			p += sl;
			out[i].b.p = w;
			out[i].b.n = (uint32_t)(pl + sl);
			if (type == PT_FLBA && pl + sl != (size_t)node->e->type_length)
				return page_fail(cx, "DELTA_BYTE_ARRAY value has the wrong fixed length");
			prevp = w;
			w += pl + sl;
		}
		break;
	}
	case ENC_BSS: {
		size_t w;
		switch (type) {
		case PT_INT32: case PT_FLOAT: w = 4; break;
		case PT_INT64: case PT_DOUBLE: w = 8; break;
		case PT_FLBA: w = (size_t)node->e->type_length; break;
		default: return page_fail(cx, "BYTE_STREAM_SPLIT is not valid for this type");
		}
		if (n > len / w)
			return page_fail(cx, "BYTE_STREAM_SPLIT data runs past the end of the page");
		/* the page may hold exactly n values: stream k starts at k * n */
		uint8_t *buf = malloc(n * w + 1);
		if (!buf || col_keep(c, buf))
			return oom(cx);
		for (size_t i = 0; i < n; i++)
			for (size_t k = 0; k < w; k++)
				buf[i * w + k] = p[k * n + i];
		size_t used;
		if (plain_decode(node, buf, n * w, n, out, &used))
			return page_fail(cx, "BYTE_STREAM_SPLIT data is corrupt");
		break;
	}
	case ENC_BIT_PACKED:
		return page_fail(cx, "BIT_PACKED value encoding is not valid for values");
	default:
		return page_fail(cx, "unknown value encoding %d", enc);
	}
	c->nvals += n;
	return 0;
}

typedef struct {
	int type;
	int32_t usize, csize;
	int32_t num_values, encoding, def_enc, rep_enc;
	int32_t num_nulls, num_rows, def_len, rep_len;
	int is_compressed;
	int has_hdr;
} pq_page;

static void parse_dp_header(tc_reader *r, pq_page *pg, int v2)
{
	int16_t id = 0;
	int t;
	pg->has_hdr = 1;
	while (tc_field(r, &id, &t)) {
		if (t == 5 && id == 1)
			pg->num_values = tc_i32(r);
		else if (!v2 && t == 5 && id == 2)
			pg->encoding = tc_i32(r);
		else if (!v2 && t == 5 && id == 3)
			pg->def_enc = tc_i32(r);
		else if (!v2 && t == 5 && id == 4)
			pg->rep_enc = tc_i32(r);
		else if (v2 && t == 5 && id == 2)
			pg->num_nulls = tc_i32(r);
		else if (v2 && t == 5 && id == 3)
			pg->num_rows = tc_i32(r);
		else if (v2 && t == 5 && id == 4)
			pg->encoding = tc_i32(r);
		else if (v2 && t == 5 && id == 5)
			pg->def_len = tc_i32(r);
		else if (v2 && t == 5 && id == 6)
			pg->rep_len = tc_i32(r);
		else if (v2 && (t == 1 || t == 2) && id == 7)
			pg->is_compressed = tc_bool(r, t);
		else
			tc_skip(r, t, 0);
	}
}

static void parse_page_header(tc_reader *r, pq_page *pg)
{
	memset(pg, 0, sizeof *pg);
	pg->type = -1;
	pg->is_compressed = 1;
	int16_t id = 0;
	int t;
	while (tc_field(r, &id, &t)) {
		if (id == 1 && t == 5)
			pg->type = tc_i32(r);
		else if (id == 2 && t == 5)
			pg->usize = tc_i32(r);
		else if (id == 3 && t == 5)
			pg->csize = tc_i32(r);
		else if (id == 5 && t == 12 && pg->type == PG_DATA)
			parse_dp_header(r, pg, 0);
		else if (id == 7 && t == 12 && pg->type == PG_DICT)
			parse_dp_header(r, pg, 0); /* DictionaryPageHeader: 1 num_values, 2 encoding */
		else if (id == 8 && t == 12 && pg->type == PG_DATA_V2)
			parse_dp_header(r, pg, 1);
		else
			tc_skip(r, t, 0);
	}
}

/* Returns the uncompressed bytes of [src, src+slen) (pointer into the file when the codec
 * is none, else a buffer kept by the column). */
static const uint8_t *page_bytes(pq_ctx *cx, pq_col *c, int codec, const uint8_t *src, size_t slen,
				 size_t ulen)
{
	if (codec == CODEC_NONE) {
		if (slen != ulen) {
			page_fail(cx, "uncompressed page size %zu differs from its stored size %zu", ulen, slen);
			return NULL;
		}
		return src;
	}
	if (ulen > PQ_MAX_PAGE_BYTES) {
		page_fail(cx, "page too large (%zu bytes)", ulen);
		return NULL;
	}
	if (codec != CODEC_SNAPPY && codec != CODEC_ZSTD && codec != CODEC_GZIP) {
		page_fail(cx, "compression codec %s (%d) is not supported (supported: uncompressed, snappy, gzip, zstd)",
			  codec_name(codec), codec);
		return NULL;
	}
	/* check the claimed size against the compressed stream before allocating it */
	if (codec == CODEC_SNAPPY) {
		size_t sl;
		if (snappy_uncompressed_length((const char *)src, slen, &sl) != SNAPPY_OK || sl != ulen) {
			page_fail(cx, "snappy decompression failed (length header does not match the page size)");
			return NULL;
		}
	} else if (codec == CODEC_ZSTD) {
		unsigned long long fs = ZSTD_getFrameContentSize(src, slen);
		if (fs == ZSTD_CONTENTSIZE_ERROR || (fs != ZSTD_CONTENTSIZE_UNKNOWN && fs != ulen)) {
			page_fail(cx, "zstd decompression failed (bad frame header)");
			return NULL;
		}
	} else if (codec == CODEC_GZIP && ulen / 1032 > slen + 64) {
		/* deflate cannot expand more than 1032:1 */
		page_fail(cx, "gzip page claims %zu bytes from %zu compressed bytes", ulen, slen);
		return NULL;
	}
	uint8_t *buf = malloc(ulen ? ulen : 1);
	if (!buf || col_keep(c, buf)) {
		oom(cx);
		return NULL;
	}
	if (decompress(cx, codec, src, slen, buf, ulen))
		return NULL;
	return buf;
}

static int decode_chunk(const parquet_file *pf, size_t rgi, int leaf, pq_col *c, sft_error *err)
{
	const pq_chunk *ch = &pf->rgs[rgi].cols[leaf];
	const pq_node *node = &pf->nodes[pf->leaf_node[leaf]];
	pq_ctx cx = {pf, rgi, node, -1, err};
	col_reset(c);
	int64_t start = ch->data_off;
	if (ch->dict_off > 0 && ch->dict_off < start)
		start = ch->dict_off;
	if (start < 4 || ch->comp_size < 0 || (uint64_t)start > pf->len ||
	    (uint64_t)ch->comp_size > pf->len - (uint64_t)start)
		return page_fail(&cx, "column chunk byte range [%lld, +%lld) lies outside the file (%zu bytes)",
				 (long long)start, (long long)ch->comp_size, pf->len);
	if (ch->num_values > pf->max_chunk_values)
		return page_fail(&cx, "column chunk claims %lld values (limit %lld)", (long long)ch->num_values,
				 (long long)pf->max_chunk_values);
	if (node->rep == 0 && ch->num_values != pf->rgs[rgi].num_rows)
		return page_fail(&cx, "column chunk holds %lld values for %lld rows", (long long)ch->num_values,
				 (long long)pf->rgs[rgi].num_rows);
	const uint8_t *p = pf->data + start, *end = p + ch->comp_size;
	size_t want = (size_t)ch->num_values;
	int maxd = node->def, maxr = node->rep;
	int page = 0;
	while (c->n < want) {
		cx.page = page;
		if (p >= end)
			return page_fail(&cx, "column chunk ends after %zu of %zu values", c->n, want);
		tc_reader r = {p, end, 0, 0};
		pq_page pg;
		parse_page_header(&r, &pg);
		if (r.err)
			return page_fail(&cx, "corrupt page header");
		p = r.p;
		if (pg.csize < 0 || pg.usize < 0 || pg.csize > end - p)
			return page_fail(&cx, "page size %d runs past the end of the column chunk", pg.csize);
		const uint8_t *body = p;
		p += pg.csize;
		if (pg.type == PG_DICT) {
			if (!pg.has_hdr || pg.num_values < 0 || (uint32_t)pg.num_values > PQ_MAX_PAGE_VALUES)
				return page_fail(&cx, "invalid dictionary page header");
			if (pg.encoding != ENC_PLAIN && pg.encoding != ENC_PLAIN_DICT)
				return page_fail(&cx, "dictionary page encoding %d is not PLAIN", pg.encoding);
			const uint8_t *b = page_bytes(&cx, c, ch->codec, body, (size_t)pg.csize, (size_t)pg.usize);
			if (!b)
				return -1;
			free(c->dict);
			c->dict = malloc(((size_t)pg.num_values ? (size_t)pg.num_values : 1) * sizeof *c->dict);
			if (!c->dict)
				return oom(&cx);
			size_t used;
			if (plain_decode(node, b, (size_t)pg.usize, (size_t)pg.num_values, c->dict, &used))
				return page_fail(&cx, "dictionary values run past the end of the page");
			c->ndict = (size_t)pg.num_values;
		} else if (pg.type == PG_DATA || pg.type == PG_DATA_V2) {
			if (!pg.has_hdr || pg.num_values < 0 || (uint32_t)pg.num_values > PQ_MAX_PAGE_VALUES)
				return page_fail(&cx, "invalid data page header");
			size_t nv = (size_t)pg.num_values;
			if (nv > want - c->n)
				return page_fail(&cx, "page holds more values than the column chunk");
			if (grow((void **)&c->def, &c->cap, c->n + nv + 1, 1))
				return oom(&cx);
			size_t cap2 = c->cap;
			void *nr = realloc(c->rep, cap2 ? cap2 : 1);
			if (!nr)
				return oom(&cx);
			c->rep = nr;
			uint8_t *def = c->def + c->n, *rep = c->rep + c->n;
			const uint8_t *vp, *vend;
			if (pg.type == PG_DATA) {
				const uint8_t *b = page_bytes(&cx, c, ch->codec, body, (size_t)pg.csize, (size_t)pg.usize);
				if (!b)
					return -1;
				const uint8_t *q = b, *qend = b + pg.usize;
				for (int lv = 0; lv < 2; lv++) {
					int maxl = lv == 0 ? maxr : maxd;
					uint8_t *dst = lv == 0 ? rep : def;
					int lenc = lv == 0 ? pg.rep_enc : pg.def_enc;
					if (maxl == 0) {
						memset(dst, 0, nv);
						continue;
					}
					if (lenc != ENC_RLE)
						return page_fail(&cx, "%s level encoding %d is not supported (only RLE)",
								 lv == 0 ? "repetition" : "definition", lenc);
					if (qend - q < 4)
						return page_fail(&cx, "%s levels missing", lv == 0 ? "repetition" : "definition");
					uint32_t l = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
						     (uint32_t)q[3] << 24;
					q += 4;
					if (l > (size_t)(qend - q))
						return page_fail(&cx, "%s levels run past the end of the page",
								 lv == 0 ? "repetition" : "definition");
					int rc = levels_decode(c, q, q + l, maxl, dst, nv);
					if (rc == -2)
						return oom(&cx);
					if (rc)
						return page_fail(&cx, "%s levels are corrupt", lv == 0 ? "repetition" : "definition");
					q += l;
				}
				vp = q;
				vend = qend;
			} else {
				if (pg.rep_len < 0 || pg.def_len < 0 || (int64_t)pg.rep_len + pg.def_len > pg.csize ||
				    (int64_t)pg.rep_len + pg.def_len > pg.usize)
					return page_fail(&cx, "level lengths exceed the page size");
				const uint8_t *q = body;
				for (int lv = 0; lv < 2; lv++) {
					int maxl = lv == 0 ? maxr : maxd;
					uint8_t *dst = lv == 0 ? rep : def;
					size_t l = (size_t)(lv == 0 ? pg.rep_len : pg.def_len);
					if (maxl == 0) {
						memset(dst, 0, nv);
						q += l;
						continue;
					}
					int rc = levels_decode(c, q, q + l, maxl, dst, nv);
					if (rc == -2)
						return oom(&cx);
					if (rc)
						return page_fail(&cx, "%s levels are corrupt", lv == 0 ? "repetition" : "definition");
					q += l;
				}
				size_t lvl = (size_t)pg.rep_len + (size_t)pg.def_len;
				size_t cs = (size_t)pg.csize - lvl, us = (size_t)pg.usize - lvl;
				const uint8_t *b = pg.is_compressed ? page_bytes(&cx, c, ch->codec, q, cs, us)
								    : page_bytes(&cx, c, CODEC_NONE, q, cs, us);
				if (!b)
					return -1;
				vp = b;
				vend = b + us;
			}
			size_t ndef = 0;
			for (size_t i = 0; i < nv; i++)
				ndef += def[i] == maxd;
			if (values_decode(&cx, c, pg.encoding, vp, vend, ndef))
				return -1;
			c->n += nv;
		}
		/* index pages and unknown page types are skipped */
		page++;
	}
	return 0;
}

/* ============================ row assembly ============================ */

struct parquet_rows {
	parquet_file *pf;
	unsigned char *field_sel; /* per top-level field */
	unsigned char *leaf_sel;  /* per leaf column */
	pq_col *cols;             /* per leaf column */
	size_t rg;                /* next row group to load */
	size_t cur_rg;            /* row group being read */
	int64_t rg_rows, rg_row;
	int loaded;
	int failed;
	/* output target: text mode when tb != NULL */
	char **tbuf;
	size_t *tlen, *tcap;
	int text;
	sft_error *err;
	char scratch[128];
};

static int tput(parquet_rows *it, const char *s, size_t n)
{
	if (*it->tlen + n + 1 > *it->tcap) {
		size_t nc = *it->tcap ? *it->tcap : 256;
		while (nc < *it->tlen + n + 1)
			nc *= 2;
		char *q = realloc(*it->tbuf, nc);
		if (!q)
			return sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
		*it->tbuf = q;
		*it->tcap = nc;
	}
	memcpy(*it->tbuf + *it->tlen, s, n);
	*it->tlen += n;
	(*it->tbuf)[*it->tlen] = 0;
	return 0;
}

static int asm_fail(parquet_rows *it, const pq_node *n, const char *what)
{
	const pq_node *leaf = &it->pf->nodes[it->pf->leaf_node[n->leaf_lo]];
	return sft_error_set(it->err, SFT_EXIT_DATA, "%s: row group %zu, column '%s', row %lld: %s",
			     it->pf->name, it->cur_rg, leaf->path, (long long)it->rg_row, what);
}

/* Strict UTF-8 check (same rules as jansson: no overlongs, surrogates, > U+10FFFF). */
static int utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		if (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if (!(w & 0x8080808080808080ull)) {
				i += 8;
				continue;
			}
		}
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len;
		uint32_t cp;
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else
			return 0;
		if (i + len > n)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return 0;
		i += len;
	}
	return 1;
}

/* JSON string escaping identical to jsonl.c's put_string. */
static int tput_string(parquet_rows *it, const uint8_t *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	/* worst case 6 bytes per input byte */
	if (*it->tlen + 6 * n + 3 > *it->tcap) {
		size_t nc = *it->tcap ? *it->tcap : 256;
		while (nc < *it->tlen + 6 * n + 3)
			nc *= 2;
		char *q = realloc(*it->tbuf, nc);
		if (!q)
			return sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
		*it->tbuf = q;
		*it->tcap = nc;
	}
	char *w = *it->tbuf + *it->tlen;
	*w++ = '"';
	size_t start = 0;
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	for (size_t i = 0; i < n; i++) {
		/* 8 bytes at a time while none needs escaping (SWAR byte tests) */
		while (i + 8 <= n) {
			uint64_t x, q, b, d;
			memcpy(&x, s + i, 8);
			q = x ^ (ones * '"');
			b = x ^ (ones * '\\');
			d = x ^ (ones * 0x7f);
			uint64_t t = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) |
				     ((d - ones) & ~d);
			if (t & highs)
				break;
			i += 8;
		}
		if (i >= n)
			break;
		uint8_t c = s[i];
		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
			continue;
		memcpy(w, s + start, i - start);
		w += i - start;
		start = i + 1;
		*w++ = '\\';
		switch (c) {
		case '"': *w++ = '"'; break;
		case '\\': *w++ = '\\'; break;
		case '\n': *w++ = 'n'; break;
		case '\r': *w++ = 'r'; break;
		case '\t': *w++ = 't'; break;
		case '\b': *w++ = 'b'; break;
		case '\f': *w++ = 'f'; break;
		default:
			*w++ = 'u'; *w++ = '0'; *w++ = '0';
			*w++ = hex[c >> 4]; *w++ = hex[c & 15];
		}
	}
	memcpy(w, s + start, n - start);
	w += n - start;
	*w++ = '"';
	*w = 0;
	*it->tlen = (size_t)(w - *it->tbuf);
	return 0;
}

/* civil date from days since 1970-01-01 (H. Hinnant's algorithm) */
static void civil(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t yy = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = yy + (*m <= 2);
}

static int fmt_date(char *b, size_t cap, int64_t days)
{
	int64_t y;
	unsigned m, d;
	civil(days, &y, &m, &d);
	return snprintf(b, cap, "%04lld-%02u-%02u", (long long)y, m, d);
}

/* secs since midnight + fraction in `digits` digits (0 = none) */
static int fmt_clock(char *b, size_t cap, int64_t secs, int64_t frac, int digits)
{
	int n = snprintf(b, cap, "%02lld:%02lld:%02lld", (long long)(secs / 3600), (long long)(secs / 60 % 60),
			 (long long)(secs % 60));
	if (frac && digits)
		n += snprintf(b + n, cap - (size_t)n, ".%0*lld", digits, (long long)frac);
	return n;
}

static int64_t floordiv(int64_t a, int64_t b, int64_t *rem)
{
	int64_t q = a / b, r = a % b;
	if (r < 0) {
		r += b;
		q--;
	}
	*rem = r;
	return q;
}

static int fmt_timestamp(char *b, size_t cap, int64_t v, int unit, int utc)
{
	int64_t per = unit == TU_MILLIS ? 1000 : unit == TU_MICROS ? 1000000 : 1000000000;
	int digits = unit == TU_MILLIS ? 3 : unit == TU_MICROS ? 6 : 9;
	int64_t frac, secs = floordiv(v, per, &frac), sod;
	int64_t days = floordiv(secs, 86400, &sod);
	int n = fmt_date(b, cap, days);
	b[n++] = 'T';
	n += fmt_clock(b + n, cap - (size_t)n, sod, frac, digits);
	if (utc)
		n += snprintf(b + n, cap - (size_t)n, "Z");
	return n;
}

static size_t base64(const uint8_t *s, size_t n, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		out[o++] = t[v >> 18];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = t[(v >> 6) & 63];
		out[o++] = t[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)s[i] << 16;
		out[o++] = t[v >> 18];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
		out[o++] = t[v >> 18];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = t[(v >> 6) & 63];
		out[o++] = '=';
	}
	return o;
}

/* Decimal from big-endian two's complement bytes -> plain decimal text with `scale`. */
static char *fmt_decimal(const uint8_t *be, size_t n, int scale)
{
	uint8_t *mag = malloc(n ? n : 1);
	/* digits: at most 2.41 per byte, plus sign, point, leading zeros for the scale */
	size_t scl = scale > 0 ? (size_t)scale : 0, zeros = scale < 0 ? (size_t)-(int64_t)scale : 0;
	size_t cap = n * 3 + scl + zeros + 8;
	char *dig = malloc(cap), *out = malloc(cap);
	if (!mag || !dig || !out) {
		free(mag);
		free(dig);
		free(out);
		return NULL;
	}
	int neg = n && (be[0] & 0x80);
	memcpy(mag, be, n);
	if (neg) { /* two's complement negate */
		for (size_t i = 0; i < n; i++)
			mag[i] = (uint8_t)~mag[i];
		for (size_t i = n; i-- > 0;)
			if (++mag[i] != 0)
				break;
	}
	size_t nd = 0;
	for (;;) {
		int nz = 0;
		unsigned rem = 0;
		for (size_t i = 0; i < n; i++) {
			unsigned cur = rem << 8 | mag[i];
			mag[i] = (uint8_t)(cur / 10);
			rem = cur % 10;
			nz |= mag[i];
		}
		dig[nd++] = (char)('0' + rem);
		if (!nz)
			break;
	}
	/* dig holds digits least significant first */
	while (nd <= scl)
		dig[nd++] = '0';
	size_t o = 0;
	int allzero = 1;
	for (size_t i = 0; i < nd; i++)
		if (dig[i] != '0')
			allzero = 0;
	if (neg && !allzero)
		out[o++] = '-';
	for (size_t i = nd; i-- > 0;) {
		out[o++] = dig[i];
		if (i == scl && scl)
			out[o++] = '.';
	}
	if (scl && out[o - 1] == '.')
		o--;
	for (size_t i = 0; i < zeros && !allzero; i++)
		out[o++] = '0';
	out[o] = 0;
	free(mag);
	free(dig);
	return out;
}

static double half_to_double(uint16_t h)
{
	int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
	double v;
	if (e == 0)
		v = ldexp(m, -24);
	else if (e == 31)
		v = m ? NAN : INFINITY;
	else
		v = ldexp(m + 1024, e - 25);
	return s ? -v : v;
}

/* emit a string value: text mode appends, json mode sets *out */
static int emit_str(parquet_rows *it, const char *s, size_t n, json_t **out)
{
	if (it->text)
		return tput_string(it, (const uint8_t *)s, n);
	*out = json_stringn_nocheck(s, n);
	return *out ? 0 : sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
}

static int emit_raw(parquet_rows *it, const char *s, size_t n, json_t *v, json_t **out)
{
	if (it->text) {
		json_decref(v);
		return tput(it, s, n);
	}
	*out = v;
	return v ? 0 : sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
}

static int emit_double(parquet_rows *it, double d, json_t **out)
{
	if (isnan(d) || isinf(d)) /* JSON has no NaN/Infinity: documented as null */
		return emit_raw(it, "null", 4, it->text ? NULL : json_null(), out);
	if (it->text) {
		char b[64];
		int n = json_format_double(d, b, sizeof b);
		return tput(it, b, (size_t)n);
	}
	*out = json_real(d);
	return *out ? 0 : sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
}

static int emit_int(parquet_rows *it, int64_t v, json_t **out)
{
	if (it->text) {
		char b[32];
		int n = snprintf(b, sizeof b, "%lld", (long long)v);
		return tput(it, b, (size_t)n);
	}
	*out = json_integer(v);
	return *out ? 0 : sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
}

static int emit_leaf(parquet_rows *it, const pq_node *n, const pq_val *v, json_t **out)
{
	const pq_selem *e = n->e;
	char *b = it->scratch;
	size_t cap = sizeof it->scratch;
	switch (n->conv) {
	case CV_BOOL:
		return emit_raw(it, v->i ? "true" : "false", v->i ? 4 : 5, it->text ? NULL : json_boolean(v->i), out);
	case CV_INT:
		return emit_int(it, v->i, out);
	case CV_UINT32:
		return emit_int(it, (int64_t)(uint32_t)v->i, out);
	case CV_UINT64:
		if (v->i >= 0)
			return emit_int(it, v->i, out);
		/* above INT64_MAX: a string (documented), jansson integers are signed 64-bit */
		{
			int k = snprintf(b, cap, "%llu", (unsigned long long)(uint64_t)v->i);
			return emit_str(it, b, (size_t)k, out);
		}
	case CV_FLOAT:
		if (e->type == PT_INT32 || e->type == PT_INT64)
			return emit_int(it, v->i, out);
		return emit_double(it, v->d, out);
	case CV_FLOAT16: {
		uint16_t h = (uint16_t)(v->b.p[0] | v->b.p[1] << 8);
		return emit_double(it, half_to_double(h), out);
	}
	case CV_DATE: {
		if (e->type != PT_INT32)
			return emit_int(it, v->i, out);
		int k = fmt_date(b, cap, v->i);
		return emit_str(it, b, (size_t)k, out);
	}
	case CV_TIME: {
		int unit = e->lk == LK_TIME ? e->lt_unit : e->converted == 7 ? TU_MILLIS : TU_MICROS;
		if (unit < TU_MILLIS || e->type == PT_BYTE_ARRAY || e->type == PT_FLBA)
			return emit_int(it, v->i, out);
		int64_t per = unit == TU_MILLIS ? 1000 : unit == TU_MICROS ? 1000000 : 1000000000;
		int64_t frac, secs = floordiv(v->i, per, &frac), sod;
		floordiv(secs, 86400, &sod);
		int k = fmt_clock(b, cap, sod, frac, unit == TU_MILLIS ? 3 : unit == TU_MICROS ? 6 : 9);
		if (e->lk == LK_TIME && e->lt_utc)
			k += snprintf(b + k, cap - (size_t)k, "Z");
		return emit_str(it, b, (size_t)k, out);
	}
	case CV_TIMESTAMP: {
		int unit, utc;
		if (e->lk == LK_TIMESTAMP) {
			unit = e->lt_unit;
			utc = e->lt_utc;
		} else {
			unit = e->converted == 9 ? TU_MILLIS : TU_MICROS;
			utc = 1; /* legacy TIMESTAMP_* are UTC-normalized per the spec */
		}
		if (unit < TU_MILLIS || e->type != PT_INT64)
			return emit_int(it, v->i, out);
		int k = fmt_timestamp(b, cap, v->i, unit, utc);
		return emit_str(it, b, (size_t)k, out);
	}
	case CV_INT96: {
		/* 8 bytes nanoseconds of the day, 4 bytes Julian day, little-endian */
		int64_t nanos;
		uint32_t jd;
		memcpy(&nanos, v->b.p, 8);
		memcpy(&jd, v->b.p + 8, 4);
		int64_t days = (int64_t)jd - 2440588;
		int64_t frac, sod = floordiv(nanos, 1000000000, &frac), dd = floordiv(sod, 86400, &sod);
		days += dd;
		int k = fmt_date(b, cap, days);
		b[k++] = 'T';
		k += fmt_clock(b + k, cap - (size_t)k, sod, frac, 9);
		return emit_str(it, b, (size_t)k, out);
	}
	case CV_DECIMAL: {
		uint8_t be8[8];
		const uint8_t *src;
		size_t len;
		if (e->type == PT_INT32 || e->type == PT_INT64) {
			uint64_t u = (uint64_t)v->i;
			for (int k = 0; k < 8; k++)
				be8[k] = (uint8_t)(u >> (56 - 8 * k));
			src = be8;
			len = 8;
		} else {
			src = v->b.p;
			len = v->b.n;
		}
		if (len > 64) /* beyond any DECIMAL precision a writer produces (38 digits = 16 bytes) */
			return asm_fail(it, n, "decimal value wider than 64 bytes");
		char *s = fmt_decimal(src, len, e->scale);
		if (!s)
			return sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
		int rc = emit_str(it, s, strlen(s), out);
		free(s);
		return rc;
	}
	case CV_STRING:
		if (!utf8_valid(v->b.p, v->b.n))
			return asm_fail(it, n, "string value is not valid UTF-8");
		return emit_str(it, (const char *)v->b.p, v->b.n, out);
	case CV_UUID: {
		static const char hx[] = "0123456789abcdef";
		int k = 0;
		for (int i = 0; i < 16; i++) {
			if (i == 4 || i == 6 || i == 8 || i == 10)
				b[k++] = '-';
			b[k++] = hx[v->b.p[i] >> 4];
			b[k++] = hx[v->b.p[i] & 15];
		}
		return emit_str(it, b, (size_t)k, out);
	}
	case CV_BINARY:
	default: {
		size_t need = (size_t)v->b.n / 3 * 4 + 5;
		char *s = need <= cap ? b : malloc(need);
		if (!s)
			return sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
		size_t k = base64(v->b.p, v->b.n, s);
		int rc = emit_str(it, s, k, out);
		if (s != b)
			free(s);
		return rc;
	}
	}
}

static int field_value(parquet_rows *it, const pq_node *n, json_t **out);

/* every leaf under n moves past one entry (the subtree is null/empty at this point) */
static int skip_entry(parquet_rows *it, const pq_node *n)
{
	for (int l = n->leaf_lo; l < n->leaf_hi; l++) {
		pq_col *c = &it->cols[l];
		const pq_node *ln = &it->pf->nodes[it->pf->leaf_node[l]];
		if (c->pos >= c->n)
			return asm_fail(it, ln, "column has fewer values than rows (levels exhausted)");
		if (c->def[c->pos] >= ln->def)
			return asm_fail(it, ln, "definition levels of sibling columns disagree");
		c->pos++;
	}
	return 0;
}

static int cur_def(parquet_rows *it, const pq_node *n, int *d)
{
	pq_col *c = &it->cols[n->leaf_lo];
	if (c->pos >= c->n)
		return asm_fail(it, n, "column has fewer values than rows (levels exhausted)");
	*d = c->def[c->pos];
	return 0;
}

static int obj_add(parquet_rows *it, json_t *obj, const char *key, json_t *v)
{
	if (json_object_set_new_nocheck(obj, key, v))
		return sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
	return 0;
}

static int arr_add(parquet_rows *it, json_t *arr, json_t *v)
{
	if (json_array_append_new(arr, v))
		return sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
	return 0;
}

/* One map: always built as json_t (keys deduplicated as a dict would), then written. */
static int map_value(parquet_rows *it, const pq_node *n, json_t **out)
{
	const pq_node *kv = &it->pf->nodes[n->child[0]];
	const pq_node *kn = &it->pf->nodes[kv->child[0]];
	const pq_node *vn = kv->nchild > 1 ? &it->pf->nodes[kv->child[1]] : NULL;
	int text = it->text;
	it->text = 0;
	json_t *obj = json_object();
	int rc = obj ? 0 : sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
	int d = 0;
	if (!rc)
		rc = cur_def(it, kv, &d);
	if (!rc && d < kv->def) {
		rc = skip_entry(it, kv);
	} else {
		pq_col *fc = &it->cols[kv->leaf_lo];
		while (!rc) {
			json_t *k = NULL, *v = NULL;
			rc = field_value(it, kn, &k);
			if (!rc && vn)
				rc = field_value(it, vn, &v);
			else if (!rc)
				v = json_null();
			if (!rc) {
				char *ks = NULL;
				size_t kl = 0, kc = 0;
				if (json_is_string(k))
					rc = obj_add(it, obj, json_string_value(k), v);
				else if (json_dump_compact(k, &ks, &kl, &kc) == 0)
					rc = obj_add(it, obj, ks, v);
				else
					rc = sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
				v = NULL;
				free(ks);
			}
			json_decref(k);
			json_decref(v);
			if (rc || fc->pos >= fc->n || fc->rep[fc->pos] != kv->rep)
				break;
		}
	}
	it->text = text;
	if (rc) {
		json_decref(obj);
		return rc;
	}
	if (text) {
		rc = json_dump_compact(obj, it->tbuf, it->tlen, it->tcap) ? sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory") : 0;
		json_decref(obj);
		return rc;
	}
	*out = obj;
	return 0;
}

/* One instance of n (its own repetition already handled by the caller). */
static int instance(parquet_rows *it, const pq_node *n, json_t **out)
{
	int d = 0;
	if (cur_def(it, n, &d))
		return -1;
	if (d < n->def) {
		if (n->e->repetition != REP_OPTIONAL || n->e->repetition == REP_REPEATED)
			return asm_fail(it, n, "definition level below a required field");
		if (skip_entry(it, n))
			return -1;
		return emit_raw(it, "null", 4, it->text ? NULL : json_null(), out);
	}
	if (n->kind == NK_LEAF) {
		pq_col *c = &it->cols[n->leaf];
		c->pos++;
		if (c->vpos >= c->nvals)
			return asm_fail(it, n, "fewer values than definition levels");
		return emit_leaf(it, n, &c->vals[c->vpos++], out);
	}
	if (n->unwrap)
		return field_value(it, &it->pf->nodes[n->child[0]], out);
	if (n->kind == NK_LIST)
		return field_value(it, &it->pf->nodes[n->child[0]], out);
	if (n->kind == NK_MAP)
		return map_value(it, n, out);
	/* struct */
	json_t *obj = NULL;
	if (it->text) {
		if (tput(it, "{", 1))
			return -1;
	} else if (!(obj = json_object()))
		return sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
	for (int i = 0; i < n->nchild; i++) {
		const pq_node *ch = &it->pf->nodes[n->child[i]];
		json_t *v = NULL;
		if (it->text) {
			if ((i && tput(it, ",", 1)) || tput_string(it, (const uint8_t *)ch->e->name, strlen(ch->e->name)) ||
			    tput(it, ":", 1))
				return -1;
		}
		if (field_value(it, ch, it->text ? NULL : &v) || (!it->text && obj_add(it, obj, ch->e->name, v))) {
			json_decref(obj);
			return -1;
		}
	}
	if (it->text)
		return tput(it, "}", 1);
	*out = obj;
	return 0;
}

/* The value of field n: an array of instances when n is repeated, else one instance. */
static int field_value(parquet_rows *it, const pq_node *n, json_t **out)
{
	if (n->e->repetition != REP_REPEATED)
		return instance(it, n, out);
	int d = 0;
	if (cur_def(it, n, &d))
		return -1;
	json_t *arr = NULL;
	if (!it->text && !(arr = json_array()))
		return sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
	if (it->text && tput(it, "[", 1))
		return -1;
	if (d < n->def) {
		if (skip_entry(it, n)) {
			json_decref(arr);
			return -1;
		}
	} else {
		pq_col *fc = &it->cols[n->leaf_lo];
		for (int first = 1;; first = 0) {
			json_t *v = NULL;
			if (it->text && !first && tput(it, ",", 1))
				return -1;
			if (instance(it, n, it->text ? NULL : &v) || (!it->text && arr_add(it, arr, v))) {
				json_decref(arr);
				return -1;
			}
			if (fc->pos >= fc->n || fc->rep[fc->pos] != n->rep)
				break;
		}
	}
	if (it->text)
		return tput(it, "]", 1);
	*out = arr;
	return 0;
}

void parquet_rows_close(parquet_rows *it)
{
	if (!it)
		return;
	if (it->cols)
		for (size_t i = 0; i < it->pf->nleaves; i++)
			col_free(&it->cols[i]);
	free(it->cols);
	free(it->field_sel);
	free(it->leaf_sel);
	free(it);
}

parquet_rows *parquet_rows_open(parquet_file *pf, const char *const *columns, size_t ncols, sft_error *err)
{
	parquet_rows *it = calloc(1, sizeof *it);
	const pq_node *root = &pf->nodes[0];
	if (!it)
		goto nomem;
	it->pf = pf;
	it->field_sel = calloc((size_t)root->nchild + 1, 1);
	it->leaf_sel = calloc(pf->nleaves + 1, 1);
	it->cols = calloc(pf->nleaves + 1, sizeof *it->cols);
	if (!it->field_sel || !it->leaf_sel || !it->cols)
		goto nomem;
	for (int i = 0; i < root->nchild; i++) {
		const pq_node *f = &pf->nodes[root->child[i]];
		int sel = columns == NULL;
		for (size_t k = 0; !sel && k < ncols; k++)
			sel = strcmp(columns[k], f->e->name) == 0;
		it->field_sel[i] = (unsigned char)sel;
		for (int l = f->leaf_lo; sel && l < f->leaf_hi; l++)
			it->leaf_sel[l] = 1;
	}
	for (size_t k = 0; columns && k < ncols; k++) {
		int found = 0;
		for (int i = 0; i < root->nchild && !found; i++)
			found = strcmp(columns[k], pf->nodes[root->child[i]].e->name) == 0;
		if (!found) {
			sft_error_set(err, SFT_EXIT_USAGE, "%s: no column named '%s'", pf->name, columns[k]);
			parquet_rows_close(it);
			return NULL;
		}
	}
	return it;
nomem:
	parquet_rows_close(it);
	sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	return NULL;
}

static int check_rg_end(parquet_rows *it)
{
	for (size_t l = 0; l < it->pf->nleaves; l++) {
		if (!it->leaf_sel[l])
			continue;
		pq_col *c = &it->cols[l];
		if (c->pos != c->n || c->vpos != c->nvals) {
			const pq_node *ln = &it->pf->nodes[it->pf->leaf_node[l]];
			return sft_error_set(it->err, SFT_EXIT_DATA,
					     "%s: row group %zu, column '%s': %zu values left over after %lld rows",
					     it->pf->name, it->cur_rg, ln->path, c->n - c->pos, (long long)it->rg_rows);
		}
	}
	return 0;
}

static int next_row(parquet_rows *it, json_t **row)
{
	parquet_file *pf = it->pf;
	if (it->failed)
		return sft_error_set(it->err, SFT_EXIT_DATA, "%s: reading stopped after an earlier error", pf->name);
	while (!it->loaded || it->rg_row >= it->rg_rows) {
		if (it->loaded && check_rg_end(it))
			return -1;
		it->loaded = 0;
		if (it->rg >= pf->nrgs)
			return 0;
		it->cur_rg = it->rg++;
		it->rg_rows = pf->rgs[it->cur_rg].num_rows;
		it->rg_row = 0;
		if (it->rg_rows == 0)
			continue;
		for (size_t l = 0; l < pf->nleaves; l++)
			if (it->leaf_sel[l] && decode_chunk(pf, it->cur_rg, (int)l, &it->cols[l], it->err))
				return -1;
		it->loaded = 1;
	}
	const pq_node *root = &pf->nodes[0];
	json_t *obj = NULL;
	if (it->text) {
		if (tput(it, "{", 1))
			return -1;
	} else if (!(obj = json_object()))
		return sft_error_set(it->err, SFT_EXIT_RUNTIME, "out of memory");
	int first = 1;
	for (int i = 0; i < root->nchild; i++) {
		if (!it->field_sel[i])
			continue;
		const pq_node *f = &pf->nodes[root->child[i]];
		pq_col *fc = &it->cols[f->leaf_lo];
		if (fc->pos < fc->n && fc->rep[fc->pos] != 0) {
			json_decref(obj);
			return asm_fail(it, f, "repetition levels do not start a new row");
		}
		json_t *v = NULL;
		if (it->text) {
			if ((!first && tput(it, ",", 1)) || tput_string(it, (const uint8_t *)f->e->name, strlen(f->e->name)) ||
			    tput(it, ":", 1))
				return -1;
		}
		first = 0;
		if (field_value(it, f, it->text ? NULL : &v) || (!it->text && obj_add(it, obj, f->e->name, v))) {
			json_decref(obj);
			return -1;
		}
	}
	if (it->text && tput(it, "}", 1))
		return -1;
	/* every selected leaf must now sit at a row boundary */
	for (size_t l = 0; l < pf->nleaves; l++) {
		pq_col *c = &it->cols[l];
		if (it->leaf_sel[l] && c->pos < c->n && c->rep[c->pos] != 0) {
			json_decref(obj);
			return asm_fail(it, &pf->nodes[pf->leaf_node[l]], "repetition levels are inconsistent");
		}
	}
	it->rg_row++;
	if (row)
		*row = obj;
	else
		json_decref(obj);
	return 1;
}

int parquet_rows_next(parquet_rows *it, json_t **row, sft_error *err)
{
	sft_error dummy;
	it->err = err ? err : &dummy;
	it->text = 0;
	if (row)
		*row = NULL;
	int rc = next_row(it, row);
	if (rc < 0)
		it->failed = 1;
	return rc;
}

int parquet_rows_next_json(parquet_rows *it, char **buf, size_t *len, size_t *cap, sft_error *err)
{
	sft_error dummy;
	it->err = err ? err : &dummy;
	it->text = 1;
	it->tbuf = buf;
	it->tlen = len;
	it->tcap = cap;
	size_t start = *len;
	int rc = next_row(it, NULL);
	if (rc < 0) {
		it->failed = 1;
		*len = start;
		if (*buf)
			(*buf)[start] = 0;
	}
	return rc;
}
