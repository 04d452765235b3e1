package netutil

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Dial connects to a backend. An address that is an IP literal and a port ("127.0.0.1:6379",
// "[::1]:6379") is dialled the way nginx does it: a non-blocking socket, connect, and a
// second connect once the socket is writable to learn the outcome. net.Dialer does more
// per connection, which a backend dialled for every request (a redis upstream with
// keepalive 0, a cosocket that is not pooled) pays each time: a goroutine watching the
// context whenever there is a timeout, and getpeername and getsockname calls to fill in
// addresses nobody reads. Names to resolve and unix sockets go through net.Dialer.
// Connections carry no TCP keepalive probes, as nginx's upstream connections.
//
// timeout bounds the connect (0: none beyond ctx's deadline); ctx cancels it.
func Dial(ctx context.Context, network, addr string, timeout time.Duration) (net.Conn, error) {
	if network == "tcp" || network == "tcp4" || network == "tcp6" {
		if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Zone() == "" &&
			(network == "tcp" || (network == "tcp4") == ap.Addr().Is4()) {
			return dialAddrPort(ctx, ap, timeout)
		}
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	return d.DialContext(ctx, network, addr)
}

// aLongTimeAgo is a deadline in the past: it wakes a pending wait at once.
var aLongTimeAgo = time.Unix(1, 0)

func dialAddrPort(ctx context.Context, ap netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	raddr := net.TCPAddrFromAddrPort(ap)
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: raddr, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, opErr(err)
	}
	var sa unix.Sockaddr
	family := unix.AF_INET6
	if a := ap.Addr(); a.Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, opErr(os.NewSyscallError("socket", err))
	}
	// As net.Dialer: a request written in several pieces is not held back by Nagle.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return nil, opErr(os.NewSyscallError("setsockopt", err))
	}
	switch err := unix.Connect(fd, sa); err {
	case nil, unix.EINPROGRESS, unix.EINTR:
	default:
		unix.Close(fd)
		return nil, opErr(os.NewSyscallError("connect", err))
	}
	// A non-blocking descriptor handed to os.NewFile joins Go's poller, so reads, writes
	// and deadlines park the goroutine as a net.Conn's do.
	f := os.NewFile(uintptr(fd), "tcp "+raddr.String())
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, opErr(err)
	}
	c := &tcpConn{f: f, rc: rc, raddr: raddr}
	c.rd.readFn, c.wr.writeFn = c.rd.read, c.wr.write
	deadline, hasDeadline := ctx.Deadline()
	if timeout > 0 {
		if d := time.Now().Add(timeout); !hasDeadline || d.Before(deadline) {
			deadline, hasDeadline = d, true
		}
	}
	if hasDeadline {
		f.SetWriteDeadline(deadline)
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(aLongTimeAgo) })
		defer stop()
	}
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		// connect again: 0 or EISCONN once established, EALREADY while the handshake
		// runs, and the connection's error if it failed.
		switch err := unix.Connect(int(fd), sa); err {
		case nil, unix.EISCONN:
			return true
		case unix.EALREADY, unix.EINPROGRESS, unix.EINTR:
			return false
		default:
			cerr = os.NewSyscallError("connect", err)
			return true
		}
	})
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		f.Close()
		if err := ctx.Err(); err != nil {
			werr = err
		} else if errors.Is(werr, os.ErrDeadlineExceeded) {
			werr = os.ErrDeadlineExceeded
		}
		return nil, opErr(werr)
	}
	if hasDeadline {
		f.SetWriteDeadline(time.Time{})
	}
	return c, nil
}

// tcpConn is a connection made by Dial: an *os.File in Go's poller, with a net.Conn's
// errors and addresses. Reads and writes are RawRead and RawWrite through the file's
// raw connection, which waits in the poller (with the deadlines) when they would
// block: unlike the file's own Read and Write, they do not announce a system call, so
// Go's monitor does not hand the worker's P to another thread while a write to a
// backend wakes it.
type tcpConn struct {
	f     *os.File
	rc    syscall.RawConn
	raddr *net.TCPAddr
	rd    rawOp // under the file's read lock
	wr    rawOp // under its write lock
}

