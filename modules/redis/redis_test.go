package redis_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/proxy"
	"github.com/spindle-server/spindle/modules/redis"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

func cfg(s string, kv ...string) string { return strings.NewReplacer(kv...).Replace(s) }

func mustRedis(t *testing.T, p *backends.Process, args ...string) string {
	t.Helper()
	v, err := p.Cmd(args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return v
}

func TestRedisQueries(t *testing.T) {
	rd := backends.StartRedis(t)
	mustRedis(t, rd, "SET", "foo", "bar")
	mustRedis(t, rd, "SET", "n", "41")
	mustRedis(t, rd, "LPUSH", "list", "a")
	s := testserver.Start(t, cfg(`
http {
  upstream "rd" {
    type      = "redis"
    servers   = ["{RD}"]
    keepalive = 8
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /get" {
      redis_pass  = "rd"
      redis_query = ["get", "${arg.key}"]
    }
    location "= /value" {
      redis_pass  = "rd"
      redis_query = ["get", "${arg.key}"]
      redis_reply = "value"
    }
    location "= /incr" {
      redis_pass  = "rd"
      redis_query = ["incr", "n"]
      redis_reply = "value"
    }
    location "= /mget" {
      redis_pass  = "rd"
      redis_query = ["mget", "foo", "missing", "n"]
      redis_reply = "value"
    }
    location "= /pipeline" {
      redis_pass  = "rd"
      redis_query = [["set", "p", "${arg.v}"], ["get", "p"], ["strlen", "p"]]
    }
    location "= /pipeline_value" {
      redis_pass  = "rd"
      redis_query = [["set", "q", "${arg.v}"], ["get", "q"]]
      redis_reply = "value"
    }
    location "= /multi" {
      redis_pass  = "rd"
      redis_query = [["multi"], ["incr", "m"], ["incr", "m"], ["exec"]]
    }
    location "= /raw" {
      redis_pass      = "rd"
      redis_raw_query = "${request_body}"
    }
    location "= /rawconst" {
      redis_pass      = "rd"
      redis_raw_query = "*2\r\n$3\r\nget\r\n$3\r\nfoo\r\nping\r\n"
    }
    location "= /body" {
      redis_pass  = "rd"
      redis_query = ["set", "${arg.key}", "${request_body}"]
    }
    location "= /direct" {
      redis_pass  = "{RD}"
      redis_query = ["get", "foo"]
    }
    location "= /wrongtype" {
      redis_pass  = "rd"
      redis_query = ["get", "list"]
      redis_reply = "value"
    }
    location "= /error" {
      redis_pass  = "rd"
      redis_query = ["nosuchcommand"]
    }
    location "= /dyn" {
      redis_pass  = "${arg.to}"
      redis_query = ["get", "foo"]
    }
  }
}`, "{RD}", rd.Addr()))
	cases := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/get?key=foo", "", 200, "$3\r\nbar\r\n"},
		{"GET", "/get?key=nope", "", 200, "$-1\r\n"},
		{"GET", "/value?key=foo", "", 200, "bar"},
		{"GET", "/value?key=nope", "", 404, ""},
		{"GET", "/incr", "", 200, "42"},
		{"GET", "/mget", "", 200, "bar\n\n42"},
		{"GET", "/pipeline?v=hello", "", 200, "+OK\r\n$5\r\nhello\r\n:5\r\n"},
		{"GET", "/pipeline_value?v=x", "", 200, "OK\nx"},
		{"GET", "/multi", "", 200, "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:1\r\n:2\r\n"},
		{"POST", "/raw", "set r 1\r\nget r\r\n*3\r\n$6\r\nappend\r\n$1\r\nr\r\n$1\r\n2\r\n", 200, "+OK\r\n$1\r\n1\r\n:2\r\n"},
		{"POST", "/raw", "set \"a b\" 'c d'\nget \"a b\"\n", 200, "+OK\r\n$3\r\nc d\r\n"},
		{"GET", "/rawconst", "", 200, "$3\r\nbar\r\n+PONG\r\n"},
		{"POST", "/body?key=bk", "from the body", 200, "+OK\r\n"},
		{"GET", "/direct", "", 200, "$3\r\nbar\r\n"},
		{"GET", "/wrongtype", "", 502, ""},
		{"GET", "/dyn?to=" + rd.Addr(), "", 200, "$3\r\nbar\r\n"},
	}
	for _, c := range cases {
		resp := s.Do(c.method, c.path, c.body)
		if resp.Status != c.status || (c.status == 200 && resp.Body != c.want) {
			t.Errorf("%s %s: %d %q, want %d %q", c.method, c.path, resp.Status, resp.Body, c.status, c.want)
		}
	}
	if v := mustRedis(t, rd, "GET", "bk"); v != "from the body" {
		t.Errorf("SET from the request body stored %q", v)
	}
	if resp := s.Get("/error"); resp.Status != 200 || !strings.HasPrefix(resp.Body, "-ERR unknown command") {
		t.Errorf("error reply in resp mode: %d %q", resp.Status, resp.Body)
	}
	if !strings.Contains(s.ErrorLog(), "WRONGTYPE") {
		t.Errorf("the WRONGTYPE reply is not logged")
	}
}

