/*
 * io layer: the one reader of an LLM answer's completion: the first
 * choice's text, its finish_reason and the token usage. The llm layer
 * (classification, its tests) and the output writers (io/output.c) both
 * read answers through it, and tests/fuzz/fuzz_completion.c fuzzes it.
 * It lives in io/ because io/ is below llm/: both can reach it here.
 */
#ifndef LH_IO_COMPLETION_H
#define LH_IO_COMPLETION_H

#include <stddef.h>
#include <stdint.h>
#include "util/jscan.h"

/* What an answer says. Strings are new (lh_free, or lh_completion_release). */
struct lh_completion {
	int has_choice;          /* choices[0] is an object */
	char *content;           /* choices[0].message.content (a string, or the "text" of its parts),
				  * or choices[0].text (completions); NULL when absent or null */
	char *finish_reason;     /* choices[0].finish_reason when a string, else NULL */
	int64_t prompt_tokens;   /* "usage" (or Ollama's prompt_eval_count / eval_count); -1 when absent */
	int64_t completion_tokens;
};

/* Reads a chat or text completion from body[0..len). Returns 0 when the
 * body is a JSON object with a "choices" array, else -1; either way *out
 * is filled (all NULL / -1 on -1) and must be released. */
int lh_completion_parse(const char *body, size_t len, struct lh_completion *out);

/* Frees the strings of c and sets it empty. */
void lh_completion_release(struct lh_completion *c);

/* Token usage of an answer already validated by jscan_parse: "usage"
 * {prompt_tokens, completion_tokens}, or Ollama's top-level
 * prompt_eval_count and eval_count; -1 when absent. */
void lh_completion_usage(const struct jscan_v *answer, int64_t *prompt_tokens, int64_t *completion_tokens);

#endif
