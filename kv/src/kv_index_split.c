/* SPDX-License-Identifier: MIT */
/*
 * kv_index_split.c - what a writer does when a node's new content does not fit in it.
 *
 * B*-tree style, to keep nodes full (memory per entry is the goal):
 *   1. share: if a sibling under the same parent has room, spread the entries of both
 *      nodes evenly over the two (the separator between them changes);
 *   2. else split two into three: the node, a full sibling and a new node each get a
 *      third (about 2/3 full each);
 *   3. a node without siblings splits in two; so does the rightmost node when the new
 *      entry goes at its very end (ascending inserts), but leaving the left one 90 % full
 *      so that appends do not leave half-empty nodes behind; and the leftmost node when
 *      it goes at its very start (descending inserts), leaving the right one 90 % full.
 * The root splits in two under a new root. Any of these may overflow the parent, which
 * is handled the same way one level up.
 *
 * Separators: between two leaves the parent gets the shortest key that is greater than
 * the left leaf's last key and not greater than the right leaf's first key (the right
 * key cut after the first byte that differs: suffix truncation), and the cut point is
 * chosen, within a small window around the balanced one, where that key is shortest.
 * Inner splits push up an existing separator, again the shortest in the window.
 *
 * Everything that can fail (the pages of a long separator) happens before the first
 * node is written; nodes come from the reservation made by kvix_w_scratch().
 */
#include <errno.h>
#include <string.h>

#include "kv_index_internal.h"

#define SHARE_SLACK (KVIX_NODE_SIZE / 8)  /* a share must leave both nodes some room */
#define CUT_WINDOW  (KVIX_NODE_SIZE / 16) /* bytes around the balanced cut to look in */
#define MAX_ENTRY   (KVIX_MAX_LEAF_E + KVIX_SLOT)
#define APPEND_FILL (KVIX_BODY * 9 / 10)

/* A redistribution of the entries `all` over k nodes in key order. The first kold are
 * existing consecutive children of the parent, node[0] being child c0; the rest are new.
 * Leaf: part j is [start, cut[j]). Inner: the entry at cut[j] moves up to the parent and
 * its child becomes the leftmost child of node[j + 1]. */
struct dist {
	struct kvix_list all;
	struct kvix_node *node[3];
	int k, kold;
	uint32_t c0;
	uint32_t cut[2];
	struct kvix_item sep[2]; /* for the parent: separator j points to node[j + 1] */
	int edge; /* 1: cut for an append (left 90 % full), -1: for a prepend, 0: evenly */
};

static bool is_inner(const struct dist *D)
{
	return D->all.type == KVIX_INNER;
}

static uint32_t *prefix_sums(struct kvix_arena *a, const struct kvix_list *l)
{
	uint32_t *pre = kvix_arena_alloc(a, (l->n + 1) * sizeof(*pre));

	pre[0] = 0;
	for (uint32_t i = 0; i < l->n; i++)
		pre[i + 1] = pre[i] + KVIX_SLOT + l->it[i].len;
	return pre;
}

/* Length of the separator a cut at c produces (an estimate for out-of-line keys). */
static uint32_t sep_cost(const struct kvix_list *l, uint32_t c)
{
	struct kvix_key a, b;
	uint32_t p;

	kvix_item_key(&l->it[c], &b);
	if (l->type == KVIX_INNER)
		return b.len;
	kvix_item_key(&l->it[c - 1], &a);
	p = kvix_lcp(a.p, a.inl, b.p, b.inl);
	if ((p == a.inl && a.ovf) || (p == b.inl && b.ovf))
		return KV_INDEX_MAX_KEY;
	return p + 1;
}

/* Can part [s, c) be cut there, leaving r - 1 parts for the rest? Both sides must keep
 * an entry, the part must fit, and the rest must fit in r - 1 nodes even when cut at
 * entry boundaries (one entry of slack per further cut). */
static bool cut_ok(const struct dist *D, const uint32_t *pre, uint32_t s, uint32_t c, int r)
{
	uint32_t n = D->all.n, rest = c + is_inner(D); /* first entry of the next part */
	size_t room = (size_t) (r - 1) * KVIX_BODY - (size_t) (r - 2) * MAX_ENTRY;

	if (c <= s || rest >= n)
		return false;
	return pre[c] - pre[s] <= KVIX_BODY && pre[n] - pre[rest] <= room;
}

