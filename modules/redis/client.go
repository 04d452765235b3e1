package redis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/spindle-server/spindle/internal/netutil"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/upstream"
)

// dialer gives go-redis its connections from netutil.Dial: dialled as nginx dials, and
// read and written without announcing system calls to Go's scheduler, whose monitor
// otherwise hands the worker's P to another thread when a write to redis takes a
// while (on the Lua fast path, switching threads went from 4.8% of the worker's CPU
// to 3.4%, what is left being the monitor's own wake-ups and the worker's idle waits).
func dialer(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return netutil.Dial(ctx, network, addr, timeout)
	}
}

// Handle is a worker's way to one redis upstream: for every server a go-redis
// client whose pool holds at most keepalive connections, with an auto-pipeliner in
// front that batches the commands of all the worker's concurrent requests into
// pipelines on few connections; for a cluster or sentinel upstream one go-redis
// cluster or failover client; with keepalive = 0, a new connection per command set.
//
// A Handle is safe for concurrent use by the worker's requests. Commands block the
// calling goroutine (a request's coroutine) only.
type Handle struct {
	u     *upstream.Upstream
	peers map[*upstream.Peer]*peerSlot
	multi *peerClient // cluster or sentinel: one client routes everything
	short bool
}

type peerClient struct {
	client goredis.UniversalClient
	ap     *goredis.AutoPipeliner
}

// peerSlot holds the client of one server. go-redis's pool stops dialling once as
// many dials failed in a row as it has connections and answers every command with the
// last dial error until a probe, once a second, gets through: after a restart,
// requests failed for up to a second (about 0.9 s, 3,400 requests) where nginx's
// lua-resty-redis dials per request and recovered at once. So when a command fails
// without a dial of its own (dials did not move), the slot dials itself; if the
// server answers, a fresh client replaces the tripped one.
type peerSlot struct {
	cur   atomic.Pointer[peerClient]
	dials atomic.Uint64 // dials the client made
	mu    sync.Mutex    // one replacement at a time
	peer  *upstream.Peer
	make  func() (*peerClient, error)
}

// exec runs cmds on the slot's client, replacing a client whose pool stopped dialling
// when the server is reachable again.
func (ps *peerSlot) exec(ctx context.Context, u *upstream.Upstream, cmds [][]any) ([]byte, error) {
	pc := ps.cur.Load()
	dials := ps.dials.Load()
	raw, err := pc.exec(ctx, cmds)
	if err == nil || !dialError(err) || ps.dials.Load() != dials {
		return raw, err
	}
	// No dial was made for this command: the pool answered from its breaker.
	nc, derr := netutil.Dial(ctx, ps.peer.Network, ps.peer.Addr, u.ConnectTimeout)
	if derr != nil {
		return nil, err
	}
	nc.Close()
	ps.mu.Lock()
	if ps.cur.Load() == pc {
		fresh, merr := ps.make()
		if merr != nil {
			ps.mu.Unlock()
			return nil, err
		}
		ps.cur.Store(fresh)
		// Commands in flight on the old client finish or fail on their own.
		go func() {
			pc.ap.Close()
			pc.client.Close()
		}()
	}
	ps.mu.Unlock()
	return ps.cur.Load().exec(ctx, cmds)
}

// Upstream is the upstream the handle reaches.
func (h *Handle) Upstream() *upstream.Upstream { return h.u }

func init() {
	// go-redis reports dial failures on its own logger; spindle reports them per
	// request in the error log instead.
	logging.Disable()
}

