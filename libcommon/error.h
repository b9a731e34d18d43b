/* error.h - error values returned by library code.
 *
 * Ownership: an sft_error is a caller-owned value (usually on the stack); functions
 * that can fail take an `sft_error *err` (may be NULL) and fill it on failure.
 * Library code never prints and never exits: main() prints err->msg via log_error /
 * die and exits with err->code.
 *
 * Message convention: "file:line: what went wrong" (lowercase, no full stop), where
 * the location part is present when known. main() adds the "tool: error: " prefix. */
#ifndef SFT_ERROR_H
#define SFT_ERROR_H

#include <stddef.h>
#include "exit.h"

#define SFT_ERROR_MSG_MAX 1024

typedef struct sft_error {
	int code;                    /* one of enum sft_exit_code; 0 = no error */
	char msg[SFT_ERROR_MSG_MAX]; /* "file:line: what went wrong" */
} sft_error;

/* Sets *err (if non-NULL) and returns -code (so `return sft_error_set(...)` yields a
 * negative value from functions returning int). */
int sft_error_set(sft_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefixes an existing message with "prefix: " (e.g. add a file name); returns -err->code. */
int sft_error_prefix(sft_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void sft_error_clear(sft_error *err);

#endif
