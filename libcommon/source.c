/* source.c - local inputs through libarchive; see source.h. */
#include "source.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const COMPRESS_EXT[] = {".gz", ".zst", ".xz", ".bz2", ".zstd", NULL};

static int ends_with(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n >= m && strcasecmp(s + n - m, suf) == 0;
}

src_format src_format_parse(const char *s)
{
	if (!strcmp(s, "jsonl") || !strcmp(s, "ndjson"))
		return SRC_FMT_JSONL;
	if (!strcmp(s, "json"))
		return SRC_FMT_JSON;
	if (!strcmp(s, "csv"))
		return SRC_FMT_CSV;
	if (!strcmp(s, "tsv"))
		return SRC_FMT_TSV;
	if (!strcmp(s, "parquet"))
		return SRC_FMT_PARQUET;
	return SRC_FMT_UNKNOWN;
}

const char *src_format_name(src_format f)
{
	static const char *const n[] = {"unknown", "jsonl", "json", "csv", "tsv", "parquet"};
	return (unsigned)f < 6 ? n[f] : "unknown";
}

src_format src_format_from_name(const char *name)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", name);
	for (int i = 0; COMPRESS_EXT[i]; i++)
		if (ends_with(tmp, COMPRESS_EXT[i])) {
			tmp[strlen(tmp) - strlen(COMPRESS_EXT[i])] = '\0';
			break;
		}
	const char *dot = strrchr(tmp, '.');
	const char *slash = strrchr(tmp, '/');
	if (!dot || (slash && dot < slash))
		return SRC_FMT_UNKNOWN;
	char ext[16];
	size_t i = 0;
	for (const char *p = dot + 1; *p && i + 1 < sizeof ext; p++)
		ext[i++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	ext[i] = '\0';
	return src_format_parse(ext);
}

int src_is_archive_name(const char *n)
{
	static const char *const ext[] = {".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd", ".tzst",
					   ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tbz", ".zip", NULL};
	for (int i = 0; ext[i]; i++)
		if (ends_with(n, ext[i]))
			return 1;
	return 0;
}

/* gzip, zstd, xz, bzip2 magic */
static int is_compressed_magic(const unsigned char *b, size_t n)
{
	if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b)
		return 1;
	if (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd)
		return 1;
	if (n >= 6 && !memcmp(b, "\xfd" "7zXZ\0", 6))
		return 1;
	if (n >= 3 && !memcmp(b, "BZh", 3))
		return 1;
	return 0;
}

/* ---- a FILE* over a raw-format libarchive reader (decompression filter) ---- */

typedef struct arc_cookie {
	struct archive *a;
	char errmsg[512];
	int failed;
} arc_cookie;

static ssize_t arc_read(void *c, char *buf, size_t size)
{
	arc_cookie *ck = c;
	la_ssize_t n = archive_read_data(ck->a, buf, size);
	if (n < 0) {
		const char *e = archive_error_string(ck->a);
		snprintf(ck->errmsg, sizeof ck->errmsg, "%s", e ? e : "decompression failed");
		ck->failed = 1;
		errno = EIO;
		return -1;
	}
	return n;
}

static int arc_close(void *c)
{
	arc_cookie *ck = c;
	archive_read_free(ck->a);
	free(ck);
	return 0;
}

/* Opens a decompressing stream over `fp` (owned: closed with the stream) or memory. */
static FILE *filter_open(FILE *fp, const void *mem, size_t len, const char *name, arc_cookie **out,
			 sft_error *err)
{
	arc_cookie *ck = calloc(1, sizeof *ck);
	if (!ck) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", name);
		return NULL;
	}
	ck->a = archive_read_new();
	archive_read_support_filter_all(ck->a);
	archive_read_support_format_raw(ck->a);
	int r = fp ? archive_read_open_FILE(ck->a, fp) : archive_read_open_memory(ck->a, mem, len);
	struct archive_entry *ent;
	if (r == ARCHIVE_OK)
		r = archive_read_next_header(ck->a, &ent);
	if (r != ARCHIVE_OK) {
		sft_error_set(err, SFT_EXIT_DATA, "%s: corrupt compressed data: %s", name,
			      archive_error_string(ck->a) ? archive_error_string(ck->a) : "unknown format");
		archive_read_free(ck->a);
		free(ck);
		return NULL;
	}
	cookie_io_functions_t io = {.read = arc_read, .close = arc_close};
	FILE *f = fopencookie(ck, "r", io);
	if (!f) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", name, strerror(errno));
		archive_read_free(ck->a);
		free(ck);
		return NULL;
	}
	*out = ck;
	return f;
}

/* ---- iterator ---- */

enum src_kind { K_STDIN, K_FILE, K_ARCHIVE, K_DIR };

struct src_iter {
	enum src_kind kind;
	char *path;
	char *glob;
	size_t count;
	int done;
	/* current member */
	src_member m;
	char *m_name, *m_inner;
	FILE *m_fp, *m_raw; /* m_raw: underlying file of a filter stream (closed after) */
	arc_cookie *ck;
	char *mem;
	/* archive */
	struct archive *a;
	/* directory: sorted list of relative paths */
	char **files;
	size_t nfiles, fi;
};

