package check

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// What a stack for a team needs beyond a working one: pulled images pinned
// by digest, host ports that a variable can move, resource limits and
// rotated logs on every long-running service, and a least-privilege backup.

// digestRef is a pulled image pinned by digest, with its tag kept for the
// reader: name:tag@sha256:<64 hex digits>.
var digestRef = regexp.MustCompile(`^([^@\s]+):([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})@sha256:[0-9a-f]{64}$`)

// checkImageDigests: every image pulled, by a service or by the
// Dockerfile (FROM, COPY --from), is name:tag@sha256:digest (a tag alone
// can be moved to other content), and every place pulling the same image
// pulls the same reference (the tools image's spire-server CLI must match
// the server; the four distroless stages one base).
func checkImageDigests(s *stack) []string {
	var out []string
	type seen struct{ ref, where string }
	byName := map[string]seen{} // image name -> first reference and where
	pin := func(where, ref string) {
		m := digestRef.FindStringSubmatch(ref)
		name, digest, hasDigest := strings.Cut(ref, "@")
		switch {
		case m != nil:
		case !hasDigest:
			out = append(out, fmt.Sprintf("%s: image %s is not pinned by digest: write name:tag@sha256:<digest> (`docker buildx imagetools inspect %s` prints the digest; README.md, \"Images\")", where, ref, name))
		case !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(digest):
			out = append(out, fmt.Sprintf("%s: image %s: %s is not a sha256 digest (sha256: and 64 hex digits)", where, ref, digest))
		default:
			out = append(out, fmt.Sprintf("%s: image %s has a digest but no tag: write name:tag@%s, so that a reader knows which release it is", where, ref, digest))
		}
		if m == nil {
			return
		}
		if prev, ok := byName[m[1]]; ok && prev.ref != ref {
			out = append(out, fmt.Sprintf("%s pulls %s as %s, but %s as %s: pull one reference", prev.where, m[1], prev.ref, where, ref))
			return
		}
		if _, ok := byName[m[1]]; !ok {
			byName[m[1]] = seen{ref, where}
		}
	}
	for _, svc := range s.services {
		if svc.Build == nil && svc.Image != "" { // else built here, or reported by checkPinnedImages
			pin("service "+svc.Name, svc.Image)
		}
	}
	for _, dfPath := range sortedKeys(s.dockerfiles) {
		df := s.dockerfiles[dfPath]
		if df == nil {
			continue
		}
		for _, st := range df.stages {
			if !df.isStage(st.from, st.line) && st.from != "scratch" {
				pin(fmt.Sprintf("%s:%d: FROM", s.rel(dfPath), st.line), st.from)
			}
			for _, c := range st.copies {
				if c.from != "" && !df.isStage(c.from, c.line) {
					pin(fmt.Sprintf("%s:%d: COPY --from", s.rel(dfPath), c.line), c.from)
				}
			}
		}
	}
	return out
}

// hostPortVar matches a published port that a variable can move:
// ${SPIKE_..._HOST_PORT:-default}.
var hostPortVar = regexp.MustCompile(`^\$\{(SPIKE_[A-Z0-9_]+_HOST_PORT):-([0-9]+)\}$`)

// checkHostPorts: every published host port is ${SPIKE_<NAME>_HOST_PORT:-N}
// in the file, one variable per port, so that a second stack or a port
// already taken on the host needs no edit of the file.
func checkHostPorts(s *stack) []string {
	var out []string
	seen := map[string]string{} // variable -> service
	for _, svc := range s.services {
		if len(svc.Ports) == 0 {
			continue
		}
		raw, _ := s.rawService(svc.Name)["ports"].([]any)
		for i, p := range raw {
			published := rawPublished(p)
			m := hostPortVar.FindStringSubmatch(published)
			if m == nil {
				out = append(out, fmt.Sprintf("service %s publishes host port %q: write it as ${SPIKE_%s_HOST_PORT:-<port>} so that it can be moved without editing the file", svc.Name, published, envSuffix(svc.Name)))
				continue
			}
			if other, dup := seen[m[1]]; dup {
				out = append(out, fmt.Sprintf("services %s and %s both publish a port at ${%s}: one variable per port", other, svc.Name, m[1]))
			}
			seen[m[1]] = svc.Name
			if i < len(svc.Ports) && svc.Ports[i].Published != m[2] {
				out = append(out, fmt.Sprintf("service %s: ${%s:-%s} loads as host port %q", svc.Name, m[1], m[2], svc.Ports[i].Published))
			}
		}
	}
	return out
}

