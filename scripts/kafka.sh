#!/usr/bin/env bash
# Apache Kafka for the Kafka tests and the kafka_e2e benchmark.
#
#   scripts/kafka.sh install      the broker's jars (Maven Central, pinned by
#                                 scripts/kafka/pom.xml) into $STREAMJOIN_KAFKA_HOME/lib, once
#   scripts/kafka.sh env          prints `export STREAMJOIN_KAFKA_HOME=...` (eval it)
#   scripts/kafka.sh start [DIR]  a one-node KRaft broker on free 127.0.0.1 ports,
#                                 its data, log and pid in DIR (default a new temp dir);
#                                 prints its bootstrap address
#   scripts/kafka.sh stop DIR     stops the broker started in DIR
#
# The tests start their own brokers from the same install (job-runtime/tests/broker/);
# `start` is for running the runtime by hand.
set -euo pipefail

KAFKA_VERSION=4.1.1 # keep in step with scripts/kafka/pom.xml
here="$(cd "$(dirname "$0")" && pwd)"
home="${STREAMJOIN_KAFKA_HOME:-$HOME/.cache/streamjoin/kafka/$KAFKA_VERSION}"
m2="$HOME/.cache/streamjoin/m2"

need_tools() {
  local pkgs=()
  command -v java >/dev/null 2>&1 || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  if [ ${#pkgs[@]} -gt 0 ]; then
    local t0=$SECONDS sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "kafka: installing ${pkgs[*]}" >&2
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
    echo "kafka: system packages took $((SECONDS - t0)) s" >&2
  fi
}

install() {
  # The install is keyed by the pom and logging config: a changed pin reinstalls.
  local stamp
  stamp="$(cat "$here/kafka/pom.xml" "$here/kafka/log4j2.xml" | sha256sum | cut -d' ' -f1)"
  if [ -f "$home/.installed" ] && [ "$(cat "$home/.installed")" = "$stamp" ]; then
    return 0
  fi
  need_tools
  local t0=$SECONDS
  rm -rf "$home/lib.tmp"
  mkdir -p "$home/config"
  mvn -q -B -Dstyle.color=never -f "$here/kafka/pom.xml" -Dmaven.repo.local="$m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$home/lib.tmp" >&2
  # The broker must log somewhere: without a binding SLF4J drops every line.
  ls "$home/lib.tmp"/log4j-slf4j2-impl-*.jar "$home/lib.tmp"/log4j-core-*.jar >/dev/null
  rm -rf "$home/lib"
  mv "$home/lib.tmp" "$home/lib"
  cp "$here/kafka/log4j2.xml" "$home/config/log4j2.xml"
  echo "$stamp" >"$home/.installed"
  echo "kafka: Apache Kafka $KAFKA_VERSION installed in $home in $((SECONDS - t0)) s" >&2
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

java_cmd() {
  # Small heap: tests run beside builds on a 2-core, shared machine.
  echo java -Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    "-Dlog4j2.configurationFile=$home/config/log4j2.xml" "-Dkafka.logs.dir=$1" \
    -cp "$home/lib/*"
}

start() {
  install
  local dir="${1:-$(mktemp -d -t streamjoin-kafka-XXXXXX)}"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  local port cport
  port="$(free_port)"
  cport="$(free_port)"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  local java t0=$SECONDS
  # shellcheck disable=SC2046 # the command is split on purpose; the class path's * is Java's
  set -f
  java=($(java_cmd "$dir"))
  set +f
  if ! [ -f "$dir/data/meta.properties" ]; then
    # `=` form: an id may start with `-`, which the tool's parser would take for an option.
    "${java[@]}" kafka.tools.StorageTool format --cluster-id="$("${java[@]}" kafka.tools.StorageTool random-uuid)" \
      -c "$dir/server.properties" >"$dir/format.log"
  fi
  nohup "${java[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
  echo $! >"$dir/pid"
  until grep -q "Kafka Server started" "$dir/broker.log" 2>/dev/null; do
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      cat "$dir/stdout.log" "$dir/broker.log" >&2 || true
      echo "kafka: the broker in $dir exited" >&2
      exit 1
    fi
    if [ $((SECONDS - t0)) -gt 120 ]; then
      echo "kafka: the broker in $dir did not start within 120 s" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "127.0.0.1:$port" >"$dir/bootstrap"
  echo "kafka: broker in $dir ready in $((SECONDS - t0)) s" >&2
  echo "127.0.0.1:$port"
}

stop() {
  local dir="${1:?usage: scripts/kafka.sh stop DIR}"
  local pid
  pid="$(cat "$dir/pid")"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

case "${1:-}" in
  install) install ;;
  env)
    install
    echo "export STREAMJOIN_KAFKA_HOME=$home"
    ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *)
    echo "usage: scripts/kafka.sh install|env|start [DIR]|stop DIR" >&2
    exit 2
    ;;
esac
