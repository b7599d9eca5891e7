//go:build unix && !linux

package pgtest

import "syscall"

// procAttr runs a child as cred (nil: as ourselves). Outside Linux there is no
// parent-death signal: a killed test run may leave its server running.
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
