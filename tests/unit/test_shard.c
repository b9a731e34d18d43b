/* Unit tests for libcommon/shard.*: stream and file round trips, the JSONL twin, and
 * every reader error (magic, version, truncation, checksum, vocab, segments). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shard.h"

static char g_dir[] = "/tmp/test_shard_XXXXXX";

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

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

static shard_header hdr(uint32_t vocab, uint32_t flags)
{
	shard_header h = {0};
	h.vocab_size = vocab;
	h.flags = flags;
	h.seq_len = flags ? 64 : 0;
	for (int i = 0; i < 16; i++)
		h.fingerprint[i] = (uint8_t)(i * 17 + 1);
	return h;
}

/* Builds N random documents (unpacked records) in caller-owned arrays. */
typedef struct docs {
	size_t n;
	uint32_t *tok[64];
	uint8_t *mask[64];
	size_t len[64];
} docs;

static void docs_make(docs *d, size_t n, uint32_t vocab)
{
	d->n = n;
	for (size_t i = 0; i < n; i++) {
		d->len[i] = i == 3 ? 0 : 1 + rnd() % 200; /* one empty document */
		d->tok[i] = malloc((d->len[i] + 1) * 4);
		d->mask[i] = malloc(d->len[i] + 1);
		for (size_t j = 0; j < d->len[i]; j++) {
			d->tok[i][j] = rnd() % vocab;
			d->mask[i][j] = (uint8_t)(rnd() & 1);
		}
	}
}

static void docs_free(docs *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->tok[i]);
		free(d->mask[i]);
	}
}

static void write_docs(shard_writer *w, const docs *d)
{
	sft_error e = {0};
	for (size_t i = 0; i < d->n; i++) {
		shard_record r = {.tokens = d->tok[i], .mask = d->mask[i], .n = d->len[i]};
		assert_int_equal(shard_write(w, &r, &e), 0);
	}
}

static void check_read_docs(const char *path, const docs *d, int expect_file)
{
	sft_error e = {0};
	shard_reader *r = shard_reader_open(path, &e);
	assert_non_null(r);
	assert_int_equal(shard_reader_header(r)->is_file, expect_file);
	shard_record rec;
	for (size_t i = 0; i < d->n; i++) {
		assert_int_equal(shard_read(r, &rec, &e), 1);
		assert_int_equal(rec.n, d->len[i]);
		assert_int_equal(rec.n_seg, 0);
		if (rec.n) {
			assert_memory_equal(rec.tokens, d->tok[i], rec.n * 4);
			assert_memory_equal(rec.mask, d->mask[i], rec.n);
		}
	}
	int rc = shard_read(r, &rec, &e);
	if (rc != 0)
		fail_msg("%s", e.msg);
	shard_reader_close(r);
}

static void path_in(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_dir, name); }

static void test_stream_roundtrip_u16_u32(void **state)
{
	(void)state;
	uint32_t vocabs[] = {1000, 200000};
	for (int v = 0; v < 2; v++) {
		docs d;
		docs_make(&d, 20, vocabs[v]);
		char p[512];
		path_in(p, sizeof p, "s.bin");
		FILE *fp = fopen(p, "wb");
		shard_header h = hdr(vocabs[v], 0);
		sft_error e = {0};
		shard_writer *w = shard_writer_open_stream(fp, &h, &e);
		assert_non_null(w);
		write_docs(w, &d);
		assert_int_equal(shard_writer_close(w, &e), 0);
		fclose(fp);
		check_read_docs(p, &d, 0);
		/* width: 2 bytes when the vocab fits */
		shard_reader *r = shard_reader_open(p, &e);
		assert_int_equal(shard_reader_header(r)->token_width, v == 0 ? 2 : 4);
		assert_memory_equal(shard_reader_header(r)->fingerprint, h.fingerprint, 16);
		shard_reader_close(r);
		docs_free(&d);
	}
}

