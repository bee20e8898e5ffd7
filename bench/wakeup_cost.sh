#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# wakeup_cost.sh - what a system call and a thread wake-up cost on this machine, the
# unit in which a group commit with many blocking appenders pays (each appender sleeps
# and is woken once per append; the WAL's writer wakes a whole group with one
# FUTEX_WAKE). On a virtualised machine these cost several times what they do on bare
# metal, which is what bounds `bench/wal_vs_fio.sh`'s 32-appender job here.
#
# Measures, each as the mean of many repetitions:
#   - a bare system call (getppid);
#   - a futex ping-pong round trip between two threads on one CPU and on two CPUs
#     (two wake-ups and two sleeps per round trip);
#   - one FUTEX_WAKE of N sleeping threads, for N = 1, 8, 28 (the syscall only).
#
# Usage: bench/wakeup_cost.sh          (needs a C compiler; about 10 s)
set -euo pipefail

tmp=$(mktemp -d /var/tmp/wakeup_cost.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/wakeup_cost.c" <<'EOF'
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double) t.tv_sec * 1e6 + (double) t.tv_nsec / 1e3;
}

static void futex_wait(_Atomic unsigned *w, unsigned v)
{
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void futex_wake(_Atomic unsigned *w, int n)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static void pin(int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
}

/* ---- ping-pong: the turn word counts half round trips ---- */
#define ROUNDS 20000
static _Atomic unsigned turn;
static int peer_cpu;

static void *pong(void *arg)
{
	pin(peer_cpu);
	for (unsigned i = 0; i < ROUNDS; i++) {
		while (atomic_load(&turn) != 2 * i + 1)
			futex_wait(&turn, 2 * i);
		atomic_store(&turn, 2 * i + 2);
		futex_wake(&turn, 1);
	}
	return arg;
}

static double ping_pong(int cpu_a, int cpu_b)
{
	pthread_t t;
	double t0;

	atomic_store(&turn, 0);
	peer_cpu = cpu_b;
	pin(cpu_a);
	pthread_create(&t, NULL, pong, NULL);
	t0 = now_us();
	for (unsigned i = 0; i < ROUNDS; i++) {
		atomic_store(&turn, 2 * i + 1);
		futex_wake(&turn, 1);
		while (atomic_load(&turn) != 2 * i + 2)
			futex_wait(&turn, 2 * i + 1);
	}
	t0 = now_us() - t0;
	pthread_join(t, NULL);
	return t0 / ROUNDS;
}

/* ---- one FUTEX_WAKE of n sleepers ---- */
static _Atomic unsigned word, asleep;

static void *sleeper(void *arg)
{
	for (;;) {
		unsigned v = atomic_load(&word);

		atomic_fetch_add(&asleep, 1);
		futex_wait(&word, v);
		if (atomic_load(&word) == UINT32_MAX)
			return arg;
	}
}

static double wake_n(int n)
{
	pthread_t *t = calloc((size_t) n, sizeof(*t));
	double sum = 0;
	int reps = 200;

	atomic_store(&word, 0);
	atomic_store(&asleep, 0);
	for (int i = 0; i < n; i++)
		pthread_create(&t[i], NULL, sleeper, NULL);
	for (int r = 0; r < reps; r++) {
		double t0;

		while (atomic_load(&asleep) < (unsigned) n)
			usleep(50);
		usleep(200); /* let the last one reach FUTEX_WAIT */
		atomic_store(&asleep, 0);
		atomic_fetch_add(&word, 1);
		t0 = now_us();
		futex_wake(&word, n);
		sum += now_us() - t0;
	}
	while (atomic_load(&asleep) < (unsigned) n)
		usleep(50);
	atomic_store(&word, UINT32_MAX);
	futex_wake(&word, n);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	free(t);
	return sum / reps;
}

int main(void)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	double t0 = now_us();
	int n[] = { 1, 8, 28 };

	for (int i = 0; i < 200000; i++)
		syscall(SYS_getppid);
	printf("bare system call (getppid):        %7.2f us\n", (now_us() - t0) / 200000);
	printf("futex ping-pong, one CPU:          %7.2f us per round trip\n", ping_pong(0, 0));
	if (ncpu > 1)
		printf("futex ping-pong, two CPUs:         %7.2f us per round trip\n",
		       ping_pong(0, 1));
	for (unsigned i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		double us = wake_n(n[i]);

		printf("one FUTEX_WAKE of %2d sleepers:     %7.2f us (%.2f us per thread)\n", n[i],
		       us, us / n[i]);
	}
	return 0;
}
EOF
cc -O2 -pthread -o "$tmp/wakeup_cost" "$tmp/wakeup_cost.c"
"$tmp/wakeup_cost"
