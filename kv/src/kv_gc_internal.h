/* SPDX-License-Identifier: MIT */
/*
 * kv_gc_internal.h - what the two halves of garbage collection share: the collector
 * (kv_gc.c) moves a victim's live records; the pacer (kv_gc_pace.c) decides which victim,
 * when and how fast, and holds writers back. Nothing here leaves the kv layer.
 */
#ifndef AURAKV_GC_INTERNAL_H
#define AURAKV_GC_INTERNAL_H

#include "kv_db.h"

/* How one collection is paced: `factor` x the bytes written meanwhile (plus the idle
 * allowance) may be copied; or, when writers are held back, each granule of net progress
 * (victim bytes walked - bytes copied) grants them `gain` x that much credit. */
struct pacer {
	bool on, grant;
	double factor, gain, soft, hard; /* the marks (bytes) gain_at() needs */
	uint64_t t0, fg0, copied, scanned, next_check;
	uint64_t granted_scan, granted_copy; /* progress already turned into credit */
};

/* Collect segment `seg` (kv_gc.c): copy its live entries forward, switch the index to
 * the copies once durable, release it; calling kv_gc_pace as it walks. 0, or the error
 * that kept the segment. */
int kv_gc_collect_paced(struct kv_db *db, uint64_t seg, struct pacer *p);

/* Every PACE_GRANULE walked or copied: grant credit, or wait until the bytes copied so
 * far are within the budget (or the store stops) (kv_gc_pace.c). */
void kv_gc_pace(struct kv_db *db, struct pacer *p);

#endif /* AURAKV_GC_INTERNAL_H */