static void write_packed_file(const char *p, size_t rows, uint8_t checksum[16])
{
	shard_header h = hdr(500, SHARD_PACKED | SHARD_PADDED);
	h.pad_id = 7;
	sft_error e = {0};
	shard_writer *w = shard_writer_open_file(p, &h, &e);
	assert_non_null(w);
	uint32_t tok[64];
	uint8_t mask[64];
	shard_segment segs[3];
	for (size_t k = 0; k < rows; k++) {
		segs[0] = (shard_segment){.doc_id = 2 * k, .offset = 0, .len = 10 + (uint32_t)k % 20};
		segs[1] = (shard_segment){.doc_id = 2 * k + 1, .offset = 3, .len = 20};
		size_t used = segs[0].len + segs[1].len, pad = 64 - used;
		for (size_t i = 0; i < 64; i++) {
			tok[i] = i < used ? (uint32_t)((k * 31 + i) % 500) : 7;
			mask[i] = i < used ? (uint8_t)((i / 5) & 1) : 0;
		}
		shard_record r = {.tokens = tok, .mask = mask, .n = 64, .segs = segs, .n_seg = 2, .n_pad = pad};
		assert_int_equal(shard_write(w, &r, &e), 0);
	}
	shard_counts c;
	assert_int_equal(shard_writer_close_ex(w, checksum, &c, &e), 0);
	assert_int_equal(c.records, rows);
	assert_int_equal(c.tokens, rows * 64);
}

static void test_file_mmap_rows_and_verify(void **state)
{
	(void)state;
	char p[512];
	path_in(p, sizeof p, "f.shard");
	uint8_t sum[16];
	write_packed_file(p, 50, sum);
	sft_error e = {0};
	shard_file *f = shard_file_map(p, &e);
	if (!f)
		fail_msg("%s", e.msg);
	assert_int_equal(shard_file_rows(f), 50);
	assert_memory_equal(shard_file_checksum(f), sum, 16);
	assert_int_equal(shard_file_verify(f, &e), 0);
	shard_buf b = {0};
	shard_record rec;
	/* random access, backwards */
	for (size_t k = 50; k-- > 0;) {
		assert_int_equal(shard_file_row(f, k, &rec, &b, &e), 0);
		assert_int_equal(rec.n, 64);
		assert_int_equal(rec.n_seg, 2);
		assert_int_equal(rec.segs[0].doc_id, 2 * k);
		assert_int_equal(rec.segs[1].offset, 3);
		assert_int_equal(rec.n_pad, 64 - (10 + k % 20) - 20);
		assert_int_equal(rec.tokens[5], (k * 31 + 5) % 500);
		assert_int_equal(rec.mask[5], 1);
		assert_int_equal(rec.mask[4], 0);
		assert_int_equal(rec.tokens[63], 7);
	}
	shard_view v;
	assert_int_equal(shard_file_view(f, 3, &v, &e), 0);
	assert_int_equal(((const uint16_t *)v.tokens)[1], (3 * 31 + 1) % 500);
	assert_int_not_equal(shard_file_row(f, 50, &rec, &b, &e), 0);
	shard_buf_free(&b);
	shard_file_unmap(f);
	/* the sequential reader also reads the file form and checks index + footer */
	shard_reader *r = shard_reader_open(p, &e);
	assert_non_null(r);
	int n = 0, rc;
	while ((rc = shard_read(r, &rec, &e)) == 1)
		n++;
	if (rc)
		fail_msg("%s", e.msg);
	assert_int_equal(n, 50);
	shard_reader_close(r);
}

/* Writes a modified copy of `src` (truncated to `len` bytes, or with byte `flip` xor 0x10). */
static void corrupt_copy(const char *src, const char *dst, long len, long flip)
{
	FILE *in = fopen(src, "rb");
	fseek(in, 0, SEEK_END);
	long sz = ftell(in);
	rewind(in);
	uint8_t *b = malloc((size_t)sz);
	assert_int_equal(fread(b, 1, (size_t)sz, in), (size_t)sz);
	fclose(in);
	if (flip >= 0)
		b[flip] ^= 0x10;
	FILE *out = fopen(dst, "wb");
	fwrite(b, 1, (size_t)(len >= 0 ? len : sz), out);
	fclose(out);
	free(b);
}

