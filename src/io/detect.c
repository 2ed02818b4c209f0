/*
 * io layer: tells an OpenAI batch file from a job spec by its content, so
 * that `longhaul run FILE` needs no flag and no particular file extension.
 */
#include "io/input.h"
#include "io/io_internal.h"

#include <jansson.h>

/* A batch line is a JSON object with "custom_id"; a spec written as
 * one-line JSON has no such field, and YAML is not JSON. */
static int looks_like_batch(const char *line, size_t len)
{
	json_error_t jerr;
	json_t *j = json_loadb(line, len, 0, &jerr);
	int yes = json_is_object(j) && json_object_get(j, "custom_id") != NULL;
	json_decref(j);
	return yes;
}

int lh_input_detect(const char *path, enum lh_input_kind *kind, struct lh_err *e)
{
	struct io_lines r;
	char *line;
	size_t len;
	int rc = io_lines_open(&r, path, LH_MAX_LINE, e);
	if (rc)
		return rc;
	while ((rc = io_lines_next(&r, &line, &len, e)) == 1) {
		if (io_blank(line, len))
			continue;
		*kind = looks_like_batch(line, len) ? LH_INPUT_BATCH : LH_INPUT_SPEC;
		break;
	}
	io_lines_close(&r);
	if (rc == 0)
		return lh_err_at(e, LH_EINPUT, path, 0, NULL, "empty file");
	return rc < 0 ? rc : 0;
}
