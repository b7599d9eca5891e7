package check

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// Conventions of SPIKE that the programs apply when a variable is unset
// (README, "Configuration"; shared/identity).
const (
	defaultTrustDomain = "spike.local"
	keeperIDPrefix     = "spike/keeper/" // a Keeper's ID: spike/keeper/<name>
	nexusIDPath        = "spike/nexus"   // SPIKE_KEEPER_NEXUS_ID, SPIKE_NEXUS_ID
	pilotIDPath        = "spike/pilot"   // SPIKE_ADMIN_IDS
	postgresPort       = "5432"
)

// checkEnvironment: every SPIKE_* or SPIFFE_* variable a service sets is
// one its program reads; a misspelt name would be silently ignored.
func checkEnvironment(s *stack) []string {
	var out []string
	for _, svc := range s.services {
		p := s.program(svc)
		for _, name := range sortedKeys(svc.Environment) {
			if !strings.HasPrefix(name, "SPIKE_") && !strings.HasPrefix(name, "SPIFFE_") {
				continue
			}
			switch {
			case p == nil:
				out = append(out, fmt.Sprintf("service %s sets %s but runs no SPIKE program", svc.Name, name))
			case !p.env[name]:
				out = append(out, fmt.Sprintf("service %s sets %s, which %s does not read (it reads %s)", svc.Name, name, p.name, strings.Join(sortedKeys(p.env), ", ")))
			}
		}
	}
	return out
}

// clientURLs are the variables holding the URL of another SPIKE program,
// whose defaults point at 127.0.0.1: in a container, at itself. The
// Keepers' URLs are checkKeepers' part.
var clientURLs = []struct{ name, server string }{
	{"SPIKE_NEXUS_URL", "spike-nexus"},
}

// checkAddresses: servers listen where other containers reach them, health
// checks probe the ops listener's /healthz, URLs name the right service and
// port, and only listening ports are published (on 127.0.0.1) or exposed.
func checkAddresses(s *stack) []string {
	var out []string
	for _, svc := range s.services {
		for _, p := range svc.Ports {
			if p.HostIP != "127.0.0.1" {
				out = append(out, fmt.Sprintf("service %s publishes port %d on %q: publish on 127.0.0.1 only", svc.Name, p.Target, p.HostIP))
			}
		}
		p := s.program(svc)
		if p == nil {
			continue
		}
		if isMigrate(s, svc) {
			// A one-shot that talks to the database only, as its owner.
			out = append(out, s.checkDatabaseURL(svc, "SPIKE_DATABASE_OWNER_URL")...)
			continue
		}
		if srv, ok := servers[p.name]; ok {
			out = append(out, s.checkServer(svc, srv)...)
		}
		for _, cu := range clientURLs {
			if !p.env[cu.name] {
				continue
			}
			v, ok := env(svc, cu.name)
			if !ok {
				out = append(out, fmt.Sprintf("service %s does not set %s: the default points at its own container", svc.Name, cu.name))
				continue
			}
			out = append(out, s.checkURL(svc, cu.name, v, cu.server)...)
		}
		if p.env["SPIKE_DATABASE_URL"] {
			out = append(out, s.checkDatabaseURL(svc, "SPIKE_DATABASE_URL")...)
		}
	}
	return out
}

