package httpcore_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// fakeConn feeds the same request forever and discards what is written: the cost of
// the request path without the kernel.
type fakeConn struct {
	req  []byte
	n    int
	stop int
}

func (c *fakeConn) Read(p []byte) (int, error) {
	if c.n >= c.stop {
		return 0, net.ErrClosed
	}
	c.n++
	return copy(p, c.req), nil
}
func (c *fakeConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *fakeConn) Close() error                       { return nil }
func (c *fakeConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *fakeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555} }
func (c *fakeConn) SetDeadline(t time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(t time.Time) error { return nil }

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

func benchPath(b *testing.B, config, req string) {
	prefix := b.TempDir()
	os.MkdirAll(filepath.Join(prefix, "conf"), 0o755)
	os.WriteFile(filepath.Join(prefix, "conf/spindle.hcl"), []byte(config), 0o644)
	cfg, err := testserver.Build(prefix, "conf/spindle.hcl")
	if err != nil {
		b.Fatal(err)
	}
	if err := cfg.InitWorker(&httpcore.Worker{Count: 1}); err != nil {
		b.Fatal(err)
	}
	e := httpcore.NewEngine(cfg, httpcore.EngineOptions{})
	fc := &fakeConn{req: []byte(req), stop: b.N}
	ln := &oneConnListener{c: fc, done: make(chan struct{})}
	b.ReportAllocs()
	b.ResetTimer()
	go e.Serve(ln, cfg.Listens[0].Addr)
	for fc.n < b.N {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	close(ln.done)
	e.Close()
}

const benchConf = `
http {
  server {
    listen = ["127.0.0.1:80"]
    keepalive_requests = 1000000000
    location "= /hello" { return = { code = 200, body = "hello world\n" } }
    location "= /moon" { echo = "moon" }
    location "= /earth" { echo = "earth" }
    location "= /multi" { echo_location_async = ["/moon", "/earth"] }
  }
}
`

func BenchmarkHello(b *testing.B) {
	benchPath(b, benchConf, "GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
}

func BenchmarkMulti(b *testing.B) {
	benchPath(b, benchConf, "GET /multi HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
}
