/* Fuzz target for ds-dedup's parsers: the rule file (PCRE2 patterns, one per line), the
 * field paths (--field, --match) and the record parser (jdom), selected by the first
 * byte. The tool-private sources are compiled in directly. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/ds-dedup/jdom.c"
#include "../../tools/ds-dedup/rules.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1) return 0;
	int mode = data[0] % 3;
	const char *s = (const char *)data + 1;
	size_t n = size - 1;
	if (mode == 0) {
		rule_list l = {0};
		sft_error err = {0};
		if (rules_parse_buffer(&l, "fuzz.txt", s, n, data[0] & 4, &err) == 0) {
			pcre2_match_data *md = pcre2_match_data_create(1, NULL);
			static const char subj[] = "the quick brown fox 123-45-6789 \xc3\xa9t\xc3\xa9 SELECT 1;";
			for (size_t i = 0; i < l.n; i++) rule_search(&l.r[i], subj, sizeof subj - 1, md);
			pcre2_match_data_free(md);
		} else if (!err.msg[0] || strncmp(err.msg, "fuzz.txt:", 9) != 0) {
			abort(); /* every rule error names file:line */
		}
		rules_free(&l);
	} else if (mode == 1) {
		char *p = malloc(n + 1);
		memcpy(p, s, n);
		p[n] = 0;
		const char *why;
		jpath *jp = jpath_parse(p, &why);
		if (jp) {
			jdom d = {0};
			const char *rec = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"content\":[\"b\"]}],\"a\":{\"b\":\"c\"}}";
			if (jdom_parse(&d, rec, strlen(rec), 1) != 0) abort();
			char *buf = NULL;
			size_t len = 0, cap = 0;
			int first = 1;
			jdom_text(&d, jp, &buf, &len, &cap, &first);
			free(buf);
			jdom_free(&d);
		} else if (!why) {
			abort();
		}
		jpath_free(jp);
		free(p);
	} else {
		jdom d = {0};
		int r = jdom_parse(&d, s, n, data[0] & 4);
		if (r == 0) {
			char *buf = NULL;
			size_t len = 0, cap = 0;
			int first = 1;
			jdom_text(&d, NULL, &buf, &len, &cap, &first);
			free(buf);
		} else if (r == -1 && (!d.err_msg || d.err_col < 1 || d.err_col > n + 1)) {
			abort(); /* errors carry a message and a column inside the line */
		}
		jdom_free(&d);
	}
	return 0;
}
