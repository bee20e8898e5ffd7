/* SPDX-License-Identifier: MIT */
/*
 * aurakv.c - the aurakv command-line tool: the global options, opening the store (and
 * saying clearly why it could not be opened), the store's reports, and the dispatch to
 * one command (cmd_data.c: get, put, delete, dump; cmd_admin.c: stats, verify,
 * compact, hold).
 *
 * Convention: the store is always named by --dir DIR (-d DIR), before the command;
 * the command's own options may come before or after its arguments ("--" ends them).
 * Only put and delete create a missing store: a read of a mistyped directory must
 * fail, not create an empty store there.
 *
 * Uses only the public header aurakv.h. Exit status: see cli_usage().
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "aurakv_cli.h"
#include "toolio.h"

void cli_usage(FILE *out)
{
	fprintf(out,
		"usage: aurakv --dir DIR [-v] [--segment-size BYTES] COMMAND [options] [args]\n"
		"       aurakv --help\n"
		"The store is the directory DIR, always given with -d/--dir before the command.\n"
		"\n"
		"Commands:\n"
		"  get [--hex] [--hex-key] KEY\n"
		"      print KEY's value on stdout: its raw bytes, no newline added\n"
		"      (--hex: as hex digits and a newline)\n"
		"  put [--sync] [--hex-key] [--hex-value] KEY VALUE\n"
		"      store VALUE under KEY; VALUE '-' reads the value from stdin (to store\n"
		"      a literal '-', give --hex-value 2d); --sync: return once durable. A\n"
		"      value must fit in one log segment (a little less than the segment\n"
		"      size, which is fixed when the store is created)\n"
		"  delete [--sync] [--hex-key] KEY\n"
		"      delete KEY (a missing key is not an error)\n"
		"  dump [--keys-only] [--hex] [--start KEY] [--hex-key] [--limit N]\n"
		"      every live key in key order, one line each: KEY<TAB>VALUE (--keys-only:\n"
		"      KEY). Keys and values are printed escaped: bytes 0x20..0x7e as\n"
		"      themselves except '\\' as '\\\\', every other byte as \\xHH (so tabs\n"
		"      and newlines never appear inside a field). --hex: both as plain hex\n"
		"      digits instead. --start KEY: from the first key >= KEY (--hex-key: KEY\n"
		"      in hex). --limit N: at most N keys.\n"
		"  stats\n"
		"      the store's counters (keys, bytes, space amplification, cache, index,\n"
		"      GC, I/O) and its segments\n"
		"  verify [--quiet]\n"
		"      check every log record and hint file without changing anything; the\n"
		"      store must not be open in another process. Prints each problem found\n"
		"      ('report: ...') and a summary (--quiet: only the problems)\n"
		"  compact\n"
		"      collect garbage now; prints disk bytes and segments before and after\n"
		"  hold\n"
		"      debugging aid: open the store, print 'holding DIR pid PID', and keep it\n"
		"      open until stdin ends (to see what others see while it is in use)\n"
		"\n"
		"Global options:\n"
		"  -d, --dir DIR          the store's directory (required)\n"
		"  --segment-size BYTES   segment size (k/m/g suffix) of a store that put or\n"
		"                         delete creates; default: the library's (16m)\n"
		"  -v, --verbose          also print the store's information reports (stderr)\n"
		"  -h, --help             this text\n"
		"\n"
		"Keys and values given as arguments are the argument's bytes; --hex-key and\n"
		"--hex-value take them as hex digits instead (e.g. 00ff). A key is 1..65535\n"
		"bytes. Use '--' before a key or value that starts with '-'. Only put and\n"
		"delete create a missing store, in a new or empty directory; every other\n"
		"command fails on it.\n"
		"\n"
		"Exit status:\n"
		"  0  success\n"
		"  1  get: no such key; or corruption found (verify, or a damaged record met\n"
		"     by get, dump or opening - any command, even one that then succeeded:\n"
		"     the store's reports on stderr say where)\n"
		"  2  bad arguments; the store cannot be opened (missing, in use by another\n"
		"     process - the message names its PID - or not a store); or an operation\n"
		"     failed (the error text on stderr)\n");
}

/* Print "aurakv: MESSAGE" and the usage hint; the exit status of bad usage. */
int cli_bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("aurakv: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(aurakv --help for usage)\n", stderr);
	return CLI_ERROR;
}

