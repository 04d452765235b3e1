package backendtest_test

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
)

const redisUpstream = `
  upstream "rd" {
    type         = "redis"
    servers      = ["{RD}"]
    keepalive    = 4
    read_timeout = "2s"
  }
  upstream "mc" {
    type    = "memcached"
    servers = ["127.0.0.1:11211"]
  }`

// show prints a call's results with their types: tables as [..], error pairs as
// {false,msg}, ngx.null as null.
const showLua = `
  local function fmt(v)
    if v == ngx.null then return "null" end
    if type(v) == "table" then
      local parts = {}
      for k = 1, #v do
        local e = v[k]
        if type(e) == "table" and e[1] == false then
          parts[k] = "{false," .. tostring(e[2]) .. "}"
        else
          parts[k] = fmt(e)
        end
      end
      return "[" .. table.concat(parts, " ") .. "]"
    end
    return type(v) .. ":" .. tostring(v)
  end
  function show(label, ...)
    local out = {}
    for i = 1, select("#", ...) do out[i] = fmt((select(i, ...))) end
    ngx.say(label, " ", table.concat(out, " "))
  end
`

// Every kind of reply, converted as lua-resty-redis converts it.
func TestRedisReplies(t *testing.T) {
	rd := backends.StartRedis(t)
	s := serve(t, redisUpstream+"\n  init_by_lua = <<-LUA\n"+showLua+"\n  LUA\n", `
    location "= /replies" {
      content_by_lua = <<-LUA
        local red = spindle.redis("rd")
        red:del("k", "n", "list", "h", "bin", "empty")
        show("set", red:set("k", "v"))
        show("get", red:get("k"))
        show("missing", red:get("nosuchkey"))
        show("incr", red:incr("n"))
        show("incrby", red:incrby("n", 41))
        show("incr error", red:incr("k"))
        show("ping", red:ping())
        show("unknown", red:command("nosuchcommand", "x"))
        show("command", red:command("GET", "k"))
        show("upper case", red:GET("k"))
        show("rpush", red:rpush("list", "a", "b", "c"))
        show("lrange", red:lrange("list", 0, -1))
        show("empty array", red:lrange("nolist", 0, -1))
        show("hmset table", red:hmset("h", { f = "1" }))
        show("hmset args", red:hmset("h", "g", "2"))
        show("hget", red:hget("h", "f"))
        show("hmget", red:hmget("h", "f", "nofield", "g"))
        show("nested", red:eval("return {1, {'a', {'b'}}, false}", 0))
        show("error element", red:eval("return {1, redis.error_reply('MINE oops')}", 0))
        show("status", red:eval("return redis.status_reply('FINE')", 0))
        show("number arg", red:set("n", 2.5), red:get("n"))
        show("integer arg", red:set("n", 1e15), red:get("n"))
        show("negative arg", red:set("n", -7), red:get("n"))
        show("boolean arg", red:set("n", true), red:get("n"))
        show("binary", red:set("bin", "a\r\nb\0c"), #red:get("bin"), red:get("bin") == "a\r\nb\0c")
        show("empty", red:set("empty", ""), red:get("empty") == "")
        show("tostring", tostring(red))
        local h = red:array_to_hash(red:hgetall("h"))
        show("array_to_hash", h.f, h.g)
        show("keepalive, close", red:set_keepalive(10000, 100), red:close())
      LUA
    }
`, "{RD}", rd.Addr())
	check(t, s.Get("/replies"), 200, `set string:OK
get string:v
missing null
incr number:1
incrby number:42
incr error boolean:false string:ERR value is not an integer or out of range
ping string:PONG
unknown boolean:false string:ERR unknown command 'nosuchcommand', with args beginning with: 'x' 
command string:v
upper case string:v
rpush number:3
lrange [string:a string:b string:c]
empty array []
hmset table string:OK
hmset args string:OK
hget string:1
hmget [string:1 null string:2]
nested [number:1 [string:a [string:b]] null]
error element [number:1 {false,MINE oops}]
status string:FINE
number arg string:OK string:2.5
integer arg string:OK string:1000000000000000
negative arg string:OK string:-7
boolean arg string:OK string:true
binary string:OK number:6 boolean:true
empty string:OK boolean:true
tostring string:spindle.redis("rd")
array_to_hash string:1 string:2
keepalive, close number:1 number:1
`)
	noErrors(t, s)
}

