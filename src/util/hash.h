/*
 * Hashing: SHA-256 (libcrypto) for request hashes and content keys, and a
 * fast 64-bit hash for in-memory tables.
 */
#ifndef LH_UTIL_HASH_H
#define LH_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define LH_SHA256_HEX 65 /* 64 hex digits and a NUL */

/* Writes the lowercase hex SHA-256 of p[0..n) into out (LH_SHA256_HEX bytes). */
void lh_sha256_hex(const void *p, size_t n, char out[LH_SHA256_HEX]);
/* Raw 32-byte digest. */
void lh_sha256(const void *p, size_t n, unsigned char out[32]);
/* Incremental SHA-256, for content read in pieces (standard input). */
struct lh_sha256_ctx {
	void *md; /* EVP_MD_CTX, owned */
};
void lh_sha256_init(struct lh_sha256_ctx *c);
void lh_sha256_update(struct lh_sha256_ctx *c, const void *p, size_t n);
/* Writes the hex digest and releases c. */
void lh_sha256_final_hex(struct lh_sha256_ctx *c, char out[LH_SHA256_HEX]);

/* 64-bit FNV-1a, then mixed; not for anything adversarial. */
uint64_t lh_hash64(const void *p, size_t n);

#endif
