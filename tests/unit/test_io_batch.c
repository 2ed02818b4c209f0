/*
 * Unit tests: the OpenAI batch reader and input detection (io/batch.c,
 * io/detect.c, io/lines.c). Every bad line must be reported with its file,
 * line and field.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/input.h"

static char tmpdir[256];

static void setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lh-batch-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

/* Writes text into tmpdir/name; returns the path (static storage). */
static const char *write_file(const char *name, const char *text)
{
	static char path[512];
	FILE *f;
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	fclose(f);
	return path;
}

#define GOOD(id) "{\"custom_id\": \"" id "\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", " \
	"\"body\": {\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}}"

TestSuite(io_batch, .init = setup, .fini = teardown);

Test(io_batch, reads_good_lines_with_blank_lines_and_crlf)
{
	const char *path = write_file("ok.jsonl",
		GOOD("a") "\r\n"
		"\n   \r\n"
		"{\"custom_id\": \"b\", \"method\": \"POST\", \"url\": \"/chat/completions\", \"extra\": 1, "
		"\"body\": {\"messages\": [], \"temperature\": 0.7, \"stream\": true}}\n"
		GOOD("c"));
	struct lh_batch_reader *r;
	struct lh_batch_line l;
	struct lh_err e;
	cr_assert_eq(lh_batch_open(path, &r, &e), 0);
	cr_assert_eq(lh_batch_next(r, 0, &l, &e), 1);
	cr_assert_eq(l.line, 1);
	cr_assert_str_eq(l.custom_id, "a");
	cr_assert_eq(l.custom_id_len, 1);
	cr_assert_str_eq(l.url, "/v1/chat/completions");
	cr_assert_str_eq(l.body, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
	cr_assert_eq(l.body_len, strlen(l.body));
	cr_assert_eq(l.stream, 0);

	cr_assert_eq(lh_batch_next(r, 0, &l, &e), 1);
	cr_assert_eq(l.line, 4);
	cr_assert_str_eq(l.custom_id, "b");
	cr_assert_str_eq(l.url, "/chat/completions");
	/* Reals keep their short form; key order is kept. */
	cr_assert_str_eq(l.body, "{\"messages\":[],\"temperature\":0.7,\"stream\":true}");
	cr_assert_eq(l.stream, 1);

	cr_assert_eq(lh_batch_next(r, 0, &l, &e), 1);
	cr_assert_eq(l.line, 5);
	cr_assert_str_eq(l.custom_id, "c");
	cr_assert_eq(lh_batch_next(r, 0, &l, &e), 0);
	cr_assert_eq(lh_batch_next(r, 0, &l, &e), 0);
	lh_batch_close(r);
}

/* Reads the single line of text (after a good first line) and expects an
 * error at line 2 with the given code, field and message part. */
static void expect_bad(const char *line, int require_model, int code, const char *field, const char *msg)
{
	char text[4096];
	const char *path;
	struct lh_batch_reader *r;
	struct lh_batch_line l;
	struct lh_err e;
	snprintf(text, sizeof text, "%s\n%s\n", GOOD("first"), line);
	path = write_file("bad.jsonl", text);
	cr_assert_eq(lh_batch_open(path, &r, &e), 0);
	cr_assert_eq(lh_batch_next(r, require_model, &l, &e), 1);
	cr_assert_eq(lh_batch_next(r, require_model, &l, &e), code, "line %s: got %d (%s)", line, e.code, e.msg);
	cr_assert_eq(e.code, code);
	cr_assert_str_eq(e.file, path);
	cr_assert_eq(e.line, 2);
	cr_assert_str_eq(e.field, field);
	cr_assert_not_null(strstr(e.msg, msg), "message \"%s\" lacks \"%s\"", e.msg, msg);
	lh_batch_close(r);
}

Test(io_batch, malformed_json)
{
	expect_bad("{\"custom_id\": \"x\",, }", 0, LH_EINPUT, "", "invalid JSON: ");
	expect_bad("{\"custom_id\": \"x\",, }", 0, LH_EINPUT, "", "at column 19");
	expect_bad("[1, 2]", 0, LH_EINPUT, "", "expected a JSON object, not an array");
}

Test(io_batch, custom_id)
{
	expect_bad("{\"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"messages\": []}}", 0,
		   LH_EINPUT, "custom_id", "required field is missing");
	expect_bad("{\"custom_id\": \"\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", "
		   "\"body\": {\"messages\": []}}", 0, LH_EINPUT, "custom_id", "must not be empty");
	expect_bad("{\"custom_id\": 7, \"method\": \"POST\", \"url\": \"/v1/chat/completions\", "
		   "\"body\": {\"messages\": []}}", 0, LH_EINPUT, "custom_id", "expected a string, not an integer");
}

Test(io_batch, custom_id_too_long)
{
	char id[LH_MAX_KEY + 2], line[1024];
	memset(id, 'k', LH_MAX_KEY + 1);
	id[LH_MAX_KEY + 1] = '\0';
	snprintf(line, sizeof line, "{\"custom_id\": \"%s\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", "
		 "\"body\": {\"messages\": []}}", id);
	expect_bad(line, 0, LH_EINPUT, "custom_id", "longer than 512 bytes");
}

Test(io_batch, method_and_url)
{
	expect_bad("{\"custom_id\": \"x\", \"method\": \"GET\", \"url\": \"/v1/chat/completions\", "
		   "\"body\": {\"messages\": []}}", 0, LH_EINPUT, "method", "unsupported method \"GET\": expected \"POST\"");
	expect_bad("{\"custom_id\": \"x\", \"url\": \"/v1/chat/completions\", \"body\": {\"messages\": []}}", 0,
		   LH_EINPUT, "method", "required field is missing");
	expect_bad("{\"custom_id\": \"x\", \"method\": \"POST\", \"url\": \"/v1/embeddings\", "
		   "\"body\": {\"messages\": []}}", 0, LH_EINPUT, "url",
		   "unsupported url \"/v1/embeddings\": expected \"/v1/chat/completions\"");
}

Test(io_batch, body)
{
	expect_bad("{\"custom_id\": \"x\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": \"hi\"}", 0,
		   LH_EINPUT, "body", "expected an object, not a string");
	expect_bad("{\"custom_id\": \"x\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\"}", 0,
		   LH_EINPUT, "body", "required field is missing");
	expect_bad("{\"custom_id\": \"x\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {}}", 0,
		   LH_EINPUT, "body.messages", "required field is missing");
	expect_bad("{\"custom_id\": \"x\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", "
		   "\"body\": {\"messages\": {}}}", 0, LH_EINPUT, "body.messages", "expected an array");
}

Test(io_batch, model_required_only_when_asked)
{
	const char *line = "{\"custom_id\": \"x\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", "
			   "\"body\": {\"messages\": []}}";
	expect_bad(line, 1, LH_EINPUT, "body.model", "required field is missing");
	expect_bad("{\"custom_id\": \"x\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", "
		   "\"body\": {\"model\": 3, \"messages\": []}}", 0, LH_EINPUT, "body.model", "expected a string");
}

Test(io_batch, overlong_line_is_reported_and_skipped)
{
	char path[512];
	size_t n = (17u << 20), i;
	char *big = malloc(n);
	FILE *f;
	struct lh_batch_reader *r;
	struct lh_batch_line l;
	struct lh_err e;
	cr_assert_not_null(big);
	snprintf(path, sizeof path, "%s/big.jsonl", tmpdir);
	f = fopen(path, "wb");
	cr_assert_not_null(f);
	fprintf(f, "%s\n", GOOD("one"));
	for (i = 0; i < n; i++)
		big[i] = 'x';
	cr_assert_eq(fwrite(big, 1, n, f), n);
	fprintf(f, "\n%s\n", GOOD("three"));
	fclose(f);
	free(big);
	cr_assert_eq(lh_batch_open(path, &r, &e), 0);
	cr_assert_eq(lh_batch_next(r, 0, &l, &e), 1);
	cr_assert_eq(lh_batch_next(r, 0, &l, &e), LH_ETOOBIG);
	cr_assert_eq(e.line, 2);
	cr_assert_str_eq(e.file, path);
	cr_assert_not_null(strstr(e.msg, "line is longer than"));
	/* The reader stays usable after the long line. */
	cr_assert_eq(lh_batch_next(r, 0, &l, &e), 1);
	cr_assert_eq(l.line, 3);
	cr_assert_str_eq(l.custom_id, "three");
	lh_batch_close(r);
}

Test(io_batch, last_line_without_newline_and_bom)
{
	const char *path = write_file("bom.jsonl", "\xef\xbb\xbf" GOOD("a") "\n" GOOD("b"));
	struct lh_batch_reader *r;
	struct lh_batch_line l;
	struct lh_err e;
	cr_assert_eq(lh_batch_open(path, &r, &e), 0);
	cr_assert_eq(lh_batch_next(r, 1, &l, &e), 1, "%s", e.msg);
	cr_assert_str_eq(l.custom_id, "a");
	cr_assert_eq(lh_batch_next(r, 1, &l, &e), 1);
	cr_assert_str_eq(l.custom_id, "b");
	cr_assert_eq(lh_batch_next(r, 1, &l, &e), 0);
	lh_batch_close(r);
}

Test(io_batch, escapes_survive_reserialisation)
{
	const char *path = write_file("esc.jsonl",
		"{\"custom_id\": \"q\\\"x\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", "
		"\"body\": {\"messages\": [{\"role\": \"user\", \"content\": \"a\\nb \\u00e9 \\\"q\\\" \\\\\"}], "
		"\"n\": 1e2}}\n");
	struct lh_batch_reader *r;
	struct lh_batch_line l;
	struct lh_err e;
	json_error_t jerr;
	json_t *body;
	cr_assert_eq(lh_batch_open(path, &r, &e), 0);
	cr_assert_eq(lh_batch_next(r, 0, &l, &e), 1);
	cr_assert_str_eq(l.custom_id, "q\"x");
	body = json_loadb(l.body, l.body_len, 0, &jerr);
	cr_assert_not_null(body, "%s", l.body);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(body, "messages"), 0),
							 "content")), "a\nb \xc3\xa9 \"q\" \\");
	cr_assert(json_is_real(json_object_get(body, "n")));
	cr_assert_float_eq(json_real_value(json_object_get(body, "n")), 100.0, 1e-9);
	json_decref(body);
	lh_batch_close(r);
}

