/*
 * util layer: atomic file replacement (see file.h).
 */
#include "util/file.h"
#include "util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int lh_afile_open(struct lh_afile *f, const char *path, struct lh_err *e)
{
	size_t n = strlen(path) + 32;
	f->path = lh_xstrdup(path);
	f->tmp = lh_xmalloc(n);
	snprintf(f->tmp, n, "%s.tmp.%ld", path, (long)getpid());
	f->fp = fopen(f->tmp, "w");
	if (!f->fp) {
		int rc = lh_err_at(e, LH_EIO, path, 0, NULL, "could not create %s: %s", f->tmp,
				   strerror(errno));
		lh_free(f->path);
		lh_free(f->tmp);
		f->path = f->tmp = NULL;
		return rc;
	}
	return 0;
}

static void sync_dir(const char *path)
{
	char *copy = lh_xstrdup(path);
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	lh_free(copy);
}

int lh_afile_commit(struct lh_afile *f, struct lh_err *e)
{
	int rc = 0;
	if (fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0) {
		rc = lh_err_at(e, errno == ENOSPC ? LH_EFULL : LH_EIO, f->path, 0, NULL,
			       "could not write: %s", strerror(errno));
		fclose(f->fp);
		unlink(f->tmp);
	} else if (fclose(f->fp) != 0) {
		rc = lh_err_at(e, LH_EIO, f->path, 0, NULL, "could not write: %s", strerror(errno));
		unlink(f->tmp);
	} else if (rename(f->tmp, f->path) != 0) {
		rc = lh_err_at(e, LH_EIO, f->path, 0, NULL, "could not rename %s: %s", f->tmp,
			       strerror(errno));
		unlink(f->tmp);
	} else {
		sync_dir(f->path);
	}
	f->fp = NULL;
	lh_free(f->path);
	lh_free(f->tmp);
	f->path = f->tmp = NULL;
	return rc;
}

void lh_afile_abort(struct lh_afile *f)
{
	if (f->fp) {
		fclose(f->fp);
		unlink(f->tmp);
	}
	f->fp = NULL;
	lh_free(f->path);
	lh_free(f->tmp);
	f->path = f->tmp = NULL;
}

int lh_write_file_atomic(const char *path, const void *p, size_t n, struct lh_err *e)
{
	struct lh_afile f;
	int rc = lh_afile_open(&f, path, e);
	if (rc)
		return rc;
	if (n && fwrite(p, 1, n, f.fp) != n) {
		rc = lh_err_at(e, errno == ENOSPC ? LH_EFULL : LH_EIO, path, 0, NULL,
			       "could not write: %s", strerror(errno));
		lh_afile_abort(&f);
		return rc;
	}
	return lh_afile_commit(&f, e);
}

int lh_file_check_writable(const char *path, const char *what, struct lh_err *e)
{
	char *copy = lh_xstrdup(path), *dir, probe[4200];
	struct stat sb;
	int fd, rc = 0;
	if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		rc = lh_err_at(e, LH_EIO, path, 0, NULL, "is a directory; the %s needs a file name", what);
		goto out;
	}
	dir = dirname(copy);
	if (stat(dir, &sb) != 0) {
		rc = lh_err_at(e, LH_EIO, path, 0, NULL, "cannot write the %s: the directory %s %s", what, dir,
			       errno == ENOENT ? "does not exist" : strerror(errno));
		goto out;
	}
	if (!S_ISDIR(sb.st_mode)) {
		rc = lh_err_at(e, LH_EIO, path, 0, NULL, "cannot write the %s: %s is not a directory", what, dir);
		goto out;
	}
	/* access(2) would answer for the real user id and ignore read-only
	 * mounts; creating a file is the question itself. */
	if ((size_t)snprintf(probe, sizeof probe, "%s/.longhaul-probe.XXXXXX", dir) >= sizeof probe) {
		rc = lh_err_at(e, LH_EIO, path, 0, NULL, "the path of the %s is too long", what);
		goto out;
	}
	fd = mkostemp(probe, O_CLOEXEC);
	if (fd < 0) {
		rc = lh_err_at(e, LH_EIO, path, 0, NULL, "cannot write the %s: could not create a file in %s: %s",
			       what, dir, strerror(errno));
		goto out;
	}
	close(fd);
	unlink(probe);
out:
	lh_free(copy);
	return rc;
}
