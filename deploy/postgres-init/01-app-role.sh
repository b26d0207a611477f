#!/bin/sh
# Creates the application role: it may read and write rows, never alter the schema.
# Ownership of tables (and so of the ledger's trigger) stays with the migrating owner.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE governance_app LOGIN PASSWORD '${APP_DB_PASSWORD}';
GRANT CONNECT ON DATABASE ${POSTGRES_DB} TO governance_app;
GRANT USAGE ON SCHEMA public TO governance_app;
ALTER DEFAULT PRIVILEGES FOR ROLE ${POSTGRES_USER} IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO governance_app;
ALTER DEFAULT PRIVILEGES FOR ROLE ${POSTGRES_USER} IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO governance_app;
-- The owner-owned purge functions migrations create: the only way past the ledger's and
-- the audit trail's append-only triggers for this role.
ALTER DEFAULT PRIVILEGES FOR ROLE ${POSTGRES_USER} IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO governance_app;
SQL
