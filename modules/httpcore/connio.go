package httpcore

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// connIO reads and writes a client connection through its raw descriptor. The system
// calls are made without telling the scheduler (they never block on a non-blocking
// socket), and deadlines are set from a coarse clock and only when they move by more
// than a second, so a busy connection does not reset its timers on every request.
//
// nginx also skips the read(2) that would return EAGAIN after a drained socket and
// waits for the next readiness event instead. Go's poller cannot do that: preparing a
// wait discards a readiness notification that arrived meanwhile, so the read must come
// first.
type connIO struct {
	nc       net.Conn
	rc       syscall.RawConn // nil: plain net.Conn I/O (tests with fake connections)
	rtimeout time.Duration   // how long a read may wait (the connection's current state)
	wtimeout time.Duration   // how long a write may wait for the client
	rdl      time.Time       // read deadline last set
}

func newConnIO(nc net.Conn) *connIO {
	cio := &connIO{nc: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			cio.rc = rc
		}
	}
	return cio
}

// setReadTimeout arms the read deadline for the next wait. A deadline already set within
// a tenth of the timeout (at most a second) of the new one is kept.
func (c *connIO) setReadTimeout(d time.Duration) {
	c.rtimeout = d
	dl := coarseNow().Add(d)
	tol := min(d/10, time.Second)
	if diff := dl.Sub(c.rdl); diff > tol || diff < -tol {
		c.rdl = dl
		c.nc.SetReadDeadline(dl)
	}
}

func (c *connIO) Read(p []byte) (int, error) {
	if c.rc == nil {
		return c.nc.Read(p)
	}
	var n int
	var err error
	rerr := c.rc.Read(func(fd uintptr) bool {
		for {
			n, err = rawRead(fd, p)
			if err != syscall.EINTR {
				break
			}
		}
		if err == syscall.EAGAIN {
			n, err = 0, nil
			return false
		}
		return true
	})
	if n < 0 {
		n = 0
	}
	if rerr != nil {
		return n, rerr
	}
	if err != nil {
		return n, err
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *connIO) Write(p []byte) (int, error) {
	if c.rc == nil {
		c.nc.SetWriteDeadline(coarseNow().Add(c.wtimeout))
		return c.nc.Write(p)
	}
	written := 0
	var err error
	waited := false
	werr := c.rc.Write(func(fd uintptr) bool {
		for written < len(p) {
			n, e := rawWrite(fd, p[written:])
			if n > 0 {
				written += n
			}
			switch e {
			case nil:
			case syscall.EINTR:
			case syscall.EAGAIN:
				// The client is slow: from now on it has send_timeout to take more.
				waited = true
				c.nc.SetWriteDeadline(coarseNow().Add(c.wtimeout))
				return false
			default:
				err = e
				return true
			}
		}
		return true
	})
	if werr != nil {
		return written, werr
	}
	if waited && err == nil {
		// Once expired, the deadline would fail the next write before it starts, on a
		// keepalive connection idle for longer than send_timeout.
		c.nc.SetWriteDeadline(time.Time{})
	}
	return written, err
}

// A coarse clock for deadlines and idle times: reading the time costs more than a
// request's worth of parsing on some virtual machines.
var (
	coarseOnce sync.Once
	coarseNs   atomic.Int64
)

const coarseTick = 10 * time.Millisecond

func coarseNow() time.Time {
	coarseOnce.Do(func() {
		coarseNs.Store(time.Now().UnixNano())
		go func() {
			for {
				time.Sleep(coarseTick)
				coarseNs.Store(time.Now().UnixNano())
			}
		}()
	})
	return time.Unix(0, coarseNs.Load())
}

// rawRead and rawWrite call read(2) and write(2) without telling the scheduler: on a
// non-blocking socket they never block, and announcing a system call would let the
// runtime's monitor hand the one P for Go code to another thread mid-request.
func rawRead(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func rawWrite(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
