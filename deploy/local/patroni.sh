#!/usr/bin/env bash
# patroni.sh runs the highly available PostgreSQL of the local stack in HA
# mode (`make up PG=ha`): a single-member etcd and two PostgreSQL members
# under Patroni, a primary and a synchronous standby (synchronous_mode), on
# loopback, with their state in $STATE/ha:
#
#   deploy/local/patroni.sh start    # etcd, then the members; waits for a primary and a sync standby (up.sh runs it)
#   deploy/local/patroni.sh stop     # the members (replicas first), then etcd (down.sh runs it)
#   deploy/local/patroni.sh status   # patronictl list: who leads, who is the sync standby, lag
#   deploy/local/patroni.sh failover # kill -9 the primary's postmaster, to watch Patroni promote the standby
#
# Member n listens on 127.0.0.1:PG_PORT+n-1 (and a Unix socket in
# $STATE/ha/mN/run), its Patroni REST API on 127.0.0.1:PATRONI_PORT+n-1;
# etcd on 127.0.0.1:ETCD_PORT (peers ETCD_PORT+1). As root, Patroni,
# PostgreSQL and etcd run as the OS user postgres. Over TCP every
# connection needs TLS and a password, replication included (hostssl,
# scram-sha-256, verify-full against the stack's database CA, which up.sh
# mints before it runs `start`; its certificate is copied to $STATE/ha,
# where the postgres OS user can read it). `start` is idempotent.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STOP_TIMEOUT=${SPIKE_STOP_TIMEOUT:-30}
PG_CA_DIR="$STATE/pg/ca"
PG_TLS_DIR="$STATE/pg/tls"
SCOPE=spike
usage="usage: deploy/local/patroni.sh start | stop | status | failover"

member_dir() { printf '%s/m%s\n' "$HA_DIR" "$1"; }
member_port() { printf '%s\n' $((PG_PORT + $1 - 1)); }
rest_port() { printf '%s\n' $((PATRONI_PORT + $1 - 1)); }

# start_bg NAME COMM CMD... starts CMD in the background in a session of
# its own, as the PostgreSQL OS user when we are root (setpriv execs, so
# the pid is CMD's), with a minimal environment; its pid goes to
# $STATE/run/NAME.pid, its output to $STATE/log/NAME.log.
start_bg() {
	local name=$1 comm=$2 pid
	shift 2
	local log="$STATE/log/$name.log"
	touch "$log"
	chmod 0600 "$log"
	local as=()
	if is_root; then
		as=(setpriv --reuid="$PG_OS_USER" --regid="$PG_OS_USER" --init-groups --)
	fi
	(
		cd /
		exec setsid nohup env -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 HOME="$HA_DIR" "${as[@]}" "$@" >>"$log" 2>&1 </dev/null
	) &
	pid=$!
	printf '%s\n' "$pid" >"$STATE/run/$name.pid"
	sleep 0.2
	if ! kill -0 "$pid" 2>/dev/null; then
		log_tail "$log"
		die "$comm exited at once (log: $log)"
	fi
	say "==> started $name (pid $pid, log: $log)"
}

# stop_pid NAME COMM stops the process of $STATE/run/NAME.pid: SIGTERM, then
# SIGKILL after STOP_TIMEOUT seconds.
stop_pid() {
	local name=$1 pid
	if ! pid=$(live_pid "$name" "$2"); then
		say "$name: not running"
		rm -f "$STATE/run/$name.pid"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + STOP_TIMEOUT))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		warn "$name (pid $pid) still running after ${STOP_TIMEOUT}s; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	say "$name: stopped (pid $pid)"
	rm -f "$STATE/run/$name.pid"
}

# wait_until WHAT CMD... polls CMD until it succeeds, for START_TIMEOUT * 3
# seconds (a first bootstrap runs initdb and clones the standby).
wait_until() {
	local what=$1
	shift
	local deadline=$((SECONDS + START_TIMEOUT * 3))
	until "$@" >/dev/null; do
		if ((SECONDS >= deadline)); then
			for n in $(seq "$HA_MEMBERS"); do log_tail "$STATE/log/patroni-$n.log"; done
			die "no $what within $((START_TIMEOUT * 3))s; see $STATE/log/patroni-*.log"
		fi
		sleep 0.5
	done
}

# member_with ENDPOINT prints the number of the first member whose Patroni
# answers 200 on ENDPOINT (/primary, /sync), or fails.
member_with() {
	local n
	for n in $(seq "$HA_MEMBERS"); do
		if [[ $(http_status "$(rest_port "$n")" "$1") == 200 ]]; then
			printf '%s\n' "$n"
			return 0
		fi
	done
	return 1
}

