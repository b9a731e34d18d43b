/* shard.c - the token-shard format (see shard.h for the API, docs/FORMAT.md for bytes).
 * Assumes a little-endian host (checked at compile time where the compiler tells). */
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "atomic.h"
#include "jsonl.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shard.c assumes a little-endian host"
#endif

static const char HDR_MAGIC[8] = {'S', 'F', 'T', 'K', 'S', 'H', 'R', 'D'};
static const char FOOT_MAGIC[8] = {'S', 'F', 'T', 'K', 'F', 'O', 'O', 'T'};
#define REC_TAG 0x31434552u /* "REC1" */
#define END_TAG 0x31444e45u /* "END1" */
#define REC_HDR 16
#define SEG_SIZE 16
#define END_SIZE 32
#define MAX_TOKENS (1u << 30)
#define MAX_SEGS (1u << 24)

_Static_assert(sizeof(shard_segment) == SEG_SIZE, "segment layout");

static inline uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

static inline uint64_t align8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }

/* Bytes of a record body with these sizes, including its 16-byte header and padding. */
static inline uint64_t rec_size(uint64_t n, uint64_t n_seg, unsigned width)
{
	return align8(REC_HDR + n_seg * SEG_SIZE + n * width + (n + 7) / 8);
}

/* Loss mask bit tricks, 8 tokens at a time. pack8: 8 bytes each 0/1 (byte i = token i)
 * -> one byte with bit i = token i. spread8: the inverse. */
static inline uint8_t mask_pack8(uint64_t x) { return (uint8_t)((x * 0x0102040810204080ull) >> 56); }
static inline uint64_t mask_spread8(uint8_t b)
{
	uint64_t y = ((uint64_t)b * 0x0101010101010101ull) & 0x8040201008040201ull;
	return ((y + 0x7f7f7f7f7f7f7f7full) >> 7) & 0x0101010101010101ull;
}

/* Set bits in len bytes (SWAR: no dependency on a popcnt instruction). */
static uint64_t popcount_bytes(const uint8_t *p, size_t len)
{
	uint64_t c = 0;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t x;
		memcpy(&x, p + i, 8);
		x = x - ((x >> 1) & 0x5555555555555555ull);
		x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
		x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
		c += (x * 0x0101010101010101ull) >> 56;
	}
	for (; i < len; i++)
		for (uint8_t b = p[i]; b; b &= (uint8_t)(b - 1))
			c++;
	return c;
}

void shard_hex16(const uint8_t b[16], char out[33])
{
	static const char hx[] = "0123456789abcdef";
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hx[b[i] >> 4];
		out[2 * i + 1] = hx[b[i] & 15];
	}
	out[32] = 0;
}

static void canon128(uint8_t out[16], XXH128_hash_t h)
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, h);
	memcpy(out, c.digest, 16);
}

/* ---- header encode / decode ---- */

static int header_fix(shard_header *h, sft_error *err)
{
	if (h->version == 0)
		h->version = SHARD_VERSION;
	if (h->version != SHARD_VERSION)
		return sft_error_set(err, SFT_EXIT_INTERNAL, "shard writer: unsupported version %u", h->version);
	if (h->token_width == 0)
		h->token_width = (h->vocab_size > 0 && h->vocab_size <= 65536) ? 2 : 4;
	if (h->token_width != 2 && h->token_width != 4)
		return sft_error_set(err, SFT_EXIT_INTERNAL, "shard writer: token width %u (2 or 4)", h->token_width);
	if (h->token_width == 2 && (h->vocab_size == 0 || h->vocab_size > 65536))
		return sft_error_set(err, SFT_EXIT_INTERNAL,
				     "shard writer: token width 2 needs a vocab size of 1..65536, got %u", h->vocab_size);
	if (h->flags & ~(SHARD_PACKED | SHARD_PADDED))
		return sft_error_set(err, SFT_EXIT_INTERNAL, "shard writer: unknown flags 0x%x", h->flags);
	if (h->vocab_size && (h->flags & SHARD_PADDED) && h->pad_id >= h->vocab_size)
		return sft_error_set(err, SFT_EXIT_USAGE, "pad id %u >= vocab size %u", h->pad_id, h->vocab_size);
	return 0;
}

static void header_encode(const shard_header *h, int is_file, uint8_t b[SHARD_HEADER_SIZE])
{
	memset(b, 0, SHARD_HEADER_SIZE);
	memcpy(b, HDR_MAGIC, 8);
	wr16(b + 8, (uint16_t)h->version);
	b[10] = h->token_width;
	b[11] = (uint8_t)(is_file ? 1 : 0);
	wr32(b + 12, h->flags);
	wr32(b + 16, h->vocab_size);
	wr32(b + 20, h->seq_len);
	wr32(b + 24, h->pad_id);
	memcpy(b + 32, h->fingerprint, 16);
	wr64(b + 56, XXH3_64bits(b, 56));
}

static int header_decode(const uint8_t *b, size_t got, const char *name, shard_header *h, sft_error *err)
{
	if (got < 8 || memcmp(b, HDR_MAGIC, 8) != 0)
		return sft_error_set(err, SFT_EXIT_DATA,
				     "%s: byte 0: not an sftkit token shard: expected magic \"SFTKSHRD\"", name);
	if (got < SHARD_HEADER_SIZE)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %zu: truncated header: expected %d bytes, got %zu",
				     name, got, SHARD_HEADER_SIZE, got);
	memset(h, 0, sizeof *h);
	h->version = rd16(b + 8);
	if (h->version != SHARD_VERSION)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte 8: unsupported shard version %u (this build reads %d)",
				     name, h->version, SHARD_VERSION);
	if (rd64(b + 56) != XXH3_64bits(b, 56))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte 56: header checksum mismatch", name);
	h->token_width = b[10];
	if (h->token_width != 2 && h->token_width != 4)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte 10: token width %u: expected 2 or 4", name,
				     h->token_width);
	if (b[11] > 1)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte 11: form %u: expected 0 (stream) or 1 (file)", name,
				     b[11]);
	h->is_file = b[11];
	h->flags = rd32(b + 12);
	if (h->flags & ~(SHARD_PACKED | SHARD_PADDED))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte 12: unknown flags 0x%x", name, h->flags);
	h->vocab_size = rd32(b + 16);
	if (h->token_width == 2 && (h->vocab_size == 0 || h->vocab_size > 65536))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte 16: vocab size %u does not fit token width 2", name,
				     h->vocab_size);
	h->seq_len = rd32(b + 20);
	h->pad_id = rd32(b + 24);
	memcpy(h->fingerprint, b + 32, 16);
	return 0;
}

int shard_header_check_compatible(const shard_header *a, const char *name_a, const shard_header *b,
				  const char *name_b, sft_error *err)
{
	static const uint8_t zero[16];
	int az = !memcmp(a->fingerprint, zero, 16), bz = !memcmp(b->fingerprint, zero, 16);
	if (!az && !bz && memcmp(a->fingerprint, b->fingerprint, 16)) {
		char ha[33], hb[33];
		shard_hex16(a->fingerprint, ha);
		shard_hex16(b->fingerprint, hb);
		return sft_error_set(err, SFT_EXIT_DATA,
				     "%s: byte 32: tokenizer fingerprint %s differs from %s (%s): inputs come from different tokenizers",
				     name_b, hb, name_a, ha);
	}
	if (a->vocab_size && b->vocab_size && a->vocab_size != b->vocab_size)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte 16: vocab size %u differs from %s (%u)", name_b,
				     b->vocab_size, name_a, a->vocab_size);
	return 0;
}

/* ---- record validation shared by writer, reader and mmap ---- */

/* Largest token id of n tokens of width w (2 or 4) at tp. Lane-wise maxima over blocks of
 * 32 tokens, reduced at the end: a loop shape compilers vectorize even at -O2. */
#define MAX_TOKEN_BODY(T)                                               \
	do {                                                            \
		const T *restrict t = (const T *)(const void *)tp;      \
		T lane[32] = {0};                                       \
		size_t i = 0;                                           \
		for (; i + 32 <= n; i += 32)                            \
			for (size_t j = 0; j < 32; j++)                 \
				lane[j] = t[i + j] > lane[j] ? t[i + j] : lane[j]; \
		for (; i < n; i++)                                      \
			lane[0] = t[i] > lane[0] ? t[i] : lane[0];      \
		for (size_t j = 0; j < 32; j++)                         \
			maxv = lane[j] > maxv ? lane[j] : maxv;         \
	} while (0)

