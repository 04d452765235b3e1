package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/proxy"
	_ "github.com/spindle-server/spindle/modules/rewrite"
	"github.com/spindle-server/spindle/modules/upstream"
)

// A test module that copies upstream variables into response headers, as
// add_header X-Upstream $upstream_addr would.
var _ = testserver.VarHeaders("test_vars", map[string]string{
	"upstream_addr": "X-Var-upstream_addr", "upstream_status": "X-Var-upstream_status",
	"proxy_host": "X-Var-proxy_host", "upstream_http_x_up": "X-Var-upstream_http_x_up",
})

// backend is a real HTTP server on a fixed port that a test can stop and start.
type backend struct {
	t       *testing.T
	addr    string
	handler http.Handler
	srv     *http.Server
	conns   atomic.Int64 // connections accepted
	hits    atomic.Int64
	mu      sync.Mutex
}

func startBackend(t *testing.T, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{t: t}
	b.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	t.Cleanup(b.stop)
	return b
}

func (b *backend) serve(ln net.Listener) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.srv = &http.Server{Handler: b.handler, ConnState: func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}}
	go b.srv.Serve(ln)
}

func (b *backend) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		b.srv.Close()
		b.srv = nil
	}
}

func (b *backend) restart() {
	b.t.Helper()
	var ln net.Listener
	var err error
	if !e2e.WaitFor(time.Second, func() bool { ln, err = net.Listen("tcp", b.addr); return err == nil }) {
		b.t.Fatal(err)
	}
	b.serve(ln)
}

// deadAddr is a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func cfg(s string, kv ...string) string {
	r := strings.NewReplacer(kv...)
	return r.Replace(s)
}

func TestProxyHeadersAndURIs(t *testing.T) {
	var last atomic.Pointer[http.Request]
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		last.Store(r)
		w.Header().Set("X-Up", "yes")
		w.Header().Set("Server", "upstream-server")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "secret")
		w.Header().Set("Content-Type", "text/x-test")
		if r.URL.Path == "/api/redirect" {
			w.Header().Set("Location", "http://backend/api/elsewhere")
			w.WriteHeader(302)
			return
		}
		fmt.Fprintf(w, "%s %s", r.Method, r.RequestURI)
	})
	s := testserver.Start(t, cfg(`
http {
  upstream "backend" {
    servers = ["BE"]
  }
  server {
    listen = ["127.0.0.1:0"]
    test_vars = true
    location "/raw/" { proxy_pass = "http://backend" }
    location "/app/" { proxy_pass = "http://backend/api/" }
    location "/set/" {
      proxy_set_header = { Host = "${host}", "X-Real-IP" = "", "X-Custom" = "v-${arg.v}" }
      proxy_pass = "http://backend"
    }
    location "/direct/" { proxy_pass = "http://BE" }
    location "/var/" { proxy_pass = "http://${arg.to}/fixed?a=1" }
  }
}`, "BE", be.addr))

	resp := s.Get("/raw/a%2Fb?x=1&y", "Connection: keep-alive, X-Drop", "X-Drop: 1", "Keep-Alive: 300", "TE: trailers", "X-Keep: 2", "X-Forwarded-For: 10.0.0.1")
	if resp.Status != 200 || resp.Body != "GET /raw/a%2Fb?x=1&y" {
		t.Fatalf("raw: %d %q", resp.Status, resp.Body)
	}
	r := last.Load()
	if r.Host != "backend" {
		t.Errorf("Host = %q, want the upstream name", r.Host)
	}
	if r.Header.Get("X-Drop") != "" || r.Header.Get("Keep-Alive") != "" || r.Header.Get("Te") != "" {
		t.Errorf("hop-by-hop request headers passed: %v", r.Header)
	}
	if r.Header.Get("X-Keep") != "2" || r.Header.Get("X-Real-Ip") != "127.0.0.1" || r.Header.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("request headers: %v", r.Header)
	}
	if got := r.Header.Get("X-Forwarded-For"); got != "10.0.0.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if resp.Header.Get("X-Up") != "yes" || resp.Header.Get("X-Hop") != "" || resp.Header.Get("Content-Type") != "text/x-test" {
		t.Errorf("response headers: %v", resp.Header)
	}
	if sv := resp.Header.Get("Server"); !strings.HasPrefix(sv, "spindle") {
		t.Errorf("Server = %q: the upstream's must be hidden", sv)
	}
	if resp.Header.Get("X-Var-Upstream_addr") != be.addr || resp.Header.Get("X-Var-Upstream_status") != "200" ||
		resp.Header.Get("X-Var-Proxy_host") != "backend" || resp.Header.Get("X-Var-Upstream_http_x_up") != "yes" {
		t.Errorf("upstream variables: %v", resp.Header)
	}

	if resp := s.Get("/app/x/y?q=1"); resp.Body != "GET /api/x/y?q=1" {
		t.Errorf("URI part: %q", resp.Body)
	}
	if resp := s.Get("/app/redirect"); resp.Status != 302 || resp.Header.Get("Location") != "/app/elsewhere" {
		t.Errorf("proxy_redirect default: %d %q", resp.Status, resp.Header.Get("Location"))
	}
	// The client's headers that proxy_set_header names, in any case, are not passed.
	if resp := s.Get("/set/z?v=7", "Host: front.example", "x-custom: client", "X-REAL-IP: 10.9.9.9"); resp.Status != 200 {
		t.Fatalf("set: %d", resp.Status)
	}
	r = last.Load()
	if r.Host != "front.example" || r.Header.Get("X-Real-Ip") != "" || len(r.Header.Values("X-Custom")) != 1 || r.Header.Get("X-Custom") != "v-7" {
		t.Errorf("proxy_set_header: host %q headers %v", r.Host, r.Header)
	}
	if resp := s.Get("/direct/d"); resp.Body != "GET /direct/d" {
		t.Errorf("direct: %q", resp.Body)
	}
	if resp := s.Get("/direct/d", "Host: x"); resp.Status != 200 || last.Load().Host != be.addr {
		t.Errorf("direct Host = %q", last.Load().Host)
	}
	if resp := s.Get("/var/q?to=" + be.addr); resp.Body != "GET /fixed?a=1" {
		t.Errorf("proxy_pass with variables: %d %q", resp.Status, resp.Body)
	}
}

