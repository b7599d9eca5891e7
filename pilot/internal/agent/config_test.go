package agent

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "db.tmpl"), []byte(`{{ secret "apps/db" "pass" }}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(`
once: true
wait: 1s
poll_interval: 10s
templates:
  - source: db.tmpl
    destination: out/../db.env
    command: [sh, -c, "echo reload"]
    command_timeout: 5s
  - contents: "x={{ secret \"apps/x\" \"k\" }}"
    destination: `+dir+`/x.env
    mode: 0640
    pid_file: app.pid
    signal: sigusr1
  - contents: ""
    destination: empty
    pid_file: app.pid
`), "agent.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Once: true, Wait: time.Second, PollInterval: 10 * time.Second, Templates: []Template{
		{Name: dir + "/db.env", Text: `{{ secret "apps/db" "pass" }}`, Destination: dir + "/db.env", Mode: 0o600,
			Command: []string{"sh", "-c", "echo reload"}, CommandTimeout: 5 * time.Second},
		{Name: dir + "/x.env", Text: `x={{ secret "apps/x" "k" }}`, Destination: dir + "/x.env", Mode: 0o640,
			CommandTimeout: defaultCmdTime, PIDFile: dir + "/app.pid", Signal: syscall.SIGUSR1},
		{Name: dir + "/empty", Destination: dir + "/empty", Mode: 0o600,
			CommandTimeout: defaultCmdTime, PIDFile: dir + "/app.pid", Signal: syscall.SIGHUP},
	}}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig([]byte("templates:\n  - contents: x\n    destination: f\n"), "a.yaml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Once || cfg.Wait != defaultWait || cfg.PollInterval != defaultPoll || cfg.Templates[0].Mode != 0o600 {
		t.Errorf("defaults: %+v", cfg)
	}
}

// Every mistake is refused with its line and what to do.
func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct {
		name, yaml string
		want       []string
	}{
		{"empty", "", []string{"a.yaml: empty"}},
		{"unknown field", "templates:\n  - contents: x\n    destination: f\n    comand: [true]\n", []string{"line 4: field comand not found"}},
		{"unknown top-level field", "template: []\n", []string{"line 1: field template not found"}},
		{"not yaml", "templates: [\n", []string{"a.yaml: "}},
		{"no templates", "once: true\n", []string{"templates: none given"}},
		{"both sources", "templates:\n  - contents: x\n    source: y\n    destination: f\n", []string{"a.yaml:2: template 1: contents and source: give one, not both"}},
		{"no source", "templates:\n  - destination: f\n", []string{"a.yaml:2: template 1: contents or source: one is required"}},
		{"missing source file", "templates:\n  - source: nope.tmpl\n    destination: f\n", []string{"source: open " + dir + "/nope.tmpl"}},
		{"no destination", "templates:\n  - contents: x\n", []string{"destination: required"}},
		{"no directory", "templates:\n  - contents: x\n    destination: nodir/f\n", []string{"its directory " + dir + "/nodir does not exist"}},
		{"duplicate destination", "templates:\n  - contents: x\n    destination: f\n  - contents: y\n    destination: ./f\n",
			[]string{"a.yaml:4: template 2: destination " + dir + "/f is also template 1's"}},
		{"world readable", "templates:\n  - contents: x\n    destination: f\n    mode: \"0644\"\n", []string{"mode: 0644 is wider than 0640"}},
		{"executable", "templates:\n  - contents: x\n    destination: f\n    mode: \"0700\"\n", []string{"mode: 0700 is wider than 0640"}},
		{"owner cannot read", "templates:\n  - contents: x\n    destination: f\n    mode: \"0200\"\n", []string{"does not let the owner read"}},
		{"mode not octal", "templates:\n  - contents: x\n    destination: f\n    mode: rw\n", []string{`mode: "rw" is not an octal file mode`}},
		{"bad template", "templates:\n  - contents: \"{{ secret \"\n    destination: f\n", []string{"template 1: the template does not parse"}},
		{"unknown function", "templates:\n  - contents: \"{{ env \\\"HOME\\\" }}\"\n    destination: f\n", []string{`function "env" not defined`}},
		{"empty program", "templates:\n  - contents: x\n    destination: f\n    command: [\"\"]\n", []string{"command: the program (its first element) is empty"}},
		{"timeout without command", "templates:\n  - contents: x\n    destination: f\n    command_timeout: 1s\n", []string{"command_timeout: given without a command"}},
		{"bad timeout", "templates:\n  - contents: x\n    destination: f\n    command: [x]\n    command_timeout: 1h\n", []string{"command_timeout: must be more than 0 and at most 10m0s"}},
		{"signal without pid file", "templates:\n  - contents: x\n    destination: f\n    signal: HUP\n", []string{"signal: given without pid_file"}},
		{"unknown signal", "templates:\n  - contents: x\n    destination: f\n    pid_file: p\n    signal: KILL\n", []string{`signal: "KILL" is not one of`}},
		{"bad wait", "wait: soon\ntemplates:\n  - contents: x\n    destination: f\n", []string{`a.yaml:1: wait: "soon" is not a duration`}},
		{"poll too fast", "poll_interval: 10ms\ntemplates:\n  - contents: x\n    destination: f\n", []string{"poll_interval: must be 1s to 24h0m0s"}},
		{"every problem", "templates:\n  - contents: x\n  - destination: f\n    mode: \"0777\"\n",
			[]string{"a.yaml:2: template 1: destination: required", "a.yaml:3: template 2: contents or source", "a.yaml:3: template 2: mode: 0777"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig([]byte(tt.yaml), "a.yaml", dir)
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.yaml)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestCommonPrefix(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		paths []string
		want  string
	}{
		{nil, ""},
		{[]string{"apps/web/db"}, "apps/web/"},
		{[]string{"apps/web/db", "apps/web/api"}, "apps/web/"},
		{[]string{"apps/web/db", "apps/webx/api"}, "apps/"},
		{[]string{"apps/web/a/b", "apps/web/c"}, "apps/web/"},
		{[]string{"apps/web/db", "other/x"}, ""},
		{[]string{"top"}, ""},
	} {
		paths := map[string]bool{}
		for _, p := range tt.paths {
			paths[p] = true
		}
		if got := commonPrefix(paths); got != tt.want {
			t.Errorf("commonPrefix(%q) = %q, want %q", tt.paths, got, tt.want)
		}
	}
}

func TestCheckRendered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Templates: []Template{{Name: "a", Destination: filepath.Join(dir, "a")}, {Name: "b", Destination: filepath.Join(dir, "b")}}}
	if err := os.WriteFile(filepath.Join(dir, "a"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckRendered(cfg); err == nil || !strings.Contains(err.Error(), "template b: not rendered yet") || strings.Contains(err.Error(), "template a") {
		t.Errorf("with b missing: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckRendered(cfg); err != nil {
		t.Errorf("with both rendered: %v", err)
	}
}
