/* SPDX-License-Identifier: MIT */
/*
 * cmd_data.c - the commands that read and write keys: get, put, delete, dump.
 *
 * get prints the value's raw bytes (nothing added) so that `aurakv get K > file`
 * reproduces exactly what `aurakv put K - < file` stored. put reads a value from
 * stdin before opening the store, so the store is never held open while a pipe is
 * slow. dump prints one line per key (format in bytes.c and the usage text).
 */
#include <errno.h>
#include <stdlib.h>

#include "aurakv_cli.h"

/* Print the value of get: raw, or hex and a newline. 0 or -EIO. */
static int print_value(const void *val, size_t vlen, bool hex)
{
	if (hex) {
		print_hex(stdout, val, vlen);
		putchar('\n');
	} else if (vlen) {
		fwrite(val, 1, vlen, stdout);
	}
	return fflush(stdout) || ferror(stdout) ? -EIO : 0;
}

static void print_not_found(struct cli *c, const struct bytes *key)
{
	fprintf(stderr, "aurakv: %s: key '", c->dir);
	print_escaped(stderr, key->p, key->len);
	fprintf(stderr, "': not found\n");
}

int cmd_get(struct cli *c)
{
	struct cmd_args a;
	struct bytes key;
	aurakv_t *db;
	void *val = NULL;
	size_t vlen = 0;
	int rc = cli_parse_cmd(c, CO_HEX | CO_HEX_KEY, 1, &a);

	if (rc)
		return rc == 1 ? CLI_OK : rc;
	rc = cli_key(a.pos[0], a.given & CO_HEX_KEY, &key);
	if (rc)
		return rc;
	rc = cli_open(c, false, &db);
	if (rc) {
		bytes_free(&key);
		return rc;
	}
	rc = aurakv_get(db, key.p, key.len, &val, &vlen);
	if (rc == AURAKV_ENOTFOUND) {
		print_not_found(c, &key);
		rc = CLI_NOTFOUND;
	} else if (rc) {
		rc = cli_fail(c, "get", rc);
	} else if (print_value(val, vlen, a.given & CO_HEX)) {
		rc = cli_fail(c, "writing the value to stdout", -EIO);
	}
	aurakv_free(val);
	bytes_free(&key);
	return cli_close(c, db, rc);
}

/* The value of put: the argument, its hex, or stdin for "-". 0 or CLI_ERROR. */
static int put_value(const char *arg, bool hex, struct bytes *val)
{
	int rc;

	if (!hex && arg[0] == '-' && arg[1] == '\0') {
		rc = bytes_from_stream(stdin, AURAKV_MAX_VALUE, val);
		if (rc == -EFBIG)
			return cli_bad_usage("value on stdin: %s",
					     aurakv_strerror(AURAKV_EVALSIZE));
		if (rc)
			return cli_bad_usage("reading the value from stdin: %s",
					     aurakv_strerror(rc));
		return 0;
	}
	rc = bytes_from_arg(arg, hex, val);
	if (rc == -ENOMEM)
		return cli_bad_usage("%s", aurakv_strerror(rc));
	if (rc)
		return cli_bad_usage("bad hex value '%s' (an even number of hex digits)", arg);
	if (val->len > AURAKV_MAX_VALUE) {
		bytes_free(val);
		return cli_bad_usage("%s", aurakv_strerror(AURAKV_EVALSIZE));
	}
	return 0;
}

int cmd_put(struct cli *c)
{
	struct cmd_args a;
	struct bytes key, val;
	aurakv_t *db;
	int rc = cli_parse_cmd(c, CO_SYNC | CO_HEX_KEY | CO_HEX_VALUE, 2, &a);

	if (rc)
		return rc == 1 ? CLI_OK : rc;
	rc = cli_key(a.pos[0], a.given & CO_HEX_KEY, &key);
	if (rc)
		return rc;
	rc = put_value(a.pos[1], a.given & CO_HEX_VALUE, &val);
	if (rc == 0)
		rc = cli_open(c, true, &db);
	if (rc) {
		bytes_free(&key);
		bytes_free(&val);
		return rc;
	}
	rc = aurakv_put(db, key.p, key.len, val.p, val.len, a.given & CO_SYNC ? AURAKV_SYNC : 0);
	if (rc == -EMSGSIZE)
		fprintf(stderr,
			"aurakv: %s: put: a value of %zu bytes does not fit in one log segment "
			"of this store (--segment-size when it is created sets the size)\n",
			c->dir, val.len);
	if (rc)
		rc = rc == -EMSGSIZE ? CLI_ERROR : cli_fail(c, "put", rc);
	bytes_free(&key);
	bytes_free(&val);
	return cli_close(c, db, rc);
}

int cmd_delete(struct cli *c)
{
	struct cmd_args a;
	struct bytes key;
	aurakv_t *db;
	int rc = cli_parse_cmd(c, CO_SYNC | CO_HEX_KEY, 1, &a);

	if (rc)
		return rc == 1 ? CLI_OK : rc;
	rc = cli_key(a.pos[0], a.given & CO_HEX_KEY, &key);
	if (rc)
		return rc;
	rc = cli_open(c, true, &db);
	if (rc) {
		bytes_free(&key);
		return rc;
	}
	rc = aurakv_delete(db, key.p, key.len, a.given & CO_SYNC ? AURAKV_SYNC : 0);
	if (rc)
		rc = cli_fail(c, "delete", rc);
	bytes_free(&key);
	return cli_close(c, db, rc);
}

struct dump {
	bool hex, keys_only;
	uint64_t limit, printed;
	int err; /* writing to stdout failed */
};

#define DUMP_STOP 1 /* the callback's "enough" (store errors are negative) */

static void dump_field(const struct dump *d, const void *p, size_t len)
{
	if (d->hex)
		print_hex(stdout, p, len);
	else
		print_escaped(stdout, p, len);
}

/* aurakv_foreach's callback: one line per key. */
static int dump_one(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct dump *d = arg;

	if (d->printed == d->limit)
		return DUMP_STOP;
	dump_field(d, key, klen);
	if (!d->keys_only) {
		putchar('\t');
		dump_field(d, val, vlen);
	}
	putchar('\n');
	d->printed++;
	if (ferror(stdout)) {
		d->err = -EIO;
		return DUMP_STOP;
	}
	return 0;
}

int cmd_dump(struct cli *c)
{
	struct cmd_args a;
	struct bytes start = { NULL, 0, false };
	struct dump d = { 0 };
	aurakv_t *db;
	int rc = cli_parse_cmd(c, CO_KEYS_ONLY | CO_HEX | CO_START | CO_HEX_KEY | CO_LIMIT, 0, &a);

	if (rc)
		return rc == 1 ? CLI_OK : rc;
	if (a.start && (rc = cli_key(a.start, a.given & CO_HEX_KEY, &start)))
		return rc;
	d.hex = a.given & CO_HEX;
	d.keys_only = a.given & CO_KEYS_ONLY;
	d.limit = a.limit;
	rc = cli_open(c, false, &db);
	if (rc) {
		bytes_free(&start);
		return rc;
	}
	rc = aurakv_foreach(db, start.p, start.len, dump_one, &d);
	if (fflush(stdout) && !d.err)
		d.err = -EIO;
	if (d.err)
		rc = cli_fail(c, "dump: writing to stdout", d.err);
	else if (rc < 0)
		rc = cli_fail(c, "dump", rc);
	else
		rc = CLI_OK;
	bytes_free(&start);
	return cli_close(c, db, rc);
}
