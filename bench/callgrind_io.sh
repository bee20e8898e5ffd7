#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# callgrind_io.sh - instructions per I/O of AuraIO against the hand-written liburing
# loop (iobench --engine liburing): 4K buffered random reads served from the page
# cache, QD 32, one thread, counted by callgrind. Wall time on this project's shared
# 2-core machines is noise; instruction counts are not.
#
# Each engine runs twice, with SMALL and LARGE I/Os (iobench --ios), and the per-I/O
# figure is (Ir(LARGE) - Ir(SMALL)) / (LARGE - SMALL): process start, engine and ring
# setup, buffer allocation and teardown cancel out. Both figures include iobench's own
# per-I/O work (offset generation, latency histogram, resubmission), which is the same
# in both modes. The auraio engine is measured with the adaptive controller off (a
# fixed limit of --qd, as in the baseline) and, unless --no-adaptive, on as well.
#
# Builds nothing: build first, e.g.
#   cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release && cmake --build build-release
#
# Usage: bench/callgrind_io.sh [--build DIR] [--small N] [--large N] [--qd N]
#                              [--no-adaptive] [--out DIR]
# The same settings can come from the environment: BUILD_DIR SMALL LARGE QD OUT.
# IOBENCH_ARGS adds options to every iobench run. With --out DIR the callgrind files
# are kept there (cg.<mode>.<ios>.out); look inside one with
#   callgrind_annotate --inclusive=yes DIR/cg.auraio.250000.out | head -40
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

BUILD_DIR=${BUILD_DIR:-build-release}
SMALL=${SMALL:-50000}
LARGE=${LARGE:-250000}
QD=${QD:-32}
OUT=${OUT:-}
ADAPTIVE=1
IOBENCH_ARGS=${IOBENCH_ARGS:-}

usage() {
	sed -n '/^# Usage:/,/^# IOBENCH_ARGS/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD_DIR=${2:?}; shift 2 ;;
	--small) SMALL=${2:?}; shift 2 ;;
	--large) LARGE=${2:?}; shift 2 ;;
	--qd) QD=${2:?}; shift 2 ;;
	--no-adaptive) ADAPTIVE=0; shift ;;
	--out) OUT=${2:?}; shift 2 ;;
	-h|--help) usage ;;
	*) echo "callgrind_io.sh: unknown argument '$1'" >&2; usage ;;
	esac
done

case "$BUILD_DIR" in /*) ;; *) BUILD_DIR=$root/$BUILD_DIR ;; esac
IOBENCH=$BUILD_DIR/tools/iobench/iobench
[ -x "$IOBENCH" ] || { echo "callgrind_io.sh: $IOBENCH not found (build first)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "callgrind_io.sh: valgrind not installed" >&2; exit 1; }
for v in SMALL LARGE QD; do
	[[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "callgrind_io.sh: $v must be >= 1" >&2; exit 2; }
done
[ "$LARGE" -gt "$SMALL" ] || { echo "callgrind_io.sh: LARGE must exceed SMALL" >&2; exit 2; }

tmpdir=$(mktemp -d /var/tmp/callgrind_io.XXXXXX)
trap 'rm -rf "$tmpdir"' EXIT
if [ -z "$OUT" ]; then
	OUT=$tmpdir
else
	mkdir -p "$OUT"
fi

# 64 MiB written in full, then read once: every 4K read below is a page-cache hit.
FILE=$tmpdir/data
dd if=/dev/urandom of="$FILE" bs=1M count=64 status=none
cat "$FILE" >/dev/null

# Total instructions (Ir) of one run of iobench under callgrind.
# $1: label for the output file, $2: I/O count, rest: iobench options.
count_ir() {
	local label=$1 ios=$2 cg log
	shift 2
	cg=$OUT/cg.$label.$ios.out
	log=$OUT/cg.$label.$ios.log
	# shellcheck disable=SC2086 # IOBENCH_ARGS is a list of options
	if ! valgrind --tool=callgrind --callgrind-out-file="$cg" --log-file="$log.valgrind" \
		"$IOBENCH" --file "$FILE" --rw randread --bs 4k --qd "$QD" --threads 1 \
		--ios "$ios" --quiet "$@" $IOBENCH_ARGS >"$log" 2>&1; then
		echo "callgrind_io.sh: iobench failed ($label, $ios I/Os); see below" >&2
		cat "$log" "$log.valgrind" >&2
		exit 1
	fi
	# The totals line of the callgrind output holds the event counts; Ir is the first.
	awk '/^(summary|totals):/ { print $2; exit }' "$cg"
}

# Instructions per I/O of one mode, setup excluded (see the header).
per_io() {
	local label=$1 small large
	shift
	small=$(count_ir "$label" "$SMALL" "$@")
	large=$(count_ir "$label" "$LARGE" "$@")
	# %.0f, not %d: mawk (Debian's awk) clips %d to 2^31 - 1, and a run of 250k I/Os
	# counts billions of instructions.
	awk -v s="$small" -v l="$large" -v n=$((LARGE - SMALL)) \
		'BEGIN { printf "%.1f %.0f %.0f\n", (l - s) / n, s, l }'
}

modes=("liburing:--engine liburing" "auraio:--engine auraio" "auraio-batch:--engine auraio --batch")
[ "$ADAPTIVE" = 1 ] && modes+=("auraio-adaptive:--engine auraio --adaptive")

echo "callgrind_io: 4K buffered randread from the page cache, QD $QD, 1 thread," \
	"Ir($LARGE ios) - Ir($SMALL ios)"
printf '%-17s %14s %14s %10s %8s\n' mode "Ir(small)" "Ir(large)" "Ir/io" ratio
base=
for m in "${modes[@]}"; do
	label=${m%%:*}
	# shellcheck disable=SC2086 # the mode's options are a list
	read -r pio small large < <(per_io "$label" ${m#*:})
	[ -n "$base" ] || base=$pio
	ratio=$(awk -v a="$pio" -v b="$base" 'BEGIN { printf "%.2fx", a / b }')
	printf '%-17s %14d %14d %10s %8s\n' "$label" "$small" "$large" "$pio" "$ratio"
done
echo "ratio = Ir/io of the mode / Ir/io of liburing; requirement: auraio <= 1.15x"
[ "$OUT" = "$tmpdir" ] || echo "callgrind files kept in $OUT"
