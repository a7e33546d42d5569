#!/usr/bin/env bash
# Builds the runtime and runs the embedded demo: generated impressions and plays,
# joined locally (no cluster, no broker). Extra arguments go to `demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# Build the whole workspace: a build of one package resolves features differently
# and would compile RocksDB a second time.
cargo build --release --workspace --bins
exec "$CARGO_TARGET_DIR/release/streamjoin-runtime" demo "$@"
