/* safetensors tests: files written by the Python safetensors library (numpy API and its
 * raw serializer) read back with every dtype; fp32 conversion against numpy's; the writer
 * reproducing Python's bytes exactly (single file and a save_pretrained-style sharded
 * directory); corrupt files failing with file + tensor names; truncations never crash.
 * Fixtures: scripts/gen-weights-fixtures.py -> tests/fixtures/weights/st/. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "test_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"

static char stdir[1024];
static char tmpdir[256];

static char *fx(const char *rel)
{
	static char buf[4][1200];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%s/%s", stdir, rel);
	return buf[k];
}

static char *tmp(const char *rel)
{
	static char buf[4][600];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, rel);
	return buf[k];
}

static void assert_same_file(const char *a, const char *b)
{
	size_t na, nb;
	char *x = test_slurp(a, &na), *y = test_slurp(b, &nb);
	if (na != nb || memcmp(x, y, na) != 0) {
		size_t i = 0;
		while (i < na && i < nb && x[i] == y[i])
			i++;
		fail_msg("%s and %s differ at byte %zu (sizes %zu, %zu)", a, b, i, na, nb);
	}
	free(x);
	free(y);
}

static st_file *open_ok(const char *path)
{
	sft_error e = { 0 };
	st_file *f = safetensors_open(path, &e);
	if (!f)
		fail_msg("%s", e.msg);
	return f;
}

static void test_read_basic(void **s)
{
	(void)s;
	st_file *f = open_ok(fx("basic.safetensors"));
	assert_int_equal(f->n_tensors, 12);
	assert_int_equal(f->data_offset % 8, 0);
	assert_int_equal(f->n_meta, 1);
	assert_string_equal(safetensors_meta(f, "format"), "pt");
	assert_null(safetensors_meta(f, "nope"));

	const st_tensor *t = safetensors_find(f, "model.embed_tokens.weight");
	assert_non_null(t);
	assert_int_equal(t->dtype, ST_F32);
	assert_int_equal(t->n_dims, 2);
	assert_int_equal(t->shape[0], 4);
	assert_int_equal(t->shape[1], 3);
	assert_int_equal(t->n_elements, 12);
	assert_int_equal(t->nbytes, 48);
	assert_string_equal(t->file, fx("basic.safetensors"));
	assert_ptr_equal(t->data, f->base + t->file_offset);

	t = safetensors_find(f, "scalar");
	assert_non_null(t);
	assert_int_equal(t->n_dims, 0);
	assert_int_equal(t->n_elements, 1);
	float v;
	assert_int_equal(safetensors_tensor_to_f32(t, &v, NULL), 0);
	assert_true(v == 2.5f);

	t = safetensors_find(f, "empty");
	assert_non_null(t);
	assert_int_equal(t->n_elements, 0);
	assert_int_equal(t->nbytes, 0);

	static const struct { const char *name; int dtype; } dt[] = {
		{ "model.norm.weight", ST_F16 }, { "lm_head.bias", ST_F64 }, { "position_ids", ST_I64 },
		{ "counts", ST_U8 }, { "mask", ST_BOOL }, { "small", ST_I16 }, { "i32", ST_I32 }, { "i8", ST_I8 },
		{ "weird \"name\"\xc3\xa9\n\t\x01", ST_F32 },
	};
	for (size_t i = 0; i < sizeof dt / sizeof dt[0]; i++) {
		t = safetensors_find(f, dt[i].name);
		if (!t)
			fail_msg("missing %s", dt[i].name);
		assert_int_equal(t->dtype, dt[i].dtype);
	}
	assert_null(safetensors_find(f, "model.embed_tokens"));
	sft_error e = { 0 };
	assert_null(safetensors_get(f, "model.layers.0.mlp.up_proj.weight", &e));
	assert_int_equal(e.code, SFT_EXIT_DATA);
	char want[1400];
	snprintf(want, sizeof want, "%s: no tensor 'model.layers.0.mlp.up_proj.weight'", fx("basic.safetensors"));
	assert_string_equal(e.msg, want);
	safetensors_close(f);
}

/* Every convertible tensor against numpy's astype(float32), bit for bit (incl. f16
 * subnormals, inf, nan; bf16 from raw bits). */