/* Reads `path` to the end with the sequential reader; returns the error message. */
static int read_all(const char *path, sft_error *e)
{
	shard_reader *r = shard_reader_open(path, e);
	if (!r)
		return -e->code;
	shard_record rec;
	int rc;
	while ((rc = shard_read(r, &rec, e)) == 1)
		;
	shard_reader_close(r);
	return rc;
}

static void test_reader_errors(void **state)
{
	(void)state;
	char src[512], bad[512];
	path_in(src, sizeof src, "e.shard");
	path_in(bad, sizeof bad, "bad.shard");
	uint8_t sum[16];
	write_packed_file(src, 10, sum);
	sft_error e = {0};
	/* record 0 starts at 64: 16 header + 32 segs + 128 tokens + 8 mask = 184 bytes */

	corrupt_copy(src, bad, 164, -1); /* cut mid-record */
	assert_int_equal(read_all(bad, &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "byte 64: truncated record: expected 184 bytes, got 100"));

	corrupt_copy(src, bad, 64 + 184, -1); /* cut at a record boundary */
	assert_int_equal(read_all(bad, &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "byte 248: truncated stream"));

	corrupt_copy(src, bad, -1, 0); /* magic */
	assert_int_equal(read_all(bad, &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "byte 0: not an sftkit token shard"));

	corrupt_copy(src, bad, -1, 8); /* version */
	assert_int_equal(read_all(bad, &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "byte 8: unsupported shard version 17"));

	corrupt_copy(src, bad, -1, 64 + 16 + 32 + 10); /* a token bit: only the checksum sees it */
	assert_int_equal(read_all(bad, &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "checksum mismatch"));
	shard_file *f = shard_file_map(bad, &e);
	assert_non_null(f);
	assert_int_equal(shard_file_verify(f, &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "checksum mismatch"));
	shard_file_unmap(f);

	corrupt_copy(src, bad, -1, 64 + 16 + 32 + 1); /* token 0 high byte: id >= vocab 500 */
	assert_int_equal(read_all(bad, &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "byte 112: token id"));

	corrupt_copy(src, bad, -1, 64 + 16 + 12); /* segment 0 length */
	assert_int_equal(read_all(bad, &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "byte 64: bad segment lengths"));

	/* truncated file: mmap sees the missing footer */
	corrupt_copy(src, bad, 1000, -1);
	assert_null(shard_file_map(bad, &e));
	assert_non_null(strstr(e.msg, "bad footer"));
}

/* A stream (no footer) with one flipped bit: the end marker's XXH3-64 catches it. */
static void test_stream_bitflip_detected(void **state)
{
	(void)state;
	docs d;
	docs_make(&d, 5, 60000);
	char p[512], bad[512];
	path_in(p, sizeof p, "flip.tok");
	path_in(bad, sizeof bad, "flip-bad.tok");
	FILE *fp = fopen(p, "wb");
	shard_header h = hdr(60000, 0);
	sft_error e = {0};
	shard_writer *w = shard_writer_open_stream(fp, &h, &e);
	write_docs(w, &d);
	assert_int_equal(shard_writer_close(w, &e), 0);
	fclose(fp);
	check_read_docs(p, &d, 0);
	/* record 0 starts at 64: 16 header bytes, then u16 tokens; flip a low bit of token 1 */
	corrupt_copy(p, bad, -1, 64 + 16 + 2);
	assert_int_equal(read_all(bad, &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "checksum mismatch: stream is corrupt"));
	assert_non_null(strstr(e.msg, "byte "));
	docs_free(&d);
}

