package ngxlua

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/internal/netutil"
	connpool "github.com/spindle-server/spindle/internal/pool"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// ngx.socket.tcp: cosockets. A socket is a Lua table holding an integer handle into
// the engine's sockets (e.socks, used under the VM's lock). A call that must wait
// (connect, a send, a receive the buffer cannot answer) yields: sends and receives
// on the event loop where they can (sockwait.go, step 2 of docs/lua-engine.md);
// else the run's driver does the I/O on a goroutine with the VM unlocked and
// resumes the coroutine with the results (step 1). A socket belongs to
// the run that created it and is closed when the run ends, unless setkeepalive put
// its connection in the worker's pool for that host:port (or pool name).

type tcpSock struct {
	mu   sync.Mutex // conn, for a killed thread's wait that may still run
	id   int
	run  *run
	conf *sockConf
	conn net.Conn
	raw  syscall.RawConn

	buf  []byte  // received and not yet consumed: buf[r:w]
	bufp *[]byte // from sockBufs: given back when the connection goes
	r, w int

	connectTimeout, sendTimeout, readTimeout time.Duration // 0: the lua_socket_* defaults

	key      string
	keyView  bool   // key is a view of keyBytes
	keyBytes []byte // kept with the socket (freeSock)
	poolSize int
	reused   int
	ic       *idleConn

	isTLS        bool
	verifiedName string // the server name the TLS peer was verified for

	// An operation waits with the VM unlocked (its wait clears the flag, maybe on a
	// light thread's goroutine): a read and a write may wait at once.
	reading, writing atomic.Bool
	timedOut         bool // the last receive timed out: the connection cannot be pooled
	inline           bool // reads work on the request (ngx.req.socket's body): on its goroutine
	client           bool // the client's connection (ngx.req.socket(true)): its reads start in a buffer, not on the event loop

	// The connection on the event loop (sockwait.go): its place in the loop's epoll
	// set, kept with it in the pool; the loop's readiness counts at which a read (dry)
	// or a write (wdry) found it dry; its waits for reading and writing.
	ls        *httpcore.Sock
	dry, wdry uint64
	rw, ww    *sockWait

	// A receive's pattern for readSize and readLine: the size (or receiveany's
	// maximum), and whether a line keeps its newline ("*L").
	rn  int
	rnl bool
	// view is a receive's result as a slice of buf (viewResult), pushed to Lua as it
	// is when the receive did not wait; viewRes is []any{sk}, which pushAll pushes as
	// view: made once per socket, no string and no boxing per receive.
	view    []byte
	viewRes []any

	// A receive's wait on the loop: its reader, and the functions of its wait (made
	// once).
	rd         reader
	recvStart  func(done func([]any))
	recvStep   func() ([]any, bool)
	recvExpire func() []any
}

// viewResult is a reader's result b, a slice of the buffer, without a copy: valid
// until the socket reads again, so only for a result pushed at once (receive's
// paths that do not wait); the others detach it.
func (sk *tcpSock) viewResult(b []byte) []any {
	sk.view = b
	if sk.viewRes == nil {
		sk.viewRes = []any{sk}
	}
	return sk.viewRes
}

// detach makes a view result a string of its own: the result of a receive that
// waited is pushed later, after other coroutines may have used the socket. A run
// without light threads has no other coroutine, and its resume pushes the result
// before Lua runs again: the view stays (2 allocations and a copy per
// lua-resty-redis request).
func (sk *tcpSock) detach(res []any) []any {
	if len(res) == 1 && res[0] == any(sk) && len(sk.run.threads) > 0 {
		res = []any{string(sk.view)}
		sk.view = nil
	}
	return res
}

// sockPools are a VM's cosocket pools, keyed "host:port", "unix:/path" or by the
// pool option.
type sockPools = connpool.Pool[string, *idleConn]

// idleConn is a pooled connection.
type idleConn struct {
	conn         net.Conn
	ls           *httpcore.Sock // in the event loop's epoll set (tcpSock.ls)
	dry          uint64
	rw, ww       *sockWait // its waits on the loop, for its next user
	tls          bool
	verifiedName string
	reused       int
	entry        connpool.Entry
}

// PoolEntry and ClosePooled make idleConn a pooled connection.
func (ic *idleConn) PoolEntry() *connpool.Entry { return &ic.entry }
func (ic *idleConn) ClosePooled() {
	if ic.rw != nil {
		ic.rw.stop()
	}
	if ic.ww != nil {
		ic.ww.stop()
	}
	if ic.ls != nil {
		ic.ls.Close(true)
		ic.ls = nil
	}
	ic.conn.Close()
}

