#!/usr/bin/env bash
# Installs Apache Flink's jars from PyPI into a venv (idempotent) and compiles the job.
#
#   bench/flink/setup.sh        -> prints the classpath file's path on the last line
#
# FLINK_VENV (default /var/tmp/flink-venv) holds the venv; FLINK_BUILD (default
# /var/tmp/flink-build) the compiled classes and classpath.txt. Needs python3 and a JDK 17
# (javac, java); downloads only from PyPI: apache-flink-libraries ships Flink's jars under
# site-packages/pyflink/{lib,opt}. The Python API (apache-flink, with its numpy/pyarrow/
# pemja dependencies) is not needed for a Java DataStream job, so it is not installed.
set -euo pipefail
FLINK_VERSION="${FLINK_VERSION:-2.3.0}"
VENV="${FLINK_VENV:-/var/tmp/flink-venv}"
BUILD="${FLINK_BUILD:-/var/tmp/flink-build}"
here="$(cd "$(dirname "$0")" && pwd)"

command -v javac >/dev/null || { echo "setup: javac not found (need a JDK 17)" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -m pip show apache-flink-libraries 2>/dev/null | grep -qx "Version: $FLINK_VERSION"; then
  nice -n 5 "$VENV/bin/python" -m pip install --quiet --no-deps "apache-flink-libraries==$FLINK_VERSION"
fi
pyflink_dir="$("$VENV/bin/python" -c 'import pyflink; print(list(pyflink.__path__)[0])')"
lib="$pyflink_dir/lib"
[ -f "$lib/flink-dist-$FLINK_VERSION.jar" ] || { echo "setup: no flink-dist jar in $lib" >&2; exit 1; }

mkdir -p "$BUILD/classes"
cp_file="$BUILD/classpath.txt"
# flink-dist carries the runtime, the RocksDB state backend (with its JNI library) and the
# shaded Jackson; flink-connector-files the FileSource; log4j the logging.
ls "$lib"/*.jar | grep -v -e flink-table -e flink-scala -e flink-cep -e flink-csv -e flink-json \
  | tr '\n' ':' | sed 's/:$//' > "$cp_file"

srcs=$(find "$here/src" -name '*.java' | sort)
stamp="$BUILD/classes/.stamp"
need=0
[ -f "$stamp" ] || need=1
for s in $srcs; do [ "$s" -nt "$stamp" ] && need=1; done
if [ "$need" = 1 ]; then
  rm -rf "$BUILD/classes" && mkdir -p "$BUILD/classes"
  nice -n 5 javac -encoding UTF-8 -Xlint:-options --release 17 -cp "$(cat "$cp_file")" -d "$BUILD/classes" $srcs
  touch "$stamp"
fi
cp "$here/log4j2.properties" "$BUILD/classes/"
echo "$cp_file"
