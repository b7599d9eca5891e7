#!/bin/sh
# backup.sh is the `backup` service of docker-compose.yml (profile backup):
#
#   docker compose run --rm backup
#
# It runs in the postgres image, as its postgres user, and writes a logical
# backup of SPIKE's database, pg_dump --format=custom, into $BACKUP_DIR (the
# backups volume), as docs/backup.md's runbook describes. It connects with
# the libpq variables Compose sets (PGHOST, PGUSER=spike_backup,
# PGSSLMODE=verify-full, PGPASSFILE...): a role that reads every table and
# writes none. The dump is written under a temporary name, checked with
# pg_restore --list, then renamed, so a file named spike-*.dump is always
# complete. Then it deletes all but the $BACKUP_KEEP newest dumps.
#
# In the dump, values, custom metadata, policies and keys are sealed: they
# open with the admin password (or the unseal shares) valid when it was
# taken. Paths, SPIFFE IDs, times and the audit trail's fields are plain
# text, as in the database. Copy it off the host.
set -eu

BACKUP_DIR=${BACKUP_DIR:-/backups}
BACKUP_KEEP=${BACKUP_KEEP:-7}
case $BACKUP_KEEP in
*[!0-9]* | "" | 0)
	echo "backup: BACKUP_KEEP must be a positive number, not '$BACKUP_KEEP'" >&2
	exit 1
	;;
esac
umask 077

stamp=$(date -u +%Y%m%dT%H%M%SZ)
final="$BACKUP_DIR/spike-$stamp.dump"
partial="$BACKUP_DIR/.spike-$stamp.dump.partial"
trap 'rm -f "$partial"' EXIT

# One consistent snapshot; the lock wait is bounded so that a migration
# holding a table lock makes the backup fail rather than hang.
pg_dump --format=custom --lock-wait-timeout=60s --no-password --file="$partial"
# A dump that pg_restore cannot list is no backup.
pg_restore --list "$partial" >/dev/null
mv "$partial" "$final"
echo "backup: wrote $final ($(wc -c <"$final") bytes)"

# Retention: the newest BACKUP_KEEP dumps stay (names sort by time).
# shellcheck disable=SC2012 # the names are ours: spike-<UTC time>.dump
ls -1 "$BACKUP_DIR" | grep -E '^spike-[0-9]{8}T[0-9]{6}Z\.dump$' | sort -r |
	tail -n +"$((BACKUP_KEEP + 1))" | while read -r old; do
	rm -f "$BACKUP_DIR/$old"
	echo "backup: deleted $old (BACKUP_KEEP=$BACKUP_KEEP)"
done
