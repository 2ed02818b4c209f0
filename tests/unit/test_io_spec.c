/*
 * Unit tests: the job spec loader (io/spec.c) and the spec's item sources
 * (io/source.c): records and text files, keys and order.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/input.h"

static char tmpdir[256];

static void setup(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lh-spec-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

/* tmpdir + "/" + rel, in a rotating static buffer. */
static const char *tpath(const char *rel)
{
	static char bufs[4][1024];
	static int i;
	char *p = bufs[i++ % 4];
	snprintf(p, 1024, "%s/%s", tmpdir, rel);
	return p;
}

/* Writes n bytes into tmpdir/rel, creating directories on the way. */
static const char *write_n(const char *rel, const char *text, size_t n)
{
	char path[1024], *slash;
	FILE *f;
	snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
	for (slash = strchr(path + strlen(tmpdir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(path, 0755);
		*slash = '/';
	}
	f = fopen(path, "wb");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fwrite(text, 1, n, f), n);
	fclose(f);
	return tpath(rel);
}

static const char *write_file(const char *rel, const char *text)
{
	return write_n(rel, text, strlen(text));
}

static struct lh_spec *load_ok(const char *rel, const char *text)
{
	struct lh_spec *s = NULL;
	struct lh_err e;
	const char *path = write_file(rel, text);
	char where[2048];
	int rc = lh_spec_load(path, &s, &e);
	lh_err_format(&e, where, sizeof where);
	cr_assert_eq(rc, 0, "%s", where);
	return s;
}

/* Loads text as tmpdir/rel and expects LH_EINPUT at line with field. */
static void load_bad(const char *rel, const char *text, long line, const char *field, const char *msg)
{
	struct lh_spec *s = NULL;
	struct lh_err e;
	const char *path = write_file(rel, text);
	char real[1024];
	cr_assert_eq(lh_spec_load(path, &s, &e), LH_EINPUT, "loaded: %s", text);
	cr_assert_null(s);
	cr_assert_not_null(realpath(path, real));
	cr_assert_str_eq(e.file, real);
	cr_assert_eq(e.line, line, "line %ld, want %ld (%s)", e.line, line, e.msg);
	cr_assert_str_eq(e.field, field, "field \"%s\", want \"%s\" (%s)", e.field, field, e.msg);
	cr_assert_not_null(strstr(e.msg, msg), "\"%s\" lacks \"%s\"", e.msg, msg);
}

TestSuite(io_spec, .init = setup, .fini = teardown);

Test(io_spec, yaml_every_field)
{
	struct lh_spec *s;
	char dir[1024];
	write_file("job/data/in.jsonl", "{\"id\": \"a\"}\n");
	s = load_ok("job/spec.yaml",
		    "# every field\n"
		    "name: summaries\n"
		    "input: data/in.jsonl\n"
		    "key: doc_id\n"
		    "prompt: |\n"
		    "  Summarise {{ title }}:\n"
		    "  {{body}}\n"
		    "system: You are terse.\n"
		    "model: llama3.1:8b\n"
		    "base_url: http://127.0.0.1:11434/v1\n"
		    "api_key_env: MY_KEY\n"
		    "max_tokens: 300\n"
		    "temperature: 0.2\n"
		    "stream: true\n"
		    "concurrency: 8\n"
		    "retry:\n"
		    "  max_attempts: 4\n"
		    "  base: 0.25\n"
		    "  factor: 3\n"
		    "  cap: 20\n"
		    "  jitter: 0.1\n"
		    "timeouts:\n"
		    "  connect: 5\n"
		    "  request: 120.5\n"
		    "  first_token: 30\n"
		    "output: out/results.jsonl\n"
		    "errors: ../errors.jsonl\n");
	cr_assert_not_null(realpath(tpath("job"), dir));
	cr_assert(strncmp(s->path, dir, strlen(dir)) == 0);
	cr_assert_str_eq(s->path + strlen(dir), "/spec.yaml");
	cr_assert_str_eq(s->name, "summaries");
	cr_assert_str_eq(s->input_records + strlen(dir), "/data/in.jsonl");
	cr_assert_null(s->input_files);
	cr_assert_str_eq(s->key_field, "doc_id");
	cr_assert_str_eq(s->prompt, "Summarise {{ title }}:\n{{body}}\n");
	cr_assert_str_eq(s->system, "You are terse.");
	cr_assert_str_eq(s->model, "llama3.1:8b");
	cr_assert_str_eq(s->base_url, "http://127.0.0.1:11434/v1");
	cr_assert_str_eq(s->api_key_env, "MY_KEY");
	cr_assert_eq(s->max_tokens, 300);
	cr_assert_float_eq(s->temperature, 0.2, 1e-12);
	cr_assert_eq(s->stream, 1);
	cr_assert_eq(s->concurrency, 8);
	cr_assert_eq(s->max_attempts, 4);
	cr_assert_float_eq(s->retry_base, 0.25, 1e-12);
	cr_assert_float_eq(s->retry_factor, 3, 1e-12);
	cr_assert_float_eq(s->retry_cap, 20, 1e-12);
	cr_assert_float_eq(s->retry_jitter, 0.1, 1e-12);
	cr_assert_float_eq(s->connect_timeout, 5, 1e-12);
	cr_assert_float_eq(s->request_timeout, 120.5, 1e-12);
	cr_assert_float_eq(s->first_token_timeout, 30, 1e-12);
	cr_assert_str_eq(s->output + strlen(dir), "/out/results.jsonl");
	/* "../" is folded: the path is absolute and clean. */
	cr_assert_str_eq(s->errors, tpath("errors.jsonl"));
	lh_spec_free(s);
}

Test(io_spec, json_form_and_defaults)
{
	struct lh_spec *s;
	char *json;
	json_t *j;
	json_error_t jerr;
	write_file("in.jsonl", "{}\n");
	s = load_ok("my-job.json", "{\n\t\"input\": \"in.jsonl\",\n\t\"prompt\": \"Say {{x}}\",\n\t\"system\": null\n}\n");
	cr_assert_str_eq(s->name, "my-job");
	cr_assert_str_eq(s->key_field, "id");
	cr_assert_null(s->system);
	cr_assert_null(s->model);
	cr_assert_null(s->base_url);
	cr_assert_null(s->api_key_env);
	cr_assert_null(s->output);
	cr_assert_null(s->errors);
	cr_assert_eq(s->max_tokens, -1);
	cr_assert(s->temperature < 0);
	cr_assert_eq(s->stream, 0);
	cr_assert_eq(s->concurrency, -1);
	cr_assert_eq(s->max_attempts, -1);
	cr_assert(s->retry_base < 0 && s->retry_factor < 0 && s->retry_cap < 0 && s->retry_jitter < 0);
	cr_assert(s->connect_timeout < 0 && s->request_timeout < 0 && s->first_token_timeout < 0);

	json = lh_spec_to_json(s);
	j = json_loads(json, 0, &jerr);
	cr_assert_not_null(j, "%s", json);
	cr_assert_str_eq(json_string_value(json_object_get(j, "name")), "my-job");
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "input"), "key")), "id");
	cr_assert_str_eq(json_string_value(json_object_get(j, "prompt")), "Say {{x}}");
	cr_assert_null(json_object_get(j, "max_tokens"));
	json_decref(j);
	free(json);
	lh_spec_free(s);
}

