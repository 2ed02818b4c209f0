/*
 * A growable byte buffer with a sticky failure flag: callers append freely
 * and check buf_failed() once when the message is complete, instead of
 * testing every append. Used for socket input and output and for building
 * JSON replies.
 */
#ifndef MOCKLLM_BUF_H
#define MOCKLLM_BUF_H

#include <stdbool.h>
#include <stddef.h>

/* No buffer may grow beyond this; it keeps size arithmetic far from overflow. */
#define BUF_MAX ((size_t)1 << 30)

struct buf {
	char *data;
	size_t len;
	size_t cap;
	bool failed;
};

/* Makes an empty buffer that owns no memory yet. */
void buf_init(struct buf *b);

/* Frees the buffer's memory; it is empty (and reusable) afterwards. */
void buf_release(struct buf *b);

/* Empties the buffer and clears the failure flag, keeping the memory. */
static inline void buf_clear(struct buf *b)
{
	b->len = 0;
	b->failed = false;
}

static inline bool buf_failed(const struct buf *b)
{
	return b->failed;
}

/*
 * Makes room for extra more bytes. Returns false (and sets the failure flag)
 * when memory runs out or the buffer would pass BUF_MAX.
 */
bool buf_reserve(struct buf *b, size_t extra);

/* Appends n bytes; on failure only sets the flag. */
void buf_append(struct buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string without its NUL. */
void buf_puts(struct buf *b, const char *s);

/* Appends formatted text (vsnprintf, never past the buffer). */
void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Appends an unsigned decimal number. */
void buf_u64(struct buf *b, unsigned long long v);

/* Appends n bytes of UTF-8 text as a quoted JSON string, escaping as RFC 8259 requires. */
void buf_json_str(struct buf *b, const char *s, size_t n);

/* Drops the first n bytes, moving the rest to the front. */
void buf_drop_front(struct buf *b, size_t n);

/* Gives memory back: when the capacity exceeds keep and the content fits, shrinks to keep. */
void buf_shrink(struct buf *b, size_t keep);

#endif
