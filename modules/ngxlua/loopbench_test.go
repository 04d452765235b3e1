package ngxlua_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/testserver"
)

// The loop benchmarks serve real loopback connections through the event loop (where
// requests park), with clients in the same process: conns keepalive connections, one
// request at a time each. cpu-ns/op is the process's CPU time per request (getrusage:
// server and clients), which a loaded machine inflates less than wall time.
func benchLoop(b *testing.B, config, path string, conns int) {
	benchLoopReq(b, config, "GET "+path+" HTTP/1.1\r\nHost: localhost\r\n\r\n", conns)
}

// benchLoopReq is benchLoop with the whole request given.
func benchLoopReq(b *testing.B, config, request string, conns int) {
	e, addr, stop := testserver.BenchEngine(b, config)
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go e.Serve(ln, addr)
	req := []byte(request)
	var left atomic.Int64
	var ru0, ru1 syscall.Rusage
	b.ReportAllocs()
	b.ResetTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for left.Add(-1) >= 0 {
				c.Write(req)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	b.StopTimer()
	cpu := func(ru *syscall.Rusage) int64 { return ru.Utime.Nano() + ru.Stime.Nano() }
	b.ReportMetric(float64(cpu(&ru1)-cpu(&ru0))/float64(b.N), "cpu-ns/op")
}

const loopSleepConf = `
    location "= /sleep0" { content_by_lua = "ngx.sleep(0) ngx.say('ok')" }
  }
}
`

func loopConf(extra string) string {
	i := strings.LastIndex(benchConf, "  }\n}")
	return benchConf[:i] + extra
}

// BenchmarkLoopLua is /lua through the event loop.
func BenchmarkLoopLua(b *testing.B) { benchLoop(b, benchConf, "/lua", 8) }

// BenchmarkLoopMulti is /multi (capture_multi of two echo locations) through the loop.
func BenchmarkLoopMulti(b *testing.B) { benchLoop(b, benchConf, "/multi", 8) }

// BenchmarkLoopSleep0 is ngx.sleep(0) then ngx.say: the cost of one wait.
func BenchmarkLoopSleep0(b *testing.B) { benchLoop(b, loopConf(loopSleepConf), "/sleep0", 8) }

// benchRedisPort is the port of the redis-server the redis benchmarks use: one
// started for the benchmark, or SPINDLE_BENCH_REDIS_PORT's (under callgrind, which
// aborts on the SIGCHLD of a server the process starts).
func benchRedisPort(b *testing.B) string {
	if port := os.Getenv("SPINDLE_BENCH_REDIS_PORT"); port != "" {
		return port
	}
	_, port, _ := net.SplitHostPort(backends.StartRedis(b).Addr())
	return port
}

// BenchmarkLoopRedis is /redis (lua-resty-redis GET over a pooled cosocket).
func BenchmarkLoopRedis(b *testing.B) {
	benchLoop(b, strings.ReplaceAll(benchConf, "REDISPORT", benchRedisPort(b)), "/redis", 8)
}

// BenchmarkLoopRedisShort is bench.sh's redis_short_lua: lua-resty-redis connecting
// for each request (connect, GET, close).
func BenchmarkLoopRedisShort(b *testing.B) {
	benchLoop(b, strings.ReplaceAll(benchConf, "REDISPORT", benchRedisPort(b)), "/redis_short", 8)
}

// BenchmarkLoopGateway is bench.sh's lua_gateway (BenchmarkLuaGateway's /gateway)
// through the loop, with wrk's headers and the key the handler wants.
func BenchmarkLoopGateway(b *testing.B) {
	benchLoopReq(b, benchConf, "GET /gateway?user=alice&page=3 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nX-Api-Key: k3y-0123\r\nAccept: */*\r\n\r\n", 8)
}

// BenchmarkLoopHello is bench.sh's hello (benchConf's /hello, a return 200 location)
// through the loop: the core's per-request fixed cost (read, parse, dispatch,
// response head, write).
func BenchmarkLoopHello(b *testing.B) {
	benchLoopReq(b, benchConf, "GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n", 8)
}