func (sk *tcpSock) timeout(which int) time.Duration {
	switch which {
	case 0:
		if sk.connectTimeout > 0 {
			return sk.connectTimeout
		}
		return sk.conf.connectTimeout
	case 1:
		if sk.sendTimeout > 0 {
			return sk.sendTimeout
		}
		return sk.conf.sendTimeout
	}
	if sk.readTimeout > 0 {
		return sk.readTimeout
	}
	return sk.conf.readTimeout
}

// logErr logs a cosocket error as ngx_lua does with lua_socket_log_errors on.
func (sk *tcpSock) logErr(format string, args ...any) {
	if !sk.conf.logErrors {
		return
	}
	if sk.run.r != nil {
		sk.run.r.Logf(httpcore.LogError, format, args...)
	} else {
		sk.run.e.logf(logErr, format+", context: %s", append(args, sk.run.phase.directive())...)
	}
}

// getConn is the connection, read under mu: a light thread's wait may close it.
func (sk *tcpSock) getConn() net.Conn {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	return sk.conn
}

func (sk *tcpSock) closeConn() {
	if sk.rw != nil {
		sk.rw.stop()
	}
	if sk.ww != nil {
		sk.ww.stop()
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if sk.conn != nil {
		if sk.ic != nil {
			sk.run.e.pools.Forget(sk.ic)
		}
		if sk.ls != nil {
			sk.ls.Close(true)
			sk.ls = nil
		}
		sk.conn.Close()
		sk.conn, sk.raw, sk.ic, sk.isTLS, sk.verifiedName = nil, nil, nil, false, ""
	}
	sk.freeBuf()
}

// sockBufs are receive buffers of the default size (lua_socket_buffer_size 4k), for
// the next connection: a buffer made per request was 8k instructions of the 77k
// per lua-resty-redis request (callgrind, BenchmarkLoopRedis).
var sockBufs = sync.Pool{New: func() any { b := make([]byte, defaultSockBuf); return &b }}

const defaultSockBuf = 4096

// freeBuf lets go of the receive buffer.
func (sk *tcpSock) freeBuf() {
	if sk.bufp != nil {
		sockBufs.Put(sk.bufp) // sk.buf is it, or a larger copy of its data
		sk.bufp = nil
	}
	sk.buf, sk.r, sk.w = nil, 0, 0
}

// sockErr turns a Go network error into ngx_lua's words.
func sockErr(err error) string {
	var ne net.Error
	var errno syscall.Errno
	var dns *net.DNSError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "closed"
	case errors.As(err, &dns):
		return dns.Name + " could not be resolved (" + dns.Err + ")"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &errno):
		return errno.Error()
	}
	return err.Error()
}

// closeSockets closes what a run left open (pooled connections are gone already).
func (e *engine) closeSockets(ru *run) {
	e.takeBack() // the sockbuf may be one of these: they are closed and reused
	for _, sk := range ru.socks {
		sk.cancelWaits()
		if ru.abandoned {
			// A killed thread's wait may still use the socket: closing the
			// connection ends it; the rest is left to it.
			sk.mu.Lock()
			if sk.conn != nil {
				if sk.ls != nil {
					sk.ls.Close(true)
					sk.ls = nil
				}
				sk.conn.Close()
			}
			sk.mu.Unlock()
			delete(e.socks, sk.id)
			continue
		}
		sk.closeConn()
		delete(e.socks, sk.id)
		e.freeSock(sk)
	}
	clear(ru.socks)
	ru.socks = ru.socks[:0] // kept with the run (release)
}

// sock returns the socket of handle argument 0, which must belong to the run.
func (e *engine) sock(s *luajit.State) (*run, *tcpSock, error) {
	ru, err := e.run()
	if err != nil {
		return nil, nil, err
	}
	sk := e.socks[s.Int(0)]
	if sk == nil || sk.run != ru {
		return nil, nil, errors.New("bad request: the cosocket was created by another request or handler")
	}
	e.takeBack() // what the prelude's receive took of the buffer
	return ru, sk, nil
}

func fail(s *luajit.State, msg string) error {
	s.PushNil()
	s.PushString(msg)
	return nil
}

func (e *engine) sockNew(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if !ru.phase.canYield() {
		return disabled("ngx.socket.tcp", ru.phase)
	}
	e.nextSock++
	s.PushInt(e.newSock(ru, e.nextSock).id)
	return nil
}

