// Package proctest runs SPIKE's programs as real OS processes in tests:
// it builds them, starts them with a given environment, waits for them to
// listen, and kills, stops or restarts them.
package proctest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Build builds the Go packages (import paths from the workspace) into dir.
func Build(dir string, pkgs ...string) error {
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	return nil
}

// Process is a program running as a real OS process. Its output goes to a
// log file that the test prints when it fails.
type Process struct {
	t    testing.TB
	bin  string
	env  []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts bin with exactly env (nothing inherited) and kills it when
// the test ends.
func Start(t testing.TB, bin string, env []string) *Process {
	t.Helper()
	p := &Process{t: t, bin: bin, env: env, log: filepath.Join(t.TempDir(), filepath.Base(bin)+".log")}
	p.Restart()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s log:\n%s", filepath.Base(bin), p.LogTail())
		}
	})
	return p
}

// Restart starts the program again after Kill or Stop.
func (p *Process) Restart() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	p.cmd = exec.Command(p.bin)
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// Die with the test process, even if it crashes.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.bin, err)
	}
	done := make(chan struct{})
	p.done = done
	go func() { _ = p.cmd.Wait(); close(done) }()
}

// Kill stops the process without warning, as a crash would.
func (p *Process) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *Process) Stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.t.Fatalf("%s did not stop on SIGTERM", p.bin)
	}
}

// LogTail returns the last lines the program logged.
func (p *Process) LogTail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// WaitListening waits until something accepts TCP connections on addr,
// failing the test if the process exits first or 30 seconds pass.
func (p *Process) WaitListening(addr string) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.t.Fatalf("%s exited before listening on %s:\n%s", p.bin, addr, p.LogTail())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("%s is not listening on %s after 30s:\n%s", p.bin, addr, p.LogTail())
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
