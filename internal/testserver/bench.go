package testserver

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
)

// BenchEngine loads config as a worker loads it and returns an engine for benchmarks
// that serve fake connections (Serve it on addr with a Listener); stop ends the engine
// and the worker's modules.
func BenchEngine(b *testing.B, config string) (e *httpcore.Engine, addr string, stop func()) {
	b.Helper()
	prefix := b.TempDir()
	os.MkdirAll(filepath.Join(prefix, "conf"), 0o755)
	os.WriteFile(filepath.Join(prefix, "conf/spindle.hcl"), []byte(config), 0o644)
	cfg, err := Build(prefix, "conf/spindle.hcl")
	if err != nil {
		b.Fatal(err)
	}
	if err := cfg.InitWorker(&httpcore.Worker{Count: 1}); err != nil {
		b.Fatal(err)
	}
	e = httpcore.NewEngine(cfg, httpcore.EngineOptions{})
	return e, cfg.Listens[0].Addr, func() {
		e.Close()
		cfg.ExitWorker()
	}
}

// BenchPath drives the whole request path in process with config loaded as a worker
// loads it: one fake connection feeds req b.N times and discards the responses, so
// the benchmark measures the request path without the kernel.
func BenchPath(b *testing.B, config, req string) {
	e, addr, stop := BenchEngine(b, config)
	defer stop()
	fc := &fakeConn{req: []byte(req), stop: int64(b.N)}
	ln := NewListener(fc)
	defer ln.Close()
	b.ReportAllocs()
	b.ResetTimer()
	go e.Serve(ln, addr)
	for fc.n.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
}

// fakeConn feeds the same request until stop and discards what is written.
type fakeConn struct {
	NopConn
	req  []byte
	n    atomic.Int64
	stop int64
}

func (c *fakeConn) Read(p []byte) (int, error) {
	if c.n.Load() >= c.stop {
		return 0, net.ErrClosed
	}
	c.n.Add(1)
	return copy(p, c.req), nil
}

func (c *fakeConn) Write(p []byte) (int, error) { return len(p), nil }

// NopConn has the methods of a net.Conn that a benchmark's fake connection has no
// use for: embedded, it leaves Read and Write to write.
type NopConn struct{}

// Close does nothing.
func (NopConn) Close() error { return nil }

// LocalAddr is 127.0.0.1:80.
func (NopConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }

// RemoteAddr is 127.0.0.1:5555.
func (NopConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555} }

// SetDeadline does nothing.
func (NopConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline does nothing.
func (NopConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing.
func (NopConn) SetWriteDeadline(time.Time) error { return nil }

// Listener hands out the connections it was made with, then waits until it is closed.
type Listener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewListener returns a Listener for conns.
func NewListener(conns ...net.Conn) *Listener {
	l := &Listener{conns: make(chan net.Conn, len(conns)), done: make(chan struct{})}
	for _, c := range conns {
		l.conns <- c
	}
	return l
}

// Accept returns the next connection, or net.ErrClosed once closed.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close ends Accept.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is an empty TCP address.
func (l *Listener) Addr() net.Addr { return &net.TCPAddr{} }

// RedisLuaLocation is the location of bench.sh's lua-resty-redis pages at path: connect
// to redis on REDISPORT (the caller's placeholder), GET foo, then release, which is
// "red:set_keepalive(10000, 512)" for /redis_lua or "red:close()" for
// /redis_short_lua, and say the value.
func RedisLuaLocation(path, release string) string {
	return `
    location "= ` + path + `" {
      content_by_lua = <<-LUA
        local redis = require "nginx.redis"
        local red = redis:new(); red:set_timeout(1000)
        local ok, err = red:connect("127.0.0.1", REDISPORT)
        if not ok then ngx.status = 502; ngx.say(err); return end
        local v = red:get("foo")
        ` + release + `
        ngx.say(v)
      LUA
    }`
}
