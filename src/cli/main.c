/*
 * cli layer: entry point; dispatches to one function per command.
 */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: longhaul run FILE [options]\n");
		return 2;
	}
	(void)argv;
	return 0;
}
