package pgtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// bouncerHint is appended to "pgbouncer not found".
const bouncerHint = "install it (apt-get install pgbouncer; deploy/local/check-deps.sh does as root)"

// BouncerOptions configure StartBouncer.
type BouncerOptions struct {
	// PoolSize is how many server connections pgbouncer opens per
	// database and user (default_pool_size); small, so that the
	// transactions of many clients interleave on few server sessions.
	PoolSize int
	// Users may connect (auth_type trust: the cluster trusts them too).
	Users []string
}

// Bouncer is a throwaway pgbouncer in transaction mode in front of a
// cluster, listening on 127.0.0.1 at a free port.
type Bouncer struct {
	t    testing.TB
	bin  string
	ini  string
	port int
	log  string
	cred *syscall.Credential
	cmd  *exec.Cmd
	done chan struct{}
}

// StartBouncer starts pgbouncer in transaction mode in front of the
// server of dsn (any database on it, by the database name a client asks
// for) and stops it when the test ends. Missing pgbouncer fails the test.
// As root, it runs as the OS user postgres, as the cluster does.
func StartBouncer(t testing.TB, dsn string, opts BouncerOptions) *Bouncer {
	t.Helper()
	bin, err := findBouncer()
	if err != nil {
		t.Fatal(err)
	}
	backend, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgtest: bouncer backend: %v", err)
	}
	cred, err := serverCredential()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// pgbouncer, as another user, reads its files from here.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := makeSearchable(dir); err != nil {
		t.Fatal(err)
	}
	var users strings.Builder
	for _, u := range opts.Users {
		fmt.Fprintf(&users, "%q \"\"\n", u)
	}
	auth := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(auth, []byte(users.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	poolSize := max(opts.PoolSize, 1)
	b := &Bouncer{t: t, bin: bin, ini: filepath.Join(dir, "pgbouncer.ini"), log: filepath.Join(dir, "pgbouncer.log"), cred: cred}
	var lastErr error
	for range 3 { // a free port may be taken before pgbouncer binds it
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ini := fmt.Sprintf(`[databases]
* = host=%s port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
server_lifetime = 3600
ignore_startup_parameters =
`, backend.Host, backend.Port, port, auth, poolSize)
		if err := os.WriteFile(b.ini, []byte(ini), 0o644); err != nil {
			t.Fatal(err)
		}
		b.port = port
		if lastErr = b.start(); lastErr == nil {
			t.Cleanup(b.stop)
			return b
		}
	}
	t.Fatal(lastErr)
	return nil
}

// Port is the port pgbouncer listens on.
func (b *Bouncer) Port() int { return b.port }

// DSN returns dsn (a key/value string) pointed at pgbouncer instead of
// the cluster.
func (b *Bouncer) DSN(dsn string) string {
	var out []string
	for f := range strings.FieldsSeq(dsn) {
		switch {
		case strings.HasPrefix(f, "host="):
			f = "host=127.0.0.1"
		case strings.HasPrefix(f, "port="):
			f = "port=" + strconv.Itoa(b.port)
		}
		out = append(out, f)
	}
	return strings.Join(out, " ")
}

// Restart stops pgbouncer and starts it again on the same port, dropping
// every server connection it held.
func (b *Bouncer) Restart() {
	b.t.Helper()
	b.stop()
	var err error
	for range 50 { // the port may take a moment to be free again
		if err = b.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatal(err)
}

// LogTail returns the end of pgbouncer's log.
func (b *Bouncer) LogTail() string {
	data, err := os.ReadFile(b.log)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", b.log, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

func (b *Bouncer) start() error {
	logFile, err := os.OpenFile(b.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pgtest: pgbouncer log: %w", err)
	}
	defer logFile.Close() // the child holds its own copy
	cmd := exec.Command(b.bin, b.ini)
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = procAttr(b.cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start pgbouncer: %w", err)
	}
	b.cmd, b.done = cmd, make(chan struct{})
	done := b.done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(b.port), time.Second)
		if err == nil {
			return conn.Close()
		}
		select {
		case <-done:
			return fmt.Errorf("pgtest: pgbouncer on port %d: %w\nlog:\n%s", b.port, errExited, b.LogTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.stop()
			return fmt.Errorf("pgtest: pgbouncer on port %d did not listen within %s\nlog:\n%s", b.port, startTimeout, b.LogTail())
		}
	}
}

// stop ends pgbouncer at once (SIGTERM: immediate shutdown) and kills it
// if it lingers.
func (b *Bouncer) stop() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}

// findBouncer looks pgbouncer up on PATH, then where Debian installs it.
func findBouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", errors.New("pgtest: pgbouncer not found on PATH or in /usr/sbin: " + bouncerHint)
}
