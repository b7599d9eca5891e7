#!/usr/bin/env bash
# bench-pair.sh is `make bench-pair BASE=REV`: paired runs of this tree
# against an earlier commit, for a change whose effect is smaller than the
# host's drift between two `make bench` runs. Both stacks run at once, each
# from its own tree and state folder; the same spike-bench (this tree's)
# calls one, then the other (alternating which goes first), ROUNDS times, and the figures compared are
# the ratios within each round. The base tree is a temporary git worktree.
#
#   BASE=REV                 the commit to compare with (required)
#   PAIR_ROUNDS=6            rounds
#   PAIR_CONCURRENCY=16,64   callers per cell
#   PAIR_OPS=get,put         operations measured (spike-bench -ops)
#   PAIR_RAW=true            also measure raw pgx in each round (false: half the time)
#   PAIR_DURATION=5s         per cell
#   PAIR_OUT=/tmp/spike-bench-pair   reports, logs and the base worktree
#   PAIR_PORTS="55611 8741 8751 55612 8761 8771"
#                            PostgreSQL, Keeper and Nexus ports of the base
#                            stack, then of this tree's (Keeper and Nexus
#                            take the next port up too)
#
# It prints, per round and operation, both throughputs and their ratio and
# the machine's CPU per request less spike-bench's (with both stacks up, so
# it includes the other stack's leftover background work), then the mean
# ratio with its standard error and the mean CPU per request of each side.
# An even PAIR_ROUNDS has each side go first equally often.
set -euo pipefail

