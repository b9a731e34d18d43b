/* utf8.h - UTF-8 helpers shared by the JSON lexer, the Jinja engine and the tokenizer.
 * Header-only (static inline); nothing is allocated. */
#ifndef SFT_UTF8_H
#define SFT_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Writes the UTF-8 encoding of code point cp (<= 0x10FFFF) to out (room for 4 bytes);
 * returns the number of bytes written (1-4). */
static inline size_t utf8_encode(uint32_t cp, char *out)
{
	unsigned char *o = (unsigned char *)out;
	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xC0 | (cp >> 6));
		o[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xE0 | (cp >> 12));
		o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (unsigned char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (unsigned char)(0xF0 | (cp >> 18));
	o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (unsigned char)(0x80 | (cp & 0x3F));
	return 4;
}

#endif