/* The cut for the part starting at s with r parts left: nearest the target among those
 * that fit, preferring within CUT_WINDOW the one with the shortest separator. */
static bool choose_cut(const struct dist *D, const uint32_t *pre, uint32_t s, int r, uint32_t *out)
{
	uint32_t n = D->all.n, total = pre[n] - pre[s];
	uint32_t target = pre[s] + total / (uint32_t) r;

	if (D->edge > 0)
		target = pre[s] + APPEND_FILL;
	else if (D->edge < 0)
		target = total > APPEND_FILL ? pre[n] - APPEND_FILL : pre[s];
	uint64_t best = UINT64_MAX;

	for (uint32_t c = s + 1; c < n; c++) {
		uint32_t dist = pre[c] > target ? pre[c] - target : target - pre[c];
		uint64_t cost, key;

		if (!cut_ok(D, pre, s, c, r))
			continue;
		cost = dist <= CUT_WINDOW ? sep_cost(&D->all, c) : UINT32_MAX;
		key = cost << 32 | dist;
		if (key < best) {
			best = key;
			*out = c;
		}
	}
	return best != UINT64_MAX;
}

static bool choose_cuts(struct kvix_w *w, struct dist *D)
{
	uint32_t *pre = prefix_sums(&w->ix->arena, &D->all), s = 0;

	for (int j = 0; j < D->k - 1; j++) {
		if (!choose_cut(D, pre, s, D->k - j, &D->cut[j]))
			return false;
		s = D->cut[j] + is_inner(D);
	}
	return true;
}

/* The whole key of item it (assembled in scratch if it is out of line). */
static const uint8_t *full_key(struct kvix_w *w, const struct kvix_item *it, int which,
			       uint32_t *len)
{
	struct kvix_key k;

	kvix_item_key(it, &k);
	*len = k.len;
	if (!k.ovf)
		return k.p;
	if (!w->kbuf)
		w->kbuf = kvix_arena_alloc(&w->ix->arena, 2 * KV_INDEX_MAX_KEY);
	return kvix_key_full(&k, w->kbuf + which * KV_INDEX_MAX_KEY);
}

/* Separator j for the parent, pointing to node[j + 1]. -ENOMEM (long key's pages). */
static int make_sep(struct kvix_w *w, struct dist *D, int j)
{
	const struct kvix_item *it = &D->all.it[D->cut[j]];
	uint32_t alen, blen, len;
	const uint8_t *a, *b;
	struct kvix_key k;
	uint8_t *blob;
	size_t es;

	if (is_inner(D)) {
		kvix_item_key(it, &k);
		blob = kvix_arena_alloc(&w->ix->arena, k.size + 8);
		memcpy(blob, it->p, k.size);
		es = k.size;
	} else {
		a = full_key(w, it - 1, 0, &alen);
		b = full_key(w, it, 1, &blen);
		len = kvix_lcp(a, alen, b, blen) + 1; /* <= blen: a < b */
		es = kvix_key_enc_size(len);
		blob = kvix_arena_alloc(&w->ix->arena, es + 8);
		if (kvix_key_encode(w->ix, blob, b, len) < 0)
			return -ENOMEM;
	}
	memcpy(blob + es, &D->node[j + 1], sizeof(D->node[j + 1]));
	D->sep[j] = (struct kvix_item){ blob, (uint32_t) (es + 8) };
	return 0;
}

static int make_seps(struct kvix_w *w, struct dist *D)
{
	for (int j = 0; j < D->k - 1; j++) {
		if (make_sep(w, D, j) == 0)
			continue;
		for (int i = 0; i < j && !is_inner(D); i++) {
			struct kvix_key k;

			kvix_item_key(&D->sep[i], &k);
			kvix_chain_free(&w->ix->pool, k.ovf); /* never published */
		}
		return -ENOMEM;
	}
	return 0;
}

