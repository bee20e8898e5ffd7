#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# wal_vs_fio.sh - AuraWAL (walbench) against what the device gives (fio), side by side,
# on the same filesystem. Each repetition runs every job:
#   a_fio_sync   fio: 4K writes, --fdatasync=1 --direct=1, 1 job, QD1 (the sync rate)
#   b_wal_1      walbench: 1 appender, 128 B durable appends
#   c_wal_32     walbench: 32 appenders, 128 B durable (group commit)
#   d_wal_async  walbench: 1 thread, 32 async durable appends in flight, 128 B
#   e_wal_nodur  walbench: 1 appender, 128 B non-durable (one sync at the end, counted)
#   f_fio_seq    fio: sequential 1 MiB writes, direct, io_uring QD8 (the device's MB/s)
#   f_fio_seq1   fio: the same at QD1 (information: the log writes one batch at a time)
#   f_fio_seqd   fio: the same at QD8 with --end_fsync=1 (information: the bytes made
#                durable at the end and the time that takes counted, as walbench counts
#                its final aurawal_sync(); without it fio's figure includes what the
#                host's cache absorbed and never had to write within the run)
#   f_wal_seq    walbench: 1 appender, 1 MiB records, non-durable (MB/s)
# and the report checks the targets of the WAL issue:
#   (1) b / a rate >= 0.9     (2) c >= 20x b rate, c P99 <= 3x b P99
#   (3) d >= 15x b rate       (4) e >= 1,000,000 records/s
#   (5) f_wal_seq MB/s >= 0.8x f_fio_seq MB/s
#
# The disk of this project's machines is shared and noisy (see BENCHMARKING.md), so the
# jobs run interleaved - every repetition runs all of them, in an order rotated by one
# each repetition - and the report gives each repetition's row, medians with min-max,
# and each ratio as the median of the per-repetition ratios (each compares runs taken
# seconds apart).
#
# fio's P99 is its lat (--lat_percentiles=1: submission to completion, the whole write
# as walbench times an append), not its clat; a's is the fdatasync's.
#
# fio writes into a file written in full beforehand (a sparse file would make every
# sync also flush metadata); the log's segments are likewise preallocated and written
# through by the library. walbench runs with --recycle (RECYCLE=1): segments behind the
# active one are released and their files reused, the steady state of a store that
# checkpoints, and the same situation as fio's pre-written file. RECYCLE=0 measures a
# log that only grows (every new 64 MiB segment is zero-filled first).
#
# Usage: bench/wal_vs_fio.sh [--reps N] [--runtime S] [--dir DIR] [--build DIR]
#                            [--out DIR]
# The same settings can come from the environment: REPS (3) RUNTIME (10 s per job)
# DIR (/var/tmp/wal_vs_fio; the runs use a new directory in it, removed at the end,
# and DIR itself only if made here) BUILD_DIR (build-release) OUT (keep the raw
# results there; default: a temp dir, removed) RECYCLE (1). WALBENCH_ARGS and FIO_ARGS
# add options to every walbench / fio run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

REPS=${REPS:-3}
RUNTIME=${RUNTIME:-10}
DIR=${DIR:-/var/tmp/wal_vs_fio}
BUILD_DIR=${BUILD_DIR:-$root/build-release}
OUT=${OUT:-}
RECYCLE=${RECYCLE:-1}
WALBENCH_ARGS=${WALBENCH_ARGS:-}
FIO_ARGS=${FIO_ARGS:-}

usage() {
	sed -n '/^# Usage:/,/^# add options/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--reps) REPS=${2:?}; shift 2 ;;
	--runtime) RUNTIME=${2:?}; shift 2 ;;
	--dir) DIR=${2:?}; shift 2 ;;
	--build) BUILD_DIR=${2:?}; shift 2 ;;
	--out) OUT=${2:?}; shift 2 ;;
	-h|--help) usage ;;
	*) echo "wal_vs_fio.sh: unknown argument '$1'" >&2; usage ;;
	esac
done

WALBENCH=$BUILD_DIR/tools/walbench/walbench
[ -x "$WALBENCH" ] || { echo "wal_vs_fio.sh: $WALBENCH not found (build it first)" >&2; exit 1; }
if ! command -v fio >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "wal_vs_fio: installing fio" >&2
		apt-get install -y fio >/dev/null
	else
		echo "wal_vs_fio.sh: fio not installed (apt-get install fio)" >&2
		exit 1
	fi
