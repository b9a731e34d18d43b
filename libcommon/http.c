/* http.c - libcurl downloads with retries and resume; SHA-256. See http.h. */
#include "http.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "progress.h"

/* ---- SHA-256 ---- */

static const uint32_t K256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const unsigned char *p)
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
		       p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
		uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		hh = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void sha256_init(sha256_ctx *c)
{
	static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
				       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(c->h, iv, sizeof iv);
	c->nbytes = 0;
	c->nbuf = 0;
}

void sha256_update(sha256_ctx *c, const void *data, size_t len)
{
	const unsigned char *p = data;
	c->nbytes += len;
	if (c->nbuf) {
		size_t k = 64 - c->nbuf < len ? 64 - c->nbuf : len;
		memcpy(c->buf + c->nbuf, p, k);
		c->nbuf += k;
		p += k;
		len -= k;
		if (c->nbuf == 64) {
			sha256_block(c->h, c->buf);
			c->nbuf = 0;
		}
	}
	for (; len >= 64; p += 64, len -= 64)
		sha256_block(c->h, p);
	memcpy(c->buf, p, len);
	c->nbuf += len;
}

void sha256_final(sha256_ctx *c, unsigned char out[32])
{
	uint64_t bits = c->nbytes * 8;
	unsigned char pad = 0x80;
	sha256_update(c, &pad, 1);
	unsigned char zero = 0;
	while (c->nbuf != 56)
		sha256_update(c, &zero, 1);
	unsigned char len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (unsigned char)(bits >> (56 - 8 * i));
	sha256_update(c, len, 8);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (unsigned char)(c->h[i] >> 24);
		out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
		out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
		out[4 * i + 3] = (unsigned char)c->h[i];
	}
}

int sha256_file_hex(const char *path, char hex[65], sft_error *err)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
	sha256_ctx c;
	sha256_init(&c);
	unsigned char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
		sha256_update(&c, buf, n);
	int bad = ferror(fp);
	fclose(fp);
	if (bad)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: read error", path);
	unsigned char d[32];
	sha256_final(&c, d);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	return 0;
}

/* ---- HTTP ---- */

void http_opts_default(http_opts *o)
{
	memset(o, 0, sizeof *o);
	o->max_attempts = 5;
	o->backoff_ms = 500;
	o->connect_timeout_s = 30;
	o->stall_timeout_s = 60;
}

char *http_escape(const char *s, int keep_slash)
{
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *q = out;
	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/'))
			*q++ = (char)*p;
		else
			q += sprintf(q, "%%%02X", *p);
	}
	*q = '\0';
	return out;
}

static void curl_global_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* Once per process, thread-safe (http_post_json runs on several threads at once). */
static void curl_global(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, curl_global_once);
}

