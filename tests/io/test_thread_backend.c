/* SPDX-License-Identifier: MIT */
/*
 * The worker-thread backend: chosen when io_uring cannot be set up (here: a seccomp
 * filter makes io_uring_setup fail with EPERM, as container runtimes do), or forced.
 * Same API and semantics: every test of the io suite also runs with AURAIO_BACKEND=threads
 * in CI; these tests cover what only this backend does.
 */
#include <auraio.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "test_util.h"

/* Make io_uring_setup fail with EPERM in this process (tests run in their own). */
static void block_io_uring(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	unsetenv("AURAIO_BACKEND"); /* CI forces the thread backend for a whole run */
	cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0, "seccomp: %s",
		     strerror(errno));
}

static void quiet(int level, const char *msg, void *arg)
{
	(void) level;
	(void) msg;
	(void) arg;
}

static void round_trip(auraio_engine_t *e)
{
	int fd = temp_file(65536, 0);
	char out[4096], in[4096];
	ssize_t res = 0;
	auraio_request_t *req;

	fill_pattern(out, sizeof(out), 99);
	req = auraio_write(e, fd, auraio_buf(out), sizeof(out), 8192, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(e, req, 10000, &res), 0);
	cr_assert_eq(res, 4096);
	req = auraio_read(e, fd, auraio_buf(in), sizeof(in), 8192, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(e, req, 10000, &res), 0);
	cr_assert_eq(res, 4096);
	cr_assert_arr_eq(in, out, sizeof(in));
	close(fd);
}

Test(thread_backend, blocked_io_uring_falls_back_to_threads_and_says_why)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_stats_t st;

	block_io_uring();
	auraio_options_init(&o);
	o.log_fn = quiet;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e, "create: %s", strerror(errno));
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.backend, AURAIO_BACKEND_THREADS);
	cr_assert(strstr(st.backend_reason, "io_uring"), "reason: %s", st.backend_reason);
	cr_assert(strstr(st.backend_reason, "not permitted"), "reason: %s", st.backend_reason);
	round_trip(e);
	auraio_destroy(e);
}

Test(thread_backend, forcing_io_uring_when_it_is_blocked_fails_clearly)
{
	auraio_options_t o;

	block_io_uring();
	auraio_options_init(&o);
	o.backend = AURAIO_BACKEND_IO_URING;
	o.log_fn = quiet;
	errno = 0;
	cr_assert_null(auraio_create_with_options(&o));
	cr_assert_eq(errno, EPERM);
}

Test(thread_backend, the_backend_can_be_forced_by_option)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_stats_t st;

	auraio_options_init(&o);
	o.backend = AURAIO_BACKEND_THREADS;
	o.thread_workers = 2;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.backend, AURAIO_BACKEND_THREADS);
	round_trip(e);
	auraio_destroy(e);
}

/* SQPOLL is an io_uring mode: asking for it on the thread backend must not replace the
 * reason the thread backend was chosen with a claim about rings that do not exist. */
Test(thread_backend, sqpoll_asked_on_the_thread_backend_keeps_the_backends_reason)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_stats_t st;

	block_io_uring();
	auraio_options_init(&o);
	o.enable_sqpoll = true;
	o.log_fn = quiet;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e, "create: %s", strerror(errno));
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.backend, AURAIO_BACKEND_THREADS);
	cr_assert_eq(st.sqpoll_active, false);
	cr_assert(strstr(st.backend_reason, "not permitted"), "reason: %s", st.backend_reason);
	cr_assert(strstr(st.backend_reason, "SQPOLL"), "reason: %s", st.backend_reason);
	cr_assert_not(strstr(st.backend_reason, "normal rings"), "reason: %s", st.backend_reason);
	round_trip(e);
	auraio_destroy(e);
}

Test(thread_backend, the_backend_can_be_forced_by_environment)
{
	auraio_engine_t *e;
	auraio_stats_t st;

	cr_assert_eq(setenv("AURAIO_BACKEND", "threads", 1), 0);
	e = auraio_create();
	cr_assert_not_null(e);
	cr_assert_eq(auraio_get_stats(e, &st), 0);
	cr_assert_eq(st.backend, AURAIO_BACKEND_THREADS);
	auraio_destroy(e);
}

