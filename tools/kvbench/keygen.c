/* SPDX-License-Identifier: MIT */
/*
 * keygen.c - what kvbench writes and asks for: keys derived from an index, the random
 * order of fillrandom, values of a chosen compressibility, and random numbers.
 *
 * Keys. Key i is the 8-byte big-endian i followed by key_size - 8 filler bytes ('0'),
 * so key order is index order and fillseq writes in key order (as db_bench does). A
 * missing key (readmissing) is key i with its last filler byte changed: it sorts
 * between key i and key i + 1, so lookups of missing keys walk the same paths of an
 * ordered index as hits do. With 8-byte keys (no filler) it is i with the top bit set.
 *
 * Random order. fillrandom and fillsync write every key exactly once, in the order of
 * a pseudo-random permutation of [0, num): a 4-round Feistel network over the smallest
 * even number of bits that covers num, cycle-walked back into [0, num) (fewer than 4
 * steps on average). So a readrandom afterwards must find every key it asks for, and
 * no permutation table is held in memory. (db_bench's fillrandom draws keys with
 * replacement and leaves ~63% of them distinct.) Read and overwrite workloads draw
 * uniformly with replacement, as db_bench does.
 *
 * Values. As db_bench's RandomGenerator: a 1 MiB source made of 100-byte pieces, each
 * `compressibility` x 100 random bytes repeated to fill the piece; a value is the next
 * value_size bytes of the source. So --compressibility 0.5 makes values that LZ4
 * halves (roughly), 1.0 incompressible ones. The store compresses only values of at
 * least compress_min bytes (256 by default): 100-byte values are stored as they are.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kvbench.h"

#define SOURCE_BYTES (1u << 20)
#define PIECE	     100u
#define FILLER	     '0'

uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* One piece: `raw` random bytes, repeated to fill len bytes. */
static void piece_fill(uint8_t *p, size_t len, size_t raw, uint64_t *rng)
{
	for (size_t i = 0; i < raw; i++)
		p[i] = (uint8_t) rng_next(rng);
	for (size_t i = raw; i < len; i++)
		p[i] = p[i - raw];
}

int values_create(struct bench *b)
{
	size_t len = SOURCE_BYTES + b->cfg.value_size;
	size_t raw = (size_t) (b->cfg.compressibility * PIECE + 0.5);
	uint64_t rng = b->cfg.seed ^ 0x76616c756573ull; /* "values" */

	b->values = malloc(len);
	if (!b->values)
		return -ENOMEM;
	if (raw < 1)
		raw = 1;
	for (size_t off = 0; off < len; off += PIECE)
		piece_fill(b->values + off, len - off < PIECE ? len - off : PIECE, raw, &rng);
	b->values_len = SOURCE_BYTES;
	return 0;
}

const uint8_t *value_next(struct job *j)
{
	const uint8_t *v = j->b->values + j->vpos;

	j->vpos = (j->vpos + j->b->cfg.value_size) % j->b->values_len;
	return v;
}

void perm_init(struct bench *b)
{
	unsigned bits = 2;
	uint64_t rng = b->cfg.seed ^ 0x7065726dull; /* "perm" */

	while (bits < 64 && (1ull << bits) < b->cfg.num)
		bits += 2;
	b->perm_half = bits / 2;
	for (int i = 0; i < 4; i++)
		b->perm_keys[i] = rng_next(&rng);
}

static uint64_t feistel(const struct bench *b, uint64_t x)
{
	unsigned half = b->perm_half;
	uint64_t mask = (1ull << half) - 1;
	uint64_t l = x >> half, r = x & mask;

	for (int i = 0; i < 4; i++) {
		uint64_t k = r ^ b->perm_keys[i];
		uint64_t t = l ^ (rng_next(&k) & mask);

		l = r;
		r = t;
	}
	return (l << half) | r;
}

/* The i-th key index of the permutation of [0, num); i < num. */
uint64_t perm_apply(const struct bench *b, uint64_t i)
{
	do
		i = feistel(b, i);
	while (i >= b->cfg.num);
	return i;
}

/* Preset the filler of a key buffer (key_size bytes). */
void key_init(const struct bench *b, uint8_t *key)
{
	memset(key, FILLER, b->cfg.key_size);
}

void key_set(const struct bench *b, uint8_t *key, uint64_t idx, bool missing)
{
	unsigned ks = b->cfg.key_size;

	if (missing && ks == KVB_MIN_KEY)
		idx |= 1ull << 63;
	for (int i = 0; i < 8; i++)
		key[i] = (uint8_t) (idx >> (56 - 8 * i));
	if (ks > KVB_MIN_KEY)
		key[ks - 1] = missing ? FILLER + 1 : FILLER;
}
