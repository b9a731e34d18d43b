/* parquet2jsonl - tiny bench driver: Parquet files -> JSONL on stdout.
 * Usage: parquet2jsonl [-j] FILE.parquet...   (-j: json_t path + jsonl_write instead
 * of the direct text path). Built by bench/ds_fetch.sh against libcommon.a. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"
#include "parquet.h"

int main(int argc, char **argv)
{
	int use_json = 0, i = 1;
	if (i < argc && strcmp(argv[i], "-j") == 0) {
		use_json = 1;
		i++;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: parquet2jsonl [-j] FILE.parquet...\n");
		return 2;
	}
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (; i < argc; i++) {
		sft_error err = {0};
		parquet_file *pf = parquet_open(argv[i], &err);
		parquet_rows *it = pf ? parquet_rows_open(pf, NULL, 0, &err) : NULL;
		int rc = it ? 1 : -1;
		while (it) {
			if (use_json) {
				json_t *row;
				rc = parquet_rows_next(it, &row, &err);
				if (rc <= 0)
					break;
				jsonl_write(stdout, row);
				json_decref(row);
			} else {
				rc = parquet_rows_next_json(it, &buf, &len, &cap, &err);
				if (rc > 0) {
					buf[len++] = '\n';
					if (len >= (1 << 20)) {
						fwrite(buf, 1, len, stdout);
						len = 0;
					}
				}
				if (rc <= 0)
					break;
			}
		}
		if (len)
			fwrite(buf, 1, len, stdout);
		len = 0;
		parquet_rows_close(it);
		parquet_close(pf);
		if (rc < 0) {
			fprintf(stderr, "parquet2jsonl: error: %s\n", err.msg);
			free(buf);
			return err.code ? err.code : 1;
		}
	}
	free(buf);
	return fclose(stdout) ? 1 : 0;
}
