/*
 * engine layer: a job's settings as the store keeps them (the JSON of its
 * spec column) turned into what the engine runs it with, and the changes a
 * person may make to them afterwards (PATCH /v1/jobs/{id}, `longhaul set`).
 *
 * The settings that may change are those that leave the items alone: model,
 * server, key variable, concurrency, max_tokens, temperature, timeouts,
 * retry policy, priority. The prompt, the input and the system message make
 * the items and never change. A spec job's stored request bodies already
 * carry the spec's max_tokens and temperature; a changed value is kept apart
 * ("overrides") and set into each body as it is sent, so that jobs which were
 * never changed pay nothing for this.
 */
#ifndef LH_ENGINE_JOBCONF_H
#define LH_ENGINE_JOBCONF_H

#include <jansson.h>
#include "engine/engine.h"
#include "store/store.h"

/* What a process supplies when a job does not say. Strings borrowed. */
struct lh_jobconf_defaults {
	const char *base_url;  /* the default server */
	const char *api_key;   /* the default key (from the environment), or NULL */
};

/* A job's engine settings. Owns its strings; release with
 * lh_jobconf_release. conf points into them. */
struct lh_jobconf {
	struct lh_job_conf conf;
	char *url, *model, *overrides;
};

/* The settings of a settings JSON (a stored spec, or NULL for none) that
 * leave the server, key and model aside: concurrency (0 = unset), stream,
 * retry policy (the defaults where unset), timeouts (0 = unset). `run` and
 * the daemon both read a spec's settings through this. */
void lh_jobconf_settings(const char *settings_json, struct lh_job_conf *jc);

/* Fills c from job j's stored settings (j borrowed). Returns 0, or
 * LH_EUSAGE when the server's URL cannot be built (e says why). */
int lh_jobconf_load(const struct lh_job_rec *j, const struct lh_jobconf_defaults *d, struct lh_jobconf *c,
		    struct lh_err *e) LH_WUR;
void lh_jobconf_release(struct lh_jobconf *c);

/* The fields lh_jobconf_patch accepts (NULL-terminated), for messages. */
extern const char *const lh_jobconf_fields[];

/* Applies patch (a JSON object, borrowed) to the settings JSON spec_json:
 * every field is checked (type, range, a URL with http/https and a host, a
 * key variable that is set in this process's environment) before anything
 * changes. On success *out is the new settings JSON (new string; NULL when
 * only the priority changed) and *priority is set when the patch has one
 * (*has_priority = 1). Errors: LH_EINPUT with e->field naming the field. */
int lh_jobconf_patch(const char *spec_json, json_t *patch, char **out, int *priority, int *has_priority,
		     struct lh_err *e) LH_WUR;

#endif
