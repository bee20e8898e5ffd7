/* SPDX-License-Identifier: MIT */
/*
 * The write path and the store's lifecycle: writers racing on the same keys (puts,
 * deletes, overlapping batches) with readers, then reopened; the edges of batches and
 * of the size limits; opening an open store; reopening many times.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "kv_test.h"

KV_DIR_SUITE(kv_write, 120);

#define NKEYS	64 /* keys written by single puts and deletes: key i owned by thread i % 4 */
#define NGROUPS 8  /* groups of 8 keys written only by whole batches */
#define GROUP	8
#define WRITERS 4
#define OPS	1500

static aurakv_t *sdb;
static atomic_bool stop_readers;
static atomic_int reader_errors;

static size_t gkey(char *b, int g, int i)
{
	return (size_t) snprintf(b, 32, "g%02d-%02d", g, i);
}

/* Value of a single write: "t<seq>" as 8 bytes little-endian, padded to len. */
static void mkval(uint8_t *v, uint64_t seq, size_t len)
{
	memset(v, (int) (seq & 0xff), len);
	for (int i = 0; i < 8; i++)
		v[i] = (uint8_t) (seq >> (8 * i));
}

static uint64_t valseq(const uint8_t *v)
{
	uint64_t s = 0;

	for (int i = 7; i >= 0; i--)
		s = s << 8 | v[i];
	return s;
}

static void *writer(void *arg)
{
	int t = (int) (intptr_t) arg;
	aurakv_batch_t *b = aurakv_batch_new();
	uint8_t v[600];
	unsigned r = (unsigned) t * 7919u + 1;

	cr_assert_not_null(b);
	for (uint64_t op = 1; op <= OPS; op++) {
		char k[32];
		uint64_t seq = op << 8 | (uint64_t) t;

		r = r * 1103515245u + 12345u;
		if ((r >> 16) % 4 == 0) { /* a batch over a whole group: puts, or all deletes */
			int g = (int) ((r >> 8) % NGROUPS);
			bool del = (r >> 20) % 5 == 0;

			aurakv_batch_clear(b);
			for (int i = 0; i < GROUP; i++) {
				size_t kl = gkey(k, g, i);

				mkval(v, seq, 16 + (size_t) i * 40);
				cr_assert_eq(
				    del ? aurakv_batch_delete(b, k, kl)
					: aurakv_batch_put(b, k, kl, v, 16 + (size_t) i * 40),
				    0);
			}
			cr_assert_eq(aurakv_write(sdb, b, (r >> 24) % 8 == 0 ? AURAKV_SYNC : 0), 0);
		} else { /* a key of this thread's own */
			uint64_t key = (uint64_t) t + WRITERS * ((r >> 8) % (NKEYS / WRITERS));
			size_t kl = kv_key(k, key);

			mkval(v, seq, 16 + (size_t) (r % 500));
			if ((r >> 20) % 6 == 0)
				cr_assert_eq(aurakv_delete(sdb, k, kl, 0), 0);
			else
				cr_assert_eq(aurakv_put(sdb, k, kl, v, 16 + (size_t) (r % 500),
							(r >> 24) % 16 == 0 ? AURAKV_SYNC : 0),
					     0);
		}
	}
	aurakv_batch_free(b);
	return NULL;
}

/* A reader: a key's single writes come from one thread in increasing sequence, so a
 * get may never go back to an older one than an earlier get saw. */
static void *reader(void *arg)
{
	uint64_t seen[NKEYS] = { 0 };

	(void) arg;
	while (!atomic_load(&stop_readers)) {
		for (uint64_t i = 0; i < NKEYS; i++) {
			char k[32];
			void *v;
			size_t l;
			int rc = aurakv_get(sdb, k, kv_key(k, i), &v, &l);

			if (rc == AURAKV_ENOTFOUND)
				continue; /* deletes carry no sequence */
			if (rc != 0 || l < 16) {
				atomic_fetch_add(&reader_errors, 1);
				continue;
			}
			if (valseq(v) >> 8 < seen[i] >> 8)
				atomic_fetch_add(&reader_errors, 1);
			seen[i] = valseq(v);
			aurakv_free(v);
		}
	}
	return NULL;
}

