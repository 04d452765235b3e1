package backendtest_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
)

const memcUpstream = `
  upstream "mc" {
    type         = "memcached"
    servers      = ["{MC}"]
    keepalive    = 4
    read_timeout = "2s"
  }
  upstream "rd" {
    type    = "redis"
    servers = ["127.0.0.1:1"]
  }`

// Every method, with lua-resty-memcached's results.
func TestMemcachedMethods(t *testing.T) {
	mc := backends.StartMemcached(t)
	s := serve(t, memcUpstream+"\n  init_by_lua = <<-LUA\n"+showLua+"\n  LUA\n", `
    location "= /mc" {
      content_by_lua = <<-LUA
        local mc = spindle.memcached("mc")
        show("same object", mc == spindle.memcached("mc"))
        show("flush_all", mc:flush_all())
        show("set", mc:set("dog", 32))
        show("get", mc:get("dog"))
        show("flags", mc:set("cat", "meow", 0, 7), mc:get("cat"))
        show("table value", mc:set("t", { "a", { "b", 1 }, "c" }), mc:get("t"))
        show("missing", mc:get("nothing"))
        show("add existing", mc:add("dog", "x"))
        show("add new", mc:add("bird", "tweet", 0, 3), mc:get("bird"))
        show("replace missing", mc:replace("nothing", "x"))
        show("replace", mc:replace("bird", "chirp"), mc:get("bird"))
        show("append", mc:append("bird", "!"), mc:get("bird"))
        show("prepend", mc:prepend("bird", "a "), mc:get("bird"))
        show("append missing", mc:append("nothing", "x"))
        show("incr", mc:incr("dog", 10))
        show("decr", mc:decr("dog", "2"))
        show("decr floor", mc:decr("dog", 1000))
        show("incr missing", mc:incr("nothing", 1))
        show("incr text", mc:incr("cat", 1))
        show("touch", mc:touch("dog", 100))
        show("touch missing", mc:touch("nothing", 100))
        show("delete", mc:delete("dog"), mc:get("dog"))
        show("delete missing", mc:delete("dog"))
        show("key with space", mc:set("a key", "spaced"), mc:get("a key"))
        show("long key", mc:set(string.rep("k", 300), "x"))
        show("empty value", mc:set("e", ""), mc:get("e"))
        show("numeric key", mc:set(42, "answer"), mc:get(42))
        local res = mc:get({ "cat", "bird", "nothing", "a key" })
        show("multi get", res.cat, res.bird, res.nothing, res["a key"])
        show("version", type(mc:version()))
        local stats = mc:stats()
        show("stats", #stats > 10, stats[1]:sub(1, 9))
        show("stats args", #mc:stats("settings") > 10)
        show("expired", mc:set("short", "x", 1))
        show("compat", mc:set_timeout(100), mc:set_keepalive(1000, 10), mc:close())
        show("tostring", tostring(mc))
      LUA
    }
    location "= /expired" {
      content_by_lua = "ngx.say(tostring(spindle.memcached('mc'):get('short')))"
    }
    location "= /errors" {
      content_by_lua = <<-LUA
        local mc = spindle.memcached("mc")
        ngx.say(select(2, pcall(mc.get, mc, nil)))
        ngx.say(select(2, pcall(mc.set, mc, "k", true)))
        ngx.say(select(2, pcall(mc.set, mc, "k", "v", "soon")))
        ngx.say(select(2, pcall(mc.incr, mc, "k", -1)))
        ngx.say(select(2, pcall(mc.get, "notmc", "k")))
        ngx.say(select(2, pcall(mc.connect, mc, "127.0.0.1", 11211)))
        ngx.say(select(2, pcall(spindle.memcached, "")))
        ngx.say(spindle.memcached("rd"))
      LUA
    }
`, "{MC}", mc.Addr())
	check(t, s.Get("/mc"), 200, `same object boolean:true
flush_all number:1
set number:1
get string:32 number:0
flags number:1 string:meow number:7
table value number:1 string:ab1c number:0
missing nil:nil nil:nil nil:nil
add existing nil:nil string:NOT_STORED
add new number:1 string:tweet number:3
replace missing nil:nil string:NOT_STORED
replace number:1 string:chirp number:0
append number:1 string:chirp! number:0
prepend number:1 string:a chirp! number:0
append missing nil:nil string:NOT_STORED
incr number:42
decr number:40
decr floor number:0
incr missing nil:nil string:NOT_FOUND
incr text nil:nil string:CLIENT_ERROR cannot increment or decrement non-numeric value
touch number:1
touch missing nil:nil string:NOT_FOUND
delete number:1 nil:nil nil:nil nil:nil
delete missing nil:nil string:NOT_FOUND
key with space number:1 string:spaced number:0
long key nil:nil string:CLIENT_ERROR bad command line format
empty value number:1 string: number:0
numeric key number:1 string:answer number:0
multi get [string:meow number:7] [string:a chirp! number:0] nil:nil [string:spaced number:0]
version string:string
stats boolean:true string:STAT pid 
stats args boolean:true
expired number:1
compat number:1 number:1 number:1
tostring string:spindle.memcached("mc")
`)
	// memcached stored the escaped key, as memc_pass locations do.
	if raw, err := backends.Memcached(mc.Addr(), "get a%20key"); err != nil || !strings.Contains(raw, "spaced") {
		t.Errorf("escaped key: %q %v", raw, err)
	}
	// memcached counts expiry in whole seconds: wait for the key's to pass.
	var r *testserver.Response
	e2e.WaitFor(5*time.Second, func() bool { r = s.Get("/expired"); return r.Body == "nil\n" })
	check(t, r, 200, "nil\n")
	check(t, s.Get("/errors"), 200, `content_by_lua(spindle.hcl:87):2: bad argument #1 to 'get' (key expected (string or number), got nil)
content_by_lua(spindle.hcl:87):3: bad argument #2 to 'set' (value expected (string, number or array of them), got boolean)
content_by_lua(spindle.hcl:87):4: bad argument #3 to 'set' (exptime expected (integer))
content_by_lua(spindle.hcl:87):5: bad argument #2 to 'incr' (delta expected (a non-negative integer))
content_by_lua(spindle.hcl:87):6: spindle.memcached: call methods with a colon (mc:get(k), not mc.get(k))
content_by_lua(spindle.hcl:87):7: spindle.memcached: connect is not needed: the object uses the pools of its upstream
content_by_lua(spindle.hcl:87):8: bad argument #1 to 'spindle.memcached' (upstream name expected, got an empty string)
nilupstream "rd" is of type redis, not memcached
`)
	noErrors(t, s)
}