static void check_f32(const char *file, size_t expect_n)
{
	st_file *f = open_ok(fx(file)), *ref = open_ok(fx("expected-f32.safetensors"));
	size_t n = 0;
	for (size_t i = 0; i < f->n_tensors; i++) {
		const st_tensor *t = &f->tensors[i], *r = safetensors_find(ref, t->name);
		if (!r)
			continue;
		assert_int_equal(r->n_elements, t->n_elements);
		float *out = malloc((t->n_elements + 1) * sizeof *out); // (n_elements,)
		sft_error e = { 0 };
		if (safetensors_tensor_to_f32(t, out, &e) < 0)
			fail_msg("%s", e.msg);
		if (memcmp(out, r->data, r->nbytes) != 0)
			fail_msg("%s: tensor '%s' differs from numpy", file, t->name);
		free(out);
		n++;
	}
	assert_int_equal(n, expect_n);
	safetensors_close(f);
	safetensors_close(ref);
}

static void test_to_f32(void **s)
{
	(void)s;
	check_f32("basic.safetensors", 12);
	check_f32("bf16.safetensors", 1);
	st_file *f = open_ok(fx("bf16.safetensors"));
	const st_tensor *t = safetensors_find(f, "w.bf16");
	assert_non_null(t);
	assert_int_equal(t->dtype, ST_BF16);
	assert_int_equal(t->shape[0], 2);
	assert_int_equal(t->shape[1], 4);
	float out[8];
	assert_int_equal(safetensors_tensor_to_f32(t, out, NULL), 0);
	assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.15625f);
	safetensors_close(f);
}

/* Re-writes every tensor of a Python-written file (added in reverse name order) and
 * expects the same bytes. */
static void rewrite_same(const char *file, const char *meta_key, const char *meta_val)
{
	st_file *f = open_ok(fx(file));
	st_writer *w = safetensors_writer_new();
	sft_error e = { 0 };
	for (size_t i = f->n_tensors; i-- > 0;) {
		const st_tensor *t = &f->tensors[i];
		assert_int_equal(safetensors_writer_add(w, t->name, t->dtype, t->n_dims, t->shape, t->data, &e), 0);
	}
	if (meta_key)
		assert_int_equal(safetensors_writer_meta(w, meta_key, meta_val, &e), 0);
	if (safetensors_writer_write(w, tmp("out.safetensors"), &e) < 0)
		fail_msg("%s", e.msg);
	assert_same_file(tmp("out.safetensors"), fx(file));
	safetensors_writer_free(w);
	safetensors_close(f);
	unlink(tmp("out.safetensors"));
}

static void test_write_matches_python(void **s)
{
	(void)s;
	rewrite_same("basic.safetensors", "format", "pt");
	rewrite_same("nometa.safetensors", NULL, NULL);
	rewrite_same("bf16.safetensors", "format", "pt");
}

