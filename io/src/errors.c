/* SPDX-License-Identifier: MIT */
/*
 * errors.c - error text, phase names, version. Every string returned is static.
 */
#include <limits.h>
#include <string.h>

#include "auraio.h"

AURAIO_API int auraio_version(void)
{
	return AURAIO_VERSION;
}

AURAIO_API const char *auraio_strerror(int err)
{
	const char *s;

	if (err == 0)
		return "success";
	if (err == INT_MIN) /* no positive counterpart: -err would overflow */
		return "unknown error";
	if (err < 0)
		err = -err;
	/* strerrordesc_np returns a static string (or NULL), unlike strerror it never
	 * formats into a shared buffer. */
	s = strerrordesc_np(err);
	return s ? s : "unknown error";
}

AURAIO_API const char *auraio_phase_name(auraio_phase_t phase)
{
	switch (phase) {
	case AURAIO_PHASE_FIXED:
		return "fixed";
	case AURAIO_PHASE_PROBE:
		return "probe";
	case AURAIO_PHASE_STEADY:
		return "steady";
	case AURAIO_PHASE_BACKOFF:
		return "backoff";
	case AURAIO_PHASE_DRAIN:
		return "drain";
	}
	return "unknown";
}