static void test_jsonl_twin(void **state)
{
	(void)state;
	char p[512];
	path_in(p, sizeof p, "t.jsonl");
	FILE *fp = fopen(p, "w");
	uint32_t t[] = {5, 0, 4294967295u};
	uint8_t m[] = {0, 1, 1};
	sft_error e = {0};
	assert_int_equal(shard_jsonl_write(fp, t, m, 3, &e), 0);
	assert_int_equal(shard_jsonl_write(fp, t, m, 0, &e), 0);
	fputs("{\"input_ids\":[1,2]}\n", fp);
	fclose(fp);
	fp = fopen(p, "r");
	char line[256];
	assert_non_null(fgets(line, sizeof line, fp));
	assert_string_equal(line, "{\"input_ids\":[5,0,4294967295],\"mask\":[0,1,1]}\n");
	assert_non_null(fgets(line, sizeof line, fp));
	assert_string_equal(line, "{\"input_ids\":[],\"mask\":[]}\n");
	fclose(fp);
	shard_reader *r = shard_reader_open(p, &e);
	assert_non_null(r);
	assert_true(shard_reader_is_jsonl(r));
	shard_record rec;
	assert_int_equal(shard_read(r, &rec, &e), 1);
	assert_int_equal(rec.n, 3);
	assert_memory_equal(rec.tokens, t, 12);
	assert_memory_equal(rec.mask, m, 3);
	assert_int_equal(shard_read(r, &rec, &e), 1);
	assert_int_equal(rec.n, 0);
	assert_int_equal(shard_read(r, &rec, &e), 1);
	assert_int_equal(rec.n, 2);
	assert_int_equal(rec.mask[1], 1); /* absent mask = all trained */
	assert_int_equal(shard_read(r, &rec, &e), 0);
	shard_reader_close(r);

	shard_buf b = {0};
	size_t n;
	const char *bad = "{\"input_ids\":[1,2],\"mask\":[1,2]}";
	assert_int_equal(shard_jsonl_parse(bad, strlen(bad), "x", 7, &b, &n, &e), -SFT_EXIT_DATA);
	assert_string_equal(e.msg, "x:7: mask[1]: expected 0 or 1");
	shard_buf_free(&b);
}

static void test_writer_rejects_bad_records(void **state)
{
	(void)state;
	char p[512];
	path_in(p, sizeof p, "w.bin");
	FILE *fp = fopen(p, "wb");
	shard_header h = hdr(100, SHARD_PACKED);
	sft_error e = {0};
	shard_writer *w = shard_writer_open_stream(fp, &h, &e);
	uint32_t t[4] = {1, 2, 100, 3};
	uint8_t m[4] = {1, 1, 1, 1};
	shard_record r = {.tokens = t, .mask = m, .n = 4};
	assert_int_equal(shard_write(w, &r, &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "id 100 >= vocab size 100"));
	t[2] = 5;
	shard_segment s[2] = {{.doc_id = 0, .offset = 0, .len = 2}, {.doc_id = 1, .offset = 0, .len = 1}};
	r.segs = s;
	r.n_seg = 2;
	assert_int_equal(shard_write(w, &r, &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "bad segment lengths"));
	shard_writer_abort(w);
	fclose(fp);

	shard_header a = hdr(100, 0), b2 = hdr(100, 0);
	b2.fingerprint[3] ^= 1;
	assert_int_equal(shard_header_check_compatible(&a, "a", &b2, "b", &e), -SFT_EXIT_DATA);
	assert_non_null(strstr(e.msg, "different tokenizers"));
	assert_int_equal(shard_header_check_compatible(&a, "a", &a, "b", &e), 0);
}

/* shard_bits_copy against a bit-by-bit copy: every offset pair mod 8, lengths 0..300. */
static void test_bits_copy(void **state)
{
	(void)state;
	uint8_t src[64], dst[64], want[64];
	for (size_t i = 0; i < sizeof src; i++)
		src[i] = (uint8_t)rnd();
	for (size_t so = 0; so < 16; so++)
		for (size_t dof = 0; dof < 16; dof++)
			for (size_t n = 0; n + so <= 300 && n + dof <= 300; n += 1 + n / 16) {
				for (size_t i = 0; i < sizeof dst; i++)
					dst[i] = want[i] = (uint8_t)rnd();
				for (size_t i = 0; i < n; i++) {
					unsigned b = (src[(so + i) >> 3] >> ((so + i) & 7)) & 1;
					size_t d = dof + i;
					want[d >> 3] = (uint8_t)((want[d >> 3] & ~(1u << (d & 7))) | (b << (d & 7)));
				}
				shard_bits_copy(dst, dof, src, so, n);
				assert_memory_equal(dst, want, sizeof dst);
			}
}

/* Writes the same packed rows through shard_write and through reserve/commit (the raw path
 * pack uses), u16 and u32: the files must be identical; then reads them back through
 * shard_read and shard_read_view, via mmap (path) and stdio (open_fp), record by record. */
