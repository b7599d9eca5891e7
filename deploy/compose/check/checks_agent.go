package check

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// isAgent reports whether svc runs `spike agent`: a workload, not the
// admin, whatever image it shares with Pilot.
func (s *stack) isAgent(svc types.ServiceConfig) bool {
	p := s.program(svc)
	return p != nil && p.name == "spike" && len(svc.Command) > 0 && svc.Command[0] == "agent"
}

// pilots returns the services running the admin CLI (not the agent).
func (s *stack) pilots() []types.ServiceConfig {
	var out []types.ServiceConfig
	for _, svc := range s.servicesRunning("spike") {
		if !s.isAgent(svc) {
			out = append(out, svc)
		}
	}
	return out
}

// workloads returns the services that read secrets as workloads: the
// example workload and the agents.
func (s *stack) workloads() []types.ServiceConfig {
	out := s.servicesRunning("spike-example-workload")
	for _, svc := range s.servicesRunning("spike") {
		if s.isAgent(svc) {
			out = append(out, svc)
		}
	}
	return out
}

// agentConfig is what the checks read of an agent's configuration file.
type agentConfig struct {
	Templates []struct {
		Source      string `yaml:"source"`
		Destination string `yaml:"destination"`
		Mode        string `yaml:"mode"`
	} `yaml:"templates"`
}

// flagValue returns the value of --name (or --name=value) in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// checkAgent: the stack shows `spike agent` as a sidecar. It runs in a
// profile, long-running, with `spike agent --config FILE --check` (the
// same file) as its health check; FILE is on a read-only bind mount and
// its templates' sources are there too; every file it renders lands on a
// named volume the agent alone writes and another service (the app)
// mounts read-only; and no rendered file is readable by others.
func checkAgent(s *stack) []string {
	var agents []types.ServiceConfig
	for _, svc := range s.services {
		if s.isAgent(svc) {
			agents = append(agents, svc)
		}
	}
	if len(agents) == 0 {
		return []string{"the stack has no spike agent sidecar: a service running `spike agent --config FILE` beside an app that reads its files"}
	}
	var out []string
	for _, a := range agents {
		problem := func(format string, args ...any) {
			out = append(out, fmt.Sprintf("agent service %s: ", a.Name)+fmt.Sprintf(format, args...))
		}
		if len(a.Profiles) == 0 {
			problem("not in a profile: it needs a secret and a policy first, so `docker compose up` must leave it alone; give it profiles: [agent]")
		}
		if isOneShot(a) {
			problem("restart: \"no\": the agent keeps its files current, it runs for the life of the app")
		}
		config := flagValue(a.Command, "config")
		if config == "" {
			problem("its command has no --config FILE")
			continue
		}
		if hc := a.HealthCheck; hc == nil || len(hc.Test) < 2 || !slices.Contains(hc.Test, "--check") || flagValue(hc.Test, "config") != config {
			problem("its health check is not `spike agent --config %s --check` (every file rendered)", config)
		}
		data, hostPath, err := s.boundFile(a, config)
		if err != nil {
			problem("%v", err)
			continue
		}
		var cfg agentConfig
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			problem("%s: %v", s.rel(hostPath), err)
			continue
		}
		if len(cfg.Templates) == 0 {
			problem("%s lists no templates", s.rel(hostPath))
		}
		for _, t := range cfg.Templates {
			if t.Source != "" {
				src := t.Source
				if !path.IsAbs(src) {
					src = path.Join(path.Dir(config), src)
				}
				if _, _, err := s.boundFile(a, src); err != nil {
					problem("template source: %v", err)
				}
			}
			switch t.Mode {
			case "", "0600", "600", "0640", "640", "0400", "400", "0440", "440":
			default:
				problem("template %s: mode %s: a rendered secret is never readable by others (0600, or 0640 for the app's group)", t.Destination, t.Mode)
			}
			dest := t.Destination
			if !path.IsAbs(dest) {
				dest = path.Join(path.Dir(config), dest)
			}
			vol, _ := volumeHolding(a, path.Dir(dest))
			if vol == nil || vol.Type != types.VolumeTypeVolume || vol.ReadOnly {
				problem("renders %s outside a named volume it mounts read-write: the app cannot see it", dest)
				continue
			}
			readers := 0
			for _, other := range s.services {
				if other.Name == a.Name {
					continue
				}
				for _, v := range other.Volumes {
					if v.Type != types.VolumeTypeVolume || v.Source != vol.Source || s.isBootstrap(other) {
						continue
					}
					if !v.ReadOnly {
						problem("service %s mounts %s (where the agent renders %s) read-write: only the agent writes there", other.Name, vol.Source, dest)
					}
					readers++
				}
			}
			if readers == 0 {
				problem("no other service mounts %s, where it renders %s: the sidecar serves no app", vol.Source, dest)
			}
		}
	}
	return out
}

// isBootstrap reports whether svc is the bootstrap one-shot, which owns
// volumes rather than reading them.
func (s *stack) isBootstrap(svc types.ServiceConfig) bool {
	return isOneShot(svc) && len(svc.Command) > 0 && path.Base(svc.Command[0]) == "bootstrap.sh"
}

// boundFile returns the content and host path of the file at target in
// svc's container, which must come from a read-only bind mount.
func (s *stack) boundFile(svc types.ServiceConfig, target string) ([]byte, string, error) {
	v, rel := volumeHolding(svc, target)
	if v == nil || v.Type != types.VolumeTypeBind {
		return nil, "", fmt.Errorf("%s is not on a bind mount of the deployment's files", target)
	}
	if !v.ReadOnly {
		return nil, "", fmt.Errorf("%s is bind-mounted read-write: mount it :ro", v.Target)
	}
	host := filepath.Join(v.Source, filepath.FromSlash(rel))
	data, err := s.files(host)
	if err != nil {
		return nil, "", fmt.Errorf("%s (from %s): %w", target, s.rel(host), err)
	}
	return data, host, nil
}

// volumeHolding returns the mount of svc that holds the container path p
// (the deepest), and p relative to its target.
func volumeHolding(svc types.ServiceConfig, p string) (*types.ServiceVolumeConfig, string) {
	var best *types.ServiceVolumeConfig
	rel := ""
	for i := range svc.Volumes {
		v := &svc.Volumes[i]
		t := path.Clean(v.Target)
		if p != t && !strings.HasPrefix(p, t+"/") {
			continue
		}
		if best == nil || len(t) > len(path.Clean(best.Target)) {
			best, rel = v, strings.TrimPrefix(strings.TrimPrefix(p, t), "/")
		}
	}
	return best, rel
}
