/* SPDX-License-Identifier: MIT */
/*
 * kv_read.c - the read path: get, get into a buffer, asynchronous get, multi-get,
 * ordered walk.
 *
 * A get is: index lookup (no lock, see kv_index.h) -> value cache by location -> one
 * log read (aurawal_read: one aligned device read through registered buffers, checksum
 * verified) -> the entry decoded and its key compared with the one asked for (a wrong
 * location is corruption, never a wrong value) -> decompress.
 * The lookup and the read are not atomic: GC may release the segment between them.
 * Then the read says -ENOENT, and the lookup is simply retried: GC moved the index to
 * the record's new copy before releasing the segment.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv_db.h"

#define STACK_RECORD  4096 /* records up to this size are read into the stack */
#define MAX_RELOOKUPS 16   /* a released segment, looked up again: bounded retries */

static int corrupt(struct kv_db *db, const struct kv_ref *ref, const char *what)
{
	kv_report(db, AURAKV_REPORT_CORRUPTION, "record at segment %llu offset %u (size %u): %s",
		  (unsigned long long) ref->segment, ref->offset, ref->size, what);
	return AURAKV_ECORRUPT;
}

/* Deliver the entry's value: into buf (cap) or a new buffer *val. */
static int deliver(const struct kv_entry *e, void **val, size_t *vlen, void *buf, size_t cap)
{
	*vlen = e->rawlen;
	if (val) {
		if (!(*val = malloc(e->rawlen ? e->rawlen : 1)))
			return -ENOMEM;
		buf = *val;
	} else if (e->rawlen > cap) {
		return AURAKV_ENOBUFS;
	}
	return kv_entry_value(e, buf);
}

static int from_cache(struct kv_db *db, const struct kv_ref *ref, void **val, size_t *vlen,
		      void *buf, size_t cap)
{
	uint64_t loc = kv_cache_loc(ref);
	int rc;

	/* Once the log has failed, a cached value may be a lost write's: the log answers
	 * (the value if it was written, else the failure's error). */
	if (!db->cache || aurawal_failed(db->wal))
		return -ENOENT;
	if (val)
		return kv_cache_get_alloc(db->cache, loc, val, vlen);
	rc = kv_cache_get(db->cache, loc, buf, cap, vlen);
	return rc == -EMSGSIZE ? AURAKV_ENOBUFS : rc;
}

/* Read and decode the record `ref` names; -ENOENT if its segment is gone. */
static int from_log(struct kv_db *db, const void *key, size_t klen, const struct kv_ref *ref,
		    void **val, size_t *vlen, void *buf, size_t cap)
{
	uint8_t stack[STACK_RECORD], *rec = ref->size <= sizeof(stack) ? stack : malloc(ref->size);
	struct kv_entry e;
	size_t n = 0;
	int rc;

	if (!rec)
		return -ENOMEM;
	rc = aurawal_read(db->wal, kv_wal_loc(ref), rec, ref->size, &n, NULL);
	if (rc == AURAWAL_ECORRUPT)
		rc = corrupt(db, ref, "checksum, marker or size mismatch");
	else if (rc == -EINVAL) /* our arguments are sound: the location is no record's */
		rc = corrupt(db, ref, "the log holds no record there");
	else if (rc == 0 &&
		 kv_entry_at(rec, n, ref->batch_off, ref->flags & KV_REF_BATCH, key, klen, &e))
		rc = corrupt(db, ref, "the record does not hold this key");
	else if (rc == 0 && e.op != KV_KIND_PUT)
		rc = corrupt(db, ref, "a delete where the index expects a value");
	else if (rc == 0 && (rc = deliver(&e, val, vlen, buf, cap)) == AURAKV_ECORRUPT)
		corrupt(db, ref, "the value does not decompress");
	if (rc == 0 && db->cache)
		kv_cache_put(db->cache, kv_cache_loc(ref), val ? *val : buf, *vlen);
	if (rc && val && *val) {
		free(*val);
		*val = NULL;
	}
	if (rec != stack)
		free(rec);
	return rc < 0 ? kv_map_wal_error(rc) : rc;
}

