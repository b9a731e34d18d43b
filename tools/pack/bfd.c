/* bfd.c - best-fit-decreasing packing in O(n log n) (see pack.h). */
#include "pack.h"

#include <stdlib.h>
#include <string.h>

typedef struct bfd_sort {
	uint32_t len, idx;
} bfd_sort;

/* Items by length, descending, ties in input order: a counting sort (lengths are
 * 1..seq_len), O(n + seq_len). `cnt` holds seq_len + 2 entries. */
static void sort_desc(const uint32_t *len, size_t n, uint32_t seq_len, size_t *cnt, bfd_sort *out)
{
	memset(cnt, 0, ((size_t)seq_len + 2) * sizeof *cnt);
	for (size_t i = 0; i < n; i++)
		cnt[seq_len - len[i] + 1]++; /* bucket 0 = the longest */
	for (size_t b = 1; b <= (size_t)seq_len + 1; b++)
		cnt[b] += cnt[b - 1];
	for (size_t i = 0; i < n; i++)
		out[cnt[seq_len - len[i]]++] = (bfd_sort){len[i], (uint32_t)i};
}

/* Max segment tree over capacities 1..cap; leaf c holds c while some open row has
 * exactly c tokens free, else 0. find(need) = the smallest such c >= need. */
typedef struct segtree {
	uint32_t *t;
	size_t size; /* leaves, a power of two > cap */
} segtree;

static void st_set(segtree *s, uint32_t c, uint32_t v)
{
	size_t i = s->size + c;
	s->t[i] = v;
	for (i >>= 1; i; i >>= 1) {
		uint32_t l = s->t[2 * i], r = s->t[2 * i + 1];
		s->t[i] = l > r ? l : r;
	}
}

static uint32_t st_find(const segtree *s, uint32_t need)
{
	if (s->t[1] < need)
		return 0;
	size_t i = 1;
	while (i < s->size)
		i = s->t[2 * i] >= need ? 2 * i : 2 * i + 1;
	return (uint32_t)(i - s->size);
}

/* Rows with the same free capacity form a FIFO queue (singly linked through next[]). */
long pack_bfd(const uint32_t *len, size_t n, uint32_t seq_len, uint32_t max_docs, uint32_t *order,
	      size_t *row_start)
{
	bfd_sort *srt = malloc((n ? n : 1) * sizeof *srt);
	uint32_t *row_of = malloc((n ? n : 1) * sizeof *row_of);
	/* per row: free capacity, docs held, queue link; queue head/tail per capacity */
	uint32_t *rfree = malloc((n ? n : 1) * sizeof *rfree);
	uint32_t *rdocs = malloc((n ? n : 1) * sizeof *rdocs);
	uint32_t *rnext = malloc((n ? n : 1) * sizeof *rnext);
	uint32_t *qhead = malloc(((size_t)seq_len + 1) * sizeof *qhead);
	uint32_t *qtail = malloc(((size_t)seq_len + 1) * sizeof *qtail);
	size_t *cnt = malloc(((size_t)seq_len + 2) * sizeof *cnt);
	segtree st = {0};
	st.size = 1;
	while (st.size <= seq_len)
		st.size <<= 1;
	st.t = calloc(2 * st.size, sizeof *st.t);
	long rows = -1;
	if (!srt || !row_of || !rfree || !rdocs || !rnext || !qhead || !qtail || !cnt || !st.t)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (len[i] == 0 || len[i] > seq_len)
			goto out; /* outside the contract (pack.h) */
	sort_desc(len, n, seq_len, cnt, srt);
	const uint32_t NIL = UINT32_MAX;
	for (size_t c = 0; c <= seq_len; c++)
		qhead[c] = qtail[c] = NIL;
	uint32_t nrows = 0;
	for (size_t k = 0; k < n; k++) {
		uint32_t l = srt[k].len, r;
		uint32_t c = st_find(&st, l);
		if (c) { /* pop the oldest row with capacity c */
			r = qhead[c];
			qhead[c] = rnext[r];
			if (qhead[c] == NIL) {
				qtail[c] = NIL;
				st_set(&st, c, 0);
			}
		} else {
			r = nrows++;
			rfree[r] = seq_len;
			rdocs[r] = 0;
		}
		row_of[srt[k].idx] = r;
		rfree[r] -= l;
		rdocs[r]++;
		uint32_t f = rfree[r];
		if (f > 0 && (max_docs == 0 || rdocs[r] < max_docs)) { /* push back */
			rnext[r] = NIL;
			if (qtail[f] == NIL) {
				qhead[f] = r;
				st_set(&st, f, f);
			} else {
				rnext[qtail[f]] = r;
			}
			qtail[f] = r;
		}
	}
	/* CSR by row, placement order inside a row (the sorted order) */
	memset(row_start, 0, ((size_t)nrows + 1) * sizeof *row_start);
	for (size_t i = 0; i < n; i++)
		row_start[row_of[i] + 1]++;
	for (uint32_t r = 0; r < nrows; r++)
		row_start[r + 1] += row_start[r];
	for (uint32_t r = 0; r < nrows; r++)
		rfree[r] = (uint32_t)row_start[r]; /* reuse as fill cursor */
	for (size_t k = 0; k < n; k++) {
		uint32_t i = srt[k].idx;
		order[rfree[row_of[i]]++] = i;
	}
	rows = nrows;
out:
	free(srt);
	free(row_of);
	free(rfree);
	free(rdocs);
	free(rnext);
	free(qhead);
	free(qtail);
	free(cnt);
	free(st.t);
	return rows;
}
