/* SPDX-License-Identifier: MIT */
/*
 * kv_cache.c - the value cache: record location -> copy of the value, sharded, evicted
 * with S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP'23).
 *
 * What this file owns: every cached value (one malloc per entry: header + value bytes),
 * each shard's hash table and its three FIFOs. It never does I/O and never calls back.
 *
 * S3-FIFO, per shard (all byte counts are charges, see below):
 *   small  - a FIFO of about 10% of the shard's capacity. New keys enter here.
 *   main   - a FIFO holding the rest (about 90%).
 *   ghost  - a FIFO of keys only, of keys recently evicted from small, bounded to about as
 *            many keys as main holds entries (main's capacity / the shard's mean charge).
 *   Each entry has a 2-bit frequency: 0 on insert, +1 on every hit, saturating at 3.
 *   put:   a key found in ghost leaves ghost and enters main; any other enters small.
 *          Before linking it, entries are evicted until the new one fits the capacity.
 *   evict: from small if small holds >= its 10% share (or main is empty), else from main.
 *     small: pop the oldest; freq >= 1 (hit while in small) -> push it on main (freq kept)
 *            and pop the next; freq 0 -> record its key in ghost, free it, done.
 *     main:  pop the oldest; freq > 0 -> freq - 1 and push it back (CLOCK-like second
 *            chance); freq 0 -> free it, done.
 *   Why it resists scans: a key read once never gets freq >= 1 while in small, so it goes
 *   small -> ghost -> gone, and while small has its share, main is never evicted from.
 *   A one-time scan of any length flushes only small; the working set in main stays.
 *   The ghost catches keys whose reuse distance is longer than small but within main:
 *   their second insert goes straight to main.
 *
 * A put on a location already cached keeps the cached copy and drops the new one: the
 * value at a location is immutable, so they are equal. A put is not an access (no freq).
 *
 * Charges (what counts against the capacity): the heap the cache takes. Per entry:
 *   malloc's chunk for sizeof(struct entry) 24 + value length (glibc: + 8, rounded up to
 *   16, at least 32) + 3 hash slots of 16 (the table's load is 3/8..3/4 while growing,
 *   1.33..2.67 slots per entry; it shrinks below 1/8): value + 88..103 bytes.
 * And the ghost: 24 bytes per cell of its ring (8 in the ring, 2 set slots of 8), the
 * ring being its bound rounded up to a power of two, never shrinking, and growing only
 * while it takes at most an eighth of the shard (below that, the ghost remembers fewer
 * keys than main holds: only with values under ~100 bytes). Charging them all keeps
 * the heap within the capacity; charging neither the ghost nor the table's real load
 * nor malloc's rounding let a cache of tiny values take 1.5x its capacity.
 * An entry whose charge exceeds an eighth of its shard's capacity is not cached, so
 * eviction can always make room (the ghost taking at most another eighth).
 *
 * Invariants, per shard, whenever its lock is free:
 *   - every entry is in exactly one of small and main, and in the table exactly once;
 *   - small.bytes + main.bytes + the ghost's bytes <= cap, and the table has at least
 *     one empty slot;
 *   - a key is never both cached and in the ghost (a put takes it out of the ghost; only
 *     a cached key evicted from small enters the ghost), so the ghost set has no
 *     duplicates; every seq in the ghost set is in [ghost.head, ghost.tail).
 *
 * Locking: one mutex per shard protects everything in the shard, stats included. No
 * function holds two shard locks; kv_cache_get_stats takes them one at a time. So there
 * is no lock order. Under a lock: hash probes, memcpy of the value on a hit, queue
 * moves. Outside: hashing, the malloc and copy of a put, free() of evicted entries.
 * A pthread mutex, not a spinlock: uncontended, both are one atomic RMW to lock, and
 * measured on the hit path (2 cores) they were within noise of each other, but with
 * more runnable threads than cores a spinning waiter burns the time slice that the
 * preempted holder needs (measured: random gets at 2 threads on a busy machine took up
 * to 2x longer with the spinlock).
 *
 * Must never: cache bytes it has not charged; call out of this file under a shard lock
 * except to malloc/free its own tables (rare: on growth and shrinkage).
 */
