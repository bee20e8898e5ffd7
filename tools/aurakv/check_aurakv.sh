#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# check_aurakv.sh - end-to-end check of the aurakv tool (ctest tools_aurakv): put/get
# round trips (text, empty, binary through stdin, hex keys), not-found and delete exit
# codes, dump order and format, stats, compact, verify on an intact store (exit 0) and
# on one with a byte flipped inside a record in the middle of the log (exit 1, the
# location named), a store held open by another process (the message names its PID),
# reads of a missing store (a clear error, nothing created), put into a directory that
# holds other files or a log (refused, nothing created) and bad arguments (exit 2).
#
# Usage: check_aurakv.sh AURAKV
set -euo pipefail

AURAKV=${1:?usage: check_aurakv.sh AURAKV}
. "$(dirname "$0")/../common/check_lib.sh"
check_begin aurakv
holder=
check_cleanup_extra() {
	if [ -n "$holder" ]; then
		kill "$holder" 2>/dev/null || true
	fi
}

# This script keeps the two streams apart: its own show and expect_exit.
show() { # the last command's output, indented
	sed 's/^/    stdout: /' "$work/out" | tail -20 >&2
	sed 's/^/    stderr: /' "$work/err" | tail -20 >&2
}

# expect_exit CODE DESCRIPTION -- COMMAND...: run it; stdout in $work/out, stderr in
# $work/err. Standard input is /dev/null unless redirected by the caller.
expect_exit() {
	local want=$1 what=$2 rc=0
	shift 3
	"$@" >"$work/out" 2>"$work/err" || rc=$?
	if [ "$rc" -ne "$want" ]; then
		fail "$what: exit $rc, expected $want"
		show
	else
		echo "ok: $what (exit $rc)"
	fi
}

expect_in() { # FILE(out|err) REGEX DESCRIPTION: the last command's stdout/stderr matches
	if grep -Eq -- "$2" "$work/$1"; then
		echo "ok: $3"
	else
		fail "$3: no line of $1 matching '$2'"
		show
	fi
}

expect_stdout_is() { # FILE DESCRIPTION: the last command's stdout is exactly FILE
	if cmp -s "$1" "$work/out"; then
		echo "ok: $2"
	else
		fail "$2: stdout differs from $1"
		show
	fi
}

kv() { "$AURAKV" --dir "$db" --segment-size 1m "$@"; }

# ---- Arguments ----
db=$work/db
expect_exit 0 "--help" -- "$AURAKV" --help
expect_in out '^Exit status:' "--help documents the exit status"
expect_in out "default: the library's \\(16m\\)" "--help: the library's segment size"
expect_exit 2 "no command" -- "$AURAKV" --dir "$db"
expect_exit 2 "no --dir" -- "$AURAKV" get k
expect_in err 'no store directory given' "no --dir: says so"
expect_exit 2 "unknown command" -- kv frobnicate
expect_exit 2 "unknown option of a command" -- kv get --bogus k
expect_exit 2 "get: missing key" -- kv get
expect_exit 2 "put: too many arguments" -- kv put a b c
expect_exit 2 "get: empty key" -- kv get ""
expect_exit 2 "get: bad hex key" -- kv get --hex-key 0g

# ---- A missing store is never created by a read ----
for cmd in get dump stats verify compact; do
	args=()
	[ "$cmd" = get ] && args=(k)
	expect_exit 2 "$cmd on a missing store" -- kv "$cmd" ${args[@]+"${args[@]}"}
	expect_in err "no store at $db" "$cmd on a missing store: clear message"
done
[ -e "$db" ] && fail "a read created the store directory $db"

# ---- Nor is a store made inside a directory that holds other things ----
mkdir "$work/files"
echo hello >"$work/files/notes.txt"
for cmd in put delete; do
	args=(k)
	[ "$cmd" = put ] && args=(k v)
	expect_exit 2 "$cmd into a non-empty directory" -- \
		"$AURAKV" --dir "$work/files" "$cmd" "${args[@]}"
	expect_in err 'not a store and not empty' "$cmd into a non-empty directory: says so"