int kv_read_entry(struct kv_db *db, const void *key, size_t klen, struct kv_ref *ref, void **val,
		  size_t *vlen, void *buf, size_t cap)
{
	atomic_fetch_add_explicit(&db->n.gets, 1, memory_order_relaxed);
	for (int attempt = 0;; attempt++) {
		int rc = kv_index_get(db->ix, key, klen, ref);

		if (rc == -ENOENT || (rc == 0 && (ref->flags & KV_REF_TOMBSTONE))) {
			atomic_fetch_add_explicit(&db->n.get_misses, 1, memory_order_relaxed);
			return AURAKV_ENOTFOUND;
		}
		if (rc)
			return rc;
		rc = from_cache(db, ref, val, vlen, buf, cap);
		if (rc != -ENOENT)
			return rc;
		rc = from_log(db, key, klen, ref, val, vlen, buf, cap);
		if (rc != -ENOENT)
			return rc;
		if (attempt == MAX_RELOOKUPS)
			return corrupt(db, ref, "the index names a released segment");
	}
}

/* ---- asynchronous gets ---- */

/*
 * Nesting. A get answered without a device read (a missing key, a cached value, an
 * error) runs its callback inside its aurakv_get_async() call, and that callback may start
 * the next get: a chain of such answers nests one set of frames per link, and a long one
 * overflowed the stack. So a thread counts its aurakv_get_async() calls running (nested);
 * deeper than NEST_MAX, an answer found at once is not delivered in the call but put on
 * the thread's queue, which the outermost call empties, in order, before it returns (its
 * callbacks' own gets nest again up to NEST_MAX, then queue). An aurakv_poll() made on
 * the thread meanwhile (a callback waiting for its own get) runs its store's queued
 * answers too: a `while (!done) aurakv_poll()` loop would otherwise wait forever for an
 * answer that only the call below it delivers. The queue link is in the get itself,
 * so queueing cannot fail, and entries carry their store (a chain may switch stores).
 */
#define NEST_MAX 16

struct aget {
	struct kv_db *db;
	aurakv_get_cb cb;
	void *arg;
	struct kv_ref ref;
	int relookups;
	bool user;	/* cb is the application's (aurakv_get_async), not a multi-get's */
	bool may_queue; /* in its aurakv_get_async() call: an answer may wait in the queue */
	int status;	/* queued: the answer, */
	void *val;	/* its value (malloc'd) or NULL, */
	size_t vlen;
	struct aget *next; /* and the next queued get */
	uint8_t *rec;	   /* the record being read */
	size_t klen;
	uint8_t key[];
};

/* This thread's aurakv_get_async() calls running, and its queue of answers (FIFO). */
static _Thread_local unsigned get_depth;
static _Thread_local struct aget *queue_head, *queue_tail;

/* The application's callbacks this thread has run since the innermost kv_poll() running
 * on it started: what that poll returns. Thread-local: a poll counts what ran in it, not
 * what other threads ran meanwhile. A poll nested in a callback starts it from 0 and puts
 * back the outer poll's count when it returns, so each callback is counted once, by the
 * innermost poll that ran it (the outer one counts the callback that polled). */
static _Thread_local unsigned long user_cbs_run;

static void aget_finish(struct aget *g, int status, const void *val, size_t vlen)
{
	g->cb(g->arg, status, val, vlen);
	if (g->user)
		user_cbs_run++;
	free(g->rec);
	free(g);
}

/* Deliver an answer found without a device read: now, or - in a call nested deeper than
 * NEST_MAX - through the thread's queue. `val` (malloc'd or NULL) is freed here. */
static void aget_answer(struct aget *g, int status, void *val, size_t vlen)
{
	if (g->may_queue && get_depth > NEST_MAX) {
		free(g->rec); /* a failed read's buffer: not needed any more */
		g->rec = NULL;
		g->status = status;
		g->val = val;
		g->vlen = vlen;
		g->next = NULL;
		if (queue_tail)
			queue_tail->next = g;
		else
			queue_head = g;
		queue_tail = g;
		return;
	}
	aget_finish(g, status, val, vlen);
	free(val);
}

