/* SPDX-License-Identifier: MIT */
/*
 * forgetful_store.c - test only: a store that loses one key and invents another, for
 * kvbench_forgetful (check_kvbench.sh), linked with -Wl,--wrap so that kvbench's own
 * calls of aurakv_get_into and aurakv_multi_get come here and go on to the real ones.
 *
 * Key index 1 (keygen.c: the 8-byte big-endian index that starts every key) is never
 * found, as if the store had lost it; its "missing" twin (readmissing's key 1) is found,
 * as if the store had made it up. Everything else is the real store's answer. So a run
 * that wrote every key must say that the store lost or invented data, and fail.
 *
 * Must never: be linked into kvbench itself.
 */
#include <stdbool.h>
#include <string.h>

#include "aurakv.h"

int __real_aurakv_get_into(aurakv_t *db, const void *key, size_t klen, void *buf, size_t cap,
			   size_t *vlen);
int __wrap_aurakv_get_into(aurakv_t *db, const void *key, size_t klen, void *buf, size_t cap,
			   size_t *vlen);
int __real_aurakv_multi_get(aurakv_t *db, size_t n, const void *const *keys, const size_t *klens,
			    void **vals, size_t *vlens, int *status, unsigned depth);
int __wrap_aurakv_multi_get(aurakv_t *db, size_t n, const void *const *keys, const size_t *klens,
			    void **vals, size_t *vlens, int *status, unsigned depth);

/* The key's index, with readmissing's mark removed; *missing: it had the mark. */
static unsigned long long key_index(const void *key, size_t klen, bool *missing)
{
	const unsigned char *k = key;
	unsigned long long idx = 0;

	for (size_t i = 0; i < 8 && i < klen; i++)
		idx = idx << 8 | k[i];
	*missing = klen > 8 ? k[klen - 1] != '0' : idx >> 63;
	return klen > 8 ? idx : idx & ~(1ull << 63);
}

int __wrap_aurakv_get_into(aurakv_t *db, const void *key, size_t klen, void *buf, size_t cap,
			   size_t *vlen)
{
	bool missing;
	int rc = __real_aurakv_get_into(db, key, klen, buf, cap, vlen);

	if (rc != 0 && rc != AURAKV_ENOTFOUND)
		return rc;
	if (key_index(key, klen, &missing) != 1)
		return rc;
	if (!missing)
		return AURAKV_ENOTFOUND; /* lost */
	memset(buf, 'x', cap);		 /* invented */
	*vlen = cap;
	return 0;
}

int __wrap_aurakv_multi_get(aurakv_t *db, size_t n, const void *const *keys, const size_t *klens,
			    void **vals, size_t *vlens, int *status, unsigned depth)
{
	int rc = __real_aurakv_multi_get(db, n, keys, klens, vals, vlens, status, depth);
	bool missing;

	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (status[i] != 0 || key_index(keys[i], klens[i], &missing) != 1 || missing)
			continue;
		aurakv_free(vals[i]);
		vals[i] = NULL;
		status[i] = AURAKV_ENOTFOUND; /* lost */
	}
	return rc;
}