// checkServer checks a listening program's addresses, health check, ports.
func (s *stack) checkServer(svc types.ServiceConfig, srv server) []string {
	var out []string
	listen := envOr(svc, srv.listenVar, srv.listenDefault)
	host, apiPort, err := net.SplitHostPort(listen)
	if err != nil {
		return []string{fmt.Sprintf("service %s: %s=%s: %v", svc.Name, srv.listenVar, listen, err)}
	}
	if isLoopback(host) {
		out = append(out, fmt.Sprintf("service %s: %s=%s listens on loopback only, out of reach of the other containers: use 0.0.0.0:%s", svc.Name, srv.listenVar, listen, apiPort))
	}
	ops := envOr(svc, srv.opsVar, srv.opsDefault)
	opsHost, opsPort, err := net.SplitHostPort(ops)
	if err != nil {
		out = append(out, fmt.Sprintf("service %s: %s=%s: the health check needs the ops listener (host:port)", svc.Name, srv.opsVar, ops))
		opsPort = ""
	}
	if opsPort != "" {
		out = append(out, checkHealthURL(svc, srv.opsVar, opsHost, opsPort)...)
	}
	for _, p := range svc.Ports {
		if port := strconv.Itoa(int(p.Target)); port != apiPort && port != opsPort {
			out = append(out, fmt.Sprintf("service %s publishes container port %s, where nothing listens (%s=%s, %s=%s)", svc.Name, port, srv.listenVar, listen, srv.opsVar, ops))
		}
	}
	for _, port := range svc.Expose {
		if port != apiPort && port != opsPort {
			out = append(out, fmt.Sprintf("service %s exposes port %s, where nothing listens (%s=%s, %s=%s)", svc.Name, port, srv.listenVar, listen, srv.opsVar, ops))
		}
	}
	return out
}

// checkHealthURL checks that a SPIKE server's health check fetches /healthz
// from its ops listener.
func checkHealthURL(svc types.ServiceConfig, opsVar, opsHost, opsPort string) []string {
	var probe *url.URL
	if svc.HealthCheck != nil {
		for _, arg := range svc.HealthCheck.Test {
			if u, err := url.Parse(arg); err == nil && u.Scheme == "http" {
				probe = u
			}
		}
	}
	if probe == nil {
		return []string{fmt.Sprintf("service %s: the health check fetches no http:// URL; probe http://127.0.0.1:%s/healthz", svc.Name, opsPort)}
	}
	var out []string
	if probe.Port() != opsPort || (!isWildcard(opsHost) && probe.Hostname() != opsHost) {
		out = append(out, fmt.Sprintf("service %s: the health check probes %s, but the ops listener is %s=%s", svc.Name, probe, opsVar, net.JoinHostPort(opsHost, opsPort)))
	}
	if probe.Path != "/healthz" {
		out = append(out, fmt.Sprintf("service %s: the health check probes %s; probe /healthz: /readyz fails while SPIKE is sealed or Keeper is down, which a restart does not fix and which would block `up --wait` before anyone can unseal", svc.Name, probe.Path))
	}
	return out
}

// checkURL checks that a URL variable names a service running the given
// program, at its API port, over https.
func (s *stack) checkURL(svc types.ServiceConfig, name, value, program string) []string {
	u, err := url.Parse(value)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return []string{fmt.Sprintf("service %s: %s=%s is not an https:// URL", svc.Name, name, value)}
	}
	target, ok := s.service(u.Hostname())
	if !ok {
		return []string{fmt.Sprintf("service %s: %s=%s names no service of the stack", svc.Name, name, value)}
	}
	if tp := s.program(target); tp == nil || tp.name != program {
		return []string{fmt.Sprintf("service %s: %s=%s names service %s, which does not run %s", svc.Name, name, value, target.Name, program)}
	}
	srv := servers[program]
	listen := envOr(target, srv.listenVar, srv.listenDefault)
	if _, port, err := net.SplitHostPort(listen); err == nil && u.Port() != port {
		return []string{fmt.Sprintf("service %s: %s=%s, but %s listens on %s (%s)", svc.Name, name, value, target.Name, listen, srv.listenVar)}
	}
	return nil
}

