#!/usr/bin/env bash
# up.sh starts the SPIKE development stack on this machine, without Docker:
# a PostgreSQL cluster, development SVIDs from a local CA, one Keeper and one
# Nexus. State lives in $SPIKE_STATE (default: .spike in the repository).
# With SPIFFE=spire (make up SPIFFE=spire) the SVIDs come from a local SPIRE
# server and agent instead (deploy/local/spire.sh), over the Workload API.
# With PG=ha (make up PG=ha) PostgreSQL is a primary and a synchronous
# standby under Patroni with etcd (deploy/local/patroni.sh), and Nexus
# connects with a multi-host connection string.
# Running it again starts whatever is not running and changes nothing else.
# `make down` (deploy/local/down.sh) stops it all.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$REPO_ROOT"

"$REPO_ROOT/deploy/local/check-deps.sh"

INITDB=$(command -v initdb)
PG_CTL=$(command -v pg_ctl)
PSQL=$(command -v psql)

check_ports() {
	local p
	for p in "$@"; do
		if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then
			die "bad port number: $p"
		fi
	done
}
check_ports "$PG_PORT" "$KEEPER_PORT" "$NEXUS_PORT"
[[ $KEEPERS =~ ^[1-9]$ ]] || die "KEEPERS=$KEEPERS: give a number of Keepers from 1 to 9"
keeper_port() { printf '%s\n' $((KEEPER_PORT + 2 * ($1 - 1))); }
# Plain-HTTP ops listeners (/healthz, /readyz, /metrics): next to the API
# ports unless set, so that a second stack on other ports does not collide.
KEEPER_OPS_PORT=${SPIKE_KEEPER_OPS_PORT:-$((KEEPER_PORT + 1))}
NEXUS_OPS_PORT=${SPIKE_NEXUS_OPS_PORT:-$((NEXUS_PORT + 1))}
check_ports "$KEEPER_OPS_PORT" "$NEXUS_OPS_PORT"
# Every port of the stack, each used once.
all_ports=("$PG_PORT" "$NEXUS_PORT" "$NEXUS_OPS_PORT" "$KEEPER_PORT" "$KEEPER_OPS_PORT")
for ((n = 2; n <= KEEPERS; n++)); do
	all_ports+=("$(keeper_port "$n")" $(($(keeper_port "$n") + 1)))
done
check_ports "${all_ports[@]}"
dup=$(printf '%s\n' "${all_ports[@]}" | sort | uniq -d | head -n1)
[[ -z $dup ]] || die "port $dup would be used twice (PostgreSQL, Nexus and its ops port, and KEEPERS=$KEEPERS Keepers from SPIKE_KEEPER_PORT, two ports each); choose other ports"
[[ $TRUST_DOMAIN =~ ^[a-z0-9._-]+$ ]] || die "bad SPIKE_TRUST_DOMAIN: $TRUST_DOMAIN"

# PostgreSQL: one cluster (default) or HA under Patroni (PG=ha). A running
# stack keeps its mode (run/pg) unless one is given.
PG_MODE=${PG:-$(cat "$PG_MODE_FILE" 2>/dev/null || echo single)}
if [[ $PG_MODE == ha && -n ${SPIKE_PG_SETTINGS:-} ]]; then
	warn "SPIKE_PG_SETTINGS applies to the single cluster only: ignored with PG=ha (Patroni keeps PostgreSQL's settings)"
fi
case $PG_MODE in
single) ;;
ha)
	ha_ports=("$ETCD_PORT" "$ETCD_PEER_PORT")
	for ((n = 1; n <= HA_MEMBERS; n++)); do
		ha_ports+=($((PG_PORT + n - 1)) $((PATRONI_PORT + n - 1)))
	done
	check_ports "${ha_ports[@]}"
	# all_ports[0] is PG_PORT, member 1's port.
	dup=$(printf '%s\n' "${all_ports[@]:1}" "${ha_ports[@]}" | sort | uniq -d | head -n1)
	[[ -z $dup ]] || die "port $dup would be used twice (PG=ha: PostgreSQL on SPIKE_PG_PORT and the next, Patroni on SPIKE_PATRONI_PORT and the next, etcd on SPIKE_ETCD_PORT and the next); choose other ports"
	;;
