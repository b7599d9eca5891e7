#!/bin/sh
# archive-wal.sh: PostgreSQL's archive_command for a WAL archive in a
# directory (docs/backup.md, "Physical backup and point-in-time recovery").
#
#   archive_command = '/usr/local/bin/archive-wal.sh %p %f /srv/spike-wal'
#
# It never overwrites an archived file: a file of that name with the same
# bytes is success (PostgreSQL retries a file whose success it did not
# record, e.g. after a crash); with other bytes it fails, and PostgreSQL
# keeps the WAL and retries until someone looks. A file is copied under a
# temporary name, flushed to disk, renamed, and the directory flushed, so
# a crash never leaves a partial file under the real name. Exit status 0
# tells PostgreSQL the file is safe; anything else, that it is not.
set -eu

if [ "$#" -ne 3 ]; then
	echo "usage: archive-wal.sh WAL_PATH(%p) WAL_NAME(%f) ARCHIVE_DIR" >&2
	exit 2
fi
src=$1
dst=$3/$2

if [ -e "$dst" ]; then
	if cmp -s -- "$src" "$dst"; then
		exit 0
	fi
	echo "archive-wal.sh: $dst exists with other contents: not overwriting it" >&2
	exit 1
fi
tmp=$dst.tmp.$$
trap 'rm -f -- "$tmp"' EXIT
cp -- "$src" "$tmp"
sync -- "$tmp"
mv -- "$tmp" "$dst"
sync -- "$3"