static uint32_t max_token(const uint8_t *tp, size_t n, unsigned width)
{
	uint32_t maxv = 0;
	if (width == 2)
		MAX_TOKEN_BODY(uint16_t);
	else
		MAX_TOKEN_BODY(uint32_t);
	return maxv;
}
#undef MAX_TOKEN_BODY

static inline uint32_t token_at(const uint8_t *tp, size_t i, unsigned width)
{
	return width == 2 ? rd16(tp + 2 * i) : rd32(tp + 4 * i);
}

/* Checks segment lengths against n / n_pad. */
static int check_segments(const shard_segment *segs, size_t n_seg, size_t n, size_t n_pad, const char *name,
			  uint64_t off, sft_error *err)
{
	if (n_pad > n)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": bad record: %zu pad tokens in a %zu-token row",
				     name, off, n_pad, n);
	if (n_seg == 0) {
		if (n_pad)
			return sft_error_set(err, SFT_EXIT_DATA,
					     "%s: byte %" PRIu64 ": bad record: pad tokens without segments", name, off);
		return 0;
	}
	uint64_t sum = 0;
	for (size_t i = 0; i < n_seg; i++) {
		if (segs[i].len == 0)
			return sft_error_set(err, SFT_EXIT_DATA,
					     "%s: byte %" PRIu64 ": bad segment lengths: segment %zu is empty", name, off, i);
		sum += segs[i].len;
	}
	if (sum + n_pad != n)
		return sft_error_set(err, SFT_EXIT_DATA,
				     "%s: byte %" PRIu64 ": bad segment lengths: segments sum to %" PRIu64
				     " + %zu pad, expected %zu tokens",
				     name, off, sum, n_pad, n);
	return 0;
}

/* ---- writer ---- */

struct shard_writer {
	FILE *fp;
	atomic_file *af; /* file form */
	shard_header h;
	XXH3_state_t *h64, *h128;
	uint64_t off; /* bytes written so far, those still in buf included */
	uint64_t *index;
	size_t n_index, cap_index;
	/* records are assembled in buf and written (and hashed) in large blocks: files flush
	 * when BLOCK bytes are pending, streams after every record */
	uint8_t *buf;
	size_t cap_buf, used;
	size_t res_size; /* the reserved record (at buf + used), 0 = none */
	uint32_t res_n, res_seg, res_pad;
	shard_counts counts;
	int failed;
	/* file form: a second thread hashes and writes full blocks while the caller fills the
	 * other buffer (buf2); it only touches fp, h128 and the block it was handed */
	uint8_t *buf2;
	size_t cap_buf2;
	int bg_on;
	pthread_t bg;
	pthread_mutex_t bg_mu;
	pthread_cond_t bg_cv;
	const uint8_t *bg_blk; /* handed over, NULL when the thread is idle */
	size_t bg_len;
	uint64_t bg_kicked; /* file offset up to which writeback was started */
	int bg_quit, bg_errno; /* bg_errno: a write failed */
};

#define W_BLOCK ((size_t)512 << 10)

static void *bg_main(void *arg)
{
	shard_writer *w = arg;
	pthread_mutex_lock(&w->bg_mu);
	for (;;) {
		while (!w->bg_blk && !w->bg_quit)
			pthread_cond_wait(&w->bg_cv, &w->bg_mu);
		if (!w->bg_blk)
			break;
		const uint8_t *p = w->bg_blk;
		size_t n = w->bg_len;
		pthread_mutex_unlock(&w->bg_mu);
		XXH3_128bits_update(w->h128, p, n);
		int e = fwrite(p, 1, n, w->fp) == n ? 0 : (errno ? errno : EIO);
#ifdef SYNC_FILE_RANGE_WRITE
		/* start the disk writeback of every 16 MiB now (not waiting for it), so the
		 * fsync at close finds little left and the disk works while packing goes on */
		off_t end = ftello(w->fp);
		if (!e && end > 0 && (uint64_t)end - w->bg_kicked >= ((uint64_t)16 << 20)) {
			sync_file_range(fileno(w->fp), (off_t)w->bg_kicked, end - (off_t)w->bg_kicked, SYNC_FILE_RANGE_WRITE);
			w->bg_kicked = (uint64_t)end;
		}
#endif
		pthread_mutex_lock(&w->bg_mu);
		if (e && !w->bg_errno)
			w->bg_errno = e;
		w->bg_blk = NULL;
		pthread_cond_broadcast(&w->bg_cv);
	}
	pthread_mutex_unlock(&w->bg_mu);
	return NULL;
}

/* Waits until the thread is idle; fails if a block it wrote failed. */
static int bg_wait(shard_writer *w, sft_error *err)
{
	if (!w->bg_on)
		return 0;
	pthread_mutex_lock(&w->bg_mu);
	while (w->bg_blk)
		pthread_cond_wait(&w->bg_cv, &w->bg_mu);
	int e = w->bg_errno;
	pthread_mutex_unlock(&w->bg_mu);
	if (e) {
		w->failed = 1;
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write failed: %s", w->af ? w->af->path : "<stream>",
				     strerror(e));
	}
	return 0;
}

static void bg_start(shard_writer *w)
{
	if (pthread_mutex_init(&w->bg_mu, NULL))
		return;
	if (pthread_cond_init(&w->bg_cv, NULL)) {
		pthread_mutex_destroy(&w->bg_mu);
		return;
	}
	if (pthread_create(&w->bg, NULL, bg_main, w)) { /* no thread: blocks are written inline */
		pthread_cond_destroy(&w->bg_cv);
		pthread_mutex_destroy(&w->bg_mu);
		return;
	}
	w->bg_on = 1;
}

static void bg_stop(shard_writer *w)
{
	if (!w->bg_on)
		return;
	pthread_mutex_lock(&w->bg_mu);
	w->bg_quit = 1;
	pthread_cond_broadcast(&w->bg_cv);
	pthread_mutex_unlock(&w->bg_mu);
	pthread_join(w->bg, NULL);
	pthread_cond_destroy(&w->bg_cv);
	pthread_mutex_destroy(&w->bg_mu);
	w->bg_on = 0;
}

static int w_write(shard_writer *w, const void *p, size_t n, sft_error *err)
{
	if (n && fwrite(p, 1, n, w->fp) != n) {
		w->failed = 1;
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write failed: %s", w->af ? w->af->path : "<stream>",
				     strerror(errno));
	}
	if (w->h128) /* file form: the footer's XXH3-128 covers everything */
		XXH3_128bits_update(w->h128, p, n);
	else
		XXH3_64bits_update(w->h64, p, n);
	return 0;
}

/* Writes the pending block: hands it to the thread (once the previous one is done) and
 * continues in the other buffer, or writes it here. */
static int w_flush(shard_writer *w, sft_error *err)
{
	size_t n = w->used;
	w->used = 0;
	if (!w->bg_on)
		return w_write(w, w->buf, n, err);
	if (bg_wait(w, err) < 0)
		return -SFT_EXIT_RUNTIME;
	if (!n)
		return 0;
	pthread_mutex_lock(&w->bg_mu);
	w->bg_blk = w->buf;
	w->bg_len = n;
	pthread_cond_broadcast(&w->bg_cv);
	pthread_mutex_unlock(&w->bg_mu);
	uint8_t *t = w->buf;
	w->buf = w->buf2;
	w->buf2 = t;
	size_t c = w->cap_buf;
	w->cap_buf = w->cap_buf2;
	w->cap_buf2 = c;
	return 0;
}

/* Appends bytes outside records (header, end marker, index), after every pending block. */
static int w_put(shard_writer *w, const void *p, size_t n, sft_error *err)
{
	if (w_flush(w, err) < 0 || bg_wait(w, err) < 0)
		return -SFT_EXIT_RUNTIME;
	if (n && fwrite(p, 1, n, w->fp) != n) {
		w->failed = 1;
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write failed: %s", w->af ? w->af->path : "<stream>",
				     strerror(errno));
	}
	if (w->h128) /* file form: the footer's XXH3-128 covers everything */
		XXH3_128bits_update(w->h128, p, n);
	else
		XXH3_64bits_update(w->h64, p, n);
	w->off += n;
	return 0;
}

static shard_writer *writer_new(FILE *fp, atomic_file *af, const shard_header *h, sft_error *err)
{
	shard_writer *w = calloc(1, sizeof *w);
	if (!w) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	w->fp = fp;
	w->af = af;
	w->h = *h;
	if (header_fix(&w->h, err) < 0) {
		free(w);
		return NULL;
	}
	w->h64 = XXH3_createState();
	XXH3_64bits_reset(w->h64);
	if (af) {
		w->h128 = XXH3_createState();
		XXH3_128bits_reset(w->h128);
	}
	uint8_t b[SHARD_HEADER_SIZE];
	header_encode(&w->h, af != NULL, b);
	if (w_put(w, b, sizeof b, err) < 0) {
		XXH3_freeState(w->h64);
		XXH3_freeState(w->h128);
		free(w);
		return NULL;
	}
	return w;
}

