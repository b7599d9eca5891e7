package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeSecrets is an in-memory Nexus: puts are pushed to the open watches
// unless watching is refused.
type fakeSecrets struct {
	mu       sync.Mutex
	data     map[string]map[string]string
	gets     int
	asked    []string // the paths of every Get
	refuse   error    // Watch's error, when set
	watches  []chan []string
	breaks   []chan error
	prefixes []string
	cursors  []string
}

func newFake(data map[string]map[string]string) *fakeSecrets {
	return &fakeSecrets{data: data}
}

func (f *fakeSecrets) Get(_ context.Context, path string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	f.asked = append(f.asked, path)
	d, ok := f.data[path]
	if !ok {
		return nil, errors.New("not found")
	}
	return maps.Clone(d), nil
}

func (f *fakeSecrets) put(path string, d map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data[path] = d
	for _, w := range f.watches {
		w <- []string{path}
	}
}

func (f *fakeSecrets) Watch(ctx context.Context, prefix, cursor string) (Stream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		return nil, f.refuse
	}
	ch := make(chan []string, 16)
	ch <- nil // a heartbeat opens the stream
	brk := make(chan error, 1)
	f.watches = append(f.watches, ch)
	f.breaks = append(f.breaks, brk)
	f.prefixes = append(f.prefixes, prefix)
	f.cursors = append(f.cursors, cursor)
	return &fakeStream{done: ctx.Done(), err: ctx.Err, ch: ch, brk: brk}, nil
}

// breakWatches ends every open stream with err.
func (f *fakeSecrets) breakWatches(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.breaks {
		b <- err
	}
	f.watches, f.breaks = nil, nil
}

// opened returns the cursors the watches were opened with.
func (f *fakeSecrets) opened() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cursors)
}

func (f *fakeSecrets) watching() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.cursors)
}

type fakeStream struct {
	done <-chan struct{}
	err  func() error
	ch   chan []string
	brk  chan error
	n    int
}

func (s *fakeStream) Receive() ([]string, string, error) {
	select {
	case <-s.done:
		return nil, "", s.err()
	case err := <-s.brk:
		return nil, "", err
	case p := <-s.ch:
		s.n++
		return p, fmt.Sprint(s.n), nil
	}
}

func (s *fakeStream) Close() error { return nil }

// logBuffer is a goroutine-safe log destination.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// counter returns a command that appends a line to a file, and a function
// counting the lines.
func counter(t *testing.T) ([]string, func() int) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "count")
	return []string{"sh", "-c", "echo x >> " + f}, func() int {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "\n")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRenderOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd, count := counter(t)
	f := newFake(map[string]map[string]string{"apps/db": {"user": "alice", "pass": "s3cret"}, "apps/api": {"token": "t1"}})
	cfg := Config{Once: true, Templates: []Template{
		{Name: "db", Text: `{{ secret "apps/db" "user" }}:{{ secret "apps/db" "pass" }}`, Destination: filepath.Join(dir, "db"), Mode: 0o600, Command: cmd, CommandTimeout: time.Minute},
		{Name: "all", Text: `{{ range $k, $v := secretData "apps/db" }}{{ $k }}={{ $v }};{{ end }}`, Destination: filepath.Join(dir, "all"), Mode: 0o640, Command: cmd, CommandTimeout: time.Minute},
	}}
	logs := &logBuffer{}
	a := New(cfg, f, slog.New(slog.NewTextHandler(logs, nil)), io.Discard)
	if err := a.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		file, want string
		mode       os.FileMode
	}{{"db", "alice:s3cret", 0o600}, {"all", "pass=s3cret;user=alice;", 0o640}} {
		p := filepath.Join(dir, tt.file)
		if got := readFile(t, p); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.file, got, tt.want)
		}
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != tt.mode {
			t.Errorf("%s: mode %04o, want %04o", tt.file, info.Mode().Perm(), tt.mode)
		}
	}
	if f.gets != 1 {
		t.Errorf("one render pass read apps/db %d times, want once", f.gets)
	}
	if n := count(); n != 1 {
		t.Errorf("the shared command ran %d times, want once for both files", n)
	}
	// Rendering again with nothing changed writes nothing and reloads
	// nothing.
	before, _ := os.Stat(filepath.Join(dir, "db"))
	if err := a.Render(t.Context()); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(dir, "db"))
	if !os.SameFile(before, after) {
		t.Error("an unchanged render replaced the file")
	}
	if n := count(); n != 1 {
		t.Errorf("an unchanged render ran the command: %d runs", n)
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("the log holds a secret value:\n%s", logs)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("the directory holds %d entries, want the 2 files and no temporary file", len(entries))
	}
}

