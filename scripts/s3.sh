#!/usr/bin/env bash
# A real S3-compatible object store for the tests: versitygw (Versity S3 Gateway)
# with its posix backend, built from its Go module at the version pinned in
# scripts/s3/go.mod (go.sum pins the hashes). Only one listener, on 127.0.0.1.
#
#   scripts/s3.sh install   build the server once into ~/.cache/streamjoin/s3/<version>/bin
#   scripts/s3.sh up        start it on a free 127.0.0.1 port (idempotent), write the env file
#   scripts/s3.sh env       print the exports the tests read (STREAMJOIN_S3_*)
#   scripts/s3.sh down      stop it (the data directory is kept; `up` after `down` starts empty)
#
# The tests create their own buckets (job-runtime/tests/s3/mod.rs); `up` creates none.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="$here/s3"
version="$(awk '$1 == "github.com/versity/versitygw" { print $2 }' "$module/go.mod")"
cache="$HOME/.cache/streamjoin"
prefix="$cache/s3/$version"
bin="$prefix/bin/versitygw"
run="${STREAMJOIN_S3_DIR:-$cache/s3-run}"
envfile="$run/env"
pidfile="$run/versitygw.pid"
region="us-east-1"

elapsed() { echo "s3: $1 took $(($(date +%s) - $2)) s" >&2; }

go_env() {
  export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOPATH="$cache/go/path"
  export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
}

# The module needs Go >= the go line of its go.mod; an older go fetches that
# toolchain itself through the module proxy (GOTOOLCHAIN=auto).
ensure_go() {
  command -v go >/dev/null 2>&1 && return
  [ -x /usr/local/go/bin/go ] && { export PATH="/usr/local/go/bin:$PATH"; return; }
  local t0; t0=$(date +%s)
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq golang-go
  elapsed "installing golang-go" "$t0"
}

install() {
  local stamp="$prefix/go.sum" t0
  if [ -x "$bin" ] && cmp -s "$stamp" "$module/go.sum"; then
    return
  fi
  ensure_go
  go_env
  mkdir -p "$prefix/bin"
  t0=$(date +%s)
  (cd "$module" && go mod download)
  elapsed "downloading versitygw $version and its modules" "$t0"
  t0=$(date +%s)
  (cd "$module" && go build -p 2 -trimpath \
    -ldflags "-s -w -X=main.Version=$version" \
    -o "$bin.tmp" github.com/versity/versitygw/cmd/versitygw)
  mv "$bin.tmp" "$bin"
  cp "$module/go.sum" "$stamp"
  elapsed "building versitygw $version" "$t0"
}

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

healthy() {
  python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

# start_gateway PORT ACCESS SECRET: starts versitygw and waits until it is healthy.
# Returns 3 when it exits while starting (after its log and how it ended).
start_gateway() {
  local port=$1 access=$2 secret=$3 deadline pid status=0
  # A clean environment: versitygw reads many variables (ROOT_ACCESS_KEY, LOGFILE,
  # WEBHOOK, VGW_*); none of the caller's may reach it. No admin, web UI or website
  # port is given, so the S3 port is its only listener (the admin API rides on it).
  # --iam-dir: with its internal IAM (empty but the root account) an unknown access
  # key is refused as S3 does (403 InvalidAccessKeyId); without one, 404.
  env -i PATH=/usr/bin:/bin HOME="$HOME" \
    ROOT_ACCESS_KEY_ID="$access" ROOT_SECRET_ACCESS_KEY="$secret" \
    setsid "$bin" --port "127.0.0.1:$port" --region "$region" --health /health \
    --iam-dir "$run/iam" posix "$run/data" >"$run/versitygw.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pidfile"
  deadline=$(($(date +%s) + 30))
  until healthy "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || status=$?
      echo "s3: versitygw exited while starting ($([ "$status" -gt 128 ] &&
        echo "killed by signal $((status - 128))" || echo "exit status $status")); its log:" >&2
      cat "$run/versitygw.log" >&2
      return 3
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "s3: versitygw not ready on 127.0.0.1:$port after 30 s; its log:" >&2
      cat "$run/versitygw.log" >&2
      down
      exit 1
    fi
    sleep 0.1
  done
  STARTED_PID=$pid
}

up() {
  install
  if running && [ -f "$envfile" ]; then
    # shellcheck disable=SC1090
    . "$envfile"
    if healthy "${STREAMJOIN_S3_ENDPOINT##*:}"; then
      echo "s3: already up at $STREAMJOIN_S3_ENDPOINT" >&2
      return
    fi
  fi
  down
  mkdir -p "$run"
  rm -rf "$run/data" "$run/iam"
  mkdir -p "$run/data" "$run/iam"
  local port="" access secret t0 attempt
  access="streamjoin"
  secret="$(python3 -c 'import secrets; print(secrets.token_hex(20))')"
  t0=$(date +%s%N)
  # A gateway that exits while starting (a port taken in between, the process
  # killed) is started again on a new port, three times in all.
  for attempt in 1 2 3; do
    port="$(free_port)"
    start_gateway "$port" "$access" "$secret" && break
    port=""
    [ "$attempt" -lt 3 ] && echo "s3: starting versitygw again (attempt $((attempt + 1)) of 3)" >&2
  done
  [ -n "$port" ] || { echo "s3: versitygw exited while starting, three times" >&2; exit 1; }
  umask 077
  cat >"$envfile" <<EOF
export STREAMJOIN_S3_ENDPOINT=http://127.0.0.1:$port
export STREAMJOIN_S3_ACCESS_KEY_ID=$access
export STREAMJOIN_S3_SECRET_ACCESS_KEY=$secret
export STREAMJOIN_S3_REGION=$region
EOF
  echo "s3: versitygw $version up at http://127.0.0.1:$port (pid $STARTED_PID) in $((($(date +%s%N) - t0) / 1000000)) ms; data in $run/data" >&2
}

down() {
  if running; then
    local pid deadline
    pid="$(cat "$pidfile")"
    kill "$pid"
    deadline=$(($(date +%s) + 10))
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$(date +%s)" -ge "$deadline" ]; then kill -9 "$pid" 2>/dev/null || true; fi
      sleep 0.1
    done
    echo "s3: stopped versitygw (pid $pid)" >&2
  fi
  rm -f "$pidfile" "$envfile"
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  env)
    if ! running || ! [ -f "$envfile" ]; then
      echo "s3: not running; start it with scripts/s3.sh up" >&2
      exit 1
    fi
    cat "$envfile"
    ;;
  *)
    echo "usage: $0 install|up|down|env" >&2
    exit 2
    ;;
esac