func TestProxyBodies(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s cl=%d te=%v body=%s", r.Method, r.ContentLength, r.TransferEncoding, b)
	})
	s := testserver.Start(t, cfg(`
http {
  server {
    listen = ["127.0.0.1:0"]
    location "/" { proxy_pass = "http://BE" }
  }
}`, "BE", be.addr))
	if resp := s.Do("POST", "/p", "hello body"); resp.Body != "POST cl=10 te=[] body=hello body" {
		t.Errorf("known length: %q", resp.Body)
	}
	raw := s.Raw("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 5*time.Second)
	if !strings.Contains(raw, "POST cl=-1 te=[chunked] body=hello world") {
		t.Errorf("chunked: %q", raw)
	}
	raw = s.Raw("PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nabc", 5*time.Second)
	if !strings.Contains(raw, "PUT cl=3 te=[] body=abc") {
		t.Errorf("100-continue: %q", raw)
	}
	if resp := s.Do("HEAD", "/h", ""); resp.Status != 200 || resp.Body != "" {
		t.Errorf("HEAD: %d %q", resp.Status, resp.Body)
	}
}

func TestProxyKeepaliveReuse(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	s := testserver.Start(t, cfg(`
http {
  upstream "pooled" {
    servers   = ["BE"]
    keepalive = 4
  }
  upstream "short" {
    servers   = ["BE"]
    keepalive = 0
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/pooled" { proxy_pass = "http://pooled" }
    location "/short" { proxy_pass = "http://short" }
  }
}`, "BE", be.addr))
	for i := 0; i < 20; i++ {
		if resp := s.Get("/pooled"); resp.Body != "ok" {
			t.Fatalf("pooled: %d %q", resp.Status, resp.Body)
		}
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("20 sequential requests opened %d upstream connections, want 1", n)
	}
	// Concurrent requests open more, but at most keepalive stay idle.
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				s.Get("/pooled")
			}
		}()
	}
	wg.Wait()
	idle, _ := proxyPoolStats(s, "pooled")
	if idle > 4 {
		t.Errorf("%d idle connections kept, keepalive is 4", idle)
	}
	before := be.conns.Load()
	for i := 0; i < 5; i++ {
		s.Get("/short")
	}
	if n := be.conns.Load() - before; n != 5 {
		t.Errorf("keepalive = 0: 5 requests opened %d connections", n)
	}
}

func proxyPoolStats(s *testserver.Server, name string) (int, int64) {
	return proxy.PoolStats(s.Config, upstream.Lookup(s.Config, name))
}

