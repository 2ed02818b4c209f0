/* A growable byte buffer. */
#include <stdlib.h>
#include <string.h>

struct buffer {
	char *data;
	size_t len, cap;
};

int buffer_append(struct buffer *b, const char *s, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		while (cap < b->len + n)
			cap *= 2;
		/* TODO: the old pointer leaks when realloc fails */
		b->data = realloc(b->data, cap);
		if (!b->data)
			return -1;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	return 0;
}
