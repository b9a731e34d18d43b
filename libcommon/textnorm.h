/* textnorm.h - text normalization for comparison (dedup keys, shingles).
 *
 * Steps, in order, each behind a flag:
 *   TEXTNORM_NFC          Unicode NFC (libutf8proc)
 *   TEXTNORM_CASEFOLD     full Unicode case folding (ASCII: tolower)
 *   TEXTNORM_STRIP_PUNCT  drop code points of general category P* (punctuation)
 *   TEXTNORM_STRIP_DIGITS drop code points of category Nd (decimal digits)
 *   TEXTNORM_WS           collapse runs of whitespace (Python's str.isspace set) into one
 *                         ' ', trim both ends
 * NFC + CASEFOLD together compute NFC(casefold(NFD(s))), as utf8proc does; for the text in
 * the parity fixtures this equals Python's NFC(NFC(s).casefold()). ASCII input takes a
 * fast path that never calls utf8proc.
 *
 * Ownership: a textnorm_buf is caller-owned working memory (textnorm_buf_free releases
 * it); textnorm_apply returns a pointer into it, valid until the next call. Thread-safe
 * with one buffer per thread. Input must be valid UTF-8 (invalid bytes are passed through
 * by the ASCII path and replaced by U+FFFD otherwise). */
#ifndef SFT_TEXTNORM_H
#define SFT_TEXTNORM_H

#include <stddef.h>

enum {
	TEXTNORM_NFC = 1,
	TEXTNORM_CASEFOLD = 2,
	TEXTNORM_WS = 4,
	TEXTNORM_STRIP_PUNCT = 8,
	TEXTNORM_STRIP_DIGITS = 16,
};

typedef struct textnorm_buf {
	char *out;
	size_t cap;
	int *cps; /* code point scratch */
	size_t cps_cap;
} textnorm_buf;

/* Normalizes s[0..len) with `flags`; returns the result (NUL-terminated) and its length
 * in *out_len, or NULL on allocation failure. */
const char *textnorm_apply(textnorm_buf *b, const char *s, size_t len, int flags, size_t *out_len);
void textnorm_buf_free(textnorm_buf *b);

/* Code points in valid UTF-8 text (counts lead bytes). */
size_t textnorm_count_chars(const char *s, size_t len);
/* Whitespace-separated words (Python str.split()). */
size_t textnorm_count_words(const char *s, size_t len);
/* Lines: 0 for "", else 1 + number of '\n' not at the very end. */
size_t textnorm_count_lines(const char *s, size_t len);
/* 1 if the text is empty or only whitespace. */
int textnorm_is_blank(const char *s, size_t len);

#endif
