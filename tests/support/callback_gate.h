/* SPDX-License-Identifier: MIT */
/* callback_gate.h - a gate a test holds callbacks at: a callback calls gate_hold() and
 * stays inside until the test calls gate_release(); the test learns it is inside from
 * gate_wait_entered(). One gate per test file (the suites' poll tests). */
#ifndef AURA_CALLBACK_GATE_H
#define AURA_CALLBACK_GATE_H

#include <pthread.h>
#include <stdbool.h>

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int entered; /* held callbacks that have started */
	bool open;   /* the test let them return */
} gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false };

/* Inside a callback: say so, then wait until the gate opens. */
static inline void gate_hold(void)
{
	pthread_mutex_lock(&gate.mu);
	gate.entered++;
	pthread_cond_broadcast(&gate.cv);
	while (!gate.open)
		pthread_cond_wait(&gate.cv, &gate.mu);
	pthread_mutex_unlock(&gate.mu);
}

/* Until n held callbacks have started. */
static inline void gate_wait_entered(int n)
{
	pthread_mutex_lock(&gate.mu);
	while (gate.entered < n)
		pthread_cond_wait(&gate.cv, &gate.mu);
	pthread_mutex_unlock(&gate.mu);
}

/* Until the test opens the gate. */
static inline void gate_wait_open(void)
{
	pthread_mutex_lock(&gate.mu);
	while (!gate.open)
		pthread_cond_wait(&gate.cv, &gate.mu);
	pthread_mutex_unlock(&gate.mu);
}

static inline void gate_release(void)
{
	pthread_mutex_lock(&gate.mu);
	gate.open = true;
	pthread_cond_broadcast(&gate.cv);
	pthread_mutex_unlock(&gate.mu);
}

#endif
