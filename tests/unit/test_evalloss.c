/* Unit tests for libcommon/evalloss.c: micro-batches never straddle files, per-file and
 * total sums equal a direct recount of the shard records (label convention of batch.h),
 * max_rows, early stop through the progress callback, errors from the forward, and a real
 * forward (model_forward + ops_fused_linear_ce) agreeing across batch sizes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evalloss.h"
#include "model.h"
#include "shard.h"

static char g_dir[] = "/tmp/test_evalloss_XXXXXX";

static int setup(void **state)
{
	(void)state;
	return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return test_rm_rf(g_dir);
}

#define VOCAB 256
#define SEQ 24

/* Writes a packed, padded shard of `rows` rows; row k has 1 + k % 3 segments. */
static void write_shard(const char *path, size_t rows, uint32_t salt)
{
	shard_header h = {.vocab_size = VOCAB, .flags = SHARD_PACKED | SHARD_PADDED, .seq_len = SEQ, .pad_id = 0};
	for (int i = 0; i < 16; i++) h.fingerprint[i] = (uint8_t)(i * 7 + 1);
	sft_error e = {0};
	shard_writer *w = shard_writer_open_file(path, &h, &e);
	if (!w) fail_msg("%s", e.msg);
	for (size_t k = 0; k < rows; k++) {
		uint32_t tok[SEQ];
		uint8_t mask[SEQ];
		shard_segment segs[3];
		size_t nseg = 1 + (k + salt) % 3, used = 0;
		for (size_t s = 0; s < nseg; s++) {
			uint32_t len = 2 + (uint32_t)((k * 5 + s * 3 + salt) % 5); /* 2..6 */
			segs[s] = (shard_segment){.doc_id = k * 3 + s, .offset = 0, .len = len};
			used += len;
		}
		size_t n = (k % 2) ? SEQ : used; /* odd rows padded to SEQ */
		for (size_t i = 0; i < n; i++) {
			tok[i] = i < used ? (uint32_t)((k * 37 + i * 11 + salt) % VOCAB) : 0;
			mask[i] = i < used ? (uint8_t)(((i + k) % 4) != 0) : 0;
		}
		shard_record r = {.tokens = tok, .mask = mask, .n = n, .segs = segs, .n_seg = nseg, .n_pad = n - used};
		if (shard_write(w, &r, &e) < 0) fail_msg("%s", e.msg);
	}
	if (shard_writer_close(w, &e) < 0) fail_msg("%s", e.msg);
}

/* a.shard (7 rows), b.shard (5 rows), c.shard (4 rows) + manifest. */
static void make_dataset(char *dir, size_t cap)
{
	snprintf(dir, cap, "%s/ds", g_dir);
	char p[600];
	snprintf(p, sizeof p, "mkdir -p %s", dir);
	assert_int_equal(system(p), 0);
	const char *names[3] = {"a.shard", "b.shard", "c.shard"};
	size_t rows[3] = {7, 5, 4};
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s/%s", dir, names[i]);
		write_shard(p, rows[i], (uint32_t)i * 13);
	}
	snprintf(p, sizeof p, "%s/manifest.json", dir);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fprintf(f, "{\"files\":[{\"name\":\"a.shard\",\"rows\":7},{\"name\":\"b.shard\",\"rows\":5},"
		   "{\"name\":\"c.shard\",\"rows\":4}]}\n");
	fclose(f);
}

/* The fake forward's per-target statistics (exact in double). */
static double fake_loss(int32_t y) { return 0.125 * (double)(y % 7) + 0.5; }
static int fake_correct(int32_t y) { return y % 2 == 0; }

typedef struct fake_ctx {
	int calls;
	int shapes[64]; /* B of each call */
	int fail_at;    /* call index that fails, or -1 */
} fake_ctx;

static int fake_forward(void *user, const batch *b, ops_ce_stats *st, sft_error *err)
{
	fake_ctx *c = user;
	if (c->calls == c->fail_at) {
		c->calls++;
		return sft_error_set(err, SFT_EXIT_RUNTIME, "fake failure");
	}
	if (c->calls < 64) c->shapes[c->calls] = b->B;
	c->calls++;
	memset(st, 0, sizeof *st);
	for (long i = 0; i < (long)b->B * b->T; i++) {
		int32_t y = b->targets[i];
		if (y < 0) continue;
		st->loss_sum += fake_loss(y);
		st->n_tokens++;
		st->n_correct += fake_correct(y);
	}
	return 0;
}

