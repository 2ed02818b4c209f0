/* Unit tests: the server-sent events parser (line endings, splits at every
 * byte, comments, multi-line data, id and event fields, the size cap). */
#include <criterion/criterion.h>
#include <string.h>

#include "llm/sse.h"

/* Every event as "event|id|data\n", so one string compares a whole run. */
struct sse_log {
	struct lh_buf out;
	int stop_at; /* stop (return 7) at this event number, 0 = never */
	int n;
};

static int sse_record(const char *event, const char *data, size_t len, const char *id, void *arg)
{
	struct sse_log *l = arg;
	cr_assert_eq(strlen(data), len, "data must be NUL-terminated at len");
	cr_assert(!lh_buf_puts(&l->out, event));
	cr_assert(!lh_buf_putc(&l->out, '|'));
	cr_assert(!lh_buf_puts(&l->out, id));
	cr_assert(!lh_buf_putc(&l->out, '|'));
	cr_assert(!lh_buf_append(&l->out, data, len));
	cr_assert(!lh_buf_putc(&l->out, '\n'));
	l->n++;
	return l->stop_at && l->n == l->stop_at ? 7 : 0;
}

/* Parses in in pieces of `step` bytes (0 = whole) and returns the log. */
static char *sse_run(const char *in, size_t step, size_t max, int *rc)
{
	struct lh_sse p;
	struct sse_log l = { .stop_at = 0, .n = 0 };
	size_t n = strlen(in), i = 0;
	lh_buf_init(&l.out, 0);
	lh_sse_init(&p, max, sse_record, &l);
	*rc = 0;
	if (!step)
		step = n ? n : 1;
	while (i < n && !*rc) {
		size_t k = n - i < step ? n - i : step;
		*rc = lh_sse_feed(&p, in + i, k);
		i += k;
	}
	lh_sse_release(&p);
	return lh_buf_steal(&l.out);
}

/* Feeds in split in two at every position and byte by byte; each run must
 * give `want`. */
static void sse_expect_all_splits(const char *in, const char *want)
{
	size_t n = strlen(in);
	int rc;
	char *got = sse_run(in, 1, 0, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(got, want, "byte by byte");
	free(got);
	for (size_t cut = 0; cut <= n; cut++) {
		struct lh_sse p;
		struct sse_log l = { .stop_at = 0, .n = 0 };
		lh_buf_init(&l.out, 0);
		lh_sse_init(&p, 0, sse_record, &l);
		cr_assert_eq(lh_sse_feed(&p, in, cut), 0);
		cr_assert_eq(lh_sse_feed(&p, in + cut, n - cut), 0);
		cr_assert_str_eq(l.out.data ? l.out.data : "", want, "split at %zu", cut);
		lh_sse_release(&p);
		lh_buf_release(&l.out);
	}
}

Test(sse, single_event)
{
	sse_expect_all_splits("data: hello\n\n", "message||hello\n");
}

Test(sse, line_endings_lf_crlf_cr)
{
	const char *want = "message||a\nmessage||b\nmessage||c\n";
	sse_expect_all_splits("data: a\n\ndata: b\r\n\r\ndata: c\r\r", want);
	sse_expect_all_splits("data: a\r\n\r\ndata: b\r\n\r\ndata: c\r\n\r\n", want);
	sse_expect_all_splits("data: a\r\rdata: b\r\rdata: c\r\r", want);
}

Test(sse, comments_are_ignored)
{
	sse_expect_all_splits(": keep-alive\n\n:x\ndata: a\n: between\n\n", "message||a\n");
}

Test(sse, multi_line_data_joined_with_newline)
{
	sse_expect_all_splits("data: one\ndata:two\ndata:  three\n\n", "message||one\ntwo\n three\n");
}

Test(sse, event_and_id_fields)
{
	/* The event type resets after each dispatch; the id persists. */
	sse_expect_all_splits("event: delta\nid: 42\ndata: x\n\ndata: y\n\nid\ndata: z\n\n",
			      "delta|42|x\nmessage|42|y\nmessage||z\n");
}

Test(sse, empty_data_and_no_data)
{
	/* "data:" alone dispatches an empty string; an event without data
	 * dispatches nothing and forgets its type. */
	sse_expect_all_splits("data:\n\nevent: e\n\ndata: after\n\n", "message||\nmessage||after\n");
}

Test(sse, field_without_colon_and_unknown_fields)
{
	sse_expect_all_splits("retry: 10\nfoo: bar\ndata\n\n", "message||\n");
}

Test(sse, unterminated_event_is_not_dispatched)
{
	int rc;
	char *got = sse_run("data: a\n\ndata: partial\n", 0, 0, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(got, "message||a\n");
	free(got);
}

Test(sse, openai_stream)
{
	const char *in = "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n";
	sse_expect_all_splits(in, "message||{\"a\":1}\nmessage||{\"b\":2}\nmessage||[DONE]\n");
}

Test(sse, callback_stops_parsing)
{
	struct lh_sse p;
	struct sse_log l = { .stop_at = 2, .n = 0 };
	const char *in = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
	lh_buf_init(&l.out, 0);
	lh_sse_init(&p, 0, sse_record, &l);
	cr_assert_eq(lh_sse_feed(&p, in, strlen(in)), 7);
	cr_assert_eq(l.n, 2);
	lh_sse_release(&p);
	lh_buf_release(&l.out);
}

Test(sse, cap_on_one_line)
{
	char in[400];
	int rc;
	char *got;
	memset(in, 'x', sizeof in);
	memcpy(in, "data: ", 6);
	memcpy(in + sizeof in - 3, "\n\n", 3);
	/* Whole, and in small pieces: the limit does not depend on splits. */
	got = sse_run(in, 0, 100, &rc);
	cr_assert_eq(rc, LH_ETOOBIG);
	free(got);
	got = sse_run(in, 7, 100, &rc);
	cr_assert_eq(rc, LH_ETOOBIG);
	free(got);
	got = sse_run(in, 0, 1000, &rc);
	cr_assert_eq(rc, 0);
	free(got);
}

Test(sse, cap_on_joined_data)
{
	/* Many short lines that together pass the cap. */
	struct lh_buf in;
	int rc;
	char *got;
	lh_buf_init(&in, 0);
	for (int i = 0; i < 50; i++)
		cr_assert(!lh_buf_puts(&in, "data: 0123456789\n"));
	cr_assert(!lh_buf_puts(&in, "\n"));
	got = sse_run(in.data, 3, 200, &rc);
	cr_assert_eq(rc, LH_ETOOBIG);
	free(got);
	/* 50 * 10 bytes + 49 newlines = 549: exactly at the cap is fine. */
	got = sse_run(in.data, 3, 549, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(strlen(got), strlen("message||") + 549 + 1);
	free(got);
	got = sse_run(in.data, 0, 548, &rc);
	cr_assert_eq(rc, LH_ETOOBIG);
	free(got);
	lh_buf_release(&in);
}

Test(sse, reset_forgets_partial_state)
{
	struct lh_sse p;
	struct sse_log l = { .stop_at = 0, .n = 0 };
	lh_buf_init(&l.out, 0);
	lh_sse_init(&p, 0, sse_record, &l);
	cr_assert_eq(lh_sse_feed(&p, "id: 9\ndata: half", 16), 0);
	lh_sse_reset(&p);
	cr_assert_eq(lh_sse_feed(&p, "\ndata: new\n\n", 12), 0);
	cr_assert_str_eq(l.out.data, "message||new\n");
	lh_sse_release(&p);
	lh_buf_release(&l.out);
}