static int walk_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct {
		char last[32];
		size_t len;
		int bad;
	} *w = arg;
	size_t m = klen < w->len ? klen : w->len;
	int c = memcmp(w->last, key, m);

	if (w->len && (c > 0 || (c == 0 && klen <= w->len)))
		w->bad++; /* not in increasing key order */
	if (vlen < 16 || klen > sizeof(w->last))
		w->bad++;
	(void) val;
	memcpy(w->last, key, klen < sizeof(w->last) ? klen : sizeof(w->last));
	w->len = klen;
	return 0;
}

/* Walks the store and collects garbage while the writers run. */
static void *walker(void *arg)
{
	(void) arg;
	while (!atomic_load(&stop_readers)) {
		struct {
			char last[32];
			size_t len;
			int bad;
		} w = { .len = 0 };
		int rc = aurakv_foreach(sdb, NULL, 0, walk_cb, &w);

		if (rc != 0 || w.bad)
			atomic_fetch_add(&reader_errors, 1);
		if (aurakv_compact(sdb) != 0)
			atomic_fetch_add(&reader_errors, 1);
	}
	return NULL;
}

struct snap {
	int rc[NKEYS + NGROUPS * GROUP];
	uint64_t seq[NKEYS + NGROUPS * GROUP];
	size_t len[NKEYS + NGROUPS * GROUP];
};

static size_t any_key(char *k, int i)
{
	return i < NKEYS ? kv_key(k, (uint64_t) i)
			 : gkey(k, (i - NKEYS) / GROUP, (i - NKEYS) % GROUP);
}

static void take(aurakv_t *db, struct snap *s)
{
	for (int i = 0; i < NKEYS + NGROUPS * GROUP; i++) {
		char k[32];
		void *v = NULL;
		size_t l = 0;

		s->rc[i] = aurakv_get(db, k, any_key(k, i), &v, &l);
		cr_assert(s->rc[i] == 0 || s->rc[i] == AURAKV_ENOTFOUND, "key %d: %s", i,
			  aurakv_strerror(s->rc[i]));
		s->seq[i] = s->rc[i] == 0 && l >= 8 ? valseq(v) : 0;
		s->len[i] = l;
		aurakv_free(v);
	}
}

Test(kv_write, racing_writers_and_readers_leave_what_the_last_writes_say_after_reopen)
{
	aurakv_options_t o = kv_opts(NULL);
	pthread_t w[WRITERS], rd[3];
	struct snap before, after;
	aurakv_stats_t st0, st1;
	uint64_t live = 0;

	o.flush_delay_us = 200;
	sdb = kv_open_ok(dir, &o);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(pthread_create(&rd[i], NULL, i < 2 ? reader : walker, NULL), 0);
	for (int i = 0; i < WRITERS; i++)
		cr_assert_eq(pthread_create(&w[i], NULL, writer, (void *) (intptr_t) i), 0);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	atomic_store(&stop_readers, true);
	for (int i = 0; i < 3; i++)
		pthread_join(rd[i], NULL);
	cr_assert_eq(atomic_load(&reader_errors), 0, "a get went back in time or failed");
	take(sdb, &before);
	/* every group is whole: one batch's values, or all deleted */
	for (int g = 0; g < NGROUPS; g++) {
		int b = NKEYS + g * GROUP;

		for (int i = 1; i < GROUP; i++) {
			cr_assert_eq(before.rc[b + i], before.rc[b], "group %d is torn", g);
			cr_assert_eq(before.seq[b + i], before.seq[b], "group %d is torn", g);
		}
	}
	cr_assert_eq(aurakv_get_stats(sdb, &st0), 0);
	cr_assert_eq(aurakv_close(sdb), 0);
	sdb = kv_open_ok(dir, &o);
	take(sdb, &after);
	cr_assert_eq(aurakv_get_stats(sdb, &st1), 0);
	for (int i = 0; i < NKEYS + NGROUPS * GROUP; i++)
		live += before.rc[i] == 0;
	cr_assert_eq(st0.keys, live, "keys %llu, %llu live", (unsigned long long) st0.keys,
		     (unsigned long long) live);
	cr_assert_eq(st1.keys, live, "keys after reopen %llu, %llu live",
		     (unsigned long long) st1.keys, (unsigned long long) live);
	cr_assert_eq(st1.live_bytes, st0.live_bytes, "live bytes %llu after reopen, %llu before",
		     (unsigned long long) st1.live_bytes, (unsigned long long) st0.live_bytes);
	for (int i = 0; i < NKEYS + NGROUPS * GROUP; i++) {
		cr_assert_eq(after.rc[i], before.rc[i], "key %d: %d after reopen, %d before", i,
			     after.rc[i], before.rc[i]);
		cr_assert_eq(after.seq[i], before.seq[i], "key %d changed on reopen", i);
		cr_assert_eq(after.len[i], before.len[i], "key %d changed on reopen", i);
	}
	cr_assert_eq(aurakv_close(sdb), 0);
}

