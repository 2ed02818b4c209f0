/*
 * Input readers. Every reader streams: one record at a time, memory bounded
 * by the largest record, never by the input's size. Each record carries its
 * place (file and line) so that errors can name it.
 */
#ifndef LH_IO_INPUT_H
#define LH_IO_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include "util/buf.h"
#include "util/err.h"
#include "util/hash.h"

#define LH_MAX_LINE (16u << 20)     /* longest input line: 16 MiB */
#define LH_MAX_KEY 512              /* longest item key in bytes */
#define LH_MAX_FILE (16u << 20)     /* largest input text file */
#define LH_MAX_SPEC (1u << 20)      /* largest job spec file */

enum lh_input_kind { LH_INPUT_BATCH = 1, LH_INPUT_SPEC = 2, LH_INPUT_RECORDS = 3 };

/* Tells the kinds of input apart by content. The first non-blank line is
 * a JSON object with "custom_id" -> batch. Another JSON object followed by
 * a line that starts another object -> records (JSONL); alone in the file
 * -> a one-line JSON spec when every key is a spec field, else records.
 * Anything else -> a spec (YAML, or JSON over several lines). Errors:
 * LH_EIO (unreadable, with strerror), LH_EINPUT (empty file). */
int lh_input_detect(const char *path, enum lh_input_kind *kind, struct lh_err *e) LH_WUR;

/* Copies everything readable from fd `in` into an unnamed temporary file
 * in dir (gone when closed, even after a crash), hashing it on the way.
 * *out is the file's descriptor (the caller closes it; read the content
 * again through "/proc/self/fd/N"), hex the SHA-256 of the content.
 * Errors: LH_EIO (unreadable input, no temporary file), LH_EFULL. */
int lh_input_spool(int in, const char *dir, int *out, char hex[LH_SHA256_HEX], struct lh_err *e) LH_WUR;

/* ---- OpenAI batch input ---- */

struct lh_batch_reader;
struct lh_batch_line {
	long line;            /* 1-based line number */
	const char *custom_id; /* borrowed until the next call */
	size_t custom_id_len;
	const char *url;      /* e.g. "/v1/chat/completions" */
	const char *body;     /* the "body" object re-serialised compactly */
	size_t body_len;
	int stream;           /* body has "stream": true */
};
int lh_batch_open(const char *path, struct lh_batch_reader **out, struct lh_err *e) LH_WUR;
/* Next valid line: returns 1 with *l filled, 0 at the end, or a negative code
 * with e naming file, line and field (malformed JSON, missing or empty
 * custom_id, method other than POST, unsupported url, body not an object,
 * body without "messages" array, line too long). Blank lines are skipped.
 * require_model: a body without "model" is an error. */
int lh_batch_next(struct lh_batch_reader *r, int require_model, struct lh_batch_line *l, struct lh_err *e) LH_WUR;
void lh_batch_close(struct lh_batch_reader *r);

/* ---- job spec ---- */

struct lh_spec {
	char *path;            /* the spec file */
	char *dir;             /* the directory its relative paths resolve against (absolute);
				* a pipeline's commands run there */
	char *name;
	/* input: exactly one of records (a JSONL file) or files (dir or glob) */
	char *input_records;   /* absolute path of a JSONL file, or NULL */
	char *input_files;     /* absolute dir path or glob pattern, or NULL */
	char *key_field;       /* records: field that holds the key (default "id") */
	char *prompt;          /* template with {{field}} */
	char *system;          /* may be NULL */
	char *model;           /* may be NULL (then --model is required) */
	char *base_url;        /* may be NULL */
	char *api_key_env;     /* name of the env var with the key, may be NULL */
	long max_tokens;       /* -1 = unset */
	double temperature;    /* < 0 = unset */
	int stream;            /* 0/1 */
	long concurrency;      /* -1 = unset */
	int max_attempts;      /* -1 = unset */
	double retry_base, retry_factor, retry_cap, retry_jitter; /* < 0 = unset */
	double connect_timeout, request_timeout, first_token_timeout; /* seconds, < 0 = unset */
	char *output;          /* absolute path or NULL */
	char *errors;          /* absolute path or NULL */
	/* A pipeline (`steps:`): a json_t* array of normalized steps (owned),
	 * or NULL for a spec with one `prompt`. Each step is an object with
	 * "id" and "kind" ("llm", "loop", "exec" or "approve") and only the
	 * fields the spec gave for it (top-level defaults are not folded in);
	 * see lh_spec_load for the shape. */
	void *steps;
	void *reduce;          /* json_t* object (owned), or NULL */
	long exec_concurrency; /* exec steps running at once; -1 = unset */
	double item_timeout;   /* seconds for all steps and retries of one item; < 0 = unset */
	double time_limit;     /* seconds for the whole job across restarts; < 0 = unset */
};

/* The spec of `longhaul run INPUT --prompt TEMPLATE`: one llm step over
 * INPUT (a JSONL file of records, a directory or a glob, relative to the
 * current directory), the same structure a spec file with `input:` and
 * `prompt:` gives. system and model may be NULL. The job's name is the
 * input's base name. Errors: LH_EUSAGE for a template that does not
 * compile (naming --prompt), LH_EINPUT for an input that is missing or of
 * the wrong type. *out is new. */
int lh_spec_for_records(const char *input, const char *prompt, const char *system, const char *model,
			struct lh_spec **out, struct lh_err *e) LH_WUR;

