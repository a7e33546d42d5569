#!/usr/bin/env bash
# The runtime against the Flink baseline on one data set, in one sitting
# (issue 18, point 2): process wall time of `streamjoin-runtime replay` and of
# the Flink job (bench/flink/run.sh) with RocksDB state and with heap state.
#
#   bench/flink/compare.sh [small|medium]     (default medium)
#
# Order: runtime, Flink with RocksDB, Flink with heap state, runtime again (the
# runtime's figure is the mean of its two runs, so a machine that slows down
# during the Flink runs counts against both). Prints one JSON line; exits 1 when
# the runtime is less than 50 times faster than Flink with RocksDB state.
set -euo pipefail
cd "$(dirname "$0")/../.."
set_name="${1:-medium}"
data="${STREAMJOIN_DATA:-/var/tmp/streamjoin-data}"
input="$data/runtime-$set_name"
# Builds the runtime and generates the data set when missing.
BENCH_RUNS=1 bash bench/replay.sh "$set_name" > /dev/null 2>&1 || true
[ -f "$input/manifest.json" ] || { echo "compare.sh: no data set at $input" >&2; exit 2; }
source scripts/env.sh
bin="$CARGO_TARGET_DIR/release/streamjoin-runtime"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

runtime_seconds() {
  cat "$input"/*.jsonl > /dev/null
  rm -rf "$out/run" && mkdir "$out/run"
  /usr/bin/time -f %e -o "$out/.wall" "$bin" replay --input "$input" --output "$out/run" \
    --threads "$(nproc)" > /dev/null 2>&1
  cat "$out/.wall"
}
flink_seconds() {
  bash bench/flink/run.sh "$input" "$@" | tail -1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["process_seconds"])'
}

r1="$(runtime_seconds)"
rocks="$(flink_seconds)"
heap="$(flink_seconds -- --conf 'state.backend.type=hashmap')"
r2="$(runtime_seconds)"
python3 - "$set_name" "$r1" "$r2" "$rocks" "$heap" <<'PY'
import json, sys
name, r1, r2, rocks, heap = sys.argv[1], *map(float, sys.argv[2:])
runtime = (r1 + r2) / 2
result = {"benchmark": "runtime_vs_flink", "data_set": name,
          "runtime_seconds": [r1, r2], "flink_rocksdb_seconds": rocks,
          "flink_heap_seconds": heap,
          "faster_than_flink_rocksdb": round(rocks / runtime, 1),
          "faster_than_flink_heap": round(heap / runtime, 1)}
print(json.dumps(result))
ok = result["faster_than_flink_rocksdb"] >= 50
print(f"target (at least 50x Flink with RocksDB state): {'met' if ok else 'MISSED'}")
sys.exit(0 if ok else 1)
PY
