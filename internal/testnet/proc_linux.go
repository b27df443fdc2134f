//go:build linux

package testnet

import "syscall"

// sysProcAttr puts each mirror in its own process group, so a terminal's
// Ctrl-C reaches only the testnet (which then stops every mirror once, in
// order), and asks the kernel to kill the mirror if the testnet process
// dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