// rawPublished returns the host port part of a ports entry before
// interpolation: "IP:HOST:CONTAINER" (or "HOST:CONTAINER"), or the
// published field of the long syntax.
func rawPublished(p any) string {
	switch v := p.(type) {
	case map[string]any:
		return fmt.Sprint(v["published"])
	case string:
		// A ${VAR:-default} holds colons of its own: split on the colons
		// outside it.
		var parts []string
		depth, start := 0, 0
		for i := 0; i < len(v); i++ {
			switch {
			case strings.HasPrefix(v[i:], "${"):
				depth++
			case v[i] == '}' && depth > 0:
				depth--
			case v[i] == ':' && depth == 0:
				parts = append(parts, v[start:i])
				start = i + 1
			}
		}
		parts = append(parts, v[start:])
		if len(parts) >= 2 {
			return parts[len(parts)-2]
		}
		return ""
	}
	return fmt.Sprint(p)
}

// envSuffix turns a service name into the middle of a variable name.
func envSuffix(name string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
}

// keeperKDFMemory is the most memory one Argon2id derivation in Keeper may
// take: keyring.MaxMemoryKiB (256 MiB), the cap on the costs of a keyring
// read from the database; Keeper runs one derivation at a time.
// TestKeeperKDFCap checks it against the source.
const keeperKDFMemory = 256 << 20

// checkLimits: every long-running service, and every backup, has a memory
// and a CPU limit (deploy.resources.limits, or mem_limit and cpus), so that
// one runaway container cannot starve the others; a Keeper's memory limit
// leaves room for the largest Argon2id derivation it may run.
func checkLimits(s *stack) []string {
	var out []string
	for _, svc := range s.services {
		if isOneShot(svc) && !s.isBackup(svc) {
			continue
		}
		memory, cpus := limits(svc)
		if memory <= 0 {
			out = append(out, fmt.Sprintf("service %s has no memory limit: set deploy.resources.limits.memory", svc.Name))
		}
		if cpus <= 0 {
			out = append(out, fmt.Sprintf("service %s has no CPU limit: set deploy.resources.limits.cpus", svc.Name))
		}
		if p := s.program(svc); p != nil && p.name == "spike-keeper" && memory > 0 && memory < keeperKDFMemory+64<<20 {
			out = append(out, fmt.Sprintf("service %s: memory limit %d MiB leaves no room for an Argon2id derivation of up to %d MiB (keyring.MaxMemoryKiB) plus the program: unseal would be killed; allow at least %d MiB", svc.Name, memory>>20, keeperKDFMemory>>20, (keeperKDFMemory+64<<20)>>20))
		}
	}
	return out
}

// limits returns a service's memory limit in bytes and its CPU limit.
func limits(svc types.ServiceConfig) (memory int64, cpus float64) {
	memory, cpus = int64(svc.MemLimit), float64(svc.CPUS)
	if svc.Deploy != nil && svc.Deploy.Resources.Limits != nil {
		l := svc.Deploy.Resources.Limits
		if l.MemoryBytes > 0 {
			memory = int64(l.MemoryBytes)
		}
		if l.NanoCPUs > 0 {
			cpus = float64(l.NanoCPUs)
		}
	}
	return memory, cpus
}

// checkLogRotation: every long-running service, and every backup, logs
// with the json-file driver (what `docker compose logs` reads) or the local
// one, with max-size and max-file set: the daemon's default json-file
// keeps every line forever.
func checkLogRotation(s *stack) []string {
	var out []string
	for _, svc := range s.services {
		if isOneShot(svc) && !s.isBackup(svc) {
			continue
		}
		lg := svc.Logging
		if lg == nil || lg.Driver == "" {
			out = append(out, fmt.Sprintf("service %s sets no logging driver: use driver json-file with options max-size and max-file (the daemon's default keeps every line forever)", svc.Name))
			continue
		}
		if lg.Driver != "json-file" && lg.Driver != "local" {
			out = append(out, fmt.Sprintf("service %s logs with driver %s: use json-file (or local) with max-size and max-file, so that `docker compose logs` reads them and they are rotated", svc.Name, lg.Driver))
			continue
		}
		if !regexp.MustCompile(`^[0-9]+[kmg]?$`).MatchString(lg.Options["max-size"]) {
			out = append(out, fmt.Sprintf("service %s: logging option max-size=%q: set a size such as 10m, or the log grows without bound", svc.Name, lg.Options["max-size"]))
		}
		if n, err := strconv.Atoi(lg.Options["max-file"]); err != nil || n < 1 {
			out = append(out, fmt.Sprintf("service %s: logging option max-file=%q: set how many rotated files to keep, such as \"3\"", svc.Name, lg.Options["max-file"]))
		}
	}
	return out
}