shard_writer *shard_writer_open_stream(FILE *fp, const shard_header *h, sft_error *err)
{
	return writer_new(fp, NULL, h, err);
}

shard_writer *shard_writer_open_file(const char *path, const shard_header *h, sft_error *err)
{
	atomic_file *af = atomic_open(path, err);
	if (!af)
		return NULL;
	/* unbuffered: records go out in large blocks already (no copy through stdio) */
	setvbuf(af->fp, NULL, _IONBF, 0);
	shard_writer *w = writer_new(af->fp, af, h, err);
	if (!w)
		atomic_abort(af);
	else
		bg_start(w);
	return w;
}

const shard_counts *shard_writer_counts(const shard_writer *w) { return &w->counts; }

int shard_write_reserve(shard_writer *w, size_t n, size_t n_seg, size_t n_pad, shard_slot *slot, sft_error *err)
{
	const char *name = w->af ? w->af->path : "<stream>";
	if (w->failed)
		return sft_error_set(err, SFT_EXIT_INTERNAL, "%s: write after a failed write", name);
	if (n > MAX_TOKENS || n_seg > MAX_SEGS)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: record %" PRIu64 ": %zu tokens / %zu segments is too large",
				     name, w->counts.records, n, n_seg);
	unsigned width = w->h.token_width;
	size_t size = (size_t)rec_size(n, n_seg, width);
	if (w->used + size > w->cap_buf) {
		if (w_flush(w, err) < 0)
			return -SFT_EXIT_RUNTIME;
		if (size > w->cap_buf) {
			size_t nc = size > W_BLOCK ? size : (w->af ? W_BLOCK : size + size / 2 + 64);
			uint8_t *nb = realloc(w->buf, nc);
			if (!nb)
				return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			w->buf = nb;
			w->cap_buf = nc;
		}
	}
	uint8_t *b = w->buf + w->used; /* 8-byte aligned: records are */
	wr32(b, REC_TAG);
	wr32(b + 4, (uint32_t)n);
	wr32(b + 8, (uint32_t)n_seg);
	wr32(b + 12, (uint32_t)n_pad);
	uint8_t *tp = b + REC_HDR + n_seg * SEG_SIZE;
	uint8_t *mp = tp + n * width;
	memset(mp, 0, size - (size_t)(mp - b)); /* mask bits and padding */
	slot->segs = (shard_segment *)(void *)(b + REC_HDR);
	slot->tokens = tp;
	slot->mask_bits = mp;
	w->res_size = size;
	w->res_n = (uint32_t)n;
	w->res_seg = (uint32_t)n_seg;
	w->res_pad = (uint32_t)n_pad;
	return 0;
}

int shard_write_commit(shard_writer *w, sft_error *err)
{
	const char *name = w->af ? w->af->path : "<stream>";
	if (!w->res_size || w->failed)
		return sft_error_set(err, SFT_EXIT_INTERNAL, "%s: shard_write_commit without shard_write_reserve", name);
	size_t size = w->res_size, n = w->res_n, n_seg = w->res_seg, n_pad = w->res_pad;
	w->res_size = 0;
	unsigned width = w->h.token_width;
	uint8_t *b = w->buf + w->used;
	const uint8_t *tp = b + REC_HDR + n_seg * SEG_SIZE;
	uint8_t *mp = (uint8_t *)tp + n * width;
	if (check_segments((const shard_segment *)(const void *)(b + REC_HDR), n_seg, n, n_pad, name, w->off, err) < 0)
		return -SFT_EXIT_DATA;
	uint32_t vocab = w->h.vocab_size;
	if (vocab && n && max_token(tp, n, width) >= vocab) {
		for (size_t i = 0; i < n; i++)
			if (token_at(tp, i, width) >= vocab)
				return sft_error_set(err, SFT_EXIT_DATA,
						     "%s: record %" PRIu64 ": token %zu: id %u >= vocab size %u", name,
						     w->counts.records, i, token_at(tp, i, width), vocab);
	}
	if (n & 7) /* bits past n: not the caller's */
		mp[n >> 3] &= (uint8_t)((1u << (n & 7)) - 1);
	for (size_t i = n - n_pad; i < n; i++)
		if (((mp[i >> 3] >> (i & 7)) & 1) || token_at(tp, i, width) != w->h.pad_id)
			return sft_error_set(err, SFT_EXIT_DATA,
					     "%s: record %" PRIu64 ": token %zu: pad tokens must be pad id %u with mask 0",
					     name, w->counts.records, i, w->h.pad_id);
	if (w->af) {
		if (w->n_index == w->cap_index) {
			size_t nc = w->cap_index ? w->cap_index * 2 : 1024;
			uint64_t *ni = realloc(w->index, nc * sizeof *ni);
			if (!ni)
				return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			w->index = ni;
			w->cap_index = nc;
		}
		w->index[w->n_index++] = w->off;
	}
	w->used += size;
	w->off += size;
	w->counts.records++;
	w->counts.tokens += n;
	w->counts.segments += n_seg;
	w->counts.trained += popcount_bytes(mp, (n + 7) / 8);
	w->counts.pad += n_pad;
	if ((!w->af || w->used >= W_BLOCK) && w_flush(w, err) < 0)
		return -SFT_EXIT_RUNTIME;
	return 0;
}

int shard_write(shard_writer *w, const shard_record *r, sft_error *err)
{
	const char *name = w->af ? w->af->path : "<stream>";
	if (w->failed)
		return sft_error_set(err, SFT_EXIT_INTERNAL, "%s: write after a failed write", name);
	if (r->n > MAX_TOKENS || r->n_seg > MAX_SEGS)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: record %" PRIu64 ": %zu tokens / %zu segments is too large",
				     name, w->counts.records, r->n, r->n_seg);
	if (check_segments(r->segs, r->n_seg, r->n, r->n_pad, name, w->off, err) < 0)
		return -SFT_EXIT_DATA;
	/* checks on the uint32 / one-byte-per-token values (narrowing would hide them) */
	uint32_t vocab = w->h.vocab_size, maxv = 0;
	for (size_t i = 0; i < r->n; i++)
		maxv = r->tokens[i] > maxv ? r->tokens[i] : maxv;
	if (vocab && r->n && maxv >= vocab) {
		for (size_t i = 0; i < r->n; i++)
			if (r->tokens[i] >= vocab)
				return sft_error_set(err, SFT_EXIT_DATA,
						     "%s: record %" PRIu64 ": token %zu: id %u >= vocab size %u", name,
						     w->counts.records, i, r->tokens[i], vocab);
	}
	uint64_t bad = 0;
	size_t full = r->n / 8;
	for (size_t k = 0; k < full; k++) {
		uint64_t x;
		memcpy(&x, r->mask + 8 * k, 8);
		bad |= x & ~0x0101010101010101ull;
	}
	for (size_t i = full * 8; i < r->n; i++)
		bad |= r->mask[i] & ~1u;
	if (bad) {
		for (size_t i = 0; i < r->n; i++)
			if (r->mask[i] > 1)
				return sft_error_set(err, SFT_EXIT_DATA, "%s: record %" PRIu64 ": token %zu: mask %u (0 or 1)",
						     name, w->counts.records, i, r->mask[i]);
	}
	shard_slot slot;
	if (shard_write_reserve(w, r->n, r->n_seg, r->n_pad, &slot, err) < 0)
		return -(err && err->code ? err->code : SFT_EXIT_RUNTIME);
	if (r->n_seg)
		memcpy(slot.segs, r->segs, r->n_seg * SEG_SIZE);
	if (w->h.token_width == 2) {
		const uint32_t *restrict src = r->tokens;
		uint16_t *restrict dst = slot.tokens;
		for (size_t i = 0; i < r->n; i++)
			dst[i] = (uint16_t)src[i];
	} else if (r->n) {
		memcpy(slot.tokens, r->tokens, r->n * 4);
	}
	for (size_t k = 0; k < full; k++) {
		uint64_t x;
		memcpy(&x, r->mask + 8 * k, 8);
		slot.mask_bits[k] = mask_pack8(x);
	}
	for (size_t i = full * 8; i < r->n; i++)
		slot.mask_bits[i >> 3] |= (uint8_t)(r->mask[i] << (i & 7));
	return shard_write_commit(w, err);
}