fi
command -v python3 >/dev/null || { echo "wal_vs_fio.sh: python3 not installed" >&2; exit 1; }
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "wal_vs_fio.sh: REPS must be >= 1" >&2; exit 2; }
[[ "$RUNTIME" =~ ^[1-9][0-9]*$ ]] || { echo "wal_vs_fio.sh: RUNTIME must be whole seconds >= 1" >&2; exit 2; }

# Everything the runs write goes into a directory of our own under DIR, so that a --dir
# the user already had (holding a fio.dat or a wal/ of theirs, say) is left as it was.
made_dir=0
[ -d "$DIR" ] || { mkdir -p "$DIR"; made_dir=1; }
keep_out=1
if [ -z "$OUT" ]; then
	OUT=$(mktemp -d /tmp/wal_vs_fio.XXXXXX)
	keep_out=0
else
	mkdir -p "$OUT"
fi
WORK=$(mktemp -d "$DIR/wal_vs_fio.XXXXXX")
FIO_FILE=$WORK/fio.dat
LOG_DIR=$WORK/wal
cleanup() {
	rm -rf "$WORK"
	[ "$made_dir" = 0 ] || rmdir "$DIR" 2>/dev/null || true
	[ "$keep_out" = 1 ] || rm -rf "$OUT"
}
trap cleanup EXIT

# Write the whole file once, so no later write allocates blocks or converts extents.
echo "wal_vs_fio: pre-writing $FIO_FILE (1 GiB)" >&2
fio --name=prefill --filename="$FIO_FILE" --rw=write --bs=1m --size=1g --direct=1 \
	--ioengine=psync --output-format=terse >/dev/null

run_fio() { # out fio-options...
	local out=$1
	shift
	# shellcheck disable=SC2086
	fio --name=w --filename="$FIO_FILE" --size=1g --direct=1 --numjobs=1 \
		--runtime="$RUNTIME" --time_based --lat_percentiles=1 --output-format=json "$@" \
		$FIO_ARGS >"$out"
}

run_walbench() { # out walbench-options...
	local out=$1 recycle=()
	shift
	[ "$RECYCLE" = 0 ] || recycle=(--recycle)
	rm -rf "$LOG_DIR" # a fresh log per run (an aborted run may have left one)
	# shellcheck disable=SC2086
	"$WALBENCH" --dir "$LOG_DIR" --duration "$RUNTIME" --quiet --json - "${recycle[@]}" \
		"$@" $WALBENCH_ARGS >"$out" 2>"$out.err" ||
		{ cat "$out.err" >&2; return 1; }
}

run_job() { # job out
	case "$1" in
	a_fio_sync) run_fio "$2" --rw=write --bs=4k --fdatasync=1 --ioengine=psync ;;
	b_wal_1) run_walbench "$2" --threads 1 --record-size 128 --durable ;;
	c_wal_32) run_walbench "$2" --threads 32 --record-size 128 --durable ;;
	d_wal_async) run_walbench "$2" --threads 1 --async-depth 32 --record-size 128 --durable ;;
	e_wal_nodur) run_walbench "$2" --threads 1 --record-size 128 --no-durable ;;
	f_fio_seq) run_fio "$2" --rw=write --bs=1m --ioengine=io_uring --iodepth=8 ;;
	f_fio_seq1) run_fio "$2" --rw=write --bs=1m --ioengine=psync ;;
	f_fio_seqd) run_fio "$2" --rw=write --bs=1m --ioengine=io_uring --iodepth=8 --end_fsync=1 ;;
	f_wal_seq) run_walbench "$2" --threads 1 --record-size 1m --no-durable ;;
	esac
}