static void member_reset(src_iter *it)
{
	if (it->m_fp && it->m_fp != stdin)
		fclose(it->m_fp);
	if (it->m_raw)
		fclose(it->m_raw);
	it->m_fp = it->m_raw = NULL;
	it->ck = NULL;
	free(it->m_name);
	free(it->m_inner);
	free(it->mem);
	it->m_name = it->m_inner = NULL;
	it->mem = NULL;
	memset(&it->m, 0, sizeof it->m);
}

static int wanted(const src_iter *it, const char *inner)
{
	if (it->glob) {
		const char *base = strrchr(inner, '/');
		base = base ? base + 1 : inner;
		return fnmatch(it->glob, inner, 0) == 0 || fnmatch(it->glob, base, 0) == 0;
	}
	return src_format_from_name(inner) != SRC_FMT_UNKNOWN;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int dir_walk(src_iter *it, const char *rel, sft_error *err)
{
	char full[8192];
	snprintf(full, sizeof full, "%s%s%s", it->path, *rel ? "/" : "", rel);
	DIR *d = opendir(full);
	if (!d)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", full, strerror(errno));
	struct dirent *de;
	int rc = 0;
	while (rc == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue; /* ., .., hidden files (.git, .cache) */
		char sub[8192];
		snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		char subfull[8192];
		snprintf(subfull, sizeof subfull, "%s/%s", it->path, sub);
		struct stat st;
		if (stat(subfull, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			rc = dir_walk(it, sub, err);
		} else if (S_ISREG(st.st_mode) && wanted(it, sub)) {
			char **nf = realloc(it->files, (it->nfiles + 1) * sizeof *nf);
			if (!nf) {
				rc = sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
				break;
			}
			it->files = nf;
			it->files[it->nfiles++] = strdup(sub);
		}
	}
	closedir(d);
	return rc;
}

src_iter *src_open(const char *path, const char *glob, sft_error *err)
{
	src_iter *it = calloc(1, sizeof *it);
	if (!it) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	it->path = strdup(path);
	it->glob = glob ? strdup(glob) : NULL;
	if (!strcmp(path, "-")) {
		it->kind = K_STDIN;
		return it;
	}
	struct stat st;
	if (stat(path, &st) != 0) {
		sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", path, strerror(errno));
		src_close(it);
		return NULL;
	}
	if (S_ISDIR(st.st_mode)) {
		it->kind = K_DIR;
		size_t n = strlen(it->path);
		while (n > 1 && it->path[n - 1] == '/')
			it->path[--n] = '\0';
		if (dir_walk(it, "", err) < 0) {
			src_close(it);
			return NULL;
		}
		if (it->nfiles)
			qsort(it->files, it->nfiles, sizeof *it->files, cmp_str);
		return it;
	}
	if (src_is_archive_name(path)) {
		it->kind = K_ARCHIVE;
		it->a = archive_read_new();
		archive_read_support_filter_all(it->a);
		archive_read_support_format_tar(it->a);
		archive_read_support_format_gnutar(it->a);
		archive_read_support_format_zip(it->a);
		if (archive_read_open_filename(it->a, path, 1 << 16) != ARCHIVE_OK) {
			sft_error_set(err, SFT_EXIT_DATA, "%s: cannot open archive: %s", path,
				      archive_error_string(it->a));
			src_close(it);
			return NULL;
		}
		return it;
	}
	it->kind = K_FILE;
	return it;
}

/* Sets up the current member from an open plain FILE (owned) or memory (owned). */
static int member_from(src_iter *it, FILE *fp, char *mem, size_t mem_len, const char *local_path,
		       sft_error *err)
{
	unsigned char head[8];
	size_t nh = 0;
	if (fp) {
		int c;
		if (fp == stdin) {
			/* stdin is read as is (a pipe cannot be rewound after sniffing) */
			it->m_fp = stdin;
			it->m.fp = stdin;
			it->m.name = it->m_name;
			it->m.inner = it->m_inner;
			it->m.format = SRC_FMT_UNKNOWN;
			return 0;
		}
		while (nh < sizeof head && (c = getc(fp)) != EOF)
			head[nh++] = (unsigned char)c;
		if (fseek(fp, 0, SEEK_SET) != 0) {
			fclose(fp);
			return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", it->m_name, strerror(errno));
		}
	} else {
		nh = mem_len < sizeof head ? mem_len : sizeof head;
		memcpy(head, mem, nh);
	}
	it->mem = mem;
	it->m.format = src_format_from_name(*it->m_inner ? it->m_inner : it->m_name);
	if (is_compressed_magic(head, nh)) {
		FILE *f = filter_open(fp, mem, mem_len, it->m_name, &it->ck, err);
		if (!f) {
			if (fp)
				fclose(fp);
			return -1;
		}
		it->m_raw = fp;
		it->m_fp = f;
		it->m.compressed = 1;
	} else if (fp) {
		it->m_fp = fp;
		it->m.path = local_path;
	} else {
		it->m_fp = fmemopen(mem_len ? mem : (void *)"", mem_len ? mem_len : 1, "r");
		if (!it->m_fp)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", it->m_name, strerror(errno));
		if (!mem_len)
			fgetc(it->m_fp); /* empty member: position at EOF */
		it->m.mem = mem;
		it->m.mem_len = mem_len;
	}
	it->m.fp = it->m_fp;
	it->m.name = it->m_name;
	it->m.inner = it->m_inner;
	return 0;
}

int src_next(src_iter *it, src_member **m, sft_error *err)
{
	member_reset(it);
	if (it->done)
		return 0;
	switch (it->kind) {
	case K_STDIN:
		it->done = 1;
		it->m_name = strdup("<stdin>");
		it->m_inner = strdup("");
		if (member_from(it, stdin, NULL, 0, NULL, err) < 0)
			return -1;
		break;
	case K_FILE: {
		it->done = 1;
		it->m_name = strdup(it->path);
		it->m_inner = strdup("");
		FILE *fp = fopen(it->path, "rb");
		if (!fp)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", it->path, strerror(errno));
		if (member_from(it, fp, NULL, 0, it->path, err) < 0)
			return -1;
		break;
	}
	case K_DIR: {
		if (it->fi >= it->nfiles) {
			it->done = 1;
			return 0;
		}
		const char *rel = it->files[it->fi++];
		size_t n = strlen(it->path) + strlen(rel) + 2;
		it->m_name = malloc(n);
		snprintf(it->m_name, n, "%s/%s", it->path, rel);
		it->m_inner = strdup(rel);
		FILE *fp = fopen(it->m_name, "rb");
		if (!fp)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: %s", it->m_name, strerror(errno));
		if (member_from(it, fp, NULL, 0, it->m_name, err) < 0)
			return -1;
		break;
	}
	case K_ARCHIVE: {
		struct archive_entry *ent;
		for (;;) {
			int r = archive_read_next_header(it->a, &ent);
			if (r == ARCHIVE_EOF) {
				it->done = 1;
				return 0;
			}
			if (r < ARCHIVE_WARN)
				return sft_error_set(err, SFT_EXIT_DATA, "%s: corrupt archive: %s", it->path,
						     archive_error_string(it->a));
			if (archive_entry_filetype(ent) != AE_IFREG)
				continue;
			const char *inner = archive_entry_pathname(ent);
			if (!inner)
				continue;
			while (inner[0] == '.' && inner[1] == '/')
				inner += 2;
			if (!wanted(it, inner))
				continue;
			size_t n = strlen(it->path) + strlen(inner) + 2;
			it->m_name = malloc(n);
			snprintf(it->m_name, n, "%s:%s", it->path, inner);
			it->m_inner = strdup(inner);
			/* read the whole member */
			size_t cap = archive_entry_size_is_set(ent) ? (size_t)archive_entry_size(ent) + 1 : 65536;
			size_t len = 0;
			char *buf = malloc(cap);
			if (!buf)
				return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", it->m_name);
			for (;;) {
				if (len == cap) {
					char *nb = realloc(buf, cap * 2);
					if (!nb) {
						free(buf);
						return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", it->m_name);
					}
					buf = nb;
					cap *= 2;
				}
				la_ssize_t k = archive_read_data(it->a, buf + len, cap - len);
				if (k < 0) {
					free(buf);
					return sft_error_set(err, SFT_EXIT_DATA, "%s: corrupt archive member: %s",
							     it->m_name, archive_error_string(it->a));
				}
				if (k == 0)
					break;
				len += (size_t)k;
			}
			if (member_from(it, NULL, buf, len, NULL, err) < 0)
				return -1;
			break;
		}
		break;
	}
	}
	it->count++;
	*m = &it->m;
	return 1;
}

const char *src_member_decode_error(const src_member *m)
{
	/* the cookie lives in the iterator; m is it->m */
	const src_iter *it = (const src_iter *)((const char *)m - offsetof(src_iter, m));
	return it->ck && it->ck->failed ? it->ck->errmsg : NULL;
}

size_t src_count(const src_iter *it)
{
	return it->count;
}

void src_close(src_iter *it)
{
	if (!it)
		return;
	member_reset(it);
	if (it->a)
		archive_read_free(it->a);
	for (size_t i = 0; i < it->nfiles; i++)
		free(it->files[i]);
	free(it->files);
	free(it->path);
	free(it->glob);
	free(it);
}

int src_slurp(FILE *fp, char **buf, size_t *len, sft_error *err, const char *name)
{
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap);
	if (!b)
		return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", name);
	for (;;) {
		if (n == cap) {
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: out of memory", name);
			}
			b = nb;
			cap *= 2;
		}
		size_t k = fread(b + n, 1, cap - n, fp);
		n += k;
		if (k == 0) {
			if (ferror(fp)) {
				free(b);
				return sft_error_set(err, SFT_EXIT_RUNTIME, "%s: read error: %s", name, strerror(errno));
			}
			break;
		}
	}
	*buf = b;
	*len = n;
	return 0;
}
