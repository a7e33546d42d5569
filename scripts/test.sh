#!/usr/bin/env bash
# Runs the whole test suite. Installs and builds what the tests need (system
# packages, helm/lua/promtool, cargo-nextest, the local Kubernetes control plane,
# Apache Kafka, the S3 store, the workspace), starts the shared components, runs
# every test and a short run of each fuzz target, and stops what it started, also
# on failure. Each step prints its time.
# Extra arguments go to `cargo nextest run` (for example a test-name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
logs="${STREAMJOIN_TEST_LOGS:-$HOME/.cache/streamjoin/test-logs}"
mkdir -p "$logs"

step_start=$SECONDS
step() {
  echo "test.sh: $1 took $((SECONDS - step_start)) s" >&2
  step_start=$SECONDS
}

source scripts/env.sh
# helm, lua5.1 and promtool for the packaging tests (chart, Argo CD health check, alerts).
source scripts/tools.sh
source scripts/nextest.sh
step "system packages and tools"

# The Go builds (control plane, S3 store) and the Maven download (Kafka) run beside
# the Rust build: each has long single-threaded stretches (links, RocksDB's last files).
pids=()
names=()
background() {
  local name="$1"
  shift
  "$@" >"$logs/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}
background cluster-build bash scripts/cluster.sh build
background s3-install bash scripts/s3.sh install
background kafka-install bash scripts/kafka.sh install
# One build profile (release) for tests, benchmarks and the demo: RocksDB is built once.
cargo build --workspace --release --all-targets
step "cargo build (workspace, release, all targets)"
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "test.sh: ${names[$i]} failed; its log ($logs/${names[$i]}.log) ends:" >&2
    tail -n 40 "$logs/${names[$i]}.log" >&2
    failed=1
  fi
  # The S3 install says "took N s", the Kafka install "in N s", the cluster build "N s, peak RSS".
  grep -hE " took |: [0-9]+ s, peak RSS | in [0-9]+ s$" "$logs/${names[$i]}.log" >&2 || true
done
[ "$failed" -eq 0 ] || exit 1
step "waiting for the Go and Maven builds"

# The shared components run in state directories of their own (a cluster a
# developer keeps running is left alone) and are stopped on exit, also on failure.
export STREAMJOIN_CLUSTER_DIR="$HOME/.cache/streamjoin/cluster-test"
export STREAMJOIN_S3_DIR="$HOME/.cache/streamjoin/s3-test"
fuzz_pid=""
cleanup() {
  local code=$?
  [ -z "$fuzz_pid" ] || kill -- "-$fuzz_pid" 2>/dev/null || true
  bash scripts/s3.sh down >/dev/null 2>&1 || true
  bash scripts/cluster.sh down >/dev/null 2>&1 || true
  exit "$code"
}
trap cleanup EXIT
bash scripts/cluster.sh up >/dev/null
source "$STREAMJOIN_CLUSTER_DIR/env"
bash scripts/s3.sh up >/dev/null
# (an assignment first, so that a failing `env` stops the script)
exports="$(bash scripts/s3.sh env)"
eval "$exports"
exports="$(bash scripts/kafka.sh env)"
eval "$exports"
step "starting the control plane and the S3 store"

# A short run of each fuzz target (the parsers of records, job manifests,
# checkpoint and savepoint manifests and admin request bodies) on stable Rust,
# from the committed seeds; a crash fails the suite. A filtered run leaves it out.
# It runs beside the tests, one target at a time at the lowest CPU priority: the
# tests' heavy binaries run one at a time and leave a core mostly idle (cold, the
# cargo-fuzz install and the targets' build take ~4 minutes of it).
if [ $# -eq 0 ]; then
  # Its own process group, so that an early exit stops all of it.
  STREAMJOIN_FUZZ_PARALLEL=1 setsid nice -n 19 bash scripts/fuzz.sh smoke \
    >"$logs/fuzz-smoke.log" 2>&1 &
  fuzz_pid=$!
fi

tests_rc=0
cargo nextest run --workspace --release --no-fail-fast "$@" || tests_rc=$?
step "tests"

if [ -n "$fuzz_pid" ]; then
  fuzz_rc=0
  wait "$fuzz_pid" || fuzz_rc=$?
  fuzz_pid=""
  cat "$logs/fuzz-smoke.log" >&2
  step "the rest of the fuzz smoke run (it ran beside the tests)"
  [ "$fuzz_rc" -eq 0 ] || { echo "test.sh: the fuzz smoke run failed (exit $fuzz_rc)" >&2; exit 1; }
fi
[ "$tests_rc" -eq 0 ] || exit "$tests_rc"

# The external generator and oracle, when they sit beside the clone
# (../shared/bench): the project's reference implementation is checked against
# them. Nothing above needs them; a filtered run leaves this out.
shared_bench="${STREAMJOIN_SHARED_BENCH:-$(cd .. && pwd)/shared/bench}"
if [ $# -eq 0 ] && [ -f "$shared_bench/oracle.py" ]; then
  STREAMJOIN_SHARED_BENCH="$shared_bench" "$CARGO_TARGET_DIR/release/examples/cross_check"
  step "cross-check of the reference implementation with the external oracle"
elif [ $# -eq 0 ]; then
  echo "test.sh: no external oracle at $shared_bench; the cross-check did not run (the suite does not need it)" >&2
fi
