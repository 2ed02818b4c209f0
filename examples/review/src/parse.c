/* Parses a decimal port number. */
#include <stdlib.h>

int parse_port(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);
	/* TODO: reject an empty string and trailing garbage */
	if (n < 0 || n > 65535)
		return -1;
	return (int)n;
}
