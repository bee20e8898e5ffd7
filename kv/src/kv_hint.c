/* SPDX-License-Identifier: MIT */
/*
 * kv_hint.c - segment summaries and hint files (docs/kv_format.md, "Hint files").
 *
 * A summary is every key's latest record in one segment, sorted by key: built by
 * reading the segment, written as a hint file when the segment is sealed, and read back
 * block by block at open instead of the segment. A hint file is trusted only if every
 * checksum, count and ordering rule holds; the reader reports AURAKV_ECORRUPT the moment
 * one does not, and the caller falls back to reading the segment. A hint file never
 * decides correctness, only speed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kv_db.h"

char *kv_hint_path(const char *dir, uint64_t seg, const char *suffix)
{
	char *p = NULL;

	if (asprintf(&p, "%s/hints/%016llx.%s", dir, (unsigned long long) seg, suffix) < 0)
		return NULL;
	return p;
}

/* ---- summaries ---- */

struct sum_build {
	struct kv_hint_entry *e;
	size_t n, cap;
	uint8_t *arena;
	size_t alen, acap;
};

static int sum_add(struct sum_build *b, const struct kv_entry *e, aurawal_loc_t loc)
{
	struct kv_hint_entry *h;

	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		void *p = realloc(b->e, cap * sizeof(*b->e));

		if (!p)
			return -ENOMEM;
		b->e = p;
		b->cap = cap;
	}
	if (b->alen + e->klen > b->acap) {
		size_t cap = b->acap ? b->acap : 65536;
		void *p;

		while (cap < b->alen + e->klen)
			cap *= 2;
		if (!(p = realloc(b->arena, cap)))
			return -ENOMEM;
		b->arena = p;
		b->acap = cap;
	}
	memcpy(b->arena + b->alen, e->key, e->klen);
	h = &b->e[b->n++];
	h->key = (const uint8_t *) (uintptr_t) b->alen; /* an offset until the arena is final */
	h->klen = e->klen;
	memset(&h->ref, 0, sizeof(h->ref));
	h->ref.version = e->version;
	h->ref.segment = loc.segment;
	h->ref.offset = loc.offset;
	h->ref.size = loc.size;
	h->ref.batch_off = e->in_batch ? e->entry_off : 0;
	h->ref.flags =
	    (e->in_batch ? KV_REF_BATCH : 0) | (e->op == KV_KIND_DELETE ? KV_REF_TOMBSTONE : 0);
	b->alen += e->klen;
	return 0;
}

static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

/* Key order, newest version first within a key. */
static int entry_cmp(const void *pa, const void *pb)
{
	const struct kv_hint_entry *a = pa, *b = pb;
	int c = key_cmp(a->key, a->klen, b->key, b->klen);

	if (c)
		return c;
	return (a->ref.version < b->ref.version) - (a->ref.version > b->ref.version);
}

static void sum_finish(struct sum_build *b, struct kv_seg_summary *out)
{
	size_t w = 0;

	for (size_t i = 0; i < b->n; i++)
		b->e[i].key = b->arena + (uintptr_t) b->e[i].key;
	if (b->n)
		qsort(b->e, b->n, sizeof(*b->e), entry_cmp);
	for (size_t i = 0; i < b->n; i++) /* keep each key's newest */
		if (w == 0 ||
		    key_cmp(b->e[w - 1].key, b->e[w - 1].klen, b->e[i].key, b->e[i].klen) != 0)
			b->e[w++] = b->e[i];
	out->entries = b->e;
	out->n = w;
	out->arena = b->arena;
}

/* Read every record of segment `seg` into b; totals into out. first_seq is that of the
 * segment's first record of any type, as the log counts it (aurawal_segment_info_t, and
 * what kv_hint_open checks): a VOID record (an append refused for lack of space) or a
 * SYNC mark may come before the first put, and a hint that skipped them would never
 * match its segment. `end` follows every record too, so after damage it is where the
 * damaged record starts. */
static int sum_read(aurawal_t *wal, uint64_t seg, struct sum_build *b, struct kv_seg_summary *out)
{
	aurawal_loc_t from = { .segment = seg };
	aurawal_iter_t *it;
	aurawal_record_t rec;
	int rc = aurawal_iter_open(wal, from, &it);

	if (rc)
		return kv_map_wal_error(rc);
	while ((rc = aurawal_iter_next_record(it, &rec)) == 1 && rec.loc.segment == seg) {
		struct kv_entry_iter ei;
		struct kv_entry e;

		if (!out->first_seq)
			out->first_seq = rec.seq;
		out->end = rec.loc.offset + kv_log_bytes(rec.len);
		if (rec.type != AURAWAL_RECORD_DATA)
			continue; /* the log's own: a SEAL, a SYNC mark, a VOID */
		out->last_seq = rec.seq;
		out->total += kv_log_bytes(rec.len);
		if ((rc = kv_entry_iter_init(&ei, rec.payload, rec.len)))
			break;
		while ((rc = kv_entry_iter_next(&ei, &e)) == 1 && !(rc = sum_add(b, &e, rec.loc)))
			if (e.version > out->max_version)
				out->max_version = e.version;
		if (rc)
			break;
	}
	aurawal_iter_close(it);
	return rc < 0 ? kv_map_wal_error(rc) : 0;
}

