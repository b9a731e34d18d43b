/* bigmem.c - see bigmem.h. */
#include "bigmem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *sft_big_alloc(size_t bytes)
{
	if (bytes < 2 * HUGE_PAGE) return aligned_alloc(64, bytes ? (bytes + 63) & ~(size_t)63 : 64);
	size_t n = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	void *p = aligned_alloc(HUGE_PAGE, n);
#ifdef MADV_HUGEPAGE
	if (p) (void)madvise(p, n, MADV_HUGEPAGE); /* advice only: failure leaves 4 KiB pages */
#endif
	return p;
}

void *sft_big_calloc(size_t bytes)
{
	void *p = sft_big_alloc(bytes);
	if (p) memset(p, 0, bytes);
	return p;
}