done
[ -e "$work/files/wal" ] && fail "a store was created among other files in $work/files"
mkdir "$work/empty"
expect_exit 0 "put into an empty directory creates the store" -- \
	"$AURAKV" --dir "$work/empty" put k v

# ---- Round trips ----
expect_exit 0 "put creates the store" -- kv put k1 v1
expect_exit 0 "get k1" -- kv get k1
printf 'v1' >"$work/want"
expect_stdout_is "$work/want" "get prints the raw value, nothing added"
expect_exit 0 "put an empty value" -- kv put empty ""
expect_exit 0 "get the empty value" -- kv get empty
[ -s "$work/out" ] && fail "empty value: get printed $(wc -c <"$work/out") bytes"
{
	printf 'bin\0ary\n\377\001'
	head -c 5000 /dev/urandom
} >"$work/bin"
expect_exit 0 "put --sync a binary value from stdin" -- kv put --sync bin - <"$work/bin"
expect_exit 0 "get the binary value" -- kv get bin
expect_stdout_is "$work/bin" "binary value round trip through stdin and stdout"
# A value larger than a 1m segment holds (the library says only -EMSGSIZE).
head -c 1100000 /dev/urandom >"$work/big"
expect_exit 2 "put a value larger than a segment" -- kv put big - <"$work/big"
expect_in err 'a value of 1100000 bytes does not fit in one log segment' \
	"a value larger than a segment: says so"
expect_exit 1 "the value too large was not stored" -- kv get big
expect_exit 0 "put a value starting with '-'" -- kv put dash -- -x
expect_exit 0 "get it" -- kv get dash
printf -- '-x' >"$work/want"
expect_stdout_is "$work/want" "value starting with '-' round trip"
expect_exit 0 "get --hex" -- kv get --hex k1
expect_in out '^7631$' "get --hex prints hex digits"
expect_exit 0 "put --hex-key --hex-value" -- kv put --hex-key --hex-value 00ff01 0a00
expect_exit 0 "get --hex-key" -- kv get --hex --hex-key 00FF01
expect_in out '^0a00$' "hex key and value round trip"

# ---- Closed standard streams ----
# The store's LOCK file must not take the place of a closed stdout: the value went there.
closed_stdin() { "$@" <&-; }
expect_exit 2 "get with stdout closed" -- closed_stdout kv get k1
expect_in err 'writing the value to stdout' "get with stdout closed: says so"
if grep -q v1 "$db/LOCK"; then
	fail "get with stdout closed wrote the value into $db/LOCK"
fi
expect_exit 0 "the store is intact after get with stdout closed" -- kv get k1
printf 'v1' >"$work/want"
expect_stdout_is "$work/want" "get after stdout was closed"
expect_exit 2 "put - with stdin closed" -- closed_stdin kv put fromstdin -
expect_in err 'reading the value from stdin' "put - with stdin closed: says so"
expect_exit 1 "nothing was stored from a closed stdin" -- kv get fromstdin

# ---- Not found, delete ----
expect_exit 1 "get a missing key" -- kv get nosuchkey
expect_in err "key 'nosuchkey': not found" "missing key: message on stderr"
[ -s "$work/out" ] && fail "missing key: something printed on stdout"
expect_exit 0 "delete k1" -- kv delete --sync k1
expect_exit 1 "get after delete" -- kv get k1
expect_exit 0 "delete a missing key" -- kv delete nosuchkey
expect_exit 0 "overwrite a key" -- kv put empty again
expect_exit 0 "get the overwritten key" -- kv get empty
printf 'again' >"$work/want"
expect_stdout_is "$work/want" "the last put wins"

# ---- Dump: key order and escaping ----
db=$work/order
for kvp in zeta=1 alpha=2 "mid key=3" Beta=4 $'tab\tkey=6' 'back\slash=7'; do
	expect_exit 0 "put '$kvp'" -- kv put "${kvp%%=*}" "${kvp#*=}"
done
expect_exit 0 "put 00ff01" -- kv put --hex-key 00ff01 5
expect_exit 0 "dump" -- kv dump
printf '%s\n' '\x00\xff\x01	5' 'Beta	4' 'alpha	2' 'back\\slash	7' 'mid key	3' \
	'tab\x09key	6' 'zeta	1' >"$work/want"