int kv_seg_summarize(aurawal_t *wal, uint64_t seg, struct kv_seg_summary *out)
{
	struct sum_build b = { 0 };
	int rc;

	memset(out, 0, sizeof(*out));
	rc = sum_read(wal, seg, &b, out);
	if (rc) {
		free(b.e);
		free(b.arena);
		return rc;
	}
	sum_finish(&b, out);
	return 0;
}

void kv_seg_summary_free(struct kv_seg_summary *s)
{
	free(s->entries);
	free(s->arena);
	memset(s, 0, sizeof(*s));
}

/* ---- writing ---- */

struct hbuf {
	uint8_t *p;
	size_t len, cap;
};

static int hbuf_reserve(struct hbuf *h, size_t more)
{
	size_t cap = h->cap ? h->cap : 1u << 20;
	void *p;

	if (h->len + more <= h->cap)
		return 0;
	while (cap < h->len + more)
		cap *= 2;
	if (!(p = realloc(h->p, cap)))
		return -ENOMEM;
	memset((uint8_t *) p + h->cap, 0, cap - h->cap);
	h->p = p;
	h->cap = cap;
	return 0;
}

static size_t entry_size(const struct kv_hint_entry *e)
{
	return 1 + kv_varint_len(e->klen) + e->klen + 16 + ((e->ref.flags & KV_REF_BATCH) ? 4 : 0);
}

static size_t entry_encode(uint8_t *p, const struct kv_hint_entry *e)
{
	size_t n = 0;

	p[n++] = (uint8_t) (((e->ref.flags & KV_REF_TOMBSTONE) ? KV_HINT_TOMBSTONE : 0) |
			    ((e->ref.flags & KV_REF_BATCH) ? KV_HINT_BATCH : 0));
	n += kv_put_varint(p + n, e->klen);
	memcpy(p + n, e->key, e->klen);
	n += e->klen;
	kv_put_le64(p + n, e->ref.version);
	kv_put_le32(p + n + 8, e->ref.offset);
	kv_put_le32(p + n + 12, e->ref.size);
	n += 16;
	if (e->ref.flags & KV_REF_BATCH) {
		kv_put_le32(p + n, e->ref.batch_off);
		n += 4;
	}
	return n;
}

/* Close the block that starts at `start` (file offset `start` too): pages, count and
 * checksum; the buffer grows to the block's end. */
static int block_close(struct hbuf *h, size_t start, unsigned count, uint64_t seg)
{
	size_t used = h->len - start + 8;
	size_t pages = (used + KV_HINT_BLOCK - 1) / KV_HINT_BLOCK;
	size_t end = start + pages * KV_HINT_BLOCK;
	int rc = hbuf_reserve(h, end - h->len);

	if (rc)
		return rc;
	h->len = end;
	h->p[start] = (uint8_t) pages;
	h->p[start + 1] = (uint8_t) (pages >> 8);
	h->p[start + 2] = (uint8_t) count;
	h->p[start + 3] = (uint8_t) (count >> 8);
	kv_put_le64(h->p + end - 8,
		    XXH3_64bits_withSeed(h->p + start, end - 8 - start, kv_hint_seed(seg, start)));
	return 0;
}

/* Append entries as blocks; each block holds what fits in one page (a single larger
 * entry gets a block of several pages). `fence` collects each block's first key. */
typedef size_t (*enc_fn)(uint8_t *p, const void *item);

static int write_blocks(struct hbuf *h, uint64_t seg, size_t n, const void *items, size_t isize,
			size_t (*size_of)(const void *), enc_fn enc, struct hbuf *fence)
{
	size_t start = 0;
	unsigned count = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		const void *it = (const uint8_t *) items + i * isize;
		size_t sz = size_of(it);

		if (count && (h->len - start + sz + 8 > KV_HINT_BLOCK || count == 0xffff)) {
			if ((rc = block_close(h, start, count, seg)))
				return rc;
			count = 0;
		}
		if (count == 0) {
			start = h->len;
			if ((rc = hbuf_reserve(h, 4 + sz + 8 + KV_HINT_BLOCK)))
				return rc;
			h->len += 4;
			if (fence) { /* klen key offset */
				const struct kv_hint_entry *e = it;

				if ((rc = hbuf_reserve(fence, 10 + e->klen + 8)))
					return rc;
				fence->len += kv_put_varint(fence->p + fence->len, e->klen);
				memcpy(fence->p + fence->len, e->key, e->klen);
				kv_put_le64(fence->p + fence->len + e->klen, start);
				fence->len += e->klen + 8;
			}
		}
		if ((rc = hbuf_reserve(h, sz + 8 + KV_HINT_BLOCK)))
			return rc;
		h->len += enc(h->p + h->len, it);
		count++;
	}
	return count ? block_close(h, start, count, seg) : 0;
}

