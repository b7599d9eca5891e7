#!/usr/bin/env bash
# bench-scale.sh is `make bench-scale`: the cost of requests as the data
# grows. On a dedicated stack (deploy/local/bench-lib.sh, as `make bench`)
# spike-bench writes secrets through Nexus's API as the workload
# spiffe://TD/bench (every row sealed and bound; 1% of them get 10
# versions) up to each size in turn, measuring at each size get, get of a
# secret with 10 versions, put of a new version and a directory listing
# (100 secrets); then, at the largest size, it adds policies for other
# workloads as the admin up to each policy count and measures get and list
# again. Each row gives ops/s, p50, p99, CPU per request (Nexus, PostgreSQL
# + kernel), Nexus's RSS (current and peak) and the database's size, and
# says whether it stayed flat against the smallest size. Target (issue 16):
# Nexus RSS ≤ 100 MiB at 1M secrets. Not part of `make test`: the default
# sizes write over a million secrets (about 20 minutes on two cores).
#
#   BENCH_SCALE_SIZES=10000,100000,1000000   secrets, measured in turn
#   BENCH_SCALE_POLICIES=1000,10000          policies, at the largest size
#                            (set and empty: none)
#   BENCH_SCALE_WRITERS=64   concurrent PutSecret callers while populating
#   BENCH_DURATION=5s        how long each cell runs
#   BENCH_CONCURRENCY=16     concurrent callers in each cell
#   BENCH_VALUE_SIZE=256     bytes per secret value
#   BENCH_OUT=docs/benchmarks-scale.md
#   BENCH_STATE=.spike-bench-scale state folder, wiped at the start of each run
#   BENCH_PG_PORT=55542 BENCH_KEEPER_PORT=8673 BENCH_NEXUS_PORT=8683
#                            (the ops listeners take the next ports up)
#   BENCH_KEEP_STATE=1       keep the state folder after a successful run
#
# The state folder (logs included) is kept when the run fails.
set -euo pipefail

BENCH_NAME=bench-scale
BENCH_DEFAULT_STATE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)/.spike-bench-scale
BENCH_DEFAULT_OUT=$(dirname "$BENCH_DEFAULT_STATE")/docs/benchmarks-scale.md
BENCH_DEFAULT_PORTS="55542 8673 8683"
BENCH_PERMS=read,write,list
# shellcheck source=deploy/local/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

say "running spike-bench -mode scale"
"$REPO_ROOT/bin/spike-bench" \
	-mode scale \
	-token-file "" \
	-sizes "${BENCH_SCALE_SIZES:-10000,100000,1000000}" \
	-policies "${BENCH_SCALE_POLICIES-1000,10000}" \
	-writers "${BENCH_SCALE_WRITERS:-64}" \
	-admin-token-file "$ADMIN_TOKEN_FILE" \
	-admin-svid-cert "$ADMIN_SVID_CERT" \
	-admin-svid-key "$ADMIN_SVID_KEY" \
	-admin-trust-bundle "$ADMIN_TRUST_BUNDLE" \
	-concurrency "${BENCH_CONCURRENCY:-16}" \
	-protocols h2 \
	-duration "${BENCH_DURATION:-5s}" \
	-value-size "${BENCH_VALUE_SIZE:-256}" \
	-out "$OUT" \
	-nexus-metrics "http://127.0.0.1:$NEXUS_OPS_PORT/metrics" \
	-keeper-metrics "http://127.0.0.1:$KEEPER_OPS_PORT/metrics"
ok=true