/*
 * The store's reporter. It may run in the store's background threads (GC, reads), so
 * it only prints (stdio locks each call) and counts with an atomic add; the LOCKED
 * message arrives during aurakv_open(), in the thread that called it, which reads it
 * only after the open returned.
 */
static void reporter(aurakv_report_kind_t kind, const char *message, void *arg)
{
	struct cli *c = arg;
	FILE *out = c->reports_to_stdout ? stdout : stderr;

	switch (kind) {
	case AURAKV_REPORT_LOCKED:
		snprintf(c->locked_msg, sizeof(c->locked_msg), "%s", message);
		break;
	case AURAKV_REPORT_CORRUPTION:
		__atomic_add_fetch(&c->corruption_reports, 1, __ATOMIC_RELAXED);
		if (c->reports_to_stdout)
			fprintf(out, "report: corruption: %s\n", message);
		else
			fprintf(out, "aurakv: %s: corruption: %s\n", c->dir, message);
		break;
	case AURAKV_REPORT_IO_ERROR:
		if (c->reports_to_stdout)
			fprintf(out, "report: I/O error: %s\n", message);
		else
			fprintf(out, "aurakv: %s: I/O error: %s\n", c->dir, message);
		break;
	case AURAKV_REPORT_INFO:
		if (c->reports_to_stdout)
			fprintf(out, "report: info: %s\n", message);
		else if (c->verbose)
			fprintf(out, "aurakv: %s: %s\n", c->dir, message);
		break;
	}
}

void cli_options_init(struct cli *c, aurakv_options_t *o, bool create)
{
	aurakv_options_init(o);
	o->create_if_missing = create;
	if (c->segment_size)
		o->segment_size = c->segment_size;
	o->reporter = reporter;
	o->reporter_arg = c;
}

/* What a directory holds, seen from outside the store (its wal/ makes it one). */
enum dir_kind {
	DIR_FREE,  /* missing, unreadable or empty: a store may be created there */
	DIR_STORE, /* has a wal/ entry */
	DIR_LOG,   /* no wal/, but AuraWAL segment files (*.seg): a store's wal/ itself? */
	DIR_OTHER, /* anything else */
};

static enum dir_kind dir_kind(const char *dir)
{
	enum dir_kind k = DIR_FREE;
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d)
		return DIR_FREE; /* the open says why */
	while (k != DIR_STORE && (e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (strcmp(e->d_name, "wal") == 0)
			k = DIR_STORE;
		else if (n > 4 && strcmp(e->d_name + n - 4, ".seg") == 0)
			k = DIR_LOG;
		else if (k == DIR_FREE)
			k = DIR_OTHER;
	}
	closedir(d);
	return k;
}

/* The hint for a directory that holds a log but no store (kind k). */
static const char *log_hint(enum dir_kind k)
{
	return k == DIR_LOG ? "; it holds AuraWAL segment files: a store's log "
			      "directory, whose parent is the store?"
			    : "";
}

/* Say why the store in c->dir could not be opened (or verified); the exit status. */
int cli_open_error(struct cli *c, int err)
{
	switch (err) {
	case -ENOENT:
		if (c->creating)
			fprintf(stderr,
				"aurakv: %s: cannot create the store: %s (its parent directory "
				"must exist)\n",
				c->dir, aurakv_strerror(err));
		else
			fprintf(stderr, "aurakv: no store at %s (put or delete creates one)%s\n",
				c->dir, log_hint(dir_kind(c->dir)));
		return CLI_ERROR;
	case AURAKV_ELOCKED:
		fprintf(stderr, "aurakv: %s: %s: %s\n", c->dir, aurakv_strerror(err),
			c->locked_msg[0] ? c->locked_msg : "(the store gave no details)");
		return CLI_ERROR;
	case AURAKV_EFORMAT:
		fprintf(stderr, "aurakv: %s: %s (not an AuraKV store, or a newer format)\n", c->dir,
			aurakv_strerror(err));
		return CLI_ERROR;
	case AURAKV_ECORRUPT:
		fprintf(stderr, "aurakv: %s: cannot open: %s (see the reports above)\n", c->dir,
			aurakv_strerror(err));
		return CLI_CORRUPT;
	default:
		fprintf(stderr, "aurakv: %s: cannot open: %s\n", c->dir, aurakv_strerror(err));
		return CLI_ERROR;
	}
}

