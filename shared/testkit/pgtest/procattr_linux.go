package pgtest

import "syscall"

// procAttr runs a child as cred (nil: as ourselves) and has the kernel kill it
// when the test process dies, so a crashed or killed test run does not leave
// a server behind.
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
}
