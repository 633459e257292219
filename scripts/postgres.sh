# Sourced: start the local PostgreSQL 15 cluster, create a fresh test database, and export
# OSTRACA_TEST_DATABASE_URL. Fails (non-zero) if PostgreSQL cannot be started.
if ! command -v pg_lsclusters >/dev/null; then
  echo "PostgreSQL is not installed: apt-get install postgresql-15" >&2
  return 1 2>/dev/null || exit 1
fi
if ! pg_lsclusters -h | awk '$1 == 15 && $2 == "main" && $4 == "online" {found=1} END {exit !found}'; then
  pg_ctlcluster 15 main start
fi
# OSTRACA_TEST_DB names the database (default ostraca_test): runs side by side each take their own.
db=${OSTRACA_TEST_DB:-ostraca_test}
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -v db="$db" >/dev/null <<'SQL'
SELECT 'CREATE ROLE ostraca_test LOGIN PASSWORD ''ostraca_test'' CREATEDB'
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ostraca_test') \gexec
SET client_min_messages = warning;
DROP DATABASE IF EXISTS :"db" WITH (FORCE);
CREATE DATABASE :"db" OWNER ostraca_test;
SQL
export OSTRACA_TEST_DATABASE_URL="postgresql+psycopg://ostraca_test:ostraca_test@127.0.0.1:5432/$db"
echo "PostgreSQL test database: $OSTRACA_TEST_DATABASE_URL"
