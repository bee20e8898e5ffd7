/* SPDX-License-Identifier: MIT */
/*
 * Run under valgrind's memcheck (tests/CMakeLists.txt, io_memcheck_registered_buf): reads
 * and writes of a registered buffer, from outside and from inside a callback, must not
 * make the library branch on uninitialised memory. auraio_buf_fixed() leaves the bytes
 * between the index and the offset unset, so code that looks at the reference's pointer
 * before its type (the fast path's folded checks) depends on them. Exits 0, or 1 with
 * the failed step; memcheck's own errors exit 99.
 */
#include <auraio.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char reg[8192] __attribute__((aligned(4096)));

struct ctx {
	auraio_engine_t *e;
	int fd;
	int done, failed;
};

static void inner_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct ctx *c = ud;

	(void) req;
	c->failed |= res != 512;
	c->done++;
}

static void outer_cb(auraio_request_t *req, ssize_t res, void *ud)
{
	struct ctx *c = ud;

	(void) req;
	c->failed |= res != 512;
	c->failed |= !auraio_read(c->e, c->fd, auraio_buf_fixed(0, 4096), 512, 0, inner_cb, c);
	c->failed |= !auraio_write(c->e, c->fd, auraio_buf_fixed(0, 0), 512, 512, inner_cb, c);
	c->done++;
}

static int fail(const char *what)
{
	fprintf(stderr, "memcheck_registered_buf: %s\n", what);
	return 1;
}

int main(void)
{
	char path[] = "/var/tmp/auramemcheck.XXXXXX";
	struct iovec v = { reg, sizeof(reg) };
	struct ctx c = { 0 };
	auraio_request_t *req;
	ssize_t res = 0;

	c.fd = mkstemp(path);
	if (c.fd < 0 || ftruncate(c.fd, 65536) != 0)
		return fail("temporary file");
	unlink(path);
	c.e = auraio_create();
	if (!c.e || auraio_register_buffers(c.e, &v, 1) != 0)
		return fail("engine with a registered buffer");
	req = auraio_write(c.e, c.fd, auraio_buf_fixed(0, 0), 512, 0, NULL, NULL);
	if (!req || auraio_request_wait(c.e, req, 5000, &res) != 0 || res != 512)
		return fail("a write of the registered buffer");
	req = auraio_read(c.e, c.fd, auraio_buf_fixed(0, 512), 512, 0, NULL, NULL);
	if (!req || auraio_request_wait(c.e, req, 5000, &res) != 0 || res != 512)
		return fail("a read into the registered buffer");
	if (!auraio_read(c.e, c.fd, auraio_buf_fixed(0, 1024), 512, 0, outer_cb, &c))
		return fail("a read with a callback");
	while (c.done < 3)
		if (auraio_wait(c.e, 5000) < 0)
			return fail("auraio_wait");
	if (c.failed)
		return fail("a registered-buffer I/O from a callback");
	auraio_unregister_buffers(c.e);
	auraio_destroy(c.e);
	close(c.fd);
	return 0;
}
