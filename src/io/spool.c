/*
 * io layer: standard input spooled to disk. `longhaul run -` reads its
 * input twice (once to find its job by the content's hash, once to ingest
 * it) and a pipe can be read only once, so the input goes to an unnamed
 * temporary file first: O_TMPFILE where the file system has it, else a
 * file unlinked as soon as it is made. Either way nothing is left behind,
 * even after kill -9. Memory holds one block, whatever the input's size.
 */
#include "io/input.h"
#include "util/hash.h"
#include "util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK (64u << 10)

static int tmp_in(const char *dir, struct lh_err *e)
{
	char path[4200];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return lh_err_set(e, LH_EIO, "could not create a temporary file in %s: %s", dir, strerror(errno));
	if ((size_t)snprintf(path, sizeof path, "%s/.longhaul-stdin.XXXXXX", dir) >= sizeof path)
		return lh_err_set(e, LH_EIO, "the directory name %s is too long", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return lh_err_set(e, LH_EIO, "could not create a temporary file in %s: %s", dir, strerror(errno));
	unlink(path);
	return fd;
}

static int write_all(int fd, const char *p, size_t n, const char *dir, struct lh_err *e)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return lh_err_set(e, errno == ENOSPC ? LH_EFULL : LH_EIO,
					  "could not copy standard input to a temporary file in %s: %s", dir,
					  strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int lh_input_spool(int in, const char *dir, int *out, char hex[LH_SHA256_HEX], struct lh_err *e)
{
	struct lh_sha256_ctx h;
	char *blk;
	int fd = tmp_in(dir, e), rc = 0;
	*out = -1;
	if (fd < 0)
		return fd;
	blk = lh_malloc(BLOCK);
	if (!blk) {
		close(fd);
		return lh_err_set(e, LH_ENOMEM, "out of memory");
	}
	lh_sha256_init(&h);
	for (;;) {
		ssize_t n = read(in, blk, BLOCK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = lh_err_set(e, LH_EIO, "could not read standard input: %s", strerror(errno));
			break;
		}
		if (n == 0)
			break;
		lh_sha256_update(&h, blk, (size_t)n);
		rc = write_all(fd, blk, (size_t)n, dir, e);
		if (rc)
			break;
	}
	lh_free(blk);
	lh_sha256_final_hex(&h, hex);
	if (rc) {
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}