func TestRedisFaults(t *testing.T) {
	rd := backends.StartRedis(t)
	mustRedis(t, rd, "SET", "foo", "bar")
	dead := backends.FreePort(t)
	s := testserver.Start(t, cfg(`
http {
  upstream "rd" {
    type         = "redis"
    servers      = ["{RD}"]
    keepalive    = 4
    read_timeout = "300ms"
  }
  upstream "short" {
    type         = "redis"
    servers      = ["{RD}"]
    keepalive    = 0
    read_timeout = "300ms"
  }
  upstream "dead" {
    type    = "redis"
    servers = ["127.0.0.1:{DEAD}"]
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /get" {
      redis_pass  = "rd"
      redis_query = ["get", "foo"]
    }
    location "= /short" {
      redis_pass  = "short"
      redis_query = ["get", "foo"]
    }
    location "= /dead" {
      redis_pass  = "dead"
      redis_query = ["get", "foo"]
    }
    location "= /other" { return = { code = 200, body = "other" } }
  }
}`, "{RD}", rd.Addr(), "{DEAD}", strconv.Itoa(dead)))
	if resp := s.Get("/dead"); resp.Status != 502 {
		t.Errorf("redis down: %d, want 502", resp.Status)
	}
	if resp := s.Get("/get"); resp.Body != "$3\r\nbar\r\n" {
		t.Fatalf("get: %d %q", resp.Status, resp.Body)
	}
	// A hung redis (stopped, its socket open): 504 within read_timeout, and the
	// worker serves other locations meanwhile.
	rd.Pause()
	for _, path := range []string{"/get", "/short"} {
		start := time.Now()
		done := make(chan int, 1)
		go func() { done <- s.Status(path) }()
		if resp := s.Get("/other"); resp.Body != "other" {
			t.Errorf("other location while redis hangs: %q", resp.Body)
		}
		if st := <-done; st != 504 {
			t.Errorf("%s with redis hung: %d, want 504", path, st)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: 504 after %v (read_timeout 300ms)", path, d)
		}
	}
	rd.Resume()
	// Killed and restarted: 502 while down, and the pool recovers.
	waitOK(t, s, "/get")
	rd.Stop()
	for _, path := range []string{"/get", "/short"} {
		if resp := s.Get(path); resp.Status != 502 {
			t.Errorf("%s with redis stopped: %d, want 502", path, resp.Status)
		}
	}
	rd.Start()
	mustRedis(t, rd, "SET", "foo", "bar")
	waitOK(t, s, "/get")
	waitOK(t, s, "/short")
}

