/*
 * io layer: the items of a spec, from a JSONL file of records or from text
 * files (a directory tree or a glob). Both stream one item at a time in a
 * deterministic order, and every item has a deterministic key, so running
 * the same spec again finds the same items in the store.
 *
 * A directory is walked depth first with each directory's entries sorted,
 * directories compared as "name/": that visits files in the byte order of
 * their relative paths (as if the whole list were sorted) while holding
 * only the entries of the directories on the current path.
 */
#include "io/input.h"
#include "io/io_internal.h"
#include "util/hash.h"
#include "util/mem.h"
#include "util/vec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTH 256

struct level {
	char *rel;          /* "" for the root, else "sub/dir/" */
	LH_VEC(char *) names; /* sorted; directories end with "/" */
	size_t i;             /* the next name to visit */
};

struct lh_source {
	const char *spec_path;  /* borrowed, for errors that belong to the spec */
	json_t *cur;            /* the current record */
	char *key;              /* the current key (owned copy for files) */
	char num[32];           /* an integer key's text */
	char hash[LH_SHA256_HEX];
	struct lh_buf scratch;  /* hashing dumps, file contents */
	/* records */
	char *records;
	char *key_field;
	struct io_lines lines;
	int have_lines;
	/* files */
	char *base;             /* files' keys are relative to this directory */
	int is_glob;
	glob_t g;
	size_t gi;
	struct level *stack;
	size_t depth;
	char *cur_path;         /* absolute path of the current file */
};

/* ---- directory walk ---- */

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join3(const char *a, const char *b, const char *c)
{
	size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
	char *s = lh_xmalloc(na + nb + nc + 1);
	memcpy(s, a, na);
	memcpy(s + na, b, nb);
	memcpy(s + na + nb, c, nc + 1);
	return s;
}

/* The sort key of one entry: its name, with "/" after directories; NULL
 * for entries that are skipped (hidden ones, symbolic links to
 * directories, which could loop, and anything that is not a file). */
static char *entry_name(int dfd, const char *name)
{
	struct stat st;
	if (name[0] == '.')
		return NULL;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return NULL;
	if (S_ISDIR(st.st_mode))
		return join3(name, "/", "");
	if (S_ISLNK(st.st_mode) && fstatat(dfd, name, &st, 0) != 0)
		return NULL;
	return S_ISREG(st.st_mode) ? lh_xstrdup(name) : NULL;
}

static void level_release(struct level *l)
{
	size_t i;
	for (i = 0; i < l->names.n; i++)
		lh_free(l->names.v[i]);
	lh_vec_release(&l->names);
	lh_free(l->rel);
}

static int push_level(struct lh_source *src, char *rel, struct lh_err *e)
{
	char *abs = join3(src->base, "/", rel);
	DIR *d = opendir(abs);
	struct dirent *de;
	struct level *l;
	if (!d) {
		int rc = lh_err_at(e, LH_EIO, abs, 0, NULL, "could not read directory: %s", strerror(errno));
		lh_free(abs);
		lh_free(rel);
		return rc;
	}
	if (src->depth == MAX_DEPTH) {
		int rc = lh_err_at(e, LH_EINPUT, abs, 0, NULL, "directory tree is deeper than %d levels",
				   MAX_DEPTH);
		closedir(d);
		lh_free(abs);
		lh_free(rel);
		return rc;
	}
	l = &src->stack[src->depth++];
	memset(l, 0, sizeof *l);
	l->rel = rel;
	while ((de = readdir(d))) {
		char *name = entry_name(dirfd(d), de->d_name);
		if (!name)
			continue;
		*lh_vec_push_from(&l->names, 16) = name;
	}
	closedir(d);
	lh_free(abs);
	if (l->names.n)
		qsort(l->names.v, l->names.n, sizeof *l->names.v, cmp_name);
	return 0;
}

/* Next file of the walk: 1 with src->key (its relative path), 0 at the end. */
static int walk_next(struct lh_source *src, struct lh_err *e)
{
	while (src->depth > 0) {
		struct level *l = &src->stack[src->depth - 1];
		const char *name;
		size_t len;
		int rc;
		if (l->i == l->names.n) {
			level_release(l);
			src->depth--;
			continue;
		}
		name = l->names.v[l->i++];
		len = strlen(name);
		if (name[len - 1] == '/') {
			rc = push_level(src, join3(l->rel, name, ""), e);
			if (rc)
				return rc;
			continue;
		}
		lh_free(src->key);
		src->key = join3(l->rel, name, "");
		return 1;
	}
	return 0;
}

/* ---- glob ---- */

/* The glob's literal directory: everything before the segment that holds
 * the first wildcard ("/data/in" for "/data/in/2024-??/notes.txt"). */
