package ngxlua_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
)

// Cases in the spirit of t/077-sleep.t, t/106-timer.t, t/093-uthread-spawn.t,
// t/098-uthread-wait.t, t/034-match.t, t/035-gmatch.t, t/036-sub.t, t/037-gsub.t,
// t/038-match-o.t, t/006-escape.t, t/013-base64.t, t/009-log.t, t/062-count.t.

const miscConf = `
    location "= /sleep" {
      content_by_lua = <<-LUA
        local start = ngx.now()
        ngx.sleep(0.1)
        ngx.say(ngx.now() - start >= 0.09)
      LUA
    }
    location "= /timer" {
      content_by_lua = <<-LUA
        local results = require "results"
        local function handler(premature, a, b)
          results.timer = (premature and "premature" or "on time") .. " " .. a .. b
          local sock = ngx.socket.tcp()
          local ok, err = sock:connect("127.0.0.1", 1)
          results.sock = err
          results.req = select(2, pcall(function() return ngx.var.uri end)):match("no request found")
        end
        local ok, err = ngx.timer.at(0.05, handler, "x", 1)
        ngx.say("created: ", ok, " pending: ", ngx.timer.pending_count())
      LUA
    }
    location "= /timer_result" {
      content_by_lua = <<-LUA
        local results = require "results"
        ngx.say(results.timer, " | ", results.sock, " | ", results.req, " | running: ", ngx.timer.running_count())
      LUA
    }
    location "= /every" {
      content_by_lua = <<-LUA
        local results = require "results"
        results.ticks = 0
        ngx.timer.every(0.02, function() results.ticks = results.ticks + 1 end)
        ngx.sleep(0.15)
        ngx.say(results.ticks >= 3)
        local ok, err = pcall(ngx.timer.every, 0, function() end)
        ngx.say(err:find("delay cannot be zero") ~= nil)
      LUA
    }
    location "= /threads" {
      content_by_lua = <<-LUA
        local order = {}
        local function f(name, delay)
          table.insert(order, name .. " start")
          ngx.sleep(delay)
          table.insert(order, name .. " end")
          return name .. " done", delay
        end
        local t1 = ngx.thread.spawn(f, "t1", 0.1)
        local t2 = ngx.thread.spawn(f, "t2", 0.01)
        table.insert(order, "main")
        local ok, res, d = ngx.thread.wait(t1, t2)
        ngx.say("first: ", ok, " ", res, " ", d)
        ok, res = ngx.thread.wait(t1)
        ngx.say("second: ", ok, " ", res)
        ngx.say(table.concat(order, ", "))
        ngx.say(type(t1), " ", tostring(t1):sub(1, 7))
        local _, err = ngx.thread.wait(t1)
        ngx.say("again: ", err)
      LUA
    }
    location "= /thread_error" {
      content_by_lua = <<-LUA
        local t = ngx.thread.spawn(function() error("in thread") end)
        local ok, err = ngx.thread.wait(t)
        ngx.say(ok, " ", err:find("in thread") ~= nil)
      LUA
    }
    location "= /thread_kill" {
      content_by_lua = <<-LUA
        local t = ngx.thread.spawn(function() ngx.sleep(10) ngx.say("not reached") end)
        local start = ngx.now()
        ngx.say("kill: ", ngx.thread.kill(t))
        ngx.say("quick: ", ngx.now() - start < 1)
        ngx.say("again: ", select(2, ngx.thread.kill(t)))
      LUA
    }
    location "= /thread_exit" {
      content_by_lua = <<-LUA
        ngx.thread.spawn(function() ngx.sleep(10) end)
        ngx.thread.spawn(function() ngx.sleep(0.01) ngx.exit(418) end)
        ngx.sleep(10)
        ngx.say("not reached")
      LUA
    }
    location "= /thread_output" {
      body_filter_by_lua = "ngx.arg[1] = ngx.arg[1]"
      content_by_lua = <<-LUA
        local function writer(name)
          for i = 1, 30 do
            ngx.say(name, i)
            ngx.flush(true)
            if i % 10 == 0 then ngx.sleep(0.001) end
          end
        end
        local a = ngx.thread.spawn(writer, "a")
        local b = ngx.thread.spawn(writer, "b")
        ngx.thread.wait(a)
        ngx.thread.wait(b)
      LUA
    }
    location "= /thread_finish" {
      content_by_lua = <<-LUA
        ngx.thread.spawn(function() ngx.sleep(0.05) ngx.say("thread ends after main") end)
        ngx.say("main returns")
      LUA
    }
    location "= /re" {
      content_by_lua = <<-LUA
        local m = ngx.re.match("hello, 1234", "([0-9])([0-9]+)")
        ngx.say(m[0], " ", m[1], " ", m[2])
        m = ngx.re.match("hello", "(?<first>h)(x)?", "i")
        ngx.say(m.first, " ", tostring(m[2]))
        ngx.say(tostring(ngx.re.match("hello", "HELLO")), " ", ngx.re.match("hello", "HELLO", "i")[0])
        local ctx = { pos = 3 }
        m = ngx.re.match("a1b2c3", "[a-z]", "", ctx)
        ngx.say(m[0], " ", ctx.pos)
        ngx.say(tostring(ngx.re.match("xab", "ab", "a")), " ", ngx.re.match("abx", "ab", "a")[0])
        local from, to = ngx.re.find("hello, 1234", "[0-9]+")
        ngx.say(from, " ", to, " ", (ngx.re.find("hello 99", "(\\d)(\\d)", "", nil, 2)))
        local out = {}
        for m in ngx.re.gmatch("a1b22c333", "[a-z](\\d+)") do out[#out + 1] = m[1] end
        ngx.say(table.concat(out, ","))
        ngx.say(ngx.re.sub("hello world", "o", "[$0]"), " ", ngx.re.gsub("hello world", "(o)", "<$${1}>"))
        ngx.say(ngx.re.gsub("a1b2", "\\d", function(m) return m[0] * 2 end), " ", ngx.re.gsub("a b", " ", "$$"))
        ngx.say(ngx.re.match("a b", [[ a \s b  # comment
        ]], "x")[0])
        local m, err = ngx.re.match("x", "(")
        ngx.say(tostring(m), " ", err:find("failed to compile regex") ~= nil)
        ngx.say(ngx.re.match("foobar", "foo(?=bar)")[0], " ", tostring(ngx.re.match("foobaz", "foo(?=bar)")),
          " ", ngx.re.match("/v12", [[(?<=/v)\d+]])[0], " ", ngx.re.match("abab", [[^(ab)\1$]])[1],
          " ", ngx.re.gsub("aaa", "a", "b", "a"), " ", #ngx.re.match("é", "^.$", "u")[0], " ", tostring(ngx.re.match("é", "^.$")))
        local m, err = ngx.re.match(string.rep("a", 100) .. "!", "^(a+)+$")
        ngx.say(tostring(m), " ", err)
      LUA
    }
    location "= /strings" {
      content_by_lua = <<-LUA
        ngx.say(ngx.md5("hello"), " ", #ngx.md5_bin("hello"), " ", #ngx.sha1_bin("hello"))
        ngx.say(ngx.md5(true) == ngx.md5("true"), " ", ngx.md5(false) == ngx.md5(""), " ", ngx.md5() == ngx.md5(""),
          " ", ngx.md5(setmetatable({}, {__tostring = function() return "hello" end})) == ngx.md5("hello"),
          " ", ngx.md5(12.5) == ngx.md5("12.5"), " ", ngx.sha1_bin(1) == ngx.sha1_bin("1"))
        ngx.say(ngx.encode_base64("hello"), " ", ngx.decode_base64("aGVsbG8="), " ", tostring(ngx.decode_base64("!!")),
          " ", ngx.encode_base64("he", true))
        ngx.say(ngx.crc32_short("hello"), " ", ngx.crc32_long("hello"))
        ngx.say(ngx.encode_base64(ngx.hmac_sha1("key", "The quick brown fox jumps over the lazy dog")))
        ngx.say(ngx.escape_uri("a b/c?d=é"), " ", ngx.unescape_uri("b%20r56+7%zz"))
        ngx.say(ngx.encode_args({ a = "b c", flag = true, no = false, list = {1, 2} }))
        local args = ngx.decode_args("a=1&b=x%20y&a=2")
        ngx.say(table.concat(args.a, ","), " ", args.b)
        ngx.say(ngx.quote_sql_str("it's \\ \"q\"\n"))
        ngx.say(ngx.http_time(1290079655), " | ", ngx.cookie_time(1290079655), " | ", ngx.parse_http_time("Thu, 18 Nov 2010 11:27:35 GMT"))
        ngx.say(type(ngx.time()), " ", ngx.now() >= ngx.time(), " ", #ngx.today(), " ", #ngx.localtime(), " ", #ngx.utctime())
        ngx.update_time()
      LUA
    }
    location "= /compat" {
      content_by_lua = <<-LUA
        local new_tab = require "table.new"
        local clear_tab = require "table.clear"
        local t = new_tab(4, 2)
        t[1] = 1; t.x = 2
        clear_tab(t)
        ngx.say(next(t) == nil, " ", type(table.new), " ", type(table.clear))
        local bit = require "bit"
        ngx.say(bit.band(0xff, 0x0f), " ", bit.bor(1, 2), " ", bit.bxor(3, 1), " ", bit.lshift(1, 4), " ",
          bit.rshift(-1, 28), " ", bit.tohex(255, 4), " ", bit.tobit(2^32 + 1), " ", bit.bnot(0))
        local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
        ngx.say(co(1), " ", co(5))
        local main = coroutine.running()
        local c2 = coroutine.create(function()
          ngx.sleep(0.01)
          return coroutine.running() ~= main, coroutine.status(main)
        end)
        local _, other, st = coroutine.resume(c2)
        ngx.say(type(main), " ", other, " ", st, " ", coroutine.status(c2))
      LUA
    }
`

