/* SPDX-License-Identifier: MIT */
/*
 * kv_index_write.c - the index's writers: upsert, cas, remove_if, and the per-operation
 * context they share with kv_index_split.c and kv_index_merge.c.
 *
 * Every writer holds ix->wlock for the whole operation, so writers never race with each
 * other; they race only with readers. A writer locks (makes odd) every node before it
 * changes it and keeps it locked until the operation ends (kvix_w_end), so that a parent
 * is always locked before its changed child is unlocked: a reader that sees the child's
 * new version and then re-checks the parent finds the parent changed too. Nodes and
 * out-of-line key pages the operation removed are freed at the end, after the nodes
 * that pointed to them were locked.
 *
 * An operation first reserves everything a structural change may need (nodes, scratch
 * memory, pages of long keys) and returns -ENOMEM before changing anything if it cannot.
 * A removal reserves scratch memory only: its merges free nodes and never take one (it
 * reserved a split's nodes too, and so failed for want of nodes it would not use).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv_index_internal.h"

/* Scratch a structural change needs per level (see kv_index_split.c, _merge.c): copies
 * of up to six nodes, eight lists of up to two nodes' entries, cut prefix sums, and a
 * few separators; plus two whole keys to compute a separator between long keys. */
#define ITEMS_BOUND (2 * KVIX_MAX_ITEMS + 8)
#define LEVEL_SCRATCH                                                                              \
	(6 * KVIX_NODE_SIZE + 8 * ITEMS_BOUND * (sizeof(struct kvix_item) + 16) +                  \
	 4 * (KVIX_MAX_INNER_E + 16))

static void w_begin(struct kvix_w *w, struct kv_index *ix)
{
	w->ix = ix;
	w->h = 0;
	w->nlocked = 0;
	w->ndead = 0;
	w->nchains = 0;
	w->edge = 0;
	w->kbuf = NULL;
}

/* Reserve the scratch of a structural change: all that a shrinking one (kvix_remove_at)
 * needs, as merges only free nodes and move existing keys. */
int kvix_w_arena(struct kvix_w *w)
{
	size_t levels = (size_t) w->h + 1;

	return kvix_arena_reserve(&w->ix->arena,
				  levels * LEVEL_SCRATCH + 2 * KV_INDEX_MAX_KEY + 64);
}

/* Reserve the nodes and scratch of a growing change plus `pages` pages for keys. */
int kvix_w_scratch(struct kvix_w *w, size_t pages)
{
	struct kv_index *ix = w->ix;

	ix->pool.keep = (size_t) w->h + 2;
	if (kvix_pool_reserve(&ix->pool, ix->pool.keep + pages) < 0)
		return -ENOMEM;
	return kvix_w_arena(w);
}

/* Lock n for the rest of the operation (once). */
void kvix_w_lock(struct kvix_w *w, struct kvix_node *n)
{
	for (int i = w->nlocked - 1; i >= 0; i--)
		if (w->locked[i] == n)
			return;
	if (w->nlocked == KVIX_MAX_LOCKED)
		abort(); /* bounded by the tree height: cannot happen */
	kvix_lock(n);
	w->locked[w->nlocked++] = n;
}

/* n left the tree: free it when the operation ends (once: a node on the free list twice
 * would be handed out twice). */
void kvix_w_kill(struct kvix_w *w, struct kvix_node *n)
{
	for (int i = 0; i < w->ndead; i++)
		if (w->dead[i] == n)
			return;
	kvix_w_lock(w, n);
	w->dead[w->ndead++] = n;
}

/* The key of entry `it` left the tree: free its out-of-line pages at the end. */
void kvix_w_kill_chain(struct kvix_w *w, const struct kvix_item *it)
{
	struct kvix_key k;

	kvix_item_key(it, &k);
	if (k.ovf)
		w->dead_chain[w->nchains++] = k.ovf;
}

/* Unlock everything, then free what died: the nodes that pointed to it were locked
 * first, so no reader can validate a path to it any more. */
static void w_end(struct kvix_w *w)
{
	struct kvix_pool *p = &w->ix->pool;

	for (int i = 0; i < w->ndead; i++)
		w->dead[i]->type = KVIX_FREE;
	for (int i = 0; i < w->nlocked; i++)
		kvix_unlock(w->locked[i]);
	for (int i = 0; i < w->ndead; i++)
		kvix_pool_push(p, w->dead[i]);
	for (int i = 0; i < w->nchains; i++)
		kvix_chain_free(p, w->dead_chain[i]);
	p->keep = 0;
}

