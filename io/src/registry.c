/* SPDX-License-Identifier: MIT */
/*
 * registry.c - registered files and buffers, applied to every ring.
 *
 * The engine keeps one table of each; submitters read them under their ring's sq_lock,
 * and every change here holds all sq_locks (engine_take_all_sq_locks), so a submitter
 * never sees a half-updated table and needs no lock or atomic of its own.
 *
 * Files: slot_of_fd maps an fd straight to its slot (O(1) on the submit path). For an
 * fd opened with O_DIRECT the slot remembers its statx alignment so misaligned I/O is
 * refused before it reaches the kernel. The kernel looks a fixed slot up when it issues
 * a request, so before a slot changes every ring's queued requests are handed to it.
 *
 * Buffers: pinned memory counts against RLIMIT_MEMLOCK once per ring, unless the process
 * has CAP_IPC_LOCK. Without it, buffers over the limit are refused before the kernel
 * pins (and faults in) their pages only to refuse them. If the limit or the kernel
 * refuses, the table is still kept and fixed references resolve to plain pointers: I/O
 * works, only the optimisation is lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine.h"

#define MAX_FILES   65536
#define MAX_BUFFERS 16384
#define MAX_BUF_LEN (1ull << 30) /* the kernel's limit per registered buffer */

/* Describe fd for a slot: O_DIRECT and its alignment. -EBADF if fd is not open. */
static int describe_fd(int fd, struct file_slot *fs)
{
	int fl = fcntl(fd, F_GETFL);
	size_t mem = 0, off = 0;

	if (fl < 0)
		return -errno;
	fs->fd = fd;
	fs->direct = (fl & O_DIRECT) != 0;
	fs->mem_align = 0;
	fs->off_align = 0;
	if (fs->direct && auraio_get_dio_alignment(fd, &mem, &off) == 0) {
		fs->mem_align = (uint32_t) mem;
		fs->off_align = (uint32_t) off;
	}
	return 0;
}

/* Make slot_of_fd cover fd (all sq_locks held, or table not yet published). */
static int map_reserve(struct file_table *ft, int fd)
{
	unsigned len = ft->map_len;
	int32_t *map;

	if ((unsigned) fd < len)
		return 0;
	while (len <= (unsigned) fd)
		len = len ? len * 2 : 64;
	map = realloc(ft->slot_of_fd, sizeof(*map) * len);
	if (!map)
		return -ENOMEM;
	memset(map + ft->map_len, 0, sizeof(*map) * (len - ft->map_len));
	ft->slot_of_fd = map;
	ft->map_len = len;
	return 0;
}

static void file_table_free(struct file_table *ft)
{
	free(ft->slots);
	free(ft->slot_of_fd);
	memset(ft, 0, sizeof(*ft));
}

/* Build the table for fds (no locks needed: it is private until installed). */
static int file_table_build(struct file_table *ft, const int *fds, unsigned n)
{
	int rc = 0;

	memset(ft, 0, sizeof(*ft));
	ft->slots = calloc(n, sizeof(*ft->slots));
	if (!ft->slots)
		return -ENOMEM;
	ft->nslots = n;
	for (unsigned i = 0; i < n && rc == 0; i++) {
		ft->slots[i].fd = -1;
		if (fds[i] < -1)
			rc = -EBADF;
		else if (fds[i] >= 0 && (rc = describe_fd(fds[i], &ft->slots[i])) == 0 &&
			 (rc = map_reserve(ft, fds[i])) == 0) {
			if (ft->slot_of_fd[fds[i]])
				rc = -EINVAL; /* the same fd twice */
			else
				ft->slot_of_fd[fds[i]] = (int32_t) i + 1;
		}
	}
	if (rc)
		file_table_free(ft);
	return rc;
}

AURAIO_API int auraio_register_files(auraio_engine_t *e, const int *fds, int n)
{
	struct file_table ft;
	unsigned done = 0;
	int rc;

	if (!e || !fds || n < 1 || n > MAX_FILES)
		return -EINVAL;
	rc = file_table_build(&ft, fds, (unsigned) n);
	if (rc)
		return rc;
	engine_take_all_sq_locks(e);
	if (e->files.nslots) {
		rc = -EBUSY;
	} else {
		for (; done < e->ring_count && rc == 0; done++)
			rc = e->ops->register_files(&e->rings[done], fds, (unsigned) n);
		if (rc)
			for (unsigned i = 0; i + 1 < done; i++)
				e->ops->unregister_files(&e->rings[i]);
	}
	if (rc == 0)
		e->files = ft;
	engine_drop_all_sq_locks(e);
	if (rc)
		file_table_free(&ft);
	return rc;
}