void shard_bits_copy(uint8_t *dst, size_t dst_bit, const uint8_t *src, size_t src_bit, size_t n)
{
	/* whole destination bytes are written 8 bits at a time from a 64-bit window of src */
	while (n) {
		size_t db = dst_bit & 7;
		uint8_t *d = dst + (dst_bit >> 3);
		const uint8_t *sp = src + (src_bit >> 3);
		unsigned sb = (unsigned)(src_bit & 7);
		if (db == 0 && sb == 0 && n >= 8) { /* both byte-aligned: whole bytes */
			memcpy(d, sp, n >> 3);
			dst_bit += n & ~(size_t)7;
			src_bit += n & ~(size_t)7;
			n &= 7;
			continue;
		}
		if (db == 0 && n >= 128) { /* 64 bits per step from two loads; bytes 0..15 hold bits */
			size_t chunks = (n - 64) / 64;
			for (size_t c = 0; c < chunks; c++) {
				uint64_t lo, hi;
				memcpy(&lo, sp + 8 * c, 8);
				memcpy(&hi, sp + 8 * c + 8, 8);
				uint64_t x = sb ? (lo >> sb) | (hi << (64 - sb)) : lo;
				memcpy(d + 8 * c, &x, 8);
			}
			dst_bit += chunks * 64;
			src_bit += chunks * 64;
			n -= chunks * 64;
			continue;
		}
		if (db == 0 && n >= 56) { /* 56 bits per 64-bit load: bytes 0..7 of sp hold them */
			size_t chunks = n / 56;
			for (size_t c = 0; c < chunks; c++) {
				uint64_t x;
				memcpy(&x, sp + 7 * c, 8);
				x >>= sb;
				memcpy(d + 7 * c, &x, 7);
			}
			dst_bit += chunks * 56;
			src_bit += chunks * 56;
			n -= chunks * 56;
			continue;
		}
		/* up to the next destination byte boundary (or n) */
		size_t take = 8 - db < n ? 8 - db : n;
		unsigned v = sp[0] >> sb;
		if (sb + take > 8)
			v |= (unsigned)sp[1] << (8 - sb);
		unsigned m = ((1u << take) - 1) << db;
		*d = (uint8_t)((*d & ~m) | ((v << db) & m));
		dst_bit += take;
		src_bit += take;
		n -= take;
	}
}

static void writer_free(shard_writer *w)
{
	bg_stop(w);
	XXH3_freeState(w->h64);
	XXH3_freeState(w->h128);
	free(w->index);
	free(w->buf);
	free(w->buf2);
	free(w);
}

void shard_writer_abort(shard_writer *w)
{
	if (!w)
		return;
	bg_stop(w); /* before its FILE goes */
	atomic_abort(w->af);
	writer_free(w);
}

int shard_writer_close_ex(shard_writer *w, uint8_t checksum_out[16], shard_counts *counts_out, sft_error *err)
{
	if (!w)
		return 0;
	if (w->failed) {
		shard_writer_abort(w);
		return sft_error_set(err, SFT_EXIT_INTERNAL, "shard writer: close after a failed write");
	}
	uint8_t e[END_SIZE] = {0};
	wr32(e, END_TAG);
	wr64(e + 8, w->counts.records);
	wr64(e + 16, w->counts.tokens);
	wr64(e + 24, w->h128 ? 0 : XXH3_64bits_digest(w->h64));
	if (w_put(w, e, sizeof e, err) < 0)
		goto fail;
	if (counts_out)
		*counts_out = w->counts;
	if (checksum_out)
		memset(checksum_out, 0, 16);
	if (w->af) {
		uint64_t index_off = w->off;
		if (w_put(w, w->index, w->n_index * 8, err) < 0)
			goto fail;
		uint8_t f[SHARD_FOOTER_SIZE] = {0};
		memcpy(f, FOOT_MAGIC, 8);
		wr64(f + 8, w->counts.records);
		wr64(f + 16, w->counts.tokens);
		wr64(f + 24, w->counts.segments);
		wr64(f + 32, w->counts.trained);
		wr64(f + 40, w->counts.pad);
		wr64(f + 48, index_off);
		uint8_t sum[16];
		canon128(sum, XXH3_128bits_digest(w->h128));
		memcpy(f + 64, sum, 16);
		if (fwrite(f, 1, sizeof f, w->fp) != sizeof f) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write failed: %s", w->af->path, strerror(errno));
			goto fail;
		}
		if (checksum_out)
			memcpy(checksum_out, sum, 16);
		atomic_file *af = w->af;
		w->af = NULL;
		if (atomic_commit(af, err) < 0) {
			writer_free(w);
			return -SFT_EXIT_RUNTIME;
		}
	} else if (fflush(w->fp) != 0) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "<stream>: write failed: %s", strerror(errno));
		goto fail;
	}
	writer_free(w);
	return 0;
fail:
	shard_writer_abort(w);
	return -(err && err->code ? err->code : SFT_EXIT_RUNTIME);
}

int shard_writer_close(shard_writer *w, sft_error *err) { return shard_writer_close_ex(w, NULL, NULL, err); }

/* ---- buffers ---- */

static int buf_reserve(shard_buf *b, size_t n, size_t n_seg)
{
	if (n > b->cap_tokens) {
		size_t nc = n + n / 2 + 16;
		uint32_t *t = realloc(b->tokens, nc * sizeof *t);
		if (!t)
			return -1;
		b->tokens = t;
		uint8_t *m = realloc(b->mask, nc);
		if (!m)
			return -1;
		b->mask = m;
		b->cap_tokens = nc;
	}
	if (n_seg > b->cap_segs) {
		size_t nc = n_seg + n_seg / 2 + 4;
		shard_segment *s = realloc(b->segs, nc * sizeof *s);
		if (!s)
			return -1;
		b->segs = s;
		b->cap_segs = nc;
	}
	return 0;
}

void shard_buf_free(shard_buf *b)
{
	if (!b)
		return;
	free(b->tokens);
	free(b->mask);
	free(b->segs);
	memset(b, 0, sizeof *b);
}

/* Checks a record body in its on-disk form (tokens at tp in the header's width, then the
 * mask bits): token ids < vocab, no mask bits past n, pad tokens. Shared by the reader,
 * the raw view reader and mmap row access; `tok_off` is the byte offset of tp. */
static int body_check(const shard_header *h, const uint8_t *tp, size_t n, size_t n_pad, const char *name,
		      uint64_t tok_off, sft_error *err)
{
	unsigned width = h->token_width;
	if (h->vocab_size && n && max_token(tp, n, width) >= h->vocab_size) {
		for (size_t i = 0; i < n; i++)
			if (token_at(tp, i, width) >= h->vocab_size)
				return sft_error_set(err, SFT_EXIT_DATA,
						     "%s: byte %" PRIu64 ": token id %u >= vocab size %u", name,
						     tok_off + (uint64_t)i * width, token_at(tp, i, width), h->vocab_size);
	}
	const uint8_t *mp = tp + n * width;
	if ((n & 7) && (mp[n >> 3] >> (n & 7)))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": mask bits set past the last token", name,
				     tok_off + (uint64_t)n * width + (n >> 3));
	for (size_t i = n - n_pad; i < n; i++)
		if (((mp[i >> 3] >> (i & 7)) & 1) || token_at(tp, i, width) != h->pad_id)
			return sft_error_set(err, SFT_EXIT_DATA,
					     "%s: byte %" PRIu64 ": pad token %zu: expected pad id %u with mask 0", name,
					     tok_off + (uint64_t)i * width, i, h->pad_id);
	return 0;
}

/* Widens a checked body to uint32 tokens + one mask byte per token in b (reserved). */
static void body_decode(const shard_header *h, const uint8_t *tp, size_t n, shard_buf *b)
{
	if (h->token_width == 2) {
		uint32_t *restrict dst = b->tokens;
		const uint16_t *restrict src = (const uint16_t *)(const void *)tp;
		for (size_t i = 0; i < n; i++)
			dst[i] = src[i];
	} else if (n) {
		memcpy(b->tokens, tp, n * 4);
	}
	const uint8_t *mp = tp + n * h->token_width;
	size_t full = n / 8;
	for (size_t k = 0; k < full; k++) {
		uint64_t x = mask_spread8(mp[k]);
		memcpy(b->mask + 8 * k, &x, 8);
	}
	for (size_t i = full * 8; i < n; i++)
		b->mask[i] = (mp[i >> 3] >> (i & 7)) & 1;
}

static int decode_body(const shard_header *h, const uint8_t *tp, size_t n, size_t n_pad, shard_buf *b,
		       const char *name, uint64_t tok_off, sft_error *err)
{
	if (body_check(h, tp, n, n_pad, name, tok_off, err) < 0)
		return -SFT_EXIT_DATA;
	body_decode(h, tp, n, b);
	return 0;
}

