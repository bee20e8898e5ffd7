/* SPDX-License-Identifier: MIT */
/*
 * kv_write.c - the write path: put, delete, atomic batch.
 *
 * Each write, under the stripe lock(s) of its key(s): takes the next version(s),
 * appends one log record (durable with AURAKV_SYNC: group-committed by the WAL), and
 * only then updates the index (newer version wins) and the accounting. Holding the
 * stripe across all three gives, for every key, log order == version order, which the
 * GC's tombstone rule relies on (kv_gc.c), and lets GC move a record without racing a
 * writer of the same key. Nothing is compressed or encoded under the lock but the
 * version. Once the stripe is let go, a write that landed in a segment no writer has
 * measured yet measures the space against GC's marks (kv_gc_pace.c, "Writers watch the
 * marks"): one write per rollover; the others pay a load and a compare.
 */
#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "kv_batch.h"
#include "kv_db.h"

const void *kv_maybe_compress(struct kv_db *db, const void *val, size_t vlen, void **buf,
			      size_t *stored, uint8_t *flags)
{
	unsigned min = db->opts.compress_min;
	int bound, n;

	*buf = NULL;
	*stored = vlen;
	*flags = 0;
	if (!min || vlen < min || vlen > (size_t) LZ4_MAX_INPUT_SIZE)
		return val;
	bound = LZ4_compressBound((int) vlen);
	if (!(*buf = malloc((size_t) bound)))
		return val; /* no memory for it: store uncompressed */
	n = LZ4_compress_default(val, *buf, (int) vlen, bound);
	if (n <= 0 || (size_t) n > vlen - vlen / 10) { /* saves < 10 %: not worth a decode */
		free(*buf);
		*buf = NULL;
		return val;
	}
	*stored = (size_t) n;
	*flags = KV_VAL_LZ4;
	atomic_fetch_add_explicit(&db->n.compressed, 1, memory_order_relaxed);
	return *buf;
}

static unsigned wal_flags(unsigned flags)
{
	return (flags & AURAKV_SYNC) ? AURAWAL_DURABLE : 0;
}

/* A write that stores nothing (a missing key's delete, an empty batch) still keeps the
 * promise of AURAKV_SYNC: every write that returned before it is durable when it returns
 * 0 (aurakv.h, Durability). Cheap when there is nothing to sync. */
static int sync_noop(struct kv_db *db, unsigned flags)
{
	return (flags & AURAKV_SYNC) ? kv_map_wal_error(aurawal_sync(db->wal)) : 0;
}

/* A record went to a segment the background thread has not seen: the one before was
 * sealed, its hint file is due and GC may have work. */
static void note_segment(struct kv_db *db, uint64_t segment)
{
	if (segment > atomic_load_explicit(&db->bg.seen_segment, memory_order_relaxed))
		kv_bg_notify(db);
}

/* Append one record and index it as `key`'s latest (stripe held by the caller); *segment
 * gets the segment it went to (0: none). */
static int append_one(struct kv_db *db, const void *key, size_t klen, struct iovec *iov, int iovcnt,
		      uint8_t *hdr, unsigned flags, uint8_t ref_flags, uint64_t *segment)
{
	uint64_t version = atomic_fetch_add_explicit(&db->next_version, 1, memory_order_relaxed);
	struct kv_ref ref = { 0 }, old;
	aurawal_loc_t loc;
	bool had_old = false;
	int rc;

	kv_put_le64(hdr + 2, version);
	rc = aurawal_append(db->wal, iov, iovcnt, wal_flags(flags), &loc, NULL);
	if (rc)
		return kv_map_wal_error(rc);
	*segment = loc.segment;
	kv_acct_total(db, loc.segment, loc.size);
	atomic_fetch_add_explicit(&db->n.fg_bytes, kv_log_bytes(loc.size), memory_order_relaxed);
	ref.version = version;
	ref.segment = loc.segment;
	ref.offset = loc.offset;
	ref.size = loc.size;
	ref.flags = ref_flags;
	rc = kv_index_upsert(db->ix, key, klen, &ref, &old, &had_old);
	if (rc == 1)
		kv_apply_upsert(db, &ref, &old, had_old);
	note_segment(db, loc.segment);
	return rc < 0 ? rc : 0;
}

