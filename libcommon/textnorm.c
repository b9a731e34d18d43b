/* textnorm.c - NFC, case folding, punctuation/digit stripping, whitespace collapse. */
#include "textnorm.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static int is_space_cp(int32_t c)
{
	/* Python str.isspace() */
	return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
	       c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
	       c == 0x205F || c == 0x3000;
}

static int is_punct_ascii(unsigned char c)
{
	/* ASCII code points of Unicode category P* ($+<=>^`|~ are symbols, S*) */
	return strchr("!\"#%&'()*,-./:;?@[\\]_{}", c) != NULL && c != 0;
}

/* ASCII tables for the common flags: tab[fold][c] is the output byte (whitespace as
 * ' '), isws[c] marks Python whitespace. Built once (pthread_once: thread-safe). */
static unsigned char tab[2][128], isws[128];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void init_tables(void)
{
	for (int c = 0; c < 128; c++) {
		isws[c] = (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
		tab[0][c] = isws[c] ? ' ' : (unsigned char)c;
		tab[1][c] = isws[c] ? ' ' : (unsigned char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
}

static int ensure(textnorm_buf *b, size_t need)
{
	if (need <= b->cap) return 0;
	size_t nc = b->cap ? b->cap : 256;
	while (nc < need) nc *= 2;
	char *n = realloc(b->out, nc);
	if (!n) return -1;
	b->out = n, b->cap = nc;
	return 0;
}

/* The common flags (whitespace collapse, optional ASCII case folding, no stripping) on
 * text that may not be ASCII: returns the result, or sets *not_ascii and returns NULL
 * when a byte >= 0x80 is seen (the caller then takes the Unicode path). 16 bytes at a
 * time (SSE2) where a block has no whitespace other than single spaces that follow a
 * non-space: such a block is stored whole (case-folded); other blocks, and the tail, go
 * through the branch-free byte loop (every byte is stored, whitespace as ' ', and the
 * write position only advances past a space that follows a non-space). */
static const char *ws_fold_path(textnorm_buf *b, const char *s, size_t len, int fold, size_t *out_len, int *not_ascii)
{
	if (ensure(b, len + 17) < 0) return NULL;
	pthread_once(&tables_once, init_tables);
	char *o = b->out;
	const unsigned char *t = tab[fold ? 1 : 0];
	size_t n = 0, i = 0;
	unsigned prev = 1; /* leading whitespace is dropped */
#ifdef __SSE2__
	const __m128i sp = _mm_set1_epi8(' '), c08 = _mm_set1_epi8(0x08), c0e = _mm_set1_epi8(0x0E),
		      c1b = _mm_set1_epi8(0x1B), c21 = _mm_set1_epi8(0x21), ca = _mm_set1_epi8('A' - 1),
		      cz = _mm_set1_epi8('Z' + 1), c20 = _mm_set1_epi8(0x20);
	const __m128i fmask = fold ? _mm_set1_epi8(-1) : _mm_setzero_si128();
	for (; i + 16 <= len; i += 16) {
		__m128i x = _mm_loadu_si128((const __m128i *)(s + i));
		if (_mm_movemask_epi8(x)) {
			*not_ascii = 1;
			return NULL;
		}
		/* all bytes < 0x80 here, so signed compares are unsigned ones */
		__m128i ctl = _mm_or_si128(_mm_and_si128(_mm_cmpgt_epi8(x, c08), _mm_cmplt_epi8(x, c0e)),
					   _mm_and_si128(_mm_cmpgt_epi8(x, c1b), _mm_cmplt_epi8(x, c21)));
		__m128i isp = _mm_cmpeq_epi8(x, sp);
		unsigned ws = (unsigned)_mm_movemask_epi8(ctl);        /* includes ' ' (0x20) */
		unsigned other = ws & ~(unsigned)_mm_movemask_epi8(isp); /* whitespace other than ' ' */
		if (!other && !(ws & ((ws << 1) | prev))) {
			__m128i up = _mm_and_si128(_mm_cmpgt_epi8(x, ca), _mm_cmplt_epi8(x, cz));
			x = _mm_add_epi8(x, _mm_and_si128(_mm_and_si128(up, c20), fmask));
			_mm_storeu_si128((__m128i *)(o + n), x);
			n += 16;
			prev = (ws >> 15) & 1;
			continue;
		}
		for (size_t k = i; k < i + 16; k++) {
			unsigned char c = (unsigned char)s[k];
			unsigned w = isws[c];
			o[n] = (char)t[c];
			n += !(w & prev);
			prev = w;
		}
	}
#endif
	for (; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c & 0x80) {
			*not_ascii = 1;
			return NULL;
		}
		unsigned w = isws[c];
		o[n] = (char)t[c];
		n += !(w & prev);
		prev = w;
	}
	if (n > 0 && prev) n--; /* trailing space */
	o[n] = 0;
	*out_len = n;
	return o;
}

static const char *ascii_path(textnorm_buf *b, const char *s, size_t len, int flags, size_t *out_len)
{
	if (ensure(b, len + 1) < 0) return NULL;
	char *o = b->out;
	size_t n = 0;
	int pending_space = 0;
	int ws = flags & TEXTNORM_WS, fold = flags & TEXTNORM_CASEFOLD;
	int sp = flags & TEXTNORM_STRIP_PUNCT, sd = flags & TEXTNORM_STRIP_DIGITS;
	if (ws && !sp && !sd) {
		/* the common case, branch-free: every byte is stored (whitespace as ' '), and
		 * the write position only advances past a space that follows a non-space */
		pthread_once(&tables_once, init_tables);
		const unsigned char *t = tab[fold ? 1 : 0];
		unsigned prev = 1; /* leading whitespace is dropped */
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)s[i];
			unsigned w = isws[c];
			o[n] = (char)t[c];
			n += !(w & prev);
			prev = w;
		}
		if (n > 0 && prev) n--; /* trailing space */
		o[n] = 0;
		*out_len = n;
		return o;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (ws && ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20))) {
			pending_space = n > 0;
			continue;
		}
		if (sp && is_punct_ascii(c)) continue;
		if (sd && c >= '0' && c <= '9') continue;
		if (pending_space) o[n++] = ' ', pending_space = 0;
		if (fold && c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
		o[n++] = (char)c;
	}
	o[n] = 0;
	*out_len = n;
	return o;
}