// A memcached that is gone or hung: nil and "connection refused" or "timeout" within
// the upstream's timeouts, logged; the pool recovers. Phases that must not block
// refuse the calls; timers may make them.
func TestMemcachedFaultsPhasesTimers(t *testing.T) {
	mc := backends.StartMemcached(t)
	s := serve(t, `
  upstream "mc" {
    type            = "memcached"
    servers         = ["{MC}"]
    keepalive       = 4
    connect_timeout = "500ms"
    read_timeout    = "500ms"
  }`, `
    location "= /get" {
      content_by_lua = <<-LUA
        local v, flags, err = spindle.memcached("mc"):get("k")
        ngx.say(tostring(v), " ", tostring(flags), " ", tostring(err))
        local ok, err = spindle.memcached("mc"):set("k2", "v")
        ngx.say(tostring(ok), " ", tostring(err))
      LUA
    }
    location "= /phases" {
      set_by_lua "set_err" {
        code = "local mc = spindle.memcached('mc'); return select(2, pcall(mc.get, mc, 'k'))"
      }
      header_filter_by_lua = <<-LUA
        local mc = spindle.memcached("mc")
        ngx.header["X-Err"] = select(2, pcall(mc.set, mc, "k", "v"))
      LUA
      content_by_lua = <<-LUA
        ngx.say(ngx.var.set_err)
        ngx.timer.at(0, function()
          local mc = spindle.memcached("mc")
          mc:set("from_timer", mc:get("k") .. " seen by a timer")
        end)
      LUA
    }
`, "{MC}", mc.Addr())
	if _, err := backends.Memcached(mc.Addr(), "set k 5 0 1\r\nv"); err != nil {
		t.Fatal(err)
	}
	check(t, s.Get("/get"), 200, "v 5 nil\n1 nil\n")

	r := s.Get("/phases")
	check(t, r, 200, "set_by_lua(spindle.hcl:23):1: API disabled in the context of set_by_lua*\n")
	if got := r.Header.Get("X-Err"); !strings.HasSuffix(got, "API disabled in the context of header_filter_by_lua*") {
		t.Errorf("header filter: %q", got)
	}
	var raw string
	if !e2e.WaitFor(5*time.Second, func() bool {
		raw, _ = backends.Memcached(mc.Addr(), "get from_timer")
		return strings.Contains(raw, "v seen by a timer")
	}) {
		t.Fatalf("the timer's set: %q", raw)
	}

	mc.Pause()
	start := time.Now()
	done := make(chan *testserver.Response, 1)
	go func() { done <- getResp(s, "/get") }()
	r = <-done
	// Two calls, each bounded by read_timeout.
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Errorf("with memcached hung the calls took %v", took)
	}
	if r == nil || r.Body != "nil nil timeout\nnil timeout\n" {
		t.Errorf("with memcached hung: %+v", r)
	}
	mc.Resume()
	waitBody(t, s, "/get", "v 5 nil\n1 nil\n")

	mc.Stop()
	check(t, s.Get("/get"), 200, "nil nil connection refused\nnil connection refused\n")
	checkLog(t, s, `spindle.memcached("mc") get failed: `, `spindle.memcached("mc") set failed: `, "connection refused")
	mc.Start()
	if _, err := backends.Memcached(mc.Addr(), "set k 6 0 4\r\nback"); err != nil {
		t.Fatal(err)
	}
	waitBody(t, s, "/get", "back 6 nil\n1 nil\n")
}

