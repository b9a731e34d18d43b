#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sft_error_set(sft_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return -code;
}

int sft_error_prefix(sft_error *err, const char *fmt, ...)
{
	if (!err)
		return -SFT_EXIT_RUNTIME;
	char prefix[512], old[SFT_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof old);
	snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
	return -err->code;
}

void sft_error_clear(sft_error *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}
