package ngxlua_test

import (
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
)

// The memory a Lua request costs while it is in flight, and what an idle pooled
// cosocket connection costs, measured in process: heap and goroutine stacks after a
// GC, with n requests (or connections) held, minus the same without them. The test
// logs the figures (go test -v -run Memory) and fails only on gross regressions.

func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// hold opens n connections sending GET path and leaves them waiting for the answer.
func hold(t *testing.T, addr, path string, n int) []net.Conn {
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"))
		conns = append(conns, c)
	}
	return conns
}

func TestMemoryPerInflightRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("measures memory with hundreds of requests")
	}
	s := serve(t, "", `
    location "= /echo_hold" { echo_sleep = "2s" }
    location "= /lua_hold" {
      content_by_lua = "ngx.sleep(2)"
    }
    location "= /lua_warm" { content_by_lua = "ngx.say('warm')" }
`)
	const n = 400
	// Warm up the pools (goroutines, buffers) so that they are not counted.
	for i := 0; i < 3; i++ {
		s.Get("/lua_warm")
	}
	goroutines := 0
	measure := func(path string) float64 {
		base := memInUse()
		g0 := runtime.NumGoroutine()
		conns := hold(t, s.Addr, path, n)
		// Every request in its handler.
		if !e2e.WaitFor(10*time.Second, func() bool { return s.Engine.Counters()["writing"] >= n }) {
			t.Fatalf("%s: requests in flight: %v", path, s.Engine.Counters())
		}
		used := memInUse()
		goroutines = runtime.NumGoroutine() - g0
		for _, c := range conns {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			c.Read(buf)
			c.Close()
		}
		return float64(int64(used)-int64(base)) / n
	}
	// Lua first: the goroutines a measure starts stay idle in the worker pool for a
	// while, and a later measure would reuse them uncounted.
	lua := measure("/lua_hold")
	// A content handler in ngx.sleep is parked: it holds no goroutine (step 2 of
	// docs/lua-engine.md).
	if goroutines > n/4 {
		t.Errorf("%d Lua requests in ngx.sleep hold %d goroutines", n, goroutines)
	}
	echo := measure("/echo_hold")
	t.Logf("per in-flight request: %.0f B without Lua (echo_sleep, on a goroutine), %.0f B with content_by_lua + ngx.sleep (parked): %.0f B for Lua", echo, lua, lua-echo)
	if lua-echo > 64<<10 {
		t.Errorf("a Lua request in flight costs %.0f B more than a plain one", lua-echo)
	}
	// About 7 KB here for echo_sleep (a goroutine's stack is most of it), 3.5 KB for
	// a parked Lua request (8.2 KB when it waited on a goroutine), 15 KB when waiting
	// requests kept their connection's 4 KB input and output buffers.
	if echo > 12<<10 || lua > 12<<10 {
		t.Errorf("a request in flight costs %.0f B (plain), %.0f B (Lua): do waiting requests keep their buffers?", echo, lua)
	}
}

func TestMemoryPerIdleConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("measures memory with hundreds of connections")
	}
	addr := backends.StartRedis(t).Addr()
	_, port, _ := net.SplitHostPort(addr)
	s := serve(t, "", `
    location "= /pool" {
      content_by_lua = <<-LUA
        local n = tonumber(ngx.var.arg_n)
        local socks = {}
        for i = 1, n do
          local sock = ngx.socket.tcp()
          assert(sock:connect("127.0.0.1", tonumber(ngx.var.arg_port)))
          socks[i] = sock
        end
        for i = 1, n do
          assert(socks[i]:setkeepalive(60000, 10000))
        end
        ngx.say("pooled ", n)
      LUA
    }
`)
	const n = 500
	check(t, s.Get("/pool?n=1&port="+port), 200, "pooled 1\n")
	base := memInUse()
	check(t, s.Get("/pool?n="+strconv.Itoa(n)+"&port="+port), 200, "pooled "+strconv.Itoa(n)+"\n")
	used := memInUse()
	per := float64(int64(used)-int64(base)) / n
	t.Logf("per idle pooled cosocket connection: %.0f B", per)
	if per > 16<<10 {
		t.Errorf("an idle pooled connection costs %.0f B", per)
	}
}

// A request that waits gives its connection's empty buffers back meanwhile (that is
// most of what TestMemoryPerInflightRequest measures): whatever it does after the wait
// still finds them, with nothing lost. Output before and after waits; a body read only
// after a wait, with Content-Length and chunked; a body half read before a wait;
// pipelined requests behind one that waits; keepalive requests after it.
func TestBuffersAcrossWaits(t *testing.T) {
	s := serve(t, "", `
    location "= /say" {
      content_by_lua = <<-LUA
        ngx.sleep(0.01)
        ngx.print("a")
        ngx.sleep(0.01)
        ngx.print("b")
        ngx.flush(true)
        ngx.sleep(0.01)
        ngx.say("c")
      LUA
    }
    location "= /body_after" {
      content_by_lua = <<-LUA
        ngx.sleep(0.02)
        ngx.req.read_body()
        ngx.sleep(0.01)
        ngx.say("body: ", ngx.req.get_body_data())
      LUA
    }
    location "= /sub" {
      content_by_lua = "ngx.req.read_body(); ngx.print(ngx.req.get_body_data())"
    }
    location "= /sub_after" {
      content_by_lua = <<-LUA
        ngx.sleep(0.02)
        local r = ngx.location.capture("/sub", { always_forward_body = true })
        ngx.sleep(0.01)
        ngx.say("sub: ", r.body)
      LUA
    }
`)
	for _, tc := range []struct {
		name, req string
		bodies    []string
	}{
		{"output around waits",
			"GET /say HTTP/1.1\r\nHost: x\r\n\r\nGET /say HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"abc\n", "abc\n"}},
		{"body read after a wait",
			"POST /body_after HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
				"GET /say HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"body: hello\n", "abc\n"}},
		{"chunked body read after a wait",
			"POST /body_after HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n" +
				"GET /say HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"body: hello\n", "abc\n"}},
		{"subrequest reads its parent's body after a wait",
			"POST /sub_after HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nworld",
			[]string{"sub: world\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := s.Raw(tc.req, 5*time.Second)
			resps, bodies, err := testserver.ReadResponses(raw)
			if err != nil || len(bodies) != len(tc.bodies) {
				t.Fatalf("%d responses (%v) in %q", len(bodies), err, raw)
			}
			for i, want := range tc.bodies {
				if resps[i].StatusCode != 200 || bodies[i] != want {
					t.Errorf("response %d: %d %q, want %q", i, resps[i].StatusCode, bodies[i], want)
				}
			}
		})
	}
	// The body arrives in two parts: the server has read the first (with the head)
	// before the second is sent, so the handler's wait starts with half a body read;
	// the rest comes from the socket after the wait.
	t.Run("body sent across a wait", func(t *testing.T) {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "POST /body_after HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello")
		e2e.WaitPeerRead(t, c)
		io.WriteString(c, "world")
		raw, _ := io.ReadAll(c)
		if !strings.HasSuffix(string(raw), "\r\n\r\nbody: helloworld\n") {
			t.Errorf("got %q", raw)
		}
	})
	noErrors(t, s)
}
