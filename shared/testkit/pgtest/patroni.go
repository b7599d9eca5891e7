package pgtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// haHint is appended to "patroni/etcd not found".
const haHint = "install them (apt-get install patroni etcd-server; deploy/local/check-deps.sh does as root)"

// haStartTimeout bounds how long StartHA waits for etcd, for a leader and
// for a streaming synchronous standby.
const haStartTimeout = 90 * time.Second

// HA is a throwaway highly available PostgreSQL: a single-member etcd and
// Patroni members on 127.0.0.1, each with its own data directory and free
// ports, the first primary and the others replicas, one of them a
// synchronous standby (synchronous_mode). A member whose postmaster dies is
// not restarted in place: Patroni hands the leader key over at once
// (primary_start_timeout 0), so the synchronous standby is promoted. Every
// connection from 127.0.0.1 is trusted, as in Start's clusters.
type HA struct {
	t       testing.TB
	etcd    *haProc
	members []*haMember
	http    *http.Client
}

type haMember struct {
	name     string
	dir      string
	data     string
	port     int
	restPort int
	proc     *haProc
}

// haProc is a child process and its log.
type haProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// StartHA starts etcd and members Patroni members (at least 2) and waits
// until one is the leader and another a synchronous standby; everything
// stops when the test ends. A missing patroni or etcd fails the test. As
// root, Patroni and PostgreSQL run as the OS user postgres.
func StartHA(t testing.TB, members int) *HA {
	t.Helper()
	if members < 2 {
		t.Fatalf("pgtest: StartHA needs at least 2 members, got %d", members)
	}
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("pgtest: etcd not found on PATH: %s", haHint)
	}
	patroniBin, err := exec.LookPath("patroni")
	if err != nil {
		t.Fatalf("pgtest: patroni not found on PATH: %s", haHint)
	}
	binDir, err := serverBinDir()
	if err != nil {
		t.Fatal(err)
	}
	cred, err := serverCredential()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() // before the cleanup below, so removed after it
	h := &HA{t: t, http: &http.Client{Timeout: 2 * time.Second}}
	t.Cleanup(h.stop)

	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := makeSearchable(dir); err != nil {
		t.Fatal(err)
	}
	etcdPort, peerPort := mustFreePort(t), mustFreePort(t)
	h.etcd = startHAProc(t, filepath.Join(dir, "etcd.log"), nil, etcdBin,
		"--name", "e1", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("e1=http://127.0.0.1:%d", peerPort),
		"--initial-cluster-state", "new", "--log-level", "warn")
	h.waitFor("etcd to be healthy", h.etcd, func() bool {
		var health struct {
			Health string `json:"health"`
		}
		return h.getJSON(fmt.Sprintf("http://127.0.0.1:%d/health", etcdPort), &health) == nil && health.Health == "true"
	})

	scope := "pgtest-" + randomHex(4)
	for i := range members {
		m := &haMember{name: fmt.Sprintf("m%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("m%d", i+1))}
		m.data = filepath.Join(m.dir, "data")
		m.port, m.restPort = mustFreePort(t), mustFreePort(t)
		if err := os.Mkdir(m.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		conf, err := patroniConfig(scope, m, etcdPort, binDir)
		if err != nil {
			t.Fatal(err)
		}
		confFile := filepath.Join(m.dir, "patroni.yml")
		if err := os.WriteFile(confFile, conf, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(m.dir, "s"), 0o700); err != nil {
			t.Fatal(err)
		}
		if cred != nil {
			for _, p := range []string{m.dir, confFile, filepath.Join(m.dir, "s")} {
				if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
					t.Fatal(err)
				}
			}
		}
		m.proc = startHAProc(t, filepath.Join(dir, m.name+".log"), cred, patroniBin, confFile)
		h.members = append(h.members, m)
		if i == 0 {
			// The first member bootstraps the cluster; the others
			// clone it once it leads.
			h.waitFor("the first member to lead", m.proc, func() bool { return h.Primary() == 0 })
		}
	}
	h.waitFor("a streaming synchronous standby", nil, func() bool { return h.SyncStandby() >= 0 })
	return h
}

// serverBinDir is the directory of PostgreSQL's server programs, which
// Patroni runs by name from there (postgres, initdb, pg_ctl,
// pg_controldata, pg_basebackup, pg_rewind): where postgres on PATH
// really lives, as pg_config --bindir says, not a directory of symlinks
// to some of them.
func serverBinDir() (string, error) {
	postgres, err := findBinary("postgres")
	if err != nil {
		return "", err
	}
	resolved, err := filepath.EvalSymlinks(postgres)
	if err != nil {
		return "", fmt.Errorf("pgtest: resolve %s: %w", postgres, err)
	}
	dir := filepath.Dir(resolved)
	for _, name := range []string{"pg_controldata", "pg_basebackup", "pg_rewind", "initdb", "pg_ctl"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("pgtest: %s is not beside postgres in %s, where Patroni looks for it: %s", name, dir, installHint)
		}
	}
	return dir, nil
}

