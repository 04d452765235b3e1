package lua

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/spindle-server/spindle/internal/netutil"
)

// Reads and writes of plain (not TLS) cosockets go through the socket's raw
// connection, with system calls Go's scheduler is not told of (netutil.RawRead), so
// that the deadline is armed only when a call has to wait. Most calls
// do not: a send finds room in the socket buffer, and a receive is tried after the
// worker's other coroutines ran, when the answer is usually in. Arming a deadline
// costs a clock read and a runtime timer update per call (about 2% of a request
// through lua-resty-redis); nginx, likewise, adds a timer only when a call returns
// EAGAIN.

// sockIO is the state of one raw read or write, kept in the thread with the callbacks
// made for it once: a closure made per call would be an allocation per call.
type sockIO struct {
	t       *thread
	s       *tcpSock
	p       []byte
	timeout time.Duration
	n       int
	errno   error
	armed   bool

	readFn, writeFn func(fd uintptr) bool
}

// rawRead reads into p what the socket has, waiting at most timeout for something
// to arrive.
func (s *tcpSock) rawRead(t *thread, p []byte, timeout time.Duration) (int, error) {
	op := &t.sio
	if op.readFn == nil {
		op.readFn = op.read
	}
	op.t, op.s, op.p, op.timeout, op.n, op.errno, op.armed = t, s, p, timeout, 0, nil, false
	err := s.raw.Read(op.readFn)
	n, errno := op.n, op.errno
	if op.armed {
		s.conn.SetReadDeadline(time.Time{})
	}
	op.t, op.s, op.p = nil, nil, nil
	switch {
	case err != nil:
		return 0, ioWaitErr(err)
	case errno == os.ErrDeadlineExceeded:
		return 0, errno
	case errno != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func (op *sockIO) read(fd uintptr) bool {
	var errno error
	for {
		op.n, errno = netutil.RawRead(fd, op.p)
		if errno != syscall.EINTR {
			break
		}
	}
	if op.n < 0 {
		op.n = 0
	}
	if errno != syscall.EAGAIN {
		op.errno = errno
		return true
	}
	if !op.armed {
		op.armed = true
		if !op.s.arm(op.t, op.s.conn.SetReadDeadline, op.timeout) {
			op.errno = os.ErrDeadlineExceeded // the caller raises the kill
			return true
		}
	}
	return false
}

// rawWrite writes all of p, waiting at most timeout each time the socket buffer is
// full.
func (s *tcpSock) rawWrite(t *thread, p []byte, timeout time.Duration) (int, error) {
	op := &t.sio
	if op.writeFn == nil {
		op.writeFn = op.write
	}
	op.t, op.s, op.p, op.timeout, op.n, op.errno, op.armed = t, s, p, timeout, 0, nil, false
	err := s.raw.Write(op.writeFn)
	written, errno := op.n, op.errno
	if op.armed {
		s.conn.SetWriteDeadline(time.Time{})
	}
	op.t, op.s, op.p = nil, nil, nil
	switch {
	case err != nil:
		return written, ioWaitErr(err)
	case errno == os.ErrDeadlineExceeded:
		return written, errno
	case errno != nil:
		return written, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}
	}
	return written, nil
}

func (op *sockIO) write(fd uintptr) bool {
	for op.n < len(op.p) {
		n, e := netutil.RawWrite(fd, op.p[op.n:])
		if n > 0 {
			op.n += n
		}
		switch e {
		case nil, syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if !op.armed {
				op.armed = true
				if !op.s.arm(op.t, op.s.conn.SetWriteDeadline, op.timeout) {
					op.errno = os.ErrDeadlineExceeded
					return true
				}
			}
			return false
		}
		op.errno = e
		return true
	}
	return true
}

// arm sets the deadline of a call about to wait, unless t was killed: the kill sets
// a past deadline to interrupt the wait, which this must not undo. It reports false
// for a killed thread.
func (s *tcpSock) arm(t *thread, set func(time.Time) error, timeout time.Duration) bool {
	if t.killed.Load() {
		return false
	}
	set(time.Now().Add(timeout))
	// interrupt marks the thread killed before it sets its deadline: a kill that
	// came between the two loads sets the deadline after this.
	return !t.killed.Load()
}

// ioWaitErr turns what a raw connection's wait returns into a net.Conn's errors:
// the deadline's timeout as it is, anything else (the socket closed under the call)
// as net.ErrClosed.
func ioWaitErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return net.ErrClosed
}