// A missing secret or key is an error naming the template, the secret and
// the key; the file is not written and nothing runs.
func TestRenderErrors(t *testing.T) {
	t.Parallel()
	f := newFake(map[string]map[string]string{"apps/db": {"pass": "s3cret"}})
	for _, tt := range []struct {
		name, text string
		want       []string
	}{
		{"missing key", `{{ secret "apps/db" "user" }}`, []string{"template missing key", `secret apps/db has no such key (its keys are pass)`}},
		{"missing secret", `{{ secret "apps/nope" "user" }}`, []string{"template missing secret", "secret apps/nope: not found"}},
		{"missing map key", `{{ (secretData "apps/db").user }}`, []string{"template missing map key", `map has no entry for key "user"`}},
		{"empty path", `{{ secretData "" }}`, []string{"the secret path is empty"}},
		{"wrong type", `{{ secret "apps/db" "pass" | len | printf "%s" | eq 1 }}`, []string{"template wrong type"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cmd, count := counter(t)
			dest := filepath.Join(dir, "out")
			cfg := Config{Once: true, Templates: []Template{{Name: "template " + tt.name, Text: tt.text, Destination: dest, Mode: 0o600, Command: cmd, CommandTimeout: time.Minute}}}
			err := New(cfg, f, slog.New(slog.DiscardHandler), io.Discard).Run(t.Context())
			if err == nil {
				t.Fatal("rendered")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q holds the secret's value", err)
			}
			if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed render wrote the file: %v", err)
			}
			if count() != 0 {
				t.Error("a failed render ran the command")
			}
		})
	}
}

// A secret's value used as the path or key of another lookup is refused
// before anything is asked of Nexus, and no error shows it; neither does a
// missing key, which may be made from a value, nor any other error of the
// template that would.
func TestRenderKeepsValuesOutOfErrors(t *testing.T) {
	t.Parallel()
	const value = "leak-value-123"
	for _, tt := range []struct {
		name, text string
		want       string
		// asked are the paths Get must have been called with: none made
		// of the value where it is refused.
		asked []string
	}{
		{"value as key", `{{ secret "apps/z/a" (secret "apps/z/a" "k") }}`, "a secret's value was used as a path or key; refused without showing it", []string{"apps/z/a"}},
		{"value as key of another secret", `{{ secret "apps/z/b" (secret "apps/z/a" "k") }}`, "a secret's value was used as a path or key; refused without showing it", []string{"apps/z/a"}},
		{"value as path", `{{ secret (secret "apps/z/a" "k") "x" }}`, "a secret's value was used as a path or key; refused without showing it", []string{"apps/z/a"}},
		{"value as secretData's path", `{{ secretData (secret "apps/z/a" "k") }}`, "a secret's value was used as a path or key; refused without showing it", []string{"apps/z/a"}},
		{"value made into a key", `{{ secret "apps/z/a" (printf "%s!" (secret "apps/z/a" "k")) }}`, "secret apps/z/a has no such key (its keys are k, other)", []string{"apps/z/a"}},
		// Not refused (a path may well be made from a value), but the
		// error that would show the value is withheld.
		{"value made into a path", `{{ secret (printf "apps/%s" (secret "apps/z/a" "k")) "x" }}`, "withheld", []string{"apps/z/a", "apps/" + value}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(map[string]map[string]string{
				"apps/z/a": {"k": value, "other": "o"},
				"apps/z/b": {"x": "y"},
			})
			dest := filepath.Join(t.TempDir(), "out")
			cfg := Config{Once: true, Templates: []Template{{Name: "t", Text: tt.text, Destination: dest, Mode: 0o600}}}
			err := New(cfg, f, slog.New(slog.DiscardHandler), io.Discard).Run(t.Context())
			if err == nil {
				t.Fatal("rendered")
			}
			if strings.Contains(err.Error(), value) {
				t.Errorf("error %q shows the secret's value", err)
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if tt.asked != nil {
				if d := cmp.Diff(tt.asked, f.asked); d != "" {
					t.Errorf("paths asked of Nexus (-want +got):\n%s", d)
				}
			}
		})
	}
}

