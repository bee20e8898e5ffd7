/* SPDX-License-Identifier: MIT */
/*
 * backend_threads.c - the fallback backend: worker threads doing pread/pwrite/fsync,
 * for systems where io_uring is unavailable (disabled by sysctl, blocked by seccomp,
 * old kernel) or when it is forced for testing.
 *
 * Same semantics as io_uring for everything the core relies on: a linked chain runs in
 * order on one worker and a failed or short operation cancels the rest (-ECANCELED);
 * cancellation succeeds for operations not yet started (a chain no worker has taken is
 * completed by the cancel itself: no worker may ever be free), and for operations
 * waiting on a stream (pipe, socket: the only files where a read can block forever) -
 * a worker waits for a stream with poll() on the fd and on its own "kick" eventfd,
 * which a cancel writes; operations on regular files always finish. Completions are
 * posted to a bounded queue (never more than the CQ size io_uring would have) and an
 * eventfd that is readable exactly while that queue is non-empty. An operation on a
 * registered file uses its own dup of the fd, taken when it is staged: auraio.h lets
 * the caller close a registered fd once its slot is replaced, and io_uring's operations
 * keep the file they were submitted on, so a worker must never find another file under
 * that fd number.
 *
 * Lock order: tb->lock and tb->done_lock are leaves, never held together.
 * Must never: run a user callback (the core does that), or block holding a lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine.h"

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif
#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

enum { TB_QUEUED = 0, TB_STARTED = 1, TB_CANCELLED = 2, TB_CANCEL_RUNNING = 3 };

struct tb_ring;

struct tb_worker {
	pthread_t thread;
	int kick_fd; /* eventfd: a cancel wants this worker's current operation to stop */
	uint8_t index;
	struct tb_ring *tb;
};

struct tb_ring {
	pthread_mutex_t lock; /* queue, stop, request tb_started */
	/* Idle workers sleep on this, not on a condition variable: glibc 2.36's can lose a
	 * wake-up (its bug 25847), and a worker that missed one would leave queued I/O
	 * unserved - a hang, since nobody publishes again while waiting for it. */
	struct eventcount work;
	struct auraio_request *q_head, *q_tail;	  /* chain heads, linked by ->next */
	struct auraio_request *st_head, *st_tail; /* staged (sq_lock), not yet queued */
	bool stop;
	bool cancel_all; /* destroy: every operation still waiting on a stream stops */
	struct tb_worker *workers;
	int nworkers;	    /* running */
	int nworkers_alloc; /* entries of workers[] with a kick_fd */

	pthread_mutex_t done_lock; /* the completion queue and the eventfd's state */
	struct completion *done;
	unsigned done_cap, done_head, done_count;
	int efd;
};

static inline struct tb_ring *TB(struct ring *r)
{
	return r->backend;
}

static void post(struct tb_ring *tb, uint64_t ud, int64_t res)
{
	uint64_t one = 1;

	pthread_mutex_lock(&tb->done_lock);
	tb->done[(tb->done_head + tb->done_count) % tb->done_cap] =
	    (struct completion){ .ud = ud, .res = res };
	if (tb->done_count++ == 0 && write(tb->efd, &one, sizeof(one)) < 0)
		abort(); /* an eventfd write only fails on overflow, impossible here */
	pthread_mutex_unlock(&tb->done_lock);
}

static size_t expected_bytes(const struct auraio_request *req)
{
	size_t total = 0;

	if (req->opcode == AURAIO_OP_READ || req->opcode == AURAIO_OP_WRITE)
		return req->len;
	if (req->opcode == AURAIO_OP_FSYNC)
		return 0;
	for (uint64_t i = 0; i < req->len; i++)
		total += ((const struct iovec *) req->addr)[i].iov_len;
	return total;
}

static bool is_read(const struct auraio_request *req)
{
	return req->opcode == AURAIO_OP_READ || req->opcode == AURAIO_OP_READV;
}

