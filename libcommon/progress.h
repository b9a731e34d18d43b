/* progress.h - a progress line on stderr, drawn only when stderr is a TTY and the tool
 * is not -q. Shows units/s (records, tokens, ...), a second rate (bytes/s, or another unit
 * such as tokens/s) and, when the total is known, a bar and an ETA. Redraws at most 10
 * times a second, so calling progress_add per record is cheap. Ownership: caller-owned
 * struct, no allocation. */
#ifndef SFT_PROGRESS_H
#define SFT_PROGRESS_H

#include <stdint.h>

typedef struct progress {
	const char *unit;      /* "records", "tokens" */
	uint64_t total;        /* 0 = unknown */
	uint64_t total_bytes;  /* 0 = unknown */
	uint64_t done, bytes;  /* bytes: the second counter (in unit2 when set) */
	const char *unit2;     /* NULL: bytes ("kB/s") */
	double t0, last_draw;
	int enabled;
	int drawn;
} progress;

void progress_start(progress *p, const char *unit, uint64_t total, uint64_t total_bytes);
/* Slow units (items that take milliseconds: generations, eval batches): the second counter
 * counts unit2 (e.g. "tokens"), shown as "N unit2/s", and every progress_add looks at the
 * clock (progress_start's lines skip the clock for 255 of 256 single-unit adds). */
void progress_start_rate(progress *p, const char *unit, uint64_t total, const char *unit2);
/* Adds to the counters and redraws if due. */
void progress_add(progress *p, uint64_t units, uint64_t bytes);
/* Erases the line (the caller then prints its summary). */
void progress_finish(progress *p);
/* Seconds since progress_start. */
double progress_elapsed(const progress *p);
/* Monotonic clock in seconds. */
double clock_now(void);

#endif