// newSock makes ru's socket id: Go's handles are positive, the prelude's negative.
func (e *engine) newSock(ru *run, id int) *tcpSock {
	var sk *tcpSock
	if n := len(e.freeSocks); n > 0 {
		sk = e.freeSocks[n-1]
		e.freeSocks[n-1] = nil
		e.freeSocks = e.freeSocks[:n-1]
	} else {
		sk = new(tcpSock)
	}
	sk.id, sk.run, sk.conf = id, ru, &ru.conf.sock
	e.socks[id] = sk
	ru.socks = append(ru.socks, sk)
	return sk
}

// freeSock keeps sk, closed and out of e.socks (no handle reaches it), for the next
// newSock: a socket per lua-resty-redis request was 5 allocations (the socket, its
// receive's result and wait functions).
func (e *engine) freeSock(sk *tcpSock) {
	if len(e.freeSocks) >= maxFreeSocks {
		return
	}
	viewRes, start, step, expire, keyBytes := sk.viewRes, sk.recvStart, sk.recvStep, sk.recvExpire, sk.keyBytes
	*sk = tcpSock{}
	sk.viewRes, sk.recvStart, sk.recvStep, sk.recvExpire, sk.keyBytes = viewRes, start, step, expire, keyBytes[:0]
	e.freeSocks = append(e.freeSocks, sk)
}

// maxFreeSocks bounds the sockets an engine keeps for reuse.
const maxFreeSocks = 64

// sockAdopt is __sp.sock_adopt(id, run, connect, send, read timeouts): the socket
// of a handle the prelude made (negative), made now if Go has not seen it, with the
// timeouts settimeout(s) kept in its table.
func (e *engine) sockAdopt(s *luajit.State) error {
	_, err := e.adopt(s, 1)
	return err
}

// adopt is the socket of handle argument 0, made if the prelude made the handle and
// Go has not seen it; arguments at to at+3 are the handle's run and the timeouts
// its table kept.
func (e *engine) adopt(s *luajit.State, at int) (*tcpSock, error) {
	ru, err := e.run()
	if err != nil {
		return nil, err
	}
	e.takeBack()
	id := s.Int(0)
	sk := e.socks[id]
	switch {
	case sk != nil && sk.run != ru, sk == nil && (id >= 0 || uint64(s.Number(at)) != ru.seq):
		return nil, errors.New("bad request: the cosocket was created by another request or handler")
	case sk == nil:
		if !ru.phase.canYield() {
			return nil, disabled("ngx.socket.tcp", ru.phase)
		}
		sk = e.newSock(ru, id)
	}
	for i, d := range []*time.Duration{&sk.connectTimeout, &sk.sendTimeout, &sk.readTimeout} {
		if s.Type(at+1+i) == luajit.TypeNumber {
			*d = time.Duration(s.Number(at+1+i) * float64(time.Millisecond))
		}
	}
	return sk, nil
}

