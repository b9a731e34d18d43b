#include "atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Live temporaries, so signals and exit() can remove them. Small fixed table: a tool
 * has at most a handful of outputs open at once. */
#define MAX_LIVE 64
static char *g_live[MAX_LIVE];
static int g_registered;

static void live_add(char *p)
{
	for (int i = 0; i < MAX_LIVE; i++)
		if (!g_live[i]) {
			g_live[i] = p;
			return;
		}
}

static void live_del(const char *p)
{
	for (int i = 0; i < MAX_LIVE; i++)
		if (g_live[i] == p)
			g_live[i] = NULL;
}

void atomic_cleanup_all(void)
{
	for (int i = 0; i < MAX_LIVE; i++)
		if (g_live[i]) {
			unlink(g_live[i]);
			g_live[i] = NULL;
		}
}

static void on_signal(int sig)
{
	/* unlink is async-signal-safe */
	for (int i = 0; i < MAX_LIVE; i++)
		if (g_live[i])
			unlink(g_live[i]);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void register_cleanup(void)
{
	if (g_registered)
		return;
	g_registered = 1;
	atexit(atomic_cleanup_all);
	int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
		struct sigaction sa, old;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		/* keep a handler the tool installed itself (e.g. SIGINT to checkpoint) */
		if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
			sigaction(sigs[i], &sa, NULL);
	}
}

atomic_file *atomic_open(const char *path, sft_error *err)
{
	atomic_file *af = calloc(1, sizeof *af);
	if (!af) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	if (!strcmp(path, "-")) {
		af->fp = stdout;
		af->path = strdup("-");
		return af;
	}
	/* An existing non-regular target (/dev/stdout, /dev/null, a FIFO, a tty) cannot be
	 * replaced by rename and must not be: write to it directly, like stdout. */
	struct stat st;
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		af->fp = fopen(path, "wb");
		if (!af->fp) {
			sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot open: %s", path, strerror(errno));
			free(af);
			return NULL;
		}
		af->path = strdup(path);
		af->direct = 1;
		return af;
	}
	af->path = strdup(path);
	size_t n = strlen(path) + 32;
	af->tmp_path = malloc(n);
	if (!af->path || !af->tmp_path) {
		atomic_abort(af);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	/* hidden temporary in the same directory so rename() is atomic */
	char *dup = strdup(path);
	char *dup2 = strdup(path);
	if (!dup || !dup2) {
		free(dup);
		free(dup2);
		atomic_abort(af);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	const char *dir = dirname(dup), *base = basename(dup2);
	snprintf(af->tmp_path, n, "%s/.%s.tmp.XXXXXX", dir, base);
	free(dup);
	free(dup2);
	int fd = mkstemp(af->tmp_path);
	if (fd < 0) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot create: %s", path, strerror(errno));
		free(af->tmp_path);
		af->tmp_path = NULL;
		atomic_abort(af);
		return NULL;
	}
	fchmod(fd, 0644 & ~(mode_t)0); /* mkstemp makes 0600; outputs are ordinary files */
	af->fp = fdopen(fd, "wb");
	if (!af->fp) {
		close(fd);
		unlink(af->tmp_path);
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot open: %s", path, strerror(errno));
		atomic_abort(af);
		return NULL;
	}
	register_cleanup();
	live_add(af->tmp_path);
	return af;
}

int fs_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

int atomic_commit(atomic_file *af, sft_error *err)
{
	if (!af)
		return 0;
	int rc = 0;
	if (!af->tmp_path) { /* stdout or a non-regular file */
		if (fflush(af->fp) != 0 || ferror(af->fp))
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write error: %s",
					   af->direct ? af->path : "<stdout>", strerror(errno));
		if (af->direct && fclose(af->fp) != 0 && !rc)
			rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write error: %s", af->path, strerror(errno));
		free(af->path);
		free(af);
		return rc;
	}
	if (fflush(af->fp) != 0 || ferror(af->fp) || fsync(fileno(af->fp)) != 0) {
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write error: %s", af->path, strerror(errno));
		atomic_abort(af);
		return rc;
	}
	if (fclose(af->fp) != 0) {
		af->fp = NULL;
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: write error: %s", af->path, strerror(errno));
		atomic_abort(af);
		return rc;
	}
	af->fp = NULL;
	if (rename(af->tmp_path, af->path) != 0) {
		rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot rename into place: %s", af->path,
				   strerror(errno));
		atomic_abort(af);
		return rc;
	}
	live_del(af->tmp_path);
	char *dup = strdup(af->path);
	if (dup) {
		fs_fsync_dir(dirname(dup));
		free(dup);
	}
	free(af->tmp_path);
	free(af->path);
	free(af);
	return 0;
}

void atomic_abort(atomic_file *af)
{
	if (!af)
		return;
	if (af->tmp_path) {
		if (af->fp)
			fclose(af->fp);
		unlink(af->tmp_path);
		live_del(af->tmp_path);
		free(af->tmp_path);
	} else if (af->fp) {
		if (af->direct)
			fclose(af->fp);
		else
			fflush(af->fp);
	}
	free(af->path);
	free(af);
}

int fs_mkdir_p(const char *path, sft_error *err)
{
	char *p = strdup(path);
	if (!p)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char save = *s;
			*s = '\0';
			if (mkdir(p, 0755) != 0 && errno != EEXIST) {
				int rc = sft_error_set(err, SFT_EXIT_RUNTIME, "%s: cannot create directory: %s", p,
						       strerror(errno));
				free(p);
				return rc;
			}
			*s = save;
			if (!save)
				break;
		}
	}
	free(p);
	return 0;
}
