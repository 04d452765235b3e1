package ngxlua_test

import (
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// lua-resty-core's modules that apps require: ngx.semaphore between requests,
// ngx.re.split, and require "resty.core" (its APIs are built in).
func TestRestyCoreModules(t *testing.T) {
	s := serve(t, `
  init_by_lua = <<-LUA
    require "resty.core"
    sema = require("ngx.semaphore").new(0)
  LUA`, `
    location "= /wait" {
      content_by_lua = <<-LUA
        local ok, err = sema:wait(5)
        ngx.say("waited: ", tostring(ok), " ", tostring(err))
      LUA
    }
    location "= /timeout" {
      content_by_lua = <<-LUA
        ngx.say(select(2, sema:wait(0)), " ", select(2, sema:wait(0.01)), " ", sema:count())
      LUA
    }
    location "= /post" {
      content_by_lua = "sema:post(1) ngx.say('posted')"
    }
    location "= /split" {
      content_by_lua = <<-LUA
        local re = require "ngx.re"
        ngx.say(table.concat(re.split("a,b,,c", ","), "|"))
        ngx.say(table.concat(ngx.re.split("a1b22c", "(\\d+)"), "|"))
        ngx.say(table.concat(re.split("abc", ""), "|"))
        ngx.say(table.concat(re.split("a,b,c,d", ",", nil, nil, 2), "|"))
        ngx.say(type(ngx.config.ngx_lua_version))
      LUA
    }`)
	check(t, s.Get("/timeout"), 200, "timeout timeout 0\n")
	done := make(chan *testserverResponse, 1)
	go func() { done <- s.Get("/wait") }()
	// The waiter shows in the count once it waits; then a post wakes it.
	if !e2e.WaitFor(5*time.Second, func() bool { return s.Get("/timeout").Body == "timeout timeout -1\n" }) {
		t.Fatal("the waiter never waited")
	}
	check(t, s.Get("/post"), 200, "posted\n")
	check(t, <-done, 200, "waited: true nil\n")
	check(t, s.Get("/split"), 200, "a|b||c\na|1|b|22|c\na|b|c\na|b,c,d\nnumber\n")
}
