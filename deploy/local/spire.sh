#!/usr/bin/env bash
# spire.sh runs the SPIRE server and agent of the local stack in SPIRE mode
# (`make up SPIFFE=spire`) and registers SPIKE's programs with them, so that
# Keeper, Nexus, Pilot and the demo workload get their SVIDs from the
# Workload API instead of the dev CA:
#
#   deploy/local/spire.sh start               # server, agent, entries (up.sh runs it)
#   deploy/local/spire.sh stop                # agent, then server (down.sh runs it)
#   deploy/local/spire.sh register ID BINARY  # give a workload binary a SPIFFE ID
#   deploy/local/spire.sh entries             # list the registration entries
#
# Both run on loopback with their state in $STATE/spire. The agent attests
# itself with a join token and workloads by uid and executable path
# (unix:uid, unix:path). `start` is idempotent: it starts what is not
# running and adds the entries that are missing.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ${var//pattern/"$value"} must insert $value literally, & included.
shopt -u patsub_replacement 2>/dev/null || true

STOP_TIMEOUT=${SPIKE_STOP_TIMEOUT:-10}
SPIRE_SERVER="$SPIRE_BIN/spire-server"
SPIRE_AGENT="$SPIRE_BIN/spire-agent"
TEMPLATES="$REPO_ROOT/deploy/local/spire"
WORKLOAD_UID=$(id -u)

# The agent's stable SPIFFE ID, the parent of every workload entry. Each
# join token makes a new agent ID (spiffe://TD/spire/agent/join_token/<token>);
# `token generate -spiffeID` maps that agent to this ID as well, so the
# entries survive the agent attesting again with a new token.
AGENT_ALIAS="spiffe://$TRUST_DOMAIN/spire-agent/local"

usage="usage: deploy/local/spire.sh start | stop | register SPIFFE_ID BINARY | entries"

# Set by start_server when it starts a server without a datastore.
FRESH_SERVER=""

# srv CMD SUBCMD ARGS... runs a spire-server admin command against our server.
srv() {
	local cmd=$1 sub=$2
	shift 2
	"$SPIRE_SERVER" "$cmd" "$sub" -socketPath "$SPIRE_SERVER_SOCKET" "$@"
}