func newHandle(u *upstream.Upstream) (*Handle, error) {
	h := &Handle{u: u, peers: map[*upstream.Peer]*peerSlot{}}
	if u.Keepalive == 0 {
		h.short = true
		return h, nil
	}
	autoOpts := goredis.DefaultAutoPipelineOptions()
	switch {
	case u.Cluster:
		var addrs []string
		for _, p := range u.Peers {
			addrs = append(addrs, p.Addr)
		}
		c := goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:                    addrs,
			Protocol:                 2,
			Username:                 u.Username,
			Password:                 u.Password,
			MaxRetries:               -1,
			DialTimeout:              u.ConnectTimeout,
			Dialer:                   dialer(u.ConnectTimeout),
			DialerRetries:            1,
			ReadTimeout:              u.ReadTimeout,
			WriteTimeout:             u.SendTimeout,
			PoolSize:                 u.Keepalive,
			MaxActiveConns:           u.Keepalive,
			MaxIdleConns:             u.Keepalive,
			PoolTimeout:              u.ReadTimeout,
			ConnMaxIdleTime:          u.KeepaliveTimeout,
			PipelinePoolSize:         -1,
			DisableIdentity:          true,
			AutoPipelineOptions:      autoOpts,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
		ap, err := c.AsyncAutoPipeline()
		if err != nil {
			c.Close()
			return nil, err
		}
		h.multi = &peerClient{client: c, ap: ap}
	case u.SentinelMaster != "":
		var addrs []string
		for _, p := range u.Peers {
			addrs = append(addrs, p.Addr)
		}
		c := goredis.NewFailoverClient(&goredis.FailoverOptions{
			MasterName:          u.SentinelMaster,
			SentinelAddrs:       addrs,
			SentinelPassword:    u.SentinelPassword,
			Protocol:            2,
			Username:            u.Username,
			Password:            u.Password,
			DB:                  u.DB,
			MaxRetries:          -1,
			DialTimeout:         u.ConnectTimeout,
			Dialer:              dialer(u.ConnectTimeout),
			DialerRetries:       1,
			ReadTimeout:         u.ReadTimeout,
			WriteTimeout:        u.SendTimeout,
			PoolSize:            u.Keepalive,
			MaxActiveConns:      u.Keepalive,
			MaxIdleConns:        u.Keepalive,
			PoolTimeout:         u.ReadTimeout,
			ConnMaxIdleTime:     u.KeepaliveTimeout,
			PipelinePoolSize:    -1,
			DisableIdentity:     true,
			AutoPipelineOptions: autoOpts,
		})
		ap, err := c.AsyncAutoPipeline()
		if err != nil {
			c.Close()
			return nil, err
		}
		h.multi = &peerClient{client: c, ap: ap}
	default:
		for _, p := range append(append([]*upstream.Peer(nil), u.Peers...), u.Backups...) {
			ps := &peerSlot{peer: p}
			dial := dialer(u.ConnectTimeout)
			ps.make = func() (*peerClient, error) {
				c := goredis.NewClient(&goredis.Options{
					Network:     p.Network,
					Addr:        p.Addr,
					Protocol:    2,
					Username:    u.Username,
					Password:    u.Password,
					DB:          u.DB,
					MaxRetries:  -1, // a retried batch could run INCR twice
					DialTimeout: u.ConnectTimeout,
					Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
						ps.dials.Add(1)
						return dial(ctx, network, addr)
					},
					// One dial per attempt: a refused connection is reported now
					// (502), not after go-redis's five tries with backoff.
					DialerRetries:            1,
					ReadTimeout:              u.ReadTimeout,
					WriteTimeout:             u.SendTimeout,
					PoolSize:                 u.Keepalive,
					MaxActiveConns:           u.Keepalive,
					MaxIdleConns:             u.Keepalive,
					PoolTimeout:              u.ReadTimeout,
					ConnMaxIdleTime:          u.KeepaliveTimeout,
					PipelinePoolSize:         -1, // pipelines share the bounded main pool
					DisableIdentity:          true,
					AutoPipelineOptions:      autoOpts,
					MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
				})
				ap, err := c.AsyncAutoPipeline()
				if err != nil {
					c.Close()
					return nil, err
				}
				return &peerClient{client: c, ap: ap}, nil
			}
			pc, err := ps.make()
			if err != nil {
				h.Close()
				return nil, err
			}
			ps.cur.Store(pc)
			h.peers[p] = ps
		}
	}
	return h, nil
}

// Close closes the handle's connections.
func (h *Handle) Close() {
	for _, ps := range h.peers {
		if pc := ps.cur.Load(); pc != nil {
			pc.ap.Close()
			pc.client.Close()
		}
	}
	if h.multi != nil {
		h.multi.ap.Close()
		h.multi.client.Close()
	}
}

// workerState holds a worker's handles.
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
		}
	}
	return ws
}

func (ws *workerState) handle(u *upstream.Upstream) (*Handle, error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return nil, errors.New("redis: the worker is exiting")
	}
	if h := ws.handles[u]; h != nil {
		return h, nil
	}
	h, err := newHandle(u)
	if err != nil {
		return nil, err
	}
	ws.handles[u] = h
	return h, nil
}

