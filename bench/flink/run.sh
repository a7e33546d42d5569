#!/usr/bin/env bash
# Runs the Flink impression-play join on a generator directory and prints one JSON line:
#   {"benchmark":"flink_join","records":N,"seconds":S,"records_per_second":R,"entries":E,"peak_rss_mb":M,...}
#
#   bench/flink/run.sh DATA_DIR [--check] [--keep] [-- JOB_OPTIONS...]
#
# seconds is the job's own runtime (JobExecutionResult.getNetRuntime: from job start to
# end of job, so the MiniCluster's start-up is left out); process_seconds is the whole JVM,
# under /usr/bin/time -v, which also gives peak_rss_mb. The page cache is warmed first.
# DATA_DIR is a data set in the generator layout, e.g. one that bench/replay.sh wrote
# with `streamjoin-runtime generate` (/var/tmp/streamjoin-data/runtime-small).
# --check compares the output with the project's reference implementation
# (`streamjoin-reference compare`, not --strict) and adds its last line as "reference".
# JOB_OPTIONS go to the job (see README.md),
# e.g. -- --parallelism 4 --alignment-ms 0 --sink discard.
# Output goes to $FLINK_OUT (default /var/tmp/flink-out/<data set name>), removed at the end
# unless --keep. FLINK_HEAP (default 1g) is the JVM's -Xmx/-Xms.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${1:?usage: run.sh DATA_DIR [--check] [--keep] [-- JOB_OPTIONS...]}"
shift
check=0 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check=1; shift ;;
    --keep) keep=1; shift ;;
    --) shift; break ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
data="$(cd "$data" && pwd)"
[ -f "$data/manifest.json" ] || { echo "run.sh: no $data/manifest.json" >&2; exit 1; }
name="$(basename "$data")"
repo="$(cd "$here/../.." && pwd)"

cp_file="$("$here/setup.sh" | tail -1)"
classes="$(dirname "$cp_file")/classes"
out="${FLINK_OUT:-/var/tmp/flink-out/$name}"
rocks="/var/tmp/flink-rocksdb"
rm -rf "$out" "$rocks" && mkdir -p "$out" "$rocks" /var/tmp/flink-tmp

# Warm the page cache so the run reads from memory.
cat "$data"/*.jsonl > /dev/null

opens=(--add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.text=ALL-UNNAMED --add-opens=java.base/java.time=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
  --add-exports=java.base/sun.net.util=ALL-UNNAMED --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED)
heap="${FLINK_HEAP:-1g}"
/usr/bin/time -v -o "$out/_time.txt" nice -n 5 java -Xms"$heap" -Xmx"$heap" -XX:+UseG1GC "${opens[@]}" \
  -Dlog4j.configurationFile="$classes/log4j2.properties" \
  -cp "$classes:$(cat "$cp_file")" streamjoin.flink.ImpressionPlayJoin \
  --input "$data" --output "$out" --rocksdb-dir "$rocks" "$@" > "$out/_stdout.txt" 2> "$out/_stderr.txt" || {
  echo "run.sh: the job failed; last lines of its stderr:" >&2; tail -40 "$out/_stderr.txt" >&2; exit 1; }

check_line=""
if [ "$check" = 1 ]; then
  # Whole-workspace build only (a per-package one would compile RocksDB again).
  (cd "$repo" && source scripts/env.sh && cargo build -q --release --workspace --bins)
  reference="$(cd "$repo" && source scripts/env.sh && echo "$CARGO_TARGET_DIR")/release/streamjoin-reference"
  check_line="$(nice -n 5 "$reference" compare --in "$data" --actual "$out" 2> "$out/_reference.err" | tee "$out/_reference.txt" | tail -1)" || true
fi

python3 - "$out" "$name" "$check_line" <<'PY'
import json, re, sys
out, name, check = sys.argv[1], sys.argv[2], sys.argv[3]
s = json.load(open(f"{out}/_summary.json"))
t = open(f"{out}/_time.txt").read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1)
sec = 0.0
for part in wall.split(":"):
    sec = sec * 60 + float(part)
cpu = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1)) + \
      float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
r = {
    "benchmark": "flink_join", "data_set": name, "records": s["records"],
    "seconds": round(s["job_seconds"], 3),
    "records_per_second": round(s["records"] / s["job_seconds"]),
    "entries": s["entries"], "peak_rss_mb": round(rss_kb / 1024, 1),
    "process_seconds": round(sec, 3), "cpu_seconds": round(cpu, 2),
    "parallelism": s["parallelism"], "alignment_ms": s["alignment_ms"], "sink": s["sink"],
    "late": s.get("late", 0), "duplicates": s.get("duplicates", 0),
    "malformed": s.get("malformed", 0), "events": s.get("events", 0),
}
if check:
    r["reference"] = check
print(json.dumps(r))
PY
if [ "$keep" = 0 ]; then rm -rf "$out"; fi
rm -rf "$rocks"
