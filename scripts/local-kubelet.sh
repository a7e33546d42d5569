#!/usr/bin/env bash
# A long-lived local kubelet for the local cluster (scripts/cluster.sh up), for tests
# that share one node (export STREAMJOIN_KUBELET_NODE=<node>).
#   scripts/local-kubelet.sh up      start it (idempotent), wait for its Node to be Ready
#   scripts/local-kubelet.sh down    stop it (SIGTERM: containers get their grace period)
#   scripts/local-kubelet.sh status  print whether it runs
# Environment: STREAMJOIN_KUBECONFIG (default ~/.cache/streamjoin/cluster/kubeconfig),
# STREAMJOIN_KUBELET_NODE (default local), STREAMJOIN_KUBELET_IMAGES (default
# local-kubelet/images.example.yaml). Logs: ~/.cache/streamjoin/kubelet/kubelet.log.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
state="$HOME/.cache/streamjoin/kubelet"
pidfile="$state/kubelet.pid"
node="${STREAMJOIN_KUBELET_NODE:-local}"
kubeconfig="${STREAMJOIN_KUBECONFIG:-$HOME/.cache/streamjoin/cluster/kubeconfig}"
images="${STREAMJOIN_KUBELET_IMAGES:-$repo/local-kubelet/images.example.yaml}"
mkdir -p "$state"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

node_ready() {
  local kubectl="${STREAMJOIN_KUBECTL:-kubectl}"
  "$kubectl" --kubeconfig "$kubeconfig" get node "$node" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

up() {
  [ -f "$kubeconfig" ] || { echo "no kubeconfig at $kubeconfig: start the cluster first (scripts/cluster.sh up)" >&2; exit 1; }
  [ -f "$HOME/.cache/streamjoin/cluster/env" ] && source "$HOME/.cache/streamjoin/cluster/env"
  if running; then echo "local kubelet already running (pid $(cat "$pidfile"), node $node)"; return; fi
  source scripts/env.sh
  local bin="$CARGO_TARGET_DIR/release/streamjoin-local-kubelet"
  if [ ! -x "$bin" ]; then
    local t0=$(date +%s)
    cargo build --workspace --release
    echo "built the workspace in $(( $(date +%s) - t0 )) s"
  fi
  # setsid: the kubelet outlives this script; it stops on SIGTERM from `down`.
  CARGO_TARGET_DIR="$CARGO_TARGET_DIR" setsid "$bin" --kubeconfig "$kubeconfig" --node-name "$node" \
    --root-dir "$state" --images "$images" >>"$state/kubelet.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  echo "$node" > "$state/kubelet.node"
  for _ in $(seq 1 120); do
    if node_ready; then echo "local kubelet running (pid $(cat "$pidfile"), node $node, log $state/kubelet.log)"; return; fi
    running || { echo "the local kubelet exited; see $state/kubelet.log" >&2; tail -20 "$state/kubelet.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "node $node not Ready after 60 s; see $state/kubelet.log" >&2
  exit 1
}

down() {
  if ! running; then echo "local kubelet not running"; rm -f "$pidfile"; return; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 240); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  rm -f "$pidfile"
  echo "local kubelet stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if running; then echo "running (pid $(cat "$pidfile"), node $(cat "$state/kubelet.node" 2>/dev/null))"; else echo "stopped"; fi ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