// waitOK polls path until it answers 200 (a pool recovering after a restart).
func waitOK(t *testing.T, s *testserver.Server, path string) {
	t.Helper()
	var resp *testserver.Response
	if !e2e.WaitFor(10*time.Second, func() bool { resp = s.Get(path); return resp.Status == 200 }) {
		t.Fatalf("%s did not recover: %d %q", path, resp.Status, resp.Body)
	}
}

func TestRedisPoolBound(t *testing.T) {
	rd := backends.StartRedis(t)
	mustRedis(t, rd, "SET", "foo", "bar")
	s := testserver.Start(t, cfg(`
http {
  upstream "rd" {
    type      = "redis"
    servers   = ["{RD}"]
    keepalive = 4
  }
  upstream "short" {
    type      = "redis"
    servers   = ["{RD}"]
    keepalive = 0
  }
  server {
    listen = ["127.0.0.1:0"]
    keepalive_requests = 100000
    location "= /get" {
      redis_pass  = "rd"
      redis_query = ["get", "foo"]
    }
    location "= /pipe" {
      redis_pass  = "rd"
      redis_query = [["incr", "c"], ["get", "foo"]]
    }
    location "= /short" {
      redis_pass  = "short"
      redis_query = ["get", "foo"]
    }
  }
}`, "{RD}", rd.Addr()))
	m1, _ := loadAndWatch(t, s, []string{"/get"}, 64, time.Second, func() (int, error) { return rd.RedisClients() })
	t.Logf("64 concurrent clients of single commands: at most %d redis connections", m1)
	if m1 > 2 {
		t.Errorf("auto-pipelined single commands used %d connections, want 1 or 2", m1)
	}
	maxClients, bad := loadAndWatch(t, s, []string{"/get", "/pipe"}, 64, 2*time.Second, func() (int, error) { return rd.RedisClients() })
	t.Logf("64 concurrent clients: at most %d redis connections", maxClients)
	if bad > 0 {
		t.Errorf("%d requests failed under load", bad)
	}
	if maxClients > 4 {
		t.Errorf("redis saw %d connections from the worker, keepalive is 4", maxClients)
	}
	if maxClients < 1 {
		t.Errorf("redis saw no connection during the load")
	}
	// keepalive = 0: a connection per request, closed after it.
	for i := 0; i < 5; i++ {
		if resp := s.Get("/short"); resp.Body != "$3\r\nbar\r\n" {
			t.Fatalf("short: %q", resp.Body)
		}
	}
	before, _ := rd.Info("total_connections_received")
	for i := 0; i < 5; i++ {
		s.Get("/short")
	}
	after, _ := rd.Info("total_connections_received")
	b, _ := strconv.Atoi(before)
	a, _ := strconv.Atoi(after)
	if a-b != 5 {
		t.Errorf("keepalive = 0: 5 requests made %d connections, want 5", a-b)
	}
}

// loadAndWatch sends requests from n concurrent keepalive clients for d, sampling
// count (the backend's view of its connections); it returns the largest sample and
// the number of failed requests.
func loadAndWatch(t *testing.T, s *testserver.Server, paths []string, n int, d time.Duration, count func() (int, error)) (int, int64) {
	var bad atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := newRawClient(t, s.Addr)
			defer c.close()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				if st := c.get(paths[(i+k)%len(paths)]); st != 200 {
					bad.Add(1)
				}
			}
		}(i)
	}
	maxSeen := 0
	// Sample for d: the load's length, not a wait for something to happen.
	e2e.WaitFor(d, func() bool {
		if v, err := count(); err == nil && v > maxSeen {
			maxSeen = v
		}
		return false
	})
	close(stop)
	wg.Wait()
	return maxSeen, bad.Load()
}