// rawOp is the state of one read or write, with its callback made once (a closure
// per call would be an allocation per call).
type rawOp struct {
	p       []byte
	n       int
	errno   error
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

func (op *rawOp) read(fd uintptr) bool {
	for {
		n, err := RawRead(fd, op.p)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		op.n, op.errno = max(n, 0), err
		return true
	}
}

func (op *rawOp) write(fd uintptr) bool {
	for op.n < len(op.p) {
		n, err := RawWrite(fd, op.p[op.n:])
		if n > 0 {
			op.n += n
		}
		switch err {
		case nil, syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			op.errno = err
			return true
		}
	}
	return true
}

func (c *tcpConn) Read(b []byte) (int, error) {
	n, err := c.io("read", &c.rd, b, false)
	if err == nil && n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, err
}

func (c *tcpConn) Write(b []byte) (int, error) { return c.io("write", &c.wr, b, true) }

// io runs one read or write through the raw connection.
func (c *tcpConn) io(name string, op *rawOp, b []byte, write bool) (int, error) {
	op.p, op.n, op.errno = b, 0, nil
	var err error
	if write {
		err = c.rc.Write(op.writeFn)
	} else {
		err = c.rc.Read(op.readFn)
	}
	n, errno := op.n, op.errno
	op.p = nil
	switch {
	case err != nil:
		return n, c.err(name, waitErr(err))
	case errno != nil:
		return n, c.err(name, os.NewSyscallError(name, errno))
	}
	return n, nil
}

func (c *tcpConn) Close() error { return c.err("close", c.f.Close()) }

// LocalAddr asks the kernel: it is rarely wanted, so it is not fetched at connect.
func (c *tcpConn) LocalAddr() net.Addr {
	var la net.Addr = &net.TCPAddr{}
	c.control(func(fd int) error {
		sa, err := unix.Getsockname(fd)
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			la = &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
		case *unix.SockaddrInet6:
			la = &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
		}
		return err
	})
	return la
}

func (c *tcpConn) RemoteAddr() net.Addr { return c.raddr }

func (c *tcpConn) SetDeadline(t time.Time) error {
	return c.err("set", c.f.SetDeadline(t))
}

func (c *tcpConn) SetReadDeadline(t time.Time) error {
	return c.err("set", c.f.SetReadDeadline(t))
}

func (c *tcpConn) SetWriteDeadline(t time.Time) error {
	return c.err("set", c.f.SetWriteDeadline(t))
}

// SyscallConn gives the descriptor to code that peeks or sets options (Alive).
func (c *tcpConn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// SetNoDelay is net.TCPConn's.
func (c *tcpConn) SetNoDelay(on bool) error {
	return c.setsockopt(unix.IPPROTO_TCP, unix.TCP_NODELAY, boolInt(on))
}

// SetKeepAlive is net.TCPConn's.
func (c *tcpConn) SetKeepAlive(on bool) error {
	return c.setsockopt(unix.SOL_SOCKET, unix.SO_KEEPALIVE, boolInt(on))
}

// SetReadBuffer is net.TCPConn's.
func (c *tcpConn) SetReadBuffer(n int) error {
	return c.setsockopt(unix.SOL_SOCKET, unix.SO_RCVBUF, n)
}

// SetWriteBuffer is net.TCPConn's.
func (c *tcpConn) SetWriteBuffer(n int) error {
	return c.setsockopt(unix.SOL_SOCKET, unix.SO_SNDBUF, n)
}

func (c *tcpConn) setsockopt(level, opt, v int) error {
	return c.control(func(fd int) error {
		return os.NewSyscallError("setsockopt", unix.SetsockoptInt(fd, level, opt, v))
	})
}

func (c *tcpConn) control(fn func(fd int) error) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return c.err("raw-control", err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return c.err("raw-control", err)
	}
	return c.err("set", ferr)
}

