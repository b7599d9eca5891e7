package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spike-dev/spike/shared/client"
	"github.com/spike-dev/spike/shared/identity"
)

// lookup returns a getenv over env (KEY=value entries, later ones win).
func lookup(env []string) func(string) string {
	m := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) string { return m[k] }
}

// The client package against a real stack, as a workload with a policy:
// each call does what it says and each refusal is its kind of error.
func TestClient(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	id := spiffeid.RequireFromString("spiffe://spike.local/app/client")
	mustSpike(t, admin, "", "policy", "put", "client", "--spiffe-id", id.String(), "--path", "apps/client/**",
		"--perm", "read,list,write,delete,destroy")
	mustSpike(t, admin, "", "secret", "put", "apps/other/x", "k=v")
	cfg, err := client.ConfigFromEnv(lookup(s.pilotEnv(t, 0, id)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c, err := client.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	v1, err := c.Put(ctx, "apps/client/db", map[string]string{"user": "web", "pass": "p1"}, client.CAS(0))
	if err != nil || v1.Version != 1 {
		t.Fatalf("Put: %+v, %v; want version 1", v1, err)
	}
	// A conflict and a sealed SPIKE (below) are both FailedPrecondition:
	// Nexus's reason tells them apart, not its message.
	var conflict *client.Error
	if _, err := c.Put(ctx, "apps/client/db", map[string]string{"pass": "lost"}, client.CAS(0)); !errors.Is(err, client.ErrConflict) ||
		!errors.As(err, &conflict) || conflict.Reason != "CAS_MISMATCH" {
		t.Errorf("Put with a stale CAS: %v, want ErrConflict with reason CAS_MISMATCH", err)
	}
	v2, err := c.Patch(ctx, "apps/client/db", map[string]string{"pass": "p2"}, client.CAS(1))
	if err != nil || v2.Version != 2 {
		t.Fatalf("Patch: %+v, %v; want version 2", v2, err)
	}
	got, err := c.Get(ctx, "apps/client/db")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"user": "web", "pass": "p2"}, got.Data); diff != "" || got.Version != 2 || got.CreatedBy != id.String() {
		t.Errorf("Get: version %d by %s, data (-want +got):\n%s", got.Version, got.CreatedBy, diff)
	}
	old, err := c.GetVersion(ctx, "apps/client/db", 1)
	if err != nil || old.Data["pass"] != "p1" {
		t.Errorf("GetVersion 1: %+v, %v; want pass p1", old, err)
	}
	for _, p := range []string{"apps/client/a/1", "apps/client/a/2", "apps/client/b"} {
		if _, err := c.Put(ctx, p, map[string]string{"k": "v"}); err != nil {
			t.Fatal(err)
		}
	}
	paths, err := c.List(ctx, "apps/client", client.ListOptions{Recursive: true, PageSize: 2})
	if diff := cmp.Diff([]string{"apps/client/a/1", "apps/client/a/2", "apps/client/b", "apps/client/db"}, paths); err != nil || diff != "" {
		t.Errorf("List over pages: %v, paths (-want +got):\n%s", err, diff)
	}

	deleted, err := c.Delete(ctx, "apps/client/b")
	if err != nil || !slices.Equal(deleted, []int64{1}) {
		t.Errorf("Delete: %v, %v; want [1]", deleted, err)
	}
	if _, err := c.Get(ctx, "apps/client/b"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	if _, err := c.Undelete(ctx, "apps/client/b"); err != nil {
		t.Errorf("Undelete: %v", err)
	}
	if _, err := c.Get(ctx, "apps/client/b"); err != nil {
		t.Errorf("Get after Undelete: %v", err)
	}
	if _, err := c.Destroy(ctx, "apps/client/db", 1); err != nil {
		t.Errorf("Destroy: %v", err)
	}
	if _, err := c.GetVersion(ctx, "apps/client/db", 1); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("GetVersion of a destroyed version: %v, want ErrNotFound", err)
	}

	var ce *client.Error
	if _, err := c.Get(ctx, "apps/other/x"); !errors.Is(err, client.ErrPermissionDenied) || !errors.As(err, &ce) || !ce.Remote {
		t.Errorf("Get without a policy: %v, want ErrPermissionDenied from Nexus", err)
	}
	if _, err := c.Get(ctx, "apps/client/none"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Get of nothing: %v, want ErrNotFound", err)
	}
	if _, err := c.Put(ctx, "apps/client//x", map[string]string{"k": "v"}); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("Put to a malformed path: %v, want ErrInvalidArgument", err)
	}

	mustSpike(t, admin, "", "operator", "seal")
	var sealed *client.Error
	if _, err := c.Get(ctx, "apps/client/db"); !errors.Is(err, client.ErrSealed) || !errors.As(err, &sealed) || sealed.Reason != "SEALED" {
		t.Errorf("Get while sealed: %v, want ErrSealed with reason SEALED", err)
	}
	if _, err := c.Put(ctx, "apps/client/db", map[string]string{"pass": "p3"}, client.CAS(2)); !errors.Is(err, client.ErrSealed) {
		t.Errorf("Put with a CAS while sealed: %v, want ErrSealed", err)
	}
}