// sockConnect is sock:connect(host, port | nil, pool, pool_size), and for a handle
// of the prelude's that Go has not seen, its run and kept timeouts (adopt).
func (e *engine) sockConnect(s *luajit.State) error {
	var ru *run
	var sk *tcpSock
	var err error
	if s.Int(0) < 0 && s.N() > 5 {
		if sk, err = e.adopt(s, 5); err != nil {
			return err
		}
		ru = sk.run
	} else if ru, sk, err = e.sock(s); err != nil {
		return err
	}
	if sk.reading.Load() || sk.writing.Load() {
		return fail(s, "socket busy")
	}
	// Views of Lua's strings: a key the pool keeps is cloned (scratch), the address
	// is made anew.
	host := stringView(s, 1)
	network, addr, key := "tcp", "", ""
	port, scratch := 0, false
	if p, ok := strings.CutPrefix(host, "unix:"); ok {
		network, addr, key, scratch = "unix", strings.Clone(p), host, true
	} else {
		if s.Type(2) != luajit.TypeNumber && !(s.Type(2) == luajit.TypeString && isNumeric(s.String(2))) {
			return errors.New("bad argument #2 to 'connect' (number expected, got " + s.Type(2).String() + ")")
		}
		port = int(s.Number(2))
		if s.Type(2) == luajit.TypeString {
			port, _ = strconv.Atoi(s.String(2))
		}
		if port < 0 || port > 65535 {
			return fail(s, "bad port number: "+strconv.Itoa(port))
		}
		// The key in a scratch buffer: a pooled connection's key is the pool's copy.
		e.keyBuf = strconv.AppendInt(append(append(e.keyBuf[:0], host...), ':'), int64(port), 10)
		key, scratch = unsafe.String(unsafe.SliceData(e.keyBuf), len(e.keyBuf)), true
	}
	if s.Type(3) == luajit.TypeString {
		key, scratch = stringView(s, 3), true
	}
	poolSize := 0
	if s.Type(4) == luajit.TypeNumber {
		if poolSize = s.Int(4); poolSize <= 0 {
			return errors.New("bad \"pool_size\" option value")
		}
	}
	// Connecting a connected socket closes its connection first, as ngx_lua does.
	sk.closeConn()
	sk.poolSize, sk.reused, sk.timedOut = poolSize, 0, false
	if ic, pkey, _ := e.pools.Get(key); ic != nil {
		sk.key, sk.keyView = pkey, false
		sk.conn, sk.raw, sk.reused, sk.ic, sk.isTLS, sk.verifiedName = ic.conn, ic.entry.Raw, ic.reused+1, ic, ic.tls, ic.verifiedName
		sk.ls, sk.dry, sk.wdry, sk.rw, sk.ww = ic.ls, ic.dry, dryUnknown, ic.rw, ic.ww
		ic.ls, ic.rw, ic.ww = nil, nil, nil
		e.publishSend(ru, sk)
		s.PushInt(1)
		return nil
	}
	if scratch {
		// In the socket's own bytes (kept with it: freeSock), made a string of its
		// own only if setkeepalive pools the connection (a connect that closes,
		// redis_short's, allocated it for nothing).
		sk.keyBytes = append(sk.keyBytes[:0], key...)
		key = unsafe.String(unsafe.SliceData(sk.keyBytes), len(sk.keyBytes))
	}
	sk.key, sk.keyView = key, scratch
	if network == "tcp" {
		// In a scratch buffer, as net.JoinHostPort writes it: a connect that ends
		// in the call keeps no copy (redis_short_lua's: two allocations a request);
		// one that waits clones it (connectLoop, and below).
		e.addrBuf = appendHostPort(e.addrBuf[:0], host, port)
		addr = unsafe.String(unsafe.SliceData(e.addrBuf), len(e.addrBuf))
	}
	timeout := sk.timeout(0)
	if network == "tcp" && ru.r != nil {
		if lp := ru.r.Loop(); lp != nil && sk.connectLoop(s, ru, lp, addr, timeout) {
			return nil
		}
	}
	if network == "tcp" {
		addr = strings.Clone(addr)
	}
	sk.writing.Store(true)
	ru.waitFor(s, func() []any {
		defer sk.writing.Store(false)
		// No SO_KEEPALIVE unless setoption asks, as ngx_lua.
		conn, err := netutil.Dial(context.Background(), network, addr, timeout)
		if err != nil {
			return sk.connectFailed(addr, err)
		}
		sk.mu.Lock()
		sk.conn = conn
		sk.mu.Unlock()
		if sc, ok := conn.(syscall.Conn); ok {
			sk.raw, _ = sc.SyscallConn()
		}
		return []any{1}
	})
	return nil
}

// appendHostPort appends host:port to b, with brackets around an IPv6 host, as
// net.JoinHostPort.
func appendHostPort(b []byte, host string, port int) []byte {
	if strings.IndexByte(host, ':') >= 0 {
		b = append(append(append(b, '['), host...), ']')
	} else {
		b = append(b, host...)
	}
	return strconv.AppendInt(append(b, ':'), int64(port), 10)
}

// sockSend is sock:send(data) (the prelude flattens tables).
func (e *engine) sockSend(s *luajit.State) error {
	ru, sk, err := e.sock(s)
	if err != nil {
		return err
	}
	conn := sk.getConn()
	if conn == nil {
		return fail(s, "closed")
	}
	if sk.writing.Load() {
		return fail(s, "socket busy writing")
	}
	// A view of Lua's string (an argument: valid during the call), copied only by
	// the paths that keep it for a wait.
	data := stringView(s, 1)
	// What the prelude's send wrote of data already (sockrt.c): the rest is Go's.
	off := 0
	if s.Type(2) == luajit.TypeNumber {
		off = min(max(s.Int(2), 0), len(data))
	}
	timeout := sk.timeout(1)
	if lp := sk.loop(ru); lp != nil {
		if ls := sk.loopSock(lp); ls != nil {
			return e.sendLoop(s, ru, sk, ls, data, off, timeout)
		}
	}
	sent, err := sk.tryWrite(data[off:])
	sent += off
	if err == nil && sent == len(data) && sent > 0 {
		s.PushInt(sent)
		return nil
	}
	data = strings.Clone(data[sent:]) // the rest, or the error, through the wait
	sk.writing.Store(true)
	ru.waitFor(s, func() []any {
		defer sk.writing.Store(false)
		conn.SetWriteDeadline(time.Now().Add(timeout))
		n, err := conn.Write([]byte(data))
		n += sent
		if err != nil {
			msg := sockErr(err)
			if msg == "timeout" {
				sk.logErr("lua tcp socket write timed out")
			} else {
				sk.logErr("lua tcp socket write failed: %s", msg)
			}
			// A partial write leaves the stream unusable: the socket is closed, as
			// ngx_lua's.
			sk.closeConn()
			return []any{nil, msg}
		}
		return []any{n}
	})
	return nil
}

