#!/usr/bin/env bash
# Runs the whole test suite, installing what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# helm, lua5.1 and promtool for the packaging tests (chart, Argo CD health check, alerts).
source scripts/tools.sh

if [ ! -f ../shared/bench/oracle.py ]; then
  echo "warning: ../shared/bench (reference generator and oracle) not found; the oracle tests will fail" >&2
fi

# Kafka-protocol brokers for the Kafka tests (each test starts its own on a free port).
bash scripts/brokers.sh
export STREAMJOIN_BROKERS="${STREAMJOIN_BROKERS:-$HOME/.cache/streamjoin/brokers}"

# One build profile (release) for tests, benchmarks and the demo: RocksDB is built once.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --release --no-fail-fast "$@"
else
  cargo test --workspace --release --no-fail-fast "$@"
fi
