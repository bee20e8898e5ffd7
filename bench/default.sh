#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# default.sh BUILD_DIR - the short job `make bench` runs (well under a minute):
#  1. kvbench on a temporary store under /var/tmp (removed afterwards): 300k keys of
#     16 B with 100 B values - fillrandom, fillsync (durable puts), readrandom (8 MiB
#     cache, db_bench's default), readrandom with 32 async gets in flight, and
#     overwrite - each capped at 5 s. Every read must find the key it asks for.
#  2. iobench on a temporary 256 MiB file in /var/tmp (written, never sparse; removed
#     afterwards): 5 s of 4K O_DIRECT random reads at QD 32 - what the device gives.
# The full comparison with fio and RocksDB is bench/kv_vs_peers.sh (about 10 minutes).
# Without the store (kvbench not built) only the iobench job runs.
# Exits non-zero if a run fails or a read did not find what was written.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
IOBENCH=$1/tools/iobench/iobench
KVBENCH=$1/tools/kvbench/kvbench
if [ ! -x "$IOBENCH" ]; then
	echo "default.sh: $IOBENCH not found (build first)" >&2
	exit 1
fi

file=$(mktemp /var/tmp/iobench-default.XXXXXX)
out=$(mktemp /tmp/kvbench-default.XXXXXX)
trap 'rm -f "$file" "$out"' EXIT

if [ -x "$KVBENCH" ]; then
	common=(--num 300000 --duration 5 --quiet)
	"$KVBENCH" "${common[@]}" --benchmarks fillrandom,fillsync,readrandom,overwrite |
		tee "$out"
	echo
	# A second run for the asynchronous gets (--async-depth applies to a whole run).
	"$KVBENCH" "${common[@]}" --benchmarks readrandom --async-depth 32 | tee -a "$out"
	if grep -q MISMATCH "$out"; then
		echo "default.sh: a read did not find what was written (see above)" >&2
		exit 1
	fi
	echo
else
	echo "default.sh: $KVBENCH not built: running the device job only" >&2
fi

"$IOBENCH" --file "$file" --bs 4k --direct --qd 32 --runtime 5 --quiet --size 256m \
	--rw randread
