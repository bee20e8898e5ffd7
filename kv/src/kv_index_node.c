/* SPDX-License-Identifier: MIT */
/*
 * kv_index_node.c - the index's node pool, its encodings and the writer's view of a node
 * as a list of entries.
 *
 * The pool carves KVIX_NODE_SIZE nodes out of mmap'd slabs and never returns memory to
 * the system while the index lives: a reader may hold a pointer to a node that a writer
 * has just freed, and must be able to read it (and see its bumped version) without
 * faulting. Freed nodes go to a free list and are reused for any node type, including
 * the pages of out-of-line keys. The pool is used by writers only (under the writer
 * mutex), except the `mapped` counter.
 *
 * Everything here that writes nodes is called by a writer on a node it has locked
 * (kvix_lock) or on a node no reader can reach yet.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kv_index_internal.h"

#define SLAB_MIN (64u << 10)
#define SLAB_MAX (2u << 20) /* one transparent huge page: fewer TLB misses on lookups */

/* --- versions: the writer half of the protocol described in kv_index.c --- */

void kvix_lock(struct kvix_node *n)
{
	uint64_t v = atomic_load_explicit(&n->version, memory_order_relaxed);

	atomic_store_explicit(&n->version, v + 1, memory_order_relaxed);
	/* Orders the odd version before every change that follows. Pairs with the acquire
	 * fence in kvix_rd_valid(): a reader that read any byte written after this fence
	 * then sees the odd (or a later) version and discards what it read. */
	atomic_thread_fence(memory_order_release);
}

void kvix_unlock(struct kvix_node *n)
{
	uint64_t v = atomic_load_explicit(&n->version, memory_order_relaxed);

	/* Release: pairs with the acquire load in kvix_rd_begin(). A reader that sees this
	 * even version sees the node's new contents and every node published before. */
	atomic_store_explicit(&n->version, v + 1, memory_order_release);
}

/* --- the pool --- */

void kvix_pool_init(struct kvix_pool *p)
{
	memset(p, 0, sizeof(*p));
	atomic_init(&p->mapped, 0);
}

void kvix_pool_destroy(struct kvix_pool *p)
{
	struct kvix_slab *s, *next;

	for (s = p->slabs; s; s = next) {
		next = s->next;
		munmap(s, s->size);
	}
	p->slabs = NULL;
}

/* Map `size` bytes aligned to `size` (huge-page sized slabs must be aligned to be
 * backed by a huge page). */
