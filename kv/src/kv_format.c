/* SPDX-License-Identifier: MIT */
/*
 * kv_format.c - encoding and checked decoding of record payloads (docs/kv_format.md).
 * Decoding never trusts a length: every field is checked against the payload's end, so
 * a damaged or hostile record yields AURAKV_ECORRUPT, never an out-of-bounds access.
 */
#include <lz4.h>

#include "aurakv.h"
#include "kv_format.h"

size_t kv_encode_header(uint8_t *hdr, uint8_t kind, uint8_t flags, uint64_t version, size_t klen,
			size_t vlen, size_t rawlen)
{
	size_t n = 0;

	hdr[n++] = kind;
	hdr[n++] = kind == KV_KIND_PUT ? flags : 0;
	kv_put_le64(hdr + n, version);
	n += 8;
	n += kv_put_varint(hdr + n, klen);
	if (kind == KV_KIND_PUT) {
		n += kv_put_varint(hdr + n, vlen);
		if (flags & KV_VAL_LZ4)
			n += kv_put_varint(hdr + n, rawlen);
	}
	return n;
}

size_t kv_encode_entry_header(uint8_t *hdr, uint8_t op, uint8_t flags, size_t klen, size_t vlen,
			      size_t rawlen)
{
	size_t n = 0;

	hdr[n++] = op;
	hdr[n++] = op == KV_KIND_PUT ? flags : 0;
	n += kv_put_varint(hdr + n, klen);
	if (op == KV_KIND_PUT) {
		n += kv_put_varint(hdr + n, vlen);
		if (flags & KV_VAL_LZ4)
			n += kv_put_varint(hdr + n, rawlen);
	}
	return n;
}

size_t kv_encode_batch_header(uint8_t *hdr, uint64_t version, uint64_t count)
{
	hdr[0] = KV_KIND_BATCH;
	hdr[1] = 0;
	kv_put_le64(hdr + 2, version);
	return 10 + kv_put_varint(hdr + 10, count);
}

/* The lengths, key and value of a put/delete body at it->p (after kind/op and flags). */
static int decode_body(struct kv_entry_iter *it, uint8_t op, uint8_t flags, struct kv_entry *e)
{
	uint64_t klen, vlen = 0, rawlen = 0;

	if (op != KV_KIND_PUT && op != KV_KIND_DELETE)
		return AURAKV_ECORRUPT;
	if (flags & ~KV_VAL_LZ4 || (op == KV_KIND_DELETE && flags))
		return AURAKV_ECORRUPT;
	if (kv_get_varint(&it->p, it->end, &klen) || klen == 0 || klen > AURAKV_MAX_KEY)
		return AURAKV_ECORRUPT;
	if (op == KV_KIND_PUT) {
		if (kv_get_varint(&it->p, it->end, &vlen) || vlen > AURAKV_MAX_VALUE)
			return AURAKV_ECORRUPT;
		rawlen = vlen;
		if ((flags & KV_VAL_LZ4) &&
		    (kv_get_varint(&it->p, it->end, &rawlen) || rawlen > AURAKV_MAX_VALUE))
			return AURAKV_ECORRUPT;
	}
	if ((uint64_t) (it->end - it->p) < klen + vlen)
		return AURAKV_ECORRUPT;
	e->op = op;
	e->flags = flags;
	e->key = it->p;
	e->klen = klen;
	e->val = it->p + klen;
	e->vlen = vlen;
	e->rawlen = rawlen;
	it->p += klen + vlen;
	return 0;
}

int kv_entry_iter_init(struct kv_entry_iter *it, const void *payload, size_t len)
{
	it->base = it->p = payload;
	it->end = it->p + len;
	it->index = 0;
	it->adj = 0;
	if (len < 10)
		return AURAKV_ECORRUPT;
	it->kind = it->p[0];
	it->version = kv_get_le64(it->p + 2);
	if (it->kind == KV_KIND_BATCH) {
		if (it->p[1] != 0)
			return AURAKV_ECORRUPT;
		it->p += 10;
		if (kv_get_varint(&it->p, it->end, &it->left) || it->left == 0 ||
		    it->left > len / 4)
			return AURAKV_ECORRUPT;
		return 0;
	}
	if (it->kind != KV_KIND_PUT && it->kind != KV_KIND_DELETE)
		return AURAKV_ECORRUPT;
	it->left = 1;
	return 0;
}

void kv_entry_iter_init_entries(struct kv_entry_iter *it, const void *entries, size_t len,
				uint64_t count, uint64_t version, uint32_t adj)
{
	it->base = it->p = entries;
	it->end = it->p + len;
	it->index = 0;
	it->left = count;
	it->version = version;
	it->adj = adj;
	it->kind = KV_KIND_BATCH;
}

int kv_entry_iter_next(struct kv_entry_iter *it, struct kv_entry *e)
{
	int rc;

	if (it->left == 0)
		return it->p == it->end ? 0 : AURAKV_ECORRUPT; /* trailing bytes: damage */
	e->version = it->version + it->index;
	if (it->kind == KV_KIND_BATCH) {
		if (it->end - it->p < 2)
			return AURAKV_ECORRUPT;
		e->entry_off = (uint32_t) (it->p - it->base) + it->adj;
		e->in_batch = true;
		it->p += 2;
		rc = decode_body(it, it->p[-2], it->p[-1], e);
	} else {
		uint8_t flags = it->p[1];

		e->entry_off = 0;
		e->in_batch = false;
		it->p += 10;
		rc = decode_body(it, it->kind, flags, e);
	}
	if (rc)
		return rc;
	it->left--;
	it->index++;
	return 1;
}

int kv_entry_at(const void *payload, size_t len, uint32_t entry_off, bool in_batch, const void *key,
		size_t klen, struct kv_entry *e)
{
	struct kv_entry_iter it;
	int rc = kv_entry_iter_init(&it, payload, len);

	if (rc)
		return rc;
	if (in_batch != (it.kind == KV_KIND_BATCH))
		return AURAKV_ECORRUPT;
	if (in_batch) {
		/* Straight to the entry: the record's checksum has vouched for its bytes and
		 * the offset comes from the index; the key check below catches a wrong one.
		 * (The entry's version, batch version + index, is not needed to read it.) */
		if (entry_off < 10 || entry_off > len - 2)
			return AURAKV_ECORRUPT;
		it.p = it.base + entry_off + 2;
		e->version = 0;
		e->entry_off = entry_off;
		e->in_batch = true;
		rc = decode_body(&it, it.base[entry_off], it.base[entry_off + 1], e);
		if (rc)
			return rc;
	} else if (kv_entry_iter_next(&it, e) != 1) {
		return AURAKV_ECORRUPT;
	}
	if (e->klen != klen || memcmp(e->key, key, klen) != 0)
		return AURAKV_ECORRUPT; /* the index points at a record of another key */
	return 0;
}

int kv_entry_value(const struct kv_entry *e, void *out)
{
	int n;

	if (!(e->flags & KV_VAL_LZ4)) {
		if (e->vlen)
			memcpy(out, e->val, e->vlen);
		return 0;
	}
	if (e->vlen > (size_t) LZ4_MAX_INPUT_SIZE || e->rawlen > (size_t) LZ4_MAX_INPUT_SIZE)
		return AURAKV_ECORRUPT;
	n = LZ4_decompress_safe((const char *) e->val, out, (int) e->vlen, (int) e->rawlen);
	return n == (int) e->rawlen ? 0 : AURAKV_ECORRUPT;
}