/* Record the path to key's leaf; *pos, *eq: where key is (or would be) in the leaf. */
static void w_descend(struct kvix_w *w, const uint8_t *key, uint32_t klen, uint32_t *pos, bool *eq)
{
	/* Relaxed: writers are ordered by the mutex. */
	struct kvix_node *n = atomic_load_explicit(&w->ix->root, memory_order_relaxed);
	int d = 0;

	for (;;) {
		w->pn[d] = n;
		(void) kvix_search(n, NULL, key, klen, pos, eq);
		if (n->type == KVIX_LEAF)
			break;
		w->pc[d] = (int) (*pos + *eq);
		n = kvix_child(n, (uint32_t) w->pc[d]);
		d++;
	}
	w->h = d + 1;
}

static struct kvix_node *w_leaf(struct kvix_w *w)
{
	return w->pn[w->h - 1];
}

static void leaf_ref(const struct kvix_node *n, uint32_t pos, struct kv_ref *r, uint32_t *ksize)
{
	const uint8_t *e = kvix_entry(n, pos);
	struct kvix_key k;

	(void) kvix_key_decode(e, (const uint8_t *) n + KVIX_NODE_SIZE, &k);
	(void) kvix_ref_get(e + k.size, (const uint8_t *) n + KVIX_NODE_SIZE, r);
	*ksize = k.size;
}

/* Insert entry e at pos in place, if there is room and its key shares the prefix. */
static bool leaf_insert_fast(struct kvix_w *w, struct kvix_node *n, uint32_t pos, const uint8_t *e,
			     uint32_t len)
{
	uint32_t cnt = n->count, pl = n->pfx_len;
	struct kvix_key k;

	if (n->heap < KVIX_HDR + KVIX_SLOT * (cnt + 1) + len)
		return false;
	(void) kvix_key_decode(e, e + len, &k);
	if (kvix_lcp(k.p, k.inl, n->pfx, pl) < pl)
		return false;
	kvix_w_lock(w, n);
	n->heap = (uint16_t) (n->heap - len);
	memcpy((uint8_t *) n + n->heap, e, len);
	memmove(&n->slot[pos + 1], &n->slot[pos], (cnt - pos) * KVIX_SLOT);
	n->slot[pos].off = n->heap;
	n->slot[pos].head = kvix_head(k.p, k.inl, pl);
	n->count = (uint16_t) (cnt + 1);
	return true;
}

/* The leaf's entries with e at pos, inserted (ins) or replacing the entry there. */
static void leaf_list(struct kvix_w *w, struct kvix_list *l, uint32_t pos, const uint8_t *e,
		      uint32_t len, bool ins)
{
	struct kvix_node *n = w_leaf(w);

	kvix_gather(&w->ix->arena, n, l, 1);
	if (ins) {
		memmove(&l->it[pos + 1], &l->it[pos], (l->n - pos) * sizeof(*l->it));
		l->n++;
	}
	l->it[pos].p = e;
	l->it[pos].len = len;
}

static int w_insert(struct kvix_w *w, uint32_t pos, const uint8_t *key, uint32_t klen,
		    const struct kv_ref *ref)
{
	struct kvix_node *n = w_leaf(w);
	size_t ks = kvix_key_enc_size(klen), pages = 0;
	uint32_t len = (uint32_t) (ks + kvix_ref_size(ref));
	struct kvix_list l;
	uint8_t *e;
	int rc;

	if (klen > KVIX_INLINE_MAX)
		pages = (klen - KVIX_OVF_INLINE + KVIX_OVF_DATA - 1) / KVIX_OVF_DATA;
	rc = kvix_w_scratch(w, pages);
	if (rc < 0)
		return rc;
	e = kvix_arena_alloc(&w->ix->arena, len);
	rc = kvix_key_encode(w->ix, e, key, klen);
	if (rc < 0)
		return rc;
	kvix_ref_put(e + ks, ref);
	if (leaf_insert_fast(w, n, pos, e, len))
		return 0;
	leaf_list(w, &l, pos, e, len, true);
	w->edge = pos == n->count ? 1 : pos == 0 ? -1 : 0;
	rc = kvix_put(w, w->h - 1, &l);
	if (rc < 0) {
		struct kvix_item it = { e, len };

		kvix_w_kill_chain(w, &it); /* the tree is unchanged: give the pages back */
	}
	return rc;
}