var miscFiles = map[string]string{"lua/results.lua": "return {}\n"}

func TestMisc(t *testing.T) {
	s := serve(t, "", miscConf, testserverFiles(miscFiles))
	check(t, s.Get("/sleep"), 200, "true\n")
	check(t, s.Get("/timer"), 200, "created: 1 pending: 1\n")
	var r *testserver.Response
	e2e.WaitFor(3*time.Second, func() bool { r = s.Get("/timer_result"); return !strings.HasPrefix(r.Body, "nil") })
	check(t, r, 200, "on time x1 | connection refused | no request found | running: 0\n")
	check(t, s.Get("/every"), 200, "true\ntrue\n")
	check(t, s.Get("/threads"), 200,
		"first: true t2 done 0.01\nsecond: true t1 done\nt1 start, t2 start, main, t2 end, t1 end\nuserdata thread:\nagain: already waited or killed\n")
	check(t, s.Get("/thread_error"), 200, "false true\n")
	checkLog(t, s, "lua user thread aborted: runtime error: ", "in thread")
	check(t, s.Get("/thread_kill"), 200, "kill: 1\nquick: true\nagain: already waited or killed\n")
	start := time.Now()
	r = s.Get("/thread_exit")
	if r.Status != 418 || time.Since(start) > 5*time.Second {
		t.Errorf("ngx.exit from a light thread: %d %q after %v", r.Status, r.Body, time.Since(start))
	}
	check(t, s.Get("/thread_finish"), 200, "main returns\nthread ends after main\n")
	// Light threads writing and flushing at once: every line arrives whole.
	r = s.Get("/thread_output")
	lines := strings.Split(strings.TrimSuffix(r.Body, "\n"), "\n")
	seen := map[string]bool{}
	for _, l := range lines {
		seen[l] = true
	}
	if len(lines) != 60 || len(seen) != 60 || !seen["a30"] || !seen["b1"] {
		t.Errorf("interleaved output of two light threads: %q", r.Body)
	}
	check(t, s.Get("/re"), 200, "1234 1 234\nh false\nnil hello\nb 4\nnil ab\n8 11 8\n1,22,333\n"+
		"hell[o] world hell<o> w<o>rld2\na2b4 a$b1\na b\nnil true\nfoo nil 12 ab bbb 2 nil\nnil pcre2_match() failed: pcre: match limit exceeded\n")
	check(t, s.Get("/strings"), 200, "5d41402abc4b2a76b9719d911017c592 16 20\ntrue true true true true true\n"+
		"aGVsbG8= hello nil aGU\n907060870 907060870\n3nybhbi3iqa8ino29wqQcBydtNk=\n"+
		"a%20b%2Fc%3Fd%3D%C3%A9 b r56 7%zz\na=b%20c&flag&list=1&list=2\n1,2 x y\n'it\\'s \\\\ \\\"q\\\"\\n'\n"+
		"Thu, 18 Nov 2010 11:27:35 GMT | Thu, 18-Nov-10 11:27:35 GMT | 1290079655\nnumber true 10 19 19\n")
	check(t, s.Get("/compat"), 200, "true function function\n15 3 2 16 15 00ff 1 -1\n2 10\nthread true normal dead\n")
}

