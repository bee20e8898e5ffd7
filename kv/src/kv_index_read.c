/* SPDX-License-Identifier: MIT */
/*
 * kv_index_read.c - the index's readers: point lookups and cursors, and the node
 * decoding both they and the writers use.
 *
 * Readers write no shared memory. They follow the optimistic protocol described in
 * kv_index.c: read a node's version (waiting while it is odd), read what they need,
 * re-check the version, start again from the root if it moved. Everything read from a
 * node may be a mix of old and new bytes until that check passes, so every offset,
 * length and count is bounds-checked against the node before it is used, every loop is
 * bounded, and a pointer read from a node is followed only after the node was
 * re-validated (it may otherwise be any eight bytes).
 *
 * The functions that read node contents carry KVIX_RACY (no_sanitize("thread")): the
 * version check is what makes those reads safe, and ThreadSanitizer cannot see that.
 * They use only inlined loads (no memcpy/memcmp calls, which TSan intercepts).
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "kv_index_internal.h"

#define MAX_PAGES  (KV_INDEX_MAX_KEY / KVIX_OVF_DATA + 2)
#define STEP_RETRY 2 /* cursor: internal "start this step again" */
/* Slots whose cache lines are fetched with the header, before the count is known:
 * a leaf of 16-byte keys holds about 130. */
#define PREFETCH_SLOTS ((10 * 64 - KVIX_HDR) / KVIX_SLOT)

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* A node's version once it is even. Acquire: pairs with the release store in
 * kvix_unlock(), so the contents read next are at least as new as this version. */
static inline uint64_t kvix_rd_begin(const struct kvix_node *n)
{
	unsigned spins = 0;
	uint64_t v;

	while ((v = atomic_load_explicit(&n->version, memory_order_acquire)) & 1) {
		if (++spins < 256) {
			cpu_relax();
		} else {
			spins = 0;
			sched_yield(); /* the writer may have been preempted */
		}
	}
	return v;
}

/* True if the node is still at version v: then everything read from it since
 * kvix_rd_begin() returned v is a consistent copy. The acquire fence keeps those reads
 * before the version load; it pairs with the release fence in kvix_lock(). */
static inline bool kvix_rd_valid(const struct kvix_node *n, uint64_t v)
{
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&n->version, memory_order_relaxed) == v;
}

static inline bool rv_ok(const struct kvix_rv *rv)
{
	return !rv || kvix_rd_valid(rv->n, rv->v);
}

/* --- racy byte access: inlined loads only --- */

KVIX_RACY static inline uint64_t ld_be64(const uint8_t *p)
{
	uint64_t x;

	__builtin_memcpy(&x, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	x = __builtin_bswap64(x);
#endif
	return x;
}

/* memcmp() of n bytes, either of which may be changing. */
KVIX_RACY static int rcmp(const uint8_t *a, const uint8_t *b, uint32_t n)
{
	uint32_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t x = ld_be64(a + i), y = ld_be64(b + i);

		if (x != y)
			return x < y ? -1 : 1;
	}
	for (; i < n; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return 0;
}

/* memcpy() from memory that may be changing. */
KVIX_RACY static void rcopy(uint8_t *dst, const uint8_t *src, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		__builtin_memcpy(&w, src + i, 8);
		KVIX_OPAQUE(w);
		__builtin_memcpy(dst + i, &w, 8);
	}
	for (; i < n; i++) {
		uint8_t b = src[i];

		KVIX_OPAQUE(b);
		dst[i] = b;
	}
}

KVIX_RACY static const uint8_t *vget(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
	uint64_t x = 0;

	if (p < end && *p < 0x80) { /* the common case: one byte */
		x = *p;
		KVIX_OPAQUE(x);
		*out = x;
		return p + 1;
	}

	for (unsigned s = 0; s < 70 && p < end; s += 7) {
		uint8_t b = *p++;

		x |= (uint64_t) (b & 0x7f) << s;
		if (!(b & 0x80)) {
			KVIX_OPAQUE(x);
			*out = x;
			return p;
		}
	}
	return NULL;
}

