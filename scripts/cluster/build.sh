# Builds the control plane from the pinned Go modules (sourced by scripts/cluster.sh).
# The wrapper modules k8s/ and etcd/ beside this file hold the pins (go.mod, go.sum).

K8S_VERSION=v1.37.2
K8S_MINOR=37
# Kubernetes v1.37 is built and tested against etcd 3.7 (build/dependencies.yaml).
ETCD_VERSION=v3.7.3
# The release date of v1.37.2 (the module proxy's .info), so that builds are reproducible.
K8S_BUILD_DATE=2026-10-27T12:01:04Z

CLUSTER_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_BIN="$HOME/.cache/streamjoin/k8s/$K8S_VERSION/bin"
ETCD_BIN="$HOME/.cache/streamjoin/etcd/$ETCD_VERSION/bin"
K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

go_env() {
  # Caches of their own: the control plane's ~1 GB of modules and build cache
  # should not go when another component's cold build is measured by wiping its cache.
  local go_root="$HOME/.cache/streamjoin/k8s/go"
  export GOPATH="$go_root/path" GOMODCACHE="$go_root/mod" GOCACHE="$go_root/build"
  # The go.sum files are committed: a build must not change the pins.
  export GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
  mkdir -p "$GOPATH" "$GOMODCACHE" "$GOCACHE"
  ensure_go
}

# The modules need Go >= 1.26 (their go lines); an older go fetches that toolchain
# itself through the module proxy (GOTOOLCHAIN=auto, the default).
ensure_go() {
  command -v go >/dev/null && return
  [ -x /usr/local/go/bin/go ] && { export PATH="/usr/local/go/bin:$PATH"; return; }
  say "installing golang-go"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq golang-go >&2
}

# Runs a step under /usr/bin/time, printing its wall time and peak memory.
timed() {
  local what=$1; shift
  local report; report=$(mktemp)
  local started=$SECONDS
  if ! /usr/bin/time -v -o "$report" "$@"; then
    rm -f "$report"
    fail "$what failed"
  fi
  local rss; rss=$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$report")
  rm -f "$report"
  say "$what: $((SECONDS - started)) s, peak RSS ${rss} MiB"
}

k8s_ldflags() {
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$K8S_BUILD_DATE"
  done
  echo "$flags"
}

# The wrapper module's sources (pins and main.go) and the build flags: a change rebuilds.
# (etcd's wrapper has no .go file: a failed glob must not end the script under pipefail)
stamp() {
  (
    cd "$1" && cat go.mod go.sum && { cat ./*.go 2>/dev/null || true; } && k8s_ldflags
  ) | sha256sum | cut -c1-64
}

# built BINARY MODULE_DIR: whether BINARY exists and was built from MODULE_DIR as it is.
built() { [ -x "$1" ] && [ "$(cat "$1.stamp" 2>/dev/null)" = "$(stamp "$2")" ]; }

build_k8s() {
  if built "$K8S_BIN/hyperkube" "$CLUSTER_LIB/k8s"; then
    say "kubernetes $K8S_VERSION: built already ($K8S_BIN)"
  else
    mkdir -p "$K8S_BIN"
    (cd "$CLUSTER_LIB/k8s" &&
      timed "kubernetes $K8S_VERSION: module download" go mod download &&
      timed "kubernetes $K8S_VERSION: build of hyperkube (apiserver, controller manager, scheduler, kubectl)" \
        go build -p 2 -trimpath -ldflags "$(k8s_ldflags)" -o "$K8S_BIN/hyperkube.tmp" .) || exit 1
    mv "$K8S_BIN/hyperkube.tmp" "$K8S_BIN/hyperkube"
    stamp "$CLUSTER_LIB/k8s" >"$K8S_BIN/hyperkube.stamp"
  fi
  local cmd
  for cmd in "${K8S_COMMANDS[@]}"; do ln -sfn hyperkube "$K8S_BIN/$cmd"; done
}

build_etcd() {
  if built "$ETCD_BIN/etcd" "$CLUSTER_LIB/etcd"; then
    say "etcd $ETCD_VERSION: built already ($ETCD_BIN)"
    return
  fi
  mkdir -p "$ETCD_BIN"
  (cd "$CLUSTER_LIB/etcd" &&
    timed "etcd $ETCD_VERSION: module download" go mod download &&
    timed "etcd $ETCD_VERSION: build" \
      go build -p 2 -trimpath -ldflags "-s -w" -o "$ETCD_BIN/etcd.tmp" go.etcd.io/etcd/server/v3) || exit 1
  mv "$ETCD_BIN/etcd.tmp" "$ETCD_BIN/etcd"
  stamp "$CLUSTER_LIB/etcd" >"$ETCD_BIN/etcd.stamp"
}

build_all() {
  local cmd
  need_packages
  if built "$K8S_BIN/hyperkube" "$CLUSTER_LIB/k8s" && built "$ETCD_BIN/etcd" "$CLUSTER_LIB/etcd"; then
    for cmd in "${K8S_COMMANDS[@]}"; do ln -sfn hyperkube "$K8S_BIN/$cmd"; done
    [ "${1:-}" = quiet ] || say "built already: $K8S_BIN (kubernetes $K8S_VERSION), $ETCD_BIN (etcd $ETCD_VERSION)"
    return
  fi
  go_env
  build_etcd
  build_k8s
}
