/* json_scan.h - the one JSON lexer of sftkit: strings (escapes, UTF-8), numbers,
 * whitespace, per RFC 8259 with jansson's strictness.
 *
 * Two parsers sit on it: jsonl.c's fast reader that builds jansson values
 * (json_parse_located, jsonl_next) and ds-dedup's arena DOM (tools/ds-dedup/jdom.c),
 * which extracts text without building jansson values. Keep the scanning here so the
 * two accept exactly the same language.
 *
 * Ownership: nothing is allocated here; callers pass the input [s, end) and, for
 * json_scan_unescape, an output buffer they own. Error positions point into the input. */
#ifndef SFT_JSON_SCAN_H
#define SFT_JSON_SCAN_H

#include <stddef.h>

enum json_scan_status {
	JSCAN_OK = 0,
	JSCAN_ESCAPED = 1,      /* json_scan_string: the string has escapes (*pos at the '\') */
	JSCAN_CTRL = -1,        /* control character in string */
	JSCAN_UTF8 = -2,        /* invalid UTF-8 in string */
	JSCAN_UNTERMINATED = -3,
	JSCAN_ESCAPE = -4,      /* unknown escape (*pos at the letter after '\') */
	JSCAN_UESCAPE = -5,     /* bad hex digit in \uXXXX (*pos at it) */
	JSCAN_SURROGATE = -6,   /* lone or malformed UTF-16 surrogate */
	JSCAN_NUL = -7,         /* \u0000 where not allowed */
	JSCAN_NUMBER = -8,      /* number syntax */
};

/* A short lowercase description of a negative status ("control character in string"). */
const char *json_scan_strerror(int status);

/* Length of the prefix of s[0..n) that needs no attention from a string reader (no '"',
 * '\\', byte < 0x20, and when stop_high no byte >= 0x80) or writer (also stop_del: no
 * 0x7f). SSE2 16 bytes at a time where available. */
size_t json_scan_plain(const unsigned char *s, size_t n, int stop_high, int stop_del);

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates, at most
 * U+10FFFF; s < end), or 0. */
size_t json_utf8_seq(const unsigned char *s, const unsigned char *end);
/* 1 if s[0..n) is valid UTF-8. */
int json_utf8_valid(const char *s, size_t n);

static inline const unsigned char *json_scan_ws(const unsigned char *s, const unsigned char *end)
{
	while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
		s++;
	return s;
}

/* String body at s (just after the opening quote), first pass. JSCAN_OK: no escapes, the
 * value is [s, *pos) and *pos is at the closing quote. JSCAN_ESCAPED: *pos is at the
 * first '\' (finish with json_scan_unescape). Negative: an error at *pos. */
int json_scan_string(const unsigned char *s, const unsigned char *end, const unsigned char **pos);

/* Decodes the string body at s (just after the opening quote) whose first escape is at
 * esc into dst, which must hold end - s bytes (the value is never longer than its
 * source). JSCAN_OK: *out_len bytes in dst, *pos just after the closing quote,
 * *has_nul when it holds U+0000 (only possible with allow_nul; else JSCAN_NUL). */
int json_scan_unescape(const unsigned char *s, const unsigned char *esc, const unsigned char *end,
		       int allow_nul, char *dst, size_t *out_len, int *has_nul, const unsigned char **pos);

/* Number at s: JSCAN_OK with *pos after it and *is_real (a fraction or an exponent), or
 * JSCAN_NUMBER with *pos at the first wrong byte (at s when there is no digit). */
int json_scan_number(const unsigned char *s, const unsigned char *end, const unsigned char **pos, int *is_real);

#endif