static size_t hint_entry_size(const void *p)
{
	return entry_size(p);
}

static size_t hint_entry_enc(uint8_t *p, const void *item)
{
	return entry_encode(p, item);
}

/* Fence records are kept encoded back to back in `raw`; re-blocked as items here. */
struct fence_item {
	const uint8_t *p;
	size_t len;
};

static size_t fence_size(const void *p)
{
	return ((const struct fence_item *) p)->len;
}

static size_t fence_enc(uint8_t *p, const void *item)
{
	const struct fence_item *f = item;

	memcpy(p, f->p, f->len);
	return f->len;
}

static int fence_blocks(struct hbuf *h, uint64_t seg, const struct hbuf *raw)
{
	struct fence_item *items = NULL;
	size_t n = 0, cap = 0;
	const uint8_t *p = raw->p, *end = raw->p + raw->len;
	int rc;

	while (p < end) {
		uint64_t klen = 0;
		const uint8_t *q = p;

		kv_get_varint(&q, end, &klen); /* our own encoding: cannot fail */
		if (n == cap) {
			void *np = realloc(items, (cap = cap ? cap * 2 : 256) * sizeof(*items));

			if (!np) {
				free(items);
				return -ENOMEM;
			}
			items = np;
		}
		items[n].p = p;
		items[n++].len = (size_t) (q - p) + klen + 8;
		p = q + klen + 8;
	}
	rc = write_blocks(h, seg, n, items, sizeof(*items), fence_size, fence_enc, NULL);
	free(items);
	return rc;
}

static void header_encode(uint8_t *p, const struct kv_seg_summary *s, uint64_t seg,
			  uint64_t data_bytes, uint64_t fence_bytes)
{
	memset(p, 0, KV_HINT_BLOCK);
	memcpy(p + HH_MAGIC, KV_HINT_MAGIC, 8);
	kv_put_le32(p + HH_VERSION, KV_HINT_VERSION);
	kv_put_le32(p + HH_BLOCK, KV_HINT_BLOCK);
	kv_put_le64(p + HH_SEGMENT, seg);
	kv_put_le64(p + HH_ENTRIES, s->n);
	kv_put_le64(p + HH_TOTAL, s->total);
	kv_put_le64(p + HH_MAX_VERSION, s->max_version);
	kv_put_le64(p + HH_DATA_BYTES, data_bytes);
	kv_put_le64(p + HH_FENCE_BYTES, fence_bytes);
	kv_put_le64(p + HH_FIRST_SEQ, s->first_seq);
	kv_put_le64(p + HH_LAST_SEQ, s->last_seq);
	kv_put_le64(p + HH_CHECKSUM, XXH3_64bits_withSeed(p, HH_CHECKSUM, seg));
}

/* The whole file image: header, data blocks, fence blocks. */
static int hint_image(const struct kv_seg_summary *s, uint64_t seg, struct hbuf *h)
{
	struct hbuf fence = { 0 };
	size_t data_end;
	int rc = hbuf_reserve(h, KV_HINT_BLOCK);

	if (!rc) {
		h->len = KV_HINT_BLOCK;
		rc = write_blocks(h, seg, s->n, s->entries, sizeof(*s->entries), hint_entry_size,
				  hint_entry_enc, &fence);
	}
	data_end = h->len;
	if (!rc)
		rc = fence_blocks(h, seg, &fence);
	if (!rc)
		header_encode(h->p, s, seg, data_end - KV_HINT_BLOCK, h->len - data_end);
	free(fence.p);
	return rc;
}

/* Write the hint file of segment `seg`: DIR/hints/N.tmp, synced, renamed, dir synced.
 * On failure no file is left, neither N.tmp nor N.hint. */
int kv_hint_write(struct kv_db *db, const struct kv_seg_summary *s, uint64_t seg)
{
	auraio_engine_t *eng = aurawal_engine(db->wal);
	char *tmp = kv_hint_path(db->dir, seg, "tmp"), *fin = kv_hint_path(db->dir, seg, "hint");
	char hints[4096];
	struct hbuf h = { 0 };
	bool renamed = false;
	int fd = -1, rc = tmp && fin ? hint_image(s, seg, &h) : -ENOMEM;

	if (!rc && (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
		rc = -errno;
	if (!rc) {
		ssize_t n = kv_pwrite(eng, fd, h.p, h.len, 0);

		rc = n < 0 ? (int) n : kv_fsync(eng, fd);
	}
	if (fd >= 0)
		close(fd);
	if (!rc && !(renamed = rename(tmp, fin) == 0))
		rc = -errno;
	snprintf(hints, sizeof(hints), "%s/hints", db->dir);
	if (!rc)
		rc = kv_fsync_dir(eng, hints);
	if (!rc)
		kv_acct_hint(db, seg, (int64_t) h.len);
	if (rc && tmp) /* a hint that failed leaves no file (its retry starts afresh) */
		unlink(renamed ? fin : tmp);
	free(h.p);
	free(tmp);
	free(fin);
	return rc;
}