static void expect(aurakv_t *db, const char *key, const char *val)
{
	void *v = NULL;
	size_t l = 0;
	int rc = aurakv_get(db, key, strlen(key), &v, &l);

	if (!val) {
		cr_assert_eq(rc, AURAKV_ENOTFOUND, "%s: %s", key, aurakv_strerror(rc));
		return;
	}
	cr_assert_eq(rc, 0, "%s: %s", key, aurakv_strerror(rc));
	cr_assert(l == strlen(val) && memcmp(v, val, l) == 0, "%s: %.*s, expected %s", key, (int) l,
		  (char *) v, val);
	aurakv_free(v);
}

Test(kv_write, a_batch_with_a_key_twice_keeps_the_later_entry_also_after_reopen)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db = kv_open_ok(dir, &o);
	aurakv_batch_t *b = aurakv_batch_new();
	aurakv_stats_t s0, s1;

	cr_assert_eq(aurakv_batch_put(b, "a", 1, "1", 1), 0);
	cr_assert_eq(aurakv_batch_put(b, "b", 1, "1", 1), 0);
	cr_assert_eq(aurakv_batch_put(b, "a", 1, "2", 1), 0);
	cr_assert_eq(aurakv_batch_delete(b, "b", 1), 0);
	cr_assert_eq(aurakv_batch_put(b, "c", 1, "3", 1), 0);
	cr_assert_eq(aurakv_batch_delete(b, "never", 5), 0);
	cr_assert_eq(aurakv_write(db, b, 0), 0);
	expect(db, "a", "2");
	expect(db, "b", NULL);
	cr_assert_eq(aurakv_get_stats(db, &s0), 0);
	cr_assert_eq(s0.keys, 2);
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, &o);
	expect(db, "a", "2");
	expect(db, "b", NULL);
	expect(db, "c", "3");
	cr_assert_eq(aurakv_get_stats(db, &s1), 0);
	cr_assert_eq(s1.keys, 2);
	cr_assert_eq(s1.live_bytes, s0.live_bytes);
	cr_assert_eq(s1.total_bytes, s0.total_bytes);
	/* a write after the reopen is newer than every entry of the batch */
	cr_assert_eq(aurakv_put(db, "c", 1, "4", 1, 0), 0);
	cr_assert_eq(aurakv_put(db, "a", 1, "5", 1, 0), 0);
	expect(db, "c", "4");
	expect(db, "a", "5");
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, &o);
	expect(db, "c", "4");
	expect(db, "a", "5");
	cr_assert_eq(aurakv_close(db), 0);
	aurakv_batch_free(b);
}

