/* SPDX-License-Identifier: MIT */
/*
 * kv_index_internal.h - what the kv_index*.c files share: the node layout, the entry
 * encoding, the node pool, the reader primitives the writers reuse, and the writer's
 * per-operation context. Nothing here leaves the kv layer.
 *
 * Files: kv_index.c (lifecycle, the concurrency protocol), kv_index_node.c (pool,
 * encoding, overflow pages, filling nodes), kv_index_read.c (optimistic readers: get,
 * cursors), kv_index_write.c (upsert, cas, remove_if), kv_index_split.c (overflow:
 * redistribution and splits), kv_index_merge.c (underflow: merges, freeing nodes),
 * kv_index_bulk.c (bottom-up bulk load).
 *
 * Node (KVIX_NODE_SIZE bytes, every type; offsets from the node's first byte):
 *
 *   0  version   u64, C11 atomic; odd while a writer changes the node
 *   8  type      u8   KVIX_FREE / KVIX_LEAF / KVIX_INNER / KVIX_OVF
 *   9  pfx_len   u8   length of pfx[], the common prefix of the node's keys (<= 16)
 *  10  count     u16  slots (leaf: entries, inner: separators; ovf: data bytes)
 *  12  heap      u16  offset of the lowest entry byte; entries fill [heap, NODE_SIZE)
 *  14  garbage   u16  bytes in [heap, NODE_SIZE) that no slot points to
 *  16  link      ptr  leaf: right neighbour; inner: leftmost child; ovf: next page;
 *                     free: next free node
 *  24  back      ptr  leaf: left neighbour (read by writers only)
 *  32  pfx[16]
 *  48  slot[count]    { u16 off; u16 head } in key order; head = the two key bytes
 *                     after the prefix (big-endian, 0-padded), so that a binary search
 *                     touches only the slot array until two heads are equal
 *
 * Entry: varint klen, then the key: klen <= KVIX_INLINE_MAX: the klen bytes; longer:
 * its first KVIX_OVF_INLINE bytes and an 8-byte pointer to a chain of KVIX_OVF pages
 * holding the rest (count bytes each at KVIX_HDR, linked by link). Then
 *   leaf:  flags u8, varint version, segment, offset, size, [batch_off if KV_REF_BATCH]
 *   inner: the 8-byte pointer to the child right of this separator.
 * Varints are LEB128. Pointers are stored unaligned (memcpy).
 */
#ifndef AURAKV_INDEX_INTERNAL_H
#define AURAKV_INDEX_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv_index.h"

#define KVIX_NODE_SIZE	4096u
#define KVIX_HDR	48u
#define KVIX_BODY	(KVIX_NODE_SIZE - KVIX_HDR)
#define KVIX_SLOT	4u
#define KVIX_PFX_MAX	16u
#define KVIX_INLINE_MAX 960u /* ~1/4 node: four of the largest entries always fit */
#define KVIX_OVF_INLINE 32u  /* bytes of an out-of-line key kept in its entry */
#define KVIX_OVF_DATA	(KVIX_NODE_SIZE - KVIX_HDR)
#define KVIX_MAX_SLOTS	(KVIX_BODY / KVIX_SLOT)
#define KVIX_MAX_DEPTH	32
/* largest leaf entry: klen varint, key, flags, version and segment (64-bit varints),
 * offset, size, batch_off (32-bit varints) */
#define KVIX_MAX_LEAF_E	 (3 + KVIX_INLINE_MAX + 1 + 2 * 10 + 3 * 5)
#define KVIX_MAX_INNER_E (3 + KVIX_INLINE_MAX + 8)     /* largest inner entry */
#define KVIX_MAX_ITEMS	 (KVIX_BODY / (KVIX_SLOT + 7)) /* smallest entry: 7 bytes */
#define KVIX_RETRY	 1			       /* reader: start again */
_Static_assert(4 * (KVIX_MAX_LEAF_E + KVIX_SLOT) <= KVIX_BODY,
	       "four of the largest leaf entries fit in a node");

enum { KVIX_FREE = 0, KVIX_LEAF = 1, KVIX_INNER = 2, KVIX_OVF = 3 };

struct kvix_slot {
	uint16_t off;
	uint16_t head;
};

struct kvix_node {
	_Atomic uint64_t version;
	uint8_t type;
	uint8_t pfx_len;
	uint16_t count;
	uint16_t heap;
	uint16_t garbage;
	struct kvix_node *link;
	struct kvix_node *back;
	uint8_t pfx[KVIX_PFX_MAX];
	struct kvix_slot slot[];
};

