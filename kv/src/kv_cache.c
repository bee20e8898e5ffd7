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
 * Charges (what counts against the capacity): every byte of heap the cache takes, each
 * block at what malloc really holds for it (heap_size: its usable size and its header),
 * so the capacity bounds the heap whatever the allocator rounds to. Per shard:
 *   entries  - each its block (sizeof(struct entry) 24 + the value, rounded up by
 *              malloc: glibc 16 bytes, at least 32, or a page if mmap'd) + 3 hash slots
 *              of 16 (SLOTS_CHARGED): value + 88..103 bytes with glibc's small blocks;
 *   table    - its TABLE_MIN slots (table_base), plus whatever its real size exceeds
 *              that and the entries' 3 slots each by. The load is kept within 1/3..3/4
 *              (doubled past 3/4: 3/8 after; halved below 1/3, also as evictions empty
 *              it), so that excess is 0 unless a shrink failed for want of memory. The
 *              table shrank only below 1/8 and only on an insert: after tiny values gave
 *              way to larger ones it kept up to 8 slots per entry, 15 % over capacity;
 *   ghost    - its ring and set (24 bytes per cell: 8 in the ring, 2 set slots of 8),
 *              the ring being its bound rounded up to a power of two, never shrinking,
 *              and growing only while it takes at most an eighth of the shard (below
 *              that, the ghost remembers fewer keys than main holds: only with values
 *              under ~100 bytes);
 *   fixed    - its share of the cache's own block (the shards' locks and queues).
 * The minimum table and ghost and the shards were not charged: 1.5 KiB a shard, twice
 * the capacity of a small cache of many shards. A shard is never cut below SHARD_MIN,
 * and a cache smaller than that (KV_CACHE_MIN) is not made. Not charged, as no state
 * between calls holds it: while a table or a ghost is resized, its old copy, for the
 * moment of the copy.
 * An entry whose charge exceeds an eighth of its shard's capacity is not cached, so
 * eviction can always make room (the ghost taking at most another eighth).
 *
 * Invariants, per shard, whenever its lock is free:
 *   - every entry is in exactly one of small and main, and in the table exactly once;
 *   - shard_bytes() <= cap, and the table has at least one empty slot;
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
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_SHARDS	16u
#define MAX_SHARDS	1024u
#define MIN_SHARD_BYTES (256u << 10) /* default sharding never cuts a shard below this */
#define SHARD_MIN	KV_CACHE_MIN /* an explicit shard count never cuts below this */
#define MALLOC_HEADER	8u /* glibc: a chunk is the request + 8, rounded up to 16, >= 32 */
#define MALLOC_ALIGN	16u
#define MALLOC_MIN	32u
#define MMAP_MIN	(128u << 10) /* glibc: smaller blocks are never mmap'd */
#define SLOTS_CHARGED	3u	     /* the table's load is >= 1/3: at most 3 slots per entry */
#define GHOST_SHARE	8u	     /* the ghost takes at most 1/8 of its shard's capacity */
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
	uint32_t slack : 30; /* the bytes malloc holds for it beyond sizeof + len */
	uint32_t freq : 2;   /* 0..FREQ_MAX */
	unsigned char val[];
};
#define SLACK_MAX ((1u << 30) - 1)

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
	size_t bytes; /* the heap ring and set take */
};

struct shard {
	pthread_mutex_t lock;
	struct slot *table; /* open addressing, linear probing */
	size_t tmask;
	size_t table_bytes, table_base; /* the heap it takes; that of TABLE_MIN slots */
	size_t fixed;			/* its share of the cache's own block */
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

/* The heap a malloc'd block takes: its usable size and malloc's header (glibc: 8 bytes
 * for a block of an arena, 16 for an mmap'd one, which only a block of MMAP_MIN or more
 * can be). */
static size_t heap_size(const void *p)
{
	size_t n = malloc_usable_size((void *) p);

	return n + (n >= MMAP_MIN - 2 * MALLOC_HEADER ? 2 : 1) * MALLOC_HEADER;
}

/* What an entry of `len` bytes will be charged, before its block exists (glibc's rounding
 * of a block from an arena): to refuse values too large for the shard without a malloc. */
static inline size_t entry_charge_est(size_t len)
{
	size_t chunk = (sizeof(struct entry) + len + MALLOC_HEADER + MALLOC_ALIGN - 1) &
		       ~(size_t) (MALLOC_ALIGN - 1);

	return (chunk < MALLOC_MIN ? MALLOC_MIN : chunk) + SLOTS_CHARGED * sizeof(struct slot);
}

static inline size_t entry_charge(const struct entry *e)
{
	return sizeof(*e) + e->len + e->slack + SLOTS_CHARGED * sizeof(struct slot);
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
	s->table_bytes = heap_size(nt);
	return true;
}

/* Room for one more entry, the load kept within 1/3..3/4 (above TABLE_MIN): doubled past
 * 3/4 (to 3/8). False only if the table cannot grow and has no room. */
static bool table_reserve(struct shard *s, size_t count)
{
	size_t size = s->tmask + 1;

	if ((count + 1) * 4 > size * 3)
		return table_rehash(s, 2 * size) || count + 2 <= size; /* keep one slot empty */
	return true;
}

/* Halve the table while its load is below 1/3 (above TABLE_MIN; 2/3 after: no growth
 * follows), so that its memory follows the entries down: evictions empty it. A failed
 * shrink leaves it larger, and its excess charged (table_excess). */
static void table_trim(struct shard *s)
{
	size_t count = s->small.count + s->main.count;

	while (s->tmask + 1 > TABLE_MIN && count * 3 < s->tmask + 1)
		if (!table_rehash(s, (s->tmask + 1) / 2))
			return;
}

/* The table's bytes beyond what its entries' slots and its minimum are charged. */
static size_t table_excess(const struct shard *s)
{
	size_t charged =
	    s->table_base + (s->small.count + s->main.count) * SLOTS_CHARGED * sizeof(struct slot);

	return s->table_bytes > charged ? s->table_bytes - charged : 0;
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
	g->bytes = heap_size(ring) + heap_size(set);
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
	return g->bytes;
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
	q->bytes += entry_charge(e);
	q->count++;
}

static struct entry *fifo_pop(struct fifo *q)
{
	struct entry *e = q->head;