*) die "PG=$PG: use PG=ha for PostgreSQL under Patroni, or leave it unset for a single cluster" ;;
esac
if [[ $PG_MODE == ha ]] && pg_running; then
	die "the stack runs a single PostgreSQL; 'make down' first to switch to PG=ha"
fi
if [[ $PG_MODE == single && -f $PG_MODE_FILE ]]; then
	die "the stack runs PostgreSQL under Patroni (PG=ha); 'make down' first to switch to a single cluster"
fi
if [[ $PG_MODE == single && -d $HA_DIR && ! -f "$PGDATA_DIR/PG_VERSION" ]]; then
	warn "$STATE holds the databases of PG=ha, not of a single cluster: 'make up PG=ha' uses them; starting an empty single cluster"
fi

# Where the SVIDs come from: the dev CA (default) or SPIRE.
case ${SPIFFE:-} in
"" | devca) USE_SPIRE="" ;;
spire)
	USE_SPIRE=1
	# SPIRE tells processes apart by their executable and user, which
	# Keepers of one stack share.
	((KEEPERS == 1)) || die "KEEPERS=$KEEPERS with SPIFFE=spire: the local SPIRE stack runs one Keeper; use the dev CA for several"
	;;
*) die "SPIFFE=$SPIFFE: use SPIFFE=spire for SVIDs from a local SPIRE server and agent, or leave it unset for the dev CA" ;;
esac
# Keeper and Nexus keep the SVID source they started with; the mode of the
# running ones is in this file (SPIRE mode only).
MODE_FILE="$STATE/run/spiffe"
running_mode=devca
if [[ -f $MODE_FILE && $(<"$MODE_FILE") == spire ]]; then
	running_mode=spire
fi
# The Keepers a running Nexus was started with, in run/keepers.
KEEPERS_FILE="$STATE/run/keepers"
if live_pid nexus >/dev/null && [[ $(cat "$KEEPERS_FILE" 2>/dev/null || echo 1) != "$KEEPERS" ]]; then
	die "the stack runs with $(cat "$KEEPERS_FILE" 2>/dev/null || echo 1) Keeper(s), not KEEPERS=$KEEPERS; 'make down' first"
fi
if live_pid keeper >/dev/null || live_pid nexus >/dev/null; then
	if [[ -n $USE_SPIRE && $running_mode != spire ]]; then
		die "Keeper/Nexus are running with dev-CA SVIDs; 'make down' first to restart them with SPIRE"
	fi
	if [[ -z $USE_SPIRE && $running_mode == spire ]]; then
		die "Keeper/Nexus are running with SVIDs from SPIRE; use 'make up SPIFFE=spire', or 'make down' first"
	fi
fi

# --- binaries ---------------------------------------------------------------

say "==> building binaries"
make --no-print-directory -C "$REPO_ROOT" build
if [[ -n $USE_SPIRE ]]; then
	if [[ ! -x $SPIRE_BIN/spire-server || ! -x $SPIRE_BIN/spire-agent ]]; then
		say "==> building SPIRE into bin/spire (the first build takes several minutes)"
	else
		say "==> building SPIRE into bin/spire"
	fi
	make --no-print-directory -C "$REPO_ROOT" spire
fi

# --- state folder -------------------------------------------------------------

# $STATE holds the CA key, SVID keys and the database password (all 0600),
# so it is not listable by others; 0711 lets the postgres OS user reach
# its own directories inside.
mkdir -p "$STATE"/{ca,svid,log,run,pg}
chmod 0711 "$STATE" "$STATE/pg" "$STATE/log"
chmod 0700 "$STATE/ca" "$STATE/svid" "$STATE/run"

# --- SVIDs --------------------------------------------------------------------

keeper_id() { printf 'spiffe://%s/spike/keeper/%s\n' "$TRUST_DOMAIN" "$1"; }
KEEPER_ID=$(keeper_id 1)
NEXUS_ID="spiffe://$TRUST_DOMAIN/spike/nexus"
PILOT_ID="spiffe://$TRUST_DOMAIN/spike/pilot"

if [[ -n $USE_SPIRE ]]; then
	# Server, agent and one entry per program (by executable path and uid).
	"$REPO_ROOT/deploy/local/spire.sh" start
