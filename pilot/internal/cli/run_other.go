//go:build !linux

package cli

import "os/exec"

// watchChild reports the command's exit by closing exited, after reaping
// it (reap returns how it ended). Without waitid(2) spike does not see the
// command stop, so it does not stop with it: a command stopped by Ctrl-Z
// stays stopped until continued (fg sends SIGCONT to spike, which passes
// it on).
func (jc jobControl) watchChild(child *exec.Cmd, _ chan<- struct{}) (exited <-chan struct{}, reap func() error) {
	done := make(chan struct{})
	var err error
	go func() {
		err = child.Wait()
		close(done)
	}()
	return done, func() error { return err }
}
