# Shared by the scripts: system packages the build needs, and one persistent
# cargo target directory so RocksDB's C++ is compiled once per machine.
set -euo pipefail

need_apt=()
# rocksdb's bindings need libclang; rdkafka's bundled librdkafka needs a C toolchain and zlib/ssl headers.
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang*.so >/dev/null 2>&1 || need_apt+=(libclang-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # The image's apt cache clean-up sometimes makes the first try fail.
  $SUDO apt-get install -y -qq "${need_apt[@]}" || $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamjoin/target}"
mkdir -p "$CARGO_TARGET_DIR"