func initWorker(cfg *httpcore.Config, w *httpcore.Worker) error {
	ws := stateOf(cfg)
	for _, u := range upstream.All(cfg) {
		if u.Type == upstream.TypeRedis {
			if _, err := ws.handle(u); err != nil {
				return fmt.Errorf("redis %s: %v", u, err)
			}
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
	ws.closed = true
	for _, h := range ws.handles {
		h.Close()
	}
}

// Client returns the worker's handle for a redis upstream: an upstream block of type
// redis by name, or an address ("host:port", "unix:/path") for which an implicit
// upstream with the default settings (a pool of 32 connections) is made on first
// use. The handle shares its pools with the redis module's locations.
func Client(cfg *httpcore.Config, name string) (*Handle, error) {
	u, err := upstream.ResolveRuntime(cfg, upstream.TypeRedis, name)
	if err != nil {
		return nil, err
	}
	return stateOf(cfg).handle(u)
}

// Errors of Do and Pipeline that are not replies of the server.
var (
	// ErrNoServer: every server of the upstream is down or failed.
	ErrNoServer = errors.New("redis: no live upstreams")
)

// IsTimeout reports whether err is a timeout (nginx answers those with 504).
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, goredis.ErrPoolTimeout)
}

// dialError reports an error connecting: the command was not sent, so another server
// may take it.
func dialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// Result is what Exec returns: the raw replies (RESP, as received) of every command,
// and the server that answered.
type Result struct {
	Raw  []byte
	N    int
	Peer *upstream.Peer // nil for cluster and sentinel upstreams
}

// Replies parses the raw replies.
func (res *Result) Replies() ([]Reply, error) {
	out := make([]Reply, 0, res.N)
	b := res.Raw
	for i := 0; i < res.N; i++ {
		var rep Reply
		var err error
		if rep, b, err = ParseReply(b); err != nil {
			return nil, err
		}
		out = append(out, rep)
	}
	return out, nil
}

// Do runs one command and returns its parsed reply. A Redis error reply is a Reply
// of KindError, not an error; err reports failures to reach the server (IsTimeout
// tells timeouts). The command goes through the auto-pipeliner: concurrent callers'
// commands share round trips.
//
// The upstream's connect, send and read timeouts bound every command; a deadline or
// cancellation of ctx bounds how long the caller waits (a command already sent
// still completes on its connection).
func (h *Handle) Do(ctx context.Context, args ...any) (Reply, error) {
	res, err := h.Exec(ctx, "", [][]any{args})
	if err != nil {
		return Reply{}, err
	}
	rep, _, err := ParseReply(res.Raw)
	return rep, err
}

// DoRaw runs one command and returns its reply as RESP bytes, as received.
func (h *Handle) DoRaw(ctx context.Context, args ...any) ([]byte, error) {
	res, err := h.Exec(ctx, "", [][]any{args})
	if err != nil {
		return nil, err
	}
	return res.Raw, nil
}

// Pipeline runs several commands in one round trip on one connection, in order
// (MULTI ... EXEC included), and returns their replies.
func (h *Handle) Pipeline(ctx context.Context, cmds ...[]any) ([]Reply, error) {
	res, err := h.Exec(ctx, "", cmds)
	if err != nil {
		return nil, err
	}
	return res.Replies()
}

// Exec runs commands: one goes through the auto-pipeliner, several as one pipeline.
// key chooses the server of an upstream balanced by hash ("" hashes the first
// command's key argument).
func (h *Handle) Exec(ctx context.Context, key string, cmds [][]any) (*Result, error) {
	if len(cmds) == 0 {
		return nil, errors.New("redis: no command")
	}
	for _, c := range cmds {
		if len(c) == 0 {
			return nil, errors.New("redis: empty command")
		}
	}
	if h.multi != nil {
		raw, err := h.multi.exec(ctx, cmds)
		if err != nil {
			h.multi.followTopology(err)
		}
		return &Result{Raw: raw, N: len(cmds)}, err
	}
	if key == "" && len(cmds[0]) > 1 {
		key = argString(cmds[0][1])
	}
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
		var raw []byte
		var err error
		if h.short {
			raw, err = h.execShort(ctx, p, cmds)
		} else {
			raw, err = h.peers[p].exec(ctx, h.u, cmds)
		}
		failed := err != nil && !errors.Is(err, context.Canceled)
		h.u.Release(p, failed)
		if err == nil {
			return &Result{Raw: raw, N: len(cmds), Peer: p}, nil
		}
		lastErr = fmt.Errorf("%v (upstream %s)", err, p)
		if !dialError(err) {
			return &Result{Peer: p}, wrapErr{lastErr, err}
		}
	}
}

// wrapErr keeps the cause reachable for IsTimeout while naming the server.
type wrapErr struct {
	msg   error
	cause error
}

func (w wrapErr) Error() string { return w.msg.Error() }
func (w wrapErr) Unwrap() error { return w.cause }

