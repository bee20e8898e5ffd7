/* SPDX-License-Identifier: MIT */
/*
 * toolio.h - what every tool does about its own files before it starts work.
 *
 * tool_hold_std_fds: a tool started with descriptor 0, 1 or 2 closed would hand that
 * number to its first open() - a store's LOCK file, a log segment, a benchmark's data
 * file - and its output would go there. Call it first thing in main().
 *
 * tool_check_output: a report path (--json FILE) that cannot be written is refused
 * before a run, not found out after minutes of it; tool_flush_stdout: a report lost on
 * the way to stdout is a failure, not exit 0.
 */
#ifndef AURA_TOOLS_TOOLIO_H
#define AURA_TOOLS_TOOLIO_H

/* Hold each closed standard descriptor with /dev/null opened the wrong way round, so
 * that reading stdin or writing stdout/stderr still fails (EBADF) as it would have.
 * Exits with `status` if that cannot be done. */
void tool_hold_std_fds(int status);

/* Can `path` be opened for writing ("-" = stdout: yes)? Opens it without truncating
 * (a file it had to create is removed again). 0, or -errno after printing
 * "PROG: PATH: ERR" on stderr, ERR from errstr (the tool's library's *_strerror). */
int tool_check_output(const char *prog, const char *path, const char *(*errstr)(int) );

/* Flush stdout: 0, or -EIO after printing "PROG: writing to stdout: ERR" - output
 * that never arrived (a full disk, a closed stdout) is no result. */
int tool_flush_stdout(const char *prog, const char *(*errstr)(int) );

#endif
