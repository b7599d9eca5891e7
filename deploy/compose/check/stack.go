package check

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// composeFile is the Compose file in the deployment directory.
const composeFile = "docker-compose.yml"

// stack is the loaded deployment: the Compose project with every profile
// enabled, and what the checks read beside it.
type stack struct {
	root     string // repository root
	dir      string // the deployment directory, deploy/compose
	project  *types.Project
	services []types.ServiceConfig // sorted by name
	// raw is the same file before interpolation (anchors and merges
	// resolved): where a value comes from a ${VARIABLE}, it says so.
	raw map[string]any
	// dockerfiles and ignores are keyed by absolute path; an ignore file
	// may be nil (none).
	dockerfiles map[string]*dockerfile
	ignores     map[string]*ignoreFile
	programs    map[string]*program
	// files returns the content of a file of the repository, by absolute
	// path; tests replace some files with mutated copies.
	files func(string) ([]byte, error)
}

// loadStack loads the Compose file of dir (inside the repository at root).
// Files named in overrides, by path relative to dir, are read from there
// instead of the disk.
func loadStack(ctx context.Context, root, dir string, overrides map[string]string) (*stack, error) {
	files := func(name string) ([]byte, error) {
		if rel, err := filepath.Rel(dir, name); err == nil {
			if s, ok := overrides[filepath.ToSlash(rel)]; ok {
				return []byte(s), nil
			}
		}
		return os.ReadFile(name)
	}
	composePath := filepath.Join(dir, composeFile)
	content, err := files(composePath)
	if err != nil {
		return nil, err
	}
	project, err := loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: composePath, Content: content}},
		// No variables from the test's environment: the file must not
		// depend on any.
		Environment: types.Mapping{},
	}, loader.WithProfiles([]string{"*"}))
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", composePath, err)
	}
	raw, err := loader.LoadModelWithContext(ctx, types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: composePath, Content: content}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SkipInterpolation = true
		o.SetProjectName(project.Name, true)
		o.Profiles = []string{"*"}
	})
	if err != nil {
		return nil, fmt.Errorf("load %s without interpolation: %w", composePath, err)
	}
	s := &stack{
		root:        root,
		dir:         dir,
		project:     project,
		raw:         raw,
		dockerfiles: map[string]*dockerfile{},
		ignores:     map[string]*ignoreFile{},
		programs:    map[string]*program{},
		files:       files,
	}
	for _, svc := range project.Services {
		s.services = append(s.services, svc)
	}
	sort.Slice(s.services, func(i, j int) bool { return s.services[i].Name < s.services[j].Name })

	for _, svc := range s.services {
		if svc.Build == nil {
			continue
		}
		name := s.dockerfilePath(svc)
		if _, done := s.dockerfiles[name]; done {
			continue
		}
		data, err := files(name)
		if errors.Is(err, fs.ErrNotExist) {
			s.dockerfiles[name] = nil // reported by checkBuilds
			continue
		}
		if err != nil {
			return nil, err
		}
		if s.dockerfiles[name], err = parseDockerfile(name, data); err != nil {
			return nil, err
		}
		if s.ignores[name], err = s.loadIgnoreFile(name, svc.Build.Context); err != nil {
			return nil, err
		}
	}
	for name := range programSources {
		if s.programs[name], err = loadProgram(root, name); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// loadIgnoreFile reads the ignore file BuildKit uses for a Dockerfile: the
// Dockerfile's own (Dockerfile.dockerignore beside it) or else the
// context's .dockerignore.
func (s *stack) loadIgnoreFile(dockerfilePath, context string) (*ignoreFile, error) {
	for _, name := range []string{dockerfilePath + ".dockerignore", filepath.Join(context, ".dockerignore")} {
		data, err := s.files(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return parseIgnoreFile(name, data), nil
	}
	return nil, nil
}

// rel returns name relative to the repository root, for messages.
func (s *stack) rel(name string) string {
	r, err := filepath.Rel(s.root, name)
	switch {
	case err != nil || strings.HasPrefix(r, ".."):
		return name
	case r == ".":
		return "(the repository root)"
	}
	return filepath.ToSlash(r)
}

// dockerfilePath is the absolute path of a built service's Dockerfile.
func (s *stack) dockerfilePath(svc types.ServiceConfig) string {
	df := svc.Build.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if filepath.IsAbs(df) {
		return df
	}
	return filepath.Join(svc.Build.Context, df)
}

// imageStage returns the Dockerfile stage a built service runs, or nil.
func (s *stack) imageStage(svc types.ServiceConfig) *stage {
	if svc.Build == nil {
		return nil
	}
	df := s.dockerfiles[s.dockerfilePath(svc)]
	if df == nil {
		return nil
	}
	return df.stage(svc.Build.Target)
}

// program returns the SPIKE program a service runs, or nil: the binary of
// its entrypoint (the service's, else its image stage's).
func (s *stack) program(svc types.ServiceConfig) *program {
	argv := []string(svc.Entrypoint)
	if len(argv) == 0 {
		if st := s.imageStage(svc); st != nil {
			argv = st.entrypoint
		}
	}
	if len(argv) == 0 {
		return nil
	}
	return s.programs[path.Base(argv[0])]
}

// uid returns the numeric user a service runs as, and whether it is known:
// the service's user, else its image stage's USER. A pulled image's user is
// unknown.
func (s *stack) uid(svc types.ServiceConfig) (string, bool) {
	user := svc.User
	if user == "" {
		st := s.imageStage(svc)
		if st == nil {
			return "", false
		}
		user = st.user
	}
	uid, _, _ := strings.Cut(user, ":")
	switch uid {
	case "", "root":
		return "0", true
	}
	return uid, true
}

// env returns a service's value of an environment variable.
func env(svc types.ServiceConfig, name string) (string, bool) {
	v, ok := svc.Environment[name]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// envOr returns a service's value of an environment variable, or def.
func envOr(svc types.ServiceConfig, name, def string) string {
	if v, ok := env(svc, name); ok && v != "" {
		return v
	}
	return def
}

// isOneShot reports whether a service runs to completion rather than for
// the life of the stack: restart "no" says so.
func isOneShot(svc types.ServiceConfig) bool {
	return svc.Restart == types.RestartPolicyNo
}

// hasHealthCheck reports whether a service defines a working health check.
func hasHealthCheck(svc types.ServiceConfig) bool {
	hc := svc.HealthCheck
	return hc != nil && !hc.Disable && len(hc.Test) > 0 && hc.Test[0] != "NONE"
}

// servicesRunning returns the services running the SPIKE program name.
func (s *stack) servicesRunning(name string) []types.ServiceConfig {
	var out []types.ServiceConfig
	for _, svc := range s.services {
		if p := s.program(svc); p != nil && p.name == name {
			out = append(out, svc)
		}
	}
	return out
}

// rawService returns a service's definition before interpolation, or nil.
func (s *stack) rawService(name string) map[string]any {
	services, _ := s.raw["services"].(map[string]any)
	svc, _ := services[name].(map[string]any)
	return svc
}

// service returns a service by name.
func (s *stack) service(name string) (types.ServiceConfig, bool) {
	for _, svc := range s.services {
		if svc.Name == name {
			return svc, true
		}
	}
	return types.ServiceConfig{}, false
}
