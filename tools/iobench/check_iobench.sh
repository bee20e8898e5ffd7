#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# check_iobench.sh - iobench's handling of bad arguments (ctest tools_iobench): each is
# refused before any I/O with exit 2 and a message naming the option; nothing runs.
# Then short runs: --trace, --json, and a block device (a loop device, when root).
#
# Usage: check_iobench.sh IOBENCH
set -euo pipefail

IOBENCH=${1:?usage: check_iobench.sh IOBENCH}
. "$(dirname "$0")/../common/check_lib.sh"
check_begin iobench

# The file does not exist: an argument that slips through fails on opening it (exit 1)
# instead of running.
file=$work/nofile
expect_exit 2 "--bs 0" -- "$IOBENCH" --file "$file" --bs 0
expect_output '^iobench: --bs must be in 1\.\.1g$' "--bs 0: named"
expect_exit 2 "--qd 0" -- "$IOBENCH" --file "$file" --qd 0
expect_output "^iobench: bad value for --qd: '0'$" "--qd 0: named"
expect_exit 2 "--bs 4kk" -- "$IOBENCH" --file "$file" --bs 4kk
expect_output "^iobench: bad value for --bs: '4kk'$" "--bs 4kk: named"
expect_exit 2 "--ios 99999999999999999999" -- "$IOBENCH" --file "$file" --ios 99999999999999999999
expect_output "^iobench: bad value for --ios: " "overflowing --ios: named"
# --ios 0 used to mean "not given": a 10 s --runtime run instead of the 0 I/Os asked.
expect_exit 2 "--ios 0" -- "$IOBENCH" --file "$file" --ios 0
expect_output "^iobench: bad value for --ios: '0'$" "--ios 0: named"
# --single-thread lets one thread use the engine: with more threads (or the liburing
# engine, which has no such mode) the run hung instead of being refused. A timeout
# turns a hang back into a failure here.
expect_exit 2 "--single-thread --threads 2" -- timeout 20 "$IOBENCH" --file "$work/data" \
	--size 1m --runtime 0.1 --quiet --single-thread --threads 2
expect_output '^iobench: --single-thread needs --threads 1$' "--single-thread --threads 2: named"
expect_exit 2 "--single-thread --engine liburing" -- "$IOBENCH" --file "$file" --single-thread \
	--engine liburing
expect_output '^iobench: --single-thread applies to --engine auraio only$' \
	"--single-thread --engine liburing: named"
# strtoull skips blanks and negates: --seed ' -1' ran with seed 2^64 - 1, and '010' was 8.
expect_exit 2 "--seed ' -1'" -- "$IOBENCH" --file "$file" --seed ' -1'
expect_output "^iobench: bad value for --seed: ' -1'$" "--seed ' -1': named"
expect_exit 2 "no --file" -- "$IOBENCH" --bs 4k
expect_output '^iobench: --file is required$' "no --file: named"
expect_exit 2 "unknown option" -- "$IOBENCH" --file "$file" --bogus
expect_exit 2 "missing value" -- "$IOBENCH" --file
# An unwritable --json path is refused before the run (it was found after it).
expect_exit 2 "--json in a missing directory" -- "$IOBENCH" --file "$file" --json "$work/no/x.json"
expect_output "^iobench: $work/no/x.json: No such file or directory$" "--json path: named"
# So is an unwritable --trace path: it was found after the file was laid out (exit 1).
expect_exit 2 "--trace in a missing directory" -- "$IOBENCH" --file "$file" --trace "$work/no/t.csv"
expect_output "^iobench: $work/no/t.csv: No such file or directory$" "--trace path: named"
# --trace - is CSV on stdout: the report goes to stderr (it followed the CSV there), and
# a --json - beside it is refused (the two documents were run together).
expect_exit 2 "--trace - with --json -" -- "$IOBENCH" --file "$file" --trace - --json -
expect_output '^iobench: --trace - and --json - would both write to stdout$' \
	"--trace - with --json -: named"
if "$IOBENCH" --file "$work/data" --size 1m --runtime 0.2 --quiet --trace - \
	>"$work/trace.csv" 2>"$work/trace.err" &&
	! grep -Evq '^(time_s,iops,|[0-9.]+,[0-9.]+,)' "$work/trace.csv" &&
	grep -q '^  read: IOPS=' "$work/trace.err"; then
	echo "ok: --trace -: only CSV on stdout, the report on stderr"