static void *map_aligned(size_t size)
{
	uint8_t *m =
	    mmap(NULL, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t a;

	if (m == MAP_FAILED)
		return NULL;
	a = ((uintptr_t) m + size - 1) & ~((uintptr_t) size - 1);
	if (a > (uintptr_t) m)
		munmap(m, a - (uintptr_t) m);
	if (a + size < (uintptr_t) m + 2 * size)
		munmap((void *) (a + size), (uintptr_t) m + 2 * size - (a + size));
	return (void *) a;
}

/* A new slab; its first node holds the slab record. Slabs grow with the index (a
 * quarter of what is mapped, 64 KiB .. 2 MiB) so a small index stays small. */
static int pool_grow(struct kvix_pool *p)
{
	size_t mapped = atomic_load_explicit(&p->mapped, memory_order_relaxed);
	size_t size = SLAB_MIN;
	struct kvix_slab *s;

	while (size < SLAB_MAX && size < mapped / 4)
		size *= 2;
	s = p->fail ? NULL : map_aligned(size);
	if (!s)
		return -ENOMEM;
	if (size == SLAB_MAX)
		(void) madvise(s, size, MADV_HUGEPAGE); /* a hint; failure is harmless */
	s->size = size;
	s->next = p->slabs;
	p->slabs = s;
	p->cur = (uint8_t *) s + KVIX_NODE_SIZE;
	p->end = (uint8_t *) s + size;
	atomic_store_explicit(&p->mapped, mapped + size, memory_order_relaxed);
	return 0;
}

void kvix_pool_push(struct kvix_pool *p, struct kvix_node *n)
{
	n->link = p->free;
	p->free = n;
	p->nfree++;
}

/* Make sure `nodes` nodes can be allocated without touching the system. */
int kvix_pool_reserve(struct kvix_pool *p, size_t nodes)
{
	while (p->nfree < nodes) {
		struct kvix_node *n;

		if (p->cur == p->end && pool_grow(p) < 0)
			return -ENOMEM;
		n = (struct kvix_node *) p->cur; /* fresh from mmap: zeroed, version 0 */
		p->cur += KVIX_NODE_SIZE;
		kvix_pool_push(p, n);
	}
	return 0;
}

/* A node of `type`, empty. Its version is the one it had when freed (even, and higher
 * than any version a stale reader may hold), so versions never repeat. */
struct kvix_node *kvix_node_alloc(struct kvix_pool *p, uint8_t type)
{
	struct kvix_node *n;

	if (!p->free && kvix_pool_reserve(p, 1) < 0)
		return NULL;
	n = p->free;
	p->free = n->link;
	p->nfree--;
	n->type = type;
	n->pfx_len = 0;
	n->count = 0;
	n->heap = KVIX_NODE_SIZE;
	n->garbage = 0;
	n->link = NULL;
	n->back = NULL;
	return n;
}

/* Free a node no longer reachable from the tree. Bumping the version makes every reader
 * that still holds the node fail its validation. */
void kvix_node_free(struct kvix_pool *p, struct kvix_node *n)
{
	kvix_lock(n);
	n->type = KVIX_FREE;
	kvix_unlock(n);
	kvix_pool_push(p, n);
}

/* --- encodings --- */

static size_t vsize(uint64_t x)
{
	size_t n = 1;

	while (x >= 0x80) {
		x >>= 7;
		n++;
	}
	return n;
}

uint8_t *kvix_vput(uint8_t *p, uint64_t x)
{
	while (x >= 0x80) {
		*p++ = (uint8_t) (x | 0x80);
		x >>= 7;
	}
	*p++ = (uint8_t) x;
	return p;
}

size_t kvix_ref_size(const struct kv_ref *r)
{
	size_t n = 1 + vsize(r->version) + vsize(r->segment) + vsize(r->offset) + vsize(r->size);

	return n + ((r->flags & KV_REF_BATCH) ? vsize(r->batch_off) : 0);
}

uint8_t *kvix_ref_put(uint8_t *p, const struct kv_ref *r)
{
	*p++ = r->flags;
	p = kvix_vput(p, r->version);
	p = kvix_vput(p, r->segment);
	p = kvix_vput(p, r->offset);
	p = kvix_vput(p, r->size);
	if (r->flags & KV_REF_BATCH)
		p = kvix_vput(p, r->batch_off);
	return p;
}

size_t kvix_key_enc_size(size_t klen)
{
	return vsize(klen) + (klen <= KVIX_INLINE_MAX ? klen : KVIX_OVF_INLINE + 8);
}

/* The pages of an out-of-line key's tail; NULL (ENOMEM) after freeing what it took. */
static struct kvix_node *chain_alloc(struct kvix_pool *p, const uint8_t *data, size_t len)
{
	struct kvix_node *first = NULL, **prevp = &first;

	for (size_t off = 0; off < len; off += KVIX_OVF_DATA) {
		size_t n = len - off < KVIX_OVF_DATA ? len - off : KVIX_OVF_DATA;
		struct kvix_node *pg = kvix_node_alloc(p, KVIX_OVF);

		if (!pg) {
			kvix_chain_free(p, first);
			return NULL;
		}
		memcpy((uint8_t *) pg + KVIX_HDR, data + off, n);
		pg->count = (uint16_t) n;
		*prevp = pg;
		prevp = &pg->link;
	}
	return first;
}

void kvix_chain_free(struct kvix_pool *p, const struct kvix_node *first)
{
	struct kvix_node *pg = (struct kvix_node *) first, *next;

	for (; pg; pg = next) {
		next = pg->link;
		kvix_node_free(p, pg);
	}
}

/* Encode a key into dst (kvix_key_enc_size bytes); a long key gets its pages here. */
int kvix_key_encode(struct kv_index *ix, uint8_t *dst, const uint8_t *key, size_t klen)
{
	struct kvix_node *chain;

	dst = kvix_vput(dst, klen);
	if (klen <= KVIX_INLINE_MAX) {
		memcpy(dst, key, klen);
		return 0;
	}
	/* the pages come on top of what the operation reserved for its structure */
	if (kvix_pool_reserve(&ix->pool, ix->pool.keep + klen / KVIX_OVF_DATA + 1) < 0)
		return -ENOMEM;
	chain = chain_alloc(&ix->pool, key + KVIX_OVF_INLINE, klen - KVIX_OVF_INLINE);
	if (!chain)
		return -ENOMEM;
	memcpy(dst, key, KVIX_OVF_INLINE);
	memcpy(dst + KVIX_OVF_INLINE, &chain, sizeof(chain));
	return 0;
}

/* The whole key: its inline bytes, or a copy assembled in buf (KV_INDEX_MAX_KEY bytes).
 * Writers only (the pages are stable). */
const uint8_t *kvix_key_full(const struct kvix_key *k, uint8_t *buf)
{
	uint32_t at = k->inl;

	if (!k->ovf)
		return k->p;
	memcpy(buf, k->p, k->inl);
	for (const struct kvix_node *pg = k->ovf; pg && at < k->len; pg = pg->link) {
		memcpy(buf + at, (const uint8_t *) pg + KVIX_HDR, pg->count);
		at += pg->count;
	}
	return buf;
}

uint32_t kvix_lcp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
	uint32_t n = alen < blen ? alen : blen, i = 0;

	while (i < n && a[i] == b[i])
		i++;
	return i;
}