/* ---- sequential reader ---- */

struct shard_reader {
	FILE *fp;
	int own_fp;
	char *name;
	shard_header h;
	jsonl_reader *jr; /* JSONL twin */
	XXH3_state_t *h64, *h128;
	uint64_t off;
	uint64_t n_records, n_tokens, n_segments, n_trained, n_pad;
	uint64_t *offsets; /* record offsets (file form, to check the index) */
	size_t n_off, cap_off;
	uint8_t *raw;
	size_t cap_raw;
	shard_buf buf;
	/* a regular file opened by path is read through mmap: bytes [off, map_size) are
	 * unread; pages before `dropped` were given back (MADV_DONTNEED) */
	const uint8_t *map;
	size_t map_size, dropped;
	uint64_t hashed;  /* mmap: bytes [0, hashed) are in the running checksum */
	uint64_t pin;     /* mmap: bytes from pin on are not dropped (shard_reader_pin) */
	int done;
	int failed;
};

/* Bytes read are hashed as they arrive; through mmap, lazily in large contiguous steps
 * (r_hash_sync) instead. */
static void r_hash(shard_reader *r, const void *p, size_t n)
{
	if (r->map)
		return;
	if (r->h128)
		XXH3_128bits_update(r->h128, p, n);
	else
		XXH3_64bits_update(r->h64, p, n);
}

static void r_hash_sync(shard_reader *r, uint64_t upto)
{
	if (!r->map || upto <= r->hashed)
		return;
	const uint8_t *p = r->map + r->hashed;
	size_t n = (size_t)(upto - r->hashed);
	if (r->h128)
		XXH3_128bits_update(r->h128, p, n);
	else
		XXH3_64bits_update(r->h64, p, n);
	r->hashed = upto;
}

/* Copies up to n unread bytes to p (no hashing); returns how many. */
static size_t r_raw(shard_reader *r, void *p, size_t n)
{
	size_t got;
	if (r->map) {
		got = r->map_size - r->off < n ? (size_t)(r->map_size - r->off) : n;
		memcpy(p, r->map + r->off, got);
	} else {
		got = n ? fread(p, 1, n, r->fp) : 0;
	}
	r->off += got;
	return got;
}

static size_t r_get(shard_reader *r, void *p, size_t n)
{
	size_t got = r_raw(r, p, n);
	r_hash(r, p, got);
	return got;
}

/* 1 when no byte is left. */
static int r_at_end(shard_reader *r)
{
	if (r->map)
		return r->off >= r->map_size;
	return getc(r->fp) == EOF;
}

/* The next n bytes, hashed: a pointer into the mapping, or read into r->raw (in steps of
 * at most 64 MiB, growing the buffer only as bytes arrive: a corrupt header claiming 2^30
 * tokens on a short input must not allocate gigabytes). *got < n at the end of input;
 * NULL when out of memory. */
static const uint8_t *r_take(shard_reader *r, size_t n, size_t *got)
{
	if (r->map) {
		*got = r->map_size - r->off < n ? (size_t)(r->map_size - r->off) : n;
		const uint8_t *p = r->map + r->off;
		r_hash(r, p, *got);
		r->off += *got;
		return p;
	}
	*got = 0;
	while (*got < n) {
		size_t want = n - *got < ((size_t)64 << 20) ? n - *got : ((size_t)64 << 20);
		if (*got + want > r->cap_raw) {
			size_t nc = *got + want;
			if (nc < r->cap_raw * 2)
				nc = r->cap_raw * 2 < n ? r->cap_raw * 2 : n;
			uint8_t *nr = realloc(r->raw, nc);
			if (!nr)
				return NULL;
			r->raw = nr;
			r->cap_raw = nc;
		}
		size_t g = r_get(r, r->raw + *got, want);
		*got += g;
		if (g != want)
			break;
	}
	return r->raw;
}

/* Gives consumed pages of the mapping back every 32 MiB read, so reading a large file
 * keeps few of its pages resident; never past the pin (shard_reader_pin). A page given back
 * is read again from the file if touched (the mapping is a read-only MAP_SHARED one). */
static void r_drop_consumed(shard_reader *r)
{
	const size_t step = (size_t)32 << 20;
	if (!r->map || r->off - r->dropped < 2 * step)
		return;
	uint64_t keep = r->off < r->hashed ? r->off : r->hashed;
	if (r->pin < keep)
		keep = r->pin;
	if (keep < step)
		return;
	size_t upto = ((size_t)keep - step) & ~(step - 1);
	if (upto > r->dropped) {
		madvise((void *)(uintptr_t)(r->map + r->dropped), upto - r->dropped, MADV_DONTNEED);
		r->dropped = upto;
	}
}

static int r_io_error(shard_reader *r, sft_error *err)
{
	if (!r->map && ferror(r->fp))
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: byte %" PRIu64 ": read failed: %s", r->name, r->off,
				     strerror(errno));
	return 0;
}

shard_reader *shard_reader_open_fp(FILE *fp, const char *name, sft_error *err)
{
	shard_reader *r = calloc(1, sizeof *r);
	if (!r || !(r->name = strdup(name ? name : "<stdin>"))) {
		free(r);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	r->fp = fp;
	int c;
	do
		c = getc(fp);
	while (c == ' ' || c == '\n' || c == '\r' || c == '\t');
	if (c == EOF && ferror(fp)) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: read failed: %s", r->name, strerror(errno));
		goto fail;
	}
	if (c != EOF)
		ungetc(c, fp);
	if (c == '{' || c == EOF) { /* JSONL; an empty input is JSONL with no documents */
		r->jr = jsonl_open_stream(fp, r->name);
		if (!r->jr) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			goto fail;
		}
		r->h.version = SHARD_VERSION;
		r->h.token_width = 4;
		return r;
	}
	uint8_t b[SHARD_HEADER_SIZE];
	size_t got = fread(b, 1, sizeof b, fp);
	r->off = got;
	if (r_io_error(r, err) < 0 || header_decode(b, got, r->name, &r->h, err) < 0)
		goto fail;
	/* one checksum per form: XXH3-64 for streams, XXH3-128 for files */
	if (r->h.is_file) {
		r->h128 = XXH3_createState();
		XXH3_128bits_reset(r->h128);
		XXH3_128bits_update(r->h128, b, sizeof b);
	} else {
		r->h64 = XXH3_createState();
		XXH3_64bits_reset(r->h64);
		XXH3_64bits_update(r->h64, b, sizeof b);
	}
	return r;
fail:
	shard_reader_close(r);
	return NULL;
}

shard_reader *shard_reader_open(const char *path, sft_error *err)
{
	if (!path || !strcmp(path, "-"))
		return shard_reader_open_fp(stdin, "<stdin>", err);
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		sft_error_set(err, errno == ENOENT ? SFT_EXIT_USAGE : SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		return NULL;
	}
	setvbuf(fp, NULL, _IOFBF, 1 << 20);
	shard_reader *r = shard_reader_open_fp(fp, path, err);
	if (!r) {
		fclose(fp);
		return NULL;
	}
	r->own_fp = 1;
	/* a binary shard in a regular file: read the rest through mmap (no copy through
	 * stdio); r->off bytes (the header) were read by stdio */
	struct stat st;
	if (!r->jr && fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size > r->off) {
		void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fileno(fp), 0);
		if (m != MAP_FAILED) {
			madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
			r->map = m;
			r->map_size = (size_t)st.st_size;
			r->hashed = r->off;
			r->pin = UINT64_MAX;
		}
	}
	return r;
}

int shard_reader_pin(shard_reader *r, const void *at)
{
	if (!r->map)
		return 0;
	const uint8_t *a = at;
	if (!a)
		r->pin = r->off;
	else if (a >= r->map && a <= r->map + r->map_size)
		r->pin = (uint64_t)(a - r->map);
	return 1;
}

void shard_reader_unpin(shard_reader *r)
{
	if (r->map)
		r->pin = UINT64_MAX;
}

void shard_reader_leave_before(shard_reader *r, const void *at)
{
	const uint8_t *a = at;
	if (!r->map || !a || a < r->map || a > r->map + r->map_size)
		return;
	long v = sysconf(_SC_PAGESIZE);
	size_t pg = v > 0 ? (size_t)v : 4096;
	size_t d = ((size_t)(a - r->map) + pg - 1) & ~(pg - 1);
	if (d > r->dropped)
		r->dropped = d;
	r->pin = UINT64_MAX;
}

