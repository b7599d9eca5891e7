# shellcheck shell=bash disable=SC2034 # the variables are for the sourcing scripts
# lib.sh holds the settings and helpers shared by the deploy/local scripts.
# Source it from bash (set -euo pipefail); it is not meant to be run.

# PostgreSQL 15 as Debian/Ubuntu install it. Appended, so a PostgreSQL that is
# already on PATH wins.
PG_FALLBACK_BIN=/usr/lib/postgresql/15/bin
case ":$PATH:" in
*":$PG_FALLBACK_BIN:"*) ;;
*) PATH="$PATH:$PG_FALLBACK_BIN" ;;
esac
export PATH

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
BIN="$REPO_ROOT/bin"

STATE=${SPIKE_STATE:-$REPO_ROOT/.spike}
case $STATE in
/*) ;;
*) STATE="$PWD/$STATE" ;;
esac

PG_PORT=${SPIKE_PG_PORT:-55432}
KEEPER_PORT=${SPIKE_KEEPER_PORT:-8443}
NEXUS_PORT=${SPIKE_NEXUS_PORT:-8553}
# How many Keepers (make up KEEPERS=3): keeper n listens on
# KEEPER_PORT + 2(n-1), its ops listener on the port after.
# A running stack keeps its count (run/keepers) unless one is given.
KEEPERS=${KEEPERS:-${SPIKE_KEEPERS:-$(cat "$STATE/run/keepers" 2>/dev/null || echo 1)}}
TRUST_DOMAIN=${SPIKE_TRUST_DOMAIN:-spike.local}
START_TIMEOUT=${SPIKE_START_TIMEOUT:-30}

PGDATA_DIR="$STATE/pg/data"
PGRUN_DIR="$STATE/pg/run"

# SPIRE mode (make up SPIFFE=spire; deploy/local/spire.sh): the pinned
# server and agent built by `make spire`, their state and sockets.
SPIRE_BIN="$BIN/spire"
SPIRE_DIR="$STATE/spire"
SPIRE_SERVER_PORT=${SPIKE_SPIRE_PORT:-8081}
SPIRE_SERVER_SOCKET="$SPIRE_DIR/server.sock"
SPIRE_AGENT_SOCKET="$SPIRE_DIR/agent.sock"
SVID_TTL=${SPIKE_SVID_TTL:-1h}

# The OS user PostgreSQL runs as: itself refuses to run as root.
PG_OS_USER=postgres

# HA mode (make up PG=ha; deploy/local/patroni.sh): one etcd and two
# PostgreSQL members under Patroni. Member n listens on PG_PORT + n - 1
# and its Patroni REST API on PATRONI_PORT + n - 1.
HA_DIR="$STATE/ha"
HA_MEMBERS=2
ETCD_PORT=${SPIKE_ETCD_PORT:-52379}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
PATRONI_PORT=${SPIKE_PATRONI_PORT:-58008}
# The PostgreSQL mode of the running stack (ha), if any, is in this file.
PG_MODE_FILE="$STATE/run/pg"

say() { printf '%s\n' "$*"; }
warn() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() {
	warn "$*"
	exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# as_pg runs a command as the PostgreSQL OS user when we are root, otherwise
# as ourselves. It runs from / so the server never starts in a directory that
# user cannot read.
as_pg() {
	if is_root; then
		(cd / && runuser -u "$PG_OS_USER" -- "$@")
	else
		(cd / && "$@")
	fi
}

# pg_running succeeds when the stack's PostgreSQL cluster is up.
pg_running() {
	[[ -f "$PGDATA_DIR/PG_VERSION" ]] || return 1
	as_pg "$(command -v pg_ctl)" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

# live_pid NAME [COMM] prints the pid from $STATE/run/NAME.pid if that
# process is alive and its command is COMM (default: spike-NAME without a
# -N suffix, i.e. bin/spike-NAME; not a recycled pid); it fails otherwise.
live_pid() {
	local pidfile="$STATE/run/$1.pid" pid comm
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# A killed process that nobody reaped yet (a zombie) is not running.
	[[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]] || return 1
	comm=$(ps -o comm= -p "$pid" 2>/dev/null) || return 1
	comm=${comm//[[:space:]]/}
	[[ $comm == "${2:-spike-${1%%-[0-9]*}}" ]] || return 1
	printf '%s\n' "$pid"
}

# keeper_name N is the name of Keeper N in run/, log/ and svid/: keeper,
# keeper-2, keeper-3...
keeper_name() {
	if (($1 == 1)); then
		printf 'keeper\n'
	else
		printf 'keeper-%s\n' "$1"
	fi
}

# port_open PORT succeeds when something accepts TCP connections on
# 127.0.0.1:PORT.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# read_password FILE creates FILE (0600) with a random hex password if it
# is missing or empty, and prints the password.
read_password() {
	if [[ ! -s $1 ]]; then
		(
			umask 077
			od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$1"
		)
	fi
	chmod 0600 "$1"
	local pw
	pw=$(<"$1")
	[[ $pw =~ ^[0-9a-f]+$ ]] || die "$1 must hold a hex password; remove it to generate a new one"
	printf '%s' "$pw"
}

# http_status PORT PATH prints the status code of GET
# http://127.0.0.1:PORT/PATH (curl-free: bash's /dev/tcp), or fails.
http_status() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
		IFS=' ' read -r -t 3 _ code _ <&3 || exit 1
		# Read the rest: a client that hangs up early makes servers log.
		timeout 3 cat <&3 >/dev/null || true
		printf '%s\n' "$code"
	) 2>/dev/null
}

# log_tail FILE prints the last 20 lines of a log file to stderr.
log_tail() {
	if [[ -f $1 ]]; then
		printf -- '--- last 20 lines of %s ---\n' "$1" >&2
		tail -n 20 "$1" >&2
		printf -- '---\n' >&2
	fi
}
