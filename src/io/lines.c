/*
 * io layer: a line reader with a cap on the line length. getline(3) would
 * grow its buffer to any size an input asks for; this one stops copying at
 * the cap and skips the rest of the line, so memory stays bounded and the
 * reader can still tell which line was too long.
 */
#include "io/io_internal.h"
#include "util/mem.h"

#include <errno.h>
#include <string.h>

#define BLOCK (64u << 10)

int io_lines_open(struct io_lines *r, const char *path, size_t max, struct lh_err *e)
{
	memset(r, 0, sizeof *r);
	r->fp = fopen(path, "rb");
	if (!r->fp)
		return lh_err_at(e, LH_EIO, path, 0, NULL, "could not open: %s", strerror(errno));
	r->path = path;
	r->max = max;
	r->blk = lh_xmalloc(BLOCK);
	/* No cap on the buffer itself: io_lines_next enforces max + 1 (room
	 * for a "\r" that is dropped afterwards). */
	lh_buf_init(&r->line, 0);
	return 0;
}

void io_lines_close(struct io_lines *r)
{
	if (r->fp)
		fclose(r->fp);
	lh_free(r->blk);
	lh_buf_release(&r->line);
	memset(r, 0, sizeof *r);
}

/* Refills the block. Returns the bytes now available, 0 at the end, or
 * LH_EIO. */
static int fill(struct io_lines *r, struct lh_err *e)
{
	size_t n = fread(r->blk, 1, BLOCK, r->fp);
	if (n == 0 && ferror(r->fp))
		return lh_err_at(e, LH_EIO, r->path, r->lineno + 1, NULL, "could not read: %s",
				 strerror(errno ? errno : EIO));
	r->blk_len = n;
	r->blk_pos = 0;
	return n > 0;
}

/* Copies bytes up to the next "\n" into the line buffer (or only skips
 * them once the line is too long). Returns 1 when the line ended, 0 when
 * more must be read, or a negative code. */
static int take(struct io_lines *r, int *toolong)
{
	const char *start = r->blk + r->blk_pos;
	size_t avail = r->blk_len - r->blk_pos;
	const char *nl = memchr(start, '\n', avail);
	size_t chunk = nl ? (size_t)(nl - start) : avail;
	if (!*toolong && r->line.len + chunk > r->max + 1) {
		*toolong = 1;
		lh_buf_release(&r->line);
	}
	if (!*toolong) {
		int rc = lh_buf_append(&r->line, start, chunk);
		if (rc)
			return rc;
	}
	r->blk_pos += chunk + (nl ? 1 : 0);
	return nl != NULL;
}

int io_lines_next(struct io_lines *r, char **line, size_t *len, struct lh_err *e)
{
	int toolong = 0, got = 0, rc;
	lh_buf_clear(&r->line);
	for (;;) {
		if (r->blk_pos == r->blk_len) {
			rc = fill(r, e);
			if (rc < 0)
				return rc;
			if (rc == 0) {
				if (!got)
					return 0;
				break;
			}
		}
		got = 1;
		rc = take(r, &toolong);
		if (rc < 0)
			return lh_err_at(e, rc, r->path, r->lineno + 1, NULL, "could not read the line");
		if (rc == 1)
			break;
	}
	r->lineno++;
	if (!toolong && r->line.len && r->line.data[r->line.len - 1] == '\r')
		r->line.data[--r->line.len] = '\0';
	if (toolong || r->line.len > r->max)
		return lh_err_at(e, LH_ETOOBIG, r->path, r->lineno, NULL, "line is longer than %zu bytes",
				 r->max);
	/* An empty first line leaves the buffer unallocated; callers expect a
	 * string. The buffer has no cap, so this cannot fail. */
	if (!r->line.data && lh_buf_append(&r->line, "", 0))
		return LH_EINTERNAL;
	if (r->lineno == 1 && r->line.len >= 3 && memcmp(r->line.data, "\xef\xbb\xbf", 3) == 0) {
		memmove(r->line.data, r->line.data + 3, r->line.len - 3 + 1);
		r->line.len -= 3;
	}
	*line = r->line.data;
	*len = r->line.len;
	return 1;
}

int io_blank(const char *s, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return 0;
	return 1;
}
