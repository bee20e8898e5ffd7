/* SPDX-License-Identifier: MIT */
/*
 * wal_io.c - the log's file I/O, all through AuraIO (so fault injection reaches it):
 * blocking helpers built on waitable requests. A submission refused at the ring's
 * in-flight limit (EAGAIN) is retried after letting completions drain.
 */
#include <errno.h>
#include <stdlib.h>

#include "wal_internal.h"

static auraio_buf_t bufref(const void *buf, int reg_index)
{
	return reg_index >= 0 ? auraio_buf_fixed(reg_index, 0) : auraio_buf((void *) buf);
}

/* Wait for a waitable request; its result or -errno. */
static ssize_t collect(struct aurawal *log, auraio_request_t *req)
{
	ssize_t res = -EIO;
	int rc = auraio_request_wait(log->engine, req, -1, &res);

	return rc < 0 ? rc : res;
}

/* Submit one operation, retrying while the ring is full. NULL + errno on failure. */
static auraio_request_t *submit(struct aurawal *log, const auraio_op_t *op)
{
	for (;;) {
		auraio_request_t *req;
		int rc = auraio_submit_linked(log->engine, op, 1, &req);

		if (rc == 0)
			return req;
		if (rc != -EAGAIN) {
			errno = -rc;
			return NULL;
		}
		auraio_wait(log->engine, 1); /* let something complete */
	}
}

static ssize_t one_op(struct aurawal *log, auraio_op_t *op)
{
	auraio_request_t *req = submit(log, op);

	return req ? collect(log, req) : -errno;
}

/* A short count is not the end of the file (the kernel may transfer less than asked):
 * read on until len bytes, an error, or a read of 0 bytes - the end of the file. */
int wal_pread(struct aurawal *log, int fd, void *buf, int reg_index, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		auraio_op_t op = { .opcode = AURAIO_OP_READ,
				   .fd = fd,
				   .buf = reg_index >= 0 ? auraio_buf_fixed(reg_index, got)
							 : auraio_buf((uint8_t *) buf + got),
				   .len = len - got,
				   .offset = (off_t) (off + got) };
		ssize_t n = one_op(log, &op);

		if (n < 0)
			return (int) n;
		if (n == 0)
			break;
		got += MIN((size_t) n, len - got);
	}
	return (int) got;
}

int wal_pwrite(struct aurawal *log, int fd, const void *buf, int reg_index, size_t len,
	       uint64_t off)
{
	auraio_op_t op = { .opcode = AURAIO_OP_WRITE,
			   .fd = fd,
			   .buf = bufref(buf, reg_index),
			   .len = len,
			   .offset = (off_t) off };

	return (int) one_op(log, &op);
}

int wal_fdatasync(struct aurawal *log, int fd)
{
	auraio_op_t op = { .opcode = AURAIO_OP_FSYNC, .fd = fd, .flags = AURAIO_OP_DATASYNC };

	return (int) one_op(log, &op);
}

/* A full fsync: what a directory needs for the names created, renamed or removed in it. */
int wal_fsync(struct aurawal *log, int fd)
{
	auraio_op_t op = { .opcode = AURAIO_OP_FSYNC, .fd = fd };

	return (int) one_op(log, &op);
}

/*
 * Write the iovcnt ranges of iov, gathered, at `off` and, if `sync`, make them durable -
 * in one submission: a DSYNC write, or a write linked to an fdatasync (`mode`). One range may be a
 * registered buffer (reg_index >= 0); several are written with writev from plain memory.
 * Returns the bytes written when all is done, a short count (the sync, if any, did not
 * run: the kernel cancels a link after a short write, and nothing is claimed durable on
 * its account), or -errno.
 */
int wal_writev_sync(struct aurawal *log, int fd, const struct iovec *iov, int iovcnt, int reg_index,
		    uint64_t off, bool sync, aurawal_sync_mode_t mode)
{
	auraio_op_t ops[2] = {
		{ .opcode = AURAIO_OP_WRITE, .fd = fd, .offset = (off_t) off },
		{ .opcode = AURAIO_OP_FSYNC, .fd = fd, .flags = AURAIO_OP_DATASYNC },
	};
	auraio_request_t *reqs[2];
	size_t len = 0;
	ssize_t wr, sr;
	int rc;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (iovcnt == 1) {
		ops[0].buf = bufref(iov[0].iov_base, reg_index);
		ops[0].len = len;
	} else {
		ops[0].opcode = AURAIO_OP_WRITEV;
		ops[0].iov = iov;
		ops[0].iovcnt = iovcnt;
	}
	if (sync && mode == AURAWAL_SYNC_DSYNC)
		ops[0].flags = AURAIO_OP_DSYNC;
	if (!sync || mode == AURAWAL_SYNC_DSYNC)
		return (int) one_op(log, &ops[0]);
	while ((rc = auraio_submit_linked(log->engine, ops, 2, reqs)) == -EAGAIN)
		auraio_wait(log->engine, 1);
	if (rc < 0)
		return rc;
	wr = collect(log, reqs[0]);
	sr = collect(log, reqs[1]);
	if (wr < 0 || (size_t) wr != len)
		return (int) wr; /* the sync was cancelled with the chain */
	return sr < 0 ? (int) sr : (int) wr;
}

void *wal_alloc(struct aurawal *log, size_t size)
{
	return auraio_buffer_alloc(log->engine, size);
}

void wal_free(struct aurawal *log, void *p)
{
	auraio_buffer_free(log->engine, p);
}