static char *glob_base(const char *pattern)
{
	size_t meta = strcspn(pattern, "*?["), i = meta;
	while (i > 0 && pattern[i - 1] != '/')
		i--;
	/* i is just past the last "/" before the wildcard; keep "/" for the root. */
	return lh_xstrndup(pattern, i > 1 ? i - 1 : 1);
}

static int glob_open(struct lh_source *src, const char *pattern, struct lh_err *e)
{
	int rc = glob(pattern, GLOB_MARK, NULL, &src->g);
	src->is_glob = 1;
	if (rc == GLOB_NOMATCH)
		return lh_err_at(e, LH_EINPUT, src->spec_path, 0, "input", "no files match %s", pattern);
	if (rc == GLOB_NOSPACE)
		return lh_err_at(e, LH_ENOMEM, src->spec_path, 0, "input", "out of memory expanding %s",
				 pattern);
	if (rc != 0)
		return lh_err_at(e, LH_EIO, src->spec_path, 0, "input",
				 "could not read the directories of %s", pattern);
	/* glob(3) sorts by the locale's collation; keys must not depend on it. */
	qsort(src->g.gl_pathv, src->g.gl_pathc, sizeof *src->g.gl_pathv, cmp_name);
	src->base = glob_base(pattern);
	return 0;
}

