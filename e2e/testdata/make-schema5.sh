#!/usr/bin/env bash
# make-schema5.sh wrote schema5.sql: a SPIKE database at schema version 5
# (the schema before sealed secret heads), made by the real binaries of
# commit 5c3710e through `make up` and Pilot, then dumped with pg_dump. The
# upgrade test (../upgrade_test.go) loads it into a fresh cluster and runs
# the current binaries on it. Kept for provenance: rerunning it needs a
# checkout of that commit (bin/ built from it).
#
#   e2e/testdata/make-schema5.sh   (from the repository root)
set -euo pipefail
export SPIKE_STATE=${SPIKE_STATE:-/tmp/spike-schema5}
export SPIKE_PG_PORT=55632 SPIKE_KEEPER_PORT=8743 SPIKE_NEXUS_PORT=8753
export SPIKE_TOKEN_FILE=$SPIKE_STATE/token
OUT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/schema5.sql

rm -rf "$SPIKE_STATE"
make up >/dev/null
trap 'make down >/dev/null' EXIT
# shellcheck disable=SC1091
. "$SPIKE_STATE/env"
spike=bin/spike

echo 'upgrade fixture password' | $spike operator init >/dev/null
# Tokens: one revoked, one kept (the kept one is init's, saved in $SPIKE_TOKEN_FILE).
cp "$SPIKE_TOKEN_FILE" "$SPIKE_STATE/token.init"
echo 'upgrade fixture password' | $spike login >/dev/null
$spike logout >/dev/null
cp "$SPIKE_STATE/token.init" "$SPIKE_TOKEN_FILE"

# apps/a: versions 1-4; 2 deleted, 1 destroyed, custom metadata.
for v in 1 2 3 4; do $spike secret put apps/a user=alice "pass=a-v$v" >/dev/null; done
$spike secret delete apps/a --versions 2 >/dev/null
$spike secret destroy apps/a --versions 1 >/dev/null
$spike secret metadata put apps/a --custom owner=team-a --custom tier=gold >/dev/null
# apps/b: check-and-set required, retention 2 (versions 1 and 2 pruned).
$spike secret metadata put apps/b --cas-required --max-versions 2 >/dev/null
for v in 1 2 3 4; do $spike secret put apps/b --cas $((v - 1)) "key=b-v$v" >/dev/null; done
# apps/c: deleted latest version, so it is not listed.
$spike secret put apps/c k=c-v1 >/dev/null
$spike secret delete apps/c >/dev/null
# A settings-only secret without versions.
$spike secret metadata put apps/empty --max-versions 3 >/dev/null
$spike policy put web-read --spiffe-id 'spiffe://spike.local/app/web' --path 'apps/**' --perm read,list >/dev/null
$spike policy put gone --spiffe-id 'spiffe://spike.local/app/x' --path 'x/**' --perm read >/dev/null
$spike policy delete gone >/dev/null

cp "$SPIKE_TOKEN_FILE" "$(dirname "$OUT")/schema5.token"
PGPASSWORD=$(cat "$SPIKE_STATE/pg/password") pg_dump --no-owner --no-privileges -h 127.0.0.1 -p "$SPIKE_PG_PORT" -U spike spike |
	grep -v '^SET transaction_timeout' >"$OUT"
echo "wrote $OUT"
