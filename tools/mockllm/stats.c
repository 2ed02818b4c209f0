/*
 * Counters and duplicate detection for /stats (see stats.h). Counters are
 * relaxed atomics: they are read only by /stats, which needs no ordering.
 * Body hashes live in an open-addressing set split into shards, each with
 * its own mutex, so two workers rarely contend and a shard that grows
 * rehashes only its own share.
 */
#include "stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SHARD_BITS 6
#define NSHARDS (1u << SHARD_BITS)
#define SHARD_INIT_CAP 1024u
/*
 * At most 16,777,216 remembered bodies (about 256 MiB at worst). Beyond that
 * a shard stops remembering new hashes: they still count as unique, so the
 * duplicate count can only be low, never invented.
 */
#define SHARD_MAX_ENTRIES ((size_t)1 << (24 - SHARD_BITS))

struct shard {
	pthread_mutex_t mu;
	uint64_t *slots; /* 0 marks an empty slot */
	size_t cap;      /* a power of two, or 0 before first use */
	size_t count;
};

static struct shard shards[NSHARDS];
static atomic_ullong n_requests, n_duplicates, n_unique, n_tool_answers;
static atomic_ullong n_outcome[OC_COUNT];
static atomic_llong n_in_flight;

static const char *const outcome_names[OC_COUNT] = {
	[OC_OK] = "ok", [OC_429] = "429", [OC_500] = "500", [OC_503] = "503",
	[OC_HANG] = "hang", [OC_RESET] = "reset", [OC_TRUNCATE] = "truncate",
	[OC_BADJSON] = "badjson", [OC_401] = "401", [OC_404] = "404",
	[OC_400] = "400", [OC_OTHER] = "other",
};

int stats_init(void)
{
	for (unsigned i = 0; i < NSHARDS; i++) {
		if (pthread_mutex_init(&shards[i].mu, NULL) != 0)
			return -1;
		shards[i].slots = NULL;
		shards[i].cap = 0;
		shards[i].count = 0;
	}
	return 0;
}

void stats_release(void)
{
	for (unsigned i = 0; i < NSHARDS; i++) {
		free(shards[i].slots);
		shards[i].slots = NULL;
		pthread_mutex_destroy(&shards[i].mu);
	}
}

/* The low bits pick the slot; the top SHARD_BITS picked the shard. */
static void slot_put(uint64_t *slots, size_t cap, uint64_t h)
{
	size_t i = (size_t)h & (cap - 1);

	while (slots[i] != 0)
		i = (i + 1) & (cap - 1);
	slots[i] = h;
}

static bool shard_grow(struct shard *s)
{
	size_t ncap = s->cap ? s->cap * 2 : SHARD_INIT_CAP;
	uint64_t *ns = calloc(ncap, sizeof(*ns));

	if (ns == NULL)
		return false;
	for (size_t i = 0; i < s->cap; i++)
		if (s->slots[i] != 0)
			slot_put(ns, ncap, s->slots[i]);
	free(s->slots);
	s->slots = ns;
	s->cap = ncap;
	return true;
}

/* Returns true when h was not in the set (and remembers it if there is room). */
static bool set_insert(uint64_t h)
{
	struct shard *s = &shards[h >> (64 - SHARD_BITS)];
	bool fresh = true;

	if (h == 0)
		h = 1; /* 0 marks empty slots */
	pthread_mutex_lock(&s->mu);
	if (s->cap != 0) {
		size_t i = (size_t)h & (s->cap - 1);

		while (s->slots[i] != 0) {
			if (s->slots[i] == h) {
				fresh = false;
				break;
			}
			i = (i + 1) & (s->cap - 1);
		}
	}
	if (fresh && s->count < SHARD_MAX_ENTRIES) {
		/* Keep the load at or below one half so probes stay short. */
		if ((s->count + 1) * 2 > s->cap && !shard_grow(s)) {
			pthread_mutex_unlock(&s->mu);
			return true;
		}
		slot_put(s->slots, s->cap, h);
		s->count++;
	}
	pthread_mutex_unlock(&s->mu);
	return fresh;
}

void stats_request(uint64_t body_hash)
{
	atomic_fetch_add_explicit(&n_requests, 1, memory_order_relaxed);
	if (set_insert(body_hash))
		atomic_fetch_add_explicit(&n_unique, 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&n_duplicates, 1, memory_order_relaxed);
}

void stats_outcome(enum outcome oc)
{
	atomic_fetch_add_explicit(&n_outcome[oc], 1, memory_order_relaxed);
}

void stats_tool_answer(void)
{
	atomic_fetch_add_explicit(&n_tool_answers, 1, memory_order_relaxed);
}

void stats_in_flight(int delta)
{
	atomic_fetch_add_explicit(&n_in_flight, delta, memory_order_relaxed);
}

void stats_reset(void)
{
	atomic_store(&n_requests, 0);
	atomic_store(&n_duplicates, 0);
	atomic_store(&n_unique, 0);
	atomic_store(&n_tool_answers, 0);
	for (int i = 0; i < OC_COUNT; i++)
		atomic_store(&n_outcome[i], 0);
	for (unsigned i = 0; i < NSHARDS; i++) {
		pthread_mutex_lock(&shards[i].mu);
		free(shards[i].slots);
		shards[i].slots = NULL;
		shards[i].cap = 0;
		shards[i].count = 0;
		pthread_mutex_unlock(&shards[i].mu);
	}
}

static unsigned long long load(atomic_ullong *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

void stats_json(struct buf *out)
{
	long long in_flight = atomic_load_explicit(&n_in_flight, memory_order_relaxed);

	buf_puts(out, "{\"requests\":");
	buf_u64(out, load(&n_requests));
	buf_puts(out, ",\"by_outcome\":{");
	for (int i = 0; i < OC_COUNT; i++) {
		buf_printf(out, "%s\"%s\":", i ? "," : "", outcome_names[i]);
		buf_u64(out, load(&n_outcome[i]));
	}
	buf_puts(out, "},\"tool_calls\":");
	buf_u64(out, load(&n_tool_answers));
	buf_puts(out, ",\"duplicates\":");
	buf_u64(out, load(&n_duplicates));
	buf_puts(out, ",\"unique_bodies\":");
	buf_u64(out, load(&n_unique));
	buf_puts(out, ",\"in_flight\":");
	buf_u64(out, in_flight > 0 ? (unsigned long long)in_flight : 0);
	buf_puts(out, "}");
}