func TestProxyFailures(t *testing.T) {
	slow := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // no answer until the proxy gives up and closes
		io.WriteString(w, "late")
	})
	s := testserver.Start(t, cfg(`
http {
  server {
    listen = ["127.0.0.1:0"]
    location "/down" { proxy_pass = "http://DEAD" }
    location "/slow" {
      proxy_read_timeout = "200ms"
      proxy_pass = "http://SLOW"
    }
    location "/other" { return = { code = 200, body = "other\n" } }
  }
}`, "DEAD", deadAddr(t), "SLOW", slow.addr))
	if resp := s.Get("/down"); resp.Status != 502 {
		t.Errorf("backend down: %d, want 502", resp.Status)
	}
	start := time.Now()
	done := make(chan int, 1)
	go func() { done <- s.Status("/slow") }()
	// The worker keeps serving while a request waits for a slow backend.
	if resp := s.Get("/other"); resp.Body != "other\n" {
		t.Errorf("other location: %q", resp.Body)
	}
	if st := <-done; st != 504 {
		t.Errorf("slow backend: %d, want 504", st)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("504 after %v, proxy_read_timeout is 200ms", d)
	}
	if !strings.Contains(s.ErrorLog(), "upstream timed out") {
		t.Errorf("no timeout in the error log:\n%s", s.ErrorLog())
	}
}

func TestProxyNextUpstream(t *testing.T) {
	good := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "good %s %s", r.Method, b)
	})
	s := testserver.Start(t, cfg(`
http {
  upstream "pair" {
    servers = ["DEAD max_fails=0", "GOOD"]
  }
  server {
    listen = ["127.0.0.1:0"]
    test_vars = true
    location "/" { proxy_pass = "http://pair" }
    location "/np/" {
      proxy_next_upstream = ["error", "timeout", "non_idempotent"]
      proxy_pass = "http://pair"
    }
  }
}`, "DEAD", deadAddr(t), "GOOD", good.addr))
	gets, posts, postsNP := 0, 0, 0
	for i := 0; i < 6; i++ {
		if resp := s.Get("/"); resp.Status == 200 && resp.Body == "good GET " {
			gets++
		}
		if resp := s.Do("POST", "/", "x"); resp.Status == 200 {
			posts++
		} else if resp.Status != 502 {
			t.Errorf("POST failed with %d, want 502", resp.Status)
		}
		if resp := s.Do("POST", "/np/", "y"); resp.Status == 200 && resp.Body == "good POST y" {
			postsNP++
		}
	}
	if gets != 6 {
		t.Errorf("%d of 6 GETs answered: the refused server must be skipped", gets)
	}
	// Round robin sends every other POST to the dead server, and POST is not
	// repeated: half of them fail.
	if posts != 3 {
		t.Errorf("%d of 6 POSTs answered, want 3", posts)
	}
	if postsNP != 6 {
		t.Errorf("non_idempotent: %d of 6 POSTs answered", postsNP)
	}
	resp := s.Get("/")
	if addr := resp.Header.Get("X-Var-Upstream_addr"); !strings.Contains(addr, good.addr) {
		t.Errorf("upstream_addr %q", addr)
	}
}

func TestProxyFailTimeout(t *testing.T) {
	// A server that accepts and closes at once fails every request.
	var accepts atomic.Int64
	bad := testserver.TCPServer(t, func(net.Conn) { accepts.Add(1) })
	good := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") })
	s := testserver.Start(t, cfg(`
http {
  upstream "u" {
    servers   = ["BAD max_fails=1 fail_timeout=400ms", "GOOD"]
    keepalive = 0
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/" { proxy_pass = "http://u" }
  }
}`, "BAD", bad, "GOOD", good.addr))
	for i := 0; i < 10; i++ {
		if resp := s.Get("/"); resp.Body != "good" {
			t.Fatalf("request %d: %d %q", i, resp.Status, resp.Body)
		}
	}
	if n := accepts.Load(); n != 1 {
		t.Errorf("the failed server was tried %d times within fail_timeout, want 1", n)
	}
	// Once fail_timeout has passed, a request probes the server (and fails again),
	// and the requests that follow go to the good one.
	e2e.WaitFor(5*time.Second, func() bool { s.Get("/"); return accepts.Load() >= 2 })
	for i := 0; i < 4; i++ {
		s.Get("/")
	}
	if n := accepts.Load(); n != 2 {
		t.Errorf("after fail_timeout the server was tried %d times in all, want 2 (one probe)", n)
	}
	if !strings.Contains(s.ErrorLog(), "temporarily disabled") {
		t.Errorf("no 'temporarily disabled' in the log")
	}
}

