#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# io_vs_fio.sh - AuraIO against fio and against a hand-written liburing loop, on the
# same file, 4K O_DIRECT random reads at several queue depths.
#
# The disk of this project's machines is shared and noisy (see BENCHMARKING.md), so the
# three are run interleaved - for each repetition, for each QD: fio, auraio, liburing,
# with the order rotated every repetition - and the table reports medians with min-max,
# and the median of the per-repetition ratios (each ratio compares runs taken seconds
# apart).
#
# Usage: bench/io_vs_fio.sh [--reps N] [--runtime S] [--file PATH] [--size N]
#                           [--qds "1 8 32 128"] [--build DIR] [--out DIR]
# The same settings can come from the environment: REPS RUNTIME FILE SIZE QDS BUILD_DIR
# OUT. IOBENCH_ARGS and FIO_ARGS add options to every iobench / fio run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

REPS=${REPS:-3}
RUNTIME=${RUNTIME:-10}
FILE=${FILE:-/var/tmp/iobench.dat}
SIZE=${SIZE:-2g}
QDS=${QDS:-"1 8 32 128"}
BUILD_DIR=${BUILD_DIR:-$root/build-release}
OUT=${OUT:-}
IOBENCH_ARGS=${IOBENCH_ARGS:-}
FIO_ARGS=${FIO_ARGS:-}

usage() {
	sed -n '/^# Usage:/,/^# OUT/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--reps) REPS=${2:?}; shift 2 ;;
	--runtime) RUNTIME=${2:?}; shift 2 ;;
	--file) FILE=${2:?}; shift 2 ;;
	--size) SIZE=${2:?}; shift 2 ;;
	--qds) QDS=${2:?}; shift 2 ;;
	--build) BUILD_DIR=${2:?}; shift 2 ;;
	--out) OUT=${2:?}; shift 2 ;;
	-h|--help) usage ;;
	*) echo "io_vs_fio.sh: unknown argument '$1'" >&2; usage ;;
	esac
done

IOBENCH=$BUILD_DIR/tools/iobench/iobench
[ -x "$IOBENCH" ] || { echo "io_vs_fio.sh: $IOBENCH not found (build first)" >&2; exit 1; }
command -v fio >/dev/null || { echo "io_vs_fio.sh: fio not installed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "io_vs_fio.sh: python3 not installed" >&2; exit 1; }
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "io_vs_fio.sh: REPS must be >= 1" >&2; exit 2; }

if [ -z "$OUT" ]; then
	OUT=$(mktemp -d /tmp/io_vs_fio.XXXXXX)
	trap 'rm -rf "$OUT"' EXIT
else
	mkdir -p "$OUT"
fi

# Lay the file out with written data (a sparse file would read zeros without I/O).
"$IOBENCH" --file "$FILE" --size "$SIZE" --runtime 0.1 --quiet >/dev/null
bytes=$(stat -c %s "$FILE")

run_fio() { # qd out
	# lat_percentiles: percentiles of submission-to-completion latency, as iobench's.
	# norandommap: uniform offsets with repeats, as iobench's.
	# shellcheck disable=SC2086
	fio --name=io_vs_fio --filename="$FILE" --size="$bytes" --rw=randread --bs=4k \
		--direct=1 --ioengine=io_uring --iodepth="$1" --runtime="$RUNTIME" --time_based \
		--norandommap --lat_percentiles=1 --group_reporting --output-format=json \
		$FIO_ARGS >"$2"
}

run_iobench() { # engine qd out
	# A failed run stops the script with iobench's own message, not silently.
	# shellcheck disable=SC2086
	"$IOBENCH" --engine "$1" --file "$FILE" --rw randread --bs 4k --direct --qd "$2" \
		--runtime "$RUNTIME" --quiet --json - $IOBENCH_ARGS >"$3" 2>"$3.err" || {
		echo "io_vs_fio.sh: iobench --engine $1 --qd $2 failed:" >&2
		cat "$3.err" >&2
		return 1
	}
}

tools=(fio auraio liburing)
for ((rep = 0; rep < REPS; rep++)); do
	for qd in $QDS; do
		for ((k = 0; k < 3; k++)); do
			tool=${tools[$(((k + rep) % 3))]}
			out=$OUT/rep${rep}_qd${qd}_${tool}.json
			echo "io_vs_fio: rep $((rep + 1))/$REPS qd $qd $tool" >&2
			if [ "$tool" = fio ]; then
				run_fio "$qd" "$out"
			else
				run_iobench "$tool" "$qd" "$out"
			fi
		done
	done
done

python3 - "$OUT" "$REPS" "$QDS" "$RUNTIME" "$bytes" <<'EOF'
import json, os, statistics, sys

out, reps, qds, runtime, size = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4], int(sys.argv[5])
tools = ["fio", "auraio", "liburing"]

def load(rep, qd, tool):
    with open(os.path.join(out, f"rep{rep}_qd{qd}_{tool}.json")) as f:
        d = json.load(f)
    if tool == "fio":
        r = d["jobs"][0]["read"]
        return r["iops"], r["lat_ns"]["percentile"]["99.000000"] / 1000.0
    return d["iops"], d["lat_p99_us"]

res = {(qd, t): [load(r, qd, t) for r in range(reps)] for qd in qds for t in tools}

def spread(vals, fmt):
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}-{fmt(max(vals))})"

def kiops(v):
    return f"{v / 1000:.1f}k"

def us(v):
    return f"{v:.0f}"

def ratio(qd, a, b, idx):
    return statistics.median(x[idx] / y[idx] if y[idx] else float("nan")
                             for x, y in zip(res[(qd, a)], res[(qd, b)]))

print(f"\n4K randread O_DIRECT, {size >> 20} MiB file, {runtime} s per run, {reps} interleaved reps")
print("medians (min-max); ratios are medians of the per-rep ratios\n")
hdr = f"{'QD':>4}  {'fio IOPS':<24}{'auraio IOPS':<24}{'liburing IOPS':<24}{'a/fio':>6}{'a/uring':>8}"
print(hdr)
print("-" * len(hdr))
for qd in qds:
    cells = "".join(f"{spread([x[0] for x in res[(qd, t)]], kiops):<24}" for t in tools)
    print(f"{qd:>4}  {cells}{ratio(qd, 'auraio', 'fio', 0):>6.2f}{ratio(qd, 'auraio', 'liburing', 0):>8.2f}")
print()
hdr = f"{'QD':>4}  {'fio P99 us':<24}{'auraio P99 us':<24}{'liburing P99 us':<24}{'a/fio':>6}{'a/uring':>8}"
print(hdr)
print("-" * len(hdr))
for qd in qds:
    cells = "".join(f"{spread([x[1] for x in res[(qd, t)]], us):<24}" for t in tools)
    print(f"{qd:>4}  {cells}{ratio(qd, 'auraio', 'fio', 1):>6.2f}{ratio(qd, 'auraio', 'liburing', 1):>8.2f}")
print("\nIOPS ratio > 1 and P99 ratio < 1 favour auraio.")
EOF