/* Recount straight from the records: target t -> t+1 inside a segment when t+1 is trained. */
typedef struct recount {
	double loss;
	uint64_t targets, correct, tokens;
	size_t rows;
} recount;

static void recount_file(const char *path, size_t max_rows, recount *rc)
{
	sft_error e = {0};
	shard_file *f = shard_file_map(path, &e);
	if (!f) fail_msg("%s", e.msg);
	shard_buf buf = {0};
	size_t n = shard_file_rows(f);
	if (max_rows < n) n = max_rows;
	for (size_t k = 0; k < n; k++) {
		shard_record r;
		assert_int_equal(shard_file_row(f, k, &r, &buf, &e), 0);
		size_t t = 0;
		for (size_t s = 0; s < r.n_seg; s++) {
			for (uint32_t j = 0; j < r.segs[s].len; j++, t++) {
				if (j + 1 < r.segs[s].len && r.mask[t + 1]) {
					int32_t y = (int32_t)r.tokens[t + 1];
					rc->loss += fake_loss(y);
					rc->targets++;
					rc->correct += (uint64_t)fake_correct(y);
				}
			}
		}
		rc->tokens += r.n - r.n_pad;
		rc->rows++;
	}
	shard_buf_free(&buf);
	shard_file_unmap(f);
}

/* make_dataset, then the batch_data over it (the tests' common start) */
static batch_data *open_dataset(char *dir, size_t cap)
{
	make_dataset(dir, cap);
	sft_error e = {0};
	batch_data *d = batch_data_open(dir, &e);
	if (!d) fail_msg("%s", e.msg);
	return d;
}

static void test_per_file_and_total(void **state)
{
	(void)state;
	char dir[512];
	sft_error e = {0};
	batch_data *d = open_dataset(dir, sizeof dir);
	const char *names[3] = {"a.shard", "b.shard", "c.shard"};
	recount want[3] = {{0}}, tot = {0};
	for (int i = 0; i < 3; i++) {
		char p[700];
		snprintf(p, sizeof p, "%s/%s", dir, names[i]);
		recount_file(p, (size_t)-1, &want[i]);
		tot.loss += want[i].loss;
		tot.targets += want[i].targets;
		tot.correct += want[i].correct;
		tot.tokens += want[i].tokens;
		tot.rows += want[i].rows;
	}
	assert_int_equal(tot.targets, batch_data_trained(d));
	for (int B = 1; B <= 8; B++) {
		fake_ctx c = {.fail_at = -1};
		eval_loss_result r;
		assert_int_equal(eval_loss_run(d, B, 0, fake_forward, &c, NULL, NULL, &r, &e), 0);
		assert_int_equal(r.n_files, 3);
		assert_false(r.stopped);
		/* batches: per file ceil(rows / B), the last one of a file short */
		int expect_calls = (7 + B - 1) / B + (5 + B - 1) / B + (4 + B - 1) / B;
		assert_int_equal(c.calls, expect_calls);
		int ci = 0;
		size_t frows[3] = {7, 5, 4};
		for (int fi = 0; fi < 3; fi++)
			for (size_t left = frows[fi]; left > 0;) {
				size_t n = left < (size_t)B ? left : (size_t)B;
				assert_int_equal(c.shapes[ci++], (int)n);
				left -= n;
			}
		for (int i = 0; i < 3; i++) {
			assert_non_null(strstr(r.files[i].name, names[i]));
			assert_int_equal(r.files[i].rows, want[i].rows);
			assert_int_equal(r.files[i].tokens, want[i].tokens);
			assert_int_equal(r.files[i].n_targets, want[i].targets);
			assert_int_equal(r.files[i].n_correct, want[i].correct);
			/* values are multiples of 1/8 well below 2^40: sums are exact in double */
			assert_true(r.files[i].loss_sum == want[i].loss);
			assert_true(fabs(r.files[i].loss - want[i].loss / (double)want[i].targets) < 1e-15);
			assert_true(fabs(r.files[i].ppl - exp(r.files[i].loss)) < 1e-12);
			assert_true(fabs(r.files[i].accuracy - (double)want[i].correct / (double)want[i].targets) < 1e-15);
		}
		assert_int_equal(r.total.rows, tot.rows);
		assert_int_equal(r.total.tokens, tot.tokens);
		assert_int_equal(r.total.n_targets, tot.targets);
		assert_int_equal(r.total.n_correct, tot.correct);
		assert_true(r.total.loss_sum == tot.loss);
		assert_true(r.seconds >= 0);
		eval_loss_result_free(&r);
		eval_loss_result_free(&r); /* idempotent */
	}
	batch_data_close(d);
}