# spire_pid NAME prints the pid in $STATE/run/NAME.pid if that process is alive
# and runs bin/spire/NAME (not a recycled pid); it fails otherwise.
spire_pid() {
	local pidfile="$STATE/run/$1.pid" pid comm
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	comm=$(ps -o comm= -p "$pid" 2>/dev/null) || return 1
	comm=${comm//[[:space:]]/}
	[[ $comm == "$1" ]] || return 1
	printf '%s\n' "$pid"
}

# render TEMPLATE OUT KEY=VALUE... writes TEMPLATE with every @KEY@ replaced
# by VALUE (escaped for an HCL string) to OUT, mode 0600.
render() {
	local tmpl=$1 out=$2 text kv key val
	shift 2
	text=$(<"$tmpl")
	for kv in "$@"; do
		key=${kv%%=*}
		val=${kv#*=}
		val=${val//\\/\\\\}
		val=${val//\"/\\\"}
		text=${text//"@$key@"/"$val"}
	done
	if [[ $text =~ @[A-Z_]+@ ]]; then
		die "$tmpl: no value for ${BASH_REMATCH[0]}"
	fi
	(
		umask 077
		printf '%s\n' "$text" >"$out.tmp"
	)
	mv -f "$out.tmp" "$out"
}

# start_daemon NAME CONFIG starts bin/spire/NAME in the background; its pid
# goes to $STATE/run/NAME.pid, its output to $STATE/log/NAME.log.
start_daemon() {
	local name=$1 config=$2 log="$STATE/log/$1.log" pid
	touch "$log"
	chmod 0600 "$log"
	(exec setsid nohup "$SPIRE_BIN/$name" run -config "$config" >>"$log" 2>&1 </dev/null) &
	pid=$!
	printf '%s\n' "$pid" >"$STATE/run/$name.pid"
}

# wait_healthy NAME HINT CMD... waits until CMD succeeds while bin/spire/NAME
# runs; on failure it stops the process and dies with HINT.
wait_healthy() {
	local name=$1 hint=$2 pid log="$STATE/log/$1.log"
	shift 2
	pid=$(<"$STATE/run/$name.pid")
	local deadline=$((SECONDS + START_TIMEOUT))
	until "$@" >/dev/null 2>&1; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$STATE/run/$name.pid"
			log_tail "$log"
			die "$name exited during startup${hint:+; $hint}"
		fi
		if ((SECONDS >= deadline)); then
			log_tail "$log"
			kill -TERM "$pid" 2>/dev/null || true
			rm -f "$STATE/run/$name.pid"
			die "$name was not healthy within ${START_TIMEOUT}s (stopped it)${hint:+; $hint}"
		fi
		sleep 0.2
	done
}

# entries_tsv turns `spire-server entry show` output into one line per entry:
# entry ID, parent ID and the selectors, sorted and comma-separated.
entries_tsv() {
	awk '
	function flush(   i, j, t, s) {
		if (id == "") return
		for (i = 2; i <= n; i++) {
			t = sel[i]
			for (j = i - 1; j >= 1 && sel[j] > t; j--) sel[j + 1] = sel[j]
			sel[j + 1] = t
		}
		s = ""
		for (i = 1; i <= n; i++) s = s (i > 1 ? "," : "") sel[i]
		printf "%s\t%s\t%s\n", id, parent, s
		id = ""; parent = ""; n = 0
	}
	{ v = $0; sub(/^[^:]*: /, "", v) }
	/^Entry ID / { flush(); id = v }
	/^Parent ID / { parent = v }
	/^Selector / { sel[++n] = v }
	END { flush() }
	'
}

# ensure_entry ID BINARY [exclusive] registers BINARY, run by this user, as
# ID under the agent unless that entry exists. With "exclusive", every other
# entry for ID is removed: the stack owns the identities of its programs.
ensure_entry() {
	local id=$1 bin=$2 exclusive=${3:-}
	local want="unix:path:$bin,unix:uid:$WORKLOAD_UID" found="" eid parent sels listing
	local -a others=()
	listing=$(srv entry show -spiffeID "$id") || die "cannot list the entries of $id"
	while IFS=$'\t' read -r eid parent sels; do
		if [[ -z $found && $parent == "$AGENT_ALIAS" && $sels == "$want" ]]; then
			found=$eid
		else
			others+=("$eid")
		fi
	done < <(entries_tsv <<<"$listing")
	if [[ -z $found ]]; then
		srv entry create -parentID "$AGENT_ALIAS" -spiffeID "$id" \
			-selector "unix:path:$bin" -selector "unix:uid:$WORKLOAD_UID" >/dev/null ||
			die "cannot register $id"
		say "    registered $id: unix:path:$bin, unix:uid:$WORKLOAD_UID"
	fi
	if [[ $exclusive == exclusive ]]; then
		for eid in "${others[@]}"; do
			srv entry delete -entryID "$eid" >/dev/null
			say "    removed an outdated entry for $id ($eid)"
		done
	fi
}

need_binaries() {
	[[ -x $SPIRE_SERVER && -x $SPIRE_AGENT ]] ||
		die "no SPIRE binaries in $SPIRE_BIN: run 'make spire' (the first build takes several minutes)"
}

check_settings() {
	[[ $TRUST_DOMAIN =~ ^[a-z0-9._-]+$ ]] || die "bad SPIKE_TRUST_DOMAIN: $TRUST_DOMAIN"
	if ! [[ $SPIRE_SERVER_PORT =~ ^[0-9]+$ ]] || ((SPIRE_SERVER_PORT < 1 || SPIRE_SERVER_PORT > 65535)); then
		die "bad SPIKE_SPIRE_PORT: $SPIRE_SERVER_PORT"
	fi
	[[ $SVID_TTL =~ ^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$ ]] ||
		die "bad SPIKE_SVID_TTL: $SVID_TTL (a duration such as 1h, 30m or 90s)"
	local sock
	for sock in "$SPIRE_SERVER_SOCKET" "$SPIRE_AGENT_SOCKET"; do
		((${#sock} <= 107)) ||
			die "state directory path too long for a Unix socket ($sock); set SPIKE_STATE to a shorter path"
	done
}

# --- start --------------------------------------------------------------------

start_server() {
	local pid conf="$SPIRE_DIR/server.conf"
	local -a vars=(
		"SERVER_PORT=$SPIRE_SERVER_PORT"
		"SERVER_SOCKET=$SPIRE_SERVER_SOCKET"
		"TRUST_DOMAIN=$TRUST_DOMAIN"
		"SERVER_DIR=$SPIRE_DIR/server"
		"LOG_LEVEL=INFO"
		"SVID_TTL=$SVID_TTL"
		"AGENT_TTL=4h"
	)
	if pid=$(spire_pid spire-server); then
		render "$TEMPLATES/server.conf.tmpl" "$conf.new" "${vars[@]}"
		if cmp -s "$conf" "$conf.new"; then
			say "==> SPIRE server already running (pid $pid, 127.0.0.1:$SPIRE_SERVER_PORT)"
		else
			say "==> SPIRE server already running (pid $pid) with other settings (port, SVID TTL...):" \
				"'make down && make up SPIFFE=spire' applies the new ones"
		fi
		rm -f "$conf.new"
		return 0
	fi
	rm -f "$STATE/run/spire-server.pid"
	if port_open "$SPIRE_SERVER_PORT"; then
		die "port 127.0.0.1:$SPIRE_SERVER_PORT is taken by another program; set SPIKE_SPIRE_PORT"
	fi
	render "$TEMPLATES/server.conf.tmpl" "$conf" "${vars[@]}"
	rm -f "$SPIRE_SERVER_SOCKET"
	if [[ ! -f $SPIRE_DIR/server/datastore.sqlite3 ]]; then
		# A new server has a new CA and knows no agent: whatever the agent
		# kept belongs to a server that is gone.
		FRESH_SERVER=1
	fi
	say "==> starting SPIRE server on 127.0.0.1:$SPIRE_SERVER_PORT (X509-SVID TTL $SVID_TTL; log: $STATE/log/spire-server.log)"
	start_daemon spire-server "$conf"
	wait_healthy spire-server "" "$SPIRE_SERVER" healthcheck -socketPath "$SPIRE_SERVER_SOCKET"
}

start_agent() {
	local pid token conf="$SPIRE_DIR/agent.conf"
	if pid=$(spire_pid spire-agent); then
		say "==> SPIRE agent already running (pid $pid, Workload API unix://$SPIRE_AGENT_SOCKET)"
		return 0
	fi
	rm -f "$STATE/run/spire-agent.pid" "$SPIRE_AGENT_SOCKET"
	if [[ -n $FRESH_SERVER && -n $(ls -A "$SPIRE_DIR/agent") ]]; then
		say "    (the SPIRE server is new: the agent forgets its old identity and attests again)"
		find "$SPIRE_DIR/agent" -mindepth 1 -delete
	fi
	# The server's CA, for the agent's first connection.
	srv bundle show >"$SPIRE_DIR/bundle.pem.tmp"
	mv -f "$SPIRE_DIR/bundle.pem.tmp" "$SPIRE_DIR/bundle.pem"
	# A fresh one-time token on every start: the agent uses it only when it
	# has no valid SVID of its own (first start, or stopped for longer than
	# the agent TTL, 4h); an unused one expires after 5 minutes.
	token=$(srv token generate -spiffeID "$AGENT_ALIAS" -ttl 300 | sed -n 's/^Token: //p')
	[[ $token =~ ^[A-Za-z0-9-]+$ ]] || die "spire-server token generate gave no token"
	render "$TEMPLATES/agent.conf.tmpl" "$conf" \
		"SERVER_PORT=$SPIRE_SERVER_PORT" \
		"AGENT_SOCKET=$SPIRE_AGENT_SOCKET" \
		"TRUST_DOMAIN=$TRUST_DOMAIN" \
		"TRUST_BUNDLE=$SPIRE_DIR/bundle.pem" \
		"AGENT_DIR=$SPIRE_DIR/agent" \
		"LOG_LEVEL=INFO" \
		"JOIN_TOKEN=$token"
	say "==> starting SPIRE agent (Workload API unix://$SPIRE_AGENT_SOCKET; log: $STATE/log/spire-agent.log)"
	start_daemon spire-agent "$conf"
	wait_healthy spire-agent \
		"if its log shows the server refusing it (unknown authority, agent not attested), 'make down', remove $SPIRE_DIR/agent and try again: the agent then attests with a new join token" \
		"$SPIRE_AGENT" healthcheck -socketPath "$SPIRE_AGENT_SOCKET"
}

# tidy_agents keeps the agent that runs now and forgets the ones it replaced:
# each attestation with a new join token leaves an attested agent and an
# alias entry behind, and every start generates a token that may go unused.
tidy_agents() {
	local current="" line id eid parent sels have_alias="" listing
	# The running agent is the one whose SVID expires last: any other agent
	# of this server is an earlier incarnation with an older SVID.
	local -a agents=()
	listing=$(srv agent list) || die "cannot list the SPIRE agents"
	mapfile -t agents < <(
		awk '{ v = $0; sub(/^[^:]*: /, "", v) } /^SPIFFE ID / { id = v } /^Expiration time / { print v "\t" id }' <<<"$listing" |
			sort -r
	)
	((${#agents[@]} > 0)) || die "the SPIRE server lists no attested agent; see $STATE/log/spire-agent.log"
	current=${agents[0]#*$'\t'}
	for line in "${agents[@]:1}"; do
		id=${line#*$'\t'}
		srv agent evict -spiffeID "$id" >/dev/null && say "    evicted the replaced agent $id"
	done
	listing=$(srv entry show -spiffeID "$AGENT_ALIAS") || die "cannot list the entries of $AGENT_ALIAS"
	while IFS=$'\t' read -r eid parent sels; do
		if [[ $parent == "$current" ]]; then
			have_alias=1
		else
			srv entry delete -entryID "$eid" >/dev/null
		fi
	done < <(entries_tsv <<<"$listing")
	if [[ -z $have_alias ]]; then
		srv entry create -parentID "$current" -spiffeID "$AGENT_ALIAS" -selector "spiffe_id:$current" >/dev/null ||
			die "cannot map agent $current to $AGENT_ALIAS"
	fi
}

cmd_start() {
	need_binaries
	check_settings
	mkdir -p "$STATE"/{log,run} "$SPIRE_DIR"/{server,agent}
	chmod 0711 "$STATE" "$STATE/log"
	chmod 0700 "$STATE/run" "$SPIRE_DIR" "$SPIRE_DIR/server" "$SPIRE_DIR/agent"

	# The server's CA and entries belong to one trust domain.
	local td_file="$SPIRE_DIR/trust-domain"
	if [[ -s $td_file && $(<"$td_file") != "$TRUST_DOMAIN" ]]; then
		die "the SPIRE state in $SPIRE_DIR is for trust domain $(<"$td_file"), not $TRUST_DOMAIN; 'make down' and remove $SPIRE_DIR to start over"
	fi
	printf '%s\n' "$TRUST_DOMAIN" >"$td_file"

	start_server
	start_agent
	tidy_agents

	say "==> SPIRE entries (parent $AGENT_ALIAS)"
	ensure_entry "spiffe://$TRUST_DOMAIN/spike/keeper/1" "$BIN/spike-keeper" exclusive
	ensure_entry "spiffe://$TRUST_DOMAIN/spike/nexus" "$BIN/spike-nexus" exclusive
	ensure_entry "spiffe://$TRUST_DOMAIN/spike/pilot" "$BIN/spike" exclusive
	ensure_entry "spiffe://$TRUST_DOMAIN/app/demo" "$BIN/spike-example-workload" exclusive
}

# --- stop ---------------------------------------------------------------------

stop_daemon() {
	local name=$1 pid
	if ! pid=$(spire_pid "$name"); then
		say "$name: not running"
		rm -f "$STATE/run/$name.pid"
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
	rm -f "$STATE/run/$name.pid"
}

cmd_stop() {
	stop_daemon spire-agent
	stop_daemon spire-server
}

# --- register, entries ----------------------------------------------------------

cmd_register() {
	local id=${1:-} bin=${2:-}
	[[ -n $id && -n $bin && $# -eq 2 ]] || die "$usage"
	need_binaries
	spire_pid spire-server >/dev/null || die "the SPIRE server is not running: 'make up SPIFFE=spire' first"
	local id_re='^spiffe://([a-z0-9._-]+)((/[A-Za-z0-9._-]+)+)$'
	[[ $id =~ $id_re ]] ||
		die "$id is not a workload SPIFFE ID: expected spiffe://$TRUST_DOMAIN/PATH, with path segments of A-Z a-z 0-9 . _ -"
	[[ ${BASH_REMATCH[1]} == "$TRUST_DOMAIN" ]] ||
		die "$id is outside this stack's trust domain $TRUST_DOMAIN"
	case ${BASH_REMATCH[2]} in
	/spike | /spike/* | /spire | /spire/* | /spire-agent/*)
		die "$id is reserved for SPIKE's own programs or for SPIRE; pick another path, e.g. spiffe://$TRUST_DOMAIN/app/web"
		;;
	esac
	[[ -f $bin && -x $bin ]] || die "$bin is not an executable file"
	# The agent sees the executable's real path (/proc/<pid>/exe).
	bin=$(realpath -- "$bin")
	ensure_entry "$id" "$bin"
	say "$bin, run by uid $WORKLOAD_UID, gets $id from unix://$SPIRE_AGENT_SOCKET (within a few seconds)."
	say "Run it with SPIFFE_ENDPOINT_SOCKET=unix://$SPIRE_AGENT_SOCKET (in $STATE/env)."
}

cmd_entries() {
	need_binaries
	spire_pid spire-server >/dev/null || die "the SPIRE server is not running: 'make up SPIFFE=spire' first"
	srv entry show
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
register)
	shift
	cmd_register "$@"
	;;
entries) cmd_entries ;;
*) die "$usage" ;;
esac
