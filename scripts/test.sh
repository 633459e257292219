#!/usr/bin/env bash
# The whole test suite, on SQLite and on the machine's local PostgreSQL 15, on one pytest-xdist
# worker per core (at most 4; every test has its own database, schema, ports and directories).
# OSTRACA_TEST_WORKERS=0 runs it in this process (or pass -n 0).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ -z "${OSTRACA_TEST_DATABASE_URL:-}" ]; then
  source scripts/postgres.sh
fi
workers=(-n "${OSTRACA_TEST_WORKERS:-auto}" --maxprocesses 4)
if ! "$VENV/bin/python" -c "import xdist" 2>/dev/null; then
  echo "pytest-xdist is not installed in $VENV (make dev installs it): one process" >&2
  workers=()
fi
exec "$VENV/bin/python" -m pytest "${workers[@]}" "$@"
