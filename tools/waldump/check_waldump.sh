#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# check_waldump.sh - end-to-end check of waldump on a log made by walbench (ctest
# tools_waldump):
#   - an intact log verifies (exit 0) and every record is listed;
#   - a byte flipped mid-log is corruption: --verify exits 1 and names segment:offset;
#   - a truncated tail is the clean end of the log: exit 0, the torn tail reported - unless
#     a close block says the cut records were there (a clean close): corruption, exit 1;
#   - a segment dropped after a rollover whose flush was never made: exit 0, reported;
#   - a segment emptied or with a damaged header: every segment file is still listed,
#     with its size and header state;
#   - --hex says where it cuts a payload at its 4096-byte limit;
#   - --segment lists one segment; a directory that is not a log, a missing one and bad
#     arguments exit 2.
#
# Usage: check_waldump.sh WALDUMP WALBENCH
set -euo pipefail

WALDUMP=${1:?usage: check_waldump.sh WALDUMP WALBENCH}
WALBENCH=${2:?usage: check_waldump.sh WALDUMP WALBENCH}
. "$(dirname "$0")/../common/check_lib.sh"
check_begin waldump

# flip_byte FILE OFFSET: invert one byte in place.
flip_byte() {
	local byte
	byte=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
	# shellcheck disable=SC2059 # the format is the escaped byte
	printf "\\x$(printf %02x $((byte ^ 0xff)))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# A log of 3 full 1 MiB segments and a partial one: 20000 records of 128 bytes
# (160 bytes on disk each, about 6500 per segment).
"$WALBENCH" --dir "$work/log" --count 20000 --record-size 128 --no-durable \
	--segment-size 1m --keep --quiet >/dev/null 2>&1 || fail "walbench could not make the log"

expect_exit 0 "intact log: full listing" -- "$WALDUMP" "$work/log"
records=$(grep -cE '^  [0-9]+:[0-9]+ +[0-9]+ +128  ok$' "$work/out" || true)
if [ "$records" -eq 20000 ]; then
	echo "ok: 20000 records listed as ok"
else
	fail "intact log: $records records listed ok, expected 20000"
fi
expect_output '^  1 +1 +[0-9]+ +[0-9]+  sealed$' "segment 1 listed, from seq 1, sealed"
# Sequence numbers: 3 SEALs have one, and so has the SYNC mark of the close's sync in
# segment 4 (made ready by the preparer, its first durable write: docs/wal_format.md).
expect_output '^  4 +[0-9]+ +20004 +[0-9]+  open$' "segment 4 listed, open, ends at seq 20004 (3 seals and a SYNC mark have one)"
expect_output '^  1:4096 +1 +128  ok$' "the first record is at 1:4096, seq 1"
expect_output '^findings: none$' "intact log: no findings"

expect_exit 0 "intact log verifies" -- "$WALDUMP" --verify "$work/log"
expect_output '^summary: 4 segment\(s\), 20000 records \(seq 1\.\.20003\), 2560000 payload bytes, 0 corruption\(s\), 0 torn tail\(s\)$' \
	"intact log: summary"
expect_no_output ' ok$' "--verify lists no records"

# --all: the log's own records are listed too, and account for the sequence gaps.
expect_exit 0 "--all" -- "$WALDUMP" --all --no-segments "$work/log"
records=$(grep -cE '^  [0-9]+:[0-9]+ +[0-9]+ +128  ok$' "$work/out" || true)
[ "$records" -eq 20000 ] || fail "--all: $records records listed ok, expected 20000"
seals=$(grep -cE '^  [123]:[0-9]+ +[0-9]+ +8  ok  SEAL: the segment ends, segment [234] follows$' "$work/out" || true)
[ "$seals" -eq 3 ] || fail "--all: $seals SEAL records of segments 1-3 listed, expected 3"
expect_output '^  4:[0-9]+ +20004 +0  ok  SYNC mark: ' "--all: the SYNC mark of the close, seq 20004"
expect_output '^summary: 4 segment\(s\), 20000 records \(seq 1\.\.20003\), 2560000 payload bytes, and 4 of the log.s own \(3 SEAL, 1 SYNC, 0 VOID\), 0 corruption\(s\), 0 torn tail\(s\)$' \
	"--all: summary counts the log's own records"
# Every sequence number from 1 to 20004 appears once, in order.
awk '/^  [0-9]+:[0-9]+ +[0-9]+ +[0-9]+  ok/ { if ($2 != ++n) { print "seq " $2 " where " n " was due"; exit 1 } }
     END { if (n != 20004) { print n " records"; exit 1 } }' "$work/out" ||
	fail "--all: the sequence numbers are not 1..20004 without a gap"

expect_exit 0 "--segment 2 --no-segments" -- "$WALDUMP" --segment 2 --no-segments "$work/log"
expect_no_output '^  [134]:[0-9]+ ' "--segment 2: no record of another segment"
expect_output '^  2:4096 +[0-9]+ +128  ok$' "--segment 2: its first record"
expect_no_output '^segments:' "--no-segments: no segment table"

expect_exit 0 "--no-records --hex 4" -- "$WALDUMP" --no-records --hex 4 "$work/log"
expect_no_output '^records:' "--no-records: no record table"

expect_exit 0 "--hex 4" -- "$WALDUMP" --segment 1 --hex 4 "$work/log"
expect_output '^    ([0-9a-f]{2} ){4}\.\.\.$' "--hex 4: four payload bytes per record"

# A byte flipped in a record in the middle of segment 2: damage followed by valid
# records. Offset 500000 lies in the record that starts at 4096 + 160 * k <= 500000.
cp -a "$work/log" "$work/flip"
flip_byte "$work/flip/0000000000000002.seg" 500000
rec=$((4096 + (500000 - 4096) / 160 * 160))
expect_exit 1 "flipped byte: --verify fails" -- "$WALDUMP" --verify "$work/flip"
expect_output "^  corruption at 2:$rec, [0-9]+ bytes: " \
	"flipped byte: the finding names segment 2 offset $rec"
expect_output ' 19999 records .* 1 corruption\(s\), 0 torn tail\(s\)$' \
	"flipped byte: one record lost, counted once"
expect_exit 1 "flipped byte: exit 1 without --verify too" -- "$WALDUMP" "$work/flip"
expect_output "^  2:$rec +- +[0-9]+  CORRUPT: " "flipped byte: listed in place among the records"
expect_output "^  2:$((rec + 160)) +[0-9]+ +128  ok$" "flipped byte: the next record is read"

# The last segment cut in the middle of its last record after a clean close: its close
# block says that record was there, durable - damage, not a torn tail.
cp -a "$work/log" "$work/torn"
"$WALDUMP" --segment 4 --no-segments "$work/torn" >"$work/out"
last=$(grep -E ' ok$' "$work/out" | tail -1 | awk '{print $1}')
off=${last#4:}
truncate -s $((off + 20)) "$work/torn/0000000000000004.seg"
expect_exit 1 "closed log cut short: --verify fails" -- "$WALDUMP" --verify "$work/torn"
expect_output "^  corruption at 4:$off, [0-9]+ bytes: " \
	"closed log cut short: the finding names segment 4 offset $off"

# The same cut as a crash leaves it, without the close block (bytes 64..119 of block 0,
# which an open removes before appending): a torn tail, the clean end.
dd if=/dev/zero of="$work/torn/0000000000000004.seg" bs=1 seek=64 count=56 conv=notrunc \
	status=none
expect_exit 0 "truncated tail: --verify passes" -- "$WALDUMP" --verify "$work/torn"
expect_output "^  torn tail at 4:$off, 20 bytes: .*\(the clean end of the log\)$" \
	"truncated tail: reported with its location"
expect_output '^summary: 4 segment\(s\), 19999 records \(seq 1\.\.20002\), .* 0 corruption\(s\), 1 torn tail\(s\)$' \
	"truncated tail: the partial record is dropped, no corruption"

# A damaged segment header, with a SYNC mark after it (the close's): corruption.
cp -a "$work/log" "$work/header"
flip_byte "$work/header/0000000000000003.seg" 20
expect_exit 1 "bad segment header: exit 1" -- "$WALDUMP" --verify "$work/header"
expect_output '^  corruption at 3:0, 4096 bytes: bad segment header$' \
	"bad segment header: named"

# The segment made ready ahead with a damaged header, nothing durable after it: what a
# crash leaves when a rollover's flush was never made - dropped, information, no damage.
cp -a "$work/log" "$work/ready"
flip_byte "$work/ready/0000000000000005.seg" 20
expect_exit 0 "unflushed rollover: --verify passes" -- "$WALDUMP" --verify "$work/ready"
expect_output '^  dropped at 5:0, 0 bytes: after a rollover whose flush was never made' \
	"unflushed rollover: the dropped segment is named"
expect_output ' 0 corruption\(s\), 0 torn tail\(s\), 1 segment\(s\) dropped \(never acknowledged\)$' \
	"unflushed rollover: counted as dropped, not as corruption"

# A segment emptied (truncated to 0): the log cannot be read past it, but every segment
# file present is listed with its size and header state, the later ones included.
cp -a "$work/log" "$work/empty2"
truncate -s 0 "$work/empty2/0000000000000002.seg"
expect_exit 1 "segment 2 truncated to 0: corruption" -- "$WALDUMP" --no-records "$work/empty2"
expect_output '^files:$' "the directory's segment files are listed"
expect_output '^  0000000000000001\.seg +1048576  ok, in the log$' "file 1: in the log"
expect_output '^  0000000000000002\.seg +0  none: the file is empty, not read by the log$' \
	"file 2: empty, no header"
for n in 3 4; do
	expect_output "^  000000000000000$n\\.seg +1048576  ok, not read by the log\$" \
		"file $n: listed after the damage, its header ok"
done
expect_output '^  0000000000000005\.seg +1048576  ok, not read by the log$' \
	"file 5 (made ready ahead): listed"
cp -a "$work/log" "$work/badhdr"
flip_byte "$work/badhdr/0000000000000003.seg" 20
expect_exit 1 "segment 3's header damaged" -- "$WALDUMP" --no-records "$work/badhdr"
expect_output '^  0000000000000003\.seg +1048576  bad: checksum mismatch, not read by the log$' \
	"file 3: the header's damage named"

# --hex prints at most 4096 payload bytes of a record, and says so where it cuts one.
"$WALBENCH" --dir "$work/big" --count 2 --record-size 5000 --no-durable --segment-size 1m \
	--keep --quiet >/dev/null 2>&1 || fail "walbench could not make the log of big records"
expect_exit 0 "--hex 6000 on 5000-byte records" -- "$WALDUMP" --hex 6000 "$work/big"
expect_output '^    .*\.\.\. \(4096 of 5000 bytes shown: --hex prints at most 4096\)$' \
	"--hex: a payload cut at 4096 bytes says so"
expect_exit 0 "--help" -- "$WALDUMP" --help
expect_output 'at most 4096' "--help: the --hex limit"
expect_output 'files' "--help: the segment files are listed"

# Not a log, no such directory, bad arguments.
mkdir "$work/empty"
expect_exit 2 "empty directory is not a log" -- "$WALDUMP" "$work/empty"
expect_output 'not an AuraWAL log' "empty directory: clear message"
expect_exit 2 "missing directory" -- "$WALDUMP" "$work/nonexistent"
expect_exit 2 "--segment that does not exist" -- "$WALDUMP" --segment 99 "$work/log"
expect_output 'no segment 99 \(the log has 1\.\.4\)' "--segment 99: clear message"
expect_exit 2 "no directory given" -- "$WALDUMP"
expect_exit 2 "unknown option" -- "$WALDUMP" --bogus "$work/log"
expect_exit 2 "bad --segment value" -- "$WALDUMP" --segment x "$work/log"
# Numbers are decimal: strtoull's base 0 took "010" as 8 and "0x2" as 2.
expect_exit 2 "--segment 010 is segment 10, not 8" -- "$WALDUMP" --segment 010 "$work/log"
expect_output 'no segment 10 \(the log has 1\.\.4\)' "--segment 010: decimal"
expect_exit 2 "--segment 0x2 is refused" -- "$WALDUMP" --segment 0x2 "$work/log"
expect_output "bad value for --segment: '0x2'" "--segment 0x2: named"
expect_exit 2 "--hex ' -1' is refused" -- "$WALDUMP" --hex ' -1' "$work/log"
expect_output "bad value for --hex: ' -1'" "--hex ' -1': named"
# Output that cannot be written is not a clean result.
if [ -w /dev/full ]; then
	to_full() { "$@" >/dev/full; }
	expect_exit 2 "stdout on a full device" -- to_full "$WALDUMP" --verify "$work/log"
	expect_output '^waldump: writing to stdout: ' "stdout on a full device: says so"
fi
expect_exit 0 "--help" -- "$WALDUMP" --help
expect_output '1 corruption found' "--help documents the exit codes"

check_end
