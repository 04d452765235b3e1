package httpcore

// A connection's lifecycle: the Engine accepts it (or the loop does, loop.go), reads
// each request head, runs the request (request_lifecycle.go), keeps it alive or closes
// it; rejected heads are answered here.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Engine serves HTTP/1.1 on a worker's listening sockets with a Config. TCP listeners
// are served by an event loop (loop.go): idle connections cost no goroutine, requests
// that never wait run inline, and each request that has to wait becomes a coroutine of
// its own, so that every blocking call parks only that coroutine. Other listeners (and
// connections given directly, in tests) get a goroutine per connection.
type Engine struct {
	cfg  *Config
	opts EngineOptions

	sem       chan struct{} // worker_connections
	mu        sync.Mutex
	conns     map[*conn]struct{}
	listeners []net.Listener
	loop      *eventLoop
	acceptWG  sync.WaitGroup // accept loops: a connection accepted is counted in wg before they return
	wg        sync.WaitGroup
	draining  atomic.Bool
	drainCh   chan struct{}
	connSeq   atomic.Uint64

	// stub_status counters
	accepted, handled, requests atomic.Int64
	active, reading, writing    atomic.Int64
	statusCodes                 [6]atomic.Int64 // 1xx..5xx by first digit
	onAcceptErrorLogged         atomic.Int64
	connsLimitLogged            atomic.Bool
	reuseLogged                 atomic.Int64 // the second "reusing connections" was last logged
	idleGrace                   time.Duration
	shutdownOnce                sync.Once
}

// EngineOptions tune an Engine.
type EngineOptions struct {
	// WorkerConnections caps the connections served at once; further connections wait
	// in the kernel's accept queue until one closes.
	WorkerConnections int
	// MultiAccept makes the event loop take every connection waiting on a listening
	// socket when epoll reports it, not one (nginx's multi_accept).
	MultiAccept bool
	// ConnectionSeqBase makes connection numbers unique across workers.
	ConnectionSeqBase uint64
	// NoEventLoop serves TCP listeners with a goroutine per connection too.
	NoEventLoop bool
}

// NewEngine returns an engine serving cfg.
func NewEngine(cfg *Config, opts EngineOptions) *Engine {
	n := opts.WorkerConnections
	if n <= 0 {
		n = 512
	}
	e := &Engine{
		cfg:       cfg,
		opts:      opts,
		sem:       make(chan struct{}, n),
		conns:     map[*conn]struct{}{},
		drainCh:   make(chan struct{}),
		idleGrace: 2 * time.Second,
	}
	e.connSeq.Store(opts.ConnectionSeqBase)
	startClock()
	return e
}

// Serve accepts connections on ln, a socket bound to the listen address addr, until
// the engine stops.
func (e *Engine) Serve(ln net.Listener, addr string) error {
	as := e.cfg.byAddr[addr]
	if as == nil {
		ln.Close()
		return errorf("no server listens on %s", addr)
	}
	e.mu.Lock()
	if e.draining.Load() {
		e.mu.Unlock()
		ln.Close()
		return nil
	}
	if tl, ok := ln.(*net.TCPListener); ok && !e.opts.NoEventLoop {
		if e.loop == nil {
			l, err := newEventLoop(e)
			if err != nil {
				e.mu.Unlock()
				return err
			}
			e.loop = l
		}
		l := e.loop
		e.mu.Unlock()
		if err := l.addListener(tl, as); err != nil {
			return err
		}
		<-l.done
		return nil
	}
	e.listeners = append(e.listeners, ln)
	e.acceptWG.Add(1)
	e.mu.Unlock()
	defer e.acceptWG.Done()
	delay := 5 * time.Millisecond
	for {
		select {
		case e.sem <- struct{}{}:
		default:
			if !e.connsLimitLogged.Swap(true) {
				e.cfg.log.Alertf("%d worker_connections are not enough, new connections wait in the listen queue", cap(e.sem))
			}
			select {
			case e.sem <- struct{}{}:
			case <-e.drainCh:
				return nil
			}
		}
		nc, err := ln.Accept()
		if err != nil {
			<-e.sem
			if e.draining.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// EMFILE and friends: back off as nginx disables accept for a while.
			if e.onAcceptErrorLogged.Add(1) < 100 {
				e.cfg.log.Alertf("accept() failed: %v", err)
			}
			time.Sleep(delay)
			if delay < time.Second {
				delay *= 2
			}
			continue
		}
		delay = 5 * time.Millisecond
		e.accepted.Add(1)
		e.handled.Add(1)
		if as.tls != nil {
			workers.Go(e.newTLSConn(nc, as).serveTLS)
			continue
		}
		c := newConn(e, nc, as, nil)
		workers.Go(c.serve)
	}
}

