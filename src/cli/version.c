/*
 * cli layer: `longhaul version` (and `--version`): longhaul's version, then
 * the version of each library it was built with, asked of the module that
 * owns the library so that no header crosses its layer. A library that
 * runs at another version than the one compiled against says so.
 */
#include "cli/cli.h"
#include "api/api.h"
#include "io/input.h"
#include "llm/llm.h"
#include "store/store.h"
#include "util/libver.h"

#include <string.h>

#define LONGHAUL_VERSION "0.1.0"

static void print_lib(FILE *out, const struct lh_libver *v, int first)
{
	const char *built = v->built[0] ? v->built : v->running;
	fprintf(out, "%s%s %s", first ? "" : ", ", v->name, built[0] ? built : "(unknown version)");
	if (v->built[0] && v->running[0] && strcmp(v->built, v->running))
		fprintf(out, " (running %s)", v->running);
}

int cli_version(int argc, char **argv)
{
	void (*const libs[])(struct lh_libver *) = {
		lh_llm_lib_version, lh_store_lib_version, lh_json_lib_version,
		lh_yaml_lib_version, lh_hash_lib_version, lh_api_lib_version,
	};
	struct lh_libver v;
	if (argc > 1) {
		fprintf(stderr, "longhaul: error: version takes no arguments\n");
		return 2;
	}
	printf("longhaul %s\nbuilt with ", LONGHAUL_VERSION);
	for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
		libs[i](&v);
		print_lib(stdout, &v, i == 0);
	}
	printf("\n");
	return 0;
}
