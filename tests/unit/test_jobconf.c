/*
 * Unit tests: engine/jobconf.c, a job's settings as stored and the checked
 * changes to them (PATCH /v1/jobs/{id}, `longhaul set`).
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engine/jobconf.h"

static json_t *obj(const char *text)
{
	json_t *o = json_loads(text, 0, NULL);
	cr_assert_not_null(o, "%s", text);
	return o;
}

/* Applies patch to spec; returns the result code, *out the new settings. */
static int patch(const char *spec, const char *p, char **out, int *prio, int *has, struct lh_err *e)
{
	json_t *o = obj(p);
	int rc;
	lh_err_clear(e);
	rc = lh_jobconf_patch(spec, o, out, prio, has, e);
	json_decref(o);
	return rc;
}

Test(jobconf, patch_merges_settings_and_keeps_the_rest)
{
	struct lh_err e;
	char *out = NULL;
	int prio = 0, has = 0;
	json_t *s;
	cr_assert_eq(patch("{\"prompt\":\"p {{x}}\",\"model\":\"a\",\"retry\":{\"base\":1},\"max_attempts\":7}",
			   "{\"model\":\"b\",\"max_attempts\":3,\"timeouts\":{\"request\":30},\"connect_timeout\":5,"
			   "\"max_tokens\":9,\"priority\":4}",
			   &out, &prio, &has, &e),
		     0, "%s", e.msg);
	cr_assert(has);
	cr_assert_eq(prio, 4);
	s = obj(out);
	cr_assert_str_eq(json_string_value(json_object_get(s, "model")), "b");
	cr_assert_str_eq(json_string_value(json_object_get(s, "prompt")), "p {{x}}", "the items' fields stay");
	/* one place for max_attempts: retry's, beside the retry fields already there */
	cr_assert_null(json_object_get(s, "max_attempts"));
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(s, "retry"), "max_attempts")), 3);
	cr_assert_eq(json_number_value(json_object_get(json_object_get(s, "retry"), "base")), 1);
	cr_assert_eq(json_number_value(json_object_get(json_object_get(s, "timeouts"), "request")), 30);
	cr_assert_eq(json_number_value(json_object_get(json_object_get(s, "timeouts"), "connect")), 5);
	/* max_tokens goes to the overrides the engine sets into each body */
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(s, "overrides"), "max_tokens")), 9);
	json_decref(s);
	free(out);
}

Test(jobconf, priority_alone_changes_no_settings)
{
	struct lh_err e;
	char *out = (char *)"x";
	int prio = 0, has = 0;
	cr_assert_eq(patch("{}", "{\"priority\":-3}", &out, &prio, &has, &e), 0);
	cr_assert_null(out);
	cr_assert(has);
	cr_assert_eq(prio, -3);
}

Test(jobconf, every_bad_field_is_named_and_nothing_changes)
{
	static const struct {
		const char *patch, *field;
	} cases[] = {
		{ "{\"prompt\":\"x\"}", "prompt" },
		{ "{\"model\":\"\"}", "model" },
		{ "{\"model\":3}", "model" },
		{ "{\"base_url\":\"htp://x/v1\"}", "base_url" },
		{ "{\"base_url\":\"http:///v1\"}", "base_url" },
		{ "{\"api_key_env\":\"1BAD\"}", "api_key_env" },
		{ "{\"api_key_env\":\"LONGHAUL_TEST_SURELY_UNSET\"}", "api_key_env" },
		{ "{\"concurrency\":0}", "concurrency" },
		{ "{\"concurrency\":70000}", "concurrency" },
		{ "{\"max_tokens\":0}", "max_tokens" },
		{ "{\"temperature\":2.5}", "temperature" },
		{ "{\"timeouts\":{\"request\":0}}", "timeouts.request" },
		{ "{\"timeouts\":{\"bogus\":1}}", "timeouts.bogus" },
		{ "{\"timeouts\":5}", "timeouts" },
		{ "{\"retry\":{\"jitter\":2}}", "retry.jitter" },
		{ "{\"max_attempts\":0}", "max_attempts" },
		{ "{\"request_timeout\":-1}", "request_timeout" },
		{ "{\"priority\":\"high\"}", "priority" },
		{ "{\"model\":\"ok\",\"concurrency\":-1}", "concurrency" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct lh_err e;
		char *out = NULL;
		int prio = 0, has = 0;
		cr_assert_eq(patch("{\"model\":\"a\"}", cases[i].patch, &out, &prio, &has, &e), LH_EINPUT, "%s",
			     cases[i].patch);
		cr_assert_str_eq(e.field, cases[i].field, "%s: %s", cases[i].patch, e.msg);
		cr_assert_null(out);
	}
}

Test(jobconf, an_empty_patch_is_refused)
{
	struct lh_err e;
	char *out = NULL;
	int prio = 0, has = 0;
	cr_assert_eq(patch("{}", "{}", &out, &prio, &has, &e), LH_EINPUT);
	cr_assert_not_null(strstr(e.msg, "at least one"), "%s", e.msg);
}

Test(jobconf, null_stops_sending_a_field)
{
	struct lh_err e;
	char *out = NULL;
	int prio = 0, has = 0;
	json_t *s;
	cr_assert_eq(patch("{\"temperature\":0.2}", "{\"temperature\":null}", &out, &prio, &has, &e), 0, "%s",
		     e.msg);
	s = obj(out);
	cr_assert_null(json_object_get(s, "temperature"));
	cr_assert(json_is_null(json_object_get(json_object_get(s, "overrides"), "temperature")));
	json_decref(s);
	free(out);
}

Test(jobconf, load_reads_settings_and_defaults)
{
	struct lh_job_rec j;
	struct lh_jobconf c;
	struct lh_jobconf_defaults d = { "http://127.0.0.1:9/v1", "k" };
	struct lh_err e;
	memset(&j, 0, sizeof j);
	j.kind = (char *)"spec";
	j.spec = (char *)"{\"model\":\"m\",\"concurrency\":3,\"retry\":{\"max_attempts\":2},"
			 "\"timeouts\":{\"connect\":4,\"item\":3600.0},\"overrides\":{\"max_tokens\":5}}";
	cr_assert_eq(lh_jobconf_load(&j, &d, &c, &e), 0, "%s", e.msg);
	cr_assert_str_eq(c.conf.url, "http://127.0.0.1:9/v1/chat/completions");
	cr_assert_str_eq(c.conf.model, "m");
	cr_assert(c.conf.model_prefix);
	cr_assert_str_eq(c.conf.api_key, "k");
	cr_assert_eq(c.conf.concurrency, 3);
	cr_assert_eq(c.conf.retry.max_attempts, 2);
	cr_assert_eq(c.conf.connect_timeout, 4);
	cr_assert_eq(c.conf.item_timeout, 3600);
	cr_assert_not_null(strstr(c.conf.overrides, "\"max_tokens\":5"));
	lh_jobconf_release(&c);

	/* A batch job with no settings: the defaults. */
	j.kind = (char *)"batch";
	j.spec = NULL;
	cr_assert_eq(lh_jobconf_load(&j, &d, &c, &e), 0);
	cr_assert_null(c.conf.model);
	cr_assert_not(c.conf.model_prefix);
	cr_assert_null(c.conf.overrides);
	cr_assert_eq(c.conf.retry.max_attempts, 5);
	cr_assert_eq(c.conf.item_timeout, 0);
	lh_jobconf_release(&c);
}
