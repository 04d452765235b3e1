package ngxlua_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// Cases in the spirit of t/001-set.t, t/023-rewrite/*.t, t/024-access/*.t,
// t/033-ctx.t, t/041-header-filter.t, t/082-body-filter.t, t/075-logby.t,
// t/086-init-by.t, t/124-init-worker.t, t/089-phase.t.

const phasesHTTP = `
  init_by_lua = <<-LUA
    greeting = "hi from init"
    package.path = package.path
    counter_mod = require "counter"
  LUA
  init_worker_by_lua = <<-LUA
    init_worker_ran = true
    local ok, err = ngx.timer.at(0, function(premature) timer_from_init_worker = not premature end)
    if not ok then error(err) end
  LUA
`

const phasesConf = `
    location "= /set" {
      set_by_lua "sum" {
        code = "return tonumber(ngx.arg[1]) + tonumber(ngx.arg[2])"
        args = [arg.a, arg.b]
      }
      set_by_lua_file "twice" {
        file = "lua/twice.lua"
        args = ["${sum}"]
      }
      return = { code = 200, body = "sum=${sum} twice=${twice}\n" }
    }
    location "= /set_if" {
      set_by_lua "kind" {
        code = "return ngx.arg[1] == 'admin' and 'privileged' or 'plain'"
        args = [arg.user]
      }
      if {
        cond   = [kind, "=", "privileged"]
        return = { code = 200, body = "welcome, ${arg.user}\n" }
      }
      set_by_lua "after" { code = "return 'after if: ' .. ngx.var.kind" }
      return = { code = 200, body = "${after}\n" }
    }
    location "= /set_disabled" {
      set_by_lua "x" { code = "ngx.say('no')" }
      return = { code = 200, body = "x=${x}\n" }
    }
    location "= /set_sleep" {
      set_by_lua "x" { code = "ngx.sleep(0.1)" }
      return = 200
    }
    location "= /rewrite_exit" {
      rewrite_by_lua = "ngx.exit(403)"
      content_by_lua = "ngx.say('not reached')"
    }
    location "= /rewrite_ok" {
      rewrite_by_lua = "ngx.ctx.r = 'rewrite'; ngx.exit(ngx.OK)"
      access_by_lua = "ngx.ctx.a = 'access'"
      content_by_lua = "ngx.say(ngx.ctx.r, ' ', ngx.ctx.a)"
      log_by_lua = "ngx.log(ngx.WARN, 'log phase sees ctx: ', ngx.ctx.r, ' status ', ngx.status)"
    }
    location "= /rewrite_output" {
      rewrite_by_lua = "ngx.say('from rewrite')"
      content_by_lua = "ngx.say('not reached')"
    }
    location "= /rewrite_jump" {
      rewrite_by_lua = "ngx.req.set_uri('/jumped', true)"
    }
    location "= /jumped" {
      content_by_lua = "ngx.say('jumped to ', ngx.var.uri)"
    }
    location "= /rewrite_exec" {
      rewrite_by_lua = "ngx.exec('/jumped')"
    }
    location "= /access" {
      access_by_lua = <<-LUA
        if ngx.var.arg_token ~= "secret" then
          return ngx.exit(ngx.HTTP_FORBIDDEN)
        end
      LUA
      content_by_lua = "ngx.say('welcome')"
    }
    location "= /access_sub" {
      content_by_lua = <<-LUA
        local res = ngx.location.capture("/access")
        ngx.say(res.status, " ", res.body)
      LUA
    }
    location "= /filters" {
      header_filter_by_lua = <<-LUA
        ngx.header["X-Filtered"] = "yes"
        ngx.header.content_length = nil
      LUA
      body_filter_by_lua = <<-LUA
        local chunk, eof = ngx.arg[1], ngx.arg[2]
        ngx.arg[1] = string.upper(chunk)
        if eof then ngx.arg[1] = ngx.arg[1] .. "[eof]" end
      LUA
      content_by_lua = "ngx.say('hello'); ngx.flush(true); ngx.say('world')"
    }
    location "= /body_truncate" {
      body_filter_by_lua = <<-LUA
        if ngx.arg[1]:find("stop") then
          ngx.arg[1] = "cut\n"
          ngx.arg[2] = true
        end
      LUA
      content_by_lua = "ngx.say('keep'); ngx.flush(); ngx.say('stop'); ngx.flush(); ngx.say('dropped')"
    }
    location "= /filter_status" {
      header_filter_by_lua = "ngx.status = 202"
      content_by_lua = "ngx.say('x')"
    }
    location "= /filter_io" {
      header_filter_by_lua = <<-LUA
        local ok, err = pcall(ngx.socket.tcp)
        ngx.header["X-Err"] = err
        local ok2, err2 = pcall(ngx.sleep, 1)
        ngx.header["X-Err2"] = err2
        local ok3, err3 = pcall(ngx.say, "x")
        ngx.header["X-Err3"] = err3
      LUA
      content_by_lua = "ngx.say('ok')"
    }
    location "= /log_io" {
      content_by_lua = "ngx.say('ok')"
      log_by_lua = <<-LUA
        local ok, err = pcall(ngx.location.capture, "/set")
        ngx.log(ngx.WARN, "log capture: ", err)
      LUA
    }
    location "= /globals" {
      content_by_lua = <<-LUA
        ngx.say(greeting, " ", tostring(init_worker_ran), " ", tostring(timer_from_init_worker))
        ngx.say("leak: ", tostring(leaked))
        leaked = "from request " .. ngx.var.arg_n
        _G.also = "x"
        ngx.say("set: ", leaked, " ", also)
      LUA
    }
    location "= /module" {
      content_by_lua = <<-LUA
        local c = require "counter"
        ngx.say(c.incr(), " same table: ", tostring(c == counter_mod))
      LUA
    }
    location "= /phase" {
      rewrite_by_lua = "ngx.ctx.p = ngx.get_phase()"
      access_by_lua = "ngx.ctx.p = ngx.ctx.p .. ',' .. ngx.get_phase()"
      content_by_lua = "ngx.say(ngx.ctx.p, ',', ngx.get_phase())"
    }
    location "= /ctx_replace" {
      rewrite_by_lua = "ngx.ctx = { replaced = true }"
      content_by_lua = "ngx.say(tostring(ngx.ctx.replaced))"
    }
`

