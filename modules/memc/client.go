package memc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/spindle-server/spindle/internal/netutil"
	connpool "github.com/spindle-server/spindle/internal/pool"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/upstream"
)

// Errors of the Handle methods, gomemcache's own.
var (
	ErrCacheMiss    = memcache.ErrCacheMiss    // get, delete, incr, decr, touch: no such key
	ErrNotStored    = memcache.ErrNotStored    // add, replace, append, prepend: condition not met
	ErrCASConflict  = memcache.ErrCASConflict  // the server answered EXISTS
	ErrMalformedKey = memcache.ErrMalformedKey // longer than 250 bytes, or spaces or control characters
	// ErrNoServer: every server of the upstream is down or failed.
	ErrNoServer = errors.New("memcached: no live upstreams")
	// ErrPoolTimeout: all of the pool's connections stayed busy for read_timeout.
	ErrPoolTimeout = errPoolTimeout{}
)

type errPoolTimeout struct{}

func (errPoolTimeout) Error() string   { return "memcached: timed out waiting for a free connection" }
func (errPoolTimeout) Timeout() bool   { return true }
func (errPoolTimeout) Temporary() bool { return true }

// Handle is a worker's way to one memcached upstream: a gomemcache client per server,
// keys spread over the servers by the upstream's (consistent) hashing.
//
// gomemcache keeps up to MaxIdleConns idle connections per server but opens as many
// as there are concurrent calls. The handle bounds them: each server admits at most
// keepalive calls at once (others wait up to read_timeout), and MaxIdleConns is
// keepalive too. A call dials only when no idle connection is left, that is when the
// other calls hold at most keepalive-1 connections, so a server never has more than
// keepalive connections open from a worker.
type Handle struct {
	u       *upstream.Upstream
	servers map[*upstream.Peer]*server
	short   bool
}

type server struct {
	peer    *upstream.Peer
	addr    net.Addr
	client  *memcache.Client
	sem     chan struct{}
	ops     atomic.Int64 // calls made, for the sweep (reap)
	seenOps int64        // ops at the last sweep
	idleAt  time.Time    // when a sweep first saw no new calls
	u       *upstream.Upstream
	gets    getBatcher
}

// oneServer is a gomemcache selector for a single server: the handle picks servers.
type oneServer struct{ addr net.Addr }

func (s oneServer) PickServer(string) (net.Addr, error) { return s.addr, nil }
func (s oneServer) Each(f func(net.Addr) error) error   { return f(s.addr) }
func (s oneServer) dialer(u *upstream.Upstream) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := netutil.Dial(context.Background(), network, address, u.ConnectTimeout)
		if err != nil {
			return nil, err
		}
		c := &mcConn{Conn: nc, timeout: u.ReadTimeout}
		if sc, ok := nc.(syscall.Conn); ok {
			if c.raw, err = sc.SyscallConn(); err != nil {
				nc.Close()
				return nil, err
			}
		}
		return c, nil
	}
}

// errStale is a pooled connection found closed by the server before a command was
// written to it: nothing was sent, so any command may go again on a new connection.
var errStale = errors.New("memcached: pooled connection closed by the server")

// mcConn lets a pooled connection be checked before reuse. gomemcache arms a
// connection's deadline (now + timeout) before every command, so SetDeadline tells
// when one starts; after a second or more of idleness the connection is peeked, and
// if the server closed it the command's write fails with errStale instead of being
// sent into a dead socket.
type mcConn struct {
	net.Conn
	raw     syscall.RawConn
	peek    netutil.Peeker
	timeout time.Duration
	last    time.Time
	stale   bool
}

func (c *mcConn) SetDeadline(t time.Time) error {
	now := t.Add(-c.timeout)
	if !c.last.IsZero() && now.Sub(c.last) > time.Second && !c.peek.Alive(c.raw) {
		c.stale = true
	}
	c.last = now
	return c.Conn.SetDeadline(t)
}

func (c *mcConn) Write(p []byte) (int, error) {
	if c.stale {
		return 0, errStale
	}
	return c.Conn.Write(p)
}

