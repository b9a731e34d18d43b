#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_prog = "sftkit";
static int g_level = LOG_NORMAL;

void log_init(const char *prog)
{
	const char *slash = prog ? strrchr(prog, '/') : NULL;
	g_prog = prog ? (slash ? slash + 1 : prog) : "sftkit";
}

const char *log_prog(void) { return g_prog; }
void log_set_level(int level) { g_level = level; }
int log_level(void) { return g_level; }

static void vlog(const char *kind, const char *fmt, va_list ap)
{
	if (kind)
		fprintf(stderr, "%s: %s: ", g_prog, kind);
	else
		fprintf(stderr, "%s: ", g_prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void log_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("error", fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	if (g_level < LOG_NORMAL)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog("warning", fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	if (g_level < LOG_NORMAL)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(NULL, fmt, ap);
	va_end(ap);
}

void log_verbose(const char *fmt, ...)
{
	if (g_level < LOG_VERBOSE)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(NULL, fmt, ap);
	va_end(ap);
}

void die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("error", fmt, ap);
	va_end(ap);
	exit(code);
}

void die_err(const sft_error *err)
{
	log_error("%s", err && err->msg[0] ? err->msg : "unknown error");
	exit(err && err->code ? err->code : SFT_EXIT_RUNTIME);
}

void die_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog("error", fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try '%s --help' for more information.\n", g_prog);
	exit(SFT_EXIT_USAGE);
}

void stdout_close_or_die(void)
{
	if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0)
		die(SFT_EXIT_RUNTIME, "<stdout>: write error: %s", strerror(errno));
}
