/*
 * steps layer: the kinds of step an item's pipeline is made of (llm, its
 * loop, exec, approve) and the job's final reduce. Each kind turns (its
 * definition, the item's record, the outputs of earlier steps) into a
 * request, and an answer into an output or an error. Nothing here sends,
 * spawns, or stores: the pipeline runner (engine/pipeline.c) does that,
 * and calls these to know what to do.
 *
 * A pipeline is compiled once per job from the settings JSON the spec
 * loader stored (io/spec_steps.c writes the normalized form; see
 * docs/inputs.md). Templates are compiled then.
 *
 * The rendering context of one item is a JSON object: the record's fields,
 * "key", "steps": {ID: {"output": text, "json": parsed}} for the steps
 * finished so far, and "output" (the previous step's). Templates walk it
 * with their dotted names ({{steps.notes.json.a.b}}).
 */
#ifndef LH_STEPS_STEPS_H
#define LH_STEPS_STEPS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "io/input.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/hash.h"

enum lh_step_kind { LH_STEP_LLM, LH_STEP_LOOP, LH_STEP_EXEC, LH_STEP_APPROVE };
const char *lh_step_kind_name(enum lh_step_kind k);

#define LH_STEP_EXEC_TIMEOUT 600.0   /* seconds, when a step or tool gives none */
#define LH_STEP_MAX_TURNS 10
#define LH_STEP_MAX_CONTEXT (1u << 20)
#define LH_STEP_FAN_IN 20

struct lh_argv_def {
	struct lh_template **argv;   /* argc templates */
	size_t argc;
};

struct lh_tool_def {
	char *name;
	struct lh_argv_def cmd;
	double timeout;
};

struct lh_step_def {
	char *id;
	enum lh_step_kind kind;
	/* llm and loop */
	struct lh_template *prompt, *system;
	char *model;                 /* NULL: the job's model */
	json_t *params;              /* max_tokens, temperature (object, may be empty) */
	int stream;                  /* -1: the job's setting */
	char *base_url, *api_key_env; /* NULL: the job's */
	/* loop */
	json_t *tools_json;          /* the request's "tools" array, or NULL */
	struct lh_tool_def *tools;
	size_t ntools;
	int max_turns;
	char *until, *next;
	size_t max_context_bytes;
	/* exec */
	struct lh_argv_def cmd;
	struct lh_template *stdin_t; /* may be NULL */
	double timeout;
	uint64_t mem_limit, cpu_limit, files_limit; /* 0: none */
	/* approve */
	struct lh_template *question;
	/* Indices of earlier steps whose output this step reads as JSON
	 * ({{steps.ID.json...}}). */
	size_t *json_refs;
	size_t njson_refs;
};

struct lh_reduce_def {
	struct lh_template *prompt, *system;
	char *model;
	json_t *params;
	int fan_in;
	char *output;                /* absolute path, or NULL: the default */
};

struct lh_pipeline {
	struct lh_step_def *steps;
	size_t n;
	struct lh_reduce_def *reduce; /* NULL: none */
	long exec_concurrency;        /* <= 0: the number of CPUs */
	double item_timeout;          /* seconds; 0: none */
	char *model;                  /* the spec's default model, or NULL */
	char *dir;                    /* the spec's directory: commands run there; or NULL */
	int stream;                   /* the spec's default */
	json_t *defaults;             /* top-level max_tokens/temperature, for llm steps */
	struct lh_template *system;   /* top-level system, for llm steps without one; or NULL */
};

/* Compiles the pipeline of a job's stored settings (JSON text). Returns 0
 * with *out, LH_ENOTFOUND when the settings have no "steps" (a one-request
 * job), or LH_EINPUT naming the field that does not compile. */
int lh_pipeline_new(const char *settings, struct lh_pipeline **out, struct lh_err *e) LH_WUR;
void lh_pipeline_free(struct lh_pipeline *p);
/* The index of step id, or -1. */
int lh_pipeline_find(const struct lh_pipeline *p, const char *id);

/* ---- an item's context ---- */

