/* Fuzz target: tokenizer.json loader on arbitrary bytes; whatever loads is then used to
 * encode and decode a few strings (and the input itself) without crashing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sft_error e = { 0 };
	tokenizer *t = tokenizer_load_json((const char *)data, size, NULL, 0, "fuzz.json", &e);
	if (!t)
		return 0;
	static const char *texts[] = { "", "Hello world!", "  a\tb\n\nc 123 <s> </s>", "\xff\xfe bad \xe2\x82",
		                       "日本語 😀 café" };
	for (size_t i = 0; i < sizeof texts / sizeof texts[0] + 1; i++) {
		const char *s = i < 5 ? texts[i] : (const char *)data;
		size_t n = i < 5 ? strlen(s) : (size > 512 ? 512 : size);
		uint32_t *ids;
		size_t nid, *st, *en;
		if (tokenizer_encode_offsets(t, s, n, (int)(i & 1), &ids, &st, &en, &nid, &e) == 0) {
			for (size_t k = 0; k < nid; k++)
				if (st[k] > en[k] || en[k] > n)
					abort();
			char *out;
			size_t ol;
			if (tokenizer_decode(t, ids, nid, (int)(i & 1), &out, &ol, &e) == 0)
				free(out);
			free(ids);
			free(st);
			free(en);
		}
	}
	for (uint32_t id = 0; id < tokenizer_vocab_size(t) && id < 64; id++) {
		const char *tok = tokenizer_id_to_token(t, id);
		if (tok)
			(void)tokenizer_token_to_id(t, tok);
		(void)tokenizer_is_special(t, id);
	}
	uint8_t fp[16];
	tokenizer_fingerprint(t, fp);
	tokenizer_free(t);
	return 0;
}