KVIX_RACY static const uint8_t *vget32(const uint8_t *p, const uint8_t *end, uint32_t *out)
{
	uint64_t x;

	p = vget(p, end, &x);
	if (!p || x > UINT32_MAX)
		return NULL;
	*out = (uint32_t) x;
	return p;
}

/* --- decoding (readers and writers) --- */

/* Decode the key encoding at e (end: the end of the node). 0, or -1 if inconsistent. */
KVIX_RACY int kvix_key_decode(const uint8_t *e, const uint8_t *end, struct kvix_key *k)
{
	const uint8_t *p;
	uint64_t len;

	p = vget(e, end, &len);
	if (!p || len == 0 || len > KV_INDEX_MAX_KEY)
		return -1;
	k->p = p;
	k->len = (uint32_t) len;
	if (len <= KVIX_INLINE_MAX) {
		if (len > (uint64_t) (end - p))
			return -1;
		k->inl = (uint32_t) len;
		k->ovf = NULL;
	} else {
		if (end - p < (ptrdiff_t) (KVIX_OVF_INLINE + 8))
			return -1;
		k->inl = KVIX_OVF_INLINE;
		__builtin_memcpy(&k->ovf, p + KVIX_OVF_INLINE, sizeof(k->ovf));
		KVIX_OPAQUE(k->ovf);
	}
	k->size = (uint32_t) (p - e) + k->inl + (k->ovf ? 8 : 0);
	return 0;
}

/* Decode a leaf entry's ref at p into *r; the end of the ref, or NULL if inconsistent. */
KVIX_RACY const uint8_t *kvix_ref_get(const uint8_t *p, const uint8_t *end, struct kv_ref *r)
{
	if (p >= end)
		return NULL;
	r->flags = *p++;
	p = vget(p, end, &r->version);
	p = p ? vget(p, end, &r->segment) : NULL;
	p = p ? vget32(p, end, &r->offset) : NULL;
	p = p ? vget32(p, end, &r->size) : NULL;
	r->batch_off = 0;
	if (p && (r->flags & KV_REF_BATCH))
		p = vget32(p, end, &r->batch_off);
	return p;
}

/* Entry i's first byte, or NULL if its slot is out of bounds. */
KVIX_RACY const uint8_t *kvix_entry(const struct kvix_node *n, uint32_t i)
{
	uint32_t off = KVIX_ONCE(n->slot[i].off);

	if (off < KVIX_HDR || off >= KVIX_NODE_SIZE)
		return NULL;
	return (const uint8_t *) n + off;
}

/* Bytes of the entry at e in node n (0 if inconsistent). */
KVIX_RACY uint32_t kvix_entry_len(const struct kvix_node *n, const uint8_t *e)
{
	const uint8_t *end = (const uint8_t *) n + KVIX_NODE_SIZE;
	struct kvix_key k;
	struct kv_ref r;
	const uint8_t *p;

	if (kvix_key_decode(e, end, &k))
		return 0;
	if (KVIX_ONCE(n->type) == KVIX_INNER)
		return k.size + 8 <= (uint32_t) (end - e) ? k.size + 8 : 0;
	p = kvix_ref_get(e + k.size, end, &r);
	return p ? (uint32_t) (p - e) : 0;
}

/* Child i of inner node n (0: the leftmost), or NULL if inconsistent. */
KVIX_RACY struct kvix_node *kvix_child(const struct kvix_node *n, uint32_t i)
{
	const uint8_t *end = (const uint8_t *) n + KVIX_NODE_SIZE, *e;
	struct kvix_node *c;
	struct kvix_key k;

	if (i == 0)
		return KVIX_ONCE(((struct kvix_node *) n)->link);
	e = kvix_entry(n, i - 1);
	if (!e || kvix_key_decode(e, end, &k) || k.size + 8 > (uint32_t) (end - e))
		return NULL;
	__builtin_memcpy(&c, e + k.size, sizeof(c));
	KVIX_OPAQUE(c);
	return c;
}

