/* report.h - sft-eval's outputs: the markdown tables on stdout, summary.json, the
 * --compare table, and the progress line (items/s and tokens/s on stderr when it is a TTY).
 *
 * Ownership: summaries are jansson values built and owned by the caller; the functions here
 * only read them. rep_write_json writes atomically (libcommon/atomic.h). */
#ifndef SFT_EVAL_REPORT_H
#define SFT_EVAL_REPORT_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

/* Markdown table of a loss summary ({"files": [...], "total": {...}}) to fp. */
void rep_loss_table(FILE *fp, const json_t *summary);
/* Markdown table of a generate summary ({"chains": [{"name", "n", "correct", "accuracy"}]}). */
void rep_generate_table(FILE *fp, const json_t *summary);
/* --compare: baseline A vs candidate B, per chain (generate) or per metric (loss).
 * Returns 0, or SFT_EXIT_DATA error when the summaries are not comparable. */
int rep_compare(FILE *fp, const json_t *a, const char *a_name, const json_t *b, const char *b_name, sft_error *err);
/* Loads a summary.json (errors name the file; SFT_EXIT_DATA / SFT_EXIT_RUNTIME). */
json_t *rep_load_summary(const char *path, sft_error *err);
/* Writes v compactly (+ newline) to path atomically ("-" = stdout). */
int rep_write_json(const char *path, const json_t *v, sft_error *err);

#endif
