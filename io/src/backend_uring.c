/* SPDX-License-Identifier: MIT */
/*
 * backend_uring.c - the io_uring backend: one io_uring per ring.
 *
 * Owns: ring setup (COOP_TASKRUN + TASKRUN_FLAG, SQPOLL with fallback), SQE preparation,
 * publishing the SQ tail, entering the kernel, and copying CQEs out.
 *
 * Submission is split in two so that no lock is held inside a syscall: the sq_lock
 * holder publishes the SQ tail (userspace store), and then - lock released - someone
 * enters the kernel with to_submit. Two threads entering for the same entries is fine:
 * the kernel consumes each published SQE once, under its own lock.
 *
 * The 4 ms trap: with COOP_TASKRUN the kernel does not interrupt a task running in
 * userspace to post its completions; they wait as task work until the task next enters
 * the kernel, or until the next timer tick. A reaper that only peeks at the CQ would see
 * them a tick late. TASKRUN_FLAG makes the kernel raise IORING_SQ_TASKRUN while such work
 * is pending, and reap() enters the kernel whenever it sees the flag and an empty CQ.
 *
 * Must never: prepare an SQE without sq_lock, or read/advance the CQ without cq_lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "backend_uring.h"

/* Try one set of setup flags; 0 or -errno. */
static int uring_setup(struct uring_ring *ur, unsigned entries, unsigned flags,
		       const auraio_options_t *o)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = flags | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
	p.cq_entries = entries * 2;
	if (flags & IORING_SETUP_SQPOLL) {
		p.sq_thread_idle = (unsigned) o->sqpoll_idle_ms;
		if (o->sqpoll_cpu >= 0) {
			p.flags |= IORING_SETUP_SQ_AFF;
			p.sq_thread_cpu = (unsigned) o->sqpoll_cpu;
		}
	}
	return io_uring_queue_init_params(entries, &ur->ring, &p);
}

/*
 * Flag ladder: each step drops one optional feature the kernel may refuse.
 * SQPOLL goes first (it is the one most often refused), then COOP_TASKRUN.
 */
static int uring_ring_init(struct ring *r)
{
	const auraio_options_t *o = &r->engine->opts;
	struct uring_ring *ur = calloc(1, sizeof(*ur));
	unsigned coop = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	int rc = -EINVAL;

	if (!ur)
		return -ENOMEM;
	r->backend = ur;
	if (o->enable_sqpoll) {
		rc = uring_setup(ur, r->queue_depth, IORING_SETUP_SQPOLL, o);
		if (rc == 0)
			ur->sqpoll = true;
		else
			engine_log(r->engine, AURAIO_LOG_INFO,
				   "ring %u: SQPOLL refused (%s); using a normal ring", r->index,
				   strerror(-rc));
	}
	if (!ur->sqpoll) {
		rc = uring_setup(ur, r->queue_depth, coop, o);
		if (rc == 0)
			ur->coop = true;
		else if (rc == -EINVAL)
			rc = uring_setup(ur, r->queue_depth, 0, o);
	}
	if (rc < 0) {
		free(ur);
		r->backend = NULL;
		return rc;
	}
	r->sqpoll = ur->sqpoll;
	r->coop = ur->coop;
	return 0;
}

static void uring_ring_fini(struct ring *r)
{
	struct uring_ring *ur = r->backend;

	if (!ur)
		return;
	io_uring_queue_exit(&ur->ring);
	free(ur);
	r->backend = NULL;
}

static void uring_kick(struct ring *r)
{
	struct io_uring *u = U(r);

	if (sq_kflags(u) & IORING_SQ_TASKRUN) {
		io_uring_get_events(u);
		counter_add(&r->syscalls, 1);
	}
}

/*
 * SQPOLL: does the kernel thread need a wake-up? It sets NEED_WAKEUP and then looks at
 * the SQ tail once more before it sleeps; we published the tail and now read the flag.
 * A store then a load to another address may be reordered (on x86 too), and then each
 * side misses the other's write: the thread sleeps on entries we did not wake it for,
 * and they wait for the next enter. A full fence between the two, as liburing has.
 */
