/* test_util.h - helpers shared by the cmocka unit tests (include after <cmocka.h>). */
#ifndef SFT_TEST_UTIL_H
#define SFT_TEST_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include "fsutil.h"

/* Reads a whole file into a malloc'ed, NUL-terminated buffer (the caller frees it);
 * fails the running test, naming the file, if it cannot. */
static inline char *test_slurp(const char *path, size_t *len)
{
	sft_error e = {0};
	char *b = fs_read_file(path, len, &e);
	if (!b)
		fail_msg("%s", e.msg);
	return b;
}

/* rm -rf dir (a test's scratch directory); the command's exit status. */
static inline int test_rm_rf(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd);
}

#endif
