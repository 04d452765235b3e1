package netutil

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lazyConn is a connection DialFinish made for an event loop that does its I/O: its
// socket joins Go's poller only when a caller blocks on it (a read or write that
// waits, a deadline), since nothing else needs it there. Joining costs a fcntl and
// an epoll_ctl, and leaving one more at the close: three of the fourteen system
// calls of a Lua request that connects to redis, asks one thing and closes.
type lazyConn struct {
	// peer is the remote address, made a net.TCPAddr only when asked for (an error, a
	// caller that blocks): most connections never need it, and it was an allocation
	// per connect.
	peer netip.AddrPort
	rc   lazyRaw

	mu     sync.Mutex
	fd     int
	closed bool
	pc     *tcpConn // in Go's poller, from the first blocking use
}

// lazyRaw is a lazyConn's syscall.RawConn: Control, and reads and writes whose
// function is done at the first call, need no poller.
type lazyRaw struct{ c *lazyConn }

func newLazyConn(fd int, peer netip.AddrPort) *lazyConn {
	c := &lazyConn{fd: fd, peer: peer}
	c.rc.c = c
	return c
}

// polled is c in Go's poller, from now on.
func (c *lazyConn) polled() (*tcpConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pc != nil {
		return c.pc, nil
	}
	if c.closed {
		return nil, os.ErrClosed
	}
	raddr := net.TCPAddrFromAddrPort(c.peer)
	f := os.NewFile(uintptr(c.fd), "tcp "+raddr.String())
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		c.closed = true
		return nil, err
	}
	pc := &tcpConn{f: f, rc: rc, raddr: raddr}
	pc.rd.readFn, pc.wr.writeFn = pc.rd.read, pc.wr.write
	c.pc = pc
	return pc, nil
}

func (c *lazyConn) opErr(op string, err error) error {
	if err == os.ErrClosed {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "tcp", Addr: net.TCPAddrFromAddrPort(c.peer), Err: err}
}

func (c *lazyConn) Read(b []byte) (int, error) {
	pc, err := c.polled()
	if err != nil {
		return 0, c.opErr("read", err)
	}
	return pc.Read(b)
}

func (c *lazyConn) Write(b []byte) (int, error) {
	pc, err := c.polled()
	if err != nil {
		return 0, c.opErr("write", err)
	}
	return pc.Write(b)
}

func (c *lazyConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	c.closed = true
	pc := c.pc
	c.mu.Unlock()
	if pc != nil {
		return pc.Close()
	}
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(c.fd), 0, 0)
	return nil
}

// LocalAddr asks the kernel, as tcpConn's.
func (c *lazyConn) LocalAddr() net.Addr {
	var la net.Addr = &net.TCPAddr{}
	c.rc.Control(func(fd uintptr) {
		switch sa, _ := unix.Getsockname(int(fd)); sa := sa.(type) {
		case *unix.SockaddrInet4:
			la = &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
		case *unix.SockaddrInet6:
			la = &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
		}
	})
	return la
}

func (c *lazyConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.peer) }

func (c *lazyConn) SetDeadline(t time.Time) error {
	pc, err := c.polled()
	if err != nil {
		return c.opErr("set", err)
	}
	return pc.SetDeadline(t)
}

func (c *lazyConn) SetReadDeadline(t time.Time) error {
	pc, err := c.polled()
	if err != nil {
		return c.opErr("set", err)
	}
	return pc.SetReadDeadline(t)
}

func (c *lazyConn) SetWriteDeadline(t time.Time) error {
	pc, err := c.polled()
	if err != nil {
		return c.opErr("set", err)
	}
	return pc.SetWriteDeadline(t)
}

// SyscallConn gives the descriptor without joining the poller (see lazyRaw).
func (c *lazyConn) SyscallConn() (syscall.RawConn, error) { return &c.rc, nil }

// Control runs fn with the descriptor, which stays open meanwhile.
func (r *lazyRaw) Control(fn func(fd uintptr)) error {
	c := r.c
	c.mu.Lock()
	if pc := c.pc; pc != nil {
		c.mu.Unlock()
		return pc.rc.Control(fn)
	}
	defer c.mu.Unlock()
	if c.closed {
		return os.ErrClosed
	}
	fn(uintptr(c.fd))
	return nil
}

// Read calls fn with the descriptor; only if fn asks to wait (false) does the
// connection join the poller to wait for it.
func (r *lazyRaw) Read(fn func(fd uintptr) bool) error {
	if done, err := r.once(fn); done || err != nil {
		return err
	}
	pc, err := r.c.polled()
	if err != nil {
		return err
	}
	return pc.rc.Read(fn)
}

// Write: see Read.
func (r *lazyRaw) Write(fn func(fd uintptr) bool) error {
	if done, err := r.once(fn); done || err != nil {
		return err
	}
	pc, err := r.c.polled()
	if err != nil {
		return err
	}
	return pc.rc.Write(fn)
}

// once calls fn without the poller, unless the connection is in it already.
func (r *lazyRaw) once(fn func(fd uintptr) bool) (done bool, err error) {
	c := r.c
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.pc != nil:
		return false, nil
	case c.closed:
		return true, os.ErrClosed
	}
	return fn(uintptr(c.fd)), nil
}
