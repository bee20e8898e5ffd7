/* SPDX-License-Identifier: MIT */
/*
 * kv_hint_read.c - reading a hint file back, block by block, checking everything
 * docs/kv_format.md's "Validity" lists: header checksum and fields, each block's
 * checksum and page count, entries parsing exactly within their block, keys strictly
 * increasing, the entry count and byte counts matching the header and the file size.
 * The first violation is AURAKV_ECORRUPT; nothing read before it has been wrong, but
 * the caller must then not trust the file at all. Any other error (an fd, memory, an I/O
 * error) says nothing about the file.
 *
 * Bounded resources: open merges one reader per sealed segment, all at once, so a reader
 * holds no file descriptor between reads (each read opens the file, preads, closes: the
 * store's lock keeps anyone else from replacing hints/ meanwhile, and the checksums would
 * catch it), its buffer is its share of a budget for all of them (kv_hint_chunk) and never
 * larger than the file, and the previous key is kept in a buffer as long as the longest
 * key seen so far.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kv_db.h"

/* Each reader's share of a budget for all (open has one per segment), within bounds:
 * at least 64 KiB, so that one read (open, pread, close) brings ~1900 entries to merge;
 * at most 1 MiB, the size every reader had, so a store of <= 64 segments reads as before. */
#define READ_BUDGET (64u << 20)
#define CHUNK_MIN   (64u << 10)
#define CHUNK_MAX   (1u << 20)

size_t kv_hint_chunk(size_t runs)
{
	size_t c = READ_BUDGET / (runs ? runs : 1);

	c = c < CHUNK_MIN ? CHUNK_MIN : c > CHUNK_MAX ? CHUNK_MAX : c;
	return c / KV_HINT_BLOCK * KV_HINT_BLOCK;
}

struct kv_hint_reader {
	auraio_engine_t *eng;
	char *path;	    /* opened for each read, closed after it */
	uint64_t file_size; /* at kv_hint_open */
	size_t chunk;	    /* bytes read at once (more only for a larger block) */
	uint64_t seg;
	uint64_t seg_bytes; /* every entry's record lies within the segment's file */
	uint64_t entries, total, max_version, data_bytes, fence_bytes;
	uint64_t seen; /* entries returned */
	uint8_t *buf;  /* file bytes [buf_off, buf_off + buf_len) */
	size_t buf_len, buf_cap;
	uint64_t buf_off;
	uint64_t block;	    /* file offset of the current block */
	size_t block_len;   /* its size; 0 before the first */
	const uint8_t *p;   /* the next entry in it */
	const uint8_t *end; /* its checksum */
	unsigned left;	    /* entries left in it */
	uint8_t *prev;	    /* the previous key, for the order check */
	size_t prev_len, prev_cap;
	bool have_prev;
};

