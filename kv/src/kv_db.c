/* SPDX-License-Identifier: MIT */
/*
 * kv_db.c - the store's lifecycle (open, close, the lock file), the public entry points
 * (argument checks, then the write/read paths), errors and reports.
 *
 * A handle outlives its store: close frees the store and marks the handle closed; the
 * handle itself stays on a process-wide list (reachable, a few bytes) so that a later
 * call on it returns AURAKV_ECLOSED instead of reading freed memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kv_batch.h"
#include "kv_db.h"

#define KV_MAX_FLUSH_DELAY_US 10000000u /* aurakv.h, flush_delay_us */

static pthread_mutex_t closed_lock = PTHREAD_MUTEX_INITIALIZER;
static struct aurakv *closed_handles; /* kept so that their memory stays valid */

void aurakv_options_init(aurakv_options_t *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->segment_size = 16ull << 20;
	opts->create_if_missing = true;
	opts->cache_size = 64u << 20;
	opts->compress_min = 256;
	opts->flush_delay_us = 1000;
	opts->background_gc = true;
	opts->gc_space_amp = 1.5;
	opts->write_hints = true;
}

static int check_options(const aurakv_options_t *o)
{
	if (o->segment_size < (1ull << 20) || o->segment_size > (4ull << 30) ||
	    o->segment_size % 4096)
		return -EINVAL;
	if (!(o->gc_space_amp >= 1.1 && o->gc_space_amp <= 10))
		return -EINVAL;
	/* The log refuses more too, but only once the directory exists: check first. */
	if (o->flush_delay_us > KV_MAX_FLUSH_DELAY_US)
		return -EINVAL;
	return 0;
}

void kv_report(struct kv_db *db, aurakv_report_kind_t kind, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (db->opts.reporter)
		db->opts.reporter(kind, msg, db->opts.reporter_arg);
	else if (kind != AURAKV_REPORT_INFO)
		fprintf(stderr, "aurakv: %s\n", msg);
}

int kv_map_wal_error(int rc)
{
	switch (rc) {
	case AURAWAL_ECORRUPT:
		return AURAKV_ECORRUPT;
	case AURAWAL_ECLOSED:
		return AURAKV_ECLOSED;
	case AURAWAL_EFORMAT:
		return AURAKV_EFORMAT;
	case AURAWAL_ELOCKED:
		return AURAKV_ELOCKED;
	default:
		return rc;
	}
}

int kv_check_key(const void *key, size_t klen)
{
	if (!key)
		return -EINVAL;
	return klen == 0 || klen > AURAKV_MAX_KEY ? AURAKV_EKEYSIZE : 0;
}

uint32_t kv_stripe_of(const void *key, size_t klen)
{
	return (uint32_t) XXH3_64bits(key, klen) & (KV_STRIPES - 1);
}

/* ---- the lock file ---- */

/* Take DIR/LOCK (flock, held until close) and write our PID into it. Refusal names the
 * holder's PID. */
int kv_db_lock(struct kv_db *db)
{
	char path[4096], pid[32] = "";
	int fd, n;

	snprintf(path, sizeof(path), "%s/LOCK", db->dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno;

		n = (int) pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		close(fd);
		if (err != EWOULDBLOCK)
			return -err;
		kv_report(db, AURAKV_REPORT_LOCKED, "store %s is locked by process %s", db->dir,
			  pid[0] ? pid : "(unknown)");
		return AURAKV_ELOCKED;
	}
	n = snprintf(pid, sizeof(pid), "%d\n", (int) getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t) n, 0) != n) {
		n = -errno;
		close(fd);
		return n;
	}
	db->lock_fd = fd;
	return 0;
}

/* ---- open / close ---- */

