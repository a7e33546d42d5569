#!/usr/bin/env bash
# The example job on a local cluster (README "Try the operator on a local cluster").
#
#   scripts/local-demo.sh up     control plane, Kafka, a local kubelet, the operator,
#                                then the example job (examples/local/patch.yaml)
#   scripts/local-demo.sh down   stops the operator, kubelet and Kafka it started and
#                                deletes the job's namespace (the control plane stays:
#                                scripts/cluster.sh down)
#
# Environment (all optional):
#   STREAMJOIN_DEMO_DIR        state: pids, logs, Kafka data (default ~/.cache/streamjoin/demo)
#   STREAMJOIN_DEMO_NAMESPACE  the job's namespace (default streaming)
#   STREAMJOIN_KUBELET_NODE    a node whose kubelet already runs (then none is started)
#   STREAMJOIN_DEMO_NODE       the node name of the kubelet started here (default local)
#   STREAMJOIN_DEMO_POD_IPS    its pod address range (default 127.0.0.2-127.0.0.254)
#   STREAMJOIN_DEMO_NO_BUILD=1 skip `cargo build` (the binaries are built)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${STREAMJOIN_DEMO_DIR:-$HOME/.cache/streamjoin/demo}"
ns="${STREAMJOIN_DEMO_NAMESPACE:-streaming}"
mkdir -p "$dir"

step() { echo "local-demo: $*" >&2; }

# Starts "$@" in the background, its output in $dir/$name.log, its pid in $dir/$name.pid.
background() {
  local name="$1"
  shift
  nohup "$@" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

stop_pid() {
  local file="$dir/$1.pid"
  [ -f "$file" ] || return 0
  local pid
  pid="$(cat "$file")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

up() {
  local t0=$SECONDS
  "$repo/scripts/cluster.sh" up >/dev/null
  eval "$("$repo/scripts/cluster.sh" env)"
  step "control plane up ($((SECONDS - t0)) s)"
  # shellcheck source=env.sh
  source "$repo/scripts/env.sh"
  local bin="$CARGO_TARGET_DIR/release"
  if [ "${STREAMJOIN_DEMO_NO_BUILD:-0}" != 1 ]; then
    t0=$SECONDS
    (cd "$repo" && cargo build --workspace --release --all-targets)
    step "built ($((SECONDS - t0)) s)"
  fi
  kubectl() { "$STREAMJOIN_KUBECTL" "$@"; }

  t0=$SECONDS
  local bootstrap
  bootstrap="$("$repo/scripts/kafka.sh" start "$dir/kafka")"
  "$bin/examples/kafka_topics" "$bootstrap" 4 impressions plays impression-plays \
    impression-plays-dead-letter impression-plays-late >&2
  step "Kafka on $bootstrap ($((SECONDS - t0)) s)"

  local node="${STREAMJOIN_KUBELET_NODE:-}"
  if [ -z "$node" ]; then
    node="${STREAMJOIN_DEMO_NODE:-local}"
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR" background kubelet "$bin/streamjoin-local-kubelet" \
      --kubeconfig "$KUBECONFIG" --node-name "$node" --root-dir "$dir/kubelet" \
      --pod-ip-range "${STREAMJOIN_DEMO_POD_IPS:-127.0.0.2-127.0.0.254}" \
      --images "$repo/local-kubelet/images.example.yaml"
    echo "$node" >"$dir/node"
    # `kubectl wait` fails at once on a node not registered yet.
    for _ in $(seq 100); do
      kubectl get node "$node" >/dev/null 2>&1 && break
      sleep 0.3
    done
    kubectl wait --for=condition=Ready "node/$node" --timeout=60s >&2
    step "kubelet of node $node running (log $dir/kubelet.log)"
  fi

  kubectl apply --server-side -f "$repo/crds/streamjoinjob.yaml" >&2
  kubectl wait --for=condition=Established crd/streamjoinjobs.streamjoin.dev --timeout=60s >&2
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >&2
  # The operator on this machine, as the cluster admin, watching the job's
  # namespace; it reaches the pods by their IPs (no cluster DNS here).
  background operator "$bin/streamjoin-operator" run --no-leader-election \
    --namespaces "$ns" --pod-address ip --http-addr 127.0.0.1:0 --log-format text
  step "operator running (log $dir/operator.log)"

  kubectl patch --local -f "$repo/examples/streamjoinjob.yaml" --type json \
    --patch-file "$repo/examples/local/patch.yaml" -o yaml |
    kubectl patch --local -f - --type json -o yaml -p "[
      {\"op\": \"replace\", \"path\": \"/metadata/namespace\", \"value\": \"$ns\"},
      {\"op\": \"replace\", \"path\": \"/spec/kafka/bootstrapServers\", \"value\": \"$bootstrap\"},
      {\"op\": \"add\", \"path\": \"/spec/podTemplate/nodeSelector\",
       \"value\": {\"kubernetes.io/hostname\": \"$node\"}}]" |
    kubectl apply --server-side -f - >&2
  step "job applied; watch it with: $STREAMJOIN_KUBECTL get sjj -n $ns -w"
}

down() {
  local env_lines
  if env_lines="$("$repo/scripts/cluster.sh" env 2>/dev/null)"; then
    eval "$env_lines"
    # While the operator (the job's finalizer) and the kubelet (the pods' ends) run.
    "$STREAMJOIN_KUBECTL" delete namespace "$ns" --ignore-not-found --timeout=120s >&2 || true
  fi
  stop_pid operator
  if [ -f "$dir/kubelet.pid" ]; then
    stop_pid kubelet
    if [ -n "${STREAMJOIN_KUBECTL:-}" ] && [ -f "$dir/node" ]; then
      "$STREAMJOIN_KUBECTL" delete node "$(cat "$dir/node")" --ignore-not-found --wait=false >&2 || true
    fi
  fi
  if [ -f "$dir/kafka/pid" ]; then
    "$repo/scripts/kafka.sh" stop "$dir/kafka"
    rm -rf "$dir/kafka"
  fi
  step "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *)
    echo "usage: scripts/local-demo.sh up|down" >&2
    exit 2
    ;;
esac
