#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# check_bench.sh - the bench scripts' own logic (ctest bench_scripts), without running a
# benchmark: each script runs against stand-ins on PATH or in a fake build directory
# that print recorded or made-up tool output at once, and the figures the script
# reports from them are checked, as is how it fails.
#
#   callgrind_io.sh  a fake valgrind writes callgrind totals above 2^31: the Ir columns
#                    show them in full (mawk's printf %d clipped them to 2147483647)
#   io_vs_fio.sh     fio's recorded JSON (testdata/, fio 3.33, lat_percentiles=1: P99 in
#                    ns) and iobench's: IOPS, P99 in us and the ratios; a failed iobench
#                    run stops the script with iobench's message
#   adaptive_vs_fio.sh  the same failure
#   kv_vs_peers.sh   fio's recorded JSON beside a kvbench and a db_bench that print
#                    made-up figures: fio's read jobs draw offsets as kvbench does
#                    (--norandommap) and their P99 is submission to completion (lat,
#                    --lat_percentiles=1), the whole-request latency kvbench reports
#   wal_vs_fio.sh    fio's recorded JSON beside a walbench that prints made-up figures:
#                    fio runs with --lat_percentiles=1 and its write P99 is lat
#                    (submission to completion), not clat; with --dir a directory the
#                    user had, what was in it before is left alone
#
# Usage: check_bench.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../tools/common/check_lib.sh"
check_begin bench

mkdir -p "$work/bin" "$work/build/tools/iobench"
# A fake build: the scripts only check that iobench is executable before handing it to
# the stand-ins below.
printf '#!/bin/sh\nexit 0\n' >"$work/build/tools/iobench/iobench"
chmod +x "$work/build/tools/iobench/iobench"

# callgrind_io.sh: a valgrind that counts 10,000 instructions per I/O on top of 10^9 of
# setup, so the large run's total (3.5e9) is above 2^31.
cat >"$work/bin/valgrind" <<'FAKE'
#!/bin/sh
out= ios=
while [ $# -gt 0 ]; do
	case "$1" in
	--callgrind-out-file=*) out=${1#*=} ;;
	--ios) ios=$2; shift ;;
	esac
	shift
done
printf 'events: Ir\ntotals: %s\n' "$((ios * 10000 + 1000000000))" >"$out"
FAKE
chmod +x "$work/bin/valgrind"
expect_exit 0 "callgrind_io.sh with a fake valgrind" -- \
	env PATH="$work/bin:$PATH" "$here/callgrind_io.sh" --build "$work/build" --no-adaptive
expect_output '^liburing +1500000000 +3500000000 +10000\.0 +1\.00x$' \
	"callgrind_io.sh: Ir totals above 2^31 in full, Ir/io from them"

# A fake iobench: --size lays nothing out; a --json - run prints the figures of its
# engine (auraio 60k IOPS, P99 3000 us; liburing 40k, 2000 us), or fails as a real run
# does when FAKE_IOBENCH_FAIL is set.
cat >"$work/build/tools/iobench/iobench" <<'FAKE'
#!/bin/sh
engine=auraio json=0
while [ $# -gt 0 ]; do
	case "$1" in
	--engine) engine=$2; shift ;;
	--json) json=1; shift ;;
	esac
	shift
done
[ "$json" = 1 ] || exit 0
if [ -n "${FAKE_IOBENCH_FAIL:-}" ]; then
	echo "iobench: run failed: Input/output error" >&2
	exit 1
fi
if [ "$engine" = liburing ]; then
	printf '{\n  "iops": 40000.0,\n  "lat_p99_us": 2000.00,\n  "in_flight_limit": 8\n}\n'
else
	printf '{\n  "iops": 60000.0,\n  "lat_p99_us": 3000.00,\n  "in_flight_limit": 8\n}\n'
fi
FAKE
# A fake fio: the recorded output of a real fio 3.33 randread run (50575.8 IOPS, P99
# submit-to-completion 4227072 ns).
cat >"$work/bin/fio" <<FAKE
#!/bin/sh
cat "$here/testdata/fio-3.33_randread_qd8_lat_percentiles.json"
FAKE
chmod +x "$work/bin/fio"
head -c 65536 /dev/zero >"$work/data"
ivf=(env PATH="$work/bin:$PATH" "$here/io_vs_fio.sh" --build "$work/build" --file "$work/data"
	--reps 1 --qds 8 --runtime 1 --out "$work/ivf")
