/*
 * Atomic file replacement: write to "PATH.tmp.PID", fsync, rename over PATH,
 * fsync the directory. A reader sees the old file or the new one, never a
 * half-written one.
 */
#ifndef LH_UTIL_FILE_H
#define LH_UTIL_FILE_H

#include <stdio.h>
#include "util/err.h"

struct lh_afile {
	FILE *fp;        /* write through this */
	char *path;      /* owned */
	char *tmp;       /* owned */
};

int lh_afile_open(struct lh_afile *f, const char *path, struct lh_err *e) LH_WUR;
/* Flushes, syncs and renames; always releases f. */
int lh_afile_commit(struct lh_afile *f, struct lh_err *e) LH_WUR;
/* Removes the temp file and releases f. */
void lh_afile_abort(struct lh_afile *f);
/* Writes n bytes of p to path atomically. */
int lh_write_file_atomic(const char *path, const void *p, size_t n, struct lh_err *e) LH_WUR;

/* Checks, before any work, that a file can later be written at path: its
 * directory exists and takes a new file (a probe file is created and
 * removed at once), and path itself is not a directory. `what` names the
 * file in messages ("output file"). Errors: LH_EIO, naming path. */
int lh_file_check_writable(const char *path, const char *what, struct lh_err *e) LH_WUR;

#endif
