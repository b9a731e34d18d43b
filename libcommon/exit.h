/* exit.h - the process exit codes every sftkit tool uses (see docs/ for each tool).
 * Defined once here; library code returns these as error classes, only main() exits. */
#ifndef SFT_EXIT_H
#define SFT_EXIT_H

enum sft_exit_code {
	SFT_EXIT_OK = 0,        /* success */
	SFT_EXIT_RUNTIME = 1,   /* runtime error: I/O, network, out of memory */
	SFT_EXIT_USAGE = 2,     /* bad command line or configuration */
	SFT_EXIT_DATA = 3,      /* bad input data: malformed record, corrupt file */
	SFT_EXIT_DEVICE = 4,    /* device / CUDA error */
	SFT_EXIT_INTERNAL = 70, /* internal bug (EX_SOFTWARE) */
};

#endif
