#!/usr/bin/env bash
# Files-in, files-out throughput of the join (release build) against a
# parse-only baseline on the same files, with peak RSS of each.
#
#   bench/replay.sh [small|medium|large] [--check]
#
# Data sets are those of ../shared/bench/WORKLOAD.md, generated once into
# $STREAMJOIN_DATA (default /var/tmp/streamjoin-data). --check also compares the
# output with the oracle (minutes for medium). Exits non-zero when a target is
# missed: at least 1,000,000 records/s end to end and at least 30% of the
# parse-only baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

set_name="${1:-medium}"
check="${2:-}"
data="${STREAMJOIN_DATA:-/var/tmp/streamjoin-data}"
bench_py="$(cd ../shared/bench && pwd)"
case "$set_name" in
  small) gen_args=(--events 1000000 --partitions 4 --seed 1) ;;
  medium) gen_args=(--events 10000000 --partitions 4 --seed 2) ;;
  large) gen_args=(--events 100000000 --partitions 8 --seed 3) ;;
  *) echo "unknown data set $set_name" >&2; exit 2 ;;
esac
input="$data/$set_name"
if [ ! -f "$input/manifest.json" ]; then
  echo "generating $set_name into $input" >&2
  mkdir -p "$data"
  python3 "$bench_py/gen_events.py" --out "$input.tmp" "${gen_args[@]}"
  mv "$input.tmp" "$input"
fi

# Whole-workspace builds only: a per-package build resolves features differently
# and would compile RocksDB again.
cargo build --release --workspace --bins
cargo bench --workspace --bench parse_baseline --no-run
bin="$CARGO_TARGET_DIR/release/streamjoin-runtime"
threads="$(nproc)"

# Warm the page cache so both runs read from memory.
cat "$input"/*.jsonl > /dev/null

baseline=$(cargo bench -q --workspace --bench parse_baseline -- "$input" "$threads" 2>/dev/null | tail -1)
echo "parse-only: $baseline"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
/usr/bin/time -v "$bin" replay --input "$input" --output "$out" --threads "$threads" 2> "$out/.time" >/dev/null
rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$out/.time")
summary="$out/_summary.json"

python3 - "$summary" "$rss_kb" "$baseline" "$set_name" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
rss_kb = int(sys.argv[2])
base = json.loads(sys.argv[3])
e2e = s["records"] / s["elapsed_seconds"]
ratio = e2e / base["records_per_second"]
print(json.dumps({
    "benchmark": "replay_files", "data_set": sys.argv[4], "threads": s["threads"],
    "records": s["records"], "entries": s["entries"], "seconds": round(s["elapsed_seconds"], 3),
    "records_per_second": round(e2e), "peak_rss_mb": round(rss_kb / 1024, 1),
    "parse_only_records_per_second": round(base["records_per_second"]),
    "parse_only_peak_rss_mb": round((base["peak_rss_bytes"] or 0) / 2**20, 1),
    "fraction_of_parse_only": round(ratio, 3),
}))
ok = e2e >= 1_000_000 and ratio >= 0.30
print("targets (>= 1,000,000 records/s, >= 30% of parse-only):", "met" if ok else "MISSED")
sys.exit(0 if ok else 1)
PY
status=$?
if [ "$check" = "--check" ]; then
  python3 "$bench_py/oracle.py" compare --strict --in "$input" --actual "$out" | tail -1
fi
exit $status