static const char *unicode_path(textnorm_buf *b, const char *s, size_t len, int flags, size_t *out_len);

const char *textnorm_apply(textnorm_buf *b, const char *s, size_t len, int flags, size_t *out_len)
{
	if ((flags & TEXTNORM_WS) && !(flags & (TEXTNORM_STRIP_PUNCT | TEXTNORM_STRIP_DIGITS))) {
		/* the common case: ASCII check fused with the normalization */
		int not_ascii = 0;
		const char *r = ws_fold_path(b, s, len, flags & TEXTNORM_CASEFOLD, out_len, &not_ascii);
		if (r || !not_ascii) return r;
		return unicode_path(b, s, len, flags, out_len);
	}
	size_t i = 0;
	/* ASCII check, 8 bytes at a time */
	for (; i + 8 <= len; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		if (w & 0x8080808080808080ULL) break;
	}
	for (; i < len; i++)
		if ((unsigned char)s[i] & 0x80) break;
	if (i == len) return ascii_path(b, s, len, flags, out_len);
	return unicode_path(b, s, len, flags, out_len);
}

static const char *unicode_path(textnorm_buf *b, const char *s, size_t len, int flags, size_t *out_len)
{
	const uint8_t *src = (const uint8_t *)s;
	utf8proc_uint8_t *mapped = NULL;
	size_t mlen = len;
	int opts = 0;
	if (flags & TEXTNORM_NFC) opts |= UTF8PROC_STABLE | UTF8PROC_COMPOSE;
	if (flags & TEXTNORM_CASEFOLD) opts |= UTF8PROC_CASEFOLD;
	if (opts) {
		utf8proc_ssize_t r = utf8proc_map(src, (utf8proc_ssize_t)len, &mapped, (utf8proc_option_t)opts);
		if (r >= 0) src = mapped, mlen = (size_t)r;
	}
	if (ensure(b, mlen * 1 + 8) < 0) {
		free(mapped);
		return NULL;
	}
	/* second pass: strip + whitespace; output never grows except U+FFFD for bad bytes */
	size_t n = 0;
	int pending_space = 0;
	size_t p = 0;
	while (p < mlen) {
		int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate(src + p, (utf8proc_ssize_t)(mlen - p), &c);
		if (k <= 0) c = 0xFFFD, k = 1;
		p += (size_t)k;
		if ((flags & TEXTNORM_WS) && is_space_cp(c)) {
			pending_space = n > 0;
			continue;
		}
		if (flags & (TEXTNORM_STRIP_PUNCT | TEXTNORM_STRIP_DIGITS)) {
			utf8proc_category_t cat = utf8proc_category(c);
			if ((flags & TEXTNORM_STRIP_PUNCT) && cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO)
				continue;
			if ((flags & TEXTNORM_STRIP_DIGITS) && cat == UTF8PROC_CATEGORY_ND) continue;
		}
		if (ensure(b, n + 8) < 0) {
			free(mapped);
			return NULL;
		}
		if (pending_space) b->out[n++] = ' ', pending_space = 0;
		n += (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)b->out + n);
	}
	free(mapped);
	b->out[n] = 0;
	*out_len = n;
	return b->out;
}

void textnorm_buf_free(textnorm_buf *b)
{
	if (!b) return;
	free(b->out);
	free(b->cps);
	memset(b, 0, sizeof *b);
}

size_t textnorm_count_chars(const char *s, size_t len)
{
	size_t n = 0, i = 0;
	for (; i + 8 <= len; i += 8) { /* ASCII words count 8 */
		uint64_t w;
		memcpy(&w, s + i, 8);
		if (!(w & 0x8080808080808080ULL)) {
			n += 8;
			continue;
		}
		for (int k = 0; k < 8; k++) n += ((unsigned char)s[i + k] & 0xC0) != 0x80;
	}
	for (; i < len; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
	return n;
}

size_t textnorm_count_words(const char *s, size_t len)
{
	size_t n = 0, p = 0;
	int in = 0;
	while (p < len) {
		int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + p, (utf8proc_ssize_t)(len - p), &c);
		if (k <= 0) c = 0xFFFD, k = 1;
		p += (size_t)k;
		if (is_space_cp(c)) in = 0;
		else if (!in) in = 1, n++;
	}
	return n;
}

size_t textnorm_count_lines(const char *s, size_t len)
{
	if (len == 0) return 0;
	size_t n = 1;
	for (size_t i = 0; i + 1 < len; i++) n += s[i] == '\n';
	return n;
}

int textnorm_is_blank(const char *s, size_t len)
{
	size_t p = 0;
	while (p < len) {
		int32_t c;
		utf8proc_ssize_t k = utf8proc_iterate((const uint8_t *)s + p, (utf8proc_ssize_t)(len - p), &c);
		if (k <= 0) return 0;
		p += (size_t)k;
		if (!is_space_cp(c)) return 0;
	}
	return 1;
}
