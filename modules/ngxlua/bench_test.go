package ngxlua_test

import (
	"net"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/testserver"
)

// The benchmarks drive the whole request path in process, as modules/httpcore's: a
// fake connection feeds the same request forever and discards the responses.

// benchConf mirrors the benchmark's anchor configuration (shared/anchors/nginx.conf):
// /lua, /multi and /redis are OpenResty's pages of the side-by-side benchmark.
var benchConf = `
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
    location "= /string" {
      content_by_lua = <<-LUA
        local parts = {}
        for i = 1, 40 do
          parts[#parts + 1] = string.format("item-%d=%s;", i, string.rep(string.char(97 + i % 26), 40))
        end
        local s = table.concat(parts)
        local n = 0
        for k, v in s:gmatch("(item%-%d+)=(%a+);") do
          n = n + #k + #v
        end
        local r, count = s:gsub("item%-(%d+)", "x%1")
        ngx.say(#s, " ", n, " ", #r, " ", count)
      LUA
    }
    location "= /gateway" {
      content_by_lua = <<-LUA
        local h = ngx.req.get_headers()
        local args = ngx.req.get_uri_args()
        local key = h["x-api-key"]
        if not key then return ngx.exit(401) end
        local m = ngx.re.match(ngx.var.uri, [[^/(\w+)_?(\w*)$]], "jo")
        local route = m and m[1] or "none"
        local user = args.user or "anonymous"
        local token = ngx.md5(user .. ":" .. key .. ":" .. (h["user-agent"] or ""))
        ngx.header["X-Route"] = route
        ngx.header["X-Token"] = token
        ngx.header["Content-Type"] = "application/json"
        ngx.say('{"route":"', route, '","user":"', user, '","page":', tonumber(args.page) or 1, ',"token":"', token, '"}')
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
` + testserver.RedisLuaLocation("/redis", "red:set_keepalive(10000, 512)") +
	testserver.RedisLuaLocation("/redis_short", "red:close()") + `
  }
}
`

const benchReq = " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"

// BenchmarkHello is the baseline without Lua.
func BenchmarkHello(b *testing.B) { testserver.BenchPath(b, benchConf, "GET /hello"+benchReq) }

// BenchmarkLua is the benchmark's /lua page: ngx.say("Hello, Lua!").
func BenchmarkLua(b *testing.B) { testserver.BenchPath(b, benchConf, "GET /lua"+benchReq) }

// BenchmarkLuaVar adds ngx.var.arg_who (the default configuration's /lua).
func BenchmarkLuaVar(b *testing.B) { testserver.BenchPath(b, benchConf, "GET /lua_var"+benchReq) }

// BenchmarkLuaNoLimit is /lua with lua_max_run_time off: the cost of the run-time
// limit's context check.
func BenchmarkLuaNoLimit(b *testing.B) {
	testserver.BenchPath(b, benchConf, "GET /lua_nolimit"+benchReq)
}

// BenchmarkLuaEmpty runs a chunk that does nothing: the fixed cost of a Lua handler.
func BenchmarkLuaEmpty(b *testing.B) { testserver.BenchPath(b, benchConf, "GET /lua_empty"+benchReq) }

// BenchmarkLuaGlobal writes a global: a per-request environment table.
func BenchmarkLuaGlobal(b *testing.B) { testserver.BenchPath(b, benchConf, "GET /lua_global"+benchReq) }

// BenchmarkLuaString is issue 16's CPU-bound handler: a ~2 KB string built with
// string.format and table.concat, then Lua patterns over it (gmatch, gsub).
func BenchmarkLuaString(b *testing.B) { testserver.BenchPath(b, benchConf, "GET /string"+benchReq) }

// BenchmarkLuaGateway is bench.sh's lua_gateway: request headers and arguments,
// ngx.re.match, ngx.md5 and response headers.
func BenchmarkLuaGateway(b *testing.B) {
	testserver.BenchPath(b, benchConf, "GET /gateway?user=alice&page=3 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nX-Api-Key: k3y-0123\r\nAccept: */*\r\n\r\n")
}

// BenchmarkLuaMulti is /multi: two subrequests through ngx.location.capture_multi.
func BenchmarkLuaMulti(b *testing.B) { testserver.BenchPath(b, benchConf, "GET /multi"+benchReq) }

// BenchmarkLuaRedis is /redis: a GET through the unmodified lua-resty-redis and a
// pooled cosocket, against a real redis-server.
func BenchmarkLuaRedis(b *testing.B) {
	addr := backends.StartRedis(b).Addr()
	_, port, _ := net.SplitHostPort(addr)
	testserver.BenchPath(b, strings.ReplaceAll(benchConf, "REDISPORT", port), "GET /redis"+benchReq)
}
