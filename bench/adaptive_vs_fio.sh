#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# adaptive_vs_fio.sh - AuraIO's adaptive controller against fio at fixed queue depths,
# on the same file: 4K O_DIRECT random reads.
#
# For each repetition, interleaved with the order rotated: fio at QD 1, 8, 32, 128, and
# iobench --adaptive with the engine's default P99 guard and with each extra guard in
# GUARDS (default "1": a 1 ms target). Reported: medians (min-max) of IOPS and P99, and
# per repetition the ratios that matter - adaptive IOPS / the best fio QD of that
# repetition, adaptive P99 / fio QD128's P99 - as medians over repetitions. The first
# adaptive run keeps a trace and is drawn as an SVG (bench/plot_trace.py).
#
# Usage: bench/adaptive_vs_fio.sh [--reps N] [--runtime S] [--file PATH] [--size N]
#                                 [--build DIR] [--out DIR] [--svg PATH]
# Environment: REPS RUNTIME FILE SIZE BUILD_DIR OUT SVG GUARDS CAP (the adaptive queue
# depth cap, default 256).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-30}
FILE=${FILE:-/var/tmp/iobench.dat}
SIZE=${SIZE:-2g}
BUILD_DIR=${BUILD_DIR:-$root/build-release}
OUT=${OUT:-}
SVG=${SVG:-}
GUARDS=${GUARDS:-1}
CAP=${CAP:-256}
QDS="1 8 32 128"

usage() {
	sed -n '3,18p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--reps) REPS=${2:?}; shift 2 ;;
	--runtime) RUNTIME=${2:?}; shift 2 ;;
	--file) FILE=${2:?}; shift 2 ;;
	--size) SIZE=${2:?}; shift 2 ;;
	--build) BUILD_DIR=${2:?}; shift 2 ;;
	--out) OUT=${2:?}; shift 2 ;;
	--svg) SVG=${2:?}; shift 2 ;;
	-h|--help) usage ;;
	*) echo "adaptive_vs_fio.sh: unknown argument '$1'" >&2; usage ;;
	esac
done

IOBENCH=$BUILD_DIR/tools/iobench/iobench
[ -x "$IOBENCH" ] || { echo "adaptive_vs_fio.sh: $IOBENCH not found (build first)" >&2; exit 1; }
command -v fio >/dev/null || { echo "adaptive_vs_fio.sh: fio not installed" >&2; exit 1; }
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "adaptive_vs_fio.sh: REPS must be >= 1" >&2; exit 2; }
if [ -z "$OUT" ]; then
	OUT=$(mktemp -d /tmp/adaptive_vs_fio.XXXXXX)
	trap 'rm -rf "$OUT"' EXIT
else
	mkdir -p "$OUT"
fi

"$IOBENCH" --file "$FILE" --size "$SIZE" --runtime 0.1 --quiet >/dev/null
bytes=$(stat -c %s "$FILE")

run_fio() { # qd out
	fio --name=adaptive_vs_fio --filename="$FILE" --size="$bytes" --rw=randread --bs=4k \
		--direct=1 --ioengine=io_uring --iodepth="$1" --runtime="$RUNTIME" --time_based \
		--norandommap --lat_percentiles=1 --group_reporting --output-format=json >"$2"
}

run_adaptive() { # guard_ms(0 = default) out [trace]
	local extra=()
	[ "$1" != 0 ] && extra+=(--max-p99-ms "$1")
	[ $# -ge 3 ] && extra+=(--trace "$3")
	# A failed run stops the script with iobench's own message, not silently.
	"$IOBENCH" --file "$FILE" --rw randread --bs 4k --direct --adaptive --qd "$CAP" \
		--runtime "$RUNTIME" --quiet --json - "${extra[@]}" >"$2" 2>"$2.err" || {
		echo "adaptive_vs_fio.sh: iobench --adaptive (guard $1) failed:" >&2
		cat "$2.err" >&2
		return 1
	}
}

jobs=()
for qd in $QDS; do jobs+=("fio:$qd"); done
jobs+=("adaptive:0")
for g in $GUARDS; do jobs+=("adaptive:$g"); done
n=${#jobs[@]}
for ((rep = 0; rep < REPS; rep++)); do
	for ((k = 0; k < n; k++)); do
		job=${jobs[$(((k + rep) % n))]}
		kind=${job%%:*}
		arg=${job#*:}
		out=$OUT/rep${rep}_${kind}_${arg}.json
		echo "adaptive_vs_fio: rep $((rep + 1))/$REPS $kind $arg" >&2
		if [ "$kind" = fio ]; then
			run_fio "$arg" "$out"
		elif [ "$rep" = 0 ] && [ "$arg" = 0 ]; then
			run_adaptive "$arg" "$out" "$OUT/trace.csv"
		else
			run_adaptive "$arg" "$out"
		fi
	done
done

if [ -n "$SVG" ] && [ -f "$OUT/trace.csv" ]; then
	python3 "$root/bench/plot_trace.py" "$OUT/trace.csv" "$SVG" \
		--title "AuraIO adaptive: 4K O_DIRECT randread, $RUNTIME s" && echo "wrote $SVG" >&2
fi

python3 - "$OUT" "$REPS" "$QDS" "$GUARDS" "$RUNTIME" <<'EOF'
import json, os, statistics, sys

out, reps, qds, guards, runtime = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]

def load(rep, kind, arg):
    with open(os.path.join(out, f"rep{rep}_{kind}_{arg}.json")) as f:
        d = json.load(f)
    if kind == "fio":
        r = d["jobs"][0]["read"]
        return r["iops"], r["lat_ns"]["percentile"]["99.000000"] / 1000.0, None
    return d["iops"], d["lat_p99_us"], d.get("in_flight_limit")

def med(v, f):
    return f"{f(statistics.median(v))} ({f(min(v))}-{f(max(v))})"

k = lambda v: f"{v / 1000:.1f}k"
us = lambda v: f"{v:.0f}"
rows = [("fio", q) for q in qds] + [("adaptive", "0")] + [("adaptive", g) for g in guards]
res = {r: [load(i, *r) for i in range(reps)] for r in rows}
print(f"\n4K randread O_DIRECT, {runtime} s per run, {reps} interleaved repetitions")
print(f"{'run':<22}{'IOPS':<26}{'P99 us':<26}")
for r in rows:
    name = f"fio QD{r[1]}" if r[0] == "fio" else ("adaptive (guard 10 ms)" if r[1] == "0" else f"adaptive (guard {r[1]} ms)")
    print(f"{name:<22}{med([x[0] for x in res[r]], k):<26}{med([x[1] for x in res[r]], us):<26}")
best = [max(res[("fio", q)][i][0] for q in qds) for i in range(reps)]
q128 = [res[("fio", "128")][i][1] for i in range(reps)]
print("\nper-repetition ratios (median over repetitions):")
for g in ["0"] + guards:
    a = res[("adaptive", g)]
    iops_ratio = statistics.median(a[i][0] / best[i] for i in range(reps))
    p99_ratio = statistics.median(a[i][1] / q128[i] for i in range(reps))
    label = "default guard" if g == "0" else f"guard {g} ms"
    print(f"  adaptive ({label}): IOPS / best fio QD = {iops_ratio:.2f}, "
          f"P99 / fio QD128 P99 = {p99_ratio:.2f}, P99 median = {statistics.median(x[1] for x in a):.0f} us")
EOF