yq() { printf "'%s'" "${1//\'/\'\'}"; } # single-quote for YAML

# write_config N writes member N's Patroni configuration (0600, owned by
# the PostgreSQL OS user). Settings under bootstrap.dcs take effect when
# the cluster is first bootstrapped; later, patronictl edit-config.
write_config() {
	local n=$1 dir port rest bindir
	dir=$(member_dir "$n")
	port=$(member_port "$n")
	rest=$(rest_port "$n")
	bindir=$(dirname "$(readlink -f "$(command -v postgres)")")
	local conf="$dir/patroni.yml"
	(
		umask 077
		cat >"$conf.tmp" <<EOF
# Written by deploy/local/patroni.sh on every start.
scope: $SCOPE
namespace: /spike/
name: m$n
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$rest
  connect_address: 127.0.0.1:$rest
  # GET endpoints are open on loopback; restart, switchover and the like
  # need these credentials.
  authentication:
    username: patroni
    password: '$REST_PASSWORD'
etcd3:
  hosts:
    - 127.0.0.1:$ETCD_PORT
watchdog:
  mode: off
bootstrap:
  dcs:
    # A member that misses the leader lock for ttl seconds is replaced.
    ttl: 20
    loop_wait: 2
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    # A crashed primary is not restarted in place: the synchronous standby,
    # which has every acknowledged commit, takes over at once.
    primary_start_timeout: 0
    # Commits wait for the synchronous standby; with none left, the primary
    # serves alone (synchronous_mode_strict would stop writes instead).
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        wal_log_hints: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        password_encryption: scram-sha-256
  initdb:
    - encoding: UTF8
    - locale: C
postgresql:
  listen: 127.0.0.1:$port
  connect_address: 127.0.0.1:$port
  data_dir: $(yq "$dir/data")
  bin_dir: $(yq "$bindir")
  pgpass: $(yq "$dir/pgpass")
  # Patroni talks to its own PostgreSQL through the Unix socket.
  use_unix_socket: true
  authentication:
    superuser:
      username: postgres
    replication:
      username: spike_replicator
      password: '$REPLICATION_PASSWORD'
      sslmode: verify-full
      sslrootcert: $(yq "$HA_DIR/ca.pem")
    rewind:
      username: spike_rewind
      password: '$REWIND_PASSWORD'
      sslmode: verify-full
      sslrootcert: $(yq "$HA_DIR/ca.pem")
  parameters:
    unix_socket_directories: $(yq "$dir/run")
    unix_socket_permissions: '0700'
    ssl: 'on'
    ssl_cert_file: $(yq "$PG_TLS_DIR/server.pem")
    ssl_key_file: $(yq "$PG_TLS_DIR/server-key.pem")
  # As in the single-node stack: the superuser only through the 0700
  # socket directory, every other role with its password, TCP only with
  # TLS.
  pg_hba:
    - local all postgres trust
    - local all all scram-sha-256
    - hostssl replication spike_replicator 127.0.0.1/32 scram-sha-256
    - hostssl all all 127.0.0.1/32 scram-sha-256
EOF
		mv -f "$conf.tmp" "$conf"
	)
	if is_root; then
		chown "$PG_OS_USER:" "$conf"
	fi
}

