#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# kv_vs_peers.sh - AuraKV (kvbench) against the device (fio) and RocksDB (db_bench),
# side by side, with PASS/FAIL against the store's targets. 16-byte keys, 100-byte
# values throughout.
#   a  fio: 4K writes + fdatasync each, QD1, O_DIRECT, on a pre-written file
#   b  kvbench fillsync, 1 thread: durable puts (AURAKV_SYNC)          (1) b >= 0.9 x a
#   c  kvbench fillsync, 32 threads                                     (2) c >= 50,000/s
#   d  db_bench fillrandom NUM, RocksDB defaults (WAL on, sync off, snappy, 8 MiB
#      block cache, no bloom filter; keys drawn with replacement)
#   e  kvbench fillrandom NUM, no sync (each key once, random order)  (3) e >= 3 x d
#   f  fio: 4K random reads, QD1, io_uring, O_DIRECT, on a file the size of the store;
#      offsets drawn with repeats (--norandommap), as kvbench draws keys
#   g  kvbench readrandom, --cache-size 0, 1 thread, aurakv_get_into  (4a) g >= 0.9 x f
#   h  fio: 4K random reads, QD32
#   i  kvbench readrandom, --cache-size 0, --async-depth 32            (4b) i >= 0.9 x h
#   j  kvbench readrandom, 1 thread, every value cached (readseq first warms a cache
#      big enough for all of them; only readrandom is measured)       (5) j >= 500,000/s
#   k  db_bench readrandom, use_direct_reads, 8 MiB block cache (reference only)
#
# The disk of this project's machines is shared and noisy (see BENCHMARKING.md), so
# the jobs run interleaved - every repetition runs all of them, in an order rotated by
# one each repetition - and the report gives medians with min-max, and each ratio as
# the median of the per-repetition ratios (each compares runs taken seconds apart).
# Read jobs use stores filled once before the repetitions (untimed): kvbench's (g, i,
# j) and RocksDB's (k). Fill and sync jobs start from an empty store every time. fio's
# files are written in full first (no sparse blocks); the sync job (a) therefore
# measures the faster case of overwriting allocated blocks: a strict bar for (1).
# Each kvbench read result must find every key it asks for; a run that did not is
# reported as a failure whatever its rate. Latency is per whole operation on both
# sides: kvbench times each get from its call to its return (or callback), so fio's
# read P99 is its submission-to-completion latency (lat, --lat_percentiles=1), not its
# completion latency (clat), which leaves out the submission.
#
# Usage: bench/kv_vs_peers.sh [--reps N] [--num N] [--runtime S] [--dir DIR]
#                             [--build DIR] [--out DIR]
# The same settings can come from the environment: REPS (3) NUM (1000000 keys)
# RUNTIME (10 s per timed job) DIR (parent of the work dir, /var/tmp) BUILD_DIR
# (build-release) OUT (kept results; default: a temp dir, removed). KVBENCH_ARGS,
# FIO_ARGS and DB_BENCH_ARGS add options to every run of each; DB_BENCH names the
# db_bench binary (default: db_bench or rocksdb_db_bench from rocksdb-tools).
# Default total: about 8-10 minutes for REPS=3.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

REPS=${REPS:-3}
NUM=${NUM:-1000000}
RUNTIME=${RUNTIME:-10}
DIR=${DIR:-/var/tmp}
BUILD_DIR=${BUILD_DIR:-$root/build-release}
OUT=${OUT:-}
KVBENCH_ARGS=${KVBENCH_ARGS:-}
FIO_ARGS=${FIO_ARGS:-}
DB_BENCH_ARGS=${DB_BENCH_ARGS:-}
DB_BENCH=${DB_BENCH:-$(command -v db_bench || command -v rocksdb_db_bench || true)}

usage() {
	sed -n '/^# Usage:/,/^# Default total/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--reps) REPS=${2:?}; shift 2 ;;
	--num) NUM=${2:?}; shift 2 ;;
	--runtime) RUNTIME=${2:?}; shift 2 ;;
	--dir) DIR=${2:?}; shift 2 ;;
	--build) BUILD_DIR=${2:?}; shift 2 ;;
	--out) OUT=${2:?}; shift 2 ;;
	-h|--help) usage ;;
	*) echo "kv_vs_peers.sh: unknown argument '$1'" >&2; usage ;;
	esac
done

