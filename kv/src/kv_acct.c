/* SPDX-License-Identifier: MIT */
/*
 * kv_acct.c - exact live/dead byte accounting per log segment, which GC uses to pick
 * victims and to know when a segment holds nothing live.
 *
 * Every log record counts kv_log_bytes(payload) in its segment's total when appended
 * (or found at open). It counts as live while the index names it: a put or delete while
 * it is its key's latest record, a batch while any of its entries is (the batch table
 * counts the live entries of each such batch). Every index change goes through
 * kv_acct_add / kv_acct_drop, always under the key's stripe lock, so the counters are
 * exact; they are atomics because different keys' writers update the same segment.
 */
#include <errno.h>
#include <stdlib.h>

#include "kv_db.h"

struct kv_seg *kv_seg_get(struct kv_db *db, uint64_t number, bool create)
{
	struct kv_seg *s = &db->segs[number % KV_SEG_SLOTS];
	uint64_t cur;

	/* Pairs with the release store below: the counters were reset before. */
	if (atomic_load_explicit(&s->number, memory_order_acquire) == number)
		return s;
	if (!create || number == 0)
		return NULL;
	pthread_mutex_lock(&db->segs_lock);
	cur = atomic_load_explicit(&s->number, memory_order_relaxed);
	if (cur == 0) {
		atomic_store_explicit(&s->total, 0, memory_order_relaxed);
		atomic_store_explicit(&s->live, 0, memory_order_relaxed);
		atomic_store_explicit(&s->tomb, 0, memory_order_relaxed);
		atomic_store_explicit(&s->hint, KV_HINT_NONE, memory_order_relaxed);
		atomic_store_explicit(&s->hint_bytes, 0, memory_order_relaxed);
		atomic_store_explicit(&s->gc_damaged, false, memory_order_relaxed);
		atomic_store_explicit(&s->number, number, memory_order_release);
		cur = number;
	}
	pthread_mutex_unlock(&db->segs_lock);
	if (cur != number) {
		/* The slot still serves a segment KV_SEG_SLOTS older: over the limit. */
		if (!atomic_exchange(&db->failed_reported, 1))
			kv_report(db, AURAKV_REPORT_CORRUPTION,
				  "more than %u segments: accounting of segment %llu skipped",
				  KV_SEG_SLOTS, (unsigned long long) number);
		return NULL;
	}
	return s;
}

void kv_acct_total(struct kv_db *db, uint64_t segment, uint64_t payload)
{
	struct kv_seg *s = kv_seg_get(db, segment, true);

	if (s)
		atomic_fetch_add_explicit(&s->total, (int64_t) kv_log_bytes(payload),
					  memory_order_relaxed);
}

static void add_live(struct kv_db *db, const struct kv_ref *ref, int64_t sign)
{
	struct kv_seg *s = kv_seg_get(db, ref->segment, true);
	int64_t bytes = sign * (int64_t) kv_log_bytes(ref->size);

	if (!s)
		return;
	atomic_fetch_add_explicit(&s->live, bytes, memory_order_relaxed);
	if ((ref->flags & (KV_REF_TOMBSTONE | KV_REF_BATCH)) == KV_REF_TOMBSTONE)
		atomic_fetch_add_explicit(&s->tomb, bytes, memory_order_relaxed);
}

void kv_acct_hint(struct kv_db *db, uint64_t seg, int64_t bytes)
{
	struct kv_seg *s = kv_seg_get(db, seg, false); /* never revive a released segment */
	int64_t old;

	if (!s)
		return;
	old = atomic_exchange_explicit(&s->hint_bytes, bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&db->hint_bytes, bytes - old, memory_order_relaxed);
}

void kv_acct_forget(struct kv_db *db, uint64_t segment)
{
	struct kv_seg *s = kv_seg_get(db, segment, false);

	if (s) {
		atomic_fetch_sub_explicit(&db->hint_bytes, atomic_load(&s->hint_bytes),
					  memory_order_relaxed);
		atomic_store_explicit(&s->number, 0, memory_order_release);
	}
}

/* ---- batch records referenced by the index ---- */

int kv_batches_init(struct kv_batches *b)
{
	b->nbuckets = 1024;
	b->count = 0;
	b->buckets = calloc(b->nbuckets, sizeof(*b->buckets));
	if (!b->buckets)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	return 0;
}

