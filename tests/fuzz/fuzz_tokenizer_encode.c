/* Fuzz target: encode arbitrary bytes with two fixed small tokenizers (byte-level BPE with
 * a GPT-2 regex, and a SentencePiece-style BPE with byte fallback and normalizers).
 * Invariants: offsets lie inside the input; for the byte-level tokenizer decoding gives
 * back the input exactly when it is valid UTF-8, and valid UTF-8 always. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tokenizer.h"

static tokenizer *tb, *ts;

static size_t put_cp(char *o, uint32_t c)
{
	if (c < 0x80) { o[0] = (char)c; return 1; }
	if (c < 0x800) { o[0] = (char)(0xC0 | (c >> 6)); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
	o[0] = (char)(0xE0 | (c >> 12)); o[1] = (char)(0x80 | ((c >> 6) & 0x3F)); o[2] = (char)(0x80 | (c & 0x3F));
	return 3;
}

/* JSON string body for a code point (escaped where JSON needs it) */
static size_t put_json_cp(char *o, uint32_t c)
{
	if (c == '"' || c == '\\') { o[0] = '\\'; o[1] = (char)c; return 2; }
	return put_cp(o, c);
}

static tokenizer *build_bytelevel(void)
{
	static char js[65536];
	uint32_t map[256];
	int n = 0;
	for (int b = 0; b < 256; b++) {
		int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
		map[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
	}
	size_t o = 0;
	o += (size_t)sprintf(js + o, "{\"added_tokens\":[{\"id\":262,\"content\":\"<|end|>\",\"special\":true,\"normalized\":false,"
	                             "\"lstrip\":false,\"rstrip\":false,\"single_word\":false}],"
	                             "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
	                             "\"(?i:'s|'t)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
	                             "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]},"
	                             "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{");
	for (int b = 0; b < 256; b++) {
		js[o++] = '"';
		o += put_json_cp(js + o, map[b]);
		o += (size_t)sprintf(js + o, "\":%d,", b);
	}
	/* a few merges: "Ġ t", "h e", "Ġt he" */
	o += (size_t)sprintf(js + o, "\"\xC4\xA0t\":256,\"he\":257,\"\xC4\xA0the\":258,\"in\":259,\"\xC4\xA0\xC4\xA0\":260,\"ab\":261},"
	                             "\"merges\":[\"\xC4\xA0 t\",\"h e\",\"\xC4\xA0t he\",\"i n\",\"\xC4\xA0 \xC4\xA0\",\"a b\"]}}");
	js[o] = 0;
	sft_error e = { 0 };
	tokenizer *t = tokenizer_load_json(js, o, NULL, 0, "bytelevel", &e);
	if (!t) {
		fprintf(stderr, "%s\n", e.msg);
		abort();
	}
	return t;
}

static const char *SPM =
	"{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false},"
	"{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false,\"lstrip\":true,\"rstrip\":true},"
	"{\"id\":2,\"content\":\"word\",\"special\":false,\"normalized\":true,\"single_word\":true}],"
	"\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":\"Lowercase\"},{\"type\":\"Prepend\",\"prepend\":\"\xE2\x96\x81\"},"
	"{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xE2\x96\x81\"}]},"
	"\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},{\"type\":\"Punctuation\"},"
	"{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":true}]},"
	"\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
	"\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
	"\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xE2\x96\x81\"},\"content\":\" \"},"
	"{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
	"\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,\"vocab\":{"
	"\"<unk>\":0,\"<s>\":1,\"word\":2,\"a\":3,\"b\":4,\"\xE2\x96\x81\":5,\"\xE2\x96\x81" "a\":6,\"ab\":7,"
	"\"<0x41>\":8,\"<0xE2>\":9,\"<0x82>\":10,\"<0xAC>\":11},"
	"\"merges\":[\"\xE2\x96\x81 a\",\"a b\"]}}";

static int valid_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
		if (!l || i + l > n || (l == 2 && c < 0xC2))
			return 0;
		for (size_t k = 1; k < l; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
		if (l == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F)))
			return 0;
		if (l == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F) || c > 0xF4))
			return 0;
		i += l;
	}
	return 1;
}

static void run(tokenizer *t, const uint8_t *data, size_t size, int exact)
{
	uint32_t *ids;
	size_t n, *st, *en;
	sft_error e = { 0 };
	if (tokenizer_encode_offsets(t, (const char *)data, size, 1, &ids, &st, &en, &n, &e) < 0)
		abort(); /* encoding never fails on valid arguments */
	for (size_t k = 0; k < n; k++)
		if (st[k] > en[k] || en[k] > size)
			abort();
	char *out;
	size_t ol;
	if (tokenizer_decode(t, ids, n, 1, &out, &ol, &e) < 0)
		abort();
	if (!valid_utf8((const unsigned char *)out, ol))
		abort();
	if (exact && memchr(data, 0, size) == NULL && valid_utf8(data, size)) {
		/* "<|end|>" is special: skipped by decode; only check inputs without it */
		if (!memmem(data, size, "<|end|>", 7) && (ol != size || memcmp(out, data, size) != 0))
			abort();
	}
	free(out);
	free(ids);
	free(st);
	free(en);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!tb) {
		tb = build_bytelevel();
		sft_error e = { 0 };
		ts = tokenizer_load_json(SPM, strlen(SPM), NULL, 0, "spm", &e);
		if (!ts) {
			fprintf(stderr, "%s\n", e.msg);
			abort();
		}
	}
	run(tb, data, size, 1);
	run(ts, data, size, 0);
	return 0;
}