/* --- comparing --- */

/* Compare s (slen bytes, the caller's) with the tail of a key in pages pg (len bytes).
 * Validates rv before following each page pointer. */
KVIX_RACY static int chain_cmp(const uint8_t *s, uint32_t slen, uint32_t len,
			       const struct kvix_node *pg, const struct kvix_rv *rv, int *res)
{
	uint32_t at = 0;

	for (unsigned i = 0; at < len && at < slen; i++) {
		uint32_t cnt, n;
		int c;

		if (i >= MAX_PAGES || !pg || !rv_ok(rv))
			return -1;
		cnt = KVIX_ONCE(((struct kvix_node *) pg)->count);
		if (cnt == 0 || cnt > KVIX_OVF_DATA)
			return -1;
		n = cnt < slen - at ? cnt : slen - at;
		c = rcmp(s + at, (const uint8_t *) pg + KVIX_HDR, n);
		if (c) {
			*res = c;
			return 0;
		}
		at += n;
		pg = KVIX_ONCE(((struct kvix_node *) pg)->link);
	}
	*res = slen < len ? -1 : slen > len ? 1 : 0;
	return 0;
}

/* *res = compare(s, key k). 0, or -1 if what was read is inconsistent. */
KVIX_RACY static int key_cmp(const uint8_t *s, uint32_t slen, const struct kvix_key *k,
			     const struct kvix_rv *rv, int *res)
{
	uint32_t n = slen < k->inl ? slen : k->inl;
	int c = rcmp(s, k->p, n);

	if (c || !k->ovf || slen <= k->inl) {
		*res = c ? c : slen < k->len ? -1 : slen > k->len ? 1 : 0;
		return 0;
	}
	return chain_cmp(s + k->inl, slen - k->inl, k->len - k->inl, k->ovf, rv, res);
}

/* Where key falls relative to the node's prefix: -1 before every key, 1 after every
 * key, 0 shares it. */
KVIX_RACY static int pfx_side(const struct kvix_node *n, uint32_t pl, const uint8_t *key,
			      uint32_t klen)
{
	int c = rcmp(key, n->pfx, klen < pl ? klen : pl);

	if (c < 0 || (c == 0 && klen < pl))
		return -1;
	return c > 0;
}

/* The first slot in [0, cnt) whose head is >= h. Branch-free: the probes of a binary
 * search are unpredictable, a conditional move is not. */
KVIX_RACY static uint32_t heads_lower_bound(const struct kvix_node *n, uint32_t cnt, uint16_t h)
{
	const struct kvix_slot *b = n->slot;

	if (!cnt)
		return 0;
	while (cnt > 1) {
		uint32_t half = cnt / 2;

		b = KVIX_ONCE(b[half].head) < h ? b + half : b;
		cnt -= half;
	}
	return (uint32_t) (b - n->slot) + (KVIX_ONCE(b->head) < h);
}

/*
 * Among the slots whose head equals the key's, [lo, hi), binary search on whole keys.
 * The run is usually one slot, but keys that share more than the node's prefix plus two
 * bytes (`tenant/acme/users/%010u`: every head is "s/") make it the whole node: a
 * linear scan there cost 3x per get (1358 vs 461 ns, 1M keys).
 */
KVIX_RACY static int search_slots(const struct kvix_node *n, const struct kvix_rv *rv,
				  const uint8_t *key, uint32_t klen, uint32_t cnt, uint32_t *pos,
				  bool *eq)
{
	const uint8_t *end = (const uint8_t *) n + KVIX_NODE_SIZE;
	uint16_t h = kvix_head(key, klen, KVIX_ONCE(n->pfx_len));
	uint32_t lo = heads_lower_bound(n, cnt, h);
	uint32_t hi = h == UINT16_MAX ? cnt : heads_lower_bound(n, cnt, (uint16_t) (h + 1));

	/* slots below lo hold smaller keys, from hi on larger ones (a racy read may break
	 * that; the node's version check then discards the result) */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const uint8_t *e = kvix_entry(n, mid);
		struct kvix_key k;
		int r;

		if (!e || kvix_key_decode(e, end, &k) || key_cmp(key, klen, &k, rv, &r))
			return -1;
		if (r == 0) {
			*eq = true;
			lo = mid;
			break;
		}
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	*pos = lo;
	return 0;
}

