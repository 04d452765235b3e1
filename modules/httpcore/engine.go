package httpcore

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Engine serves HTTP/1.1 on a worker's listening sockets with a Config. Each connection
// is a goroutine; with GOMAXPROCS=1 that is nginx's event loop with a coroutine per
// connection, and every blocking call in a handler parks only its own coroutine.
type Engine struct {
	cfg *Config

	sem       chan struct{} // worker_connections
	mu        sync.Mutex
	conns     map[*conn]struct{}
	listeners []net.Listener
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
	idleGrace                   time.Duration
	shutdownOnce                sync.Once
}

// EngineOptions tune an Engine.
type EngineOptions struct {
	// WorkerConnections caps the connections served at once; further connections wait
	// in the kernel's accept queue until one closes.
	WorkerConnections int
	// ConnectionSeqBase makes connection numbers unique across workers.
	ConnectionSeqBase uint64
}

// NewEngine returns an engine serving cfg.
func NewEngine(cfg *Config, opts EngineOptions) *Engine {
	n := opts.WorkerConnections
	if n <= 0 {
		n = 512
	}
	e := &Engine{
		cfg:       cfg,
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
// ln is closed.
func (e *Engine) Serve(ln net.Listener, addr string) error {
	e.mu.Lock()
	if e.draining.Load() {
		e.mu.Unlock()
		ln.Close()
		return nil
	}
	e.listeners = append(e.listeners, ln)
	e.acceptWG.Add(1)
	e.mu.Unlock()
	defer e.acceptWG.Done()
	as := e.cfg.byAddr[addr]
	if as == nil {
		ln.Close()
		return errorf("no server listens on %s", addr)
	}
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
		c := newConn(e, nc, as)
		e.wg.Add(1)
		workers.Go(c.serve)
	}
}

// Draining reports whether the engine is shutting down gracefully.
func (e *Engine) Draining() bool { return e.draining.Load() }

// Shutdown drains the engine: it stops accepting, lets in-flight requests finish,
// answers the next request of each keepalive connection with "Connection: close",
// closes connections that stay idle, and after timeout (if > 0) closes everything. It
// returns when every connection is gone.
func (e *Engine) Shutdown(timeout time.Duration) {
	e.shutdownOnce.Do(func() {
		e.mu.Lock()
		e.draining.Store(true)
		close(e.drainCh)
		for _, ln := range e.listeners {
			ln.Close()
		}
		e.mu.Unlock()
	})
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	// An accept loop may hold a connection it accepted just before its listener
	// closed: wait for the loops to hand their connections over first.
	e.acceptWG.Wait()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
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
		e.mu.Lock()
		for c := range e.conns {
			if forced {
				if c.hijackRefs.Load() > 0 {
					// A hijacker manages its own deadlines: close the connection.
					c.nc.Close()
				} else {
					c.nc.SetDeadline(now)
				}
				continue
			}
			if c.state.Load() == stateIdle && now.Sub(time.Unix(0, c.idleSince.Load())) >= e.idleGrace {
				c.closeIdle()
			}
		}
		e.mu.Unlock()
	}
}

