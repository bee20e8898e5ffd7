/* SPDX-License-Identifier: MIT */
/*
 * runclock.h - the clock of a measured run, shared by the benchmark tools (iobench,
 * walbench, kvbench): monotonic nanoseconds, the process's CPU time, a sleep that wakes
 * early when the run ends, and the start gate at which the worker threads wait, once set
 * up, until the main thread starts the clock.
 *
 * The main thread of a tool does no I/O: it waits for the workers to be ready, opens the
 * gate, sleeps through the measured interval with clock_sleep_until() and samples
 * now_ns() and cpu_seconds() at its edges.
 */
#ifndef AURA_TOOLS_RUNCLOCK_H
#define AURA_TOOLS_RUNCLOCK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* CLOCK_MONOTONIC, in nanoseconds. */
uint64_t now_ns(void);
/* User + system CPU time of the whole process so far, in seconds. */
double cpu_seconds(void);
/*
 * Sleep until `deadline` (a now_ns() time) in steps of at most step_ns, returning
 * early once the run has ended: *error != 0 (the first failure), or, when `running` is
 * not NULL, *running == 0 (every worker finished). Checked before every step, so the
 * step bounds how late an ended run is noticed.
 */
void clock_sleep_until(uint64_t deadline, uint64_t step_ns, _Atomic int *error,
		       _Atomic int *running);

/*
 * The start gate: each worker thread, once set up, arrives and blocks until the main
 * thread, having waited for all of them to be ready, releases the gate. The lock and
 * condition variable are all the ordering there is: what a worker did before arriving
 * is visible to the main thread after start_gate_wait_ready(), and what the main thread
 * did before start_gate_release() is visible to every worker after it.
 */
struct start_gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int ready; /* workers that have arrived */
	bool open; /* released: arriving workers pass without waiting */
};

#define START_GATE_INIT                                                                            \
	{                                                                                          \
		PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false                      \
	}

/* A worker: count itself ready, then wait until the gate is released. */
void start_gate_arrive(struct start_gate *g);
/* The main thread: wait until n workers have arrived. */
void start_gate_wait_ready(struct start_gate *g, int n);
/* The main thread: let every worker (and every later arrival) through. */
void start_gate_release(struct start_gate *g);
/* Close the gate again for another set of workers (no worker may be waiting at it). */
void start_gate_reset(struct start_gate *g);

#endif
