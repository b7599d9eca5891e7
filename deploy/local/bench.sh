#!/usr/bin/env bash
# bench.sh is `make bench`: it starts a dedicated SPIKE stack (its own state
# folder and ports, so a running dev stack is left alone), initialises it,
# runs spike-bench against it and stops it again, leaving the report in
# docs/benchmarks.md.
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
#   BENCH_PROFILE=dir        CPU profiles of Nexus and spike-bench for each
#                            SPIKE cell into dir (go tool pprof dir/nexus-...)
#
# spike-bench calls Nexus as a workload (spiffe://TD/bench, a dev SVID), which
# a policy lets read and write under bench/**: what an application does.
# The state folder (logs included) is kept when the run fails.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
GO=${GO:-go}

STATE=${BENCH_STATE:-$REPO_ROOT/.spike-bench}
case $STATE in
/*) ;;
*) STATE="$PWD/$STATE" ;;
esac
OUT=${BENCH_OUT:-$REPO_ROOT/docs/benchmarks.md}
case $OUT in
/*) ;;
*) OUT="$PWD/$OUT" ;;
esac

# The stack that `make up` and `make down` manage below.
export SPIKE_STATE=$STATE
export SPIKE_PG_PORT=${BENCH_PG_PORT:-55532}
export SPIKE_KEEPER_PORT=${BENCH_KEEPER_PORT:-8643}
export SPIKE_NEXUS_PORT=${BENCH_NEXUS_PORT:-8653}
unset SPIKE_KEEPER_OPS_PORT SPIKE_NEXUS_OPS_PORT # next to the API ports
PROFILE=${BENCH_PROFILE:-}
if [[ -n $PROFILE ]]; then
	[[ $PROFILE == /* ]] || PROFILE="$PWD/$PROFILE"
	export SPIKE_NEXUS_PPROF=true
fi
FLOOR_PORT=${BENCH_FLOOR_PORT:-8663}
FLOOR_OPS_PORT=$((FLOOR_PORT + 1))
KEEPER_OPS_PORT=$((SPIKE_KEEPER_PORT + 1))
NEXUS_OPS_PORT=$((SPIKE_NEXUS_PORT + 1))

# MARKER says that a folder is a bench state folder, which this script may
# wipe; it wipes no other folder.
MARKER=.spike-bench-state

say() { printf 'bench: %s\n' "$*"; }
die() {
	printf 'bench: %s\n' "$*" >&2
	exit 1
}

[[ $STATE != "$REPO_ROOT/.spike" ]] || die "BENCH_STATE must not be the dev stack's .spike: the bench wipes its state"
if [[ -e $STATE && ! -e $STATE/$MARKER && -n $(ls -A "$STATE" 2>/dev/null) ]]; then
	die "$STATE exists and is not a bench state folder (no $MARKER); choose another BENCH_STATE"
fi

# A clean make: settings on the command line of an outer `make bench` would
# otherwise reach it through MAKEFLAGS and override the ones above.
unset MAKEFLAGS MFLAGS MAKELEVEL
stack() { make --no-print-directory -C "$REPO_ROOT" "$1"; }

# A stack left running by an interrupted run goes first, then its state.
if [[ -e $STATE/$MARKER ]]; then
	stack down >/dev/null
	rm -rf "$STATE"
fi
mkdir -p "$STATE"
touch "$STATE/$MARKER"

ok=false
floor_pid=
finish() {
	if [[ -n $floor_pid ]]; then
		kill "$floor_pid" 2>/dev/null || true
		wait "$floor_pid" 2>/dev/null || true
	fi
	say "stopping the bench stack"
	stack down >/dev/null || printf 'bench: make down failed for %s\n' "$STATE" >&2
	if [[ $ok == true && ${BENCH_KEEP_STATE:-} != 1 ]]; then
		rm -rf "$STATE"
	else
		say "state and logs kept in $STATE (remove it when done)"
	fi
}
trap finish EXIT

say "starting a stack in $STATE (PostgreSQL $SPIKE_PG_PORT, Keeper $SPIKE_KEEPER_PORT, Nexus $SPIKE_NEXUS_PORT)"
if ! stack up >"$STATE/up.log" 2>&1; then
	tail -n 20 "$STATE/up.log" >&2
	die "make up failed (log: $STATE/up.log)"
fi

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

say "building spike-bench"
"$GO" build -trimpath -o "$REPO_ROOT/bin/spike-bench" "$REPO_ROOT/e2e/cmd/spike-bench"

# Pilot's settings for this stack, and where init saves the admin token.
# shellcheck disable=SC1091
. "$STATE/env"
export SPIKE_TOKEN_FILE=$STATE/admin-token

say "initialising SPIKE (the admin token goes to $SPIKE_TOKEN_FILE)"
password=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
printf '%s\n' "$password" | "$REPO_ROOT/bin/spike" operator init >"$STATE/init.log" 2>&1 || {
	cat "$STATE/init.log" >&2
	die "spike operator init failed"
}
unset password
[[ -s $SPIKE_TOKEN_FILE ]] || die "init saved no admin token in $SPIKE_TOKEN_FILE (see $STATE/init.log)"

TRUST_DOMAIN=${SPIKE_TRUST_DOMAIN:-spike.local}
BENCH_ID="spiffe://$TRUST_DOMAIN/bench"
say "letting the workload $BENCH_ID read and write bench/**"
"$REPO_ROOT/bin/spike" policy put bench --spiffe-id "$BENCH_ID" --path 'bench/**' --perm read,write >"$STATE/policy.log" 2>&1 || {
	cat "$STATE/policy.log" >&2
	die "spike policy put failed"
}
make --no-print-directory -C "$REPO_ROOT" svid ID="$BENCH_ID" NAME=bench >"$STATE/svid.log" 2>&1 || {
	cat "$STATE/svid.log" >&2
	die "make svid failed"
}
# shellcheck disable=SC1091
. "$STATE/svid/bench/env"

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
	-floor-metrics "http://127.0.0.1:$FLOOR_OPS_PORT/metrics"
ok=true
