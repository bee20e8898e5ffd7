/* SPDX-License-Identifier: MIT */
/*
 * kv_format.h - the store's on-disk format (docs/kv_format.md): record payloads inside
 * log records, hint-file constants, and the explicit little-endian / LEB128 helpers.
 * Nothing here does I/O; nothing is ever written as a raw struct.
 */
#ifndef AURAKV_FORMAT_H
#define AURAKV_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Record kinds and batch entry ops. Persistent: never renumber. */
enum { KV_KIND_PUT = 1, KV_KIND_DELETE = 2, KV_KIND_BATCH = 3 };

/* Put flags. Persistent. */
#define KV_VAL_LZ4 1u

/* Longest encoded record header: kind, flags, version, three varints. */
#define KV_REC_HDR_MAX (2 + 8 + 3 * 10)

/* A batch entry header: op, flags, up to three varints. */
#define KV_ENTRY_HDR_MAX (2 + 3 * 10)

/* Bytes a log record with `payload` bytes takes in its segment (docs/wal_format.md: a
 * 32-byte header, the payload padded to 8). The store's live/dead accounting counts these,
 * so that "total" is what a segment really holds. */
static inline uint64_t kv_log_bytes(uint64_t payload)
{
	return 32 + ((payload + 7) & ~7ull);
}

static inline void kv_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static inline void kv_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static inline uint32_t kv_get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t kv_get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* LEB128: returns bytes written (1..10). */
static inline size_t kv_put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t) (v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t) v;
	return n;
}

static inline size_t kv_varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Decode a varint from [*p, end): 0 and advance *p, or -1 if truncated or too long. */
static inline int kv_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;

	for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		r |= (uint64_t) (b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

/* One put or delete, decoded from a record payload: a plain record or a batch entry.
 * Pointers point into the payload. */
struct kv_entry {
	uint8_t op;	  /* KV_KIND_PUT or KV_KIND_DELETE */
	uint8_t flags;	  /* KV_VAL_* */
	uint64_t version; /* the write's version (a batch entry: batch version + index) */
	const uint8_t *key;
	size_t klen;
	const uint8_t *val; /* stored bytes (compressed if KV_VAL_LZ4) */
	size_t vlen;
	size_t rawlen;	    /* the value's size once decompressed (== vlen if not) */
	uint32_t entry_off; /* a batch entry: its offset in the payload; 0 otherwise */
	bool in_batch;
};

/* Encode a put's or delete's header (everything before the key); returns its length. */
size_t kv_encode_header(uint8_t *hdr, uint8_t kind, uint8_t flags, uint64_t version, size_t klen,
			size_t vlen, size_t rawlen);

/* Encode a batch entry's header (op, flags, lengths) before its key; returns its length. */
size_t kv_encode_entry_header(uint8_t *hdr, uint8_t op, uint8_t flags, size_t klen, size_t vlen,
			      size_t rawlen);

/* Encode a batch record's header; returns its length (<= KV_REC_HDR_MAX). */
size_t kv_encode_batch_header(uint8_t *hdr, uint64_t version, uint64_t count);

/*
 * Walks the entries of one record payload: a put or delete yields one entry, a batch
 * its entries in order. Every length is checked against the payload: a malformed
 * record is AURAKV_ECORRUPT, never an out-of-bounds read.
 */
struct kv_entry_iter {
	const uint8_t *base, *p, *end;
	uint64_t version, left, index;
	uint32_t adj; /* added to entry offsets (entries decoded apart from their header) */
	uint8_t kind;
};

/* 0, or AURAKV_ECORRUPT if the payload does not start like a record. */
int kv_entry_iter_init(struct kv_entry_iter *it, const void *payload, size_t len);
/* Walk `count` batch entries held apart from their record header, which is `adj` bytes
 * long (entry offsets come out as in the whole record). */
void kv_entry_iter_init_entries(struct kv_entry_iter *it, const void *entries, size_t len,
				uint64_t count, uint64_t version, uint32_t adj);
/* 1 and *e, 0 after the last entry, AURAKV_ECORRUPT. */
int kv_entry_iter_next(struct kv_entry_iter *it, struct kv_entry *e);

/* Decode the entry at `entry_off` (0 for a plain record; a batch entry's offset
 * otherwise) and check that it holds `key`. 0, or AURAKV_ECORRUPT. */
int kv_entry_at(const void *payload, size_t len, uint32_t entry_off, bool in_batch, const void *key,
		size_t klen, struct kv_entry *e);

/* Decompress (or copy) e's value into out (e->rawlen bytes). 0 or AURAKV_ECORRUPT. */
int kv_entry_value(const struct kv_entry *e, void *out);

/* ---- Hint files (docs/kv_format.md, "Hint files") ---- */

#define KV_HINT_BLOCK	4096u
#define KV_HINT_VERSION 1u
#define KV_HINT_MAGIC	"AURAKVH1"

/* Header field offsets. */
enum {
	HH_MAGIC = 0,
	HH_VERSION = 8,
	HH_BLOCK = 12,
	HH_SEGMENT = 16,
	HH_ENTRIES = 24,
	HH_TOTAL = 32,
	HH_MAX_VERSION = 40,
	HH_DATA_BYTES = 48,
	HH_FENCE_BYTES = 56,
	HH_FIRST_SEQ = 64,
	HH_LAST_SEQ = 72,
	HH_CHECKSUM = KV_HINT_BLOCK - 8,
};

/* Hint entry flags. Persistent. */
#define KV_HINT_TOMBSTONE 1u
#define KV_HINT_BATCH	  2u

/* Seed of a data or fence block's checksum. */
static inline uint64_t kv_hint_seed(uint64_t segment, uint64_t block_off)
{
	return segment ^ block_off;
}

#endif
