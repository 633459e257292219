# Sourced: start the local PostgreSQL 15 cluster, create a fresh test database, and export
# OSTRACA_TEST_DATABASE_URL. Fails (non-zero) if PostgreSQL cannot be started.
if ! command -v pg_lsclusters >/dev/null; then
  echo "PostgreSQL is not installed: apt-get install postgresql-15" >&2
  return 1 2>/dev/null || exit 1
fi
if ! pg_lsclusters -h | awk '$1 == 15 && $2 == "main" && $4 == "online" {found=1} END {exit !found}'; then
  pg_ctlcluster 15 main start
fi
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT 'CREATE ROLE ostraca_test LOGIN PASSWORD ''ostraca_test'' CREATEDB'
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ostraca_test') \gexec
DROP DATABASE IF EXISTS ostraca_test WITH (FORCE);
CREATE DATABASE ostraca_test OWNER ostraca_test;
SQL
export OSTRACA_TEST_DATABASE_URL="postgresql+psycopg://ostraca_test:ostraca_test@127.0.0.1:5432/ostraca_test"
echo "PostgreSQL test database: $OSTRACA_TEST_DATABASE_URL"
