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
// it, as nginx notices from the read event of an idle connection. A caller that
// checks the same connection again and again keeps a Peeker instead (no allocation
// per check).
func Alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var p Peeker
	return p.Alive(rc)
}

// Peeker is Alive's check for one connection's raw socket, its callback made once:
// a pooled connection keeps one for its life, and checks cost one system call and no
// allocation.
type Peeker struct {
	fn    func(fd uintptr) bool
	ok    bool
	peeks int
}

// Peeks is how many checks the Peeker made (tests).
func (p *Peeker) Peeks() int { return p.peeks }

// Alive reports whether rc's socket has neither been closed by its peer nor been sent
// data nobody asked for. A nil rc (a connection without a socket) is alive.
func (p *Peeker) Alive(rc syscall.RawConn) bool {
	if rc == nil {
		return true
	}
	if p.fn == nil {
		p.fn = func(fd uintptr) bool {
			var b [1]byte
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			// EAGAIN: nothing to read and not closed. A read of 0 bytes is the peer's
			// close; data nobody asked for makes the connection unusable too.
			p.ok = err == syscall.EAGAIN
			return true
		}
	}
	p.ok = false
	p.peeks++
	err := rc.Read(p.fn)
	return err == nil && p.ok
}