KVBENCH=$BUILD_DIR/tools/kvbench/kvbench
[ -x "$KVBENCH" ] || { echo "kv_vs_peers.sh: $KVBENCH not found (build first)" >&2; exit 1; }
command -v fio >/dev/null || { echo "kv_vs_peers.sh: fio not installed (apt-get install -y fio)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "kv_vs_peers.sh: python3 not installed" >&2; exit 1; }
if [ -z "$DB_BENCH" ] || [ ! -x "$DB_BENCH" ]; then
	echo "kv_vs_peers.sh: db_bench not found: RocksDB jobs are skipped" \
		"(apt-get install -y rocksdb-tools)" >&2
	DB_BENCH=
fi
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "kv_vs_peers.sh: REPS must be >= 1" >&2; exit 2; }
[[ "$NUM" =~ ^[1-9][0-9]*$ ]] || { echo "kv_vs_peers.sh: NUM must be a number >= 1" >&2; exit 2; }
[[ "$RUNTIME" =~ ^[1-9][0-9]*$ ]] || { echo "kv_vs_peers.sh: RUNTIME must be whole seconds >= 1" >&2; exit 2; }

WORK=$(mktemp -d "$DIR/kv_vs_peers.XXXXXX")
keep_out=1
if [ -z "$OUT" ]; then
	OUT=$(mktemp -d /tmp/kv_vs_peers.XXXXXX)
	keep_out=0
else
	mkdir -p "$OUT"
fi
cleanup() {
	rm -rf "$WORK"
	[ "$keep_out" = 1 ] || rm -rf "$OUT"
}
trap cleanup EXIT

FIO_FILE=$WORK/fio.dat
KV_READ=$WORK/kv-read
ROCKS_READ=$WORK/rocks-read
BIG=1000000000 # reads/writes for jobs that --duration ends

log() {
	echo "kv_vs_peers: $*" >&2
}

# kvbench OUT ARGS...: JSON to OUT, the human report to OUT.txt.
kvb() {
	local out=$1
	shift
	# shellcheck disable=SC2086
	"$KVBENCH" --quiet --num "$NUM" --json "$out" "$@" $KVBENCH_ARGS >"$out.txt" 2>&1 ||
		{ cat "$out.txt" >&2; return 1; }
}

run_fio() { # out fio-options...
	local out=$1
	shift
	# shellcheck disable=SC2086
	fio --name=j --filename="$FIO_FILE" --size="$FIO_SIZE" --direct=1 --runtime="$RUNTIME" \
		--time_based --output-format=json "$@" $FIO_ARGS >"$out"
}

run_db_bench() { # out db_bench-options...
	local out=$1
	shift
	# shellcheck disable=SC2086
	"$DB_BENCH" --key_size=16 --value_size=100 --num="$NUM" --threads=1 --histogram=1 \
		"$@" $DB_BENCH_ARGS >"$out" 2>&1 || { tail -20 "$out" >&2; return 1; }
}

fresh() { # a store directory, emptied
	rm -rf "$1"
	echo "$1"
}

run_job() { # job out
	local out=$2
	case "$1" in
	a_fio_sync) run_fio "$out" --rw=write --bs=4k --fdatasync=1 --ioengine=psync ;;
	b_kv_sync1) kvb "$out" --db "$(fresh "$WORK/kv-w")" --benchmarks fillsync --threads 1 \
		--writes $BIG --duration "$RUNTIME" ;;
	c_kv_sync32) kvb "$out" --db "$(fresh "$WORK/kv-w")" --benchmarks fillsync --threads 32 \
		--writes $BIG --duration "$RUNTIME" ;;
	d_rocks_fill) run_db_bench "$out" --benchmarks=fillrandom --db="$(fresh "$WORK/rocks-w")" ;;
	e_kv_fill) kvb "$out" --db "$(fresh "$WORK/kv-w")" --benchmarks fillrandom --threads 1 ;;
	f_fio_qd1) run_fio "$out" --rw=randread --bs=4k --ioengine=io_uring --iodepth=1 \
		--norandommap --lat_percentiles=1 ;;
	g_kv_read1) kvb "$out" --db "$KV_READ" --use-existing --cache-size 0 \
		--benchmarks readrandom --reads $BIG --duration "$RUNTIME" ;;
	h_fio_qd32) run_fio "$out" --rw=randread --bs=4k --ioengine=io_uring --iodepth=32 \
		--norandommap --lat_percentiles=1 ;;
	i_kv_read32) kvb "$out" --db "$KV_READ" --use-existing --cache-size 0 --async-depth 32 \
		--benchmarks readrandom --reads $BIG --duration "$RUNTIME" ;;
	j_kv_cached) kvb "$out" --db "$KV_READ" --use-existing --cache-size "$CACHE_ALL" \
		--benchmarks readseq,readrandom --reads $BIG --duration "$RUNTIME" ;;
	k_rocks_read) run_db_bench "$out" --benchmarks=readrandom --use_existing_db=1 \
		--db="$ROCKS_READ" --use_direct_reads=1 --cache_size=8388608 --reads=$BIG \
		--duration="$RUNTIME" ;;
	esac
}

