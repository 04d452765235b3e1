package testserver

import (
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
)

// BenchPath drives the whole request path in process with config loaded as a worker
// loads it: one fake connection feeds req b.N times and discards the responses, so
// the benchmark measures the request path without the kernel.
func BenchPath(b *testing.B, config, req string) {
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
	defer cfg.ExitWorker()
	e := httpcore.NewEngine(cfg, httpcore.EngineOptions{})
	fc := &fakeConn{req: []byte(req), stop: int64(b.N)}
	ln := &oneConnListener{c: fc, done: make(chan struct{})}
	b.ReportAllocs()
	b.ResetTimer()
	go e.Serve(ln, cfg.Listens[0].Addr)
	for fc.n.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	close(ln.done)
	e.Close()
}

// fakeConn feeds the same request until stop and discards what is written.
type fakeConn struct {
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
func (c *fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// oneConnListener accepts its one connection, then waits until done.
type oneConnListener struct {
	c    net.Conn
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.c != nil {
		c := l.c
		l.c = nil
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}
func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{} }