var phasesFiles = map[string]string{
	"lua/twice.lua":   "return ngx.arg[1] * 2\n",
	"lua/counter.lua": "local M = { n = 0 }\nfunction M.incr() M.n = M.n + 1 return M.n end\nreturn M\n",
}

func TestPhases(t *testing.T) {
	s := serve(t, phasesHTTP, phasesConf, testserverFiles(phasesFiles))
	cases := []struct {
		path   string
		status int
		body   string
	}{
		{"/set?a=2&b=3", 200, "sum=5 twice=10\n"},
		{"/set_if?user=admin", 200, "welcome, admin\n"},
		{"/set_if?user=bob", 200, "after if: plain\n"},
		{"/rewrite_ok", 200, "rewrite access\n"},
		{"/rewrite_output", 200, "from rewrite\n"},
		{"/rewrite_jump", 200, "jumped to /jumped\n"},
		{"/rewrite_exec", 200, "jumped to /jumped\n"},
		{"/access?token=secret", 200, "welcome\n"},
		{"/access_sub", 200, "200 welcome\n\n"},
		{"/filter_status", 202, "x\n"},
		{"/phase", 200, "rewrite,access,content\n"},
		{"/ctx_replace", 200, "true\n"},
		{"/module", 200, "2 same table: true\n"},
		{"/module", 200, "3 same table: true\n"},
	}
	// counter_mod was required by init_by_lua: the module is loaded once per worker.
	s.Get("/module")
	for _, c := range cases {
		r := s.Get(c.path)
		if r.Status != c.status || r.Body != c.body {
			t.Errorf("GET %s = %d %q, want %d %q", c.path, r.Status, r.Body, c.status, c.body)
		}
	}
	r := s.Get("/rewrite_exit")
	if r.Status != 403 || strings.Contains(r.Body, "not reached") {
		t.Errorf("rewrite exit: %d %q", r.Status, r.Body)
	}
	r = s.Get("/access?token=wrong")
	if r.Status != 403 {
		t.Errorf("access denied: %d %q", r.Status, r.Body)
	}
	r = s.Get("/filters")
	if r.Body != "HELLO\nWORLD\n[eof]" || r.Header.Get("X-Filtered") != "yes" {
		t.Errorf("filters: %q %v", r.Body, r.Header)
	}
	r = s.Get("/body_truncate")
	if r.Body != "keep\ncut\n" {
		t.Errorf("body filter eof: %q", r.Body)
	}
	r = s.Get("/filter_io")
	for _, h := range []string{"X-Err", "X-Err2", "X-Err3"} {
		if !strings.Contains(r.Header.Get(h), "API disabled in the context of header_filter_by_lua*") {
			t.Errorf("%s: %q", h, r.Header.Get(h))
		}
	}
	s.Get("/log_io")
	r = s.Get("/set_disabled")
	if r.Status != 500 {
		t.Errorf("ngx.say in set_by_lua: %d %q", r.Status, r.Body)
	}
	r = s.Get("/set_sleep")
	if r.Status != 500 {
		t.Errorf("ngx.sleep in set_by_lua: %d %q", r.Status, r.Body)
	}
	// The log phase runs after the response is sent; wait for its line.
	e2e.WaitFor(2*time.Second, func() bool { return strings.Contains(s.ErrorLog(), "log capture:") })
	checkLog(t, s, "log phase sees ctx: rewrite status 200",
		"log capture: ", "API disabled in the context of log_by_lua*",
		"API disabled in the context of set_by_lua*")
}

