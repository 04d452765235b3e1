package ngxlua_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/modules/ngxlua"
)

// A Go extension (the way a Go module gives Lua a library): spindle.testlib.block
// waits in Go, with the VM unlocked, until the test releases it.
var (
	extRelease = make(chan struct{})
	extWaiting atomic.Int32
)

func init() {
	ngxlua.RegisterLib("testlib", ngxlua.Lib{
		Funcs: map[string]ngxlua.Func{
			"block": func(c *ngxlua.Call) error {
				uri := "none"
				if r := c.Request(); r != nil {
					uri = r.URI()
				}
				return c.Wait("spindle.testlib.block", func() []any {
					extWaiting.Add(1)
					<-extRelease
					return []any{"waited in " + uri}
				})
			},
			"where": func(c *ngxlua.Call) error {
				if r := c.Request(); r != nil {
					c.Push(r.URI())
				} else {
					c.Push("none", c.Config() != nil)
				}
				return nil
			},
			"echo": func(c *ngxlua.Call) error {
				types := make([]any, c.N())
				for i := range types {
					types[i] = c.Type(i)
				}
				c.Push(c.String(0), c.Int(1), c.Bool(2), types,
					map[string]any{"n": 1.5, "list": []any{"a", int64(2)}, "no": false})
				return nil
			},
			"fail": func(c *ngxlua.Call) error { return errFail },
			// resp_header: the response header as the handler set it so far.
			"resp_header": func(c *ngxlua.Call) error {
				c.Push(c.Request().RespHeader().Get(c.String(0)))
				return nil
			},
		},
		// The Lua half: a function over the Go ones, and the table returned.
		Lua: `
			local lib = ...
			lib.shout = function(s) return string.upper(lib.echo(s)) .. "!" end
			return lib`,
	})
}

var errFail = errString("testlib failed on purpose")

type errString string

func (e errString) Error() string { return string(e) }

func TestExtension(t *testing.T) {
	s := serve(t, `
  init_worker_by_lua = "where_init, has_config = spindle.testlib.where()"`, `
    location "= /ext" {
      content_by_lua = "ngx.say(spindle.testlib.block())"
    }
    location "= /other" {
      content_by_lua = "ngx.say('other ', spindle.testlib.where(), ' ', where_init, ' ', tostring(has_config))"
    }
    location "= /values" {
      content_by_lua = <<-LUA
        local s, n, b, types, t = spindle.testlib.echo(12.5, 7.9, nil, {}, print)
        ngx.say(s, " ", n, " ", tostring(b), " ", table.concat(types, ","))
        ngx.say(t.n, " ", t.list[1], t.list[2], " ", tostring(t.no), " ", spindle.testlib.shout("hey"))
        local ok, err = pcall(function() local x = spindle.testlib.fail() return x end)
        ngx.say(tostring(ok), " ", err)
        ngx.say(require("spindle").testlib == spindle.testlib)
      LUA
    }
    location "= /ext_header" {
      content_by_lua = <<-LUA
        ngx.header["X-Ext"] = "set"  -- queued in C: applied before the extension runs
        ngx.say(spindle.testlib.resp_header("X-Ext"))
      LUA
    }
    location "= /ext_filter" {
      header_filter_by_lua = "ngx.header['X-Err'] = select(2, pcall(spindle.testlib.block))"
      content_by_lua       = "ngx.say('x')"
    }
`)
	// Three requests wait in the library at once: none holds the VM, so another
	// Lua request is served meanwhile.
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			check(t, s.Get("/ext"), 200, "waited in /ext\n")
		}()
	}
	if !e2e.WaitFor(10*time.Second, func() bool { return extWaiting.Load() == 3 }) {
		t.Fatalf("%d of 3 blocking calls are waiting: the VM was held", extWaiting.Load())
	}
	check(t, s.Get("/other"), 200, "other /other none true\n")
	close(extRelease)
	wg.Wait()

	check(t, s.Get("/values"), 200, "12.5 7 false number,number,nil,table,function\n"+
		"1.5 a2 false HEY!\n"+
		"false content_by_lua(spindle.hcl:14):4: testlib failed on purpose\n"+
		"true\n")
	check(t, s.Get("/ext_header"), 200, "set\n")
	r := s.Get("/ext_filter")
	if got := r.Header.Get("X-Err"); !strings.Contains(got, "API disabled in the context of header_filter_by_lua*") {
		t.Errorf("blocking extension in a header filter: %q", got)
	}
	noErrors(t, s)
}
