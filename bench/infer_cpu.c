/* infer_cpu - bench driver for bench/infer_cpu.sh: prompt processing and batched decoding
 * through libcommon/model.h on a GGUF file or a Hugging Face model directory.
 *   infer_cpu MODEL [PROMPT=512] [DECODE_PROMPT=128] [GEN=128] [BATCH...=1 16]
 * 1. prefill: one sequence of PROMPT tokens through model_decode (best of 2 runs);
 * 2. for each BATCH: BATCH sequences prefilled with DECODE_PROMPT tokens each (not timed),
 *    then GEN steps of model_decode_batch (one token per sequence per step, greedy).
 * Prints one line per number: "<name> <tokens> <wall s> <cpu s> <tokens/s>". Token ids are
 * deterministic pseudo-random (what llama-bench and llama-batched-bench also feed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "model.h"
#include "threads.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
	       1e-6 * (double)u.ru_stime.tv_usec;
}

static void die(const sft_error *e)
{
	fprintf(stderr, "infer_cpu: error: %s\n", e->msg);
	exit(1);
}

int main(int argc, char **argv)
{
	sft_threads_init(argc, argv);
	if (argc < 2) {
		fprintf(stderr, "usage: infer_cpu MODEL [PROMPT=512] [DECODE_PROMPT=128] [GEN=128] [BATCH...=1 16]\n");
		return 2;
	}
	const char *path = argv[1];
	int P = argc > 2 ? atoi(argv[2]) : 512, DP = argc > 3 ? atoi(argv[3]) : 128, G = argc > 4 ? atoi(argv[4]) : 128;
	int batches[16] = {1, 16}, nb = 2;
	if (argc > 5) {
		nb = 0;
		for (int i = 5; i < argc && nb < 16; i++) batches[nb++] = atoi(argv[i]);
	}
	sft_error err = {0};
	model *m = model_load_any(path, NULL, &err);
	if (!m) die(&err);
	int V = m->cfg.vocab_size, maxb = 1;
	for (int i = 0; i < nb; i++)
		if (batches[i] > maxb) maxb = batches[i];
	int ntok = P > DP ? P : DP;
	int32_t *tok = malloc((size_t)ntok * maxb * sizeof *tok);
	for (int i = 0; i < ntok * maxb; i++) tok[i] = (int32_t)(((long)i * 7919 + 13) % V);
	float *logits = malloc((size_t)maxb * V * sizeof *logits);
	model_kv_cache *kv = calloc((size_t)maxb, sizeof *kv);
	model_kv_cache **kp = calloc((size_t)maxb, sizeof *kp);
	for (int i = 0; i < maxb; i++) {
		if (model_kv_cache_init(&kv[i], m, (P > DP + G ? P : DP + G) + 1, &err) < 0) die(&err);
		kp[i] = &kv[i];
	}
	if (P > 0) {
		double best = 1e30, bcpu = 0;
		for (int r = 0; r < 2; r++) {
			model_kv_cache_reset(&kv[0]);
			double t0 = now(), c0 = cpu();
			if (model_decode(m, &kv[0], tok, P, logits, &err) < 0) die(&err);
			double t = now() - t0, c = cpu() - c0;
			if (t < best) best = t, bcpu = c;
		}
		printf("prefill %d %.4f %.4f %.2f\n", P, best, bcpu, P / best);
		fflush(stdout);
	}
	model_arena a;
	model_arena_init(&a);
	int32_t *next = malloc((size_t)maxb * sizeof *next);
	for (int bi = 0; bi < nb; bi++) {
		int B = batches[bi];
		for (int i = 0; i < B; i++) {
			model_kv_cache_reset(&kv[i]);
			if (model_decode(m, &kv[i], tok + (size_t)i * DP, DP, logits + (size_t)i * V, &err) < 0) die(&err);
		}
		double t0 = now(), c0 = cpu();
		for (int g = 0; g < G; g++) {
			for (int i = 0; i < B; i++) { /* greedy: argmax of each row */
				const float *l = logits + (size_t)i * V;
				int best = 0;
				for (int j = 1; j < V; j++)
					if (l[j] > l[best]) best = j;
				next[i] = best;
			}
			if (model_decode_batch(m, &a, kp, next, B, logits, &err) < 0) die(&err);
		}
		double t = now() - t0, c = cpu() - c0;
		printf("decode_b%d %d %.4f %.4f %.2f\n", B, B * G, t, c, B * G / t);
		fflush(stdout);
	}
	for (int i = 0; i < maxb; i++) model_kv_cache_free(&kv[i]);
	model_arena_free(&a);
	free(kv);
	free(kp);
	free(next);
	free(logits);
	free(tok);
	model_free(m);
	return 0;
}
