/* SPDX-License-Identifier: MIT */
/*
 * The crash loop: a child process makes durable puts, deletes and batches, and tells
 * the parent through a pipe what it is about to do (intent) and what returned
 * (acknowledged). The parent kills it with SIGKILL at a random moment, reopens the
 * store and checks: every acknowledged write is there with its value; a write in flight
 * at the kill is there entirely or not at all; a batch is all or nothing. The store
 * has small segments, so hint writing and GC run (and are killed) too.
 * KV_CRASH_ROUNDS sets the number of rounds (default 50; bench/ runs more).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/wait.h>

#include "kv_test.h"

#define KEYS	  300	     /* keys 0..299 are put and deleted over and over */
#define BATCH_KEY 1000000ull /* batch b writes keys BATCH_KEY + b * BATCH_N + j */
#define BATCH_N	  5
#define SPREAD	  700

enum { MSG_INTENT = 1, MSG_ACK = 2 };
enum { OP_PUT = 1, OP_DEL = 2, OP_BATCH = 3 };

struct msg {
	uint8_t type, op;
	uint64_t key; /* the key, or the batch number */
	uint64_t w;   /* the write number (its value), unique across rounds */
};

static void send_msg(int fd, uint8_t type, uint8_t op, uint64_t key, uint64_t w)
{
	struct msg m = { type, op, key, w };

	if (write(fd, &m, sizeof(m)) != (ssize_t) sizeof(m))
		_exit(5);
}

static void child(const char *dir, int out, uint64_t w0, uint64_t batch0)
{
	aurakv_options_t o = kv_opts(NULL);
	unsigned seed = (unsigned) (w0 * 2654435761u);
	uint8_t v[SPREAD + 16];
	aurakv_t *db;
	char key[32];

	o.gc_space_amp = 1.2;
	if (aurakv_open(dir, &o, &db))
		_exit(3);
	for (uint64_t w = w0, b = batch0;; w++) {
		int r = rand_r(&seed) % 10;
		uint64_t k = (uint64_t) rand_r(&seed) % KEYS;
		int rc;

		if (r < 6) {
			size_t len = kv_value_len(k, w, SPREAD);

			kv_value(v, len, k, w);
			send_msg(out, MSG_INTENT, OP_PUT, k, w);
			rc = aurakv_put(db, key, kv_key(key, k), v, len, AURAKV_SYNC);
			send_msg(out, MSG_ACK, OP_PUT, k, w);
		} else if (r < 8) {
			send_msg(out, MSG_INTENT, OP_DEL, k, w);
			rc = aurakv_delete(db, key, kv_key(key, k), AURAKV_SYNC);
			send_msg(out, MSG_ACK, OP_DEL, k, w);
		} else {
			aurakv_batch_t *bt = aurakv_batch_new();

			for (uint64_t j = 0; j < BATCH_N; j++) {
				uint64_t bk = BATCH_KEY + b * BATCH_N + j;
				size_t len = kv_value_len(bk, w, SPREAD);

				kv_value(v, len, bk, w);
				if (aurakv_batch_put(bt, key, kv_key(key, bk), v, len))
					_exit(6);
			}
			send_msg(out, MSG_INTENT, OP_BATCH, b, w);
			rc = aurakv_write(db, bt, AURAKV_SYNC);
			send_msg(out, MSG_ACK, OP_BATCH, b, w);
			aurakv_batch_free(bt);
			b++;
		}
		if (rc)
			_exit(4);
	}
}

/* What the parent knows about each key: its settled state, and a write in flight. */
struct model {
	uint64_t state[KEYS]; /* 0: absent, else the write number of its value */
	bool pending[KEYS];   /* an intent not acknowledged: the kill came during it */
	uint8_t pending_op[KEYS];
	uint64_t pending_w[KEYS];
	uint64_t batches;  /* batches started, over all rounds */
	uint64_t *batch_w; /* their write numbers */
	uint8_t *batch_acked;
	uint64_t w; /* the next write number */
	uint64_t acked;
};

static void apply(struct model *m, const struct msg *g)
{
	if (g->op == OP_BATCH) {
		if (g->type == MSG_INTENT) {
			m->batch_w = realloc(m->batch_w, (g->key + 1) * sizeof(*m->batch_w));
			m->batch_acked = realloc(m->batch_acked, g->key + 1);
			m->batch_w[g->key] = g->w;
			m->batch_acked[g->key] = 0;
			m->batches = g->key + 1;
		} else {
			m->batch_acked[g->key] = 1;
			m->acked++;
		}
	} else if (g->type == MSG_INTENT) {
		m->pending[g->key] = true;
		m->pending_op[g->key] = g->op;
		m->pending_w[g->key] = g->w;
	} else {
		m->pending[g->key] = false;
		m->state[g->key] = g->op == OP_PUT ? g->w : 0;
		m->acked++;
	}
	if (g->w >= m->w)
		m->w = g->w + 1;
}