// sendLoop is send on the event loop: what the socket does not take at once is
// written when the loop reports room.
func (e *engine) sendLoop(s *luajit.State, ru *run, sk *tcpSock, ls *httpcore.Sock, data string, off int, timeout time.Duration) error {
	n, err := sk.writeNow(data[off:])
	switch {
	case err == nil:
		s.PushInt(off + n) // all of it, at once: no wait, no busy flag
	case err == syscall.EAGAIN:
		e.sendWait(s, ru, sk, ls, strings.Clone(data), off+max(n, 0), timeout)
	default:
		pushAll(s, sk.writeFailed(err))
	}
	return nil
}

// writeFailed is a failed send's results; the socket is closed, as ngx_lua's.
func (sk *tcpSock) writeFailed(err error) []any {
	msg := sockErr(err)
	sk.logErr("lua tcp socket write failed: %s", msg)
	sk.closeConn()
	return []any{nil, msg}
}

// sendWait waits on the loop until the socket has taken data[written:].
func (e *engine) sendWait(s *luajit.State, ru *run, sk *tcpSock, ls *httpcore.Sock, data string, written int, timeout time.Duration) {
	step := func() ([]any, bool) {
		n, err := sk.writeNow(data[written:])
		written += max(n, 0)
		switch {
		case err == syscall.EAGAIN:
			return nil, false
		case err != nil:
			return sk.writeFailed(err), true
		}
		return []any{len(data)}, true
	}
	sk.writing.Store(true)
	ru.waitAsync(s, func(done func([]any)) {
		sk.waitLoop(ru, ls, true, timeout, step, func() []any {
			sk.logErr("lua tcp socket write timed out")
			sk.closeConn()
			return []any{nil, "timeout"}
		}, done)
	})
}

// fill reads more data into the buffer, waiting at most the read timeout.
func (sk *tcpSock) fill() error {
	conn := sk.getConn()
	if conn == nil {
		return io.EOF
	}
	buf := sk.room()
	conn.SetReadDeadline(time.Now().Add(sk.timeout(2)))
	n, err := conn.Read(buf)
	sk.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.EOF
	}
	return err
}

// readFailed is a failed receive's results: a timeout keeps the connection (the
// only non-fatal error, as in ngx_lua), anything else closes it; buffered data is
// the partial result.
func (sk *tcpSock) readFailed(err error) []any {
	msg := sockErr(err)
	partial := string(sk.buf[sk.r:sk.w])
	sk.r = sk.w
	if msg == "timeout" {
		sk.timedOut = true
		sk.logErr("lua tcp socket read timed out")
	} else {
		if msg != "closed" {
			sk.logErr("lua tcp socket read failed: %s", msg)
		}
		sk.closeConn()
	}
	return []any{nil, msg, partial}
}

// A reader tries to answer a receive from the buffer; err is what the last fill
// returned (nil before the first). done false: more data is needed.
type reader func(sk *tcpSock, err error) (res []any, done bool)

// receive answers from the buffer, or yields until reading gives the answer.
func (e *engine) receive(s *luajit.State, ru *run, sk *tcpSock, rd reader) error {
	if res, done := rd(sk, nil); done {
		sk.timedOut = false
		pushAll(s, res)
		return nil
	}
	if sk.getConn() == nil {
		pushAll(s, sk.readFailed(io.EOF))
		return nil
	}
	if lp := sk.loop(ru); lp != nil {
		if ls := sk.loopSock(lp); ls != nil {
			if res, done := sk.receiveStep(rd); done {
				pushAll(s, res)
				return nil
			}
			sk.reading.Store(true)
			sk.rd = rd
			if sk.recvStart == nil {
				// Made once per socket, not per wait (3 allocations per
				// lua-resty-redis request).
				sk.recvStart, sk.recvStep, sk.recvExpire = sk.startReceive, sk.stepReceive, sk.readTimedOut
			}
			ru.waitAsync(s, sk.recvStart)
			return nil
		}
	}
	sk.reading.Store(true)
	ru.cur.inline = sk.inline
	ru.waitFor(s, func() []any {
		defer sk.reading.Store(false)
		for {
			err := sk.fill()
			if res, done := rd(sk, err); done {
				sk.timedOut = false
				return sk.detach(res)
			}
			if err != nil {
				return sk.readFailed(err)
			}
		}
	})
	return nil
}

