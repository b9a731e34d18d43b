/* fsutil.h - reading a whole file into memory.
 *
 * Ownership: fs_read_file returns a malloc'ed, NUL-terminated buffer the caller frees
 * (the NUL is not counted in *len; the contents may hold other NULs). */
#ifndef SFT_FSUTIL_H
#define SFT_FSUTIL_H

#include <stddef.h>
#include "error.h"

/* Reads all of `path`. NULL on failure with err filled: "PATH: cannot open: REASON"
 * (SFT_EXIT_USAGE when the file does not exist — a named input that is missing — else
 * SFT_EXIT_RUNTIME), "PATH: read error" or "out of memory" (SFT_EXIT_RUNTIME). */
char *fs_read_file(const char *path, size_t *len, sft_error *err);

#endif