// A script that never yields is stopped after lua_max_run_time; the worker goes on
// serving, Lua requests included. On LuaJIT a compiled loop is interrupted where it
// calls into Go (here ngx.get_phase; ngx.now is an FFI call into C): one that calls nothing cannot be, and makes the
// worker exit instead (luajit.Options.OnStuck), which a test process cannot host.
func TestMaxRunTime(t *testing.T) {
	s := serve(t, "", `
    location "= /spin" {
      lua_max_run_time = "200ms"
      content_by_lua = "local i = 0 while true do i = i + #ngx.get_phase() end"
    }
    location "= /spin_pcall" {
      lua_max_run_time = "200ms"
      content_by_lua = "while true do pcall(function() while true do ngx.get_phase() end end) end"
    }
    location "= /ok" { content_by_lua = "ngx.say('ok')" }
`)
	done := make(chan *testserverResponse, 2)
	go func() { done <- s.Get("/spin") }()
	go func() { done <- s.Get("/spin_pcall") }()
	for i := 0; i < 2; i++ {
		select {
		case r := <-done:
			if r.Status != 500 {
				t.Errorf("runaway script: %d", r.Status)
			}
		case <-time.After(8 * time.Second):
			t.Fatal("a runaway script was not stopped")
		}
	}
	check(t, s.Get("/ok"), 200, "ok\n")
	checkLog(t, s, "lua_max_run_time (200ms) exceeded")
}