void shard_map_release(const void *p, size_t n, int populate)
{
	long v = sysconf(_SC_PAGESIZE);
	size_t pg = v > 0 ? (size_t)v : 4096;
	if (!p || !n)
		return;
	uintptr_t a = (uintptr_t)p & ~(uintptr_t)(pg - 1);
	uintptr_t b = ((uintptr_t)p + n + pg - 1) & ~(uintptr_t)(pg - 1);
	if (!populate) {
		madvise((void *)a, b - a, MADV_DONTNEED);
		return;
	}
#ifdef MADV_POPULATE_READ
	if (madvise((void *)a, b - a, MADV_POPULATE_READ) == 0)
		return;
#endif
	madvise((void *)a, b - a, MADV_WILLNEED);
}

const shard_header *shard_reader_header(const shard_reader *r) { return &r->h; }
uint64_t shard_reader_offset(const shard_reader *r) { return r->jr ? (uint64_t)jsonl_line(r->jr) : r->off; }
int shard_reader_is_jsonl(const shard_reader *r) { return r->jr != NULL; }

void shard_reader_close(shard_reader *r)
{
	if (!r)
		return;
	if (r->jr)
		jsonl_close(r->jr);
	if (r->map)
		munmap((void *)(uintptr_t)r->map, r->map_size);
	if (r->own_fp && r->fp)
		fclose(r->fp);
	XXH3_freeState(r->h64);
	XXH3_freeState(r->h128);
	free(r->offsets);
	free(r->raw);
	shard_buf_free(&r->buf);
	free(r->name);
	free(r);
}

static int read_jsonl(shard_reader *r, shard_record *rec, sft_error *err)
{
	const char *line;
	size_t len;
	int rc = jsonl_next_line(r->jr, &line, &len, err);
	if (rc <= 0)
		return rc;
	size_t n;
	if (shard_jsonl_parse(line, len, r->name, jsonl_line(r->jr), &r->buf, &n, err) < 0)
		return -SFT_EXIT_DATA;
	memset(rec, 0, sizeof *rec);
	rec->tokens = r->buf.tokens;
	rec->mask = r->buf.mask;
	rec->n = n;
	r->n_records++;
	return 1;
}

/* After the end marker of a file-form input: index + footer, checked against what was read. */
static int read_trailer(shard_reader *r, uint64_t end_off, sft_error *err)
{
	uint64_t index_off = r->off;
	for (size_t i = 0; i < r->n_off; i++) {
		uint8_t b[8];
		size_t got = r_get(r, b, 8);
		if (got != 8) {
			if (r_io_error(r, err) < 0)
				return -SFT_EXIT_RUNTIME;
			return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": truncated index: expected %zu bytes, got %" PRIu64,
					     r->name, r->off - got, r->n_off * 8, r->off - index_off);
		}
		if (rd64(b) != r->offsets[i])
			return sft_error_set(err, SFT_EXIT_DATA,
					     "%s: byte %" PRIu64 ": bad index entry %zu: expected offset %" PRIu64 ", got %" PRIu64,
					     r->name, r->off - 8, i, r->offsets[i], rd64(b));
	}
	uint8_t sum[16];
	r_hash_sync(r, r->off);
	canon128(sum, XXH3_128bits_digest(r->h128));
	uint8_t f[SHARD_FOOTER_SIZE];
	uint64_t foot_off = r->off;
	size_t got = r_raw(r, f, sizeof f);
	if (got != sizeof f) {
		if (r_io_error(r, err) < 0)
			return -SFT_EXIT_RUNTIME;
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": truncated footer: expected %d bytes, got %zu",
				     r->name, foot_off, SHARD_FOOTER_SIZE, got);
	}
	if (memcmp(f, FOOT_MAGIC, 8))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": bad footer: expected magic \"SFTKFOOT\"",
				     r->name, foot_off);
	if (rd64(f + 8) != r->n_records || rd64(f + 16) != r->n_tokens || rd64(f + 24) != r->n_segments ||
	    rd64(f + 32) != r->n_trained || rd64(f + 40) != r->n_pad || rd64(f + 48) != index_off)
		return sft_error_set(err, SFT_EXIT_DATA,
				     "%s: byte %" PRIu64 ": footer totals do not match the records read", r->name, foot_off);
	if (memcmp(f + 64, sum, 16))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": checksum mismatch: file is corrupt",
				     r->name, foot_off + 64);
	if (!r_at_end(r))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": unexpected data after the footer", r->name,
				     r->off);
	(void)end_off;
	return 0;
}

/* Reads and checks the next binary record up to its body (header, sizes, segment
 * lengths, file-form bookkeeping): 1 with *body pointing at the segments (then tokens,
 * mask bits) and the sizes filled, 0 at the clean end, <0 on error. The body's tokens and
 * mask are checked by the caller (body_check). */
static int read_next(shard_reader *r, const uint8_t **body, uint32_t *np, uint32_t *n_segp, uint32_t *n_padp,
		     uint64_t *rec_offp, sft_error *err)
{
	if (r->failed)
		return sft_error_set(err, SFT_EXIT_INTERNAL, "%s: read after an error", r->name);
	if (r->done)
		return 0;
	uint64_t rec_off = r->off;
	if (r->map && rec_off - r->hashed >= ((uint64_t)256 << 10)) { /* still in cache */
		r_hash_sync(r, rec_off);
		r_drop_consumed(r);
	}
	uint8_t hb[REC_HDR];
	/* not hashed yet: the end marker's checksum covers the bytes before it */
	size_t got = r_raw(r, hb, REC_HDR);
	if (got != REC_HDR) {
		r->failed = 1;
		if (r_io_error(r, err) < 0)
			return -SFT_EXIT_RUNTIME;
		if (got == 0)
			return sft_error_set(err, SFT_EXIT_DATA,
					     "%s: byte %" PRIu64 ": truncated stream: expected a record or the end marker, got end of input (pipe cut or writer killed?)",
					     r->name, rec_off);
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": truncated record: expected %d bytes, got %zu",
				     r->name, rec_off, REC_HDR, got);
	}
	uint32_t tag = rd32(hb);
	if (tag == END_TAG) {
		uint8_t eb[END_SIZE];
		memcpy(eb, hb, REC_HDR);
		r_hash_sync(r, rec_off);
		uint64_t hash = r->h128 ? 0 : XXH3_64bits_digest(r->h64);
		got = r_raw(r, eb + REC_HDR, END_SIZE - REC_HDR);
		r->failed = 1; /* until proven fine */
		if (got != END_SIZE - REC_HDR) {
			if (r_io_error(r, err) < 0)
				return -SFT_EXIT_RUNTIME;
			return sft_error_set(err, SFT_EXIT_DATA,
					     "%s: byte %" PRIu64 ": truncated end marker: expected %d bytes, got %zu", r->name,
					     rec_off, END_SIZE, REC_HDR + got);
		}
		if (rd32(eb + 4) || rd64(eb + 8) != r->n_records || rd64(eb + 16) != r->n_tokens)
			return sft_error_set(err, SFT_EXIT_DATA,
					     "%s: byte %" PRIu64 ": bad end marker: expected %" PRIu64 " records / %" PRIu64
					     " tokens, got %" PRIu64 " / %" PRIu64,
					     r->name, rec_off, r->n_records, r->n_tokens, rd64(eb + 8), rd64(eb + 16));
		if (rd64(eb + 24) != hash)
			return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": checksum mismatch: stream is corrupt",
					     r->name, rec_off + 24);
		if (r->h128) {
			r_hash(r, eb, END_SIZE);
			if (read_trailer(r, rec_off, err) < 0)
				return -SFT_EXIT_DATA;
		} else if (!r_at_end(r)) {
			return sft_error_set(err, SFT_EXIT_DATA,
					     "%s: byte %" PRIu64 ": unexpected data after the end marker", r->name, r->off);
		}
		r->failed = 0;
		r->done = 1;
		return 0;
	}
	r_hash(r, hb, REC_HDR);
	if (tag != REC_TAG) {
		r->failed = 1;
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": bad record tag 0x%08x: expected \"REC1\" or \"END1\"",
				     r->name, rec_off, tag);
	}
	uint32_t n = rd32(hb + 4), n_seg = rd32(hb + 8), n_pad = rd32(hb + 12);
	if (n > MAX_TOKENS || n_seg > MAX_SEGS || n_seg > n) {
		r->failed = 1;
		return sft_error_set(err, SFT_EXIT_DATA,
				     "%s: byte %" PRIu64 ": bad record header: %u tokens, %u segments", r->name, rec_off, n, n_seg);
	}
	if (!(r->h.flags & SHARD_PADDED) && n_pad) {
		r->failed = 1;
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": %u pad tokens in an unpadded shard", r->name,
				     rec_off, n_pad);
	}
	size_t body_len = rec_size(n, n_seg, r->h.token_width) - REC_HDR;
	const uint8_t *b = r_take(r, body_len, &got);
	if (!b) {
		r->failed = 1;
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	if (got != body_len) {
		r->failed = 1;
		if (r_io_error(r, err) < 0)
			return -SFT_EXIT_RUNTIME;
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": truncated record: expected %zu bytes, got %zu",
				     r->name, rec_off, body_len + REC_HDR, got + REC_HDR);
	}
	/* segments are 8-byte aligned in the file and in r->raw: read them in place */
	if (check_segments((const shard_segment *)(const void *)b, n_seg, n, n_pad, r->name, rec_off, err) < 0 ||
	    body_check(&r->h, b + (size_t)n_seg * SEG_SIZE, n, n_pad, r->name,
		       rec_off + REC_HDR + (uint64_t)n_seg * SEG_SIZE, err) < 0) {
		r->failed = 1;
		return -SFT_EXIT_DATA;
	}
	if (r->h.is_file) {
		if (r->n_off == r->cap_off) {
			size_t nc = r->cap_off ? r->cap_off * 2 : 1024;
			uint64_t *no = realloc(r->offsets, nc * sizeof *no);
			if (!no) {
				r->failed = 1;
				return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			}
			r->offsets = no;
			r->cap_off = nc;
		}
		r->offsets[r->n_off++] = rec_off;
	}
	r->n_records++;
	r->n_tokens += n;
	r->n_segments += n_seg;
	r->n_pad += n_pad;
	if (r->h.is_file) { /* the footer's trained count is checked at the end */
		const uint8_t *mp = b + (size_t)n_seg * SEG_SIZE + (size_t)n * r->h.token_width;
		r->n_trained += popcount_bytes(mp, (n + 7) / 8);
	}
	*body = b;
	*np = n;
	*n_segp = n_seg;
	*n_padp = n_pad;
	*rec_offp = rec_off;
	return 1;
}

