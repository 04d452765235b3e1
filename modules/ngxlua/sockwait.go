package ngxlua

import (
	"io"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/internal/netutil"
	"github.com/spindle-server/spindle/modules/httpcore"
	"golang.org/x/sys/unix"
)

// Cosocket I/O on the event loop (step 2 of docs/lua-engine.md): a receive or send
// first tries the socket without waiting, under the VM's lock; when the socket has
// nothing (EAGAIN), the run yields and the socket's descriptor goes into the event
// loop's epoll set (httpcore.Loop.Watch) with a timer for the timeout. The loop's
// leader goes on with the I/O when the socket is ready, and hands the results to
// the run (a parked request is resumed on the loop; others get them on their run's
// channel). Nothing waits on a goroutine. Connecting and TLS sockets wait as in step
// 1 (sockets of runs without a request too).

// sockWait is a wait of a cosocket on the loop; mu orders the loop's readiness
// callback, the timer and a cancellation: whichever comes first ends it.
type sockWait struct {
	mu     sync.Mutex
	over   bool
	lp     *httpcore.Loop
	id     int32
	tm     *time.Timer
	finish func([]any)
	drop   func() // at a cancellation: what the wait holds (a connecting socket)
}

// loop is the event loop sk's I/O may wait on, or nil: step 1's blocking I/O then.
func (sk *tcpSock) loop(ru *run) *httpcore.Loop {
	// raw is the socket's own (a TLS connection has none: crypto/tls reads it).
	if ru.r == nil || sk.isTLS || sk.raw == nil || sk.client {
		return nil
	}
	return ru.r.Loop()
}

// fd is the socket's descriptor.
func (sk *tcpSock) fd() int {
	fd := -1
	sk.raw.Control(func(u uintptr) { fd = int(u) })
	return fd
}

// room makes space in the buffer for a read and returns it.
func (sk *tcpSock) room() []byte {
	if sk.r > 0 && sk.r == sk.w {
		sk.r, sk.w = 0, 0
	}
	if sk.buf == nil {
		sk.buf = make([]byte, max(sk.conf.bufferSize, 4096))
	}
	if sk.w == len(sk.buf) {
		if sk.r > 0 {
			copy(sk.buf, sk.buf[sk.r:sk.w])
			sk.w -= sk.r
			sk.r = 0
		} else {
			nb := make([]byte, 2*len(sk.buf))
			copy(nb, sk.buf[:sk.w])
			sk.buf = nb
		}
	}
	return sk.buf[sk.w:]
}

// fillNow reads what the socket has, without waiting: got false when it has nothing
// yet; else more data in the buffer, or err (io.EOF at the end).
func (sk *tcpSock) fillNow() (got bool, err error) {
	raw := sk.raw
	if raw == nil {
		return true, io.EOF
	}
	buf := sk.room()
	n := 0
	var rerr error
	if cerr := raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = netutil.RawRead(fd, buf)
			if rerr != syscall.EINTR {
				return true
			}
		}
	}); cerr != nil {
		return true, cerr
	}
	switch {
	case rerr == syscall.EAGAIN:
		return false, nil
	case rerr != nil:
		return true, rerr
	case n == 0:
		return true, io.EOF
	}
	sk.w += n
	return true, nil
}

// writeNow writes what the socket takes of p without waiting: EAGAIN when it took
// less than all.
func (sk *tcpSock) writeNow(p string) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b := unsafe.Slice(unsafe.StringData(p), len(p))
	written := 0
	var werr error
	if cerr := sk.raw.Write(func(fd uintptr) bool {
		for written < len(b) {
			n, err := netutil.RawWrite(fd, b[written:])
			switch {
			case err == syscall.EINTR:
			case err != nil:
				werr = err
				return true
			default:
				written += n
			}
		}
		return true
	}); cerr != nil {
		return written, cerr
	}
	return written, werr
}

// receiveStep is a receive's attempt without waiting: done false when the socket
// has not given enough yet.
func (sk *tcpSock) receiveStep(rd reader) (res []any, done bool) {
	for {
		got, err := sk.fillNow()
		if !got {
			return nil, false
		}
		if res, done := rd(sk, err); done {
			sk.timedOut = false
			return res, true
		}
		if err != nil {
			return sk.readFailed(err), true
		}
	}
}