// Concurrent requests share the memc module's pools: memcached sees no more
// connections than keepalive; Lua and memc_pass find each other's items.
func TestMemcachedConcurrentSharedPool(t *testing.T) {
	mc := backends.StartMemcached(t)
	s := serve(t, memcUpstream, `
    location "= /lua" {
      content_by_lua = <<-LUA
        local mc = spindle.memcached("mc")
        local key = "c:" .. ngx.var.arg_c
        mc:add(key, 0)
        local n, err = mc:incr(key, 1)
        if not n then ngx.status = 502; ngx.say(err); return end
        local v = mc:get(key)
        ngx.say(n, " ", v)
      LUA
    }
    location "= /memc" {
      memc_pass = "mc"
      memc_key  = "${arg.key}"
    }
`, "{MC}", mc.Addr())
	const clients, each = 32, 20
	var bad atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	maxConns := make(chan int, 1)
	go func() {
		seen := 0
		for {
			if n, err := mc.MemcachedConnections(); err == nil && n > seen {
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
				want := strings.Repeat(itoa(i)+" ", 2)
				want = want[:len(want)-1] + "\n"
				if r := getResp(s, "/lua?c="+itoa(c)); r == nil || r.Status != 200 || r.Body != want {
					if bad.Add(1) <= 5 {
						t.Errorf("client %d request %d: %+v, want %q", c, i, r, want)
					}
				}
			}
		}(c)
	}
	wg.Wait()
	close(stop)
	m := <-maxConns
	t.Logf("%d clients × %d requests: %d bad, at most %d memcached connections", clients, each, bad.Load(), m)
	if m > 4 {
		t.Errorf("memcached saw %d connections from the worker, keepalive is 4", m)
	}
	check(t, s.Get("/memc?key=c:3"), 200, itoa(each))
}
