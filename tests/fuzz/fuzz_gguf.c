/* Fuzz target: GGUF reader on arbitrary bytes (header, every KV type, arrays, tensor
 * infos), then the GGUF tokenizer builder on whatever parses. */
#include <stdint.h>
#include <stdlib.h>
#include "gguf.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sft_error e = { 0 };
	gguf_file *g = gguf_open_mem(data, size, "fuzz.gguf", &e);
	if (!g)
		return 0;
	volatile uint64_t sink = 0;
	for (uint64_t i = 0; i < g->n_kv; i++) {
		const gguf_kv *kv = &g->kv[i];
		if (kv->type != GGUF_ARRAY)
			continue;
		uint64_t n = kv->arr_n < 4096 ? kv->arr_n : 4096;
		for (uint64_t k = 0; k < n; k++) {
			gguf_str s;
			if (kv->arr_type == GGUF_STRING) {
				if (gguf_arr_str(kv, k, &s) == 0 && s.n)
					sink += (uint8_t)s.s[s.n - 1];
			} else {
				sink += (uint64_t)gguf_arr_i64(kv, k);
				sink += gguf_arr_f64(kv, k) > 0;
			}
		}
	}
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if (g->tensors[i].data && g->tensors[i].size)
			sink += ((const uint8_t *)g->tensors[i].data)[g->tensors[i].size - 1];
	tokenizer *t = tokenizer_from_gguf(g, &e);
	gguf_close(g);
	if (t) {
		uint32_t *ids;
		size_t n;
		if (tokenizer_encode(t, "Hello world 123 \xff", 17, 1, &ids, &n, &e) == 0) {
			char *out;
			size_t ol;
			if (tokenizer_decode(t, ids, n, 0, &out, &ol, &e) == 0)
				free(out);
			free(ids);
		}
		tokenizer_free(t);
	}
	(void)sink;
	return 0;
}