Test(io_spec, json_form_values_and_to_json)
{
	struct lh_spec *s;
	char *text;
	json_t *j;
	json_error_t jerr;
	write_file("in.jsonl", "{}\n");
	s = load_ok("s.json", "{\"input\": {\"records\": \"in.jsonl\", \"key\": \"k\"}, \"prompt\": \"p\", "
			      "\"temperature\": 0.7, \"max_tokens\": 5, \"stream\": false, "
			      "\"retry\": {\"max_attempts\": 2}, \"api_key_env\": \"OPENAI_API_KEY\"}");
	cr_assert_str_eq(s->key_field, "k");
	cr_assert_eq(s->max_attempts, 2);
	text = lh_spec_to_json(s);
	j = json_loads(text, 0, &jerr);
	cr_assert_not_null(j);
	cr_assert_float_eq(json_real_value(json_object_get(j, "temperature")), 0.7, 1e-12);
	cr_assert_not_null(strstr(text, "\"temperature\":0.7,"), "%s", text);
	cr_assert_eq(json_integer_value(json_object_get(j, "max_tokens")), 5);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "retry"), "max_attempts")), 2);
	cr_assert_str_eq(json_string_value(json_object_get(j, "api_key_env")), "OPENAI_API_KEY");
	json_decref(j);
	free(text);
	lh_spec_free(s);
}

