/* GGUF reader tests: real vocab-only GGUFs (llama.cpp / SmolLM2), a hand-built file with
 * every KV type, arrays and aligned tensors, and errors with byte offsets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

static char fixdir[1024];

static char *slurp(const char *name, size_t *len)
{
	char path[1200];
	snprintf(path, sizeof path, "%s/%s", fixdir, name);
	return test_slurp(path, len);
}

static int str_eq(gguf_str s, const char *c) { return s.n == strlen(c) && memcmp(s.s, c, s.n) == 0; }

static void test_llama_spm_vocab(void **st)
{
	(void)st;
	char path[1200];
	snprintf(path, sizeof path, "%s/llama-spm.gguf", fixdir);
	sft_error e = { 0 };
	gguf_file *g = gguf_open(path, &e);
	if (!g)
		fail_msg("%s", e.msg);
	assert_int_equal(g->version, 3);
	assert_int_equal(g->n_tensors, 0);
	assert_true(g->n_kv >= 10);
	assert_int_equal(g->kv[0].offset, 24);
	gguf_str s;
	assert_int_equal(gguf_get_str(g, "general.architecture", &s), 0);
	assert_true(str_eq(s, "llama"));
	assert_int_equal(gguf_get_str(g, "tokenizer.ggml.model", &s), 0);
	assert_true(str_eq(s, "llama"));
	const gguf_kv *toks = gguf_find(g, "tokenizer.ggml.tokens");
	assert_non_null(toks);
	assert_int_equal(toks->type, GGUF_ARRAY);
	assert_int_equal(toks->arr_type, GGUF_STRING);
	assert_int_equal(toks->arr_n, 32000);
	assert_int_equal(gguf_arr_str(toks, 0, &s), 0);
	assert_true(str_eq(s, "<unk>"));
	assert_int_equal(gguf_arr_str(toks, 1, &s), 0);
	assert_true(str_eq(s, "<s>"));
	assert_int_equal(gguf_arr_str(toks, 13, &s), 0);
	assert_true(str_eq(s, "<0x0A>"));
	assert_int_equal(gguf_arr_str(toks, 31999, &s), 0);
	assert_true(gguf_arr_str(toks, 32000, &s) < 0);
	const gguf_kv *types = gguf_find(g, "tokenizer.ggml.token_type");
	assert_non_null(types);
	assert_int_equal(types->arr_type, GGUF_INT32);
	assert_int_equal(gguf_arr_i64(types, 0), 2);  /* UNKNOWN */
	assert_int_equal(gguf_arr_i64(types, 1), 3);  /* CONTROL */
	assert_int_equal(gguf_arr_i64(types, 13), 6); /* BYTE */
	const gguf_kv *sc = gguf_find(g, "tokenizer.ggml.scores");
	assert_non_null(sc);
	assert_int_equal(sc->arr_type, GGUF_FLOAT32);
	assert_true(gguf_arr_f64(sc, 300) < 0);
	uint64_t v;
	assert_int_equal(gguf_get_u64(g, "tokenizer.ggml.bos_token_id", &v), 0);
	assert_int_equal(v, 1);
	int b;
	assert_int_equal(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), 0);
	assert_int_equal(b, 1);
	assert_true(gguf_get_str(g, "tokenizer.ggml.bos_token_id", &s) < 0); /* wrong type */
	assert_null(gguf_find(g, "no.such.key"));
	gguf_close(g);
}

/* ---- a hand-built GGUF ---- */
typedef struct buf { uint8_t *p; size_t n, cap; } buf;
static void put(buf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }
static void put_key(buf *b, const char *k, uint32_t type) { put_str(b, k); put_u32(b, type); }