static void test_raw_write_and_read_match(void **state)
{
	(void)state;
	uint32_t vocabs[] = {500, 100000};
	for (int v = 0; v < 2; v++) {
		char pa[512], pb[512];
		path_in(pa, sizeof pa, "raw-a.shard");
		path_in(pb, sizeof pb, "raw-b.shard");
		shard_header h = hdr(vocabs[v], SHARD_PACKED | SHARD_PADDED);
		h.pad_id = 7;
		sft_error e = {0};
		shard_writer *wa = shard_writer_open_file(pa, &h, &e), *wb = shard_writer_open_file(pb, &h, &e);
		assert_non_null(wa);
		assert_non_null(wb);
		unsigned width = vocabs[v] <= 65536 ? 2 : 4;
		uint32_t tok[300];
		uint8_t mask[300];
		for (size_t k = 0; k < 1500; k++) { /* > 512 KiB of rows: several write blocks */
			size_t l0 = 1 + rnd() % 150, l1 = 1 + rnd() % 100, pad = rnd() % 40, n = l0 + l1 + pad;
			shard_segment segs[2] = {{.doc_id = 2 * k, .offset = 0, .len = (uint32_t)l0},
						 {.doc_id = 2 * k + 1, .offset = 5, .len = (uint32_t)l1}};
			for (size_t i = 0; i < n; i++) {
				tok[i] = i < l0 + l1 ? rnd() % vocabs[v] : 7;
				mask[i] = i < l0 + l1 ? (uint8_t)(rnd() & 1) : 0;
			}
			shard_record r = {.tokens = tok, .mask = mask, .n = n, .segs = segs, .n_seg = 2, .n_pad = pad};
			assert_int_equal(shard_write(wa, &r, &e), 0);
			shard_slot sl;
			assert_int_equal(shard_write_reserve(wb, n, 2, pad, &sl, &e), 0);
			memcpy(sl.segs, segs, sizeof segs);
			for (size_t i = 0; i < n; i++) {
				if (width == 2)
					((uint16_t *)sl.tokens)[i] = (uint16_t)tok[i];
				else
					((uint32_t *)sl.tokens)[i] = tok[i];
				sl.mask_bits[i / 8] |= (uint8_t)(mask[i] << (i % 8));
			}
			assert_int_equal(shard_write_commit(wb, &e), 0);
		}
		/* a bad raw record is refused and leaves nothing behind */
		shard_slot sl;
		assert_int_equal(shard_write_reserve(wb, 3, 0, 0, &sl, &e), 0);
		if (width == 2)
			((uint16_t *)sl.tokens)[1] = (uint16_t)(vocabs[v] - 1 + 1);
		else
			((uint32_t *)sl.tokens)[1] = vocabs[v];
		assert_int_equal(shard_write_commit(wb, &e), -SFT_EXIT_DATA);
		assert_non_null(strstr(e.msg, ">= vocab size"));
		assert_int_equal(shard_write_reserve(wb, 4, 1, 2, &sl, &e), 0);
		sl.segs[0] = (shard_segment){.doc_id = 9, .offset = 0, .len = 2};
		assert_int_equal(shard_write_commit(wb, &e), -SFT_EXIT_DATA); /* pads are not pad id 7 */
		assert_non_null(strstr(e.msg, "pad tokens must be pad id 7"));
		uint8_t ca[16], cb[16];
		assert_int_equal(shard_writer_close_ex(wa, ca, NULL, &e), 0);
		assert_int_equal(shard_writer_close_ex(wb, cb, NULL, &e), 0);
		assert_memory_equal(ca, cb, 16);
		FILE *fa = fopen(pa, "rb"), *fb = fopen(pb, "rb");
		int x, y;
		do {
			x = getc(fa);
			y = getc(fb);
			assert_int_equal(x, y);
		} while (x != EOF);
		fclose(fb);
		/* the same records from mmap (by path) and stdio (open_fp), decoded and raw */
		rewind(fa);
		shard_reader *rm = shard_reader_open(pa, &e), *rs = shard_reader_open_fp(fa, pa, &e);
		assert_non_null(rm);
		assert_non_null(rs);
		for (size_t k = 0;; k++) {
			shard_record rec;
			shard_view vw;
			int a = k % 2 ? shard_read(rm, &rec, &e) : shard_read_view(rm, &vw, &e);
			int b = k % 2 ? shard_read_view(rs, &vw, &e) : shard_read(rs, &rec, &e);
			assert_int_equal(a, b);
			if (a == 0)
				break;
			assert_int_equal(a, 1);
			assert_int_equal(rec.n, vw.n);
			assert_int_equal(rec.n_seg, vw.n_seg);
			assert_int_equal(rec.n_pad, vw.n_pad);
			assert_memory_equal(rec.segs, vw.segs, rec.n_seg * sizeof *rec.segs);
			for (size_t i = 0; i < rec.n; i++) {
				uint32_t t = width == 2 ? ((const uint16_t *)vw.tokens)[i] : ((const uint32_t *)vw.tokens)[i];
				assert_int_equal(rec.tokens[i], t);
				assert_int_equal(rec.mask[i], (vw.mask_bits[i / 8] >> (i % 8)) & 1);
			}
		}
		shard_reader_close(rm);
		shard_reader_close(rs);
		fclose(fa);
	}
}