Test(io_spec, unknown_fields)
{
	write_file("in.jsonl", "{}\n");
	load_bad("a.yaml", "input: in.jsonl\nprompt: p\nmodle: x\n", 3, "modle", "unknown field (valid fields: name, input");
	load_bad("b.yaml", "input: in.jsonl\nprompt: p\nretry:\n  max_attempts: 3\n  bsae: 1\n", 5, "retry.bsae",
		 "unknown field (valid fields: max_attempts, base, factor, cap, jitter)");
	load_bad("c.yaml", "input: in.jsonl\nprompt: p\ntimeouts: {connect: 1, read: 2}\n", 3, "timeouts.read",
		 "valid fields: connect, request, first_token");
	load_bad("d.json", "{\"input\": \"in.jsonl\",\n \"prompt\": \"p\",\n \"x\": 1}", 3, "x", "unknown field");
	load_bad("e.yaml", "input: {records: in.jsonl, where: 1}\nprompt: p\n", 1, "input.where",
		 "valid fields: records, files, key");
}

Test(io_spec, wrong_types_and_ranges)
{
	write_file("in.jsonl", "{}\n");
	load_bad("a.yaml", "input: in.jsonl\nprompt: p\nmax_tokens: lots\n", 3, "max_tokens", "expected an integer");
	load_bad("b.yaml", "input: in.jsonl\nprompt: p\nmax_tokens: \"5\"\n", 3, "max_tokens",
		 "expected an integer, not a string");
	load_bad("c.yaml", "input: in.jsonl\nprompt: p\nmax_tokens: 0\n", 3, "max_tokens", "must be at least 1");
	load_bad("d.yaml", "input: in.jsonl\nprompt: p\ntemperature: 2.5\n", 3, "temperature", "must be at most 2");
	load_bad("e.yaml", "input: in.jsonl\nprompt: p\nstream: yes\n", 3, "stream", "expected true or false");
	load_bad("f.yaml", "input: in.jsonl\nprompt: p\nretry: 5\n", 3, "retry", "expected a mapping, not a number");
	load_bad("f2.yaml", "input: {records: }\nprompt: p\n", 1, "input.records", "expected a path, not null");
	load_bad("g.yaml", "input: in.jsonl\nprompt: [a, b]\n", 2, "prompt", "expected a string, not a list");
	load_bad("h.yaml", "input: in.jsonl\nprompt: p\ntimeouts:\n  request: 0\n", 4, "timeouts.request",
		 "must be greater than 0");
	load_bad("i.yaml", "input: in.jsonl\nprompt: p\nconcurrency: 1.5\n", 3, "concurrency", "expected an integer");
	load_bad("j.yaml", "input: in.jsonl\nprompt: p\nretry:\n  jitter: nan\n", 4, "retry.jitter",
		 "expected a number");
	load_bad("k.yaml", "input: in.jsonl\nprompt: ''\n", 2, "prompt", "must not be empty");
	load_bad("l.yaml", "input: in.jsonl\nprompt: p\nbase_url: localhost:8080\n", 3, "base_url",
		 "expected http:// or https:// and a host");
	load_bad("l2.yaml", "input: in.jsonl\nprompt: p\nbase_url: http:///v1\n", 3, "base_url", "no host");
	load_bad("l3.yaml", "input: in.jsonl\nprompt: p\nbase_url: http://u:pw@h/v1\n", 3, "base_url",
		 "holds a password");
	load_bad("m.yaml", "- input\n- prompt\n", 1, "", "expected a mapping of settings");
}