// A change to a secret a template reads renders again and reloads once; a
// burst of changes reloads once; a change to another secret does nothing.
func TestWatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd, count := counter(t)
	f := newFake(map[string]map[string]string{"apps/web/db": {"pass": "v1"}, "apps/web/api": {"token": "t1"}, "apps/web/other": {"x": "1"}})
	dest := filepath.Join(dir, "out")
	cfg := Config{Wait: 200 * time.Millisecond, PollInterval: time.Hour, Templates: []Template{
		{Name: "out", Text: `{{ secret "apps/web/db" "pass" }} {{ secret "apps/web/api" "token" }}`, Destination: dest, Mode: 0o600, Command: cmd, CommandTimeout: time.Minute},
	}}
	logs := &logBuffer{}
	a := New(cfg, f, slog.New(slog.NewTextHandler(logs, nil)), io.Discard)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitUntil(t, "the first render", func() bool { return count() == 1 })
	waitUntil(t, "the watch", func() bool { return f.watching() == 1 })
	time.Sleep(400 * time.Millisecond) // the heartbeat's render, which changes nothing
	if count() != 1 {
		t.Fatalf("%d reloads before any change", count())
	}
	if f.prefixes[0] != "apps/web/" {
		t.Errorf("watched %q, want apps/web/", f.prefixes[0])
	}

	f.put("apps/web/db", map[string]string{"pass": "v2"})
	waitUntil(t, "the re-render", func() bool { return readFile(t, dest) == "v2 t1" })
	waitUntil(t, "the reload", func() bool { return count() == 2 })

	// A burst: both secrets change within Wait; one render, one reload.
	f.put("apps/web/db", map[string]string{"pass": "v3"})
	f.put("apps/web/api", map[string]string{"token": "t3"})
	waitUntil(t, "the burst's render", func() bool { return readFile(t, dest) == "v3 t3" })
	time.Sleep(500 * time.Millisecond)
	if n := count(); n != 3 {
		t.Errorf("a burst of two changes: %d reloads in all, want 3", n)
	}

	// Another secret, and a put that changes nothing: no reload.
	f.put("apps/web/other", map[string]string{"x": "2"})
	f.put("apps/web/db", map[string]string{"pass": "v3"})
	time.Sleep(500 * time.Millisecond)
	if n := count(); n != 3 {
		t.Errorf("unrelated or unchanged puts reloaded: %d reloads, want 3", n)
	}
	for _, v := range []string{"v1", "v2", "v3", "t1", "t3"} {
		if strings.Contains(logs.String(), v+"\"") || strings.Contains(logs.String(), "="+v) {
			t.Errorf("the log holds the value %s:\n%s", v, logs)
		}
	}
}

// A broken watch resumes from its last cursor and misses nothing; a
// cursor too old starts afresh and renders everything.
func TestWatchResumes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd, count := counter(t)
	f := newFake(map[string]map[string]string{"apps/db": {"pass": "v1"}})
	dest := filepath.Join(dir, "out")
	cfg := Config{Wait: 50 * time.Millisecond, PollInterval: time.Hour, Templates: []Template{
		{Name: "out", Text: `{{ secret "apps/db" "pass" }}`, Destination: dest, Mode: 0o600, Command: cmd, CommandTimeout: time.Minute},
	}}
	logs := &logBuffer{}
	a := New(cfg, f, slog.New(slog.NewTextHandler(logs, nil)), io.Discard)
	a.minBackoff = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitUntil(t, "the watch", func() bool { return f.watching() == 1 })
	f.put("apps/db", map[string]string{"pass": "v2"}) // cursor 2
	waitUntil(t, "the re-render", func() bool { return readFile(t, dest) == "v2" })

	f.breakWatches(errors.New("connection reset"))
	waitUntil(t, "the second watch", func() bool { return f.watching() == 2 })
	f.breakWatches(fmt.Errorf("resume: %w", ErrCursorExpired))
	waitUntil(t, "the third watch", func() bool { return f.watching() == 3 })
	f.put("apps/db", map[string]string{"pass": "v3"})
	waitUntil(t, "the re-render after the reconnects", func() bool { return readFile(t, dest) == "v3" })
	if diff := cmp.Diff([]string{"", "2", ""}, f.opened()); diff != "" {
		t.Errorf("the cursors the watches were opened with (-want +got):\n%s", diff)
	}
	waitUntil(t, "the reloads", func() bool { return count() == 3 })
	if !strings.Contains(logs.String(), "resumed too late") {
		t.Errorf("the log does not say the cursor was too old:\n%s", logs)
	}
}

