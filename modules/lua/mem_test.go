package lua_test

import (
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/backends"
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
	measure := func(path string) float64 {
		base := memInUse()
		conns := hold(t, s.Addr, path, n)
		time.Sleep(400 * time.Millisecond) // every request in its handler
		used := memInUse()
		for _, c := range conns {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			c.Read(buf)
			c.Close()
		}
		return float64(int64(used)-int64(base)) / n
	}
	echo := measure("/echo_hold")
	lua := measure("/lua_hold")
	t.Logf("per in-flight request: %.0f B without Lua (echo_sleep), %.0f B with content_by_lua + ngx.sleep: %.0f B for Lua", echo, lua, lua-echo)
	if lua-echo > 64<<10 {
		t.Errorf("a Lua request in flight costs %.0f B more than a plain one", lua-echo)
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
