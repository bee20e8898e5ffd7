/* SPDX-License-Identifier: MIT */
/*
 * kv_batch.c - the write batch object. Entries are kept already encoded as batch
 * entries of docs/kv_format.md (uncompressed), so a batch with nothing to compress is
 * written as is: one header plus this buffer, one log record.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv_batch.h"
#include "kv_db.h"

aurakv_batch_t *aurakv_batch_new(void)
{
	return calloc(1, sizeof(aurakv_batch_t));
}

void aurakv_batch_free(aurakv_batch_t *b)
{
	if (!b)
		return;
	free(b->buf);
	free(b);
}

void aurakv_batch_clear(aurakv_batch_t *b)
{
	if (!b)
		return;
	b->len = 0;
	b->count = 0;
	b->max_value = 0;
}

size_t aurakv_batch_count(const aurakv_batch_t *b)
{
	return b ? b->count : 0;
}

static int reserve(aurakv_batch_t *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 256;
	uint8_t *nb;

	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	nb = realloc(b->buf, cap);
	if (!nb)
		return -ENOMEM;
	b->buf = nb;
	b->cap = cap;
	return 0;
}

static int add(aurakv_batch_t *b, uint8_t op, const void *key, size_t klen, const void *val,
	       size_t vlen)
{
	uint8_t hdr[KV_ENTRY_HDR_MAX];
	size_t hl;
	int rc;

	if (!b || (!val && vlen))
		return -EINVAL;
	if ((rc = kv_check_key(key, klen)))
		return rc;
	if (vlen > AURAKV_MAX_VALUE)
		return AURAKV_EVALSIZE;
	hl = kv_encode_entry_header(hdr, op, 0, klen, vlen, vlen);
	if (KV_REC_HDR_MAX + b->len + hl + klen + vlen > AURAKV_MAX_BATCH)
		return AURAKV_EBATCHSIZE;
	if (reserve(b, hl + klen + vlen))
		return -ENOMEM;
	memcpy(b->buf + b->len, hdr, hl);
	memcpy(b->buf + b->len + hl, key, klen);
	if (vlen)
		memcpy(b->buf + b->len + hl + klen, val, vlen);
	b->len += hl + klen + vlen;
	b->count++;
	if (vlen > b->max_value)
		b->max_value = vlen;
	return 0;
}

int aurakv_batch_put(aurakv_batch_t *b, const void *key, size_t klen, const void *val, size_t vlen)
{
	return add(b, KV_KIND_PUT, key, klen, val, vlen);
}

int aurakv_batch_delete(aurakv_batch_t *b, const void *key, size_t klen)
{
	return add(b, KV_KIND_DELETE, key, klen, NULL, 0);
}
