#!/usr/bin/env bash
# Fuzzing of the project's parsers (fuzz/, cargo-fuzz layout): the record parser,
# the StreamJoinJob manifest and its validation, the checkpoint and savepoint
# manifests, the admin API's request bodies. docs/development.md, "Fuzzing".
#
#   scripts/fuzz.sh smoke           each target for STREAMJOIN_FUZZ_SMOKE_SECONDS (20 s)
#   scripts/fuzz.sh long SECONDS    each target for SECONDS
#   scripts/fuzz.sh build           installs cargo-fuzz and builds the targets only
#
# Targets run two at a time (STREAMJOIN_FUZZ_PARALLEL), each from its committed
# seeds (fuzz/corpus/<target>, read only) plus a working corpus that grows across
# runs under ~/.cache/streamjoin/fuzz/corpus/<target>. Exits non-zero when a
# target crashes, times out or runs out of memory; the input is kept under
# ~/.cache/streamjoin/fuzz/artifacts/<target>/ and printed in base64.
#
# Toolchain: libFuzzer's instrumentation (`cargo fuzz build --sanitizer none`)
# works on stable Rust without RUSTC_BOOTSTRAP, so `smoke` always uses stable:
# it needs nothing a fresh CI machine lacks. AddressSanitizer needs nightly
# (-Zsanitizer); `long` uses nightly with it when a nightly toolchain is
# installed, else stable without it (STREAMJOIN_FUZZ_TOOLCHAIN=stable|nightly
# forces one). The targets are safe Rust, so a sanitizer adds little beyond
# libFuzzer's own crash, timeout and memory checks.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS="record job_manifest checkpoint_manifest savepoint_manifest admin_request"
# STREAMJOIN_FUZZ_TARGETS="record admin_request" runs some of them only.
read -r -a TARGETS <<<"${STREAMJOIN_FUZZ_TARGETS:-$ALL_TARGETS}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$HOME/.cache/streamjoin"
TOOLS="${STREAMJOIN_TOOLS:-$CACHE/tools}"
WORK="$CACHE/fuzz"
PARALLEL="${STREAMJOIN_FUZZ_PARALLEL:-2}"

usage() {
  echo "usage: scripts/fuzz.sh smoke | long SECONDS | build" >&2
  exit 2
}

now() { date +%s; }

install_cargo_fuzz() {
  local dir="$TOOLS/cargo-fuzz-$CARGO_FUZZ_VERSION"
  if [ ! -x "$dir/bin/cargo-fuzz" ]; then
    local start
    start=$(now)
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install) into $dir"
    mkdir -p "$dir"
    CARGO_TARGET_DIR="$dir/build" cargo +stable install -q --locked --root "$dir" \
      "cargo-fuzz@$CARGO_FUZZ_VERSION"
    rm -rf "$dir/build"
    echo "cold: cargo-fuzz install took $(($(now) - start)) s"
  fi
  PATH="$dir/bin:$PATH"
  export PATH
}

# Sets TOOLCHAIN and SANITIZER for a mode.
choose_toolchain() {
  local mode="$1"
  TOOLCHAIN="${STREAMJOIN_FUZZ_TOOLCHAIN:-}"
  if [ -z "$TOOLCHAIN" ]; then
    TOOLCHAIN=stable
    if [ "$mode" = long ] && rustup run nightly rustc --version >/dev/null 2>&1; then
      TOOLCHAIN=nightly
    fi
  fi
  SANITIZER=none
  [ "$TOOLCHAIN" = nightly ] && SANITIZER=address
  TARGET_DIR="$WORK/target-$TOOLCHAIN-$SANITIZER"
  TRIPLE="$(rustup run "$TOOLCHAIN" rustc -vV | sed -n 's/^host: //p')"
  echo "toolchain: $(rustup run "$TOOLCHAIN" rustc --version), sanitizer: $SANITIZER"
}

build_targets() {
  local start
  start=$(now)
  # Release with debug assertions (overflow checks on, as in the runtime's profile).
  (cd "$ROOT/fuzz" && cargo "+$TOOLCHAIN" fuzz build -O --debug-assertions \
    --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR")
  echo "build of the fuzz targets took $(($(now) - start)) s ($TARGET_DIR)"
}

# Runs one target for $2 seconds; its log is $WORK/logs/<target>.log.
run_target() {
  local t="$1" seconds="$2"
  local bin="$TARGET_DIR/$TRIPLE/release/$t"
  local corpus="$WORK/corpus/$t" artifacts="$WORK/artifacts/$t"
  mkdir -p "$corpus" "$artifacts" "$WORK/logs"
  rm -f "$WORK/logs/$t.rc"
  local args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384
    -print_final_stats=1 -artifact_prefix="$artifacts/")
  [ -f "$ROOT/fuzz/dict/$t.dict" ] && args+=(-dict="$ROOT/fuzz/dict/$t.dict")
  local rc=0
  "$bin" "${args[@]}" "$corpus" "$ROOT/fuzz/corpus/$t" >"$WORK/logs/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$WORK/logs/$t.rc"
}

# One line per target: executions, coverage (libFuzzer's cov and ft), corpus (units/size), outcome.
report() {
  local failed=0 failures=0
  printf '%-20s %12s %9s %6s %7s %13s  %s\n' target executions exec/s cov ft corpus result
  for t in "${TARGETS[@]}"; do
    local log="$WORK/logs/$t.log" rc
    rc="$(cat "$WORK/logs/$t.rc")"
    local runs rate cov ft corpus result=ok
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
    ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
    corpus="$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)"
    if [ "$rc" != 0 ]; then
      failed=1
      failures=$((failures + 1))
      result="FAILED (exit $rc): $(grep -m1 -o 'Test unit written to .*' "$log" || echo "see $log")"
    fi
    printf '%-20s %12s %9s %6s %7s %13s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}" \
      "${ft:-?}" "$corpus" "$result"
  done
  echo "fuzz: $((${#TARGETS[@]} - failures)) passed, $failures failed"
  if [ "$failed" = 1 ]; then
    for t in "${TARGETS[@]}"; do
      [ "$(cat "$WORK/logs/$t.rc")" = 0 ] && continue
      echo "--- $t ($WORK/logs/$t.log)"
      grep -v '^#[0-9]' "$WORK/logs/$t.log" | grep -v '^ *[0-9]*: \|^ *at ' | tail -25
    done
    return 1
  fi
}

fuzz_all() {
  local seconds="$1" start running=0
  start=$(now)
  for t in "${TARGETS[@]}"; do
    run_target "$t" "$seconds" &
    running=$((running + 1))
    if [ "$running" -ge "$PARALLEL" ]; then
      wait -n
      running=$((running - 1))
    fi
  done
  wait
  echo "fuzzing took $(($(now) - start)) s ($seconds s per target, $PARALLEL at a time)"
  report
}

main() {
  local mode="${1:-}" seconds
  case "$mode" in
    smoke) seconds="${STREAMJOIN_FUZZ_SMOKE_SECONDS:-20}" ;;
    long)
      seconds="${2:-}"
      [[ "$seconds" =~ ^[0-9]+$ ]] || usage
      ;;
    build) ;;
    *) usage ;;
  esac
  command -v rustup >/dev/null || { echo "fuzz.sh needs rustup (Rust by rustup)" >&2; exit 1; }
  local begin
  begin=$(now)
  install_cargo_fuzz
  choose_toolchain "$mode"
  build_targets
  [ "$mode" = build ] && return
  local rc=0
  fuzz_all "$seconds" || rc=$?
  echo "fuzz.sh $mode took $(($(now) - begin)) s in all"
  return "$rc"
}

main "$@"