/*
 * Readers read node contents while writers change them. These functions do so by
 * design and are excluded from ThreadSanitizer: TSan cannot know that every value read
 * here is discarded unless the node's version is unchanged afterwards (kvix_rd_valid),
 * which is what makes the reads correct. They call no libc string functions (TSan
 * intercepts those), only inlined loads.
 */
#define KVIX_RACY __attribute__((no_sanitize("thread")))

/*
 * gcc's -Wtsan: ThreadSanitizer does not model atomic_thread_fence(). The two fences of
 * the protocol (kvix_lock, kvix_rd_valid) order the racy reads of KVIX_RACY functions,
 * which TSan does not instrument; what TSan does check, the hand-over from a writer to
 * readers, goes through the version's release store and acquire load, which it models.
 */
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif

/* Read a racy scalar exactly once: the compiler may not re-load it after a bounds check. */
#define KVIX_ONCE(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
/* Make a value opaque to the optimizer: it can neither be re-derived from memory nor a
 * copy loop be turned into a memcpy() call (which TSan would intercept). */
#define KVIX_OPAQUE(x) __asm__("" : "+r"(x))

/* A decoded key inside a node (or a gathered entry). */
struct kvix_key {
	const uint8_t *p;	     /* the inline bytes */
	uint32_t len;		     /* the key's length */
	uint32_t inl;		     /* bytes at p: len, or KVIX_OVF_INLINE if out of line */
	const struct kvix_node *ovf; /* pages holding key[inl..len), or NULL */
	uint32_t size;		     /* bytes of the key's encoding */
};

/* What a reader validates before following a pointer it read: node n at version v.
 * NULL: the caller is a writer (holds the writer mutex), nothing can change. */
struct kvix_rv {
	const struct kvix_node *n;
	uint64_t v;
};

/* Node pool: nodes are carved from mmap'd slabs and never unmapped while the index
 * lives (type-stable memory); freed nodes go to a free list. Writers only, except
 * `mapped`, which kv_index_memory() may read from any thread. */
struct kvix_slab {
	struct kvix_slab *next;
	size_t size;
};

struct kvix_pool {
	struct kvix_slab *slabs;
	uint8_t *cur, *end; /* the part of the newest slab not yet carved */
	struct kvix_node *free;
	size_t nfree;
	size_t keep; /* nodes the current operation reserved for its structure */
	atomic_size_t mapped;
	bool fail; /* tests only: refuse to map more memory (-ENOMEM) */
};

/* A writer's list of entries (copies of encoded entries), the wanted content of a node. */
struct kvix_item {
	const uint8_t *p;
	uint32_t len;
};

struct kvix_list {
	struct kvix_item *it;
	uint32_t n, cap;
	uint8_t type;		 /* KVIX_LEAF or KVIX_INNER */
	struct kvix_node *link0; /* inner: leftmost child */
};

/* Writer scratch memory: a bump allocator reset by every operation, sized before the
 * operation changes anything so that nothing can fail half-way. */
struct kvix_arena {
	uint8_t *base;
	size_t cap, used;
	atomic_size_t peak; /* most bytes ever used: what was touched (kv_index_memory) */
};

struct kvix_bulk;

struct kv_index {
	_Atomic(struct kvix_node *) root; /* release-stored by writers, acquire-loaded */
	atomic_size_t count;		  /* entries; relaxed (a statistic) */
	pthread_mutex_t wlock;		  /* serializes writers */
	int height;			  /* levels, 1 = the root is a leaf; writers only */
	struct kvix_pool pool;
	struct kvix_arena arena;
	struct kvix_bulk *bulk;
};

/* The writer's per-operation context: the descent path and the nodes it locked. */
#define KVIX_MAX_LOCKED (4 * KVIX_MAX_DEPTH + 8)

struct kvix_w {
	struct kv_index *ix;
	int h;				      /* path length (= ix->height) */
	struct kvix_node *pn[KVIX_MAX_DEPTH]; /* path, root first, leaf last */
	int pc[KVIX_MAX_DEPTH];		      /* child index taken at pn[d] */
	struct kvix_node *locked[KVIX_MAX_LOCKED];
	int nlocked;
	struct kvix_node *dead[KVIX_MAX_LOCKED]; /* nodes to free at the end */
	int ndead;
	const struct kvix_node *dead_chain[KVIX_MAX_LOCKED]; /* overflow chains to free */
	int nchains;
	int edge;      /* the change at the current level adds at the end of its node (1),
			* at its start (-1), elsewhere (0) */
	uint8_t *kbuf; /* 2 * KV_INDEX_MAX_KEY bytes to assemble long keys, or NULL */
};

