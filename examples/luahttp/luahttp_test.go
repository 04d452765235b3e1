package luahttp_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/ngxlua"

	_ "github.com/spindle-server/spindle/examples/luahttp"
)

// The library answers, waits without holding the worker's VM, reports errors as
// (nil, err) and bad arguments at the caller's line.
func TestLuaHTTP(t *testing.T) {
	release := make(chan struct{})
	var waiting atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/forecast":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "sunny in %s", r.URL.Query().Get("city"))
		case "/held":
			waiting.Add(1)
			<-release
			w.Write([]byte("released"))
		case "/stuck":
			<-r.Context().Done() // answers only when the client gives up
		}
	}))
	defer api.Close()
	defer close(release)
	s := testserver.Start(t, strings.ReplaceAll(`
http {
  server {
    listen = ["127.0.0.1:0"]
    location "= /weather" {
      content_by_lua = <<-LUA
        local status, body, ctype = spindle.http.get("API/forecast?city=" .. ngx.var.arg_city, 2)
        if not status then ngx.log(ngx.ERR, body) return ngx.exit(502) end
        ngx.status = status
        ngx.say(body, " (", ctype, ")")
      LUA
    }
    location "= /held" {
      content_by_lua = "local status, body = spindle.http.get('API/held') ngx.say(status, ' ', body)"
    }
    location "= /stuck" {
      content_by_lua = "ngx.say(spindle.http.get('API/stuck', 0.2))"
    }
    location "= /bad" {
      content_by_lua = "ngx.say(select(2, pcall(function() local s = spindle.http.get(42) return s end)))"
    }
    location "= /hello" {
      content_by_lua = "ngx.say('hello')"
    }
  }
}
`, "API", api.URL))

	check := func(path string, status int, body string) {
		t.Helper()
		if r := s.Get(path); r.Status != status || r.Body != body {
			t.Errorf("%s: got %d %q, want %d %q", path, r.Status, r.Body, status, body)
		}
	}
	check("/weather?city=Paris", 200, "sunny in Paris (text/plain)\n")
	check("/bad", 200, "content_by_lua(spindle.hcl:20):1: bad argument #1 to 'spindle.http.get' (string expected, got number)\n")
	if r := s.Get("/stuck"); r.Status != 200 || !strings.HasPrefix(r.Body, "nil") || !strings.Contains(r.Body, "deadline exceeded") {
		t.Errorf("/stuck: %d %q", r.Status, r.Body)
	}

	// Two requests wait for the API at once; the worker's Lua runs meanwhile.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			check("/held", 200, "200 released\n")
		}()
	}
	if !e2e.WaitFor(10*time.Second, func() bool { return waiting.Load() == 2 }) {
		t.Fatalf("%d of 2 requests reached the API", waiting.Load())
	}
	check("/hello", 200, "hello\n")
	release <- struct{}{}
	release <- struct{}{}
	wg.Wait()
}

// docs/modules.md quotes this package's code as it is.
func TestDocsQuoteExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/modules.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("luahttp.go")
	if err != nil {
		t.Fatal(err)
	}
	sec := regexp.MustCompile("(?s)## Giving Lua code a Go library\n(.*?)\n## ").FindSubmatch(doc)
	if sec == nil {
		t.Fatal("docs/modules.md has no section on Lua libraries")
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(sec[1], -1)
	if len(blocks) == 0 {
		t.Fatal("the section quotes no Go code")
	}
	for _, b := range blocks {
		if !strings.Contains(string(src), string(b[1])) {
			t.Errorf("docs/modules.md quotes code luahttp.go does not have:\n%s", b[1])
		}
	}
}
