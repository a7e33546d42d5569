#!/usr/bin/env bash
# Builds the runtime and runs the embedded demo: generated impressions and plays,
# joined locally (no cluster, no broker). Extra arguments go to `demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo run --release -p streamjoin-runtime --bin streamjoin-runtime -- demo "$@"