Test(kv_write, empty_batch_and_missing_delete_write_nothing_and_sync_still_works)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db = kv_open_ok(dir, &o);
	aurakv_batch_t *b = aurakv_batch_new();
	aurakv_stats_t s0, s1;

	cr_assert_eq(aurakv_put(db, "x", 1, "1", 1, 0), 0);
	cr_assert_eq(aurakv_get_stats(db, &s0), 0);
	cr_assert_eq(aurakv_write(db, b, 0), 0);
	cr_assert_eq(aurakv_write(db, b, AURAKV_SYNC), 0);
	cr_assert_eq(aurakv_delete(db, "nope", 4, 0), 0);
	cr_assert_eq(aurakv_delete(db, "nope", 4, AURAKV_SYNC), 0);
	cr_assert_eq(aurakv_get_stats(db, &s1), 0);
	cr_assert_eq(s1.total_bytes, s0.total_bytes, "nothing may be written");
	cr_assert_eq(s1.batches, s0.batches);
	cr_assert_eq(s1.deletes, s0.deletes);
	cr_assert_eq(aurakv_write(db, b, 2), -EINVAL);
	cr_assert_eq(aurakv_write(db, NULL, 0), -EINVAL);
	cr_assert_eq(aurakv_close(db), 0);
	aurakv_batch_free(b);
}

Test(kv_write, a_batch_larger_than_a_segment_is_emsgsize_and_stores_nothing)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db;
	aurakv_batch_t *b = aurakv_batch_new();
	uint8_t *v = malloc(1u << 20);
	int rc;

	o.compress_min = 0;
	db = kv_open_ok(dir, &o);
	kv_value(v, 1u << 20, 1, 1);
	for (int i = 0; i < 4; i++) {
		char k[8];

		snprintf(k, sizeof(k), "b%d", i);
		cr_assert_eq(aurakv_batch_put(b, k, strlen(k), v, 300000), 0);
	}
	rc = aurakv_write(db, b, AURAKV_SYNC);
	cr_assert_eq(rc, -EMSGSIZE, "%s", aurakv_strerror(rc));
	expect(db, "b0", NULL);
	cr_assert_eq(aurakv_put(db, "k", 1, v, 1u << 20, 0), -EMSGSIZE);
	expect(db, "k", NULL);
	cr_assert_eq(aurakv_put(db, "k", 1, "after", 5, 0), 0);
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, &o);
	expect(db, "b0", NULL);
	expect(db, "k", "after");
	cr_assert_eq(aurakv_close(db), 0);
	aurakv_batch_free(b);
	free(v);
}

Test(kv_write, the_largest_key_and_value_fit_one_record_and_one_more_byte_is_refused)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db;
	aurakv_batch_t *b = aurakv_batch_new();
	uint8_t *k = malloc(AURAKV_MAX_KEY + 1), *v = malloc((size_t) AURAKV_MAX_VALUE + 1);
	void *got;
	size_t l, n;

	o.segment_size = 128u << 20;
	o.compress_min = 0;
	db = kv_open_ok(dir, &o);
	memset(k, 'k', AURAKV_MAX_KEY + 1);
	for (size_t i = 0; i <= AURAKV_MAX_VALUE; i++)
		v[i] = (uint8_t) (i * 2654435761u >> 11);
	cr_assert_eq(aurakv_put(db, k, AURAKV_MAX_KEY, v, AURAKV_MAX_VALUE + 1, 0),
		     AURAKV_EVALSIZE);
	cr_assert_eq(aurakv_put(db, k, AURAKV_MAX_KEY + 1, v, 1, 0), AURAKV_EKEYSIZE);
	cr_assert_eq(aurakv_put(db, k, AURAKV_MAX_KEY, v, AURAKV_MAX_VALUE, 0), 0);
	cr_assert_eq(aurakv_batch_put(b, k, AURAKV_MAX_KEY, v, AURAKV_MAX_VALUE + 1),
		     AURAKV_EVALSIZE);
	cr_assert_eq(aurakv_batch_put(b, k, AURAKV_MAX_KEY + 1, v, 1), AURAKV_EKEYSIZE);
	cr_assert_eq(aurakv_batch_put(b, k, 10, v, AURAKV_MAX_VALUE), 0);
	cr_assert_eq(aurakv_write(db, b, 0), 0);
	/* a batch filled to its limit: the entry that does not fit leaves it unchanged (16
	 * keys, each several times: TSan follows at most 64 locks held at once) */
	aurakv_batch_clear(b);
	for (n = 0;; n++) {
		int rc = aurakv_batch_put(b, k, 100 + n % 16, v, 1u << 20);

		if (rc == AURAKV_EBATCHSIZE)
			break;
		cr_assert_eq(rc, 0);
	}
	cr_assert_eq(aurakv_batch_count(b), n);
	cr_assert_eq(aurakv_batch_put(b, k, 1, v, 4096), 0, "a smaller entry still fits");
	cr_assert_eq(aurakv_write(db, b, AURAKV_SYNC), 0);
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, &o);
	cr_assert_eq(aurakv_get(db, k, 1, &got, &l), 0);
	cr_assert(l == 4096 && memcmp(got, v, l) == 0);
	aurakv_free(got);
	cr_assert_eq(aurakv_get(db, k, 100 + (n - 1) % 16, &got, &l), 0);
	cr_assert(l == 1u << 20 && memcmp(got, v, l) == 0);
	aurakv_free(got);
	cr_assert_eq(aurakv_get(db, k, AURAKV_MAX_KEY, &got, &l), 0);
	cr_assert(l == AURAKV_MAX_VALUE && memcmp(got, v, l) == 0);
	aurakv_free(got);
	cr_assert_eq(aurakv_get(db, k, 10, &got, &l), 0);
	cr_assert(l == AURAKV_MAX_VALUE && memcmp(got, v, l) == 0);
	aurakv_free(got);
	cr_assert_eq(aurakv_close(db), 0);
	aurakv_batch_free(b);
	free(k);
	free(v);
}