/* Run the thread's queued answers, those of `db` only or (NULL) all, in order, until
 * none is left: a callback may queue more. */
static void queue_run(struct kv_db *db)
{
	for (;;) {
		struct aget *g = queue_head, *prev = NULL;
		void *val;

		while (g && db && g->db != db) {
			prev = g;
			g = g->next;
		}
		if (!g)
			return;
		if (prev)
			prev->next = g->next;
		else
			queue_head = g->next;
		if (queue_tail == g)
			queue_tail = prev;
		val = g->val;
		aget_finish(g, g->status, val, g->vlen);
		free(val);
	}
}

void kv_get_async_flush(struct kv_db *db)
{
	queue_run(db);
}

static void aget_start(struct aget *g);

/* The status of a failed read of g's record. -ENOENT once the relookups are spent is
 * the index naming a segment that stays gone: corruption, reported, as kv_read_entry
 * says it for a synchronous get (not a bare -ENOENT, which the header never lists). */
static int aget_error(struct aget *g, int status)
{
	if (status == AURAWAL_ECORRUPT)
		return corrupt(g->db, &g->ref, "checksum, marker or size mismatch");
	if (status == -EINVAL) /* our arguments are sound: the location is no record's */
		return corrupt(g->db, &g->ref, "the log holds no record there");
	if (status == -ENOENT)
		return corrupt(g->db, &g->ref, "the index names a released segment");
	return kv_map_wal_error(status);
}

/* The record arrived: check, decode, hand the value over (borrowed for the callback). */
static void aget_read_done(void *arg, int status, size_t len, uint64_t seq)
{
	struct aget *g = arg;
	struct kv_db *db = g->db;
	struct kv_entry e;
	void *raw = NULL;
	const void *val;

	(void) seq;
	if (status == -ENOENT && g->relookups++ < MAX_RELOOKUPS) {
		free(g->rec);
		g->rec = NULL;
		g->may_queue = false; /* a poll runs this, not its aurakv_get_async() call */
		aget_start(g);	      /* GC released the segment: look the key up again */
		return;
	}
	if (status)
		return aget_finish(g, aget_error(g, status), NULL, 0);
	if (kv_entry_at(g->rec, len, g->ref.batch_off, g->ref.flags & KV_REF_BATCH, g->key, g->klen,
			&e) ||
	    e.op != KV_KIND_PUT)
		return aget_finish(g, corrupt(db, &g->ref, "the record does not hold this key"),
				   NULL, 0);
	val = e.val;
	if (e.flags & KV_VAL_LZ4) {
		if (!(raw = malloc(e.rawlen ? e.rawlen : 1)))
			return aget_finish(g, -ENOMEM, NULL, 0);
		if (kv_entry_value(&e, raw)) {
			free(raw);
			return aget_finish(g, corrupt(db, &g->ref, "bad compressed value"), NULL,
					   0);
		}
		val = raw;
	}
	kv_cache_put(db->cache, kv_cache_loc(&g->ref), val, e.rawlen);
	aget_finish(g, 0, val, e.rawlen);
	free(raw);
}

