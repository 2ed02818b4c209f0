/*
 * Fuzz target: the job spec loader (io/spec.c, libfyaml underneath). The
 * input is a spec's text, loaded from memory twice: as "spec.yaml" and as
 * "spec.json" (JSON mode). Relative paths resolve against a scratch
 * directory holding records.jsonl and texts/, so a spec can be valid.
 * Checks: an error is LH_EINPUT or LH_ETOOBIG with a message; a loaded
 * spec keeps input.h's promises (a name, exactly one input, an absolute
 * path, a prompt that compiles or steps, a key only for records, values in range),
 * its settings serialise to JSON that loads, and its request body for a
 * record is a JSON object.
 */
#include "fuzz.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/input.h"
#include "util/mem.h"

static char dir[64];

static void remove_dir(void)
{
	char p[128];
	snprintf(p, sizeof p, "%s/records.jsonl", dir);
	unlink(p);
	snprintf(p, sizeof p, "%s/texts/a.txt", dir);
	unlink(p);
	snprintf(p, sizeof p, "%s/texts", dir);
	rmdir(p);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char p[128];
	FILE *f;
	snprintf(dir, sizeof dir, "/tmp/lh-fuzz-spec-XXXXXX");
	FUZZ_CHECK(mkdtemp(dir), "mkdtemp");
	snprintf(p, sizeof p, "%s/records.jsonl", dir);
	f = fopen(p, "w");
	FUZZ_CHECK(f, "create %s", p);
	fputs("{\"id\":\"1\",\"title\":\"a\"}\n", f);
	fclose(f);
	snprintf(p, sizeof p, "%s/texts", dir);
	FUZZ_CHECK(mkdir(p, 0755) == 0, "mkdir %s", p);
	snprintf(p, sizeof p, "%s/texts/a.txt", dir);
	f = fopen(p, "w");
	FUZZ_CHECK(f, "create %s", p);
	fputs("some text\n", f);
	fclose(f);
	atexit(remove_dir);
	return 0;
}

static void check_spec(const struct lh_spec *s, const char *name)
{
	struct lh_template *t;
	struct lh_buf body;
	struct lh_err e;
	json_t *rec, *j;
	char *settings;
	FUZZ_CHECK(!strcmp(s->path, name), "path \"%s\"", s->path);
	FUZZ_CHECK(s->name && s->name[0], "no name");
	FUZZ_CHECK(!s->input_records != !s->input_files, "records %s, files %s", s->input_records ? "set" : "NULL",
		   s->input_files ? "set" : "NULL");
	FUZZ_CHECK((s->input_records ? s->input_records : s->input_files)[0] == '/', "input path is not absolute");
	FUZZ_CHECK(!s->input_records || s->key_field, "records without a key field");
	FUZZ_CHECK(!s->input_files || !s->key_field, "files with a key field");
	FUZZ_CHECK(!s->prompt != !s->steps, "prompt %s, steps %s", s->prompt ? "set" : "NULL",
		   s->steps ? "set" : "NULL");
	FUZZ_CHECK(!s->prompt || s->prompt[0], "empty prompt");
	FUZZ_CHECK(!s->reduce || json_is_string(json_object_get((json_t *)s->reduce, "prompt")),
		   "reduce without a prompt");
	FUZZ_CHECK(s->exec_concurrency == -1 || (s->exec_concurrency >= 1 && s->exec_concurrency <= 4096),
		   "exec_concurrency %ld", s->exec_concurrency);
	FUZZ_CHECK(!s->output || s->output[0] == '/', "output path is not absolute");
	FUZZ_CHECK(!s->errors || s->errors[0] == '/', "errors path is not absolute");
	FUZZ_CHECK(!s->base_url || !strncasecmp(s->base_url, "http://", 7) || !strncasecmp(s->base_url, "https://", 8),
		   "base_url \"%s\"", s->base_url);
	FUZZ_CHECK(s->max_tokens == -1 || s->max_tokens >= 1, "max_tokens %ld", s->max_tokens);
	FUZZ_CHECK(s->temperature == -1 || (s->temperature >= 0 && s->temperature <= 2), "temperature %g",
		   s->temperature);
	FUZZ_CHECK(s->concurrency == -1 || (s->concurrency >= 1 && s->concurrency <= 65536), "concurrency %ld",
		   s->concurrency);
	FUZZ_CHECK(s->max_attempts == -1 || (s->max_attempts >= 1 && s->max_attempts <= 1000), "max_attempts %d",
		   s->max_attempts);
	FUZZ_CHECK(s->stream == 0 || s->stream == 1, "stream %d", s->stream);

	settings = lh_spec_to_json(s);
	j = json_loads(settings, 0, NULL);
	FUZZ_CHECK(json_is_object(j), "settings are not a JSON object: %.300s", settings);
	json_decref(j);
	lh_free(settings);

	if (s->steps) {
		json_t *steps = s->steps, *st;
		size_t i;
		FUZZ_CHECK(json_is_array(steps) && json_array_size(steps) >= 1 && json_array_size(steps) <= 100,
			   "steps are not a list of 1 to 100");
		json_array_foreach(steps, i, st)
			FUZZ_CHECK(json_is_string(json_object_get(st, "id")) && json_is_string(json_object_get(st, "kind")),
				   "step %zu without id or kind", i);
		return;
	}
	lh_err_clear(&e);
	FUZZ_CHECK(lh_template_compile(s->prompt, &t, &e) == 0, "the prompt does not compile: %s", e.msg);
	rec = json_pack("{s:s, s:s, s:{s:s}}", "id", "1", "title", "a", "body", "text", "b");
	lh_buf_init(&body, 1 << 20);
	if (lh_spec_build_body(s, t, NULL, rec, &body, &e) == 0) {
		j = json_loadb(body.data, body.len, 0, NULL);
		FUZZ_CHECK(json_is_object(j) && json_is_array(json_object_get(j, "messages")),
			   "request body is not a chat request: %.300s", body.data);
		json_decref(j);
	}
	lh_buf_release(&body);
	json_decref(rec);
	lh_template_free(t);
}

static void load(const char *buf, size_t len, const char *name)
{
	struct lh_spec *s = NULL;
	struct lh_err e;
	int rc;
	lh_err_clear(&e);
	rc = lh_spec_load_buf(buf, len, name, dir, &s, &e);
	if (rc) {
		FUZZ_CHECK(rc == LH_EINPUT || rc == LH_ETOOBIG, "lh_spec_load_buf returned %d: %s", rc, e.msg);
		FUZZ_CHECK(e.code == rc && e.msg[0] && !strcmp(e.file, name), "error record: %d \"%s\" in \"%s\"",
			   e.code, e.msg, e.file);
		return;
	}
	check_spec(s, name);
	lh_spec_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	load((const char *)data, size, "spec.yaml");
	load((const char *)data, size, "spec.json");
	return 0;
}
