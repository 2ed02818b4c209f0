/* Reads "name=value" lines from a configuration file. */
#include <stdio.h>
#include <string.h>

int config_get(const char *path, const char *name, char *out, size_t outsz)
{
	char line[256];
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = '\0';
		if (strcmp(line, name) == 0) {
			strcpy(out, eq + 1); /* TODO: check outsz */
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	return -1;
}
