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

check_end
