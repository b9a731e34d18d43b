/* minhash.h - MinHash signatures, LSH banding parameters, and the signature-provider
 * seam used by ds-dedup (a semantic provider can later plug in beside MinHash).
 *
 * Parity: with hash = MINHASH_SHA1 the signatures are bit-identical to
 * datasketch.MinHash(num_perm, seed, scheme="legacy") fed the same shingles: each shingle's
 * hash is the first 4 bytes of SHA-1 (little-endian uint32); permutation i maps h to
 * ((a_i * h + b_i) mod 2^64 mod (2^61 - 1)) & 0xffffffff, where (a_i, b_i) come from
 * numpy RandomState(seed).randint(1, 2^61-1) / randint(0, 2^61-1), drawn alternately.
 * MINHASH_XXH3 hashes shingles with XXH3-64 and uses multiply-shift permutations from a
 * splitmix64 stream: much faster, not comparable with datasketch.
 *
 * Shingles (text is expected already normalized by textnorm, which collapses whitespace):
 *   word: tokens split on whitespace; n-gram = n tokens joined by one space
 *         (fewer than n tokens: one shingle of all tokens)
 *   char: n consecutive code points (shorter text: the whole text as one shingle)
 *   empty text: no shingles (signature all 0xffffffff; callers skip such records).
 *
 * Ownership: minhash_init fills a caller-owned struct; minhash_free releases its arrays
 * (safe on a zeroed struct). A minhash_scratch is per-thread working memory, freed with
 * minhash_scratch_free. minhash_signature is thread-safe on a shared, initialized minhash. */
#ifndef SFT_MINHASH_H
#define SFT_MINHASH_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"

enum minhash_hash { MINHASH_SHA1 = 0, MINHASH_XXH3 = 1 };
enum minhash_unit { MINHASH_WORD = 0, MINHASH_CHAR = 1 };

typedef struct minhash_params {
	int num_perm;  /* signature length */
	int ngram;     /* shingle size in units */
	int unit;      /* enum minhash_unit */
	int hash;      /* enum minhash_hash */
	uint32_t seed; /* datasketch seed (default 1) */
} minhash_params;

typedef struct minhash {
	minhash_params p;
	uint64_t *a, *b; /* (num_perm) permutation parameters */
} minhash;

typedef struct minhash_scratch {
	uint64_t *h; /* shingle hashes */
	size_t cap;
} minhash_scratch;

int minhash_init(minhash *m, const minhash_params *p, sft_error *err);
void minhash_free(minhash *m);
void minhash_scratch_free(minhash_scratch *s);

/* Hashes every shingle of text into s->h (deduplicated, sorted); returns the count, or
 * -1 on allocation failure. For MINHASH_SHA1 the values are the 32-bit SHA-1 prefixes. */
long minhash_shingle_hashes(const minhash *m, const char *text, size_t len, minhash_scratch *s);
/* sig: (num_perm) uint32 values. Returns the number of distinct shingles (0 = empty
 * text: sig is all 0xffffffff), or -1 on allocation failure. */
long minhash_signature(const minhash *m, const char *text, size_t len, uint32_t *sig,
		       minhash_scratch *s);

/* Jaccard of two sorted, deduplicated hash sets. */
double minhash_jaccard_sets(const uint64_t *x, size_t nx, const uint64_t *y, size_t ny);

/* datasketch MinHashLSH._optimal_param with weights (fp_w, fn_w): the (bands, rows),
 * bands*rows <= num_perm, minimizing fp_w*FP + fn_w*FN at threshold. */
void minhash_optimal_param(double threshold, int num_perm, double fp_w, double fn_w, int *bands,
			   int *rows);

/* Tests: pin the permutation kernel (0 portable, 1 AVX2, 2 AVX-512; -1 = detect again).
 * Returns -1 if this CPU cannot run that level. Not thread-safe. */
int minhash_force_kernel(int level);

/* Building blocks, exposed for tests. */
void sha1_digest(const void *data, size_t len, uint8_t out[20]); /* SHA-NI when available */
void sha1_digest_portable(const void *data, size_t len, uint8_t out[20]);
typedef struct mt19937 {
	uint32_t key[624];
	int pos;
} mt19937;
void mt19937_seed(mt19937 *mt, uint32_t seed);
uint32_t mt19937_next32(mt19937 *mt);
/* numpy legacy RandomState.randint(low, high, dtype=uint64) for one value (high exclusive). */
uint64_t mt19937_randint_u64(mt19937 *mt, uint64_t low, uint64_t high);

/* Signature providers: the seam for other signature kinds (e.g. embeddings + SimHash
 * later). A provider turns a record's text into `dim` uint32 values; banding and
 * clustering in ds-dedup only see these values. */
typedef struct sig_provider {
	const char *name;
	int dim;
	void *self;
	/* returns >0 when the text produced a signature, 0 for "no content", -1 on error */
	long (*compute)(void *self, const char *text, size_t len, uint32_t *sig, minhash_scratch *s);
} sig_provider;

/* A provider backed by an initialized minhash (which must outlive it). */
sig_provider minhash_provider(minhash *m);

#endif
