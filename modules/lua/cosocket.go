package lua

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/spindle-server/spindle/internal/netutil"
	connpool "github.com/spindle-server/spindle/internal/pool"
	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// ngx.socket.tcp: cosockets. Each is a Go net.Conn used from the request's goroutine:
// connect, send and receive block that goroutine only, with the VM unlocked. A
// socket belongs to the handler run that created it and is closed when the run ends,
// unless setkeepalive put its connection in the worker's pool for that host:port (or
// pool name), where the next connect to the same key finds it.

type tcpSock struct {
	run   *run
	gen   uint64 // run.gen when created
	conf  *sockConf
	conn  net.Conn
	raw   syscall.RawConn // the TCP or unix connection under TLS, for pool checks
	isTLS bool
	// verifiedName is the server name the TLS peer was verified for ("" if not).
	verifiedName string

	buf    []byte // received and not yet consumed: buf[r:w]
	r, w   int
	pooled *[4096]byte // buf's array when it came from sockBufPool

	connectTimeout, sendTimeout, readTimeout time.Duration // 0: the lua_socket_* defaults

	key      string
	poolSize int
	reused   int
	ic       *idleConn // what held conn in its pool, kept for the next setkeepalive

	reading, writing bool
	sent             bool // the last I/O was a send: its answer is likely still on its way
	// timedOut: the last receive timed out, and what it waited for may still come:
	// the connection cannot be pooled (ngx_lua: "invalid connection").
	timedOut bool
}

// sockBufPool holds the default-sized receive buffers of cosockets.
var sockBufPool = sync.Pool{New: func() any { return new([4096]byte) }}

func (v *vm) installSocket(ngx *glua.LTable) {
	L := v.L
	sock := L.NewTable()
	setFuncs(L, sock, map[string]glua.LGFunction{
		"tcp": func(L *glua.LState) int {
			L.Push(v.newSock(L))
			return 1
		},
		"connect": func(L *glua.LState) int {
			ud := v.newSock(L)
			L.Insert(ud, 1)
			n := v.sockConnect(L)
			if L.Get(-n) == glua.LNil {
				return n
			}
			L.Push(ud)
			return 1
		},
	})
	ngx.RawSetString("socket", sock)

	v.sockMeta = L.NewTable()
	methods := L.NewTable()
	setFuncs(L, methods, map[string]glua.LGFunction{
		"connect":        v.sockConnect,
		"sslhandshake":   v.sockSSLHandshake,
		"send":           v.sockSend,
		"receive":        v.sockReceive,
		"receiveany":     v.sockReceiveAny,
		"receiveuntil":   v.sockReceiveUntil,
		"settimeout":     v.sockSetTimeout,
		"settimeouts":    v.sockSetTimeouts,
		"setkeepalive":   v.sockSetKeepalive,
		"getreusedtimes": v.sockGetReusedTimes,
		"close":          v.sockClose,
		"setoption":      v.sockSetOption,
	})
	v.sockMeta.RawSetString("__index", methods)
	v.sockMeta.RawSetString("__tostring", L.NewFunction(func(L *glua.LState) int {
		L.Push(glua.LString("tcp socket"))
		return 1
	}))
}

func (v *vm) newSock(L *glua.LState) *glua.LUserData {
	t := v.current(L)
	ru := t.run
	if !ru.phase.canYield() {
		apiDisabled(L, "ngx.socket.tcp", ru.phase)
	}
	c := ru.conf
	if c == nil {
		c = v.main.rootConf
	}
	s := &tcpSock{run: ru, gen: ru.gen, conf: &c.sock}
	ud := L.NewUserData()
	ud.Value = s
	ud.Metatable = v.sockMeta
	ru.socks = append(ru.socks, s)
	return ud
}

// checkSock returns the socket of a method call, which must belong to the running
// handler.
func (v *vm) checkSock(L *glua.LState) (*thread, *tcpSock) {
	t := v.current(L)
	ud, ok := L.Get(1).(*glua.LUserData)
	var s *tcpSock
	if ok {
		s, ok = ud.Value.(*tcpSock)
	}
	if !ok {
		L.ArgError(1, "cosocket object expected (use sock:method(), not sock.method())")
	}
	if s.run != t.run || s.gen != t.run.gen {
		L.RaiseError("bad request: the cosocket was created by another request or handler")
	}
	return t, s
}

