/* log.h - diagnostics on stderr for sftkit programs.
 *
 * stdout carries data only; everything here goes to stderr. Format:
 *   tool: error: file:line: what went wrong
 *   tool: warning: ...
 * Verbosity: -q lowers it (errors only), -v raises it (debug). log_init() once in main(). */
#ifndef SFT_LOG_H
#define SFT_LOG_H

#include "error.h"

enum log_level { LOG_QUIET = 0, LOG_NORMAL = 1, LOG_VERBOSE = 2, LOG_DEBUG = 3 };

void log_init(const char *prog);
const char *log_prog(void);
void log_set_level(int level);
int log_level(void);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Informational lines (summaries): shown unless -q. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Shown with -v. */
void log_verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "tool: error: <msg>" and exit(code). For main() only. */
_Noreturn void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print err->msg as an error and exit(err->code, or 1 if unset). For main() only. */
_Noreturn void die_err(const sft_error *err);
/* Print "tool: error: <msg>\nTry 'tool --help'..." and exit 2. For main() only. */
_Noreturn void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Flush and close stdout, dying with exit 1 on a write error (e.g. disk full, EPIPE).
 * Call at the end of main() of every tool that writes stdout. */
void stdout_close_or_die(void);

#endif
