/* libFuzzer target: the CSV reader (libcommon/csv.h), both delimiters, header -> objects.
 * Checks: no crash/leak/UB; every record is an object with the header's field count. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	for (int pass = 0; pass < 2; pass++) {
		FILE *fp = fmemopen((void *)data, size, "r");
		if (!fp)
			return 0;
		csv_reader *r = csv_open_stream(fp, "fuzz.csv", pass ? '\t' : ',');
		sft_error err = {0};
		json_t *o = NULL;
		size_t nkeys = (size_t)-1;
		int rc, guard = 0;
		/* keep reading after data errors (the reader resynchronizes), bounded */
		while ((rc = csv_next_object(r, &o, &err)) != 0 && guard++ < 100000) {
			if (rc < 0)
				continue;
			if (!json_is_object(o))
				abort();
			if (nkeys == (size_t)-1)
				nkeys = json_object_size(o);
			else if (json_object_size(o) != nkeys)
				abort();
			json_decref(o);
		}
		csv_close(r);
		fclose(fp);
	}
	return 0;
}
