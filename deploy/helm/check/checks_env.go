package check

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// programSources names, for each component, the Go files that read its
// program's environment (paths from the repository root): its
// configuration and shared/svid, where every program reads its SVID
// settings. The migration is spike-nexus too.
var programSources = map[string][]string{
	"nexus":   {"nexus/internal/app/config.go", "shared/svid/svid.go"},
	"migrate": {"nexus/internal/app/config.go"},
	"keeper":  {"keeper/internal/app/config.go", "shared/svid/svid.go"},
}

// libpqVariables are read by pgx, Nexus's PostgreSQL driver.
var libpqVariables = map[string]bool{"PGPASSWORD": true}

// envName matches a whole string literal that names a SPIKE or SPIFFE
// variable.
var envName = regexp.MustCompile(`^(SPIKE|SPIFFE)_[A-Z0-9_]+$`)

// ProgramEnv reads, from the programs' sources under root, the variables
// each component's program reads: every SPIKE_*/SPIFFE_* string literal of
// its configuration code (which names each variable it reads).
func ProgramEnv(root string) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	for comp, files := range programSources {
		vars := map[string]bool{}
		for _, f := range files {
			file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, filepath.FromSlash(f)), nil, parser.SkipObjectResolution)
			if err != nil {
				return nil, fmt.Errorf("read the variables of %s: %w", comp, err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && envName.MatchString(s) {
						vars[s] = true
					}
				}
				return true
			})
		}
		out[comp] = vars
	}
	return out, nil
}

// programEnv is what ProgramEnv read from this repository, set by the
// tests before the rules run.
var programEnv map[string]map[string]bool

// checkEnvironment wants every variable set in a container to be one its
// program reads: a misspelt SPIKE_* setting is otherwise silently ignored.
func checkEnvironment(o *Objects, _ Want) []string {
	var out []string
	for _, w := range o.workloads() {
		vars, ok := programEnv[w.component]
		c := w.container()
		if !ok || c == nil {
			continue
		}
		for _, e := range c.Env {
			if !vars[e.Name] && !libpqVariables[e.Name] {
				out = append(out, fmt.Sprintf("%s sets %s, which its program does not read", w, e.Name))
			}
		}
		if len(c.EnvFrom) > 0 {
			out = append(out, fmt.Sprintf("%s takes variables from envFrom, which cannot be checked", w))
		}
	}
	return out
}

// checkServiceMonitors wants each ServiceMonitor to scrape /metrics on the
// ops port of a Service of this chart.
func checkServiceMonitors(o *Objects, _ Want) []string {
	var out []string
	for _, sm := range o.ServiceMonitors {
		n := 0
		for _, svc := range o.Services {
			if !matches(&sm.Spec.Selector, svc.Labels) {
				continue
			}
			n++
			for _, ep := range sm.Spec.Endpoints {
				ops := slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
					return p.Name == ep.Port && (p.Port == 8554 || p.Port == 8444)
				})
				if !ops || ep.Path != "/metrics" {
					out = append(out, fmt.Sprintf("ServiceMonitor %s: endpoint %s%s is not /metrics on Service %s's ops port", sm.Name, ep.Port, ep.Path, svc.Name))
				}
			}
		}
		if n == 0 {
			out = append(out, fmt.Sprintf("ServiceMonitor %s selects no Service of the chart", sm.Name))
		}
	}
	return out
}