int kv_write_put(struct kv_db *db, const void *key, size_t klen, const void *val, size_t vlen,
		 unsigned flags)
{
	uint8_t hdr[KV_REC_HDR_MAX], vflags;
	void *zbuf;
	size_t stored;
	const void *sval = kv_maybe_compress(db, val, vlen, &zbuf, &stored, &vflags);
	size_t hl = kv_encode_header(hdr, KV_KIND_PUT, vflags, 0, klen, stored, vlen);
	struct iovec iov[3] = { { hdr, hl }, { (void *) key, klen }, { (void *) sval, stored } };
	pthread_mutex_t *stripe = &db->stripes[kv_stripe_of(key, klen)];
	uint64_t seg = 0;
	int rc;

	kv_gc_throttle(db, kv_log_bytes(hl + klen + stored));
	pthread_mutex_lock(stripe);
	rc = append_one(db, key, klen, iov, stored ? 3 : 2, hdr, flags, 0, &seg);
	pthread_mutex_unlock(stripe);
	kv_gc_note_segment(db, seg); /* the space past a mark? (after a rollover only) */
	free(zbuf);
	if (rc == 0)
		atomic_fetch_add_explicit(&db->n.puts, 1, memory_order_relaxed);
	return rc;
}

int kv_write_delete(struct kv_db *db, const void *key, size_t klen, unsigned flags)
{
	uint8_t hdr[KV_REC_HDR_MAX];
	size_t hl = kv_encode_header(hdr, KV_KIND_DELETE, 0, 0, klen, 0, 0);
	struct iovec iov[2] = { { hdr, hl }, { (void *) key, klen } };
	pthread_mutex_t *stripe = &db->stripes[kv_stripe_of(key, klen)];
	struct kv_ref cur;
	uint64_t seg = 0;
	int rc;

	/* Back-pressure is paid for what the log grows by: a delete of a key that is not
	 * there appends nothing, so it does not wait for GC (a peek: if a put races it
	 * in, this one record goes unpaid). */
	if (kv_gc_behind(db) && kv_index_get(db->ix, key, klen, &cur) == 0 &&
	    !(cur.flags & KV_REF_TOMBSTONE))
		kv_gc_throttle(db, kv_log_bytes(hl + klen));
	pthread_mutex_lock(stripe);
	rc = kv_index_get(db->ix, key, klen, &cur);
	if (rc == -ENOENT || (rc == 0 && (cur.flags & KV_REF_TOMBSTONE))) {
		pthread_mutex_unlock(stripe);
		return sync_noop(db, flags); /* nothing to delete */
	}
	rc = append_one(db, key, klen, iov, 2, hdr, flags, KV_REF_TOMBSTONE, &seg);
	pthread_mutex_unlock(stripe);
	kv_gc_note_segment(db, seg);
	if (rc == 0)
		atomic_fetch_add_explicit(&db->n.deletes, 1, memory_order_relaxed);
	return rc;
}

/* ---- batches ---- */

/* The record body to write: b's entries, re-encoded with compressed values if any is
 * worth compressing (then *owned is the new buffer). */
static int batch_body(struct kv_db *db, const aurakv_batch_t *b, const uint8_t **body, size_t *len,
		      uint8_t **owned)
{
	struct kv_entry_iter it;
	struct kv_entry e;
	uint8_t *out;
	size_t n = 0;
	int rc;

	*body = b->buf;
	*len = b->len;
	*owned = NULL;
	if (!db->opts.compress_min || b->max_value < db->opts.compress_min)
		return 0;
	if (!(out = malloc(b->len)))
		return 0; /* compression is optional */
	kv_entry_iter_init_entries(&it, b->buf, b->len, b->count, 0, 0);
	while ((rc = kv_entry_iter_next(&it, &e)) == 1) {
		void *z;
		size_t stored;
		uint8_t vflags;
		const void *v = kv_maybe_compress(db, e.val, e.vlen, &z, &stored, &vflags);

		n += kv_encode_entry_header(out + n, e.op, vflags, e.klen, stored, e.vlen);
		memcpy(out + n, e.key, e.klen);
		if (stored)
			memcpy(out + n + e.klen, v, stored);
		n += e.klen + stored;
		free(z);
	}
	if (rc < 0) { /* cannot happen: the batch encoded these itself */
		free(out);
		return rc;
	}
	*body = *owned = out;
	*len = n;
	return 0;
}

