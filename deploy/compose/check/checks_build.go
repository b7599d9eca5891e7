package check

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// check is one rule of the deployment. It returns a message per problem,
// each naming the file or service and saying what to change.
type check struct {
	name string
	run  func(*stack) []string
}

// checks are all the rules, in the order they are reported.
var checks = []check{
	{"stack contents", checkContents},
	{"health checks and one-shots", checkHealth},
	{"start order", checkDependencies},
	{"builds", checkBuilds},
	{"Go workspace in the image", checkWorkspace},
	{"pinned images", checkPinnedImages},
	{"non-root users", checkUsers},
	{"environment variables", checkEnvironment},
	{"addresses and ports", checkAddresses},
	{"Keepers and their peers", checkKeepers},
	{"volumes", checkVolumes},
	{"SPIFFE identities", checkIdentities},
	{"database roles", checkDatabaseRoles},
	{"images pinned by digest", checkImageDigests},
	{"host ports in variables", checkHostPorts},
	{"resource limits", checkLimits},
	{"log rotation", checkLogRotation},
	{"backup service", checkBackup},
	{"TLS required by PostgreSQL", checkDatabaseTLS},
	{"agent sidecar", checkAgent},
}

// checkContents: the stack holds what the design names: PostgreSQL, a
// SPIRE server and agent, the one-shot that registers entries, Keeper,
// Nexus, and Pilot for `docker compose run` (in a profile, so that `up`
// leaves it alone).
func checkContents(s *stack) []string {
	runs := func(name string) func(types.ServiceConfig) bool {
		return func(svc types.ServiceConfig) bool { p := s.program(svc); return p != nil && p.name == name }
	}
	image := func(prefix string) func(types.ServiceConfig) bool {
		return func(svc types.ServiceConfig) bool { return svc.Build == nil && strings.HasPrefix(svc.Image, prefix) }
	}
	wants := []struct {
		what string
		ok   func(types.ServiceConfig) bool
	}{
		{"a PostgreSQL service (image postgres:...)", image("postgres:")},
		{"a SPIRE server (image ghcr.io/spiffe/spire-server:...)", image("ghcr.io/spiffe/spire-server:")},
		{"a SPIRE agent (image ghcr.io/spiffe/spire-agent:...)", image("ghcr.io/spiffe/spire-agent:")},
		{"a one-shot running register.sh", func(svc types.ServiceConfig) bool {
			return isOneShot(svc) && len(svc.Command) > 0 && path.Base(svc.Command[0]) == "register.sh"
		}},
		{"Keeper (spike-keeper)", runs("spike-keeper")},
		{"Nexus (spike-nexus)", runs("spike-nexus")},
		{"Pilot (spike) in a profile, for docker compose run", func(svc types.ServiceConfig) bool {
			return runs("spike")(svc) && !s.isAgent(svc) && len(svc.Profiles) > 0
		}},
	}
	var out []string
	for _, w := range wants {
		found := false
		for _, svc := range s.services {
			found = found || w.ok(svc)
		}
		if !found {
			out = append(out, "the stack has no "+w.what)
		}
	}
	return out
}

// checkHealth: a service runs for the life of the stack and has a health
// check, or it is a one-shot (restart: "no"): a setup step, or a tool for
// `docker compose run`.
func checkHealth(s *stack) []string {
	var out []string
	for _, svc := range s.services {
		if hasHealthCheck(svc) || isOneShot(svc) {
			continue
		}
		out = append(out, fmt.Sprintf("service %s has no healthcheck and is not a one-shot: add a healthcheck, or set restart: \"no\" if it runs to completion", svc.Name))
	}
	return out
}

