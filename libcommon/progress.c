#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

double clock_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void progress_start(progress *p, const char *unit, uint64_t total, uint64_t total_bytes)
{
	memset(p, 0, sizeof *p);
	p->unit = unit;
	p->total = total;
	p->total_bytes = total_bytes;
	p->t0 = clock_now();
	p->enabled = isatty(2) && log_level() >= LOG_NORMAL;
}

void progress_start_rate(progress *p, const char *unit, uint64_t total, const char *unit2)
{
	progress_start(p, unit, total, 0);
	p->unit2 = unit2;
}

static void human(double v, char *buf, size_t cap)
{
	const char *suf[] = {"", "k", "M", "G", "T"};
	int i = 0;
	while (v >= 1000 && i < 4) {
		v /= 1000;
		i++;
	}
	/* small fractional rates (0.35 items/s) keep two decimals; counts stay integers */
	snprintf(buf, cap, i ? "%.1f%s" : (v < 10 && v != (double)(long)v ? "%.2f%s" : "%.0f%s"), v, suf[i]);
}

static void draw(progress *p, double now)
{
	double dt = now - p->t0 > 1e-9 ? now - p->t0 : 1e-9;
	char done[32], rate[32], brate[32], second[64];
	human((double)p->done, done, sizeof done);
	human((double)p->done / dt, rate, sizeof rate);
	human((double)p->bytes / dt, brate, sizeof brate);
	if (p->unit2) snprintf(second, sizeof second, "%s %s/s", brate, p->unit2);
	else snprintf(second, sizeof second, "%sB/s", brate);
	char line[256];
	int n = 0;
	double frac = -1;
	if (p->total)
		frac = (double)p->done / (double)p->total;
	else if (p->total_bytes)
		frac = (double)p->bytes / (double)p->total_bytes;
	if (frac >= 0) {
		if (frac > 1)
			frac = 1;
		char bar[21];
		int fill = (int)(frac * 20);
		for (int i = 0; i < 20; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[20] = 0;
		double eta = frac > 0 ? dt * (1 - frac) / frac : 0;
		n = snprintf(line, sizeof line, "%s: [%s] %3.0f%% %s %s, %s/s, %s, eta %.0fs",
			     log_prog(), bar, frac * 100, done, p->unit, rate, second, eta);
	} else {
		n = snprintf(line, sizeof line, "%s: %s %s, %s/s, %s, %.0fs", log_prog(), done, p->unit,
			     rate, second, dt);
	}
	(void)n;
	fprintf(stderr, "\r%s\033[K", line);
	fflush(stderr);
	p->drawn = 1;
}

void progress_add(progress *p, uint64_t units, uint64_t bytes)
{
	p->done += units;
	p->bytes += bytes;
	if (!p->enabled)
		return;
	/* check the clock only every 256 calls */
	if (!p->unit2 && (p->done & 255) && units == 1)
		return;
	double now = clock_now();
	if (now - p->last_draw < 0.1 && !(p->unit2 && p->total && p->done == p->total))
		return;
	p->last_draw = now;
	draw(p, now);
}

void progress_finish(progress *p)
{
	if (p->enabled && p->drawn) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
	}
	p->drawn = 0;
}

double progress_elapsed(const progress *p) { return clock_now() - p->t0; }