static long backoff_for(const http_opts *o, int attempt)
{
	long base = o->backoff_ms;
	const char *e = getenv("SFT_HTTP_BACKOFF_MS");
	if (e && *e)
		base = atol(e);
	long ms = base;
	for (int i = 1; i < attempt && ms < 30000; i++)
		ms *= 2;
	return ms > 30000 ? 30000 : ms;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int retryable_status(long st)
{
	return st == 408 || st == 429 || st == 500 || st == 502 || st == 503 || st == 504;
}

static int retryable_curl(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

typedef struct xfer {
	CURL *h;
	/* memory sink */
	char *buf;
	size_t len, cap;
	/* file sink */
	FILE *fp;
	int64_t resume_from; /* bytes already in the .part file when the request was sent */
	int decided;         /* file sink: status seen, file truncated if needed */
	int write_failed;
	char *next_link;
	progress *prog;
} xfer;

static size_t mem_write(char *p, size_t sz, size_t n, void *ud)
{
	xfer *x = ud;
	size_t k = sz * n;
	if (x->len + k + 1 > x->cap) {
		size_t nc = x->cap ? x->cap : 4096;
		while (nc < x->len + k + 1)
			nc *= 2;
		char *nb = realloc(x->buf, nc);
		if (!nb)
			return 0;
		x->buf = nb;
		x->cap = nc;
	}
	memcpy(x->buf + x->len, p, k);
	x->len += k;
	x->buf[x->len] = '\0';
	return k;
}

static size_t file_write(char *p, size_t sz, size_t n, void *ud)
{
	xfer *x = ud;
	size_t k = sz * n;
	long st = 0;
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &st);
	if (st < 200 || st >= 300) {
		/* error body: keep a little of it for the message, never in the file */
		if (x->len < 512)
			mem_write(p, 1, k < 512 ? k : 512, x);
		return k;
	}
	if (!x->decided) {
		x->decided = 1;
		if (st != 206 && x->resume_from > 0) {
			/* server ignored the Range: start over */
			if (ftruncate(fileno(x->fp), 0) != 0 || fseek(x->fp, 0, SEEK_SET) != 0) {
				x->write_failed = 1;
				return 0;
			}
			x->resume_from = 0;
		}
	}
	if (fwrite(p, 1, k, x->fp) != k) {
		x->write_failed = 1;
		return 0;
	}
	if (x->prog)
		progress_add(x->prog, 0, k);
	return k;
}

static size_t header_cb(char *p, size_t sz, size_t n, void *ud)
{
	xfer *x = ud;
	size_t k = sz * n;
	if (k > 5 && strncasecmp(p, "link:", 5) == 0) {
		/* Link: <url>; rel="next", <url2>; rel="prev" */
		char *line = strndup(p + 5, k - 5);
		if (!line)
			return k;
		for (char *s = line; (s = strchr(s, '<'));) {
			char *e = strchr(s, '>');
			if (!e)
				break;
			char *semi = e + 1;
			char *comma = strchr(semi, ',');
			size_t span = comma ? (size_t)(comma - semi) : strlen(semi);
			char *rel = strndup(semi, span);
			if (rel && strstr(rel, "rel=\"next\"")) {
				free(x->next_link);
				x->next_link = strndup(s + 1, (size_t)(e - s - 1));
			}
			free(rel);
			s = e + 1;
		}
		free(line);
	}
	return k;
}

static CURL *easy_new(const http_opts *o, const char *url, struct curl_slist **hdrs)
{
	curl_global();
	CURL *h = curl_easy_init();
	if (!h)
		return NULL;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, o->connect_timeout_s);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o->stall_timeout_s);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "sftkit/ds-fetch libcurl");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, ""); /* gzip'd API responses */
	*hdrs = NULL;
	if (o->token && *o->token) {
		char *auth = malloc(strlen(o->token) + 32);
		sprintf(auth, "Authorization: Bearer %s", o->token);
		*hdrs = curl_slist_append(*hdrs, auth);
		free(auth);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
	}
	return h;
}

/* Runs a prepared transfer and frees it with its header list: the curl result, and the
 * HTTP status (0 when none came back) in *status. */
static CURLcode perform_free(CURL *h, struct curl_slist *hdrs, long *status)
{
	CURLcode rc = curl_easy_perform(h);
	*status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	return rc;
}

static int status_error(const char *url, long st, const http_opts *o, sft_error *err)
{
	if (st == 401 || st == 403)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: HTTP %ld (%s)", url, st,
				     o->token ? "the token in HF_TOKEN was refused"
					      : "authentication required: set HF_TOKEN");
	return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: HTTP %ld", url, st);
}

