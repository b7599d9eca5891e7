#!/bin/sh
# db-roles.sh is the `db-roles` one-shot of docker-compose.yml. It runs in
# the postgres image once PostgreSQL is healthy and, as the owner spike,
# creates Nexus's role spike_nexus if it is missing, then (re)sets its
# password from the file bootstrap.sh wrote and strips every attribute that
# would let it alter the audit trail (Nexus refuses to start otherwise).
# `spike-nexus migrate` grants it its privileges afterwards. Running it again
# changes nothing. The passwords travel in the environment and on stdin,
# never on a command line.
set -eu

PGPASSWORD=$(cat /run/spike/postgres/password)
NEXUS_PASSWORD=$(cat /run/spike/nexus-db/password)
case $NEXUS_PASSWORD in
*[!0-9a-f]* | "")
	echo "db-roles: /run/spike/nexus-db/password must hold a hex password" >&2
	exit 1
	;;
esac
export PGPASSWORD PGHOST=postgres PGPORT=5432 PGUSER=spike PGDATABASE=spike \
	PGSSLMODE=verify-full PGSSLROOTCERT=/run/spike/postgres-tls/ca.pem

psql -X -q -v ON_ERROR_STOP=1 <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'spike_nexus') THEN
    CREATE ROLE spike_nexus LOGIN;
  END IF;
END
\$\$;
ALTER ROLE spike_nexus WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION
  PASSWORD '$NEXUS_PASSWORD';
SQL
echo "db-roles: role spike_nexus ready"