void kv_batches_destroy(struct kv_batches *b)
{
	for (size_t i = 0; b->buckets && i < b->nbuckets; i++) {
		struct kv_batch_ref *r = b->buckets[i], *next;

		for (; r; r = next) {
			next = r->next;
			free(r);
		}
	}
	free(b->buckets);
	b->buckets = NULL;
	pthread_mutex_destroy(&b->lock);
}

static size_t bucket_of(const struct kv_batches *b, uint64_t loc)
{
	return (size_t) ((loc * 0x9E3779B97F4A7C15ull) >> 20) & (b->nbuckets - 1);
}

/* Double the table when it averages more than 2 per bucket (under the lock). */
static void maybe_grow(struct kv_batches *b)
{
	size_t n = b->nbuckets * 2;
	struct kv_batch_ref **nb;

	if (b->count < b->nbuckets * 2 || !(nb = calloc(n, sizeof(*nb))))
		return; /* no memory: stay slower, still correct */
	for (size_t i = 0; i < b->nbuckets; i++) {
		struct kv_batch_ref *r = b->buckets[i], *next;

		for (; r; r = next) {
			size_t h = (size_t) ((r->loc * 0x9E3779B97F4A7C15ull) >> 20) & (n - 1);

			next = r->next;
			r->next = nb[h];
			nb[h] = r;
		}
	}
	free(b->buckets);
	b->buckets = nb;
	b->nbuckets = n;
}

/* A batch record's key in the map: segment and offset. Only the low 32 bits of the
 * segment number are kept - two live segments are never 2^32 apart (at most 65536
 * segments at once, docs/kv_design.md "Limits"). */
static uint64_t batch_loc(const struct kv_ref *ref)
{
	return ref->segment << 32 | ref->offset;
}

/* One more live entry of batch `ref`; true if the batch just became live. */
static bool batch_inc(struct kv_batches *b, const struct kv_ref *ref)
{
	uint64_t loc = batch_loc(ref);
	struct kv_batch_ref *r;
	bool created = false;

	pthread_mutex_lock(&b->lock);
	for (r = b->buckets[bucket_of(b, loc)]; r && r->loc != loc; r = r->next)
		;
	if (!r && (r = calloc(1, sizeof(*r)))) {
		size_t h = bucket_of(b, loc);

		r->loc = loc;
		r->size = ref->size;
		r->next = b->buckets[h];
		b->buckets[h] = r;
		b->count++;
		created = true;
		maybe_grow(b);
	}
	if (r)
		r->live_entries++;
	pthread_mutex_unlock(&b->lock);
	return created;
}

/* One live entry fewer; true if that was the last (the batch is dead). */
static bool batch_dec(struct kv_batches *b, const struct kv_ref *ref)
{
	uint64_t loc = batch_loc(ref);
	struct kv_batch_ref **pp, *r;
	bool dead = false;

	pthread_mutex_lock(&b->lock);
	for (pp = &b->buckets[bucket_of(b, loc)]; (r = *pp) && r->loc != loc; pp = &r->next)
		;
	if (r && --r->live_entries == 0) {
		*pp = r->next;
		b->count--;
		free(r);
		dead = true;
	}
	pthread_mutex_unlock(&b->lock);
	return dead;
}

void kv_acct_add(struct kv_db *db, const struct kv_ref *ref)
{
	if (ref->flags & KV_REF_TOMBSTONE)
		atomic_fetch_add_explicit(&db->n.tombstones, 1, memory_order_relaxed);
	if (!(ref->flags & KV_REF_BATCH) || batch_inc(&db->batches, ref))
		add_live(db, ref, 1);
}

void kv_acct_drop(struct kv_db *db, const struct kv_ref *ref)
{
	if (ref->flags & KV_REF_TOMBSTONE)
		atomic_fetch_sub_explicit(&db->n.tombstones, 1, memory_order_relaxed);
	if (!(ref->flags & KV_REF_BATCH) || batch_dec(&db->batches, ref))
		add_live(db, ref, -1);
}

void kv_apply_upsert(struct kv_db *db, const struct kv_ref *ref, const struct kv_ref *old,
		     bool had_old)
{
	kv_acct_add(db, ref);
	if (had_old)
		kv_acct_drop(db, old);
}
