/* batch.c - pack output rows to model batches (see batch.h). */
#include "batch.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "jsonl.h"
#include "shard.h"

typedef struct bd_file {
	char *path;
	shard_file *f;
	size_t first, rows;
} bd_file;

struct batch_data {
	bd_file *files;
	int n_files;
	size_t rows;
	uint32_t max_len, vocab;
	uint8_t fingerprint[16];
	uint64_t trained;
	uint32_t *row_len;     // (rows)
	uint32_t *row_trained; // (rows)
	shard_buf buf;
};

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *s = malloc(n);
	if (s) snprintf(s, n, "%s/%s", a, b);
	return s;
}

static int add_file(batch_data *d, char *path, sft_error *err)
{
	bd_file *nf = realloc(d->files, (size_t)(d->n_files + 1) * sizeof *nf);
	if (!nf) {
		free(path);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	d->files = nf;
	bd_file *f = &d->files[d->n_files++];
	memset(f, 0, sizeof *f);
	f->path = path;
	f->f = shard_file_map(path, err);
	if (!f->f) return -(err ? err->code : SFT_EXIT_DATA);
	if (shard_file_verify_checksum(f->f, err) < 0) return -SFT_EXIT_DATA;
	f->first = d->rows;
	f->rows = shard_file_rows(f->f);
	d->rows += f->rows;
	const shard_header *h = shard_file_header(f->f);
	if (d->n_files == 1) {
		d->vocab = h->vocab_size;
		memcpy(d->fingerprint, h->fingerprint, 16);
	} else if (h->vocab_size != d->vocab || memcmp(h->fingerprint, d->fingerprint, 16) != 0) {
		return sft_error_set(err, SFT_EXIT_DATA, "%s: tokenizer (vocab %u) differs from %s's (vocab %u)",
				     path, h->vocab_size, d->files[0].path, d->vocab);
	}
	return 0;
}

static int open_dir(batch_data *d, const char *dir, sft_error *err)
{
	char *mpath = join(dir, "manifest.json");
	if (!mpath) return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	size_t len;
	char *text = fs_read_file(mpath, &len, err);
	if (!text) {
		sft_error_prefix(err, "%s: not a pack output directory", dir);
		free(mpath);
		return -(err ? err->code : SFT_EXIT_DATA);
	}
	json_t *m = json_parse_located(text, len, mpath, 1, 0, err);
	free(text);
	if (!m) {
		free(mpath);
		return -(err ? err->code : SFT_EXIT_DATA);
	}
	int rc = 0;
	json_t *files = json_object_get(m, "files");
	if (!json_is_array(files) || json_array_size(files) == 0) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s: no \"files\" list", mpath);
		goto out;
	}
	for (size_t i = 0; i < json_array_size(files) && rc == 0; i++) {
		const char *nm = json_string_value(json_object_get(json_array_get(files, i), "name"));
		if (!nm || !*nm || strchr(nm, '/')) {
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s: files[%zu]: missing or bad \"name\"", mpath, i);
			break;
		}
		char *p = join(dir, nm);
		if (!p) {
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			break;
		}
		rc = add_file(d, p, err);
		json_t *rj = json_object_get(json_array_get(files, i), "rows");
		if (rc == 0 && json_is_integer(rj) && (size_t)json_integer_value(rj) != d->files[d->n_files - 1].rows)
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s: %s has %zu rows but the manifest says %lld", mpath, nm,
					   d->files[d->n_files - 1].rows, (long long)json_integer_value(rj));
	}
out:
	json_decref(m);
	free(mpath);
	return rc;
}

/* Row k's file and local index. */
static const bd_file *locate(const batch_data *d, size_t k, size_t *local)
{
	int lo = 0, hi = d->n_files - 1;
	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;
		if (d->files[mid].first <= k) lo = mid;
		else hi = mid - 1;
	}
	*local = k - d->files[lo].first;
	return &d->files[lo];
}

static int read_row(batch_data *d, size_t k, shard_record *rec, sft_error *err)
{
	size_t local;
	const bd_file *f = locate(d, k, &local);
	if (shard_file_row(f->f, local, rec, &d->buf, err) < 0) {
		sft_error_prefix(err, "%s: row %zu", f->path, local);
		return -(err ? err->code : SFT_EXIT_DATA);
	}
	return 0;
}

/* Targets of one record into tg (len entries); returns the number of trained targets. */
static uint32_t row_targets(const shard_record *r, uint32_t len, int32_t *tg, int32_t *pos, int32_t *seg)
{
	uint32_t n = 0;
	size_t nseg = r->n_seg ? r->n_seg : 1;
	uint32_t t = 0;
	for (size_t s = 0; s < nseg; s++) {
		uint32_t sl = r->n_seg ? r->segs[s].len : len;
		for (uint32_t j = 0; j < sl; j++, t++) {
			if (pos) pos[t] = (int32_t)j;
			if (seg) seg[t] = (int32_t)s;
			int32_t y = -100;
			if (j + 1 < sl && r->mask[t + 1]) {
				y = (int32_t)r->tokens[t + 1];
				n++;
			}
			if (tg) tg[t] = y;
		}
	}
	return n;
}