// checkDatabaseURL checks that a database URL (variable name) names the
// PostgreSQL service and port, and keeps its password out of the file.
func (s *stack) checkDatabaseURL(svc types.ServiceConfig, name string) []string {
	v, ok := env(svc, name)
	if !ok {
		return []string{fmt.Sprintf("service %s does not set %s", svc.Name, name)}
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return []string{fmt.Sprintf("service %s: %s is not a postgres:// URL", svc.Name, name)}
	}
	target, ok := s.service(u.Hostname())
	if !ok || !strings.HasPrefix(target.Image, "postgres:") {
		return []string{fmt.Sprintf("service %s: %s names host %q, which is no PostgreSQL service of the stack", svc.Name, name, u.Hostname())}
	}
	if port := u.Port(); port != "" && port != postgresPort {
		return []string{fmt.Sprintf("service %s: %s names port %s; PostgreSQL listens on %s", svc.Name, name, port, postgresPort)}
	}
	if _, set := u.User.Password(); set {
		return []string{fmt.Sprintf("service %s: %s holds a password: use passfile= with a file of a secret volume", svc.Name, name)}
	}
	// TLS to PostgreSQL, with the server's name checked against the
	// certificate bootstrap mints.
	if mode := u.Query().Get("sslmode"); mode != "verify-full" {
		return []string{fmt.Sprintf("service %s: %s has sslmode=%s: use sslmode=verify-full with sslrootcert= (the CA certificate bootstrap writes)", svc.Name, name, mode)}
	}
	root := u.Query().Get("sslrootcert")
	if root == "" || mountedAt(svc, path.Dir(root)) == "" {
		return []string{fmt.Sprintf("service %s: %s names sslrootcert=%s, but no volume is mounted at %s", svc.Name, name, root, path.Dir(root))}
	}
	if !slices.Contains(target.Command, "ssl=on") {
		return []string{fmt.Sprintf("service %s does not run with ssl=on, but service %s connects with sslmode=verify-full", target.Name, svc.Name)}
	}
	return nil
}

// isMigrate reports whether svc is the one-shot `spike-nexus migrate`.
func isMigrate(s *stack, svc types.ServiceConfig) bool {
	p := s.program(svc)
	return p != nil && p.name == "spike-nexus" && len(svc.Command) == 1 && svc.Command[0] == "migrate"
}

// checkDatabaseRoles: the schema is migrated by a one-shot `spike-nexus
// migrate` as the owner role, which every Nexus waits for; Nexus connects
// as the role that migrate grants to, never as the owner; and each role's
// passfile is on a volume that only its own services mount.
func checkDatabaseRoles(s *stack) []string {
	var out []string
	var migrates []types.ServiceConfig
	for _, svc := range s.services {
		if isMigrate(s, svc) {
			migrates = append(migrates, svc)
		}
	}
	nexuses := s.servicesRunning("spike-nexus")
	if len(nexuses) == len(migrates) {
		return out // no Nexus serves
	}
	if len(migrates) != 1 {
		return append(out, fmt.Sprintf("the stack has %d one-shots running `spike-nexus migrate` (command: [\"migrate\"]), want 1: Nexus does not migrate the schema itself", len(migrates)))
	}
	m := migrates[0]
	if !isOneShot(m) {
		out = append(out, fmt.Sprintf("service %s runs spike-nexus migrate but is not a one-shot (restart: \"no\")", m.Name))
	}
	ownerURL, _ := env(m, "SPIKE_DATABASE_OWNER_URL")
	owner, ownerPass := dbUser(ownerURL)
	role, ok := env(m, "SPIKE_DATABASE_ROLE")
	if !ok || role == "" {
		out = append(out, fmt.Sprintf("service %s does not set SPIKE_DATABASE_ROLE, the role Nexus serves as", m.Name))
	}
	for _, n := range nexuses {
		if isMigrate(s, n) {
			continue
		}
		if dep, ok := n.DependsOn[m.Name]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
			out = append(out, fmt.Sprintf("service %s does not wait for %s to complete (depends_on with condition service_completed_successfully): it would refuse to start on a schema not yet migrated", n.Name, m.Name))
		}
		v, _ := env(n, "SPIKE_DATABASE_URL")
		user, pass := dbUser(v)
		switch {
		case user == owner:
			out = append(out, fmt.Sprintf("service %s connects to the database as %s, the owner role %s migrates as: connect as the role it grants (SPIKE_DATABASE_ROLE)", n.Name, user, m.Name))
		case role != "" && user != role:
			out = append(out, fmt.Sprintf("service %s grants %s (SPIKE_DATABASE_ROLE), but service %s connects as %s", m.Name, role, n.Name, user))
		}
		if vol := passfileVolume(m, ownerPass); vol != "" && mountsVolume(n, vol) {
			out = append(out, fmt.Sprintf("service %s mounts volume %s, which holds the owner's passfile (%s): only the migration may hold it", n.Name, vol, ownerPass))
		}
		if vol := passfileVolume(n, pass); vol != "" && mountsVolume(m, vol) {
			out = append(out, fmt.Sprintf("service %s mounts volume %s, which holds Nexus's passfile (%s)", m.Name, vol, pass))
		}
	}
	return out
}

