/* SPDX-License-Identifier: MIT */
/*
 * run_auraio.c - the engine mode: ONE shared engine for all threads, as a real program
 * would use it.
 *
 * Each thread submits its slots until it has --qd in flight (or gets EAGAIN), then
 * loops in auraio_wait(). The completion callback records the request's latency
 * (auraio_request_latency_ns) into the submitting job's histogram and resubmits the slot
 * from inside the callback. A callback may run in any thread that waits, so everything
 * it touches in the job is atomic; the slot itself is touched only by whoever handles
 * its completion, one at a time.
 *
 * A slot refused with EAGAIN (the ring is at its in-flight limit: --adaptive, or rings
 * shared by threads) is parked on the job's idle list; the owner resubmits it after its
 * next wait.
 *
 * --batch: the callback only records the latency and pushes the slot onto the job's
 * ready stack; after each wait the owner resubmits every ready slot with one
 * auraio_submit_batch() call (what is not accepted is parked as above). With several
 * threads a slot completed by another thread waits for its owner's wait to end.
 *
 * Must never: let a thread leave while a callback may still resubmit one of its slots
 * (see job.in_flight in iobench.h), or free a buffer before the engine is destroyed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "iobench.h"

/*
 * With one thread every completion is handled by that thread, so it may wait without a
 * limit. With several, another thread can handle our last completion while we sleep in
 * the kernel with nothing left in flight anywhere; a bounded wait lets us notice.
 */
#define MULTI_THREAD_WAIT_MS 10

static void on_complete(auraio_request_t *req, ssize_t res, void *user_data);
static void on_complete_batch(auraio_request_t *req, ssize_t res, void *user_data);

/* Submit slot s with callback cb, without counting it in j->in_flight (the caller
 * has). 0 or -errno (-EAGAIN: the ring is at its limit). */
static inline int slot_issue(struct slot *s, auraio_callback_t cb)
{
	struct job *j = s->job;
	struct bench *b = j->b;
	off_t off = (off_t) slot_next_offset(s);
	auraio_request_t *req;

	/* The buffer reference is built in each call, not in a variable: passed by value, it
	 * is then written once, where the call takes it, instead of written and copied. */
	if (b->cfg.reg_bufs && b->cfg.is_write)
		req = auraio_write(b->engine, b->fd, auraio_buf_fixed(s->buf_index, 0), b->cfg.bs,
				   off, cb, s);
	else if (b->cfg.reg_bufs)
		req = auraio_read(b->engine, b->fd, auraio_buf_fixed(s->buf_index, 0), b->cfg.bs,
				  off, cb, s);
	else if (b->cfg.is_write)
		req = auraio_write(b->engine, b->fd, auraio_buf(s->buf), b->cfg.bs, off, cb, s);
	else
		req = auraio_read(b->engine, b->fd, auraio_buf(s->buf), b->cfg.bs, off, cb, s);
	return req ? 0 : -errno;
}

/* Submit slot s with callback cb, counted in j->in_flight. 0 or -errno. */
static int slot_submit_cb(struct slot *s, auraio_callback_t cb)
{
	struct job *j = s->job;
	int rc;

	/* Count it before it can complete: the callback may run in another thread before
	 * the submit call even returns. */
	atomic_fetch_add_explicit(&j->in_flight, 1, memory_order_relaxed);
	rc = slot_issue(s, cb);
	if (rc != 0)
		atomic_fetch_sub_explicit(&j->in_flight, 1, memory_order_relaxed);
	return rc;
}

static void slot_park(struct slot *s)
{
	struct job *j = s->job;

	pthread_mutex_lock(&j->idle_lock);
	j->idle[j->nidle++] = (int) (s - j->slots);
	atomic_store_explicit(&j->nidle_hint, j->nidle, memory_order_relaxed);
	pthread_mutex_unlock(&j->idle_lock);
}

/* Owner: submit parked slots until none is left or the ring says EAGAIN. Submitting
 * with idle_lock held is safe: a submit call never runs callbacks. */
