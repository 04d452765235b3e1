package backendtest_test

import (
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/testserver"
)

// The benchmarks drive the whole request path in process, as modules/ngxlua's do, but
// over many connections at once: with one connection a request waits for redis's
// round trip and the benchmark measures latency; with 64 the auto-pipeliner batches
// the requests' commands as it does under load. Run with -cpu 1 (GOMAXPROCS=1, as a
// worker). cpu-ns/op is the process's CPU time per request (redis-server is another
// process), the Go runtime's and go-redis's spinning while idle included; ns/op also
// holds the time spent waiting for the backend. Each fake connection
// feeds the same request over and over and discards the responses but the first,
// which is checked.

type fakeConn struct {
	testserver.NopConn
	req   []byte
	left  atomic.Int64
	done  *sync.WaitGroup
	once  sync.Once
	first chan string
	mu    sync.Mutex
	buf   []byte
}

func (c *fakeConn) Read(p []byte) (int, error) {
	if c.left.Add(-1) < 0 {
		c.once.Do(c.done.Done)
		return 0, net.ErrClosed
	}
	return copy(p, c.req), nil
}

func (c *fakeConn) Write(p []byte) (int, error) {
	if c.first != nil {
		c.mu.Lock()
		c.buf = append(c.buf, p...)
		if s := string(c.buf); strings.Contains(s, "\r\n\r\n") {
			select {
			case c.first <- s:
			default:
			}
			c.first = nil
		}
		c.mu.Unlock()
	}
	return len(p), nil
}

// cpuTime is the CPU time the process used so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchConns serves b.N requests for path over conns connections at once and checks
// that the first response holds want.
func benchConns(b *testing.B, config, path, want string, conns int) {
	e, addr, stop := testserver.BenchEngine(b, config)
	defer stop()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	var wg sync.WaitGroup
	first := make(chan string, 1)
	fakes := make([]net.Conn, conns)
	for i := range fakes {
		c := &fakeConn{req: req, done: &wg}
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		c.left.Store(int64(n))
		if i == 0 {
			c.first = first
		}
		wg.Add(1)
		fakes[i] = c
	}
	ln := testserver.NewListener(fakes...)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	go e.Serve(ln, addr)
	wg.Wait()
	b.StopTimer()
	// The process's CPU time per request: what the worker spends on one, apart from
	// the time it waits for the backend (redis-server is another process).
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	ln.Close()
	select {
	case resp := <-first:
		if !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.Contains(resp, want) {
			b.Fatalf("response: %q", resp)
		}
	default:
		b.Fatal("no response")
	}
}

// benchConf has the fast path beside the two ways spindle had before it: the redis
// module's location (redis_pass) and lua-resty-redis on cosockets, the anchor page
// OpenResty serves.
var benchConf = `
http {
  lua_package_path = "/usr/share/lua/5.1/?.lua;;"
  upstream "redis_pool" {
    type      = "redis"
    servers   = ["127.0.0.1:REDISPORT"]
    keepalive = 512
  }
  server {
    listen = ["127.0.0.1:80"]
    keepalive_requests = 1000000000
    location "= /redis_fast" {
      content_by_lua = "ngx.say(spindle.redis(\"redis_pool\"):get(\"foo\"))"
    }
    location "= /redis" {
      redis_pass  = "redis_pool"
      redis_query = ["get", "foo"]
      redis_reply = "value"
    }
` + testserver.RedisLuaLocation("/redis_lua", "red:set_keepalive(10000, 512)") + `
    location "= /memc_fast" {
      content_by_lua = "ngx.say((spindle.memcached(\"MEMCADDR\"):get(\"foo\")))"
    }
  }
}
`

func benchRedis(b *testing.B, path string, conns int) {
	rd := backends.StartRedis(b)
	if _, err := rd.Cmd("SET", "foo", "bar"); err != nil {
		b.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(rd.Addr())
	conf := strings.NewReplacer("REDISPORT", port, "MEMCADDR", "127.0.0.1:1").Replace(benchConf)
	benchConns(b, conf, path, "bar", conns)
}

// BenchmarkRedisFast is the fast path, spindle.redis("redis_pool"):get("foo"), with 64
// connections at once.
func BenchmarkRedisFast(b *testing.B) { benchRedis(b, "/redis_fast", 64) }

// BenchmarkRedisFastSerial is the fast path one request at a time: latency.
func BenchmarkRedisFastSerial(b *testing.B) { benchRedis(b, "/redis_fast", 1) }

// BenchmarkRedisModule is the same GET through redis_pass, for comparison.
func BenchmarkRedisModule(b *testing.B) { benchRedis(b, "/redis", 64) }

// BenchmarkRedisResty is the same GET through lua-resty-redis on cosockets: the code
// OpenResty runs for the benchmark's /redis page.
func BenchmarkRedisResty(b *testing.B) {
	if _, err := os.Stat("/usr/share/lua/5.1/nginx/redis.lua"); err != nil {
		b.Skip("lua-resty-redis (Debian's lua-nginx-redis) is not installed")
	}
	benchRedis(b, "/redis_lua", 64)
}

// BenchmarkMemcachedFast is spindle.memcached(addr):get("foo") with 64 connections.
func BenchmarkMemcachedFast(b *testing.B) {
	mc := backends.StartMemcached(b)
	if _, err := backends.Memcached(mc.Addr(), "set foo 0 0 3\r\nbar"); err != nil {
		b.Fatal(err)
	}
	conf := strings.NewReplacer("REDISPORT", "1", "MEMCADDR", mc.Addr()).Replace(benchConf)
	benchConns(b, conf, "/memc_fast", "bar", 64)
}