/* All sq_locks held: every ring's queued requests go to the kernel before a slot
 * changes under them (backend_ops.send_queued). 0 or -EAGAIN. */
static int send_all_queued(struct auraio_engine *e)
{
	int rc = 0;

	for (unsigned i = 0; i < e->ring_count && rc == 0; i++) {
		struct ring *r = &e->rings[i];

		batch_sent(r, now_ns());
		rc = e->ops->send_queued(r);
	}
	return rc;
}

/* All sq_locks held: set slot index to fd on every ring, undoing on failure. */
static int update_rings(struct auraio_engine *e, unsigned index, int fd, int old_fd)
{
	int rc = 0;
	unsigned i;

	for (i = 0; i < e->ring_count && rc == 0; i++)
		rc = e->ops->update_file(&e->rings[i], index, fd);
	if (rc)
		for (unsigned j = 0; j + 1 < i; j++)
			e->ops->update_file(&e->rings[j], index, old_fd);
	return rc;
}

AURAIO_API int auraio_update_file(auraio_engine_t *e, int index, int fd)
{
	struct file_table *ft;
	struct file_slot fs = { .fd = -1 };
	int rc = 0;

	if (!e || index < 0)
		return -EINVAL;
	if (fd < -1)
		return -EBADF; /* as auraio_register_files() */
	if (fd >= 0 && (rc = describe_fd(fd, &fs)) != 0)
		return rc;
	engine_take_all_sq_locks(e);
	ft = &e->files;
	if (ft->nslots == 0)
		rc = -ENOENT;
	else if ((unsigned) index >= ft->nslots)
		rc = -EINVAL;
	else if (fd >= 0 && (rc = map_reserve(ft, fd)) == 0 && ft->slot_of_fd[fd] &&
		 ft->slot_of_fd[fd] != index + 1)
		rc = -EINVAL; /* registered in another slot */
	if (rc == 0)
		rc = send_all_queued(e);
	if (rc == 0)
		rc = update_rings(e, (unsigned) index, fd, ft->slots[index].fd);
	if (rc == 0) {
		if (ft->slots[index].fd >= 0)
			ft->slot_of_fd[ft->slots[index].fd] = 0;
		ft->slots[index] = fs;
		if (fd >= 0)
			ft->slot_of_fd[fd] = index + 1;
	}
	engine_drop_all_sq_locks(e);
	return rc;
}

AURAIO_API int auraio_unregister_files(auraio_engine_t *e)
{
	int rc = 0;

	if (!e)
		return -EINVAL;
	engine_take_all_sq_locks(e);
	if (e->files.nslots == 0) {
		rc = -ENOENT;
	} else if ((rc = send_all_queued(e)) == 0) {
		for (unsigned i = 0; i < e->ring_count; i++)
			e->ops->unregister_files(&e->rings[i]);
		file_table_free(&e->files);
	}
	engine_drop_all_sq_locks(e);
	return rc;
}

static int check_iovs(const struct iovec *iovs, int n)
{
	if (!iovs || n < 1 || n > MAX_BUFFERS)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		if (!iovs[i].iov_base || iovs[i].iov_len == 0 || iovs[i].iov_len > MAX_BUF_LEN)
			return -EINVAL;
	return 0;
}

/* The kernel holds only processes without CAP_IPC_LOCK to RLIMIT_MEMLOCK. It checks the
 * capability in the initial user namespace: one held in another namespace passes here,
 * and then the kernel refuses (ENOMEM), which degrades all the same. */
static bool has_cap_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data) != 0)
		return false;
	return (data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective & CAP_TO_MASK(CAP_IPC_LOCK)) != 0;
}

