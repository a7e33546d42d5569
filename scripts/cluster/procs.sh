# Starting, watching and stopping the cluster's processes (sourced by scripts/cluster.sh).
# Each process has $STATE/run/NAME.pid and $STATE/logs/NAME.log.

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)
STOP_GRACE_SECS=${STREAMJOIN_CLUSTER_STOP_GRACE:-15}

pid_of() {
  local file="$STATE/run/$1.pid" pid
  [ -s "$file" ] || return 1
  pid=$(cat "$file")
  # The pid file may outlive its process, and the pid may have been reused since:
  # every component's command line names a path in the state directory. (grep reads
  # the file itself: in a pipe under pipefail, `grep -q` leaving early fails the writer.)
  [ -r "/proc/$pid/cmdline" ] && grep -qaF -- "$STATE/" "/proc/$pid/cmdline" 2>/dev/null ||
    return 1
  echo "$pid"
}

# launch NAME SECONDS CHECK -- BINARY ARGS...: starts NAME and waits until CHECK
# passes. A process that dies while starting is started again, twice at most, as a
# kubelet restarts a static pod: a start can fail for reasons outside the cluster
# (a port taken in between, the process killed), and the log says what happened.
launch() {
  local name=$1 secs=$2 check=$3 attempt rc
  shift 4
  for attempt in 1 2 3; do
    rc=0
    # shellcheck disable=SC2086 # CHECK is a function and its arguments
    start "$name" "$@" && wait_until "$name" "$secs" $check || rc=$?
    [ "$rc" -eq 0 ] && return
    [ "$attempt" -lt 3 ] && say "starting $name again (attempt $((attempt + 1)) of 3)"
  done
  fail "$name exited while starting, three times"
}

# start NAME BINARY ARGS...: runs BINARY in a session of its own, so that it
# outlives the calling shell and its terminal's signals. A background job of a
# script is not a process group leader, so setsid execs without forking and $!
# is the binary's pid. Returns 3 when the process ends before it runs.
start() {
  local name=$1; shift
  mkdir -p "$STATE/run" "$STATE/logs"
  setsid "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
  local pid=$! tries=0
  echo "$pid" >"$STATE/run/$name.pid"
  STARTED_PID=$pid
  # Until the fork has exec'd the binary, its command line is this script's.
  until pid_of "$name" >/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail_log "$name"
      say "$name exited while starting: $(exit_status)"
      return 3
    fi
    [ $((tries += 1)) -lt 100 ] || fail "$name (pid $pid) did not exec within 5 s"
    sleep 0.05
  done
}

tail_log() {
  echo "---- last lines of $STATE/logs/$1.log ----" >&2
  tail -n "${2:-30}" "$STATE/logs/$1.log" >&2 || true
}

# How the process last started (this shell's child) ended: its status or signal.
exit_status() {
  local status=0
  if kill -0 "$STARTED_PID" 2>/dev/null; then
    echo "still runs as pid $STARTED_PID, but its command line no longer names $STATE"
    return
  fi
  wait "$STARTED_PID" 2>/dev/null || status=$?
  if [ "$status" -gt 128 ]; then
    echo "killed by signal $((status - 128)) ($(kill -l $((status - 128)) 2>/dev/null || echo '?'))"
  else
    echo "exit status $status"
  fi
}

# wait_until NAME SECONDS CHECK...: polls CHECK until it succeeds, the process
# dies (returns 3, after its log's tail and how it ended), or the deadline passes
# (then fails with the log's tail).
wait_until() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs)) started=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if ! pid_of "$name" >/dev/null; then
      tail_log "$name"
      say "$name exited while starting: $(exit_status)"
      return 3
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
