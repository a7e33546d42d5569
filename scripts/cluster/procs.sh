# Starting, watching and stopping the cluster's processes (sourced by scripts/cluster.sh).
# Each process has $STATE/run/NAME.pid and $STATE/logs/NAME.log.

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)
STOP_GRACE_SECS=${STREAMJOIN_CLUSTER_STOP_GRACE:-15}

pid_of() {
  local file="$STATE/run/$1.pid" pid
  [ -s "$file" ] || return 1
  pid=$(cat "$file")
  # The pid file may outlive its process, and the pid may have been reused since:
  # every component's command line names a path in the state directory.
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$STATE/" ||
    return 1
  echo "$pid"
}

# start NAME BINARY ARGS...: runs BINARY in a session of its own, so that it
# outlives the calling shell and its terminal's signals. A background job of a
# script is not a process group leader, so setsid execs without forking and $!
# is the binary's pid.
start() {
  local name=$1; shift
  mkdir -p "$STATE/run" "$STATE/logs"
  setsid "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
  local pid=$! tries=0
  echo "$pid" >"$STATE/run/$name.pid"
  # Until the fork has exec'd the binary, its command line is this script's.
  until pid_of "$name" >/dev/null; do
    kill -0 "$pid" 2>/dev/null && [ $((tries += 1)) -lt 100 ] || {
      tail_log "$name"
      fail "$name did not start"
    }
    sleep 0.05
  done
}

tail_log() {
  echo "---- last lines of $STATE/logs/$1.log ----" >&2
  tail -n "${2:-30}" "$STATE/logs/$1.log" >&2 || true
}

# wait_until NAME SECONDS CHECK...: polls CHECK until it succeeds, the process
# dies, or the deadline passes (then fails with the log's tail).
wait_until() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs)) started=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if ! pid_of "$name" >/dev/null; then
      tail_log "$name"
      fail "$name exited while starting"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail_log "$name"
      fail "$name not healthy after $secs s"
    fi
    sleep 0.5
  done
  say "$name healthy after $((SECONDS - started)) s"
}

stop_one() {
  local name=$1 pid
  if pid=$(pid_of "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_GRACE_SECS))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name did not stop within $STOP_GRACE_SECS s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "$name stopped (pid $pid)"
  fi
  rm -f "$STATE/run/$name.pid"
}

stop_all() {
  local i
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_one "${COMPONENTS[i]}"; done
}

running() {
  local name
  for name in "${COMPONENTS[@]}"; do pid_of "$name" >/dev/null || return 1; done
}

any_running() {
  local name
  for name in "${COMPONENTS[@]}"; do pid_of "$name" >/dev/null && return 0; done
  return 1
}
