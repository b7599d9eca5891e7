#!/usr/bin/env bash
# svid.sh mints a development SVID for a workload with the local stack's CA,
# so that a program (or bin/spike acting as that workload) can call Nexus
# with that identity:
#
#   deploy/local/svid.sh spiffe://spike.local/app/web [NAME]    # make svid ID=... [NAME=...]
#
# It writes svid.pem, key.pem, bundle.pem and env into $STATE/svid/NAME/
# (NAME defaults to the last segment of the ID). It works before or after
# `make up` (the CA is created on first use) and re-mints when run again.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage="usage: make svid ID=spiffe://$TRUST_DOMAIN/app/web [NAME=web]"

ID=${1:-}
NAME=${2:-}
[[ -n $ID ]] || die "no SPIFFE ID given; $usage"
(($# <= 2)) || die "too many arguments; $usage"

[[ $TRUST_DOMAIN =~ ^[a-z0-9._-]+$ ]] || die "bad SPIKE_TRUST_DOMAIN: $TRUST_DOMAIN"
if ! [[ $NEXUS_PORT =~ ^[0-9]+$ ]] || ((NEXUS_PORT < 1 || NEXUS_PORT > 65535)); then
	die "bad port number: $NEXUS_PORT"
fi

# A SPIFFE ID: lower-case trust domain, then one or more path segments of
# letters, digits, '.', '_' and '-' (none of them '.' or '..').
id_re='^spiffe://([a-z0-9._-]+)((/[A-Za-z0-9._-]+)+)$'
[[ $ID =~ $id_re ]] ||
	die "$ID is not a workload SPIFFE ID: expected spiffe://$TRUST_DOMAIN/PATH, with path segments of A-Z a-z 0-9 . _ -"
id_td=${BASH_REMATCH[1]}
id_path=${BASH_REMATCH[2]}
[[ /$id_path/ != */./* && /$id_path/ != */../* ]] ||
	die "$ID: a path segment may not be '.' or '..'"
[[ $id_td == "$TRUST_DOMAIN" ]] ||
	die "$ID is outside this stack's trust domain $TRUST_DOMAIN: Nexus accepts only SVIDs of its own trust domain (SPIKE_TRUST_DOMAIN); use spiffe://$TRUST_DOMAIN${id_path}"
[[ $id_path != /spike && $id_path != /spike/* ]] ||
	die "$ID is under /spike/, which SPIKE's own programs use ('make up' mints keeper, nexus and pilot); pick another path, e.g. spiffe://$TRUST_DOMAIN/app/web"

NAME=${NAME:-${id_path##*/}}
[[ $NAME =~ ^[A-Za-z0-9._-]+$ && $NAME != . && $NAME != .. ]] ||
	die "bad NAME '$NAME': use letters, digits, '.', '_' and '-'"
case $NAME in
keeper | nexus | pilot)
	die "NAME $NAME is taken: 'make up' owns $STATE/svid/$NAME; pass another, e.g. NAME=my-$NAME"
	;;
esac

CALLER_PWD=$PWD

# Only spike-devca is needed here; it is built (from cache, when current) so
# that this works on a fresh checkout too.
cd "$REPO_ROOT"
mkdir -p "$BIN"
"${GO:-go}" build -trimpath -o "$BIN/spike-devca" ./shared/cmd/spike-devca ||
	die "cannot build bin/spike-devca"

# The same permissions as up.sh gives them: the CA and SVID keys are 0600
# inside 0700 directories.
mkdir -p "$STATE/ca" "$STATE/svid"
chmod 0711 "$STATE"
chmod 0700 "$STATE/ca" "$STATE/svid"

DIR="$STATE/svid/$NAME"
"$BIN/spike-devca" -ca "$STATE/ca" -id "$ID" -out "$DIR" >/dev/null ||
	die "cannot mint an SVID for $ID (a CA for another trust domain in $STATE/ca? remove that directory, and 'make down' first, to start over)"

# The Nexus URL: the stack's own (from its .spike/env, written by up.sh)
# unless SPIKE_NEXUS_PORT says otherwise, so that an SVID minted without
# the port variables of a stack on other ports still reaches that stack.
NEXUS_URL="https://127.0.0.1:$NEXUS_PORT"
if [[ -z ${SPIKE_NEXUS_PORT:-} && -f $STATE/env ]]; then
	stack_url=$(sed -n "s/^export SPIKE_NEXUS_URL='\([^']*\)'\$/\1/p" "$STATE/env")
	NEXUS_URL=${stack_url:-$NEXUS_URL}
fi

# A token file that does not exist: bin/spike run with this env sends no
# admin token, as a workload would not have one.
TOKEN_FILE="$DIR/token"
rm -f "$TOKEN_FILE"

ENV_FILE="$DIR/env"
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; } # single-quote for sh
(
	umask 077
	{
		printf '# Written by deploy/local/svid.sh. Source it: . %s\n' "$(shq "$ENV_FILE")"
		printf '# Calls the local Nexus as the workload %s.\n' "$ID"
		printf 'export SPIKE_NEXUS_URL=%s\n' "$(shq "$NEXUS_URL")"
		printf 'export SPIKE_TRUST_DOMAIN=%s\n' "$(shq "$TRUST_DOMAIN")"
		printf 'export SPIKE_SVID_CERT=%s\n' "$(shq "$DIR/svid.pem")"
		printf 'export SPIKE_SVID_KEY=%s\n' "$(shq "$DIR/key.pem")"
		printf 'export SPIKE_TRUST_BUNDLE=%s\n' "$(shq "$DIR/bundle.pem")"
		printf '# A workload has no admin token: point spike at a file that does not exist,\n'
		printf '# so that it does not send the one in ~/.spike/token.\n'
		printf 'export SPIKE_TOKEN_FILE=%s\n' "$(shq "$TOKEN_FILE")"
		printf '# The dev stack uses SVID files, not a SPIRE agent.\n'
		printf 'unset SPIFFE_ENDPOINT_SOCKET\n'
	} >"$ENV_FILE.tmp"
	mv -f "$ENV_FILE.tmp" "$ENV_FILE"
)

# rel PATH prints PATH relative to the repository when the caller is there
# (as with make), so that the hints below are short.
rel() {
	if [[ $CALLER_PWD == "$REPO_ROOT" ]]; then
		printf '%s' "${1#"$REPO_ROOT"/}"
	else
		printf '%s' "$1"
	fi
}

say "Minted $ID into $(rel "$DIR")/ (svid.pem, key.pem, bundle.pem, env; valid 30 days)."
say ""
say "Act as this workload (in a subshell or another terminal: the env replaces Pilot's settings):"
say "    . $(rel "$ENV_FILE") && $(rel "$BIN/spike") secret get apps/$NAME/db"
say "    . $(rel "$ENV_FILE") && $(rel "$BIN/spike-example-workload") apps/$NAME/db"
say ""
say "Nexus lets it read only what a policy grants; as the admin (. $(rel "$STATE/env")), e.g.:"
say "    $(rel "$BIN/spike") policy put $NAME --spiffe-id '$ID' --path 'apps/$NAME/**' --perm read,list"
if [[ ! -x $BIN/spike || ! -x $BIN/spike-example-workload ]]; then
	say ""
	say "bin/spike and bin/spike-example-workload are built by 'make build' (and 'make up')."
fi
if ! live_pid nexus >/dev/null; then
	say ""
	say "Nexus is not running: start the stack with 'make up'."
fi