func TestProxyBackendRestart(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up") })
	s := testserver.Start(t, cfg(`
http {
  upstream "one" {
    servers   = ["BE"]
    keepalive = 8
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/" { proxy_pass = "http://one" }
  }
}`, "BE", be.addr))
	for i := 0; i < 3; i++ {
		if resp := s.Get("/"); resp.Body != "up" {
			t.Fatalf("before: %d", resp.Status)
		}
	}
	be.stop()
	for i := 0; i < 3; i++ {
		if resp := s.Get("/"); resp.Status != 502 {
			t.Errorf("backend stopped: %d, want 502", resp.Status)
		}
	}
	be.restart()
	// The pooled connections died with the old process; a single server is never
	// taken out of rotation, so the first request after the restart succeeds.
	if resp := s.Get("/"); resp.Body != "up" {
		t.Errorf("after restart: %d %q", resp.Status, resp.Body)
	}
}

func TestProxyUpstreamClosesMidBody(t *testing.T) {
	be := testserver.TCPServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil || l == "\r\n" {
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
		c.Write(make([]byte, 70000))
	})
	s := testserver.Start(t, cfg(`
http {
  server {
    listen = ["127.0.0.1:0"]
    location "/" { proxy_pass = "http://BE" }
    location "/ok" { return = { code = 200, body = "fine" } }
  }
}`, "BE", be))
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n >= 100000 {
		t.Errorf("truncated upstream body: read %d bytes, err %v; want a truncated body", n, err)
	}
	if resp := s.Get("/ok"); resp.Body != "fine" {
		t.Errorf("worker broken after a truncated upstream: %q", resp.Body)
	}
}

func TestProxyWebSocket(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			http.Error(w, "not an upgrade", 400)
			return
		}
		c, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: test\r\n\r\n")
		// Echo everything back in upper case.
		buf := make([]byte, 4096)
		for {
			n, err := rw.Read(buf)
			if n > 0 {
				c.Write([]byte(strings.ToUpper(string(buf[:n]))))
			}
			if err != nil {
				return
			}
		}
	})
	s := testserver.Start(t, cfg(`
http {
  server {
    listen = ["127.0.0.1:0"]
    location "/ws" {
      proxy_read_timeout = "2s"
      proxy_pass = "http://BE"
    }
  }
}`, "BE", be.addr))
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\nearly")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-Websocket-Accept") != "test" || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("upgrade response: %d %v", resp.StatusCode, resp.Header)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "EARLY" {
		t.Fatalf("bytes sent with the request: %q %v", got, err)
	}
	for _, msg := range []string{"hello", "tunnel"} {
		io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != strings.ToUpper(msg) {
			t.Fatalf("echo %q: %q %v", msg, got, err)
		}
	}
	c.Close()
	// The tunnel ends with the client, and the worker keeps serving.
	if resp := s.Get("/ws"); resp.Status != 400 {
		t.Errorf("plain request: %d", resp.Status)
	}
}

func TestProxyBalancing(t *testing.T) {
	var a, b atomic.Int64
	ba := startBackend(t, func(w http.ResponseWriter, r *http.Request) { a.Add(1); io.WriteString(w, "a") })
	bb := startBackend(t, func(w http.ResponseWriter, r *http.Request) { b.Add(1); io.WriteString(w, "b") })
	bk := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backup") })
	s := testserver.Start(t, cfg(`
http {
  upstream "weighted" {
    servers = ["{A} weight=3", "{B}"]
  }
  upstream "hashed" {
    servers = ["{A}", "{B}"]
    hash    = { key = "${arg.k}", consistent = true }
  }
  upstream "withbackup" {
    servers = ["{DEAD}", "{BK} backup"]
  }
  upstream "alldown" {
    servers = ["{A} down", "{B} down"]
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/w" { proxy_pass = "http://weighted" }
    location "/h" { proxy_pass = "http://hashed" }
    location "/b" { proxy_pass = "http://withbackup" }
    location "/d" { proxy_pass = "http://alldown" }
  }
}`, "{A}", ba.addr, "{B}", bb.addr, "{BK}", bk.addr, "{DEAD}", deadAddr(t)))
	for i := 0; i < 40; i++ {
		s.Get("/w")
	}
	if a.Load() != 30 || b.Load() != 10 {
		t.Errorf("weights 3:1 gave %d:%d", a.Load(), b.Load())
	}
	for _, k := range []string{"x", "y", "z", "w"} {
		first := s.Get("/h?k=" + k).Body
		for i := 0; i < 5; i++ {
			if got := s.Get("/h?k=" + k).Body; got != first {
				t.Errorf("key %q went to %q then %q", k, first, got)
			}
		}
	}
	if resp := s.Get("/b"); resp.Body != "backup" {
		t.Errorf("backup: %d %q", resp.Status, resp.Body)
	}
	if resp := s.Get("/d"); resp.Status != 502 {
		t.Errorf("all servers down: %d", resp.Status)
	}
}

