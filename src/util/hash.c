/*
 * util layer: hashing (see hash.h).
 */
#include "util/hash.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>

static void to_hex(const unsigned char d[32], char out[LH_SHA256_HEX])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[64] = '\0';
}

void lh_sha256(const void *p, size_t n, unsigned char out[32])
{
	SHA256(p, n, out);
}

void lh_sha256_hex(const void *p, size_t n, char out[LH_SHA256_HEX])
{
	unsigned char d[32];
	lh_sha256(p, n, d);
	to_hex(d, out);
}

/* libcrypto's contexts come from its own allocator; failing to get one is
 * running out of memory, which the lh_x* allocators abort on too. */
void lh_sha256_init(struct lh_sha256_ctx *c)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		abort();
	c->md = md;
}

void lh_sha256_update(struct lh_sha256_ctx *c, const void *p, size_t n)
{
	if (n && EVP_DigestUpdate(c->md, p, n) != 1)
		abort();
}

void lh_sha256_final_hex(struct lh_sha256_ctx *c, char out[LH_SHA256_HEX])
{
	unsigned char d[32];
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(c->md, d, &n) != 1 || n != 32)
		abort();
	EVP_MD_CTX_free(c->md);
	c->md = NULL;
	to_hex(d, out);
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
