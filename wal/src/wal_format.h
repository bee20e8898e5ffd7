/* SPDX-License-Identifier: MIT */
/*
 * wal_format.h - the on-disk format of docs/wal_format.md: constants, the explicit
 * little-endian encoding of segment headers and records, checksums and seeds.
 * Nothing here does I/O. Never write a struct to disk: every field goes through
 * put_le / get_le at the offsets the document gives.
 */
#ifndef AURAWAL_FORMAT_H
#define AURAWAL_FORMAT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
/* The XXH3 streaming state on the stack (no allocation per append); the library and its
 * header come from the same Debian package, so the layout matches. */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#define WAL_BLOCK	    4096u
#define WAL_HEADER_BLOCK    WAL_BLOCK /* block 0 of every segment */
#define WAL_VERSION	    1u
#define WAL_MAGIC	    "AURAWAL1"
#define WAL_REC_HEADER	    32u
#define WAL_REC_MARKER	    0x31525741u /* "AWR1" */
#define WAL_MIN_SEGMENT	    (1ull << 20)
#define WAL_MAX_SEGMENT	    (4ull << 30)
#define WAL_SEED_MULTIPLIER 0x9E3779B97F4A7C15ull
#define WAL_SEAL_PAYLOAD    8u

/* Record types. Persistent: never renumber. */
enum { WAL_REC_DATA = 1, WAL_REC_SEAL = 2, WAL_REC_SYNC = 3, WAL_REC_VOID = 4 };

/* Segment header field offsets. */
enum {
	SH_MAGIC = 0,
	SH_VERSION = 8,
	SH_BLOCK = 12,
	SH_SIZE = 16,
	SH_LOG_ID = 24,
	SH_NUMBER = 32,
	SH_FIRST_SEQ = 40,
	SH_CHECKSUM = 48,
	SH_END = 56,
};

/* Segment summary (docs/wal_format.md, "Segment summary"): bytes 64..119 of block 0. */
#define WAL_SUM_MARKER 0x31535741u /* "AWS1" */
enum {
	SM_MARKER = 64,
	SM_KIND = 68,
	SM_DATA_END = 72,
	SM_FIRST_SEQ = 80,
	SM_LAST_SEQ = 88,
	SM_RECORDS = 96,
	SM_NEXT = 104,
	SM_CHECKSUM = 112,
	SM_END = 120,
};

/* Summary kinds. Persistent: never renumber. 0 = no (valid) summary. */
enum { WAL_SUM_NONE = 0, WAL_SUM_SEALED = 1, WAL_SUM_CLOSED = 2 };

/* Record header field offsets. */
enum {
	RH_MARKER = 0,
	RH_TYPE = 4,
	RH_LENGTH = 8,
	RH_SEQ = 16,
	RH_CHECKSUM = 24,
};

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t) p[i] << (8 * i);
	return v;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t) p[i] << (8 * i);
	return v;
}

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static inline uint64_t align_down(uint64_t v, uint64_t a)
{
	return v & ~(a - 1);
}

/* Bytes a record with `len` payload bytes takes on disk. */
static inline uint64_t wal_rec_size(uint64_t len)
{
	return WAL_REC_HEADER + align_up(len, 8);
}

/* The checksum seed of segment `number` of log `log_id` (docs/wal_format.md, "Seeds"). */
static inline uint64_t wal_seed(uint64_t log_id, uint64_t number)
{
	return log_id ^ (number * WAL_SEED_MULTIPLIER);
}

struct wal_seg_header {
	uint64_t segment_size;
	uint64_t log_id;
	uint64_t number;
	uint64_t first_seq;
};

/* Encode a header into a zeroed 4096-byte block. */
static inline void wal_header_encode(uint8_t *blk, const struct wal_seg_header *h)
{
	memset(blk, 0, WAL_HEADER_BLOCK);
	memcpy(blk + SH_MAGIC, WAL_MAGIC, 8);
	put_le32(blk + SH_VERSION, WAL_VERSION);
	put_le32(blk + SH_BLOCK, WAL_BLOCK);
	put_le64(blk + SH_SIZE, h->segment_size);
	put_le64(blk + SH_LOG_ID, h->log_id);
	put_le64(blk + SH_NUMBER, h->number);
	put_le64(blk + SH_FIRST_SEQ, h->first_seq);
	put_le64(blk + SH_CHECKSUM, XXH3_64bits(blk, SH_CHECKSUM));
}