/*
 * The first slot of n whose key is >= key (*eq: equal). rv: what to validate before
 * following an out-of-line key's pages (NULL for writers). 0, or -1 if inconsistent.
 */
KVIX_RACY int kvix_search(const struct kvix_node *n, const struct kvix_rv *rv, const uint8_t *key,
			  uint32_t klen, uint32_t *pos, bool *eq)
{
	uint32_t cnt = KVIX_ONCE(((struct kvix_node *) n)->count);
	uint32_t pl = KVIX_ONCE(((struct kvix_node *) n)->pfx_len);
	int side;

	*eq = false;
	if (cnt > KVIX_MAX_SLOTS || pl > KVIX_PFX_MAX)
		return -1;
	/* The slot array is all the search touches until two heads are equal: fetch its
	 * cache lines in parallel rather than one miss per probe (kvix_prefetch() asked
	 * for the first ones already). */
	for (uint32_t i = PREFETCH_SLOTS; i < cnt; i += 64 / KVIX_SLOT)
		__builtin_prefetch(&n->slot[i]);
	side = pfx_side(n, pl, key, klen);
	if (side) {
		*pos = side < 0 ? 0 : cnt;
		return 0;
	}
	return search_slots(n, rv, key, klen, cnt, pos, eq);
}

/* --- point lookups --- */

/* Start fetching a node's header and first slots: one round trip to memory instead of
 * the header's, then the slots'. */
static inline void prefetch_node(const struct kvix_node *n)
{
	for (uint32_t off = 0; off < KVIX_HDR + PREFETCH_SLOTS * KVIX_SLOT; off += 64)
		__builtin_prefetch((const uint8_t *) n + off);
}

/*
 * Descend to the leaf whose range holds key: 0 and the leaf with the version read (not
 * yet validated), or KVIX_RETRY.
 */
KVIX_RACY static int descend(struct kv_index *ix, const uint8_t *key, uint32_t klen,
			     const struct kvix_node **leaf, uint64_t *ver)
{
	/* Acquire: pairs with the release store of a new root (kv_index_split.c,
	 * kv_index_merge.c, kv_index_bulk.c): the root's contents are visible. */
	const struct kvix_node *n = atomic_load_explicit(&ix->root, memory_order_acquire);
	uint64_t v = kvix_rd_begin(n);

	/* A root replaced since we loaded it may cover only part of the key space; its
	 * replacement happens while it is locked, so this check after rd_begin sees it. */
	if (atomic_load_explicit(&ix->root, memory_order_acquire) != n)
		return KVIX_RETRY;
	for (int d = 0; d < KVIX_MAX_DEPTH; d++) {
		uint8_t type = KVIX_ONCE(((struct kvix_node *) n)->type);
		struct kvix_rv rv = { n, v };
		const struct kvix_node *c;
		uint32_t pos;
		uint64_t cv;
		bool eq;

		if (type == KVIX_LEAF) {
			*leaf = n;
			*ver = v;
			return 0;
		}
		if (type != KVIX_INNER || kvix_search(n, &rv, key, klen, &pos, &eq))
			return KVIX_RETRY;
		c = kvix_child(n, pos + eq);
		prefetch_node(c); /* harmless even if c is garbage: a prefetch never faults */
		/* c may be any eight bytes until n is validated; then it is a node (nodes
		 * are never unmapped), and n validated again after reading c's version
		 * proves c was n's child at that version. */
		if (!c || !kvix_rd_valid(n, v))
			return KVIX_RETRY;
		cv = kvix_rd_begin(c);
		if (!kvix_rd_valid(n, v))
			return KVIX_RETRY;
		n = c;
		v = cv;
	}
	return KVIX_RETRY;
}