// patroniConfig is member m's Patroni configuration. JSON is YAML, which
// Patroni reads.
func patroniConfig(scope string, m *haMember, etcdPort int, binDir string) ([]byte, error) {
	trust := []string{
		"local all all trust",
		"host all all 127.0.0.1/32 trust",
		"host replication all 127.0.0.1/32 trust",
	}
	conf := map[string]any{
		"scope":     scope,
		"namespace": "/pgtest/",
		"name":      m.name,
		"log":       map[string]any{"level": "INFO"},
		"restapi": map[string]any{
			"listen":          fmt.Sprintf("127.0.0.1:%d", m.restPort),
			"connect_address": fmt.Sprintf("127.0.0.1:%d", m.restPort),
		},
		"etcd3":    map[string]any{"hosts": []string{fmt.Sprintf("127.0.0.1:%d", etcdPort)}},
		"watchdog": map[string]any{"mode": "off"},
		"bootstrap": map[string]any{
			"dcs": map[string]any{
				// Fast for a test: a loop a second, a leader key that
				// lapses after 10 s (loop_wait + 2 retry_timeout <= ttl).
				"ttl":                     10,
				"loop_wait":               1,
				"retry_timeout":           3,
				"maximum_lag_on_failover": 1 << 20,
				"primary_start_timeout":   0,
				"synchronous_mode":        true,
				"postgresql": map[string]any{
					"use_pg_rewind": true,
					"parameters": map[string]any{
						"wal_level":       "replica",
						"hot_standby":     "on",
						"wal_log_hints":   "on",
						"max_wal_senders": 10,
						"max_connections": 200,
					},
				},
			},
			"initdb": []any{map[string]string{"encoding": "UTF8"}, map[string]string{"locale": "C"}},
		},
		"postgresql": map[string]any{
			"listen":          fmt.Sprintf("127.0.0.1:%d", m.port),
			"connect_address": fmt.Sprintf("127.0.0.1:%d", m.port),
			"data_dir":        m.data,
			"bin_dir":         binDir,
			"pgpass":          filepath.Join(m.dir, "pgpass"),
			"use_unix_socket": true,
			"authentication": map[string]any{
				"superuser":   map[string]string{"username": "postgres"},
				"replication": map[string]string{"username": "replicator"},
			},
			"pg_hba": trust,
			// fsync off as in Start: a killed server, not a crashed
			// machine. Commits wait for the synchronous standby.
			"parameters": map[string]any{
				"unix_socket_directories": filepath.Join(m.dir, "s"),
				"fsync":                   "off",
				"shared_buffers":          "32MB",
			},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

func startHAProc(t testing.TB, log string, cred *syscall.Credential, bin string, args ...string) *haProc {
	t.Helper()
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child holds its own copy
	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Dir(log)
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = procAttr(cred)
	if err := cmd.Start(); err != nil {
		t.Fatalf("pgtest: start %s: %v", bin, err)
	}
	p := &haProc{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p
}

// waitFor polls cond until it holds, failing the test if p (when not nil)
// exits first or haStartTimeout passes.
func (h *HA) waitFor(what string, p *haProc, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(haStartTimeout)
	for !cond() {
		if p != nil {
			select {
			case <-p.done:
				h.t.Fatalf("pgtest: waiting for %s: %s exited:\n%s", what, p.cmd.Path, tail(p.log, 40))
			default:
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("pgtest: no %s within %s\n%s", what, haStartTimeout, h.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Members is how many Patroni members there are.
func (h *HA) Members() int { return len(h.members) }

// Port is the PostgreSQL port of member i.
func (h *HA) Port(i int) int { return h.members[i].port }

// clusterState is the part of Patroni's GET /cluster that we read.
type clusterState struct {
	Members []struct {
		Name  string `json:"name"`
		Role  string `json:"role"`
		State string `json:"state"`
	} `json:"members"`
}

// state asks the members' REST APIs, in turn, how the cluster stands.
func (h *HA) state() (clusterState, error) {
	var lastErr error
	for _, m := range h.members {
		var s clusterState
		if err := h.getJSON(fmt.Sprintf("http://127.0.0.1:%d/cluster", m.restPort), &s); err != nil {
			lastErr = err
			continue
		}
		return s, nil
	}
	return clusterState{}, lastErr
}

// memberWith returns the index of the member that has role and runs, or -1.
func (h *HA) memberWith(role string) int {
	s, err := h.state()
	if err != nil {
		return -1
	}
	for _, sm := range s.Members {
		if sm.Role != role || sm.State != "running" {
			continue
		}
		for i, m := range h.members {
			if m.name == sm.Name {
				return i
			}
		}
	}
	return -1
}

// Primary is the index of the member that leads and runs, or -1 when none
// does (during a failover).
func (h *HA) Primary() int { return h.memberWith("leader") }

// SyncStandby is the index of the running synchronous standby, or -1.
func (h *HA) SyncStandby() int { return h.memberWith("sync_standby") }

// KillPostmaster kills member i's postmaster with SIGKILL, as a crash
// would (its backends exit when they notice), and returns its pid.
func (h *HA) KillPostmaster(i int) int {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.members[i].data, "postmaster.pid"))
	if err != nil {
		h.t.Fatalf("pgtest: postmaster of %s: %v", h.members[i].name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 1 {
		h.t.Fatalf("pgtest: postmaster.pid of %s: %q", h.members[i].name, b)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		h.t.Fatalf("pgtest: kill postmaster %d of %s: %v", pid, h.members[i].name, err)
	}
	return pid
}

// DSN returns a multi-host key/value connection string for database db as
// role, listing every member, that connects only to the one accepting
// writes (target_session_attrs=read-write).
func (h *HA) DSN(db, role string) string {
	hosts := make([]string, len(h.members))
	ports := make([]string, len(h.members))
	for i, m := range h.members {
		hosts[i], ports[i] = "127.0.0.1", strconv.Itoa(m.port)
	}
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable target_session_attrs=read-write",
		strings.Join(hosts, ","), strings.Join(ports, ","), role, db)
}

// NewRoles is the package's NewRoles on the HA cluster, through the
// primary; every DSN in it lists every member.
func (h *HA) NewRoles(t testing.TB, serving string) Roles {
	t.Helper()
	return newRoles(t, serving, h.DSN, func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, h.DSN("postgres", "postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, sql)
		return err
	})
}

// Logs returns the end of every member's log, for a failing test.
func (h *HA) Logs() string {
	var b strings.Builder
	if h.etcd != nil {
		fmt.Fprintf(&b, "--- etcd log ---\n%s\n", tail(h.etcd.log, 20))
	}
	for _, m := range h.members {
		fmt.Fprintf(&b, "--- %s (Patroni and PostgreSQL) log ---\n%s\n", m.name, tail(m.proc.log, 40))
	}
	return b.String()
}

func (h *HA) getJSON(url string, v any) error {
	resp, err := h.http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// stop stops the Patroni members (each stops its PostgreSQL), kills any
// postmaster left behind, then stops etcd.
func (h *HA) stop() {
	if h.t.Failed() {
		h.t.Logf("HA cluster logs:\n%s", h.Logs())
	}
	for _, m := range h.members {
		m.proc.stop()
	}
	for _, m := range h.members {
		b, err := os.ReadFile(filepath.Join(m.data, "postmaster.pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		}
	}
	if h.etcd != nil {
		h.etcd.stop()
	}
}

// stop sends SIGTERM and kills the process if it is still there after 20 s.
func (p *haProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func mustFreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tail returns the last n lines of a log file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
