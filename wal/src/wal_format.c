/* SPDX-License-Identifier: MIT */
/*
 * wal_format.c - decoding and verifying segment headers and records
 * (docs/wal_format.md). Pure functions of their input bytes.
 */
#include "aurawal.h"
#include "wal_format.h"

int wal_header_decode(const uint8_t *blk, struct wal_seg_header *h)
{
	if (memcmp(blk + SH_MAGIC, WAL_MAGIC, 8) != 0)
		return AURAWAL_EFORMAT;
	if (get_le64(blk + SH_CHECKSUM) != XXH3_64bits(blk, SH_CHECKSUM))
		return AURAWAL_ECORRUPT;
	if (get_le32(blk + SH_VERSION) != WAL_VERSION)
		return AURAWAL_EFORMAT; /* a version this library cannot read */
	if (get_le32(blk + SH_BLOCK) != WAL_BLOCK)
		return AURAWAL_EFORMAT; /* intact, written with blocks this library does not use */
	h->segment_size = get_le64(blk + SH_SIZE);
	h->log_id = get_le64(blk + SH_LOG_ID);
	h->number = get_le64(blk + SH_NUMBER);
	h->first_seq = get_le64(blk + SH_FIRST_SEQ);
	if (h->segment_size < WAL_MIN_SEGMENT || h->segment_size > WAL_MAX_SEGMENT ||
	    h->segment_size % WAL_BLOCK || h->number == 0)
		return AURAWAL_ECORRUPT;
	return 0;
}

int wal_rec_parse(const uint8_t *p, uint64_t avail, uint64_t room, uint64_t seed,
		  struct wal_rec *out)
{
	uint64_t need;
	uint32_t len;

	if (avail < WAL_REC_HEADER)
		return room < WAL_REC_HEADER ? WAL_PARSE_BAD : WAL_PARSE_SHORT;
	if (get_le32(p + RH_MARKER) != WAL_REC_MARKER || p[RH_TYPE] < WAL_REC_DATA ||
	    p[RH_TYPE] > WAL_REC_VOID || p[5] || p[6] || p[7] || get_le32(p + 12) != 0)
		return WAL_PARSE_BAD;
	len = get_le32(p + RH_LENGTH);
	if (len > AURAWAL_MAX_RECORD || (p[RH_TYPE] == WAL_REC_SEAL && len != WAL_SEAL_PAYLOAD) ||
	    (p[RH_TYPE] == WAL_REC_SYNC && len != 0))
		return WAL_PARSE_BAD;
	need = wal_rec_size(len);
	if (need > room)
		return WAL_PARSE_BAD;
	if (need > avail)
		return WAL_PARSE_SHORT;
	if (get_le64(p + RH_CHECKSUM) != wal_rec_checksum(p, p + WAL_REC_HEADER, len, seed))
		return WAL_PARSE_BAD;
	/* The pad is outside the checksum but part of the record: zeros, or damage. */
	for (uint64_t i = WAL_REC_HEADER + len; i < need; i++)
		if (p[i])
			return WAL_PARSE_BAD;
	out->type = p[RH_TYPE];
	out->len = len;
	out->seq = get_le64(p + RH_SEQ);
	out->payload = p + WAL_REC_HEADER;
	return WAL_PARSE_OK;
}

uint8_t wal_summary_decode(const uint8_t *blk, uint64_t number, uint64_t seed,
			   uint64_t segment_size, uint64_t file_size, struct wal_summary *sm)
{
	uint8_t kind = blk[SM_KIND];

	memset(sm, 0, sizeof(*sm));
	if (get_le32(blk + SM_MARKER) != WAL_SUM_MARKER ||
	    (kind != WAL_SUM_SEALED && kind != WAL_SUM_CLOSED) || blk[SM_KIND + 1] ||
	    blk[SM_KIND + 2] || blk[SM_KIND + 3] ||
	    get_le64(blk + SM_CHECKSUM) !=
		XXH3_64bits_withSeed(blk + SM_MARKER, SM_CHECKSUM - SM_MARKER, seed))
		return WAL_SUM_NONE;
	sm->data_end = get_le64(blk + SM_DATA_END);
	sm->first_seq = get_le64(blk + SM_FIRST_SEQ);
	sm->last_seq = get_le64(blk + SM_LAST_SEQ);
	sm->records = get_le64(blk + SM_RECORDS);
	sm->next = get_le64(blk + SM_NEXT);
	/* A close block may name an end beyond a file cut short: the records it vouches for
	 * are then missing, which recovery must see (wal_recover.c, closed_beyond). */
	if (sm->data_end % 8 || sm->data_end < WAL_HEADER_BLOCK || sm->data_end > segment_size ||
	    (kind == WAL_SUM_SEALED && sm->data_end > file_size) ||
	    (sm->records == 0) != (sm->first_seq == 0) || sm->first_seq > sm->last_seq)
		return WAL_SUM_NONE;
	if (kind == WAL_SUM_SEALED &&
	    (sm->records < 1 || sm->data_end < WAL_HEADER_BLOCK + wal_rec_size(WAL_SEAL_PAYLOAD) ||
	     sm->next <= number))
		return WAL_SUM_NONE;
	sm->kind = kind;
	return kind;
}