/* Open the store; on failure print why. 0, or the exit status. */
int cli_open(struct cli *c, bool create, aurakv_t **db)
{
	/* The library would make a store inside any directory (a log, one's home): only
	 * in a new or empty one. */
	enum dir_kind k = create ? dir_kind(c->dir) : DIR_STORE;
	aurakv_options_t o;
	int rc;

	cli_options_init(c, &o, create);
	c->creating = create;
	c->locked_msg[0] = '\0';
	if (k == DIR_LOG || k == DIR_OTHER) {
		fprintf(stderr,
			"aurakv: %s: not a store and not empty: put and delete create a store "
			"only in a new or empty directory%s\n",
			c->dir, log_hint(k));
		return CLI_ERROR;
	}
	rc = aurakv_open(c->dir, &o, db);
	return rc ? cli_open_error(c, rc) : 0;
}

/* An operation failed: print it; the exit status (corruption is 1, anything else 2). */
int cli_fail(struct cli *c, const char *what, int err)
{
	fprintf(stderr, "aurakv: %s: %s: %s\n", c->dir, what, aurakv_strerror(err));
	return err == AURAKV_ECORRUPT ? CLI_CORRUPT : CLI_ERROR;
}

/* Close the store; a failure (writes not made durable) turns success into exit 2. */
int cli_close(struct cli *c, aurakv_t *db, int status)
{
	int rc = aurakv_close(db);

	if (rc == 0)
		return status;
	fprintf(stderr, "aurakv: %s: closing: %s\n", c->dir, aurakv_strerror(rc));
	return status == CLI_OK ? CLI_ERROR : status;
}

/*
 * The command's options (those in `allowed`, a CO_* mask) and exactly `npos`
 * arguments, from c->argv (argv[0] = the command). 0, 1 = help printed, or
 * CLI_ERROR (bad usage, said why).
 */
