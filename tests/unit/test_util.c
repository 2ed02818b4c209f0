/* Unit tests: util layer (buffers, errors, hashing, histogram, time, vectors). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/hist.h"
#include "util/mem.h"
#include "util/time.h"
#include "util/vec.h"

Test(buf, append_and_cap)
{
	struct lh_buf b;
	lh_buf_init(&b, 8);
	cr_assert_eq(lh_buf_puts(&b, "abcd"), 0);
	cr_assert_eq(lh_buf_puts(&b, "efgh"), 0);
	cr_assert_eq(lh_buf_putc(&b, 'x'), LH_ETOOBIG);
	cr_assert_eq(b.len, 8);
	cr_assert_str_eq(b.data, "abcdefgh");
	lh_buf_clear(&b);
	cr_assert_eq(lh_buf_printf(&b, "%d-%s", 42, "z"), 0);
	cr_assert_str_eq(b.data, "42-z");
	lh_buf_release(&b);
}

Test(buf, printf_longer_than_stack_buffer)
{
	struct lh_buf b;
	char big[1000];
	memset(big, 'q', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	lh_buf_init(&b, 0);
	cr_assert_eq(lh_buf_printf(&b, "<%s>", big), 0);
	cr_assert_eq(b.len, 1001);
	cr_assert_eq(b.data[0], '<');
	cr_assert_eq(b.data[1000], '>');
	lh_buf_release(&b);
}

Test(buf, json_string_escapes)
{
	struct lh_buf b;
	const char in[] = "a\"b\\c\n\t\x01z";
	lh_buf_init(&b, 0);
	cr_assert_eq(lh_buf_json_str(&b, in, sizeof in - 1), 0);
	cr_assert_str_eq(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001z\"");
	lh_buf_release(&b);
}

Test(err, format_with_place)
{
	struct lh_err e;
	char out[256];
	cr_assert_eq(lh_err_at(&e, LH_EINPUT, "in.jsonl", 7, "custom_id", "expected a string"), LH_EINPUT);
	lh_err_format(&e, out, sizeof out);
	cr_assert_str_eq(out, "in.jsonl:7: field \"custom_id\": expected a string");
	lh_err_prefix(&e, "could not ingest");
	cr_assert_str_eq(e.msg, "could not ingest: expected a string");
	cr_assert_str_eq(lh_err_name(LH_EINPUT), "bad_input");
}

Test(hash, sha256_known_vector)
{
	char hex[LH_SHA256_HEX];
	lh_sha256_hex("abc", 3, hex);
	cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	cr_assert_neq(lh_hash64("a", 1), lh_hash64("b", 1));
}

Test(hist, quantiles_bracket_values)
{
	struct lh_hist h;
	lh_hist_init(&h);
	for (int i = 1; i <= 100; i++)
		lh_hist_add(&h, i / 1000.0); /* 1..100 ms */
	double p50 = lh_hist_quantile(&h, 0.5), p99 = lh_hist_quantile(&h, 0.99);
	cr_assert(p50 >= 0.050 && p50 <= 0.050 * 1.26, "p50 %f", p50);
	cr_assert(p99 >= 0.099 && p99 <= 0.100, "p99 %f", p99);
	cr_assert_eq(h.n, 100);
}

Test(time, human_and_iso)
{
	char out[64];
	lh_time_human(3723, out, sizeof out);
	cr_assert_str_eq(out, "1h02m03s");
	lh_time_human(65, out, sizeof out);
	cr_assert_str_eq(out, "1m05s");
	lh_time_human(-1, out, sizeof out);
	cr_assert_str_eq(out, "--");
	lh_time_iso(0.5, out, sizeof out);
	cr_assert_str_eq(out, "1970-01-01T00:00:00.500Z");
}

Test(mem, injected_failure)
{
	void *p;
	lh_mem_fail_after(2);
	p = lh_malloc(10);
	cr_assert_not_null(p);
	lh_free(p);
	cr_assert_null(lh_malloc(10));
	p = lh_malloc(10);
	cr_assert_not_null(p);
	lh_free(p);
}

struct pair {
	int64_t id;
	double at;
};

Test(vec, push_zeroes_and_doubles)
{
	LH_VEC(struct pair) v = { 0 };
	for (int i = 0; i < 100; i++) {
		struct pair *p = lh_vec_push(&v);
		cr_assert_eq(p->id, 0);
		cr_assert_eq(p->at, 0);
		p->id = i;
		if (i == 0)
			cr_assert_eq(v.cap, LH_VEC_FIRST);
	}
	cr_assert_eq(v.n, 100);
	cr_assert_eq(v.cap, 128);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(v.v[i].id, i);
	lh_vec_release(&v);
	cr_assert_null(v.v);
	cr_assert_eq(v.n, 0);
	cr_assert_eq(v.cap, 0);
	/* A released vector is an empty one: it grows again. */
	*lh_vec_push(&v) = (struct pair){ 7, 1.5 };
	cr_assert_eq(v.v[0].id, 7);
	lh_vec_release(&v);
}

Test(vec, first_capacity_and_reserve)
{
	LH_VEC(int) v;
	lh_vec_init(&v);
	*lh_vec_push_from(&v, 256) = 1;
	cr_assert_eq(v.cap, 256);
	v.n = 0; /* cleared by hand: the memory stays */
	lh_vec_reserve(&v, 256);
	cr_assert_eq(v.cap, 256);
	lh_vec_reserve(&v, 257);
	cr_assert_eq(v.cap, 512);
	cr_assert_eq(v.n, 0);
	lh_vec_release(&v);
	/* Reserving more than one doubling goes straight to the next power of two. */
	lh_vec_reserve_from(&v, 100, 64);
	cr_assert_eq(v.cap, 128);
	lh_vec_release(&v);
	lh_vec_reserve(&v, 3);
	cr_assert_eq(v.cap, LH_VEC_FIRST);
	lh_vec_release(&v);
}

Test(vec, reserve_overflow_aborts, .signal = SIGABRT)
{
	LH_VEC(int64_t) v = { 0 };
	lh_vec_reserve(&v, SIZE_MAX / 4);
}

Test(vec, count_overflow_aborts, .signal = SIGABRT)
{
	LH_VEC(char) v = { 0 };
	*lh_vec_push(&v) = 'x';
	lh_vec_reserve(&v, SIZE_MAX);
}
