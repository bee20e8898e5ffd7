/* SPDX-License-Identifier: MIT */
/*
 * kv_verify.c - aurakv_verify(): check a closed store without changing it.
 *
 * The log is opened read-only (AURAWAL_RECOVER_INSPECT: damage is reported and read
 * past, nothing is written). Every record is read (checksum), decoded (format, key and
 * value lengths) and its compressed values decompressed. Every hint file is read in
 * full (checksums, order, counts, fences) and compared with a summary rebuilt from its
 * segment: entry by entry, and its header's total and max_version, which open trusts.
 * Each problem is reported once.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv_db.h"

struct vctx {
	struct kv_db *db;
	aurakv_options_t user;
	aurakv_verify_result_t res;
	uint64_t seen[64][2]; /* (segment, offset) of corruption reported: deduplicated */
	size_t nseen;
};

/* Count corruption reports of the log (each damaged range once) and pass them on. */
static void vreport(aurakv_report_kind_t kind, const char *msg, void *arg)
{
	struct vctx *v = arg;
	unsigned long long seg = 0, off = 0;

	if (kind == AURAKV_REPORT_CORRUPTION &&
	    sscanf(msg, "log segment %llu offset %llu", &seg, &off) == 2) {
		for (size_t i = 0; i < v->nseen; i++)
			if (v->seen[i][0] == seg && v->seen[i][1] == off)
				return; /* reported at open and again by the iterator */
		if (v->nseen < 64) {
			v->seen[v->nseen][0] = seg;
			v->seen[v->nseen++][1] = off;
		}
		v->res.corrupt++;
	}
	if (v->user.reporter)
		v->user.reporter(kind, msg, v->user.reporter_arg);
	else if (kind != AURAKV_REPORT_INFO)
		fprintf(stderr, "aurakv: %s\n", msg);
}

static void problem(struct vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct vctx *v, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vreport(AURAKV_REPORT_CORRUPTION, msg, v);
}

/* Decode every entry of one record, values included. */
static int check_record(const void *payload, size_t len)
{
	struct kv_entry_iter it;
	struct kv_entry e;
	int rc = kv_entry_iter_init(&it, payload, len);

	while (rc == 0 && (rc = kv_entry_iter_next(&it, &e)) == 1) {
		void *raw;

		rc = 0;
		if (!(e.flags & KV_VAL_LZ4))
			continue;
		if (!(raw = malloc(e.rawlen ? e.rawlen : 1)))
			return -ENOMEM;
		rc = kv_entry_value(&e, raw);
		free(raw);
	}
	return rc;
}

static int check_segment(struct vctx *v, uint64_t seg)
{
	aurawal_loc_t from = { .segment = seg }, loc;
	aurawal_iter_t *it;
	const void *payload;
	size_t len;
	int rc = kv_map_wal_error(aurawal_iter_open(v->db->wal, from, &it));

	while (rc == 0 && (rc = aurawal_iter_next(it, &loc, NULL, &payload, &len)) == 1 &&
	       loc.segment == seg) {
		v->res.records++;
		rc = check_record(payload, len);
		if (rc == AURAKV_ECORRUPT) {
			v->res.corrupt++;
			problem(v, "record at segment %llu offset %u does not decode",
				(unsigned long long) seg, loc.offset);
			rc = 0;
		}
	}
	if (it)
		aurawal_iter_close(it);
	return rc < 0 ? kv_map_wal_error(rc) : 0;
}

static bool same(const struct kv_hint_entry *a, const struct kv_hint_entry *b)
{
	return a->klen == b->klen && memcmp(a->key, b->key, a->klen) == 0 &&
	       a->ref.version == b->ref.version && a->ref.offset == b->ref.offset &&
	       a->ref.size == b->ref.size && a->ref.flags == b->ref.flags &&
	       a->ref.batch_off == b->ref.batch_off;
}