jobs=(a_fio_sync b_wal_1 c_wal_32 d_wal_async e_wal_nodur f_fio_seq f_fio_seq1 f_fio_seqd f_wal_seq)
n=${#jobs[@]}
echo "wal_vs_fio: $REPS rep(s) x $n jobs x $RUNTIME s (about $((REPS * n * (RUNTIME + 2) / 60 + 1)) min)" >&2
for ((rep = 0; rep < REPS; rep++)); do
	for ((k = 0; k < n; k++)); do
		job=${jobs[$(((k + rep) % n))]}
		echo "wal_vs_fio: rep $((rep + 1))/$REPS $job" >&2
		run_job "$job" "$OUT/rep${rep}_${job}.json"
	done
done

python3 - "$OUT" "$REPS" "$RUNTIME" "$RECYCLE" <<'EOF'
import json, os, statistics, sys

out, reps, runtime, recycle = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] != "0"

def load(rep, job):
    with open(os.path.join(out, f"rep{rep}_{job}.json")) as f:
        d = json.load(f)
    if job.startswith("a_fio"):
        j = d["jobs"][0]
        return {"rate": j["write"]["iops"], "p99": j["sync"]["lat_ns"]["percentile"]["99.000000"] / 1e3,
                "write_p99": j["write"]["lat_ns"]["percentile"]["99.000000"] / 1e3,
                "mbps": j["write"]["bw_bytes"] / 1e6}
    if job.startswith("f_fio"):
        # lat (submission to completion, --lat_percentiles=1): the whole write, as
        # walbench's per-append latency; clat would leave out the submission.
        j = d["jobs"][0]
        return {"rate": j["write"]["iops"], "p99": j["write"]["lat_ns"]["percentile"]["99.000000"] / 1e3,
                "mbps": j["write"]["bw_bytes"] / 1e6}
    return {"rate": d["appends_per_s"], "p99": d["lat_p99_us"], "mbps": d["mbps"],
            "rps": d["records_per_sync"], "syncs": d["syncs"], "sync_p99": d["sync_p99_us"]}

jobs = ["a_fio_sync", "b_wal_1", "c_wal_32", "d_wal_async", "e_wal_nodur", "f_fio_seq", "f_fio_seq1",
        "f_fio_seqd", "f_wal_seq"]
res = {j: [load(r, j) for r in range(reps)] for j in jobs}
names = {
    "a_fio_sync": "a fio 4K write+fdatasync QD1",
    "b_wal_1": "b wal 1 appender 128B durable",
    "c_wal_32": "c wal 32 appenders durable",
    "d_wal_async": "d wal async depth 32 durable",
    "e_wal_nodur": "e wal 1 appender non-durable",
    "f_fio_seq": "f fio seq 1M write QD8",
    "f_fio_seq1": "f fio seq 1M write QD1 (info)",
    "f_fio_seqd": "f fio seq 1M QD8 + end fsync (info)",
    "f_wal_seq": "f wal 1M records non-durable",
}

def per_rep_ratio(r, a, b, key_a="rate", key_b="rate"):
    y = res[b][r][key_b]
    return res[a][r][key_a] / y if y else float("nan")

# (name, function of rep -> value, op, target, format)
checks = [
    ("(1) b / a rate", lambda r: per_rep_ratio(r, "b_wal_1", "a_fio_sync"), ">=", 0.9, "{:.2f}"),
    ("(2) c / b rate", lambda r: per_rep_ratio(r, "c_wal_32", "b_wal_1"), ">=", 20, "{:.1f}"),
    ("(2) c P99 / b P99", lambda r: per_rep_ratio(r, "c_wal_32", "b_wal_1", "p99", "p99"), "<=", 3, "{:.2f}"),
    ("(3) d / b rate", lambda r: per_rep_ratio(r, "d_wal_async", "b_wal_1"), ">=", 15, "{:.1f}"),
    ("(4) e records/s", lambda r: res["e_wal_nodur"][r]["rate"], ">=", 1e6, "{:,.0f}"),
    ("(5) f wal MB/s / fio QD8 MB/s", lambda r: per_rep_ratio(r, "f_wal_seq", "f_fio_seq", "mbps", "mbps"),
     ">=", 0.8, "{:.2f}"),
]
info = [
    ("f wal MB/s / fio QD1 MB/s", lambda r: per_rep_ratio(r, "f_wal_seq", "f_fio_seq1", "mbps", "mbps"), "{:.2f}"),
    ("f wal MB/s / fio QD8+end fsync MB/s",
     lambda r: per_rep_ratio(r, "f_wal_seq", "f_fio_seqd", "mbps", "mbps"), "{:.2f}"),
]

