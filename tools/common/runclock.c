/* SPDX-License-Identifier: MIT */
/*
 * runclock.c - the benchmark tools' run clock (runclock.h): the time sources, the
 * early-waking sleep and the start gate. The gate's lock is taken only around its own
 * fields; nothing here calls back into a tool while holding it.
 */
#include <sys/resource.h>
#include <time.h>

#include "runclock.h"

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void clock_sleep_until(uint64_t deadline, uint64_t step_ns, _Atomic int *error,
		       _Atomic int *running)
{
	for (;;) {
		uint64_t t = now_ns(), step;
		struct timespec ts;

		if (t >= deadline || atomic_load(error) != 0 ||
		    (running && atomic_load(running) == 0))
			return;
		step = deadline - t < step_ns ? deadline : t + step_ns;
		ts.tv_sec = (time_t) (step / 1000000000ull);
		ts.tv_nsec = (long) (step % 1000000000ull);
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
}

void start_gate_arrive(struct start_gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->ready++;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

void start_gate_wait_ready(struct start_gate *g, int n)
{
	pthread_mutex_lock(&g->lock);
	while (g->ready < n)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

void start_gate_release(struct start_gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

void start_gate_reset(struct start_gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->ready = 0;
	g->open = false;
	pthread_mutex_unlock(&g->lock);
}