int shard_read(shard_reader *r, shard_record *rec, sft_error *err)
{
	if (r->jr && !r->failed && !r->done) {
		int rc = read_jsonl(r, rec, err);
		if (rc < 0)
			r->failed = 1;
		if (rc == 0)
			r->done = 1;
		return rc;
	}
	const uint8_t *b;
	uint32_t n, n_seg, n_pad;
	uint64_t rec_off;
	int rc = read_next(r, &b, &n, &n_seg, &n_pad, &rec_off, err);
	if (rc <= 0)
		return rc;
	if (buf_reserve(&r->buf, n, n_seg) < 0) {
		r->failed = 1;
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	if (n_seg)
		memcpy(r->buf.segs, b, (size_t)n_seg * SEG_SIZE);
	body_decode(&r->h, b + (size_t)n_seg * SEG_SIZE, n, &r->buf);
	rec->tokens = r->buf.tokens;
	rec->mask = r->buf.mask;
	rec->n = n;
	rec->segs = n_seg ? r->buf.segs : NULL;
	rec->n_seg = n_seg;
	rec->n_pad = n_pad;
	return 1;
}

int shard_read_view(shard_reader *r, shard_view *v, sft_error *err)
{
	if (r->jr)
		return sft_error_set(err, SFT_EXIT_INTERNAL, "%s: shard_read_view on a JSONL input", r->name);
	const uint8_t *b;
	uint32_t n, n_seg, n_pad;
	uint64_t rec_off;
	int rc = read_next(r, &b, &n, &n_seg, &n_pad, &rec_off, err);
	if (rc <= 0)
		return rc;
	v->n = n;
	v->n_seg = n_seg;
	v->n_pad = n_pad;
	v->segs = (const shard_segment *)(const void *)b;
	v->tokens = b + (size_t)n_seg * SEG_SIZE;
	v->mask_bits = b + (size_t)n_seg * SEG_SIZE + (size_t)n * r->h.token_width;
	return 1;
}

/* ---- mmap random access ---- */

struct shard_file {
	char *name;
	const uint8_t *base;
	size_t size;
	shard_header h;
	shard_counts counts;
	const uint8_t *index; /* (rows) u64 offsets */
	uint64_t index_off, end_off;
	uint8_t checksum[16];
};

void shard_file_unmap(shard_file *f)
{
	if (!f)
		return;
	if (f->base && f->size)
		munmap((void *)f->base, f->size);
	free(f->name);
	free(f);
}

shard_file *shard_file_map(const char *path, sft_error *err) { return shard_file_map_ex(path, 1, err); }

shard_file *shard_file_map_ex(const char *path, int populate, sft_error *err)
{
	shard_file *f = calloc(1, sizeof *f);
	if (!f || !(f->name = strdup(path))) {
		free(f);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		sft_error_set(err, errno == ENOENT ? SFT_EXIT_USAGE : SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		goto fail;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		close(fd);
		goto fail;
	}
	f->size = (size_t)st.st_size;
	if (f->size > 0) {
		void *p = mmap(NULL, f->size, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
		if (p == MAP_FAILED) {
			close(fd);
			f->size = 0;
			sft_error_set(err, SFT_EXIT_RUNTIME, "%s: mmap: %s", path, strerror(errno));
			goto fail;
		}
		f->base = p;
	}
	close(fd);
	const uint8_t *b = f->base;
	if (header_decode(b, f->size < SHARD_HEADER_SIZE ? f->size : SHARD_HEADER_SIZE, path, &f->h, err) < 0)
		goto fail;
	if (!f->h.is_file) {
		sft_error_set(err, SFT_EXIT_DATA,
			      "%s: byte 11: stream-form shard has no index: expected a file-form shard (write it with pack)", path);
		goto fail;
	}
	if (f->size < SHARD_HEADER_SIZE + END_SIZE + SHARD_FOOTER_SIZE) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: byte %zu: truncated file: expected at least %d bytes", path, f->size,
			      SHARD_HEADER_SIZE + END_SIZE + SHARD_FOOTER_SIZE);
		goto fail;
	}
	const uint8_t *ft = b + f->size - SHARD_FOOTER_SIZE;
	uint64_t foot_off = f->size - SHARD_FOOTER_SIZE;
	if (memcmp(ft, FOOT_MAGIC, 8)) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": bad footer: expected magic \"SFTKFOOT\" (truncated file?)",
			      path, foot_off);
		goto fail;
	}
	f->counts.records = rd64(ft + 8);
	f->counts.tokens = rd64(ft + 16);
	f->counts.segments = rd64(ft + 24);
	f->counts.trained = rd64(ft + 32);
	f->counts.pad = rd64(ft + 40);
	f->index_off = rd64(ft + 48);
	memcpy(f->checksum, ft + 64, 16);
	if (f->counts.records > foot_off / 8 || f->index_off + f->counts.records * 8 != foot_off ||
	    f->index_off < SHARD_HEADER_SIZE + END_SIZE || (f->index_off & 7)) {
		sft_error_set(err, SFT_EXIT_DATA,
			      "%s: byte %" PRIu64 ": bad footer: index of %" PRIu64 " rows at %" PRIu64 " does not end at the footer",
			      path, foot_off + 48, f->counts.records, f->index_off);
		goto fail;
	}
	f->end_off = f->index_off - END_SIZE;
	const uint8_t *e = b + f->end_off;
	if (rd32(e) != END_TAG || rd64(e + 8) != f->counts.records || rd64(e + 16) != f->counts.tokens) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": bad end marker: expected \"END1\" with the footer's counts",
			      path, f->end_off);
		goto fail;
	}
	f->index = b + f->index_off;
	uint64_t prev = SHARD_HEADER_SIZE;
	for (uint64_t i = 0; i < f->counts.records; i++) {
		uint64_t o = rd64(f->index + 8 * i);
		if (o != prev && !(i > 0 && o > prev)) {
			sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": bad index entry %" PRIu64 ": offset %" PRIu64,
				      path, f->index_off + 8 * i, i, o);
			goto fail;
		}
		if ((o & 7) || o + REC_HDR > f->end_off) {
			sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": bad index entry %" PRIu64 ": offset %" PRIu64
							  " outside the records",
				      path, f->index_off + 8 * i, i, o);
			goto fail;
		}
		prev = o + REC_HDR;
	}
	if (f->counts.records == 0 && f->end_off != SHARD_HEADER_SIZE) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: byte %d: zero rows but data before the end marker", path,
			      SHARD_HEADER_SIZE);
		goto fail;
	}
	return f;
fail:
	shard_file_unmap(f);
	return NULL;
}

const shard_header *shard_file_header(const shard_file *f) { return &f->h; }
const shard_counts *shard_file_counts(const shard_file *f) { return &f->counts; }
const uint8_t *shard_file_checksum(const shard_file *f) { return f->checksum; }
size_t shard_file_rows(const shard_file *f) { return (size_t)f->counts.records; }

