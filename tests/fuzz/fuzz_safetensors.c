/* Fuzz target: safetensors reader on arbitrary bytes (length prefix, JSON header, dtype /
 * shape / offset validation), fp32 conversion of every tensor that parses, and the GGML
 * dequantizer on the same bytes read as blocks of every type. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dequant.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sft_error e = { 0 };
	st_file *f = safetensors_open_mem(data, size, "fuzz.safetensors", &e);
	if (f) {
		for (size_t i = 0; i < f->n_tensors; i++) {
			const st_tensor *t = &f->tensors[i];
			if (t->n_elements > (1u << 20))
				continue;
			float *out = malloc((size_t)t->n_elements * sizeof *out + 1); // (n_elements,)
			if (out)
				safetensors_tensor_to_f32(t, out, &e);
			free(out);
			(void)safetensors_find(f, t->name);
		}
		(void)safetensors_meta(f, "format");
		(void)safetensors_get(f, "missing", &e);
		safetensors_close(f);
	}
	/* the same bytes as quantized blocks: whole blocks only */
	for (int type = 0; type < GGML_TYPE_MAX; type++) {
		size_t blk = ggml_type_block_size(type), bytes = ggml_type_size_bytes(type, blk);
		if (!blk || !bytes || !dequant_supported(type))
			continue;
		size_t n = size / bytes * blk;
		if (n > (1u << 16))
			n = (1u << 16) / blk * blk;
		float *out = malloc(n * sizeof *out + 1); // (n,)
		if (out)
			dequant_to_f32(type, data, n, out, &e);
		free(out);
	}
	return 0;
}
