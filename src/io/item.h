/*
 * io layer: one finished or failed item as the output writers see it
 * (io/output.h). The record is io's, so that io/ needs nothing from the
 * layers above it: store/ fills it (lh_store_items_each and
 * lh_store_items_page), the writers only read it.
 *
 * Ownership: every pointer is borrowed, valid for the call that hands the
 * view over (the store's callback); copy what must outlive it.
 */
#ifndef LH_IO_ITEM_H
#define LH_IO_ITEM_H

#include <stddef.h>
#include <stdint.h>

struct lh_item_view {
	int64_t seq;
	const char *key;
	int state;                 /* the store's item state (enum lh_item_state) */
	int attempts;
	int last_status;           /* 0 when none */
	const char *last_error;    /* JSON text or NULL */
	/* journal of step 0 (NULL/0 when the item has none) */
	const char *response;
	size_t response_len;
	int status;
	const char *request_id;
	int64_t prompt_tokens, completion_tokens;
	double started_at, first_byte_at, ended_at;
};

#endif