say() { printf 'bench-pair: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
BASE=${BASE:-}
[[ -n $BASE ]] || die "BASE=REV is required: the commit to compare this tree with"
ROUNDS=${PAIR_ROUNDS:-6}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "PAIR_ROUNDS must be a positive number, got $ROUNDS"
((ROUNDS % 2 == 0 || ROUNDS == 1)) || say "PAIR_ROUNDS=$ROUNDS is odd: the base goes first once more than this tree"
OUT=${PAIR_OUT:-/tmp/spike-bench-pair}
read -r -a ports <<<"${PAIR_PORTS:-55611 8741 8751 55612 8761 8771}"
((${#ports[@]} == 6)) || die "PAIR_PORTS must name six ports"
GO=${GO:-go}

rev=$(git -C "$REPO_ROOT" rev-parse --verify "$BASE^{commit}") || die "BASE=$BASE is not a commit here"
mkdir -p "$OUT"
BASE_TREE=$OUT/base-tree
unset MAKEFLAGS MFLAGS MAKELEVEL

down() { # tree state
	(cd "$1" && SPIKE_STATE=$2 make --no-print-directory down >/dev/null 2>&1) || true
}
finish() {
	down "$BASE_TREE" "$OUT/state-base"
	down "$REPO_ROOT" "$OUT/state-this"
	git -C "$REPO_ROOT" worktree remove --force "$BASE_TREE" 2>/dev/null || true
}
trap finish EXIT

say "base tree at ${rev:0:12} in $BASE_TREE"
git -C "$REPO_ROOT" worktree remove --force "$BASE_TREE" 2>/dev/null || rm -rf "$BASE_TREE"
git -C "$REPO_ROOT" worktree add --detach "$BASE_TREE" "$rev" >/dev/null

# setup starts a stack of tree on the given ports, initialises it and mints
# the bench workload's SVID with that tree's own tools.
setup() { # tree state pg keeper nexus
	local tree=$1 st=$2
	down "$tree" "$st"
	rm -rf "$st"
	say "starting $(basename "$st") (PostgreSQL $3, Keeper $4, Nexus $5)"
	(cd "$tree" && SPIKE_STATE=$st SPIKE_PG_PORT=$3 SPIKE_KEEPER_PORT=$4 SPIKE_NEXUS_PORT=$5 \
		make --no-print-directory up >"$st.up.log" 2>&1) || die "make up failed in $tree (log: $st.up.log)"
	(
		cd "$tree"
		# shellcheck disable=SC1091
		. "$st/env"
		export SPIKE_TOKEN_FILE=$st/admin-token
		printf 'bench-pair-%s\n' "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" | bin/spike operator init >/dev/null
		bin/spike policy put bench --spiffe-id "spiffe://${SPIKE_TRUST_DOMAIN:-spike.local}/bench" \
			--path 'bench/**' --perm read,write >/dev/null
		SPIKE_STATE=$st make --no-print-directory svid ID="spiffe://${SPIKE_TRUST_DOMAIN:-spike.local}/bench" NAME=bench >/dev/null
	) >"$st.setup.log" 2>&1 || die "setting up $st failed (log: $st.setup.log)"
}
setup "$BASE_TREE" "$OUT/state-base" "${ports[0]}" "${ports[1]}" "${ports[2]}"
setup "$REPO_ROOT" "$OUT/state-this" "${ports[3]}" "${ports[4]}" "${ports[5]}"
"$GO" build -trimpath -o "$REPO_ROOT/bin/spike-bench" "$REPO_ROOT/e2e/cmd/spike-bench"

# figures prints "get|put c ops server-µs" for each SPIKE row of a report
# over HTTP/2 (a cell with failed requests has no figures): its throughput,
# and the machine's CPU per request not spent in spike-bench ("-" when
# unmeasured).
figures() {
	awk -F'|' '
		/^\| SPIKE (get|put) c=[0-9]+ \|/ {
			split($2, w, " "); sub(/c=/, "", w[3]); gsub(/ /, "", $4)
			if ($4 ~ /^[0-9]+$/) server[w[2] " " w[3]] = $4 # CPU per operation
		}
		/^\| (get vs SELECT|put vs INSERT) \|/ {
			gsub(/ /, "", $3); gsub(/ /, "", $5)
			if ($5 ~ /^[0-9]+$/) row[++n] = ($2 ~ /put/ ? "put" : "get") " " $3 " " $5
		}
		END {
			for (i = 1; i <= n; i++) {
				split(row[i], f, " ")
				s = server[f[1] " " f[2]]
				print row[i], (s ~ /^[0-9]+$/ ? s : "-")
			}
		}' "$1"
}

results=$OUT/results.txt
: >"$results"
for r in $(seq 1 "$ROUNDS"); do
	# Odd rounds run the base first, even rounds this tree first: whatever
	# the first side leaves behind (a busier or throttled host, PostgreSQL's
	# background work) falls on each side equally often.
	order="base this"
	((r % 2)) || order="this base"
	for side in $order; do
		st=$OUT/state-$side
		port=${ports[2]}
		[[ $side == this ]] && port=${ports[5]}
		say "round $r of $ROUNDS: $side"
		(
			# shellcheck disable=SC1091
			. "$st/env"
			# shellcheck disable=SC1091
			. "$st/svid/bench/env"
			"$REPO_ROOT/bin/spike-bench" -nexus "https://127.0.0.1:$port" -token-file "" \
				-concurrency "${PAIR_CONCURRENCY:-16,64}" -ops "${PAIR_OPS:-get,put}" -raw="${PAIR_RAW:-true}" -protocols h2 -duration "${PAIR_DURATION:-5s}" \
				-out "$OUT/$side-$r.md"
		) >"$OUT/$side-$r.log" 2>&1 || die "spike-bench failed against $side (log: $OUT/$side-$r.log)"
		figures "$OUT/$side-$r.md" | sed "s/^/$r $side /" >>"$results"
	done
done

# Pair each round's base and this figures (in either order in the file),
# then summarise the ratios, and the server CPU per request of each side.
awk '
	BEGIN { printf "%-6s %-10s %4s %10s %10s %8s %12s %12s\n", "round", "operation", "c", "base/s", "this/s", "ratio", "base µs/op", "this µs/op" }
	{
		k = $1 " " $3 " " $4
		ops[$2, k] = $5; cpu[$2, k] = $6
		if (!(k in seen)) { seen[k] = 1; cells[++ncells] = k }
	}
	END {
		for (c = 1; c <= ncells; c++) {
			k = cells[c]
			if (!(("base", k) in ops) || !(("this", k) in ops) || ops["base", k] == 0) continue
			split(k, f, " ")
			b = ops["base", k]; t = ops["this", k]; bc = cpu["base", k]; tc = cpu["this", k]
			ratio = t / b
			printf "%-6s %-10s %4s %10s %10s %8.3f %12s %12s\n", f[1], f[2], f[3], b, t, ratio, bc, tc
			key = f[2] " c=" f[3]
			if (!(key in n)) order[++keys] = key
			n[key]++; sum[key] += ratio; sq[key] += ratio * ratio
			if (bc != "-" && tc != "-") { m[key]++; bsum[key] += bc; tsum[key] += tc }
		}
		print ""
		for (i = 1; i <= keys; i++) {
			key = order[i]
			mean = sum[key] / n[key]
			se = 0
			if (n[key] > 1) {
				v = (sq[key] - n[key] * mean * mean) / (n[key] - 1)
				if (v > 0) se = sqrt(v / n[key])
			}
			printf "%-12s this/base %+.1f%% +/- %.1f (standard error, %d rounds)", key, (mean - 1) * 100, se * 100, n[key]
			if (m[key] > 0) printf "; server CPU per request: base %.0f µs, this %.0f µs", bsum[key] / m[key], tsum[key] / m[key]
			printf "\n"
		}
	}' "$results" | tee "$OUT/summary.txt"
say "reports and logs in $OUT"