func TestProxyConfigErrors(t *testing.T) {
	cases := []struct{ conf, want string }{
		{`location "/" { proxy_pass = "https://x" }`, "https upstreams are not supported"},
		{`location "~ ^/r" { proxy_pass = "http://127.0.0.1:1/uri" }`, "cannot have a URI part"},
		{`location "/" { proxy_pass = "http://127.0.0.1:99999" }`, "invalid port"},
		{`location "/" { proxy_next_upstream = ["sometimes"] }`, "unknown proxy_next_upstream value"},
		{`location "/" { proxy_pass = "http://no.such.host.invalid" }`, "host not found"},
	}
	for _, c := range cases {
		_, err := testserver.BuildString(t, "http {\n server {\n listen = [\"127.0.0.1:0\"]\n "+c.conf+"\n }\n}\n", nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.conf, err, c.want)
		}
	}
	upstreamCases := []struct{ conf, want string }{
		{`upstream "a" { servers = ["127.0.0.1:1"] }` + "\n" + `upstream "a" { servers = ["127.0.0.1:2"] }`, "duplicate upstream"},
		{`upstream "a" { servers = ["127.0.0.1:1 heavy=2"] }`, "unknown server parameter"},
		{"upstream \"a\" {\nservers = [\"127.0.0.1:1\"]\ncolour = 1\n}", "unknown upstream setting"},
		{"upstream \"a\" {\ntype = \"ftp\"\nservers = [\"127.0.0.1:1\"]\n}", "unknown upstream type"},
		{`upstream "a" { }`, "has no servers"},
		{"upstream \"a\" {\nservers = [\"127.0.0.1:1\"]\nbalance = \"hash\"\n}", "hash balancing needs a key"},
		{"upstream \"a\" {\nservers = [\"127.0.0.1:1\"]\nread_timeout = \"1s\"\n}", "proxy_read_timeout"},
	}
	// nginx's rule for times (ngx_conf_set_msec_slot): "0" is a time, as for the Lua
	// socket timeouts; for the proxy it means no timeout.
	if _, err := testserver.BuildString(t, "http {\n server {\n listen = [\"127.0.0.1:0\"]\n proxy_read_timeout = \"0\"\n }\n}\n", nil); err != nil {
		t.Errorf("proxy_read_timeout = \"0\": %v", err)
	}
	for _, c := range upstreamCases {
		_, err := testserver.BuildString(t, "http {\n"+c.conf+"\n}\n", nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.conf, err, c.want)
		}
	}
}

// pattern is an endless reader of a repeating byte pattern (period 251, so that
// shifted or repeated blocks are noticed).
type pattern struct{ n int64 }

var patternTable = func() []byte {
	b := make([]byte, 251*256)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

func (p *pattern) Read(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		off := int(p.n % 251)
		k := copy(b, patternTable[off:])
		b = b[k:]
		p.n += int64(k)
		total += k
	}
	return total, nil
}

// checkPattern consumes a body and reports its length and whether every byte
// followed the pattern.
func checkPattern(r io.Reader) (int64, bool) {
	buf := make([]byte, 64<<10)
	var n int64
	ok := true
	for {
		k, err := r.Read(buf)
		for done := 0; done < k; {
			off := int((n + int64(done)) % 251)
			m := min(k-done, len(patternTable)-off)
			if !bytes.Equal(buf[done:done+m], patternTable[off:off+m]) {
				ok = false
			}
			done += m
		}
		n += int64(k)
		if err != nil {
			return n, ok && err == io.EOF
		}
	}
}