// waitLoop waits on lp for sk to be ready (for writing with write), then runs step
// on the loop's leader until it is done, or expire at the timeout; the results go to
// done. It runs with the VM locked (waitAsync's start).
func (sk *tcpSock) waitLoop(lp *httpcore.Loop, fd int, write bool, timeout time.Duration, step func() ([]any, bool), expire func() []any, done func([]any)) *sockWait {
	w := &sockWait{lp: lp}
	flag := &sk.reading
	if write {
		flag = &sk.writing
	}
	w.finish = func(res []any) {
		flag.Store(false)
		done(res)
	}
	var ready func()
	ready = func() {
		w.mu.Lock()
		if w.over {
			w.mu.Unlock()
			return
		}
		res, ok := step()
		if !ok {
			id, err := lp.Watch(fd, write, ready)
			if err == nil {
				w.id = id
				w.mu.Unlock()
				return
			}
			res = []any{nil, sockErr(err)}
		}
		w.over = true
		w.tm.Stop()
		w.mu.Unlock()
		w.finish(res)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	id, err := lp.Watch(fd, write, ready)
	if err != nil {
		w.over = true
		w.finish([]any{nil, sockErr(err)})
		return w
	}
	w.id = id
	sk.wait = w
	if timeout <= 0 {
		timeout = time.Hour
	}
	w.tm = time.AfterFunc(timeout, func() {
		w.mu.Lock()
		if w.over {
			w.mu.Unlock()
			return
		}
		w.over = true
		lp.Unwatch(w.id)
		res := expire()
		w.mu.Unlock()
		w.finish(res)
	})
	return w
}

// cancel ends the wait without results (its run is over, or its socket closes): the
// loop lets go of the descriptor before it is closed.
func (w *sockWait) cancel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.over {
		return
	}
	w.over = true
	w.lp.Unwatch(w.id)
	if w.tm != nil {
		w.tm.Stop()
	}
	if w.drop != nil {
		w.drop()
	}
}

// abort ends the wait with res, unless it is over.
func (w *sockWait) abort(res []any) {
	w.mu.Lock()
	if w.over {
		w.mu.Unlock()
		return
	}
	w.over = true
	w.lp.Unwatch(w.id)
	if w.tm != nil {
		w.tm.Stop()
	}
	if w.drop != nil {
		w.drop()
	}
	w.mu.Unlock()
	w.finish(res)
}

// readTimedOut is a receive's results at its timeout.
func (sk *tcpSock) readTimedOut() []any { return sk.readFailed(os.ErrDeadlineExceeded) }

// connectLoop connects sk to addr ("ip:port") on the event loop: the socket is
// writable once the handshake is over. ok false: addr needs step 1 (a name to
// resolve).
func (sk *tcpSock) connectLoop(s *luajit.State, ru *run, lp *httpcore.Loop, addr string, timeout time.Duration) (ok bool) {
	fd, ap, ok, err := netutil.DialStart(addr)
	if !ok {
		return false
	}
	failed := func(err error) []any {
		msg := sockErr(err)
		if msg == "timeout" {
			sk.logErr("lua tcp socket connect timed out, when connecting to %s", addr)
		} else {
			sk.logErr("lua tcp socket connect() to %s failed: %s", addr, msg)
		}
		return []any{nil, msg}
	}
	if err != nil {
		pushAll(s, failed(err))
		return true
	}
	sk.writing.Store(true)
	ru.waitAsync(s, func(done func([]any)) {
		w := sk.waitLoop(lp, fd, true, timeout, func() ([]any, bool) {
			conn, err := netutil.DialFinish(fd, ap)
			if err != nil {
				return failed(err), true
			}
			sk.mu.Lock()
			sk.conn = conn
			sk.mu.Unlock()
			if sc, ok := conn.(syscall.Conn); ok {
				sk.raw, _ = sc.SyscallConn()
			}
			return []any{1}, true
		}, func() []any {
			unix.Close(fd)
			return failed(os.ErrDeadlineExceeded)
		}, done)
		w.drop = func() { unix.Close(fd) }
	})
	return true
}
