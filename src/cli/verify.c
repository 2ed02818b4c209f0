/*
 * cli layer: `longhaul verify STORE`: checks a store file without running
 * anything: the backend's own consistency check (SQLite's integrity_check)
 * and the checksum of every journal row (design.md, guarantee 5). The
 * summary goes to stdout, each problem on its own line to stderr.
 *
 * Exit codes: 0 clean, 2 usage, 3 no such store file, 6 damage found (or
 * a file that is not a longhaul store), 7 the store is locked, 1 otherwise.
 */
#include "cli/cli.h"
#include "store/store.h"

#include "util/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	VERIFY_OK = 0,
	VERIFY_INTERNAL = 1,
	VERIFY_USAGE = 2,
	VERIFY_MISSING = 3,
	VERIFY_DAMAGED = 6,
	VERIFY_LOCKED = 7
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul verify [STORE]\n"
		"       longhaul verify --store STORE\n"
		"\n"
		"Checks the store file STORE (a `longhaul run` keeps FILE.longhaul.db beside its\n"
		"input; without STORE: $LONGHAUL_STORE, else the daemon's, DATA_DIR/longhaul.db as\n"
		"`longhaul serve` finds DATA_DIR): SQLite's integrity_check of the file, and the\n"
		"checksum of every journal\n"
		"row (each step's raw answer). Nothing is run or sent. An older store is brought\n"
		"to this build's schema first, as every command does.\n"
		"\n"
		"Prints `store STORE: N jobs, M items, R journal rows checked; integrity_check ok`,\n"
		"then each problem on its own line on stderr, naming the job, the item and its\n"
		"key, the step and the turn.\n"
		"\n"
		"exit codes: 0 the store is sound, 2 usage, 3 no such store file,\n"
		"6 damaged store or journal (or not a longhaul store), 7 store locked, 1 other errors\n");
}

static int exit_for(int rc)
{
	switch (rc) {
	case LH_ENOTFOUND:
		return VERIFY_MISSING;
	case LH_ECORRUPT:
		return VERIFY_DAMAGED;
	case LH_EBUSY:
		return VERIFY_LOCKED;
	case LH_EUSAGE:
		return VERIFY_USAGE;
	default:
		return VERIFY_INTERNAL;
	}
}

static void print_problem(void *arg, const char *what)
{
	fprintf(stderr, "longhaul: %s: %s\n", (const char *)arg, what);
}

/* The store's path from the arguments, or NULL having printed why not. */
static const char *store_arg(int argc, char **argv)
{
	const char *path = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--store") && i + 1 < argc)
			a = argv[++i];
		else if (!strncmp(a, "--store=", 8))
			a += 8;
		else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "longhaul: error: verify: unknown option \"%s\"\n", argv[i]);
			return NULL;
		}
		if (path) {
			fprintf(stderr, "longhaul: error: verify takes one store, not \"%s\" and \"%s\"\n", path, a);
			return NULL;
		}
		path = a;
	}
	if (path && !path[0]) {
		fprintf(stderr, "longhaul: error: verify: the store's path is empty\n");
		return NULL;
	}
	return path ? path : "";
}

int cli_verify(int argc, char **argv)
{
	struct lh_store_opts o = { 0 };
	struct lh_verify_report rep;
	struct lh_store *st = NULL;
	struct lh_err e;
	const char *path;
	char def[4200];
	int rc;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return VERIFY_OK;
		}
	path = store_arg(argc, argv);
	if (!path) {
		usage(stderr);
		return VERIFY_USAGE;
	}
	if (!path[0]) {
		/* No store named: the one of the environment, else the daemon's. */
		const char *env = getenv("LONGHAUL_STORE");
		if (env && *env) {
			path = env;
		} else {
			char *dir = cli_default_data_dir();
			snprintf(def, sizeof def, "%s/longhaul.db", dir);
			lh_free(dir);
			path = def;
		}
	}
	lh_err_clear(&e);
	o.path = path;
	o.create = 0;
	rc = lh_store_open(&o, &st, &e);
	if (!rc)
		rc = lh_store_verify(st, print_problem, (void *)path, &rep, &e);
	lh_store_close(st);
	if (rc) {
		fprintf(stderr, "longhaul: error: %s\n", e.msg);
		return exit_for(rc);
	}
	printf("store %s: %lld job%s, %lld item%s, %lld journal row%s checked; integrity_check %s\n", path,
	       (long long)rep.jobs, rep.jobs == 1 ? "" : "s", (long long)rep.items, rep.items == 1 ? "" : "s",
	       (long long)rep.rows, rep.rows == 1 ? "" : "s", rep.integrity_ok ? "ok" : "FAILED");
	if (rep.bad_rows || !rep.integrity_ok) {
		printf("%lld damaged journal row%s%s\n", (long long)rep.bad_rows, rep.bad_rows == 1 ? "" : "s",
		       rep.integrity_ok ? "" : "; the file itself is damaged (restore it from a backup)");
		return VERIFY_DAMAGED;
	}
	return VERIFY_OK;
}