static void test_max_rows(void **state)
{
	(void)state;
	char dir[512];
	sft_error e = {0};
	batch_data *d = open_dataset(dir, sizeof dir);
	char p[700];
	recount a = {0}, b = {0};
	snprintf(p, sizeof p, "%s/a.shard", dir);
	recount_file(p, 7, &a);
	snprintf(p, sizeof p, "%s/b.shard", dir);
	recount_file(p, 2, &b);
	fake_ctx c = {.fail_at = -1};
	eval_loss_result r;
	assert_int_equal(eval_loss_run(d, 3, 9, fake_forward, &c, NULL, NULL, &r, &e), 0);
	assert_int_equal(c.calls, 3 + 1); /* a: 3,3,1; b: 2 */
	assert_int_equal(r.total.rows, 9);
	assert_int_equal(r.files[0].rows, 7);
	assert_int_equal(r.files[1].rows, 2);
	assert_int_equal(r.files[2].rows, 0);
	assert_true(isnan(r.files[2].loss));
	assert_int_equal(r.files[1].n_targets, b.targets);
	assert_true(r.total.loss_sum == a.loss + b.loss);
	assert_int_equal(r.total.n_targets, a.targets + b.targets);
	eval_loss_result_free(&r);
	/* max_rows beyond the dataset = everything */
	c = (fake_ctx){.fail_at = -1};
	assert_int_equal(eval_loss_run(d, 4, 1000, fake_forward, &c, NULL, NULL, &r, &e), 0);
	assert_int_equal(r.total.rows, 16);
	eval_loss_result_free(&r);
	batch_data_close(d);
}

typedef struct prog_ctx {
	int calls;
	size_t last_done, total;
	uint64_t last_tokens;
	size_t stop_after; /* stop once rows_done >= this (0 = never) */
} prog_ctx;

static int prog_cb(void *user, size_t rows_done, size_t rows_total, uint64_t tokens_done)
{
	prog_ctx *p = user;
	assert_true(rows_done > p->last_done);
	assert_true(tokens_done > p->last_tokens);
	p->calls++;
	p->last_done = rows_done;
	p->last_tokens = tokens_done;
	p->total = rows_total;
	return p->stop_after && rows_done >= p->stop_after;
}

static void test_progress_and_stop(void **state)
{
	(void)state;
	char dir[512];
	sft_error e = {0};
	batch_data *d = open_dataset(dir, sizeof dir);
	fake_ctx c = {.fail_at = -1};
	prog_ctx pc = {0};
	eval_loss_result r;
	assert_int_equal(eval_loss_run(d, 4, 0, fake_forward, &c, prog_cb, &pc, &r, &e), 0);
	assert_int_equal(pc.calls, c.calls);
	assert_int_equal(pc.last_done, 16);
	assert_int_equal(pc.total, 16);
	assert_int_equal(pc.last_tokens, r.total.tokens);
	eval_loss_result_free(&r);

	/* stop after 5 rows: batches of 4 -> a: 4, 3 (7 rows done) then stop */
	c = (fake_ctx){.fail_at = -1};
	pc = (prog_ctx){.stop_after = 5};
	assert_int_equal(eval_loss_run(d, 4, 0, fake_forward, &c, prog_cb, &pc, &r, &e), 0);
	assert_true(r.stopped);
	assert_int_equal(r.total.rows, 7);
	assert_int_equal(r.files[1].rows, 0);
	char p[700];
	recount a = {0};
	snprintf(p, sizeof p, "%s/a.shard", dir);
	recount_file(p, 7, &a);
	assert_true(r.total.loss_sum == a.loss);
	eval_loss_result_free(&r);

	/* a stop requested after the last batch stops nothing */
	c = (fake_ctx){.fail_at = -1};
	pc = (prog_ctx){.stop_after = 16};
	assert_int_equal(eval_loss_run(d, 4, 0, fake_forward, &c, prog_cb, &pc, &r, &e), 0);
	assert_false(r.stopped);
	assert_int_equal(r.total.rows, 16);
	eval_loss_result_free(&r);
	batch_data_close(d);
}