/* pread [off, off + len) of the file into buf, the file open only meanwhile. */
static ssize_t read_at(struct kv_hint_reader *r, void *buf, size_t len, uint64_t off)
{
	int fd = open(r->path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = kv_pread(r->eng, fd, buf, len, off);
	close(fd);
	return n;
}

/* Make [off, off + len) of the file readable in r->buf: one read of r->chunk bytes from
 * off, or up to the file's end, or len if more. */
static int fill(struct kv_hint_reader *r, uint64_t off, size_t len)
{
	size_t want = r->chunk;
	ssize_t n;

	if (off >= r->buf_off && off + len <= r->buf_off + r->buf_len)
		return 0;
	if (off < r->file_size && r->file_size - off < want)
		want = (size_t) (r->file_size - off);
	if (want < len)
		want = len;
	if (want > r->buf_cap) {
		void *p = realloc(r->buf, want);

		if (!p)
			return -ENOMEM;
		r->buf = p;
		r->buf_cap = want;
	}
	r->buf_len = 0; /* nothing valid if the read fails */
	n = read_at(r, r->buf, want, off);
	if (n < 0)
		return (int) n;
	r->buf_off = off;
	r->buf_len = (size_t) n;
	return (size_t) n < len ? AURAKV_ECORRUPT : 0; /* the file ends too early */
}

static const uint8_t *at(struct kv_hint_reader *r, uint64_t off)
{
	return r->buf + (off - r->buf_off);
}

static int check_header(struct kv_hint_reader *r, const uint8_t *h, uint64_t first_seq,
			uint64_t last_seq, uint64_t file_size)
{
	if (memcmp(h + HH_MAGIC, KV_HINT_MAGIC, 8) ||
	    kv_get_le32(h + HH_VERSION) != KV_HINT_VERSION ||
	    kv_get_le32(h + HH_BLOCK) != KV_HINT_BLOCK ||
	    kv_get_le64(h + HH_CHECKSUM) != XXH3_64bits_withSeed(h, HH_CHECKSUM, r->seg) ||
	    kv_get_le64(h + HH_SEGMENT) != r->seg || kv_get_le64(h + HH_FIRST_SEQ) != first_seq ||
	    kv_get_le64(h + HH_LAST_SEQ) > last_seq)
		return AURAKV_ECORRUPT;
	r->entries = kv_get_le64(h + HH_ENTRIES);
	r->total = kv_get_le64(h + HH_TOTAL);
	r->max_version = kv_get_le64(h + HH_MAX_VERSION);
	r->data_bytes = kv_get_le64(h + HH_DATA_BYTES);
	r->fence_bytes = kv_get_le64(h + HH_FENCE_BYTES);
	if (r->data_bytes % KV_HINT_BLOCK || r->fence_bytes % KV_HINT_BLOCK ||
	    KV_HINT_BLOCK + r->data_bytes + r->fence_bytes != file_size)
		return AURAKV_ECORRUPT;
	return 0;
}

int kv_hint_open(auraio_engine_t *eng, const char *path, const aurawal_segment_info_t *info,
		 uint64_t seg_bytes, size_t chunk, struct kv_hint_reader **out)
{
	struct kv_hint_reader *r = calloc(1, sizeof(*r));
	struct stat st;
	int rc;

	*out = NULL;
	if (!r || !(r->path = strdup(path))) {
		free(r);
		return -ENOMEM;
	}
	r->eng = eng;
	r->seg = info->number;
	r->seg_bytes = seg_bytes;
	r->chunk = chunk < KV_HINT_BLOCK ? KV_HINT_BLOCK : chunk;
	rc = stat(path, &st) < 0 ? -errno : 0;
	r->file_size = rc ? 0 : (uint64_t) st.st_size;
	if (!rc)
		rc = fill(r, 0, KV_HINT_BLOCK);
	if (!rc)
		rc = check_header(r, r->buf, info->first_seq, info->last_seq, r->file_size);
	if (rc) {
		kv_hint_close(r);
		return rc;
	}
	r->block = KV_HINT_BLOCK;
	*out = r;
	return 0;
}

/* Load and check the block at `off` (data or fence); r->p/end/left describe it. */
static int load_block(struct kv_hint_reader *r, uint64_t off, uint64_t limit)
{
	const uint8_t *b;
	size_t pages, len;
	int rc;

	if (off + KV_HINT_BLOCK > limit)
		return AURAKV_ECORRUPT;
	if ((rc = fill(r, off, KV_HINT_BLOCK)))
		return rc;
	b = at(r, off);
	pages = b[0] | (size_t) b[1] << 8;
	len = pages * KV_HINT_BLOCK;
	if (pages == 0 || off + len > limit)
		return AURAKV_ECORRUPT;
	if ((rc = fill(r, off, len)))
		return rc;
	b = at(r, off);
	if (kv_get_le64(b + len - 8) != XXH3_64bits_withSeed(b, len - 8, kv_hint_seed(r->seg, off)))
		return AURAKV_ECORRUPT;
	r->block = off;
	r->block_len = len;
	r->left = b[2] | (unsigned) b[3] << 8;
	r->p = b + 4;
	r->end = b + len - 8;
	return r->left ? 0 : AURAKV_ECORRUPT; /* a block is never empty */
}

static int parse_entry(struct kv_hint_reader *r, struct kv_hint_entry *e)
{
	uint64_t klen;
	uint8_t flags;

	if (r->p >= r->end)
		return AURAKV_ECORRUPT;
	flags = *r->p++;
	if ((flags & ~(KV_HINT_TOMBSTONE | KV_HINT_BATCH)) || kv_get_varint(&r->p, r->end, &klen) ||
	    klen == 0 || klen > AURAKV_MAX_KEY ||
	    (uint64_t) (r->end - r->p) < klen + 16 + ((flags & KV_HINT_BATCH) ? 4 : 0))
		return AURAKV_ECORRUPT;
	memset(&e->ref, 0, sizeof(e->ref));
	e->key = r->p;
	e->klen = klen;
	r->p += klen;
	e->ref.version = kv_get_le64(r->p);
	e->ref.offset = kv_get_le32(r->p + 8);
	e->ref.size = kv_get_le32(r->p + 12);
	r->p += 16;
	e->ref.segment = r->seg;
	e->ref.flags = ((flags & KV_HINT_TOMBSTONE) ? KV_REF_TOMBSTONE : 0) |
		       ((flags & KV_HINT_BATCH) ? KV_REF_BATCH : 0);
	if (flags & KV_HINT_BATCH) {
		e->ref.batch_off = kv_get_le32(r->p);
		r->p += 4;
	}
	/* Checksums prove the bytes are those written, not that the writer was right: a
	 * location outside the segment (or an entry outside its batch) is damage too. */
	if ((uint64_t) e->ref.offset + kv_log_bytes(e->ref.size) > r->seg_bytes ||
	    ((flags & KV_HINT_BATCH) && e->ref.batch_off >= e->ref.size))
		return AURAKV_ECORRUPT;
	return 0;
}

/* Keys strictly increasing across the whole file. */
static int check_order(struct kv_hint_reader *r, const struct kv_hint_entry *e)
{
	if (e->klen > r->prev_cap) { /* keys are short: no AURAKV_MAX_KEY bytes per reader */
		size_t cap = r->prev_cap ? r->prev_cap : 64;
		void *p;

		while (cap < e->klen)
			cap *= 2;
		if (!(p = realloc(r->prev, cap)))
			return -ENOMEM;
		r->prev = p;
		r->prev_cap = cap;
	}
	if (r->have_prev) {
		size_t m = r->prev_len < e->klen ? r->prev_len : e->klen;
		int c = memcmp(r->prev, e->key, m);

		if (c > 0 || (c == 0 && r->prev_len >= e->klen))
			return AURAKV_ECORRUPT;
	}
	memcpy(r->prev, e->key, e->klen);
	r->prev_len = e->klen;
	r->have_prev = true;
	return 0;
}

static int check_fences(struct kv_hint_reader *r);

int kv_hint_next(struct kv_hint_reader *r, struct kv_hint_entry *e)
{
	uint64_t data_end = KV_HINT_BLOCK + r->data_bytes;
	int rc;

	if (r->left == 0) {
		uint64_t next = r->block_len ? r->block + r->block_len : KV_HINT_BLOCK;

		if (next >= data_end) /* the end: every entry and byte accounted for */
			return next == data_end && r->seen == r->entries ? check_fences(r)
									 : AURAKV_ECORRUPT;
		if ((rc = load_block(r, next, data_end)))
			return rc;
	}
	if ((rc = parse_entry(r, e)) || (rc = check_order(r, e)))
		return rc;
	r->left--;
	r->seen++;
	return 1;
}

/* Check the fence blocks after the data (read once the data is: open does not use
 * them, but a file is trusted only whole). */
static int check_fences(struct kv_hint_reader *r)
{
	uint64_t off = KV_HINT_BLOCK + r->data_bytes, end = off + r->fence_bytes;
	int rc;

	while (off < end) {
		if ((rc = load_block(r, off, end)))
			return rc;
		for (; r->left; r->left--) {
			uint64_t klen;

			if (kv_get_varint(&r->p, r->end, &klen) || klen == 0 ||
			    (uint64_t) (r->end - r->p) < klen + 8)
				return AURAKV_ECORRUPT;
			r->p += klen + 8;
		}
		off += r->block_len;
	}
	return 0;
}

uint64_t kv_hint_file_bytes(const struct kv_hint_reader *r)
{
	return KV_HINT_BLOCK + r->data_bytes + r->fence_bytes;
}

uint64_t kv_hint_total(const struct kv_hint_reader *r)
{
	return r->total;
}

uint64_t kv_hint_max_version(const struct kv_hint_reader *r)
{
	return r->max_version;
}

uint64_t kv_hint_entries(const struct kv_hint_reader *r)
{
	return r->entries;
}

void kv_hint_close(struct kv_hint_reader *r)
{
	if (!r)
		return;
	free(r->path);
	free(r->buf);
	free(r->prev);
	free(r);
}