KVIX_RACY static int get_once(struct kv_index *ix, const uint8_t *key, uint32_t klen,
			      struct kv_ref *out)
{
	const struct kvix_node *leaf;
	const uint8_t *e, *end;
	struct kvix_key k;
	struct kv_ref r;
	uint32_t pos;
	uint64_t v;
	bool eq;

	if (descend(ix, key, klen, &leaf, &v))
		return KVIX_RETRY;
	struct kvix_rv rv = { leaf, v };
	if (kvix_search(leaf, &rv, key, klen, &pos, &eq))
		return KVIX_RETRY;
	if (!eq)
		return kvix_rd_valid(leaf, v) ? -ENOENT : KVIX_RETRY;
	end = (const uint8_t *) leaf + KVIX_NODE_SIZE;
	e = kvix_entry(leaf, pos);
	if (!e || kvix_key_decode(e, end, &k) || !kvix_ref_get(e + k.size, end, &r))
		return KVIX_RETRY;
	if (!kvix_rd_valid(leaf, v))
		return KVIX_RETRY;
	*out = r; /* only a validated copy reaches the caller */
	return 0;
}

int kv_index_get(struct kv_index *ix, const void *key, size_t klen, struct kv_ref *out)
{
	int rc;

	if (!ix || !key || !out)
		return -EINVAL;
	if (klen == 0 || klen > KV_INDEX_MAX_KEY)
		return -ENOENT;
	while ((rc = get_once(ix, key, (uint32_t) klen, out)) == KVIX_RETRY)
		cpu_relax();
	return rc;
}

/* --- cursors --- */

struct kv_index_cursor {
	struct kv_index *ix;
	const struct kvix_node *leaf; /* where snap was copied from; NULL: seek first */
	uint64_t ver;		      /* leaf's version when copied */
	uint32_t pos;		      /* the next slot of snap to return */
	bool started;		      /* last holds a returned key (else: the start key) */
	bool end;
	uint32_t last_len;
	uint8_t *last;		/* KV_INDEX_MAX_KEY bytes */
	struct kvix_node *snap; /* a validated copy of leaf */
};

struct kv_index_cursor *kv_index_cursor_open(struct kv_index *ix, const void *start, size_t slen)
{
	struct kv_index_cursor *c;
	void *mem;

	if (!ix || slen > KV_INDEX_MAX_KEY || (slen && !start))
		return NULL;
	if (posix_memalign(&mem, 64, KVIX_NODE_SIZE + sizeof(*c) + KV_INDEX_MAX_KEY))
		return NULL;
	c = (struct kv_index_cursor *) ((uint8_t *) mem + KVIX_NODE_SIZE);
	memset(c, 0, sizeof(*c));
	c->ix = ix;
	c->snap = mem;
	c->last = (uint8_t *) (c + 1);
	c->last_len = (uint32_t) slen;
	if (slen)
		memcpy(c->last, start, slen);
	return c;
}

void kv_index_cursor_close(struct kv_index_cursor *c)
{
	if (c)
		free(c->snap);
}

/* Copy leaf (at version v) into the cursor; false if it changed meanwhile. */
KVIX_RACY static bool snapshot(struct kv_index_cursor *c, const struct kvix_node *leaf, uint64_t v)
{
	rcopy((uint8_t *) c->snap, (const uint8_t *) leaf, KVIX_NODE_SIZE);
	if (!kvix_rd_valid(leaf, v) || c->snap->type != KVIX_LEAF)
		return false;
	c->leaf = leaf;
	c->ver = v;
	return true;
}

