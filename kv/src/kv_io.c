/* SPDX-License-Identifier: MIT */
/*
 * kv_io.c - the store's own file I/O (hint files, the directory), all through AuraIO so
 * that fault injection reaches it: blocking helpers on waitable requests. A submission
 * refused at the ring's in-flight limit (EAGAIN) is retried once completions drained.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "kv_db.h"

static ssize_t one_op(auraio_engine_t *eng, const auraio_op_t *op)
{
	auraio_request_t *req;
	ssize_t res = -EIO;
	int rc;

	while ((rc = auraio_submit_linked(eng, op, 1, &req)) == -EAGAIN)
		auraio_wait(eng, 1); /* the ring is full: let something complete */
	if (rc < 0)
		return rc;
	rc = auraio_request_wait(eng, req, -1, &res);
	return rc < 0 ? rc : res;
}

/* Read or write all `len` bytes (a short transfer is continued; EOF on read stops). */
static ssize_t full_op(auraio_engine_t *eng, int opcode, int fd, void *buf, size_t len,
		       uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		auraio_op_t op = { .opcode = opcode,
				   .fd = fd,
				   .buf = auraio_buf((char *) buf + done),
				   .len = len - done,
				   .offset = (off_t) (off + done) };
		ssize_t n = one_op(eng, &op);

		if (n < 0)
			return n;
		if (n == 0)
			break;
		done += (size_t) n;
	}
	return (ssize_t) done;
}

ssize_t kv_pread(auraio_engine_t *eng, int fd, void *buf, size_t len, uint64_t off)
{
	return full_op(eng, AURAIO_OP_READ, fd, buf, len, off);
}

ssize_t kv_pwrite(auraio_engine_t *eng, int fd, const void *buf, size_t len, uint64_t off)
{
	ssize_t n = full_op(eng, AURAIO_OP_WRITE, fd, (void *) buf, len, off);

	return n >= 0 && (size_t) n < len ? -EIO : n; /* a write that stops short */
}

int kv_fsync(auraio_engine_t *eng, int fd)
{
	auraio_op_t op = { .opcode = AURAIO_OP_FSYNC, .fd = fd };

	return (int) one_op(eng, &op);
}

int kv_fsync_dir(auraio_engine_t *eng, const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -errno;
	rc = kv_fsync(eng, fd);
	close(fd);
	return rc;
}
