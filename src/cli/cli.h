/*
 * cli layer: one function per command. Each returns the process exit code.
 */
#ifndef LH_CLI_CLI_H
#define LH_CLI_CLI_H

#include <stdio.h>

int cli_run(int argc, char **argv);
int cli_serve(int argc, char **argv);
/* Clients of the daemon's API (client*.c; docs/cli.md). */
int cli_submit(int argc, char **argv);
int cli_ls(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_watch(int argc, char **argv);
int cli_pause(int argc, char **argv);
int cli_resume(int argc, char **argv);
int cli_cancel(int argc, char **argv);
int cli_logs(int argc, char **argv);
int cli_results(int argc, char **argv);
int cli_failures(int argc, char **argv);
int cli_retry(int argc, char **argv);
int cli_set(int argc, char **argv);
int cli_rm(int argc, char **argv);
/* A person's decision on waiting items (client_approve.c). */
int cli_approve(int argc, char **argv);
/* Checks a store file's integrity and journal checksums (verify.c). */
int cli_verify(int argc, char **argv);
void cli_usage(FILE *out);
/* Prints the version and the libraries' versions (version.c). */
int cli_version(int argc, char **argv);

/* The daemon's data directory when none is given: $LONGHAUL_HOME, else
 * $XDG_STATE_HOME/longhaul, else ~/.local/state/longhaul (new string). Its
 * store is DIR/longhaul.db. */
char *cli_default_data_dir(void);

#endif