// followTopology reloads a cluster client's map of slots to masters after an error
// that may mean the map is stale: a connection error (the master may be dead and its
// replica promoted) or a MOVED, ASK, CLUSTERDOWN or TRYAGAIN reply. go-redis reloads
// on its own only on MOVED and READONLY and every 60 s otherwise; a dead master
// answers neither, so after a failover every command for its slots kept failing
// until that periodic reload (502s for 9 to 47 s after the promotion). Reloads
// coalesce: one at a time, each at most every 200 ms however many requests fail.
func (pc *peerClient) followTopology(err error) {
	c, ok := pc.client.(*goredis.ClusterClient)
	if !ok || errors.Is(err, context.Canceled) {
		return
	}
	var re goredis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, p := range []string{"MOVED ", "ASK ", "CLUSTERDOWN ", "TRYAGAIN "} {
			if strings.HasPrefix(msg, p) {
				c.ReloadState(context.Background())
				return
			}
		}
		return
	}
	c.ReloadState(context.Background())
}

func (pc *peerClient) exec(ctx context.Context, cmds [][]any) ([]byte, error) {
	if len(cmds) == 1 {
		cmd := goredis.NewRawCmd(ctx, cmds[0]...)
		f := pc.ap.Submit(ctx, cmd)
		var err error
		if _, ok := ctx.Deadline(); ok {
			err = f.WaitContext(ctx)
		} else {
			err = f.Wait()
		}
		if err != nil {
			return nil, err
		}
		return cmd.Val(), nil
	}
	raws := make([]*goredis.RawCmd, len(cmds))
	run := func() error {
		_, err := pc.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, c := range cmds {
				raws[i] = goredis.NewRawCmd(ctx, c...)
				p.Process(ctx, raws[i])
			}
			return nil
		})
		return err
	}
	var err error
	if ctx.Done() == nil {
		err = run()
	} else {
		// go-redis bounds a pipeline by its connection timeouts only; the caller's
		// context bounds the wait, and the pipeline finishes (or times out) on its
		// own goroutine.
		done := make(chan error, 1)
		go func() { done <- run() }()
		select {
		case err = <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		var re goredis.Error
		if !errors.As(err, &re) {
			return nil, err
		}
	}
	var out []byte
	for _, c := range raws {
		v, err := c.Result()
		if err != nil && len(v) == 0 {
			return nil, err
		}
		out = append(out, v...)
	}
	return out, nil
}

// execShort sends commands on a new connection, reads the replies and closes it
// (keepalive = 0, nginx's behaviour without a keepalive pool).
func (h *Handle) execShort(ctx context.Context, p *upstream.Peer, cmds [][]any) ([]byte, error) {
	u := h.u
	nc, err := netutil.Dial(ctx, p.Network, p.Addr, u.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	var buf []byte
	if u.Password != "" {
		auth := []any{"AUTH", u.Password}
		if u.Username != "" {
			auth = []any{"AUTH", u.Username, u.Password}
		}
		buf = appendCommand(buf, auth)
	}
	if u.DB != 0 {
		buf = appendCommand(buf, []any{"SELECT", u.DB})
	}
	for _, c := range cmds {
		buf = appendCommand(buf, c)
	}
	deadline := func(d time.Duration) time.Time {
		t := time.Now().Add(d)
		if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
			return dl
		}
		return t
	}
	nc.SetWriteDeadline(deadline(u.SendTimeout))
	if _, err := nc.Write(buf); err != nil {
		return nil, err
	}
	// The reply is rarely in yet: a read now finds nothing and parks the goroutine.
	// Letting the worker's other coroutines run first saves that read.
	runtime.Gosched()
	br := bufio.NewReaderSize(nc, 4096)
	var out []byte
	skip := 0
	if u.Password != "" {
		skip++
	}
	if u.DB != 0 {
		skip++
	}
	for i := 0; i < skip; i++ {
		nc.SetReadDeadline(deadline(u.ReadTimeout))
		rep, err := readRawReply(br, nil)
		if err != nil {
			return nil, err
		}
		if len(rep) > 0 && rep[0] == '-' {
			return nil, fmt.Errorf("redis: %s", rep[1:len(rep)-2])
		}
	}
	for range cmds {
		nc.SetReadDeadline(deadline(u.ReadTimeout))
		if out, err = readRawReply(br, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Redis returns the go-redis client serving key (the first server for an empty key),
// for what Do and Pipeline do not cover (transactions with WATCH, pub/sub, scripts
// with typed results). It is nil for an upstream with keepalive = 0.
func (h *Handle) Redis(key string) goredis.UniversalClient {
	if h.multi != nil {
		return h.multi.client
	}
	if h.short {
		return nil
	}
	t := h.u.TriesKey(key)
	p := t.Next()
	if p == nil {
		p = h.u.Peers[0]
	} else {
		h.u.Release(p, false)
	}
	return h.peers[p].cur.Load().client
}