start() {
	command -v patroni >/dev/null 2>&1 && command -v etcd >/dev/null 2>&1 ||
		die "patroni or etcd not found; run deploy/local/check-deps.sh (as root it installs them)"
	[[ -s $PG_TLS_DIR/server.pem && -s $PG_CA_DIR/ca.pem ]] ||
		die "no database TLS certificate in $PG_TLS_DIR; 'make up PG=ha' mints it"
	[[ $HA_DIR != *[,\ ]* ]] || die "state directory $STATE holds a comma or space, which a multi-host connection string cannot; set SPIKE_STATE"
	local n dir
	mkdir -p "$HA_DIR/etcd"
	chmod 0711 "$HA_DIR"
	chmod 0700 "$HA_DIR/etcd"
	for n in $(seq "$HA_MEMBERS"); do
		dir=$(member_dir "$n")
		mkdir -p "$dir/run"
		chmod 0700 "$dir" "$dir/run"
		local sock="$dir/run/.s.PGSQL.$(member_port "$n")"
		((${#sock} <= 107)) || die "state directory path too long for PostgreSQL's Unix socket ($sock); set SPIKE_STATE to a shorter path"
	done
	if is_root; then
		chown -R "$PG_OS_USER:" "$HA_DIR"
		setpriv --reuid="$PG_OS_USER" --regid="$PG_OS_USER" --init-groups -- test -w "$HA_DIR/etcd" ||
			die "OS user $PG_OS_USER cannot reach $HA_DIR: every parent directory must be searchable (o+x) by it"
	fi
	# The database CA's certificate, without its key, for verify-full
	# between the members.
	install -m 0644 "$PG_CA_DIR/ca.pem" "$HA_DIR/ca.pem"
	REST_PASSWORD=$(read_password "$HA_DIR/rest-password")
	REPLICATION_PASSWORD=$(read_password "$HA_DIR/replication-password")
	REWIND_PASSWORD=$(read_password "$HA_DIR/rewind-password")
	if is_root; then
		chown root: "$HA_DIR"/*-password
	fi

	if live_pid etcd etcd >/dev/null; then
		say "==> etcd already running on 127.0.0.1:$ETCD_PORT"
	else
		port_open "$ETCD_PORT" && die "port 127.0.0.1:$ETCD_PORT is taken by another program; set SPIKE_ETCD_PORT"
		start_bg etcd etcd "$(command -v etcd)" --name spike-etcd --data-dir "$HA_DIR/etcd" \
			--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
			--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
			--initial-cluster "spike-etcd=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
			--log-level warn
		wait_until "healthy etcd on 127.0.0.1:$ETCD_PORT" etcd_healthy
	fi

	for n in $(seq "$HA_MEMBERS"); do
		write_config "$n"
		if live_pid "patroni-$n" patroni >/dev/null; then
			say "==> patroni-$n already running (PostgreSQL 127.0.0.1:$(member_port "$n"))"
			# The configuration file may have changed: Patroni rereads it.
			kill -HUP "$(live_pid "patroni-$n" patroni)"
			continue
		fi
		port_open "$(member_port "$n")" && die "port 127.0.0.1:$(member_port "$n") is taken by another program; set SPIKE_PG_PORT"
		port_open "$(rest_port "$n")" && die "port 127.0.0.1:$(rest_port "$n") is taken by another program; set SPIKE_PATRONI_PORT"
		start_bg "patroni-$n" patroni "$(command -v patroni)" "$(member_dir "$n")/patroni.yml"
	done
	wait_until "PostgreSQL primary under Patroni" member_with /primary
	wait_until "synchronous standby under Patroni" member_with /sync
	say "==> Patroni: member $(member_with /primary) is the primary, member $(member_with /sync) the synchronous standby"
	printf 'ha\n' >"$PG_MODE_FILE"
}

etcd_healthy() { [[ $(http_status "$ETCD_PORT" /health) == 200 ]]; }

stop() {
	local n leader
	leader=$(member_with /primary || true)
	# Replicas first, so that the primary does not fail over to a member
	# that is on its way down.
	for n in $(seq "$HA_MEMBERS"); do
		[[ $n == "$leader" ]] || stop_pid "patroni-$n" patroni
	done
	if [[ -n $leader ]]; then
		stop_pid "patroni-$leader" patroni
	fi
	# A postmaster whose Patroni was killed keeps running: stop it.
	for n in $(seq "$HA_MEMBERS"); do
		local data
		data="$(member_dir "$n")/data"
		if [[ -f $data/postmaster.pid ]] && as_pg "$(command -v pg_ctl)" -D "$data" status >/dev/null 2>&1; then
			as_pg "$(command -v pg_ctl)" -D "$data" -m fast -w -t 60 stop >/dev/null ||
				warn "cannot stop the PostgreSQL of member $n in $data"
		fi
	done
	stop_pid etcd etcd
	rm -f "$PG_MODE_FILE"
}

status() {
	command -v patronictl >/dev/null 2>&1 || die "patronictl not found; run deploy/local/check-deps.sh"
	[[ -f $(member_dir 1)/patroni.yml ]] || die "no HA stack in $HA_DIR; 'make up PG=ha' first"
	patronictl -c "$(member_dir 1)/patroni.yml" list
}

failover() {
	local n pid
	n=$(member_with /primary) || die "no member is the primary now"
	pid=$(head -n1 "$(member_dir "$n")/data/postmaster.pid")
	[[ $pid =~ ^[0-9]+$ ]] || die "no postmaster pid for member $n"
	kill -KILL "$pid"
	say "killed the postmaster (pid $pid) of member $n, the primary; Patroni promotes the synchronous standby:"
	local start=$SECONDS
	wait_until "new primary" new_primary "$n"
	say "member $(member_with /primary) is the primary after $((SECONDS - start))s (polled every 0.5s); 'deploy/local/patroni.sh status' shows the rest"
}

new_primary() {
	local p
	p=$(member_with /primary) && [[ $p != "$1" ]]
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
failover) failover ;;
*) die "$usage" ;;
esac
