/* bigmem.h - allocation of the big, long-lived float blocks: model weights, KV caches,
 * activation arenas, gradients and optimizer state.
 *
 * A decode step streams every weight once (538 MB for SmolLM2-135M in fp32); with 4 KiB
 * pages that is 131k TLB misses per step. Blocks from sft_big_alloc are 2 MiB aligned and
 * marked MADV_HUGEPAGE, so where transparent huge pages are enabled ("always" or "madvise",
 * the Debian default) the kernel backs them with 2 MiB pages: measured on this project's
 * VM, a matrix-vector pass over 538 MB went from 19.5 to 25.3 GB/s on one core and from
 * 34.7 to 47.1 GB/s on two (docs/perf/infer_cpu.md). Smaller requests, or a kernel without
 * THP, get ordinary 64-byte aligned memory. Release with free(). Thread-safe; no state. */
#ifndef SFT_BIGMEM_H
#define SFT_BIGMEM_H

#include <stddef.h>

/* bytes of uninitialized memory (NULL when out of memory; bytes 0 gives a minimal block) */
void *sft_big_alloc(size_t bytes);

/* the same, zero-filled */
void *sft_big_calloc(size_t bytes);

#endif