/* Replace the ref of the entry at pos (its key stays). */
static int w_replace(struct kvix_w *w, uint32_t pos, const struct kv_ref *ref)
{
	struct kvix_node *n = w_leaf(w);
	uint8_t *e = (uint8_t *) kvix_entry(n, pos), *ne;
	uint32_t olen = kvix_entry_len(n, e), ks, len;
	struct kvix_list l;
	struct kv_ref old;
	int rc;

	leaf_ref(n, pos, &old, &ks);
	len = (uint32_t) (ks + kvix_ref_size(ref));
	if (len <= olen || n->heap >= KVIX_HDR + KVIX_SLOT * n->count + len) {
		kvix_w_lock(w, n);
		if (len > olen) {
			n->heap = (uint16_t) (n->heap - len);
			memcpy((uint8_t *) n + n->heap, e, ks);
			n->slot[pos].off = n->heap;
			e = (uint8_t *) n + n->heap;
		}
		kvix_ref_put(e + ks, ref);
		n->garbage = (uint16_t) (n->garbage + (len > olen ? olen : olen - len));
		return 0;
	}
	rc = kvix_w_scratch(w, 0);
	if (rc < 0)
		return rc;
	ne = kvix_arena_alloc(&w->ix->arena, len);
	memcpy(ne, e, ks);
	kvix_ref_put(ne + ks, ref);
	leaf_list(w, &l, pos, ne, len, false);
	return kvix_put(w, w->h - 1, &l);
}

static bool bad_key(const struct kv_index *ix, const void *key, size_t klen)
{
	return !ix || !key || klen == 0 || klen > KV_INDEX_MAX_KEY;
}

static int w_upsert(struct kvix_w *w, const void *key, uint32_t klen, const struct kv_ref *ref,
		    struct kv_ref *old, bool *had_old)
{
	struct kv_ref ex;
	uint32_t pos, ks;
	bool eq;
	int rc;

	w_descend(w, key, klen, &pos, &eq);
	if (!eq) {
		rc = w_insert(w, pos, key, klen, ref);
		if (rc < 0)
			return rc;
		atomic_fetch_add_explicit(&w->ix->count, 1, memory_order_relaxed);
		return 1;
	}
	leaf_ref(w_leaf(w), pos, &ex, &ks);
	if (ref->version <= ex.version)
		return 0;
	rc = w_replace(w, pos, ref);
	if (rc < 0)
		return rc;
	if (old)
		*old = ex;
	if (had_old)
		*had_old = true;
	return 1;
}

int kv_index_upsert(struct kv_index *ix, const void *key, size_t klen, const struct kv_ref *ref,
		    struct kv_ref *old, bool *had_old)
{
	struct kvix_w w;
	int rc;

	if (had_old)
		*had_old = false;
	if (bad_key(ix, key, klen) || !ref)
		return -EINVAL;
	pthread_mutex_lock(&ix->wlock);
	w_begin(&w, ix);
	rc = w_upsert(&w, key, (uint32_t) klen, ref, old, had_old);
	w_end(&w);
	pthread_mutex_unlock(&ix->wlock);
	return rc;
}

/* Find key; 1 if it exists and points where expect does (then *pos is its slot). */
static int w_find_expect(struct kvix_w *w, const void *key, uint32_t klen,
			 const struct kv_ref *expect, uint32_t *pos)
{
	struct kv_ref ex;
	uint32_t ks;
	bool eq;

	w_descend(w, key, klen, pos, &eq);
	if (!eq)
		return 0;
	leaf_ref(w_leaf(w), *pos, &ex, &ks);
	return ex.segment == expect->segment && ex.offset == expect->offset;
}

int kv_index_cas(struct kv_index *ix, const void *key, size_t klen, const struct kv_ref *expect,
		 const struct kv_ref *repl)
{
	struct kvix_w w;
	uint32_t pos;
	int rc;

	if (bad_key(ix, key, klen) || !expect || !repl)
		return -EINVAL;
	pthread_mutex_lock(&ix->wlock);
	w_begin(&w, ix);
	rc = w_find_expect(&w, key, (uint32_t) klen, expect, &pos);
	if (rc == 1) {
		rc = w_replace(&w, pos, repl);
		rc = rc < 0 ? rc : 1;
	}
	w_end(&w);
	pthread_mutex_unlock(&ix->wlock);
	return rc;
}

int kv_index_remove_if(struct kv_index *ix, const void *key, size_t klen,
		       const struct kv_ref *expect)
{
	struct kvix_w w;
	uint32_t pos;
	int rc;

	if (bad_key(ix, key, klen) || !expect)
		return -EINVAL;
	pthread_mutex_lock(&ix->wlock);
	w_begin(&w, ix);
	rc = w_find_expect(&w, key, (uint32_t) klen, expect, &pos);
	if (rc == 1) {
		rc = kvix_remove_at(&w, pos);
		if (rc == 0) {
			atomic_fetch_sub_explicit(&ix->count, 1, memory_order_relaxed);
			rc = 1;
		}
	}
	w_end(&w);
	pthread_mutex_unlock(&ix->wlock);
	return rc;
}