// dbUser returns the user and the passfile of a postgres:// URL.
func dbUser(v string) (user, passfile string) {
	u, err := url.Parse(v)
	if err != nil {
		return "", ""
	}
	return u.User.Username(), u.Query().Get("passfile")
}

// passfileVolume returns the named volume svc mounts at the directory of
// file, or "".
func passfileVolume(svc types.ServiceConfig, file string) string {
	if file == "" {
		return ""
	}
	return mountedAt(svc, path.Dir(file))
}

// mountsVolume reports whether svc mounts the named volume anywhere.
func mountsVolume(svc types.ServiceConfig, name string) bool {
	for _, v := range svc.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Source == name {
			return true
		}
	}
	return false
}

// checkVolumes: named volumes are declared and used, bind mounts exist.
func checkVolumes(s *stack) []string {
	var out []string
	used := map[string]bool{}
	for _, svc := range s.services {
		for _, v := range svc.Volumes {
			switch v.Type {
			case types.VolumeTypeVolume:
				if v.Source == "" {
					out = append(out, fmt.Sprintf("service %s mounts an anonymous volume at %s: name it and declare it", svc.Name, v.Target))
					continue
				}
				used[v.Source] = true
				if _, ok := s.project.Volumes[v.Source]; !ok {
					out = append(out, fmt.Sprintf("service %s mounts volume %s, which is not declared under volumes:", svc.Name, v.Source))
				}
			case types.VolumeTypeBind:
				if _, err := os.Stat(v.Source); err != nil {
					out = append(out, fmt.Sprintf("service %s bind-mounts %s, which does not exist", svc.Name, s.rel(v.Source)))
				}
			}
		}
	}
	for _, name := range sortedKeys(s.project.Volumes) {
		if !used[name] {
			out = append(out, fmt.Sprintf("volume %s is declared but no service mounts it", name))
		}
	}
	return out
}

// spireConf matches a setting of a SPIRE configuration file.
func spireConf(name string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^\s*` + name + `\s*=\s*"([^"]*)"`)
}