/* Key k reads as write w (0: absent)? */
static bool reads_as(aurakv_t *db, uint64_t k, uint64_t w)
{
	char key[32];
	void *v = NULL;
	size_t len = 0;
	int rc = aurakv_get(db, key, kv_key(key, k), &v, &len);
	bool ok = w == 0 ? rc == AURAKV_ENOTFOUND : rc == 0 && kv_value_is(v, len, k, w, SPREAD);

	cr_assert(rc == 0 || rc == AURAKV_ENOTFOUND, "key %llu: %s", (unsigned long long) k,
		  aurakv_strerror(rc));
	aurakv_free(v);
	return ok;
}

static void verify(const char *dir, struct model *m)
{
	aurakv_options_t o = kv_opts(NULL);
	aurakv_t *db = kv_open_ok(dir, &o);

	for (uint64_t k = 0; k < KEYS; k++) {
		if (reads_as(db, k, m->state[k])) {
			m->pending[k] = false; /* the write in flight did not land */
			continue;
		}
		cr_assert(m->pending[k], "key %llu lost acknowledged write %llu",
			  (unsigned long long) k, (unsigned long long) m->state[k]);
		m->state[k] = m->pending_op[k] == OP_PUT ? m->pending_w[k] : 0;
		m->pending[k] = false;
		cr_assert(reads_as(db, k, m->state[k]),
			  "key %llu holds neither its acknowledged "
			  "write nor the one in flight",
			  (unsigned long long) k);
	}
	for (uint64_t b = 0; b < m->batches; b++) {
		unsigned present = 0;

		for (uint64_t j = 0; j < BATCH_N; j++)
			present += reads_as(db, BATCH_KEY + b * BATCH_N + j, m->batch_w[b]);
		if (present == BATCH_N)
			m->batch_acked[b] = 1; /* landed: later rounds must keep it */
		cr_assert(present == 0 || present == BATCH_N,
			  "batch %llu is half applied: %u of %d entries", (unsigned long long) b,
			  present, BATCH_N);
		cr_assert(present == BATCH_N || !m->batch_acked[b],
			  "acknowledged batch %llu is missing", (unsigned long long) b);
	}
	cr_assert_eq(aurakv_close(db), 0);
}

Test(kv_crash, sigkill_at_random_moments_never_loses_or_half_applies_a_write, .timeout = 600)
{
	const char *env = getenv("KV_CRASH_ROUNDS");
	int rounds = env ? atoi(env) : 50;
	char *dir = kv_temp_dir();
	unsigned seed = (unsigned) getpid();
	static struct model m;

	memset(&m, 0, sizeof(m));
	m.w = 1;
	for (int r = 0; r < rounds; r++) {
		int fds[2], st;
		uint64_t deadline;
		struct msg g;
		pid_t pid;

		cr_assert_eq(pipe(fds), 0);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(fds[0]);
			child(dir, fds[1], m.w, m.batches);
		}
		close(fds[1]);
		/* Once it has opened the store (its first message), let it run 2..60 ms. */
		if (read(fds[0], &g, sizeof(g)) == (ssize_t) sizeof(g))
			apply(&m, &g);
		deadline = test_now_ns() + (2 + (uint64_t) (rand_r(&seed) % 59)) * 1000000ull;
		while (test_now_ns() < deadline &&
		       read(fds[0], &g, sizeof(g)) == (ssize_t) sizeof(g))
			apply(&m, &g);
		kill(pid, SIGKILL);
		while (read(fds[0], &g, sizeof(g)) == (ssize_t) sizeof(g))
			apply(&m, &g);
		close(fds[0]);
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		cr_assert(WIFSIGNALED(st), "the child failed on its own: exit status %d",
			  WEXITSTATUS(st));
		verify(dir, &m);
	}
	cr_log_info("%d rounds, %llu acknowledged writes, %llu batches checked", rounds,
		    (unsigned long long) m.acked, (unsigned long long) m.batches);
	cr_assert_gt(m.acked, (uint64_t) rounds, "the children did real work");
	free(m.batch_w);
	free(m.batch_acked);
	kv_rm_tree(dir);
	free(dir);
}