// Each request writes globals into its own environment (ngx_lua's sandbox); they do
// not leak into other requests.
func TestGlobalsSandbox(t *testing.T) {
	s := serve(t, phasesHTTP, phasesConf, testserverFiles(phasesFiles))
	check(t, s.Get("/globals?n=1"), 200, "hi from init true true\nleak: nil\nset: from request 1 x\n")
	check(t, s.Get("/globals?n=2"), 200, "hi from init true true\nleak: nil\nset: from request 2 x\n")
}

func TestInitByLuaFailure(t *testing.T) {
	cfg, err := buildString(t, `http {
  init_by_lua = "local x = require 'no.such.module'"
  server {
    listen = ["127.0.0.1:0"]
  }
}`)
	if err != nil {
		t.Fatalf("a runtime error is found by the worker, not the build: %v", err)
	}
	err = initWorker(cfg)
	if err == nil || !strings.Contains(err.Error(), "init_by_lua failed") || !strings.Contains(err.Error(), "no.such.module") {
		t.Errorf("init_by_lua error: %v", err)
	}
}

// log_by_lua at the server level runs for a request answered before it was parsed, as
// in ngx_lua (nginx logs its 400s), and sees its status and request line.
func TestLogPhaseOfRejectedRequest(t *testing.T) {
	s := serve(t, "", `
    log_by_lua = "ngx.log(ngx.WARN, 'logged ', ngx.status, ' [', ngx.var.request, '] ', tostring(ngx.var.http_host))"
    location "/" { content_by_lua = "ngx.say('ok')" }`)
	raw := s.Raw("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: b\r\nBad Name: c\r\n\r\n", 2*time.Second)
	if !strings.Contains(raw, " 400 Bad Request") {
		t.Fatalf("responses:\n%s", raw)
	}
	e2e.WaitFor(2*time.Second, func() bool { return strings.Contains(s.ErrorLog(), "logged 400") })
	checkLog(t, s, "logged 200 [GET / HTTP/1.1] a", "logged 400 [GET /x HTTP/1.1] nil")
	noErrors(t, s)
}

// The log phase runs after the response is sent, as in nginx: a slow log_by_lua does
// not hold the client's response back.
func TestLogPhaseAfterResponse(t *testing.T) {
	s := serve(t, "", `
    location "/" {
      content_by_lua = "ngx.say('ok')"
      log_by_lua = <<-LUA
        local start = ngx.now()
        repeat ngx.update_time() until ngx.now() - start >= 0.5
        ngx.log(ngx.WARN, "slow log phase done")
      LUA
    }`)
	start := time.Now()
	r := s.Get("/")
	took := time.Since(start)
	check(t, r, 200, "ok\n")
	if took > 300*time.Millisecond {
		t.Errorf("the response took %v: it waited for the log phase", took)
	}
	e2e.WaitFor(5*time.Second, func() bool { return strings.Contains(s.ErrorLog(), "slow log phase done") })
	checkLog(t, s, "slow log phase done")
}