def count(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    return f"{v / 1e3:.1f}k" if v >= 1e4 else f"{v:.0f}"

def us(v):
    return f"{v:.0f}" if v >= 10 else f"{v:.2f}"

def mb(v):
    return f"{v:.0f}"

def spread(vals, fmt):
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}-{fmt(max(vals))})"

print(f"\nAuraWAL vs fio, {runtime} s per job, {reps} interleaved rep(s)"
      f"{', walbench --recycle' if recycle else ', walbench without --recycle (growing log)'}")

# Per repetition: the raw figures each ratio is made of.
print("\nper repetition (rates /s; p99 in us; MB/s):")
cols = [("a sync/s", "a_fio_sync", "rate", count), ("b /s", "b_wal_1", "rate", count),
        ("b p99", "b_wal_1", "p99", us), ("c /s", "c_wal_32", "rate", count),
        ("c p99", "c_wal_32", "p99", us), ("c rec/sync", "c_wal_32", "rps", lambda v: f"{v:.1f}"),
        ("d /s", "d_wal_async", "rate", count), ("e /s", "e_wal_nodur", "rate", count),
        ("fio8 MB/s", "f_fio_seq", "mbps", mb), ("fio1 MB/s", "f_fio_seq1", "mbps", mb),
        ("fio8+fs MB/s", "f_fio_seqd", "mbps", mb),
        ("wal1M MB/s", "f_wal_seq", "mbps", mb)]
print(f"{'rep':<4}" + "".join(f"{c[0]:>11}" for c in cols))
for r in range(reps):
    print(f"{r + 1:<4}" + "".join(f"{c[3](res[c[1]][r][c[2]]):>11}" for c in cols))
short = ["(1) b/a", "(2) c/b", "(2) p99 c/b", "(3) d/b", "(4) e /s", "(5) f wal/fio8"]
print(f"\n{'rep':<4}" + "".join(f"{h:>15}" for h in short))
for r in range(reps):
    print(f"{r + 1:<4}" + "".join(f"{c[4].format(c[1](r)):>15}" for c in checks))

# Summary: medians (min-max) per job.
print("\nsummary: medians (min-max); wal rates are appends/s, fio rates are writes/s"
      " (= syncs/s for a)\n")
hdr = f"{'job':<32}{'rate /s':<24}{'p99 us':<22}{'MB/s':<22}{'records/sync':<20}"
print(hdr)
print("-" * len(hdr))

def col(job, key, fmt):
    vals = [x[key] for x in res[job] if key in x]
    return spread(vals, fmt) if vals else "-"

for j in jobs:
    print(f"{names[j]:<32}{col(j, 'rate', count):<24}{col(j, 'p99', us):<22}"
          f"{col(j, 'mbps', lambda v: f'{v:.1f}'):<22}{col(j, 'rps', lambda v: f'{v:.1f}'):<20}")
print(f"(a: p99 is fio's sync latency; its write p99 (lat, submission to completion) is"
      f" {col('a_fio_sync', 'write_p99', us)} us. f fio: p99 is the write's lat, submission to"
      " completion. wal p99 is per append, call to return or callback.)")
print(f"(wal sync p99 from the log's stats, bucket upper bounds within 1/16: "
      + ", ".join(f"{j[0]} <= {col(j, 'sync_p99', us)} us" for j in ["b_wal_1", "c_wal_32", "d_wal_async"])
      + ")")

print(f"\n{'target (median of per-rep ratios)':<36}{'value':>14}  {'target':<14}result")
print("-" * 72)
failed = 0
for name, fn, op, target, fmt in checks:
    v = statistics.median(fn(r) for r in range(reps))
    ok = v >= target if op == ">=" else v <= target
    failed += not ok
    tgt = f"{op} {target:,.0f}" if target >= 1000 else f"{op} {target}"
    print(f"{name:<36}{fmt.format(v):>14}  {tgt:<14}{'PASS' if ok else 'FAIL'}")
for name, fn, fmt in info:
    v = statistics.median(fn(r) for r in range(reps))
    print(f"{name:<36}{fmt.format(v):>14}  {'(info)':<14}")
print(f"\n{len(checks) - failed}/{len(checks)} targets met.")
EOF
