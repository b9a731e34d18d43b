#include "fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *fs_read_file(const char *path, size_t *len, sft_error *err)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		sft_error_set(err, errno == ENOENT ? SFT_EXIT_USAGE : SFT_EXIT_RUNTIME, "%s: cannot open: %s",
			      path, strerror(errno));
		return NULL;
	}
	/* start from the file's size where it has one (regular files) so that one read,
	 * which comes back short at the end, does it */
	struct stat st;
	size_t cap = fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode) ? (size_t)st.st_size + 2 : 0;
	if (cap < 4096)
		cap = 4096;
	size_t n = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (!buf) {
			fclose(fp);
			sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			return NULL;
		}
		size_t want = cap - n - 1, got = fread(buf + n, 1, want, fp);
		n += got;
		if (got < want)
			break; /* end of file or error */
		cap *= 2;
		char *nb = realloc(buf, cap);
		if (!nb)
			free(buf);
		buf = nb;
	}
	int bad = ferror(fp);
	fclose(fp);
	if (bad) {
		free(buf);
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: read error", path);
		return NULL;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}
