package netutil

import (
	"syscall"
	"unsafe"
)

// RawRead and RawWrite call read(2) and write(2) on a non-blocking socket without
// telling Go's scheduler: they never block, and an announced system call lets the
// runtime's monitor hand the worker's one P for Go code to another thread while it
// runs, two context switches for nothing. They return -1 and the errno on failure
// (EAGAIN when the socket has nothing to read or no room to write).
func RawRead(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
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
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
