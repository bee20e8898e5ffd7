/* SPDX-License-Identifier: MIT */
/*
 * segfiles.h - waldump's table of the segment files in a log's directory (segfiles.c).
 */
#ifndef WALDUMP_SEGFILES_H
#define WALDUMP_SEGFILES_H

#include <stddef.h>
#include <stdint.h>

#include "aurawal.h"

/* Print "files:" and a row per segment file in dir (--segment N: only N's), in name
 * order: name, bytes, header state, and whether the log read it (one of the n segments
 * of `in_log`; NULL/0 when the log could not be opened). 0 or -errno (reported). */
int segfiles_print(const char *dir, const aurawal_segment_info_t *in_log, size_t n, uint64_t only);

#endif
