/*
 * Unit tests: a job spec's pipeline (io/spec_steps.c): steps and reduce
 * normalized to JSON, and each mistake named by file, line and field.
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
	FILE *f;
	char p[512];
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lh-steps-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(p, sizeof p, "%s/in.jsonl", tmpdir);
	f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs("{\"id\": \"a\", \"text\": \"x\"}\n", f);
	fclose(f);
}

static void teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(spec_steps, .init = setup, .fini = teardown);

static const char *write_spec(const char *rel, const char *text)
{
	static char path[512];
	FILE *f;
	snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static struct lh_spec *load_ok(const char *rel, const char *text)
{
	struct lh_spec *s = NULL;
	struct lh_err e;
	char where[2048];
	int rc = lh_spec_load(write_spec(rel, text), &s, &e);
	lh_err_format(&e, where, sizeof where);
	cr_assert_eq(rc, 0, "%s", where);
	return s;
}

static void load_bad(const char *text, long line, const char *field, const char *msg)
{
	struct lh_spec *s = NULL;
	struct lh_err e;
	char real[1024];
	const char *path = write_spec("bad.yaml", text);
	cr_assert_eq(lh_spec_load(path, &s, &e), LH_EINPUT, "loaded: %s", text);
	cr_assert_null(s);
	cr_assert_not_null(realpath(path, real));
	cr_assert_str_eq(e.file, real);
	cr_assert_eq(e.line, line, "line %ld, want %ld (%s)", e.line, line, e.msg);
	cr_assert_str_eq(e.field, field, "field \"%s\", want \"%s\" (%s)", e.field, field, e.msg);
	cr_assert_not_null(strstr(e.msg, msg), "\"%s\" lacks \"%s\"", e.msg, msg);
}

/* j dumped compactly with sorted keys must equal want (also sorted). */
static void json_eq(const json_t *j, const char *want)
{
	json_error_t jerr;
	json_t *w = json_loads(want, 0, &jerr);
	char *a, *b;
	cr_assert_not_null(w, "bad expectation: %s", jerr.text);
	a = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	b = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
	cr_assert_str_eq(a, b);
	free(a);
	free(b);
	json_decref(w);
}

#define HEAD "input: in.jsonl\nmodel: m\n"