type staticAddr struct{ network, addr string }

func (a staticAddr) Network() string { return a.network }
func (a staticAddr) String() string  { return a.addr }

func newHandle(u *upstream.Upstream) *Handle {
	h := &Handle{u: u, servers: map[*upstream.Peer]*server{}, short: u.Keepalive == 0}
	for _, p := range append(append([]*upstream.Peer(nil), u.Peers...), u.Backups...) {
		s := &server{peer: p, addr: staticAddr{p.Network, p.Addr}, u: u}
		if !h.short {
			s.client = s.newClient(u.Keepalive)
			s.sem = make(chan struct{}, u.Keepalive)
		}
		h.servers[p] = s
	}
	return h
}

func (s *server) newClient(idle int) *memcache.Client {
	c := memcache.NewFromSelector(oneServer{s.addr})
	// gomemcache has one socket timeout, armed once per command for its write and
	// its read: read_timeout, the wait that matters.
	c.Timeout = s.u.ReadTimeout
	c.MaxIdleConns = idle
	c.DialContext = oneServer{s.addr}.dialer(s.u)
	return c
}

// acquire admits a call to the server, waiting up to read_timeout for a slot.
func (s *server) acquire() error {
	select {
	case s.sem <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(s.u.ReadTimeout)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-t.C:
		return ErrPoolTimeout
	}
}

// with runs f with a client of the server: the pooled one, or for keepalive = 0 one
// whose connection is closed afterwards.
func (s *server) with(f func(c *memcache.Client) error) error {
	if s.sem == nil {
		c := s.newClient(1)
		defer c.Close()
		return f(c)
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer func() { <-s.sem }()
	s.ops.Add(1)
	err := f(s.client)
	if brokenConn(err) {
		// The server went away: its other idle connections are as dead as this
		// one. Drop them so the next call dials afresh.
		s.client.Close()
	}
	return err
}

// brokenConn reports a connection-level failure (not a reply of the server).
func brokenConn(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.Is(err, errStale) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.As(err, &ne)
}

// IsTimeout reports whether err is a timeout (answered with 504).
func IsTimeout(err error) bool {
	var ne net.Error
	var cte *memcache.ConnectTimeoutError
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &cte)
}

// replyError reports errors that are answers of the server (or of the key check),
// not failures to reach it: they do not count against max_fails.
func replyError(err error) bool {
	switch err {
	case nil, memcache.ErrCacheMiss, memcache.ErrNotStored, memcache.ErrCASConflict, memcache.ErrMalformedKey:
		return true
	}
	return false
}

// Close drops the handle's idle connections.
func (h *Handle) Close() {
	for _, s := range h.servers {
		if s.client != nil {
			s.client.Close()
		}
	}
}

// reap drops the idle connections of servers unused for keepalive_timeout
// (gomemcache never closes idle connections by itself). The worker's sweeper runs it
// every second; calls only bump a counter.
func (h *Handle) reap(now time.Time) {
	for _, s := range h.servers {
		if s.client == nil {
			continue
		}
		if ops := s.ops.Load(); ops != s.seenOps || s.idleAt.IsZero() {
			s.seenOps, s.idleAt = ops, now
			continue
		}
		if now.Sub(s.idleAt) >= h.u.KeepaliveTimeout {
			s.client.Close()
			s.idleAt = now
		}
	}
}

// Upstream is the upstream the handle reaches.
func (h *Handle) Upstream() *upstream.Upstream { return h.u }

// on runs f on the server for key, trying the next server when one cannot be
// reached (as nginx does on connection failures) and retrying once on a new
// connection when a pooled one turns out dead and f may be repeated.
func (h *Handle) on(key string, repeatable bool, f func(c *memcache.Client) error) (*upstream.Peer, error) {
	return h.onServer(key, repeatable, func(s *server) error { return s.with(f) })
}

