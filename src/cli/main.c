/*
 * cli layer: the entry point; dispatches to one function per command.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#define LONGHAUL_VERSION "0.1.0"

void cli_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul COMMAND [options]\n"
		"\n"
		"commands:\n"
		"  run FILE      run a job (an OpenAI batch file or a job spec) in the foreground;\n"
		"                running the same command again resumes it\n"
		"  serve         run the daemon: many jobs behind an HTTP API\n"
		"  version       print the version\n"
		"  help          this text\n"
		"\n"
		"`longhaul run --help` lists the options of run.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		cli_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "run"))
		return cli_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "serve"))
		return cli_serve(argc - 1, argv + 1);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("longhaul %s\n", LONGHAUL_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_usage(stdout);
		return 0;
	}
	fprintf(stderr, "longhaul: unknown command \"%s\"\n", argv[1]);
	cli_usage(stderr);
	return 2;
}