#include "kv_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_SHARDS	16u
#define MAX_SHARDS	1024u
#define MIN_SHARD_BYTES (256u << 10) /* default sharding never cuts a shard below this */
#define MALLOC_HEADER	8u /* glibc: a chunk is the request + 8, rounded up to 16, >= 32 */
#define MALLOC_ALIGN	16u
#define MALLOC_MIN	32u
#define SLOTS_CHARGED	3u  /* the table's load is >= 3/8: at most 2.67 slots per entry */
#define GHOST_CELL	24u /* ghost bytes per ring cell: 8 in the ring, 2 set slots of 8 */
#define GHOST_SHARE	8u  /* the ghost takes at most 1/8 of its shard's capacity */
#define FREQ_MAX	3u
#define SMALL_PERCENT	10u
#define TABLE_MIN	64u /* initial table slots */
#define GHOST_MIN	16u /* ghost ring keys, initial and minimum bound */
#define GHOST_EMPTY	UINT64_MAX
#define CACHELINE	64u

struct entry {
	uint64_t loc;
	struct entry *next; /* the next newer entry of its queue; or of a free list */
	uint32_t len;
	uint8_t freq; /* 0..FREQ_MAX */
	unsigned char val[];
};

struct slot {
	uint64_t loc;
	struct entry *e; /* NULL: empty */
};

struct fifo {
	struct entry *head, *tail; /* pop at head (oldest), push at tail */
	size_t bytes, count;	   /* charges */
};

/* Keys ordered by a sequence number: ring[seq & rmask] for seq in [head, tail); set is an
 * open-addressing hash set of those seqs (hashed by their key) for membership tests. A key
 * taken out of the ghost leaves a stale ring cell, skipped when it is popped. */
struct ghost {
	uint64_t *ring;
	uint64_t *set; /* seq, or GHOST_EMPTY */
	size_t rmask, smask;
	uint64_t head, tail;
};

struct shard {
	pthread_mutex_t lock;
	struct slot *table; /* open addressing, linear probing */
	size_t tmask;
	uint64_t hits, misses, inserts, evictions;
	struct fifo small, main;
	size_t cap, small_cap; /* bytes */
	struct ghost ghost;
} __attribute__((aligned(CACHELINE)));

struct kv_cache {
	unsigned nshards; /* initialized shards (all of them once created) */
	unsigned mask;
	struct shard shards[];
};

/* murmur3's finalizer: locations are structured (segment << 32 | aligned offset), every
 * output bit must depend on all of them. The low bits pick the shard, bits 32.. the slot. */
static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static inline size_t home(uint64_t h, size_t mask)
{
	return (size_t) (h >> 32) & mask;
}

static inline size_t entry_charge(size_t len)
{
	size_t chunk = (sizeof(struct entry) + len + MALLOC_HEADER + MALLOC_ALIGN - 1) &
		       ~(size_t) (MALLOC_ALIGN - 1);

	return (chunk < MALLOC_MIN ? MALLOC_MIN : chunk) + SLOTS_CHARGED * sizeof(struct slot);
}

/* ---- the entry table ---- */

static struct entry *table_find(const struct shard *s, uint64_t loc, uint64_t h)
{
	const struct slot *t = s->table;
	size_t m = s->tmask;

	for (size_t i = home(h, m);; i = (i + 1) & m) {
		if (!t[i].e)
			return NULL;
		if (t[i].loc == loc)
			return t[i].e;
	}
}

static void table_link(struct slot *t, size_t m, uint64_t loc, struct entry *e)
{
	size_t i = home(mix(loc), m);

	while (t[i].e)
		i = (i + 1) & m;
	t[i].loc = loc;
	t[i].e = e;
}

/* Backward-shift deletion: pull later members of the probe run into the hole when their
 * home is not cyclically after it, so that lookups stop at the first empty slot. */
static void table_unlink(struct shard *s, uint64_t loc)
{
	struct slot *t = s->table;
	size_t m = s->tmask, i = home(mix(loc), m), j;

	while (t[i].loc != loc || !t[i].e)
		i = (i + 1) & m;
	for (j = (i + 1) & m; t[j].e; j = (j + 1) & m) {
		size_t k = home(mix(t[j].loc), m);

		if (((j - k) & m) >= ((j - i) & m)) {
			t[i] = t[j];
			i = j;
		}
	}
	t[i].e = NULL;
	t[i].loc = 0;
}

static bool table_rehash(struct shard *s, size_t slots)
{
	struct slot *nt = calloc(slots, sizeof(*nt));

	if (!nt)
		return false;
	for (size_t i = 0; i <= s->tmask; i++)
		if (s->table[i].e)
			table_link(nt, slots - 1, s->table[i].loc, s->table[i].e);
	free(s->table);
	s->table = nt;
	s->tmask = slots - 1;
	return true;
}

/* Room for one more entry, the load kept within 1/8..3/4 (above TABLE_MIN): doubled past
 * 3/4, halved below 1/8, so the table's memory follows the entries. False only if the
 * table cannot grow and has no room. */
