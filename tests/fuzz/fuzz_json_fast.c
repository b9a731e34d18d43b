/* libFuzzer target: differential test of libcommon's fast JSON reader (json_parse_fast,
 * behind json_parse_located / jsonl_next) against jansson's json_loadb with the flags
 * json_parse_located used before it: both must accept the same inputs and build equal
 * values (json_equal, and the same compact bytes). The compact writer must round-trip. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"

static void dump(const json_t *v, char **buf, size_t *len, size_t *cap)
{
	*len = 0;
	if (json_dump_compact(v, buf, len, cap) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	json_error_t je;
	json_t *ref = json_loadb(s, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	json_t *mine = json_parse_fast(s, size);
	if (!ref != !mine) {
		fprintf(stderr, "acceptance differs: jansson %s (%s), fast %s\n", ref ? "accepts" : "rejects",
			ref ? "" : je.text, mine ? "accepts" : "rejects");
		abort();
	}
	if (!ref)
		return 0;
	if (!json_equal(ref, mine)) {
		fprintf(stderr, "values differ\n");
		abort();
	}
	char *a = NULL, *b = NULL;
	size_t al, ac = 0, bl, bc = 0;
	dump(ref, &a, &al, &ac);
	dump(mine, &b, &bl, &bc);
	if (al != bl || memcmp(a, b, al))
		abort();
	json_t *back = json_parse_fast(b, bl);
	if (!back || !json_equal(back, mine))
		abort();
	json_decref(back);
	free(a);
	free(b);
	json_decref(ref);
	json_decref(mine);
	return 0;
}