expect_exit 0 "io_vs_fio.sh with recorded fio output" -- "${ivf[@]}"
expect_output '^   8  50\.6k \(50\.6k-50\.6k\) +60\.0k \(60\.0k-60\.0k\) +40\.0k \(40\.0k-40\.0k\) +1\.19 +1\.50$' \
	"io_vs_fio.sh: IOPS of each and the ratios auraio/fio, auraio/liburing"
expect_output '^   8  4227 \(4227-4227\) +3000 \(3000-3000\) +2000 \(2000-2000\) +0\.71 +1\.50$' \
	"io_vs_fio.sh: fio's P99 read in ns and shown in us, as iobench's"
expect_exit 1 "io_vs_fio.sh with an iobench run that fails" -- \
	env FAKE_IOBENCH_FAIL=1 "${ivf[@]}"
expect_output '^iobench: run failed: Input/output error$' "io_vs_fio.sh: iobench's message shown"
expect_output 'iobench --engine auraio --qd 8 failed' "io_vs_fio.sh: the failed run named"

expect_exit 1 "adaptive_vs_fio.sh with an iobench run that fails" -- \
	env PATH="$work/bin:$PATH" FAKE_IOBENCH_FAIL=1 "$here/adaptive_vs_fio.sh" \
	--build "$work/build" --file "$work/data" --reps 1 --runtime 1 --out "$work/avf"
expect_output '^iobench: run failed: Input/output error$' \
	"adaptive_vs_fio.sh: iobench's message shown"

# kv_vs_peers.sh: a kvbench whose JSON says 100k ops/s and P99 50 us for every workload
# (reads find every key), a db_bench at 50k ops/s, and a fio that logs its arguments and
# prints the recorded output of fio 3.33 (randread: P99 4227072 ns submit to completion,
# 4145152 ns completion only; write+fdatasync: 6770 IOPS, sync P99 209920 ns).
mkdir -p "$work/build/tools/kvbench"
cat >"$work/build/tools/kvbench/kvbench" <<'FAKE'
#!/bin/sh
json=
while [ $# -gt 0 ]; do
	case "$1" in
	--json) json=$2; shift ;;
	esac
	shift
done
echo "kvbench: made-up figures"
printf '{"results": [{"name": "w", "ops": 1000, "ops_per_s": 100000.0, "lat_p99_us": 50.0,
  "found": 1000, "expected_found": 1000, "check_ok": true, "cache_hit_rate": 0.0,
  "io_ops": 1000, "gc_stalls": 0}], "final": {"disk_bytes": 1048576}}\n' >"$json"
FAKE
cat >"$work/bin/db_bench" <<'FAKE'
#!/bin/sh
for a in "$@"; do
	case "$a" in
	--benchmarks=*) b=${a#*=} ;;
	esac
done
echo "$b : 20.000 micros/op 50000 ops/sec;"
echo "P50: 10.0 P75: 12.0 P99: 30.0 P99.9: 40.0"
FAKE
cat >"$work/bin/fio" <<FAKE
#!/bin/sh
echo "\$*" >>"$work/fio.args"
case " \$* " in
*--output-format=terse*) ;;
*--rw=randread*) cat "$here/testdata/fio-3.33_randread_qd8_lat_percentiles.json" ;;
*) cat "$here/testdata/fio-3.33_write_fdatasync_qd1_lat_percentiles.json" ;;
esac
FAKE
chmod +x "$work/build/tools/kvbench/kvbench" "$work/bin/db_bench" "$work/bin/fio"
expect_exit 0 "kv_vs_peers.sh with recorded fio output" -- \
	env PATH="$work/bin:$PATH" DB_BENCH="$work/bin/db_bench" "$here/kv_vs_peers.sh" \
	--build "$work/build" --dir "$work" --reps 1 --num 1000 --runtime 1 --out "$work/kvp"
expect_output '^f fio 4K randread QD1 +50\.6k \(50\.6k-50\.6k\) +4227 \(4227-4227\) ' \
	"kv_vs_peers.sh: fio's read P99 is submission to completion (lat), not clat"
