/* report.c - tables, summaries and progress for sft-eval (see report.h). */
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic.h"
#include "fsutil.h"
#include "jsonl.h"
#include "log.h"

static double num(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

static void fmt_num(char *buf, size_t cap, double x, const char *fmt)
{
	if (isnan(x)) snprintf(buf, cap, "-");
	else snprintf(buf, cap, fmt, x);
}

static void loss_row(FILE *fp, const char *name, const json_t *p)
{
	char loss[32], ppl[32], acc[32];
	fmt_num(loss, sizeof loss, num(p, "loss"), "%.6f");
	fmt_num(ppl, sizeof ppl, num(p, "ppl"), "%.4f");
	fmt_num(acc, sizeof acc, num(p, "accuracy"), "%.4f");
	fprintf(fp, "| %s | %.0f | %.0f | %.0f | %s | %s | %s |\n", name, num(p, "rows"), num(p, "tokens"),
		num(p, "targets"), loss, ppl, acc);
}

void rep_loss_table(FILE *fp, const json_t *s)
{
	fprintf(fp, "| file | rows | tokens | targets | loss | ppl | accuracy |\n");
	fprintf(fp, "|---|---:|---:|---:|---:|---:|---:|\n");
	const json_t *files = json_object_get(s, "files");
	size_t i;
	const json_t *f;
	json_array_foreach(files, i, f) {
		const char *n = json_string_value(json_object_get(f, "name"));
		const char *slash = n ? strrchr(n, '/') : NULL;
		loss_row(fp, slash ? slash + 1 : (n ? n : "?"), f);
	}
	loss_row(fp, "**total**", json_object_get(s, "total"));
}

void rep_generate_table(FILE *fp, const json_t *s)
{
	fprintf(fp, "| chain | n | correct | accuracy |\n");
	fprintf(fp, "|---|---:|---:|---:|\n");
	size_t i;
	const json_t *c;
	json_array_foreach(json_object_get(s, "chains"), i, c) {
		char acc[32];
		fmt_num(acc, sizeof acc, num(c, "accuracy"), "%.4f");
		fprintf(fp, "| %s | %.0f | %.0f | %s |\n", json_string_value(json_object_get(c, "name")), num(c, "n"),
			num(c, "correct"), acc);
	}
}

static const json_t *find_chain(const json_t *s, const char *name)
{
	size_t i;
	const json_t *c;
	json_array_foreach(json_object_get(s, "chains"), i, c) {
		const char *n = json_string_value(json_object_get(c, "name"));
		if (n && !strcmp(n, name)) return c;
	}
	return NULL;
}

static void delta_str(char *buf, size_t cap, double a, double b, const char *fmt)
{
	if (isnan(a) || isnan(b)) {
		snprintf(buf, cap, "-");
		return;
	}
	char f[16];
	snprintf(f, sizeof f, "%%+%s", fmt + 1); /* "%.4f" -> "%+.4f" */
	snprintf(buf, cap, f, b - a);
}

int rep_compare(FILE *fp, const json_t *a, const char *a_name, const json_t *b, const char *b_name, sft_error *err)
{
	const char *ma = json_string_value(json_object_get(a, "mode")), *mb = json_string_value(json_object_get(b, "mode"));
	if (!ma || !mb || strcmp(ma, mb))
		return sft_error_set(err, SFT_EXIT_DATA, "%s (mode %s) and %s (mode %s) are not comparable", a_name,
				     ma ? ma : "?", b_name, mb ? mb : "?");
	if (json_is_true(json_object_get(a, "partial")) || json_is_true(json_object_get(b, "partial")))
		log_warn("comparing a partial run (interrupted): numbers cover the finished items only");
	if (!strcmp(ma, "loss")) {
		const json_t *ta = json_object_get(a, "total"), *tb = json_object_get(b, "total");
		fprintf(fp, "| metric | baseline | fine-tuned | delta |\n|---|---:|---:|---:|\n");
		static const char *const keys[] = {"loss", "ppl", "accuracy", "targets"};
		static const char *const fmts[] = {"%.6f", "%.4f", "%.4f", "%.0f"};
		for (int k = 0; k < 4; k++) {
			char sa[32], sb[32], d[32];
			fmt_num(sa, sizeof sa, num(ta, keys[k]), fmts[k]);
			fmt_num(sb, sizeof sb, num(tb, keys[k]), fmts[k]);
			delta_str(d, sizeof d, num(ta, keys[k]), num(tb, keys[k]), fmts[k]);
			fprintf(fp, "| %s | %s | %s | %s |\n", keys[k], sa, sb, d);
		}
		return 0;
	}
	fprintf(fp, "| chain | baseline | fine-tuned | delta | n |\n|---|---:|---:|---:|---:|\n");
	size_t i;
	const json_t *ca;
	json_array_foreach(json_object_get(a, "chains"), i, ca) {
		const char *name = json_string_value(json_object_get(ca, "name"));
		if (!name) continue;
		const json_t *cb = find_chain(b, name);
		char sa[32], sb[32], d[32], n[48];
		double xa = num(ca, "accuracy"), xb = cb ? num(cb, "accuracy") : NAN;
		fmt_num(sa, sizeof sa, xa, "%.4f");
		fmt_num(sb, sizeof sb, xb, "%.4f");
		delta_str(d, sizeof d, xa, xb, "%.4f");
		double na = num(ca, "n"), nb = cb ? num(cb, "n") : NAN;
		if (!isnan(nb) && na != nb) snprintf(n, sizeof n, "%.0f / %.0f", na, nb);
		else snprintf(n, sizeof n, "%.0f", na);
		fprintf(fp, "| %s | %s | %s | %s | %s |\n", name, sa, sb, d, n);
	}
	json_array_foreach(json_object_get(b, "chains"), i, ca) {
		const char *name = json_string_value(json_object_get(ca, "name"));
		if (!name || find_chain(a, name)) continue;
		char sb[32];
		fmt_num(sb, sizeof sb, num(ca, "accuracy"), "%.4f");
		fprintf(fp, "| %s | - | %s | - | %.0f |\n", name, sb, num(ca, "n"));
	}
	return 0;
}

json_t *rep_load_summary(const char *path, sft_error *err)
{
	size_t len;
	char *text = fs_read_file(path, &len, err);
	if (!text) return NULL;
	json_t *v = json_parse_located(text, len, path, 1, 0, err);
	free(text);
	if (!v) return NULL;
	if (!json_is_string(json_object_get(v, "mode"))) {
		json_decref(v);
		sft_error_set(err, SFT_EXIT_DATA, "%s: not an sft-eval summary (no \"mode\")", path);
		return NULL;
	}
	return v;
}

int rep_write_json(const char *path, const json_t *v, sft_error *err)
{
	atomic_file *af = atomic_open(path, err);
	if (!af) return -(err ? err->code : SFT_EXIT_RUNTIME);
	if (jsonl_write(af->fp, v) < 0) {
		atomic_abort(af);
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write failed", path);
	}
	return atomic_commit(af, err);
}