func failure(L *glua.LState, msg string) int {
	L.Push(glua.LNil)
	L.Push(glua.LString(msg))
	return 2
}

func (s *tcpSock) timeout(which int) time.Duration {
	switch which {
	case 0:
		if s.connectTimeout > 0 {
			return s.connectTimeout
		}
		return s.conf.connectTimeout
	case 1:
		if s.sendTimeout > 0 {
			return s.sendTimeout
		}
		return s.conf.sendTimeout
	}
	if s.readTimeout > 0 {
		return s.readTimeout
	}
	return s.conf.readTimeout
}

// logErr logs a cosocket error as ngx_lua does with lua_socket_log_errors on.
func (s *tcpSock) logErr(format string, args ...any) {
	if !s.conf.logErrors {
		return
	}
	if s.run.r != nil {
		s.run.r.Logf(httpcore.LogError, format, args...)
	} else {
		s.run.v.logf(logErr, format+", context: %s", append(args, s.run.phase.directive())...)
	}
}

// closeConn closes the connection and forgets the buffer.
func (s *tcpSock) closeConn() {
	if s.conn != nil {
		if s.ic != nil {
			s.run.v.pools.Forget(s.ic)
		}
		s.conn.Close()
		s.conn, s.raw, s.isTLS, s.verifiedName, s.ic = nil, nil, false, "", nil
	}
	s.dropBuffer()
}

func (s *tcpSock) dropBuffer() {
	s.dropBufferKeep()
	s.buf, s.r, s.w = nil, 0, 0
}

// sockErr turns a Go network error into ngx_lua's words: "timeout", "closed",
// "connection refused", ...
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

// killCtx is a context done when a thread is killed, for dialing.
type killCtx struct{ done <-chan struct{} }