expect_output '^h fio 4K randread QD32 +50\.6k \(50\.6k-50\.6k\) +4227 \(4227-4227\) ' \
	"kv_vs_peers.sh: the same at QD32"
expect_output '^a fio 4K write\+fdatasync QD1 +6770 \(6770-6770\) +210 \(210-210\) ' \
	"kv_vs_peers.sh: the sync job's rate and sync P99"
expect_output '^\(4a\) readrandom QD1 / fio QD1 +1\.98 ' "kv_vs_peers.sh: ratio (4a)"
reads=$(grep -c -- '--rw=randread' "$work/fio.args" || true)
fast=$(grep -- '--rw=randread' "$work/fio.args" | grep -- '--norandommap' |
	grep -c -- '--lat_percentiles=1' || true)
if [ "$reads" -eq 2 ] && [ "$fast" -eq 2 ]; then
	echo "ok: kv_vs_peers.sh: both fio read jobs run with --norandommap --lat_percentiles=1"
else
	fail "kv_vs_peers.sh: $fast of $reads fio read jobs have --norandommap --lat_percentiles=1"
	sed 's/^/    /' "$work/fio.args" >&2
fi

# wal_vs_fio.sh: a fio that logs its arguments, "pre-writes" its --filename and prints
# the recorded write+fdatasync run (write P99: lat 121344 ns, clat 120320 ns); a walbench
# that makes its --dir and prints made-up figures. --dir is a directory of the user's
# that already holds a fio.dat and a wal/: both must be as they were afterwards.
mkdir -p "$work/build/tools/walbench" "$work/mine/wal"
echo mine >"$work/mine/fio.dat"
echo mine >"$work/mine/wal/keep"
cat >"$work/build/tools/walbench/walbench" <<'FAKE'
#!/bin/sh
while [ $# -gt 0 ]; do
	case "$1" in
	--dir) mkdir -p "$2" && echo log >"$2/0000000000000001.seg"; shift ;;
	esac
	shift
done
printf '{"appends_per_s": 100000.0, "lat_p99_us": 50.0, "mbps": 100.0, "records_per_sync": 1.0,
  "syncs": 10, "sync_p99_us": 64}\n'
FAKE
cat >"$work/bin/fio" <<FAKE
#!/bin/sh
echo "\$*" >>"$work/wfio.args"
for a in "\$@"; do
	case "\$a" in
	--filename=*) f=\${a#*=} ;;
	esac
done
case " \$* " in
*--output-format=terse*) echo prefill >"\$f" ;;
*) cat "$here/testdata/fio-3.33_write_fdatasync_qd1_lat_percentiles.json" ;;
esac
FAKE
chmod +x "$work/build/tools/walbench/walbench" "$work/bin/fio"
expect_exit 0 "wal_vs_fio.sh with recorded fio output, --dir of the user's" -- \
	env PATH="$work/bin:$PATH" "$here/wal_vs_fio.sh" --build "$work/build" \
	--dir "$work/mine" --reps 1 --runtime 1
expect_output '^f fio seq 1M write QD8 +6770 \(6770-6770\) +121 \(121-121\) ' \
	"wal_vs_fio.sh: fio's write P99 is submission to completion (lat), not clat (120)"
expect_output 'lat, submission to completion' "wal_vs_fio.sh: the fio P99 says what it is"
runs=$(grep -vc -- '--output-format=terse' "$work/wfio.args" || true)
withlat=$(grep -v -- '--output-format=terse' "$work/wfio.args" | grep -c -- '--lat_percentiles=1' || true)
if [ "$runs" -eq 4 ] && [ "$withlat" -eq 4 ]; then
	echo "ok: wal_vs_fio.sh: every fio job runs with --lat_percentiles=1"
else
	fail "wal_vs_fio.sh: $withlat of $runs fio jobs have --lat_percentiles=1"
fi
if [ "$(cat "$work/mine/fio.dat")" = mine ] && [ "$(cat "$work/mine/wal/keep")" = mine ] &&
	[ "$(find "$work/mine" | wc -l)" -eq 4 ]; then
	echo "ok: wal_vs_fio.sh: the user's --dir is as it was"
else
	fail "wal_vs_fio.sh: the user's --dir changed: $(find "$work/mine" | tr '\n' ' ')"
fi

check_end
