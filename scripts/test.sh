#!/usr/bin/env bash
# The whole test suite, on SQLite and on the machine's local PostgreSQL 15.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ -z "${OSTRACA_TEST_DATABASE_URL:-}" ]; then
  source scripts/postgres.sh
fi
exec "$VENV/bin/python" -m pytest "$@"
