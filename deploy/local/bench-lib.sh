# shellcheck shell=bash disable=SC2034 # some variables are for the sourcing scripts
# bench-lib.sh holds the stack setup shared by `make bench` (bench.sh) and
# `make bench-scale` (bench-scale.sh). Source it from bash (set -euo
# pipefail) after setting:
#
#   BENCH_NAME           how messages start ("bench", "bench-scale")
#   BENCH_DEFAULT_STATE  the state folder unless BENCH_STATE is set
#   BENCH_DEFAULT_OUT    the report unless BENCH_OUT is set
#   BENCH_DEFAULT_PORTS  "PG KEEPER NEXUS" unless BENCH_PG_PORT,
#                        BENCH_KEEPER_PORT and BENCH_NEXUS_PORT are set
#   BENCH_PERMS          what the policy lets the workload do on bench/**
#
# It starts a dedicated stack (its own state folder and ports, so a running
# dev stack is left alone), builds spike-bench, initialises SPIKE (the admin
# token goes to $STATE/admin-token), lets the workload spiffe://TD/bench do
# BENCH_PERMS on bench/** and leaves that workload's SVID settings in the
# environment. The stack is stopped when the script exits; the state folder
# is removed then if the script set ok=true, and kept (logs included)
# otherwise. A sourcing script may set floor_pid to a process to stop first.
# It sets REPO_ROOT, GO, STATE, OUT, ADMIN_TOKEN_FILE, ADMIN_SVID_CERT,
# ADMIN_SVID_KEY and ADMIN_TRUST_BUNDLE (Pilot's SVID, which the admin
# token goes with),
# KEEPER_OPS_PORT, NEXUS_OPS_PORT and the say and die helpers.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
GO=${GO:-go}

STATE=${BENCH_STATE:-$BENCH_DEFAULT_STATE}
case $STATE in
/*) ;;
*) STATE="$PWD/$STATE" ;;
esac
OUT=${BENCH_OUT:-$BENCH_DEFAULT_OUT}
case $OUT in
/*) ;;
*) OUT="$PWD/$OUT" ;;
esac

# The stack that `make up` and `make down` manage below.
read -r default_pg default_keeper default_nexus <<<"$BENCH_DEFAULT_PORTS"
export SPIKE_STATE=$STATE
export SPIKE_PG_PORT=${BENCH_PG_PORT:-$default_pg}
export SPIKE_KEEPER_PORT=${BENCH_KEEPER_PORT:-$default_keeper}
export SPIKE_NEXUS_PORT=${BENCH_NEXUS_PORT:-$default_nexus}
unset SPIKE_KEEPER_OPS_PORT SPIKE_NEXUS_OPS_PORT # next to the API ports
unset default_pg default_keeper default_nexus
KEEPER_OPS_PORT=$((SPIKE_KEEPER_PORT + 1))
NEXUS_OPS_PORT=$((SPIKE_NEXUS_PORT + 1))

# MARKER says that a folder is a bench state folder, which this script may
# wipe; it wipes no other folder.
MARKER=.spike-bench-state

say() { printf '%s: %s\n' "$BENCH_NAME" "$*"; }
die() {
	printf '%s: %s\n' "$BENCH_NAME" "$*" >&2
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
	stack down >/dev/null || printf '%s: make down failed for %s\n' "$BENCH_NAME" "$STATE" >&2
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

say "building spike-bench"
"$GO" build -trimpath -o "$REPO_ROOT/bin/spike-bench" "$REPO_ROOT/e2e/cmd/spike-bench"

# Pilot's settings for this stack, and where init saves the admin token.
# shellcheck disable=SC1091
. "$STATE/env"
export SPIKE_TOKEN_FILE=$STATE/admin-token
# The admin's SVID (Pilot's), for a spike-bench that calls as the admin too.
ADMIN_SVID_CERT=$STATE/svid/pilot/svid.pem
ADMIN_SVID_KEY=$STATE/svid/pilot/key.pem
ADMIN_TRUST_BUNDLE=$STATE/svid/pilot/bundle.pem
ADMIN_TOKEN_FILE=$SPIKE_TOKEN_FILE

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
say "letting the workload $BENCH_ID do $BENCH_PERMS on bench/**"
"$REPO_ROOT/bin/spike" policy put bench --spiffe-id "$BENCH_ID" --path 'bench/**' --perm "$BENCH_PERMS" >"$STATE/policy.log" 2>&1 || {
	cat "$STATE/policy.log" >&2
	die "spike policy put failed"
}
make --no-print-directory -C "$REPO_ROOT" svid ID="$BENCH_ID" NAME=bench >"$STATE/svid.log" 2>&1 || {
	cat "$STATE/svid.log" >&2
	die "make svid failed"
}
# shellcheck disable=SC1091
. "$STATE/svid/bench/env"
