package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"
)

// Bounds on what a configuration may ask for.
const (
	maxConfigBytes   = 1 << 20
	maxSourceBytes   = 1 << 20
	maxTemplates     = 64
	defaultMode      = 0o600
	allowedModeBits  = 0o640
	defaultWait      = 250 * time.Millisecond
	maxWait          = time.Minute
	defaultPoll      = 30 * time.Second
	minPoll          = time.Second
	maxPoll          = 24 * time.Hour
	defaultCmdTime   = 30 * time.Second
	maxCmdTime       = 10 * time.Minute
	defaultSignalStr = "HUP"
)

// Config is a validated agent configuration.
type Config struct {
	// Once renders every template once, runs the actions of the files
	// that changed and exits.
	Once bool
	// Wait is how long the agent waits after a change for more before it
	// renders, so that a burst of changes causes one render and one
	// reload.
	Wait time.Duration
	// PollInterval is how often the agent renders while it cannot watch
	// for changes.
	PollInterval time.Duration
	// Templates are rendered in this order.
	Templates []Template
}

// Template is one file the agent keeps rendered.
type Template struct {
	// Name identifies the template in logs and errors: its destination.
	Name string
	// Text is the template's text (inline, or read from its source file).
	Text string
	// Destination is the absolute path of the rendered file.
	Destination string
	// Mode is the rendered file's permission bits.
	Mode os.FileMode
	// Command, if set, runs (without a shell) after the file changed.
	Command []string
	// CommandTimeout bounds one run of Command.
	CommandTimeout time.Duration
	// PIDFile, if set, names the file holding the pid of the process
	// that gets Signal after the file changed.
	PIDFile string
	// Signal is sent to the process in PIDFile.
	Signal syscall.Signal
}

// rawConfig is the configuration file as written.
type rawConfig struct {
	Once         bool          `yaml:"once"`
	Wait         *string       `yaml:"wait"`
	PollInterval *string       `yaml:"poll_interval"`
	Templates    []rawTemplate `yaml:"templates"`
}

type rawTemplate struct {
	Contents       *string  `yaml:"contents"`
	Source         string   `yaml:"source"`
	Destination    string   `yaml:"destination"`
	Mode           string   `yaml:"mode"`
	Command        []string `yaml:"command"`
	CommandTimeout string   `yaml:"command_timeout"`
	Signal         string   `yaml:"signal"`
	PIDFile        string   `yaml:"pid_file"`
}

// signals are the signals a template may send, by name.
var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "QUIT": syscall.SIGQUIT,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "WINCH": syscall.SIGWINCH,
}

// LoadConfig reads and validates the configuration file at path. Relative
// paths in it are relative to the file's directory.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("read the agent configuration: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("read the agent configuration %s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return Config{}, fmt.Errorf("%s: larger than %d bytes", path, maxConfigBytes)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Config{}, fmt.Errorf("read the agent configuration: %w", err)
	}
	return ParseConfig(data, path, filepath.Dir(abs))
}