static void test_errors(void **state)
{
	(void)state;
	char dir[512];
	sft_error e = {0};
	batch_data *d = open_dataset(dir, sizeof dir);
	fake_ctx c = {.fail_at = 2};
	eval_loss_result r;
	assert_true(eval_loss_run(d, 2, 0, fake_forward, &c, NULL, NULL, &r, &e) < 0);
	assert_int_equal(e.code, SFT_EXIT_RUNTIME);
	assert_non_null(strstr(e.msg, "fake failure"));
	assert_null(r.files);
	eval_loss_result_free(&r);
	sft_error_clear(&e);
	assert_true(eval_loss_run(d, 0, 0, fake_forward, &c, NULL, NULL, &r, &e) < 0);
	assert_int_equal(e.code, SFT_EXIT_USAGE);
	batch_data_close(d);
	/* one flipped byte in the middle of a shard (token data; the index and footer stay
	 * valid) is caught at open by the checksum, naming the file */
	char p[700];
	snprintf(p, sizeof p, "%s/b.shard", dir);
	FILE *f = fopen(p, "r+b");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long size = ftell(f);
	assert_int_equal(fseek(f, size / 2, SEEK_SET), 0);
	int ch = fgetc(f);
	assert_int_equal(fseek(f, size / 2, SEEK_SET), 0);
	fputc(ch ^ 0x01, f);
	fclose(f);
	sft_error_clear(&e);
	assert_null(batch_data_open(dir, &e));
	assert_int_equal(e.code, SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "b.shard"));
	assert_non_null(strstr(e.msg, "checksum mismatch"));
}

/* ---- a real forward: the tiny llama fixture, model_forward + fused CE ---- */

typedef struct real_ctx {
	const model *m;
	model_arena arena;
	float *hidden;
	float *scratch;
} real_ctx;

static int real_forward(void *user, const batch *b, ops_ce_stats *st, sft_error *err)
{
	real_ctx *c = user;
	const model_config *cfg = &c->m->cfg;
	if (model_arena_reserve(&c->arena, cfg, b->B, b->T, err) < 0) return -1;
	if (model_forward(c->m, &c->arena, b->tokens, b->pos, b->seg, b->B, b->T, NULL, c->hidden, err) < 0)
		return -1;
	*st = ops_fused_linear_ce(NULL, NULL, c->scratch, c->hidden, c->m->lm_head, b->targets, 0.0f, b->B * b->T,
				  cfg->hidden_size, cfg->vocab_size);
	return 0;
}

static void test_real_forward_batch_sizes(void **state)
{
	(void)state;
	char dir[512];
	make_dataset(dir, sizeof dir);
	sft_error e = {0};
	const char *root = getenv("SFT_TEST_DATA") ? getenv("SFT_TEST_DATA") : "tests/fixtures";
	char mp[512];
	snprintf(mp, sizeof mp, "%s/models/llama", root);
	model *m = model_load(mp, &e);
	if (!m) fail_msg("%s", e.msg);
	batch_data *d = batch_data_open(dir, &e);
	if (!d) fail_msg("%s", e.msg);
	real_ctx c = {.m = m};
	model_arena_init(&c.arena);
	c.hidden = malloc((size_t)8 * SEQ * (size_t)m->cfg.hidden_size * sizeof(float));
	c.scratch = malloc(ops_fused_ce_scratch_size(m->cfg.hidden_size, m->cfg.vocab_size) * sizeof(float));
	assert_non_null(c.hidden);
	assert_non_null(c.scratch);
	eval_loss_result r1, r8;
	assert_int_equal(eval_loss_run(d, 1, 0, real_forward, &c, NULL, NULL, &r1, &e), 0);
	assert_int_equal(eval_loss_run(d, 8, 0, real_forward, &c, NULL, NULL, &r8, &e), 0);
	assert_int_equal(r1.total.n_targets, batch_data_trained(d));
	assert_int_equal(r1.total.n_targets, r8.total.n_targets);
	/* the value itself is checked against transformers by sft-eval's golden CLI test */
	assert_true(isfinite(r1.total.loss) && r1.total.loss > 0);
	/* batching changes only float rounding of the padded forward (rows are independent) */
	assert_true(fabs(r1.total.loss - r8.total.loss) < 1e-5 * r1.total.loss);
	for (int i = 0; i < 3; i++) assert_true(fabs(r1.files[i].loss - r8.files[i].loss) < 1e-5 * r1.files[i].loss);
	eval_loss_result_free(&r1);
	eval_loss_result_free(&r8);
	free(c.hidden);
	free(c.scratch);
	model_arena_free(&c.arena);
	batch_data_close(d);
	model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_per_file_and_total),
		cmocka_unit_test(test_max_rows),
		cmocka_unit_test(test_progress_and_stop),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_real_forward_batch_sizes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