static inline uint16_t kvix_head(const uint8_t *k, uint32_t len, uint32_t pfx)
{
	uint16_t h = 0;

	if (len > pfx)
		h = (uint16_t) (k[pfx] << 8);
	if (len > pfx + 1)
		h |= k[pfx + 1];
	return h;
}

/* kv_index_node.c: versions (the writer half of the protocol) */
void kvix_lock(struct kvix_node *n);
void kvix_unlock(struct kvix_node *n);

/* kv_index_node.c: pool */
void kvix_pool_init(struct kvix_pool *p);
void kvix_pool_destroy(struct kvix_pool *p);
int kvix_pool_reserve(struct kvix_pool *p, size_t nodes);
struct kvix_node *kvix_node_alloc(struct kvix_pool *p, uint8_t type);
void kvix_node_free(struct kvix_pool *p, struct kvix_node *n);
void kvix_pool_push(struct kvix_pool *p, struct kvix_node *n);

/* kv_index_node.c: encodings */
uint8_t *kvix_vput(uint8_t *p, uint64_t x);
size_t kvix_ref_size(const struct kv_ref *r);
uint8_t *kvix_ref_put(uint8_t *p, const struct kv_ref *r);
size_t kvix_key_enc_size(size_t klen);
int kvix_key_encode(struct kv_index *ix, uint8_t *dst, const uint8_t *key, size_t klen);
void kvix_chain_free(struct kvix_pool *p, const struct kvix_node *first);
const uint8_t *kvix_key_full(const struct kvix_key *k, uint8_t *buf);
uint32_t kvix_lcp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen);

/* kv_index_node.c: nodes as lists (writers) */
size_t kvix_node_used(const struct kvix_node *n);
size_t kvix_list_bytes(const struct kvix_list *l, uint32_t from, uint32_t to);
void kvix_item_key(const struct kvix_item *it, struct kvix_key *k);
struct kvix_node *kvix_item_child(const struct kvix_item *it);
void kvix_fill(struct kvix_node *n, uint8_t type, const struct kvix_item *it, uint32_t cnt,
	       struct kvix_node *link0);
int kvix_arena_reserve(struct kvix_arena *a, size_t bytes);
void *kvix_arena_alloc(struct kvix_arena *a, size_t bytes);
void kvix_list_init(struct kvix_arena *a, struct kvix_list *l, uint8_t type, uint32_t cap);
void kvix_gather(struct kvix_arena *a, const struct kvix_node *n, struct kvix_list *l,
		 uint32_t extra);
void kvix_splice(struct kvix_arena *a, const struct kvix_list *p, uint32_t at, uint32_t nrem,
		 const struct kvix_item *add, uint32_t nadd, struct kvix_list *out);

/* kv_index_read.c: decoding, shared with writers (who pass rv NULL) */
int kvix_key_decode(const uint8_t *e, const uint8_t *end, struct kvix_key *k);
const uint8_t *kvix_ref_get(const uint8_t *p, const uint8_t *end, struct kv_ref *r);
const uint8_t *kvix_entry(const struct kvix_node *n, uint32_t i);
uint32_t kvix_entry_len(const struct kvix_node *n, const uint8_t *e);
struct kvix_node *kvix_child(const struct kvix_node *n, uint32_t i);
int kvix_search(const struct kvix_node *n, const struct kvix_rv *rv, const uint8_t *key,
		uint32_t klen, uint32_t *pos, bool *eq);

/* kv_index_write.c: the operation context */
int kvix_w_scratch(struct kvix_w *w, size_t pages);
int kvix_w_arena(struct kvix_w *w);
void kvix_w_lock(struct kvix_w *w, struct kvix_node *n);
void kvix_w_kill(struct kvix_w *w, struct kvix_node *n);
void kvix_w_kill_chain(struct kvix_w *w, const struct kvix_item *it);

/* kv_index_split.c: growing */
int kvix_put(struct kvix_w *w, int d, struct kvix_list *l);
void kvix_combine(struct kvix_w *w, int d, const struct kvix_list *a, const struct kvix_list *b,
		  uint32_t i, struct kvix_list *all);

/* kv_index_merge.c: shrinking */
int kvix_shrunk(struct kvix_w *w, int d, struct kvix_list *l);
int kvix_remove_at(struct kvix_w *w, uint32_t pos);
void kvix_leaf_link_after(struct kvix_w *w, struct kvix_node *x, struct kvix_node *z);
void kvix_leaf_unlink(struct kvix_w *w, struct kvix_node *x);

#endif
