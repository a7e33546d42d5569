#!/usr/bin/env bash
# A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler; kubectl) built from pinned Go modules and run on 127.0.0.1.
#
#   scripts/cluster.sh build                  build what is missing (once per machine)
#   scripts/cluster.sh up                     build if needed, start, print `export KUBECONFIG=...`
#   scripts/cluster.sh down [--keep-state]    stop; removes the state unless --keep-state
#   scripts/cluster.sh env                    print the export lines of the running cluster
#   scripts/cluster.sh status                 say what runs
#   scripts/cluster.sh node-kubeconfig NAME   write a kubeconfig for a kubelet of node NAME
#
# State (pid files, logs, certificates, etcd data, kubeconfig, env) lives in
# ${STREAMJOIN_CLUSTER_DIR:-~/.cache/streamjoin/cluster}. Progress goes to stderr,
# export lines to stdout: `eval "$(scripts/cluster.sh up)"` works.
# See docs/local-cluster.md.
set -euo pipefail

STATE="${STREAMJOIN_CLUSTER_DIR:-$HOME/.cache/streamjoin/cluster}"
PKI="$STATE/pki"

say() { echo "cluster: $*" >&2; }
fail() {
  say "error: $*"
  exit 1
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cluster/build.sh"
source "$here/cluster/certs.sh"
source "$here/cluster/procs.sh"
source "$here/cluster/components.sh"

need_packages() {
  local missing=()
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  [ -x /usr/bin/time ] || missing+=(time)
  [ ${#missing[@]} -eq 0 ] && return
  say "installing system packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >&2
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Picks free loopback ports once; a restart with --keep-state reuses them (etcd
# keeps its peer address in its data).
load_ports() {
  if [ ! -s "$STATE/ports" ]; then
    local names=(ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT SCHED_PORT) picked=" " name port
    for name in "${names[@]}"; do
      port=$((20000 + RANDOM % 30000))
      while [[ "$picked" == *" $port "* ]] || ! port_free "$port"; do port=$((20000 + RANDOM % 30000)); done
      picked+="$port "
      echo "$name=$port"
    done >"$STATE/ports.tmp"
    mv "$STATE/ports.tmp" "$STATE/ports"
  fi
  source "$STATE/ports"
}

# A stopped cluster's ports may have been taken since: then it starts afresh
# (etcd's data names its peer port).
forget_taken_ports() {
  [ -s "$STATE/ports" ] || return 0
  local line
  while IFS='=' read -r _ line; do
    if ! port_free "$line"; then
      say "port $line of the previous cluster is taken: starting a new cluster"
      rm -rf "$STATE/etcd" "$STATE/ports"
      return
    fi
  done <"$STATE/ports"
}

write_env() {
  cat >"$STATE/env" <<EOF
export KUBECONFIG=$STATE/kubeconfig
export STREAMJOIN_KUBECONFIG=$STATE/kubeconfig
export STREAMJOIN_API_SERVER=https://127.0.0.1:$API_PORT
export STREAMJOIN_KUBECTL=$K8S_BIN/kubectl
export STREAMJOIN_ETCD_PORT=$ETCD_PORT
export STREAMJOIN_API_PORT=$API_PORT
export STREAMJOIN_KCM_PORT=$KCM_PORT
export STREAMJOIN_SCHEDULER_PORT=$SCHED_PORT
EOF
}

cmd_up() {
  build_all quiet
  if running && (load_ports && apiserver_ready); then
    say "already running ($STATE)"
    cat "$STATE/env"
    return
  fi
  any_running && stop_all
  mkdir -p "$STATE"
  forget_taken_ports
  chmod 700 "$STATE"
  local started=$SECONDS
  load_ports
  make_certs
  write_kubeconfigs
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  write_env
  say "up in $((SECONDS - started)) s; state in $STATE"
  cat "$STATE/env"
}

cmd_down() {
  local keep=false
  [ "${1:-}" = --keep-state ] && keep=true
  [ -d "$STATE" ] || { say "nothing to stop ($STATE does not exist)"; return; }
  stop_all
  rm -f "$STATE/env"
  if $keep; then
    say "state kept in $STATE"
  else
    # Only what `up` writes, in case STREAMJOIN_CLUSTER_DIR names a directory with other files.
    (cd "$STATE" && rm -rf etcd pki logs run nodes kube-apiserver kube-controller-manager kube-scheduler \
      ports kubeconfig ./*.kubeconfig kube-scheduler.yaml)
    rmdir "$STATE" 2>/dev/null || true
    say "state removed ($STATE)"
  fi
}

cmd_env() {
  running && [ -s "$STATE/env" ] || fail "no cluster running in $STATE (run: scripts/cluster.sh up)"
  cat "$STATE/env"
}

cmd_status() {
  local name pid all=0
  for name in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$name"); then
      echo "$name: running (pid $pid)"
    else
      echo "$name: not running"
      all=1
    fi
  done
  if [ $all -eq 0 ]; then
    load_ports
    if apiserver_ready; then echo "api server: ready at https://127.0.0.1:$API_PORT"; else echo "api server: not ready"; fi
    echo "KUBECONFIG=$STATE/kubeconfig"
  fi
  return $all
}

case "${1:-}" in
  build) build_all ;;
  up) cmd_up ;;
  down) cmd_down "${2:-}" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  node-kubeconfig) node_kubeconfig "${2:-}" ;;
  *)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