expect_stdout_is "$work/want" "dump: every key in memcmp order, escaped, TAB value"
expect_exit 0 "dump --keys-only --limit 2" -- kv dump --keys-only --limit 2
printf '%s\n' '\x00\xff\x01' 'Beta' >"$work/want"
expect_stdout_is "$work/want" "dump --limit 2: the first two keys"
expect_exit 0 "dump --start" -- kv dump --keys-only --start m
printf '%s\n' 'mid key' 'tab\x09key' 'zeta' >"$work/want"
expect_stdout_is "$work/want" "dump --start m: the keys >= m"
expect_exit 0 "dump --hex" -- kv dump --hex --limit 1
expect_in out $'^00ff01\t35$' "dump --hex: key and value in hex"

# ---- Stats, compact, verify on an intact store ----
expect_exit 0 "stats" -- kv stats
expect_in out '^keys: +7$' "stats: 7 keys"
expect_in out '^segment +state +hint' "stats: the segment table"
expect_in out '^space amp: +[0-9.]+ \(disk bytes / live bytes\)$' "stats: space amplification"
expect_in out '^log amp: +[0-9.]+ \(log bytes / live bytes\)$' "stats: log amplification"
expect_exit 0 "compact" -- kv compact
expect_in out '^before: [0-9]+ disk bytes, [0-9]+ segments' "compact: before"
expect_in out '^after: +[0-9]+ disk bytes, [0-9]+ segments' "compact: after"
expect_exit 0 "verify an intact store" -- kv verify
expect_in out '^summary: .* 0 corrupt, 0 bad hint files: clean$' "verify: clean summary"
expect_exit 0 "data intact after compact and verify" -- kv get alpha

# ---- Held by another process: the message names its PID ----
coproc HOLD { exec "$AURAKV" --dir "$db" hold 2>"$work/hold.err"; }
holder=$HOLD_PID
hold_in=${HOLD[1]}
line=
read -r -t 20 line <&"${HOLD[0]}" || true
case $line in
"holding $db pid $holder") echo "ok: hold: the store is held by pid $holder" ;;
*) fail "hold: printed '$line', expected 'holding $db pid $holder'" ;;
esac
expect_exit 2 "get while held elsewhere" -- kv get alpha
expect_in err "\\b$holder\\b" "get while held: the message names the holder's PID"
expect_exit 2 "put while held elsewhere" -- kv put alpha 9
expect_in err "\\b$holder\\b" "put while held: the message names the holder's PID"
expect_exit 2 "verify while held elsewhere" -- kv verify
expect_in err "\\b$holder\\b" "verify while held: the message names the holder's PID"
exec {hold_in}>&- # end of the holder's stdin: it closes the store and exits
rc=0
wait "$holder" || rc=$?
holder=
[ "$rc" -eq 0 ] || fail "hold: exit $rc after its stdin ended"
expect_exit 0 "get after the holder exited" -- kv get alpha
printf '2' >"$work/want"
expect_stdout_is "$work/want" "the store is intact after being held"

# ---- A byte flipped inside a record in the middle of the log ----
# Eight keys with 3000 random (incompressible) bytes each, every value starting with a
# unique marker; the byte flipped lies inside the value of key 4, so valid records
# follow the damage (mid-log damage is corruption; only a damaged tail is not).
db=$work/flip
for i in 1 2 3 4 5 6 7 8; do
	{
		printf 'MARK-%s-%s-' "$i" "$RANDOM$RANDOM"
		head -c 3000 /dev/urandom
	} >"$work/val$i"
	expect_exit 0 "put key$i (3000 random bytes)" -- kv put "key$i" - <"$work/val$i"
