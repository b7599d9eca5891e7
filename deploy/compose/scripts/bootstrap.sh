#!/bin/sh
# bootstrap.sh is the `bootstrap` one-shot of docker-compose.yml. It runs
# before PostgreSQL and the SPIRE server and creates, only where missing:
#
#   /run/spike/postgres   the password of PostgreSQL's role spike: `password`
#                         for the postgres image (POSTGRES_PASSWORD_FILE) and
#                         `pgpass` for Nexus (passfile= in its database URL);
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
SPIRE_DIR=/run/spire/bootstrap
# The user of the official spire-server image, which register.sh runs as.
SPIRE_UID=1000
# The agent's certificate is not an SVID of SPIKE's trust domain: its CA is
# trusted by the SPIRE server's x509pop attestor only.
AGENT_CERT_ID=spiffe://agents.spike.local/spire-agent

say() { printf 'bootstrap: %s\n' "$*"; }

# --- PostgreSQL password ------------------------------------------------------
if [ ! -s "$PG_DIR/password" ]; then
	pw=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
	[ ${#pw} -eq 64 ] || {
		echo "bootstrap: cannot read /dev/urandom" >&2
		exit 1
	}
	printf '*:*:spike:spike:%s\n' "$pw" >"$PG_DIR/pgpass.tmp"
	mv "$PG_DIR/pgpass.tmp" "$PG_DIR/pgpass"
	printf '%s\n' "$pw" >"$PG_DIR/password.tmp"
	mv "$PG_DIR/password.tmp" "$PG_DIR/password" # last: it marks both as written
	say "generated the PostgreSQL password"
fi
# Readable by whoever mounts the volume: the postgres container (as root, then
# as its postgres user) and Nexus, each with a user of its own.
chmod 0755 "$PG_DIR"
chmod 0444 "$PG_DIR/password" "$PG_DIR/pgpass"

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