static int make_dirs(struct kv_db *db)
{
	char path[4096];
	struct stat st;

	if (stat(db->dir, &st) < 0) {
		if (errno != ENOENT || !db->opts.create_if_missing)
			return -errno;
		if (mkdir(db->dir, 0755) < 0 && errno != EEXIST)
			return -errno;
	} else if (!S_ISDIR(st.st_mode)) {
		return -ENOTDIR;
	}
	snprintf(path, sizeof(path), "%s/wal", db->dir);
	if (stat(path, &st) < 0 && !db->opts.create_if_missing)
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/hints", db->dir);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/*
 * fsync the directory holding the store, then the store's: the store's entry (made by
 * make_dirs now, by an earlier open that failed, or by the caller) and its own (wal/,
 * hints/) are durable before the open returns. On every open, not only after a mkdir
 * that made something: an open failing here would otherwise leave its retry - which
 * finds the directories made - with entries a power loss may still take. Through the
 * log's engine, so that fault injection reaches them: hence after the log is open.
 */
static int sync_dirs(struct kv_db *db)
{
	auraio_engine_t *eng = aurawal_engine(db->wal);
	char parent[4096], *slash;
	size_t len = strlen(db->dir);
	int rc;

	if (len >= sizeof(parent))
		return -ENAMETOOLONG;
	memcpy(parent, db->dir, len + 1);
	while (len > 1 && parent[len - 1] == '/') /* "a/db/" is "a/db" */
		parent[--len] = '\0';
	slash = strrchr(parent, '/');
	if (slash)
		slash[slash == parent] = '\0'; /* "/db": the parent is "/" */
	rc = kv_fsync_dir(eng, slash ? parent : ".");
	return rc ? rc : kv_fsync_dir(eng, db->dir);
}

/* The log's findings as the store's report kinds. A torn tail and a segment DROPPED
 * after a rollover whose flush was never made (the store opens the log STRICT or
 * INSPECT, never POINT_IN_TIME: nothing else is dropped) are what a crash leaves,
 * nothing acknowledged lost: information, not corruption (docs/wal_format.md). */
static void wal_reporter(const aurawal_report_t *r, void *arg)
{
	struct kv_db *db = arg;
	aurakv_report_kind_t kind =
	    r->kind == AURAWAL_REPORT_TORN_TAIL || r->kind == AURAWAL_REPORT_DROPPED
		? AURAKV_REPORT_INFO
	    : r->kind == AURAWAL_REPORT_LOCKED ? AURAKV_REPORT_LOCKED
	    : r->kind == AURAWAL_REPORT_FAILED || r->kind == AURAWAL_REPORT_PREPARE
		? AURAKV_REPORT_IO_ERROR
		: AURAKV_REPORT_CORRUPTION;

	kv_report(db, kind, "log segment %llu offset %llu length %llu: %s",
		  (unsigned long long) r->segment, (unsigned long long) r->offset,
		  (unsigned long long) r->length, r->reason ? r->reason : "");
}

/* The segment size of the log as it is: an existing store keeps the size it was created
 * with, whatever the options say. */
static uint64_t log_segment_size(struct kv_db *db)
{
	aurawal_stats_t st;

	return aurawal_get_stats(db->wal, &st) == 0 && st.segment_size ? st.segment_size
								       : db->opts.segment_size;
}

int kv_db_open_wal(struct kv_db *db, aurawal_recovery_t mode)
{
	aurawal_options_t wo;
	char path[4096];
	int rc;

	aurawal_options_init(&wo);
	wo.segment_size = db->opts.segment_size;
	wo.create_if_missing = db->opts.create_if_missing;
	wo.flush_delay_us = db->opts.flush_delay_us;
	wo.flush_on_rollover = true; /* GC's syncs must not carry the writers' rollovers */
	wo.engine = db->opts.engine;
	wo.recovery = mode;
	/* Opening for use trusts sealed segments whose seal block checks out (the WAL
	 * then reads only their SEAL record): the store reads their keys from hint files,
	 * and every record read later is checked (checksum, key) anyway. Scanning them
	 * all made reopening 10 M keys read the whole 1.6 GB log. verify (INSPECT) still
	 * reads every record. */
	wo.scan_sealed = mode == AURAWAL_RECOVER_INSPECT;
	wo.reporter = wal_reporter;
	wo.reporter_arg = db;
	snprintf(path, sizeof(path), "%s/wal", db->dir);
	rc = kv_map_wal_error(aurawal_open(path, &wo, &db->wal));
	if (rc == 0)
		db->seg_bytes = log_segment_size(db);
	return rc;
}

void kv_db_free(struct kv_db *db)
{
	if (!db)
		return;
	kv_index_destroy(db->ix);
	kv_cache_destroy(db->cache);
	if (db->batches.buckets)
		kv_batches_destroy(&db->batches);
	for (unsigned i = 0; i < KV_STRIPES; i++)
		pthread_mutex_destroy(&db->stripes[i]);
	pthread_mutex_destroy(&db->segs_lock);
	pthread_mutex_destroy(&db->bg.lock);
	pthread_cond_destroy(&db->bg.wake);
	pthread_cond_destroy(&db->bg.progress);
	free(db->segs);
	if (db->lock_fd >= 0)
		close(db->lock_fd); /* releases the flock */
	free(db->dir);
	free(db);
}

/* The log's segments, oldest first, in a new array (*segs, free it; NULL on error). */
int kv_list_segments(struct kv_db *db, aurawal_segment_info_t **segs, size_t *n)
{
	size_t count = 0;
	int rc = aurawal_list_segments(db->wal, NULL, 0, &count);

	*segs = NULL;
	*n = 0;
	if (rc)
		return kv_map_wal_error(rc);
	if (!(*segs = calloc(count + 1, sizeof(**segs))))
		return -ENOMEM;
	rc = aurawal_list_segments(db->wal, *segs, count, n);
	if (*n > count)
		*n = count;
	return kv_map_wal_error(rc);
}

struct kv_db *kv_db_alloc(const char *dir, const aurakv_options_t *opts)
{
	struct kv_db *db = calloc(1, sizeof(*db));

	if (!db)
		return NULL;
	db->lock_fd = -1;
	db->opts = *opts;
	for (unsigned i = 0; i < KV_STRIPES; i++)
		pthread_mutex_init(&db->stripes[i], NULL);
	pthread_mutex_init(&db->segs_lock, NULL);
	pthread_mutex_init(&db->bg.lock, NULL);
	pthread_cond_init(&db->bg.wake, NULL);
	pthread_cond_init(&db->bg.progress, NULL);
	db->dir = strdup(dir);
	db->segs = calloc(KV_SEG_SLOTS, sizeof(*db->segs));
	db->ix = kv_index_create();
	db->cache = kv_cache_create(opts->cache_size, 0);
	if (!db->dir || !db->segs || !db->ix || (opts->cache_size >= KV_CACHE_MIN && !db->cache) ||
	    kv_batches_init(&db->batches)) {
		kv_db_free(db);
		return NULL;
	}
	atomic_store(&db->next_version, 1);
	return db;
}

int aurakv_open(const char *dir, const aurakv_options_t *opts, aurakv_t **out)
{
	aurakv_options_t defaults;
	struct aurakv *h;
	struct kv_db *db;
	int rc;

	if (!dir || !*dir || !out)
		return -EINVAL;
	*out = NULL;
	if (strlen(dir) > KV_DIR_MAX)
		return -ENAMETOOLONG; /* before anything is made */
	if (!opts) {
		aurakv_options_init(&defaults);
		opts = &defaults;
	}
	if ((rc = check_options(opts)))
		return rc;
	if (!(db = kv_db_alloc(dir, opts)))
		return -ENOMEM;
	if (!(h = calloc(1, sizeof(*h)))) {
		kv_db_free(db);
		return -ENOMEM;
	}
	rc = make_dirs(db);
	if (!rc)
		rc = kv_db_lock(db);
	if (!rc)
		rc = kv_db_open_wal(db, AURAWAL_RECOVER_STRICT);
	if (!rc)
		rc = sync_dirs(db);
	if (!rc)
		rc = kv_recover(db);
	if (!rc)
		rc = kv_bg_start(db);
	if (rc) {
		kv_bg_stop(db);
		aurawal_close(db->wal);
		kv_db_free(db);
		free(h);
		return rc;
	}
	h->magic = KV_MAGIC_OPEN;
	h->db = db;
	*out = h;
	return 0;
}

int aurakv_close(aurakv_t *h)
{
	struct kv_db *db;
	int rc;

	if (!h || h->magic != KV_MAGIC_OPEN)
		return h ? AURAKV_ECLOSED : 0;
	db = h->db;
	/* Async gets still in flight complete first, their callbacks run here: the log's
	 * close runs only callbacks already reaped, and would free the read buffers under a
	 * read the engine still holds. A callback's relookup may start another: loop.
	 * First the answers waiting in this thread's queue (a close made by a callback of
	 * another store's get chain). */
	kv_get_async_flush(db);
	while (aurawal_poll(db->wal, -1) > 0)
		;
	kv_bg_stop(db);
	rc = kv_map_wal_error(aurawal_close(db->wal));
	kv_db_free(db);
	h->db = NULL;
	h->magic = KV_MAGIC_CLOSED;
	pthread_mutex_lock(&closed_lock);
	h->next_closed = closed_handles;
	closed_handles = h;
	pthread_mutex_unlock(&closed_lock);
	return rc;
}

/* The store behind a handle, or NULL and *rc set. */
struct kv_db *kv_store_of(aurakv_t *h, int *rc)
{
	if (!h) {
		*rc = -EINVAL;
		return NULL;
	}
	if (h->magic != KV_MAGIC_OPEN) {
		*rc = h->magic == KV_MAGIC_CLOSED ? AURAKV_ECLOSED : -EINVAL;
		return NULL;
	}
	*rc = 0;
	return h->db;
}

/* ---- public entry points ---- */

int aurakv_put(aurakv_t *h, const void *key, size_t klen, const void *val, size_t vlen,
	       unsigned flags)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);

	if (!db)
		return rc;
	if ((!val && vlen) || (flags & ~AURAKV_SYNC))
		return -EINVAL;
	if ((rc = kv_check_key(key, klen)))
		return rc;
	if (vlen > AURAKV_MAX_VALUE)
		return AURAKV_EVALSIZE;
	return kv_write_put(db, key, klen, val, vlen, flags);
}