/* --- nodes as lists of entries (writers) --- */

size_t kvix_node_used(const struct kvix_node *n)
{
	return KVIX_HDR + KVIX_SLOT * n->count + (KVIX_NODE_SIZE - n->heap - n->garbage);
}

size_t kvix_list_bytes(const struct kvix_list *l, uint32_t from, uint32_t to)
{
	size_t b = 0;

	for (uint32_t i = from; i < to; i++)
		b += KVIX_SLOT + l->it[i].len;
	return b;
}

void kvix_item_key(const struct kvix_item *it, struct kvix_key *k)
{
	(void) kvix_key_decode(it->p, it->p + it->len, k);
}

struct kvix_node *kvix_item_child(const struct kvix_item *it)
{
	struct kvix_key k;
	struct kvix_node *c;

	kvix_item_key(it, &k);
	memcpy(&c, it->p + k.size, sizeof(c));
	return c;
}

/* The node prefix of a sorted run: the common prefix of its first and last keys. */
static uint32_t run_prefix(const struct kvix_item *it, uint32_t cnt)
{
	struct kvix_key a, b;
	uint32_t l;

	if (!cnt)
		return 0;
	kvix_item_key(&it[0], &a);
	kvix_item_key(&it[cnt - 1], &b);
	l = kvix_lcp(a.p, a.inl, b.p, b.inl);
	return l < KVIX_PFX_MAX ? l : KVIX_PFX_MAX;
}

/*
 * Rewrite node n (locked, or unreachable) to hold the cnt entries it[] in order, packed
 * in key order at the end of the node. Leaves keep their neighbour links; an inner
 * node gets link0 as its leftmost child. The entries must fit (callers check).
 */
void kvix_fill(struct kvix_node *n, uint8_t type, const struct kvix_item *it, uint32_t cnt,
	       struct kvix_node *link0)
{
	uint32_t total = 0, off, pfx = run_prefix(it, cnt);
	struct kvix_key k;

