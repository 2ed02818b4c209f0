/*
 * HTTP/1.1 request parser and response heads (see http.h). Strict where
 * strictness is cheap (CRLF line ends, one Content-Length, no obsolete line
 * folding) because the simulator's job is to tell clients the truth about
 * their requests, not to guess.
 */
#define _GNU_SOURCE
#include "http.h"

#include <string.h>
#include <strings.h>

/* Longest chunk-size line (with extensions) or trailer line we accept. */
#define CHUNK_LINE_MAX 1024

static bool is_token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

static bool name_is(const char *p, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

static bool value_is(const char *p, size_t n, const char *value)
{
	return name_is(p, n, value);
}

/* Sets *close / *keep for the tokens of a Connection header. */
static void connection_tokens(const char *v, size_t n, bool *close, bool *keep)
{
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (value_is(v + s, e - s, "close"))
			*close = true;
		else if (value_is(v + s, e - s, "keep-alive"))
			*keep = true;
	}
}

static int parse_content_length(const char *v, size_t n, long long *out)
{
	long long x = 0;
	size_t i;

	/* Eighteen digits cannot overflow and are far beyond any body we take. */
	if (n == 0 || n > 18)
		return n == 0 ? -1 : -2;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (v[i] - '0');
	}
	*out = x;
	return 0;
}

int http_parse_head(const char *buf, size_t len, size_t *scan, struct http_req *req)
{
	const char *end, *p, *line_end, *sp;
	size_t from = *scan > 3 ? *scan - 3 : 0;
	bool conn_close = false, conn_keep = false, have_cl = false;
	long long cl = -1;

	if (len < from + 4) {
		*scan = len;
		return HTTP_MORE;
	}
	end = memmem(buf + from, len - from, "\r\n\r\n", 4);
	if (end == NULL) {
		*scan = len;
		return HTTP_MORE;
	}
	memset(req, 0, sizeof(*req));
	req->head_len = (size_t)(end - buf) + 4;
	req->content_length = -1;

	/* Request line: METHOD SP target SP HTTP/1.x CRLF */
	p = buf;
	line_end = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
	sp = memchr(p, ' ', (size_t)(line_end - p));
	if (sp == NULL || sp == p)
		return HTTP_BAD;
	for (const char *q = p; q < sp; q++)
		if (!is_token_char((unsigned char)*q))
			return HTTP_BAD;
	if (sp - p == 3 && memcmp(p, "GET", 3) == 0)
		req->method = HTTP_M_GET;
	else if (sp - p == 4 && memcmp(p, "POST", 4) == 0)
		req->method = HTTP_M_POST;
	else
		req->method = HTTP_M_OTHER;
	p = sp + 1;
	sp = memchr(p, ' ', (size_t)(line_end - p));
	if (sp == NULL || sp == p || *p != '/')
		return HTTP_BAD;
	req->path_off = (size_t)(p - buf);
	req->path_len = (size_t)(sp - p);
	for (size_t i = 0; i < req->path_len; i++) {
		if (p[i] == '?' || p[i] == '#') {
			req->path_len = i;
			break;
		}
	}
	p = sp + 1;
	if (line_end - p != 8 || memcmp(p, "HTTP/1.", 7) != 0 ||
	    (p[7] != '0' && p[7] != '1'))
		return HTTP_BAD;
	req->minor = p[7] - '0';

	/* Header lines up to the blank line. */
	p = line_end + 2;
	while (p < end + 2) {
		const char *colon, *v, *ve;
		size_t nlen;

		line_end = memmem(p, (size_t)(end + 4 - p), "\r\n", 2);
		if (*p == ' ' || *p == '\t')
			return HTTP_BAD; /* obsolete line folding */
		colon = memchr(p, ':', (size_t)(line_end - p));
		if (colon == NULL || colon == p)
			return HTTP_BAD;
		nlen = (size_t)(colon - p);
		for (size_t i = 0; i < nlen; i++)
			if (!is_token_char((unsigned char)p[i]))
				return HTTP_BAD;
		v = colon + 1;
		ve = line_end;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		switch (nlen) {
		case 6:
			if (name_is(p, nlen, "expect") &&
			    value_is(v, (size_t)(ve - v), "100-continue"))
				req->expect_continue = true;
			break;
		case 10:
			if (name_is(p, nlen, "connection"))
				connection_tokens(v, (size_t)(ve - v), &conn_close, &conn_keep);
			break;
		case 13:
			if (name_is(p, nlen, "authorization")) {
				req->auth_off = (size_t)(v - buf);
				req->auth_len = (size_t)(ve - v);
			}
			break;
		case 14:
			if (name_is(p, nlen, "content-length")) {
				long long x;
				int r = parse_content_length(v, (size_t)(ve - v), &x);

				if (r == -2)
					x = (long long)1 << 62; /* absurdly large: 413 later */
				else if (r < 0)
					return HTTP_BAD;
				if (have_cl && x != cl)
					return HTTP_BAD;
				have_cl = true;
				cl = x;
			}
			break;
		case 17:
			if (name_is(p, nlen, "transfer-encoding")) {
				/* Only plain chunked: other codings would need decoders. */
				if (!value_is(v, (size_t)(ve - v), "chunked"))
					return HTTP_BAD;
				req->chunked = true;
			}
			break;
		default:
			break;
		}
		p = line_end + 2;
	}

	req->keep_alive = req->minor >= 1 ? !conn_close : (conn_keep && !conn_close);
	if (req->chunked) {
		/* RFC 9112 6.1: a message with both is suspect; decode, then close. */
		if (have_cl)
			req->keep_alive = false;
		req->content_length = -1;
		req->ck_src = req->head_len;
	} else {
		req->content_length = cl;
	}
	*scan = 0;
	return HTTP_DONE;
}