static void test_write_roundtrip_and_meta(void **s)
{
	(void)s;
	st_writer *w = safetensors_writer_new();
	sft_error e = { 0 };
	float a[6] = { 1, 2, 3, 4, 5, 6 };   // (2, 3)
	uint64_t sh[2] = { 2, 3 };
	double c[1] = { 0 };                 // (1,) as C64 (two f32)
	uint64_t sh1 = 1;
	assert_int_equal(safetensors_writer_add(w, "a", ST_F32, 2, sh, a, &e), 0);
	assert_int_equal(safetensors_writer_add(w, "c", ST_C64, 1, &sh1, c, &e), 0);
	assert_int_equal(safetensors_writer_meta(w, "k1", "v1", &e), 0);
	assert_int_equal(safetensors_writer_meta(w, "k2", "x\"y", &e), 0);
	assert_int_equal(safetensors_writer_meta(w, "k1", "v3", &e), 0); /* replaces, keeps position */
	/* errors */
	assert_true(safetensors_writer_add(w, "a", ST_F32, 2, sh, a, &e) < 0);
	assert_string_equal(e.msg, "tensor 'a' added twice");
	assert_true(safetensors_writer_add(w, "bad\xff", ST_F32, 2, sh, a, &e) < 0);
	assert_string_equal(e.msg, "tensor name is not valid utf-8");
	assert_true(safetensors_writer_add(w, "x", 99, 2, sh, a, &e) < 0);
	assert_true(safetensors_writer_add(w, "__metadata__", ST_F32, 2, sh, a, &e) < 0);
	assert_int_equal(safetensors_writer_write(w, tmp("rt.safetensors"), &e), 0);
	safetensors_writer_free(w);

	st_file *f = open_ok(tmp("rt.safetensors"));
	assert_int_equal(f->n_tensors, 2);
	assert_int_equal(f->n_meta, 2);
	assert_string_equal(f->meta_keys[0], "k1");
	assert_string_equal(f->meta_vals[0], "v3");
	assert_string_equal(safetensors_meta(f, "k2"), "x\"y");
	const st_tensor *t = safetensors_find(f, "a");
	assert_memory_equal(t->data, a, sizeof a);
	assert_int_equal(t->file_offset % 8, 0); /* C64 (8 bytes) sorted first, F32 after: aligned */
	t = safetensors_find(f, "c");
	assert_int_equal(t->file_offset, f->data_offset);
	float out[2];
	assert_true(safetensors_tensor_to_f32(t, out, &e) < 0);
	char want[700];
	snprintf(want, sizeof want, "%s: tensor 'c': cannot convert C64 to f32", tmp("rt.safetensors"));
	assert_string_equal(e.msg, want);
	safetensors_close(f);

	/* a failed write leaves nothing behind */
	w = safetensors_writer_new();
	assert_true(safetensors_writer_write(w, tmp("no/such/dir/x.safetensors"), &e) < 0);
	safetensors_writer_free(w);
	unlink(tmp("rt.safetensors"));
}

static void test_read_sharded(void **s)
{
	(void)s;
	sft_error e = { 0 };
	st_model *m = safetensors_model_open(fx("sharded"), &e);
	if (!m)
		fail_msg("%s", e.msg);
	assert_int_equal(m->n_files, 3);
	assert_int_equal(m->n_tensors, 8);
	assert_int_equal(m->total_size, 984);
	assert_non_null(m->index_path);
	const st_tensor *t = safetensors_model_find(m, "model.embed_tokens.weight");
	assert_non_null(t);
	assert_int_equal(t->shape[0], 16);
	assert_non_null(strstr(t->file, "model-00002-of-00003.safetensors"));
	t = safetensors_model_get(m, "model.layers.2.mlp.up_proj.weight", &e);
	assert_non_null(t);
	assert_non_null(strstr(t->file, "model-00003-of-00003.safetensors"));
	uint64_t sum = 0;
	for (size_t i = 0; i < m->n_tensors; i++) {
		sum += m->tensors[i]->nbytes;
		if (i)
			assert_true(strcmp(m->tensors[i - 1]->name, m->tensors[i]->name) < 0);
	}
	assert_int_equal(sum, m->total_size);
	assert_null(safetensors_model_get(m, "model.layers.9.mlp.up_proj.weight", &e));
	assert_int_equal(e.code, SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "model.safetensors.index.json: no tensor 'model.layers.9.mlp.up_proj.weight'"));
	safetensors_model_close(m);

	/* a tensor listed in the index but absent from its shard */
	m = safetensors_model_open(fx("sharded-missing"), &e);
	assert_null(m);
	assert_int_equal(e.code, SFT_EXIT_DATA);
	char want[2600];
	snprintf(want, sizeof want, "%s: no tensor 'model.layers.0.mlp.up_proj.weight' (listed in %s)",
	         fx("sharded-missing/model-00001-of-00001.safetensors"),
	         fx("sharded-missing/model.safetensors.index.json"));
	assert_string_equal(e.msg, want);

	/* a single file as a model, and a directory without any model */
	m = safetensors_model_open(fx("basic.safetensors"), &e);
	assert_non_null(m);
	assert_int_equal(m->n_tensors, 12);
	assert_null(m->index_path);
	assert_non_null(safetensors_model_find(m, "scalar"));
	safetensors_model_close(m);
	assert_null(safetensors_model_open(fx("corrupt"), &e));
	assert_non_null(strstr(e.msg, "no model.safetensors.index.json or model.safetensors"));
	assert_null(safetensors_model_open(fx("does-not-exist"), &e));
}

