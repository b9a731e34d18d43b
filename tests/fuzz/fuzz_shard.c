/* Fuzz target for the shard readers: the sequential reader (stream/file/JSONL through a
 * FILE*) and the mmap path (map, verify, every row and view). Any input must give a
 * clean error or a clean read: no crash, no leak, no out-of-bounds access. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sft_error err = {0};
	/* 1. sequential reader */
	FILE *fp = fmemopen((void *)data, size ? size : 1, "rb");
	if (fp) {
		if (size == 0)
			fgetc(fp); /* fmemopen wants size > 0: make it read empty */
		shard_reader *r = shard_reader_open_fp(fp, "<fuzz>", &err);
		if (r) {
			shard_record rec;
			uint64_t sum = 0;
			while (shard_read(r, &rec, &err) == 1) {
				for (size_t i = 0; i < rec.n; i++)
					sum += rec.tokens[i] + rec.mask[i];
				for (size_t i = 0; i < rec.n_seg; i++)
					sum += rec.segs[i].len;
			}
			if (sum == 1)
				err.code = 0; /* keep the loop observable */
			shard_reader_close(r);
		}
		fclose(fp);
	}
	/* 2. mmap path through a memfd */
	int fd = memfd_create("fuzz_shard", 0);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	shard_file *f = shard_file_map(path, &err);
	if (f) {
		shard_buf b = {0};
		shard_record rec;
		shard_view v;
		size_t rows = shard_file_rows(f);
		for (size_t k = 0; k < rows && k < 4096; k++) {
			if (shard_file_view(f, k, &v, &err) == 0 && v.n)
				(void)*(volatile const uint8_t *)v.mask_bits;
			shard_file_row(f, k, &rec, &b, &err);
		}
		shard_file_verify(f, &err);
		shard_buf_free(&b);
		shard_file_unmap(f);
	}
	close(fd);
	return 0;
}