int http_get_mem(const http_opts *o, const char *url, int allow_404, char **body, size_t *len, long *status,
		 char **next_url, sft_error *err)
{
	int attempts = o->max_attempts > 0 ? o->max_attempts : 1;
	for (int attempt = 1;; attempt++) {
		struct curl_slist *hdrs;
		CURL *h = easy_new(o, url, &hdrs);
		if (!h)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot initialize libcurl", url);
		xfer x = {.h = h};
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, mem_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
		long st;
		CURLcode rc = perform_free(h, hdrs, &st);
		int retry = 0;
		if (rc != CURLE_OK)
			retry = retryable_curl(rc);
		else if (retryable_status(st))
			retry = 1;
		if (rc == CURLE_OK && ((st >= 200 && st < 300) || (st == 404 && allow_404))) {
			if (status)
				*status = st;
			if (!x.buf)
				x.buf = calloc(1, 1);
			*body = x.buf;
			*len = x.len;
			if (next_url)
				*next_url = x.next_link;
			else
				free(x.next_link);
			return 0;
		}
		free(x.buf);
		free(x.next_link);
		if (!retry || attempt >= attempts) {
			if (rc != CURLE_OK)
				return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s (after %d attempt%s)", url,
						     curl_easy_strerror(rc), attempt, attempt > 1 ? "s" : "");
			if (retry)
				return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: HTTP %ld (after %d attempts)", url, st,
						     attempt);
			return status_error(url, st, o, err);
		}
		sleep_ms(backoff_for(o, attempt));
	}
}

int http_download(const http_opts *o, const char *url, const char *dest, int64_t expect_size,
		  const char *expect_sha256, sft_error *err)
{
	size_t dl = strlen(dest);
	char *part = malloc(dl + 8);
	char *dir = strdup(dest);
	if (!part || !dir) {
		free(part);
		free(dir);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	}
	char *slash = strrchr(dir, '/');
	int ret = 0, lock_fd = -1;
	if (slash && slash != dir) {
		*slash = '\0';
		if (fs_mkdir_p(dir, err) < 0) {
			ret = -err->code;
			goto out;
		}
	}
	/* one downloader per file: a second process waits for the lock, then finds it done */
	sprintf(part, "%s.lock", dest);
	lock_fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX) != 0) {
		ret = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: lock: %s", part, strerror(errno));
		goto out;
	}
	sprintf(part, "%s.part", dest);
	struct stat dst;
	if (stat(dest, &dst) == 0 && (expect_size < 0 || (int64_t)dst.st_size == expect_size))
		goto out;
	int attempts = o->max_attempts > 0 ? o->max_attempts : 1;
	for (int attempt = 1;; attempt++) {
		FILE *fp = fopen(part, "ab");
		if (!fp) {
			ret = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", part, strerror(errno));
			goto out;
		}
		struct stat st;
		int64_t have = fstat(fileno(fp), &st) == 0 ? (int64_t)st.st_size : 0;
		if (expect_size >= 0 && have > expect_size) {
			/* stale or foreign .part: start over */
			if (ftruncate(fileno(fp), 0) != 0) {
				fclose(fp);
				ret = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", part, strerror(errno));
				goto out;
			}
			have = 0;
		}
		if (expect_size >= 0 && have == expect_size && have > 0) {
			fclose(fp);
			break; /* complete already: verify below */
		}
		struct curl_slist *hdrs;
		CURL *h = easy_new(o, url, &hdrs);
		if (!h) {
			fclose(fp);
			ret = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot initialize libcurl", url);
			goto out;
		}
		xfer x = {.h = h, .fp = fp, .resume_from = have};
		progress prog;
		if (o->progress) {
			progress_start(&prog, "files", 0, expect_size > 0 ? (uint64_t)expect_size : 0);
			progress_add(&prog, 0, (uint64_t)have);
			x.prog = &prog;
		}
		if (have > 0) {
			char range[64];
			snprintf(range, sizeof range, "%lld-", (long long)have);
			curl_easy_setopt(h, CURLOPT_RANGE, range);
		}
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, file_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
		long status;
		CURLcode rc = perform_free(h, hdrs, &status);
		if (x.prog)
			progress_finish(x.prog);
		free(x.buf);
		int closed_bad = fclose(fp) != 0;
		if (x.write_failed || closed_bad) {
			ret = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write error: %s", part, strerror(errno));
			goto out;
		}
		if (rc == CURLE_OK && status == 416 && have > 0) {
			/* range past the end: what we have is (claimed) complete; verify below,
			 * and if that fails, the next run starts from scratch */
			break;
		}
		if (rc == CURLE_OK && status >= 200 && status < 300)
			break;
		int retry = rc != CURLE_OK ? retryable_curl(rc) : retryable_status(status);
		if (!retry || attempt >= attempts) {
			if (rc != CURLE_OK)
				ret = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s (after %d attempt%s)", url,
						    curl_easy_strerror(rc), attempt, attempt > 1 ? "s" : "");
			else if (retry)
				ret = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: HTTP %ld (after %d attempts)", url,
						    status, attempt);
			else
				ret = status_error(url, status, o, err);
			goto out;
		}
		sleep_ms(backoff_for(o, attempt));
	}
	/* verify */
	struct stat st;
	if (stat(part, &st) != 0) {
		ret = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", part, strerror(errno));
		goto out;
	}
	if (expect_size >= 0 && (int64_t)st.st_size != expect_size) {
		unlink(part);
		ret = sft_error_set(err, SFT_EXIT_DATA, "%s: size mismatch: got %lld bytes, expected %lld", url,
				    (long long)st.st_size, (long long)expect_size);
		goto out;
	}
	if (expect_sha256 && *expect_sha256) {
		char hex[65];
		if (sha256_file_hex(part, hex, err) < 0) {
			ret = -err->code;
			goto out;
		}
		if (strcasecmp(hex, expect_sha256) != 0) {
			unlink(part);
			ret = sft_error_set(err, SFT_EXIT_DATA, "%s: checksum mismatch: sha256 %s, expected %s", url, hex,
					    expect_sha256);
			goto out;
		}
	}
	if (rename(part, dest) != 0) {
		ret = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: rename: %s", dest, strerror(errno));
		goto out;
	}