/* Same tensors, same insertion order, same max shard size as the fixture script gave
 * huggingface_hub: identical shard files and index. */
static void test_write_sharded_matches_python(void **s)
{
	(void)s;
	sft_error e = { 0 };
	st_model *m = safetensors_model_open(fx("sharded"), &e);
	if (!m)
		fail_msg("%s", e.msg);
	size_t n;
	char *order = test_slurp(fx("sharded-order.txt"), &n);
	order[n] = 0;
	char *save = NULL, *line = strtok_r(order, "\n", &save);
	uint64_t max = strtoull(line, NULL, 10);
	assert_int_equal(max, 300);
	st_writer *w = safetensors_writer_new();
	size_t added = 0;
	while ((line = strtok_r(NULL, "\n", &save))) {
		const st_tensor *t = safetensors_model_get(m, line, &e);
		if (!t)
			fail_msg("%s", e.msg);
		assert_int_equal(safetensors_writer_add(w, t->name, t->dtype, t->n_dims, t->shape, t->data, &e), 0);
		added++;
	}
	assert_int_equal(added, 8);
	assert_int_equal(safetensors_writer_meta(w, "format", "pt", &e), 0);
	if (safetensors_writer_write_sharded(w, tmp("sharded"), max, &e) < 0)
		fail_msg("%s", e.msg);
	static const char *files[] = { "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
		                       "model-00003-of-00003.safetensors", "model.safetensors.index.json" };
	for (int i = 0; i < 4; i++) {
		char a[700], b[1300];
		snprintf(a, sizeof a, "sharded/%s", files[i]);
		snprintf(b, sizeof b, "sharded/%s", files[i]);
		assert_same_file(tmp(a), fx(b));
		unlink(tmp(a));
	}
	/* everything fits: a single model.safetensors, no index */
	assert_int_equal(safetensors_writer_write_sharded(w, tmp("single"), 1u << 20, &e), 0);
	assert_int_equal(access(tmp("single/model.safetensors.index.json"), F_OK), -1);
	st_model *m2 = safetensors_model_open(tmp("single"), &e);
	assert_non_null(m2);
	assert_int_equal(m2->n_tensors, 8);
	safetensors_model_close(m2);
	unlink(tmp("single/model.safetensors"));
	rmdir(tmp("single"));
	rmdir(tmp("sharded"));
	safetensors_writer_free(w);
	free(order);
	safetensors_model_close(m);
}

static void expect_error(const char *file, const char *substr)
{
	sft_error e = { 0 };
	char rel[256];
	snprintf(rel, sizeof rel, "corrupt/%s", file);
	st_file *f = safetensors_open(fx(rel), &e);
	if (f)
		fail_msg("%s: opened but should have failed", file);
	assert_int_equal(e.code, SFT_EXIT_DATA);
	if (!strstr(e.msg, substr) || !strstr(e.msg, file))
		fail_msg("%s: message '%s' lacks '%s'", file, e.msg, substr);
}

