#!/usr/bin/env bash
# check-deps.sh checks that the tools `make test` and `make up` need are
# installed: Go, PostgreSQL's initdb, pg_ctl, postgres and psql, pgbouncer
# (the end-to-end test through it), and Patroni and etcd (the failover test
# and `make up PG=ha`). When PostgreSQL, pgbouncer, Patroni or etcd is
# missing and we run as root on a machine with apt-get, it installs
# postgresql-15 (without creating or starting a system cluster), pgbouncer,
# patroni or etcd-server (their system services stopped and disabled: tests
# and the dev stack run their own).
# As root it also makes sure the OS user postgres exists, because the
# PostgreSQL server refuses to run as root.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_TOOLS=(initdb pg_ctl postgres psql)

missing_pg_tools() {
	local t
	for t in "${PG_TOOLS[@]}"; do
		command -v "$t" >/dev/null 2>&1 || printf '%s ' "$t"
	done
}

install_postgresql() {
	say "check-deps: PostgreSQL tools missing ($1); installing postgresql-15 with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends postgresql-common
	# No system cluster on port 5432: the tests and the dev stack run their
	# own clusters.
	local conf=/etc/postgresql-common/createcluster.conf
	if [[ -f $conf ]]; then
		sed -i -E 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' "$conf"
	fi
	apt-get install -y -q --no-install-recommends postgresql-15 postgresql-client-15
}

# pgbouncer lives in /usr/sbin on Debian, which a user's PATH may lack.
find_pgbouncer() {
	command -v pgbouncer 2>/dev/null || { [[ -x /usr/sbin/pgbouncer ]] && echo /usr/sbin/pgbouncer; }
}

# stop_system_service NAME stops the system service a package may have
# started and keeps it from starting at boot: the tests and the dev stack
# run their own. (systemctl disable works without a running systemd too.)
stop_system_service() {
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable "$1.service" >/dev/null 2>&1 || true
	fi
	if [[ -d /run/systemd/system ]]; then
		systemctl stop "$1.service" >/dev/null 2>&1 || true
	elif command -v service >/dev/null 2>&1; then
		service "$1" stop >/dev/null 2>&1 || true
		update-rc.d "$1" disable >/dev/null 2>&1 || true
	fi
}

install_pgbouncer() {
	say "check-deps: pgbouncer missing; installing pgbouncer with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends pgbouncer
	# The package may start a system pgbouncer on port 6432.
	stop_system_service pgbouncer
}

# etcd lives in /usr/bin on Debian; patroni too (its Python in /usr/lib/python3).
find_etcd() { command -v etcd 2>/dev/null; }
find_patroni() { command -v patroni 2>/dev/null; }

install_patroni_etcd() {
	say "check-deps: $1 missing; installing patroni and etcd-server with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# patroni pulls python3-etcd (its first choice of DCS client) and
	# psycopg2; it runs PostgreSQL from the bin_dir it is given.
	apt-get install -y -q --no-install-recommends patroni etcd-server
	# etcd-server starts a system etcd on 2379/2380; patroni ships units
	# too. Our etcd and Patroni members run on ports of their own.
	stop_system_service etcd
	stop_system_service patroni
}

command -v go >/dev/null 2>&1 ||
	die "go is not on PATH; install Go (go.work needs 1.26) and add its bin directory, e.g. export PATH=/usr/local/go/bin:\$PATH"

missing=$(missing_pg_tools)
if [[ -n $missing ]]; then
	if is_root && command -v apt-get >/dev/null 2>&1; then
		install_postgresql "${missing% }"
		hash -r
		missing=$(missing_pg_tools)
		[[ -z $missing ]] ||
			die "still missing after installing postgresql-15: ${missing% } (looked on PATH and in $PG_FALLBACK_BIN)"
	else
		die "PostgreSQL tools not found on PATH: ${missing% }. Install PostgreSQL 15" \
			"(Debian/Ubuntu: sudo apt-get install postgresql-15) and put its bin directory" \
			"($PG_FALLBACK_BIN on Debian/Ubuntu) on PATH."
	fi
fi

if [[ -z $(find_pgbouncer) ]]; then
	if is_root && command -v apt-get >/dev/null 2>&1; then
		install_pgbouncer
		hash -r
		[[ -n $(find_pgbouncer) ]] || die "pgbouncer still missing after installing it (looked on PATH and in /usr/sbin)"
	else
		die "pgbouncer not found on PATH or in /usr/sbin; install it (Debian/Ubuntu: sudo apt-get install pgbouncer)"
	fi
fi

missing=""
[[ -n $(find_etcd) ]] || missing+="etcd "
[[ -n $(find_patroni) ]] || missing+="patroni "
if [[ -n $missing ]]; then
	if is_root && command -v apt-get >/dev/null 2>&1; then
		install_patroni_etcd "${missing% }"
		hash -r
		[[ -n $(find_etcd) && -n $(find_patroni) ]] || die "etcd or patroni still missing after installing etcd-server and patroni"
	else
		die "not found on PATH: ${missing% }; install them (Debian/Ubuntu: sudo apt-get install patroni etcd-server)"
	fi
fi
# Patroni is Python: a broken dependency shows here, not in the middle of a test.
patroni --version >/dev/null 2>&1 || die "patroni --version fails; reinstall it (apt-get install --reinstall patroni)"

if is_root && ! getent passwd "$PG_OS_USER" >/dev/null; then
	# Installing the Debian package creates this user; a PostgreSQL from
	# elsewhere may not have.
	command -v useradd >/dev/null 2>&1 ||
		die "running as root, so PostgreSQL must run as OS user $PG_OS_USER, which does not exist; create it (useradd --system $PG_OS_USER)"
	say "check-deps: creating OS user $PG_OS_USER (the PostgreSQL server refuses to run as root)"
	useradd --system --user-group --home-dir /var/lib/postgresql --shell /usr/sbin/nologin "$PG_OS_USER"
fi

say "check-deps: ok: $(go version | cut -d' ' -f3), $(postgres --version), $("$(find_pgbouncer)" --version | head -1)," \
	"$(patroni --version), $(etcd --version | head -1)"
