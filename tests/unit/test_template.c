/*
 * Unit tests: prompt templates (io/template.c) and request bodies
 * (io/body.c).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "io/input.h"

/* Compiles src and renders it with the JSON record rec; returns the
 * code, with the text in out (caller releases). */
static int render(const char *src, const char *rec, struct lh_buf *out, struct lh_err *e)
{
	struct lh_template *t;
	json_error_t jerr;
	json_t *j = json_loads(rec, 0, &jerr);
	int rc;
	cr_assert_not_null(j, "%s", jerr.text);
	cr_assert_eq(lh_template_compile(src, &t, e), 0, "%s", e->msg);
	lh_buf_init(out, 0);
	rc = lh_template_render(t, j, out, e);
	lh_template_free(t);
	json_decref(j);
	return rc;
}

static void expect_render(const char *src, const char *rec, const char *want)
{
	struct lh_buf out;
	struct lh_err e;
	cr_assert_eq(render(src, rec, &out, &e), 0, "%s: %s", src, e.msg);
	cr_assert_str_eq(out.data ? out.data : "", want);
	lh_buf_release(&out);
}

Test(template, literal_and_fields)
{
	expect_render("plain text, no fields", "{}", "plain text, no fields");
	expect_render("", "{}", "");
	expect_render("Hello {{name}}!", "{\"name\": \"Ann\"}", "Hello Ann!");
	expect_render("{{ name }}/{{\tname\t}}", "{\"name\": \"x\"}", "x/x");
	expect_render("{{a}}{{b}}", "{\"a\": \"1\", \"b\": \"2\"}", "12");
	expect_render("single { and } and }} stay", "{}", "single { and } and }} stay");
}

Test(template, dotted_names_walk_objects)
{
	expect_render("{{doc.meta.title}} by {{doc.author}}",
		      "{\"doc\": {\"meta\": {\"title\": \"T\"}, \"author\": \"A\"}}", "T by A");
}

Test(template, non_strings_render_as_compact_json)
{
	expect_render("{{i}} {{r}} {{t}} {{f}} {{n}}",
		      "{\"i\": 42, \"r\": 0.7, \"t\": true, \"f\": false, \"n\": null}", "42 0.7 true false null");
	expect_render("{{o}} {{a}}", "{\"o\": {\"k\": \"v\", \"x\": 1.0}, \"a\": [1, \"two\"]}",
		      "{\"k\":\"v\",\"x\":1.0} [1,\"two\"]");
	/* Strings go in raw: no quotes, no escaping. */
	expect_render("<{{s}}>", "{\"s\": \"a \\\"q\\\"\\nb\"}", "<a \"q\"\nb>");
}

Test(template, missing_field)
{
	struct lh_buf out;
	struct lh_err e;
	cr_assert_eq(render("Hi {{ who }}", "{\"name\": \"x\"}", &out, &e), LH_EINPUT);
	cr_assert_str_eq(e.field, "who");
	cr_assert_str_eq(e.msg, "template placeholder \"{{who}}\" has no value in this record");
	lh_buf_release(&out);
	cr_assert_eq(render("{{a.b}}", "{\"a\": \"not an object\"}", &out, &e), LH_EINPUT);
	cr_assert_str_eq(e.field, "a.b");
	lh_buf_release(&out);
	cr_assert_eq(render("{{a.b}}", "{\"a\": {\"c\": 1}}", &out, &e), LH_EINPUT);
	cr_assert_str_eq(e.field, "a.b");
	lh_buf_release(&out);
}

static void expect_compile_error(const char *src, const char *msg)
{
	struct lh_template *t = NULL;
	struct lh_err e;
	cr_assert_eq(lh_template_compile(src, &t, &e), LH_EINPUT, "%s compiled", src);
	cr_assert_null(t);
	cr_assert_not_null(strstr(e.msg, msg), "\"%s\" lacks \"%s\"", e.msg, msg);
}

Test(template, compile_errors)
{
	expect_compile_error("Hi {{name", "unclosed \"{{\" at byte 4");
	expect_compile_error("{{}}", "empty placeholder");
	expect_compile_error("{{   }}", "empty placeholder");
	expect_compile_error("{{a b}}", "\"{{a b}}\" is not a valid field name");
	expect_compile_error("{{a..b}}", "is not a valid field name");
	expect_compile_error("{{.a}}", "is not a valid field name");
	expect_compile_error("{{a.}}", "is not a valid field name");
	expect_compile_error("{{{a}}}", "is not a valid field name");
}

Test(template, render_respects_the_buffer_cap)
{
	struct lh_template *t;
	struct lh_buf out;
	struct lh_err e;
	json_t *j = json_pack("{s:s}", "x", "0123456789");
	cr_assert_eq(lh_template_compile("{{x}}{{x}}", &t, &e), 0);
	lh_buf_init(&out, 15);
	cr_assert_eq(lh_template_render(t, j, &out, &e), LH_ETOOBIG);
	lh_buf_release(&out);
	lh_template_free(t);
	json_decref(j);
}

