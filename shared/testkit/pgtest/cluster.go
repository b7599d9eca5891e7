package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// startTimeout bounds how long Start waits for the server to accept
// connections.
const startTimeout = 30 * time.Second

// maxSocketPath is the longest Unix-domain socket path Linux accepts
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// installHint is appended to every "binary not found" error.
const installHint = "install PostgreSQL 15 (apt-get install postgresql-15) and put its bin directory " +
	"(/usr/lib/postgresql/15/bin) on PATH"

// Cluster is a throwaway PostgreSQL server: its own data directory, listening
// on 127.0.0.1 at a free port, trusting every local connection as the
// superuser postgres. It is tuned for tests (no fsync) and must never hold
// data anyone wants to keep.
type Cluster struct {
	dir  string
	port int
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the server process has exited
	err  error         // the server's exit status, valid after done is closed

	// What CrashRestart needs to start the server again.
	postgres, data string
	cred           *syscall.Credential
	opts           Options
}

// Options configure StartWith and StartOnData.
type Options struct {
	// Durable turns synchronous_commit on: the cluster loses no
	// acknowledged commit when its server crashes (see CrashRestart).
	Durable bool
	// Settings are more server settings, "name=value" each, given to the
	// server after the package's own (so they win), e.g. archive_mode=on.
	Settings []string
}

// Start initialises a new cluster in dir (created if missing, must otherwise be
// empty) and starts a server on it. Stop removes dir. When the test process
// runs as root, the server runs as the OS user postgres, dir is handed to that
// user and, if dir lies under the system temporary directory, its ancestors
// there are made searchable (o+x) by that user.
func Start(dir string) (*Cluster, error) {
	return StartWith(dir, Options{})
}

// StartDurable is Start for a cluster that loses no acknowledged commit
// when its server crashes (synchronous_commit on), for tests that crash it
// with CrashRestart.
func StartDurable(dir string) (*Cluster, error) {
	return StartWith(dir, Options{Durable: true})
}

// StartWith is Start with options.
func StartWith(dir string, opts Options) (*Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pgtest: cluster dir: %w", err)
	}
	initdb, err := findBinary("initdb")
	if err != nil {
		return nil, err
	}
	postgres, err := findBinary("postgres")
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	if err := prepareDir(dir, cred); err != nil {
		return nil, err
	}
	c, err := initAndStart(dir, initdb, postgres, cred, opts)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// StartOnData starts a server, without initdb, on the data directory
// dir/data that the caller put there: a base backup restored into a
// directory made by ServerDir, say, with a recovery.signal and the
// recovery settings in opts. It returns once the server accepts
// connections, which may be while it still recovers (a hot standby). Stop
// removes dir.
func StartOnData(dir string, opts Options) (*Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pgtest: cluster dir: %w", err)
	}
	postgres, err := findBinary("postgres")
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		return nil, fmt.Errorf("pgtest: no data directory in %s: %w", dir, err)
	}
	return startWithRetries(dir, postgres, cred, opts)
}

// initAndStart runs initdb in dir and starts a server on the new cluster.
func initAndStart(dir, initdb, postgres string, cred *syscall.Credential, opts Options) (*Cluster, error) {
	data := filepath.Join(dir, "data")
	initCmd := exec.Command(initdb, "-D", data, "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initCmd.Dir = dir
	initCmd.Env = serverEnv()
	initCmd.SysProcAttr = procAttr(cred)
	if out, err := initCmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	return startWithRetries(dir, postgres, cred, opts)
}

// startWithRetries starts a server on dir/data at a free port.
func startWithRetries(dir, postgres string, cred *syscall.Credential, opts Options) (*Cluster, error) {
	// A free port can be taken by someone else between our probe and the
	// server's bind, so try a few.
	var lastErr error
	for range 3 {
		c := &Cluster{dir: dir, postgres: postgres, data: filepath.Join(dir, "data"), cred: cred, opts: opts}
		err := c.startServer(0)
		if err == nil {
			return c, nil
		}
		lastErr = err
		if !errors.Is(err, errExited) {
			break
		}
	}
	return nil, lastErr
}

// errExited marks a server that exited before accepting connections.
var errExited = errors.New("server exited during startup")

// startServer runs postgres on port (a fresh free one when 0) and waits
// until it accepts connections.
func (c *Cluster) startServer(port int) error {
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return err
		}
	}
	sockDir := filepath.Join(c.dir, "s")
	if err := os.MkdirAll(sockDir, 0o700); err != nil {
		return fmt.Errorf("pgtest: socket dir: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(sockDir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return fmt.Errorf("pgtest: socket dir: %w", err)
		}
	}
	if len(sockDir)+len("/.s.PGSQL.65535") > maxSocketPath {
		sockDir = "" // too long for a socket path: TCP only
	}
	logPath := filepath.Join(c.dir, "postgres.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pgtest: server log: %w", err)
	}
	defer logFile.Close() // the child holds its own copy of the descriptor

	syncCommit := "off"
	if c.opts.Durable {
		syncCommit = "on"
	}
	args := []string{"-D", c.data,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + sockDir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=" + syncCommit,
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "shared_buffers=32MB",
	}
	for _, setting := range c.opts.Settings {
		args = append(args, "-c", setting)
	}
	cmd := exec.Command(c.postgres, args...)
	cmd.Dir = c.dir
	cmd.Env = serverEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = procAttr(c.cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	c.port, c.cmd, c.log, c.done, c.err = port, cmd, logPath, make(chan struct{}), nil
	done := c.done
	go func() {
		c.err = cmd.Wait()
		close(done)
	}()
	if err := c.waitReady(); err != nil {
		c.kill()
		return err
	}
	return nil
}

