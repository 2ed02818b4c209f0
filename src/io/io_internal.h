/*
 * Helpers shared by the io/ readers and writers, private to io/: a bounded
 * line reader, a compact JSON writer with stable number formatting, UTF-8
 * validation and path joining.
 */
#ifndef LH_IO_INTERNAL_H
#define LH_IO_INTERNAL_H

#include <stdio.h>
#include <jansson.h>
#include "util/buf.h"
#include "util/err.h"

/* ---- bounded line reader ---- */

struct io_lines {
	FILE *fp;
	const char *path;   /* borrowed, for error messages */
	char *blk;          /* read block */
	size_t blk_len, blk_pos;
	struct lh_buf line; /* the current line, without its "\n" or "\r\n" */
	size_t max;         /* longest line accepted, in bytes */
	long lineno;        /* 1-based number of the current line */
};

/* Opens path for reading lines of at most max bytes. path is borrowed and
 * must outlive the reader. Errors: LH_EIO with strerror, naming path. */
int io_lines_open(struct io_lines *r, const char *path, size_t max, struct lh_err *e) LH_WUR;
/* Reads the next line: 1 with *line (borrowed until the next call,
 * NUL-terminated) and *len, 0 at the end, LH_ETOOBIG for a line longer than
 * max (the reader skips past it, so it can go on), LH_EIO on a read error.
 * A UTF-8 byte order mark at the start of the file is dropped. */
int io_lines_next(struct io_lines *r, char **line, size_t *len, struct lh_err *e) LH_WUR;
void io_lines_close(struct io_lines *r);

/* 1 when s[0..n) holds only spaces, tabs and carriage returns. */
int io_blank(const char *s, size_t n);

/* ---- JSON ---- */

/* Appends j as compact JSON: keys in insertion order (sorted by byte value
 * when sort_keys), reals in the shortest form that reads back to the same
 * double (0.7, not 0.69999999999999996). Returns 0 or LH_ETOOBIG. */
int io_json_dump(const json_t *j, struct lh_buf *b, int sort_keys) LH_WUR;
/* Writes the shortest round-tripping text of a finite double, always with
 * a "." or an exponent so that it reads back as a real. */
void io_fmt_real(double d, char *out, size_t outsz);
/* Short description of j's type for messages: "a string", "an object"... */
const char *io_json_type_name(const json_t *j);

/* ---- specs ---- */

/* 1 when name is a top-level field of a job spec. */
int io_spec_has_field(const char *name);

/* The spec loader's readers (spec.c), shared with the steps' reader
 * (spec_steps.c). Each checks one YAML node v found at line (the line of
 * its key) and reports a mistake as LH_EINPUT naming rd->file, line and
 * field. Strings set *out (new, owned by the caller; the old value freed)
 * and leave it alone when v is null. */
struct fy_node;
struct io_spec_rd {
	const char *file;    /* the spec, for errors */
	const char *dir;     /* its directory, for relative paths */
	struct lh_err *e;
};
/* The 1-based line of a scalar node, 0 for others. */
long io_spec_line(struct fy_node *n);
/* 1 for YAML's null: no node, "~", "null" or an empty plain scalar. */
int io_spec_null(struct fy_node *n);
/* "expected WHAT, not A-NUMBER". */
int io_spec_bad(const struct io_spec_rd *rd, long line, const char *field, const char *what, struct fy_node *v);
/* "unknown field (valid fields: VALID)". */
int io_spec_unknown(const struct io_spec_rd *rd, long line, const char *field, const char *valid);
/* The text of a scalar (borrowed from the document), errors for aliases,
 * lists and mappings. */
int io_spec_scalar(const struct io_spec_rd *rd, long line, const char *field, const char *what, struct fy_node *v,
		   const char **s, size_t *len);
int io_spec_str(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, char **out);
int io_spec_path(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, char **out);
int io_spec_url(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, char **out);
int io_spec_envname(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, char **out);
/* Numbers in [min, max] ((min, max] when excl); v must not be null. */
int io_spec_long(const struct io_spec_rd *rd, long line, const char *field, double min, double max,
		 struct fy_node *v, long *out);
int io_spec_num(const struct io_spec_rd *rd, long line, const char *field, double min, double max, int excl,
		struct fy_node *v, double *out);
int io_spec_bool(const struct io_spec_rd *rd, long line, const char *field, struct fy_node *v, int *out);

/* spec_steps.c: `steps:` (at line, v not null) into *out, a new json_t*
 * array of normalized steps (see lh_spec_load), and `reduce:` into a new
 * json_t* object. */
int io_spec_read_steps(const struct io_spec_rd *rd, long line, struct fy_node *v, json_t **out);
int io_spec_read_reduce(const struct io_spec_rd *rd, long line, struct fy_node *v, json_t **out);

/* ---- text and paths ---- */

/* 1 when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, nothing
 * above U+10FFFF); else 0 with *bad (may be NULL) the offset of the first
 * bad byte. */
int io_utf8_valid(const char *s, size_t n, size_t *bad);
/* dir joined with path (path as is when absolute), with "." and ".."
 * segments and repeated slashes folded lexically. New string. */
char *io_path_join(const char *dir, const char *path);

#endif