// Mistakes in Lua code raise errors that say what is wrong; a name that is not a
// redis upstream gives nil and an error.
func TestRedisUsageErrors(t *testing.T) {
	rd := backends.StartRedis(t)
	s := serve(t, redisUpstream, `
    location "= /errors" {
      content_by_lua = <<-LUA
        local red = spindle.redis("rd")
        ngx.say(select(2, pcall(red.get, red, {})))
        ngx.say(select(2, pcall(red.get, red, nil)))
        ngx.say(select(2, pcall(red.get, "notred", "k")))
        ngx.say(select(2, pcall(red.connect, red, "127.0.0.1", 6379)))
        ngx.say(select(2, pcall(red.command, red)))
        ngx.say(select(2, pcall(spindle.redis)))
        ngx.say(spindle.redis("mc"))
        ngx.say(getmetatable(red))
      LUA
    }
`, "{RD}", rd.Addr())
	check(t, s.Get("/errors"), 200, `content_by_lua(spindle.hcl:17):2: bad argument #1 to 'get' (string, number or boolean expected, got table)
content_by_lua(spindle.hcl:17):3: bad argument #1 to 'get' (string, number or boolean expected, got nil)
content_by_lua(spindle.hcl:17):4: spindle.redis: call methods with a colon (red:get(k), not red.get(k))
content_by_lua(spindle.hcl:17):5: spindle.redis: connect is not needed: the object uses the pools of its upstream
content_by_lua(spindle.hcl:17):6: bad argument #1 to 'command' (command name expected)
content_by_lua(spindle.hcl:17):7: bad argument #1 to 'spindle.redis' (upstream name expected, got no value)
nilupstream "mc" is of type memcached, not redis
spindle.redis
`)
}

// Pipelines: lua-resty-redis's init_pipeline/commit_pipeline, and red:pipeline(cmds);
// error replies as {false, err} elements.
func TestRedisPipelines(t *testing.T) {
	rd := backends.StartRedis(t)
	s := serve(t, redisUpstream+"\n  init_by_lua = <<-LUA\n"+showLua+"\n  LUA\n", `
    location "= /pipe" {
      content_by_lua = <<-LUA
        local red = spindle.redis("rd")
        red:del("cat", "horse", "n")
        red:init_pipeline()
        show("queued", red:set("cat", "Marry"))
        red:set("horse", "Bob")
        red:get("cat")
        red:get("horse")
        red:get("nosuchkey")
        red:incr("cat")
        red:hmset("h", { a = "1" })
        show("commit", red:commit_pipeline())
        show("commit again", red:commit_pipeline())
        red:init_pipeline(2)
        red:set("cat", "x")
        red:cancel_pipeline()
        show("cancelled", red:get("cat"))
        show("table", red:pipeline({ {"incr", "n"}, {"incrby", "n", 2}, {"get", "n"}, {"lpush", "n", "x"}, {"hmset", "h", { b = "2" }} }))
        show("empty", red:pipeline({}))
        show("nil array", red:pipeline({ {"blpop", "nolist", "0.01"} }))
        red:init_pipeline()
        show("empty commit", red:commit_pipeline())
        show("bad", pcall(red.pipeline, red, { "get" }))
      LUA
    }
`, "{RD}", rd.Addr())
	check(t, s.Get("/pipe"), 200, `queued 
commit [string:OK string:OK string:Marry string:Bob null {false,ERR value is not an integer or out of range} string:OK]
commit again nil:nil string:no pipeline
cancelled string:Marry
table [number:1 number:3 string:3 {false,WRONGTYPE Operation against a key holding the wrong kind of value} string:OK]
empty []
nil array [null]
empty commit []
bad boolean:false string:content_by_lua(spindle.hcl:43):22: bad argument #1 to 'pipeline' (commands expected as arrays: { {"get", "a"}, {"set", "b", 1} })
`)
	noErrors(t, s)
}

