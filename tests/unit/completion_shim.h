/*
 * Unit tests: the out-parameter shape of lh_completion_parse
 * (io/completion.h) that the llm tests' cases were written against.
 */
#ifndef LH_TESTS_COMPLETION_SHIM_H
#define LH_TESTS_COMPLETION_SHIM_H

#include <stdint.h>
#include "io/completion.h"

/* The old out-parameter shape over lh_completion_parse (io/completion.h),
 * so that the cases read as before: strings new, NULL when not wanted. */
static inline int parse_completion(const char *body, size_t len, char **content, int64_t *pt, int64_t *ct,
			    char **reason)
{
	struct lh_completion c;
	int rc = lh_completion_parse(body, len, &c);
	if (content) {
		*content = c.content;
		c.content = NULL;
	}
	if (reason) {
		*reason = c.finish_reason;
		c.finish_reason = NULL;
	}
	if (pt)
		*pt = c.prompt_tokens;
	if (ct)
		*ct = c.completion_tokens;
	lh_completion_release(&c);
	return rc;
}

#endif