static bool table_reserve(struct shard *s, size_t count)
{
	size_t size = s->tmask + 1;

	if ((count + 1) * 4 > size * 3)
		return table_rehash(s, 2 * size) || count + 2 <= size; /* keep one slot empty */
	if (size > TABLE_MIN && (count + 1) * 8 < size)
		table_rehash(s, size / 2); /* failing to shrink is harmless */
	return true;
}

/* ---- the ghost ---- */

static bool ghost_find(const struct ghost *g, uint64_t key, size_t *at)
{
	for (size_t i = home(mix(key), g->smask); g->set[i] != GHOST_EMPTY; i = (i + 1) & g->smask)
		if (g->ring[g->set[i] & g->rmask] == key) {
			*at = i;
			return true;
		}
	return false;
}

static void ghost_set_link(uint64_t *set, size_t m, uint64_t key, uint64_t seq)
{
	size_t i = home(mix(key), m);

	while (set[i] != GHOST_EMPTY)
		i = (i + 1) & m;
	set[i] = seq;
}

/* Backward-shift deletion, as table_unlink. */
static void ghost_set_unlink(struct ghost *g, size_t i)
{
	size_t m = g->smask;

	for (size_t j = (i + 1) & m; g->set[j] != GHOST_EMPTY; j = (j + 1) & m) {
		size_t k = home(mix(g->ring[g->set[j] & g->rmask]), m);

		if (((j - k) & m) >= ((j - i) & m)) {
			g->set[i] = g->set[j];
			i = j;
		}
	}
	g->set[i] = GHOST_EMPTY;
}

static bool ghost_alloc(size_t keys, uint64_t **ring, uint64_t **set)
{
	*ring = malloc(keys * sizeof(**ring));
	*set = malloc(2 * keys * sizeof(**set));
	if (!*ring || !*set) {
		free(*ring);
		free(*set);
		return false;
	}
	memset(*set, 0xff, 2 * keys * sizeof(**set)); /* all GHOST_EMPTY */
	return true;
}

/* Double the ring (and its set), keeping every seq: live cells move to seq & new mask. */
static bool ghost_grow(struct ghost *g)
{
	size_t keys = 2 * (g->rmask + 1), sm = 2 * keys - 1;
	uint64_t *ring, *set;

	if (!ghost_alloc(keys, &ring, &set))
		return false;
	for (uint64_t seq = g->head; seq != g->tail; seq++)
		ring[seq & (keys - 1)] = g->ring[seq & g->rmask];
	for (size_t i = 0; i <= g->smask; i++)
		if (g->set[i] != GHOST_EMPTY)
			ghost_set_link(set, sm, ring[g->set[i] & (keys - 1)], g->set[i]);
	free(g->ring);
	free(g->set);
	g->ring = ring;
	g->set = set;
	g->rmask = keys - 1;
	g->smask = sm;
	return true;
}

/* Forget the oldest key, unless it was already taken out (its set slot is gone, or holds
 * a newer seq of the same key). */
static void ghost_pop(struct ghost *g)
{
	uint64_t seq = g->head++;
	size_t at;

	if (ghost_find(g, g->ring[seq & g->rmask], &at) && g->set[at] == seq)
		ghost_set_unlink(g, at);
}

static size_t ghost_bytes(const struct ghost *g)
{
	return (g->rmask + 1) * GHOST_CELL;
}

/* Remember key; `limit` keys at most, the ring growing only while it stays within
 * `max_bytes` (its bytes are charged to the shard: make_room). */
static void ghost_add(struct ghost *g, uint64_t key, size_t limit, size_t max_bytes)
{
	uint64_t seq;

	if (limit < GHOST_MIN)
		limit = GHOST_MIN;
	while (g->tail - g->head >= limit)
		ghost_pop(g);
	if (g->tail - g->head > g->rmask && (2 * ghost_bytes(g) > max_bytes || !ghost_grow(g)))
		ghost_pop(g);
	seq = g->tail++;
	g->ring[seq & g->rmask] = key;
	ghost_set_link(g->set, g->smask, key, seq);
}

/* True (and the key forgotten) if the ghost remembers it. */
static bool ghost_take(struct ghost *g, uint64_t key)
{
	size_t at;

	if (!ghost_find(g, key, &at))
		return false;
	ghost_set_unlink(g, at);
	return true;
}

/* ---- the queues and eviction ---- */

static void fifo_push(struct fifo *q, struct entry *e)
{
	e->next = NULL;
	if (q->tail)
		q->tail->next = e;
	else
		q->head = e;
	q->tail = e;
	q->bytes += entry_charge(e->len);
	q->count++;
}

