/* pool.c - see pool.h. One mutex, two condition variables; the ring indices only grow. */
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>

struct pool {
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	pthread_t *threads;
	int nthreads;
	size_t cap;
	void **items;
	unsigned char *finished;
	size_t head, claim, tail; /* head <= claim <= tail */
	int stopping;
	pool_fn fn;
	void *ctx;
};

static void *worker(void *arg)
{
	pool *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->claim == p->tail && !p->stopping)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->claim == p->tail)
			break;
		size_t slot = p->claim++ % p->cap;
		void *item = p->items[slot];
		pthread_mutex_unlock(&p->mu);
		p->fn(p->ctx, item);
		pthread_mutex_lock(&p->mu);
		p->finished[slot] = 1;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

pool *pool_start(int nthreads, size_t cap, pool_fn fn, void *ctx)
{
	pool *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->cap = cap ? cap : 1;
	p->fn = fn;
	p->ctx = ctx;
	p->items = calloc(p->cap, sizeof *p->items);
	p->finished = calloc(p->cap, 1);
	p->threads = calloc(nthreads > 0 ? (size_t)nthreads : 1, sizeof *p->threads);
	if (!p->items || !p->finished || !p->threads) {
		free(p->items);
		free(p->finished);
		free(p->threads);
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	for (int i = 0; i < nthreads; i++) {
		if (pthread_create(&p->threads[i], NULL, worker, p))
			break;
		p->nthreads++;
	}
	if (nthreads > 0 && p->nthreads == 0) {
		pool_stop(p);
		return NULL;
	}
	return p;
}

size_t pool_pending(const pool *p) { return p->tail - p->head; }
size_t pool_capacity(const pool *p) { return p->cap; }

void pool_submit(pool *p, void *item)
{
	size_t slot = p->tail % p->cap;
	if (!p->nthreads) {
		p->fn(p->ctx, item);
		p->items[slot] = item;
		p->finished[slot] = 1;
		p->tail++;
		p->claim = p->tail;
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->items[slot] = item;
	p->finished[slot] = 0;
	p->tail++;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
}

void *pool_collect(pool *p)
{
	if (p->head == p->tail)
		return NULL;
	size_t slot = p->head % p->cap;
	if (p->nthreads) {
		pthread_mutex_lock(&p->mu);
		while (!p->finished[slot])
			pthread_cond_wait(&p->done, &p->mu);
		p->finished[slot] = 0;
		pthread_mutex_unlock(&p->mu);
	} else {
		p->finished[slot] = 0;
	}
	p->head++;
	return p->items[slot];
}

void pool_stop(pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p->items);
	free(p->finished);
	free(p->threads);
	free(p);
}
