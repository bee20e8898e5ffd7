/* SPDX-License-Identifier: MIT */
/*
 * run_uring.c - the baseline: the same workload through a minimal hand-written liburing
 * loop, one io_uring per thread with --qd entries.
 *
 * Each thread prepares qd SQEs, then loops: io_uring_submit_and_wait(ring, 1), reap
 * every ready CQE, record its latency, prepare the slot again. The per-I/O work matches
 * the engine path: one clock read when a request is prepared, one per reaped batch for
 * completion, and the same atomic histogram. Setup flags follow the engine:
 * COOP_TASKRUN + TASKRUN_FLAG where the kernel accepts them, SQPOLL on request, and -
 * as a diagnostic only - fio's SINGLE_ISSUER + DEFER_TASKRUN with --defer-taskrun.
 * Entering the kernel on every loop (submit_and_wait) also runs any parked task work, so
 * the COOP_TASKRUN timer-tick trap cannot occur here.
 */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

#include "iobench.h"

#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_TASKRUN_FLAG
#define IORING_SETUP_TASKRUN_FLAG (1U << 9)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

struct uring_job {
	struct job *j;
	struct io_uring ring;
	bool fixed_file;
	bool fixed_buf;
};

static int ring_init(struct io_uring *ring, unsigned entries, unsigned flags)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = flags;
	if (flags & IORING_SETUP_SQPOLL)
		p.sq_thread_idle = 1000; /* the engine's default sqpoll_idle_ms */
	return io_uring_queue_init_params(entries, ring, &p);
}

struct ring_mode {
	bool sqpoll, coop, defer;
};

/*
 * The flag ladder: SQPOLL if asked; else SINGLE_ISSUER + DEFER_TASKRUN if asked (what
 * fio 3.33 sets up: completions are posted only when the task waits for them); else
 * COOP_TASKRUN + TASKRUN_FLAG, as the engine; else a plain ring.
 */
static int setup_ring(struct uring_job *u, struct ring_mode *m)
{
	const struct bench_config *cfg = &u->j->b->cfg;
	unsigned entries = (unsigned) cfg->qd;
	unsigned coop = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	int rc;

	memset(m, 0, sizeof(*m));
	if (cfg->sqpoll && ring_init(&u->ring, entries, IORING_SETUP_SQPOLL) == 0) {
		m->sqpoll = true;
		return 0;
	}
	if (cfg->defer_taskrun &&
	    ring_init(&u->ring, entries,
		      coop | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) == 0) {
		m->defer = m->coop = true;
		return 0;
	}
	rc = ring_init(&u->ring, entries, coop);
	if (rc == 0)
		m->coop = true;
	else if (rc == -EINVAL)
		rc = ring_init(&u->ring, entries, 0);
	return rc;
}

static int setup_buffers(struct uring_job *u)
{
	struct job *j = u->j;
	uint64_t len = (j->b->cfg.bs + 4095) & ~4095ull;
	struct iovec *iov = calloc((size_t) j->b->cfg.qd, sizeof(*iov));
	int rc = 0;

	if (!iov)
		return -ENOMEM;
	for (int i = 0; i < j->b->cfg.qd; i++) {
		struct slot *s = &j->slots[i];

		s->buf = aligned_alloc(4096, len);
		if (!s->buf) {
			rc = -ENOMEM;
			break;
		}
		s->buf_index = i;
		slot_fill(s, j->b->cfg.bs);
		iov[i].iov_base = s->buf;
		iov[i].iov_len = j->b->cfg.bs;
	}
	if (rc == 0 && j->b->cfg.reg_bufs) {
		rc = io_uring_register_buffers(&u->ring, iov, (unsigned) j->b->cfg.qd);
		u->fixed_buf = rc == 0;
	}
	free(iov);
	return rc;
}