// checkDependencies: every depends_on waits for the right condition (for
// health where there is a health check, but for Nexus on several Keepers),
// and
// every one-shot of the default profile is awaited by a long-running
// service, which `docker compose up --wait` needs to exit 0.
func checkDependencies(s *stack) []string {
	var out []string
	for _, svc := range s.services {
		for _, name := range sortedKeys(svc.DependsOn) {
			dep := svc.DependsOn[name]
			target, ok := s.service(name)
			if !ok {
				out = append(out, fmt.Sprintf("service %s depends on %s, which does not exist", svc.Name, name))
				continue
			}
			switch dep.Condition {
			case types.ServiceConditionHealthy:
				if !hasHealthCheck(target) {
					out = append(out, fmt.Sprintf("service %s waits for %s to be healthy, but %s has no healthcheck", svc.Name, name, name))
				}
			case types.ServiceConditionCompletedSuccessfully:
				if !isOneShot(target) {
					out = append(out, fmt.Sprintf("service %s waits for %s to complete, but %s is not a one-shot (restart: \"no\")", svc.Name, name, name))
				}
			default:
				if isOneShot(target) {
					out = append(out, fmt.Sprintf("service %s starts as soon as one-shot %s starts: wait with condition service_completed_successfully", svc.Name, name))
				} else if hasHealthCheck(target) && !s.startsWithoutHealth(svc, target) {
					out = append(out, fmt.Sprintf("service %s waits only for %s to start: wait with condition service_healthy", svc.Name, name))
				}
			}
			if len(svc.Profiles) == 0 && len(target.Profiles) > 0 {
				out = append(out, fmt.Sprintf("service %s depends on %s, which runs only with profile %s", svc.Name, name, strings.Join(target.Profiles, ",")))
			}
		}
	}
	for _, oneShot := range s.services {
		if !isOneShot(oneShot) || len(oneShot.Profiles) > 0 {
			continue
		}
		awaited := false
		for _, svc := range s.services {
			dep, ok := svc.DependsOn[oneShot.Name]
			if ok && !isOneShot(svc) && len(svc.Profiles) == 0 && dep.Condition == types.ServiceConditionCompletedSuccessfully {
				awaited = true
			}
		}
		if !awaited {
			out = append(out, fmt.Sprintf("one-shot %s is awaited by no long-running service (depends_on with condition service_completed_successfully): `docker compose up --wait` fails when it exits", oneShot.Name))
		}
	}
	return out
}

// checkBuilds: every build has a context, a Dockerfile and a target stage
// that exist, and every COPY or ADD from the context names files that
// exist and that the ignore file leaves in the context.
func checkBuilds(s *stack) []string {
	var out []string
	seen := map[string]bool{}
	for _, svc := range s.services {
		if svc.Build == nil {
			continue
		}
		ctxDir := svc.Build.Context
		if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
			out = append(out, fmt.Sprintf("service %s: build context %s is not a directory", svc.Name, s.rel(ctxDir)))
			continue
		}
		dfPath := s.dockerfilePath(svc)
		df := s.dockerfiles[dfPath]
		if df == nil {
			out = append(out, fmt.Sprintf("service %s: Dockerfile %s does not exist", svc.Name, s.rel(dfPath)))
			continue
		}
		if df.stage(svc.Build.Target) == nil {
			out = append(out, fmt.Sprintf("service %s: %s has no stage %q (build target)", svc.Name, s.rel(dfPath), svc.Build.Target))
		}
		if seen[dfPath+"\x00"+ctxDir] {
			continue
		}
		seen[dfPath+"\x00"+ctxDir] = true
		out = append(out, s.checkCopies(df, ctxDir)...)
	}
	return out
}

// checkCopies checks the context sources of a Dockerfile's COPY and ADD.
func (s *stack) checkCopies(df *dockerfile, ctxDir string) []string {
	var out []string
	ignore := s.ignores[df.path]
	for _, st := range df.stages {
		for _, c := range st.copies {
			if c.from != "" {
				continue // from a stage or an image
			}
			for _, src := range c.sources {
				rel := path.Clean(strings.TrimPrefix(filepath.ToSlash(src), "/"))
				where := fmt.Sprintf("%s:%d", s.rel(df.path), c.line)
				matches, err := filepath.Glob(filepath.Join(ctxDir, filepath.FromSlash(rel)))
				if err != nil || len(matches) == 0 {
					out = append(out, fmt.Sprintf("%s: COPY source %s does not exist in the build context %s", where, src, s.rel(ctxDir)))
					continue
				}
				if ignore.excludes(rel) {
					out = append(out, fmt.Sprintf("%s: COPY source %s is left out of the build context by %s", where, src, s.rel(ignore.path)))
				}
			}
		}
	}
	return out
}

