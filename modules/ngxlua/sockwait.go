package ngxlua

import (
	"io"
	"net"
	"os"
	"strings"
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
// nothing (EAGAIN), the run yields and the leader of the event loop goes on with the
// I/O when the socket is ready, handing the results to the run (a parked request is
// resumed there and then; others get them on their run's channel). Nothing waits on
// a goroutine. Connecting to a name and TLS sockets wait as in step 1 (sockets of
// runs without a request too).
//
// As nginx keeps a backend connection in its event loop, a connection stays in the
// loop's epoll set from its connect (or its first wait) until it is closed, pooled
// connections included (httpcore.Sock): a wait costs no epoll_ctl. Its timeout is a
// timer of the loop (httpcore.Timer): no runtime timer, no goroutine when it fires.
// And as nginx's rev->ready, a receive does not try a socket that was found dry and
// has not been reported readable since (loopbench: 0.54 reads that fail with EAGAIN
// per lua-resty-redis request before).

// sockWait is a wait of a cosocket on the loop, one per socket and direction, reused;
// mu orders the loop's readiness callback, the timer and a cancellation: whichever
// comes first ends it.
type sockWait struct {
	mu     sync.Mutex
	over   bool
	sk     *tcpSock
	write  bool
	ls     *httpcore.Sock
	tm     *httpcore.Timer
	step   func() ([]any, bool)
	expire func() []any
	done   func([]any) // the run's completion, from any goroutine
	here   func([]any) // the same, from the loop's readiness callback
	drop   func()      // at a cancellation: what the wait holds (a connecting socket)

	readyFn, timeoutFn func() // made once
}

// loop is the event loop sk's I/O may wait on, or nil: step 1's blocking I/O then.
func (sk *tcpSock) loop(ru *run) *httpcore.Loop {
	// raw is the socket's own (a TLS connection has none: crypto/tls reads it).
	if ru.r == nil || sk.isTLS || sk.raw == nil || sk.client {
		return nil
	}
	return ru.r.Loop()
}

// loopSock is sk's connection in lp's epoll set, registered at its first wait
// there; nil if epoll refuses it.
func (sk *tcpSock) loopSock(lp *httpcore.Loop) *httpcore.Sock {
	if sk.ls != nil {
		if sk.ls.Loop() == lp {
			return sk.ls
		}
		sk.ls.Close(false)
		sk.ls = nil
	}
	ls, err := lp.Register(sk.fd())
	if err != nil {
		return nil
	}
	sk.ls, sk.dry = ls, dryUnknown
	return ls
}

// dryUnknown: no read found the socket dry yet (sk.dry).
const dryUnknown = ^uint64(0)

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
		if n := max(sk.conf.bufferSize, 4096); n == defaultSockBuf {
			sk.bufp = sockBufs.Get().(*[]byte)
			sk.buf = *sk.bufp
		} else {
			sk.buf = make([]byte, n)
		}
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
	if ls := sk.ls; ls != nil {
		// The loop's socket is closed only after its waits are over (closeConn,
		// abortWaits): no lock of Go's poller needed.
		gen := ls.ReadGen()
		for {
			n, rerr = netutil.RawRead(uintptr(ls.FD()), buf)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN || rerr == nil && n > 0 && n < len(buf) && !ls.HungUp() {
			// Dry: another read would fail until the loop reports more.
			sk.dry = uint64(gen)
		}
	} else {
		var cerr error
		if n, rerr, cerr = rawReadNow(raw, buf); cerr != nil {
			return true, cerr
		}
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

// rawReadNow reads raw without waiting (a function of its own: variables its closure
// captures move to the heap, the loop's path in fillNow must not pay for them).
func rawReadNow(raw syscall.RawConn, buf []byte) (n int, rerr, cerr error) {
	cerr = raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = netutil.RawRead(fd, buf)
			if rerr != syscall.EINTR {
				return true
			}
		}
	})
	return n, rerr, cerr
}

// rawWriteNow writes b to raw without waiting (see rawReadNow).
func rawWriteNow(raw syscall.RawConn, b []byte) (written int, werr, cerr error) {
	cerr = raw.Write(func(fd uintptr) bool {
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
	})
	return written, werr, cerr
}