Test(thread_backend, a_queued_operation_can_be_cancelled)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_request_t *blocker, *victim;
	int p[2];
	char b1, b2;
	ssize_t res = 0;

	auraio_options_init(&o);
	o.backend = AURAIO_BACKEND_THREADS;
	o.thread_workers = 1; /* the blocker occupies the only worker */
	o.ring_count = 1;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(pipe(p), 0);
	blocker = auraio_read(e, p[0], auraio_buf(&b1), 1, 0, NULL, NULL);
	victim = auraio_read(e, p[0], auraio_buf(&b2), 1, 0, NULL, NULL);
	cr_assert_not_null(blocker);
	cr_assert_not_null(victim);
	cr_assert_eq(auraio_cancel(e, victim), 0);
	cr_assert_eq(write(p[1], "q", 1), 1);
	cr_assert_eq(auraio_request_wait(e, blocker, 10000, &res), 0);
	cr_assert_eq(res, 1, "blocker: %zd", res);
	cr_assert_eq(auraio_request_wait(e, victim, 10000, &res), 0);
	cr_assert_eq(res, -ECANCELED);
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
}

Test(thread_backend, io_queued_behind_workers_waiting_on_streams_waits_for_them)
{
	auraio_options_t o;
	auraio_engine_t *e;
	auraio_request_t *blocker, *behind;
	int p[2], fd = temp_file(4096, 0);
	char b1, b2[64];
	ssize_t res = 0;

	auraio_options_init(&o);
	o.backend = AURAIO_BACKEND_THREADS;
	o.thread_workers = 1;
	o.ring_count = 1;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	cr_assert_eq(pipe(p), 0);
	blocker = auraio_read(e, p[0], auraio_buf(&b1), 1, 0, NULL, NULL);
	behind = auraio_read(e, fd, auraio_buf(b2), sizeof(b2), 0, NULL, NULL);
	cr_assert_not_null(blocker);
	cr_assert_not_null(behind);
	/* The only worker takes the blocker first (FIFO) and holds it until data arrives. */
	cr_assert_eq(auraio_request_wait(e, behind, 0, &res), -ETIMEDOUT);
	cr_assert_eq(write(p[1], "q", 1), 1);
	cr_assert_eq(auraio_request_wait(e, blocker, 10000, &res), 0);
	cr_assert_eq(res, 1);
	cr_assert_eq(auraio_request_wait(e, behind, 10000, &res), 0);
	cr_assert_eq(res, (ssize_t) sizeof(b2));
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
	close(fd);
}

static auraio_engine_t *one_worker_engine(void)
{
	auraio_options_t o;
	auraio_engine_t *e;

	auraio_options_init(&o);
	o.backend = AURAIO_BACKEND_THREADS;
	o.thread_workers = 1; /* a pipe read occupies the only worker */
	o.ring_count = 1;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e);
	return e;
}

Test(thread_backend, a_cancelled_queued_link_cancels_the_rest_of_its_chain)
{
	auraio_engine_t *e = one_worker_engine();
	auraio_request_t *blocker, *reqs[2];
	int p[2], fd = temp_file(4096, 0);
	char b1, data[512], back[512];
	ssize_t res = 0;
	auraio_op_t ops[2] = {
		{ .opcode = AURAIO_OP_WRITE,
		  .fd = fd,
		  .buf = auraio_buf(data),
		  .len = sizeof(data),
		  .offset = 0 },
		{ .opcode = AURAIO_OP_WRITE,
		  .fd = fd,
		  .buf = auraio_buf(data),
		  .len = sizeof(data),
		  .offset = 1024 },
	};

	fill_pattern(data, sizeof(data), 7); /* not the file's pattern at 1024 */
	cr_assert_eq(pipe(p), 0);
	blocker = auraio_read(e, p[0], auraio_buf(&b1), 1, 0, NULL, NULL);
	cr_assert_not_null(blocker);
	cr_assert_eq(auraio_submit_linked(e, ops, 2, reqs), 0);
	cr_assert_geq(auraio_flush(e), 0);
	/* The chain waits behind the blocker; its head is cancelled before it starts. */
	cr_assert_eq(auraio_cancel(e, reqs[0]), 0);
	cr_assert_eq(write(p[1], "q", 1), 1);
	cr_assert_eq(auraio_request_wait(e, blocker, 10000, &res), 0);
	cr_assert_eq(auraio_request_wait(e, reqs[0], 10000, &res), 0);
	cr_assert_eq(res, -ECANCELED);
	cr_assert_eq(auraio_request_wait(e, reqs[1], 10000, &res), 0);
	cr_assert_eq(res, -ECANCELED, "the link after a cancelled one ran: %zd", res);
	cr_assert_eq(pread(fd, back, sizeof(back), 1024), (ssize_t) sizeof(back));
	cr_assert(check_pattern(back, sizeof(back), 1024), "the second link wrote");
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
	close(fd);
}