// checkIdentities: one trust domain everywhere; every service using the
// Workload API mounts the agent's socket and runs as a uid of its own that
// `register` maps to a SPIFFE ID; and those IDs are the ones the programs
// expect of each other.
func checkIdentities(s *stack) []string {
	var out []string
	tds := map[string][]string{} // trust domain -> where it is set
	agentVolume, agentSocketDir := "", ""
	for _, svc := range s.services {
		if p := s.program(svc); p != nil {
			td := envOr(svc, "SPIKE_TRUST_DOMAIN", defaultTrustDomain)
			tds[td] = append(tds[td], "service "+svc.Name)
		}
		if !strings.HasPrefix(svc.Image, "ghcr.io/spiffe/spire-") {
			continue
		}
		for _, v := range svc.Volumes {
			if v.Type != types.VolumeTypeBind || !strings.HasSuffix(v.Source, ".conf") {
				continue
			}
			data, err := s.files(v.Source)
			if err != nil {
				out = append(out, fmt.Sprintf("service %s: %v", svc.Name, err))
				continue
			}
			if m := spireConf("trust_domain").FindSubmatch(data); m != nil {
				tds[string(m[1])] = append(tds[string(m[1])], s.rel(v.Source))
			}
			if m := spireConf("socket_path").FindSubmatch(data); m != nil && strings.Contains(svc.Image, "spire-agent") {
				agentSocketDir = path.Dir(string(m[1]))
				agentVolume = mountedAt(svc, agentSocketDir)
			}
		}
	}
	reg, regArgs := s.registrations()
	if reg != "" {
		svc, _ := s.service(reg)
		td, _ := env(svc, "TRUST_DOMAIN")
		tds[td] = append(tds[td], "service "+reg+" (TRUST_DOMAIN)")
	}
	td := defaultTrustDomain
	if len(tds) > 1 {
		var parts []string
		for _, name := range sortedKeys(tds) {
			parts = append(parts, fmt.Sprintf("%q in %s", name, strings.Join(tds[name], ", ")))
		}
		out = append(out, "more than one trust domain: "+strings.Join(parts, "; "))
	} else {
		for name := range tds {
			td = name
		}
	}

	idOf := map[string]string{}  // service -> SPIFFE ID
	uidOf := map[string]string{} // uid -> service
	for _, svc := range s.services {
		sock, ok := env(svc, "SPIFFE_ENDPOINT_SOCKET")
		if !ok || s.program(svc) == nil {
			continue
		}
		dir := path.Dir(strings.TrimPrefix(sock, "unix://"))
		if !strings.HasPrefix(sock, "unix:///") {
			out = append(out, fmt.Sprintf("service %s: SPIFFE_ENDPOINT_SOCKET=%s is not a unix:///path address", svc.Name, sock))
		} else if agentVolume == "" {
			out = append(out, fmt.Sprintf("service %s uses the Workload API, but no SPIRE agent service mounts a volume at the directory of its socket_path", svc.Name))
		} else if got := mountedAt(svc, dir); got != agentVolume || dir != agentSocketDir {
			out = append(out, fmt.Sprintf("service %s: SPIFFE_ENDPOINT_SOCKET=%s, but it does not mount the agent's socket volume %s at %s", svc.Name, sock, agentVolume, agentSocketDir))
		}
		uid, known := s.uid(svc)
		if !known {
			out = append(out, fmt.Sprintf("service %s: cannot tell which uid it runs as; set user:", svc.Name))
			continue
		}
		if other, dup := uidOf[uid]; dup {
			out = append(out, fmt.Sprintf("services %s and %s both run as uid %s: SPIRE cannot tell them apart", other, svc.Name, uid))
		}
		uidOf[uid] = svc.Name
		idPath, ok := regArgs[uid]
		if !ok {
			out = append(out, fmt.Sprintf("service %s runs as uid %s, which service %s does not register (ID_PATH=%s): it would never get an SVID", svc.Name, uid, orNone(reg), uid))
			continue
		}
		idOf[svc.Name] = "spiffe://" + td + "/" + idPath
	}
	out = append(out, s.checkExpectedIDs(td, idOf)...)
	return out
}

// checkKeeperIDs: with several Keepers, each gets a Keeper ID of its own.
// Keepers take their peers' calls and answers from Keeper IDs only, and
// register.sh keeps one uid per SPIFFE ID: of two Keepers registered under
// one ID, it deletes the first one's entry, which then gets no SVID.
func checkKeeperIDs(td string, keepers []types.ServiceConfig, idOf map[string]string) []string {
	if len(keepers) < 2 {
		return nil
	}
	var out []string
	byID := map[string]string{} // SPIFFE ID -> Keeper service
	for _, k := range keepers {
		got := idOf[k.Name]
		if got == "" {
			continue
		}
		if !isKeeperID(td, got) {
			out = append(out, fmt.Sprintf("service %s gets %s, but its peers take only a Keeper ID, spiffe://%s/%s<name>", k.Name, got, td, keeperIDPrefix))
		}
		if other, dup := byID[got]; dup {
			out = append(out, fmt.Sprintf("services %s and %s both get %s: each Keeper needs an ID of its own (register.sh keeps one uid per ID and deletes the other's entry)", other, k.Name, got))
		}
		byID[got] = k.Name
	}
	return out
}

// registrations finds the one-shot that runs register.sh and returns its
// name and its ID_PATH=UID arguments by uid.
func (s *stack) registrations() (string, map[string]string) {
	byUID := map[string]string{}
	for _, svc := range s.services {
		if len(svc.Command) == 0 || path.Base(svc.Command[0]) != "register.sh" {
			continue
		}
		for _, arg := range svc.Command[1:] {
			if idPath, uid, ok := strings.Cut(arg, "="); ok {
				byUID[uid] = idPath
			}
		}
		return svc.Name, byUID
	}
	return "", byUID
}

