// Package testserver runs the HTTP core in-process for module tests, in the spirit of
// net/http/httptest: a config written as HCL, files under a temporary prefix, real
// sockets on loopback, and helpers to send requests (well-formed or raw bytes).
package testserver

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/errlog"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// Server is a running in-process server.
type Server struct {
	t      testing.TB
	Prefix string
	Config *httpcore.Config
	Engine *httpcore.Engine
	// Addr is the address of the first listen directive, with its real port.
	Addr  string
	addrs map[string]string
	log   *bytes.Buffer
}

// Option changes how Start sets up the server.
type Option func(*setup)

type setup struct {
	files  map[string]string
	level  errlog.Level
	engine httpcore.EngineOptions
}

// WithFiles writes files (path relative to the prefix → content) before the config
// is loaded.
func WithFiles(files map[string]string) Option { return func(s *setup) { s.files = files } }

// WithLogLevel sets the error log level (default: debug, so tests can assert on
// anything).
func WithLogLevel(l errlog.Level) Option { return func(s *setup) { s.level = l } }

// WithEngineOptions sets the engine's options (default: 1024 worker_connections).
func WithEngineOptions(o httpcore.EngineOptions) Option {
	return func(s *setup) { s.engine = o }
}

// Start writes config as conf/spindle.hcl under a temporary prefix, builds it and
// serves it. Listen addresses with port 0 get a free port each (use distinct hosts
// such as 127.0.0.2:0 for distinct sockets); the server stops when the test ends.
func Start(t testing.TB, config string, opts ...Option) *Server {
	t.Helper()
	st := &setup{level: errlog.Debug, engine: httpcore.EngineOptions{WorkerConnections: 1024}}
	for _, o := range opts {
		o(st)
	}
	prefix := t.TempDir()
	for name, content := range st.files {
		p := filepath.Join(prefix, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(prefix, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(prefix, "conf/spindle.hcl"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Build(prefix, "conf/spindle.hcl")
	if err != nil {
		t.Fatalf("config does not load:\n%v", err)
	}
	s := &Server{t: t, Prefix: prefix, Config: cfg, addrs: map[string]string{}, log: &bytes.Buffer{}}
	logPath := filepath.Join(prefix, "logs/error.log")
	lg, err := errlog.Open(logPath, st.level)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetLog(lg)
	s.Engine = httpcore.NewEngine(cfg, st.engine)
	exiting := make(chan struct{})
	if err := cfg.InitWorker(&httpcore.Worker{ID: 0, Count: 1, Pid: os.Getpid(), Exiting: exiting, Counters: s.Engine.Counters}); err != nil {
		t.Fatalf("init worker: %v", err)
	}
	for _, l := range cfg.Listens {
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil {
			t.Fatalf("listen %s: %v", l.Addr, err)
		}
		s.addrs[l.Addr] = ln.Addr().String()
		if s.Addr == "" {
			s.Addr = ln.Addr().String()
		}
		go s.Engine.Serve(ln, l.Addr)
	}
	t.Cleanup(func() {
		close(exiting)
		s.Engine.Close()
		cfg.ExitWorker()
		lg.Close()
	})
	return s
}

// Build loads and builds a config file the way a worker does.
func Build(prefix, path string) (*httpcore.Config, error) {
	b, err := conf.ReadBundle(prefix, path)
	if err != nil {
		return nil, err
	}
	mc, err := conf.Parse(b)
	if err != nil {
		return nil, err
	}
	return httpcore.Build(mc)
}

// BuildString builds a config given as text, for tests of config errors; files are
// written under a temporary prefix first.
func BuildString(t testing.TB, config string, files map[string]string) (*httpcore.Config, error) {
	t.Helper()
	prefix := t.TempDir()
	for name, content := range files {
		p := filepath.Join(prefix, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content), 0o644)
	}
	os.MkdirAll(filepath.Join(prefix, "conf"), 0o755)
	os.WriteFile(filepath.Join(prefix, "conf/spindle.hcl"), []byte(config), 0o644)
	return Build(prefix, filepath.Join(prefix, "conf/spindle.hcl"))
}

// AddrOf returns the real address serving the configured listen address.
func (s *Server) AddrOf(configured string) string { return s.addrs[configured] }

// URL returns "http://addr" + path.
func (s *Server) URL(path string) string { return "http://" + s.Addr + path }

// ErrorLog returns the error log written so far.
func (s *Server) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Prefix, "logs/error.log"))
	return string(b)
}

// Settle waits (up to two seconds) until no request is in progress. A request's log
// phase runs after its response is sent, as in nginx, so a client can have the
// response before the access log has the line: tests that read logs or counters
// settle first.
func (s *Server) Settle() {
	deadline := time.Now().Add(2 * time.Second)
	for s.Engine.Counters()["writing"] > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// Response is a response read by the helpers.
type Response struct {
	Status int
	Header http.Header
	Body   string
	Proto  string
}

var client = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// Get sends GET path with optional headers given as "Name: value" strings.
func (s *Server) Get(path string, headers ...string) *Response {
	s.t.Helper()
	return s.Do("GET", path, "", headers...)
}

// Do sends a request with net/http and reads the whole response.
func (s *Server) Do(method, path, body string, headers ...string) *Response {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL(path), rd)
	if err != nil {
		s.t.Errorf("%s %s: %v", method, path, err)
		return &Response{Header: http.Header{}}
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		if strings.EqualFold(k, "Host") {
			req.Host = strings.TrimSpace(v)
			continue
		}
		req.Header.Add(k, strings.TrimSpace(v))
	}
	// Errorf, not Fatalf: Do may run in goroutines other than the test's.
	resp, err := client.Do(req)
	if err != nil {
		s.t.Errorf("%s %s: %v", method, path, err)
		return &Response{Header: http.Header{}}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Errorf("%s %s: reading body: %v", method, path, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Proto: resp.Proto}
}

// Raw writes raw bytes on a new connection and returns everything the server sends
// back until it closes the connection or goes quiet for the timeout.
func (s *Server) Raw(req string, timeout time.Duration) string {
	s.t.Helper()
	return Raw(s.t, s.Addr, req, timeout)
}

// Raw writes req to addr and reads until the server closes or timeout passes.
func Raw(t testing.TB, addr, req string, timeout time.Duration) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	b, _ := io.ReadAll(c)
	return string(b)
}

// ReadResponses parses the responses in raw bytes read from a connection (HEAD
// responses have no body: pass the method of each request, or "" for GET).
func ReadResponses(raw string, methods ...string) ([]*http.Response, []string, error) {
	br := bufio.NewReader(strings.NewReader(raw))
	var resps []*http.Response
	var bodies []string
	for i := 0; ; i++ {
		if _, err := br.Peek(1); err != nil {
			return resps, bodies, nil
		}
		m := "GET"
		if i < len(methods) && methods[i] != "" {
			m = methods[i]
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			return resps, bodies, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return resps, bodies, err
		}
		resps = append(resps, resp)
		bodies = append(bodies, string(b))
	}
}