/* A new context from an item's stored input (the record JSON, with "key"). */
int lh_step_ctx_new(const char *input, size_t len, const char *key, json_t **out, struct lh_err *e) LH_WUR;
/* Records step k's output (borrowed, copied) as steps.ID.output and output. */
void lh_step_ctx_set(const struct lh_pipeline *p, size_t k, json_t *ctx, const char *out, size_t len);
/* Renders t for step k: first parses the outputs step k reads as JSON.
 * LH_EINPUT with a message naming the step and the field. */
int lh_step_render(const struct lh_pipeline *p, size_t k, json_t *ctx, const struct lh_template *t,
		   struct lh_buf *out, struct lh_err *e) LH_WUR;

/* ---- llm steps and loops ---- */

/* The first messages of an llm step: [system?, user]. New array. */
int lh_step_messages(const struct lh_pipeline *p, size_t k, json_t *ctx, json_t **out, struct lh_err *e) LH_WUR;
/* The model step k uses: its own, else the job's (job_model: a --model or
 * submit override, else the spec's), else NULL. */
const char *lh_step_model(const struct lh_pipeline *p, size_t k, const char *job_model);
/* A chat completions body: {"model", "messages", tools?, params...,
 * stream?}. Loops never stream (their tool calls are read whole). */
int lh_step_body(const struct lh_pipeline *p, size_t k, const char *model, int stream, const json_t *messages,
		 struct lh_buf *out) LH_WUR;

/* What an llm answer says, for a step and a loop. */
struct lh_answer {
	char *content;               /* the text, or NULL */
	char *finish_reason;         /* choices[0].finish_reason, or NULL */
	json_t *message;             /* choices[0].message (for the conversation; want_message), or NULL */
	json_t *tool_calls;          /* array (borrowed from message), or NULL when none (or not wanted) */
	int64_t prompt_tokens, completion_tokens;
};
/* Reads an answer: its text, finish and usage with the one completion
 * parser; with want_message (a loop) also the assistant's message and its
 * tool calls. LH_EINPUT when it is not a chat completion. */
int lh_answer_read(const char *body, size_t len, int want_message, struct lh_answer *a, struct lh_err *e) LH_WUR;
void lh_answer_release(struct lh_answer *a);

/* What a loop does after an answer. */
enum lh_loop_next {
	LH_LOOP_DONE,      /* the step's output is the answer's content */
	LH_LOOP_TOOLS,     /* run the answer's tool calls, then another turn */
	LH_LOOP_CONTINUE   /* send the step's `next`, then another turn */
};
enum lh_loop_next lh_loop_decide(const struct lh_step_def *d, const struct lh_answer *a);
/* The tool a call names (index into d->tools), or -1; *args gets the
 * call's arguments text (borrowed from the call), *id its id. */
int lh_loop_tool(const struct lh_step_def *d, const json_t *call, const char **args, const char **id);
/* {"role":"tool","tool_call_id":id,"content":text}; new. */
json_t *lh_loop_tool_message(const char *id, const char *text, size_t len);

/* ---- commands ---- */

/* Renders an argv (new NULL-terminated array of new strings: free with
 * lh_argv_free). */
int lh_step_argv(const struct lh_pipeline *p, size_t k, json_t *ctx, const struct lh_argv_def *d, char ***out,
		 struct lh_err *e) LH_WUR;
void lh_argv_free(char **argv);
/* The request hash of a command: argv, stdin and limits. */
void lh_step_exec_hash(const struct lh_step_def *d, char *const *argv, const char *in, size_t in_len,
		       char out[LH_SHA256_HEX]);

/* ---- the reduce ---- */

/* Number of calls at each level for n outputs and fan_in f: level 0 makes
 * ceil(n / f) calls, the next ceil(that / f), ... until one. */
size_t lh_reduce_calls(size_t n, int fan_in);
/* A block of the reduce input: "## KEY\n" (or "## FIRST .. LAST\n") then
 * the text, blocks separated by a blank line. */
int lh_reduce_block(struct lh_buf *b, const char *first, const char *last, const char *text, size_t len) LH_WUR;
/* The body of one reduce call over `outputs` (the blocks). */
int lh_reduce_body(const struct lh_pipeline *p, const char *model, const char *outputs, size_t len,
		   struct lh_buf *out, struct lh_err *e) LH_WUR;

#endif
