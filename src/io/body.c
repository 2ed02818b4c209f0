/*
 * io layer: builds the chat completion request for one record of a spec.
 * The body is written by hand into a bounded buffer (no jansson tree) since
 * it is built once per item during ingest and its shape is fixed.
 */
#include "io/input.h"
#include "io/io_internal.h"

#include <string.h>

static int put_message(struct lh_buf *out, const char *role, const char *text, size_t len, int first)
{
	int rc = lh_buf_printf(out, "%s{\"role\":\"%s\",\"content\":", first ? "" : ",", role);
	if (!rc)
		rc = lh_buf_json_str(out, text, len);
	if (!rc)
		rc = lh_buf_putc(out, '}');
	return rc;
}

static int put_options(const struct lh_spec *s, struct lh_buf *out)
{
	char num[40];
	int rc = 0;
	if (s->max_tokens > 0)
		rc = lh_buf_printf(out, ",\"max_tokens\":%ld", s->max_tokens);
	if (!rc && s->temperature >= 0) {
		io_fmt_real(s->temperature, num, sizeof num);
		rc = lh_buf_printf(out, ",\"temperature\":%s", num);
	}
	/* Without include_usage a streamed answer carries no token counts. */
	if (!rc && s->stream)
		rc = lh_buf_puts(out, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
	return rc;
}

int lh_spec_build_body(const struct lh_spec *s, const struct lh_template *prompt, const char *model,
		       const void *record, struct lh_buf *out, struct lh_err *e)
{
	const char *m = model ? model : s->model;
	struct lh_buf text;
	int rc;
	lh_buf_init(&text, out->max);
	rc = lh_template_render(prompt, record, &text, e);
	if (rc) {
		lh_buf_release(&text);
		return rc;
	}
	rc = lh_buf_putc(out, '{');
	if (!rc && m) {
		rc = lh_buf_puts(out, "\"model\":");
		if (!rc)
			rc = lh_buf_json_str(out, m, strlen(m));
		if (!rc)
			rc = lh_buf_putc(out, ',');
	}
	if (!rc)
		rc = lh_buf_puts(out, "\"messages\":[");
	if (!rc && s->system)
		rc = put_message(out, "system", s->system, strlen(s->system), 1);
	if (!rc)
		rc = put_message(out, "user", text.data ? text.data : "", text.len, !s->system);
	if (!rc)
		rc = lh_buf_putc(out, ']');
	if (!rc)
		rc = put_options(s, out);
	if (!rc)
		rc = lh_buf_putc(out, '}');
	lh_buf_release(&text);
	if (rc)
		return lh_err_set(e, rc, "request body is longer than %zu bytes", out->max);
	return 0;
}
