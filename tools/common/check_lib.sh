# SPDX-License-Identifier: MIT
#
# check_lib.sh - the harness the tools' check scripts (tools/*/check_*.sh) source: a
# scratch directory, expectations that count failures instead of stopping at the first,
# and the verdict. Each expectation prints "ok: ..." or "FAIL: ..." with the output of
# the command it looked at.
#
#   check_begin NAME         $work = a new directory under /var/tmp, removed at exit
#                            (after check_cleanup_extra, if the script defines one)
#   expect_exit CODE WHAT -- COMMAND...
#                            run COMMAND, both output streams in $work/out; its exit
#                            status must be CODE
#   expect_output REGEX WHAT     a line of the last command's output matches
#   expect_no_output REGEX WHAT  no line does
#   fail WHAT                count a failure; show prints the last output, indented
#   closed_stdout COMMAND... run COMMAND with stdout closed (for expect_exit)
#   check_end                exit 1 if anything failed, else say all passed
#
# Output is shown with tail, never head: under `set -o pipefail` a head that stops
# reading would fail the pipeline and, with `set -e`, end the script early.

check_begin() {
	check_name=$1
	work=$(mktemp -d "/var/tmp/check_$1.XXXXXX")
	trap check_cleanup EXIT
	failures=0
}

check_cleanup() {
	if declare -F check_cleanup_extra >/dev/null; then
		check_cleanup_extra
	fi
	rm -rf "$work"
}

fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}

show() {
	sed 's/^/    /' "$work/out" | tail -40 >&2
}

expect_exit() {
	local want=$1 what=$2 rc=0
	shift 3
	"$@" >"$work/out" 2>&1 || rc=$?
	if [ "$rc" -ne "$want" ]; then
		fail "$what: exit $rc, expected $want"
		show
	else
		echo "ok: $what (exit $rc)"
	fi
}

expect_output() {
	if grep -Eq -- "$1" "$work/out"; then
		echo "ok: $2"
	else
		fail "$2: no line matching '$1'"
		show
	fi
}

expect_no_output() {
	if grep -Eq -- "$1" "$work/out"; then
		fail "$2: unexpected line matching '$1'"
		grep -E -- "$1" "$work/out" | sed 's/^/    /' | tail -5 >&2
	else
		echo "ok: $2"
	fi
}

closed_stdout() { "$@" >&-; }

check_end() {
	if [ "$failures" -ne 0 ]; then
		echo "check_$check_name: $failures failure(s)" >&2
		exit 1
	fi
	echo "check_$check_name: all passed"
}
