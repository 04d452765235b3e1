package lua_test

import (
	"sync"
	"testing"
	"time"

	"github.com/spindle-server/spindle/modules/lua"
	glua "github.com/yuin/gopher-lua"
)

// A Go extension (the way the backends' fast path plugs in): spindle.testlib.slow
// blocks in Go without holding the worker's Lua VM.
func init() {
	lua.RegisterLib("testlib", func(L *glua.LState) glua.LValue {
		lib := L.NewTable()
		lib.RawSetString("slow", L.NewFunction(func(L *glua.LState) int {
			d := time.Duration(float64(L.CheckNumber(1)) * float64(time.Second))
			lua.Blocking(L, "spindle.testlib.slow", func() { time.Sleep(d) }) // a blocking call's real duration is under test
			uri := "none"
			if r := lua.CurrentRequest(L); r != nil {
				uri = r.URI()
			}
			L.Push(glua.LString("slept in " + uri))
			return 1
		}))
		return lib
	})
}

func TestExtension(t *testing.T) {
	s := serve(t, "", `
    location "= /ext" {
      content_by_lua = "ngx.say(spindle.testlib.slow(0.2))"
    }
    location "= /ext_filter" {
      header_filter_by_lua = "ngx.header['X-Err'] = select(2, pcall(spindle.testlib.slow, 0))"
      content_by_lua = "ngx.say('x')"
    }
`)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			check(t, s.Get("/ext"), 200, "slept in /ext\n")
		}()
	}
	wg.Wait()
	if d := time.Since(start); d > 550*time.Millisecond {
		t.Errorf("three blocking calls of 200ms took %v: the VM was held", d)
	}
	r := s.Get("/ext_filter")
	if got := r.Header.Get("X-Err"); got == "" || !contains(got, "API disabled in the context of header_filter_by_lua*") {
		t.Errorf("blocking extension in a header filter: %q", got)
	}
}