func TestProxyStreamsLargeBodies(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 32 << 20
	}
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/download":
			if r.URL.Query().Get("chunked") == "" {
				w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			}
			io.Copy(w, io.LimitReader(&pattern{}, size))
		case "/upload":
			n, ok := checkPattern(r.Body)
			fmt.Fprintf(w, "%d %v", n, ok)
		}
	})
	s := testserver.Start(t, cfg(`
http {
  server {
    listen = ["127.0.0.1:0"]
    client_max_body_size = 0
    location "/" { proxy_pass = "http://BE" }
  }
}`, "BE", be.addr))
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	client := &http.Client{Timeout: 2 * time.Minute}
	for _, q := range []string{"", "?chunked=1"} {
		resp, err := client.Get(s.URL("/download" + q))
		if err != nil {
			t.Fatal(err)
		}
		n, ok := checkPattern(resp.Body)
		resp.Body.Close()
		if n != size || !ok {
			t.Errorf("download%s: %d bytes (want %d), intact %v", q, n, size, ok)
		}
		if q == "" && resp.ContentLength != size {
			t.Errorf("download: Content-Length %d, want %d", resp.ContentLength, size)
		}
	}
	for _, chunked := range []bool{false, true} {
		req, _ := http.NewRequest("POST", s.URL("/upload"), io.LimitReader(&pattern{}, size))
		if chunked {
			req.ContentLength = -1
		} else {
			req.ContentLength = size
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != fmt.Sprintf("%d true", size) {
			t.Errorf("upload (chunked %v): backend got %q", chunked, b)
		}
	}
	close(stop)
	<-sampled
	t.Logf("4 x %d MB through the proxy: peak Go heap in use %.1f MB", size>>20, float64(peak.Load())/(1<<20))
	// Client, backend and proxy share this process: all stream, none may buffer.
	if peak.Load() > 48<<20 {
		t.Errorf("peak heap %d MB while streaming: a body is being buffered", peak.Load()>>20)
	}
}

// A WebSocket tunnel is a hijacked connection: the engine counts it as active, a
// graceful shutdown waits for it, and worker_shutdown_timeout ends it.
func TestProxyWebSocketDrain(t *testing.T) {
	be := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, rw)
	})
	s := testserver.Start(t, cfg(`
http {
  server {
    listen = ["127.0.0.1:0"]
    location "/ws" { proxy_pass = "http://BE" }
  }
}`, "BE", be.addr))
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if n := s.Engine.Counters()["active"]; n != 1 {
		t.Errorf("active connections with a tunnel open: %d", n)
	}
	start := time.Now()
	done := make(chan struct{})
	go func() { s.Engine.Shutdown(400 * time.Millisecond); close(done) }()
	// The tunnel keeps working while the engine drains.
	io.WriteString(c, "ping")
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
		t.Errorf("tunnel during drain: %q %v", got, err)
	}
	select {
	case <-done:
		t.Fatalf("shutdown returned while a tunnel was open")
	case <-time.After(200 * time.Millisecond):
	}
	<-done
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Errorf("shutdown took %v with worker_shutdown_timeout 400ms", d)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Errorf("tunnel still open after the forced shutdown")
	}
	if n := s.Engine.Counters()["active"]; n != 0 {
		t.Errorf("active connections after shutdown: %d", n)
	}
}

// One dead server among live ones costs no request: a refused connection, or one
// reset before the server answered anything, moves on to the next server, for
// concurrent requests too, and while the dead server is probed again after
// fail_timeout.
func TestProxyDeadServerCostsNothing(t *testing.T) {
	good := startBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") })
	// A server that accepts and resets at once.
	reset := testserver.TCPServer(t, func(c net.Conn) { c.(*net.TCPConn).SetLinger(0) })
	s := testserver.Start(t, cfg(`
http {
  upstream "refused" {
    servers = ["DEAD fail_timeout=100ms", "GOOD"]
  }
  upstream "reset" {
    servers = ["RESET fail_timeout=100ms", "GOOD"]
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/refused" { proxy_pass = "http://refused" }
    location "/reset" { proxy_pass = "http://reset" }
  }
}`, "DEAD", deadAddr(t), "RESET", reset, "GOOD", good.addr))
	for _, path := range []string{"/refused", "/reset"} {
		var wg sync.WaitGroup
		var failed atomic.Int64
		for w := 0; w < 10; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 10; i++ {
					if resp := s.Get(path); resp.Status != 200 || resp.Body != "good" {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if n := failed.Load(); n != 0 {
			t.Errorf("%s: %d of 100 proxied GETs failed with one of two servers dead", path, n)
		}
	}
}
