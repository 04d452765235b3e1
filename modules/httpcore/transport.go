package httpcore

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/spindle-server/spindle/internal/netutil"
	"golang.org/x/sys/unix"
)

// transport is how a connection reaches its client. A netTransport serves a net.Conn
// with a goroutine of its own (test connections, listeners that are not TCP sockets);
// a loopTransport serves a socket owned by the worker's event loop, which reads request
// heads and runs non-blocking requests inline, as nginx does, and hands a request to a
// goroutine of its own the moment it has to wait.
type transport interface {
	io.Reader
	io.Writer
	// setReadTimeout sets how long the next reads may wait for the client.
	setReadTimeout(d time.Duration)
	// setWriteTimeout sets how long a write may wait for a slow client (send_timeout).
	setWriteTimeout(d time.Duration)
	// sendFile sends a file section with sendfile(2); canSendFile says whether it may.
	sendFile(f *os.File, offset, length int64) (int64, error)
	canSendFile() bool
	remoteAddr() string
	localAddr() string
	// wakeIdle makes a read waiting for the next request give up (end of a drain).
	wakeIdle()
	// expire makes every wait fail from now on (worker_shutdown_timeout, Close).
	expire()
	// linger shuts the sending side and drops what the client still sends, for up to
	// d, so that unread data does not turn the close into a reset.
	linger(d time.Duration)
	close() error
	// netConn gives the connection to a hijacker as a net.Conn.
	netConn() (net.Conn, error)
}

// errWouldBlock is returned by a loop-owned transport's Read when no data is waiting
// for a request head: the loop waits for the next readiness event instead.
var errWouldBlock = errors.New("would block")

// netTransport reads and writes a net.Conn. For a real socket the system calls go
// through its RawConn without telling the scheduler (they never block on a
// non-blocking socket), and deadlines come from a coarse clock and move only when they
// change by more than a tenth of the timeout, so that a busy connection does not reset
// its timers on every request.
type netTransport struct {
	nc       net.Conn
	rc       syscall.RawConn // nil: plain net.Conn I/O (tests with fake connections)
	wtimeout time.Duration
	rdl      time.Time // read deadline last set
	raddr    string
	laddr    string
}

func newNetTransport(nc net.Conn) *netTransport {
	t := &netTransport{nc: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			t.rc = rc
		}
	}
	return t
}

func (t *netTransport) setReadTimeout(d time.Duration) {
	dl := coarseNow().Add(d)
	tol := min(d/10, time.Second)
	if diff := dl.Sub(t.rdl); diff > tol || diff < -tol {
		t.rdl = dl
		t.nc.SetReadDeadline(dl)
	}
}

func (t *netTransport) setWriteTimeout(d time.Duration) { t.wtimeout = d }

