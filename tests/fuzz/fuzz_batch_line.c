/*
 * Fuzz target: the OpenAI batch input reader (io/batch.c over the bounded
 * line reader io/lines.c). The input is a whole batch file, written to a
 * memfd and read through /proc/self/fd like any path. Every line is read
 * to the end, with and without require_model, and each accepted line is
 * checked against the contract in input.h: a nonempty custom_id of at
 * most LH_MAX_KEY bytes, a supported url, a body that is a JSON object
 * with a "messages" array (and a string "model" when required), and a
 * stream flag that matches the body.
 */
#include "fuzz.h"

#include <jansson.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/input.h"

static void check_line(const struct lh_batch_line *l, int require_model, long prev)
{
	json_t *body, *model, *stream;
	json_error_t jerr;
	FUZZ_CHECK(l->line > prev, "line %ld after line %ld", l->line, prev);
	FUZZ_CHECK(l->custom_id && l->custom_id_len > 0 && l->custom_id_len <= LH_MAX_KEY, "custom_id of %zu bytes",
		   l->custom_id_len);
	FUZZ_CHECK(strlen(l->custom_id) == l->custom_id_len, "custom_id holds a NUL");
	FUZZ_CHECK(!strcmp(l->url, "/v1/chat/completions") || !strcmp(l->url, "/chat/completions"), "url \"%s\"",
		   l->url);
	FUZZ_CHECK(l->body && strlen(l->body) == l->body_len, "body length %zu", l->body_len);
	body = json_loadb(l->body, l->body_len, 0, &jerr);
	FUZZ_CHECK(body && json_is_object(body), "re-serialised body does not load: %s: %.300s", jerr.text, l->body);
	FUZZ_CHECK(json_is_array(json_object_get(body, "messages")), "body without a messages array");
	model = json_object_get(body, "model");
	FUZZ_CHECK(!model || json_is_string(model), "model is not a string");
	FUZZ_CHECK(!require_model || model, "model missing although required");
	stream = json_object_get(body, "stream");
	FUZZ_CHECK(l->stream == json_is_true(stream), "stream flag %d", l->stream);
	json_decref(body);
}

static void read_all(const char *path, int require_model)
{
	struct lh_batch_reader *r;
	struct lh_batch_line l;
	struct lh_err e;
	long prev = 0;
	int rc, lines = 0;
	lh_err_clear(&e);
	rc = lh_batch_open(path, &r, &e);
	FUZZ_CHECK(rc == 0, "could not open %s: %s", path, e.msg);
	for (;;) {
		lh_err_clear(&e);
		memset(&l, 0, sizeof l);
		rc = lh_batch_next(r, require_model, &l, &e);
		if (rc == 0)
			break;
		FUZZ_CHECK(++lines < 1000000, "no end of input");
		if (rc < 0) {
			FUZZ_CHECK(rc == LH_EINPUT || rc == LH_ETOOBIG, "lh_batch_next returned %d", rc);
			FUZZ_CHECK(e.code == rc && e.msg[0] && e.line > prev, "error record: code %d line %ld msg \"%s\"",
				   e.code, e.line, e.msg);
			prev = e.line;
			continue;
		}
		FUZZ_CHECK(rc == 1, "lh_batch_next returned %d", rc);
		check_line(&l, require_model, prev);
		prev = l.line;
	}
	lh_batch_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	size_t off = 0;
	int fd = memfd_create("fuzz-batch", MFD_CLOEXEC);
	FUZZ_CHECK(fd >= 0, "memfd_create failed");
	while (off < size) {
		ssize_t w = write(fd, data + off, size - off);
		FUZZ_CHECK(w > 0, "write to memfd failed");
		off += (size_t)w;
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	read_all(path, 0);
	read_all(path, 1);
	close(fd);
	return 0;
}
