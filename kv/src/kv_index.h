/* SPDX-License-Identifier: MIT */
/*
 * kv_index.h - the store's ordered in-memory index: key -> where its latest record is.
 *
 * A B+tree. Readers (any number of threads) never write shared memory: they descend
 * with optimistic per-node version checks and retry if a node they read changed; writers
 * are serialized by the index's own mutex. Node memory is type-stable (freed nodes are
 * kept for reuse, never returned to the system while the index lives), so a reader that
 * races with a writer may read stale bytes but never unmapped memory, and every read
 * inside a node is bounds-checked.
 *
 * Keys are byte strings (1..KV_INDEX_MAX_KEY bytes), ordered by memcmp, a shorter key
 * first when one is a prefix of the other.
 */
#ifndef AURAKV_INDEX_H
#define AURAKV_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_INDEX_MAX_KEY 65535

/* kv_ref.flags */
#define KV_REF_TOMBSTONE 1u /* the latest record of the key is a delete */
#define KV_REF_BATCH	 2u /* the record is a batch; batch_off locates this key's entry */

/* Where a key's latest record is, and its version. */
struct kv_ref {
	uint64_t version;   /* the store's version of the write: newer wins; unique */
	uint64_t segment;   /* WAL segment (numbers only grow: all 64 bits) */
	uint32_t offset;    /* WAL record offset in the segment */
	uint32_t size;	    /* WAL record payload size */
	uint32_t batch_off; /* KV_REF_BATCH: this entry's offset inside the payload */
	uint8_t flags;	    /* KV_REF_* */
};

struct kv_index;

/* An empty index, or NULL (ENOMEM). */
struct kv_index *kv_index_create(void);
void kv_index_destroy(struct kv_index *ix); /* NULL ok; no other call may race with it */

/* Readers - any thread, concurrently with writers. */

/* 0 and *out if the key has an entry (tombstones included: check flags), -ENOENT if not
 * (also for klen 0 or too long: no such key can exist), -EINVAL (ix, key or out NULL). */
int kv_index_get(struct kv_index *ix, const void *key, size_t klen, struct kv_ref *out);

/* Writers - any thread; the index serializes them. */

/*
 * Insert, or replace the existing entry if ref->version is greater than its version.
 * Returns 1 if ref was stored (then *had_old tells whether an entry was replaced and
 * *old holds it; either pointer may be NULL), 0 if the existing entry's version is equal
 * or greater (nothing changed), -ENOMEM (nothing changed), -EINVAL (klen 0 or too long,
 * ix, key or ref NULL).
 */
int kv_index_upsert(struct kv_index *ix, const void *key, size_t klen, const struct kv_ref *ref,
		    struct kv_ref *old, bool *had_old);

/* Replace the entry only if it still points where `expect` does (segment and offset
 * compared, nothing else - versions neither: repl is stored as it is): a record moved by
 * GC. 1 replaced; 0 not (no entry, or it points elsewhere: the key was written again);
 * -ENOMEM if the entry had to move and the index could not grow (nothing changed);
 * -EINVAL (klen 0 or too long, an argument NULL). */
int kv_index_cas(struct kv_index *ix, const void *key, size_t klen, const struct kv_ref *expect,
		 const struct kv_ref *repl);

/* Remove the entry only if it still points where `expect` does (segment and offset).
 * 1 removed, 0 not; -ENOMEM (a removal reserves the writers' scratch memory for merges
 * before it changes the tree, and that could not grow - it is kept between writes, so
 * only a first write or a taller tree grows it: nothing changed; it needs no node,
 * merges only free them); -EINVAL (klen 0 or too long, an argument NULL). */
int kv_index_remove_if(struct kv_index *ix, const void *key, size_t klen,
		       const struct kv_ref *expect);

/*
 * Bulk loading into an EMPTY index (open): keys in strictly increasing order, then
 * finish. Builds full leaves bottom-up (O(n)). -EINVAL if a key is not greater than the
 * previous one or the index was not empty; -ENOMEM. Not concurrent with anything. A
 * failed add changes nothing: the load goes on (the same key again, or a greater one)
 * or is finished, publishing the keys added before it (the index is then an ordinary
 * one); nothing is visible to readers before the finish.
 */
int kv_index_bulk_add(struct kv_index *ix, const void *key, size_t klen, const struct kv_ref *ref);
int kv_index_bulk_finish(struct kv_index *ix);

/*
 * Ordered iteration. A cursor yields every key >= its start key in order, each with the
 * entry it had when the cursor passed its leaf (a consistent copy per leaf; writers may
 * run meanwhile). The key buffer passed to next() must hold KV_INDEX_MAX_KEY bytes.
 */
struct kv_index_cursor;
/* A cursor from the first key >= start (slen 0: from the first key), or NULL: ix NULL,
 * slen > KV_INDEX_MAX_KEY, start NULL with slen > 0, or out of memory. */
struct kv_index_cursor *kv_index_cursor_open(struct kv_index *ix, const void *start, size_t slen);
/* 1 and the next entry, 0 at the end (and on every later call), -EINVAL (an argument
 * NULL). Never fails otherwise: it retries while writers change what it reads. */
int kv_index_cursor_next(struct kv_index_cursor *c, void *key, size_t *klen, struct kv_ref *ref);
void kv_index_cursor_close(struct kv_index_cursor *c);

/* Entries (tombstones included) and bytes of memory held (nodes, free ones included). */
size_t kv_index_count(struct kv_index *ix);
size_t kv_index_memory(struct kv_index *ix);

#endif
