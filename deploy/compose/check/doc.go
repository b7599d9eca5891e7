// Package check is the static check of SPIKE's Docker Compose deployment
// (deploy/compose). There is no Docker engine where the tests run, so the
// test loads docker-compose.yml with the Compose specification's own Go
// loader and checks what can be checked without running a container: the
// file parses; every long-running service has a health check and every other
// is a one-shot; builds point at Dockerfiles, stages and files that exist;
// images are pinned; the SPIKE_* and SPIFFE_* variables set are ones the
// programs read; addresses, ports and URLs agree with each other (Nexus
// lists every Keeper, each Keeper every other one as its peer); volumes are
// declared; and each program's uid is registered in SPIRE under the SPIFFE
// ID the other programs expect of it (a Keeper ID of its own for each
// Keeper). For a team's installation it also checks that pulled images are
// pinned by digest, the published host port is a variable, every
// long-running service has resource limits and rotated logs, PostgreSQL
// refuses clients without TLS, and a backup service dumps the database as
// a read-only role of its own (checks_team.go).
//
// The healthprobe command, the containers' health check, lives here too.
package check
