/* SPDX-License-Identifier: MIT */
/*
 * aurakv_cli.h - the aurakv tool's internal interface: the parsed command line, the
 * exit codes, the commands and the byte helpers they share. Not installed; the tool
 * uses only the store's public header aurakv.h.
 */
#ifndef AURAKV_CLI_H
#define AURAKV_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "aurakv.h"

/* Exit status (the usage text documents them). */
#define CLI_OK	     0 /* done */
#define CLI_NOTFOUND 1 /* get: no such key */
#define CLI_CORRUPT  1 /* verify, get, dump: corruption found */
#define CLI_ERROR    2 /* bad arguments, the store cannot be opened, an operation failed */

/* The global options and the command with its arguments. */
struct cli {
	const char *dir;       /* the store's directory */
	uint64_t segment_size; /* for a store created by put/delete; 0 = the library's */
	bool verbose;	       /* print the store's information reports too */
	bool creating;	       /* the open may create the store (put, delete) */
	const char *cmd;       /* the command name */
	int argc;	       /* the command's arguments, argv[0] = the command name */
	char **argv;
	/* Set by the reporter. */
	char locked_msg[256];	/* the last AURAKV_REPORT_LOCKED message */
	bool reports_to_stdout; /* verify: corruption reports are its output */
	uint64_t corruption_reports;
};

/* One command: its name and its function (returns an exit status). */
struct cli_command {
	const char *name;
	int (*run)(struct cli *c);
};

/* The options a command may accept (a mask of CO_*) and what was given. */
enum {
	CO_HEX = 1u << 0,	/* --hex: print in hex */
	CO_HEX_KEY = 1u << 1,	/* --hex-key: the key argument is hex */
	CO_HEX_VALUE = 1u << 2, /* --hex-value: the value argument is hex */
	CO_SYNC = 1u << 3,	/* --sync: a durable write */
	CO_KEYS_ONLY = 1u << 4, /* --keys-only */
	CO_START = 1u << 5,	/* --start KEY */
	CO_LIMIT = 1u << 6,	/* --limit N */
	CO_QUIET = 1u << 7,	/* --quiet */
};

#define CMD_MAX_ARGS 2

struct cmd_args {
	unsigned given;		 /* CO_* flags seen */
	const char *start;	 /* --start */
	uint64_t limit;		 /* --limit; UINT64_MAX if not given */
	char *pos[CMD_MAX_ARGS]; /* the positional arguments */
};

/* A key or value: bytes of an argument, of hex, or of stdin. */
struct bytes {
	unsigned char *p; /* owned (free), or borrowed from argv when `owned` is false */
	size_t len;
	bool owned;
};
/* aurakv.c */
void cli_usage(FILE *out);
void cli_options_init(struct cli *c, aurakv_options_t *o, bool create);
int cli_open(struct cli *c, bool create, aurakv_t **db);
int cli_close(struct cli *c, aurakv_t *db, int status);
int cli_open_error(struct cli *c, int err);
int cli_fail(struct cli *c, const char *what, int err);
int cli_bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_parse_cmd(struct cli *c, unsigned allowed, int npos, struct cmd_args *a);
int cli_key(const char *arg, bool hex, struct bytes *key);

/* cmd_data.c: get, put, delete, dump. */
int cmd_get(struct cli *c);
int cmd_put(struct cli *c);
int cmd_delete(struct cli *c);
int cmd_dump(struct cli *c);

/* cmd_admin.c: stats, verify, compact, hold. */
int cmd_stats(struct cli *c);
int cmd_verify(struct cli *c);
int cmd_compact(struct cli *c);
int cmd_hold(struct cli *c);

/* bytes.c */
int bytes_from_hex(const char *hex, struct bytes *out);
int bytes_from_arg(const char *arg, bool hex, struct bytes *out);
int bytes_from_stream(FILE *in, size_t max, struct bytes *out);
void bytes_free(struct bytes *b);
int print_escaped(FILE *out, const void *p, size_t len);
int print_hex(FILE *out, const void *p, size_t len);
int parse_u64(const char *s, uint64_t *out);
int parse_size(const char *s, uint64_t *out);

#endif /* AURAKV_CLI_H */