Test(spec_steps, pipeline_normalizes)
{
	struct lh_spec *s = load_ok("review.yaml",
		"name: review\n"
		"input: in.jsonl\n"
		"exec_concurrency: 2\n"
		"steps:\n"
		"  - id: notes\n"
		"    prompt: \"List the risky parts of {{path}}:\\n{{text}}\"\n"
		"    max_tokens: 100\n"
		"    stream: true\n"
		"    api_key_env: MY_KEY\n"
		"  - id: lint\n"
		"    exec: [\"sh\", \"-c\", \"wc -l < \\\"$1\\\"\", \"lint\", \"{{path}}\"]\n"
		"    stdin: \"{{steps.notes.output}}\"\n"
		"    timeout: 60\n"
		"    limits: {open_files: 1024, memory: 2GiB, cpu_seconds: 600}\n"
		"  - id: verify\n"
		"    model: big\n"
		"    prompt: \"Check {{steps.notes.output}} {{steps.lint.json.lines}} {{output}}\"\n"
		"    tools:\n"
		"      - name: grep\n"
		"        description: Search the file\n"
		"        parameters: {type: object, properties: {pattern: {type: string}}, required: [pattern]}\n"
		"        exec: [\"python3\", \"tools/grep.py\", \"{{path}}\"]\n"
		"        timeout: 30\n"
		"      - exec: [ls]\n"
		"        name: ls\n"
		"    until: \"VERDICT:\"\n"
		"  - id: more\n"
		"    prompt: go\n"
		"    next: Continue.\n"
		"    max_turns: 3\n"
		"  - id: signoff\n"
		"    approve: \"Accept the review of {{path}}?\"\n"
		"reduce:\n"
		"  prompt: \"Merge:\\n{{outputs}}\"\n"
		"  output: out/review.md\n"
		"timeouts: {item: 3600, connect: 5}\n"
		"time_limit: 86400\n");
	char out[1024], *j;
	json_t *o;
	cr_assert_null(s->prompt);
	cr_assert_eq(s->exec_concurrency, 2);
	cr_assert_float_eq(s->item_timeout, 3600, 1e-9);
	cr_assert_float_eq(s->time_limit, 86400, 1e-9);
	json_eq(s->steps,
		"[{\"id\":\"notes\",\"kind\":\"llm\",\"prompt\":\"List the risky parts of {{path}}:\\n{{text}}\","
		"\"max_tokens\":100,\"stream\":true,\"api_key_env\":\"MY_KEY\"},"
		"{\"id\":\"lint\",\"kind\":\"exec\",\"exec\":[\"sh\",\"-c\",\"wc -l < \\\"$1\\\"\",\"lint\",\"{{path}}\"],"
		"\"stdin\":\"{{steps.notes.output}}\",\"timeout\":60.0,"
		"\"limits\":{\"memory\":2147483648,\"cpu_seconds\":600,\"open_files\":1024}},"
		"{\"id\":\"verify\",\"kind\":\"loop\",\"model\":\"big\","
		"\"prompt\":\"Check {{steps.notes.output}} {{steps.lint.json.lines}} {{output}}\","
		"\"tools\":[{\"name\":\"grep\",\"description\":\"Search the file\",\"parameters\":{\"type\":\"object\","
		"\"properties\":{\"pattern\":{\"type\":\"string\"}},\"required\":[\"pattern\"]},"
		"\"exec\":[\"python3\",\"tools/grep.py\",\"{{path}}\"],\"timeout\":30.0},"
		"{\"name\":\"ls\",\"parameters\":{\"type\":\"object\",\"properties\":{}},\"exec\":[\"ls\"]}],"
		"\"max_turns\":10,\"until\":\"VERDICT:\",\"max_context_bytes\":1048576},"
		"{\"id\":\"more\",\"kind\":\"loop\",\"prompt\":\"go\",\"max_turns\":3,\"next\":\"Continue.\","
		"\"max_context_bytes\":1048576},"
		"{\"id\":\"signoff\",\"kind\":\"approve\",\"approve\":\"Accept the review of {{path}}?\"}]");
	/* Keys in the documented order, not the spec's. */
	j = json_dumps(json_array_get(s->steps, 1), JSON_COMPACT);
	cr_assert_not_null(strstr(j, "{\"id\":\"lint\",\"kind\":\"exec\",\"exec\":"));
	cr_assert_not_null(strstr(j, "\"limits\":{\"memory\":2147483648,\"cpu_seconds\":600,\"open_files\":1024}}"));
	free(j);
	snprintf(out, sizeof out, "{\"prompt\":\"Merge:\\n{{outputs}}\",\"fan_in\":20,\"output\":\"%s/out/review.md\"}",
		 tmpdir);
	{
		char real[512];
		cr_assert_not_null(realpath(tmpdir, real));
		snprintf(out, sizeof out,
			 "{\"prompt\":\"Merge:\\n{{outputs}}\",\"fan_in\":20,\"output\":\"%s/out/review.md\"}", real);
	}
	json_eq(s->reduce, out);
	cr_assert_eq(lh_spec_needs_model(s), 1); /* notes has no model, nor the spec */

	/* The stored settings carry the pipeline. */
	j = lh_spec_to_json(s);
	o = json_loads(j, 0, NULL);
	cr_assert_not_null(o);
	cr_assert(json_equal(json_object_get(o, "steps"), s->steps));
	cr_assert(json_equal(json_object_get(o, "reduce"), s->reduce));
	cr_assert_eq(json_integer_value(json_object_get(o, "exec_concurrency")), 2);
	cr_assert_float_eq(json_number_value(json_object_get(o, "time_limit")), 86400, 1e-9);
	cr_assert_float_eq(json_number_value(json_object_get(json_object_get(o, "timeouts"), "item")), 3600, 1e-9);
	cr_assert_float_eq(json_number_value(json_object_get(json_object_get(o, "timeouts"), "connect")), 5, 1e-9);
	cr_assert_null(json_object_get(o, "prompt"));
	json_decref(o);
	free(j);
	lh_spec_free(s);
}