done
expect_exit 0 "verify before the flip" -- kv verify
# The store's log directory given as the store: no store made inside it, and a hint.
expect_exit 2 "put into the store's wal/ directory" -- "$AURAKV" --dir "$db/wal" put k v
expect_in err 'AuraWAL segment files: a store.s log directory' "put into wal/: the hint"
[ -e "$db/wal/wal" ] && fail "a store was created inside $db/wal"
expect_exit 2 "get from the store's wal/ directory" -- "$AURAKV" --dir "$db/wal" get key1
expect_in err "no store at $db/wal .*a store.s log directory, whose parent" "get from wal/: the hint"
marker=$(head -c 20 "$work/val4" | cut -d- -f1-3)-
seg=''
mark_off=''
for f in "$db"/wal/[0-9a-f]*.seg; do
	hit=$(grep -obUaF -- "$marker" "$f" | head -1 || true)
	if [ -n "$hit" ]; then
		seg=$f
		mark_off=${hit%%:*}
	fi
done
if [ -z "$seg" ]; then
	fail "flip: the marker of key4 is in no segment file of $db/wal"
else
	off=$((mark_off + 1000))
	byte=$(od -An -tu1 -j"$off" -N1 "$seg")
	# shellcheck disable=SC2059 # the format is the escaped byte
	printf "\\x$(printf %02x $((byte ^ 0xff)))" |
		dd of="$seg" bs=1 seek="$off" conv=notrunc status=none
	segno=$((16#$(basename "$seg" .seg)))
	expect_exit 1 "verify finds the flipped byte" -- kv verify
	expect_in out '^report: corruption: ' "verify: the damage is reported"
	expect_in out "^report: corruption: .*segment $segno\\b" "verify: the report names segment $segno"
	# The location: the damaged record starts a few dozen bytes before the marker.
	found=0
	while read -r n; do
		if [ "$n" -ge $((mark_off - 256)) ] && [ "$n" -le "$off" ]; then
			found=1
		fi
	done < <(grep '^report: corruption: ' "$work/out" | grep -oE '[0-9]+')
	if [ "$found" -eq 1 ]; then
		echo "ok: verify: the report names the offset (near $mark_off)"
	else
		fail "verify: no offset within 256 bytes before $mark_off in the report"
		show
	fi
	expect_in out '^summary: .* [1-9][0-9]* corrupt, .*: CORRUPT$' "verify: summary says CORRUPT"
	expect_exit 1 "get of the damaged key" -- kv get key4
	expect_in err '[Cc]orrupt' "get of the damaged key: says corrupt"
fi

# ---- A damaged sealed segment: the open reports it and fails, dropping nothing ----
# Seven values of 400000 random bytes fill segments 1-3 of 1m and start segment 4. The
# last sealed segment emptied was taken for a rollover whose flush was never made: the
# open dropped segments 3 and 4 (acknowledged values) and went on, dump exited 0 with a
# short listing, and a later verify called the store clean. It is corruption: every
# command fails with exit 1 and the report, and no segment file is deleted.
db=$work/dropped
for i in 1 2 3 4 5 6 7; do
	head -c 400000 /dev/urandom >"$work/big$i"
	expect_exit 0 "put big$i (400000 random bytes)" -- kv put "big$i" - <"$work/big$i"
done
if [ -f "$db/wal/0000000000000003.seg" ] && [ -f "$db/wal/0000000000000004.seg" ]; then
	rm -rf "$work/dropcopy"
	cp -a "$db" "$work/dropcopy"
	: >"$work/dropcopy/wal/0000000000000003.seg"
	for cmd in dump stats "get big1" verify; do
		# shellcheck disable=SC2086 # the command and its argument
		expect_exit 1 "$cmd of a store with an emptied sealed segment" -- \
			"$AURAKV" --dir "$work/dropcopy" $cmd
		if [ "$cmd" = verify ]; then
			expect_in out "^report: corruption: log segment 3 " \
				"verify: the damaged segment is reported"
		else
			expect_in err "^aurakv: $work/dropcopy: corruption: log segment 3 " \
				"$cmd: the damaged segment is reported"
		fi
		[ -f "$work/dropcopy/wal/0000000000000004.seg" ] ||
			fail "$cmd: segment 4 was deleted after the damaged segment 3"
	done
else
	fail "the store of seven 400000-byte values does not have segments 3 and 4"
fi

check_end
