/*
 * cli layer: one function per command. Each returns the process exit code.
 */
#ifndef LH_CLI_CLI_H
#define LH_CLI_CLI_H

#include <stdio.h>

int cli_run(int argc, char **argv);
int cli_serve(int argc, char **argv);
void cli_usage(FILE *out);

#endif
