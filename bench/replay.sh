#!/usr/bin/env bash
# Files-in, files-out throughput of the join (release build) against a
# parse-only baseline on the same files, with peak RSS of each.
#
#   bench/replay.sh [small|medium|large] [--check|--callgrind]
#
# Data sets come from this repository: the runtime's built-in generator
# (`streamjoin-runtime generate`; small 1M records in 4 partitions, medium 10M in
# 4, large 100M in 8), written once into $STREAMJOIN_DATA (default
# /var/tmp/streamjoin-data) as runtime-<set>. --check also compares the output
# and its counters with the project's reference implementation
# (`streamjoin-reference compare --strict`; seconds for small, about a minute for
# medium). Exits non-zero when a target is missed (a median of at least
# 1,000,000 records/s end to end and at least 45% of the parse-only baseline) or
# when --check finds a difference. The JSON line also gives the peak of live
# (open) entries, peak RSS per live entry, and the RocksDB state directory's
# largest size during the run per live entry (the replay samples both every
# 100 ms; see `_summary.json`); BENCH_ROCKSDB_ONLY=1 adds a run without the
# entry cache for the on-disk bytes of an entry.
#
# --callgrind instead counts instructions (valgrind's callgrind, installed with
# apt-get when missing) of one single-threaded replay: a figure independent of
# the machine's load. It prints instructions per record and the functions with
# the largest own share, and keeps the profile in ~/.cache/streamjoin/callgrind/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

set_name="${1:-medium}"
check="${2:-}"
data="${STREAMJOIN_DATA:-/var/tmp/streamjoin-data}"
case "$set_name" in
  small) gen_args=(--events 1000000 --partitions 4 --seed 1) ;;
  medium) gen_args=(--events 10000000 --partitions 4 --seed 2) ;;
  large) gen_args=(--events 100000000 --partitions 8 --seed 3) ;;
  *) echo "unknown data set $set_name" >&2; exit 2 ;;
esac
# Whole-workspace builds only: a per-package build resolves features differently
# and would compile RocksDB again.
cargo build --release --workspace --bins
cargo bench --workspace --bench parse_baseline --no-run
bin="$CARGO_TARGET_DIR/release/streamjoin-runtime"
reference="$CARGO_TARGET_DIR/release/streamjoin-reference"

input="$data/runtime-$set_name"
if [ ! -f "$input/manifest.json" ]; then
  echo "generating $set_name into $input" >&2
  mkdir -p "$data"
  rm -rf "$input.tmp"
  "$bin" generate --out "$input.tmp" "${gen_args[@]}"
  mv "$input.tmp" "$input"
fi
threads="$(nproc)"

if [ "$check" = "--callgrind" ]; then
  if ! command -v valgrind > /dev/null; then
    t0=$SECONDS
    apt-get install -y -qq valgrind > /dev/null
    echo "installed valgrind in $((SECONDS - t0)) s" >&2
  fi
  profiles="$HOME/.cache/streamjoin/callgrind"
  mkdir -p "$profiles"
  profile="$profiles/replay-$set_name-$(date -u +%Y%m%dT%H%M%SZ).cg"
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
  valgrind --tool=callgrind --callgrind-out-file="$profile" \
    "$bin" replay --input "$input" --output "$out/run" --threads 1 > "$out/.log" 2>&1
  callgrind_annotate "$profile" > "$out/.annotate"
  python3 - "$out/.annotate" "$out/run/_summary.json" "$set_name" "$profile" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