Test(kv_write, a_second_open_in_the_same_process_is_refused_and_the_first_still_works)
{
	struct kv_reports r = { 0 };
	aurakv_options_t o = kv_opts(&r);
	aurakv_t *db = kv_open_ok(dir, &o), *other = NULL;

	cr_assert_eq(aurakv_put(db, "a", 1, "1", 1, 0), 0);
	cr_assert_eq(aurakv_open(dir, &o, &other), AURAKV_ELOCKED);
	cr_assert_null(other);
	cr_assert_eq(r.locked, 1);
	cr_assert_eq(aurakv_put(db, "a", 1, "2", 1, AURAKV_SYNC), 0);
	expect(db, "a", "2");
	cr_assert_eq(aurakv_close(db), 0);
	db = kv_open_ok(dir, &o);
	expect(db, "a", "2");
	cr_assert_eq(aurakv_close(db), 0);
}

Test(kv_write, reopening_many_times_with_writes_between_loses_nothing)
{
	aurakv_options_t o = kv_opts(NULL);
	uint8_t v[4096];

	for (uint64_t round = 0; round < 40; round++) {
		aurakv_t *db = kv_open_ok(dir, &o);

		if (round > 0)
			kv_check_keys(db, 200, 1, round - 1, 3000);
		for (uint64_t i = 0; i < 200; i++) {
			char k[32];
			size_t kl = kv_key(k, i), vl = kv_value_len(i, round, 3000);

			kv_value(v, vl, i, round);
			cr_assert_eq(aurakv_put(db, k, kl, v, vl, 0), 0);
		}
		kv_check_keys(db, 200, 1, round, 3000);
		cr_assert_eq(aurakv_close(db), 0);
	}
}

Test(kv_write, open_validates_every_option_before_touching_the_directory)
{
	aurakv_options_t o;
	aurakv_t *db = NULL;
	char sub[600];
	struct stat st;

	snprintf(sub, sizeof(sub), "%s/s", dir);
	o = kv_opts(NULL);
	o.segment_size = (4ull << 30) + 4096;
	cr_assert_eq(aurakv_open(sub, &o, &db), -EINVAL);
	o = kv_opts(NULL);
	o.segment_size = (1u << 20) - 4096;
	cr_assert_eq(aurakv_open(sub, &o, &db), -EINVAL);
	o = kv_opts(NULL);
	o.gc_space_amp = 10.5;
	cr_assert_eq(aurakv_open(sub, &o, &db), -EINVAL);
	o = kv_opts(NULL);
	o.gc_space_amp = 0.0 / 0.0;
	cr_assert_eq(aurakv_open(sub, &o, &db), -EINVAL);
	o = kv_opts(NULL);
	o.flush_delay_us = 10000001;
	cr_assert_eq(aurakv_open(sub, &o, &db), -EINVAL);
	cr_assert_null(db);
	cr_assert_neq(stat(sub, &st), 0, "a refused open made the directory");
	cr_assert_eq(aurakv_open(NULL, &o, &db), -EINVAL);
	cr_assert_eq(aurakv_open("", &o, &db), -EINVAL);
	o = kv_opts(NULL);
	cr_assert_eq(aurakv_open(sub, &o, NULL), -EINVAL);
}