// CrashRestart stops the server at once, as pg_ctl stop -m immediate does
// (SIGQUIT: no checkpoint, every session cut), and starts it again on the
// same port; it recovers from its WAL as after a crash. fsync is off, so
// this is a crash of the server, not of the machine: a cluster from
// StartDurable loses no acknowledged commit.
func (c *Cluster) CrashRestart() error {
	c.Crash()
	return c.Restart()
}

// Crash stops the server at once, as CrashRestart does, and leaves it down
// until Restart.
func (c *Cluster) Crash() { c.kill() }

// Restart starts a crashed server again on the same port.
func (c *Cluster) Restart() error {
	var err error
	for range 50 { // the port may take a moment to be free again
		if err = c.startServer(c.port); err == nil || !errors.Is(err, errExited) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// waitReady polls the server until it accepts a connection, exits or the
// start timeout passes.
func (c *Cluster) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-c.done:
			return fmt.Errorf("pgtest: postgres on port %d: %w (%v)\nserver log:\n%s",
				c.port, errExited, c.err, c.logTail()) //nolint:errorlint // c.err, the exit status, is detail and may be nil (exit 0)
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres on port %d did not accept connections within %s: %w\nserver log:\n%s",
				c.port, startTimeout, err, c.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// DSN returns a libpq key/value connection string for database db, as
// the superuser postgres.
func (c *Cluster) DSN(db string) string {
	return c.DSNAs(db, "postgres")
}

// DSNAs returns a libpq key/value connection string for database db as
// role (every local connection is trusted: no password).
func (c *Cluster) DSNAs(db, role string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", c.port, role, db)
}

// Stop shuts the server down immediately (no checkpoint: the data is thrown
// away) and removes the cluster directory.
func (c *Cluster) Stop() error {
	c.kill()
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("pgtest: remove cluster dir: %w", err)
	}
	return nil
}

// kill asks the server for an immediate shutdown (SIGQUIT) and, if it is
// still running after a few seconds, kills it.
func (c *Cluster) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.done:
		return
	case <-time.After(5 * time.Second):
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// Log returns the server's log so far (or why it cannot be read).
func (c *Cluster) Log() string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", c.log, err)
	}
	return string(b)
}

// logTail returns the last lines of the server log for error messages.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", c.log, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// findBinary looks name up on PATH, then in the Debian location of
// PostgreSQL 15.
func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/lib/postgresql/15/bin", name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("pgtest: %q not found on PATH or in /usr/lib/postgresql/15/bin: %s", name, installHint)
}

// serverCredential returns the OS user the server runs as: nil (the current
// user) unless we are root, which PostgreSQL refuses to run as.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, so the server must run as OS user postgres: %w; %s",
			err, installHint)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: uid of postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: gid of postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// ServerDir creates dir, which must not exist or be empty, for the OS
// user the clusters' servers run as (see Start): a WAL archive, a base
// backup's target, a cluster directory for StartOnData.
func ServerDir(dir string) error {
	cred, err := serverCredential()
	if err != nil {
		return err
	}
	return prepareDir(dir, cred)
}

// Command returns a command that runs program name (looked up as the
// server binaries are: on PATH, then in PostgreSQL 15's bin directory) as
// the OS user the servers run as, in their environment and in /, so that
// what it writes belongs to that user (pg_basebackup, pg_verifybackup, a
// copy of a base backup).
func Command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	bin, err := findBinary(name)
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = "/"
	cmd.Env = serverEnv()
	cmd.SysProcAttr = procAttr(cred)
	return cmd, nil
}

// prepareDir creates dir, checks that it is empty and, when the server runs as
// another user, gives it to that user.
func prepareDir(dir string, cred *syscall.Credential) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pgtest: cluster dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("pgtest: cluster dir: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("pgtest: cluster dir %s is not empty", dir)
	}
	if cred == nil {
		return nil
	}
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("pgtest: hand cluster dir to postgres: %w", err)
	}
	return makeSearchable(dir)
}

// makeSearchable lets other users traverse the ancestors of dir that lie
// inside the system temporary directory (t.TempDir creates them 0700), so the
// postgres user can reach dir. Ancestors elsewhere are left alone.
func makeSearchable(dir string) error {
	tmp, err := filepath.Abs(os.TempDir())
	if err != nil {
		return fmt.Errorf("pgtest: temp dir: %w", err)
	}
	for p := filepath.Dir(dir); strings.HasPrefix(p, tmp+string(filepath.Separator)); p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgtest: cluster dir ancestor: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("pgtest: make %s searchable: %w", p, err)
			}
		}
	}
	return nil
}

// serverEnv is the environment of initdb and postgres: ours, minus libpq and
// locale variables that would change their behaviour.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