Test(io_spec, api_keys_come_from_the_environment)
{
	write_file("in.jsonl", "{}\n");
	load_bad("a.yaml", "input: in.jsonl\nprompt: p\napi_key: sk-123\n", 3, "api_key",
		 "api keys are never read from a spec");
	load_bad("b.yaml", "input: in.jsonl\nprompt: p\napi_key_env: sk-proj-abc123\n", 3, "api_key_env",
		 "not the key itself");
}

Test(io_spec, required_fields)
{
	write_file("in.jsonl", "{}\n");
	load_bad("a.yaml", "input: in.jsonl\nmodel: m\n", 0, "prompt", "required field is missing");
	load_bad("b.yaml", "prompt: p\n", 0, "input", "required field is missing");
	load_bad("c.yaml", "input: in.jsonl\nprompt: ~\n", 2, "prompt", "required field is missing");
}

Test(io_spec, bad_template)
{
	write_file("in.jsonl", "{}\n");
	load_bad("a.yaml", "input: in.jsonl\nmodel: m\nprompt: \"Hi {{name\"\n", 3, "prompt", "unclosed \"{{\"");
	load_bad("b.yaml", "input: in.jsonl\nprompt: |\n  Hi {{ }}\n", 2, "prompt", "empty placeholder");
}

Test(io_spec, syntax_errors_name_the_line)
{
	struct lh_spec *s;
	struct lh_err e;
	cr_assert_eq(lh_spec_load(write_file("a.yaml", "name: x\nprompt: p\nprompt: q\n"), &s, &e), LH_EINPUT);
	cr_assert_eq(e.line, 3);
	cr_assert_not_null(strstr(e.msg, "invalid YAML: duplicate key"), "%s", e.msg);
	cr_assert_eq(lh_spec_load(write_file("b.json", "{\"name\": \"x\",\n \"prompt\": \"p\",}\n"), &s, &e),
		     LH_EINPUT);
	cr_assert_eq(e.line, 2);
	cr_assert_not_null(strstr(e.msg, "invalid JSON"), "%s", e.msg);
	cr_assert_eq(lh_spec_load(write_file("c.yaml", "# only a comment\n"), &s, &e), LH_EINPUT);
	cr_assert_str_eq(e.msg, "empty spec");
	cr_assert_eq(lh_spec_load(write_file("d.yaml", "a: 1\n---\nb: 2\n"), &s, &e), LH_EINPUT);
	cr_assert_not_null(strstr(e.msg, "one document"), "%s", e.msg);
	cr_assert_eq(lh_spec_load(write_file("e.yaml", "a: &x 1\nb: *x\n"), &s, &e), LH_EINPUT);
	/* libfyaml would stop at the NUL and never see the field after it. */
	cr_assert_eq(lh_spec_load(write_n("f.yaml", "prompt: p\n\0modle: x\n", 21), &s, &e), LH_EINPUT);
	cr_assert_eq(e.line, 2);
	cr_assert_str_eq(e.msg, "control character 0x00 at column 1");
	cr_assert_eq(lh_spec_load(write_file("g.yaml", "prompt: p\nname: caf\xe9\n"), &s, &e), LH_EINPUT);
	cr_assert_eq(e.line, 2);
	cr_assert_str_eq(e.msg, "not UTF-8 text (bad byte at column 10)");
	cr_assert_eq(lh_spec_load(tpath("missing.yaml"), &s, &e), LH_EIO);
	cr_assert_str_eq(e.file, tpath("missing.yaml"));
}

