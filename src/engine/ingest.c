/*
 * engine layer: streaming ingest of inputs into the store (see ingest.h).
 */
#include "engine/ingest.h"
#include "util/time.h"

#include <string.h>

static int dup_error(struct lh_err *e, const char *file, long line, const char *field, const char *what,
		     const char *key, size_t key_len, int64_t dup_seq, int line_based)
{
	if (line_based)
		return lh_err_at(e, LH_EINPUT, file, line, field, "duplicate %s \"%.*s\": first seen on line %lld",
				 what, (int)key_len, key, (long long)dup_seq + 1);
	return lh_err_at(e, LH_EINPUT, file, line, field, "duplicate %s \"%.*s\"", what, (int)key_len, key);
}

int lh_ingest_batch(struct lh_store *st, int64_t job, const char *path, int require_model, int64_t *n,
		    struct lh_err *e)
{
	struct lh_batch_reader *r;
	struct lh_batch_line l;
	int rc;
	*n = 0;
	rc = lh_batch_open(path, &r, e);
	if (rc)
		return rc;
	while ((rc = lh_batch_next(r, require_model, &l, e)) == 1) {
		int64_t dup = -1;
		rc = lh_store_item_add(st, job, l.line - 1, l.custom_id, l.custom_id_len, l.body, l.body_len, &dup, e);
		if (rc == LH_EINPUT && dup >= 0) {
			rc = dup_error(e, path, l.line, "custom_id", "custom_id", l.custom_id, l.custom_id_len, dup, 1);
			break;
		}
		if (rc)
			break;
		(*n)++;
	}
	lh_batch_close(r);
	return rc < 0 ? rc : 0;
}

/* A spec's items, one per record: a one-prompt spec stores the request
 * body its template renders (tpl), a pipeline the record itself (tpl NULL:
 * the steps render their templates from it when they run). */
static int ingest_records(struct lh_store *st, int64_t job, const struct lh_spec *s,
			  const struct lh_template *tpl, int64_t *n, struct lh_err *e)
{
	struct lh_source *src;
	struct lh_record rec;
	struct lh_spec nomodel = *s;
	struct lh_buf in;
	int64_t seq;
	int rc = lh_source_open(s, &src, e);
	if (rc)
		return rc;
	nomodel.model = NULL;
	lh_buf_init(&in, LH_MAX_LINE + (1u << 20));
	while ((rc = lh_source_next(src, &rec, e)) == 1) {
		int64_t dup = -1;
		lh_buf_clear(&in);
		if (!tpl) {
			rc = lh_spec_item_input(s, &rec, &in, e);
		} else if ((rc = lh_spec_build_body(&nomodel, tpl, NULL, rec.json, &in, e)) != 0) {
			/* The template's own error names the field; add the record's place. */
			char field[sizeof e->field], msg[sizeof e->msg];
			memcpy(field, e->field, sizeof field);
			memcpy(msg, e->msg, sizeof msg);
			lh_err_at(e, rc, rec.where, rec.line, field[0] ? field : "prompt", "%s", msg);
		}
		if (rc)
			break;
		/* Records keep their line as input order; files their sorted position. */
		seq = rec.line > 0 ? rec.line - 1 : *n;
		rc = lh_store_item_add(st, job, seq, rec.key, rec.key_len, in.data, in.len, &dup, e);
		if (rc == LH_EINPUT && dup >= 0) {
			rc = dup_error(e, rec.where, rec.line, s->key_field ? s->key_field : "id", "key", rec.key,
				       rec.key_len, dup, rec.line > 0);
			break;
		}
		if (rc)
			break;
		(*n)++;
	}
	lh_buf_release(&in);
	lh_source_close(src);
	return rc < 0 ? rc : 0;
}

int lh_ingest_spec(struct lh_store *st, int64_t job, const struct lh_spec *s, int64_t *n, struct lh_err *e)
{
	struct lh_template *tpl;
	int rc;
	*n = 0;
	if (s->steps)
		return ingest_records(st, job, s, NULL, n, e);
	rc = lh_template_compile(s->prompt, &tpl, e);
	if (rc) {
		if (!e->file[0]) {
			char msg[sizeof e->msg];
			memcpy(msg, e->msg, sizeof msg);
			lh_err_at(e, rc, s->path, 0, "prompt", "%s", msg);
		}
		return rc;
	}
	rc = ingest_records(st, job, s, tpl, n, e);
	lh_template_free(tpl);
	return rc;
}

int lh_ingest_job(struct lh_store *st, struct lh_job_rec *j, const char *batch_path, int require_model,
		  const struct lh_spec *spec, int64_t *n, struct lh_err *e)
{
	int rc = lh_store_begin(st, e);
	*n = 0;
	if (rc)
		return rc;
	rc = lh_store_job_create(st, j, e);
	if (!rc)
		rc = lh_store_event_add(st, j->id, lh_wall(), "job.queued", NULL, NULL, NULL, e);
	if (!rc)
		rc = batch_path ? lh_ingest_batch(st, j->id, batch_path, require_model, n, e) :
				  lh_ingest_spec(st, j->id, spec, n, e);
	if (!rc && batch_path && *n == 0)
		rc = lh_err_at(e, LH_EINPUT, batch_path, 0, NULL, "the batch file has no request lines");
	if (!rc)
		rc = lh_store_job_set_ingested(st, j->id, *n, e);
	if (!rc)
		rc = lh_store_commit(st, e);
	if (rc)
		lh_store_rollback(st);
	return rc;
}
