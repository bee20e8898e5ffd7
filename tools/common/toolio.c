/* SPDX-License-Identifier: MIT */
/*
 * toolio.c - what every tool does about its own files before it starts work (toolio.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "toolio.h"

void tool_hold_std_fds(int status)
{
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF &&
		    open("/dev/null", fd == 0 ? O_WRONLY : O_RDONLY) != fd)
			exit(status);
}

int tool_check_output(const char *prog, const char *path, const char *(*errstr)(int) )
{
	bool existed;
	int fd, rc;

	if (strcmp(path, "-") == 0)
		return 0;
	existed = access(path, F_OK) == 0;
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		fprintf(stderr, "%s: %s: %s\n", prog, path, errstr(rc));
		return rc;
	}
	close(fd);
	if (!existed)
		unlink(path);
	return 0;
}

int tool_flush_stdout(const char *prog, const char *(*errstr)(int) )
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return 0;
	fprintf(stderr, "%s: writing to stdout: %s\n", prog, errstr(-EIO));
	return -EIO;
}
