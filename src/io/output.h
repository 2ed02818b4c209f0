/*
 * Output line formats. Writers are fed from the store (lh_store_items_each)
 * with item views (io/item.h) and write through an atomic file
 * (util/file.h).
 */
#ifndef LH_IO_OUTPUT_H
#define LH_IO_OUTPUT_H

#include "io/item.h"
#include "util/buf.h"

/* An item's failure as every command names it: longhaul's short code for
 * it ("http_400", "timeout", "context_length_exceeded": the classifier's
 * verdict, llm/classify.c, stored with the item) and its message, read
 * from the stored last error (JSON text, may be NULL). The one reader of
 * a stored error: the error files, the run's failure report and the API's
 * exports all go through it, so a failure has one code everywhere. Writes
 * NUL-terminated, possibly truncated copies. */
void lh_out_failure(const char *last_error, char *code, size_t code_sz, char *msg, size_t msg_sz);

/* OpenAI batch output line for a done item:
 * {"id":"batch_req_<hash>","custom_id":K,"response":{"status_code":S,
 *  "request_id":R,"body":<response JSON>},"error":null}
 * The response body is embedded as JSON (re-serialised when it parses; as a
 * JSON string otherwise). Ends with "\n". */
int lh_out_batch_ok(const struct lh_item_view *v, struct lh_buf *out) LH_WUR;
/* OpenAI batch error line for a dead item: "error":{"code":C,"message":M}
 * (longhaul's code, as lh_out_failure reads it) and, with an HTTP status,
 * "response":{"status_code":S,"request_id":R,"body":<error body>}; without
 * one (timeouts, connection errors) "response":null. Ends with "\n". */
int lh_out_batch_err(const struct lh_item_view *v, struct lh_buf *out) LH_WUR;
/* Spec output line for a done item:
 * {"key":K,"output":<content text>,"finish_reason":F,"usage":{"prompt_tokens":P,
 *  "completion_tokens":C},"attempts":A,"timings":{"started_at":ISO,"latency_ms":L,
 *  "first_token_ms":T|null}} */
int lh_out_spec_ok(const struct lh_item_view *v, struct lh_buf *out) LH_WUR;
/* A pipeline item's line has the same fields, but "output" is its last
 * step's output, "finish_reason" that step's (null when it is not an llm
 * step), "usage" the item's total, and "steps" maps each step id to
 * {output, usage, attempts, latency_ms, model}. lh_out_spec_ok tells the
 * two apart by the stored result's "object": "longhaul.pipeline_result". */
/* Spec error line: {"key":K,"status":S|null,"error":{"code":C,"message":M},"attempts":A},
 * and "step":ID for a pipeline item that failed at step ID. */
int lh_out_spec_err(const struct lh_item_view *v, struct lh_buf *out) LH_WUR;

#endif
