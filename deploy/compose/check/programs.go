package check

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
)

// programSources names, for each SPIKE binary an image runs, the Go files
// that read its environment: its configuration code, and shared/svid, where
// every program reads its SVID settings (SPIFFE_ENDPOINT_SOCKET...). Paths
// are relative to the repository root.
var programSources = map[string][]string{
	"spike-keeper":           {"keeper/internal/app/config.go", "shared/svid/svid.go"},
	"spike-nexus":            {"nexus/internal/app/config.go", "shared/svid/svid.go"},
	"spike":                  {"pilot/internal/cli/config.go", "shared/svid/svid.go"},
	"spike-example-workload": {"shared/examples/workload/main.go", "shared/client/config.go", "shared/svid/svid.go"},
}

// server describes a program that listens: the variables of its API and ops
// listen addresses and their defaults (the defaults are checked against the
// program's source by TestProgramSources).
type server struct {
	listenVar, listenDefault string
	opsVar, opsDefault       string
}

var servers = map[string]server{
	"spike-keeper": {"SPIKE_KEEPER_LISTEN", "127.0.0.1:8443", "SPIKE_KEEPER_OPS_LISTEN", "127.0.0.1:8444"},
	"spike-nexus":  {"SPIKE_NEXUS_LISTEN", "127.0.0.1:8553", "SPIKE_NEXUS_OPS_LISTEN", "127.0.0.1:8554"},
}

// program is what the checks know of a SPIKE binary.
type program struct {
	name string
	// env holds the SPIKE_* and SPIFFE_* variables it reads.
	env map[string]bool
	// literals holds every string literal of its sources.
	literals map[string]bool
}

// envName matches a whole string literal that is an environment variable
// name of SPIKE or SPIFFE ("SPIKE_NEXUS_URL", not "SPIKE_NEXUS_URL: ...").
var envName = regexp.MustCompile(`^(SPIKE|SPIFFE)_[A-Z0-9_]+$`)

// loadProgram reads the string literals of a program's sources. Every
// SPIKE_*/SPIFFE_* literal counts as a variable the program reads: the
// configuration code names each one exactly once, in the getenv call or
// the helper that wraps it.
func loadProgram(root, name string) (*program, error) {
	files, ok := programSources[name]
	if !ok {
		return nil, fmt.Errorf("unknown SPIKE program %q", name)
	}
	p := &program{name: name, env: map[string]bool{}, literals: map[string]bool{}}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, filepath.Join(root, filepath.FromSlash(f)), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, fmt.Errorf("read the environment variables of %s: %w", name, err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			p.literals[s] = true
			if envName.MatchString(s) {
				p.env[s] = true
			}
			return true
		})
	}
	return p, nil
}
