#!/usr/bin/env bash
# `pip install ostraca` alone (no extras) into a fresh venv: the protocol, the SDK and the CLI work,
# nothing of the server or the trainer is installed, and a command that needs an extra says which.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
dir=$(mktemp -d /tmp/ostraca-lean-XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$PYTHON" -m venv "$dir/venv"
"$dir/venv/bin/pip" install -q --disable-pip-version-check . 2>&1 | grep -v '^WARNING: Location' || true
for pkg in fastapi sqlalchemy uvicorn alembic psycopg torch; do
  if "$dir/venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$pkg') is None)"; then
    echo "lean install pulled in $pkg" >&2; exit 1
  fi
done
"$dir/venv/bin/ostraca" --help >/dev/null
"$dir/venv/bin/python" -c "import ostraca.client, ostraca.protocol_spec"
set +e
out=$("$dir/venv/bin/ostraca" server run 2>&1); rc=$?
set -e
if [ "$rc" -ne 1 ] || [[ "$out" != *"pip install 'ostraca[server]'"* ]]; then
  echo "ostraca server run without the server extra: exit $rc, said: $out" >&2; exit 1
fi
echo "lean install ok: protocol + SDK + CLI, no server or trainer dependencies; '$out'"
