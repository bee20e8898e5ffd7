/* SPDX-License-Identifier: MIT */
/*
 * The store's names are durable once an open returns: its directory's entry in the
 * directory that holds it, and its own entries (wal/, hints/). The syncs go through the
 * engine; the tests fail each in turn and check the open fails with the error and a
 * retry opens the store with everything acknowledged.
 */
#include <criterion/criterion.h>

#include "fault_engine.h"
#include "kv_test.h"

KV_DIR_SUITE(kv_durability, 120);

static aurakv_options_t quiet_opts(auraio_engine_t *e)
{
	aurakv_options_t o = kv_opts(NULL);

	o.engine = e;
	o.background_gc = false; /* no background I/O for a fault to hit instead */
	o.write_hints = false;
	return o;
}

static void put_sync(aurakv_t *db, const char *key, const char *val)
{
	cr_assert_eq(aurakv_put(db, key, strlen(key), val, strlen(val), AURAKV_SYNC), 0);
}

static void expect_val(aurakv_t *db, const char *key, const char *val)
{
	void *v = NULL;
	size_t len = 0;

	cr_assert_eq(aurakv_get(db, key, strlen(key), &v, &len), 0, "%s is missing", key);
	cr_assert_eq(len, strlen(val));
	cr_assert_eq(memcmp(v, val, len), 0);
	free(v);
}

/* Open `path` with its k-th sync failing; 0 or the open's error (a retry is checked). */
static int open_with_sync_failing(const char *path, uint64_t k, const char *key)
{
	auraio_engine_t *e = test_faulty_engine();
	aurakv_options_t o = quiet_opts(e);
	aurakv_t *db = NULL;
	int rc;

	test_fault_error(e, AURAIO_FAULT_OP_FSYNC, k, 1, EIO);
	rc = aurakv_open(path, &o, &db);
	auraio_fault_clear(e);
	if (rc == 0) {
		cr_assert_eq(aurakv_close(db), 0);
		auraio_destroy(e);
		return 0;
	}
	cr_assert_eq(rc, -EIO, "sync %llu failed: open says %s", (unsigned long long) k,
		     aurakv_strerror(rc));
	db = kv_open_ok(path, &o); /* the retry */
	if (key)
		expect_val(db, key, "v");
	put_sync(db, "after", "v");
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(path, &o);
	expect_val(db, "after", "v");
	cr_assert_eq(aurakv_close(db), 0);
	auraio_destroy(e);
	return rc;
}

/*
 * Every open syncs the directory holding the store and the store's directory: whether
 * the store's directory was made by this open, by an earlier one that failed after its
 * mkdir, or by the caller, its entry is durable before the open returns - an open that
 * synced only after its own mkdir would leave a retry's store to a power loss. Reopening
 * a store makes five syncs: the two directories, then the log's (its active segment,
 * its directory, its close block). It made three: the directories were not synced.
 */
Test(kv_durability, every_sync_of_a_reopen_can_fail_it_and_the_directories_are_among_them)
{
	char *path = NULL;
	uint64_t k;

	cr_assert_geq(asprintf(&path, "%s/store", dir), 0);
	{
		aurakv_options_t o = quiet_opts(NULL);
		aurakv_t *db = kv_open_ok(path, &o);

		put_sync(db, "before", "v");
		cr_assert_eq(aurakv_close(db), 0);
	}
	for (k = 0; open_with_sync_failing(path, k, "before") != 0; k++)
		;
	cr_assert_eq(k, 5, "a reopen made %llu syncs, not 5: are the directories synced?",
		     (unsigned long long) k);
	free(path);
}

/* The same for an open that creates the store (its directory too): each of the first
 * syncs fails the open or not (the log's preparer may take the fault), and after a
 * failure the retry - which finds the directory made - opens the store. */
Test(kv_durability, an_open_that_creates_the_store_and_fails_at_any_sync_can_be_retried)
{
	for (uint64_t k = 0; k < 12; k++) {
		char *path = NULL;

		cr_assert_geq(asprintf(&path, "%s/store%llu", dir, (unsigned long long) k), 0);
		open_with_sync_failing(path, k, NULL);
		free(path);
	}
}