/* Two threads take turns at the store: each opens it (ELOCKED while the other has it),
 * writes a key of its own, closes. Every write is there at the end. */
static void *opener(void *arg)
{
	int t = (int) (intptr_t) arg;
	aurakv_options_t o = kv_opts(NULL);
	struct kv_reports r = { 0 };

	o.reporter = kv_record_report; /* the refusals are expected: keep stderr quiet */
	o.reporter_arg = &r;
	for (int i = 0; i < 20;) {
		aurakv_t *db = NULL;
		char k[32];
		int rc = aurakv_open(dir, &o, &db);

		if (rc == AURAKV_ELOCKED) {
			sched_yield();
			continue;
		}
		cr_assert_eq(rc, 0, "open: %s", aurakv_strerror(rc));
		snprintf(k, sizeof(k), "t%d-%02d", t, i);
		cr_assert_eq(aurakv_put(db, k, strlen(k), k, strlen(k), 0), 0);
		cr_assert_eq(aurakv_close(db), 0);
		i++;
	}
	return NULL;
}

Test(kv_write, threads_opening_and_closing_the_same_store_in_turn_lose_nothing)
{
	aurakv_options_t o = kv_opts(NULL);
	pthread_t th[2];
	aurakv_t *db;

	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, opener, (void *) (intptr_t) i), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	db = kv_open_ok(dir, &o);
	for (int t = 0; t < 2; t++)
		for (int i = 0; i < 20; i++) {
			char k[32];

			snprintf(k, sizeof(k), "t%d-%02d", t, i);
			expect(db, k, k);
		}
	cr_assert_eq(aurakv_close(db), 0);
}

/* A store directory whose own path fits PATH_MAX but whose files' paths (LOCK, hints/...)
 * do not: the store built them in 4096-byte buffers with snprintf, cut them short, and
 * made the lock file and hints directory under other names - outside the store. The
 * open must refuse such a directory, having made nothing. */
Test(kv_write, a_directory_too_long_for_the_stores_file_names_is_refused)
{
	char *deep = malloc(8192);
	size_t len;
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db = NULL;
	int rc, dfd;

	/* build dir/aaaa.../aaaa... (components of 200 bytes) up to ~4070 bytes */
	len = (size_t) snprintf(deep, 8192, "%s", dir);
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(dfd, 0);
	while (len < 4070 - 201) {
		char comp[201];
		int next;

		memset(comp, 'a', 200);
		comp[200] = '\0';
		cr_assert_eq(mkdirat(dfd, comp, 0755), 0, "mkdir: %s", strerror(errno));
		next = openat(dfd, comp, O_RDONLY | O_DIRECTORY);
		cr_assert_geq(next, 0);
		close(dfd);
		dfd = next;
		len += (size_t) snprintf(deep + len, 8192 - len, "/%s", comp);
	}
	close(dfd);
	/* the last component brings the store's path to 4070 bytes: fine itself, too long
	 * for "<dir>/hints/<16 hex>.hint" */
	memset(deep + len, 0, 8192 - len);
	deep[len] = '/';
	memset(deep + len + 1, 'b', 4070 - len - 1);
	rc = aurakv_open(deep, &o, &db);
	if (rc == 0)
		aurakv_close(db);
	cr_assert_eq(rc, -ENAMETOOLONG, "open: %s", aurakv_strerror(rc));
	cr_assert_eq(access(deep, F_OK), -1, "nothing made");
	free(deep);
}
