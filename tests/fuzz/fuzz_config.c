/* libFuzzer target: YAML configuration files (libcommon/config.h). config_load reads a
 * path, so the input is written to a temporary file first. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	if (!path[0]) {
		snprintf(path, sizeof path, "/tmp/fuzz_config_%ld.yaml", (long)getpid());
	}
	FILE *fp = fopen(path, "wb");
	if (!fp)
		return 0;
	fwrite(data, 1, size, fp);
	fclose(fp);
	sft_error err = {0};
	config *c = config_load(path, &err);
	if (c) {
		for (size_t i = 0; i < c->n; i++) {
			if (!c->entries[i].key || !c->entries[i].value)
				abort();
			(void)config_get(c, c->entries[i].key);
		}
	} else if (err.code == 0 || !err.msg[0]) {
		abort(); /* a failure must say why */
	}
	config_free(c);
	return 0;
}