Test(io_spec, aliases_are_rejected)
{
	write_file("in.jsonl", "{}\n");
	load_bad("a.yaml", "input: in.jsonl\nprompt: &p hello\nsystem: *p\n", 3, "system", "aliases are not supported");
}

Test(io_spec, oversized_spec)
{
	size_t n = LH_MAX_SPEC + 10;
	char *big = malloc(n);
	struct lh_spec *s;
	struct lh_err e;
	memset(big, '#', n);
	cr_assert_eq(lh_spec_load(write_n("big.yaml", big, n), &s, &e), LH_ETOOBIG);
	free(big);
}

Test(io_spec, input_kinds)
{
	struct lh_spec *s;
	char dir[1024];
	write_file("docs/a.txt", "a");
	write_file("in.jsonl", "{}\n");
	cr_assert_not_null(realpath(tmpdir, dir));
	s = load_ok("s1.yaml", "input: docs\nprompt: p\n");
	cr_assert_str_eq(s->input_files + strlen(dir), "/docs");
	cr_assert_null(s->input_records);
	cr_assert_null(s->key_field);
	lh_spec_free(s);
	s = load_ok("s2.yaml", "input: ./docs/*.txt\nprompt: p\n");
	cr_assert_str_eq(s->input_files + strlen(dir), "/docs/*.txt");
	lh_spec_free(s);
	s = load_ok("s3.yaml", "input: {files: docs/}\nprompt: p\n");
	cr_assert_str_eq(s->input_files + strlen(dir), "/docs");
	lh_spec_free(s);
	s = load_ok("s4.yaml", "input:\n  records: in.jsonl\n  key: uid\nprompt: p\n");
	cr_assert_str_eq(s->input_records + strlen(dir), "/in.jsonl");
	cr_assert_str_eq(s->key_field, "uid");
	lh_spec_free(s);
	s = load_ok("sub/s5.yaml", "input: ../in.jsonl\nprompt: p\n");
	cr_assert_str_eq(s->input_records + strlen(dir), "/in.jsonl");
	lh_spec_free(s);
}

Test(io_spec, input_errors)
{
	char where[1024], msg[1200];
	write_file("docs/a.txt", "a");
	write_file("in.jsonl", "{}\n");
	cr_assert_not_null(realpath(tmpdir, where));
	snprintf(msg, sizeof msg, "no such file or directory: %s/nope.jsonl", where);
	load_bad("a.yaml", "prompt: p\ninput: nope.jsonl\n", 2, "input", msg);
	load_bad("b.yaml", "prompt: p\ninput:\n  records: docs\n", 3, "input.records", "expected a file of JSON records");
	load_bad("c.yaml", "prompt: p\ninput:\n  files: in.jsonl\n", 3, "input.files",
		 "expected a directory or a glob pattern");
	load_bad("d.yaml", "prompt: p\ninput: {records: in.jsonl, files: docs}\n", 2, "input.files", "not both");
	load_bad("e.yaml", "prompt: p\ninput: {key: id}\n", 2, "input", "expected \"records\" or \"files\"");
	load_bad("f.yaml", "prompt: p\ninput: docs\nkey: id\n", 3, "key", "applies only to an input of JSON records");
	load_bad("g.yaml", "prompt: p\ninput: {records: in.jsonl, key: a}\nkey: b\n", 3, "key", "not both");
	load_bad("h.yaml", "prompt: p\ninput: [in.jsonl]\n", 2, "input", "expected a path or a mapping, not a list");
	load_bad("i.yaml", "prompt: p\ninput:\n  files: docs\n  key: id\n", 4, "input.key",
		 "applies only to an input of JSON records");
}

/* ---- sources ---- */