/* Would pinning these buffers on every ring exceed RLIMIT_MEMLOCK? Fills reason. */
static bool over_memlock(const struct auraio_engine *e, const struct iovec *iovs, int n,
			 char *reason, size_t len)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t bytes = 0;
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return false;
	for (int i = 0; i < n; i++) {
		uint64_t start = (uint64_t) (uintptr_t) iovs[i].iov_base & ~(uint64_t) (page - 1);
		uint64_t end = (uint64_t) (uintptr_t) iovs[i].iov_base + iovs[i].iov_len;

		bytes += (end - start + (uint64_t) page - 1) & ~(uint64_t) (page - 1);
	}
	bytes *= e->ring_count;
	if (bytes <= rl.rlim_cur)
		return false;
	snprintf(reason, len, "pinning %llu KiB exceeds RLIMIT_MEMLOCK (%llu KiB)",
		 (unsigned long long) (bytes >> 10), (unsigned long long) (rl.rlim_cur >> 10));
	return true;
}

/* All sq_locks held: register with each ring; 0, a hard -errno, or 1 = degrade. */
static int register_kernel(struct auraio_engine *e, const struct iovec *iovs, int n)
{
	unsigned done;
	int rc = 0;

	for (done = 0; done < e->ring_count && rc == 0; done++)
		rc = e->ops->register_buffers(&e->rings[done], iovs, (unsigned) n);
	if (rc == 0)
		return 0;
	for (unsigned i = 0; i + 1 < done; i++)
		e->ops->unregister_buffers(&e->rings[i]);
	if (rc == -EOPNOTSUPP) {
		snprintf(e->bufs.reason, sizeof(e->bufs.reason),
			 "the thread backend does not pin buffers");
		return 1;
	}
	if (rc == -ENOMEM && over_memlock(e, iovs, n, e->bufs.reason, sizeof(e->bufs.reason)))
		return 1;
	if (rc == -ENOMEM || rc == -EPERM || rc == -EAGAIN) {
		snprintf(e->bufs.reason, sizeof(e->bufs.reason),
			 "kernel refused to pin the buffers: %s", strerror(-rc));
		return 1;
	}
	return rc;
}

AURAIO_API int auraio_register_buffers(auraio_engine_t *e, const struct iovec *iovs, int n)
{
	struct iovec *copy;
	int rc;

	if (!e || (rc = check_iovs(iovs, n)) != 0)
		return e ? rc : -EINVAL;
	copy = malloc(sizeof(*copy) * (size_t) n);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, iovs, sizeof(*copy) * (size_t) n);
	engine_take_all_sq_locks(e);
	if (e->bufs.n) {
		rc = -EBUSY;
	} else {
		e->bufs.reason[0] = '\0';
		if (!has_cap_ipc_lock() &&
		    over_memlock(e, iovs, n, e->bufs.reason, sizeof(e->bufs.reason)))
			rc = 1;
		else
			rc = register_kernel(e, iovs, n);
		if (rc >= 0) {
			e->bufs.iovs = copy;
			e->bufs.n = (unsigned) n;
			e->bufs.kernel = rc == 0;
			copy = NULL;
		}
	}
	engine_drop_all_sq_locks(e);
	free(copy);
	if (rc == 1) {
		engine_log(e, AURAIO_LOG_WARN, "buffers not registered, using plain I/O: %s",
			   e->bufs.reason);
		rc = 0;
	}
	return rc;
}

static uint64_t fixed_in_flight(struct auraio_engine *e)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < e->ring_count; i++)
		n += counter_get(&e->rings[i].fixed_buf_submitted) -
		     counter_get(&e->rings[i].fixed_buf_completed);
	return n;
}

AURAIO_API int auraio_unregister_buffers(auraio_engine_t *e)
{
	int rc = 0;

	if (!e)
		return -EINVAL;
	engine_take_all_sq_locks(e);
	if (e->bufs.n == 0) {
		rc = -ENOENT;
	} else if (fixed_in_flight(e) > 0) {
		rc = -EBUSY;
	} else {
		if (e->bufs.kernel)
			for (unsigned i = 0; i < e->ring_count; i++)
				e->ops->unregister_buffers(&e->rings[i]);
		free(e->bufs.iovs);
		e->bufs.iovs = NULL;
		e->bufs.n = 0;
		e->bufs.kernel = false;
		e->bufs.reason[0] = '\0'; /* nothing registered: nothing degraded */
	}
	engine_drop_all_sq_locks(e);
	return rc;
}

/* Engine teardown: the rings are gone (their registrations with them); free tables. */
void registry_fini(struct auraio_engine *e)
{
	file_table_free(&e->files);
	free(e->bufs.iovs);
	e->bufs.iovs = NULL;
	e->bufs.n = 0;
}