// writeNow writes what the socket takes of p without waiting: EAGAIN when it took
// less than all.
func (sk *tcpSock) writeNow(p string) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b := unsafe.Slice(unsafe.StringData(p), len(p))
	if ls := sk.ls; ls != nil {
		written := 0
		gen := ls.WriteGen()
		for written < len(b) {
			n, err := netutil.RawWrite(uintptr(ls.FD()), b[written:])
			switch {
			case err == syscall.EINTR:
			case err == syscall.EAGAIN:
				sk.wdry = uint64(gen)
				return written, err
			case err != nil:
				return written, err
			default:
				written += n
			}
		}
		return written, nil
	}
	written, werr, cerr := rawWriteNow(sk.raw, b)
	if cerr != nil {
		return written, cerr
	}
	return written, werr
}

// receiveStep is a receive's attempt without waiting: done false when the socket
// has not given enough yet.
func (sk *tcpSock) receiveStep(rd reader) (res []any, done bool) {
	for {
		if ls := sk.ls; ls != nil && sk.dry == uint64(ls.ReadGen()) && !ls.HungUp() {
			return nil, false
		}
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

// waitLoop waits on ls for sk to be ready (for writing with write), then runs step
// on the loop's leader until it is done, or expire at the timeout; the results go to
// done. It runs with the VM locked (waitAsync's start), ru's coroutine co waiting.
func (sk *tcpSock) waitLoop(ru *run, ls *httpcore.Sock, write bool, timeout time.Duration, step func() ([]any, bool), expire func() []any, done func([]any)) *sockWait {
	w := sk.rw
	if write {
		w = sk.ww
	}
	if w == nil || w.ls != ls {
		w = &sockWait{sk: sk, write: write, ls: ls}
		w.readyFn, w.timeoutFn = w.ready, w.timedOut
		w.tm = ls.Loop().NewTimer(w.timeoutFn)
		if write {
			sk.ww = w
		} else {
			sk.rw = w
		}
	}
	co := ru.starting
	if co.completeHere == nil {
		co.completeHere = func(res []any) { ru.e.completeHere(ru, co, res) }
	}
	w.mu.Lock()
	w.sk = sk // a pooled connection's wait, reused by its next user
	w.over, w.step, w.expire, w.done, w.here, w.drop = false, step, expire, done, co.completeHere, nil
	if timeout <= 0 {
		timeout = time.Hour
	}
	w.tm.Reset(timeout)
	for {
		gen := w.gen()
		if w.wait(gen) {
			break
		}
		// Readiness came since the socket was found dry: try again.
		if res, ok := step(); ok {
			w.over = true
			w.tm.Pause() // Reset again at the socket's next wait (httpcore.Timer.Reset)
			w.mu.Unlock()
			w.finish(res, false)
			return w
		}
	}
	w.mu.Unlock()
	return w
}

func (w *sockWait) gen() uint32 {
	if w.write {
		return w.ls.WriteGen()
	}
	return w.ls.ReadGen()
}

// wait registers the readiness callback, unless a report came after gen.
func (w *sockWait) wait(gen uint32) bool {
	if w.write {
		if w.sk.wdry != uint64(gen) {
			return false
		}
		return w.ls.WaitWrite(gen, w.readyFn)
	}
	if w.sk.dry != uint64(gen) {
		// Not found dry at gen (a wait before any read, or a short read that
		// filled the buffer): read first.
		return false
	}
	return w.ls.WaitRead(gen, w.readyFn)
}

func (w *sockWait) unwait() {
	if w.write {
		w.ls.CancelWrite()
	} else {
		w.ls.CancelRead()
	}
}

// ready is the socket's readiness, on the loop's leader.
func (w *sockWait) ready() {
	w.mu.Lock()
	if w.over {
		w.mu.Unlock()
		return
	}
	for {
		gen := w.gen()
		res, ok := w.step()
		if ok {
			w.over = true
			w.tm.Pause()
			w.mu.Unlock()
			w.finish(res, true)
			return
		}
		if w.wait(gen) {
			w.mu.Unlock()
			return
		}
	}
}

// timedOut is the wait's timer, on the loop's leader.
func (w *sockWait) timedOut() {
	w.mu.Lock()
	if w.over {
		w.mu.Unlock()
		return
	}
	w.over = true
	w.unwait()
	res := w.expire()
	w.mu.Unlock()
	w.finish(res, false)
}

// finish hands the results to the run; here: from the loop's readiness callback.
func (w *sockWait) finish(res []any, here bool) {
	if w.write {
		w.sk.writing.Store(false)
	} else {
		w.sk.reading.Store(false)
	}
	if here {
		w.here(res)
	} else {
		w.done(res)
	}
}

// cancel ends the wait without results (its run is over, or its socket closes): the
// loop lets go of the socket before it is closed.
func (w *sockWait) cancel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.over {
		return
	}
	w.over = true
	w.unwait()
	w.tm.Stop()
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
	w.unwait()
	w.tm.Stop()
	if w.drop != nil {
		w.drop()
	}
	w.mu.Unlock()
	w.finish(res, false)
}

// stop takes the wait's timer out of the loop's heap (Pause left it there): its
// socket closes, nothing will Reset it. Not under mu: a receive's step closes the
// socket at its end (under mu), and a wait that is not over when its socket closes
// was ended first (abort, cancel) or is ending (its step).
func (w *sockWait) stop() { w.tm.Stop() }

// cancelWaits cancels sk's waits on the loop.
func (sk *tcpSock) cancelWaits() {
	if sk.rw != nil {
		sk.rw.cancel()
	}
	if sk.ww != nil {
		sk.ww.cancel()
	}
}

// readTimedOut is a receive's results at its timeout.
func (sk *tcpSock) readTimedOut() []any { return sk.readFailed(os.ErrDeadlineExceeded) }

// connectLoop connects sk to addr ("ip:port") on the event loop: the socket is
// writable once the handshake is over. ok false: addr needs step 1 (a name to
// resolve). addr may be a view of a scratch buffer, valid during the call.
func (sk *tcpSock) connectLoop(s *luajit.State, ru *run, lp *httpcore.Loop, addr string, timeout time.Duration) (ok bool) {
	fd, ap, ok, err := netutil.DialStart(addr)
	if !ok {
		return false
	}
	if err != nil {
		pushAll(s, sk.connectFailed(addr, err))
		return true
	}
	ls, err := lp.Register(fd)
	if err != nil {
		unix.Close(fd)
		pushAll(s, sk.connectFailed(addr, err))
		return true
	}
	// Kept for the connection's life: connected when it is writable.
	// Nothing can have come before the connection: the first receive waits for the
	// loop's report.
	sk.ls, sk.dry, sk.wdry = ls, uint64(ls.ReadGen()), uint64(ls.WriteGen())
	if conn, ok := netutil.DialNow(fd, ap); ok {
		// Connected in the call (loopback): no wait. The loop's report of the
		// socket's room to write comes anyway and finds no waiter.
		sk.connected(conn)
		ru.e.publishSend(ru, sk)
		s.PushInt(1)
		return true
	}
	addr = strings.Clone(addr) // a view of sockConnect's scratch buffer: kept now
	giveUp := func() {
		ls.Close(true)
		sk.ls = nil
		unix.Close(fd)
	}
	sk.writing.Store(true)
	ru.waitAsync(s, func(done func([]any)) {
		w := sk.waitLoop(ru, ls, true, timeout, func() ([]any, bool) {
			conn, err := netutil.DialFinish(fd, ap)
			if err != nil {
				ls.Close(true) // fd is closed
				sk.ls = nil
				return sk.connectFailed(addr, err), true
			}
			sk.connected(conn)
			return []any{1}, true
		}, func() []any {
			giveUp()
			return sk.connectFailed(addr, os.ErrDeadlineExceeded)
		}, done)
		w.mu.Lock()
		if !w.over {
			w.drop = giveUp
		}
		w.mu.Unlock()
	})
	return true
}

// connectFailed is a failed connect's results (a method: a closure made in
// connectLoop was an allocation per connect that did not wait).
func (sk *tcpSock) connectFailed(addr string, err error) []any {
	msg := sockErr(err)
	if msg == "timeout" {
		sk.logErr("lua tcp socket connect timed out, when connecting to %s", addr)
	} else {
		sk.logErr("lua tcp socket connect() to %s failed: %s", addr, msg)
	}
	return []any{nil, msg}
}

// connected makes conn, just connected, sk's connection.
func (sk *tcpSock) connected(conn net.Conn) {
	sk.mu.Lock()
	sk.conn = conn
	sk.mu.Unlock()
	if sc, ok := conn.(syscall.Conn); ok {
		sk.raw, _ = sc.SyscallConn()
	}
}
