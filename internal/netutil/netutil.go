// Package netutil holds socket helpers shared by the modules that keep connection
// pools to backends.
package netutil

import (
	"net"
	"syscall"
)

// Alive reports whether an idle connection is still usable: the peer has not closed
// it and sent nothing unasked. It peeks without waiting (one recv with MSG_PEEK), so
// a pooled connection the backend dropped is noticed before a request is written to
// it, as nginx notices from the read event of an idle connection.
func Alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: nothing to read and not closed. A read of 0 bytes is the peer's
		// close; data nobody asked for makes the connection unusable too.
		ok = err == syscall.EAGAIN
		return true
	})
	return ok
}