/* Loads a spec with the given input and lists its items as "key|json". */
static int list_items(const char *input, char out[][512], int max, struct lh_err *e)
{
	char text[1024];
	struct lh_spec *s;
	struct lh_source *src;
	struct lh_record r;
	int n = 0, rc;
	snprintf(text, sizeof text, "input: %s\nprompt: p\n", input);
	cr_assert_eq(lh_spec_load(write_file("list.yaml", text), &s, e), 0, "%s", e->msg);
	rc = lh_source_open(s, &src, e);
	if (rc) {
		lh_spec_free(s);
		return rc;
	}
	while ((rc = lh_source_next(src, &r, e)) == 1) {
		char *j = json_dumps(r.json, JSON_COMPACT | JSON_SORT_KEYS);
		cr_assert(n < max);
		cr_assert_eq(strlen(r.key), r.key_len);
		snprintf(out[n++], 512, "%s|%s", r.key, j);
		free(j);
	}
	lh_source_close(src);
	lh_spec_free(s);
	return rc < 0 ? rc : n;
}

Test(io_spec, records_keys)
{
	char items[8][512], hash[8][80];
	struct lh_err e;
	int n;
	write_file("r.jsonl", "{\"id\": \"doc-1\", \"t\": 1}\n"
			      "\n"
			      "{\"id\": 42}\r\n"
			      "{\"b\": 2, \"a\": 1}\n"
			      "{\"a\": 1,   \"b\": 2}\n"
			      "{\"a\": 1, \"b\": 3}\n");
	n = list_items("r.jsonl", items, 8, &e);
	cr_assert_eq(n, 5, "%d: %s", n, e.msg);
	cr_assert_str_eq(items[0], "doc-1|{\"id\":\"doc-1\",\"t\":1}");
	cr_assert_str_eq(items[1], "42|{\"id\":42}");
	/* Without the key field, equal records hash alike whatever their key order. */
	sscanf(items[2], "%79[^|]", hash[2]);
	sscanf(items[3], "%79[^|]", hash[3]);
	sscanf(items[4], "%79[^|]", hash[4]);
	cr_assert_eq(strlen(hash[2]), 64);
	cr_assert_str_eq(hash[2], hash[3]);
	cr_assert_str_neq(hash[2], hash[4]);
}

Test(io_spec, records_errors)
{
	char items[8][512];
	struct lh_err e;
	write_file("a.jsonl", "{\"id\": \"x\"}\n{\"id\": true}\n");
	cr_assert_eq(list_items("a.jsonl", items, 8, &e), LH_EINPUT);
	cr_assert_eq(e.line, 2);
	cr_assert_str_eq(e.field, "id");
	cr_assert_not_null(strstr(e.file, "/a.jsonl"));
	cr_assert_not_null(strstr(e.msg, "expected a string or an integer, not a boolean"));
	write_file("b.jsonl", "{\"id\": \"x\"}\n\n{\"id\": \"y\"\n");
	cr_assert_eq(list_items("b.jsonl", items, 8, &e), LH_EINPUT);
	cr_assert_eq(e.line, 3);
	cr_assert_not_null(strstr(e.msg, "invalid JSON"));
	write_file("c.jsonl", "\"just a string\"\n");
	cr_assert_eq(list_items("c.jsonl", items, 8, &e), LH_EINPUT);
	cr_assert_eq(e.line, 1);
	write_file("d.jsonl", "[1]\n");
	cr_assert_eq(list_items("d.jsonl", items, 8, &e), LH_EINPUT);
	cr_assert_not_null(strstr(e.msg, "expected a JSON object, not an array"));
}