// Without a watch, the agent polls and says so.
func TestPollFallback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd, count := counter(t)
	f := newFake(map[string]map[string]string{"apps/db": {"pass": "v1"}})
	f.refuse = errors.New("unimplemented")
	dest := filepath.Join(dir, "out")
	cfg := Config{Wait: 0, PollInterval: 100 * time.Millisecond, Templates: []Template{
		{Name: "out", Text: `{{ secret "apps/db" "pass" }}`, Destination: dest, Mode: 0o600, Command: cmd, CommandTimeout: time.Minute},
	}}
	logs := &logBuffer{}
	a := New(cfg, f, slog.New(slog.NewTextHandler(logs, nil)), io.Discard)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitUntil(t, "the first render", func() bool { return count() == 1 })
	f.put("apps/db", map[string]string{"pass": "v2"})
	waitUntil(t, "the polled render", func() bool { return readFile(t, dest) == "v2" })
	waitUntil(t, "the reload", func() bool { return count() == 2 })
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if n := count(); n != 2 {
		t.Errorf("polling without changes reloaded: %d reloads, want 2", n)
	}
	if !strings.Contains(logs.String(), "cannot watch for changes; polling") || !strings.Contains(logs.String(), "unimplemented") {
		t.Errorf("the log does not say that the agent polls, and why:\n%s", logs)
	}
}

// A template with a pid file signals that process when its file changed.
func TestSignal(t *testing.T) {
	// Not parallel: it signals this test process.
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	if err := os.WriteFile(pidFile, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan os.Signal, 4)
	signal.Notify(got, syscall.SIGUSR1)
	defer signal.Stop(got)
	f := newFake(map[string]map[string]string{"apps/db": {"pass": "v1"}})
	cfg := Config{Once: true, Templates: []Template{{Name: "out", Text: `{{ secret "apps/db" "pass" }}`, Destination: filepath.Join(dir, "out"), Mode: 0o600, PIDFile: pidFile, Signal: syscall.SIGUSR1}}}
	if err := New(cfg, f, slog.New(slog.DiscardHandler), io.Discard).Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no SIGUSR1")
	}
	// Unchanged: no signal.
	if err := New(cfg, f, slog.New(slog.DiscardHandler), io.Discard).Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
		t.Error("an unchanged render sent a signal")
	case <-time.After(200 * time.Millisecond):
	}
	// A pid file that is missing (the app has not started yet) fails
	// --once but not a running agent, which renders and carries on.
	missing := cfg
	missing.Templates = []Template{cfg.Templates[0]}
	missing.Templates[0].PIDFile = filepath.Join(dir, "nope.pid")
	missing.Templates[0].Destination = filepath.Join(dir, "out2")
	if err := New(missing, f, slog.New(slog.DiscardHandler), io.Discard).Run(t.Context()); err == nil || !strings.Contains(err.Error(), "nope.pid") {
		t.Errorf("--once with a missing pid file: %v, want an error naming it", err)
	}
	missing.Once = false
	missing.Templates[0].Destination = filepath.Join(dir, "out3")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := New(missing, f, slog.New(slog.DiscardHandler), io.Discard).Run(ctx); err != nil {
		t.Errorf("a running agent with a missing pid file: %v, want it to carry on", err)
	}
	if readFile(t, filepath.Join(dir, "out3")) != "v1" {
		t.Error("the running agent did not render")
	}
	for _, tt := range []struct{ content, want string }{{"1\n", "never signals"}, {"abc", "does not hold a pid"}} {
		if err := os.WriteFile(pidFile, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := signalPIDFile(pidFile, syscall.SIGUSR1); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("pid file %q: %v, want an error saying %q", tt.content, err, tt.want)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