// Draining reports whether the engine is shutting down gracefully.
func (e *Engine) Draining() bool { return e.draining.Load() }

func (e *Engine) stopAccepting() {
	e.shutdownOnce.Do(func() {
		e.mu.Lock()
		e.draining.Store(true)
		close(e.drainCh)
		for _, ln := range e.listeners {
			ln.Close()
		}
		l := e.loop
		e.mu.Unlock()
		if l != nil {
			l.drain()
		}
	})
	// An accept loop may hold a connection it accepted just before its listener
	// closed: wait for the loops to hand their connections over first.
	e.acceptWG.Wait()
}

// Shutdown drains the engine: it stops accepting, lets in-flight requests finish,
// answers the next request of each keepalive connection with "Connection: close",
// closes connections that stay idle, and after timeout (if > 0) closes everything. It
// returns when every connection is gone.
func (e *Engine) Shutdown(timeout time.Duration) {
	e.stopAccepting()
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	done := make(chan struct{})
	go func() { e.wait(); close(done) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		now := time.Now()
		forced := !deadline.IsZero() && now.After(deadline)
		if forced && e.loop != nil {
			e.loop.expire()
		}
		e.mu.Lock()
		for c := range e.conns {
			if forced && c.hijackedNC != nil {
				// A hijacker manages its own deadlines: close the connection.
				c.hijackedNC.Close()
				continue
			}
			if c.lt != nil {
				continue // the loop closes its idle connections itself
			}
			if forced {
				c.t.expire()
				continue
			}
			if c.state.Load() == stateIdle && now.Sub(time.Unix(0, c.idleSince.Load())) >= e.idleGrace {
				c.closeIdle()
			}
		}
		e.mu.Unlock()
	}
}

// wait returns when every connection is gone and the event loop has ended. The loop
// goes first: until it ends it may still accept, and count, a connection.
func (e *Engine) wait() {
	e.mu.Lock()
	l := e.loop
	e.mu.Unlock()
	if l != nil {
		<-l.done
	}
	e.wg.Wait()
}

// Close stops the engine at once, closing every connection.
func (e *Engine) Close() {
	e.stopAccepting()
	if e.loop != nil {
		e.loop.expire()
	}
	e.mu.Lock()
	for c := range e.conns {
		if c.lt == nil {
			c.t.expire()
			c.t.close()
		}
	}
	e.mu.Unlock()
	e.wait()
}

// Counters returns the engine's stub_status counters.
func (e *Engine) Counters() map[string]int64 {
	m := map[string]int64{
		"accepts":  e.accepted.Load(),
		"handled":  e.handled.Load(),
		"requests": e.requests.Load(),
		"active":   e.active.Load(),
		"reading":  e.reading.Load(),
		"writing":  e.writing.Load(),
	}
	m["waiting"] = m["active"] - m["reading"] - m["writing"]
	for i := 1; i < len(e.statusCodes); i++ {
		m[strconv.Itoa(i)+"xx"] = e.statusCodes[i].Load()
	}
	return m
}

const (
	stateIdle int32 = iota
	stateReading
	stateActive
	stateClosed
)

// conn is one client connection.
type conn struct {
	e   *Engine
	t   transport
	lt  *loopTransport // set when the event loop owns the socket
	tls *tlsConn       // a TLS connection (tls.go)
	h2  *h2stream      // an HTTP/2 stream's request (h2.go)
	as  *addrServers
	id  uint64

	// Request-time state, from a pool: a connection idle in the event loop holds none.
	rs  *reqState
	br  *bufio.Reader
	bw  *bufio.Writer
	hdr *reqHeader
	req *Request

	requests  int
	state     atomic.Int32
	idleSince atomic.Int64
	owner     atomic.Int32 // ownerLoop or ownerGoroutine (event loop connections)

	inLoop bool    // the loop's leader is running this connection
	park   parking // a parked request's hand-over (park.go)
	// predicted: the location mayBlock looked at for the current request; waited: the
	// request called Request.Blocking (it waited, or would have, for a backend).
	predicted    *Location
	waited       bool
	readingHead  bool // waiting for or reading a request head
	headDeadline bool // client_header_timeout armed for the current head
	closing      bool
	released     bool
	wroteHeader  bool // the head is written to the connection: after Request.headerSent, at the first flush
	chunked      bool
	closeAfter   bool
	lingering    bool
	hijacked     bool
	hijackRefs   atomic.Int32 // holders of a hijacked connection (see Hijack)
	abort        bool         // close without a response (444)
	hijackedNC   net.Conn     // the connection a hijacker holds
	logPending   bool         // the request process ran waits for its log phase
	plainHTTP    bool         // plain HTTP on a TLS address: its request is answered with 497 (tls.go)
	declared     int64        // the Content-Length of a head sent before its body was whole, else -1
	// proxyWanted: the listen socket speaks the PROXY protocol and its header is not
	// read yet; proxy is what it said (proxyproto.go).
	proxyWanted bool
	proxy       *proxyInfo
}

