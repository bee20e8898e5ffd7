/* SPDX-License-Identifier: MIT */
/*
 * kv_batch.h - the body of aurakv_batch_t: its entries encoded back to back as batch
 * entries (docs/kv_format.md), values uncompressed.
 */
#ifndef AURAKV_BATCH_H
#define AURAKV_BATCH_H

#include <stddef.h>
#include <stdint.h>

struct aurakv_batch {
	uint8_t *buf;
	size_t len, cap;
	size_t count;
	size_t max_value; /* the largest value: whether compression is worth a look */
};

#endif