// ParseConfig validates the configuration in data; name labels errors and
// dir is the directory relative paths are resolved against. Every problem
// is reported, each with its line.
func ParseConfig(data []byte, name, dir string) (Config, error) {
	var raw rawConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("%s: empty: it must list templates", name)
		}
		return Config{}, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var doc yaml.Node
	_ = yaml.Unmarshal(data, &doc) // it decoded above
	lines := templateLines(&doc)

	var errs []error
	fail := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
	}
	cfg := Config{Once: raw.Once, Wait: defaultWait, PollInterval: defaultPoll}
	if raw.Wait != nil {
		d, err := time.ParseDuration(*raw.Wait)
		switch {
		case err != nil:
			fail(keyLine(&doc, "wait"), "wait: %q is not a duration (e.g. 250ms, 2s)", *raw.Wait)
		case d < 0 || d > maxWait:
			fail(keyLine(&doc, "wait"), "wait: must be 0 to %s, got %s", maxWait, d)
		default:
			cfg.Wait = d
		}
	}
	if raw.PollInterval != nil {
		d, err := time.ParseDuration(*raw.PollInterval)
		switch {
		case err != nil:
			fail(keyLine(&doc, "poll_interval"), "poll_interval: %q is not a duration (e.g. 30s, 5m)", *raw.PollInterval)
		case d < minPoll || d > maxPoll:
			fail(keyLine(&doc, "poll_interval"), "poll_interval: must be %s to %s, got %s", minPoll, maxPoll, d)
		default:
			cfg.PollInterval = d
		}
	}
	switch {
	case len(raw.Templates) == 0:
		fail(1, "templates: none given: list at least one (contents or source, and destination)")
	case len(raw.Templates) > maxTemplates:
		fail(keyLine(&doc, "templates"), "templates: %d given, at most %d", len(raw.Templates), maxTemplates)
	}
	seen := map[string]int{}
	for i, rt := range raw.Templates {
		line := 1
		if i < len(lines) {
			line = lines[i]
		}
		t, tErrs := parseTemplate(rt, dir)
		for _, e := range tErrs {
			fail(line, "template %d: %s", i+1, e)
		}
		if t.Destination != "" {
			if j, dup := seen[t.Destination]; dup {
				fail(line, "template %d: destination %s is also template %d's", i+1, t.Destination, j)
			}
			seen[t.Destination] = i + 1
		}
		cfg.Templates = append(cfg.Templates, t)
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// parseTemplate checks one template and returns every problem it has.
func parseTemplate(rt rawTemplate, dir string) (Template, []string) {
	var errs []string
	t := Template{Mode: defaultMode, CommandTimeout: defaultCmdTime}
	if rt.Destination == "" {
		errs = append(errs, "destination: required (the file to render)")
	} else {
		t.Destination = resolvePath(dir, rt.Destination)
		t.Name = t.Destination
		if info, err := os.Stat(filepath.Dir(t.Destination)); err != nil || !info.IsDir() {
			errs = append(errs, fmt.Sprintf("destination %s: its directory %s does not exist", t.Destination, filepath.Dir(t.Destination)))
		} else if info, err := os.Lstat(t.Destination); err == nil && !info.Mode().IsRegular() {
			errs = append(errs, fmt.Sprintf("destination %s: exists and is not a regular file", t.Destination))
		}
	}
	switch {
	case rt.Contents != nil && rt.Source != "":
		errs = append(errs, "contents and source: give one, not both")
	case rt.Contents != nil:
		t.Text = *rt.Contents
	case rt.Source != "":
		src := resolvePath(dir, rt.Source)
		text, err := readSource(src)
		if err != nil {
			errs = append(errs, fmt.Sprintf("source: %v", err))
		}
		t.Text = text
	default:
		errs = append(errs, "contents or source: one is required (the template inline, or its file)")
	}
	if t.Text != "" || rt.Contents != nil {
		if _, err := parse(t.Name, t.Text); err != nil {
			errs = append(errs, fmt.Sprintf("the template does not parse: %s", strings.TrimPrefix(err.Error(), "template: ")))
		}
	}
	if rt.Mode != "" {
		m, err := strconv.ParseUint(rt.Mode, 8, 32)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("mode: %q is not an octal file mode (e.g. \"0600\")", rt.Mode))
		case m&^allowedModeBits != 0:
			errs = append(errs, fmt.Sprintf("mode: %04o is wider than 0640: secrets are never readable by others, writable by the group nor executable", m))
		case m&0o400 == 0:
			errs = append(errs, fmt.Sprintf("mode: %04o does not let the owner read the file", m))
		default:
			t.Mode = os.FileMode(m)
		}
	}
	if len(rt.Command) > 0 {
		if rt.Command[0] == "" {
			errs = append(errs, "command: the program (its first element) is empty")
		}
		t.Command = rt.Command
	}
	if rt.CommandTimeout != "" {
		d, err := time.ParseDuration(rt.CommandTimeout)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("command_timeout: %q is not a duration (e.g. 30s)", rt.CommandTimeout))
		case d <= 0 || d > maxCmdTime:
			errs = append(errs, fmt.Sprintf("command_timeout: must be more than 0 and at most %s, got %s", maxCmdTime, d))
		case len(rt.Command) == 0:
			errs = append(errs, "command_timeout: given without a command")
		default:
			t.CommandTimeout = d
		}
	}
	switch {
	case rt.Signal != "" && rt.PIDFile == "":
		errs = append(errs, "signal: given without pid_file (the file holding the pid of the process to signal)")
	case rt.PIDFile != "":
		t.PIDFile = resolvePath(dir, rt.PIDFile)
		name := strings.TrimPrefix(strings.ToUpper(rt.Signal), "SIG")
		if name == "" {
			name = defaultSignalStr
		}
		sig, ok := signals[name]
		if !ok {
			errs = append(errs, fmt.Sprintf("signal: %q is not one of HUP, INT, TERM, QUIT, USR1, USR2, WINCH", rt.Signal))
		}
		t.Signal = sig
	}
	return t, errs
}

// readSource reads a template file, bounded.
func readSource(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSourceBytes+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxSourceBytes {
		return "", fmt.Errorf("%s: larger than %d bytes", path, maxSourceBytes)
	}
	return string(data), nil
}

// resolvePath makes p absolute against dir.
func resolvePath(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// templateLines returns the line of each entry of the templates list.
func templateLines(doc *yaml.Node) []int {
	v := mappingValue(doc, "templates")
	if v == nil || v.Kind != yaml.SequenceNode {
		return nil
	}
	lines := make([]int, len(v.Content))
	for i, n := range v.Content {
		lines[i] = n.Line
	}
	return lines
}

// keyLine returns the line of a top-level key, or 1.
func keyLine(doc *yaml.Node, key string) int {
	if v := mappingValue(doc, key); v != nil {
		return v.Line
	}
	return 1
}

// mappingValue returns the value of a top-level key of the document.
func mappingValue(doc *yaml.Node, key string) *yaml.Node {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// parse parses a template's text with the agent's functions (unbound).
func parse(name, text string) (*template.Template, error) {
	return template.New(name).Option("missingkey=error").Funcs(template.FuncMap{
		"secret":     func(string, string) (string, error) { return "", nil },
		"secretData": func(string) (map[string]string, error) { return nil, nil },
	}).Parse(text)
}
