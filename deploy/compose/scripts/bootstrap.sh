#!/bin/sh
# bootstrap.sh is the `bootstrap` one-shot of docker-compose.yml. It runs
# before PostgreSQL and the SPIRE server and creates, only where missing:
#
#   /run/spike/postgres   the password of PostgreSQL's role spike, the owner:
#                         `password` for the postgres image
#                         (POSTGRES_PASSWORD_FILE) and db-roles, `pgpass` for
#                         migrate (passfile= in its database URL);
#   /run/spike/nexus-db   the password of spike_nexus, the role Nexus serves
#                         as: `password` for db-roles, `pgpass` for Nexus;
#   /run/spike/backup-db  the password of spike_backup, the backup's
#                         read-only role: `password` for db-roles, `pgpass`
#                         for the backup service;
#   /run/spike/backups    the backups volume, handed to the backup service's
#                         user;
#   /run/secrets/app      the app-secrets volume, where the agent service
#                         (uid and group 10101) renders files that the app
#                         service (group 10101) reads;
#   /run/spike/db-ca      a CA for PostgreSQL's TLS certificate (its key
#                         never leaves this volume, which only bootstrap
#                         mounts);
#   /run/spike/postgres-tls  PostgreSQL's certificate for the name postgres,
#                         its key (for the server's uid alone) and ca.pem,
#                         which clients verify it with (sslmode=verify-full);
#   /run/spire/bootstrap  a CA (agent-ca/) and the certificate the SPIRE agent
#                         attests its node with (agent/, x509pop), and trust/,
#                         where register.sh writes the SPIRE trust bundle.
#
# Existing files are kept, so a second run changes nothing; `docker compose
# down -v` starts over. It runs as root, without a network, only to give each
# file to the user that reads it.
set -eu
umask 077

PG_DIR=/run/spike/postgres
NEXUS_DB_DIR=/run/spike/nexus-db
BACKUP_DB_DIR=/run/spike/backup-db
BACKUPS_DIR=/run/spike/backups
DB_CA_DIR=/run/spike/db-ca
PG_TLS_DIR=/run/spike/postgres-tls
# The postgres user of the official postgres image, which reads the key
# and runs the backup service.
POSTGRES_UID=999
# The agent service's user and group (docker-compose.yml).
AGENT_UID=10101
APP_SECRETS_DIR=/run/secrets/app
# The user of the nexus image (deploy/compose/Dockerfile).
NEXUS_UID=10002
SPIRE_DIR=/run/spire/bootstrap
# The user of the official spire-server image, which register.sh runs as.
SPIRE_UID=1000
# The agent's certificate is not an SVID of SPIKE's trust domain: its CA is
# trusted by the SPIRE server's x509pop attestor only.
AGENT_CERT_ID=spiffe://agents.spike.local/spire-agent

say() { printf 'bootstrap: %s\n' "$*"; }

# --- PostgreSQL passwords -----------------------------------------------------
# new_password DIR ROLE: DIR/password and DIR/pgpass (passfile= in a database
# URL) for ROLE, unless written already.
new_password() {
	if [ -s "$1/password" ]; then
		return 0
	fi
	pw=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
	[ ${#pw} -eq 64 ] || {
		echo "bootstrap: cannot read /dev/urandom" >&2
		exit 1
	}
	printf '*:*:spike:%s:%s\n' "$2" "$pw" >"$1/pgpass.tmp"
	mv "$1/pgpass.tmp" "$1/pgpass"
	printf '%s\n' "$pw" >"$1/password.tmp"
	mv "$1/password.tmp" "$1/password" # last: it marks both as written
	say "generated the password of PostgreSQL role $2"
}
new_password "$PG_DIR" spike
new_password "$NEXUS_DB_DIR" spike_nexus
new_password "$BACKUP_DB_DIR" spike_backup
# The owner's: readable by whoever mounts the volume: the postgres container
# (as root, then as its postgres user), db-roles and migrate.
chmod 0755 "$PG_DIR"
chmod 0444 "$PG_DIR/password" "$PG_DIR/pgpass"
# Nexus's: its pgpass for Nexus (uid 10002) alone; the password for db-roles,
# which runs as root.
chmod 0755 "$NEXUS_DB_DIR"
chown "$NEXUS_UID:$NEXUS_UID" "$NEXUS_DB_DIR/pgpass"
chmod 0400 "$NEXUS_DB_DIR/pgpass" "$NEXUS_DB_DIR/password"
# The backup role's: its pgpass for the backup service (the postgres image's
# uid; libpq ignores a pgpass that others can read), the password for
# db-roles. The backups themselves: that uid's alone.
chmod 0755 "$BACKUP_DB_DIR"
chown "$POSTGRES_UID:$POSTGRES_UID" "$BACKUP_DB_DIR/pgpass"
chmod 0400 "$BACKUP_DB_DIR/pgpass" "$BACKUP_DB_DIR/password"
chown "$POSTGRES_UID:$POSTGRES_UID" "$BACKUPS_DIR"
chmod 0700 "$BACKUPS_DIR"
# The agent writes, its group reads, no one else enters.
chown "$AGENT_UID:$AGENT_UID" "$APP_SECRETS_DIR"
chmod 0750 "$APP_SECRETS_DIR"

# --- PostgreSQL TLS -------------------------------------------------------------
if [ ! -s "$PG_TLS_DIR/server.pem" ] || [ ! -s "$PG_TLS_DIR/server-key.pem" ] || [ ! -s "$PG_TLS_DIR/ca.pem" ]; then
	# Creates the CA in db-ca on first use; valid ten years, like the CA.
	spike-devca -ca "$DB_CA_DIR/ca" -td db.spike.local -host postgres \
		-out "$PG_TLS_DIR" -ttl 87600h
	say "issued PostgreSQL's TLS certificate"
fi
# PostgreSQL refuses a key that others can read: its own, mode 0600. The
# certificate and the CA's certificate are for everyone.
chmod 0755 "$PG_TLS_DIR"
chown "$POSTGRES_UID:$POSTGRES_UID" "$PG_TLS_DIR/server-key.pem"
chmod 0600 "$PG_TLS_DIR/server-key.pem"
chmod 0644 "$PG_TLS_DIR/server.pem" "$PG_TLS_DIR/ca.pem"
chmod 0700 "$DB_CA_DIR"

# --- SPIRE agent node identity -------------------------------------------------
if [ ! -s "$SPIRE_DIR/agent/svid.pem" ] || [ ! -s "$SPIRE_DIR/agent/key.pem" ]; then
	# Creates the CA in agent-ca/ on first use; valid ten years, like the CA.
	spike-devca -ca "$SPIRE_DIR/agent-ca" -id "$AGENT_CERT_ID" \
		-out "$SPIRE_DIR/agent" -ttl 87600h
	say "issued the SPIRE agent's x509pop certificate"
fi
# The server (uid 1000) reads the CA certificate, never its key (0600, root);
# the agent runs as root and reads its own key.
chmod 0755 "$SPIRE_DIR" "$SPIRE_DIR/agent-ca"
chmod 0644 "$SPIRE_DIR/agent-ca/ca.pem"
chmod 0700 "$SPIRE_DIR/agent"
mkdir -p "$SPIRE_DIR/trust"
chown "$SPIRE_UID:$SPIRE_UID" "$SPIRE_DIR/trust"
chmod 0755 "$SPIRE_DIR/trust"
say "ready"