// scriptText returns what a service runs: its command, an argument a line,
// and the content of every bind-mounted file its command names, without
// its comment lines.
func (s *stack) scriptText(svc types.ServiceConfig) string {
	text := strings.Join(svc.Command, "\n")
	for _, v := range svc.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		for _, arg := range svc.Command {
			if path.Clean(arg) == path.Clean(v.Target) {
				if data, err := s.files(v.Source); err == nil {
					text += "\n" + withoutComments(string(data))
				}
			}
		}
	}
	return text
}

// withoutComments drops the comment lines of a shell script, so that only
// what it runs is checked.
func withoutComments(script string) string {
	var kept []string
	for _, line := range strings.Split(script, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

// runsPgDump matches a line of a script, or a command, that runs pg_dump
// (not a comment that names it).
var runsPgDump = regexp.MustCompile(`(?m)^\s*(exec\s+)?pg_dump(\s|$)`)

// isBackup reports whether a service runs pg_dump.
func (s *stack) isBackup(svc types.ServiceConfig) bool {
	return runsPgDump.MatchString(s.scriptText(svc))
}

// checkBackup: the stack has a backup service, and each one is a one-shot
// in a profile (run on demand or by a timer, never by `up`) that writes
// pg_dump --format=custom into a named volume, as a non-root user in a
// read-only container, over verify-full TLS, as a role of its own that the
// role script makes read-only: neither the owner nor Nexus's role, holding
// neither one's passfile.
func checkBackup(s *stack) []string {
	var backups []types.ServiceConfig
	for _, svc := range s.services {
		if s.isBackup(svc) {
			backups = append(backups, svc)
		}
	}
	if len(backups) == 0 {
		return []string{"the stack has no backup service: a one-shot in a profile running pg_dump --format=custom into a volume (docs/backup.md)"}
	}
	owner, ownerPass, nexusRole, nexusPass := s.databaseRoles()
	var out []string
	for _, b := range backups {
		problem := func(format string, args ...any) {
			out = append(out, fmt.Sprintf("backup service %s: ", b.Name)+fmt.Sprintf(format, args...))
		}
		text := s.scriptText(b)
		if !regexp.MustCompile(`--format[=\s]custom\b|--format[=\s]c\b|-Fc\b`).MatchString(text) {
			problem("pg_dump without --format=custom: pg_restore needs the custom format (docs/backup.md)")
		}
		if len(b.Profiles) == 0 {
			problem("not in a profile: `docker compose up` would run it with the stack; give it profiles: [backup] and run it with `docker compose run --rm %s`", b.Name)
		}
		if !isOneShot(b) {
			problem("restart is %q: a backup runs once and exits (restart: \"no\"); schedule it from cron or a systemd timer", b.Restart)
		}
		if uid, known := s.uid(b); !known || uid == "0" {
			problem("runs as root or as the image's default user: set user: to the image's unprivileged uid")
		}
		if !b.ReadOnly {
			problem("read_only is not set: only the backups volume needs to be writable")
		}
		if !containsFold(b.CapDrop, "ALL") {
			problem("cap_drop does not drop ALL capabilities")
		}
		if !containsFold(b.SecurityOpt, "no-new-privileges:true") {
			problem("security_opt lacks no-new-privileges:true")
		}
		if _, set := env(b, "PGPASSWORD"); set {
			problem("sets PGPASSWORD: put the password in a pgpass file on a secret volume (PGPASSFILE)")
		}
		s.checkBackupConnection(b, problem)
		user := envOr(b, "PGUSER", "")
		switch user {
		case "":
			problem("sets no PGUSER: connect as a read-only role of its own")
		case owner:
			problem("connects as %s, the owner of SPIKE's schema: connect as a read-only role of its own", user)
		case nexusRole:
			problem("connects as %s, Nexus's role: connect as a read-only role of its own", user)
		default:
			out = append(out, s.checkBackupRole(b.Name, user)...)
		}
		if vol := passfileVolume(s.migrateService(), ownerPass); vol != "" && mountsVolume(b, vol) {
			problem("mounts volume %s, which holds the owner's passfile", vol)
		}
		if vol := passfileVolume(s.nexusService(), nexusPass); vol != "" && mountsVolume(b, vol) {
			problem("mounts volume %s, which holds Nexus's passfile", vol)
		}
		dir := envOr(b, "BACKUP_DIR", "")
		if dir == "" {
			problem("sets no BACKUP_DIR, the directory the dumps go to")
		} else if vol := mountedAt(b, dir); vol == "" {
			problem("BACKUP_DIR=%s is no named volume's mount point: the dumps would vanish with the container", dir)
		} else if readOnlyAt(b, dir) {
			problem("mounts volume %s read-only at BACKUP_DIR=%s", vol, dir)
		}
	}
	return out
}

// checkBackupConnection checks the libpq variables of a backup service:
// PGHOST names the PostgreSQL service, TLS with verify-full against a
// mounted CA, and a pgpass file on a mounted volume.
func (s *stack) checkBackupConnection(b types.ServiceConfig, problem func(string, ...any)) {
	host := envOr(b, "PGHOST", "")
	if target, ok := s.service(host); !ok || !strings.HasPrefix(target.Image, "postgres:") {
		problem("PGHOST=%q names no PostgreSQL service of the stack", host)
	} else if dep, ok := b.DependsOn[host]; !ok || dep.Condition != types.ServiceConditionHealthy {
		problem("does not wait for %s to be healthy (depends_on with condition service_healthy)", host)
	}
	if mode := envOr(b, "PGSSLMODE", ""); mode != "verify-full" {
		problem("PGSSLMODE=%q: use verify-full, as every client of the stack does", mode)
	}
	if root := envOr(b, "PGSSLROOTCERT", ""); root == "" || mountedAt(b, path.Dir(root)) == "" {
		problem("PGSSLROOTCERT=%q is not on a mounted volume: verify-full needs the CA certificate bootstrap writes", root)
	}
	if pass := envOr(b, "PGPASSFILE", ""); pass == "" || mountedAt(b, path.Dir(pass)) == "" {
		problem("PGPASSFILE=%q is not on a mounted volume", pass)
	}
}

// grantReadAll matches the grant of pg_read_all_data to a role.
func grantReadAll(role string) *regexp.Regexp {
	return regexp.MustCompile(`(?i)GRANT\s+pg_read_all_data\s+TO\s+"?` + regexp.QuoteMeta(role) + `"?\s*;`)
}

// checkBackupRole: a one-shot creates the backup's role read-only: it is
// granted pg_read_all_data, never pg_write_all_data, and its sessions are
// read-only by default.
func (s *stack) checkBackupRole(backup, role string) []string {
	var roleScripts []string
	for _, svc := range s.services {
		if isOneShot(svc) && !s.isBackup(svc) && strings.Contains(s.scriptText(svc), role) {
			roleScripts = append(roleScripts, s.scriptText(svc))
		}
	}
	all := strings.Join(roleScripts, "\n")
	var out []string
	if !grantReadAll(role).MatchString(all) {
		out = append(out, fmt.Sprintf("backup service %s connects as %s, but no one-shot grants it pg_read_all_data (GRANT pg_read_all_data TO %s; scripts/db-roles.sh)", backup, role, role))
	}
	q := regexp.QuoteMeta(role)
	for _, g := range regexp.MustCompile(`(?i)\bGRANT\s+([^;]*?)\s+TO\s+[^;]*\b`+q+`\b`).FindAllStringSubmatch(all, -1) {
		if !strings.EqualFold(strings.TrimSpace(g[1]), "pg_read_all_data") {
			out = append(out, fmt.Sprintf("backup service %s: its role %s is granted %s: a backup needs pg_read_all_data only", backup, role, strings.Join(strings.Fields(g[1]), " ")))
		}
	}
	if !regexp.MustCompile(`(?i)ALTER\s+ROLE\s+"?` + regexp.QuoteMeta(role) + `"?\s+SET\s+default_transaction_read_only\s*(=|TO)\s*on`).MatchString(all) {
		out = append(out, fmt.Sprintf("backup service %s: its role %s is not read-only by default (ALTER ROLE %s SET default_transaction_read_only = on)", backup, role, role))
	}
	for _, attr := range []string{"SUPERUSER", "CREATEROLE", "CREATEDB", "BYPASSRLS", "REPLICATION"} {
		if regexp.MustCompile(`(?i)ROLE\s+"?` + regexp.QuoteMeta(role) + `"?\s[^;]*\b` + attr + `\b`).MatchString(all) {
			out = append(out, fmt.Sprintf("backup service %s: its role %s gets %s", backup, role, attr))
		}
	}
	return out
}

// databaseRoles returns the owner role and its passfile (of the migration
// one-shot) and Nexus's role and passfile (of the serving Nexus).
func (s *stack) databaseRoles() (owner, ownerPass, nexus, nexusPass string) {
	if m := s.migrateService(); m.Name != "" {
		v, _ := env(m, "SPIKE_DATABASE_OWNER_URL")
		owner, ownerPass = dbUser(v)
	}
	if n := s.nexusService(); n.Name != "" {
		v, _ := env(n, "SPIKE_DATABASE_URL")
		nexus, nexusPass = dbUser(v)
	}
	return owner, ownerPass, nexus, nexusPass
}

// migrateService returns the one-shot `spike-nexus migrate`, or a zero
// service.
func (s *stack) migrateService() types.ServiceConfig {
	for _, svc := range s.services {
		if isMigrate(s, svc) {
			return svc
		}
	}
	return types.ServiceConfig{}
}

// nexusService returns the first serving Nexus, or a zero service.
func (s *stack) nexusService() types.ServiceConfig {
	for _, svc := range s.servicesRunning("spike-nexus") {
		if !isMigrate(s, svc) {
			return svc
		}
	}
	return types.ServiceConfig{}
}

// readOnlyAt reports whether the volume mounted at target is read-only.
func readOnlyAt(svc types.ServiceConfig, target string) bool {
	for _, v := range svc.Volumes {
		if path.Clean(v.Target) == path.Clean(target) {
			return v.ReadOnly
		}
	}
	return false
}

func containsFold(list []string, want string) bool {
	for _, v := range list {
		if strings.EqualFold(v, want) {
			return true
		}
	}
	return false
}

// checkDatabaseTLS: the PostgreSQL server refuses clients that do not use
// TLS, whatever they ask for: it runs with an hba_file of its own, a
// bind-mounted file whose TCP lines are hostssl, or hostnossl with reject
// (the image's pg_hba.conf accepts plain connections with a password).
func checkDatabaseTLS(s *stack) []string {
	var out []string
	for _, svc := range s.services {
		if !strings.HasPrefix(svc.Image, "postgres:") || len(svc.Command) == 0 || svc.Command[0] != "postgres" {
			continue // not the server (db-roles and backup run clients)
		}
		hba := ""
		for _, arg := range svc.Command {
			if v, ok := strings.CutPrefix(arg, "hba_file="); ok {
				hba = v
			}
		}
		if hba == "" {
			out = append(out, fmt.Sprintf("service %s runs with the image's pg_hba.conf, which accepts clients that do not ask for TLS: run it with -c hba_file= naming a file of hostssl lines (and hostnossl ... reject)", svc.Name))
			continue
		}
		var source string
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind && path.Clean(v.Target) == path.Clean(hba) {
				source = v.Source
			}
		}
		if source == "" {
			out = append(out, fmt.Sprintf("service %s: hba_file=%s is not a file bind-mounted from the repository", svc.Name, hba))
			continue
		}
		data, err := s.files(source)
		if err != nil {
			out = append(out, fmt.Sprintf("service %s: hba_file: %v", svc.Name, err))
			continue
		}
		out = append(out, checkHBA(svc.Name, s.rel(source), string(data))...)
	}
	return out
}

// checkHBA checks the lines of a pg_hba.conf: every TCP line but
// `hostnossl ... reject` is hostssl, and one is.
func checkHBA(service, name, content string) []string {
	var out []string
	ssl := false
	for i, line := range strings.Split(content, "\n") {
		if c := strings.Index(line, "#"); c >= 0 {
			line = line[:c]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "hostssl":
			ssl = true
		case "host", "hostgssenc", "hostnogssenc":
			out = append(out, fmt.Sprintf("service %s: %s:%d accepts connections without TLS (%s): use hostssl", service, name, i+1, strings.Join(f, " ")))
		case "hostnossl":
			if f[len(f)-1] != "reject" {
				out = append(out, fmt.Sprintf("service %s: %s:%d accepts connections without TLS (%s): end hostnossl lines with reject", service, name, i+1, strings.Join(f, " ")))
			}
		}
	}
	if !ssl {
		out = append(out, fmt.Sprintf("service %s: %s has no hostssl line: no client could connect over TCP", service, name))
	}
	return out
}
