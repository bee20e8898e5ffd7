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

check_end