// onServer is on for calls that reach the server's client their own way.
func (h *Handle) onServer(key string, repeatable bool, f func(s *server) error) (*upstream.Peer, error) {
	tries := h.u.TriesKey(key)
	var lastErr error
	for {
		p := tries.Next()
		if p == nil {
			if lastErr == nil {
				lastErr = ErrNoServer
			}
			return nil, lastErr
		}
		s := h.servers[p]
		err := f(s)
		// A dead pooled connection: again on a new one, when nothing was sent or the
		// command may be repeated.
		for i := 0; i < 2 && err != nil && s.sem != nil && (errors.Is(err, errStale) || repeatable && brokenConn(err) && !IsTimeout(err)); i++ {
			err = f(s)
		}
		h.u.Release(p, !replyError(err) && err != ErrPoolTimeout)
		if err == nil || replyError(err) {
			return p, err
		}
		lastErr = fmt.Errorf("%w (upstream %s)", err, p)
		var oe *net.OpError
		if !(errors.As(err, &oe) && oe.Op == "dial") {
			return p, lastErr
		}
	}
}

// Get fetches an item; ErrCacheMiss when there is none. Gets of concurrent callers
// share multi-gets (see batch.go): callers that asked for the same key get items of
// their own with the same Value bytes, which they must not change in place.
func (h *Handle) Get(key string) (*memcache.Item, error) {
	it, _, err := h.get(key)
	return it, err
}

func (h *Handle) get(key string) (*memcache.Item, *upstream.Peer, error) {
	var it *memcache.Item
	p, err := h.onServer(key, true, func(s *server) error {
		var err error
		it, err = s.get(key)
		return err
	})
	return it, p, err
}

// Set stores an item.
func (h *Handle) Set(it *memcache.Item) error {
	_, err := h.on(it.Key, true, func(c *memcache.Client) error { return c.Set(it) })
	return err
}

// Add stores an item unless the key exists (ErrNotStored).
func (h *Handle) Add(it *memcache.Item) error {
	_, err := h.on(it.Key, false, func(c *memcache.Client) error { return c.Add(it) })
	return err
}

// Replace stores an item if the key exists (ErrNotStored otherwise).
func (h *Handle) Replace(it *memcache.Item) error {
	_, err := h.on(it.Key, false, func(c *memcache.Client) error { return c.Replace(it) })
	return err
}

// Append adds to the end of an existing value (ErrNotStored if there is none).
func (h *Handle) Append(it *memcache.Item) error {
	_, err := h.on(it.Key, false, func(c *memcache.Client) error { return c.Append(it) })
	return err
}

// Prepend adds to the start of an existing value (ErrNotStored if there is none).
func (h *Handle) Prepend(it *memcache.Item) error {
	_, err := h.on(it.Key, false, func(c *memcache.Client) error { return c.Prepend(it) })
	return err
}

// Delete removes a key (ErrCacheMiss if there was none).
func (h *Handle) Delete(key string) error {
	_, err := h.on(key, false, func(c *memcache.Client) error { return c.Delete(key) })
	return err
}

// Increment adds delta to a numeric value and returns the new value.
func (h *Handle) Increment(key string, delta uint64) (uint64, error) {
	var v uint64
	_, err := h.on(key, false, func(c *memcache.Client) error {
		var err error
		v, err = c.Increment(key, delta)
		return err
	})
	return v, err
}

// Decrement subtracts delta from a numeric value (not below 0) and returns the new
// value.
func (h *Handle) Decrement(key string, delta uint64) (uint64, error) {
	var v uint64
	_, err := h.on(key, false, func(c *memcache.Client) error {
		var err error
		v, err = c.Decrement(key, delta)
		return err
	})
	return v, err
}

// Touch sets a new expiration time (ErrCacheMiss if there is no such key).
func (h *Handle) Touch(key string, seconds int32) error {
	_, err := h.on(key, true, func(c *memcache.Client) error { return c.Touch(key, seconds) })
	return err
}

// FlushAll invalidates every item of every server, after delay seconds if delay > 0.
func (h *Handle) FlushAll(delay int) error {
	for _, p := range h.u.Peers {
		if _, err := h.Admin(p, flushLine(delay)); err != nil {
			return err
		}
	}
	return nil
}