func (c killCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c killCtx) Done() <-chan struct{}       { return c.done }
func (c killCtx) Value(any) any               { return nil }
func (c killCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

func (v *vm) sockConnect(L *glua.LState) int {
	t, s := v.checkSock(L)
	if s.reading || s.writing {
		return failure(L, "socket busy")
	}
	host := L.CheckString(2)
	network, path, port := "tcp", "", 0
	optIdx := 3
	// The pool key, host:port as ngx_lua's, is built in a buffer of the VM: a pooled
	// connection is found without allocating it.
	key := v.keyBuf[:0]
	if p, ok := strings.CutPrefix(host, "unix:"); ok {
		network, path = "unix", p
		key = append(key, host...)
	} else {
		port = checkInt(L, 3)
		if port < 0 || port > 65535 {
			return failure(L, "bad port number: "+strconv.Itoa(port))
		}
		key = strconv.AppendInt(append(append(key, host...), ':'), int64(port), 10)
		optIdx = 4
	}
	v.keyBuf = key
	poolSize := 0
	if opts, ok := L.Get(optIdx).(*glua.LTable); ok {
		if p, ok := opts.RawGetString("pool").(glua.LString); ok {
			key = append(key[:0], p...)
		}
		if n, ok := opts.RawGetString("pool_size").(glua.LNumber); ok {
			if n <= 0 {
				L.ArgError(optIdx, "bad \"pool_size\" option value")
			}
			poolSize = int(n)
		}
	}
	// Connecting a connected socket closes its connection first, as ngx_lua does.
	s.closeConn()
	s.poolSize, s.reused, s.timedOut = poolSize, 0, false
	if ic, pkey := getPooled(v.pools, key); ic != nil {
		s.key = pkey
		s.conn, s.raw, s.isTLS, s.reused, s.verifiedName = ic.conn, ic.entry.Raw, ic.tls, ic.reused+1, ic.verifiedName
		s.ic = ic
		L.Push(lOne)
		return 1
	}
	s.key = string(key)
	addr := path
	if network == "tcp" {
		addr = net.JoinHostPort(host, strconv.Itoa(port))
	}
	ctx := killCtx{t.killCh()}
	var conn net.Conn
	var err error
	s.writing = true
	// No SO_KEEPALIVE unless setoption asks, as ngx_lua.
	v.blocking(t, func() { conn, err = netutil.Dial(ctx, network, addr, s.timeout(0)) })
	s.writing = false
	if err != nil {
		msg := sockErr(err)
		if msg == "timeout" {
			s.logErr("lua tcp socket connect timed out, when connecting to %s", addr)
		} else {
			s.logErr("lua tcp socket connect() to %s failed: %s", addr, msg)
		}
		return failure(L, msg)
	}
	s.conn, s.ic = conn, nil
	if sc, ok := conn.(syscall.Conn); ok {
		s.raw, _ = sc.SyscallConn()
	}
	L.Push(lOne)
	return 1
}

func (v *vm) sockSSLHandshake(L *glua.LState) int {
	t, s := v.checkSock(L)
	if s.conn == nil {
		return failure(L, "closed")
	}
	reusedSession := L.Get(2)
	serverName := ""
	if sn, ok := L.Get(3).(glua.LString); ok {
		serverName = string(sn)
	}
	verify := glua.LVAsBool(L.Get(4))
	session := func() int {
		if reusedSession == glua.LFalse {
			L.Push(glua.LTrue)
			return 1
		}
		ud := L.NewUserData()
		ud.Value = "ssl session"
		L.Push(ud)
		return 1
	}
	if serverName == "" && verify {
		return failure(L, "handshake failed: certificate verification needs a server name")
	}
	if s.isTLS {
		// A pooled TLS connection: verify its peer for this caller if it was not
		// verified for the same name when it was established.
		if verify && s.verifiedName != serverName {
			if err := verifyPeer(s.conn, serverName); err != nil {
				s.closeConn()
				return failure(L, "handshake failed: "+err.Error())
			}
			s.verifiedName = serverName
		}
		return session()
	}
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: !verify}
	tc := tls.Client(s.conn, cfg)
	var err error
	s.writing, s.reading = true, true
	t.blockConn = s.conn
	v.blocking(t, func() {
		s.conn.SetDeadline(time.Now().Add(s.timeout(0)))
		err = tc.Handshake()
		s.conn.SetDeadline(time.Time{})
	})
	t.blockConn = nil
	s.writing, s.reading = false, false
	if err != nil {
		s.closeConn()
		return failure(L, "handshake failed: "+sockErr(err))
	}
	s.conn, s.isTLS = tc, true
	if verify {
		s.verifiedName = serverName
	}
	return session()
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

// appendSendData flattens send's argument: strings, numbers, booleans and (nested)
// arrays of them, as ngx_lua's cosocket send.
func (v *vm) appendSendData(L *glua.LState, buf []byte, lv glua.LValue) []byte {
	switch x := lv.(type) {
	case glua.LString:
		return append(buf, x...)
	case glua.LNumber:
		return appendNumber(buf, float64(x))
	case glua.LBool:
		return strconv.AppendBool(buf, bool(x))
	case *glua.LNilType:
		return append(buf, "nil"...)
	case *glua.LTable:
		n := x.MaxN()
		for i := 1; i <= n; i++ {
			buf = v.appendSendData(L, buf, x.RawGetInt(i))
		}
		return buf
	}
	L.ArgError(2, "string, number, boolean, nil, or array table expected, got "+lv.Type().String())
	return buf
}

func (v *vm) sockSend(L *glua.LState) int {
	t, s := v.checkSock(L)
	if s.conn == nil {
		return failure(L, "closed")
	}
	if s.writing {
		return failure(L, "socket busy writing")
	}
	var data []byte
	if str, ok := L.Get(2).(glua.LString); ok {
		data = []byte(str)
	} else {
		data = v.appendSendData(L, nil, L.Get(2))
	}
	conn := s.conn
	var n int
	var err error
	s.writing = true
	t.blockConn = conn
	v.blocking(t, func() {
		if s.raw != nil && !s.isTLS {
			n, err = s.rawWrite(t, data, s.timeout(1))
			return
		}
		conn.SetWriteDeadline(time.Now().Add(s.timeout(1)))
		n, err = conn.Write(data)
	})
	t.blockConn = nil
	s.writing = false
	s.sent = true
	if err != nil {
		// Errors on send are fatal to the connection.
		msg := sockErr(err)
		if msg == "timeout" {
			s.logErr("lua tcp socket write timed out")
		} else {
			s.logErr("lua tcp socket send failed: %s", msg)
		}
		s.closeConn()
		return failure(L, msg)
	}
	L.Push(glua.LNumber(n))
	return 1
}

// fill reads more data into the buffer, waiting at most the read timeout (which,
// as in ngx_lua, bounds each wait for data, not a whole receive).
func (v *vm) fill(t *thread, s *tcpSock) error {
	if s.buf == nil {
		if s.conf.bufferSize == 4096 {
			s.pooled = sockBufPool.Get().(*[4096]byte)
			s.buf = s.pooled[:]
		} else {
			s.buf = make([]byte, s.conf.bufferSize)
		}
	}
	if s.r > 0 && s.r == s.w {
		s.r, s.w = 0, 0
	}
	if s.w == len(s.buf) {
		if s.r > 0 {
			s.w = copy(s.buf, s.buf[s.r:s.w])
			s.r = 0
		} else {
			nb := make([]byte, 2*len(s.buf))
			copy(nb, s.buf[:s.w])
			s.dropBufferKeep()
			s.buf = nb
		}
	}
	conn := s.conn
	var n int
	var err error
	t.blockConn = conn
	yield := s.sent
	s.sent = false
	v.blocking(t, func() {
		if yield {
			// The answer to what was just sent is rarely in yet: let the worker's other
			// coroutines run first instead of a read that finds nothing and a park.
			runtime.Gosched()
		}
		if s.raw != nil && !s.isTLS {
			n, err = s.rawRead(t, s.buf[s.w:], s.timeout(2))
			return
		}
		conn.SetReadDeadline(time.Now().Add(s.timeout(2)))
		n, err = conn.Read(s.buf[s.w:])
	})
	t.blockConn = nil
	s.w += n
	if n > 0 {
		s.timedOut = false
	}
	if n > 0 && err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// dropBufferKeep recycles the pooled buffer (about to be replaced or dropped).
func (s *tcpSock) dropBufferKeep() {
	if s.pooled != nil {
		sockBufPool.Put(s.pooled)
		s.pooled = nil
	}
}

// readFailed reports a receive error: a timeout keeps the connection (the only
// non-fatal error, as in ngx_lua), anything else closes it. Buffered data is returned
// as the partial result.
func (s *tcpSock) readFailed(L *glua.LState, err error) int {
	partial := glua.LString(s.buf[s.r:s.w])
	s.r = s.w
	msg := sockErr(err)
	switch msg {
	case "timeout":
		s.logErr("lua tcp socket read timed out")
		s.timedOut = true
	case "closed":
		s.closeConn()
	default:
		s.logErr("lua tcp socket read failed: %s", msg)
		s.closeConn()
	}
	L.Push(glua.LNil)
	L.Push(glua.LString(msg))
	L.Push(partial)
	return 3
}

func (v *vm) sockReceive(L *glua.LState) int {
	t, s := v.checkSock(L)
	if s.conn == nil {
		return failure(L, "closed")
	}
	if s.reading {
		return failure(L, "socket busy reading")
	}
	s.reading = true
	defer func() { s.reading = false }()
	pat := L.Get(2)
	if ps, ok := pat.(glua.LString); ok && !strings.HasPrefix(string(ps), "*") {
		// A numeric string is a size, as lua_isnumber says in ngx_lua.
		if n, err := strconv.ParseFloat(strings.TrimSpace(string(ps)), 64); err == nil {
			pat = glua.LNumber(n)
		}
	}
	switch p := pat.(type) {
	case glua.LNumber:
		n := int(p)
		if n < 0 {
			L.ArgError(2, "bad pattern argument: negative size")
		}
		for s.w-s.r < n {
			if s.buf != nil && n > len(s.buf) && s.r == 0 {
				// Room for the whole answer at once.
				nb := make([]byte, n)
				copy(nb, s.buf[:s.w])
				s.dropBufferKeep()
				s.buf = nb
			}
			if err := v.fill(t, s); err != nil {
				return s.readFailed(L, err)
			}
		}
		data := glua.LString(s.buf[s.r : s.r+n])
		s.r += n
		L.Push(data)
		return 1
	case *glua.LNilType, glua.LString:
		pat := "*l"
		if ps, ok := p.(glua.LString); ok {
			pat = string(ps)
		}
		switch pat {
		case "*l", "*L":
			for {
				if i := bytes.IndexByte(s.buf[s.r:s.w], '\n'); i >= 0 {
					line := s.buf[s.r : s.r+i]
					s.r += i + 1
					if pat == "*L" {
						line = s.buf[s.r-i-1 : s.r]
					}
					// All CRs are ignored by the *l pattern.
					if pat == "*l" && bytes.IndexByte(line, '\r') >= 0 {
						line = bytes.ReplaceAll(line, []byte{'\r'}, nil)
					}
					L.Push(glua.LString(line))
					return 1
				}
				if err := v.fill(t, s); err != nil {
					return s.readFailed(L, err)
				}
			}
		case "*a":
			for {
				err := v.fill(t, s)
				if errors.Is(err, io.EOF) {
					data := glua.LString(s.buf[s.r:s.w])
					s.closeConn()
					L.Push(data)
					return 1
				}
				if err != nil {
					return s.readFailed(L, err)
				}
			}
		}
		L.ArgError(2, "bad pattern argument: "+pat)
	}
	L.ArgError(2, "bad pattern argument")
	return 0
}

func (v *vm) sockReceiveAny(L *glua.LState) int {
	t, s := v.checkSock(L)
	max := checkInt(L, 2)
	if max <= 0 {
		L.ArgError(2, "bad max argument")
	}
	if s.conn == nil {
		return failure(L, "closed")
	}
	if s.reading {
		return failure(L, "socket busy reading")
	}
	if s.r == s.w {
		s.reading = true
		err := v.fill(t, s)
		s.reading = false
		if err != nil {
			return s.readFailed(L, err)
		}
	}
	n := min(max, s.w-s.r)
	data := glua.LString(s.buf[s.r : s.r+n])
	s.r += n
	L.Push(data)
	return 1
}

// sockReceiveUntil returns an iterator reading up to a pattern (the pattern is
// consumed, and returned too with inclusive = true). With a size argument the iterator
// returns at most size bytes per call and nil once the pattern was reached.
func (v *vm) sockReceiveUntil(L *glua.LState) int {
	_, s := v.checkSock(L)
	pat := []byte(L.CheckString(2))
	if len(pat) == 0 {
		L.ArgError(2, "pattern is empty")
	}
	inclusive := false
	if o, ok := L.Get(3).(*glua.LTable); ok {
		inclusive = glua.LVAsBool(o.RawGetString("inclusive"))
	}
	found := false
	L.Push(L.NewFunction(func(L *glua.LState) int {
		t := v.current(L)
		if s.run != t.run || s.gen != t.run.gen {
			L.RaiseError("bad request: the cosocket was created by another request or handler")
		}
		size := 0
		if n, ok := L.Get(1).(glua.LNumber); ok {
			size = int(n)
			if size <= 0 {
				L.ArgError(1, "bad size argument")
			}
		}
		if size > 0 && found {
			found = false
			L.Push(glua.LNil)
			return 1
		}
		if s.conn == nil && s.r == s.w {
			return failure(L, "closed")
		}
		if s.reading {
			return failure(L, "socket busy reading")
		}
		s.reading = true
		defer func() { s.reading = false }()
		for {
			data := s.buf[s.r:s.w]
			if i := bytes.Index(data, pat); i >= 0 && (size == 0 || i <= size) {
				end := i
				if inclusive {
					end = i + len(pat)
				}
				out := glua.LString(data[:end])
				s.r += i + len(pat)
				if size > 0 {
					found = true
				}
				L.Push(out)
				return 1
			}
			if size > 0 && len(data) >= size+len(pat)-1 {
				out := glua.LString(data[:size])
				s.r += size
				L.Push(out)
				return 1
			}
			if s.conn == nil {
				return s.readFailed(L, io.EOF)
			}
			if err := v.fill(t, s); err != nil {
				return s.readFailed(L, err)
			}
		}
	}))
	return 1
}

func msArg(L *glua.LState, n int) time.Duration {
	lv := L.Get(n)
	if lv == glua.LNil {
		return 0
	}
	ms := float64(L.CheckNumber(n))
	if ms <= 0 {
		return 0
	}
	return time.Duration(ms * float64(time.Millisecond))
}

func (v *vm) sockSetTimeout(L *glua.LState) int {
	_, s := v.checkSock(L)
	d := msArg(L, 2)
	s.connectTimeout, s.sendTimeout, s.readTimeout = d, d, d
	return 0
}

func (v *vm) sockSetTimeouts(L *glua.LState) int {
	_, s := v.checkSock(L)
	s.connectTimeout, s.sendTimeout, s.readTimeout = msArg(L, 2), msArg(L, 3), msArg(L, 4)
	return 0
}

func (v *vm) sockSetKeepalive(L *glua.LState) int {
	_, s := v.checkSock(L)
	if s.conn == nil {
		return failure(L, "closed")
	}
	if s.reading || s.writing {
		return failure(L, "socket busy")
	}
	if s.r < s.w {
		s.closeConn()
		return failure(L, "connection in dubious state")
	}
	if s.timedOut {
		// The late answer would be read by the connection's next user.
		return failure(L, "invalid connection")
	}
	timeout := s.conf.keepaliveTimeout
	if lv := L.Get(2); lv != glua.LNil {
		ms := float64(L.CheckNumber(2))
		if ms < 0 {
			L.ArgError(2, "bad timeout argument")
		}
		timeout = time.Duration(ms * float64(time.Millisecond))
	}
	size := s.poolSize
	if lv := L.Get(3); lv != glua.LNil {
		n := checkInt(L, 3)
		if n <= 0 {
			L.ArgError(3, "bad pool size argument")
		}
		size = n
	}
	if size == 0 {
		size = s.conf.poolSize
	}
	ic := s.ic
	if ic == nil {
		ic = new(idleConn)
	}
	ic.conn, ic.entry.Raw, ic.tls, ic.reused, ic.verifiedName = s.conn, s.raw, s.isTLS, s.reused, s.verifiedName
	key := s.key
	s.conn, s.raw, s.isTLS, s.verifiedName, s.ic = nil, nil, false, "", nil
	s.dropBuffer()
	v.pools.Put(key, ic, size, timeout)
	L.Push(lOne)
	return 1
}

func (v *vm) sockGetReusedTimes(L *glua.LState) int {
	_, s := v.checkSock(L)
	if s.conn == nil {
		return failure(L, "closed")
	}
	L.Push(glua.LNumber(s.reused))
	return 1
}

func (v *vm) sockClose(L *glua.LState) int {
	_, s := v.checkSock(L)
	if s.conn == nil {
		return failure(L, "closed")
	}
	s.closeConn()
	L.Push(lOne)
	return 1
}

// tcpOptions are the socket options setoption sets: net.TCPConn's methods, which
// netutil.Dial's connections have too.
type tcpOptions interface {
	SetKeepAlive(bool) error
	SetNoDelay(bool) error
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
}

func (v *vm) sockSetOption(L *glua.LState) int {
	_, s := v.checkSock(L)
	opt := L.CheckString(2)
	if s.conn == nil {
		return failure(L, "closed")
	}
	tc, _ := s.conn.(tcpOptions)
	switch opt {
	case "keepalive":
		if tc != nil {
			tc.SetKeepAlive(glua.LVAsBool(L.Get(3)) || L.Get(3) == glua.LNumber(1))
		}
	case "tcp-nodelay":
		if tc != nil {
			tc.SetNoDelay(glua.LVAsBool(L.Get(3)) || L.Get(3) == glua.LNumber(1))
		}
	case "sndbuf":
		if tc != nil {
			tc.SetWriteBuffer(checkInt(L, 3))
		}
	case "rcvbuf":
		if tc != nil {
			tc.SetReadBuffer(checkInt(L, 3))
		}
	case "reuseaddr":
	default:
		return failure(L, "unsupported option "+opt)
	}
	L.Push(glua.LTrue)
	return 1
}

// The worker's connection pools.

// sockPools are a VM's cosocket pools, keyed "host:port", "unix:/path" or by the
// pool option. A connection pooled less than a second ago is handed out on the
// strength of the hang-up watch alone; one idle longer is peeked too, for data that
// came unasked.
type sockPools = connpool.Pool[string, *idleConn]

func newSockPools() *sockPools {
	return connpool.New[string, *idleConn](connpool.Options{Watch: true, PeekAfter: time.Second})
}

// getPooled takes the most recently pooled live connection for key, and gives the
// pool's copy of the key.
func getPooled(p *sockPools, key []byte) (*idleConn, string) {
	// key is the VM's scratch buffer, unchanged while Get looks it up and kept by
	// nothing: a string of its bytes costs no copy.
	ic, pkey, _ := p.Get(unsafe.String(unsafe.SliceData(key), len(key)))
	return ic, pkey
}

// idleConn is a pooled connection. It goes back and forth between its pool and the
// cosockets that take it (tcpSock.ic) for the connection's life.
type idleConn struct {
	conn         net.Conn
	tls          bool
	verifiedName string
	reused       int
	entry        connpool.Entry
}

// PoolEntry and ClosePooled make idleConn a pooled connection.
func (ic *idleConn) PoolEntry() *connpool.Entry { return &ic.entry }
func (ic *idleConn) ClosePooled()               { ic.conn.Close() }