	q->head = e->next;
	if (!q->head)
		q->tail = NULL;
	q->bytes -= entry_charge(e);
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
	size_t bytes = s->small.bytes + s->main.bytes + entry_charge(leaving);

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

/* Everything the shard takes (see Charges). */
static size_t shard_bytes(const struct shard *s)
{
	return s->small.bytes + s->main.bytes + s->table_base + table_excess(s) +
	       ghost_bytes(&s->ghost) + s->fixed;
}

/* Evict until `need` more bytes fit; false if they cannot (only for an entry larger than
 * the room its shard has beside the table, ghost and fixed share it always takes). The
 * table shrinks as the entries go. */
static bool make_room(struct shard *s, size_t need, struct entry **dead)
{
	while (shard_bytes(s) + need > s->cap) {
		if (s->small.head && (s->small.bytes >= s->small_cap || !s->main.head))
			evict_small(s, dead);
		else if (s->main.head)
			evict_main(s, dead);
		else
			return false;
		table_trim(s);
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
	if (!make_room(s, entry_charge(e), &dead) ||
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
	s->table_bytes = s->table_base = heap_size(s->table);
	s->ghost.bytes = heap_size(s->ghost.ring) + heap_size(s->ghost.set);
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
	size_t size, own;
	struct kv_cache *c;

	if (capacity < KV_CACHE_MIN)
		return NULL;
	while (n > 1 && capacity / n < SHARD_MIN)
		n >>= 1;
	size = sizeof(*c) + n * sizeof(struct shard);
	c = aligned_alloc(CACHELINE, (size + CACHELINE - 1) / CACHELINE * CACHELINE);
	if (!c)
		return NULL;
	own = heap_size(c);
	c->mask = n - 1;
	for (c->nshards = 0; c->nshards < n; c->nshards++) {
		size_t cap = capacity / n + (c->nshards < capacity % n);

		if (shard_init(&c->shards[c->nshards], cap) != 0) {
			kv_cache_destroy(c);
			return NULL;
		}
		c->shards[c->nshards].fixed = own / n + (c->nshards < own % n);
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
	size_t extra;

	if (!c || (len && !val))
		return;
	s = shard_of(c, h);
	if (len > UINT32_MAX || entry_charge_est(len) > s->cap / 8)
		return;
	e = malloc(sizeof(*e) + len);
	if (!e)
		return;
	e->loc = loc;
	e->len = (uint32_t) len;
	extra = heap_size(e) - (sizeof(*e) + len);
	e->slack = (uint32_t) (extra < SLACK_MAX ? extra : SLACK_MAX);
	e->freq = 0;
	if (extra > SLACK_MAX || entry_charge(e) > s->cap / 8) {
		free(e); /* malloc rounded it up past what the shard takes */
		return;
	}
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
		out->bytes += shard_bytes(s);
		out->entries += s->small.count + s->main.count;
		out->capacity += s->cap;
		shard_unlock(s);
	}
}

/* Tests: the heap the cache's blocks take, summed block by block (not from the charges). */
size_t kv_cache_heap_bytes(struct kv_cache *c)
{
	size_t sum;

	if (!c)
		return 0;
	sum = heap_size(c);
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];

		shard_lock(s);
		for (const struct entry *e = s->small.head; e; e = e->next)
			sum += heap_size(e);
		for (const struct entry *e = s->main.head; e; e = e->next)
			sum += heap_size(e);
		sum += heap_size(s->table) + heap_size(s->ghost.ring) + heap_size(s->ghost.set);
		shard_unlock(s);
	}
	return sum;
}
