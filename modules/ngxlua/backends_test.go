package ngxlua_test

import (
	"net"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/backends"
)

// The compatibility target: Debian's unmodified lua-resty-redis (nginx/redis.lua,
// package lua-nginx-redis) and lua-resty-memcached (nginx/memcached.lua, package
// lua-nginx-memcached) against real redis-server and memcached processes, in the
// spirit of t/061-lua-redis.t, t/060-lua-memcached.t and lua-resty-redis's tests.

const redisConf = `
    location "= /redis" {
      content_by_lua = <<-LUA
        local redis = require "nginx.redis"
        local red = redis:new()
        red:set_timeout(1000)
        local ok, err = red:connect("127.0.0.1", tonumber(ngx.var.arg_port))
        if not ok then
          ngx.say("failed to connect: ", err)
          return
        end
        ngx.say("reused: ", red:get_reused_times())
        ok, err = red:select(1)
        local res, err = red:set("dog", "an animal")
        ngx.say("set dog: ", res)
        ngx.say("dog: ", red:get("dog"))
        ngx.say("cat is null: ", red:get("nosuchkey") == ngx.null)
        local res, err = red:incr("dog")
        ngx.say("incr error: ", tostring(res), " ", err)
        red:del("list")
        red:rpush("list", "a", "b", "c")
        ngx.say("list: ", table.concat(red:lrange("list", 0, -1), ","))
        red:hmset("h", { f1 = "v1", f2 = "v2" })
        ngx.say("hash: ", red:hget("h", "f2"))

        red:init_pipeline()
        red:set("cat", "Marry")
        red:set("horse", "Bob")
        red:get("cat")
        red:get("horse")
        local results, err = red:commit_pipeline()
        ngx.say("pipeline: ", table.concat(results, ","))

        local ok, err = red:set_keepalive(10000, 100)
        ngx.say("keepalive: ", ok, " ", tostring(err))
      LUA
    }
    location "= /redis_pcall" {
      content_by_lua = <<-LUA
        local redis = require "nginx.redis"
        local red = redis:new()
        red:set_timeout(1000)
        assert(red:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        -- I/O inside pcall: a blocking call, not a coroutine yield.
        local ok, res = pcall(red.get, red, "dog")
        ngx.say("pcall get: ", ok, " ", res)
        local t1 = ngx.thread.spawn(function() return red:ping() end)
        ngx.say("thread: ", select(2, ngx.thread.wait(t1)))
        red:set_keepalive(10000, 100)
      LUA
    }
    location "= /redis_mock" {
      content_by_lua = <<-LUA
        local redis = require "nginx.redis"
        local red = redis:new()
        red:set_timeout(100)
        assert(red:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
        local res, err = red:get("foo")
        ngx.say("failed to get: ", err)
        res, err = red:get("foo")
        ngx.say("failed to get: ", err)
      LUA
    }
    location "= /memc" {
      content_by_lua = <<-LUA
        local memcached = require "nginx.memcached"
        local memc, err = memcached:new()
        memc:set_timeout(1000)
        local ok, err = memc:connect("127.0.0.1", tonumber(ngx.var.arg_port))
        if not ok then
          ngx.say("failed to connect: ", err)
          return
        end
        ngx.say("reused: ", memc:get_reused_times())
        ngx.say("set: ", memc:set("dog", 32))
        local res, flags, err = memc:get("dog")
        ngx.say("dog: ", res, " flags: ", flags)
        memc:set("key with space", "escaped", 0, 7)
        local res, flags = memc:get("key with space")
        ngx.say("escaped: ", res, " flags: ", flags)
        ngx.say("missing: ", tostring(memc:get("nothing")))
        memc:add("n", 10)
        ngx.say("incr: ", memc:incr("n", 5))
        local results = memc:get({ "dog", "n" })
        ngx.say("multi: ", results.dog[1], " ", results.n[1])
        ngx.say("delete: ", memc:delete("dog"))
        ngx.say("keepalive: ", memc:set_keepalive(10000, 100))
      LUA
    }
`

func TestRedis(t *testing.T) {
	addr := backends.StartRedis(t).Addr()
	_, port, _ := net.SplitHostPort(addr)
	s := serve(t, "", redisConf)
	body := "set dog: OK\ndog: an animal\ncat is null: true\nincr error: false ERR value is not an integer or out of range\n" +
		"list: a,b,c\nhash: v2\npipeline: OK,OK,Marry,Bob\nkeepalive: 1 nil\n"
	check(t, s.Get("/redis?port="+port), 200, "reused: 0\n"+body)
	// The pooled connection is reused (getreusedtimes > 0).
	check(t, s.Get("/redis?port="+port), 200, "reused: 1\n"+body)
	check(t, s.Get("/redis_pcall?port="+port), 200, "pcall get: true an animal\nthread: PONG\n")
	noErrors(t, s)
	r := s.Get("/redis?port=1")
	if !strings.HasPrefix(r.Body, "failed to connect: connection refused") {
		t.Errorf("connect to a closed port: %q", r.Body)
	}
	checkLog(t, s, "lua tcp socket connect() to 127.0.0.1:1 failed: connection refused")
}

// As lua-resty-redis's t/mock.t: a reply later than the timeout gives "timeout", and
// the library closes the connection.
func TestRedisTimeout(t *testing.T) {
	srv := startTCP(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		buf := make([]byte, 1024)
		c.Read(buf)
		c.Read(buf) // returns when the client, timed out, closes the connection
		c.Write([]byte("$5\r\nhello\r\n"))
	})
	s := serve(t, "", redisConf)
	check(t, s.Get("/redis_mock?port="+srv.port()), 200, "failed to get: timeout\nfailed to get: closed\n")
	checkLog(t, s, "lua tcp socket read timed out")
}

func TestMemcached(t *testing.T) {
	addr := backends.StartMemcached(t).Addr()
	_, port, _ := net.SplitHostPort(addr)
	s := serve(t, "", redisConf)
	body := "set: 1\ndog: 32 flags: 0\nescaped: escaped flags: 7\nmissing: nil\nincr: 15\nmulti: 32 15\ndelete: 1\nkeepalive: 1\n"
	check(t, s.Get("/memc?port="+port), 200, "reused: 0\n"+body)
	check(t, s.Get("/memc?port="+port), 200, "reused: 1\n"+strings.NewReplacer("incr: 15", "incr: 20", "multi: 32 15", "multi: 32 20").Replace(body))
	noErrors(t, s)
}
