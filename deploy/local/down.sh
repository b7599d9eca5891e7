#!/usr/bin/env bash
# down.sh stops the SPIKE development stack started by up.sh: Nexus, then
# Keeper, then the SPIRE agent and server if they run (SPIFFE=spire), then
# PostgreSQL (and with PG=ha the Patroni members and etcd). State stays in $SPIKE_STATE (default .spike), so
# `make up` brings the same stack back. Running it when nothing runs is fine.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STOP_TIMEOUT=${SPIKE_STOP_TIMEOUT:-10}

# stop_program NAME stops the process in $STATE/run/NAME.pid (bin/spike-NAME): SIGTERM, then
# SIGKILL if it is still there after STOP_TIMEOUT seconds.
stop_program() {
	local name=$1 pid
	if ! pid=$(live_pid "$name"); then
		say "$name: not running"
		rm -f "$STATE/run/$name.pid" "$STATE/run/$name.addr"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + STOP_TIMEOUT))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		warn "$name (pid $pid) still running after ${STOP_TIMEOUT}s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do
			sleep 0.1
		done
		say "$name: killed (pid $pid)"
	else
		say "$name: stopped (pid $pid)"
	fi
	rm -f "$STATE/run/$name.pid" "$STATE/run/$name.addr"
}

stop_program nexus
stop_program keeper
for pidfile in "$STATE"/run/keeper-[0-9]*.pid; do
	[[ -e $pidfile ]] || continue
	name=${pidfile##*/}
	stop_program "${name%.pid}"
done
rm -f "$STATE/run/keepers"
# The SVID source Keeper and Nexus ran with (SPIRE mode only).
rm -f "$STATE/run/spiffe"

if [[ -e $STATE/run/spire-agent.pid || -e $STATE/run/spire-server.pid ]]; then
	"$REPO_ROOT/deploy/local/spire.sh" stop
fi

if [[ -d $HA_DIR ]]; then
	"$REPO_ROOT/deploy/local/patroni.sh" stop
fi

if [[ -f "$PGDATA_DIR/PG_VERSION" ]] && command -v pg_ctl >/dev/null 2>&1 && pg_running; then
	if as_pg "$(command -v pg_ctl)" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null; then
		say "postgresql: stopped ($PGDATA_DIR)"
	else
		warn "pg_ctl stop -m fast failed; trying -m immediate"
		as_pg "$(command -v pg_ctl)" -D "$PGDATA_DIR" -m immediate -w -t 30 stop >/dev/null ||
			die "cannot stop PostgreSQL in $PGDATA_DIR; see $STATE/log/postgres.log"
		say "postgresql: stopped immediately ($PGDATA_DIR)"
	fi
else
	say "postgresql: not running"
fi

say "state kept in $STATE (remove it for a fresh stack)"
