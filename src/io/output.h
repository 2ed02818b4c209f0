/*
 * Output line formats. Writers are fed from the store (lh_store_items_each)
 * and write through an atomic file (util/file.h).
 */
#ifndef LH_IO_OUTPUT_H
#define LH_IO_OUTPUT_H

#include "store/store.h"
#include "util/buf.h"

/* OpenAI batch output line for a done item:
 * {"id":"batch_req_<hash>","custom_id":K,"response":{"status_code":S,
 *  "request_id":R,"body":<response JSON>},"error":null}
 * The response body is embedded as JSON (re-serialised when it parses; as a
 * JSON string otherwise). Ends with "\n". */
int lh_out_batch_ok(const struct lh_item_view *v, struct lh_buf *out) LH_WUR;
/* OpenAI batch error line for a dead item: with an HTTP status,
 * "response":{"status_code":S,"request_id":R,"body":<error body>},"error":null;
 * without one (timeouts, connection errors), "response":null,
 * "error":{"code":C,"message":M}. Ends with "\n". */
int lh_out_batch_err(const struct lh_item_view *v, struct lh_buf *out) LH_WUR;
/* Spec output line for a done item:
 * {"key":K,"output":<content text>,"finish_reason":F,"usage":{"prompt_tokens":P,
 *  "completion_tokens":C},"attempts":A,"timings":{"started_at":ISO,"latency_ms":L,
 *  "first_token_ms":T|null}} */
int lh_out_spec_ok(const struct lh_item_view *v, struct lh_buf *out) LH_WUR;
/* Spec error line: {"key":K,"status":S|null,"error":{"code":C,"message":M},"attempts":A} */
int lh_out_spec_err(const struct lh_item_view *v, struct lh_buf *out) LH_WUR;

#endif