/* Finds CRLF in [from, len); returns its offset or (size_t)-1. */
static size_t find_crlf(const char *buf, size_t from, size_t len)
{
	const char *p;

	if (from >= len)
		return (size_t)-1;
	p = memmem(buf + from, len - from, "\r\n", 2);
	return p ? (size_t)(p - buf) : (size_t)-1;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int http_parse_body(char *buf, size_t len, struct http_req *req, size_t max_body)
{
	if (!req->chunked) {
		size_t cl = req->content_length < 0 ? 0 : (size_t)req->content_length;

		if (req->content_length > (long long)max_body)
			return HTTP_TOO_LARGE;
		if (len - req->head_len < cl)
			return HTTP_MORE;
		req->body_len = cl;
		req->total_len = req->head_len + cl;
		return HTTP_DONE;
	}

	/*
	 * Chunked: each complete chunk's data is moved down to the end of the
	 * decoded body at once, so the work is linear in the body size however
	 * it arrives. The destination never passes the source.
	 */
	for (;;) {
		size_t src = req->ck_src;
		size_t eol = find_crlf(buf, src, len);
		size_t size = 0, i, data;

		if (eol == (size_t)-1)
			return len - src > CHUNK_LINE_MAX ? HTTP_BAD : HTTP_MORE;
		if (eol - src > CHUNK_LINE_MAX)
			return HTTP_BAD;
		if (req->ck_trailers) {
			if (eol == src) {
				req->total_len = eol + 2;
				return HTTP_DONE;
			}
			req->ck_src = eol + 2; /* trailer fields are ignored */
			continue;
		}
		for (i = src; i < eol && hexval(buf[i]) >= 0; i++) {
			if (size > max_body)
				return HTTP_TOO_LARGE;
			size = size * 16 + (size_t)hexval(buf[i]);
		}
		if (i == src)
			return HTTP_BAD;
		while (i < eol && (buf[i] == ' ' || buf[i] == '\t'))
			i++;
		if (i < eol && buf[i] != ';')
			return HTTP_BAD;
		if (size == 0) {
			req->ck_trailers = true;
			req->ck_src = eol + 2;
			continue;
		}
		if (size > max_body - req->body_len)
			return HTTP_TOO_LARGE;
		data = eol + 2;
		if (len < data || len - data < size + 2)
			return HTTP_MORE;
		if (buf[data + size] != '\r' || buf[data + size + 1] != '\n')
			return HTTP_BAD;
		memmove(buf + req->head_len + req->body_len, buf + data, size);
		req->body_len += size;
		req->ck_src = data + size + 2;
	}
}

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return status < 500 ? "Client Error" : "Server Error";
	}
}

void http_write_head(struct buf *out, int status, const char *ctype,
		     long long content_length, bool keep_alive, int minor,
		     const char *extra)
{
	buf_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n",
		   status, http_reason(status), ctype);
	if (content_length >= 0)
		buf_printf(out, "Content-Length: %lld\r\n", content_length);
	else if (minor >= 1)
		buf_puts(out, "Transfer-Encoding: chunked\r\n");
	if (!keep_alive)
		buf_puts(out, "Connection: close\r\n");
	else if (minor == 0)
		buf_puts(out, "Connection: keep-alive\r\n");
	if (extra != NULL)
		buf_puts(out, extra);
	buf_puts(out, "\r\n");
}
