/* pool.h - an ordered worker pool: items are submitted in order into a ring of `cap`
 * slots, processed by N threads in any order, and collected strictly in submission
 * order, so the output of -j N is byte-identical to -j 1.
 *
 * Ownership: pool_start returns a pool freed by pool_stop (NULL safe), which joins the
 * threads. Items are the caller's; the pool only passes the pointers around. With
 * nthreads == 0 every item is processed inside pool_submit on the calling thread.
 * Only one thread (the caller's) may submit and collect. */
#ifndef TOK_ENCODE_POOL_H
#define TOK_ENCODE_POOL_H

#include <stddef.h>

typedef void (*pool_fn)(void *ctx, void *item);
typedef struct pool pool;

pool *pool_start(int nthreads, size_t cap, pool_fn fn, void *ctx);
/* Slots in flight (submitted, not yet collected). */
size_t pool_pending(const pool *p);
size_t pool_capacity(const pool *p);
/* Queues an item; the caller must keep pool_pending() < pool_capacity(). */
void pool_submit(pool *p, void *item);
/* Waits until the oldest submitted item is processed and returns it (NULL if none). */
void *pool_collect(pool *p);
void pool_stop(pool *p);

#endif