/* gcc's -Wtsan: TSan does not model fences; this one orders our store against the
 * kernel's, which TSan does not see either. */
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtsan"
#endif
static unsigned enter_flags(struct io_uring *u)
{
	if (!(u->flags & IORING_SETUP_SQPOLL))
		return 0;
	atomic_thread_fence(memory_order_seq_cst);
	return (sq_kflags(u) & IORING_SQ_NEED_WAKEUP) ? IORING_ENTER_SQ_WAKEUP : 0;
}
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic pop
#endif

/* Entries published and not yet consumed by the kernel (no lock needed: both indexes
 * are read with acquire, pairing with our release of the tail and the kernel's of the
 * head). */
static unsigned sq_unconsumed(struct io_uring *u)
{
	return io_uring_smp_load_acquire(u->sq.ktail) - io_uring_smp_load_acquire(u->sq.khead);
}

/*
 * After an enter that submitted rc of the to_submit entries it asked for (all: see
 * enter_count): how many are left for this thread to send. The kernel stops at an entry
 * that fails before it is issued (a readv whose iovec it refuses while preparing it): that
 * one completes with its error, but the entries after it stay in the SQ, published - no
 * later publish counts them, and a waiter would sleep on completions that never come. Fewer
 * taken because another thread entered for the same entries leaves nothing behind.
 */
static unsigned enter_left(struct io_uring *u, int rc, unsigned to_submit)
{
	if (rc <= 0 || (unsigned) rc >= to_submit || (u->flags & IORING_SETUP_SQPOLL))
		return 0;
	return sq_unconsumed(u);
}

/*
 * What to ask the kernel to take when entering for to_submit published entries: every
 * published entry. The caller counted them when it published, without a lock held
 * since: another thread may have entered for some of them meanwhile, and more may have
 * been published. The kernel takes min(count, published) from the SQ head, so a stale
 * count could end a submission inside a linked chain - and a chain does not continue
 * across submissions (io_uring_enter(2), IOSQE_IO_LINK): its fdatasync would run
 * unordered with its write. Chains are published whole, so "all" never splits one.
 * The kernel waits for completions only when it took the full count, so a wait that
 * submits waits in a second enter (uring_wait). With SQPOLL the kernel thread takes
 * the entries and an enter only wakes it; the kernel returns the count it was given,
 * which is then counted as submitted (sqes): give it the caller's.
 */
static unsigned enter_count(struct io_uring *u, unsigned to_submit)
{
	if (!to_submit || (u->flags & IORING_SETUP_SQPOLL))
		return to_submit;
	return u->sq.ring_entries;
}

static int uring_enter(struct ring *r, unsigned to_submit)
{
	struct io_uring *u = U(r);
	unsigned flags = enter_flags(u);
	int rc;

	if (to_submit == 0 && flags == 0)
		return 0;
	/* With SQPOLL the kernel thread consumes the SQ; enter only to wake it. */
	if ((u->flags & IORING_SETUP_SQPOLL) && flags == 0)
		return 0;
	if (to_submit && (rc = fault_enter(r->engine)) < 0)
		return rc;
	to_submit = enter_count(u, to_submit);
	do {
		do {
			rc = io_uring_enter(u->ring_fd, to_submit, 0, flags, NULL);
		} while (rc == -EINTR);
		counter_add(&r->syscalls, 1);
		if (rc > 0)
			counter_add(&r->sqes, (uint64_t) rc);
		/* Each pass consumes at least one entry, the one the kernel refused. */
	} while (enter_left(u, rc, to_submit) > 0);
	/* -EAGAIN/-EBUSY: the entries stay published; the next flush or wait retries. */
	return rc < 0 ? rc : 0;
}

