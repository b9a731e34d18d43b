/* threads.c - see threads.h. */
#include "threads.h"

#include <stdlib.h>
#include <unistd.h>

int sft_threads_init(int argc, char **argv)
{
	if (argc < 1 || !argv || !argv[0]) return 0;
	if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return 0;
	if (setenv("GOMP_SPINCOUNT", SFT_GOMP_SPINCOUNT, 1) != 0) return 0;
	execv("/proc/self/exe", argv);
	return 0; /* exec failed: run on with the default policy */
}
