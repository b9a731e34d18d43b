/* libFuzzer target: parquet_open_mem + full row iteration through both output paths
 * (json_t rows and direct JSON text). Any input must give rows or a clean error. */
#include <stdint.h>
#include <stdlib.h>

#include "jsonl.h"
#include "parquet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sft_error err = {0};
	parquet_file *pf = parquet_open_mem(data, size, "fuzz.parquet", &err);
	if (!pf)
		return 0;
	/* keep memory within libFuzzer's limit: tiny inputs may claim billions of values */
	parquet_set_max_chunk_values(pf, 1 << 20);
	for (int mode = 0; mode < 2; mode++) {
		parquet_rows *it = parquet_rows_open(pf, NULL, 0, &err);
		if (!it)
			break;
		char *buf = NULL;
		size_t len = 0, cap = 0;
		for (int n = 0; n < 100000; n++) {
			int rc;
			if (mode == 0) {
				json_t *row = NULL;
				rc = parquet_rows_next(it, &row, &err);
				if (rc == 1) {
					len = 0;
					json_dump_compact(row, &buf, &len, &cap);
					json_decref(row);
				}
			} else {
				len = 0;
				rc = parquet_rows_next_json(it, &buf, &len, &cap, &err);
			}
			if (rc != 1)
				break;
		}
		free(buf);
		parquet_rows_close(it);
	}
	/* a projection of the first column only */
	if (parquet_num_columns(pf) > 0) {
		const char *col = parquet_column_name(pf, 0);
		parquet_rows *it = parquet_rows_open(pf, &col, 1, &err);
		json_t *row;
		while (it && parquet_rows_next(it, &row, &err) == 1)
			json_decref(row);
		parquet_rows_close(it);
	}
	parquet_close(pf);
	return 0;
}
