#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# default.sh BUILD_DIR - the short job `make bench` runs until the KV benchmark exists:
# iobench on a temporary 256 MiB file in /var/tmp (written, never sparse; removed
# afterwards): 5 s of 4K O_DIRECT random reads at QD 32, then 5 s of random writes.
# Exits non-zero if a run fails.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
IOBENCH=$1/tools/iobench/iobench
if [ ! -x "$IOBENCH" ]; then
	echo "default.sh: $IOBENCH not found (build first)" >&2
	exit 1
fi

file=$(mktemp /var/tmp/iobench-default.XXXXXX)
trap 'rm -f "$file"' EXIT

common=(--file "$file" --bs 4k --direct --qd 32 --runtime 5 --quiet)
"$IOBENCH" "${common[@]}" --size 256m --rw randread
echo
"$IOBENCH" "${common[@]}" --rw randwrite