static void job_refill(struct job *j)
{
	struct bench *b = j->b;

	if (atomic_load_explicit(&j->nidle_hint, memory_order_relaxed) == 0)
		return;
	pthread_mutex_lock(&j->idle_lock);
	while (j->nidle > 0 && job_take_io(j)) {
		int rc = slot_submit_cb(&j->slots[j->idle[j->nidle - 1]],
					b->cfg.batch ? on_complete_batch : on_complete);

		if (rc != 0)
			job_untake_io(j);
		if (rc == -EAGAIN)
			break;
		if (rc != 0) {
			bench_fail(b, rc);
			break;
		}
		j->nidle--;
	}
	atomic_store_explicit(&j->nidle_hint, j->nidle, memory_order_relaxed);
	pthread_mutex_unlock(&j->idle_lock);
}

static void on_complete(auraio_request_t *req, ssize_t res, void *user_data)
{
	struct slot *s = user_data;
	struct job *j = s->job;
	struct bench *b = j->b;

	if (res != (ssize_t) b->cfg.bs)
		bench_fail(b, res < 0 ? (int) res : -EIO); /* a short transfer is a failure */
	else if (bench_phase(b) == PHASE_MEASURE)
		hist_record(&j->hist, auraio_request_latency_ns(req));
	if (job_take_io(j)) {
		/* The slot's count in j->in_flight passes to its next I/O, so it never drops
		 * while the resubmission is under way; after it this callback touches nothing
		 * of the job. The liburing loop keeps no such count: an add and a subtract per
		 * I/O here would be work the baseline does not do. */
		int rc = slot_issue(s, on_complete);

		if (rc == 0)
			return;
		job_untake_io(j);
		if (rc == -EAGAIN)
			slot_park(s);
		else
			bench_fail(b, rc);
	}
	/* Release, after any parking: pairs with the owner's acquire load, so an owner
	 * that sees 0 once the job is finished knows no callback of its job is still going. */
	atomic_fetch_sub_explicit(&j->in_flight, 1, memory_order_release);
}

/* --batch: the callback. Records, then hands the slot to its owner. */
static void on_complete_batch(auraio_request_t *req, ssize_t res, void *user_data)
{
	struct slot *s = user_data;
	struct job *j = s->job;
	struct bench *b = j->b;
	struct slot *top;

	if (res != (ssize_t) b->cfg.bs)
		bench_fail(b, res < 0 ? (int) res : -EIO);
	else if (bench_phase(b) == PHASE_MEASURE)
		hist_record(&j->hist, auraio_request_latency_ns(req));
	top = atomic_load_explicit(&j->ready, memory_order_relaxed);
	do
		s->next_ready = top;
	while (!atomic_compare_exchange_weak_explicit(&j->ready, &top, s, memory_order_release,
						      memory_order_relaxed));
	atomic_fetch_sub_explicit(&j->in_flight, 1, memory_order_release);
}

/* --batch, owner: resubmit every ready slot in one call; park what is refused. */
static void job_resubmit_ready(struct job *j)
{
	struct bench *b = j->b;
	struct slot *s = atomic_exchange_explicit(&j->ready, NULL, memory_order_acquire);
	int n = 0, rc;

	/* At most qd slots exist, so the ops array (qd entries) holds them all. */
	for (; s && job_take_io(j); s = s->next_ready) {
		auraio_op_t *op = &j->ops[n];

		op->opcode = b->cfg.is_write ? AURAIO_OP_WRITE : AURAIO_OP_READ;
		op->fd = b->fd;
		op->buf = b->cfg.reg_bufs ? auraio_buf_fixed(s->buf_index, 0) : auraio_buf(s->buf);
		op->len = b->cfg.bs;
		op->offset = (off_t) slot_next_offset(s);
		op->flags = 0;
		op->cb = on_complete_batch;
		op->user_data = s;
		n++;
	}
	if (n == 0)
		return;
	/* Counted before they can complete, as in slot_submit_cb. */
	atomic_fetch_add_explicit(&j->in_flight, n, memory_order_relaxed);
	rc = auraio_submit_batch(b->engine, j->ops, n, NULL);
	if (rc < 0 && rc != -EAGAIN)
		bench_fail(b, rc);
	for (int i = rc > 0 ? rc : 0; i < n; i++) {
		atomic_fetch_sub_explicit(&j->in_flight, 1, memory_order_relaxed);
		job_untake_io(j);
		slot_park(j->ops[i].user_data);
	}
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	struct bench *b = j->b;
	int timeout = b->cfg.threads == 1 ? -1 : MULTI_THREAD_WAIT_MS;

	bench_wait_start(b);
	job_refill(j);
	for (;;) {
		int rc;

		if (job_finished(j) &&
		    atomic_load_explicit(&j->in_flight, memory_order_acquire) == 0)
			break;
		rc = auraio_wait(b->engine, timeout);
		if (rc < 0)
			bench_fail(b, rc);
		if (b->cfg.batch && !job_finished(j))
			job_resubmit_ready(j);
		if (!job_finished(j))
			job_refill(j);
	}
	return NULL;
}

