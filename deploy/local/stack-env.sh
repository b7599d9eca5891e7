# shellcheck shell=bash
# stack-env.sh holds write_stack_env, which up.sh runs to write the stack's
# env file (Pilot's settings: . ./.spike/env). Source it from bash after
# lib.sh; it is not meant to be run. Apart from it so that a test can run
# it without starting a stack (e2e/localenv_test.go).

# shq single-quotes its argument for sh.
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# write_stack_env FILE writes the env file of the stack in $STATE to FILE
# (0600, atomically), from up.sh's settings: BIN, NEXUS_PORT, TRUST_DOMAIN,
# USE_SPIRE and SPIRE_AGENT_SOCKET, OWNER_URL, TCP_URL, NEXUS_ROLE,
# PG_PASSWORD_FILE and NEXUS_PASSWORD_FILE.
#
# Every value it exports is this stack's own, never one from the caller's
# environment: a user who sourced another stack's env file and then runs
# `SPIKE_STATE=/tmp/stack2 make up` in the same shell has that stack's
# SPIKE_TOKEN_FILE, SPIKE_NEXUS_URL, SVID files and database URLs set, and
# none of them may reach this file (stack 2's `spike operator init` would
# overwrite stack 1's admin token).
write_stack_env() {
	local env_file=$1
	(
		umask 077
		{
			printf '# Written by deploy/local/up.sh. Source it: . %s\n' "$(shq "$env_file")"
			if [[ -n $USE_SPIRE ]]; then
				printf '# Pilot (bin/spike) talks to the local Nexus with the pilot SVID from the\n'
				printf '# SPIRE agent (entry: unix:path:%s, unix:uid:%s).\n' "$BIN/spike" "$(id -u)"
			else
				printf '# Pilot (bin/spike) talks to the local Nexus with the pilot SVID.\n'
			fi
			printf '# bin/ first on PATH (once), so that spike is this stack'"'"'s.\n'
			printf 'case ":$PATH:" in *:%s:*) ;; *) export PATH=%s:"$PATH" ;; esac\n' "$(shq "$BIN")" "$(shq "$BIN")"
			printf '# This stack'"'"'s admin token, apart from other stacks'"'"' (~/.spike/token is the\n'
			printf '# default only outside a stack). Set SPIKE_TOKEN_FILE after this file for another.\n'
			printf 'export SPIKE_TOKEN_FILE=%s\n' "$(shq "$STATE/token")"
			printf 'export SPIKE_NEXUS_URL=%s\n' "$(shq "https://127.0.0.1:$NEXUS_PORT")"
			printf 'export SPIKE_TRUST_DOMAIN=%s\n' "$(shq "$TRUST_DOMAIN")"
			if [[ -n $USE_SPIRE ]]; then
				printf 'export SPIFFE_ENDPOINT_SOCKET=%s\n' "$(shq "unix://$SPIRE_AGENT_SOCKET")"
				printf '# SVID files would be ignored; drop them so that nothing looks configured twice.\n'
				printf 'unset SPIKE_SVID_CERT SPIKE_SVID_KEY SPIKE_TRUST_BUNDLE\n'
			else
				printf 'export SPIKE_SVID_CERT=%s\n' "$(shq "$STATE/svid/pilot/svid.pem")"
				printf 'export SPIKE_SVID_KEY=%s\n' "$(shq "$STATE/svid/pilot/key.pem")"
				printf 'export SPIKE_TRUST_BUNDLE=%s\n' "$(shq "$STATE/svid/pilot/bundle.pem")"
			fi
			printf '# For make psql and make bench: the owner role spike (password in %s).\n' "$PG_PASSWORD_FILE"
			printf '# Nexus serves as %s (password in %s).\n' "$NEXUS_ROLE" "$NEXUS_PASSWORD_FILE"
			printf 'export SPIKE_DATABASE_URL=%s\n' "$(shq "$OWNER_URL")"
			printf '# For bin/spike-nexus migrate by hand (as the owner, granting %s).\n' "$NEXUS_ROLE"
			printf 'export SPIKE_DATABASE_OWNER_URL=%s\n' "$(shq "$OWNER_URL")"
			printf 'export SPIKE_DATABASE_ROLE=%s\n' "$(shq "$NEXUS_ROLE")"
			printf '# The same database over TCP and TLS, for tools that cannot use the Unix socket.\n'
			printf 'export SPIKE_DATABASE_TCP_URL=%s\n' "$(shq "$TCP_URL")"
			if [[ -z $USE_SPIRE ]]; then
				printf '# The dev stack uses SVID files, not a SPIRE agent.\n'
				printf 'unset SPIFFE_ENDPOINT_SOCKET\n'
			fi
		} >"$env_file.tmp"
		mv -f "$env_file.tmp" "$env_file"
	)
}