/* Lock the stripes of every key in the batch, in increasing order (no deadlock with
 * another batch); `set` is a KV_STRIPES-bit map of the stripes taken. */
static void lock_stripes(struct kv_db *db, const aurakv_batch_t *b, uint64_t *set)
{
	struct kv_entry_iter it;
	struct kv_entry e;

	memset(set, 0, KV_STRIPES / 8);
	kv_entry_iter_init_entries(&it, b->buf, b->len, b->count, 0, 0);
	while (kv_entry_iter_next(&it, &e) == 1) {
		uint32_t s = kv_stripe_of(e.key, e.klen);

		set[s / 64] |= 1ull << (s % 64);
	}
	for (uint32_t s = 0; s < KV_STRIPES; s++)
		if (set[s / 64] & (1ull << (s % 64)))
			pthread_mutex_lock(&db->stripes[s]);
}

static void unlock_stripes(struct kv_db *db, const uint64_t *set)
{
	for (uint32_t s = KV_STRIPES; s-- > 0;)
		if (set[s / 64] & (1ull << (s % 64)))
			pthread_mutex_unlock(&db->stripes[s]);
}

/* Index every entry of the batch record just appended at `loc`. Returns 0, or -ENOMEM if
 * the index could not take an entry (the others are still indexed): as for a put, the
 * caller must hear it - those keys keep answering their previous state until reopened. */
static int index_batch(struct kv_db *db, const uint8_t *body, size_t len, uint64_t count,
		       uint64_t version, uint32_t hl, aurawal_loc_t loc)
{
	struct kv_entry_iter it;
	struct kv_entry e;
	int failed = 0;

	kv_entry_iter_init_entries(&it, body, len, count, version, hl);
	while (kv_entry_iter_next(&it, &e) == 1) {
		struct kv_ref ref = { .version = e.version,
				      .segment = loc.segment,
				      .offset = loc.offset,
				      .size = loc.size,
				      .batch_off = e.entry_off,
				      .flags = KV_REF_BATCH },
			      old;
		bool had_old = false;
		int rc;

		if (e.op == KV_KIND_DELETE)
			ref.flags |= KV_REF_TOMBSTONE;
		rc = kv_index_upsert(db->ix, e.key, e.klen, &ref, &old, &had_old);
		if (rc == 1)
			kv_apply_upsert(db, &ref, &old, had_old);
		else if (rc < 0 && !failed)
			failed = rc;
	}
	return failed;
}

int kv_write_batch(struct kv_db *db, const aurakv_batch_t *b, unsigned flags)
{
	uint64_t set[KV_STRIPES / 64], version, seg = 0;
	uint8_t hdr[KV_REC_HDR_MAX], *owned;
	const uint8_t *body;
	aurawal_loc_t loc;
	size_t len, hl;
	int rc;

	if (b->count == 0)
		return sync_noop(db, flags);
	if ((rc = batch_body(db, b, &body, &len, &owned)))
		return rc;
	kv_gc_throttle(db, kv_log_bytes(KV_REC_HDR_MAX + len));
	lock_stripes(db, b, set);
	version = atomic_fetch_add_explicit(&db->next_version, b->count, memory_order_relaxed);
	hl = kv_encode_batch_header(hdr, version, b->count);
	{
		struct iovec iov[2] = { { hdr, hl }, { (void *) body, len } };

		rc = aurawal_append(db->wal, iov, 2, wal_flags(flags), &loc, NULL);
	}
	if (rc == 0) {
		kv_acct_total(db, loc.segment, loc.size);
		atomic_fetch_add_explicit(&db->n.fg_bytes, kv_log_bytes(loc.size),
					  memory_order_relaxed);
		rc = index_batch(db, body, len, b->count, version, (uint32_t) hl, loc);
		note_segment(db, loc.segment); /* appended, indexed or not */
		seg = loc.segment;
	} else {
		rc = kv_map_wal_error(rc);
	}
	unlock_stripes(db, set);
	kv_gc_note_segment(db, seg);
	free(owned);
	if (rc == 0)
		atomic_fetch_add_explicit(&db->n.batches, 1, memory_order_relaxed);
	return rc;
}
