package httpcore_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const h2IdleConf = `
http {
  server {
    listen = ["127.0.0.1:0 http2"]
    http2_idle_timeout = "%s"
    location "= /hello" { return = { code = 200, body = "hello\n" } }
  }
}
`

// h2Client is a raw HTTP/2 client connection (prior knowledge).
type h2Client struct {
	t  *testing.T
	nc net.Conn
	fr *http2.Framer
}

func dialH2(t *testing.T, addr string) *h2Client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() }) // before the server's: its lingering close sees ours
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(nc, http2.ClientPreface)
	c := &h2Client{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
	c.fr.WriteSettings()
	return c
}

// get sends GET path on stream id and reads frames until its response ends; it
// returns the body.
func (c *h2Client) get(id uint32, path string) string {
	c.t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", path}, {":authority", "x"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
	var body []byte
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			if f.StreamEnded() {
				return string(body)
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				return string(body)
			}
		case *http2.GoAwayFrame, *http2.RSTStreamFrame:
			c.t.Fatalf("stream %d: %v", id, f)
		}
	}
}

// An idle HTTP/2 connection is parked in the event loop with no goroutine, as an idle
// HTTP/1.1 keepalive connection is, and its next frame brings its reader back.
func TestIdleHTTP2ConnectionsCostNoGoroutine(t *testing.T) {
	s := testserver.Start(t, fmt.Sprintf(h2IdleConf, "30s"))
	var conns []*h2Client
	defer func() {
		for _, c := range conns {
			c.nc.Close()
		}
	}()
	for i := 0; i < 200; i++ {
		c := dialH2(t, s.Addr)
		conns = append(conns, c)
		if b := c.get(1, "/hello"); b != "hello\n" {
			t.Fatalf("connection %d: %q", i, b)
		}
	}
	// No reader waits: the pool's idle goroutines (which it ends after a while) are
	// not the connections'.
	readers := func() int {
		buf := make([]byte, 16<<20)
		n := 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "httpcore.(*h2conn).") {
				n++
			}
		}
		return n
	}
	e2e.WaitFor(5*time.Second, func() bool { return readers() == 0 })
	if n := readers(); n > 0 {
		t.Errorf("%d goroutines read 200 idle HTTP/2 connections", n)
	}
	for i, c := range conns {
		if b := c.get(3, "/hello"); b != "hello\n" {
			t.Fatalf("connection %d after idle: %q", i, b)
		}
	}
}

// A parked connection still ends at http2_idle_timeout, with GOAWAY(NO_ERROR).
func TestParkedHTTP2ConnectionIdleTimeout(t *testing.T) {
	s := testserver.Start(t, fmt.Sprintf(h2IdleConf, "300ms"))
	c := dialH2(t, s.Addr)
	c.get(1, "/hello")
	start := time.Now()
	var goAway *http2.GoAwayFrame
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			break
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			goAway = g
			t.Logf("GOAWAY after %v", time.Since(start))
		}
	}
	if goAway == nil || goAway.ErrCode != http2.ErrCodeNo || goAway.LastStreamID != 1 {
		t.Errorf("GOAWAY %v", goAway)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v", d)
	}
}