records = json.load(open(sys.argv[2]))["records"]
total = int(re.search(r"^([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text, re.M).group(1).replace(",", ""))
top = []
for m in re.finditer(r"^\s*([\d,]+) \(\s*([\d.]+)%\)\s+\S*?:(.+?)(?: \[.*\])?$", text, re.M):
    name = m.group(3).strip()
    if name == "PROGRAM TOTALS" or len(top) >= 15:
        continue
    top.append({"function": name, "share": round(float(m.group(2)) / 100, 4),
                "per_record": round(int(m.group(1).replace(",", "")) / records)})
print(json.dumps({"benchmark": "replay_callgrind", "data_set": sys.argv[3], "threads": 1,
                  "records": records, "instructions": total,
                  "instructions_per_record": round(total / records), "profile": sys.argv[4],
                  "top_self": top}))
PY
  exit 0
fi

# Warm the page cache so both runs read from memory.
cat "$input"/*.jsonl > /dev/null

# Each side runs $BENCH_RUNS times (default 3) and the median counts: this shared
# machine's page-cache and first-touch costs vary from run to run.
runs="${BENCH_RUNS:-3}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
: > "$out/.baselines"
: > "$out/.runs"
for i in $(seq "$runs"); do
  cargo bench -q --workspace --bench parse_baseline -- "$input" "$threads" 2>/dev/null | tail -1 >> "$out/.baselines"
  rm -rf "$out/run" && mkdir "$out/run"
  /usr/bin/time -v "$bin" replay --input "$input" --output "$out/run" --threads "$threads" 2> "$out/.time" >/dev/null
  rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$out/.time")
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); s["rss_kb"]=int(sys.argv[2]); print(json.dumps(s))' \
    "$out/run/_summary.json" "$rss_kb" >> "$out/.runs"
done

# BENCH_ROCKSDB_ONLY=1: one more run with every entry in RocksDB only (no
# entry cache), whose state directory shows the on-disk bytes of an entry (with
# the default cache the entries of these sets never leave memory). Slow: about
# 70k records/s.
: > "$out/.rocksdb_only"
if [ "${BENCH_ROCKSDB_ONLY:-0}" = 1 ]; then
  cat > "$out/rocksdb-only.yaml" <<'YAML'
apiVersion: streamjoin.dev/v1alpha1
kind: StreamJoinJob
metadata:
  name: replay-rocksdb-only
spec:
  parallelism: 1
  kafka:
    bootstrapServers: localhost:9092
  inputs:
    impressions: { topic: impressions }
    plays: { topic: plays }
  output: { topic: impression-plays-replay }
  deadLetter: { topic: impression-plays-replay-dead-letter }
  join:
    window: 4h
    allowedLateness: 0s
  watermarks:
    maxOutOfOrderness: 2m
    idleTimeout: 1m
    inactivityTimeout: null
  stateStore:
    cacheEntries: 0
  delivery: atLeastOnce
YAML
  rm -rf "$out/rocksdb-only" && mkdir "$out/rocksdb-only"
  "$bin" replay --job "$out/rocksdb-only.yaml" --input "$input" --output "$out/rocksdb-only" \
    --threads "$threads" > /dev/null
  cp "$out/rocksdb-only/_summary.json" "$out/.rocksdb_only"
fi

status=0
python3 - "$out/.runs" "$out/.baselines" "$set_name" "$out/.rocksdb_only" <<'PY' || status=$?
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
bases = [json.loads(l) for l in open(sys.argv[2])]
only = open(sys.argv[4]).read().strip()
only = json.loads(only) if only else None
rates = sorted(r["records"] / r["elapsed_seconds"] for r in runs)
base_rates = sorted(b["records_per_second"] for b in bases)
e2e = statistics.median(rates)
base = statistics.median(base_rates)
ratio = e2e / base
s = runs[0]
peak_live = max(r.get("peak_live_entries", 0) for r in runs)
disk = max(r.get("state_dir_bytes_peak") or 0 for r in runs)
disk_data = max(r.get("state_data_bytes_peak") or 0 for r in runs)
def per_live(n):
    return round(n / peak_live, 1) if peak_live else None
print(json.dumps({
    "benchmark": "replay_files", "data_set": sys.argv[3], "threads": s["threads"], "runs": len(runs),
    "records": s["records"], "entries": s["entries"],
    "records_per_second": round(e2e), "records_per_second_each": [round(r) for r in rates],
    "peak_rss_mb": round(max(r["rss_kb"] for r in runs) / 1024, 1),
    "peak_live_entries": peak_live,
    "peak_rss_bytes_per_live_entry": per_live(max(r["rss_kb"] for r in runs) * 1024),
    "state_dir_bytes_peak": disk, "state_data_bytes_peak": disk_data,
    "state_dir_bytes_at_end": max(r.get("state_dir_bytes_at_end") or 0 for r in runs),
    "disk_bytes_per_live_entry": per_live(disk),
    "disk_data_bytes_per_live_entry": per_live(disk_data),
    "parse_only_records_per_second": round(base), "parse_only_each": [round(b) for b in base_rates],
    "parse_only_peak_rss_mb": round(max(b["peak_rss_bytes"] or 0 for b in bases) / 2**20, 1),
    "fraction_of_parse_only": round(ratio, 3),
    **({} if only is None else {
        "rocksdb_only_records_per_second": round(only["records_per_second"]),
        "rocksdb_only_peak_live_entries": only["peak_live_entries"],
        "rocksdb_only_state_data_bytes_peak": only["state_data_bytes_peak"],
        "rocksdb_only_disk_data_bytes_per_live_entry":
            round(only["state_data_bytes_peak"] / only["peak_live_entries"], 1)
            if only["peak_live_entries"] else None,
    }),
}))
ok = e2e >= 1_000_000 and ratio >= 0.45
print("targets (median >= 1,000,000 records/s, >= 45% of parse-only):", "met" if ok else "MISSED")
sys.exit(0 if ok else 1)
PY
if [ "$check" = "--check" ]; then
  "$reference" compare --strict --in "$input" --actual "$out/run" --counters "$out/run/_summary.json" \
    > "$out/.check" || status=1
  grep '^reference: .* expected' "$out/.check"
  grep '^reference counts:' "$out/.check"
fi
exit $status