// With lua_code_cache off, *_by_lua_file and required modules are read again for each
// request.
func TestCodeCacheOff(t *testing.T) {
	s := serve(t, "", `
    location "= /dev" {
      lua_code_cache = false
      content_by_lua_file = "lua/dev.lua"
    }
    location "= /cached" {
      content_by_lua_file = "lua/dev.lua"
    }
    location "= /require" {
      content_by_lua = "ngx.say(debug.getinfo(require, 'S').what)"
    }
`, testserverFiles(map[string]string{
		"lua/dev.lua": "ngx.say('v1 ', require('mod').v)\n",
		"lua/mod.lua": "return { v = 1 }\n",
	}))
	check(t, s.Get("/dev"), 200, "v1 1\n")
	check(t, s.Get("/cached"), 200, "v1 1\n")
	check(t, s.Get("/require"), 200, "Lua\n")
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(s.Prefix, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("lua/dev.lua", "ngx.say('v2 ', require('mod').v)\n")
	write("lua/mod.lua", "return { v = 2 }\n")
	check(t, s.Get("/dev"), 200, "v2 2\n")
	check(t, s.Get("/cached"), 200, "v1 1\n")
	checkLog(t, s, "lua_code_cache is off")
}

// With the code cache on everywhere, require is LuaJIT's own: the wrapper that finds
// the run's lua_code_cache asked Go on each call (a callback per require, ~720
// instructions, in every lua-resty-redis request).
func TestCodeCacheOnRequire(t *testing.T) {
	s := serve(t, "", `
    location "= /require" {
      content_by_lua = "ngx.say(debug.getinfo(require, 'S').what, ' ', require('mod').v)"
    }
`, testserverFiles(map[string]string{"lua/mod.lua": "return { v = 1 }\n"}))
	check(t, s.Get("/require"), 200, "C 1\n")
}