/* Look up and either answer at once or start the read. */
static void aget_start(struct aget *g)
{
	struct kv_db *db = g->db;
	void *val = NULL;
	size_t vlen = 0;
	int rc = kv_index_get(db->ix, g->key, g->klen, &g->ref);

	if (rc == -ENOENT || (rc == 0 && (g->ref.flags & KV_REF_TOMBSTONE))) {
		atomic_fetch_add_explicit(&db->n.get_misses, 1, memory_order_relaxed);
		return aget_answer(g, AURAKV_ENOTFOUND, NULL, 0);
	}
	if (rc == 0 && db->cache && !aurawal_failed(db->wal) &&
	    kv_cache_get_alloc(db->cache, kv_cache_loc(&g->ref), &val, &vlen) == 0)
		return aget_answer(g, 0, val, vlen);
	if (rc == 0 && !(g->rec = malloc(g->ref.size ? g->ref.size : 1)))
		rc = -ENOMEM;
	if (rc == 0)
		rc = aurawal_read_async(db->wal, kv_wal_loc(&g->ref), g->rec, g->ref.size,
					aget_read_done, g);
	if (rc == -ENOENT && g->relookups++ < MAX_RELOOKUPS) {
		free(g->rec);
		g->rec = NULL;
		return aget_start(g);
	}
	if (rc)
		aget_answer(g, aget_error(g, rc), NULL, 0);
}

static int aget_new(struct kv_db *db, const void *key, size_t klen, aurakv_get_cb cb, void *arg,
		    bool user)
{
	struct aget *g = malloc(sizeof(*g) + klen);

	if (!g)
		return -ENOMEM;
	/* Counted once here, as kv_read_entry counts a get: whatever its outcome, and not
	 * again when a released segment makes aget_start look the key up again. */
	atomic_fetch_add_explicit(&db->n.gets, 1, memory_order_relaxed);
	g->db = db;
	g->cb = cb;
	g->arg = arg;
	g->relookups = 0;
	g->user = user;
	g->may_queue = user;
	g->rec = NULL;
	g->klen = klen;
	memcpy(g->key, key, klen);
	aget_start(g);
	return 0;
}

int kv_get_async(struct kv_db *db, const void *key, size_t klen, aurakv_get_cb cb, void *arg)
{
	int rc;

	get_depth++;
	rc = aget_new(db, key, klen, cb, arg, true);
	if (get_depth == 1)
		queue_run(NULL); /* the outermost call: every answer queued below it */
	get_depth--;
	return rc;
}

/*
 * aurakv_poll(): the number of the application's callbacks run. The log's poll counts
 * every completion it delivers, and some are not the application's: a multi-get's reads
 * (of this thread or another: any poller delivers them) and a read that found its
 * segment released and only started another. Counting those made a caller that counts
 * its gets down by poll's result stop before its callbacks ran. Such a round is not
 * what the caller waited for: wait on (within timeout_ms) while anything is in flight.
 * A round that ran nothing ends the wait: the log's poll returns 0 only with nothing in
 * flight and none of this thread's gets' callbacks running elsewhere (or once one of
 * those has returned) - it sleeps meanwhile, so this loop never spins.
 */
