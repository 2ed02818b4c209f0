/*
 * util layer: hashing (see hash.h).
 */
#include "util/hash.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

void lh_sha256(const void *p, size_t n, unsigned char out[32])
{
	SHA256(p, n, out);
}

void lh_sha256_hex(const void *p, size_t n, char out[LH_SHA256_HEX])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char d[32];
	int i;
	lh_sha256(p, n, d);
	for (i = 0; i < 32; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[64] = '\0';
}

uint64_t lh_hash64(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 1469598103934665603ULL;
	size_t i;
	for (i = 0; i < n; i++) {
		h ^= s[i];
		h *= 1099511628211ULL;
	}
	/* splitmix finaliser: FNV's low bits are weak for power-of-two tables */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}
