/* SPDX-License-Identifier: MIT */
/*
 * Concurrency: many submitting threads with one polling thread; many threads each
 * blocking on their own requests; every completion delivered exactly once with the
 * right data. Run under TSan in CI.
 */
#include <auraio.h>
#include <pthread.h>
#include <sched.h>

#include "io_concurrency.h"

#define THREADS	   8
#define PER_THREAD 1500
#define FILE_SIZE  (1 << 20)

static void *submitter(void *arg)
{
	struct shared *s = arg;
	struct op *ops = calloc(PER_THREAD, sizeof(*ops));
	unsigned seed = (unsigned) (uintptr_t) &ops;

	cr_assert_not_null(ops);
	for (int i = 0; i < PER_THREAD; i++) {
		ops[i].s = s;
		ops[i].off = (off_t) (rand_r(&seed) % (FILE_SIZE / 512)) * 512;
		while (!auraio_read(s->e, s->fd, auraio_buf(ops[i].buf), 512, ops[i].off, check_cb,
				    &ops[i])) {
			cr_assert_eq(errno, EAGAIN, "submit: %s", strerror(errno));
			sched_yield(); /* the poller frees room */
		}
	}
	wait_delivered(ops, PER_THREAD);
	free(ops);
	return NULL;
}

static auraio_engine_t *make_engine(int qd)
{
	auraio_options_t o;
	auraio_engine_t *e;

	auraio_options_init(&o);
	o.ring_count = 2;
	o.queue_depth = qd;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	return e;
}

Test(multithread, many_submitters_and_one_poller_deliver_every_completion_once)
{
	struct shared s = { .e = make_engine(32), .fd = temp_file(FILE_SIZE, 0) };

	run_with_poller(&s, THREADS, submitter);
	cr_assert_eq(atomic_load(&s.completed), THREADS * PER_THREAD);
	cr_assert_eq(atomic_load(&s.bad), 0);
	auraio_destroy(s.e);
	close(s.fd);
}

static void *waiter(void *arg)
{
	struct shared *s = arg;
	unsigned seed = (unsigned) (uintptr_t) &seed;
	char buf[512];

	for (int i = 0; i < PER_THREAD; i++) {
		off_t off = (off_t) (rand_r(&seed) % (FILE_SIZE / 512)) * 512;
		ssize_t res = 0;
		auraio_request_t *req;

		while (!(req = auraio_read(s->e, s->fd, auraio_buf(buf), 512, off, NULL, NULL))) {
			cr_assert_eq(errno, EAGAIN);
			auraio_poll(s->e);
		}
		cr_assert_eq(auraio_request_wait(s->e, req, 30000, &res), 0);
		if (res != 512 || !check_pattern(buf, 512, (uint64_t) off))
			atomic_fetch_add(&s->bad, 1);
		atomic_fetch_add(&s->completed, 1);
	}
	return NULL;
}

Test(multithread, many_threads_each_waiting_on_their_own_requests)
{
	struct shared s = { .e = make_engine(8), .fd = temp_file(FILE_SIZE, 0) };
	pthread_t w[THREADS];

	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&w[i], NULL, waiter, &s), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(w[i], NULL);
	cr_assert_eq(atomic_load(&s.completed), THREADS * PER_THREAD);
	cr_assert_eq(atomic_load(&s.bad), 0);
	auraio_destroy(s.e);
	close(s.fd);
}

Test(multithread, waiters_pollers_and_callbacks_mixed_on_one_engine)
{
	struct shared s = { .e = make_engine(16), .fd = temp_file(FILE_SIZE, 0) };
	pthread_t w[THREADS / 2], sub[THREADS / 2], pol;

	cr_assert_eq(pthread_create(&pol, NULL, poller, &s), 0);
	for (int i = 0; i < THREADS / 2; i++) {
		cr_assert_eq(pthread_create(&w[i], NULL, waiter, &s), 0);
		cr_assert_eq(pthread_create(&sub[i], NULL, submitter, &s), 0);
	}
	for (int i = 0; i < THREADS / 2; i++) {
		pthread_join(w[i], NULL);
		pthread_join(sub[i], NULL);
	}
	atomic_store(&s.stop, true);
	pthread_join(pol, NULL);
	cr_assert_eq(atomic_load(&s.completed), THREADS * PER_THREAD);
	cr_assert_eq(atomic_load(&s.bad), 0);
	auraio_destroy(s.e);
	close(s.fd);
}