else
	say "==> minting SVIDs (CA in $STATE/ca)"
	mint() {
		"$BIN/spike-devca" -ca "$STATE/ca" -id "$1" -out "$STATE/svid/$2" ||
			die "cannot mint an SVID for $1 (a CA for another trust domain in $STATE/ca? remove that directory to start over)"
	}
	for ((n = 1; n <= KEEPERS; n++)); do
		mint "$(keeper_id "$n")" "$(keeper_name "$n")"
	done
	mint "$NEXUS_ID" nexus
	mint "$PILOT_ID" pilot
fi

# --- PostgreSQL ---------------------------------------------------------------

PG_PASSWORD_FILE="$STATE/pg/password"

# TLS: a CA of the stack's database (pg/ca, not the SPIFFE CA) and a server
# certificate for 127.0.0.1 and localhost (pg/tls), minted once. Clients
# connect with sslmode=verify-full and the CA's certificate as sslrootcert.
PG_CA_DIR="$STATE/pg/ca"
PG_TLS_DIR="$STATE/pg/tls"
if [[ ! -s $PG_TLS_DIR/server.pem || ! -s $PG_TLS_DIR/server-key.pem || ! -s $PG_CA_DIR/ca.pem ]]; then
	"$BIN/spike-devca" -ca "$PG_CA_DIR" -td db.spike.local -host 127.0.0.1,localhost \
		-out "$PG_TLS_DIR" -ttl 87600h >/dev/null ||
		die "cannot mint PostgreSQL's server certificate (remove $PG_CA_DIR and $PG_TLS_DIR to start over)"
fi
chmod 0700 "$PG_TLS_DIR"
if is_root; then
	chown -R "$PG_OS_USER:" "$PG_TLS_DIR"
fi

if [[ $PG_MODE == ha ]]; then
	# etcd and the Patroni members; returns once there is a primary and a
	# synchronous standby. The stack's clients reach the members through
	# their Unix sockets, as in the single-node stack: one host (socket
	# directory) and port per member, and only the primary will do.
	"$REPO_ROOT/deploy/local/patroni.sh" start
	PG_HOSTS="" PG_PORTS="" TCP_HOSTS=""
	for ((n = 1; n <= HA_MEMBERS; n++)); do
		PG_HOSTS+="${PG_HOSTS:+,}$HA_DIR/m$n/run"
		PG_PORTS+="${PG_PORTS:+,}$((PG_PORT + n - 1))"
		TCP_HOSTS+="${TCP_HOSTS:+,}127.0.0.1:$((PG_PORT + n - 1))"
	done
	TARGET_ATTRS=read-write
	TARGET_PARAM="&target_session_attrs=$TARGET_ATTRS"