else
	fail "--trace -: stdout is not only the CSV, or the report is not on stderr"
	sed 's/^/    /' "$work/trace.csv" | tail -5 >&2
fi
expect_exit 1 "a report that cannot reach stdout" -- \
	closed_stdout "$IOBENCH" --file "$work/data" --size 1m --runtime 0.1 --quiet
expect_output '^iobench: writing to stdout: ' "a lost report: said"
# The JSON repeats the parameters as given (%g kept 6 digits: 1.23457e+06).
expect_exit 0 "an --ios run with a long --runtime, --json" -- "$IOBENCH" --file "$work/data" \
	--size 1m --ios 64 --runtime 1234567.5 --quiet --json "$work/params.json"
if grep -q '^  "runtime_requested_s": 1234567.5,$' "$work/params.json"; then
	echo "ok: JSON: runtime_requested_s as given"
else
	fail "JSON: runtime_requested_s is not 1234567.5: $(grep runtime_requested "$work/params.json")"
fi
# Progress: a line per second of the run unless --quiet, during --ramp too (the ramp
# is 2.5 s by the clock: a line at its first second, and at its second unless that
# tick came late on a loaded machine - one of them is enough).
expect_exit 0 "a run with a --ramp" -- "$IOBENCH" --file "$work/data" --size 1m --ramp 2.5 \
	--runtime 0.1
expect_output '^iobench: ramp \[ +[12]s of 2\.5s\], not measured$' "the ramp shows progress"
expect_exit 0 "a --ramp with --quiet" -- "$IOBENCH" --file "$work/data" --size 1m --ramp 2.5 \
	--runtime 0.1 --quiet
expect_no_output '^iobench: (ramp )?\[' "--quiet: no progress lines"

# A block device: sized with BLKGETSIZE64 (st_size is 0), never written by a read run,
# and --size bounds the region used instead of laying out (writing) the device. A loop
# device over a scratch file stands in for a disk; without losetup (not root, no loop
# driver) this part is skipped, saying why.
loopdev=
check_cleanup_extra() {
	if [ -n "$loopdev" ]; then
		losetup -d "$loopdev" || true
	fi
}
dd if=/dev/urandom of="$work/disk" bs=1M count=8 status=none
if [ "$(id -u)" -ne 0 ]; then
	echo "skip: block device checks: not root (losetup needs root)"
elif ! loopdev=$(losetup -f --show "$work/disk" 2>"$work/losetup.err"); then
	loopdev=
	echo "skip: block device checks: losetup failed: $(cat "$work/losetup.err")"
else
	sum0=$(cksum <"$work/disk")
	expect_exit 0 "randread of a block device" -- "$IOBENCH" --file "$loopdev" --ios 256 \
		--quiet --json "$work/dev.json"
	expect_output '^  read: IOPS=' "a block device is read"
	if grep -q '^  "size": 8388608,$' "$work/dev.json"; then
		echo "ok: the device's size is its BLKGETSIZE64"
	else
		fail "device size: $(grep '"size"' "$work/dev.json" || echo none)"
	fi
	expect_exit 0 "--size on a block device bounds the region" -- "$IOBENCH" --file "$loopdev" \
		--size 4m --ios 256 --quiet --json "$work/dev4.json"
	if grep -q '^  "size": 4194304,$' "$work/dev4.json"; then
		echo "ok: --size 4m on the device uses 4 MiB of it"
	else
		fail "--size 4m on a device: $(grep '"size"' "$work/dev4.json" || echo none)"
	fi
	expect_exit 1 "--size beyond a block device" -- "$IOBENCH" --file "$loopdev" --size 16m \
		--ios 16 --quiet
	expect_output "^iobench: $loopdev is a block device of 8388608 bytes: --size 16777216 is larger" \
		"--size beyond the device: refused, not laid out"
	sync
	if [ "$(cksum <"$work/disk")" = "$sum0" ]; then
		echo "ok: read runs and --size left the device unchanged"
	else
		fail "a read run or --size wrote to the device"
	fi
	expect_exit 0 "randwrite of a block device (asked for)" -- "$IOBENCH" --file "$loopdev" \
		--rw randwrite --ios 64 --quiet
	expect_output '^  write: IOPS=' "a block device is written when asked"
fi

expect_exit 0 "--help" -- "$IOBENCH" --help
expect_output '^Exit status: ' "--help documents the exit status"

check_end