/* One wait of at most timeout_ns (-1 = none): uring_wait's work for one slice. */
static int wait_once(struct ring *r, unsigned to_submit, int64_t timeout_ns)
{
	struct io_uring *u = U(r);
	struct __kernel_timespec ts;
	struct io_uring_getevents_arg arg;
	unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG | enter_flags(u);
	unsigned left;
	int rc;

	/* Completions are ready: do not sleep, but still submit what the caller published.
	 * It counts on this call to enter, and nobody else will: it cleared need_enter and
	 * a later publish sees nothing staged. (Returning early here once stranded a
	 * published SQE with every thread asleep: a WAL seal-block write, a hang.) */
	if (io_uring_cq_ready(u)) {
		if (to_submit && uring_enter(r, to_submit) < 0)
			atomic_store_explicit(&r->need_enter, true, memory_order_relaxed);
		return 0;
	}
	memset(&arg, 0, sizeof(arg));
	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / (int64_t) NSEC_PER_SEC;
		ts.tv_nsec = timeout_ns % (int64_t) NSEC_PER_SEC;
		arg.ts = (uint64_t) (uintptr_t) &ts;
	}
	/* Never sleep on entries published and not consumed, ours or not: another thread
	 * may have published them and be about to enter for them - and if the kernel
	 * refuses it that thread cannot wait in the kernel (we hold the role): only our
	 * enter would bring their completions, which may be the ones we wait for. */
	if (u->flags & IORING_SETUP_SQPOLL)
		to_submit = 0;
	else if (!to_submit)
		to_submit = sq_unconsumed(u);
	to_submit = enter_count(u, to_submit);
	/* A fault rule may refuse the entry as the kernel does: nothing submitted, no wait. */
	rc = to_submit ? fault_enter(r->engine) : 0;
	if (rc == 0) {
		rc = io_uring_enter2(u->ring_fd, to_submit, 1, flags, (void *) &arg, sizeof(arg));
		counter_add(&r->syscalls, 1);
		if (rc > 0 && to_submit)
			counter_add(&r->sqes, (uint64_t) rc);
		/* Cut short by a refused entry, the kernel did not wait: send the rest. */
		left = enter_left(u, rc, to_submit);
		if (left) {
			rc = uring_enter(r, left);
		} else if (rc >= 0 && (unsigned) rc < to_submit) {
			/* All taken, but fewer than asked for (enter_count asks for the whole
			 * SQ): the kernel waits only when it took the full count, so it did
			 * not. Wait now, submitting nothing. */
			rc = io_uring_enter2(u->ring_fd, 0, 1, flags, (void *) &arg, sizeof(arg));
			counter_add(&r->syscalls, 1);
		}
	}
	if (rc < 0 && to_submit) /* maybe not submitted: the next publish enters again */
		atomic_store_explicit(&r->need_enter, true, memory_order_relaxed);
	if (rc == -ETIME || rc == -EINTR)
		return rc;
	return 0;
}

/*
 * cq_lock held: the kernel waiter's sleep, in slices of WAIT_SLICE_MS. Entries another
 * thread publishes while we sleep are its to send; but if the kernel refuses them, that
 * thread cannot wait for them (we hold the role), and may not come back at all: an
 * auraio_cancel() returns 0, a poller that resubmitted orphans returns. Their
 * completions may be the very ones we sleep for, and nothing can wake a thread in
 * io_uring_enter but a completion, a signal or its timeout. So each slice ends by
 * sending what is published and unconsumed (wait_once does, before sleeping again):
 * such a stall lasts a slice at most, at the price of one wake-up per slice of a long
 * wait (none per I/O).
 */
static int uring_wait(struct ring *r, unsigned to_submit, int64_t timeout_ns)
{
	const int64_t slice_ns = (int64_t) WAIT_SLICE_MS * (int64_t) NSEC_PER_MSEC;

	for (;;) {
		int64_t t = timeout_ns < 0 || timeout_ns > slice_ns ? slice_ns : timeout_ns;
		int rc = wait_once(r, to_submit, t);

		if (rc != -ETIME || (timeout_ns >= 0 && (timeout_ns -= t) <= 0))
			return rc;
		to_submit = 0; /* wait_once sends whatever is published and unconsumed */
	}
}

/*
 * sq_lock held: make room in the SQ for n entries; returns how many of them fit now (n,
 * or fewer: 0 when the queue stays full). The in-flight limit keeps requests within the
 * SQ, but cancel entries come on top of them, and those can fill it: submissions made by
 * callbacks below the batch threshold stay staged until the delivering call ends
 * (auraio_wait() leaves them for its next call), and an entry the kernel refused stays
 * published. Only entering the
 * kernel frees a slot, and without SQPOLL no other thread will while this one holds
 * sq_lock: get_sqe() would spin forever (cancels, destroy and submits did). So hand what
 * is queued to the kernel now - a syscall under the lock, on this rare path only; with
 * SQPOLL, wait for its thread to take it. If the kernel refuses it, need_enter makes the
 * next flush or wait retry. Staging after a yes needs no check of its own (uring_stage).
 */
