/* SPDX-License-Identifier: MIT */
/*
 * dio_align.c - O_DIRECT alignment from statx(STATX_DIOALIGN).
 * Uses the raw syscall and the kernel's struct statx: the C library's copy of the struct
 * may predate the DIO fields. Nothing else in libauraio guesses alignment.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/stat.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "auraio.h"

#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN 0x00002000U
#endif

AURAIO_API int auraio_get_dio_alignment(int fd, size_t *mem_align, size_t *offset_align)
{
	struct statx stx;

	if (fd < 0)
		return -EINVAL;
	memset(&stx, 0, sizeof(stx));
	if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) < 0)
		return -errno;
	if (!(stx.stx_mask & STATX_DIOALIGN) || stx.stx_dio_mem_align == 0 ||
	    stx.stx_dio_offset_align == 0)
		return -EINVAL;
	if (mem_align)
		*mem_align = stx.stx_dio_mem_align;
	if (offset_align)
		*offset_align = stx.stx_dio_offset_align;
	return 0;
}
