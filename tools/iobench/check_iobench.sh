#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# check_iobench.sh - iobench's handling of bad arguments (ctest tools_iobench): each is
# refused before any I/O with exit 2 and a message naming the option; nothing runs.
#
# Usage: check_iobench.sh IOBENCH
set -euo pipefail

IOBENCH=${1:?usage: check_iobench.sh IOBENCH}
work=$(mktemp -d /var/tmp/check_iobench.XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0

fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}

# expect_exit CODE DESCRIPTION -- COMMAND...: run it, output (both streams) in $work/out.
expect_exit() {
	local want=$1 what=$2 rc=0
	shift 3
	"$@" >"$work/out" 2>&1 || rc=$?
	if [ "$rc" -ne "$want" ]; then
		fail "$what: exit $rc, expected $want"
		sed 's/^/    /' "$work/out" | head -20 >&2
	else
		echo "ok: $what (exit $rc)"
	fi
}

expect_output() { # REGEX DESCRIPTION: the last command's output has a matching line
	if grep -Eq -- "$1" "$work/out"; then
		echo "ok: $2"
	else
		fail "$2: no line matching '$1'"
		sed 's/^/    /' "$work/out" | head -20 >&2
	fi
}

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
expect_exit 2 "no --file" -- "$IOBENCH" --bs 4k
expect_output '^iobench: --file is required$' "no --file: named"
expect_exit 2 "unknown option" -- "$IOBENCH" --file "$file" --bogus
expect_exit 2 "missing value" -- "$IOBENCH" --file
expect_exit 0 "--help" -- "$IOBENCH" --help
expect_output '^Exit status: ' "--help documents the exit status"

if [ "$failures" -ne 0 ]; then
	echo "check_iobench: $failures failure(s)" >&2
	exit 1
fi
echo "check_iobench: all passed"