type reqState struct {
	br   *bufio.Reader
	bw   *bufio.Writer
	hdr  reqHeader
	req  Request
	scan headScan // of the head being read
	// target: the request target of the last request that had this state, whose
	// string the next request with the same target shares (prepare).
	target string
}

var statePool = sync.Pool{New: func() any { return new(reqState) }}

// readerPool and writerPool hold the connections' input and output buffers: a state
// takes them when it has none, and a request that waits gives them back meanwhile
// (see shedBuffers), for the next request to use.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

func newConn(e *Engine, nc net.Conn, as *addrServers, t transport) *conn {
	if t == nil {
		t = newNetTransport(nc)
	}
	c := &conn{e: e, t: t, as: as, id: e.connSeq.Add(1), proxyWanted: as.listen.ProxyProtocol}
	if lt, ok := t.(*loopTransport); ok {
		c.lt, lt.c = lt, c
	}
	c.idleSince.Store(coarseNanos())
	if c.lt == nil {
		// The event loop keeps its own connections: e.conns lists the others, and
		// hijacked ones.
		e.mu.Lock()
		e.conns[c] = struct{}{}
		e.mu.Unlock()
	}
	e.wg.Add(1)
	e.active.Add(1)
	return c
}

func (c *conn) acquireState() {
	if c.rs != nil {
		return
	}
	rs := statePool.Get().(*reqState)
	if rs.br == nil {
		rs.br = readerPool.Get().(*bufio.Reader)
	}
	if rs.bw == nil {
		rs.bw = writerPool.Get().(*bufio.Writer)
	}
	rs.br.Reset(c.t)
	rs.bw.Reset(c.t)
	c.rs, c.br, c.bw, c.hdr, c.req = rs, rs.br, rs.bw, &rs.hdr, &rs.req
}

// releaseState returns the request-time state to the pool; the connection must have
// no buffered input or output left.
func (c *conn) releaseState() {
	rs := c.rs
	if rs == nil {
		return
	}
	bw := c.bw
	c.rs, c.br, c.bw, c.hdr, c.req = nil, nil, nil, nil, nil
	if c.hijacked {
		return // the hijacker owns the buffers
	}
	if rs.br != nil {
		rs.br.Reset(nil)
	}
	if rs.bw = bw; bw != nil {
		bw.Reset(nil)
	}
	rs.req.reset()
	rs.req.c, rs.req.hdr, rs.req.cfg = nil, nil, nil
	statePool.Put(rs)
}

// reader returns the connection's input buffer, taken from the pool again if the
// request gave it back while it waited.
func (c *conn) reader() *bufio.Reader {
	if c.br == nil {
		c.br = readerPool.Get().(*bufio.Reader)
		c.br.Reset(c.t)
		c.rs.br = c.br
	}
	return c.br
}

// writer returns the connection's output buffer, taken from the pool again if the
// request gave it back while it waited.
func (c *conn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = writerPool.Get().(*bufio.Writer)
		c.bw.Reset(c.t)
		c.rs.bw = c.bw
	}
	return c.bw
}

// flush sends what the output buffer holds.
func (c *conn) flush() error {
	if c.bw == nil {
		return nil
	}
	return c.bw.Flush()
}

// shedBuffers gives empty input and output buffers back while the main request r
// waits (a Lua handler in ngx.sleep or waiting for a backend or subrequests, an
// echo_sleep): a request in flight holds 8 KB less. Only from r's own coroutine,
// between its handler's steps, so that nothing is using them; the input buffer only
// once r's body is read or absent, so that neither a body reader nor a subrequest
// reading its parent's body uses it meanwhile.
func (c *conn) shedBuffers(r *Request) {
	if c.hijacked {
		return
	}
	if c.bw != nil && c.bw.Buffered() == 0 {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw, c.rs.bw = nil, nil
	}
	if br := c.br; br != nil && br == c.rs.br && br.Buffered() == 0 && (r.body.length == 0 || r.body.done || r.body.read) {
		br.Reset(nil)
		readerPool.Put(br)
		c.br, c.rs.br = nil, nil
	}
}

