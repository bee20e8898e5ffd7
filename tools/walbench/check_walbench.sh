#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# check_walbench.sh - walbench's handling of bad arguments (ctest tools_walbench): each
# is refused before the log is made, with exit 2 and a message naming the option.
#
# Usage: check_walbench.sh WALBENCH
set -euo pipefail

WALBENCH=${1:?usage: check_walbench.sh WALBENCH}
. "$(dirname "$0")/../common/check_lib.sh"
check_begin walbench

# --dir is a file: an argument that slips through fails there (exit 1) instead of
# running.
touch "$work/file"
dir=$work/file
# --count 0 used to mean "not given": a 10 s run instead of the 0 appends asked.
expect_exit 2 "--count 0" -- "$WALBENCH" --dir "$dir" --count 0
expect_output "^walbench: bad value for --count: '0'$" "--count 0: named"
# The library takes 64k..256m in 4k steps; a larger one was refused only once the log was being made
# (exit 1, "Invalid argument", the option not named).
expect_exit 2 "--buffer-size 1t" -- "$WALBENCH" --dir "$dir" --buffer-size 1t
expect_output '^walbench: --buffer-size must be a multiple of 4k in 64k\.\.256m$' "--buffer-size 1t: named"
expect_exit 2 "--buffer-size 1k" -- "$WALBENCH" --dir "$dir" --buffer-size 1k
expect_output '^walbench: --buffer-size must be a multiple of 4k in 64k\.\.256m$' "--buffer-size 1k: named"
expect_exit 2 "--buffer-size 65537" -- "$WALBENCH" --dir "$dir" --buffer-size 65537
expect_output '^walbench: --buffer-size must be a multiple of 4k in 64k\.\.256m$' "--buffer-size 65537: named"
expect_exit 2 "--record-size 4kk" -- "$WALBENCH" --dir "$dir" --record-size 4kk
expect_output "^walbench: bad value for --record-size: '4kk'$" "--record-size 4kk: named"
# A record takes at most segment_size - 4200 bytes (aurawal.h), the default segment
# (64m) included: these passed the checks and failed the run (exit 1, "Message too long").
expect_exit 2 "--record-size 64m with the default segment size" -- "$WALBENCH" --dir "$dir" \
	--record-size 64m
expect_output '^walbench: --record-size does not fit in a segment' "--record-size 64m: named"
expect_exit 2 "--record-size 64m - 4199 in a 64m segment" -- "$WALBENCH" --dir "$dir" \
	--record-size $((64 * 1048576 - 4199)) --segment-size 64m
expect_output '^walbench: --record-size does not fit in a segment' \
	"--record-size 64m - 4199: named"
expect_exit 1 "--record-size 64m - 4200 in a 64m segment passes the checks" -- "$WALBENCH" \
	--dir "$dir" --record-size $((64 * 1048576 - 4200)) --segment-size 64m
expect_exit 2 "--duration 0" -- "$WALBENCH" --dir "$dir" --duration 0
expect_exit 2 "--threads -1" -- "$WALBENCH" --dir "$dir" --threads -1
expect_exit 2 "unknown option" -- "$WALBENCH" --dir "$dir" --bogus
expect_exit 1 "--dir is a file" -- "$WALBENCH" --dir "$dir" --count 1
expect_output 'Not a directory' "--dir is a file: said"
# An unwritable --json path is refused before the run (it was found after it).
expect_exit 2 "--json in a missing directory" -- "$WALBENCH" --count 1 --json "$work/no/x.json"
expect_output "^walbench: $work/no/x.json: No such file or directory$" "--json path: named"
expect_exit 1 "a report that cannot reach stdout" -- closed_stdout "$WALBENCH" --count 1 --quiet
expect_output '^walbench: writing to stdout: ' "a lost report: said"
# The JSON repeats the parameters as given (%g kept 6 digits: 1.23457e+06).
expect_exit 0 "a --count run with a long --duration, --json" -- "$WALBENCH" --count 20 \
	--duration 1234567.5 --quiet --json "$work/params.json"
if grep -q '^  "duration_requested_s": 1234567.5,$' "$work/params.json"; then
	echo "ok: JSON: duration_requested_s as given"
else
	fail "JSON: duration_requested_s is not 1234567.5: $(grep duration_requested "$work/params.json")"
fi
# --kv says what the JSON says, key for key: durable was 1/0 beside the JSON's true/false.
expect_exit 0 "a --count run with --kv and --json" -- "$WALBENCH" --count 20 --quiet --kv \
	--json "$work/kv.json"
grep -E '^threads=' "$work/out" >"$work/kv.line" || fail "--kv: no key=value line"
if command -v python3 >/dev/null; then
	if python3 - "$work/kv.line" "$work/kv.json" <<'PY'; then
import json, sys

kv = dict(w.split("=", 1) for w in open(sys.argv[1]).read().split())
js = json.load(open(sys.argv[2]))
bad = [k for k, v in kv.items() if k not in js or v != json.dumps(js[k]).strip('"')
       and not (isinstance(js[k], float) and abs(float(v) - js[k]) < 1e-6)]
if bad:
    print("keys that differ: " + ", ".join(f"{k}={kv[k]} / {js.get(k)}" for k in bad))
    sys.exit(1)
PY
		echo "ok: --kv: every key and value as in the JSON"
	else
		fail "--kv disagrees with --json"
	fi
fi
expect_output ' durable=true ' "--kv: durable=true, as the JSON"
expect_exit 0 "--help" -- "$WALBENCH" --help
expect_output '^Exit status: 0 done, 1 the run failed or its report was lost, 2 bad$' \
	"--help documents the exit status"

check_end