/* Loads and validates a YAML or JSON spec. Relative paths in it resolve
 * against the spec's directory. Unknown fields, wrong types and missing
 * required fields (name? no: name defaults to the file's base name; input
 * and one of prompt or steps are required) give LH_EINPUT naming file,
 * line and field (nested as "retry.max_attempts", "steps[2].exec[1]",
 * "steps[1].tools[0].exec", "reduce.prompt").
 *
 * With `steps:` s->steps holds the normalized steps (src/io/spec_steps.c
 * documents the rules), each with exactly these keys, absent when not given:
 *   llm:     {"id", "kind": "llm", "prompt", "system"?, "model"?, "max_tokens"?,
 *             "temperature"?, "stream"?, "base_url"?, "api_key_env"?}
 *   loop:    the same with "kind": "loop", "tools"?: [{"name", "description"?,
 *             "parameters", "exec": [...], "timeout"?}], "max_turns",
 *             "until"?, "next"?, "max_context_bytes"
 *   exec:    {"id", "kind": "exec", "exec": [...], "stdin"?, "timeout",
 *             "limits"?: {"memory"?: bytes, "cpu_seconds"?, "open_files"?}}
 *   approve: {"id", "kind": "approve", "approve"}
 * and s->reduce {"prompt", "system"?, "model"?, "max_tokens"?,
 * "temperature"?, "fan_in", "output"? (absolute)}.
 * *out is new; free with lh_spec_free. */
int lh_spec_load(const char *path, struct lh_spec **out, struct lh_err *e) LH_WUR;
/* The same from memory (buf[0..len), borrowed): errors name `name` as their
 * file, relative paths resolve against base_dir (absolute), JSON mode when
 * name ends in ".json" (as for files), and the default job name is name's
 * base without its extension. s->path is set to name. *out is new. */
int lh_spec_load_buf(const char *buf, size_t len, const char *name, const char *base_dir,
		     struct lh_spec **out, struct lh_err *e) LH_WUR;
void lh_spec_free(struct lh_spec *s);
/* The spec's settings as a compact JSON object (for the store); new string.
 * A pipeline adds "steps", "reduce", "exec_concurrency", "time_limit" and
 * "timeouts"."item" when set. */
char *lh_spec_to_json(const struct lh_spec *s);
/* 1 when running s needs a model from outside (--model or the query): a
 * spec without steps and without "model", or a pipeline with an llm or
 * loop step, or a reduce, that has no "model" of its own while the spec
 * has none either. */
int lh_spec_needs_model(const struct lh_spec *s);

/* ---- spec items: JSONL records or text files ---- */

struct lh_source;
struct lh_record {
	long line;             /* records: 1-based line; files: 0 */
	const char *where;     /* file the record came from (borrowed) */
	const char *key;       /* borrowed until the next call */
	size_t key_len;
	void *json;            /* json_t* object (borrowed until the next call):
				* records: the record; files: {"text": ..., "path": relpath} */
};
int lh_source_open(const struct lh_spec *s, struct lh_source **out, struct lh_err *e) LH_WUR;
/* 1 with *r, 0 at the end, negative on error (malformed line, record not
 * an object, key field of the wrong type, unreadable or oversized file). */
int lh_source_next(struct lh_source *src, struct lh_record *r, struct lh_err *e) LH_WUR;
void lh_source_close(struct lh_source *src);
/* The stored input of one item of a pipeline: r's record as compact JSON
 * (for files {"text", "path"}) with "key": the item's key added when the
 * record has no field "key". Appends to out; LH_ETOOBIG past out's cap. */
int lh_spec_item_input(const struct lh_spec *s, const struct lh_record *r, struct lh_buf *out, struct lh_err *e);

/* ---- templates ---- */

struct lh_template;
/* Compiles "text {{field}} text {{a.b}}"; an unclosed "{{" or empty name is
 * LH_EINPUT. *out is new. */
int lh_template_compile(const char *src, struct lh_template **out, struct lh_err *e) LH_WUR;
void lh_template_free(struct lh_template *t);
/* Renders with values from record (json_t* object): strings as they are,
 * other values as compact JSON; dotted names walk nested objects. A
 * missing field gives LH_EINPUT with e->field set to its name. */
int lh_template_render(const struct lh_template *t, const void *record, struct lh_buf *out,
		       struct lh_err *e) LH_WUR;
/* Calls fn with each placeholder's name (dotted, spaces trimmed: "a.b" for
 * "{{ a.b }}"; borrowed for the call) in the order they appear, repeats
 * included. Stops at the first nonzero return of fn and returns it; 0 when
 * every call returned 0. */
int lh_template_each_name(const struct lh_template *t, int (*fn)(const char *name, void *arg), void *arg);

/* Builds the chat completion request body for one spec record into out:
 * {"model", "messages": [system?, user], "max_tokens"?, "temperature"?,
 *  "stream"?, "stream_options": {"include_usage": true} when streaming}.
 * model overrides s->model when not NULL. */
int lh_spec_build_body(const struct lh_spec *s, const struct lh_template *prompt, const char *model,
		       const void *record, struct lh_buf *out, struct lh_err *e) LH_WUR;

/* ---- library versions (util/libver.h) ---- */

struct lh_libver;
/* Fill v with the version of jansson and of libfyaml: the headers' (for
 * libfyaml, pkg-config's at build time) and the library's. */
void lh_json_lib_version(struct lh_libver *v);
void lh_yaml_lib_version(struct lh_libver *v);

#endif