/* ---- request bodies ---- */

static json_t *build(const struct lh_spec *s, const char *model, const char *rec, int *rc, struct lh_err *e)
{
	struct lh_template *t;
	struct lh_buf out;
	json_error_t jerr;
	json_t *r = json_loads(rec, 0, &jerr), *body = NULL;
	cr_assert_eq(lh_template_compile(s->prompt, &t, e), 0);
	lh_buf_init(&out, 1u << 20);
	*rc = lh_spec_build_body(s, t, model, r, &out, e);
	if (*rc == 0) {
		body = json_loadb(out.data, out.len, 0, &jerr);
		cr_assert_not_null(body, "not JSON: %s", out.data);
	}
	lh_buf_release(&out);
	lh_template_free(t);
	json_decref(r);
	return body;
}

static struct lh_spec base_spec(void)
{
	struct lh_spec s;
	memset(&s, 0, sizeof s);
	s.prompt = "Summarise: {{text}}";
	s.max_tokens = -1;
	s.temperature = -1;
	return s;
}

Test(body, minimal_without_model)
{
	struct lh_spec s = base_spec();
	struct lh_err e;
	int rc;
	json_t *b = build(&s, NULL, "{\"text\": \"he said \\\"hi\\\"\\n\\tok\"}", &rc, &e);
	json_t *msgs;
	cr_assert_eq(rc, 0);
	cr_assert_null(json_object_get(b, "model"));
	msgs = json_object_get(b, "messages");
	cr_assert_eq(json_array_size(msgs), 1);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "role")), "user");
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
			 "Summarise: he said \"hi\"\n\tok");
	cr_assert_null(json_object_get(b, "stream"));
	cr_assert_null(json_object_get(b, "max_tokens"));
	cr_assert_null(json_object_get(b, "temperature"));
	json_decref(b);
}

Test(body, full)
{
	struct lh_spec s = base_spec();
	struct lh_err e;
	int rc;
	json_t *b, *msgs;
	s.model = "spec-model";
	s.system = "Be \"brief\".";
	s.max_tokens = 256;
	s.temperature = 0.2;
	s.stream = 1;
	b = build(&s, NULL, "{\"text\": \"x\"}", &rc, &e);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(json_string_value(json_object_get(b, "model")), "spec-model");
	msgs = json_object_get(b, "messages");
	cr_assert_eq(json_array_size(msgs), 2);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "role")), "system");
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "content")), "Be \"brief\".");
	cr_assert_eq(json_integer_value(json_object_get(b, "max_tokens")), 256);
	cr_assert_float_eq(json_real_value(json_object_get(b, "temperature")), 0.2, 1e-12);
	cr_assert(json_is_true(json_object_get(b, "stream")));
	cr_assert(json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage")));
	json_decref(b);
	/* The model argument wins over the spec's. */
	b = build(&s, "cli-model", "{\"text\": \"x\"}", &rc, &e);
	cr_assert_str_eq(json_string_value(json_object_get(b, "model")), "cli-model");
	json_decref(b);
}

Test(body, missing_field_names_it)
{
	struct lh_spec s = base_spec();
	struct lh_err e;
	int rc;
	cr_assert_null(build(&s, "m", "{\"body\": \"x\"}", &rc, &e));
	cr_assert_eq(rc, LH_EINPUT);
	cr_assert_str_eq(e.field, "text");
}

static int collect(const char *name, void *arg)
{
	struct lh_buf *b = arg;
	if (!strcmp(name, "stop"))
		return 7;
	return lh_buf_printf(b, "[%s]", name);
}

Test(template, each_name)
{
	struct lh_template *t;
	struct lh_err e;
	struct lh_buf b;
	lh_buf_init(&b, 0);
	cr_assert_eq(lh_template_compile("a {{ x }} b {{y.z}}{{x}} c", &t, &e), 0);
	cr_assert_eq(lh_template_each_name(t, collect, &b), 0);
	cr_assert_str_eq(b.data, "[x][y.z][x]");
	lh_template_free(t);
	lh_buf_clear(&b);
	cr_assert_eq(lh_template_compile("no names", &t, &e), 0);
	cr_assert_eq(lh_template_each_name(t, collect, &b), 0);
	cr_assert_eq(b.len, 0);
	lh_template_free(t);
	cr_assert_eq(lh_template_compile("{{a}}{{stop}}{{b}}", &t, &e), 0);
	cr_assert_eq(lh_template_each_name(t, collect, &b), 7);
	cr_assert_str_eq(b.data, "[a]");
	lh_template_free(t);
	lh_buf_release(&b);
}