// MULTI ... EXEC outside a pipeline works as with lua-resty-redis: the commands are
// gathered and sent in one pipeline at EXEC, so that other requests' commands cannot
// land inside the transaction on the shared connection.
func TestRedisTransactions(t *testing.T) {
	rd := backends.StartRedis(t)
	s := serve(t, redisUpstream+"\n  init_by_lua = <<-LUA\n"+showLua+"\n  LUA\n", `
    location "= /tx" {
      content_by_lua = <<-LUA
        local red = spindle.redis("rd")
        red:del("a", "b")
        show("multi", red:multi())
        show("set", red:set("a", "1"))
        show("incr", red:incr("b"))
        show("nested", red:multi())
        show("exec", red:exec())
        show("exec again", red:exec())
        show("discard alone", red:discard())
        red:multi()
        red:set("a", "discarded")
        show("discard", red:discard())
        show("a", red:get("a"))
        red:multi()
        red:set("a")
        show("aborted", red:exec())
        red:multi()
        red:incr("a")
        red:lpush("a", "x")
        show("runtime error", red:exec())
        -- In a pipeline MULTI and EXEC are commands like the others.
        red:init_pipeline()
        red:multi()
        red:incr("b")
        red:exec()
        show("pipelined", red:commit_pipeline())
        show("open multi", pcall(red.pipeline, red, { {"multi"}, {"incr", "b"} }))
      LUA
    }
`, "{RD}", rd.Addr())
	check(t, s.Get("/tx"), 200, `multi string:OK
set string:QUEUED
incr string:QUEUED
nested boolean:false string:ERR MULTI calls can not be nested
exec [string:OK number:1]
exec again boolean:false string:ERR EXEC without MULTI
discard alone boolean:false string:ERR DISCARD without MULTI
discard string:OK
a string:1
aborted boolean:false string:EXECABORT Transaction discarded because of previous errors.
runtime error [number:2 {false,WRONGTYPE Operation against a key holding the wrong kind of value}]
pipelined [string:OK string:QUEUED [number:2]]
open multi boolean:false string:content_by_lua(spindle.hcl:43):27: spindle.redis: a pipeline with MULTI must end the transaction with EXEC or DISCARD
`)
}

// Commands that would change the state of pooled connections are refused with a
// Lua error.
func TestRedisRefusedCommands(t *testing.T) {
	rd := backends.StartRedis(t)
	s := serve(t, redisUpstream, `
    location "= /refused" {
      content_by_lua = <<-LUA
        local red = spindle.redis("rd")
        local function try(f, ...)
          local ok, err = pcall(f, red, ...)
          ngx.say(ok, " ", (tostring(err):gsub("^.-:%d+: ", "")))
        end
        try(red.subscribe, "ch")
        try(red.select, 1)
        try(red.watch, "k")
        try(red.client, "REPLY", "OFF")
        try(red.command, "SUBSCRIBE", "ch")
        try(red.pipeline, { {"psubscribe", "x"} })
        try(red.pipeline, { {"client", "reply", "off"} })
        red:init_pipeline()
        try(red.monitor)
        red:cancel_pipeline()
        red:rpush("list", "item")
        local res = red:pipeline({ {"blpop", "list", 1} })
        ngx.say("blpop in a pipeline: ", res[1][1], " ", res[1][2])
        ngx.say("xread: ", tostring(red:xread("STREAMS", "nostream", "0")))
        ngx.say("client id: ", type(red:client("id")))
      LUA
    }
`, "{RD}", rd.Addr())
	check(t, s.Get("/refused"), 200, `false spindle.redis: subscribe needs a connection of its own (pub/sub, replication): use a cosocket (lua-resty-redis) for it
false spindle.redis: select would change the state of a pooled connection: the upstream's db, username and password settings choose them
false spindle.redis: watch needs a connection of its own (WATCH): use a cosocket (lua-resty-redis) for it
false spindle.redis: CLIENT REPLY would desynchronise a pooled connection
false spindle.redis: SUBSCRIBE needs a connection of its own (pub/sub, replication): use a cosocket (lua-resty-redis) for it
false spindle.redis: psubscribe needs a connection of its own (pub/sub, replication): use a cosocket (lua-resty-redis) for it
false spindle.redis: CLIENT REPLY would desynchronise a pooled connection
false spindle.redis: monitor needs a connection of its own (pub/sub, replication): use a cosocket (lua-resty-redis) for it
blpop in a pipeline: list item
xread: null
client id: number
`)
}