// err turns an *os.File's errors into the ones a net.Conn returns, which callers
// already know: io.EOF as is, net.ErrClosed, and *net.OpError around the cause.
func (c *tcpConn) err(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if errors.Is(err, os.ErrClosed) {
		err = net.ErrClosed
	} else if pe, ok := err.(*fs.PathError); ok {
		err = pe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Addr: c.raddr, Err: err}
}

// waitErr is what a raw connection's wait returned: its deadline's timeout as it is,
// anything else (the file closed under the call) os.ErrClosed.
func waitErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return os.ErrClosed
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// DialStart begins a non-blocking TCP connection to addr, an "ip:port" (ok false
// for anything else: a name to resolve, a zone), for a caller that waits for the
// socket to be writable itself (an event loop's epoll set) and then calls
// DialFinish, or closes fd with unix.Close to give up. Its system calls are raw (see
// RawRead): a connect over loopback runs the handshake in the call, long enough for
// Go's monitor to hand the worker's P to another thread when it is announced (a
// short-lived cosocket per request: 1.4 of the monitor's sleeps and 0.2 futex calls
// per request came with them).
func DialStart(addr string) (fd int, ap netip.AddrPort, ok bool, err error) {
	ap, perr := netip.ParseAddrPort(addr)
	if perr != nil || ap.Addr().Zone() != "" {
		return -1, ap, false, nil
	}
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	var sa unsafe.Pointer
	var salen uintptr
	family := unix.AF_INET6
	port := ap.Port()
	if a := ap.Addr(); a.Is4() {
		family = unix.AF_INET
		sa4.Family = unix.AF_INET
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		sa4.Addr = a.As4()
		sa, salen = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	} else {
		sa6.Family = unix.AF_INET6
		p := (*[2]byte)(unsafe.Pointer(&sa6.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		sa6.Addr = a.As16()
		sa, salen = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, ap, true, opErr(os.NewSyscallError("socket", e))
	}
	fd = int(r)
	one := int32(1)
	if _, _, e := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0); e != 0 {
		unix.Close(fd)
		return -1, ap, true, opErr(os.NewSyscallError("setsockopt", e))
	}
	switch _, _, e := syscall.RawSyscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(sa), salen); e {
	case 0, unix.EINPROGRESS, unix.EINTR:
	default:
		unix.Close(fd)
		return -1, ap, true, opErr(os.NewSyscallError("connect", e))
	}
	return fd, ap, true, nil
}

// DialNow is DialFinish for a connection that may be established already: over
// loopback the handshake runs in DialStart's connect, and a caller that finds it done
// need not wait for the socket to be writable (for a cosocket per request, a park
// and a resume of the request: ~9k instructions). ok false: still in progress, or
// failed; the caller waits and DialFinish tells which. One getpeername, which fails
// with ENOTCONN until the handshake is over.
func DialNow(fd int, ap netip.AddrPort) (c net.Conn, ok bool) {
	var rsa unix.RawSockaddrAny
	n := uint32(unsafe.Sizeof(rsa))
	if _, _, e := syscall.RawSyscall(syscall.SYS_GETPEERNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n))); e != 0 {
		return nil, false
	}
	return newLazyConn(fd, ap), true
}

// DialFinish makes the connection DialStart began a net.Conn once its socket is
// writable (or failed: the connection's error then, and fd is closed). The caller's
// event loop does its I/O: it joins Go's poller only if a caller blocks on it
// (lazyConn).
func DialFinish(fd int, ap netip.AddrPort) (net.Conn, error) {
	var soErr int32
	n := uint32(4)
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_ERROR, uintptr(unsafe.Pointer(&soErr)), uintptr(unsafe.Pointer(&n)), 0)
	var err error
	switch {
	case e != 0:
		err = e
	case soErr != 0:
		err = syscall.Errno(soErr)
	}
	if err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: os.NewSyscallError("connect", err)}
	}
	return newLazyConn(fd, ap), nil
}