Test(io_spec, directory_order_and_keys)
{
	char items[16][512];
	struct lh_err e;
	int n;
	write_file("d/b.txt", "B");
	write_file("d/a.txt", "A");
	write_file("d/a/z.txt", "AZ");
	write_file("d/a-b.txt", "AB");
	write_file("d/c/d/e.md", "CDE");
	write_file("d/.hidden", "H");
	write_file("d/.git/config", "G");
	n = list_items("d", items, 16, &e);
	cr_assert_eq(n, 5, "%d %s", n, e.msg);
	/* Byte order of relative paths: "a-b.txt" < "a.txt" < "a/z.txt" < "b.txt" < "c/d/e.md". */
	cr_assert_str_eq(items[0], "a-b.txt|{\"path\":\"a-b.txt\",\"text\":\"AB\"}");
	cr_assert_str_eq(items[1], "a.txt|{\"path\":\"a.txt\",\"text\":\"A\"}");
	cr_assert_str_eq(items[2], "a/z.txt|{\"path\":\"a/z.txt\",\"text\":\"AZ\"}");
	cr_assert_str_eq(items[3], "b.txt|{\"path\":\"b.txt\",\"text\":\"B\"}");
	cr_assert_str_eq(items[4], "c/d/e.md|{\"path\":\"c/d/e.md\",\"text\":\"CDE\"}");
}

Test(io_spec, glob_order_and_keys)
{
	char items[16][512];
	struct lh_err e;
	int n;
	write_file("g/2024-02/notes.txt", "feb");
	write_file("g/2024-01/notes.txt", "jan");
	write_file("g/2024-01/other.md", "no");
	write_file("g/2023-12/notes.txt/inner", "a dir named like a file");
	n = list_items("g/2024-*/*.txt", items, 16, &e);
	cr_assert_eq(n, 2, "%d %s", n, e.msg);
	/* Keys are relative to the glob's literal directory, "g". */
	cr_assert_str_eq(items[0], "2024-01/notes.txt|{\"path\":\"2024-01/notes.txt\",\"text\":\"jan\"}");
	cr_assert_str_eq(items[1], "2024-02/notes.txt|{\"path\":\"2024-02/notes.txt\",\"text\":\"feb\"}");
	n = list_items("g/*/notes.txt", items, 16, &e);
	cr_assert_eq(n, 2, "directories matching the glob are skipped");
	cr_assert_eq(list_items("g/*.pdf", items, 16, &e), LH_EINPUT);
	cr_assert_str_eq(e.field, "input");
	cr_assert_not_null(strstr(e.msg, "no files match"));
}

Test(io_spec, file_errors)
{
	char items[4][512];
	struct lh_err e;
	size_t n = LH_MAX_FILE + 1;
	char *big = malloc(n);
	write_file("u/bad.txt", "ok\xff\xfe");
	cr_assert_eq(list_items("u", items, 4, &e), LH_EINPUT);
	cr_assert_not_null(strstr(e.file, "/u/bad.txt"), "%s", e.file);
	cr_assert_not_null(strstr(e.msg, "not UTF-8 text (bad byte at offset 2)"), "%s", e.msg);
	memset(big, 'a', n);
	write_n("v/big.txt", big, n);
	free(big);
	cr_assert_eq(list_items("v", items, 4, &e), LH_ETOOBIG);
	cr_assert_not_null(strstr(e.file, "/v/big.txt"));
	/* Overlong encodings and surrogates are not UTF-8 either. */
	write_file("w/a.txt", "\xc0\xaf");
	cr_assert_eq(list_items("w", items, 4, &e), LH_EINPUT);
	write_file("x/a.txt", "\xed\xa0\x80");
	cr_assert_eq(list_items("x", items, 4, &e), LH_EINPUT);
	write_file("z/caf\xe9.txt", "latin-1 name");
	cr_assert_eq(list_items("z", items, 4, &e), LH_EINPUT);
	cr_assert_str_eq(e.msg, "file name is not UTF-8");
	write_file("y/a.txt", "\xef\xbb\xbf\xc3\xa9t\xc3\xa9 \xf0\x9f\x99\x82");
	cr_assert_eq(list_items("y", items, 4, &e), 1);
	cr_assert_str_eq(items[0], "a.txt|{\"path\":\"a.txt\",\"text\":\"\xc3\xa9t\xc3\xa9 \xf0\x9f\x99\x82\"}");
}