static struct entry *fifo_pop(struct fifo *q)
{
	struct entry *e = q->head;

	q->head = e->next;
	if (!q->head)
		q->tail = NULL;
	q->bytes -= entry_charge(e->len);
	q->count--;
	return e;
}

/* Unlink e from the table and put it on *dead, freed by the caller after unlocking. */
static void evict_entry(struct shard *s, struct entry *e, struct entry **dead)
{
	table_unlink(s, e->loc);
	e->next = *dead;
	*dead = e;
	s->evictions++;
}

/* How many keys the ghost keeps: about as many as main holds entries when full. */
static size_t ghost_limit(const struct shard *s, const struct entry *leaving)
{
	size_t n = s->small.count + s->main.count + 1;
	size_t bytes = s->small.bytes + s->main.bytes + entry_charge(leaving->len);

	return (s->cap - s->small_cap) / (bytes / n);
}

static void evict_small(struct shard *s, struct entry **dead)
{
	while (s->small.head) {
		struct entry *e = fifo_pop(&s->small);

		if (e->freq >= 1) {
			fifo_push(&s->main, e); /* main may overflow its share: the caller evicts */
			continue;
		}
		ghost_add(&s->ghost, e->loc, ghost_limit(s, e), s->cap / GHOST_SHARE);
		evict_entry(s, e, dead);
		return;
	}
}

static void evict_main(struct shard *s, struct entry **dead)
{
	while (s->main.head) {
		struct entry *e = fifo_pop(&s->main);

		if (e->freq > 0) {
			e->freq--;
			fifo_push(&s->main, e);
			continue;
		}
		evict_entry(s, e, dead);
		return;
	}
}

static size_t shard_bytes(const struct shard *s)
{
	return s->small.bytes + s->main.bytes + ghost_bytes(&s->ghost);
}

/* Evict until `need` more bytes fit; false if they cannot (only in a shard of less than
 * a few KiB, where the ghost's minimum ring takes more than 7/8 of it). */
static bool make_room(struct shard *s, size_t need, struct entry **dead)
{
	while (shard_bytes(s) + need > s->cap) {
		if (s->small.head && (s->small.bytes >= s->small_cap || !s->main.head))
			evict_small(s, dead);
		else if (s->main.head)
			evict_main(s, dead);
		else
			return false;
	}
	return true;
}

/* Link e (not yet visible to anyone) under s->lock. Returns what the caller must free
 * after unlocking: evicted entries, and e itself if it was not cached. */
static struct entry *shard_insert(struct shard *s, struct entry *e, uint64_t h)
{
	struct entry *dead = NULL;
	bool to_main;

	e->next = NULL;
	if (table_find(s, e->loc, h))
		return e; /* already cached: same location, same bytes; keep the old copy */
	to_main = ghost_take(&s->ghost, e->loc);
	if (!make_room(s, entry_charge(e->len), &dead) ||
	    !table_reserve(s, s->small.count + s->main.count)) {
		e->next = dead;
		return e;
	}
	table_link(s->table, s->tmask, e->loc, e);
	fifo_push(to_main ? &s->main : &s->small, e);
	s->inserts++;
	return dead;
}

static void free_list(struct entry *e)
{
	while (e) {
		struct entry *next = e->next;

		free(e);
		e = next;
	}
}

/* ---- lifecycle ---- */

static unsigned round_pow2(unsigned n)
{
	unsigned p = 1;

	while (p < n && p < MAX_SHARDS)
		p <<= 1;
	return p;
}

/* 16, or 4 per CPU if that is more (at most 256); halved while a shard would hold less
 * than MIN_SHARD_BYTES, so that a small cache still caches values of useful size. */
static unsigned default_shards(size_t capacity)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = DEFAULT_SHARDS;

	while (cpus > 0 && n < 4 * (unsigned long) cpus && n < 256)
		n <<= 1;
	while (n > 1 && capacity / n < MIN_SHARD_BYTES)
		n >>= 1;
	return n;
}

static int shard_init(struct shard *s, size_t cap)
{
	memset(s, 0, sizeof(*s));
	s->cap = cap;
	s->small_cap = cap / 100 * SMALL_PERCENT + cap % 100 * SMALL_PERCENT / 100;
	s->table = calloc(TABLE_MIN, sizeof(*s->table));
	if (!s->table || !ghost_alloc(GHOST_MIN, &s->ghost.ring, &s->ghost.set)) {
		free(s->table);
		return -ENOMEM;
	}
	s->tmask = TABLE_MIN - 1;
	s->ghost.rmask = GHOST_MIN - 1;
	s->ghost.smask = 2 * GHOST_MIN - 1;
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s->table);
		free(s->ghost.ring);
		free(s->ghost.set);
		return -ENOMEM;
	}
	return 0;
}

