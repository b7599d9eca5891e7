#!/usr/bin/env bash
# bench.sh is `make bench`: it starts a dedicated SPIKE stack (its own state
# folder and ports, so a running dev stack is left alone), initialises it,
# runs spike-bench against it and stops it again, leaving the report in
# docs/benchmarks.md. The stack setup is deploy/local/bench-lib.sh, shared
# with `make bench-scale`.
#
#   BENCH_DURATION=5s        how long each cell runs
#   BENCH_CONCURRENCY=1,16,64
#   BENCH_PROTOCOLS=h2,h1    HTTP versions SPIKE and the floor are called over
#   BENCH_VALUE_SIZE=256     bytes per secret value
#   BENCH_PATHS=100          distinct secret paths
#   BENCH_OUT=docs/benchmarks.md
#   BENCH_STATE=.spike-bench state folder, wiped at the start of each run
#   BENCH_PG_PORT=55532 BENCH_KEEPER_PORT=8643 BENCH_NEXUS_PORT=8653
#   BENCH_FLOOR_PORT=8663    the protocol floor (spike-nexus floor): a Connect
#                            server with Nexus's TLS and HTTP settings whose
#                            handlers do no work, measured beside SPIKE
#                            (the ops listeners take the next ports up)
#   BENCH_KEEP_STATE=1       keep the state folder after a successful run
#   BENCH_PG_STATS=1         statements and WAL per request from PostgreSQL's
#                            pg_stat_statements (0: not loaded)
#   BENCH_PROFILE=dir        CPU profiles of Nexus and spike-bench for each
#                            SPIKE cell into dir (go tool pprof dir/nexus-...)
#
# spike-bench calls Nexus as a workload (spiffe://TD/bench, a dev SVID), which
# a policy lets read and write under bench/**: what an application does.
# The state folder (logs included) is kept when the run fails.
set -euo pipefail

PROFILE=${BENCH_PROFILE:-}
if [[ -n $PROFILE ]]; then
	[[ $PROFILE == /* ]] || PROFILE="$PWD/$PROFILE"
	export SPIKE_NEXUS_PPROF=true
fi

# PostgreSQL counts statements and WAL per request for the report
# (pg_stat_statements ships with PostgreSQL; BENCH_PG_STATS=0 leaves it out).
PG_STATS=${BENCH_PG_STATS:-1}
case $PG_STATS in
0) ;;
1)
	# After the caller's own settings, which are kept.
	export SPIKE_PG_SETTINGS="${SPIKE_PG_SETTINGS:+$SPIKE_PG_SETTINGS
}shared_preload_libraries = 'pg_stat_statements'"
	;;
*)
	printf 'bench: BENCH_PG_STATS must be 0 or 1, got %s\n' "$PG_STATS" >&2
	exit 1
	;;
esac

BENCH_NAME=bench
BENCH_DEFAULT_STATE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)/.spike-bench
BENCH_DEFAULT_OUT=$(dirname "$BENCH_DEFAULT_STATE")/docs/benchmarks.md
BENCH_DEFAULT_PORTS="55532 8643 8653"
BENCH_PERMS=read,write
# shellcheck source=deploy/local/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

FLOOR_PORT=${BENCH_FLOOR_PORT:-8663}
FLOOR_OPS_PORT=$((FLOOR_PORT + 1))

# The protocol floor serves with Nexus's own SVID, so the client that calls
# Nexus calls it unchanged.
say "starting the protocol floor on 127.0.0.1:$FLOOR_PORT"
SPIKE_TRUST_DOMAIN=${SPIKE_TRUST_DOMAIN:-spike.local} \
	SPIKE_SVID_CERT=$STATE/svid/nexus/svid.pem SPIKE_SVID_KEY=$STATE/svid/nexus/key.pem \
	SPIKE_TRUST_BUNDLE=$STATE/svid/nexus/bundle.pem \
	SPIKE_FLOOR_LISTEN=127.0.0.1:$FLOOR_PORT SPIKE_FLOOR_OPS_LISTEN=127.0.0.1:$FLOOR_OPS_PORT \
	SPIKE_FLOOR_VALUE_SIZE=${BENCH_VALUE_SIZE:-256} \
	"$REPO_ROOT/bin/spike-nexus" floor >"$STATE/floor.log" 2>&1 &
floor_pid=$!
for _ in $(seq 1 50); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$FLOOR_OPS_PORT") 2>/dev/null; then
		break
	fi
	kill -0 "$floor_pid" 2>/dev/null || {
		cat "$STATE/floor.log" >&2
		die "spike-nexus floor exited (log: $STATE/floor.log)"
	}
	sleep 0.1
done

pg_stats_url=""
if [[ $PG_STATS == 1 ]]; then
	# The superuser over the stack's Unix socket (trusted there, see up.sh),
	# in its own database: the view shows every database's statements.
	pg_stats_url="host=$STATE/pg/run port=$SPIKE_PG_PORT user=postgres dbname=postgres"
	psql -X -q -v ON_ERROR_STOP=1 "$pg_stats_url" \
		-c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' >"$STATE/pg-stats.log" 2>&1 || {
		cat "$STATE/pg-stats.log" >&2
		die "could not load pg_stat_statements (BENCH_PG_STATS=0 measures without it)"
	}
fi

say "running spike-bench"
"$REPO_ROOT/bin/spike-bench" \
	-token-file "" \
	-concurrency "${BENCH_CONCURRENCY:-1,16,64}" \
	-protocols "${BENCH_PROTOCOLS:-h2,h1}" \
	-duration "${BENCH_DURATION:-5s}" \
	-value-size "${BENCH_VALUE_SIZE:-256}" \
	-paths "${BENCH_PATHS:-100}" \
	-out "$OUT" \
	-profile "$PROFILE" \
	-nexus-metrics "http://127.0.0.1:$NEXUS_OPS_PORT/metrics" \
	-keeper-metrics "http://127.0.0.1:$KEEPER_OPS_PORT/metrics" \
	-floor "https://127.0.0.1:$FLOOR_PORT" \
	-floor-metrics "http://127.0.0.1:$FLOOR_OPS_PORT/metrics" \
	-pg-stats-url "$pg_stats_url"
ok=true