static int setup(struct uring_job *u)
{
	struct bench *b = u->j->b;
	struct ring_mode m;
	int rc = setup_ring(u, &m);

	if (rc) {
		fprintf(stderr, "iobench: io_uring_queue_init: %s\n", auraio_strerror(rc));
		return rc;
	}
	if (u->j->id == 0) {
		b->uring_sqpoll = m.sqpoll;
		b->uring_coop = m.coop;
		b->uring_defer = m.defer;
	}
	if ((rc = setup_buffers(u)) != 0) {
		fprintf(stderr, "iobench: setting up buffers: %s\n", auraio_strerror(rc));
		return rc;
	}
	if (b->cfg.reg_files) {
		rc = io_uring_register_files(&u->ring, &b->fd, 1);
		if (rc) {
			fprintf(stderr, "iobench: io_uring_register_files: %s\n",
				auraio_strerror(rc));
			return rc;
		}
		u->fixed_file = true;
	}
	return 0;
}

static void prep(struct uring_job *u, struct slot *s)
{
	struct bench *b = u->j->b;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	int fd = u->fixed_file ? 0 : b->fd;
	unsigned len = (unsigned) b->cfg.bs;
	uint64_t off = slot_next_offset(s);

	/* Cannot be NULL: at most qd entries are in flight or queued, in a qd-entry SQ. */
	if (b->cfg.is_write && u->fixed_buf)
		io_uring_prep_write_fixed(sqe, fd, s->buf, len, off, s->buf_index);
	else if (b->cfg.is_write)
		io_uring_prep_write(sqe, fd, s->buf, len, off);
	else if (u->fixed_buf)
		io_uring_prep_read_fixed(sqe, fd, s->buf, len, off, s->buf_index);
	else
		io_uring_prep_read(sqe, fd, s->buf, len, off);
	if (u->fixed_file)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, s);
	s->prep_ns = now_ns();
}

/* Handle every ready CQE; returns how many slots were not resubmitted. */
static unsigned reap(struct uring_job *u)
{
	struct job *j = u->j;
	struct bench *b = j->b;
	struct io_uring_cqe *cqe;
	uint64_t now = now_ns();
	unsigned head, n = 0, retired = 0;

	io_uring_for_each_cqe(&u->ring, head, cqe)
	{
		struct slot *s = io_uring_cqe_get_data(cqe);

		n++;
		if (cqe->res != (int) b->cfg.bs)
			bench_fail(b, cqe->res < 0 ? cqe->res : -EIO);
		else if (bench_phase(b) == PHASE_MEASURE)
			hist_record(&j->hist, now - s->prep_ns);
		if (job_take_io(j))
			prep(u, s);
		else
			retired++;
	}
	io_uring_cq_advance(&u->ring, n);
	return retired;
}

static void loop(struct uring_job *u)
{
	struct job *j = u->j;
	struct bench *b = j->b;
	unsigned in_flight = 0;

	for (int i = 0; i < b->cfg.qd && job_take_io(j); i++, in_flight++)
		prep(u, &j->slots[i]);
	while (in_flight > 0) {
		int rc = io_uring_submit_and_wait(&u->ring, 1);

		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
			bench_fail(b, rc);
			break; /* io_uring_queue_exit cancels what is left */
		}
		if (bench_phase(b) == PHASE_MEASURE) {
			j->enters++;
			j->sqes += rc > 0 ? (uint64_t) rc : 0;
		}
		in_flight -= reap(u);
	}
}

static void *job_main(void *arg)
{
	struct uring_job u;
	struct job *j = arg;
	int rc;

	memset(&u, 0, sizeof(u));
	u.j = j;
	rc = setup(&u);
	if (rc)
		bench_fail(j->b, rc);
	bench_wait_start(j->b);
	if (rc == 0) {
		loop(&u);
		io_uring_queue_exit(&u.ring);
	} else if (u.ring.ring_fd > 0) {
		io_uring_queue_exit(&u.ring);
	}
	for (int i = 0; i < j->b->cfg.qd; i++) {
		free(j->slots[i].buf);
		j->slots[i].buf = NULL;
	}
	return NULL;
}

int run_uring(struct bench *b)
{
	int rc = jobs_create(b);

	if (rc) {
		fprintf(stderr, "iobench: %s\n", auraio_strerror(rc));
		return rc;
	}
	return bench_run_threads(b, job_main, NULL);
}