Test(io_spec, render_record_through_the_spec)
{
	struct lh_spec *s;
	struct lh_source *src;
	struct lh_template *t;
	struct lh_record r;
	struct lh_buf body;
	struct lh_err e;
	write_file("r.jsonl", "{\"id\": 1, \"title\": \"T\"}\n{\"id\": 2}\n");
	s = load_ok("s.yaml", "input: r.jsonl\nprompt: 'About {{title}}'\nmodel: m\n");
	cr_assert_eq(lh_template_compile(s->prompt, &t, &e), 0);
	cr_assert_eq(lh_source_open(s, &src, &e), 0);
	lh_buf_init(&body, 1u << 20);
	cr_assert_eq(lh_source_next(src, &r, &e), 1);
	cr_assert_eq(lh_spec_build_body(s, t, NULL, r.json, &body, &e), 0);
	cr_assert_str_eq(body.data, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"About T\"}]}");
	lh_buf_clear(&body);
	cr_assert_eq(lh_source_next(src, &r, &e), 1);
	cr_assert_eq(lh_spec_build_body(s, t, NULL, r.json, &body, &e), LH_EINPUT);
	cr_assert_str_eq(e.field, "title");
	cr_assert_eq(lh_source_next(src, &r, &e), 0);
	lh_buf_release(&body);
	lh_source_close(src);
	lh_template_free(t);
	lh_spec_free(s);
}

Test(io_spec, for_records_from_the_command_line)
{
	struct lh_spec *s = NULL;
	struct lh_err e;
	char *cwd = getcwd(NULL, 0);
	cr_assert_not_null(cwd);
	write_file("recs.jsonl", "{\"id\": 1, \"text\": \"a\"}\n");
	write_file("docs/a.txt", "alpha");
	cr_assert_eq(chdir(tmpdir), 0);
	lh_err_clear(&e);
	cr_assert_eq(lh_spec_for_records("recs.jsonl", "Say {{text}}", "be brief", "m", &s, &e), 0, "%s", e.msg);
	cr_assert_str_eq(s->input_records, tpath("recs.jsonl"));
	cr_assert_null(s->input_files);
	cr_assert_str_eq(s->key_field, "id");
	cr_assert_str_eq(s->prompt, "Say {{text}}");
	cr_assert_str_eq(s->system, "be brief");
	cr_assert_str_eq(s->model, "m");
	cr_assert_str_eq(s->name, "recs.jsonl");
	lh_spec_free(s);
	cr_assert_eq(lh_spec_for_records("docs/", "{{path}}", NULL, NULL, &s, &e), 0, "%s", e.msg);
	cr_assert_str_eq(s->input_files, tpath("docs"));
	cr_assert_str_eq(s->name, "docs");
	cr_assert_null(s->key_field);
	cr_assert_null(s->system);
	lh_spec_free(s);
	cr_assert_eq(lh_spec_for_records("docs/*.txt", "{{path}}", NULL, NULL, &s, &e), 0, "%s", e.msg);
	cr_assert_str_eq(s->input_files, tpath("docs/*.txt"));
	lh_spec_free(s);
	cr_assert_eq(lh_spec_for_records("recs.jsonl", "Say {{text", NULL, NULL, &s, &e), LH_EUSAGE);
	cr_assert(strstr(e.msg, "--prompt: "), "%s", e.msg);
	cr_assert_eq(lh_spec_for_records("nope.jsonl", "{{text}}", NULL, NULL, &s, &e), LH_EINPUT);
	cr_assert(strstr(e.msg, "no such file or directory"), "%s", e.msg);
	cr_assert_eq(chdir(cwd), 0);
	free(cwd);
}