static int glob_next(struct lh_source *src)
{
	size_t blen = strlen(src->base);
	while (src->gi < src->g.gl_pathc) {
		const char *p = src->g.gl_pathv[src->gi++];
		size_t len = strlen(p);
		struct stat st;
		/* GLOB_MARK ends directories with "/"; only regular files are items. */
		if (!len || p[len - 1] == '/' || stat(p, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (strncmp(p, src->base, blen) == 0)
			p += blen;
		while (*p == '/')
			p++;
		lh_free(src->key);
		src->key = lh_xstrdup(p);
		return 1;
	}
	return 0;
}

/* ---- files ---- */

static int read_file(struct lh_source *src, const char *path, struct lh_err *e)
{
	char chunk[65536];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	if (fd < 0)
		return lh_err_at(e, LH_EIO, path, 0, NULL, "could not open: %s", strerror(errno));
	if (fstat(fd, &st) == 0 && st.st_size > (off_t)LH_MAX_FILE)
		rc = lh_err_at(e, LH_ETOOBIG, path, 0, NULL, "file is larger than %u bytes", LH_MAX_FILE);
	lh_buf_clear(&src->scratch);
	while (!rc) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = lh_err_at(e, LH_EIO, path, 0, NULL, "could not read: %s", strerror(errno));
		if (n <= 0)
			break;
		/* The file may have grown since fstat. */
		if (lh_buf_append(&src->scratch, chunk, (size_t)n))
			rc = lh_err_at(e, LH_ETOOBIG, path, 0, NULL, "file is larger than %u bytes",
				       LH_MAX_FILE);
	}
	close(fd);
	return rc;
}

/* Builds {"text": ..., "path": key} for the file in src->key. */
static int file_record(struct lh_source *src, struct lh_err *e)
{
	const char *text;
	size_t len, badpos;
	int rc;
	lh_free(src->cur_path);
	src->cur_path = join3(src->base, src->base[strlen(src->base) - 1] == '/' ? "" : "/", src->key);
	/* The key goes into JSON everywhere (store, events, outputs). */
	if (!io_utf8_valid(src->key, strlen(src->key), NULL))
		return lh_err_at(e, LH_EINPUT, src->cur_path, 0, NULL, "file name is not UTF-8");
	if (strlen(src->key) > LH_MAX_KEY)
		return lh_err_at(e, LH_EINPUT, src->cur_path, 0, NULL,
				 "relative path is longer than %d bytes, too long for a key", LH_MAX_KEY);
	rc = read_file(src, src->cur_path, e);
	if (rc)
		return rc;
	text = src->scratch.data ? src->scratch.data : "";
	len = src->scratch.len;
	if (!io_utf8_valid(text, len, &badpos))
		return lh_err_at(e, LH_EINPUT, src->cur_path, 0, NULL,
				 "not UTF-8 text (bad byte at offset %zu)", badpos);
	/* A byte order mark is not part of the text a model should see. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
		text += 3;
		len -= 3;
	}
	src->cur = json_object();
	json_object_set_new(src->cur, "text", json_stringn(text, len));
	json_object_set_new(src->cur, "path", json_string(src->key));
	return 0;
}

static int files_next(struct lh_source *src, struct lh_record *r, struct lh_err *e)
{
	int rc = src->is_glob ? glob_next(src) : walk_next(src, e);
	if (rc <= 0)
		return rc;
	rc = file_record(src, e);
	if (rc)
		return rc;
	r->line = 0;
	r->where = src->cur_path;
	r->key = src->key;
	r->key_len = strlen(src->key);
	r->json = src->cur;
	return 1;
}

/* ---- records ---- */

/* The key of the record in src->cur: its key field (a string, or an
 * integer as decimal text) or, without one, the hash of its canonical form. */
static int record_key(struct lh_source *src, const char **key, size_t *len, struct lh_err *e)
{
	json_t *v = json_object_get(src->cur, src->key_field);
	long line = src->lines.lineno;
	int rc;
	if (json_is_string(v)) {
		*key = json_string_value(v);
		*len = json_string_length(v);
		if (*len == 0)
			return lh_err_at(e, LH_EINPUT, src->records, line, src->key_field,
					 "must not be empty");
		if (*len > LH_MAX_KEY)
			return lh_err_at(e, LH_EINPUT, src->records, line, src->key_field,
					 "longer than %d bytes", LH_MAX_KEY);
		return 0;
	}
	if (json_is_integer(v)) {
		snprintf(src->num, sizeof src->num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		*key = src->num;
		*len = strlen(src->num);
		return 0;
	}
	if (v)
		return lh_err_at(e, LH_EINPUT, src->records, line, src->key_field,
				 "expected a string or an integer, not %s", io_json_type_name(v));
	lh_buf_clear(&src->scratch);
	rc = io_json_dump(src->cur, &src->scratch, 1);
	if (rc)
		return lh_err_at(e, rc, src->records, line, NULL, "record is too large");
	lh_sha256_hex(src->scratch.data, src->scratch.len, src->hash);
	*key = src->hash;
	*len = LH_SHA256_HEX - 1;
	return 0;
}

static int records_next(struct lh_source *src, struct lh_record *r, struct lh_err *e)
{
	char *line;
	size_t len;
	json_error_t jerr;
	int rc;
	while ((rc = io_lines_next(&src->lines, &line, &len, e)) == 1)
		if (!io_blank(line, len))
			break;
	if (rc <= 0)
		return rc;
	src->cur = json_loadb(line, len, 0, &jerr);
	if (!src->cur)
		return lh_err_at(e, LH_EINPUT, src->records, src->lines.lineno, NULL,
				 "invalid JSON: %s at column %d", jerr.text, jerr.column);
	if (!json_is_object(src->cur))
		return lh_err_at(e, LH_EINPUT, src->records, src->lines.lineno, NULL,
				 "expected a JSON object, not %s", io_json_type_name(src->cur));
	rc = record_key(src, &r->key, &r->key_len, e);
	if (rc)
		return rc;
	r->line = src->lines.lineno;
	r->where = src->records;
	r->json = src->cur;
	return 1;
}

/* ---- the source ---- */

static int files_open(struct lh_source *src, const char *input, struct lh_err *e)
{
	struct stat st;
	/* The spec loader checked that a path without wildcards is a
	 * directory; asking the file system (rather than looking for "*?[")
	 * keeps a directory whose absolute path happens to hold one a
	 * directory. */
	if (stat(input, &st) != 0 || !S_ISDIR(st.st_mode))
		return glob_open(src, input, e);
	src->base = lh_xstrdup(input);
	src->stack = lh_xcalloc(MAX_DEPTH, sizeof *src->stack);
	return push_level(src, lh_xstrdup(""), e);
}

int lh_source_open(const struct lh_spec *s, struct lh_source **out, struct lh_err *e)
{
	struct lh_source *src = lh_xcalloc(1, sizeof *src);
	int rc;
	src->spec_path = s->path;
	lh_buf_init(&src->scratch, LH_MAX_FILE);
	if (s->input_records) {
		src->records = lh_xstrdup(s->input_records);
		src->key_field = lh_xstrdup(s->key_field ? s->key_field : "id");
		rc = io_lines_open(&src->lines, src->records, LH_MAX_LINE, e);
		src->have_lines = rc == 0;
		/* A canonical dump can be longer than the line it came from. */
		src->scratch.max = 0;
	} else if (s->input_files) {
		rc = files_open(src, s->input_files, e);
	} else {
		rc = lh_err_at(e, LH_EINPUT, s->path, 0, "input", "required field is missing");
	}
	if (rc) {
		lh_source_close(src);
		return rc;
	}
	*out = src;
	return 0;
}

int lh_source_next(struct lh_source *src, struct lh_record *r, struct lh_err *e)
{
	json_decref(src->cur);
	src->cur = NULL;
	return src->records ? records_next(src, r, e) : files_next(src, r, e);
}

void lh_source_close(struct lh_source *src)
{
	if (!src)
		return;
	json_decref(src->cur);
	if (src->have_lines)
		io_lines_close(&src->lines);
	if (src->is_glob)
		globfree(&src->g);
	while (src->depth > 0)
		level_release(&src->stack[--src->depth]);
	lh_free(src->stack);
	lh_buf_release(&src->scratch);
	lh_free(src->records);
	lh_free(src->key_field);
	lh_free(src->base);
	lh_free(src->key);
	lh_free(src->cur_path);
	lh_free(src);
}
