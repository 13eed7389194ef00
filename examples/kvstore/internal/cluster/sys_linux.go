package cluster

import "syscall"

// sysProcAttr puts a node in its own process group, so a Ctrl-C at the
// terminal reaches only the supervisor, which stops the nodes in order;
// and kills the node if the supervisor dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