static void test_corrupt(void **s)
{
	(void)s;
	expect_error("truncated.safetensors", "tensor 'model.embed_tokens.weight': data_offsets [0, 48] go past "
	                                      "the end of the data section (47 bytes): file truncated?");
	expect_error("short.safetensors", "truncated: 3 bytes, need at least 8 for the header length");
	expect_error("hdrlen-beyond.safetensors", "header length 1099511627776 goes beyond the end of the file (10 bytes)");
	expect_error("badjson.safetensors", "invalid json header at byte 62 (line 1, column 55)");
	expect_error("unknown-dtype.safetensors", "tensor 'a': unknown dtype 'F17'");
	expect_error("size-mismatch.safetensors",
	             "tensor 'a': shape and dtype F32 need 12 bytes but data_offsets [0, 8] span 8");
	expect_error("overlap.safetensors", "tensor 'b' (data bytes 4..12) overlaps tensor 'a' (ending at 8)");
	expect_error("gap.safetensors", "gap in the data section: bytes 4..8 belong to no tensor");
	expect_error("trailing.safetensors", "tensors cover 8 data bytes but the file has 12 after the header");
	expect_error("past-end.safetensors", "tensor 'a': data_offsets [0, 8] go past the end");
	expect_error("meta-not-string.safetensors", "__metadata__ 'n': value is not a string");
	expect_error("not-object.safetensors", "header at byte 8 does not start with '{'");
	expect_error("negative-shape.safetensors", "tensor 'a': shape[0] is not a non-negative integer");
	expect_error("duplicate.safetensors", "invalid json header");
}

/* Every truncation and a few byte flips of a valid file fail cleanly (or parse). */
static void test_no_crash_on_damage(void **s)
{
	(void)s;
	size_t n;
	uint8_t *b = (uint8_t *)test_slurp(fx("basic.safetensors"), &n);
	sft_error e = { 0 };
	for (size_t len = 0; len < n; len++) {
		st_file *f = safetensors_open_mem(b, len, "cut", &e);
		assert_null(f);
		assert_int_equal(e.code, SFT_EXIT_DATA);
	}
	uint8_t *c = malloc(n);
	for (size_t i = 0; i < n; i += 7) {
		memcpy(c, b, n);
		c[i] ^= 0x5a;
		st_file *f = safetensors_open_mem(c, n, "flip", &e);
		if (f) {
			for (size_t k = 0; k < f->n_tensors; k++) {
				float *o = malloc((f->tensors[k].n_elements + 1) * sizeof *o);
				safetensors_tensor_to_f32(&f->tensors[k], o, &e);
				free(o);
			}
			safetensors_close(f);
		}
	}
	free(c);
	free(b);
	safetensors_close(NULL);
	safetensors_model_close(NULL);
	safetensors_writer_free(NULL);
}

static void test_dtype_table(void **s)
{
	(void)s;
	assert_int_equal(st_dtype_from_name("BF16"), ST_BF16);
	assert_int_equal(st_dtype_from_name("bf16"), -1);
	assert_string_equal(st_dtype_name(ST_F8_E4M3), "F8_E4M3");
	assert_string_equal(st_dtype_name(-3), "unknown");
	assert_int_equal(st_dtype_size(ST_C64), 8);
	assert_int_equal(st_dtype_size(ST_BOOL), 1);
	assert_int_equal(st_dtype_size(ST_DTYPE_COUNT), 0);
}

static int setup(void **s)
{
	(void)s;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_safetensors.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **s)
{
	(void)s;
	return rmdir(tmpdir);
}

int main(void)
{
	const char *d = getenv("SFT_TEST_DATA");
	snprintf(stdir, sizeof stdir, "%s/weights/st", d ? d : "tests/fixtures");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_basic),
		cmocka_unit_test(test_to_f32),
		cmocka_unit_test(test_write_matches_python),
		cmocka_unit_test(test_write_roundtrip_and_meta),
		cmocka_unit_test(test_read_sharded),
		cmocka_unit_test(test_write_sharded_matches_python),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_no_crash_on_damage),
		cmocka_unit_test(test_dtype_table),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