/* Compare segment info's hint file (if any) with a summary of the segment. */
static int check_hint(struct vctx *v, const aurawal_segment_info_t *info)
{
	char *path = kv_hint_path(v->db->dir, info->number, "hint");
	struct kv_hint_reader *r = NULL;
	struct kv_seg_summary sum;
	struct kv_hint_entry e;
	size_t i = 0;
	int rc;

	if (!path)
		return -ENOMEM;
	if (access(path, F_OK) != 0) {
		free(path);
		return 0; /* no hint file: nothing to check (open rebuilds it) */
	}
	v->res.hints++;
	rc = kv_hint_open(aurawal_engine(v->db->wal), path, info, v->db->seg_bytes,
			  kv_hint_chunk(1), &r);
	free(path);
	/* A file that cannot be read as a hint (a directory in its place, no permission, a
	 * read error): open reads the segment instead, so it is a bad hint file here too,
	 * not an error that stops the check. */
	if (rc && rc != AURAKV_ECORRUPT && rc != -ENOMEM) {
		v->res.bad_hints++;
		problem(v, "hint file of segment %llu cannot be read: %s",
			(unsigned long long) info->number, aurakv_strerror(rc));
		return 0;
	}
	if (rc == 0 && (rc = kv_seg_summarize(v->db->wal, info->number, &sum)) == 0) {
		while ((rc = kv_hint_next(r, &e)) == 1 && i < sum.n && same(&e, &sum.entries[i]))
			i++;
		if (rc == 1 || (rc == 0 && i != sum.n))
			rc = AURAKV_ECORRUPT; /* disagrees with the segment */
		/* The header too: open trusts its total (the segment's space accounting) and
		 * max_version (the next version number) without reading the segment. */
		if (rc == 0 &&
		    (kv_hint_total(r) != sum.total || kv_hint_max_version(r) != sum.max_version))
			rc = AURAKV_ECORRUPT;
		kv_seg_summary_free(&sum);
	}
	kv_hint_close(r);
	if (rc == AURAKV_ECORRUPT) {
		v->res.bad_hints++;
		problem(v, "hint file of segment %llu is damaged or disagrees with the log",
			(unsigned long long) info->number);
		rc = 0;
	}
	return rc;
}

static int verify_log(struct vctx *v)
{
	aurawal_segment_info_t *segs;
	size_t count = 0, n = 0;
	int rc = kv_map_wal_error(aurawal_list_segments(v->db->wal, NULL, 0, &count));

	if (rc)
		return rc;
	if (!(segs = calloc(count + 1, sizeof(*segs))))
		return -ENOMEM;
	aurawal_list_segments(v->db->wal, segs, count, &n);
	for (size_t i = 0; i < n && i < count && rc == 0; i++) {
		uint64_t before = v->res.corrupt;

		v->res.segments++;
		rc = check_segment(v, segs[i].number);
		/* A damaged segment cannot vouch for its hint: the damage is reported once. */
		if (rc == 0 && segs[i].sealed && v->res.corrupt == before)
			rc = check_hint(v, &segs[i]);
	}
	free(segs);
	return rc;
}

/* 0 if `dir` holds a log, else -ENOENT (or -errno): checked before the lock, whose LOCK
 * file would otherwise be left in a directory that is not a store. */
static int has_log(const char *dir)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/wal", dir);
	return access(path, F_OK) == 0 ? 0 : -errno;
}

int aurakv_verify(const char *dir, const aurakv_options_t *opts, aurakv_verify_result_t *res)
{
	aurakv_options_t o;
	struct vctx *v;
	int rc;

	if (!dir || !*dir)
		return -EINVAL;
	if (strlen(dir) > KV_DIR_MAX)
		return -ENAMETOOLONG;
	if (opts)
		o = *opts;
	else
		aurakv_options_init(&o);
	if (!(v = calloc(1, sizeof(*v))))
		return -ENOMEM;
	v->user = o;
	o.cache_size = 0;
	o.create_if_missing = false;
	o.reporter = vreport;
	o.reporter_arg = v;
	if (!(v->db = kv_db_alloc(dir, &o))) {
		free(v);
		return -ENOMEM;
	}
	rc = has_log(dir);
	if (rc == 0)
		rc = kv_db_lock(v->db);
	if (rc == 0)
		rc = kv_db_open_wal(v->db, AURAWAL_RECOVER_INSPECT);
	if (rc == 0)
		rc = verify_log(v);
	aurawal_close(v->db->wal);
	kv_db_free(v->db);
	if (res)
		*res = v->res;
	if (rc == 0 && (v->res.corrupt || v->res.bad_hints))
		rc = AURAKV_ECORRUPT;
	free(v);
	return rc;
}