int kv_poll(struct kv_db *db, int timeout_ms)
{
	unsigned long outer = user_cbs_run; /* the enclosing poll's count, if any */
	uint64_t deadline = kv_now_ns() + (uint64_t) (timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;

	unsigned long ran;
	int rc = 0;

	user_cbs_run = 0;
	queue_run(db); /* answers queued on this thread are ready: no wait then */
	while (user_cbs_run == 0) {
		uint64_t now;

		rc = aurawal_poll(db->wal, timeout_ms);
		if (rc < 0)
			break;
		queue_run(db); /* those the callbacks it ran queued */
		if (rc == 0 || user_cbs_run != 0 || timeout_ms == 0)
			break; /* nothing in flight or the time is up; or ours ran */
		if (timeout_ms > 0) {
			if ((now = kv_now_ns()) >= deadline)
				break;
			timeout_ms = (int) ((deadline - now + 999999) / 1000000);
		}
	}
	ran = user_cbs_run;
	user_cbs_run = outer;
	return rc < 0 ? kv_map_wal_error(rc) : (int) ran;
}

/* ---- multi-get: async gets kept `depth` deep ---- */

struct mget {
	void **vals;
	size_t *vlens;
	int *status;
	_Atomic size_t done;
	size_t seen; /* done when the multi-get last looked (its own thread only) */
};

struct mget_item {
	struct mget *m;
	size_t i;
};

static void mget_done(void *arg, int status, const void *val, size_t vlen)
{
	struct mget_item *it = arg;
	struct mget *m = it->m;

	m->vals[it->i] = NULL;
	m->vlens[it->i] = 0;
	if (status == 0) {
		if ((m->vals[it->i] = malloc(vlen ? vlen : 1))) {
			if (vlen)
				memcpy(m->vals[it->i], val, vlen);
			m->vlens[it->i] = vlen;
		} else {
			status = -ENOMEM;
		}
	}
	m->status[it->i] = status;
	/* Pairs with the acquire load in kv_multi_get: the results above are visible. */
	atomic_fetch_add_explicit(&m->done, 1, memory_order_release);
}

/* The multi-get's wait is over: one of its gets finished (in any thread). Asked by the
 * log under its lock, in the multi-get's thread. */
static bool mget_progress(void *arg)
{
	struct mget *m = arg;

	return atomic_load_explicit(&m->done, memory_order_acquire) != m->seen;
}

/*
 * Its gets' reads complete in whichever thread polls the log - another thread's
 * aurakv_poll may be running one's callback. Hence the wait is on its own counter
 * (aurawal_poll_until), not on the log having something in flight: a plain poll found
 * nothing left for it then and returned at once, and this loop spun until that callback
 * was over.
 */
int kv_multi_get(struct kv_db *db, size_t n, const void *const *keys, const size_t *klens,
		 void **vals, size_t *vlens, int *status, unsigned depth)
{
	struct mget m = { vals, vlens, status, 0, 0 };
	struct mget_item *items =
	    n <= SIZE_MAX / sizeof(*items) ? malloc(n * sizeof(*items)) : NULL;
	size_t issued = 0;

	if (!items)
		return -ENOMEM;
	if (depth == 0)
		depth = 32;
	/* The count is read once per turn, and the same value decides both whether there is
	 * room to issue and what the wait waits to see change: read twice, a get another
	 * thread completed in between left the wait on a count no get in flight would move. */
	for (;;) {
		size_t seen = atomic_load_explicit(&m.done, memory_order_acquire);

		if (seen >= n)
			break;
		if (issued < n && issued - seen < depth) {
			size_t i = issued++;
			int rc = kv_check_key(keys[i], klens[i]);

			items[i].m = &m;
			items[i].i = i;
			if (rc == 0)
				rc = aget_new(db, keys[i], klens[i], mget_done, &items[i], false);
			if (rc)
				mget_done(&items[i], rc, NULL, 0);
			continue;
		}
		/* issued - seen >= 1 gets in flight: each moves the count when it completes */
		m.seen = seen;
		if (db->test_mget_wait)
			db->test_mget_wait(db);
		aurawal_poll_until(db->wal, -1, mget_progress, &m);
	}
	free(items);
	return 0;
}

/* ---- ordered walk ---- */

int kv_foreach(struct kv_db *db, const void *start, size_t slen,
	       int (*cb)(void *, const void *, size_t, const void *, size_t), void *arg)
{
	struct kv_index_cursor *c = kv_index_cursor_open(db->ix, start, slen);
	uint8_t *key = malloc(KV_INDEX_MAX_KEY);
	struct kv_ref ref;
	size_t klen;
	int rc = (!c || !key) ? -ENOMEM : 0;

	while (rc == 0 && (rc = kv_index_cursor_next(c, key, &klen, &ref)) == 1) {
		void *val = NULL;
		size_t vlen = 0;

		if (ref.flags & KV_REF_TOMBSTONE) {
			rc = 0;
			continue;
		}
		/* Read through a fresh lookup: the cursor's copy may name a moved record. */
		rc = kv_read_entry(db, key, klen, &ref, &val, &vlen, NULL, 0);
		if (rc == AURAKV_ENOTFOUND) {
			rc = 0; /* deleted meanwhile */
			continue;
		}
		if (rc == 0)
			rc = cb(arg, key, klen, val, vlen);
		free(val);
	}
	kv_index_cursor_close(c);
	free(key);
	return rc;
}
