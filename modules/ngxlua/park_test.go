package ngxlua_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
)

// A content handler in ngx.sleep parks its request (no goroutine) and the event loop
// resumes it: whatever the handler does after the wait works as before, whatever the
// request's next step is (output, exit, exec, an error, another wait of either kind).
func TestParkedSleep(t *testing.T) {
	s := serve(t, "", `
    location "= /twice" {
      content_by_lua = <<-LUA
        ngx.print("a")
        ngx.sleep(0.005)
        ngx.print("b")
        ngx.sleep(0)
        ngx.say("c")
      LUA
    }
    location "= /exit" {
      content_by_lua = "ngx.sleep(0.001) ngx.status = 201 ngx.say('made') ngx.exit(201)"
    }
    location "= /exit404" {
      content_by_lua = "ngx.sleep(0.001) ngx.exit(404)"
    }
    location "= /exec" {
      content_by_lua = "ngx.sleep(0.001) ngx.exec('/target', 'x=1')"
    }
    location "= /target" {
      content_by_lua = "ngx.sleep(0.001) ngx.say('target ', ngx.var.arg_x)"
    }
    location "= /fail" {
      content_by_lua = "ngx.sleep(0.001) error('boom')"
    }
    location "= /then_capture" {
      content_by_lua = <<-LUA
        ngx.sleep(0.001)
        local r = ngx.location.capture("/target?x=2")
        ngx.sleep(0.001)
        ngx.print("sub: ", r.body)
      LUA
    }
    location "= /threads" {
      content_by_lua = <<-LUA
        local t = ngx.thread.spawn(function() ngx.sleep(0.002) return "t" end)
        ngx.sleep(0.001)
        local ok, v = ngx.thread.wait(t)
        ngx.say(v)
      LUA
    }
    location "= /pcall" {
      content_by_lua = <<-LUA
        local ok = pcall(function() ngx.sleep(0.001) end)
        local co = coroutine.wrap(function() ngx.sleep(0.001) coroutine.yield("y") end)
        ngx.say(ok, " ", co())
      LUA
    }
    location "= /rewrite" {
      rewrite_by_lua = "ngx.sleep(0.001)"
      content_by_lua = "ngx.sleep(0.001) ngx.say('after rewrite')"
    }
    location "= /own" {
      content_by_lua = <<-LUA
        local before = ngx.var.arg_i
        ngx.sleep(0.001)
        ngx.sleep(0)
        ngx.say(before, " ", ngx.var.arg_i)
      LUA
    }
    location "= /many" {
      content_by_lua = <<-LUA
        local reqs = {}
        for i = 1, tonumber(ngx.var.arg_n) do reqs[i] = {"/target", {args = "x=" .. i}} end
        local res = {ngx.location.capture_multi(reqs)}
        local out = {}
        for i, r in ipairs(res) do out[i] = r.status .. ":" .. r.body:gsub("\n", "") end
        ngx.say(#res, " ", table.concat(out, ","))
      LUA
    }
`)
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/twice", 200, "abc\n"},
		{"/exit", 201, "made\n"},
		{"/exec", 200, "target 1\n"},
		{"/then_capture", 200, "sub: target 2\n"},
		{"/threads", 200, "t\n"},
		{"/pcall", 200, "true y\n"},
		{"/rewrite", 200, "after rewrite\n"},
	} {
		check(t, s.Get(tc.path), tc.status, tc.body)
	}
	if r := s.Get("/exit404"); r.Status != 404 {
		t.Errorf("/exit404: %d", r.Status)
	}
	if r := s.Get("/fail"); r.Status != 500 {
		t.Errorf("/fail: %d", r.Status)
	}
	checkLog(t, s, "boom")

	// Pipelined and keepalive requests behind parked ones, on one connection.
	raw := s.Raw("GET /twice HTTP/1.1\r\nHost: x\r\n\r\nGET /exec HTTP/1.1\r\nHost: x\r\n\r\n"+
		"GET /twice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	resps, bodies, err := testserver.ReadResponses(raw)
	if err != nil || len(resps) != 3 || bodies[0] != "abc\n" || bodies[1] != "target 1\n" || bodies[2] != "abc\n" {
		t.Errorf("pipelined: %v %q", err, raw)
	}

	// Many parked at once, on many connections.
	const n = 50
	done := make(chan string, n)
	for range n {
		go func() { done <- s.Get("/twice").Body }()
	}
	for range n {
		if b := <-done; b != "abc\n" {
			t.Errorf("concurrent: %q", b)
		}
	}
	// Each parked request keeps its own run (finished runs are reused, parked ones
	// included): many at once, each with its own argument.
	own := make(chan [2]string, n)
	for i := range n {
		go func() {
			want := strconv.Itoa(i) + " " + strconv.Itoa(i) + "\n"
			own <- [2]string{s.Get("/own?i=" + strconv.Itoa(i)).Body, want}
		}()
	}
	for range n {
		if b := <-own; b[0] != b[1] {
			t.Errorf("/own: %q, want %q", b[0], b[1])
		}
	}

	// capture_multi returns up to 16 responses from its run call, more one by one.
	for _, m := range []int{1, 16, 17, 20} {
		var want []string
		for i := 1; i <= m; i++ {
			want = append(want, "200:target "+strconv.Itoa(i))
		}
		check(t, s.Get("/many?n="+strconv.Itoa(m)), 200, strconv.Itoa(m)+" "+strings.Join(want, ",")+"\n")
	}
	if log := s.ErrorLog(); strings.Count(log, "[error]") != 1 {
		t.Errorf("error log: %s", log)
	}
}