func (c *conn) remoteAddr() string { return c.t.remoteAddr() }

func (c *conn) localAddr() string { return c.t.localAddr() }

// closeIdle wakes an idle connection's reader so that it closes (drain end).
func (c *conn) closeIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		c.t.wakeIdle()
	}
}

// release forgets a connection that is gone, once.
func (c *conn) release() {
	if c.hijacked && c.hijackRefs.Add(-1) > 0 {
		return
	}
	if c.released {
		return
	}
	c.released = true
	e := c.e
	if c.lt == nil || c.hijackedNC != nil {
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
	}
	e.active.Add(-1)
	<-e.sem
	e.wg.Done()
}

// serve runs a connection that has a goroutine of its own, until it closes.
func (c *conn) serve() {
	defer c.release()
	defer func() {
		if p := recover(); p != nil {
			if c.logPending {
				c.logPending = false
				c.e.writing.Add(-1)
			}
			c.e.cfg.log.Alertf("*%d panic while serving a request: %v\n%s", c.id, p, stack())
			c.t.close()
		}
	}()
	c.acquireState()
	c.run()
	c.releaseState()
}

// runLoop runs a connection for the event loop's leader: the requests it has, inline,
// until it needs more input (it stays with the loop) or closes. A request that will
// wait goes to a coroutine of its own (handOff); one that turns out to wait on the
// way makes the calling goroutine that connection's own (leaveLoop). Either way the
// connection goes back to the loop when it is idle again.
func (c *conn) runLoop() {
	c.inLoop = true
	c.acquireState()
	handedOff := false
	defer func() {
		p := recover()
		if !handedOff {
			c.leaveAfterRun(p)
		} else if p != nil {
			panic(p)
		}
	}()
	handedOff = c.run()
}

// leaveAfterRun ends a stretch of running c, in the loop's leader or in c's own
// coroutine: the connection stays with the loop or goes back to it. p is what the
// stretch panicked with, if it did: the connection is closed, the worker goes on.
func (c *conn) leaveAfterRun(p any) {
	if p != nil {
		if c.logPending {
			c.logPending = false
			c.e.writing.Add(-1)
		}
		c.e.cfg.log.Alertf("*%d panic while serving a request: %v\n%s", c.id, p, stack())
		c.abort = true
		c.t.close()
	}
	if c.closing {
		return // handed back or destroyed
	}
	if c.hijacked {
		// The hijacker has a duplicate of the socket: the loop lets go of its own.
		c.releaseState()
		if c.inLoop {
			c.inLoop = false
			c.lt.l.forget(c)
		} else {
			c.lt.l.handBack(c)
		}
		return
	}
	if c.rs != nil && (c.br == nil || c.br.Buffered() == 0) && (c.bw == nil || c.bw.Buffered() == 0) {
		c.releaseState()
	} else if c.rs != nil && c.bw != nil && c.bw.Buffered() == 0 {
		// Waiting for the rest of a request head: the output buffer goes back to
		// the pool until there is a response to write (a slowloris connection
		// holds its head's bytes and 4 KB less: 10 -> 6 KB).
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw, c.rs.bw = nil, nil
	}
	if c.inLoop {
		c.inLoop = false
		return
	}
	c.lt.l.handBack(c)
}

// leaveLoop makes the goroutine running c, the loop's leader, c's own: the loop goes
// on with another goroutine while this one waits on c's behalf.
func (c *conn) leaveLoop() {
	if !c.inLoop {
		return
	}
	c.inLoop = false
	if c.lt.ready == nil {
		c.lt.ready = make(chan struct{}, 1)
	}
	c.owner.Store(ownerGoroutine)
	c.lt.l.abdicate()
}

const (
	headOK     = iota
	headWait   // no complete head yet: the loop waits for more (event loop only)
	headClosed // the client went away or timed out: close
	headDone   // answered with an error and closed already
	headH2     // the HTTP/2 connection preface (h2.go)
)

