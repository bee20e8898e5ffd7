/* SPDX-License-Identifier: MIT */
/*
 * The crash loop: a child appends durably and reports each acknowledged (sequence,
 * payload hash) through a pipe; the parent kills it with SIGKILL at a random moment,
 * reopens the log and checks that every acknowledged record is present and intact.
 * WAL_CRASH_ROUNDS sets the number of rounds (default 50; bench/ runs more).
 *
 * The mixed loop does the same with mostly non-durable appends of 4-16 KiB, every
 * eighth one durable, so that the log rolls over several times a round without
 * flushing and the durable appends pay for the rollovers (docs/wal_format.md,
 * "Rollover without a flush"): every record up to the last acknowledged durable one -
 * the non-durable ones before it included - must be there after each kill.
 */
#include <signal.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "wal_test.h"

struct ack {
	uint64_t seq;
	uint64_t hash;
	uint64_t durable; /* mixed loop: 1 if acknowledged as durable */
};

static void child(const char *dir, int out, uint64_t round, bool mixed)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = NULL;
	uint8_t p[16384];

	if (aurawal_open(dir, &o, &log) != 0)
		_exit(3);
	for (uint64_t i = 0;; i++) {
		size_t len = mixed ? 4096 + (size_t) ((i * 1031 + round) % 12000)
				   : 16 + (size_t) ((i * 131 + round) % 400);
		struct iovec iov = { p, len };
		struct ack a;

		a.durable = !mixed || i % 8 == 7;
		payload_fill(p, len, round * 1000000 + i);
		if (aurawal_append(log, &iov, 1, a.durable ? AURAWAL_DURABLE : 0, NULL, &a.seq) !=
		    0)
			_exit(4);
		a.hash = XXH3_64bits(p, len);
		if (write(out, &a, sizeof(a)) != (ssize_t) sizeof(a))
			_exit(5);
	}
}

static size_t last_segments; /* segments of the log at the last check */

/* Every acknowledged record is in the log with its payload. */
static void verify(const char *dir, const struct ack *acks, size_t n)
{
	aurawal_options_t o = wal_opts(NULL);
	aurawal_t *log = wal_open_ok(dir, &o);
	aurawal_iter_t *it;
	const void *p;
	uint64_t seq;
	size_t len, k = 0;
	int rc;

	cr_assert_eq(aurawal_iter_open(log, (aurawal_loc_t){ 0 }, &it), 0);
	while (k < n && (rc = aurawal_iter_next(it, NULL, &seq, &p, &len)) == 1) {
		if (seq < acks[k].seq)
			continue; /* an earlier round's record, or one never acknowledged */
		cr_assert_eq(seq, acks[k].seq, "acknowledged record %llu is missing",
			     (unsigned long long) acks[k].seq);
		cr_assert_eq(XXH3_64bits(p, len), acks[k].hash, "record %llu is damaged",
			     (unsigned long long) seq);
		k++;
	}
	cr_assert_eq(k, n, "%zu of %zu acknowledged records found", k, n);
	aurawal_iter_close(it);
	cr_assert_eq(aurawal_list_segments(log, NULL, 0, &len), 0);
	last_segments = len;
	cr_assert_eq(aurawal_close(log), 0);
}

/* Keep the acknowledgements to check: all of them, or (mixed) every record up to the
 * last durable one - the ones after it may be lost. */
static size_t keep_checked(struct ack *acks, size_t first, size_t total)
{
	size_t end = first;

	for (size_t k = first; k < total; k++)
		if (acks[k].durable)
			end = k + 1;
	return end;
}

static void crash_loop(bool mixed, int default_rounds)
{
	const char *env = getenv("WAL_CRASH_ROUNDS");
	int rounds = env ? atoi(env) : default_rounds;
	char *dir = temp_dir();
	size_t cap = 1 << 16, total = 0;
	struct ack *acks = malloc(cap * sizeof(*acks));
	unsigned seed = (unsigned) getpid();

	for (int r = 0; r < rounds; r++) {
		int fds[2], st;
		pid_t pid;
		uint64_t deadline;

		size_t round_first = total;

		cr_assert_eq(pipe(fds), 0);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(fds[0]);
			child(dir, fds[1], (uint64_t) r, mixed);
		}
		close(fds[1]);
		/* Let it run 2..40 ms, reading acknowledgements meanwhile. */
		deadline = test_now_ns() + (2 + (uint64_t) (rand_r(&seed) % 39)) * 1000000ull;
		while (test_now_ns() < deadline) {
			struct ack a;
			ssize_t got = read(fds[0], &a, sizeof(a));

			if (got != (ssize_t) sizeof(a))
				break;
			if (total == cap)
				acks = realloc(acks, (cap *= 2) * sizeof(*acks));
			acks[total++] = a;
		}
		kill(pid, SIGKILL);
		for (struct ack a; read(fds[0], &a, sizeof(a)) == (ssize_t) sizeof(a);) {
			if (total == cap)
				acks = realloc(acks, (cap *= 2) * sizeof(*acks));
			acks[total++] = a; /* acknowledged before the kill */
		}
		close(fds[0]);
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		cr_assert(WIFSIGNALED(st), "the child died on its own: status %d", st);
		total = keep_checked(acks, round_first, total);
		verify(dir, acks, total);
	}
	cr_log_info("%d rounds, %zu acknowledged records verified, %zu segments", rounds, total,
		    last_segments);
	free(acks);
	rm_tree(dir);
	free(dir);
}

Test(wal_crash, sigkill_at_random_moments_never_loses_an_acknowledged_record)
{
	crash_loop(false, 50);
}

Test(wal_crash, sigkill_during_unflushed_rollovers_loses_nothing_before_a_durable_ack)
{
	crash_loop(true, 30);
}
