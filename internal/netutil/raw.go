package netutil

import (
	"syscall"
	"unsafe"
)

// RawRead and RawWrite receive from and send on a non-blocking socket without
// telling Go's scheduler: they never block, and an announced system call lets the
// runtime's monitor hand the worker's one P for Go code to another thread while it
// runs, two context switches for nothing. They return -1 and the errno on failure
// (EAGAIN when the socket has nothing to read or no room to write).
//
// They are recvfrom(2) and sendto(2), as nginx's recv and send, not read(2) and
// write(2): those go through the file layer first (vfs_read, fdget_pos, the file
// permission hooks, sock_read_iter), which perf on redis_lua put at ~0.3 µs a
// request more than nginx's path, and a read that finds nothing took 515-594 ns
// against recvfrom's 486-514 here. MSG_NOSIGNAL: a send to a connection the peer
// reset fails with EPIPE and raises no SIGPIPE.
func RawRead(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// RawWrite: see RawRead.
func RawWrite(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