	for (uint32_t i = 0; i < cnt; i++)
		total += it[i].len;
	if (KVIX_HDR + KVIX_SLOT * cnt + total > KVIX_NODE_SIZE)
		abort(); /* a caller's size check is wrong: never write past a node */
	n->type = type;
	n->count = (uint16_t) cnt;
	n->heap = (uint16_t) (KVIX_NODE_SIZE - total);
	n->garbage = 0;
	n->pfx_len = (uint8_t) pfx;
	if (cnt) {
		kvix_item_key(&it[0], &k);
		memcpy(n->pfx, k.p, pfx);
	}
	off = n->heap;
	for (uint32_t i = 0; i < cnt; i++) {
		memcpy((uint8_t *) n + off, it[i].p, it[i].len);
		kvix_item_key(&it[i], &k);
		n->slot[i].off = (uint16_t) off;
		n->slot[i].head = kvix_head(k.p, k.inl, pfx);
		off += it[i].len;
	}
	if (type == KVIX_INNER) {
		n->link = link0;
		n->back = NULL;
	}
}

/* --- the writer's arena --- */

/* Reset the arena with room for `bytes`; the only place it can fail. */
int kvix_arena_reserve(struct kvix_arena *a, size_t bytes)
{
	a->used = 0;
	if (a->cap >= bytes)
		return 0;
	free(a->base);
	a->base = malloc(bytes);
	a->cap = a->base ? bytes : 0;
	return a->base ? 0 : -ENOMEM;
}

/* Never fails: kvix_w_scratch() reserved a proven upper bound before the operation. */
void *kvix_arena_alloc(struct kvix_arena *a, size_t bytes)
{
	void *p;

	bytes = (bytes + 15) & ~(size_t) 15;
	if (a->used + bytes > a->cap)
		abort(); /* the bound in kvix_w_scratch() is wrong */
	p = a->base + a->used;
	a->used += bytes;
	if (a->used > atomic_load_explicit(&a->peak, memory_order_relaxed))
		atomic_store_explicit(&a->peak, a->used, memory_order_relaxed);
	return p;
}

void kvix_list_init(struct kvix_arena *a, struct kvix_list *l, uint8_t type, uint32_t cap)
{
	l->it = kvix_arena_alloc(a, cap * sizeof(*l->it));
	l->n = 0;
	l->cap = cap;
	l->type = type;
	l->link0 = NULL;
}

/* Copy node n's entries into a new list with room for `extra` more. */
void kvix_gather(struct kvix_arena *a, const struct kvix_node *n, struct kvix_list *l,
		 uint32_t extra)
{
	uint32_t heap = n->heap;
	uint8_t *copy = kvix_arena_alloc(a, KVIX_NODE_SIZE - heap);

	kvix_list_init(a, l, n->type, n->count + extra);
	memcpy(copy, (const uint8_t *) n + heap, KVIX_NODE_SIZE - heap);
	for (uint32_t i = 0; i < n->count; i++) {
		const uint8_t *e = (const uint8_t *) n + n->slot[i].off;

		l->it[i].p = copy + (n->slot[i].off - heap);
		l->it[i].len = kvix_entry_len(n, e);
	}
	l->n = n->count;
	if (n->type == KVIX_INNER)
		l->link0 = n->link;
}

/* out = p with entries [at, at + nrem) replaced by add[0..nadd). */
void kvix_splice(struct kvix_arena *a, const struct kvix_list *p, uint32_t at, uint32_t nrem,
		 const struct kvix_item *add, uint32_t nadd, struct kvix_list *out)
{
	uint32_t tail = p->n - at - nrem;

	kvix_list_init(a, out, p->type, p->n - nrem + nadd);
	memcpy(out->it, p->it, at * sizeof(*p->it));
	if (nadd)
		memcpy(out->it + at, add, nadd * sizeof(*add));
	memcpy(out->it + at + nadd, p->it + at + nrem, tail * sizeof(*p->it));
	out->n = p->n - nrem + nadd;
	out->link0 = p->link0;
}