/* Find the leaf holding the first key after (or at, before the first) the last key. */
KVIX_RACY static int cursor_seek(struct kv_index_cursor *c)
{
	const struct kvix_node *leaf;
	struct kvix_rv rv;
	uint64_t v;
	bool eq;

	c->leaf = NULL;
	if (descend(c->ix, c->last, c->last_len, &leaf, &v) || !snapshot(c, leaf, v))
		return STEP_RETRY;
	rv = (struct kvix_rv){ leaf, v };
	if (kvix_search(c->snap, &rv, c->last, c->last_len, &c->pos, &eq)) {
		c->leaf = NULL;
		return STEP_RETRY;
	}
	c->pos += (eq && c->started);
	return 0;
}

/* Move to the right neighbour of the leaf the cursor has used up. */
KVIX_RACY static int cursor_advance(struct kv_index_cursor *c)
{
	const struct kvix_node *next = c->snap->link;
	uint64_t nv;

	if (!next) {
		c->end = true; /* the copy was valid: there was nothing to the right */
		return 0;
	}
	/* next came from a validated copy, so it is a node; it was the neighbour until
	 * leaf changes, which the check after reading next's version rules out. */
	nv = kvix_rd_begin(next);
	if (!kvix_rd_valid(c->leaf, c->ver) || !snapshot(c, next, nv)) {
		c->leaf = NULL;
		return STEP_RETRY;
	}
	c->pos = 0;
	return STEP_RETRY; /* not an error: look at the new copy */
}

/* Copy the tail of an out-of-line key from its pages, validating rv before each page. */
KVIX_RACY static int chain_copy(uint8_t *dst, uint32_t len, const struct kvix_node *pg,
				const struct kvix_rv *rv)
{
	uint32_t at = 0;

	for (unsigned i = 0; at < len; i++) {
		uint32_t cnt;

		if (i >= MAX_PAGES || !pg || !rv_ok(rv))
			return -1;
		cnt = KVIX_ONCE(((struct kvix_node *) pg)->count);
		if (cnt == 0 || cnt > KVIX_OVF_DATA || cnt > len - at)
			return -1;
		rcopy(dst + at, (const uint8_t *) pg + KVIX_HDR, cnt);
		at += cnt;
		pg = KVIX_ONCE(((struct kvix_node *) pg)->link);
	}
	return rv_ok(rv) ? 0 : -1;
}

/* Return the entry at c->pos of the copy. */
KVIX_RACY static int cursor_emit(struct kv_index_cursor *c, void *key, size_t *klen,
				 struct kv_ref *ref)
{
	const uint8_t *end = (const uint8_t *) c->snap + KVIX_NODE_SIZE, *e;
	struct kvix_rv rv = { c->leaf, c->ver };
	struct kvix_key k;

	e = kvix_entry(c->snap, c->pos);
	if (!e || kvix_key_decode(e, end, &k) || !kvix_ref_get(e + k.size, end, ref))
		return -1;
	/* Assemble in the caller's buffer: `last` must stay intact if the pages turn out
	 * to have changed, the cursor seeks from it again. */
	memcpy(key, k.p, k.inl);
	if (k.ovf && chain_copy((uint8_t *) key + k.inl, k.len - k.inl, k.ovf, &rv))
		return -1;
	memcpy(c->last, key, k.len);
	c->last_len = k.len;
	c->started = true;
	c->pos++;
	*klen = k.len;
	return 0;
}

KVIX_RACY static int cursor_step(struct kv_index_cursor *c, void *key, size_t *klen,
				 struct kv_ref *ref)
{
	if (c->end)
		return 0;
	if (!c->leaf && cursor_seek(c))
		return STEP_RETRY;
	if (c->pos >= c->snap->count)
		return cursor_advance(c);
	if (cursor_emit(c, key, klen, ref)) {
		c->leaf = NULL; /* the leaf changed under an out-of-line key: seek again */
		return STEP_RETRY;
	}
	return 1;
}

int kv_index_cursor_next(struct kv_index_cursor *c, void *key, size_t *klen, struct kv_ref *ref)
{
	int rc;

	if (!c || !key || !klen || !ref)
		return -EINVAL;
	while ((rc = cursor_step(c, key, klen, ref)) == STEP_RETRY)
		;
	return rc;
}
