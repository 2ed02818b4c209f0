/*
 * cli layer: the entry point; dispatches to one function per command.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

void cli_usage(FILE *out)
{
	fprintf(out,
		"usage: longhaul COMMAND [options]\n"
		"\n"
		"commands:\n"
		"  run FILE      run a job (an OpenAI batch file or a job spec) in the foreground;\n"
		"                running the same command again resumes it\n"
		"  run INPUT --prompt T --model M\n"
		"                run a prompt over JSONL records, a directory or a glob\n"
		"  serve         run the daemon: many jobs behind an HTTP API\n"
		"  submit FILE   send a job to the daemon (--wait to follow it to the end)\n"
		"  ls            list the daemon's jobs\n"
		"  status ID     show a job\n"
		"  watch ID      follow a job with a progress bar until it ends\n"
		"  pause ID, resume ID, cancel ID\n"
		"                change a job's state\n"
		"  logs ID       print a job's events (--follow for new ones)\n"
		"  results ID    a job's results as JSONL (-o FILE to write a file)\n"
		"  failures ID   a job's failed items\n"
		"  retry ID [KEY...]\n"
		"                send failed items back to pending\n"
		"  set ID --model M ...\n"
		"                change a job's settings (model, server, key variable, limits)\n"
		"  approve ID KEY... (or --all)\n"
		"                let items waiting at an approve step go on (--reject: fail them);\n"
		"                approve --store PATH KEY... for the store of a `run`\n"
		"  rm ID         delete a job\n"
		"  verify STORE  check a store file: its integrity and every journal row's checksum\n"
		"  version       print the version\n"
		"  help          this text\n"
		"\n"
		"`longhaul COMMAND --help` lists the options and exit codes of a command.\n"
		"A job is named by its id or, when no other job has it, by its name.\n"
		"The daemon's clients talk to $LONGHAUL_URL (default http://127.0.0.1:8421) with\n"
		"the token in $LONGHAUL_TOKEN; see docs/cli.md.\n");
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
	if (!strcmp(argv[1], "verify"))
		return cli_verify(argc - 1, argv + 1);
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} clients[] = {
		{ "submit", cli_submit }, { "ls", cli_ls },         { "status", cli_status },
		{ "watch", cli_watch },   { "pause", cli_pause },   { "resume", cli_resume },
		{ "cancel", cli_cancel }, { "logs", cli_logs },     { "results", cli_results },
		{ "failures", cli_failures }, { "retry", cli_retry },  { "set", cli_set },
		{ "rm", cli_rm },         { "approve", cli_approve },
	};
	for (size_t i = 0; i < sizeof clients / sizeof clients[0]; i++)
		if (!strcmp(argv[1], clients[i].name))
			return clients[i].fn(argc - 1, argv + 1);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version"))
		return cli_version(argc - 1, argv + 1);
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_usage(stdout);
		return 0;
	}
	fprintf(stderr, "longhaul: error: unknown command \"%s\"\n", argv[1]);
	cli_usage(stderr);
	return 2;
}