func flushLine(delay int) string {
	if delay > 0 {
		return "flush_all " + strconv.Itoa(delay)
	}
	return "flush_all"
}

// Admin sends a text-protocol command that gomemcache has no method for (stats,
// version, flush_all with a delay, verbosity) to the server p (nil: the first) and
// returns the raw response. It uses a connection of its own, closed afterwards.
func (h *Handle) Admin(p *upstream.Peer, line string) (string, error) {
	if p == nil {
		p = h.u.Peers[0]
	}
	s := h.servers[p]
	if s.sem != nil {
		if err := s.acquire(); err != nil {
			return "", err
		}
		defer func() { <-s.sem }()
	}
	return admin(h.u, p, line)
}

func admin(u *upstream.Upstream, p *upstream.Peer, line string) (string, error) {
	nc, err := netutil.Dial(context.Background(), p.Network, p.Addr, u.ConnectTimeout)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	nc.SetWriteDeadline(time.Now().Add(u.SendTimeout))
	nc.SetReadDeadline(time.Now().Add(u.ReadTimeout))
	if _, err := io.WriteString(nc, line+"\r\n"); err != nil {
		return "", err
	}
	br := bufio.NewReader(nc)
	multi := strings.HasPrefix(line, "stats")
	var b strings.Builder
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return b.String(), err
		}
		b.WriteString(l)
		if strings.HasPrefix(l, "ERROR") || strings.HasPrefix(l, "CLIENT_ERROR") || strings.HasPrefix(l, "SERVER_ERROR") {
			return b.String(), fmt.Errorf("memcached: %s", strings.TrimSpace(l))
		}
		if !multi || l == "END\r\n" {
			return b.String(), nil
		}
	}
}

// workerState holds a worker's handles. The worker's sweeper (internal/pool) sweeps
// their idle connections.
type workerState struct {
	mu      sync.Mutex
	handles map[*upstream.Upstream]*Handle
	closed  bool
}

var lazyMu sync.Mutex

func stateOf(cfg *httpcore.Config) *workerState {
	ws, _ := mod.State(cfg).(*workerState)
	if ws == nil {
		lazyMu.Lock()
		defer lazyMu.Unlock()
		if ws, _ = mod.State(cfg).(*workerState); ws == nil {
			ws = &workerState{handles: map[*upstream.Upstream]*Handle{}}
			mod.SetState(cfg, ws)
			connpool.Register(ws)
		}
	}
	return ws
}

func (ws *workerState) handle(u *upstream.Upstream) (*Handle, error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return nil, errors.New("memcached: the worker is exiting")
	}
	h := ws.handles[u]
	if h == nil {
		h = newHandle(u)
		ws.handles[u] = h
	}
	return h, nil
}

// Sweep drops the idle connections of the servers unused for keepalive_timeout.
func (ws *workerState) Sweep(now time.Time) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, h := range ws.handles {
		h.reap(now)
	}
}

func initWorker(cfg *httpcore.Config, w *httpcore.Worker) error {
	ws := stateOf(cfg)
	for _, u := range upstream.All(cfg) {
		if u.Type == upstream.TypeMemcached {
			ws.handle(u)
		}
	}
	return nil
}

func exitWorker(cfg *httpcore.Config) {
	ws, _ := mod.State(cfg).(*workerState)
	if ws == nil {
		return
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if !ws.closed {
		ws.closed = true
		connpool.Unregister(ws)
	}
	for _, h := range ws.handles {
		h.Close()
	}
}

// Client returns the worker's handle for a memcached upstream: an upstream block of
// type memcached by name, or an address ("host:port", "unix:/path") for which an
// implicit upstream with the default settings (32 connections) is made on first use.
// The handle shares its pools with the memc module's locations.
func Client(cfg *httpcore.Config, name string) (*Handle, error) {
	u, err := upstream.ResolveRuntime(cfg, upstream.TypeMemcached, name)
	if err != nil {
		return nil, err
	}
	return stateOf(cfg).handle(u)
}