// startReceive starts a receive's wait on the loop (sk.rd reads).
func (sk *tcpSock) startReceive(done func([]any)) {
	sk.waitLoop(sk.run, sk.ls, false, sk.timeout(2), sk.recvStep, sk.recvExpire, done)
}

// stepReceive is a waiting receive's attempt when the loop reports the socket.
func (sk *tcpSock) stepReceive() ([]any, bool) {
	res, ok := sk.receiveStep(sk.rd)
	return sk.detach(res), ok
}

// sockReceive is sock:receive(pattern): "*l" (default), "*L", "*a" or a size.
func (e *engine) sockReceive(s *luajit.State) error {
	ru, sk, err := e.sock(s)
	if err != nil {
		return err
	}
	if sk.conn == nil && sk.r == sk.w {
		return fail(s, "closed")
	}
	if sk.reading.Load() {
		return fail(s, "socket busy reading")
	}
	pat := "*l"
	n := -1
	switch s.Type(1) {
	case luajit.TypeNumber:
		n = s.Int(1)
	case luajit.TypeString:
		pat = s.String(1)
		if !strings.HasPrefix(pat, "*") {
			f, err := strconv.ParseFloat(strings.TrimSpace(pat), 64)
			if err != nil {
				return errors.New("bad argument #2 to 'receive' (bad pattern argument: " + pat + ")")
			}
			n = int(f)
		}
	case luajit.TypeNil:
	default:
		return errors.New("bad argument #2 to 'receive' (bad pattern argument)")
	}
	if n >= 0 {
		sk.rn = n
		return e.receive(s, ru, sk, readSize)
	}
	switch pat {
	case "*l", "*L":
		sk.rnl = pat == "*L"
		return e.receive(s, ru, sk, readLine)
	case "*a":
		return e.receive(s, ru, sk, func(sk *tcpSock, err error) ([]any, bool) {
			if errors.Is(err, io.EOF) || sk.getConn() == nil {
				data := string(sk.buf[sk.r:sk.w])
				sk.closeConn()
				return []any{data}, true
			}
			return nil, false
		})
	}
	return errors.New("bad argument #2 to 'receive' (bad pattern argument: " + pat + ")")
}

// readSize is receive(size)'s reader: sk.rn bytes.
func readSize(sk *tcpSock, _ error) ([]any, bool) {
	n := sk.rn
	if sk.w-sk.r < n {
		return nil, false
	}
	b := sk.buf[sk.r : sk.r+n]
	sk.r += n
	return sk.viewResult(b), true
}

// readLine is receive("*l")'s and receive("*L")'s reader (sk.rnl).
func readLine(sk *tcpSock, _ error) ([]any, bool) {
	i := bytes.IndexByte(sk.buf[sk.r:sk.w], '\n')
	if i < 0 {
		return nil, false
	}
	line := sk.buf[sk.r : sk.r+i]
	if sk.rnl {
		line = sk.buf[sk.r : sk.r+i+1]
	}
	sk.r += i + 1
	if !sk.rnl {
		// "*l" drops every CR; a line's own CRLF (RESP's, HTTP's) is a slice, not
		// bytes.ReplaceAll's copy (~430 instructions and an allocation per line).
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			line = bytes.ReplaceAll(line, []byte{'\r'}, nil)
		}
	}
	return sk.viewResult(line), true
}

// readAny is receiveany's reader: what the buffer has, at most sk.rn bytes.
func readAny(sk *tcpSock, _ error) ([]any, bool) {
	if sk.r == sk.w {
		return nil, false
	}
	n := min(sk.rn, sk.w-sk.r)
	b := sk.buf[sk.r : sk.r+n]
	sk.r += n
	return sk.viewResult(b), true
}

