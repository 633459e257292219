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
exec "$VENV/bin/python" -m pytest -n "${OSTRACA_TEST_WORKERS:-auto}" --maxprocesses 4 "$@"
