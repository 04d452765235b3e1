package ngxlua_test

import (
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/spindle-server/spindle/internal/backends"
)

// Many requests at once on one worker VM: each with its own globals, cosockets from
// the shared pool, sleeps, subrequests and light threads, all interleaved.
func TestConcurrentRequests(t *testing.T) {
	addr := backends.StartRedis(t).Addr()
	_, port, _ := net.SplitHostPort(addr)
	s := serve(t, "", `
    location "= /mix" {
      content_by_lua = <<-LUA
        local id = ngx.var.arg_id
        mine = id
        local redis = require "nginx.redis"
        local red = redis:new()
        red:set_timeout(2000)
        assert(red:connect("127.0.0.1", `+port+`))
        red:set("k" .. id, "v" .. id)
        ngx.sleep(0.01)
        local v = red:get("k" .. id)
        red:set_keepalive(10000, 20)
        local t = ngx.thread.spawn(function() ngx.sleep(0.005) return mine end)
        local res = ngx.location.capture("/sub?id=" .. id)
        local _, from_thread = ngx.thread.wait(t)
        ngx.print(id, " ", v, " ", mine, " ", from_thread, " ", res.body)
      LUA
    }
    location "= /sub" {
      content_by_lua = "ngx.sleep(0.002) ngx.say('sub', ngx.var.arg_id)"
    }
`)
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := s.Get(fmt.Sprintf("/mix?id=%d", i))
			want := fmt.Sprintf("%d v%d %d %d sub%d\n", i, i, i, i, i)
			if r.Status != 200 || r.Body != want {
				errs <- fmt.Sprintf("%d %q, want %q", r.Status, r.Body, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	noErrors(t, s)
}