/* Decode and validate: 0, or AURAWAL_EFORMAT (not ours / newer version) or
 * AURAWAL_ECORRUPT (ours but damaged). */
int wal_header_decode(const uint8_t *blk, struct wal_seg_header *h);

struct wal_summary {
	uint8_t kind; /* WAL_SUM_*; NONE = absent or invalid */
	uint64_t data_end;
	uint64_t first_seq, last_seq;
	uint64_t records;
	uint64_t next; /* SEALED: the segment its SEAL names */
};

/* Add summary `sm` of segment `number` (seed `seed`) to an encoded header block. */
static inline void wal_summary_encode(uint8_t *blk, const struct wal_summary *sm, uint64_t seed)
{
	memset(blk + SM_MARKER, 0, SM_END - SM_MARKER);
	put_le32(blk + SM_MARKER, WAL_SUM_MARKER);
	blk[SM_KIND] = sm->kind;
	put_le64(blk + SM_DATA_END, sm->data_end);
	put_le64(blk + SM_FIRST_SEQ, sm->first_seq);
	put_le64(blk + SM_LAST_SEQ, sm->last_seq);
	put_le64(blk + SM_RECORDS, sm->records);
	put_le64(blk + SM_NEXT, sm->next);
	put_le64(blk + SM_CHECKSUM,
		 XXH3_64bits_withSeed(blk + SM_MARKER, SM_CHECKSUM - SM_MARKER, seed));
}

/* Decode the summary of a header block: its kind, or WAL_SUM_NONE when it is absent or
 * fails a validity rule of the document. `number`, `seed`, `segment_size` and
 * `file_size` are the segment's. */
uint8_t wal_summary_decode(const uint8_t *blk, uint64_t number, uint64_t seed,
			   uint64_t segment_size, uint64_t file_size, struct wal_summary *sm);

/* Encode a record header for `len` payload bytes whose checksum is `sum`. */
static inline void wal_rec_header(uint8_t *p, uint8_t type, uint32_t len, uint64_t seq)
{
	put_le32(p + RH_MARKER, WAL_REC_MARKER);
	p[RH_TYPE] = type;
	p[5] = p[6] = p[7] = 0;
	put_le32(p + RH_LENGTH, len);
	put_le32(p + 12, 0);
	put_le64(p + RH_SEQ, seq);
}

/* The checksum of a record from its header and its payload's (unseeded) XXH3-64: a
 * seeded hash of the header's first 24 bytes followed by that digest. */
static inline uint64_t wal_rec_checksum2(const uint8_t *hdr, uint64_t payload_hash, uint64_t seed)
{
	uint8_t in[32];

	memcpy(in, hdr, RH_CHECKSUM);
	put_le64(in + RH_CHECKSUM, payload_hash);
	return XXH3_64bits_withSeed(in, sizeof(in), seed);
}

static inline uint64_t wal_payload_hash(const void *payload, uint32_t len)
{
	return XXH3_64bits(payload, len);
}

static inline uint64_t wal_rec_checksum(const uint8_t *hdr, const void *payload, uint32_t len,
					uint64_t seed)
{
	return wal_rec_checksum2(hdr, wal_payload_hash(payload, len), seed);
}

/* Turn the encoded record at p (of a segment with checksum seed `seed`) into a VOID
 * record: same length and sequence, zero payload, checksum redone (docs/wal_format.md). */
static inline void wal_rec_void(uint8_t *p, uint64_t seed)
{
	uint32_t len = get_le32(p + RH_LENGTH);

	p[RH_TYPE] = WAL_REC_VOID;
	memset(p + WAL_REC_HEADER, 0, align_up(len, 8));
	put_le64(p + RH_CHECKSUM, wal_rec_checksum(p, p + WAL_REC_HEADER, len, seed));
}

/* A record as parsed (pointers into the caller's buffer). */
struct wal_rec {
	uint8_t type;
	uint32_t len;
	uint64_t seq;
	const uint8_t *payload;
};

/* Outcome of looking for a record at p (avail bytes available, `room` bytes until the
 * end of the segment). */
enum { WAL_PARSE_OK = 0, WAL_PARSE_BAD = 1, WAL_PARSE_SHORT = 2 };

/* Parse and verify a record at p. WAL_PARSE_SHORT: the header says more bytes than
 * `avail` holds (but fits in `room`) - read more and retry. */
int wal_rec_parse(const uint8_t *p, uint64_t avail, uint64_t room, uint64_t seed,
		  struct wal_rec *out);

#endif