static void fill_parts(struct dist *D)
{
	uint32_t s = 0;

	for (int j = 0; j < D->k; j++) {
		uint32_t e = j < D->k - 1 ? D->cut[j] : D->all.n;
		struct kvix_node *link0 = NULL;

		if (is_inner(D))
			link0 = j == 0 ? D->all.link0 : kvix_item_child(&D->all.it[D->cut[j - 1]]);
		kvix_fill(D->node[j], D->all.type, D->all.it + s, e - s, link0);
		s = is_inner(D) && j < D->k - 1 ? e + 1 : e;
	}
}

/* The tree grows: a new root above the two halves of the old one. */
static int new_root(struct kvix_w *w, struct dist *D)
{
	struct kv_index *ix = w->ix;
	struct kvix_node *r = kvix_node_alloc(&ix->pool, KVIX_INNER);

	kvix_fill(r, KVIX_INNER, D->sep, 1, D->node[0]);
	/* Release: pairs with the acquire load of the root in descend(); the old root is
	 * locked, so readers that loaded it retry and find this one filled. */
	atomic_store_explicit(&ix->root, r, memory_order_release);
	ix->height++;
	return 0;
}

static int update_parent(struct kvix_w *w, int d, struct dist *D)
{
	struct kvix_list pl, out;
	uint32_t nrem = (uint32_t) D->kold - 1;

	if (d == 0)
		return new_root(w, D);
	kvix_gather(&w->ix->arena, w->pn[d - 1], &pl, 0);
	for (uint32_t i = 0; i < nrem && !is_inner(D); i++)
		kvix_w_kill_chain(w, &pl.it[D->c0 + i]); /* replaced leaf separators */
	kvix_splice(&w->ix->arena, &pl, D->c0, nrem, D->sep, (uint32_t) D->k - 1, &out);
	w->edge = D->c0 + nrem == pl.n ? 1 : D->c0 == 0 ? -1 : 0;
	return kvix_put(w, d - 1, &out);
}

/* Write the distribution: new nodes, separators, the nodes, the parent. */
static int apply(struct kvix_w *w, int d, struct dist *D)
{
	struct kvix_pool *p = &w->ix->pool;

	for (int j = D->kold; j < D->k; j++)
		D->node[j] = kvix_node_alloc(p, D->all.type); /* reserved: cannot fail */
	if (make_seps(w, D) < 0) {
		for (int j = D->kold; j < D->k; j++)
			kvix_pool_push(p, D->node[j]);
		return -ENOMEM;
	}
	for (int j = 0; j < D->k; j++)
		kvix_w_lock(w, D->node[j]);
	fill_parts(D);
	for (int j = D->kold; j < D->k && !is_inner(D); j++)
		kvix_leaf_link_after(w, D->node[j - 1], D->node[j]);
	return update_parent(w, d, D);
}

/* An entry of the parent moved down between two inner siblings: its key with `child`
 * (the right sibling's leftmost child). */
static struct kvix_item pull_down(struct kvix_w *w, const struct kvix_node *p, uint32_t i,
				  struct kvix_node *child)
{
	const uint8_t *e = kvix_entry(p, i);
	struct kvix_key k;
	uint8_t *blob;

	(void) kvix_key_decode(e, (const uint8_t *) p + KVIX_NODE_SIZE, &k);
	blob = kvix_arena_alloc(&w->ix->arena, k.size + 8);
	memcpy(blob, e, k.size);
	memcpy(blob + k.size, &child, sizeof(child));
	return (struct kvix_item){ blob, k.size + 8 };
}

/* all = a, (the parent's separator i pulled down, for inner nodes), b. */
void kvix_combine(struct kvix_w *w, int d, const struct kvix_list *a, const struct kvix_list *b,
		  uint32_t i, struct kvix_list *all)
{
	uint32_t mid = a->type == KVIX_INNER;

	kvix_list_init(&w->ix->arena, all, a->type, a->n + b->n + mid);
	memcpy(all->it, a->it, a->n * sizeof(*a->it));
	if (mid)
		all->it[a->n] = pull_down(w, w->pn[d - 1], i, b->link0);
	memcpy(all->it + a->n + mid, b->it, b->n * sizeof(*b->it));
	all->n = a->n + b->n + mid;
	all->link0 = a->link0;
}

