#!/bin/sh
# register.sh is the `register` one-shot of docker-compose.yml. It runs once
# the SPIRE server is healthy and before the agent starts:
#
#   register.sh ID_PATH=UID...      e.g. register.sh spike/nexus=10002
#
#  1. writes the server's trust bundle, which the agent needs to connect the
#     first time (/run/spire/bootstrap/trust/bundle.pem);
#  2. names the agent spiffe://$TRUST_DOMAIN/spire-agent/compose: a node alias
#     for every agent whose x509pop certificate comes from the CA of
#     bootstrap.sh (selector x509pop:ca:fingerprint);
#  3. registers each workload under that agent: a process running as UID gets
#     spiffe://$TRUST_DOMAIN/ID_PATH (selector unix:uid:UID).
#
# It is idempotent: an entry that exists is kept, and an entry of the same
# SPIFFE ID under the same parent with another selector (say, a uid changed)
# is deleted, so that no stale uid keeps an identity.
set -eu

TD=${TRUST_DOMAIN:?TRUST_DOMAIN is not set}
SOCKET=/tmp/spire-server/private/api.sock
BOOT=/run/spire/bootstrap
SERVER_ID="spiffe://$TD/spire/server"
AGENT_ID="spiffe://$TD/spire-agent/compose"

die() {
	printf 'register: %s\n' "$*" >&2
	exit 1
}
say() { printf 'register: %s\n' "$*"; }

# server GROUP COMMAND ARGS... runs a spire-server CLI command against the
# server's admin socket.
server() {
	group=$1 cmd=$2
	shift 2
	spire-server "$group" "$cmd" -socketPath "$SOCKET" "$@"
}

# ensure_entry SPIFFE_ID PARENT_ID SELECTOR makes SELECTOR the only selector
# that gives SPIFFE_ID under PARENT_ID.
ensure_entry() {
	id=$1 parent=$2 selector=$3
	entries=$(server entry show -spiffeID "$id" -parentID "$parent")
	# One line per entry: "<entry id> keep" or "<entry id> stale".
	verdicts=$(printf '%s\n' "$entries" | awk -v want="$selector" '
		/^Entry ID/ { if (e != "") print e, v; e = $NF; v = "stale" }
		/^Selector/ && $NF == want { v = "keep" }
		END { if (e != "") print e, v }')
	found=no
	while read -r entry verdict; do
		case $verdict in
		keep) found=yes ;;
		stale)
			server entry delete -entryID "$entry" >/dev/null
			say "deleted entry $entry: $id no longer goes to anything but $selector"
			;;
		esac
	done <<EOF
$verdicts
EOF
	if [ "$found" = yes ]; then
		say "$id <- $selector (exists)"
		return
	fi
	if [ "$parent" = "$SERVER_ID" ]; then
		server entry create -node -spiffeID "$id" -selector "$selector" >/dev/null
	else
		server entry create -parentID "$parent" -spiffeID "$id" -selector "$selector" >/dev/null
	fi
	say "$id <- $selector"
}

[ $# -gt 0 ] || die "usage: register.sh ID_PATH=UID..."
for arg in "$@"; do
	case $arg in
	*=*) ;;
	*) die "bad argument $arg: want ID_PATH=UID, e.g. spike/nexus=10002" ;;
	esac
	case ${arg%%=*} in
	'' | /* | */) die "bad argument $arg: ID_PATH is the SPIFFE ID's path without the leading /" ;;
	esac
	case ${arg#*=} in
	'' | *[!0-9]*) die "bad argument $arg: UID must be a number" ;;
	esac
done

# 1. The trust bundle for the agent's first connection.
server bundle show >"$BOOT/trust/bundle.pem.tmp"
mv "$BOOT/trust/bundle.pem.tmp" "$BOOT/trust/bundle.pem"
say "wrote the trust bundle"

# 2. The agent's stable SPIFFE ID, whatever the fingerprint of its own
#    certificate: x509pop's fingerprint is the SHA-1 of the DER certificate.
ca_fp=$(sed '/-----/d' "$BOOT/agent-ca/ca.pem" | base64 -d | sha1sum | cut -d ' ' -f 1)
[ ${#ca_fp} -eq 40 ] || die "cannot fingerprint $BOOT/agent-ca/ca.pem"
ensure_entry "$AGENT_ID" "$SERVER_ID" "x509pop:ca:fingerprint:$ca_fp"

# 3. The workloads.
for arg in "$@"; do
	ensure_entry "spiffe://$TD/${arg%%=*}" "$AGENT_ID" "unix:uid:${arg#*=}"
done
say "done"