static void shard_fini(struct shard *s)
{
	free_list(s->small.head);
	free_list(s->main.head);
	free(s->table);
	free(s->ghost.ring);
	free(s->ghost.set);
	pthread_mutex_destroy(&s->lock);
}

struct kv_cache *kv_cache_create(size_t capacity, unsigned shards)
{
	unsigned n = shards ? round_pow2(shards) : default_shards(capacity);
	size_t size;
	struct kv_cache *c;

	if (capacity == 0)
		return NULL;
	while (n > 1 && capacity < n)
		n >>= 1;
	size = sizeof(*c) + n * sizeof(struct shard);
	c = aligned_alloc(CACHELINE, (size + CACHELINE - 1) / CACHELINE * CACHELINE);
	if (!c)
		return NULL;
	c->mask = n - 1;
	for (c->nshards = 0; c->nshards < n; c->nshards++) {
		size_t cap = capacity / n + (c->nshards < capacity % n);

		if (shard_init(&c->shards[c->nshards], cap) != 0) {
			kv_cache_destroy(c);
			return NULL;
		}
	}
	return c;
}

void kv_cache_destroy(struct kv_cache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->nshards; i++)
		shard_fini(&c->shards[i]);
	free(c);
}

/* ---- the operations ---- */

static inline struct shard *shard_of(struct kv_cache *c, uint64_t h)
{
	return &c->shards[h & c->mask];
}

static inline void shard_lock(struct shard *s)
{
	pthread_mutex_lock(&s->lock);
}

static inline void shard_unlock(struct shard *s)
{
	pthread_mutex_unlock(&s->lock);
}

int kv_cache_get(struct kv_cache *c, uint64_t loc, void *buf, size_t cap, size_t *len)
{
	uint64_t h = mix(loc);
	struct shard *s;
	struct entry *e;
	size_t n;

	if (!c)
		return -ENOENT;
	s = shard_of(c, h);
	shard_lock(s);
	e = table_find(s, loc, h);
	if (!e) {
		s->misses++;
		shard_unlock(s);
		return -ENOENT;
	}
	n = e->len;
	if (n > cap) { /* neither a hit nor an access: the caller retries with room */
		shard_unlock(s);
		*len = n;
		return -EMSGSIZE;
	}
	if (n)
		memcpy(buf, e->val, n);
	if (e->freq < FREQ_MAX)
		e->freq++;
	s->hits++;
	shard_unlock(s);
	*len = n;
	return 0;
}

/* Learns the length first (-EMSGSIZE counts nothing), then copies outside any malloc
 * under the lock. The entry may be evicted in between: then it is a miss. */
int kv_cache_get_alloc(struct kv_cache *c, uint64_t loc, void **val, size_t *len)
{
	size_t n = 0;
	void *buf;
	int rc = kv_cache_get(c, loc, NULL, 0, &n);

	if (rc == -ENOENT)
		return rc;
	buf = malloc(n ? n : 1);
	if (!buf)
		return -ENOMEM;
	if (rc == -EMSGSIZE)
		rc = kv_cache_get(c, loc, buf, n, &n); /* a location's length never changes */
	if (rc != 0) {
		free(buf);
		return rc;
	}
	*val = buf;
	*len = n;
	return 0;
}

void kv_cache_put(struct kv_cache *c, uint64_t loc, const void *val, size_t len)
{
	uint64_t h = mix(loc);
	struct shard *s;
	struct entry *e, *dead;

	if (!c || (len && !val))
		return;
	s = shard_of(c, h);
	if (len > UINT32_MAX || entry_charge(len) > s->cap / 8)
		return;
	e = malloc(sizeof(*e) + len);
	if (!e)
		return;
	e->loc = loc;
	e->len = (uint32_t) len;
	e->freq = 0;
	if (len)
		memcpy(e->val, val, len);
	shard_lock(s);
	dead = shard_insert(s, e, h);
	shard_unlock(s);
	free_list(dead);
}

void kv_cache_get_stats(struct kv_cache *c, struct kv_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];

		shard_lock(s);
		out->hits += s->hits;
		out->misses += s->misses;
		out->inserts += s->inserts;
		out->evictions += s->evictions;
		out->bytes += s->small.bytes + s->main.bytes;
		out->entries += s->small.count + s->main.count;
		out->capacity += s->cap;
		shard_unlock(s);
	}
}