out:
	if (lock_fd >= 0)
		close(lock_fd); /* releases the lock */
	free(part);
	free(dir);
	return ret;
}

int http_post_json(const http_opts *o, const char *url, const char *body, size_t body_len, char **resp,
		   size_t *resp_len, long *status, sft_error *err)
{
	int attempts = o->max_attempts > 0 ? o->max_attempts : 1;
	for (int attempt = 1;; attempt++) {
		struct curl_slist *hdrs;
		CURL *h = easy_new(o, url, &hdrs);
		if (!h)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot initialize libcurl", url);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		hdrs = curl_slist_append(hdrs, "Accept: application/json");
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_USERAGENT, "sftkit libcurl");
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
		if (o->timeout_s > 0)
			curl_easy_setopt(h, CURLOPT_TIMEOUT, o->timeout_s);
		xfer x = {.h = h};
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, mem_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
		long st;
		CURLcode rc = perform_free(h, hdrs, &st);
		if (status)
			*status = st;
		if (rc == CURLE_OK && st >= 200 && st < 300) {
			if (!x.buf)
				x.buf = calloc(1, 1);
			*resp = x.buf;
			*resp_len = x.len;
			return 0;
		}
		int retry = rc != CURLE_OK ? retryable_curl(rc) : retryable_status(st);
		if (!retry || attempt >= attempts) {
			int r;
			if (rc != CURLE_OK)
				r = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s (after %d attempt%s)", url,
						  curl_easy_strerror(rc), attempt, attempt > 1 ? "s" : "");
			else
				r = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: HTTP %ld%s%s%.300s", url, st,
						  retry ? " (after all attempts)" : "", x.len ? ": " : "", x.buf ? x.buf : "");
			free(x.buf);
			return r;
		}
		free(x.buf);
		sleep_ms(backoff_for(o, attempt));
	}
}