unsigned uring_make_room(struct ring *r, unsigned n)
{
	if (uring_sq_room(r) >= n)
		return n;
	if (uring_enter(r, uring_publish(r)) < 0)
		atomic_store_explicit(&r->need_enter, true, memory_order_relaxed);
	else if (U(r)->flags & IORING_SETUP_SQPOLL) /* its thread consumes all published */
		while (uring_sq_room(r) < n && io_uring_sqring_wait(U(r)) >= 0)
			;
	return MIN(uring_sq_room(r), n);
}

static int uring_cancel(struct ring *r, struct auraio_request *req)
{
	struct io_uring_sqe *sqe;

	if (uring_make_room(r, 1) == 0 || !(sqe = get_sqe(r)))
		return -EAGAIN;
	/* Its -ECANCELED is then the caller's doing, not an orphaning's (complete.c). */
	atomic_store_explicit(&req->cancel_sent, 1, memory_order_relaxed);
	io_uring_prep_cancel64(sqe, request_ud(req), 0);
	io_uring_sqe_set_data64(sqe, UD_INTERNAL);
	return 0;
}

static void uring_cancel_all(struct ring *r)
{
	struct io_uring_sqe *sqe;

	/* Destroy cannot do without it: the kernel refuses entries only for a while (or
	 * for a fault rule's count), so ask again until it takes them. */
	while (uring_make_room(r, 1) == 0)
		;
	sqe = get_sqe(r);
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
	io_uring_sqe_set_data64(sqe, UD_INTERNAL);
}

static int uring_poll_fd(struct ring *r)
{
	return U(r)->ring_fd;
}

/*
 * All sq_locks held, before registered files change: the kernel looks a fixed file up
 * when it issues the request, not when it is queued, so an entry still in the SQ (staged
 * by a callback, batched, or refused) would write to the slot's replacement, or fail
 * with EBADF once files are unregistered. Hand them all to the kernel now; under SQPOLL
 * wait until its thread has taken them (woken again if it fell asleep meanwhile).
 * 0, or -EAGAIN if the kernel refused them (need_enter: the next flush or wait retries).
 */
static int uring_send_queued(struct ring *r)
{
	struct io_uring *u = U(r);
	unsigned left = uring_publish(r);

	if (left == 0)
		return 0;
	if (uring_enter(r, left) < 0) {
		atomic_store_explicit(&r->need_enter, true, memory_order_relaxed);
		return -EAGAIN;
	}
	while ((u->flags & IORING_SETUP_SQPOLL) && sq_unconsumed(u) > 0) {
		uring_enter(r, 0); /* a wakeup, if its thread sleeps */
		sched_yield();
	}
	return 0;
}

static int uring_register_files(struct ring *r, const int *fds, unsigned n)
{
	return io_uring_register_files(U(r), fds, n);
}

static int uring_update_file(struct ring *r, unsigned slot, int fd)
{
	int rc = io_uring_register_files_update(U(r), slot, &fd, 1);

	return rc < 0 ? rc : 0;
}

static void uring_unregister_files(struct ring *r)
{
	io_uring_unregister_files(U(r));
}

static int uring_register_buffers(struct ring *r, const struct iovec *iovs, unsigned n)
{
	return io_uring_register_buffers(U(r), iovs, n);
}

static void uring_unregister_buffers(struct ring *r)
{
	io_uring_unregister_buffers(U(r));
}

const struct backend_ops backend_uring_ops = {
	.name = "io_uring",
	.ring_init = uring_ring_init,
	.ring_fini = uring_ring_fini,
	.stage = uring_stage,
	.publish = uring_publish,
	.enter = uring_enter,
	.reap = uring_reap,
	.wait = uring_wait,
	.cancel = uring_cancel,
	.cancel_all = uring_cancel_all,
	.kick = uring_kick,
	.poll_fd = uring_poll_fd,
	.send_queued = uring_send_queued,
	.register_files = uring_register_files,
	.update_file = uring_update_file,
	.unregister_files = uring_unregister_files,
	.register_buffers = uring_register_buffers,
	.unregister_buffers = uring_unregister_buffers,
};
