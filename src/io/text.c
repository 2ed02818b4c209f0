/*
 * io layer: UTF-8 validation for text files fed to a model, and lexical
 * path joining for the paths a spec names relative to itself.
 */
#include "io/io_internal.h"
#include "util/mem.h"

#include <string.h>

/* Length of the sequence that starts with lead byte c, or 0 if c cannot
 * start one (continuation bytes, 0xc0, 0xc1 and 0xf5 up). */
static size_t seq_len(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return 2;
	if (c >= 0xe0 && c <= 0xef)
		return 3;
	if (c >= 0xf0 && c <= 0xf4)
		return 4;
	return 0;
}

/* Checks the continuation bytes of one sequence, including the second-byte
 * ranges that rule out overlongs, surrogates and code points past U+10FFFF. */
static int seq_ok(const unsigned char *p, size_t len)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t i;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return 1;
}

int io_utf8_valid(const char *s, size_t n, size_t *bad)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		size_t len = seq_len(p[i]);
		if (len == 0 || len > n - i || (len > 1 && !seq_ok(p + i, len))) {
			if (bad)
				*bad = i;
			return 0;
		}
		i += len;
	}
	return 1;
}

/* Appends one segment to the normalised path in out (len bytes so far,
 * always starting with "/"): "." is dropped, ".." removes the last segment
 * (never past the root). */
static size_t push_segment(char *out, size_t len, const char *seg, size_t n)
{
	if (n == 0 || (n == 1 && seg[0] == '.'))
		return len;
	if (n == 2 && seg[0] == '.' && seg[1] == '.') {
		while (len > 1 && out[len - 1] != '/')
			len--;
		if (len > 1)
			len--;
		return len;
	}
	if (len > 1)
		out[len++] = '/';
	memcpy(out + len, seg, n);
	return len + n;
}

static size_t push_all(char *out, size_t len, const char *p)
{
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		len = push_segment(out, len, p, n);
		p += n + (slash ? 1 : 0);
	}
	return len;
}

char *io_path_join(const char *dir, const char *path)
{
	size_t cap = strlen(dir) + strlen(path) + 3, len = 1;
	char *out = lh_xmalloc(cap);
	out[0] = '/';
	if (path[0] != '/')
		len = push_all(out, len, dir);
	len = push_all(out, len, path);
	out[len] = '\0';
	return out;
}