batch_data *batch_data_open(const char *path, sft_error *err)
{
	batch_data *d = calloc(1, sizeof *d);
	if (!d) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	int rc;
	if (is_dir(path)) {
		rc = open_dir(d, path, err);
	} else {
		char *p = strdup(path);
		rc = p ? add_file(d, p, err) : sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	if (rc < 0) goto fail;
	if (d->rows == 0) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: no rows", path);
		goto fail;
	}
	d->row_len = malloc(d->rows * sizeof *d->row_len);
	d->row_trained = malloc(d->rows * sizeof *d->row_trained);
	if (!d->row_len || !d->row_trained) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		goto fail;
	}
	for (size_t k = 0; k < d->rows; k++) {
		shard_record r;
		if (read_row(d, k, &r, err) < 0) goto fail;
		if (r.n - r.n_pad > INT32_MAX / 2) {
			sft_error_set(err, SFT_EXIT_DATA, "%s: row %zu: %zu tokens is too long", path, k, r.n - r.n_pad);
			goto fail;
		}
		uint32_t len = (uint32_t)(r.n - r.n_pad);
		d->row_len[k] = len;
		d->row_trained[k] = row_targets(&r, len, NULL, NULL, NULL);
		d->trained += d->row_trained[k];
		if (len > d->max_len) d->max_len = len;
	}
	return d;
fail:
	batch_data_close(d);
	return NULL;
}

void batch_data_close(batch_data *d)
{
	if (!d) return;
	for (int i = 0; i < d->n_files; i++) {
		shard_file_unmap(d->files[i].f);
		free(d->files[i].path);
	}
	free(d->files);
	free(d->row_len);
	free(d->row_trained);
	shard_buf_free(&d->buf);
	free(d);
}

size_t batch_data_rows(const batch_data *d) { return d->rows; }
uint32_t batch_data_max_len(const batch_data *d) { return d->max_len; }
uint32_t batch_data_vocab(const batch_data *d) { return d->vocab; }
const uint8_t *batch_data_fingerprint(const batch_data *d) { return d->fingerprint; }
uint64_t batch_data_trained(const batch_data *d) { return d->trained; }
int batch_data_n_files(const batch_data *d) { return d->n_files; }
const char *batch_data_file(const batch_data *d, int i) { return d->files[i].path; }
size_t batch_data_file_first_row(const batch_data *d, int i) { return d->files[i].first; }
size_t batch_data_file_rows(const batch_data *d, int i) { return d->files[i].rows; }
uint32_t batch_data_row_len(const batch_data *d, size_t k) { return d->row_len[k]; }
uint32_t batch_data_row_trained(const batch_data *d, size_t k) { return d->row_trained[k]; }

int batch_alloc(batch *b, int cap_B, int cap_T, sft_error *err)
{
	memset(b, 0, sizeof *b);
	if (cap_B <= 0 || cap_T <= 0) return sft_error_set(err, SFT_EXIT_USAGE, "batch_alloc: empty batch (%d, %d)", cap_B, cap_T);
	size_t n = (size_t)cap_B * (size_t)cap_T;
	b->tokens = malloc(n * sizeof(int32_t));
	b->pos = malloc(n * sizeof(int32_t));
	b->seg = malloc(n * sizeof(int32_t));
	b->targets = malloc(n * sizeof(int32_t));
	if (!b->tokens || !b->pos || !b->seg || !b->targets) {
		batch_free(b);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory for a (%d, %d) batch", cap_B, cap_T);
	}
	b->cap_B = cap_B;
	b->cap_T = cap_T;
	return 0;
}

void batch_free(batch *b)
{
	if (!b) return;
	free(b->tokens);
	free(b->pos);
	free(b->seg);
	free(b->targets);
	memset(b, 0, sizeof *b);
}

int batch_fill(batch *b, const batch_data *d, const size_t *rows, int n, sft_error *err)
{
	if (n <= 0 || n > b->cap_B)
		return sft_error_set(err, SFT_EXIT_USAGE, "batch_fill: %d rows for a batch of %d", n, b->cap_B);
	uint32_t T = 0;
	for (int i = 0; i < n; i++) {
		if (rows[i] >= d->rows)
			return sft_error_set(err, SFT_EXIT_USAGE, "batch_fill: row %zu of %zu", rows[i], d->rows);
		if (d->row_len[rows[i]] > T) T = d->row_len[rows[i]];
	}
	if (T == 0) T = 1;
	if (T > (uint32_t)b->cap_T)
		return sft_error_set(err, SFT_EXIT_USAGE, "row of %u tokens does not fit a batch of %d tokens per row", T,
				     b->cap_T);
	b->B = n;
	b->T = (int)T;
	b->n_targets = 0;
	b->n_tokens = 0;
	batch_data *dm = (batch_data *)d; /* the decode scratch is the only mutable part */
	for (int i = 0; i < n; i++) {
		shard_record r;
		if (read_row(dm, rows[i], &r, err) < 0) return -(err ? err->code : SFT_EXIT_DATA);
		uint32_t len = dm->row_len[rows[i]];
		size_t o = (size_t)i * T;
		for (uint32_t t = 0; t < len; t++) b->tokens[o + t] = (int32_t)r.tokens[t];
		b->n_targets += row_targets(&r, len, b->targets + o, b->pos + o, b->seg + o);
		b->n_tokens += len;
		int32_t pad = r.n_pad ? (int32_t)r.tokens[len] : 0;
		for (uint32_t t = len; t < T; t++) {
			b->tokens[o + t] = pad;
			b->pos[o + t] = (int32_t)(t - len);
			b->seg[o + t] = -1;
			b->targets[o + t] = -100;
		}
	}
	return 0;
}