// The phases that must not block refuse the calls with ngx_lua's error, as they
// refuse cosockets; the others (and timers, and light threads) may use them.
func TestRedisPhases(t *testing.T) {
	rd := backends.StartRedis(t)
	s := serve(t, redisUpstream+`
  init_by_lua = <<-LUA
    local red = spindle.redis("rd")
    init_err = select(2, pcall(red.get, red, "k"))
  LUA
  init_worker_by_lua = <<-LUA
    local red = spindle.redis("rd")
    init_worker_err = select(2, pcall(red.get, red, "k"))
    ngx.timer.at(0, function(premature)
      local red = spindle.redis("rd")
      red:set("from_init_worker_timer", "yes")
    end)
  LUA`, `
    location "= /phases" {
      set_by_lua "set_err" {
        code = "local red = spindle.redis('rd'); return select(2, pcall(red.get, red, 'k'))"
      }
      rewrite_by_lua = "ngx.ctx.rewrite = spindle.redis('rd'):get('k')"
      access_by_lua = "ngx.ctx.access = spindle.redis('rd'):get('k')"
      header_filter_by_lua = <<-LUA
        local red = spindle.redis("rd")
        ngx.header["X-Err"] = select(2, pcall(red.get, red, "k"))
        -- Queuing a pipeline does no I/O: allowed anywhere.
        red:init_pipeline()
        red:get("k")
        red:cancel_pipeline()
      LUA
      body_filter_by_lua = <<-LUA
        if ngx.arg[2] then
          local red = spindle.redis("rd")
          ngx.arg[1] = (ngx.arg[1] or "") .. "body_filter: " .. select(2, pcall(red.get, red, "k")) .. "\n"
        end
      LUA
      log_by_lua = <<-LUA
        local red = spindle.redis("rd")
        ngx.log(ngx.WARN, "log phase: ", select(2, pcall(red.get, red, "k")))
      LUA
      content_by_lua = <<-LUA
        ngx.say("init: ", init_err)
        ngx.say("init_worker: ", init_worker_err)
        ngx.say("set: ", ngx.var.set_err)
        ngx.say("rewrite: ", ngx.ctx.rewrite, ", access: ", ngx.ctx.access, ", content: ", spindle.redis("rd"):get("k"))
      LUA
    }
`, "{RD}", rd.Addr())
	if _, err := rd.Cmd("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	r := s.Get("/phases")
	check(t, r, 200, `init: init_by_lua(spindle.hcl:13):2: API disabled in the context of init_by_lua*
init_worker: init_worker_by_lua(spindle.hcl:17):2: API disabled in the context of init_worker_by_lua*
set: set_by_lua(spindle.hcl:30):1: API disabled in the context of set_by_lua*
rewrite: v, access: v, content: v
body_filter: body_filter_by_lua(spindle.hcl:42):3: API disabled in the context of body_filter_by_lua*
`)
	if got := r.Header.Get("X-Err"); !strings.HasSuffix(got, "API disabled in the context of header_filter_by_lua*") {
		t.Errorf("header filter: %q", got)
	}
	checkLog(t, s, "log phase: log_by_lua(spindle.hcl:48):2: API disabled in the context of log_by_lua*")
	waitRedis(t, rd, "from_init_worker_timer", "yes")
}

// waitRedis waits until key holds want.
func waitRedis(t *testing.T, rd *backends.Process, key, want string) {
	t.Helper()
	var v string
	var err error
	if !e2e.WaitFor(5*time.Second, func() bool { v, err = rd.Cmd("GET", key); return err == nil && v == want }) {
		t.Fatalf("redis %s: %q %v, want %q", key, v, err, want)
	}
}

// Timers and light threads use the fast path as request handlers do; threads of
// one request run their commands concurrently. Blocking commands (BLPOP) hold a
// pooled connection of their own, not the one the worker's requests share.
func TestRedisTimersAndThreads(t *testing.T) {
	rd := backends.StartRedis(t)
	s := serve(t, redisUpstream, `
    location "= /timer" {
      content_by_lua = <<-LUA
        local ok, err = ngx.timer.at(0, function(premature, key)
          local red = spindle.redis("rd")
          local v, err = red:incr(key)
          red:set(key .. ":done", v and "incr " .. v or err)
        end, "timer:" .. ngx.var.arg_n)
        ngx.say(ok, err)
      LUA
    }
    location "= /threads" {
      content_by_lua = <<-LUA
        local red = spindle.redis("rd")
        local start = ngx.now()
        local threads = {}
        for i = 1, 3 do
          threads[i] = ngx.thread.spawn(function()
            if i == 3 then
              return spindle.redis("rd"):pipeline({ {"blpop", "nolist:" .. i, "0.3"} })[1]
            end
            return spindle.redis("rd"):blpop("nolist:" .. i, "0.3")
          end)
        end
        ngx.sleep(0.05)
        local t0 = ngx.now()
        local main = red:ping()
        local ping_took = ngx.now() - t0
        -- In a coroutine and under pcall, as with cosockets.
        local co = coroutine.wrap(function() return select(2, pcall(red.echo, red, "in a coroutine")) end)
        ngx.say(co())
        for i = 1, 3 do
          local ok, res = ngx.thread.wait(threads[i])
          ngx.say("thread ", i, ": ", ok, " ", res == ngx.null)
        end
        ngx.say("main: ", main, " ", ping_took < 0.2)
        local took = ngx.now() - start
        ngx.say("concurrent: ", took < 0.85, took >= 0.29)
      LUA
    }
`, "{RD}", rd.Addr())
	check(t, s.Get("/timer?n=1"), 200, "1nil\n")
	waitRedis(t, rd, "timer:1:done", "incr 1")
	check(t, s.Get("/threads"), 200, "in a coroutine\nthread 1: true true\nthread 2: true true\nthread 3: true true\nmain: PONG true\nconcurrent: truetrue\n")
	noErrors(t, s)
}

// A backend that is gone gives nil, "connection refused" at once; a hung one nil,
// "timeout" within the upstream's read_timeout (or the object's set_timeout); the
// worker serves other requests meanwhile and the pool recovers.
func TestRedisBackendDown(t *testing.T) {
	rd := backends.StartRedis(t)
	s := serve(t, `
  upstream "rd" {
    type            = "redis"
    servers         = ["{RD}"]
    keepalive       = 4
    connect_timeout = "500ms"
    read_timeout    = "500ms"
  }`, `
    location "= /get" {
      content_by_lua = <<-LUA
        local red = spindle.redis("rd")
        if ngx.var.arg_timeout then red:set_timeout(tonumber(ngx.var.arg_timeout)) end
        local res, err
        if ngx.var.arg_pipeline then
          res, err = red:pipeline({ {"get", "k"}, {"get", "k"} })
          if res then res = res[1] end
        else
          res, err = red:get("k")
        end
        ngx.say(tostring(res), " ", tostring(err))
      LUA
    }
    location "= /other" {
      content_by_lua = "ngx.say('other')"
    }
`, "{RD}", rd.Addr())
	if _, err := rd.Cmd("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	check(t, s.Get("/get"), 200, "v nil\n")
	check(t, s.Get("/get?pipeline=1"), 200, "v nil\n")

	// Hung: SIGSTOPped, its socket still accepting.
	rd.Pause()
	for _, c := range []struct {
		query string
		max   time.Duration
	}{
		{"", 1500 * time.Millisecond},
		{"?pipeline=1", 1500 * time.Millisecond},
		{"?timeout=100", 450 * time.Millisecond},
	} {
		start := time.Now()
		done := make(chan *testserver.Response, 1)
		go func() { done <- getResp(s, "/get"+c.query) }()
		// /other runs while /get waits on redis.
		if !e2e.WaitFor(time.Second, func() bool { return s.Engine.Counters()["writing"] >= 1 }) {
			t.Errorf("/get%s not in flight: %v", c.query, s.Engine.Counters())
		}
		if r := getResp(s, "/other"); r == nil || r.Body != "other\n" {
			t.Errorf("another request while redis hangs: %+v", r)
		}
		r := <-done
		took := time.Since(start)
		if r == nil || r.Status != 200 || r.Body != "nil timeout\n" {
			t.Errorf("/get%s with redis hung: %+v", c.query, r)
		}
		if took > c.max {
			t.Errorf("/get%s with redis hung took %v, want at most %v", c.query, took, c.max)
		}
	}
	rd.Resume()
	waitBody(t, s, "/get", "v nil\n")
	checkLog(t, s, `spindle.redis("rd") get failed: `, `spindle.redis("rd") pipeline failed: `, "i/o timeout")

	// Gone: connections refused.
	rd.Stop()
	for _, q := range []string{"", "?pipeline=1"} {
		start := time.Now()
		check(t, s.Get("/get"+q), 200, "nil connection refused\n")
		if took := time.Since(start); took > time.Second {
			t.Errorf("/get%s with redis stopped took %v", q, took)
		}
	}
	checkLog(t, s, "connection refused (upstream "+rd.Addr()+")")
	rd.Start()
	if _, err := rd.Cmd("SET", "k", "back"); err != nil {
		t.Fatal(err)
	}
	waitBody(t, s, "/get", "back nil\n")
	waitBody(t, s, "/get?pipeline=1", "back nil\n")
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// getResp is s.Get for other goroutines than the test's: nil on failure.
func getResp(s *testserver.Server, path string) *testserver.Response {
	resp, err := httpClient.Get(s.URL(path))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil
	}
	return &testserver.Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// waitBody waits until path answers body (a backend coming back).
func waitBody(t *testing.T, s *testserver.Server, path, body string) {
	t.Helper()
	var r *testserver.Response
	if !e2e.WaitFor(5*time.Second, func() bool { r = getResp(s, path); return r != nil && r.Body == body }) {
		t.Fatalf("%s: %+v, want %q", path, r, body)
	}
}

// Many requests at once share the upstream's pools with the redis module's
// locations: redis sees no more connections than keepalive, and every request gets
// its own answers.
func TestRedisConcurrentSharedPool(t *testing.T) {
	rd := backends.StartRedis(t)
	s := serve(t, redisUpstream, `
    location "= /count" {
      content_by_lua = <<-LUA
        local red = spindle.redis("rd")
        local key = "count:" .. ngx.var.arg_c
        local n, err = red:incr(key)
        if not n then ngx.status = 502; ngx.say(err); return end
        local v = red:get(key)
        local res = red:pipeline({ {"get", key}, {"ping"} })
        red:multi(); red:get(key); local tx = red:exec()
        ngx.say(n, " ", v, " ", res[1], " ", res[2], " ", tx[1])
      LUA
    }
    location "= /module" {
      redis_pass  = "rd"
      redis_query = ["incr", "module"]
      redis_reply = "value"
    }
`, "{RD}", rd.Addr())
	const clients, each = 48, 30
	var bad atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	maxConns := make(chan int, 1)
	go func() {
		seen := 0
		for {
			if n, err := rd.RedisClients(); err == nil && n > seen {
				seen = n
			}
			select {
			case <-stop:
				maxConns <- seen
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 1; i <= each; i++ {
				want := fmt.Sprintf("%d %d %d PONG %d\n", i, i, i, i)
				if r := getResp(s, "/count?c="+strconv.Itoa(c)); r == nil || r.Status != 200 || r.Body != want {
					if bad.Add(1) <= 5 {
						t.Errorf("client %d request %d: %+v, want %q", c, i, r, want)
					}
				}
				if i%3 == 0 {
					if r := getResp(s, "/module"); r == nil || r.Status != 200 {
						bad.Add(1)
						t.Errorf("redis_pass location: %+v", r)
					}
				}
			}
		}(c)
	}
	wg.Wait()
	close(stop)
	m := <-maxConns
	t.Logf("%d clients × %d requests: %d bad, at most %d redis connections", clients, each, bad.Load(), m)
	if m > 4 {
		t.Errorf("redis saw %d connections from the worker, keepalive is 4", m)
	}
	if m < 1 {
		t.Errorf("redis saw no connection during the load")
	}
	if v, _ := rd.Cmd("GET", "module"); v != strconv.Itoa(clients*(each/3)) {
		t.Errorf("module counter: %s", v)
	}
	noErrors(t, s)
}
