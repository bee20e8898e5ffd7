#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# crash_soak.sh - the SIGKILL crash tests with many more rounds than CI runs (50).
# A child appends (WAL) or writes (store) durably and reports every acknowledged write
# through a pipe; the parent kills it with SIGKILL at a random moment, reopens, and
# checks that every acknowledged record is present and intact (tests/wal/test_crash.c,
# tests/kv/test_crash.c). The WAL runs two loops of ROUNDS each: durable appends, and
# mostly non-durable ones rolling over without flushes, every eighth one durable.
#
# Usage: bench/crash_soak.sh [ROUNDS]       (default 500 per suite)
# BUILD_DIR (default: build, the tree `make test` builds) must hold the test binaries.
# Exits non-zero if any round loses an acknowledged write.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
ROUNDS=${1:-500}
BUILD_DIR=${BUILD_DIR:-$root/build}

for t in wal_crash kv_crash; do
	if [ ! -x "$BUILD_DIR/tests/$t" ]; then
		echo "crash_soak: $BUILD_DIR/tests/$t not found (run make test first)" >&2
		exit 1
	fi
done

start=$(date +%s)
echo "crash_soak: WAL, 2 x $ROUNDS rounds"
WAL_CRASH_ROUNDS=$ROUNDS "$BUILD_DIR/tests/wal_crash" --jobs=1 --verbose
echo "crash_soak: store, $ROUNDS rounds"
KV_CRASH_ROUNDS=$ROUNDS "$BUILD_DIR/tests/kv_crash" --jobs=1 --verbose
echo "crash_soak: $((3 * ROUNDS)) rounds, no acknowledged write lost ($(($(date +%s) - start)) s)"
