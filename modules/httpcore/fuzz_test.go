package httpcore

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
)

// FuzzScanHead checks the edge validation of request heads: it never panics, what it
// accepts is well framed, and reqHeader reads it line for line.
func FuzzScanHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	lim := headLimits{line: 8192, field: 8192, total: 32768}
	f.Fuzz(func(t *testing.T, b []byte) {
		res := scanHead(b, lim)
		if fast, ok := scanHeadFast(b, lim); ok && fast != scanHeadFull(b, lim) {
			t.Fatalf("scanHeadFast %+v, scanHeadFull %+v: %q", fast, scanHeadFull(b, lim), b)
		}
		if res.n == 0 {
			return
		}
		head := b[:res.n]
		if !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			t.Fatalf("accepted head without CRLF CRLF: %q", head)
		}
		for i, c := range head {
			if c == '\n' && (i == 0 || head[i-1] != '\r') {
				t.Fatalf("accepted bare LF: %q", head)
			}
		}
		if res.chunked && res.hasCL {
			t.Fatalf("accepted Content-Length with Transfer-Encoding: %q", head)
		}
		// What the edge accepts, reqHeader reads: every line is a field, in order.
		var h reqHeader
		if err := h.parse(head); err != nil {
			t.Fatalf("parse refused an accepted head: %v: %q", err, head)
		}
		lines := strings.Split(string(h.RawHeaders()), "\r\n")
		if len(lines) != len(h.fields)+2 {
			t.Fatalf("%d fields for %d lines: %q", len(h.fields), len(lines)-2, head)
		}
		i := 0
		h.Visit(func(name, value []byte) {
			n, v, _ := strings.Cut(lines[i], ":")
			if n != string(name) || strings.Trim(v, " \t") != string(value) {
				t.Fatalf("field %d is %q: %q, line %q", i, name, value, lines[i])
			}
			i++
		})
		if res.hasCL != (h.ContentLength() >= 0) {
			t.Fatalf("Content-Length %d, scan %+v: %q", h.ContentLength(), res, head)
		}
	})
}

// fuzzConn feeds fixed bytes and records what the server writes.
type fuzzConn struct {
	in  *bytes.Reader
	out bytes.Buffer
	mu  sync.Mutex
}

func (c *fuzzConn) Read(p []byte) (int, error) { return c.in.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}
func (c *fuzzConn) Close() error                       { return nil }
func (c *fuzzConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *fuzzConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555} }
func (c *fuzzConn) SetDeadline(t time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

func fuzzConfig(t testing.TB, src string) *Config {
	prefix := t.TempDir()
	os.MkdirAll(filepath.Join(prefix, "conf"), 0o755)
	path := filepath.Join(prefix, "conf/spindle.hcl")
	os.WriteFile(path, []byte(src), 0o644)
	b, err := conf.ReadBundle(prefix, path)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := conf.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Build(mc)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// FuzzConnection runs arbitrary bytes through a whole connection: the server must not
// panic, and what it writes must be a sequence of well-formed HTTP responses.
func FuzzConnection(f *testing.F) {
	for _, s := range []string{
		"GET /a?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HEAD /b HTTP/1.0\r\n\r\n",
		"GET /%2e%2e/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
	} {
		f.Add([]byte(s))
	}
	cfg := fuzzConfig(f, `
http {
  server {
    listen = ["127.0.0.1:80"]
    location "/" {
      if {
        cond   = [arg.x, "~", "^(\\d+)$"]
        return = { code = 200, body = "x=${re[1]} ${uri}\n" }
      }
      return = { code = 200, body = "${request_method} ${uri} ${args} ${http.host}\n" }
    }
    location "= /b" {
      return = { code = 302, url = "/a?${args}" }
    }
  }
}
`)
	e := NewEngine(cfg, EngineOptions{})
	as := cfg.byAddr["127.0.0.1:80"]
	f.Fuzz(func(t *testing.T, in []byte) {
		fc := &fuzzConn{in: bytes.NewReader(in)}
		e.sem <- struct{}{}
		c := newConn(e, fc, as, nil)
		c.serve()
		br := bufio.NewReader(bytes.NewReader(fc.out.Bytes()))
		for {
			if _, err := br.Peek(1); err == io.EOF {
				break
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("malformed output for %q: %v\n%q", in, err, fc.out.String())
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil && !strings.Contains(fc.out.String(), "HEAD") {
				// HEAD responses announce a length without a body; net/http cannot tell.
				if !bytes.Contains(in, []byte("HEAD")) {
					t.Fatalf("response body for %q: %v\n%q", in, err, fc.out.String())
				}
				break
			}
			resp.Body.Close()
		}
	})
}

// FuzzTemplate checks that templates compiled to plain concatenation give what HCL's
// own evaluation gives.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"${uri}", "a${arg.x}b${args}", "${http.user_agent}-${cookie.sid}", "${re[1]}", "plain", "${uri}${uri}", "%{ if true }x%{ endif }"} {
		f.Add(s)
	}
	cfg := fuzzConfig(f, "http {\n}\n")
	req := &Request{cfg: cfg, uri: "/p/q", args: "x=1&y=%20", method: "GET", loc: cfg.root}
	req.main = req
	req.hdrOverlay = &Header{}
	req.hdrOverlay.Add("User-Agent", "fz")
	req.hdrOverlay.Add("Cookie", "sid=42")
	req.caps = []string{"/p/q", "p"}
	f.Fuzz(func(t *testing.T, src string) {
		expr, diags := hclsyntax.ParseTemplate([]byte(src), "fuzz", hcl.Pos{Line: 1, Column: 1})
		if diags.HasErrors() {
			return
		}
		e, err := cfg.vars.compile(expr, cfg.root)
		if err != nil || e.parts == nil {
			return
		}
		fast, err := e.String(req)
		if err != nil {
			t.Fatalf("%q: fast path: %v", src, err)
		}
		slow := *e
		slow.parts = nil
		v, err := slow.Value(req)
		if err != nil {
			return
		}
		want, err := ValueString(v, e.Range)
		if err != nil {
			return
		}
		if fast != want {
			t.Fatalf("%q: fast path %q, HCL %q", src, fast, want)
		}
	})
}