func (t *netTransport) Read(p []byte) (int, error) {
	if t.rc == nil {
		return t.nc.Read(p)
	}
	var n int
	var err error
	rerr := t.rc.Read(func(fd uintptr) bool {
		for {
			n, err = netutil.RawRead(fd, p)
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

func (t *netTransport) Write(p []byte) (int, error) {
	if t.rc == nil {
		t.nc.SetWriteDeadline(coarseNow().Add(t.wtimeout))
		return t.nc.Write(p)
	}
	written := 0
	var err error
	waited := false
	werr := t.rc.Write(func(fd uintptr) bool {
		for written < len(p) {
			n, e := netutil.RawWrite(fd, p[written:])
			if n > 0 {
				written += n
			}
			switch e {
			case nil:
			case syscall.EINTR:
			case syscall.EAGAIN:
				// The client is slow: from now on it has send_timeout to take more.
				waited = true
				t.nc.SetWriteDeadline(coarseNow().Add(t.wtimeout))
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
		t.nc.SetWriteDeadline(time.Time{})
	}
	return written, err
}

func (t *netTransport) canSendFile() bool { return t.rc != nil }

// sendFile sends length bytes of f from offset to the socket with sendfile(2). Like
// Write, it waits for the socket when the client is slow, with send_timeout counted
// from the moment it had to wait. It returns how much was sent; fewer bytes than asked
// without an error means the file ended early.
func (t *netTransport) sendFile(f *os.File, offset, length int64) (int64, error) {
	fc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var written int64
	var serr error
	waited := false
	cerr := fc.Control(func(infd uintptr) {
		werr := t.rc.Write(func(outfd uintptr) bool {
			for written < length {
				n, e := sendfileOnce(outfd, infd, offset+written, length-written)
				if n > 0 {
					written += n
				}
				switch e {
				case nil:
					if n == 0 {
						return true // end of file
					}
				case syscall.EINTR:
				case syscall.EAGAIN:
					waited = true
					t.nc.SetWriteDeadline(coarseNow().Add(t.wtimeout))
					return false
				default:
					serr = e
					return true
				}
			}
			return true
		})
		if serr == nil {
			serr = werr
		}
	})
	if serr == nil {
		serr = cerr
	}
	if waited && serr == nil {
		t.nc.SetWriteDeadline(time.Time{})
	}
	return written, serr
}

// sendfileOnce makes one sendfile(2) call (the kernel caps one at about 2 GB).
func sendfileOnce(outfd, infd uintptr, offset, length int64) (int64, error) {
	off := offset
	n, err := syscall.Sendfile(int(outfd), int(infd), &off, int(min(length, 1<<30)))
	if n < 0 {
		n = 0
	}
	return int64(n), err
}

func (t *netTransport) remoteAddr() string {
	if t.raddr == "" {
		t.raddr = t.nc.RemoteAddr().String()
	}
	return t.raddr
}

func (t *netTransport) localAddr() string {
	if t.laddr == "" {
		t.laddr = t.nc.LocalAddr().String()
	}
	return t.laddr
}

func (t *netTransport) wakeIdle() { t.nc.SetReadDeadline(time.Unix(1, 0)) }

func (t *netTransport) expire() { t.nc.SetDeadline(time.Unix(1, 0)) }

func (t *netTransport) linger(d time.Duration) {
	if tc, ok := t.nc.(*net.TCPConn); ok {
		tc.CloseWrite()
		t.nc.SetReadDeadline(time.Now().Add(d))
		io.Copy(io.Discard, io.LimitReader(t.nc, 1<<20))
	}
}

func (t *netTransport) close() error { return t.nc.Close() }

func (t *netTransport) netConn() (net.Conn, error) { return t.nc, nil }

// The loop's system calls on connections (read and write: netutil.RawRead and
// RawWrite; accept4, epoll_ctl, epoll_wait without a timeout, close, setsockopt) are
// made without telling the scheduler: on non-blocking sockets they never block, and
// with a new connection per request, announced ones had the runtime's monitor hand
// the one P for Go code to another thread about once a request: switching threads
// took 15% of the worker's CPU under Connection: close, 8% (its idle waits) after.

// rawClose closes a socket the loop owns (without SO_LINGER, close never waits).
func rawClose(fd int) {
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
}

func rawEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// rawEpollWait fetches the events that are there, without waiting.
func rawEpollWait(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawSetsockoptInt(fd, level, opt, value int) {
	v := int32(value)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), 4, 0)
}

// The worker's clock, one goroutine for two jobs: a coarse time for deadlines and idle
// times (reading the time costs more than a request's worth of parsing on some
// virtual machines), refreshed every coarseTick, and the Date header's value, formatted
// when the second changes rather than per response (httpDate).
var (
	clockOnce sync.Once
	coarseNs  atomic.Int64
)

const coarseTick = 10 * time.Millisecond

func coarseNow() time.Time {
	clockOnce.Do(runClock)
	return time.Unix(0, coarseNs.Load())
}

// CoarseNow is the worker's coarse clock (refreshed every 10 ms), for other
// modules' idle times and expiries.
func CoarseNow() time.Time { return coarseNow() }

// coarseNanos is coarseNow as Unix nanoseconds, for the per-request deadlines and
// idle times kept as integers: building and adding a time.Time cost ~100
// instructions of each of a keepalive request's two head reads (callgrind).
func coarseNanos() int64 {
	clockOnce.Do(runClock)
	return coarseNs.Load()
}

// startClock starts the clock goroutine, if it is not running yet.
func startClock() { clockOnce.Do(runClock) }

func runClock() {
	now := time.Now()
	coarseNs.Store(now.UnixNano())
	updateDate(now)
	go func() {
		sec := now.Unix()
		for {
			time.Sleep(coarseTick)
			now := time.Now()
			coarseNs.Store(now.UnixNano())
			if now.Unix() != sec {
				sec = now.Unix()
				updateDate(now)
			}
		}
	}()
}
