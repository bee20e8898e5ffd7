/* SPDX-License-Identifier: MIT */
/*
 * io_route.h - for io tests that see the engine's internals (backend.h): send this
 * thread's submissions to a chosen ring, and make a small engine on a chosen backend.
 */
#ifndef AURA_IO_ROUTE_H
#define AURA_IO_ROUTE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"

/* This thread's submissions go to ring k from now on (routing is by CPU otherwise). */
static inline void route_to(auraio_engine_t *e, unsigned k)
{
	tls_route.id = e->id;
	tls_route.ring = &e->rings[k];
	tls_route.left = UINT32_MAX;
}

/* An engine of `rings` rings, queue depth 8, on backend b (or fails the test). */
static inline auraio_engine_t *engine_on(auraio_backend_t b, int rings)
{
	auraio_options_t o;
	auraio_engine_t *e;

	auraio_options_init(&o);
	o.ring_count = rings;
	o.queue_depth = 8;
	o.backend = b;
	e = auraio_create_with_options(&o);
	cr_assert_not_null(e, "auraio_create: %s", strerror(errno));
	return e;
}

#endif
