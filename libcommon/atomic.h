/* atomic.h - "nothing lost" output files: write to a temporary name in the same
 * directory, fsync, rename over the target on commit; on abort (or a crash) the target
 * is untouched and the temporary is removed.
 *
 * Ownership: atomic_open returns an atomic_file the caller must finish with exactly one
 * of atomic_commit / atomic_abort, which free it (both accept NULL).
 * Path "-" means stdout: no temporary, commit only flushes. An existing target that is
 * not a regular file (/dev/stdout, /dev/null, a FIFO) is opened and written directly. */
#ifndef SFT_ATOMIC_H
#define SFT_ATOMIC_H

#include <stdio.h>
#include "error.h"

typedef struct atomic_file {
	FILE *fp;        /* write here */
	char *path;      /* final name */
	char *tmp_path;  /* temporary name, NULL for stdout and direct writes */
	int direct;      /* target exists and is not a regular file: written in place */
} atomic_file;

atomic_file *atomic_open(const char *path, sft_error *err);
int atomic_commit(atomic_file *af, sft_error *err);
void atomic_abort(atomic_file *af);

/* Removes every temporary still open (call from a signal handler path or atexit);
 * registered automatically by atomic_open so an interrupted run leaves no litter. */
void atomic_cleanup_all(void);

/* mkdir -p; returns 0 or negative with err set. */
int fs_mkdir_p(const char *path, sft_error *err);
/* fsync a directory so a rename inside it is durable. */
int fs_fsync_dir(const char *dir);

#endif