else
	PG_LOG="$STATE/log/postgres.log"

	# Linux limits a Unix socket path to 107 bytes (108 with the NUL).
	sock_path="$PGRUN_DIR/.s.PGSQL.$PG_PORT"
	((${#sock_path} <= 107)) ||
		die "state directory path too long for PostgreSQL's Unix socket ($sock_path); set SPIKE_STATE to a shorter path"

	mkdir -p "$PGDATA_DIR" "$PGRUN_DIR"
	chmod 0700 "$PGDATA_DIR" "$PGRUN_DIR"
	touch "$PG_LOG"
	chmod 0600 "$PG_LOG"
	if is_root; then
		chown "$PG_OS_USER:" "$PGDATA_DIR" "$PGRUN_DIR" "$PG_LOG"
		as_pg test -w "$PGDATA_DIR" ||
			die "OS user $PG_OS_USER cannot reach $PGDATA_DIR: every parent directory must be searchable (o+x) by it; chmod o+x them or set SPIKE_STATE elsewhere"
	fi

	if [[ ! -f "$PGDATA_DIR/PG_VERSION" ]]; then
		if [[ -n $(ls -A "$PGDATA_DIR") ]]; then
			die "$PGDATA_DIR is not empty but holds no PostgreSQL cluster; remove it to start over"
		fi
		say "==> initdb $PGDATA_DIR"
		# Local (Unix socket) connections are trusted: the socket directory is
		# 0700 and owned by the server's OS user. TCP needs a password.
		as_pg "$INITDB" -D "$PGDATA_DIR" -U postgres -E UTF8 --locale=C \
			--auth-local=trust --auth-host=scram-sha-256 --no-instructions \
			>"$STATE/log/initdb.log" 2>&1 || {
			log_tail "$STATE/log/initdb.log"
			die "initdb failed"
		}
		printf "\n# Settings of the SPIKE dev stack (deploy/local/up.sh).\ninclude_if_exists = 'spike.conf'\n" \
			>>"$PGDATA_DIR/postgresql.conf"
	fi

	# Rewritten on every run; takes effect when the server (re)starts or
	# reloads (below).
	sq() { printf '%s' "${1//\'/\'\'}"; } # quote for a postgresql.conf string
	cat >"$PGDATA_DIR/spike.conf" <<EOF
# Written by deploy/local/up.sh on every run; edit SPIKE_PG_PORT instead.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$(sq "$PGRUN_DIR")'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '$(sq "$PG_TLS_DIR/server.pem")'
ssl_key_file = '$(sq "$PG_TLS_DIR/server-key.pem")'
EOF
	# The caller's own settings (make bench loads pg_stat_statements this
	# way), one per line; shared_preload_libraries takes effect only when
	# the server next starts.
	if [[ -n ${SPIKE_PG_SETTINGS:-} ]]; then
		printf '# From SPIKE_PG_SETTINGS.\n%s\n' "$SPIKE_PG_SETTINGS" >>"$PGDATA_DIR/spike.conf"
	fi
	# Who may connect how, also rewritten on every run. The stack's own
	# clients (Nexus, spike-nexus migrate, make psql, make bench) use the Unix
	# socket: no network, no TLS to pay for, and the socket's directory is 0700
	# (only the server's OS user and root reach it). There the superuser needs
	# no password (up.sh bootstraps with it) and every other role needs its own.
	# Over TCP, TLS and a password are required.
	cat >"$PGDATA_DIR/pg_hba.conf" <<EOF
# Written by deploy/local/up.sh on every run.
# TYPE  DATABASE USER     ADDRESS       METHOD
local   all      postgres               trust
local   all      all                    scram-sha-256
hostssl all      all      127.0.0.1/32  scram-sha-256
EOF
	chmod 0600 "$PGDATA_DIR/spike.conf" "$PGDATA_DIR/pg_hba.conf"
	if is_root; then
		chown "$PG_OS_USER:" "$PGDATA_DIR/spike.conf" "$PGDATA_DIR/pg_hba.conf"
	fi

	if pg_running; then
		running_port=$(sed -n 4p "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true)
		[[ $running_port == "$PG_PORT" ]] ||
			die "PostgreSQL of this stack is running on port ${running_port:-?}, not SPIKE_PG_PORT=$PG_PORT; run 'make down' first"
		say "==> PostgreSQL already running on 127.0.0.1:$PG_PORT"
		# TLS settings (and others that need no restart) take effect now.
		as_pg "$PG_CTL" -D "$PGDATA_DIR" reload >/dev/null || die "PostgreSQL did not reload its settings"
	else
		if port_open "$PG_PORT"; then
			die "port 127.0.0.1:$PG_PORT is taken by another program; set SPIKE_PG_PORT"
		fi
		say "==> starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
		as_pg "$PG_CTL" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 60 start >/dev/null || {
			log_tail "$PG_LOG"
			die "PostgreSQL did not start"
		}
	fi
	PG_HOSTS=$PGRUN_DIR PG_PORTS=$PG_PORT TCP_HOSTS="127.0.0.1:$PG_PORT" TARGET_ATTRS=any TARGET_PARAM=""
fi

# Two roles: spike owns the database and its schema and runs the
# migrations (make psql connects as it); spike_nexus is the role Nexus
# serves as, granted by `spike-nexus migrate` only what it needs (no DDL,
# the audit trail append-only). Each has its own password file.
NEXUS_ROLE=spike_nexus
NEXUS_PASSWORD_FILE="$STATE/pg/nexus-password"
PG_PASSWORD=$(read_password "$PG_PASSWORD_FILE")
NEXUS_PASSWORD=$(read_password "$NEXUS_PASSWORD_FILE")

# Roles and database: created when missing. Passwords are (re)set from the
# password files so that they always agree, and the serving role is stripped
# of any attribute that would let it alter the audit trail (Nexus refuses to
# start otherwise). SQL goes through stdin, so no password shows up in a
# process list. A stack made before the roles were split keeps its data:
# spike already owns everything and becomes the owner role.
PGTARGETSESSIONATTRS=$TARGET_ATTRS as_pg "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PG_HOSTS" -p "$PG_PORTS" -U postgres -d postgres >/dev/null <<EOF
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'spike') THEN
    CREATE ROLE spike LOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '$NEXUS_ROLE') THEN
    CREATE ROLE $NEXUS_ROLE LOGIN;
  END IF;
END
\$\$;
ALTER ROLE spike WITH LOGIN PASSWORD '$PG_PASSWORD';
ALTER ROLE $NEXUS_ROLE WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION PASSWORD '$NEXUS_PASSWORD';
SELECT 'CREATE DATABASE spike OWNER spike'
  WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'spike')\gexec
EOF
urlq() { # urlq STRING: percent-encodes what a URL query value cannot hold as is
	local v=${1//%/%25}
	v=${v// /%20}
	v=${v//&/%26}
	v=${v//#/%23}
	v=${v//+/%2B}
	printf '%s' "${v//\?/%3F}"
}
# The stack's own clients connect through the Unix socket (see pg_hba.conf
# above); TCP_URL is the same database over TCP and TLS, for other tools.
SOCKET_PARAMS="host=$(urlq "$PG_HOSTS")&port=$PG_PORTS$TARGET_PARAM"
OWNER_URL="postgres://spike:$PG_PASSWORD@/spike?$SOCKET_PARAMS"
DATABASE_URL="postgres://$NEXUS_ROLE:$NEXUS_PASSWORD@/spike?$SOCKET_PARAMS"
TCP_URL="postgres://spike:$PG_PASSWORD@$TCP_HOSTS/spike?sslmode=verify-full&sslrootcert=$(urlq "$PG_CA_DIR/ca.pem")$TARGET_PARAM"
say "==> database spike ready (owner spike, password in $PG_PASSWORD_FILE;" \
	"Nexus serves as $NEXUS_ROLE, password in $NEXUS_PASSWORD_FILE)"

# The schema is migrated by its owner, never by the serving Nexus. The
# settings are exported in a subshell, not passed as arguments, so that no
# password shows in the process list.
MIGRATE_LOG="$STATE/log/migrate.log"
say "==> spike-nexus migrate (as spike, granting $NEXUS_ROLE; log: $MIGRATE_LOG)"
touch "$MIGRATE_LOG"
chmod 0600 "$MIGRATE_LOG"
(
	export SPIKE_DATABASE_OWNER_URL="$OWNER_URL" SPIKE_DATABASE_ROLE="$NEXUS_ROLE"
	"$BIN/spike-nexus" migrate >>"$MIGRATE_LOG" 2>&1 </dev/null
) || {
	log_tail "$MIGRATE_LOG"
	die "spike-nexus migrate failed"
}

# --- Keeper and Nexus -------------------------------------------------------

# start_program NAME PORT VAR=VALUE... starts bin/spike-NAME (without a
# -N suffix: keeper-2 runs spike-keeper) in the background
# with the given environment, unless it already runs, and waits until it
# listens on 127.0.0.1:PORT. Its pid goes to $STATE/run/NAME.pid, its output
# to $STATE/log/NAME.log.
start_program() {
	local name=$1 port=$2
	shift 2
	local pidfile="$STATE/run/$name.pid" addrfile="$STATE/run/$name.addr"
	local log="$STATE/log/$name.log" pid prog="spike-${name%%-[0-9]*}"

	if pid=$(live_pid "$name"); then
		local addr
		addr=$(cat "$addrfile" 2>/dev/null || true)
		[[ $addr == "127.0.0.1:$port" ]] ||
			die "$name (pid $pid) is running on ${addr:-an unknown address}, not 127.0.0.1:$port; run 'make down' first"
		say "==> $name already running (pid $pid, 127.0.0.1:$port)"
		if ! cmp -s "/proc/$pid/exe" "$BIN/$prog"; then
			say "    (bin/$prog was rebuilt since it started: 'make down && make up' runs the new build)"
		fi
		return 0
	fi
	rm -f "$pidfile" "$addrfile"
	if port_open "$port"; then
		local var=SPIKE_NEXUS_PORT
		[[ $name == keeper* ]] && var=SPIKE_KEEPER_PORT
		die "port 127.0.0.1:$port is taken by another program; cannot start $name: set $var (and SPIKE_STATE for a second stack)"
	fi

	say "==> starting $name on 127.0.0.1:$port (log: $log)"
	touch "$log"
	chmod 0600 "$log"
	# A SPIRE socket in the caller's environment would make the program
	# use the Workload API instead of the dev SVID files.
	# The settings are exported inside the subshell, not passed as
	# arguments, so the database password never shows in the process list.
	(
		unset SPIFFE_ENDPOINT_SOCKET
		for kv in "$@"; do export "${kv?}"; done
		exec setsid nohup "$BIN/$prog" >>"$log" 2>&1 </dev/null
	) &
	pid=$!
	printf '%s\n' "$pid" >"$pidfile"
	printf '127.0.0.1:%s\n' "$port" >"$addrfile"

	local deadline=$((SECONDS + START_TIMEOUT))
	until port_open "$port"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$pidfile" "$addrfile"
			log_tail "$log"
			die "$name exited during startup; the stack is partly up: fix the error, then 'make up' again (or 'make down')"
		fi
		if ((SECONDS >= deadline)); then
			log_tail "$log"
			kill -TERM "$pid" 2>/dev/null || true
			rm -f "$pidfile" "$addrfile"
			die "$name did not listen on 127.0.0.1:$port within ${START_TIMEOUT}s (stopped it); the stack is partly up: 'make down' stops the rest"
		fi
		sleep 0.2
	done
}

# svid_env NAME prints the settings that give program NAME its SVID.
svid_env() {
	if [[ -n $USE_SPIRE ]]; then
		printf '%s\n' "SPIFFE_ENDPOINT_SOCKET=unix://$SPIRE_AGENT_SOCKET"
	else
		printf '%s\n' "SPIKE_SVID_CERT=$STATE/svid/$1/svid.pem" \
			"SPIKE_SVID_KEY=$STATE/svid/$1/key.pem" \
			"SPIKE_TRUST_BUNDLE=$STATE/svid/$1/bundle.pem"
	fi
}
mapfile -t nexus_svid < <(svid_env nexus)
if [[ -n $USE_SPIRE ]]; then
	printf 'spire\n' >"$MODE_FILE"
elif ! live_pid keeper >/dev/null && ! live_pid nexus >/dev/null; then
	rm -f "$MODE_FILE"
fi

# Each Keeper knows the others as its peers: one that restarts takes the
# root key from them. Nexus knows all of them.
KEEPER_URLS=()
for ((n = 1; n <= KEEPERS; n++)); do
	KEEPER_URLS+=("https://127.0.0.1:$(keeper_port "$n")")
done
for ((n = 1; n <= KEEPERS; n++)); do
	port=$(keeper_port "$n")
	ops_port=$((port + 1))
	if ((n == 1)); then
		ops_port=$KEEPER_OPS_PORT
	fi
	peers=("${KEEPER_URLS[@]:0:n-1}" "${KEEPER_URLS[@]:n}")
	mapfile -t keeper_svid < <(svid_env "$(keeper_name "$n")")
	start_program "$(keeper_name "$n")" "$port" \
		SPIKE_KEEPER_LISTEN="127.0.0.1:$port" \
		SPIKE_KEEPER_OPS_LISTEN="127.0.0.1:$ops_port" \
		SPIKE_KEEPER_PEERS="$(IFS=,; printf '%s' "${peers[*]}")" \
		SPIKE_TRUST_DOMAIN="$TRUST_DOMAIN" \
		"${keeper_svid[@]}"
done
nexus_keepers=(SPIKE_KEEPER_URLS="$(IFS=,; printf '%s' "${KEEPER_URLS[*]}")")
if ((KEEPERS == 1)); then
	nexus_keepers+=(SPIKE_KEEPER_ID="$KEEPER_ID")
fi

start_program nexus "$NEXUS_PORT" \
	SPIKE_NEXUS_LISTEN="127.0.0.1:$NEXUS_PORT" \
	SPIKE_NEXUS_OPS_LISTEN="127.0.0.1:$NEXUS_OPS_PORT" \
	SPIKE_TRUST_DOMAIN="$TRUST_DOMAIN" \
	SPIKE_DATABASE_URL="$DATABASE_URL" \
	"${nexus_keepers[@]}" \
	"${nexus_svid[@]}"
printf '%s\n' "$KEEPERS" >"$KEEPERS_FILE"

# --- environment for Pilot ----------------------------------------------------

ENV_FILE="$STATE/env"
# shellcheck source=deploy/local/stack-env.sh
. "$REPO_ROOT/deploy/local/stack-env.sh"
write_stack_env "$ENV_FILE"

# --- next steps ---------------------------------------------------------------

if [[ $STATE == "$REPO_ROOT/.spike" ]]; then
	env_hint=./.spike/env
else
	env_hint=$ENV_FILE
fi

# Ask Nexus whether SPIKE is initialised and unsealed (best effort: when in
# doubt, print every hint).
status_json=$(
	# shellcheck disable=SC1090
	. "$ENV_FILE"
	# 2: sealed or not initialised, which the JSON says too.
	timeout 20 "$BIN/spike" operator status -o json 2>/dev/null || [[ $? == 2 ]]
) || status_json=""
json_bool() { # json_bool FIELD: prints true, false or nothing
	local re="\"$1\"[[:space:]]*:[[:space:]]*(true|false)"
	[[ $status_json =~ $re ]] && printf '%s' "${BASH_REMATCH[1]}"
}
initialised=$(json_bool initialized || true)
sealed=$(json_bool sealed || true)
if [[ -n $status_json && -z $initialised ]]; then
	initialised=false # proto3 JSON may leave out false fields
fi

say ""
if [[ $PG_MODE == ha ]]; then
	pg_where="PostgreSQL under Patroni $TCP_HOSTS (deploy/local/patroni.sh status shows the roles)"
else
	pg_where="PostgreSQL 127.0.0.1:$PG_PORT"
fi
say "SPIKE is up: Nexus https://127.0.0.1:$NEXUS_PORT, Keeper(s) ${KEEPER_URLS[*]}," \
	"$pg_where (state in $STATE, logs in $STATE/log)."
say "Metrics and health: http://127.0.0.1:$NEXUS_OPS_PORT/{metrics,healthz,readyz} (Nexus)," \
	"http://127.0.0.1:$KEEPER_OPS_PORT/... (Keeper)."
if [[ -n $USE_SPIRE ]]; then
	say "SVIDs come from SPIRE (X509-SVID TTL $SVID_TTL): Workload API unix://$SPIRE_AGENT_SOCKET," \
		"server 127.0.0.1:$SPIRE_SERVER_PORT; deploy/local/spire.sh entries lists the registrations."
fi
say ""
case $initialised in
true)
	say "SPIKE is already initialised. Next steps:"
	say "    . $env_hint"
	if [[ $sealed != false ]]; then
		say "    echo '<password>' | bin/spike operator unseal    # Keeper forgets the keys when it restarts"
	fi
	say "    bin/spike secret put apps/demo/db user=admin pass=s3cr3t"
	say "    bin/spike secret get apps/demo/db"
	if [[ $sealed == false ]]; then
		say "After a restart of Keeper, unseal with: echo '<password>' | bin/spike operator unseal"
	fi
	;;
*)
	say "Next steps:"
	say "    . $env_hint"
	say "    echo 'correct horse battery' | bin/spike operator init"
	say "    bin/spike secret put apps/demo/db user=admin pass=s3cr3t"
	say "    bin/spike secret get apps/demo/db"
	if [[ $initialised != false ]]; then
		say "(Could not ask Nexus whether SPIKE is initialised. If it is, unseal it after a"
		say "restart instead of init: echo '<password>' | bin/spike operator unseal)"
	fi
	;;
esac
say ""
say "make psql opens the database; make down stops everything (state stays in $STATE)."
