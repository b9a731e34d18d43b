/* libFuzzer target: compile and render arbitrary template text with a fixed chat context.
 * Resource limits keep hostile templates (infinite loops, deep recursion, huge outputs)
 * bounded; any crash, leak or sanitizer report is a bug. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"

static json_t *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ctx) {
		json_error_t je;
		ctx = json_loads("{\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},"
				 "{\"role\":\"user\",\"content\":\"h\\u00e9llo <b>\"},"
				 "{\"role\":\"assistant\",\"content\":\"ok\",\"reasoning_content\":\"hm\","
				 "\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]},"
				 "{\"role\":\"tool\",\"content\":[{\"type\":\"text\",\"text\":\"t\"}]}],"
				 "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}],"
				 "\"add_generation_prompt\":true,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"n\":3,\"x\":1.5}",
				 0, &je);
		setenv("SFT_JINJA_NOW", "2024-07-26T12:00:00", 1);
	}
	jinja_options o;
	jinja_options_init(&o);
	o.strict = size > 0 && (data[0] & 1);
	o.max_output = 1 << 20;
	o.max_memory = 64 << 20;
	o.max_depth = 40;
	o.max_steps = 200000;
	sft_error err;
	jinja_template *t = jinja_compile((const char *)data, size, "fuzz", &o, &err);
	if (!t)
		return 0;
	char *out = NULL;
	size_t n = 0, ns = 0;
	jinja_span *sp = NULL;
	if (jinja_render(t, ctx, &out, &n, &sp, &ns, &err) == 0) {
		if (out[n] != 0)
			abort();
		for (size_t i = 0; i < ns; i++)
			if (sp[i].start > sp[i].end || sp[i].end > n)
				abort();
		free(out);
		free(sp);
	}
	jinja_free(t);
	return 0;
}