// Close stops the engine at once, closing every connection.
func (e *Engine) Close() {
	e.shutdownOnce.Do(func() {
		e.mu.Lock()
		e.draining.Store(true)
		close(e.drainCh)
		for _, ln := range e.listeners {
			ln.Close()
		}
		e.mu.Unlock()
	})
	e.acceptWG.Wait()
	e.mu.Lock()
	for c := range e.conns {
		c.nc.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
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
	e    *Engine
	nc   net.Conn
	as   *addrServers
	id   uint64
	io   *connIO
	br   *bufio.Reader
	bw   *bufio.Writer
	hdr  fasthttp.RequestHeader
	req  Request
	scan headScan

	requests    int
	state       atomic.Int32
	idleSince   atomic.Int64
	raddr       string
	laddr       string
	wroteHeader bool
	chunked     bool
	closeAfter  bool
	lingering   bool
	hijacked    bool
	hijackRefs  atomic.Int32 // holders of a hijacked connection (see Hijack)
	abort       bool         // close without a response (444)
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

func newConn(e *Engine, nc net.Conn, as *addrServers) *conn {
	c := &conn{e: e, nc: nc, as: as, id: e.connSeq.Add(1), io: newConnIO(nc)}
	c.idleSince.Store(coarseNow().UnixNano())
	e.mu.Lock()
	e.conns[c] = struct{}{}
	e.mu.Unlock()
	e.active.Add(1)
	return c
}

func (c *conn) remoteAddr() string {
	if c.raddr == "" {
		c.raddr = c.nc.RemoteAddr().String()
	}
	return c.raddr
}

func (c *conn) localAddr() string {
	if c.laddr == "" {
		c.laddr = c.nc.LocalAddr().String()
	}
	return c.laddr
}

// closeIdle wakes an idle connection's reader so that it closes (drain end).
func (c *conn) closeIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

func (c *conn) release() {
	if c.hijacked && c.hijackRefs.Add(-1) > 0 {
		return
	}
	e := c.e
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
	e.active.Add(-1)
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
	<-e.sem
	e.wg.Done()
}

func (c *conn) serve() {
	defer c.release()
	defer func() {
		if p := recover(); p != nil {
			c.e.cfg.log.Alertf("*%d panic while serving a request: %v\n%s", c.id, p, stack())
			c.nc.Close()
		}
	}()
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(c.io)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(c.io)
	core := CoreConfOf(c.as.def.root)
	for {
		if !c.readHead(core) {
			break
		}
		c.handle()
		if c.hijacked {
			return
		}
		if c.abort {
			c.nc.Close()
			return
		}
		// Whether to close was decided with the response header (Connection: close when
		// draining); a response that promised keep-alive gets its next request served.
		if c.closeAfter {
			c.bw.Flush()
			c.close()
			return
		}
		if c.br.Buffered() == 0 {
			if err := c.bw.Flush(); err != nil {
				break
			}
		}
	}
	c.bw.Flush()
	c.nc.Close()
}

// close ends a connection after a response. When spindle, not the client, decided to
// close, the connection lingers: the write side is shut and whatever the client still
// sends is read and dropped for a while, so that the kernel does not answer unread data
// with a reset that would destroy the response in flight.
func (c *conn) close() {
	if !c.lingering && c.br.Buffered() == 0 {
		c.nc.Close()
		return
	}
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.CloseWrite()
		core := CoreConfOf(c.as.def.root)
		c.nc.SetReadDeadline(time.Now().Add(core.LingeringTimeout))
		io.Copy(io.Discard, io.LimitReader(c.nc, 1<<20))
	}
	c.nc.Close()
}

// readHead waits for and reads the next request head. It returns false when the
// connection is to be closed (EOF, timeout, or an error already answered).
func (c *conn) readHead(core *CoreConf) bool {
	c.state.Store(stateIdle)
	c.idleSince.Store(coarseNow().UnixNano())
	timeout := core.KeepaliveTimeout
	if c.requests == 0 {
		timeout = core.ClientHeaderTimeout
	}
	if c.br.Buffered() == 0 {
		c.io.setReadTimeout(timeout)
		if _, err := c.br.Peek(1); err != nil {
			// An idle keepalive connection that times out or closes is normal.
			return false
		}
	}
	if !c.state.CompareAndSwap(stateIdle, stateReading) {
		return false // closed by drain just as data arrived
	}
	c.e.reading.Add(1)
	defer c.e.reading.Add(-1)
	headerDeadlineSet := false
	lim := headLimits{line: core.LargeHeaderBuffer, field: core.LargeHeaderBuffer, total: core.LargeHeaderBuffer * core.LargeHeaderBuffers}
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		c.scan = scanHead(buf, lim)
		if c.scan.status != 0 {
			c.reject(c.scan.status, c.scan.reason)
			return false
		}
		if c.scan.n > 0 {
			break
		}
		if len(buf) >= lim.total {
			st := 431
			if !c.scan.lineDone {
				st = 414
			}
			c.reject(st, "request head too large")
			return false
		}
		if c.br.Buffered() == c.br.Size() {
			c.growReader(lim.total)
		}
		if !headerDeadlineSet {
			c.io.setReadTimeout(core.ClientHeaderTimeout)
			headerDeadlineSet = true
		}
		if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil {
			if isTimeout(err) {
				c.reject(408, "client timed out reading the request head")
			}
			return false
		}
	}
	c.hdr.Reset()
	c.hdr.DisableSpecialHeader() // keep Host, Content-Type... in the header list too
	c.hdr.EnableSpecialHeader()
	if err := c.hdr.Read(c.br); err != nil {
		c.reject(400, err.Error())
		return false
	}
	return true
}

func (c *conn) growReader(limit int) {
	buffered, _ := c.br.Peek(c.br.Buffered())
	data := append([]byte(nil), buffered...)
	size := c.br.Size() * 4
	if size > limit {
		size = limit
	}
	c.br = bufio.NewReaderSize(io.MultiReader(&byteReader{b: data}, c.io), size)
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

// reject answers a request that could not be parsed and marks the connection closed.
func (c *conn) reject(status int, reason string) {
	c.e.statusCodes[status/100].Add(1)
	if c.e.cfg.log.Enabled(LogInfo) {
		c.e.cfg.log.Infof("*%d client sent invalid request (%s) while reading client request headers, client: %s", c.id, reason, c.remoteAddr())
	}
	body := AppendErrorPage(nil, status)
	b := c.bw
	c.io.wtimeout = 5 * time.Second
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(status))
	b.WriteByte(' ')
	b.WriteString(StatusText(status))
	b.WriteString("\r\nServer: spindle\r\nDate: ")
	b.WriteString(httpDate())
	b.WriteString("\r\nContent-Type: text/html\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteString("\r\nConnection: close\r\n\r\n")
	b.Write(body)
	b.Flush()
	c.lingering = true
	c.close()
}

func stack() []byte {
	buf := make([]byte, 16<<10)
	return buf[:runtimeStack(buf)]
}

// isConnReset reports errors that mean the client went away.
func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded)
}