Test(spec_steps, json_spec_and_models)
{
	struct lh_spec *s = load_ok("p.json",
		"{\"input\": \"in.jsonl\",\n"
		" \"steps\": [{\"id\": \"a\", \"prompt\": \"{{text}}\", \"model\": \"x\"},\n"
		"             {\"id\": \"b\", \"exec\": [\"cat\"], \"stdin\": \"{{output}}\","
		" \"limits\": {\"memory\": 1048576}}],\n"
		" \"reduce\": {\"prompt\": \"{{ outputs }}\", \"model\": \"y\", \"fan_in\": 5}}\n");
	json_eq(s->steps, "[{\"id\":\"a\",\"kind\":\"llm\",\"prompt\":\"{{text}}\",\"model\":\"x\"},"
			  "{\"id\":\"b\",\"kind\":\"exec\",\"exec\":[\"cat\"],\"stdin\":\"{{output}}\",\"timeout\":600.0,"
			  "\"limits\":{\"memory\":1048576}}]");
	json_eq(s->reduce, "{\"prompt\":\"{{ outputs }}\",\"model\":\"y\",\"fan_in\":5}");
	cr_assert_eq(lh_spec_needs_model(s), 0);
	cr_assert_eq(s->exec_concurrency, -1);
	cr_assert(s->time_limit < 0 && s->item_timeout < 0);
	lh_spec_free(s);
	/* Without steps the old rule: a model in the spec or from outside. */
	s = load_ok("q.yaml", "input: in.jsonl\nprompt: p\n");
	cr_assert_null(s->steps);
	cr_assert_null(s->reduce);
	cr_assert_eq(lh_spec_needs_model(s), 1);
	lh_spec_free(s);
	s = load_ok("r.yaml", "input: in.jsonl\nprompt: p\nmodel: m\nreduce: {prompt: \"{{outputs}}\"}\n");
	cr_assert_eq(lh_spec_needs_model(s), 0);
	cr_assert_not_null(s->reduce);
	lh_spec_free(s);
}

Test(spec_steps, memory_sizes)
{
	static const struct {
		const char *text;
		long long want;
	} cases[] = { { "2GiB", 2147483648LL }, { "\"512 MiB\"", 536870912LL }, { "3MB", 3000000LL },
		      { "1.5GiB", 1610612736LL }, { "4194304", 4194304LL }, { "1TiB", 1099511627776LL },
		      { "2GB", 2000000000LL } };
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[256];
		struct lh_spec *s;
		snprintf(text, sizeof text, HEAD "steps:\n  - id: a\n    exec: [x]\n    limits: {memory: %s}\n",
			 cases[i].text);
		s = load_ok("m.yaml", text);
		cr_assert_eq(json_integer_value(json_object_get(json_object_get(json_array_get(s->steps, 0), "limits"),
								"memory")), cases[i].want, "%s", cases[i].text);
		lh_spec_free(s);
	}
}

