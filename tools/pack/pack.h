/* pack.h - private to tools/pack: the packing algorithms (bfd.c). */
#ifndef PACK_PACK_H
#define PACK_PACK_H

#include <stddef.h>
#include <stdint.h>

/* Best-fit-decreasing, as TRL's _pack_bfd: items sorted by length (descending, ties in
 * input order), each put into the open row with the smallest remaining capacity that
 * fits (a segment tree over capacities 0..seq_len finds it in O(log seq_len); rows with
 * equal remaining capacity are used first-in first-out), else into a new row.
 * max_docs > 0 closes a row once it holds that many items. Every len must be in
 * 1..seq_len.
 *
 * Output (caller-allocated, n entries): order[] lists item indices row by row, rows in
 * creation order, items in the order they were placed; row_start[r] is where row r
 * begins in order[] (row_start must hold n + 1 entries; row_start[rows] = n).
 * Returns the number of rows, or -1 when out of memory or a len is outside 1..seq_len. */
long pack_bfd(const uint32_t *len, size_t n, uint32_t seq_len, uint32_t max_docs, uint32_t *order,
	      size_t *row_start);

#endif