// checkExpectedIDs compares the SPIFFE IDs the services get with the ones
// the other programs accept: Nexus's SPIKE_KEEPER_ID (or, unset, any
// Keeper ID) and SPIKE_ADMIN_IDS, the Keepers' peers (any Keeper ID),
// Keeper's SPIKE_KEEPER_NEXUS_ID, the clients' SPIKE_NEXUS_ID.
func (s *stack) checkExpectedIDs(td string, idOf map[string]string) []string {
	var out []string
	id := func(p string) string { return "spiffe://" + td + "/" + p }
	expect := func(svcName, got, byName, variable, want string) {
		if got != "" && got != want {
			out = append(out, fmt.Sprintf("service %s gets %s, but %s expects %s (%s)", svcName, got, byName, want, variable))
		}
	}
	keepers := s.servicesRunning("spike-keeper")
	out = append(out, checkKeeperIDs(td, keepers, idOf)...)
	for _, nexus := range s.servicesRunning("spike-nexus") {
		if isMigrate(s, nexus) {
			continue // it calls no Keeper and serves no client
		}
		for _, keeper := range keepers {
			if pinned := envOr(nexus, "SPIKE_KEEPER_ID", ""); pinned != "" {
				expect(keeper.Name, idOf[keeper.Name], nexus.Name, "SPIKE_KEEPER_ID", pinned)
			} else if got := idOf[keeper.Name]; got != "" && !isKeeperID(td, got) {
				out = append(out, fmt.Sprintf("service %s gets %s, but %s takes only a Keeper ID, %s<name> (SPIKE_KEEPER_ID unset)", keeper.Name, got, nexus.Name, id(keeperIDPrefix)))
			}
			expect(nexus.Name, idOf[nexus.Name], keeper.Name, "SPIKE_KEEPER_NEXUS_ID", envOr(keeper, "SPIKE_KEEPER_NEXUS_ID", id(nexusIDPath)))
		}
		for _, client := range append(s.servicesRunning("spike"), s.servicesRunning("spike-example-workload")...) {
			expect(nexus.Name, idOf[nexus.Name], client.Name, "SPIKE_NEXUS_ID", envOr(client, "SPIKE_NEXUS_ID", id(nexusIDPath)))
		}
		admins := strings.Split(envOr(nexus, "SPIKE_ADMIN_IDS", id(pilotIDPath)), ",")
		for i := range admins {
			admins[i] = strings.TrimSpace(admins[i])
		}
		sort.Strings(admins)
		isAdmin := func(v string) bool { i := sort.SearchStrings(admins, v); return i < len(admins) && admins[i] == v }
		for _, pilot := range s.pilots() {
			if got := idOf[pilot.Name]; got != "" && !isAdmin(got) {
				out = append(out, fmt.Sprintf("service %s gets %s, which %s does not take as an admin (SPIKE_ADMIN_IDS=%s)", pilot.Name, got, nexus.Name, strings.Join(admins, ",")))
			}
		}
		for _, w := range s.workloads() {
			got := idOf[w.Name]
			if got != "" && (isAdmin(got) || strings.HasPrefix(got, id("spike/"))) {
				out = append(out, fmt.Sprintf("service %s, a workload, gets %s: an admin ID or one SPIKE reserves for its own programs (under /spike/)", w.Name, got))
			}
		}
	}
	return out
}

// mountedAt returns the volume a service mounts at target, or "".
func mountedAt(svc types.ServiceConfig, target string) string {
	for _, v := range svc.Volumes {
		if v.Type == types.VolumeTypeVolume && path.Clean(v.Target) == path.Clean(target) {
			return v.Source
		}
	}
	return ""
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isWildcard(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

func orNone(s string) string {
	if s == "" {
		return "(none runs register.sh)"
	}
	return s
}