// replaceFile replaces dst with the content of src as spiffe-helper does:
// a temporary file in dst's directory, renamed over dst, so that a reader
// sees the old file or the new one.
func replaceFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		t.Fatal(err)
	}
}

// A client whose SVID comes from PEM files follows them when they are
// replaced on disk: holding workload A's SVID it is refused a secret that
// only workload B may read; once the files hold B's SVID, the next calls
// through the same client (no restart) read it.
func TestClientPEMReload(t *testing.T) {
	t.Parallel()
	s := startStack(t, 1)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	a := spiffeid.RequireFromString("spiffe://spike.local/app/pem-a")
	b := spiffeid.RequireFromString("spiffe://spike.local/app/pem-b")
	mustSpike(t, admin, "", "policy", "put", "pem-b", "--spiffe-id", b.String(), "--path", "apps/pem/**", "--perm", "read")
	mustSpike(t, admin, "", "secret", "put", "apps/pem/db", "pass=p1")

	dir := filepath.Join(t.TempDir(), "svid")
	files, err := s.ca.WriteSVID(dir, a, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	next, err := s.ca.WriteSVID(filepath.Join(t.TempDir(), "next"), b, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c, err := client.New(ctx, client.Config{NexusURL: "https://" + s.nexusAddrs[0], NexusID: identity.Nexus(td), SVID: files})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var ce *client.Error
	if _, err := c.Get(ctx, "apps/pem/db"); !errors.Is(err, client.ErrPermissionDenied) || !errors.As(err, &ce) || !ce.Remote {
		t.Fatalf("Get as %s: %v, want ErrPermissionDenied from Nexus", a, err)
	}
	replaceFile(t, next.CertFile, files.CertFile)
	replaceFile(t, next.KeyFile, files.KeyFile)
	replaceFile(t, next.BundleFile, files.BundleFile)

	// The client looks at its files again when a call needs the SVID, at
	// most once a second: retry until then, within a bounded time.
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := c.Get(ctx, "apps/pem/db")
		if err == nil {
			if got.Data["pass"] != "p1" {
				t.Errorf("Get as %s: data %v, want pass p1", b, got.Data)
			}
			break
		}
		if !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("Get after the files were replaced: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("20s after the files were replaced the client is still refused: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if id, err := c.ID(); err != nil || id != b {
		t.Errorf("ID() = %v, %v; want %s", id, err, b)
	}
}

// The "Done when" of issue 14: a module outside the workspace, with only
// replace lines pointing at this checkout and no network, builds a program
// that uses the client, and the program puts, gets and watches (resuming
// from a cursor) as a workload against a running stack.
func TestClientFromOutsideModule(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if strings.HasPrefix(dir, root+string(filepath.Separator)) {
		t.Fatalf("the temporary module %s is inside the checkout %s", dir, root)
	}
	// The lines the README tells a workload's module to add, with the
	// checkout for /path/to/spike.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "\n```\nrequire (\n")
	block, _, ok2 := strings.Cut(block, "```\n")
	if !ok || !ok2 || !strings.Contains(block, "replace (") {
		t.Fatal("README.md has no block of go.mod lines (require, replace) for a workload's module")
	}
	gomod := "module example.com/outside\n\ngo 1.26.0\n\nrequire (\n" + strings.ReplaceAll(block, "/path/to/spike", root)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join("testdata", "outside", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "outside")
	// As the README says: go mod tidy, then build. No workspace, no
	// network: the dependencies come from this machine's module cache, and
	// the checksums of what it holds are recorded without a checksum
	// database.
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", bin, "."}} {
		cmd := exec.CommandContext(t.Context(), "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOPROXY=off", "GOFLAGS=", "GOSUMDB=off", "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s in a module outside the workspace: %v\n%s\ngo.mod:\n%s", strings.Join(args, " "), err, out, gomod)
		}
	}

	s := startStack(t, 1)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	id := spiffeid.RequireFromString("spiffe://spike.local/app/outside")
	mustSpike(t, admin, "", "policy", "put", "outside", "--spiffe-id", id.String(), "--path", "apps/outside/**", "--perm", "read,write")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, bin, "apps/outside/cfg")
	run.Env = s.pilotEnv(t, 0, id)
	var stderr strings.Builder
	run.Stderr = &stderr
	out, err := run.Output()
	if err != nil {
		t.Fatalf("the outside program: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	if diff := cmp.Diff("put 1\nget 1 blue\nconflict ok\nwatch ok\nresume ok\n", string(out)); diff != "" {
		t.Errorf("the outside program printed (-want +got):\n%s", diff)
	}
}

// syncBuffer is a strings.Builder that goroutines may write to.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A watch through one Nexus replica sees the writes made through another;
// when its replica crashes and comes back, the watch reconnects by itself
// from its last cursor: the writes made while it was down arrive, every
// version once and in order.
func TestClientWatchReconnects(t *testing.T) {
	t.Parallel()
	s := startStack(t, 2)
	s.initialise(t)
	admin := s.pilotEnv(t, 0, identity.Pilot(td))
	id := spiffeid.RequireFromString("spiffe://spike.local/app/watcher")
	mustSpike(t, admin, "", "policy", "put", "watcher", "--spiffe-id", id.String(), "--path", "apps/watch/**", "--perm", "read,write")
	newClient := func(replica int) *client.Client {
		cfg, err := client.ConfigFromEnv(lookup(s.pilotEnv(t, replica, id)))
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	watcher, writer := newClient(0), newClient(1)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	var logs syncBuffer
	events := make(chan client.Event, 100)
	failed := make(chan error, 1)
	go func() {
		opts := client.WatchOptions{IncludeData: true, Heartbeats: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		for ev, err := range watcher.Watch(ctx, "apps/watch/", opts) {
			if err != nil {
				failed <- err
				return
			}
			events <- ev
		}
	}()
	// next returns the next event, heartbeats included when heartbeats.
	next := func(what string, heartbeats bool) client.Event {
		t.Helper()
		for {
			select {
			case ev := <-events:
				if ev.Kind != client.KindHeartbeat || heartbeats {
					return ev
				}
				continue
			case err := <-failed:
				t.Fatalf("waiting for %s: the watch ended: %v\nits log:\n%s", what, err, logs.String())
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v\nthe watch's log:\n%s", what, ctx.Err(), logs.String())
			}
		}
	}
	put := func(n int) int64 {
		t.Helper()
		v, err := writer.Put(ctx, "apps/watch/cfg", map[string]string{"n": strconv.Itoa(n)})
		if err != nil {
			t.Fatal(err)
		}
		return v.Version
	}

	// Nexus answers a stream at once with a heartbeat: from then on,
	// every write is watched.
	if ev := next("the watch to start", true); ev.Kind != client.KindHeartbeat || ev.Cursor == "" {
		t.Fatalf("the first response: %+v, want a heartbeat with a cursor", ev)
	}

	var want []int64
	check := func(from int) {
		t.Helper()
		for n := from; n < from+3; n++ {
			ev := next(fmt.Sprintf("write %d", n), false)
			if ev.Path != "apps/watch/cfg" || ev.Kind != client.KindWritten || !slices.Equal(ev.Versions, []int64{want[n]}) || ev.Data["n"] != strconv.Itoa(n) {
				t.Fatalf("event %+v, want version %d written with n=%d", ev, want[n], n)
			}
		}
	}
	for n := range 3 {
		want = append(want, put(n))
	}
	check(0)

	s.nexus[0].Kill()
	for n := 3; n < 6; n++ {
		want = append(want, put(n))
	}
	s.nexus[0].Restart()
	s.nexus[0].WaitListening(s.nexusAddrs[0])
	for n := 6; n < 9; n++ {
		want = append(want, put(n))
	}
	check(3)
	check(6)
	timeout := time.After(time.Second)
	for more := true; more; {
		select {
		case ev := <-events:
			if ev.Kind != client.KindHeartbeat {
				t.Errorf("an event more than was written: %+v", ev)
			}
		case <-timeout:
			more = false
		}
	}
	if !strings.Contains(logs.String(), "reconnecting") {
		t.Errorf("the watch did not log a reconnection; its log:\n%s", logs.String())
	}
	t.Logf("the watch's log:\n%s", logs.String())
}