// run serves requests until the connection closes, or (event loop connections) until
// it waits for more of a request head or goes to a coroutine of its own: then it
// reports true, and the caller must not touch c any more.
func (c *conn) run() (handedOff bool) {
	core := CoreConfOf(c.as.def.root)
	for {
		switch c.readHead(core) {
		case headWait, headDone:
			return false
		case headClosed:
			c.t.close()
			return false
		case headH2:
			return c.startH2()
		}
		ok := c.prepare()
		c.predicted, c.waited = nil, false
		if c.inLoop && ok && c.mayBlock() {
			c.handOff(ok)
			return true
		}
		if c.process(ok) {
			c.parkHere()
			return true
		}
		c.learn()
		if !c.afterRequest() {
			return false
		}
	}
}

// afterRequest finishes a request's connection business: it reports false when the
// connection is closed or taken.
func (c *conn) afterRequest() bool {
	if c.hijacked {
		return false
	}
	if c.abort {
		c.endRequest()
		c.t.close()
		return false
	}
	// Whether to close was decided with the response header (Connection: close when
	// draining); a response that promised keep-alive gets its next request served.
	if c.closeAfter {
		c.flush()
		c.endRequest()
		c.close()
		return false
	}
	// With pipelined requests waiting, responses are sent together after the last.
	if c.br == nil || c.br.Buffered() == 0 {
		if err := c.flush(); err != nil {
			c.endRequest()
			c.t.close()
			return false
		}
	}
	c.endRequest()
	return true
}

// handOff gives a request that will wait, and its connection, to a coroutine of its
// own; the loop's leader goes on with other connections. (The event loop's dispatch
// is something else: it routes one epoll event to its connection.)
func (c *conn) handOff(ok bool) {
	c.inLoop = false
	if c.lt.ready == nil {
		c.lt.ready = make(chan struct{}, 1)
	}
	c.owner.Store(ownerGoroutine)
	workers.Go(func() {
		gone := false // parked: the connection is its continuation's now
		defer func() {
			p := recover()
			if !gone {
				c.leaveAfterRun(p)
			} else if p != nil {
				panic(p)
			}
		}()
		if c.process(ok) {
			gone = true
			c.parkHere()
			return
		}
		c.learn()
		if c.afterRequest() {
			// true: a later request parked, or HTTP/2 took the connection.
			gone = c.run()
		}
	})
}

// close ends a connection after a response. When spindle, not the client, decided to
// close, the connection lingers: the write side is shut and whatever the client still
// sends is read and dropped for a while, so that the kernel does not answer unread data
// with a reset that would destroy the response in flight.
func (c *conn) close() {
	if c.lingering || c.br != nil && c.br.Buffered() > 0 {
		c.t.linger(CoreConfOf(c.as.def.root).LingeringTimeout)
	}
	c.t.close()
}

// readHead waits for and reads the next request head.
func (c *conn) readHead(core *CoreConf) int {
	c.state.Store(stateIdle)
	c.idleSince.Store(coarseNanos())
	// No defers here: with this many returns they would not be open-coded, and this
	// runs for every request.
	c.readingHead = true
	if c.reader().Buffered() == 0 {
		if c.requests > 0 {
			c.t.setReadTimeout(core.KeepaliveTimeout)
		} else if !c.headDeadline {
			// The first head has client_header_timeout from the connection's start
			// (the event loop arms it at accept): later reads do not move it.
			c.t.setReadTimeout(core.ClientHeaderTimeout)
			c.headDeadline = true
		}
		if _, err := c.br.Peek(1); err != nil {
			c.readingHead = false
			if err == errWouldBlock {
				return headWait
			}
			// An idle keepalive connection that times out or closes is normal.
			return headClosed
		}
	}
	if c.requests == 0 && c.h2Eligible() {
		if st := c.h2Detect(); st != headOK {
			c.readingHead = false
			return st
		}
	}
	if !c.state.CompareAndSwap(stateIdle, stateReading) {
		c.readingHead = false
		return headClosed // closed by drain just as data arrived
	}
	c.e.reading.Add(1)
	res := c.readHeadData(core)
	c.e.reading.Add(-1)
	c.readingHead = false
	return res
}