int shard_file_view(const shard_file *f, size_t k, shard_view *v, sft_error *err)
{
	if (k >= f->counts.records)
		return sft_error_set(err, SFT_EXIT_USAGE, "%s: row %zu out of range (%" PRIu64 " rows)", f->name, k,
				     f->counts.records);
	uint64_t o = rd64(f->index + 8 * k);
	uint64_t next = k + 1 < f->counts.records ? rd64(f->index + 8 * (k + 1)) : f->end_off;
	const uint8_t *p = f->base + o;
	if (rd32(p) != REC_TAG)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": bad record tag: expected \"REC1\"", f->name, o);
	uint32_t n = rd32(p + 4), n_seg = rd32(p + 8), n_pad = rd32(p + 12);
	uint64_t size = (n > MAX_TOKENS || n_seg > MAX_SEGS) ? UINT64_MAX : rec_size(n, n_seg, f->h.token_width);
	if (size != next - o)
		return sft_error_set(err, SFT_EXIT_DATA,
				     "%s: byte %" PRIu64 ": bad record size: header says %u tokens / %u segments, index leaves %" PRIu64
				     " bytes",
				     f->name, o, n, n_seg, next - o);
	if (n_pad > n || (n_pad && !(f->h.flags & SHARD_PADDED)))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": bad pad count %u", f->name, o + 12, n_pad);
	v->n = n;
	v->n_seg = n_seg;
	v->n_pad = n_pad;
	v->segs = (const shard_segment *)(const void *)(p + REC_HDR);
	v->tokens = p + REC_HDR + (size_t)n_seg * SEG_SIZE;
	v->mask_bits = (const uint8_t *)v->tokens + (size_t)n * f->h.token_width;
	return 0;
}

int shard_file_row(const shard_file *f, size_t k, shard_record *rec, shard_buf *buf, sft_error *err)
{
	shard_view v;
	if (shard_file_view(f, k, &v, err) < 0)
		return -(err ? err->code : SFT_EXIT_DATA);
	uint64_t o = (uint64_t)((const uint8_t *)v.segs - f->base) - REC_HDR;
	if (buf_reserve(buf, v.n, v.n_seg) < 0)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	if (v.n_seg)
		memcpy(buf->segs, v.segs, v.n_seg * SEG_SIZE);
	if (check_segments(buf->segs, v.n_seg, v.n, v.n_pad, f->name, o, err) < 0 ||
	    decode_body(&f->h, v.tokens, v.n, v.n_pad, buf, f->name, o + REC_HDR + v.n_seg * SEG_SIZE, err) < 0)
		return -SFT_EXIT_DATA;
	rec->tokens = buf->tokens;
	rec->mask = buf->mask;
	rec->n = v.n;
	rec->segs = v.n_seg ? buf->segs : NULL;
	rec->n_seg = v.n_seg;
	rec->n_pad = v.n_pad;
	return 0;
}

int shard_file_verify_checksum(const shard_file *f, sft_error *err)
{
	uint64_t foot_off = f->size - SHARD_FOOTER_SIZE;
	uint8_t sum[16];
	canon128(sum, XXH3_128bits(f->base, foot_off));
	if (memcmp(sum, f->checksum, 16))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": checksum mismatch: file is corrupt", f->name,
				     foot_off + 64);
	return 0;
}

int shard_file_verify(const shard_file *f, sft_error *err)
{
	uint64_t foot_off = f->size - SHARD_FOOTER_SIZE;
	if (shard_file_verify_checksum(f, err) < 0)
		return -SFT_EXIT_DATA;
	if (rd64(f->base + f->end_off + 24) != 0)
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": end marker checksum must be 0 in the file form",
				     f->name, f->end_off + 24);
	shard_buf buf = {0};
	shard_counts c = {0};
	int rc = 0;
	for (size_t k = 0; k < f->counts.records; k++) {
		shard_record rec;
		if ((rc = shard_file_row(f, k, &rec, &buf, err)) < 0)
			break;
		c.records++;
		c.tokens += rec.n;
		c.segments += rec.n_seg;
		c.pad += rec.n_pad;
		for (size_t i = 0; i < rec.n; i++)
			c.trained += rec.mask[i];
		/* padding bytes after the mask must be zero */
		shard_view v;
		shard_file_view(f, k, &v, NULL);
		const uint8_t *endp = v.mask_bits + (v.n + 7) / 8;
		uint64_t next = k + 1 < f->counts.records ? rd64(f->index + 8 * (k + 1)) : f->end_off;
		for (const uint8_t *q = endp; q < f->base + next; q++)
			if (*q) {
				rc = sft_error_set(err, SFT_EXIT_DATA, "%s: byte %td: nonzero record padding", f->name,
						   q - f->base);
				break;
			}
		if (rc < 0)
			break;
	}
	shard_buf_free(&buf);
	if (rc < 0)
		return rc;
	if (memcmp(&c, &f->counts, sizeof c))
		return sft_error_set(err, SFT_EXIT_DATA, "%s: byte %" PRIu64 ": footer totals do not match the rows", f->name,
				     foot_off + 8);
	return 0;
}

/* ---- JSONL twin ---- */

int shard_jsonl_write(FILE *fp, const uint32_t *tokens, const uint8_t *mask, size_t n, sft_error *err)
{
	/* hand-rolled: this is the hot path of --unpack and tok-encode --emit jsonl */
	char buf[4096];
	size_t len = 0;
#define FLUSH_IF(need)                                                     \
	do {                                                               \
		if (len + (need) > sizeof buf) {                           \
			if (fwrite(buf, 1, len, fp) != len)                \
				goto werr;                                 \
			len = 0;                                           \
		}                                                          \
	} while (0)
	memcpy(buf, "{\"input_ids\":[", 14);
	len = 14;
	for (size_t i = 0; i < n; i++) {
		FLUSH_IF(16);
		len += (size_t)snprintf(buf + len, 16, i ? ",%u" : "%u", tokens[i]);
	}
	FLUSH_IF(16);
	memcpy(buf + len, "],\"mask\":[", 10);
	len += 10;
	for (size_t i = 0; i < n; i++) {
		FLUSH_IF(4);
		if (i)
			buf[len++] = ',';
		buf[len++] = mask[i] ? '1' : '0';
	}
	FLUSH_IF(4);
	memcpy(buf + len, "]}\n", 3);
	len += 3;
	if (fwrite(buf, 1, len, fp) != len)
		goto werr;
	return 0;
#undef FLUSH_IF
werr:
	return sft_error_set(err, SFT_EXIT_RUNTIME, "write failed: %s", strerror(errno));
}

int shard_jsonl_parse(const char *line, size_t len, const char *name, long lineno, shard_buf *buf, size_t *n,
		      sft_error *err)
{
	json_t *o = json_parse_located(line, len, name, lineno, 0, err);
	if (!o)
		return -SFT_EXIT_DATA;
	int rc = 0;
	json_t *ids = json_object_get(o, "input_ids");
	json_t *mask = json_object_get(o, "mask");
	if (!json_is_array(ids)) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: expected \"input_ids\": an array of token ids", name, lineno);
		goto out;
	}
	size_t cnt = json_array_size(ids);
	if (mask && (!json_is_array(mask) || json_array_size(mask) != cnt)) {
		rc = sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: expected \"mask\": an array of %zu 0/1 ints like input_ids",
				   name, lineno, cnt);
		goto out;
	}
	if (cnt > MAX_TOKENS || buf_reserve(buf, cnt, 0) < 0) {
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s:%ld: out of memory for %zu tokens", name, lineno, cnt);
		goto out;
	}
	for (size_t i = 0; i < cnt; i++) {
		json_t *t = json_array_get(ids, i);
		json_int_t v = json_is_integer(t) ? json_integer_value(t) : -1;
		if (v < 0 || v > (json_int_t)UINT32_MAX) {
			rc = sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: input_ids[%zu]: expected a token id (0..4294967295)",
					   name, lineno, i);
			goto out;
		}
		buf->tokens[i] = (uint32_t)v;
		if (mask) {
			json_t *m = json_array_get(mask, i);
			json_int_t mv = json_is_integer(m) ? json_integer_value(m) : -1;
			if (mv != 0 && mv != 1) {
				rc = sft_error_set(err, SFT_EXIT_DATA, "%s:%ld: mask[%zu]: expected 0 or 1", name, lineno, i);
				goto out;
			}
			buf->mask[i] = (uint8_t)mv;
		} else {
			buf->mask[i] = 1;
		}
	}
	*n = cnt;
out:
	json_decref(o);
	return rc;
}