// sockReceiveAny is sock:receiveany(max).
func (e *engine) sockReceiveAny(s *luajit.State) error {
	ru, sk, err := e.sock(s)
	if err != nil {
		return err
	}
	max := s.Int(1)
	if max <= 0 {
		return errors.New("bad argument #2 to 'receiveany' (bad max argument)")
	}
	if sk.conn == nil {
		return fail(s, "closed")
	}
	if sk.reading.Load() {
		return fail(s, "socket busy reading")
	}
	sk.rn = max
	return e.receive(s, ru, sk, readAny)
}

// sockReceiveUntil is one call of receiveuntil's iterator: (handle, pattern,
// inclusive, size). It returns the data and, with a size, whether the pattern was
// reached (the prelude's iterator returns nil once after that).
func (e *engine) sockReceiveUntil(s *luajit.State) error {
	ru, sk, err := e.sock(s)
	if err != nil {
		return err
	}
	pat := []byte(s.String(1))
	inclusive := s.Bool(2)
	size := 0
	if s.Type(3) == luajit.TypeNumber {
		if size = s.Int(3); size <= 0 {
			return errors.New("bad argument #1 to iterator (bad size argument)")
		}
	}
	if sk.conn == nil && sk.r == sk.w {
		return fail(s, "closed")
	}
	if sk.reading.Load() {
		return fail(s, "socket busy reading")
	}
	return e.receive(s, ru, sk, func(sk *tcpSock, _ error) ([]any, bool) {
		data := sk.buf[sk.r:sk.w]
		if i := bytes.Index(data, pat); i >= 0 && (size == 0 || i <= size) {
			end := i
			if inclusive {
				end = i + len(pat)
			}
			out := string(data[:end])
			sk.r += i + len(pat)
			return []any{out, size > 0}, true
		}
		if size > 0 && len(data) >= size+len(pat)-1 {
			out := string(data[:size])
			sk.r += size
			return []any{out, false}, true
		}
		return nil, false
	})
}

// sockSetTimeouts is settimeout (one value for all) and settimeouts: ms, nil keeps.
func (e *engine) sockSetTimeouts(s *luajit.State) error {
	_, sk, err := e.sock(s)
	if err != nil {
		return err
	}
	set := func(i int, d *time.Duration) error {
		if s.Type(i) != luajit.TypeNumber {
			return nil
		}
		ms := s.Number(i)
		if ms < 0 {
			return errors.New("bad timeout value")
		}
		*d = time.Duration(ms * float64(time.Millisecond))
		return nil
	}
	if err := set(1, &sk.connectTimeout); err != nil {
		return err
	}
	if err := set(2, &sk.sendTimeout); err != nil {
		return err
	}
	return set(3, &sk.readTimeout)
}

// sockSetKeepalive is sock:setkeepalive(timeout, size): the connection goes to the
// worker's pool.
func (e *engine) sockSetKeepalive(s *luajit.State) error {
	_, sk, err := e.sock(s)
	if err != nil {
		return err
	}
	if sk.conn == nil {
		return fail(s, "closed")
	}
	if sk.reading.Load() || sk.writing.Load() {
		return fail(s, "socket busy")
	}
	if sk.r < sk.w {
		sk.closeConn()
		return fail(s, "connection in dubious state")
	}
	if sk.timedOut {
		// The late answer would be read by the connection's next user.
		return fail(s, "invalid connection")
	}
	timeout := sk.conf.keepaliveTimeout
	if s.Type(1) == luajit.TypeNumber {
		ms := s.Number(1)
		if ms < 0 {
			return errors.New("bad argument #2 to 'setkeepalive' (bad timeout argument)")
		}
		timeout = time.Duration(ms * float64(time.Millisecond))
	}
	size := 0
	if s.Type(2) == luajit.TypeNumber {
		if size = s.Int(2); size <= 0 {
			return errors.New("bad argument #3 to 'setkeepalive' (bad pool size argument)")
		}
	}
	e.keepalive(sk, timeout, size)
	s.PushInt(1)
	return nil
}

// keepalive puts sk's connection in the worker's pool (size 0: connect's pool_size,
// else lua_socket_pool_size).
func (e *engine) keepalive(sk *tcpSock, timeout time.Duration, size int) {
	if size == 0 {
		size = sk.poolSize
	}
	if size == 0 {
		size = sk.conf.poolSize
	}
	ic := sk.ic
	if ic == nil {
		ic = new(idleConn)
	}
	ic.conn, ic.entry.Raw, ic.reused, ic.tls, ic.verifiedName = sk.conn, sk.raw, sk.reused, sk.isTLS, sk.verifiedName
	ic.ls, ic.dry, ic.rw, ic.ww = sk.ls, sk.dry, sk.rw, sk.ww
	sk.conn, sk.raw, sk.ic, sk.isTLS, sk.verifiedName, sk.ls, sk.rw, sk.ww = nil, nil, nil, false, "", nil, nil, nil
	sk.freeBuf()
	key := sk.key
	if sk.keyView {
		key = strings.Clone(key)
	}
	e.pools.Put(key, ic, size, timeout)
}

