#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# check_kvbench.sh - smoke test of kvbench (ctest tools_kvbench): a tiny run of every
# workload on a temporary store prints each workload's line, the summary table and
# found == expected for every read workload; a kept store reopened with --use-existing
# is read back (sync and async gets, multiget) without a fill; reading it with other
# keys trips the found/expected warning; bad arguments exit 2, a non-empty --db 1.
# KVBENCH_FORGETFUL (optional) is kvbench over a store that loses key 1 and invents
# readmissing's key 1 (forgetful_store.c): reads of keys the run wrote must fail it.
#
# The fills write 2000 puts of 4000 keys, so the first read workload fills the store
# first (untimed); every read after that must find every key.
#
# Usage: check_kvbench.sh KVBENCH [KVBENCH_FORGETFUL]
set -euo pipefail

KVBENCH=${1:?usage: check_kvbench.sh KVBENCH [KVBENCH_FORGETFUL]}
FORGETFUL=${2:-}
. "$(dirname "$0")/../common/check_lib.sh"
check_begin kvbench

# Every summary row of a read workload says found N/N ok (N the same on both sides).
expect_found_all() { # WORKLOAD...
	local w line
	for w in "$@"; do
		line=$(grep -E "^$w +[0-9]+ +[0-9]+ " "$work/out" | tail -1 || true)
		if [[ "$line" =~ found\ ([0-9]+)/([0-9]+)\ ok$ ]] &&
			[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]; then
			echo "ok: $w found ${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
		else
			fail "$w: summary row '$line' is not 'found N/N ok'"
			show
		fi
	done
}

all=fillseq,fillrandom,fillsync,overwrite,readrandom,readseq,readmissing,readwhilewriting,multiget
common=(--num 4000 --threads 2 --segment-size 1m --quiet)

expect_exit 0 "every workload on a temporary store" -- \
	"$KVBENCH" "${common[@]}" --benchmarks "$all" --writes 2000 --json "$work/all.json"