// readHeadData reads the rest of a request head whose first bytes are in.
func (c *conn) readHeadData(core *CoreConf) int {
	lim := headLimits{line: core.LargeHeaderBuffer, field: core.LargeHeaderBuffer, total: core.LargeHeaderBuffer * core.LargeHeaderBuffers}
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if c.proxyWanted && !c.readProxyProtocol(&buf) {
			return headClosed
		}
		c.rs.scan = scanHead(buf, lim)
		if c.rs.scan.status != 0 {
			c.reject(c.rs.scan.status, c.rs.scan.reason)
			return headDone
		}
		if c.rs.scan.n > 0 {
			break
		}
		if len(buf) >= lim.total {
			st := 431
			if !c.rs.scan.lineDone {
				st = 414
			}
			c.reject(st, "request head too large")
			return headDone
		}
		if c.br.Buffered() == c.br.Size() {
			c.growReader(lim.total)
		}
		if !c.headDeadline {
			// client_header_timeout bounds the whole head, however it trickles in.
			c.t.setReadTimeout(core.ClientHeaderTimeout)
			c.headDeadline = true
		}
		if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil {
			if err == errWouldBlock {
				return headWait
			}
			if isTimeout(err) && !c.proxyWanted {
				c.headTimedOut()
				c.t.close()
				return headDone
			}
			return headClosed
		}
	}
	c.headDeadline = false
	head, _ := c.br.Peek(c.rs.scan.n)
	if err := c.hdr.parse(head); err != nil {
		c.reject(400, err.Error()) // logs the request line still in the reader
		return headDone
	}
	c.br.Discard(c.rs.scan.n)
	return headOK
}

func (c *conn) growReader(limit int) {
	buffered, _ := c.br.Peek(c.br.Buffered())
	data := append([]byte(nil), buffered...)
	size := c.br.Size() * 4
	if size > limit {
		size = limit
	}
	c.br = bufio.NewReaderSize(io.MultiReader(&byteReader{b: data}, c.t), size)
}

type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// headTimedOut logs a request head that did not arrive within client_header_timeout,
// as nginx does: an info line in the error log and 408 in the access log. The caller
// closes the connection without a response, as nginx: a client that stopped sending
// is not waited for.
func (c *conn) headTimedOut() {
	c.e.statusCodes[4].Add(1)
	if c.e.cfg.log.Enabled(LogInfo) {
		c.e.cfg.log.Infof("*%d client timed out (110: Connection timed out) while reading client request headers, client: %s", c.id, c.remoteAddr())
	}
	c.readingHead = false
	c.headDeadline = false
	c.logRejected(408, 0, 0)
}

// reject answers a request that could not be parsed and closes the connection.
func (c *conn) reject(status int, reason string) {
	c.e.statusCodes[status/100].Add(1)
	if c.e.cfg.log.Enabled(LogInfo) {
		c.e.cfg.log.Infof("*%d client sent invalid request (%s) while reading client request headers, client: %s", c.id, reason, c.remoteAddr())
	}
	c.readingHead = false
	body := AppendErrorPage(nil, status)
	b := c.writer()
	c.t.setWriteTimeout(5 * time.Second)
	head := b.Buffered()
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(status))
	b.WriteByte(' ')
	b.WriteString(StatusText(status))
	b.WriteString("\r\nServer: spindle\r\nDate: ")
	b.WriteString(httpDate())
	b.WriteString("\r\nContent-Type: text/html\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteString("\r\nConnection: close\r\n\r\n")
	head = b.Buffered() - head
	b.Write(body)
	b.Flush()
	c.logRejected(status, head, len(body))
	c.lingering = true
	c.close()
}

// logRejected runs the log phase of the default server of the address for a request
// answered before it could be parsed, as nginx logs its 400, 408, 414 and 431 answers:
// $request is the request line as far as it came, and no header is known.
func (c *conn) logRejected(status, headBytes, bodyBytes int) {
	srv := c.as.def
	if srv == nil || len(srv.root.run[PhaseLog]) == 0 {
		return
	}
	br := c.reader()
	buf, _ := br.Peek(br.Buffered())
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i]
	}
	buf = bytes.TrimSuffix(buf, []byte("\r"))
	c.hdr.reset() // not the previous request's headers
	r := c.req
	r.reset()
	r.cfg, r.c, r.main, r.hdr = c.e.cfg, c, r, c.hdr
	r.start = time.Now()
	r.Server, r.loc = srv, srv.root
	r.rejectedLine = string(buf)
	if sp := bytes.IndexByte(buf, ' '); sp > 0 {
		r.method = string(buf[:sp])
	}
	r.status, r.finished = status, true
	r.headerBytes, r.bodyBytes = int64(headBytes), int64(bodyBytes)
	r.runLog()
}

func stack() []byte {
	buf := make([]byte, 16<<10)
	return buf[:runtimeStack(buf)]
}

// isConnReset reports errors that mean the client went away.
func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded)
}