// checkWorkspace: a stage that copies go.work copies every module go.work
// uses, or go build fails in the image.
func checkWorkspace(s *stack) []string {
	var out []string
	for _, dfPath := range sortedKeys(s.dockerfiles) {
		df := s.dockerfiles[dfPath]
		if df == nil {
			continue
		}
		for _, st := range df.stages {
			copied := map[string]bool{}
			for _, c := range st.copies {
				if c.from != "" {
					continue
				}
				for _, src := range c.sources {
					copied[path.Clean(filepath.ToSlash(src))] = true
				}
			}
			if !copied["go.work"] {
				continue
			}
			uses, err := s.workspaceModules()
			if err != nil {
				out = append(out, err.Error())
				continue
			}
			for _, mod := range uses {
				if !copiedUnder(copied, mod) {
					out = append(out, fmt.Sprintf("%s: stage %s copies go.work, which uses ./%s, but does not copy %s: go build would fail in the image", s.rel(dfPath), st.name, mod, mod))
				}
			}
		}
	}
	return out
}

// copiedUnder reports whether dir or a directory above it was copied.
func copiedUnder(copied map[string]bool, dir string) bool {
	for d := dir; d != "." && d != "/"; d = path.Dir(d) {
		if copied[d] {
			return true
		}
	}
	return copied["."]
}

// workspaceModules returns the directories go.work uses, relative to the
// repository root.
func (s *stack) workspaceModules() ([]string, error) {
	name := filepath.Join(s.root, "go.work")
	data, err := s.files(name)
	if err != nil {
		return nil, fmt.Errorf("read go.work: %w", err)
	}
	var dirs []string
	inUse := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case line == "use (":
			inUse = true
		case inUse && line == ")":
			inUse = false
		case inUse && line != "":
			dirs = append(dirs, path.Clean(line))
		case strings.HasPrefix(line, "use "):
			dirs = append(dirs, path.Clean(strings.TrimSpace(strings.TrimPrefix(line, "use "))))
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("%s uses no module", s.rel(name))
	}
	return dirs, nil
}

// checkPinnedImages: every image pulled, by a service or a Dockerfile, names
// a version (a tag other than latest, or a digest).
func checkPinnedImages(s *stack) []string {
	var out []string
	for _, svc := range s.services {
		if svc.Build != nil {
			continue // its image is the one built
		}
		if svc.Image == "" {
			out = append(out, fmt.Sprintf("service %s has neither image nor build", svc.Name))
			continue
		}
		if why := imagePinned(svc.Image); why != "" {
			out = append(out, fmt.Sprintf("service %s: image %s %s: pin a version", svc.Name, svc.Image, why))
		}
	}
	for _, dfPath := range sortedKeys(s.dockerfiles) {
		df := s.dockerfiles[dfPath]
		if df == nil {
			continue
		}
		for _, st := range df.stages {
			if !df.isStage(st.from, st.line) {
				if why := imagePinned(st.from); why != "" {
					out = append(out, fmt.Sprintf("%s:%d: FROM %s %s: pin a version", s.rel(dfPath), st.line, st.from, why))
				}
			}
			for _, c := range st.copies {
				if c.from != "" && !df.isStage(c.from, c.line) {
					if why := imagePinned(c.from); why != "" {
						out = append(out, fmt.Sprintf("%s:%d: COPY --from=%s %s: pin a version", s.rel(dfPath), c.line, c.from, why))
					}
				}
			}
		}
	}
	return out
}

// checkUsers: images built here declare a non-root USER, and no
// long-running service overrides it with root. (A one-shot may run as root,
// as bootstrap does to hand out file ownership.)
func checkUsers(s *stack) []string {
	var out []string
	for _, svc := range s.services {
		if st := s.imageStage(svc); st != nil {
			if uid, _, _ := strings.Cut(st.user, ":"); uid == "" || uid == "0" || uid == "root" {
				out = append(out, fmt.Sprintf("service %s: its image (stage %s of %s) runs as root: add USER with a uid of its own", svc.Name, st.name, s.rel(s.dockerfilePath(svc))))
			}
		}
		if uid, known := s.uid(svc); known && uid == "0" && !isOneShot(svc) {
			out = append(out, fmt.Sprintf("service %s runs as root (user %q)", svc.Name, svc.User))
		}
	}
	return out
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