int aurakv_delete(aurakv_t *h, const void *key, size_t klen, unsigned flags)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);

	if (!db)
		return rc;
	if (flags & ~AURAKV_SYNC)
		return -EINVAL;
	if ((rc = kv_check_key(key, klen)))
		return rc;
	return kv_write_delete(db, key, klen, flags);
}

int aurakv_write(aurakv_t *h, const aurakv_batch_t *b, unsigned flags)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);

	if (!db)
		return rc;
	if (!b || (flags & ~AURAKV_SYNC))
		return -EINVAL;
	return kv_write_batch(db, b, flags);
}

int aurakv_sync(aurakv_t *h)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);

	return db ? kv_map_wal_error(aurawal_sync(db->wal)) : rc;
}

int aurakv_get(aurakv_t *h, const void *key, size_t klen, void **val, size_t *vlen)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);
	struct kv_ref ref;

	if (!db)
		return rc;
	if (!val || !vlen)
		return -EINVAL;
	*val = NULL;
	*vlen = 0;
	if ((rc = kv_check_key(key, klen)))
		return rc;
	return kv_read_entry(db, key, klen, &ref, val, vlen, NULL, 0);
}

int aurakv_get_into(aurakv_t *h, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);
	struct kv_ref ref;

	if (!db)
		return rc;
	if (!vlen || (!buf && cap))
		return -EINVAL;
	if ((rc = kv_check_key(key, klen)))
		return rc;
	return kv_read_entry(db, key, klen, &ref, NULL, vlen, buf, cap);
}

void aurakv_free(void *p)
{
	free(p);
}

int aurakv_compact(aurakv_t *h)
{
	int rc;
	struct kv_db *db = kv_store_of(h, &rc);

	return db ? kv_gc_compact(db) : rc;
}

/* ---- errors ---- */

const char *aurakv_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case AURAKV_ENOTFOUND:
		return "key not found";
	case AURAKV_ECORRUPT:
		return "data corruption detected (checksum or format check failed)";
	case AURAKV_ECLOSED:
		return "the store handle is closed";
	case AURAKV_ELOCKED:
		return "the store is open in another process";
	case AURAKV_EFORMAT:
		return "not an AuraKV store, or a format version this library cannot read";
	case AURAKV_EKEYSIZE:
		return "key is empty or longer than AURAKV_MAX_KEY (65535 bytes)";
	case AURAKV_EVALSIZE:
		return "value is longer than AURAKV_MAX_VALUE (64 MiB - 128 KiB)";
	case AURAKV_EBATCHSIZE:
		return "batch is larger than AURAKV_MAX_BATCH";
	case AURAKV_ENOBUFS:
		return "buffer too small for the value (the size needed was returned)";
	default:
		return err < 0 && err > -4096 ? strerror(-err) : "unknown error";
	}
}