// Lua requests waiting in a cosocket receive hold no goroutine either: the socket is
// in the event loop's epoll set meanwhile. The backend is a listening socket that
// never accepts (the kernel completes the connections): the requests' receives wait
// until the listener closes and the connections are reset.
func TestParkedCosocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	const n = 100
	s := serve(t, "", `
    location "= /pool" {
      content_by_lua = <<-LUA
        local socks = {}
        for i = 1, `+strconv.Itoa(n)+` do
          local sock = ngx.socket.tcp()
          assert(sock:connect("127.0.0.1", `+port+`))
          socks[i] = sock
        end
        for i = 1, #socks do assert(socks[i]:setkeepalive(60000, 1000)) end
        ngx.say("pooled")
      LUA
    }
    location "= /wait" {
      content_by_lua = <<-LUA
        local sock = ngx.socket.tcp()
        sock:settimeout(10000)
        assert(sock:connect("127.0.0.1", `+port+`))
        assert(sock:getreusedtimes() == 1, "not pooled")
        assert(sock:send("ping\r\n"))
        local line, err = sock:receive()
        ngx.say("receive: ", err)
      LUA
    }
`)
	check(t, s.Get("/pool"), 200, "pooled\n")
	g0 := runtime.NumGoroutine()
	conns := hold(t, s.Addr, "/wait", n)
	if !e2e.WaitFor(10*time.Second, func() bool { return s.Engine.Counters()["writing"] >= n }) {
		t.Fatalf("requests in flight: %v", s.Engine.Counters())
	}
	if g := runtime.NumGoroutine() - g0; g > n/4 {
		t.Errorf("%d Lua requests waiting in a receive hold %d goroutines", n, g)
	}
	ln.Close() // the connections in its queue are reset
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "receive: connection reset by peer\n" {
			t.Errorf("got %q", body)
		}
		c.Close()
	}
}

