#!/usr/bin/env bash
# The local kubelet's cluster tests (local-kubelet/tests/kubelet/) against the local
# control plane. Needs root (mount namespaces). The cluster's kubeconfig comes from
# STREAMJOIN_KUBECONFIG, else ~/.cache/streamjoin/cluster/kubeconfig when present;
# without one the tests skip (and fail under CI=true).
# Usage: scripts/local-kubelet-test.sh [test-name-filter]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
default_kc="$HOME/.cache/streamjoin/cluster/kubeconfig"
if [ -z "${STREAMJOIN_KUBECONFIG:-}" ] && [ -f "$default_kc" ]; then
  export STREAMJOIN_KUBECONFIG="$default_kc"
fi
start=$(date +%s)
cargo test --workspace --release --test kubelet -- "$@"
echo "local kubelet tests: $(( $(date +%s) - start )) s"