func (e *engine) sockReusedTimes(s *luajit.State) error {
	_, sk, err := e.sock(s)
	if err != nil {
		return err
	}
	if sk.conn == nil {
		return fail(s, "closed")
	}
	s.PushInt(sk.reused)
	return nil
}

// closedRes is the results of a wait that close ended: shared, read only (a
// literal in sockClose was an allocation per close).
var closedRes = []any{nil, "closed"}

func (e *engine) sockClose(s *luajit.State) error {
	_, sk, err := e.sock(s)
	if err != nil {
		return err
	}
	if sk.conn == nil {
		return fail(s, "closed")
	}
	// A light thread may wait on it (so the run is not parked): the loop lets go of
	// the descriptor first, and the thread's receive or send fails.
	if sk.rw != nil {
		sk.rw.abort(closedRes)
	}
	if sk.ww != nil {
		sk.ww.abort(closedRes)
	}
	sk.closeConn()
	s.PushInt(1)
	return nil
}

// sockSSLHandshake is sock:sslhandshake(reused_session, server_name, verify): it
// returns true (a session is not kept: the pool keeps TLS connections instead).
func (e *engine) sockSSLHandshake(s *luajit.State) error {
	ru, sk, err := e.sock(s)
	if err != nil {
		return err
	}
	if sk.conn == nil {
		return fail(s, "closed")
	}
	serverName := ""
	if s.Type(2) == luajit.TypeString {
		serverName = s.String(2)
	}
	verify := s.Bool(3)
	if serverName == "" && verify {
		return fail(s, "handshake failed: certificate verification needs a server name")
	}
	if sk.isTLS {
		// A pooled TLS connection: verify its peer for this caller if it was not
		// verified for the same name when it was established.
		if verify && sk.verifiedName != serverName {
			if err := verifyPeer(sk.conn, serverName); err != nil {
				sk.closeConn()
				return fail(s, "handshake failed: "+err.Error())
			}
			sk.verifiedName = serverName
		}
		s.PushBool(true)
		return nil
	}
	timeout := sk.timeout(0)
	sk.reading.Store(true)
	sk.writing.Store(true)
	ru.waitFor(s, func() []any {
		defer sk.reading.Store(false)
		defer sk.writing.Store(false)
		tc := tls.Client(sk.conn, &tls.Config{ServerName: serverName, InsecureSkipVerify: !verify})
		sk.conn.SetDeadline(time.Now().Add(timeout))
		err := tc.Handshake()
		sk.conn.SetDeadline(time.Time{})
		if err != nil {
			sk.closeConn()
			return []any{nil, "handshake failed: " + sockErr(err)}
		}
		sk.mu.Lock()
		sk.conn, sk.isTLS = tc, true
		sk.mu.Unlock()
		if verify {
			sk.verifiedName = serverName
		}
		return []any{true}
	})
	return nil
}

// verifyPeer checks the certificates a TLS connection's peer presented against the
// system roots for name.
func verifyPeer(c net.Conn, name string) error {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return errors.New("not a TLS connection")
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return errors.New("no peer certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{DNSName: name, Intermediates: inter})
	return err
}

func (e *engine) sockFuncs() map[string]luajit.Func {
	return map[string]luajit.Func{
		"sock_sslhandshake": e.sockSSLHandshake,
		"sock_new":          e.sockNew,
		"sock_adopt":        e.sockAdopt,
		"sock_connect":      e.sockConnect,
		"sock_send":         e.sockSend,
		"sock_receive":      e.sockReceive,
		"sock_receiveany":   e.sockReceiveAny,
		"sock_receiveuntil": e.sockReceiveUntil,
		"sock_settimeouts":  e.sockSetTimeouts,
		"sock_setkeepalive": e.sockSetKeepalive,
		"sock_reusedtimes":  e.sockReusedTimes,
		"sock_close":        e.sockClose,
	}
}

// stringView is argument i's string in place, no copy (s.String's): valid until the
// Go function returns, so only for what is used before then.
func stringView(s *luajit.State, i int) string {
	b := s.Bytes(i)
	return unsafe.String(unsafe.SliceData(b), len(b))
}
