/* json_scan.c - the JSON lexer shared by jsonl.c and ds-dedup's jdom (see json_scan.h). */
#include "json_scan.h"
#include "utf8.h"

#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

const char *json_scan_strerror(int status)
{
	switch (status) {
	case JSCAN_CTRL: return "control character in string";
	case JSCAN_UTF8: return "invalid UTF-8 in string";
	case JSCAN_UNTERMINATED: return "unterminated string";
	case JSCAN_ESCAPE: return "invalid escape";
	case JSCAN_UESCAPE: return "invalid \\u escape";
	case JSCAN_SURROGATE: return "invalid Unicode surrogate pair";
	case JSCAN_NUL: return "\\u0000 is not allowed";
	case JSCAN_NUMBER: return "invalid number";
	}
	return "invalid JSON";
}

size_t json_scan_plain(const unsigned char *s, size_t n, int stop_high, int stop_del)
{
	size_t i = 0;
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
		      ctl = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);
	for (; i + 16 <= n; i += 16) {
		__m128i x = _mm_loadu_si128((const __m128i *)(s + i));
		__m128i bad = _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash));
		bad = _mm_or_si128(bad, _mm_cmpeq_epi8(_mm_max_epu8(x, ctl), ctl)); /* x <= 0x1f */
		if (stop_del)
			bad = _mm_or_si128(bad, _mm_cmpeq_epi8(x, del));
		int m = _mm_movemask_epi8(bad);
		if (stop_high)
			m |= _mm_movemask_epi8(x);
		if (m)
			return i + (size_t)__builtin_ctz((unsigned)m);
	}
#endif
	for (; i < n; i++) {
		unsigned c = s[i];
		if (c == '"' || c == '\\' || c < 0x20 || (stop_high && c >= 0x80) || (stop_del && c == 0x7f))
			break;
	}
	return i;
}

size_t json_utf8_seq(const unsigned char *s, const unsigned char *end)
{
	unsigned c = s[0];
	if (c < 0x80)
		return 1;
	if (c < 0xC2 || c > 0xF4)
		return 0;
	if (c < 0xE0)
		return end - s >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
	if (c < 0xF0) {
		if (end - s < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
			return 0;
		if (c == 0xE0 && s[1] < 0xA0)
			return 0; /* overlong */
		if (c == 0xED && s[1] >= 0xA0)
			return 0; /* surrogate */
		return 3;
	}
	if (end - s < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
		return 0;
	if (c == 0xF0 && s[1] < 0x90)
		return 0; /* overlong */
	if (c == 0xF4 && s[1] >= 0x90)
		return 0; /* > U+10FFFF */
	return 4;
}

int json_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	while (p < end) {
#ifdef __SSE2__
		while (end - p >= 16 && !_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)p)))
			p += 16;
#endif
		while (p < end && *p < 0x80)
			p++;
		if (p >= end)
			break;
		size_t k = json_utf8_seq(p, end);
		if (!k)
			return 0;
		p += k;
	}
	return 1;
}

int json_scan_string(const unsigned char *s, const unsigned char *end, const unsigned char **pos)
{
	const unsigned char *p = s;
	while (p < end) {
		p += json_scan_plain(p, (size_t)(end - p), 1, 0);
		if (p >= end)
			break;
		unsigned c = *p;
		*pos = p;
		if (c == '"')
			return JSCAN_OK;
		if (c == '\\')
			return JSCAN_ESCAPED;
		if (c < 0x20)
			return JSCAN_CTRL;
		size_t k = json_utf8_seq(p, end);
		if (!k)
			return JSCAN_UTF8;
		p += k;
	}
	*pos = end;
	return JSCAN_UNTERMINATED;
}

static int hexval(unsigned c)
{
	if (c >= '0' && c <= '9')
		return (int)(c - '0');
	if (c >= 'a' && c <= 'f')
		return (int)(c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (int)(c - 'A' + 10);
	return -1;
}

/* Four hex digits at *p (advanced past them); -1 with *p at the first bad one. */
static long hex4(const unsigned char **p, const unsigned char *end)
{
	long v = 0;
	for (int k = 0; k < 4; k++) {
		int h = *p < end ? hexval(**p) : -1;
		if (h < 0)
			return -1;
		v = v * 16 + h;
		(*p)++;
	}
	return v;
}

int json_scan_unescape(const unsigned char *s, const unsigned char *esc, const unsigned char *end,
		       int allow_nul, char *dst, size_t *out_len, int *has_nul, const unsigned char **pos)
{
	size_t n = (size_t)(esc - s);
	memcpy(dst, s, n);
	const unsigned char *p = esc;
	*has_nul = 0;
	while (p < end) {
		unsigned c = *p;
		if (c == '"') {
			*pos = p + 1;
			*out_len = n;
			return JSCAN_OK;
		}
		*pos = p;
		if (c < 0x20)
			return JSCAN_CTRL;
		if (c != '\\') {
			size_t k = c < 0x80 ? json_scan_plain(p, (size_t)(end - p), 1, 0) : json_utf8_seq(p, end);
			if (!k)
				return JSCAN_UTF8;
			memcpy(dst + n, p, k);
			n += k;
			p += k;
			continue;
		}
		if (++p >= end)
			break;
		switch ((c = *p++)) {
		case '"': dst[n++] = '"'; break;
		case '\\': dst[n++] = '\\'; break;
		case '/': dst[n++] = '/'; break;
		case 'b': dst[n++] = '\b'; break;
		case 'f': dst[n++] = '\f'; break;
		case 'n': dst[n++] = '\n'; break;
		case 'r': dst[n++] = '\r'; break;
		case 't': dst[n++] = '\t'; break;
		case 'u': {
			long cp = hex4(&p, end);
			*pos = p;
			if (cp < 0)
				return JSCAN_UESCAPE;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
					return JSCAN_SURROGATE;
				p += 2;
				long lo = hex4(&p, end);
				*pos = p;
				if (lo < 0)
					return JSCAN_UESCAPE;
				if (lo < 0xDC00 || lo > 0xDFFF)
					return JSCAN_SURROGATE;
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				return JSCAN_SURROGATE;
			}
			if (cp == 0) {
				if (!allow_nul)
					return JSCAN_NUL;
				*has_nul = 1;
			}
			/* \uXXXX is 6 bytes of input and at most 3 of output (4 for 12) */
			n += utf8_encode(cp, (char *)dst + n);
			break;
		}
		default:
			*pos = p - 1;
			return JSCAN_ESCAPE;
		}
	}
	*pos = end;
	return JSCAN_UNTERMINATED;
}

static int is_digit(const unsigned char *p, const unsigned char *end)
{
	return p < end && *p >= '0' && *p <= '9';
}

int json_scan_number(const unsigned char *s, const unsigned char *end, const unsigned char **pos, int *is_real)
{
	const unsigned char *p = s;
	*is_real = 0;
	*pos = s;
	if (p < end && *p == '-')
		p++;
	if (p >= end)
		return JSCAN_NUMBER;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (is_digit(p, end))
			p++;
	else
		return JSCAN_NUMBER;
	if (p < end && *p == '.') {
		*is_real = 1;
		if (!is_digit(++p, end))
			return *pos = p, JSCAN_NUMBER;
		while (is_digit(p, end))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		*is_real = 1;
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (!is_digit(p, end))
			return *pos = p, JSCAN_NUMBER;
		while (is_digit(p, end))
			p++;
	}
	*pos = p;
	return JSCAN_OK;
}
