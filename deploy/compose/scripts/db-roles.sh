#!/bin/sh
# db-roles.sh is the `db-roles` one-shot of docker-compose.yml. It runs in
# the postgres image once PostgreSQL is healthy and, as the owner spike,
# creates two roles if they are missing, then (re)sets their passwords from
# the files bootstrap.sh wrote and their attributes:
#
#   spike_nexus   Nexus's role, stripped of every attribute that would let
#                 it alter the audit trail (Nexus refuses to start
#                 otherwise); `spike-nexus migrate` grants it its
#                 privileges afterwards.
#   spike_backup  the backup service's role: it reads every table through
#                 the predefined role pg_read_all_data (which also makes
#                 pg_dump's ACCESS SHARE locks possible), holds no other
#                 privilege, and its sessions are read-only by default.
#
# Running it again changes nothing. The passwords travel in the environment
# and on stdin, never on a command line.
set -eu

# Where bootstrap.sh's files are, and the server: the Compose stack's
# unless set (e2e/compose_backup_test.go runs this script against a
# throwaway cluster).
SECRETS_DIR=${SECRETS_DIR:-/run/spike}
PGPASSWORD=$(cat "$SECRETS_DIR/postgres/password")
NEXUS_PASSWORD=$(cat "$SECRETS_DIR/nexus-db/password")
BACKUP_PASSWORD=$(cat "$SECRETS_DIR/backup-db/password")
# Both go into SQL text below: hex only.
for pw in "$NEXUS_PASSWORD" "$BACKUP_PASSWORD"; do
	case $pw in
	*[!0-9a-f]* | "")
		echo "db-roles: $SECRETS_DIR/nexus-db/password and $SECRETS_DIR/backup-db/password must hold hex passwords" >&2
		exit 1
		;;
	esac
done
export PGPASSWORD PGHOST="${PGHOST:-postgres}" PGPORT="${PGPORT:-5432}" \
	PGUSER="${PGUSER:-spike}" PGDATABASE="${PGDATABASE:-spike}" \
	PGSSLMODE="${PGSSLMODE:-verify-full}" PGSSLROOTCERT="${PGSSLROOTCERT:-$SECRETS_DIR/postgres-tls/ca.pem}"

psql -X -q -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
-- The statements below carry passwords: a failed one must not be logged
-- whole by the server (as log_min_error_statement = error would).
SET log_min_error_statement = panic;
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'spike_nexus') THEN
    CREATE ROLE spike_nexus LOGIN;
  END IF;
END
\$\$;
ALTER ROLE spike_nexus WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION
  PASSWORD '$NEXUS_PASSWORD';
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'spike_backup') THEN
    CREATE ROLE spike_backup LOGIN;
  END IF;
END
\$\$;
ALTER ROLE spike_backup WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION
  PASSWORD '$BACKUP_PASSWORD';
ALTER ROLE spike_backup SET default_transaction_read_only = on;
GRANT pg_read_all_data TO spike_backup;
SQL
echo "db-roles: roles spike_nexus and spike_backup ready"
