/*
 * io layer: tells an OpenAI batch file, a JSONL file of records and a job
 * spec apart by their content, so that `longhaul run FILE` needs no flag
 * and no particular file extension, and a file of the wrong kind gets a
 * message about what it is rather than a parser's complaint.
 */
#include "io/input.h"
#include "io/io_internal.h"

#include <jansson.h>

/* What a first line says: 'b' a batch line (a JSON object with
 * "custom_id"), 'o' another JSON object that could be a record or a
 * one-line JSON spec ('s' when every key is a spec field), 0 anything else
 * (YAML, or JSON spread over lines). */
static int first_line_kind(const char *line, size_t len)
{
	json_error_t jerr;
	json_t *j = json_loadb(line, len, 0, &jerr);
	const char *k;
	json_t *v;
	int kind = 0;
	if (json_is_object(j)) {
		kind = json_object_get(j, "custom_id") ? 'b' : 's';
		json_object_foreach(j, k, v) {
			if (kind == 's' && !io_spec_has_field(k))
				kind = 'o';
		}
		if (kind == 's' && json_object_size(j) == 0)
			kind = 'o';
	}
	json_decref(j);
	return kind;
}

static int starts_object(const char *line, size_t len)
{
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	return i < len && line[i] == '{';
}

int lh_input_detect(const char *path, enum lh_input_kind *kind, struct lh_err *e)
{
	struct io_lines r;
	char *line;
	size_t len;
	int rc, first = -1;
	rc = io_lines_open(&r, path, LH_MAX_LINE, e);
	if (rc)
		return rc;
	while ((rc = io_lines_next(&r, &line, &len, e)) == 1) {
		if (io_blank(line, len))
			continue;
		if (first < 0) {
			first = first_line_kind(line, len);
			*kind = first == 'b' ? LH_INPUT_BATCH : first == 'o' ? LH_INPUT_RECORDS : LH_INPUT_SPEC;
			if (first != 'o' && first != 's')
				break;
			continue;
		}
		/* A JSON object on the first line and another on a later one: JSONL
		 * (a spec is one document, so it cannot go on like that). */
		if (starts_object(line, len))
			*kind = LH_INPUT_RECORDS;
		break;
	}
	io_lines_close(&r);
	if (first < 0 && rc == 0)
		return lh_err_at(e, LH_EINPUT, path, 0, NULL, "empty file");
	/* After a JSON object, a line too long to read is no spec's either:
	 * the records reader will name it. */
	if (rc == LH_ETOOBIG && (first == 'o' || first == 's')) {
		*kind = LH_INPUT_RECORDS;
		rc = 0;
	}
	return rc < 0 ? rc : 0;
}