int cli_parse_cmd(struct cli *c, unsigned allowed, int npos, struct cmd_args *a)
{
	static const struct option opts[] = {
		{ "hex", no_argument, NULL, CO_HEX },
		{ "hex-key", no_argument, NULL, CO_HEX_KEY },
		{ "hex-value", no_argument, NULL, CO_HEX_VALUE },
		{ "sync", no_argument, NULL, CO_SYNC },
		{ "keys-only", no_argument, NULL, CO_KEYS_ONLY },
		{ "start", required_argument, NULL, CO_START },
		{ "limit", required_argument, NULL, CO_LIMIT },
		{ "quiet", no_argument, NULL, CO_QUIET },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch, idx = 0;

	*a = (struct cmd_args){ .limit = UINT64_MAX };
	opterr = 0; /* we say which option was wrong, and for which command */
	while ((ch = getopt_long(c->argc, c->argv, "h", opts, &idx)) != -1) {
		if (ch == 'h') {
			cli_usage(stdout);
			return 1;
		}
		if (ch == '?')
			return cli_bad_usage("%s: unknown option or missing value: '%s'", c->cmd,
					     c->argv[optind - 1]);
		if (!(allowed & (unsigned) ch))
			return cli_bad_usage("%s: --%s is not an option of this command", c->cmd,
					     opts[idx].name);
		a->given |= (unsigned) ch;
		if (ch == CO_START)
			a->start = optarg;
		if (ch == CO_LIMIT && parse_u64(optarg, &a->limit))
			return cli_bad_usage("%s: --limit: not a number: '%s'", c->cmd, optarg);
	}
	if (c->argc - optind != npos)
		return cli_bad_usage("%s: %s arguments (expected %d)", c->cmd,
				     c->argc - optind < npos ? "missing" : "too many", npos);
	for (int i = 0; i < npos; i++)
		a->pos[i] = c->argv[optind + i];
	return 0;
}

/* A key argument (hex with `hex`): 0 or CLI_ERROR (bad usage, said why). */
int cli_key(const char *arg, bool hex, struct bytes *key)
{
	int rc = bytes_from_arg(arg, hex, key);

	if (rc == -ENOMEM)
		return cli_bad_usage("%s", aurakv_strerror(rc));
	if (rc)
		return cli_bad_usage("bad hex key '%s' (an even number of hex digits)", arg);
	if (key->len == 0 || key->len > AURAKV_MAX_KEY) {
		bytes_free(key);
		return cli_bad_usage("%s", aurakv_strerror(AURAKV_EKEYSIZE));
	}
	return 0;
}

enum { OPT_SEGMENT = 256 };

/* The global options, up to the command. 0 = run, 1 = help printed, or CLI_ERROR. */
static int parse_global(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "segment-size", required_argument, NULL, OPT_SEGMENT },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	/* '+': stop at the command; its options belong to it. */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+d:vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			c->dir = optarg;
			break;
		case OPT_SEGMENT:
			/* The library checks it too, but only says -EINVAL. */
			if (parse_size(optarg, &c->segment_size) || c->segment_size < (1u << 20) ||
			    c->segment_size > (4ull << 30) || c->segment_size % 4096)
				return cli_bad_usage("--segment-size: '%s' not 1m..4g in 4k steps",
						     optarg);
			break;
		case 'v':
			c->verbose = true;
			break;
		case 'h':
			cli_usage(stdout);
			return 1;
		default:
			return cli_bad_usage("unknown global option or missing value: '%s' "
					     "(global options come before the command)",
					     argv[optind - 1]);
		}
	}
	if (optind == argc)
		return cli_bad_usage("no command given");
	if (!c->dir)
		return cli_bad_usage("no store directory given (--dir DIR before the command)");
	if (!c->dir[0])
		return cli_bad_usage("--dir: empty directory name");
	c->cmd = argv[optind];
	c->argc = argc - optind;
	c->argv = argv + optind;
	return 0;
}

static const struct cli_command commands[] = {
	{ "get", cmd_get },	    { "put", cmd_put },	    { "delete", cmd_delete },
	{ "dump", cmd_dump },	    { "stats", cmd_stats }, { "verify", cmd_verify },
	{ "compact", cmd_compact }, { "hold", cmd_hold },
};

/* Run the command named c->cmd: its exit status. */
static int run(struct cli *c)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(c->cmd, commands[i].name) == 0) {
			/* The command parses its own options from argv[0] = its name. */
			optind = 0;
			return commands[i].run(c);
		}
	}
	return cli_bad_usage("unknown command '%s'", c->cmd);
}

int main(int argc, char **argv)
{
	struct cli c = { 0 };
	int rc;

	/* Else a closed stdout is the LOCK file's fd, and get prints the value into it. */
	tool_hold_std_fds(CLI_ERROR);
	rc = parse_global(&c, argc, argv);

	if (rc == 0)
		rc = run(&c);
	else if (rc == 1)
		rc = CLI_OK; /* --help */
	/* Damage reported on the way (at the open: recovery may drop what follows it) is
	 * corruption found, even when the command itself succeeded. The store is closed:
	 * no reporter runs any more. */
	if (rc == CLI_OK && __atomic_load_n(&c.corruption_reports, __ATOMIC_RELAXED) != 0) {
		fprintf(stderr, "aurakv: %s: the store reported corruption (above)\n", c.dir);
		rc = CLI_CORRUPT;
	}
	/* Output that did not reach stdout (a full disk) is a failure. */
	if (rc == CLI_OK && tool_flush_stdout("aurakv", aurakv_strerror))
		rc = CLI_ERROR;
	return rc;
}
