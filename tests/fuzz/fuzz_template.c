/*
 * Fuzz target: prompt templates (io/template.c). The input is a template,
 * then optionally a NUL byte and a JSON record to render it with (a fixed
 * record with nested objects, arrays and non-string values otherwise).
 * Checks: compile either succeeds or fails with LH_EINPUT and a message;
 * render either succeeds, fails with LH_EINPUT naming the missing field,
 * or with LH_ETOOBIG at the cap; a template without "{{" renders as
 * itself; rendering twice gives the same text.
 */
#include "fuzz.h"

#include <jansson.h>
#include <string.h>

#include "io/input.h"

#define CAP 4096

static const char default_record[] =
	"{\"id\":\"r1\",\"title\":\"Hello\",\"n\":42,\"x\":0.7,\"t\":true,\"z\":null,"
	"\"body\":{\"text\":\"nested\",\"deep\":{\"a\":[1,2,\"three\"]}},\"list\":[1,{\"k\":\"v\"}],"
	"\"a.b\":\"dotted key\",\"\":\"empty key\",\"u\":\"\\u00e9\\n\\\"q\\\"\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *src = malloc(size + 1);
	const char *nul;
	struct lh_template *t = NULL;
	struct lh_buf out, again;
	struct lh_err e;
	json_t *rec = NULL;
	int rc;
	memcpy(src, data, size);
	src[size] = '\0';
	nul = memchr(data, '\0', size);
	if (nul)
		rec = json_loadb(nul + 1, size - (size_t)((const uint8_t *)nul + 1 - data), JSON_DECODE_ANY, NULL);
	if (!rec)
		rec = json_loads(default_record, 0, NULL);
	FUZZ_CHECK(rec, "default record");

	lh_err_clear(&e);
	rc = lh_template_compile(src, &t, &e);
	if (rc) {
		FUZZ_CHECK(rc == LH_EINPUT && e.code == rc && e.msg[0], "compile returned %d, \"%s\"", rc, e.msg);
		goto out;
	}
	lh_buf_init(&out, CAP);
	lh_buf_init(&again, CAP);
	lh_err_clear(&e);
	rc = lh_template_render(t, rec, &out, &e);
	if (rc == LH_EINPUT) {
		FUZZ_CHECK(e.code == rc && e.field[0], "missing field without a name: \"%s\"", e.msg);
		FUZZ_CHECK(strstr(src, "{{"), "a template without placeholders failed to render");
	} else if (rc == LH_ETOOBIG) {
		FUZZ_CHECK(e.code == rc, "error record");
	} else {
		FUZZ_CHECK(rc == 0, "render returned %d", rc);
		FUZZ_CHECK(out.len <= CAP, "rendered %zu bytes past the cap", out.len);
		if (!strstr(src, "{{"))
			FUZZ_CHECK(out.len == strlen(src) && (!out.len || !memcmp(out.data, src, out.len)),
				   "template without placeholders changed");
		FUZZ_CHECK(lh_template_render(t, rec, &again, &e) == 0 && again.len == out.len &&
			   (!out.len || !memcmp(again.data, out.data, out.len)), "second render differs");
	}
	lh_buf_release(&out);
	lh_buf_release(&again);
	lh_template_free(t);
out:
	json_decref(rec);
	free(src);
	return 0;
}