func TestRedisGoAPI(t *testing.T) {
	rd := backends.StartRedis(t)
	s := testserver.Start(t, cfg(`
http {
  upstream "rd" {
    type    = "redis"
    servers = ["{RD}"]
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /get" {
      redis_pass  = "rd"
      redis_query = ["get", "api"]
      redis_reply = "value"
    }
  }
}`, "{RD}", rd.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := redis.Client(s.Config, "rd")
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := h.Do(ctx, "SET", "api", 42); err != nil || rep.Kind != redis.KindStatus || rep.Str != "OK" {
		t.Fatalf("SET: %+v %v", rep, err)
	}
	// The module's location reads what the API wrote, through the same pool.
	if resp := s.Get("/get"); resp.Body != "42" {
		t.Errorf("location after API SET: %q", resp.Body)
	}
	if rep, err := h.Do(ctx, "GET", "missing"); err != nil || !rep.IsNil() {
		t.Errorf("GET missing: %+v %v", rep, err)
	}
	if rep, _ := h.Do(ctx, "INCR", "api"); rep.Kind != redis.KindInt || rep.Int != 43 {
		t.Errorf("INCR: %+v", rep)
	}
	if rep, _ := h.Do(ctx, "LPUSH", "api", "x"); rep.Kind != redis.KindError || !strings.HasPrefix(rep.Str, "WRONGTYPE") || rep.Err() == nil {
		t.Errorf("error reply: %+v", rep)
	}
	reps, err := h.Pipeline(ctx, []any{"RPUSH", "l", "a", "b"}, []any{"LRANGE", "l", 0, -1})
	if err != nil || len(reps) != 2 || reps[0].Int != 2 || len(reps[1].Elems) != 2 || reps[1].Elems[1].Str != "b" {
		t.Errorf("pipeline: %+v %v", reps, err)
	}
	if raw, err := h.DoRaw(ctx, "GET", "api"); err != nil || string(raw) != "$2\r\n43\r\n" {
		t.Errorf("DoRaw: %q %v", raw, err)
	}
	if h.Redis("api").Get(ctx, "api").Val() != "43" {
		t.Errorf("go-redis client of the handle")
	}
	// An address not declared as an upstream gets an implicit pooled one.
	h2, err := redis.Client(s.Config, rd.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := h2.Do(ctx, "GET", "api"); err != nil || rep.Str != "43" {
		t.Errorf("implicit upstream: %+v %v", rep, err)
	}
	if h3, _ := redis.Client(s.Config, rd.Addr()); h3 != h2 {
		t.Errorf("a second Client call made a second handle")
	}
	// Concurrent API users share the pool.
	var wg sync.WaitGroup
	var fails atomic.Int64
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for k := 0; k < 20; k++ {
				if rep, err := h.Do(ctx, "INCR", "shared"); err != nil || rep.Kind != redis.KindInt {
					fails.Add(1)
				}
			}
		}(i)
	}
	wg.Wait()
	if fails.Load() != 0 {
		t.Errorf("%d concurrent commands failed", fails.Load())
	}
	if v := mustRedis(t, rd, "GET", "shared"); v != "1000" {
		t.Errorf("1000 concurrent INCRs gave %s", v)
	}
	if _, err := redis.Client(s.Config, "127.0.0.1:notaport"); err == nil {
		t.Errorf("Client accepted an invalid address")
	}
	// A dead server: an error that is not a timeout.
	dead := fmt.Sprintf("127.0.0.1:%d", backends.FreePort(t))
	hd, err := redis.Client(s.Config, dead)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hd.Do(ctx, "PING"); err == nil || redis.IsTimeout(err) {
		t.Errorf("dead server: %v", err)
	}
}

func TestRedisHashedServers(t *testing.T) {
	r1 := backends.StartRedis(t)
	r2 := backends.StartRedis(t)
	s := testserver.Start(t, cfg(`
http {
  upstream "shards" {
    type    = "redis"
    servers = ["{R1}", "{R2}"]
    hash    = { key = "${arg.key}", consistent = true }
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /set" {
      redis_pass  = "shards"
      redis_query = ["set", "${arg.key}", "v"]
    }
  }
}`, "{R1}", r1.Addr(), "{R2}", r2.Addr()))
	for i := 0; i < 40; i++ {
		if resp := s.Get(fmt.Sprintf("/set?key=k%d", i)); resp.Body != "+OK\r\n" {
			t.Fatalf("set: %q", resp.Body)
		}
	}
	n1, _ := r1.Cmd("DBSIZE")
	n2, _ := r2.Cmd("DBSIZE")
	a, _ := strconv.Atoi(n1)
	b, _ := strconv.Atoi(n2)
	if a+b != 40 || a == 0 || b == 0 {
		t.Errorf("40 keys spread as %d and %d", a, b)
	}
	// The same key goes to the same server every time.
	for i := 0; i < 40; i++ {
		s.Get(fmt.Sprintf("/set?key=k%d", i))
	}
	n1b, _ := r1.Cmd("DBSIZE")
	if n1b != n1 {
		t.Errorf("keys moved between servers: %s then %s", n1, n1b)
	}
}

func TestRedisCluster(t *testing.T) {
	var nodes []*backends.Process
	for i := 0; i < 3; i++ {
		dir := t.TempDir()
		nodes = append(nodes, backends.StartRedis(t, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "2000"))
	}
	// Slots split in three, nodes introduced to each other.
	ranges := [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}
	for i, n := range nodes {
		if _, err := n.Cmd("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(ranges[i][0]), strconv.Itoa(ranges[i][1])); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			if _, err := n.Cmd("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(nodes[0].Port)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !e2e.WaitFor(20*time.Second, func() bool {
		for _, n := range nodes {
			if st, _ := n.Cmd("CLUSTER", "INFO"); !strings.Contains(st, "cluster_state:ok") || !strings.Contains(st, "cluster_known_nodes:3") {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("cluster did not form")
	}
	s := testserver.Start(t, cfg(`
http {
  upstream "cluster" {
    type      = "redis"
    cluster   = true
    servers   = ["{N0}"]
    keepalive = 4
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /set" {
      redis_pass  = "cluster"
      redis_query = ["set", "${arg.key}", "${arg.v}"]
    }
    location "= /get" {
      redis_pass  = "cluster"
      redis_query = ["get", "${arg.key}"]
      redis_reply = "value"
    }
  }
}`, "{N0}", nodes[0].Addr()))
	for i := 0; i < 30; i++ {
		if resp := s.Get(fmt.Sprintf("/set?key=ck%d&v=%d", i, i)); resp.Body != "+OK\r\n" {
			t.Fatalf("cluster set: %d %q", resp.Status, resp.Body)
		}
	}
	for i := 0; i < 30; i++ {
		if resp := s.Get(fmt.Sprintf("/get?key=ck%d", i)); resp.Body != strconv.Itoa(i) {
			t.Errorf("cluster get ck%d: %d %q", i, resp.Status, resp.Body)
		}
	}
	for i, n := range nodes {
		if v, _ := n.Cmd("DBSIZE"); v == "0" {
			t.Errorf("node %d holds no key: the cluster client does not route by slot", i)
		}
	}
}

func TestRedisSentinel(t *testing.T) {
	master := backends.StartRedis(t)
	mustRedis(t, master, "SET", "foo", "from-master")
	port := backends.FreePort(t)
	dir := t.TempDir()
	confPath := filepath.Join(dir, "sentinel.conf")
	os.WriteFile(confPath, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 %d 1\nsentinel down-after-milliseconds mymaster 5000\n", port, master.Port)), 0o644)
	backends.StartRedisArgv(t, port, confPath, "--sentinel")
	s := testserver.Start(t, cfg(`
http {
  upstream "ha" {
    type     = "redis"
    sentinel = { master = "mymaster" }
    servers  = ["127.0.0.1:{SP}"]
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /get" {
      redis_pass  = "ha"
      redis_query = ["get", "foo"]
      redis_reply = "value"
    }
  }
}`, "{SP}", strconv.Itoa(port)))
	waitOK(t, s, "/get")
	if resp := s.Get("/get"); resp.Body != "from-master" {
		t.Errorf("through sentinel: %d %q", resp.Status, resp.Body)
	}
}

func TestRedisConfigErrors(t *testing.T) {
	cases := []struct{ conf, want string }{
		{`location "/" { redis_pass = "127.0.0.1:6379" }`, "needs redis_query"},
		{`location "/" { redis_query = "get" }`, "redis_query is a command"},
		{`location "/" { redis_reply = "json" }`, "redis_reply is"},
		{"location \"/\" {\nredis_pass = \"127.0.0.1:6379\"\nredis_raw_query = \"\\\"unbalanced\"\n}", "unbalanced quotes"},
	}
	for _, c := range cases {
		_, err := testserver.BuildString(t, "http {\n server {\n listen = [\"127.0.0.1:0\"]\n "+c.conf+"\n }\n}\n", nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.conf, err, c.want)
		}
	}
	_, err := testserver.BuildString(t, `
http {
  upstream "rd" {
    type    = "redis"
    servers = ["127.0.0.1:6379"]
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/" { proxy_pass = "http://rd" }
  }
}`, nil)
	if err == nil || !strings.Contains(err.Error(), "is of type redis") {
		t.Errorf("proxy_pass to a redis upstream: %v", err)
	}
}

// rawClient is one keepalive HTTP/1.1 connection to the server under test.
type rawClient struct {
	t  *testing.T
	c  *http.Client
	tr *http.Transport
	to string
}

func newRawClient(t *testing.T, addr string) *rawClient {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	return &rawClient{t: t, tr: tr, c: &http.Client{Transport: tr, Timeout: 10 * time.Second}, to: addr}
}

func (c *rawClient) get(path string) int {
	resp, err := c.c.Get("http://" + c.to + path)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (c *rawClient) close() { c.tr.CloseIdleConnections() }

// fakeServer accepts connections and answers each line it reads as answer says,
// closing the connection when answer asks to: a backend that dies in the middle of a
// reply.
func fakeServer(t *testing.T, answer func(line string) (reply string, close bool)) string {
	return testserver.TCPServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			reply, closeNow := answer(line)
			if reply != "" {
				io.WriteString(c, reply)
			}
			if closeNow {
				return
			}
		}
	})
}

func TestRedisBackendClosesMidReply(t *testing.T) {
	// Commands come as RESP arrays: the name is a line of its own.
	addr := fakeServer(t, func(line string) (string, bool) {
		switch strings.ToUpper(strings.TrimSpace(line)) {
		case "HELLO":
			return "-ERR unknown command 'HELLO'\r\n", false
		case "GET":
			return "$10\r\nabc", true
		}
		return "", false
	})
	s := testserver.Start(t, cfg(`
http {
  upstream "pooled" {
    type         = "redis"
    servers      = ["{A}"]
    read_timeout = "1s"
  }
  upstream "short" {
    type         = "redis"
    servers      = ["{A}"]
    keepalive    = 0
    read_timeout = "1s"
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /pooled" {
      redis_pass  = "pooled"
      redis_query = ["get", "k"]
    }
    location "= /short" {
      redis_pass  = "short"
      redis_query = ["get", "k"]
    }
  }
}`, "{A}", addr))
	for _, path := range []string{"/pooled", "/short"} {
		if st := s.Status(path); st != 502 {
			t.Errorf("%s: backend closed mid-reply: %d, want 502", path, st)
		}
	}
}

// The caller's context bounds the wait even when the upstream's timeouts are long.
func TestRedisGoAPIContextDeadline(t *testing.T) {
	rd := backends.StartRedis(t)
	s := testserver.Start(t, cfg(`
http {
  upstream "rd" {
    type    = "redis"
    servers = ["{RD}"]
  }
  upstream "short" {
    type      = "redis"
    servers   = ["{RD}"]
    keepalive = 0
  }
  server {
    listen = ["127.0.0.1:0"]
  }
}`, "{RD}", rd.Addr()))
	for _, name := range []string{"rd", "short"} {
		h, err := redis.Client(s.Config, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Do(context.Background(), "PING"); err != nil {
			t.Fatalf("%s: PING: %v", name, err)
		}
		rd.Pause()
		for _, pipeline := range []bool{false, true} {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			start := time.Now()
			if pipeline {
				_, err = h.Pipeline(ctx, []any{"PING"}, []any{"PING"})
			} else {
				_, err = h.Do(ctx, "PING")
			}
			cancel()
			if err == nil || !redis.IsTimeout(err) {
				t.Errorf("%s (pipeline %v) with redis hung: %v, want a timeout", name, pipeline, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s (pipeline %v): returned after %v, the context allowed 200ms", name, pipeline, d)
			}
		}
		rd.Resume()
	}
}

// After redis restarts, the pooled connections are dead; a command is not lost to
// them, even one that must not run twice.
func TestRedisRestartBetweenRequests(t *testing.T) {
	rd := backends.StartRedis(t)
	s := testserver.Start(t, cfg(`
http {
  upstream "rd" {
    type      = "redis"
    servers   = ["{RD}"]
    keepalive = 4
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /incr" {
      redis_pass  = "rd"
      redis_query = ["incr", "n"]
      redis_reply = "value"
    }
    location "= /pipe" {
      redis_pass  = "rd"
      redis_query = [["incr", "p"], ["incr", "p"]]
      redis_reply = "value"
    }
  }
}`, "{RD}", rd.Addr()))
	for i := 0; i < 3; i++ {
		s.Get("/incr")
		s.Get("/pipe")
	}
	// Stop returns once redis-server has exited: the kernel has closed its end of
	// every pooled connection, and the pool's health check at the next command sees it.
	rd.Stop()
	rd.Start()
	if resp := s.Get("/incr"); resp.Status != 200 || resp.Body != "1" {
		t.Errorf("INCR after a restart: %d %q", resp.Status, resp.Body)
	}
	if resp := s.Get("/pipe"); resp.Status != 200 || resp.Body != "1\n2" {
		t.Errorf("pipeline after a restart: %d %q", resp.Status, resp.Body)
	}
}

// A restarted redis is used by the next request: go-redis's pool stops dialling after
// as many failed dials as it has connections and probes once a second; the handle
// dials itself and replaces the client when the server is back.
func TestRedisBackAtOnceAfterRestart(t *testing.T) {
	rd := backends.StartRedis(t)
	s := testserver.Start(t, cfg(`
http {
  upstream "rd" {
    type      = "redis"
    servers   = ["{RD}"]
    keepalive = 4
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /incr" {
      redis_pass  = "rd"
      redis_query = ["incr", "n"]
      redis_reply = "value"
    }
  }
}`, "{RD}", rd.Addr()))
	if resp := s.Get("/incr"); resp.Status != 200 {
		t.Fatalf("INCR: %d %q", resp.Status, resp.Body)
	}
	rd.Stop()
	// Enough failed dials to trip the pool's breaker (4 connections).
	for i := 0; i < 10; i++ {
		if resp := s.Get("/incr"); resp.Status != 502 {
			t.Errorf("INCR with redis stopped: %d, want 502", resp.Status)
		}
	}
	rd.Start()
	for i := 0; i < 5; i++ {
		if resp := s.Get("/incr"); resp.Status != 200 || resp.Body != strconv.Itoa(i+1) {
			t.Errorf("INCR %d right after the restart: %d %q", i, resp.Status, resp.Body)
		}
	}
}
