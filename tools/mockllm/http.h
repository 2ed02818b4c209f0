/*
 * HTTP/1.1 request parsing and response heads for the simulator. The parser
 * works in place on a connection's input buffer and keeps only offsets, so
 * the buffer may be reallocated between calls. It knows nothing of sockets.
 */
#ifndef MOCKLLM_HTTP_H
#define MOCKLLM_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Results of the parse functions. */
enum {
	HTTP_DONE = 1,        /* the part asked for is complete */
	HTTP_MORE = 0,        /* need more bytes */
	HTTP_BAD = -1,        /* malformed: answer 400 and close */
	HTTP_TOO_LARGE = -2,  /* body over the limit: answer 413 and close */
};

enum http_method { HTTP_M_GET, HTTP_M_POST, HTTP_M_OTHER };

struct http_req {
	enum http_method method;
	int minor;                  /* the x of HTTP/1.x: 0 or 1 */
	size_t path_off, path_len;  /* target without query, as offsets */
	size_t auth_off, auth_len;  /* Authorization value; len 0 when absent */
	size_t head_len;            /* request line and headers, final CRLF included */
	long long content_length;   /* -1 when absent */
	bool chunked;
	bool keep_alive;
	bool expect_continue;
	/* Body progress: the decoded body sits at head_len, body_len bytes long. */
	size_t body_len;
	size_t total_len;           /* raw bytes of the whole request, once complete */
	size_t ck_src;              /* chunked: next raw byte not yet decoded */
	bool ck_trailers;           /* chunked: the last chunk was seen */
};

/*
 * Parses the request line and headers at the start of buf. *scan is where
 * the search for the blank line resumes (0 for a new request); it saves
 * rescanning a slowly arriving head. Fills req on HTTP_DONE.
 */
int http_parse_head(const char *buf, size_t len, size_t *scan, struct http_req *req);

/*
 * Advances the body of a request whose head is parsed. Chunked bodies are
 * decoded in place, so buf changes. Returns HTTP_DONE when body_len and
 * total_len are final, HTTP_TOO_LARGE when the body passes max_body.
 */
int http_parse_body(char *buf, size_t len, struct http_req *req, size_t max_body);

/* The reason phrase for a status code ("OK", "Not Found", ...). */
const char *http_reason(int status);

/*
 * Appends a response head. content_length < 0 means a streamed body: chunked
 * for HTTP/1.1, delimited by closing the connection for HTTP/1.0 (the caller
 * then passes keep_alive false). extra is NULL or complete header lines,
 * each ending in CRLF.
 */
void http_write_head(struct buf *out, int status, const char *ctype,
		     long long content_length, bool keep_alive, int minor,
		     const char *extra);

#endif