for w in ${all//,/ }; do
	expect_output "^$w +: +[0-9.]+[kM]? ops/s +[0-9.]+ MB/s" "$w: result line"
done
expect_output '^    latency \(us\): mean [0-9.]+, p50 [0-9.]+, p99 [0-9.]+, p99\.9 [0-9.]+, max ' \
	"latency line"
expect_output '^    store: [0-9]+ keys; live ' "store line"
expect_output '^    writer: [0-9.]+[kM]? puts/s' "readwhilewriting reports its writer"
expect_output '^workload +thr +ops +ops/s +MB/s +p50 us +p99 us +p99\.9 us +max us +cache +check$' \
	"summary table header"
expect_found_all readrandom readseq readwhilewriting multiget
# The summary table's latencies of multiget and readseq are per batch: it says so.
expect_output '^\(readseq, multiget: latencies per multi_get batch, not per key\)$' \
	"the summary table names its per-batch rows"
expect_output '^readmissing +.* found 0/0 ok$' "readmissing finds nothing"
expect_output '^fillsync +2 +2000 ' "fillsync writes --writes puts"
expect_no_output 'WARNING|MISMATCH' "no warning"
expect_output 'not known to hold keys 0\.\.3999: writing them first' \
	"fills of --writes < num: the reads fill the store first"
if grep -q '"check_ok": false' "$work/all.json"; then
	fail "JSON: a check_ok is false"
fi
if [ "$(grep -c '"name":' "$work/all.json")" -eq 9 ]; then
	echo "ok: JSON has 9 results"
else
	fail "JSON: expected 9 results"
fi
if command -v python3 >/dev/null; then
	if python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$work/all.json"; then
		echo "ok: JSON parses"
	else
		fail "JSON does not parse"
	fi
fi
# What each lat_* figure measures: one put or get, or one aurakv_multi_get batch
# (multiget, readseq), said by every result's lat_unit.
if command -v python3 >/dev/null; then
	if python3 - "$work/all.json" <<'PY'; then
import json, sys

units = {r["name"]: r.get("lat_unit") for r in json.load(open(sys.argv[1]))["results"]}
batched = {"multiget", "readseq"}
sys.exit(0 if units and all(u == ("batch" if n in batched else "op")
                            for n, u in units.items()) else 1)
PY
		echo "ok: JSON lat_unit is batch for multiget and readseq, op for the rest"
	else
		fail "JSON: lat_unit missing or wrong: $(grep -E '"(name|lat_unit)"' "$work/all.json" | tr -d '\n')"
	fi
fi
# space_amp is the store's files over its live bytes, as gc_space_amp and the report
# mean it: the disk_bytes / live_bytes of the same object; log_amp the log's records.
if command -v python3 >/dev/null; then
	if python3 - "$work/all.json" <<'PY'; then
import json, sys


def stores(x):
    if isinstance(x, dict):
        if "space_amp" in x or "disk_amp" in x:
            yield x
        for v in x.values():
            yield from stores(v)
    elif isinstance(x, list):
        for v in x:
            yield from stores(v)


seen = 0
for s in stores(json.load(open(sys.argv[1]))):
    if "disk_amp" in s or "log_amp" not in s or s["live_bytes"] == 0:
        sys.exit(1)
    if abs(s["space_amp"] - s["disk_bytes"] / s["live_bytes"]) > 1e-3:
        sys.exit(1)
    if abs(s["log_amp"] - s["total_bytes"] / s["live_bytes"]) > 1e-3:
        sys.exit(1)
    seen += 1
sys.exit(0 if seen else 1)
PY
		echo "ok: JSON space_amp = disk / live, log_amp = log / live"
	else
		fail "JSON: space_amp is not disk_bytes / live_bytes (or log_amp missing)"
	fi
fi
tmpdir=$(grep -o '/var/tmp/kvbench\.[A-Za-z0-9]*' "$work/out" | head -1 || true)
if [ -n "$tmpdir" ] && [ ! -e "$tmpdir" ]; then
	echo "ok: temporary store removed"
else
	fail "temporary store '$tmpdir' left behind"
fi

# A kept store, reopened: no fill needed, async gets and multiget find every key.
expect_exit 0 "fill a kept store" -- "$KVBENCH" "${common[@]}" --db "$work/db" \
	--benchmarks fillrandom
expect_exit 0 "reopen with --use-existing, async gets" -- "$KVBENCH" "${common[@]}" \
	--db "$work/db" --use-existing --async-depth 8 --benchmarks readrandom,multiget
expect_no_output 'not timed' "--use-existing: no fill before the reads"
expect_found_all readrandom multiget
expect_exit 1 "a non-empty --db without --use-existing" -- "$KVBENCH" "${common[@]}" \
	--db "$work/db" --benchmarks fillseq
expect_output 'is not empty' "a non-empty --db is refused, with the reason"
: >"$work/file"
expect_exit 1 "a --db that is a file" -- "$KVBENCH" "${common[@]}" --db "$work/file"
expect_output "^kvbench: $work/file: Not a directory$" "a file --db: 'Not a directory'"

# --use-existing where there is no store: say what is there, suggest only what works.
mkdir "$work/notastore"
echo data >"$work/notastore/notes.txt"
expect_exit 1 "--use-existing on a directory of other files" -- "$KVBENCH" "${common[@]}" \
	--db "$work/notastore" --use-existing --benchmarks readrandom
expect_output "^kvbench: $work/notastore holds no AuraKV store \\(it is not empty: other files\\)" \
	"a directory of other files is not a store"
expect_no_output 'drop --use-existing' "no advice that leads to 'is not empty'"
mkdir "$work/emptydir"
expect_exit 1 "--use-existing on an empty directory" -- "$KVBENCH" "${common[@]}" \
	--db "$work/emptydir" --use-existing --benchmarks readrandom
expect_output "^kvbench: $work/emptydir holds no AuraKV store \\(it is empty\\): drop --use-existing to create one there" \
	"an empty directory: drop --use-existing"
expect_exit 1 "--use-existing on a missing directory" -- "$KVBENCH" "${common[@]}" \
	--db "$work/absent" --use-existing --benchmarks readrandom
expect_output "^kvbench: $work/absent does not exist: drop --use-existing to create a store there" \
	"a missing directory: drop --use-existing"

# The correctness guard: keys of another size are not in the store.
expect_exit 0 "read other keys" -- "$KVBENCH" "${common[@]}" --db "$work/db" --use-existing \
	--key-size 24 --benchmarks readrandom
expect_output '^kvbench: WARNING: readrandom: found 0 of 4000 gets, expected 4000' "the guard warns"
expect_output '^readrandom +.* found 0/4000 MISMATCH$' "the summary says MISMATCH"

# A store that loses what this run wrote, or returns keys nobody wrote, fails the run:
# every read workload is still reported, then exit 1 with what was lost or invented.
if [ -n "$FORGETFUL" ]; then
	expect_exit 1 "reads miss a key this run wrote" -- "$FORGETFUL" --num 100 --reads 1000 \
		--quiet --benchmarks fillseq,readseq,readrandom,readmissing,multiget
	for w in readseq readrandom multiget; do
		expect_output "^kvbench: ERROR: $w: the store lost data: [0-9]+ of [0-9]+ gets of keys this run wrote were not found" \
			"$w: a lost key is an error"
	done
	expect_output '^kvbench: ERROR: readmissing: the store invented data: [1-9][0-9]* of [0-9]+ gets of keys never written found a value' \
		"readmissing: an invented key is an error"
	expect_output '^multiget +.* MISMATCH$' "every workload is still reported"
	expect_no_output 'WARNING' "a run that wrote its keys does not merely warn"
	# The same store reopened: kvbench did not write these keys, so it cannot tell a
	# loss from a store of other keys: a warning, exit 0.
	expect_exit 0 "fill a kept store for the forgetful reader" -- "$KVBENCH" --num 100 \
		--quiet --db "$work/fdb" --benchmarks fillseq
	expect_exit 0 "--use-existing: a mismatch only warns" -- "$FORGETFUL" --num 100 \
		--quiet --db "$work/fdb" --use-existing --benchmarks readseq
	expect_output '^kvbench: WARNING: readseq: ' "--use-existing: the warning"
else
	echo "skip: no KVBENCH_FORGETFUL given: lost-data exit status not checked"
fi

expect_exit 2 "an unknown workload" -- "$KVBENCH" --benchmarks fillsq
expect_output "unknown workload 'fillsq'" "the unknown workload is named"
expect_exit 2 "a bad number" -- "$KVBENCH" --num 12x
# strtoull skips blanks and negates: " -1" must not become 2^64 - 1 reads (a run
# that never ends); --use-existing without --db stops the run if the value passes.
expect_exit 2 "a negative count after a blank" -- "$KVBENCH" --reads ' -1' --use-existing
expect_output "bad value for --reads: ' -1'" "' -1' is refused as a bad value"
# 0 was the "not given" of --reads, --writes and --duration: silently the default.
for opt in --reads --writes --duration; do
	expect_exit 2 "$opt 0" -- "$KVBENCH" "$opt" 0 --use-existing
	expect_output "bad value for $opt: '0'" "$opt 0 is refused as a bad value"
done
expect_exit 2 "a size with a sign" -- "$KVBENCH" --cache-size '+8m' --use-existing
expect_output "bad value for --cache-size: '\\+8m'" "'+8m' is refused as a bad value"
# An unwritable --json path is refused before the run (it was found after it).
expect_exit 2 "--json in a missing directory" -- "$KVBENCH" --num 100 --json "$work/no/x.json"
expect_output "^kvbench: $work/no/x.json: No such file or directory$" "--json path: named"
expect_exit 1 "a report that cannot reach stdout" -- \
	closed_stdout "$KVBENCH" --num 100 --benchmarks fillseq --quiet
expect_output '^kvbench: writing to stdout: ' "a lost report: said"
# The JSON repeats the parameters as given (%g kept 6 digits, %.3f 3 decimals).
expect_exit 0 "a fill with a long --duration and a fine --compressibility, --json" -- \
	"$KVBENCH" --num 100 --benchmarks fillseq --duration 1234567.5 --compressibility 0.0125 \
	--quiet --json "$work/params.json"
for want in '"duration_s": 1234567.5,' '"compressibility": 0.0125,'; do
	if grep -qF "  $want" "$work/params.json"; then
		echo "ok: JSON: $want"
	else
		fail "JSON: no '$want': $(grep -E 'duration_s|compressibility' "$work/params.json")"
	fi
done
expect_exit 0 "--help" -- "$KVBENCH" --help
expect_output '^  readwhilewriting ' "--help lists the workloads"
expect_output '^Exit status: ' "--help documents the exit status"
expect_output 'lat_unit' "--help says what the JSON's latencies measure"

check_end
