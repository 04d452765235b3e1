package lua_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// The benchmarks drive the whole request path in process, as modules/httpcore's: a
// fake connection feeds the same request forever and discards the responses.

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
func (c *fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

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
	defer cfg.ExitWorker()
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

// benchConf mirrors the benchmark's anchor configuration (shared/anchors/nginx.conf):
// /lua, /multi and /redis are OpenResty's pages of the side-by-side benchmark.
const benchConf = `
http {
  lua_package_path = "/usr/share/lua/5.1/?.lua;;"
  server {
    listen = ["127.0.0.1:80"]
    keepalive_requests = 1000000000
    location "= /hello" { return = { code = 200, body = "hello world\n" } }
    location "= /lua" { content_by_lua = "ngx.say(\"Hello, Lua!\")" }
    location "= /lua_var" {
      content_by_lua = <<-LUA
        ngx.say("Hello, ", ngx.var.arg_who or "Lua", "!")
      LUA
    }
    location "= /lua_nolimit" {
      lua_max_run_time = "off"
      content_by_lua = "ngx.say(\"Hello, Lua!\")"
    }
    location "= /lua_empty" { content_by_lua = "local x = 1" }
    location "= /lua_global" {
      content_by_lua = <<-LUA
        greeting = "Hello, "
        ngx.say(greeting, "Lua!")
      LUA
    }
    location "= /moon" { echo = "moon" }
    location "= /earth" { echo = "earth" }
    location "= /multi" {
      content_by_lua = <<-LUA
        local r1, r2 = ngx.location.capture_multi({ {"/moon"}, {"/earth"} })
        ngx.print(r1.body, ",", r2.body)
      LUA
    }
    location "= /redis" {
      content_by_lua = <<-LUA
        local redis = require "nginx.redis"
        local red = redis:new(); red:set_timeout(1000)
        local ok, err = red:connect("127.0.0.1", REDISPORT)
        if not ok then ngx.status = 502; ngx.say(err); return end
        local v = red:get("foo")
        red:set_keepalive(10000, 512)
        ngx.say(v)
      LUA
    }
  }
}
`

const benchReq = " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"

// BenchmarkHello is the baseline without Lua.
func BenchmarkHello(b *testing.B) { benchPath(b, benchConf, "GET /hello"+benchReq) }

// BenchmarkLua is the benchmark's /lua page: ngx.say("Hello, Lua!").
func BenchmarkLua(b *testing.B) { benchPath(b, benchConf, "GET /lua"+benchReq) }

// BenchmarkLuaVar adds ngx.var.arg_who (the default configuration's /lua).
func BenchmarkLuaVar(b *testing.B) { benchPath(b, benchConf, "GET /lua_var"+benchReq) }

// BenchmarkLuaNoLimit is /lua with lua_max_run_time off: the cost of the run-time
// limit's context check.
func BenchmarkLuaNoLimit(b *testing.B) { benchPath(b, benchConf, "GET /lua_nolimit"+benchReq) }

// BenchmarkLuaEmpty runs a chunk that does nothing: the fixed cost of a Lua handler.
func BenchmarkLuaEmpty(b *testing.B) { benchPath(b, benchConf, "GET /lua_empty"+benchReq) }

// BenchmarkLuaGlobal writes a global: a per-request environment table.
func BenchmarkLuaGlobal(b *testing.B) { benchPath(b, benchConf, "GET /lua_global"+benchReq) }

// BenchmarkLuaMulti is /multi: two subrequests through ngx.location.capture_multi.
func BenchmarkLuaMulti(b *testing.B) { benchPath(b, benchConf, "GET /multi"+benchReq) }

// BenchmarkLuaRedis is /redis: a GET through the unmodified lua-resty-redis and a
// pooled cosocket, against a real redis-server.
func BenchmarkLuaRedis(b *testing.B) {
	addr := backends.StartRedis(b).Addr()
	_, port, _ := net.SplitHostPort(addr)
	benchPath(b, strings.Replace(benchConf, "REDISPORT", port, 1), "GET /redis"+benchReq)
}