Test(spec_steps, unknown_step_field)
{
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    promt: q\n", 6, "steps[0].promt",
		 "unknown field for an llm step (valid fields: id, prompt, system, model");
	load_bad(HEAD "steps:\n  - id: a\n    exec: [ls]\n    tools: []\n", 6, "steps[0].tools",
		 "unknown field for an exec step (valid fields: id, exec, stdin, timeout, limits)");
	/* No kind, and a misspelt field: the misspelling is the news. */
	load_bad(HEAD "steps:\n  - id: a\n    promtp: q\n", 5, "steps[0].promtp", "unknown field (valid fields: id, ");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    api_key: sk-1\n", 6, "steps[0].api_key",
		 "api keys are never read from a spec");
	load_bad(HEAD "steps:\n  - id: a\n    exec: [ls]\n    limits: {memory: 2GiB, cpu: 1}\n", 6,
		 "steps[0].limits.cpu", "unknown field (valid fields: memory, cpu_seconds, open_files)");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    tools:\n      - name: t\n        exec: [x]\n"
		 "        args: 1\n", 9, "steps[0].tools[0].args", "unknown field (valid fields: name, description");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\nreduce:\n  prompt: \"{{outputs}}\"\n  fanin: 3\n", 8,
		 "reduce.fanin", "unknown field (valid fields: prompt, system, model, max_tokens");
}

Test(spec_steps, approve_with_tools)
{
	load_bad(HEAD "steps:\n  - id: a\n    approve: ok?\n    tools: [{name: t, exec: [x]}]\n", 6, "steps[0].tools",
		 "unknown field for an approve step (valid fields: id, approve)");
}

Test(spec_steps, duplicate_id)
{
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n  - id: b\n    prompt: q\n  - prompt: r\n    id: a\n", 9,
		 "steps[2].id", "duplicate step id \"a\" (steps[0] has it too)");
}

Test(spec_steps, malformed_id)
{
	load_bad(HEAD "steps:\n  - id: Notes\n    prompt: p\n", 4, "steps[0].id", "expected an id of lowercase letters");
	load_bad(HEAD "steps:\n  - id: 1a\n    prompt: p\n", 4, "steps[0].id", "expected an id");
	load_bad(HEAD "steps:\n  - id: a-b\n    prompt: p\n", 4, "steps[0].id", "expected an id");
	load_bad(HEAD "steps:\n  - id: "
		 "a2345678901234567890123456789012345678901234567890123456789012345\n    prompt: p\n",
		 4, "steps[0].id", "at most 64 bytes");
	load_bad(HEAD "steps:\n  - prompt: p\n", 4, "steps[0].id", "required field is missing");
}

Test(spec_steps, kinds)
{
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n  - id: b\n    system: s\n", 6, "steps[1]",
		 "a step needs one of \"prompt\" (llm), \"exec\" (a command) or \"approve\"");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    exec: [ls]\n", 6, "steps[0]",
		 "set only one of \"prompt\" (llm), \"exec\" (a command) or \"approve\" (a person's approval), "
		 "not \"prompt\" and \"exec\"");
	load_bad(HEAD "steps: []\n", 3, "steps", "must not be empty");
	load_bad(HEAD "steps: {id: a}\n", 3, "steps", "expected a list of steps, not a mapping");
	load_bad(HEAD "steps:\n  - just text\n", 4, "steps[0]", "expected a mapping (a step), not a string");
}

Test(spec_steps, reference_unknown_step)
{
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n  - id: b\n    prompt: \"{{steps.nope.output}}\"\n", 7,
		 "steps[1].prompt", "{{steps.nope.output}}: there is no step with the id \"nope\"");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n  - id: b\n    exec: [cat, \"{{steps.a.text}}\"]\n", 7,
		 "steps[1].exec[1]", "expected {{steps.ID.output}} or {{steps.ID.json}}");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: \"{{steps}}\"\n", 5, "steps[0].prompt",
		 "expected {{steps.ID.output}}");
}

Test(spec_steps, reference_later_step)
{
	load_bad(HEAD "steps:\n  - id: a\n    prompt: \"{{steps.b.json.x}}\"\n  - id: b\n    prompt: q\n", 5,
		 "steps[0].prompt", "step \"b\" (steps[1]) runs later");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n  - id: b\n    exec: [x]\n    stdin: \"{{steps.b.output}}\"\n",
		 8, "steps[1].stdin", "a step cannot use its own output");
}