/* D over the node at depth d (content l) and its sibling s, in key order. */
static void pair(struct kvix_w *w, int d, struct kvix_list *l, uint32_t s, struct dist *D)
{
	uint32_t c = (uint32_t) w->pc[d - 1];
	struct kvix_node *sn = kvix_child(w->pn[d - 1], s);
	struct kvix_list sl;

	kvix_gather(&w->ix->arena, sn, &sl, 0);
	if (s < c)
		kvix_combine(w, d, &sl, l, s, &D->all);
	else
		kvix_combine(w, d, l, &sl, c, &D->all);
	D->node[0] = s < c ? sn : w->pn[d];
	D->node[1] = s < c ? w->pn[d] : sn;
	D->c0 = s < c ? s : c;
	D->kold = 2;
	D->edge = 0;
}

/* Bytes the entries of l and sibling s would need in two nodes. */
static size_t pair_bytes(struct kvix_w *w, int d, const struct kvix_list *l, uint32_t s)
{
	const struct kvix_node *p = w->pn[d - 1];
	size_t b = kvix_list_bytes(l, 0, l->n) + kvix_node_used(kvix_child(p, s)) - KVIX_HDR;

	return b + (l->type == KVIX_INNER ? KVIX_SLOT + KVIX_MAX_INNER_E : 0);
}

/* 1: no sibling can take a share; 0: shared; -ENOMEM. */
static int try_share(struct kvix_w *w, int d, struct kvix_list *l)
{
	uint32_t c = (uint32_t) w->pc[d - 1], nch = w->pn[d - 1]->count + 1u, sib[2];
	int ns = 0;

	if (c + 1 < nch)
		sib[ns++] = c + 1;
	if (c > 0)
		sib[ns++] = c - 1;
	if (ns == 2 && pair_bytes(w, d, l, sib[1]) < pair_bytes(w, d, l, sib[0])) {
		sib[0] = c - 1; /* the emptier sibling first */
		sib[1] = c + 1;
	}
	for (int i = 0; i < ns; i++) {
		size_t mark = w->ix->arena.used;
		struct dist D;

		if (pair_bytes(w, d, l, sib[i]) > 2 * KVIX_BODY - SHARE_SLACK)
			continue;
		pair(w, d, l, sib[i], &D);
		D.k = 2;
		if (choose_cuts(w, &D))
			return apply(w, d, &D);
		w->ix->arena.used = mark;
	}
	return 1;
}

/* 1 if the change at depth d appends to the rightmost node of its level, -1 if it
 * prepends to the leftmost one, 0 otherwise: sequential inserts. */
static int at_edge(const struct kvix_w *w, int d)
{
	for (int i = 0; i < d && w->edge; i++)
		if ((uint32_t) w->pc[i] != (w->edge > 0 ? w->pn[i]->count : 0u))
			return 0;
	return w->edge;
}

/* Split the node at depth d (content l): one into two, or with a sibling two into three. */
static int split(struct kvix_w *w, int d, struct kvix_list *l)
{
	uint32_t c = d ? (uint32_t) w->pc[d - 1] : 0, nch = d ? w->pn[d - 1]->count + 1u : 1;
	struct dist D;

	D.edge = at_edge(w, d);
	if (!D.edge && nch > 1) {
		pair(w, d, l, c + 1 < nch ? c + 1 : c - 1, &D);
		D.k = 3;
		if (choose_cuts(w, &D))
			return apply(w, d, &D);
	}
	D.all = *l;
	D.node[0] = w->pn[d];
	D.k = 2;
	D.kold = 1;
	D.c0 = c;
	if (!choose_cuts(w, &D)) {
		D.edge = 0;
		if (!choose_cuts(w, &D))
			return -EOVERFLOW; /* unreachable: entries are under a quarter node */
	}
	return apply(w, d, &D);
}

/* Make the node at depth d hold l: in place if it fits, else share or split. */
int kvix_put(struct kvix_w *w, int d, struct kvix_list *l)
{
	int rc;

	if (KVIX_HDR + kvix_list_bytes(l, 0, l->n) <= KVIX_NODE_SIZE) {
		kvix_w_lock(w, w->pn[d]);
		kvix_fill(w->pn[d], l->type, l->it, l->n, l->link0);
		return 0;
	}
	if (d > 0 && !at_edge(w, d)) {
		rc = try_share(w, d, l);
		if (rc <= 0)
			return rc;
	}
	return split(w, d, l);
}
