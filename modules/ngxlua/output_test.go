package ngxlua_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// ngx.say and ngx.print buffer in C memory (rt.c) and Go takes the output when a
// resume ends or Lua calls a Go function: what these handlers send must come out in
// the order they sent it, whichever way each piece went.
const outputConf = `
    location "= /mixed" {
      content_by_lua = <<-LUA
        ngx.say("a", 1, true, nil)
        ngx.print({"b", {"c"}}, "\n")          -- a table: Go's out
        ngx.say("d")
        ngx.flush(true)                         -- a Go function that writes
        ngx.say("e")
        ngx.sleep(0)                            -- a wait: the resume ends
        ngx.print("f", 2.5, "\n")
      LUA
    }
    location "= /big" {
      content_by_lua = <<-LUA
        local piece = string.rep("x", 1000)
        for i = 1, 50 do ngx.print(piece) end   -- written past 16 KB, from Lua
        ngx.say("")
        ngx.say("end")
      LUA
    }
    location "= /after_output" {
      content_by_lua = <<-LUA
        ngx.print("")
        ngx.header["X-Late"] = "1"              -- after output: refused, logged
        ngx.say("sent ", tostring(ngx.headers_sent))
      LUA
    }
    location "= /after_eof" {
      content_by_lua = <<-LUA
        ngx.say("one")
        ngx.eof()
        local ok, err = ngx.say("two")
        ngx.log(ngx.ERR, "say after eof: ", tostring(ok), " ", err)
      LUA
    }
    location "= /headers" {
      content_by_lua = <<-LUA
        ngx.header["X-A"] = "1"                 -- queued in C
        ngx.header.x_b = "2"
        ngx.header["X-A"] = "3"                 -- replaces, in order
        local a = ngx.header["X-A"]             -- a Go function: the queue is applied first
        ngx.header["X-C"] = {"4", "5"}          -- a list: through Go
        ngx.header["X-D"] = "6"
        ngx.say(a, " ", ngx.var.sent_http_x_b, " ", ngx.resp.get_headers()["x-d"])
        ngx.header["X-E"] = "late"              -- after output: refused, logged
      LUA
    }
    location "= /get_headers" {
      content_by_lua = <<-LUA
        local h1 = ngx.req.get_headers()
        local h2 = ngx.req.get_headers()        -- builds the cached table
        h2["x-one"] = "changed"                 -- the caller's copy only
        local h3 = ngx.req.get_headers()        -- a copy of the cache
        ngx.req.set_header("X-One", "new")      -- drops the cache
        local h4 = ngx.req.get_headers()
        local h5 = ngx.req.get_headers()
        local raw = ngx.req.get_headers(nil, true)
        ngx.sleep(0)                            -- another resume of the same run
        local h6 = ngx.req.get_headers()
        ngx.say(h1["x-one"], " ", h3["x-one"], " ", h3.X_One, " ", h4["x-one"], " ", h5["x-one"], " ",
          tostring(raw["x-one"]), " ", raw["X-One"], " ", h6["x-one"], " ", h1 ~= h3 and h3 ~= h5)
      LUA
    }
    location "= /now" {
      content_by_lua = <<-LUA
        local t0 = ngx.now()
        local x = 0
        for i = 1, 3e6 do x = x + i end         -- some milliseconds, same resume
        local same = ngx.now() == t0
        ngx.update_time()
        local t1 = ngx.now()
        ngx.sleep(0.02)                         -- a new resume: a new time
        ngx.say(same, " ", t1 >= t0, " ", ngx.now() - t0 >= 0.02, " ", ngx.time() == math.floor(ngx.now()))
      LUA
    }
`

func TestOutputOrder(t *testing.T) {
	s := serve(t, "", outputConf)
	check(t, s.Get("/mixed"), 200, "a1truenil\nbc\nd\ne\nf2.5\n")
	check(t, s.Get("/big"), 200, strings.Repeat("x", 50000)+"\nend\n")
	check(t, s.Get("/after_output"), 200, "sent true\n")
	checkLog(t, s, "attempt to set ngx.header.HEADER after sending out response headers")
	check(t, s.Get("/after_eof"), 200, "one\n")
	// The client has the response before the handler logs: wait for the line.
	if !e2e.WaitFor(5*time.Second, func() bool { return strings.Contains(s.ErrorLog(), "say after eof: nil seen eof") }) {
		t.Errorf("error log lacks %q:\n%s", "say after eof: nil seen eof", s.ErrorLog())
	}
	check(t, s.Get("/now"), 200, "true true true true\n")
	check(t, s.Get("/get_headers", "X-One: 1"), 200, "1 1 1 new new nil new new true\n")
	r := s.Get("/headers")
	check(t, r, 200, "3 2 6\n")
	if got := r.Header.Get("X-A") + r.Header.Get("X-B") + strings.Join(r.Header.Values("X-C"), ",") + r.Header.Get("X-D") + r.Header.Get("X-E"); got != "324,56" {
		t.Errorf("headers X-A, X-B, X-C, X-D, X-E: %q, want \"324,56\"", got)
	}
}