Test(spec_steps, output_in_first_step)
{
	load_bad(HEAD "steps:\n  - id: a\n    approve: \"ok {{output}}?\"\n", 5, "steps[0].approve",
		 "the first step has none");
}

Test(spec_steps, bad_template)
{
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n  - id: b\n    exec:\n      - cat\n      - \"{{x\"\n", 9,
		 "steps[1].exec[1]", "unclosed");
}

Test(spec_steps, tools_without_exec)
{
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    tools:\n      - name: grep\n        description: d\n", 7,
		 "steps[0].tools[0].exec", "required field is missing");
}

Test(spec_steps, bad_tool_name)
{
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    tools:\n      - name: \"a b\"\n        exec: [x]\n", 7,
		 "steps[0].tools[0].name", "expected a name of 1 to 64 letters");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    tools:\n      - {name: t, exec: [x]}\n"
		 "      - {name: t, exec: [y]}\n", 8, "steps[0].tools[1].name", "duplicate tool name \"t\"");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    tools:\n      - {name: t, exec: [x], parameters: [1]}\n", 7,
		 "steps[0].tools[0].parameters", "expected a mapping");
}

Test(spec_steps, loop_fields_without_loop)
{
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    until: DONE\n", 6, "steps[0].until",
		 "only for a loop: an llm step with \"tools\" or \"next\"");
	load_bad(HEAD "steps:\n  - id: a\n    max_turns: 3\n    prompt: p\n", 5, "steps[0].max_turns", "only for a loop");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    max_context_bytes: 2048\n", 6, "steps[0].max_context_bytes",
		 "only for a loop");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    next: go\n    max_turns: 0\n", 7, "steps[0].max_turns",
		 "must be at least 1");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    next: go\n    max_context_bytes: 100\n", 7,
		 "steps[0].max_context_bytes", "must be at least 1024");
}

Test(spec_steps, prompt_and_steps)
{
	load_bad(HEAD "prompt: p\nsteps:\n  - id: a\n    prompt: q\n", 3, "prompt", "not both");
	load_bad("input: in.jsonl\nmodel: m\n", 0, "prompt", "required field is missing");
}

Test(spec_steps, reduce_placeholders)
{
	load_bad(HEAD "prompt: p\nreduce:\n  prompt: Merge them\n", 5, "reduce.prompt", "must contain {{outputs}}");
	load_bad(HEAD "prompt: p\nreduce:\n  prompt: \"{{outputs}} for {{name}}\"\n", 5, "reduce.prompt",
		 "{{name}}: the only placeholder of a reduce is {{outputs}}");
	load_bad(HEAD "prompt: p\nreduce:\n  fan_in: 3\n", 4, "reduce.prompt", "required field is missing");
	load_bad(HEAD "prompt: p\nreduce:\n  prompt: \"{{outputs}}\"\n  fan_in: 1\n", 6, "reduce.fan_in",
		 "must be at least 2");
}

Test(spec_steps, bad_memory)
{
	load_bad(HEAD "steps:\n  - id: a\n    exec: [x]\n    limits:\n      memory: 2 gigs\n", 7, "steps[0].limits.memory",
		 "expected a size");
	load_bad(HEAD "steps:\n  - id: a\n    exec: [x]\n    limits:\n      memory: 1e9\n", 7, "steps[0].limits.memory",
		 "expected a size");
	load_bad(HEAD "steps:\n  - id: a\n    exec: [x]\n    limits:\n      memory: 1000\n", 7, "steps[0].limits.memory",
		 "must be at least 1MiB");
	load_bad(HEAD "steps:\n  - id: a\n    exec: [x]\n    limits:\n      open_files: 0\n", 7,
		 "steps[0].limits.open_files", "must be at least 1");
}

