/* The command line: prints one configuration value. */
#include <stdio.h>

int config_get(const char *path, const char *name, char *out, size_t outsz);

int main(int argc, char **argv)
{
	char value[64];
	if (argc != 3) {
		fprintf(stderr, "usage: %s FILE NAME\n", argv[0]);
		return 2;
	}
	if (config_get(argv[1], argv[2], value, sizeof value) != 0) {
		fprintf(stderr, "%s: not found\n", argv[2]);
		return 1;
	}
	printf("%s", value);
	return 0;
}