/* As io_uring does: a pipe takes what it has room for, and the write completes short -
 * it never waits for a reader (which no cancel or destroy could interrupt). */
Test(thread_backend, a_write_larger_than_a_pipes_room_completes_short, .timeout = 30)
{
	auraio_engine_t *e = one_worker_engine();
	size_t n = 1u << 20;
	char *buf = calloc(1, n);
	auraio_request_t *req;
	ssize_t res = 0;
	int p[2];

	cr_assert_not_null(buf);
	cr_assert_eq(pipe(p), 0);
	req = auraio_write(e, p[1], auraio_buf(buf), n, 0, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_eq(auraio_request_wait(e, req, -1, &res), 0);
	cr_assert(res > 0 && (size_t) res < n, "result %zd", res);
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
	free(buf);
}

/* auraio.h: a registered fd may be closed once its slot is replaced, and I/O already
 * submitted on it still uses the file it was submitted on - never whatever file the fd
 * number names by the time a worker runs it. */
Test(thread_backend, io_queued_on_a_replaced_registered_fd_uses_the_file_it_was_submitted_on)
{
	auraio_engine_t *e = one_worker_engine();
	int p[2], fd = temp_file(4096, 0), keep, other;
	char b1, data[512], back[512];
	auraio_request_t *blocker, *req;
	ssize_t res = 0;

	fill_pattern(data, sizeof(data), 7); /* not the files' pattern at 0 */
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(auraio_register_files(e, &fd, 1), 0);
	blocker = auraio_read(e, p[0], auraio_buf(&b1), 1, 0, NULL, NULL);
	cr_assert_not_null(blocker);
	req = auraio_write(e, fd, auraio_buf(data), sizeof(data), 0, NULL, NULL);
	cr_assert_not_null(req);
	cr_assert_geq(auraio_flush(e), 0);
	/* The write waits behind the blocker while its fd is replaced and closed. */
	cr_assert_eq(auraio_update_file(e, 0, -1), 0);
	keep = dup(fd);
	cr_assert_geq(keep, 0);
	cr_assert_eq(close(fd), 0);
	other = temp_file(4096, 0);
	if (other != fd)
		cr_skip_test("the fd number was not reused (%d, %d)", other, fd);
	cr_assert_eq(write(p[1], "q", 1), 1);
	cr_assert_eq(auraio_request_wait(e, blocker, 10000, &res), 0);
	cr_assert_eq(auraio_request_wait(e, req, 10000, &res), 0);
	cr_assert_eq(res, (ssize_t) sizeof(data), "write: %zd", res);
	cr_assert_eq(pread(other, back, sizeof(back), 0), (ssize_t) sizeof(back));
	cr_assert(check_pattern(back, sizeof(back), 0), "the write went to another file");
	cr_assert_eq(pread(keep, back, sizeof(back), 0), (ssize_t) sizeof(back));
	cr_assert_arr_eq(back, data, sizeof(back));
	auraio_destroy(e);
	close(p[0]);
	close(p[1]);
	close(keep);
	close(other);
}