/* Truncated and corrupted inputs give the same errors through mmap (a path) and stdio. */
static void test_mmap_reader_errors_match_stdio(void **state)
{
	(void)state;
	char p[512], q[512];
	path_in(p, sizeof p, "m.shard");
	path_in(q, sizeof q, "m-cut.shard");
	uint8_t sum[16];
	write_packed_file(p, 50, sum);
	FILE *fp = fopen(p, "rb");
	fseek(fp, 0, SEEK_END);
	long size = ftell(fp);
	uint8_t *all = malloc((size_t)size);
	rewind(fp);
	assert_int_equal(fread(all, 1, (size_t)size, fp), (size_t)size);
	fclose(fp);
	long cuts[] = {size - 1, size - 80, size - 100, 64 + 8, 64 + 100, 64};
	for (size_t c = 0; c < sizeof cuts / sizeof cuts[0] + 2; c++) {
		size_t len = (size_t)size;
		uint8_t saved = 0;
		size_t flip = 0;
		if (c < sizeof cuts / sizeof cuts[0]) {
			len = (size_t)cuts[c];
		} else { /* a flipped bit in a token, then in the mask tail */
			flip = c == sizeof cuts / sizeof cuts[0] ? 64 + 16 + 32 + 3 : (size_t)size / 2;
			saved = all[flip];
			all[flip] ^= 0x10;
		}
		FILE *o = fopen(q, "wb");
		fwrite(all, 1, len, o);
		fclose(o);
		if (flip)
			all[flip] = saved;
		char msg[2][512];
		int rcs[2];
		for (int mode = 0; mode < 2; mode++) {
			sft_error e = {0};
			FILE *in = mode ? fopen(q, "rb") : NULL;
			shard_reader *r = mode ? shard_reader_open_fp(in, q, &e) : shard_reader_open(q, &e);
			assert_non_null(r);
			shard_view v;
			int rc;
			while ((rc = shard_read_view(r, &v, &e)) == 1)
				;
			rcs[mode] = rc;
			snprintf(msg[mode], sizeof msg[mode], "%s", e.msg);
			shard_reader_close(r);
			if (in)
				fclose(in);
		}
		assert_true(rcs[0] < 0);
		assert_int_equal(rcs[0], rcs[1]);
		assert_string_equal(msg[0], msg[1]);
	}
	free(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_roundtrip_u16_u32),
		cmocka_unit_test(test_file_mmap_rows_and_verify),
		cmocka_unit_test(test_reader_errors),
		cmocka_unit_test(test_stream_bitflip_detected),
		cmocka_unit_test(test_jsonl_twin),
		cmocka_unit_test(test_writer_rejects_bad_records),
		cmocka_unit_test(test_bits_copy),
		cmocka_unit_test(test_raw_write_and_read_match),
		cmocka_unit_test(test_mmap_reader_errors_match_stdio),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