Test(io_batch, open_missing_file)
{
	struct lh_batch_reader *r;
	struct lh_err e;
	char path[512];
	snprintf(path, sizeof path, "%s/nope.jsonl", tmpdir);
	cr_assert_eq(lh_batch_open(path, &r, &e), LH_EIO);
	cr_assert_str_eq(e.file, path);
	cr_assert_not_null(strstr(e.msg, "No such file"));
}

Test(io_batch, detect)
{
	enum lh_input_kind k = 0;
	struct lh_err e;
	char path[512];
	cr_assert_eq(lh_input_detect(write_file("b.jsonl", "\n  \n" GOOD("a") "\n"), &k, &e), 0);
	cr_assert_eq(k, LH_INPUT_BATCH);
	cr_assert_eq(lh_input_detect(write_file("s.yaml", "# a spec\nname: x\nprompt: hi\n"), &k, &e), 0);
	cr_assert_eq(k, LH_INPUT_SPEC);
	cr_assert_eq(lh_input_detect(write_file("s.json", "{\"name\": \"x\", \"prompt\": \"hi\"}\n"), &k, &e), 0);
	cr_assert_eq(k, LH_INPUT_SPEC);
	cr_assert_eq(lh_input_detect(write_file("s2.json", "{\n  \"custom_id\": \"x\"\n}\n"), &k, &e), 0);
	cr_assert_eq(k, LH_INPUT_SPEC);
	/* Records: JSON objects line after line, or one object with keys a
	 * spec does not have. */
	cr_assert_eq(lh_input_detect(write_file("r.jsonl", "{\"id\": 1, \"text\": \"a\"}\n{\"id\": 2}\n"), &k, &e), 0);
	cr_assert_eq(k, LH_INPUT_RECORDS);
	cr_assert_eq(lh_input_detect(write_file("r1.jsonl", "\n{\"text\": \"only one\"}\n"), &k, &e), 0);
	cr_assert_eq(k, LH_INPUT_RECORDS);
	cr_assert_eq(lh_input_detect(write_file("r2.jsonl", "{\"prompt\": \"p\"}\n{\"prompt\": \"q\"}\n"), &k, &e), 0);
	cr_assert_eq(k, LH_INPUT_RECORDS);
	cr_assert_eq(lh_input_detect(write_file("r3.jsonl", "{}\n"), &k, &e), 0);
	cr_assert_eq(k, LH_INPUT_RECORDS);
	/* A one-line JSON spec followed by a YAML comment is still a spec. */
	cr_assert_eq(lh_input_detect(write_file("s3.yaml", "{\"input\": \"x\", \"prompt\": \"p\"}\n# note\n"), &k, &e),
		     0);
	cr_assert_eq(k, LH_INPUT_SPEC);
	cr_assert_eq(lh_input_detect(write_file("empty", "\n \r\n\t\n"), &k, &e), LH_EINPUT);
	cr_assert_str_eq(e.msg, "empty file");
	cr_assert_not_null(strstr(e.file, "/empty"));
	snprintf(path, sizeof path, "%s/missing", tmpdir);
	cr_assert_eq(lh_input_detect(path, &k, &e), LH_EIO);
	cr_assert_str_eq(e.file, path);
	cr_assert_not_null(strstr(e.msg, "could not open: No such file or directory"));
	cr_assert_eq(lh_input_detect(tmpdir, &k, &e), LH_EIO);
	cr_assert_not_null(strstr(e.msg, "Is a directory"), "%s", e.msg);
}