// Light threads park with their request: n requests, each with threads sleeping and
// one killed while it sleeps, hold no goroutine while they wait.
func TestParkedThreads(t *testing.T) {
	s := serve(t, "", `
    location "= /threads" {
      content_by_lua = <<-LUA
        local hold = tonumber(ngx.var.arg_hold) or 0
        local a = ngx.thread.spawn(function() ngx.sleep(hold) return "a" end)
        local b = ngx.thread.spawn(function() ngx.sleep(hold + 0.01) return "b" end)
        local k = ngx.thread.spawn(function() ngx.sleep(60) return "never" end)
        ngx.thread.kill(k)
        local _, x = ngx.thread.wait(a)
        local _, y = ngx.thread.wait(b)
        ngx.say(x, y)
      LUA
    }
`)
	check(t, s.Get("/threads"), 200, "ab\n")
	const n = 100
	g0 := runtime.NumGoroutine()
	conns := hold(t, s.Addr, "/threads?hold=0.5", n)
	if !e2e.WaitFor(10*time.Second, func() bool { return s.Engine.Counters()["writing"] >= n }) {
		t.Fatalf("requests in flight: %v", s.Engine.Counters())
	}
	if g := runtime.NumGoroutine() - g0; g > n/4 {
		t.Errorf("%d Lua requests with light threads in ngx.sleep hold %d goroutines", n, g)
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "ab\n" {
			t.Errorf("got %q", body)
		}
		c.Close()
	}
	noErrors(t, s)
}

// Rewrite and access handlers park too; the request goes on from where the handler
// was: the phase's next handler, the next phase, satisfy's decision, a redirect.
func TestParkedPhases(t *testing.T) {
	s := serve(t, "", `
    location "= /both" {
      rewrite_by_lua = "ngx.sleep(0.001) ngx.ctx.r = 'rw'"
      access_by_lua = "ngx.sleep(0.001) ngx.ctx.a = 'ac'"
      content_by_lua = "ngx.sleep(0.001) ngx.say(ngx.ctx.r, ngx.ctx.a)"
    }
    location "= /deny" {
      access_by_lua = "ngx.sleep(0.001) ngx.exit(403)"
      content_by_lua = "ngx.say('never')"
    }
    location "= /any" {
      satisfy = "any"
      access_by_lua = "ngx.sleep(0.001) ngx.exit(ngx.OK)"
      content_by_lua = "ngx.say('granted')"
    }
    location "= /any_refused" {
      satisfy = "any"
      access_by_lua = "ngx.sleep(0.001) ngx.exit(403)"
      content_by_lua = "ngx.say('never')"
    }
    location "= /exec" {
      rewrite_by_lua = "ngx.sleep(0.001) ngx.exec('/both')"
    }
    location "= /hold" {
      access_by_lua = "ngx.sleep(tonumber(ngx.var.arg_s))"
      content_by_lua = "ngx.say('held')"
    }
    location "= /rewrite_out" {
      rewrite_by_lua = "ngx.sleep(0.001) ngx.say('from rewrite')"
      content_by_lua = "ngx.say('never')"
    }
`)
	check(t, s.Get("/both"), 200, "rwac\n")
	check(t, s.Get("/any"), 200, "granted\n")
	check(t, s.Get("/exec"), 200, "rwac\n")
	check(t, s.Get("/rewrite_out"), 200, "from rewrite\n")
	if r := s.Get("/deny"); r.Status != 403 {
		t.Errorf("/deny: %d %q", r.Status, r.Body)
	}
	if r := s.Get("/any_refused"); r.Status != 403 {
		t.Errorf("/any_refused: %d %q", r.Status, r.Body)
	}
	check(t, s.Get("/hold?s=0"), 200, "held\n")
	const n = 50
	g0 := runtime.NumGoroutine()
	conns := hold(t, s.Addr, "/hold?s=0.5", n)
	if !e2e.WaitFor(10*time.Second, func() bool { return s.Engine.Counters()["writing"] >= n }) {
		t.Fatalf("requests in flight: %v", s.Engine.Counters())
	}
	if g := runtime.NumGoroutine() - g0; g > n/4 {
		t.Errorf("%d requests in access_by_lua's ngx.sleep hold %d goroutines", n, g)
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "held\n" {
			t.Errorf("got %q", body)
		}
		c.Close()
	}
}
