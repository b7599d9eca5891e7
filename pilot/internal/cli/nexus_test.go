package cli

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spike-dev/spike/shared/svid"
)

// A SPIRE agent that kept spike waiting names the binary and uid to
// register, and not the environment, which names the agent and so is set;
// any other failure to load the SVID suggests setting the environment.
func TestSVIDError(t *testing.T) {
	t.Parallel()
	spire := svid.Config{EndpointSocket: "unix:///state/spire/agent.sock"}
	files := svid.Config{CertFile: "svid.pem", KeyFile: "key.pem", BundleFile: "bundle.pem"}
	cause := errors.New("the cause")
	for _, tt := range []struct {
		name     string
		who      string
		cfg      svid.Config
		waited   bool
		want     []string
		wantNot  []string
		wrapsErr bool
	}{
		{
			name: "SPIRE agent kept Pilot waiting", who: "Pilot", cfg: spire, waited: true,
			want: []string{
				"the SPIRE agent at unix:///state/spire/agent.sock gave Pilot no SVID within 5s: is this program registered?",
				"unix:path:/opt/spike/bin/spike", "unix:uid:1000",
			},
			wantNot: []string{svidHint, ".spike/env"},
		},
		{
			name: "SPIRE agent kept the agent waiting", who: "the agent", cfg: spire, waited: true,
			want:    []string{"gave the agent no SVID within 5s", "unix:path:/opt/spike/bin/spike", "unix:uid:1000"},
			wantNot: []string{svidHint, ".spike/env"},
		},
		{
			name: "no SPIRE agent at the socket", who: "Pilot", cfg: spire,
			want: []string{"load Pilot's SVID: the cause\n" + svidHint}, wantNot: []string{"unix:path:"}, wrapsErr: true,
		},
		{
			name: "files", who: "the agent", cfg: files,
			want: []string{"load the agent's SVID: the cause\n" + svidHint}, wantNot: []string{"unix:path:"}, wrapsErr: true,
		},
		{
			name: "nothing configured, out of time", who: "Pilot", waited: true,
			want: []string{"load Pilot's SVID: the cause\n" + svidHint}, wantNot: []string{"unix:path:"}, wrapsErr: true,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := svidErrorFor(tt.who, tt.cfg, tt.waited, "/opt/spike/bin/spike", 1000, cause)
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			for _, s := range tt.wantNot {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q says %q", err, s)
				}
			}
			if errors.Is(err, cause) != tt.wrapsErr {
				t.Errorf("errors.Is(%q, cause) = %v, want %v", err, !tt.wrapsErr, tt.wrapsErr)
			}
		})
	}
}

// spike agent, given a Workload API socket that never answers (a SPIRE
// agent without an entry for it), says which binary path to register, as
// the other commands do.
func TestAgentUnregisteredHint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	config := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(config, []byte("templates:\n  - contents: x\n    destination: out\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Accepts connections and never speaks.
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	p := &Program{
		Version: "test",
		Getenv:  envFunc(map[string]string{"SPIFFE_ENDPOINT_SOCKET": "unix://" + sock}),
		Stdin:   strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
	}
	code := p.Run(t.Context(), []string{"agent", "--config", config, "--once"})
	if want := "gave the agent no SVID"; code != 1 || !strings.Contains(stderr.String(), want) ||
		!strings.Contains(stderr.String(), "unix:path:"+exe) || strings.Contains(stderr.String(), ".spike/env") {
		t.Errorf("spike agent with a silent SPIRE agent: exit %d, stderr %q; want exit 1 saying %q and unix:path:%s, without .spike/env",
			code, stderr.String(), want, exe)
	}
}