/* Should the operation `req` running on worker w stop? */
static bool cancel_pending(struct tb_worker *w, struct auraio_request *req)
{
	bool stop;

	pthread_mutex_lock(&w->tb->lock);
	stop = w->tb->cancel_all || req->tb_started == TB_CANCEL_RUNNING;
	pthread_mutex_unlock(&w->tb->lock);
	return stop;
}

/* Wait until the stream is ready or a cancel arrives. 0 or -ECANCELED. */
static int wait_stream(struct tb_worker *w, struct auraio_request *req)
{
	struct pollfd p[2] = { { .fd = req->tb_fd, .events = is_read(req) ? POLLIN : POLLOUT },
			       { .fd = w->kick_fd, .events = POLLIN } };
	uint64_t v;

	for (;;) {
		if (cancel_pending(w, req))
			return -ECANCELED;
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return 0; /* let the read or write report the error */
		if (p[1].revents && read(w->kick_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			return -errno;
		if (p[0].revents)
			return cancel_pending(w, req) ? -ECANCELED : 0;
	}
}

/*
 * Streams (pipes, sockets) ignore the offset, as io_uring does for them, and are never
 * waited on inside the call: with RWF_NOWAIT a pipe with less room than the write takes
 * what fits and the write completes short, as with io_uring, instead of blocking until a
 * reader drains it (no cancel or destroy could stop that); "not ready" is -EAGAIN, and
 * the caller polls again. A stream without RWF_NOWAIT support blocks as before.
 */
static ssize_t rw_once(const struct auraio_request *req, const struct iovec *iov, int cnt,
		       bool stream)
{
	int fd = req->tb_fd;
	ssize_t rc;

	if (stream) {
		rc = is_read(req) ? preadv2(fd, iov, cnt, -1, RWF_NOWAIT)
				  : pwritev2(fd, iov, cnt, -1, RWF_NOWAIT);
		if (rc >= 0 || errno != EOPNOTSUPP)
			return rc;
		return is_read(req) ? readv(fd, iov, cnt) : writev(fd, iov, cnt);
	}
	if (is_read(req))
		return preadv(fd, iov, cnt, req->offset);
	return pwritev2(fd, iov, cnt, req->offset, (int) req->rw_flags);
}

static int64_t execute(struct tb_worker *w, struct auraio_request *req)
{
	const struct iovec *iov = req->fault_iov ? req->fault_iov : req->addr;
	struct iovec one = { .iov_base = req->addr, .iov_len = req->len };
	bool vec = req->opcode == AURAIO_OP_READV || req->opcode == AURAIO_OP_WRITEV;
	bool stream = false;
	ssize_t rc;

	if (req->flags & REQF_NOP)
		return 0;
	if (req->tb_fd < 0)
		return req->tb_fd; /* the registered file could not be dup'ed */
	if (req->opcode == AURAIO_OP_FSYNC) {
		rc = (req->rw_flags & IORING_FSYNC_DATASYNC) ? fdatasync(req->tb_fd)
							     : fsync(req->tb_fd);
		return rc < 0 ? -errno : 0;
	}
	for (;;) {
		if (stream && (rc = wait_stream(w, req)) < 0)
			return rc;
		rc = rw_once(req, vec ? iov : &one, vec ? (int) req->len : 1, stream);
		if (rc >= 0)
			return rc;
		if (errno == ESPIPE && !stream)
			stream = true; /* no offsets here: a pipe or socket */
		else if (errno != EINTR && !(stream && errno == EAGAIN))
			return -errno;
	}
}

/* Run one chain; after a failure or short transfer the rest is cancelled. */
static void run_chain(struct tb_worker *w, struct auraio_request *head)
{
	struct tb_ring *tb = w->tb;
	bool broken = false;

	for (struct auraio_request *req = head, *next; req; req = next) {
		uint64_t ud = request_ud(req);
		bool cancelled;
		int64_t res;

		/* Read before posting: once posted, req may be recycled. */
		next = req->chain_next;
		pthread_mutex_lock(&tb->lock);
		cancelled = broken || req->tb_started == TB_CANCELLED;
		req->tb_started = TB_STARTED;
		req->tb_worker = w->index;
		pthread_mutex_unlock(&tb->lock);
		res = cancelled ? -ECANCELED : execute(w, req);
		/* A link cancelled before it started failed too: as io_uring does, the
		 * links after it complete with -ECANCELED rather than run. */
		if (cancelled || res < 0 || (size_t) res != expected_bytes(req))
			broken = true;
		if ((req->flags & REQF_FIXED_FILE) && req->tb_fd >= 0)
			close(req->tb_fd);
		post(tb, ud, res);
	}
}

static void *worker(void *arg)
{
	struct tb_worker *w = arg;
	struct tb_ring *tb = w->tb;

	for (;;) {
		struct auraio_request *chain;
		uint32_t seen = ev_prepare(&tb->work);
		bool stop;

		pthread_mutex_lock(&tb->lock);
		chain = tb->q_head;
		if (chain) {
			tb->q_head = chain->next;
			if (!tb->q_head)
				tb->q_tail = NULL;
		}
		stop = tb->stop;
		pthread_mutex_unlock(&tb->lock);
		if (chain) {
			ev_cancel(&tb->work);
			run_chain(w, chain);
		} else if (stop) {
			ev_cancel(&tb->work);
			return NULL;
		} else {
			ev_wait(&tb->work, seen, -1); /* until something is queued, or stop */
		}
	}
}

static void tb_free(struct tb_ring *tb)
{
	if (tb->efd >= 0)
		close(tb->efd);
	pthread_mutex_destroy(&tb->lock);
	pthread_mutex_destroy(&tb->done_lock);
	for (int i = 0; tb->workers && i < tb->nworkers_alloc; i++)
		if (tb->workers[i].kick_fd >= 0)
			close(tb->workers[i].kick_fd);
	free(tb->done);
	free(tb->workers);
	free(tb);
}

static void stop_workers(struct tb_ring *tb)
{
	pthread_mutex_lock(&tb->lock);
	tb->stop = true;
	pthread_mutex_unlock(&tb->lock);
	ev_notify(&tb->work);
	for (int i = 0; i < tb->nworkers; i++)
		pthread_join(tb->workers[i].thread, NULL);
	tb->nworkers = 0;
}

static int start_workers(struct tb_ring *tb, int want)
{
	int rc = 0;

	tb->workers = calloc((size_t) want, sizeof(*tb->workers));
	if (!tb->workers)
		return -ENOMEM;
	for (int i = 0; i < want; i++) {
		tb->workers[i].kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		tb->workers[i].index = (uint8_t) i;
		tb->workers[i].tb = tb;
		tb->nworkers_alloc++;
		if (tb->workers[i].kick_fd < 0)
			return -errno;
	}
	for (; rc == 0 && tb->nworkers < want; tb->nworkers++)
		rc = -pthread_create(&tb->workers[tb->nworkers].thread, NULL, worker,
				     &tb->workers[tb->nworkers]);
	if (rc)
		tb->nworkers--; /* the failed one never started */
	return rc;
}

static int tb_ring_init(struct ring *r)
{
	struct tb_ring *tb = calloc(1, sizeof(*tb));
	int rc = 0;

	if (!tb)
		return -ENOMEM;
	pthread_mutex_init(&tb->lock, NULL);
	pthread_mutex_init(&tb->done_lock, NULL);
	ev_init(&tb->work);
	tb->done_cap = 2 * r->queue_depth + 2;
	tb->done = calloc(tb->done_cap, sizeof(*tb->done));
	tb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!tb->done || tb->efd < 0)
		rc = tb->efd < 0 ? -errno : -ENOMEM;
	if (rc == 0)
		rc = start_workers(tb, r->engine->opts.thread_workers);
	if (rc) {
		stop_workers(tb);
		tb_free(tb);
		return rc;
	}
	r->backend = tb;
	r->sqpoll = false;
	r->coop = false;
	return 0;
}

static void tb_ring_fini(struct ring *r)
{
	if (!r->backend)
		return;
	stop_workers(TB(r));
	tb_free(TB(r));
	r->backend = NULL;
}

/* The fd a worker will use: a registered file's own dup (closed when it completes), so
 * that closing the fd after replacing its slot cannot change the file; else -errno. */
static int op_fd(const struct auraio_request *req)
{
	int fd;

	if (!(req->flags & REQF_FIXED_FILE))
		return req->fd;
	fd = fcntl(req->fd, F_DUPFD_CLOEXEC, 0);
	return fd >= 0 ? fd : -errno;
}

static int tb_stage(struct ring *r, struct auraio_request **reqs, int n)
{
	struct tb_ring *tb = TB(r);

	for (int i = 0; i < n; i++) {
		reqs[i]->chain_next = i + 1 < n ? reqs[i + 1] : NULL;
		reqs[i]->tb_started = TB_QUEUED;
		reqs[i]->tb_fd = op_fd(reqs[i]);
	}
	reqs[0]->next = NULL;
	if (tb->st_tail)
		tb->st_tail->next = reqs[0];
	else
		tb->st_head = reqs[0];
	tb->st_tail = reqs[0];
	counter_add(&r->sqes, (uint64_t) n);
	return 0;
}

static unsigned tb_publish(struct ring *r)
{
	struct tb_ring *tb = TB(r);

	if (!tb->st_head)
		return 0;
	pthread_mutex_lock(&tb->lock);
	if (tb->q_tail)
		tb->q_tail->next = tb->st_head;
	else
		tb->q_head = tb->st_head;
	tb->q_tail = tb->st_tail;
	pthread_mutex_unlock(&tb->lock);
	ev_notify(&tb->work);
	tb->st_head = tb->st_tail = NULL;
	return 0; /* nothing left for enter() */
}

static int tb_enter(struct ring *r, unsigned to_submit)
{
	return 0;
}

static int tb_reap(struct ring *r, struct completion *out, int max, bool may_enter)
{
	struct tb_ring *tb = TB(r);
	uint64_t v;
	int n = 0;

	pthread_mutex_lock(&tb->done_lock);
	while (n < max && tb->done_count) {
		out[n++] = tb->done[tb->done_head];
		tb->done_head = (tb->done_head + 1) % tb->done_cap;
		tb->done_count--;
	}
	/* Keep the eventfd readable exactly while completions wait. */
	if (n && tb->done_count == 0 && read(tb->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		abort();
	pthread_mutex_unlock(&tb->done_lock);
	return n;
}

static int tb_wait(struct ring *r, unsigned to_submit, int64_t timeout_ns)
{
	struct pollfd p = { .fd = TB(r)->efd, .events = POLLIN };
	struct timespec ts, *tsp = NULL;
	int rc;

	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / (int64_t) NSEC_PER_SEC;
		ts.tv_nsec = timeout_ns % (int64_t) NSEC_PER_SEC;
		tsp = &ts;
	}
	rc = ppoll(&p, 1, tsp, NULL);
	if (rc < 0)
		return errno == EINTR ? -EINTR : -errno;
	return rc == 0 ? -ETIME : 0;
}

static void kick(struct tb_worker *w)
{
	uint64_t one = 1;

	if (write(w->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		abort(); /* only overflow can fail, and the value stays tiny */
}

/* tb->lock held: take the chain headed by req out of the queue, if it is queued there
 * (not staged, not taken by a worker, not a later link). Returns whether it was. */
static bool unqueue_chain(struct tb_ring *tb, struct auraio_request *req)
{
	struct auraio_request *prev = NULL;

	for (struct auraio_request *c = tb->q_head; c; prev = c, c = c->next) {
		if (c != req)
			continue;
		if (prev)
			prev->next = c->next;
		else
			tb->q_head = c->next;
		if (tb->q_tail == c)
			tb->q_tail = prev;
		return true;
	}
	return false;
}

/* Complete a chain no worker took: every member with -ECANCELED, as run_chain would once
 * a worker got to it - which, behind workers waiting on streams, may be never. */
static void cancel_chain(struct tb_ring *tb, struct auraio_request *head)
{
	for (struct auraio_request *req = head, *next; req; req = next) {
		next = req->chain_next; /* read before posting: once posted, req may be recycled */
		if ((req->flags & REQF_FIXED_FILE) && req->tb_fd >= 0)
			close(req->tb_fd);
		post(tb, request_ud(req), -ECANCELED);
	}
}

/*
 * sq_lock held. A chain head no worker has taken is completed at once, as io_uring
 * completes a request it has not started (auraio_cancel: "then completes"); staged ones
 * are queued first so that they are found. A later link not started is marked: its chain
 * stops before it. A running operation is kicked if it waits on a stream.
 */
static int tb_cancel(struct ring *r, struct auraio_request *req)
{
	struct tb_ring *tb = TB(r);
	bool unqueued = false;
	int running = -1;

	tb_publish(r);
	pthread_mutex_lock(&tb->lock);
	if (req->tb_started == TB_QUEUED) {
		req->tb_started = TB_CANCELLED;
		unqueued = unqueue_chain(tb, req);
	} else if (req->tb_started == TB_STARTED) {
		req->tb_started = TB_CANCEL_RUNNING;
		running = req->tb_worker;
	}
	pthread_mutex_unlock(&tb->lock);
	if (unqueued)
		cancel_chain(tb, req);
	if (running >= 0)
		kick(&tb->workers[running]);
	post(tb, UD_INTERNAL, 0); /* the cancel operation's own completion */
	return 0;
}

static void tb_cancel_all(struct ring *r)
{
	struct tb_ring *tb = TB(r);

	pthread_mutex_lock(&tb->lock);
	for (struct auraio_request *c = tb->q_head; c; c = c->next)
		for (struct auraio_request *q = c; q; q = q->chain_next)
			if (q->tb_started == TB_QUEUED)
				q->tb_started = TB_CANCELLED;
	tb->cancel_all = true;
	pthread_mutex_unlock(&tb->lock);
	for (int i = 0; i < tb->nworkers; i++)
		kick(&tb->workers[i]);
	post(tb, UD_INTERNAL, 0);
}

static void tb_kick(struct ring *r)
{
}

static int tb_poll_fd(struct ring *r)
{
	return TB(r)->efd;
}

/* Workers use each request's own fd, never a registered slot; but the core counts the
 * staged requests as sent (batch_sent), so they go to the workers. */
static int tb_send_queued(struct ring *r)
{
	tb_publish(r);
	return 0;
}

static int tb_register_files(struct ring *r, const int *fds, unsigned n)
{
	return 0; /* workers use the fd itself; the engine's table still routes checks */
}

static int tb_update_file(struct ring *r, unsigned slot, int fd)
{
	return 0;
}

static void tb_unregister_files(struct ring *r)
{
}

static int tb_register_buffers(struct ring *r, const struct iovec *iovs, unsigned n)
{
	return -EOPNOTSUPP; /* nothing to pin: fixed references become plain pointers */
}

static void tb_unregister_buffers(struct ring *r)
{
}

const struct backend_ops backend_threads_ops = {
	.name = "threads",
	.ring_init = tb_ring_init,
	.ring_fini = tb_ring_fini,
	.stage = tb_stage,
	.publish = tb_publish,
	.enter = tb_enter,
	.reap = tb_reap,
	.wait = tb_wait,
	.cancel = tb_cancel,
	.cancel_all = tb_cancel_all,
	.kick = tb_kick,
	.poll_fd = tb_poll_fd,
	.send_queued = tb_send_queued,
	.register_files = tb_register_files,
	.update_file = tb_update_file,
	.unregister_files = tb_unregister_files,
	.register_buffers = tb_register_buffers,
	.unregister_buffers = tb_unregister_buffers,
};