static auraio_options_t engine_options(const struct bench_config *cfg)
{
	auraio_options_t o;

	auraio_options_init(&o);
	o.ring_count = cfg->single_thread ? 1 : cfg->rings;
	o.single_thread = cfg->single_thread;
	o.enable_sqpoll = cfg->sqpoll;
	if (cfg->adaptive) {
		/* The controller decides; --qd is the ceiling (the engine queue depth). */
		o.queue_depth = cfg->qd;
		o.disable_adaptive = false;
		o.max_p99_latency_ms = cfg->max_p99_ms;
	} else {
		/* A fixed limit that never refuses: threads routed to the same ring (by CPU)
		 * must all fit, so the limit is qd for every thread. */
		o.queue_depth = cfg->qd * cfg->threads;
		o.initial_in_flight = cfg->qd * cfg->threads;
		o.disable_adaptive = true;
	}
	return o;
}

/* Buffers from the engine's pool, and their registration when asked for. */
static int setup_buffers(struct bench *b)
{
	int n = b->cfg.threads * b->cfg.qd, rc = 0;
	struct iovec *iov = calloc((size_t) n, sizeof(*iov));

	if (!iov)
		return -ENOMEM;
	for (int i = 0; i < n && rc == 0; i++) {
		struct slot *s = &b->jobs[i / b->cfg.qd].slots[i % b->cfg.qd];

		s->buf = auraio_buffer_alloc(b->engine, b->cfg.bs);
		if (!s->buf) {
			rc = -errno;
			break;
		}
		s->buf_index = i;
		slot_fill(s, b->cfg.bs);
		iov[i].iov_base = s->buf;
		iov[i].iov_len = b->cfg.bs;
	}
	if (rc == 0 && b->cfg.reg_bufs) {
		rc = auraio_register_buffers(b->engine, iov, n);
		if (rc)
			fprintf(stderr, "iobench: auraio_register_buffers: %s\n",
				auraio_strerror(rc));
	}
	free(iov);
	return rc;
}

static int setup(struct bench *b)
{
	auraio_options_t o = engine_options(&b->cfg);
	int rc;

	b->engine = auraio_create_with_options(&o);
	if (!b->engine) {
		rc = -errno;
		fprintf(stderr, "iobench: auraio_create: %s\n", auraio_strerror(rc));
		return rc;
	}
	if ((rc = jobs_create(b)) != 0 || (rc = setup_buffers(b)) != 0) {
		fprintf(stderr, "iobench: setting up buffers: %s\n", auraio_strerror(rc));
		return rc;
	}
	if (b->cfg.reg_files && (rc = auraio_register_files(b->engine, &b->fd, 1)) != 0) {
		fprintf(stderr, "iobench: auraio_register_files: %s\n", auraio_strerror(rc));
		return rc;
	}
	return 0;
}

static void stats_hook(struct bench *b, int phase)
{
	auraio_get_stats(b->engine, phase == PHASE_MEASURE ? &b->st_begin : &b->st_end);
}

int run_auraio(struct bench *b)
{
	int rc = setup(b);

	if (rc == 0)
		rc = bench_run_threads(b, job_main, stats_hook);
	/* Frees the pool buffers too; nothing is in flight after the threads drained. */
	auraio_destroy(b->engine);
	b->engine = NULL;
	return rc;
}