Test(spec_steps, exec_fields)
{
	load_bad(HEAD "steps:\n  - id: a\n    exec: []\n", 5, "steps[0].exec", "must not be empty");
	load_bad(HEAD "steps:\n  - id: a\n    exec: \"ls -l\"\n", 5, "steps[0].exec", "expected a list of arguments");
	load_bad(HEAD "steps:\n  - id: a\n    exec: [\"\", x]\n", 5, "steps[0].exec[0]", "the program must not be empty");
	load_bad(HEAD "steps:\n  - id: a\n    exec: [x]\n    timeout: 0\n", 6, "steps[0].timeout", "must be greater than 0");
	load_bad(HEAD "steps:\n  - id: a\n    exec: [x]\n    timeout: 604801\n", 6, "steps[0].timeout", "must be at most");
}

Test(spec_steps, top_level_fields)
{
	load_bad(HEAD "prompt: p\nexec_concurrency: 0\n", 4, "exec_concurrency", "must be at least 1");
	load_bad(HEAD "prompt: p\ntime_limit: 0\n", 4, "time_limit", "must be greater than 0");
	load_bad(HEAD "prompt: p\ntimeouts: {item: -1}\n", 4, "timeouts.item", "must be greater than 0");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    base_url: ftp://x\n", 6, "steps[0].base_url", "");
	load_bad(HEAD "steps:\n  - id: a\n    prompt: p\n    api_key_env: sk-123\n", 6, "steps[0].api_key_env",
		 "the name of an environment variable");
}

Test(spec_steps, detect_as_spec)
{
	enum lh_input_kind k;
	struct lh_err e;
	const char *p = write_spec("one.json", "{\"input\": \"in.jsonl\", \"steps\": [{\"id\": \"a\", \"prompt\": \"p\"}], "
					       "\"reduce\": {\"prompt\": \"{{outputs}}\"}, \"exec_concurrency\": 1, "
					       "\"time_limit\": 5}\n");
	cr_assert_eq(lh_input_detect(p, &k, &e), 0, "%s", e.msg);
	cr_assert_eq(k, LH_INPUT_SPEC);
}

Test(spec_steps, item_input)
{
	struct lh_record r;
	struct lh_buf b;
	struct lh_err e;
	struct lh_spec s;
	json_t *j = json_pack("{s:s,s:s}", "text", "hi", "path", "a.txt");
	memset(&s, 0, sizeof s);
	memset(&r, 0, sizeof r);
	r.key = "a.txt";
	r.key_len = 5;
	r.json = j;
	lh_buf_init(&b, 0);
	cr_assert_eq(lh_spec_item_input(&s, &r, &b, &e), 0);
	cr_assert_str_eq(b.data, "{\"text\":\"hi\",\"path\":\"a.txt\",\"key\":\"a.txt\"}");
	cr_assert_null(json_object_get(j, "key")); /* the record is left alone */
	lh_buf_clear(&b);
	json_object_set_new(j, "key", json_integer(7));
	cr_assert_eq(lh_spec_item_input(&s, &r, &b, &e), 0);
	cr_assert_str_eq(b.data, "{\"text\":\"hi\",\"path\":\"a.txt\",\"key\":7}");
	/* A file inside the spec's directory: its path as commands there see it. */
	json_object_del(j, "key");
	s.input_files = "/w/src";
	s.dir = "/w";
	r.where = "/w/src/a.txt";
	lh_buf_clear(&b);
	cr_assert_eq(lh_spec_item_input(&s, &r, &b, &e), 0);
	cr_assert_str_eq(b.data, "{\"text\":\"hi\",\"path\":\"src/a.txt\",\"key\":\"a.txt\"}");
	/* Outside it: absolute. */
	r.where = "/elsewhere/a.txt";
	lh_buf_clear(&b);
	cr_assert_eq(lh_spec_item_input(&s, &r, &b, &e), 0);
	cr_assert_str_eq(b.data, "{\"text\":\"hi\",\"path\":\"/elsewhere/a.txt\",\"key\":\"a.txt\"}");
	lh_buf_release(&b);
	json_decref(j);
}