static buf build_file(uint32_t alignment)
{
	buf b = { 0 };
	put(&b, "GGUF", 4);
	put_u32(&b, 3);
	put_u64(&b, 2);  /* tensors */
	put_u64(&b, 15); /* kvs */
	uint8_t u8 = 200; int8_t i8 = -5; uint16_t u16 = 60000; int16_t i16 = -30000;
	int32_t i32 = -123456; float f32 = 1.5f; uint64_t u64 = 1ull << 40; int64_t i64 = -(1ll << 40);
	double f64 = 2.25; uint8_t bl = 1;
	put_key(&b, "a.u8", GGUF_UINT8); put(&b, &u8, 1);
	put_key(&b, "a.i8", GGUF_INT8); put(&b, &i8, 1);
	put_key(&b, "a.u16", GGUF_UINT16); put(&b, &u16, 2);
	put_key(&b, "a.i16", GGUF_INT16); put(&b, &i16, 2);
	put_key(&b, "a.u32", GGUF_UINT32); put_u32(&b, 4000000000u);
	put_key(&b, "a.i32", GGUF_INT32); put(&b, &i32, 4);
	put_key(&b, "a.f32", GGUF_FLOAT32); put(&b, &f32, 4);
	put_key(&b, "a.bool", GGUF_BOOL); put(&b, &bl, 1);
	put_key(&b, "a.str", GGUF_STRING); put_str(&b, "héllo");
	put_key(&b, "a.u64", GGUF_UINT64); put_u64(&b, u64);
	put_key(&b, "a.i64", GGUF_INT64); put(&b, &i64, 8);
	put_key(&b, "a.f64", GGUF_FLOAT64); put(&b, &f64, 8);
	put_key(&b, "a.arr_i16", GGUF_ARRAY); put_u32(&b, GGUF_INT16); put_u64(&b, 3);
	int16_t arr[3] = { -1, 2, -3 }; put(&b, arr, 6);
	put_key(&b, "a.arr_str", GGUF_ARRAY); put_u32(&b, GGUF_STRING); put_u64(&b, 3);
	put_str(&b, "x"); put_str(&b, ""); put_str(&b, "zzz");
	put_key(&b, "general.alignment", GGUF_UINT32); put_u32(&b, alignment);
	/* tensors: f32 (4, 2) at 0, q8_0 (64) at alignment-rounded 32 bytes */
	put_str(&b, "w.f32"); put_u32(&b, 2); put_u64(&b, 4); put_u64(&b, 2); put_u32(&b, 0); put_u64(&b, 0);
	put_str(&b, "w.q8"); put_u32(&b, 1); put_u64(&b, 64); put_u32(&b, 8); put_u64(&b, alignment > 32 ? alignment : 32);
	size_t pad = (b.n + alignment - 1) / alignment * alignment - b.n;
	uint8_t z[256] = { 0 };
	put(&b, z, pad);
	float data[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	put(&b, data, sizeof data);
	size_t q8_at = alignment > 32 ? alignment : 32;
	put(&b, z, q8_at - sizeof data);
	uint8_t q8[68];
	memset(q8, 7, sizeof q8);
	put(&b, q8, sizeof q8);
	return b;
}

static void test_all_types_and_tensors(void **st)
{
	(void)st;
	buf b = build_file(64);
	sft_error e = { 0 };
	gguf_file *g = gguf_open_mem(b.p, b.n, "mem.gguf", &e);
	if (!g)
		fail_msg("%s", e.msg);
	uint64_t u;
	int64_t i;
	double f;
	int bl;
	gguf_str s;
	assert_int_equal(gguf_get_u64(g, "a.u8", &u), 0); assert_int_equal(u, 200);
	assert_int_equal(gguf_get_i64(g, "a.i8", &i), 0); assert_int_equal(i, -5);
	assert_int_equal(gguf_get_u64(g, "a.u16", &u), 0); assert_int_equal(u, 60000);
	assert_int_equal(gguf_get_i64(g, "a.i16", &i), 0); assert_int_equal(i, -30000);
	assert_int_equal(gguf_get_u64(g, "a.u32", &u), 0); assert_int_equal(u, 4000000000u);
	assert_int_equal(gguf_get_i64(g, "a.i32", &i), 0); assert_int_equal(i, -123456);
	assert_int_equal(gguf_get_f64(g, "a.f32", &f), 0); assert_true(f == 1.5);
	assert_int_equal(gguf_get_bool(g, "a.bool", &bl), 0); assert_int_equal(bl, 1);
	assert_int_equal(gguf_get_str(g, "a.str", &s), 0); assert_true(str_eq(s, "héllo"));
	assert_int_equal(gguf_get_u64(g, "a.u64", &u), 0); assert_true(u == (1ull << 40));
	assert_int_equal(gguf_get_i64(g, "a.i64", &i), 0); assert_true(i == -(1ll << 40));
	assert_int_equal(gguf_get_f64(g, "a.f64", &f), 0); assert_true(f == 2.25);
	assert_true(gguf_get_u64(g, "a.i32", &u) < 0); /* negative: not an unsigned */
	const gguf_kv *a = gguf_find(g, "a.arr_i16");
	assert_int_equal(a->arr_n, 3);
	assert_int_equal(gguf_arr_i64(a, 0), -1);
	assert_int_equal(gguf_arr_i64(a, 2), -3);
	assert_true(gguf_arr_f64(a, 1) == 2.0);
	a = gguf_find(g, "a.arr_str");
	assert_int_equal(gguf_arr_str(a, 1, &s), 0); assert_int_equal(s.n, 0);
	assert_int_equal(gguf_arr_str(a, 2, &s), 0); assert_true(str_eq(s, "zzz"));
	assert_int_equal(g->alignment, 64);
	assert_int_equal(g->data_offset % 64, 0);
	const gguf_tensor *t = gguf_find_tensor(g, "w.f32");
	assert_non_null(t);
	assert_int_equal(t->n_dims, 2);
	assert_int_equal(t->dims[0], 4);
	assert_int_equal(t->dims[1], 2);
	assert_int_equal(t->size, 32);
	assert_int_equal(t->file_offset, g->data_offset);
	float x;
	memcpy(&x, (const char *)t->data + 7 * 4, 4);
	assert_true(x == 8.0f);
	t = gguf_find_tensor(g, "w.q8");
	assert_int_equal(t->size, 68); /* two q8_0 blocks of 34 bytes */
	assert_int_equal(t->offset, 64);
	assert_non_null(t->data);
	assert_int_equal(((const uint8_t *)t->data)[67], 7);
	gguf_close(g);

	/* every truncation fails cleanly and names an offset inside the buffer */
	for (size_t cut = 0; cut < b.n; cut += (cut < 300 ? 1 : 7)) {
		g = gguf_open_mem(b.p, cut, "cut.gguf", &e);
		if (!g) {
			assert_non_null(strstr(e.msg, "cut.gguf"));
			assert_non_null(strstr(e.msg, "offset"));
			const char *o = strstr(e.msg, "offset ");
			if (o && o[7] >= '0' && o[7] <= '9')
				assert_true(strtoull(o + 7, NULL, 10) <= cut);
			assert_int_equal(e.code, SFT_EXIT_DATA);
		} else {
			/* only tensor data may be missing: a tensor has data only when all of it is there */
			for (uint64_t k = 0; k < g->n_tensors; k++)
				if (g->tensors[k].data)
					assert_true(g->tensors[k].file_offset + g->tensors[k].size <= cut);
			assert_true(cut < b.n - 68 ? gguf_find_tensor(g, "w.q8")->data == NULL : 1);
			gguf_close(g);
		}
	}
	free(b.p);

	b = build_file(48); /* not a power of two */
	assert_null(gguf_open_mem(b.p, b.n, "align.gguf", &e));
	assert_non_null(strstr(e.msg, "general.alignment"));
	free(b.p);
}

static void test_bad_header(void **st)
{
	(void)st;
	sft_error e = { 0 };
	assert_null(gguf_open_mem("GGML\3\0\0\0", 8, "m.gguf", &e));
	assert_string_equal(e.msg, "m.gguf: offset 0: bad magic (not a GGUF file)");
	assert_null(gguf_open_mem("GGUF\1\0\0\0", 8, "v.gguf", &e));
	assert_non_null(strstr(e.msg, "unsupported GGUF version 1"));
	assert_null(gguf_open_mem("GGUF\3\0\0\0\0\0", 10, "t.gguf", &e));
	assert_non_null(strstr(e.msg, "t.gguf: offset 8: truncated file"));
	/* huge counts are rejected before allocating */
	uint8_t h[24] = { 'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f };
	assert_null(gguf_open_mem(h, sizeof h, "c.gguf", &e));
	assert_non_null(strstr(e.msg, "kv count"));
	assert_null(gguf_open("/nonexistent.gguf", &e));
	assert_int_equal(e.code, SFT_EXIT_RUNTIME);
}

static void test_real_file_truncated(void **st)
{
	(void)st;
	size_t n;
	char *b = slurp("smollm2.gguf", &n);
	sft_error e = { 0 };
	gguf_file *g = gguf_open_mem(b, n, "smollm2.gguf", &e);
	if (!g)
		fail_msg("%s", e.msg);
	gguf_str s;
	assert_int_equal(gguf_get_str(g, "tokenizer.chat_template", &s), 0);
	assert_true(s.n > 100);
	assert_int_equal(gguf_find(g, "tokenizer.ggml.merges")->arr_n, 48900);
	gguf_close(g);
	size_t cuts[] = { 4, 23, 100, 1000, n / 3, n / 2, n - 1 };
	for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
		assert_null(gguf_open_mem(b, cuts[i], "s.gguf", &e));
		assert_non_null(strstr(e.msg, "truncated"));
	}
	free(b);
}

int main(void)
{
	const char *d = getenv("SFT_TEST_DATA");
	snprintf(fixdir, sizeof fixdir, "%s/tokenizers", d ? d : "tests/fixtures");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_llama_spm_vocab),
		cmocka_unit_test(test_all_types_and_tensors),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_real_file_truncated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