# Stores the read jobs share, filled once (not timed).
log "filling the read stores: kvbench fillrandom $NUM keys${DB_BENCH:+, db_bench fillrandom}"
kvb "$OUT/prep_kv_read.json" --db "$KV_READ" --benchmarks fillrandom
if [ -n "$DB_BENCH" ]; then
	run_db_bench "$OUT/prep_rocks_read.txt" --benchmarks=fillrandom --db="$ROCKS_READ"
fi
# fio's file: the size of the kvbench store (at least 64 MiB), written in full.
FIO_SIZE=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["final"]["disk_bytes"]
print(max(64, -(-d // (1 << 20)))) ' "$OUT/prep_kv_read.json")m
# A cache for every value: value + ~72 bytes of overhead each, twice over.
CACHE_ALL=$(((NUM * 200 * 2 + (1 << 20) - 1) / (1 << 20)))m
log "pre-writing $FIO_FILE ($FIO_SIZE)"
fio --name=prefill --filename="$FIO_FILE" --rw=write --bs=1m --size="$FIO_SIZE" --direct=1 \
	--ioengine=psync --output-format=terse >/dev/null

jobs=(a_fio_sync b_kv_sync1 c_kv_sync32 d_rocks_fill e_kv_fill f_fio_qd1 g_kv_read1
	h_fio_qd32 i_kv_read32 j_kv_cached k_rocks_read)
[ -n "$DB_BENCH" ] || jobs=(a_fio_sync b_kv_sync1 c_kv_sync32 e_kv_fill f_fio_qd1
	g_kv_read1 h_fio_qd32 i_kv_read32 j_kv_cached)
n=${#jobs[@]}
start=$(date +%s)
for ((rep = 0; rep < REPS; rep++)); do
	for ((k = 0; k < n; k++)); do
		job=${jobs[$(((k + rep) % n))]}
		log "rep $((rep + 1))/$REPS $job ($(($(date +%s) - start)) s)"
		run_job "$job" "$OUT/rep${rep}_${job}"
	done
done
rm -rf "$WORK/kv-w" "$WORK/rocks-w"

python3 - "$OUT" "$REPS" "$NUM" "$RUNTIME" "$FIO_SIZE" "$CACHE_ALL" "${jobs[@]}" <<'EOF'
import json, os, re, statistics, sys

out, reps, num, runtime, fio_size, cache_all = sys.argv[1:7]
reps = int(reps)
jobs = sys.argv[7:]

def fio(path, kind):
    j = json.load(open(path))["jobs"][0]
    if kind == "sync":
        return {"rate": j["write"]["iops"],
                "p99": j["sync"]["lat_ns"]["percentile"]["99.000000"] / 1e3,
                "note": f"write clat p99 {j['write']['clat_ns']['percentile']['99.000000'] / 1e3:.0f} us"}
    # lat (submission to completion, --lat_percentiles=1): the whole request, as
    # kvbench's latency; clat would leave out the submission.
    return {"rate": j["read"]["iops"],
            "p99": j["read"]["lat_ns"]["percentile"]["99.000000"] / 1e3, "note": ""}

def kv(path):
    d = json.load(open(path))
    r = d["results"][-1]
    note, ok = [], r.get("check_ok", True)
    if "check_ok" in r:
        note.append(f"found {r['found']}/{r['expected_found']}" + ("" if ok else " MISMATCH"))
        note.append(f"cache hits {100 * r['cache_hit_rate']:.0f}%")
        note.append(f"device ops/get {r['io_ops'] / max(r['ops'], 1):.2f}")
    if "sync_after_ms" in r:
        note.append(f"sync after {r['sync_after_ms']:.0f} ms")
    if r["gc_stalls"]:
        note.append(f"{r['gc_stalls']} gc stalls")
    return {"rate": r["ops_per_s"], "p99": r["lat_p99_us"], "ok": ok, "note": ", ".join(note)}

def rocks(path, bench):
    text = open(path).read()
    m = re.search(rf"^{bench}\s*:\s*([\d.]+) micros/op (\d+) ops/sec", text, re.M)
    if not m:
        sys.exit(f"kv_vs_peers: no '{bench}' result in {path}")
    p99 = re.search(r"P99: ([\d.]+)", text)
    found = re.search(r"\((\d+) of (\d+) found\)", text)
    return {"rate": float(m.group(2)), "p99": float(p99.group(1)) if p99 else float("nan"),
            "note": f"found {found.group(1)}/{found.group(2)}" if found else ""}

def load(rep, job):
    path = os.path.join(out, f"rep{rep}_{job}")
    if job == "a_fio_sync":
        return fio(path, "sync")
    if job in ("f_fio_qd1", "h_fio_qd32"):
        return fio(path, "read")
    if job == "d_rocks_fill":
        return rocks(path, "fillrandom")
    if job == "k_rocks_read":
        return rocks(path, "readrandom")
    return kv(path)

res = {j: [load(r, j) for r in range(reps)] for j in jobs}
names = {
    "a_fio_sync": "a fio 4K write+fdatasync QD1",
    "b_kv_sync1": "b kv durable puts, 1 thread",
    "c_kv_sync32": "c kv durable puts, 32 threads",
    "d_rocks_fill": "d rocksdb fillrandom",
    "e_kv_fill": "e kv fillrandom",
    "f_fio_qd1": "f fio 4K randread QD1",
    "g_kv_read1": "g kv readrandom uncached QD1",
    "h_fio_qd32": "h fio 4K randread QD32",
    "i_kv_read32": "i kv readrandom uncached async32",
    "j_kv_cached": "j kv readrandom all cached",
    "k_rocks_read": "k rocksdb readrandom direct 8M",
}

def count(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    return f"{v / 1e3:.1f}k" if v >= 1e4 else f"{v:.0f}"

def us(v):
    return f"{v:.0f}" if v >= 10 else f"{v:.2f}"

def spread(vals, fmt):
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}-{fmt(max(vals))})"

print(f"\nAuraKV vs fio and RocksDB: {num} keys of 16 B, values of 100 B; {runtime} s per "
      f"timed job; {reps} interleaved rep(s)")
print(f"fio files {fio_size} (the kv store's size), written in full first; cached job: "
      f"--cache-size {cache_all}")
print("medians (min-max); rates are ops/s (fio: IOPS); p99 per operation in us "
      "(fio a: sync latency; fio f, h: submission to completion)\n")
hdr = f"{'job':<36}{'rate /s':<27}{'p99 us':<22}notes (last rep)"
print(hdr)
print("-" * 110)
for j in jobs:
    rows = res[j]
    print(f"{names[j]:<36}{spread([x['rate'] for x in rows], count):<27}"
          f"{spread([x['p99'] for x in rows], us):<22}{rows[-1]['note']}")

def ratio(a, b):
    if a not in res or b not in res:
        return None
    return statistics.median(x["rate"] / y["rate"] if y["rate"] else float("nan")
                             for x, y in zip(res[a], res[b]))

def median(a):
    return statistics.median(x["rate"] for x in res[a]) if a in res else None

checks = [
    ("(1) durable puts 1 thr / fio sync", ratio("b_kv_sync1", "a_fio_sync"), 0.9, "{:.2f}"),
    ("(2) durable puts 32 thr, /s", median("c_kv_sync32"), 50000, "{:,.0f}"),
    ("(3) fillrandom / rocksdb fillrandom", ratio("e_kv_fill", "d_rocks_fill"), 3, "{:.2f}"),
    ("(4a) readrandom QD1 / fio QD1", ratio("g_kv_read1", "f_fio_qd1"), 0.9, "{:.2f}"),
    ("(4b) readrandom async 32 / fio QD32", ratio("i_kv_read32", "h_fio_qd32"), 0.9, "{:.2f}"),
    ("(5) cached gets/s, 1 thread", median("j_kv_cached"), 500000, "{:,.0f}"),
]
print(f"\n{'target (median of per-rep ratios)':<40}{'value':>12}  {'target':<12}result")
print("-" * 74)
failed = skipped = 0
for name, v, target, fmt in checks:
    tgt = f">= {target:,}" if target >= 1000 else f">= {target}"
    if v is None:
        skipped += 1
        print(f"{name:<40}{'-':>12}  {tgt:<12}SKIP (db_bench not installed)")
        continue
    ok = v >= target
    failed += not ok
    print(f"{name:<40}{fmt.format(v):>12}  {tgt:<12}{'PASS' if ok else 'FAIL'}")
bad = [f"{j} rep {r + 1}" for j in jobs for r, x in enumerate(res[j]) if not x.get("ok", True)]
print(f"{'(6) kvbench reads found every key':<40}{'':>12}  {'all':<12}"
      f"{'PASS' if not bad else 'FAIL: ' + ', '.join(bad)}")
failed += bool(bad)
ref = ratio("g_kv_read1", "k_rocks_read")
if ref is not None:
    print(f"\nreference: kv uncached readrandom QD1 / rocksdb readrandom (direct reads, "
          f"8 MiB cache): {ref:.2f}x")
print(f"\n{len(checks) + 1 - failed - skipped}/{len(checks) + 1 - skipped} targets met"
      f"{f', {skipped} skipped' if skipped else ''}.")
EOF
