package memc_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/memc"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

// A test module that copies $memc_flags into a response header, as
// add_header X-Flags $memc_flags would.
var _ = testserver.VarHeaders("test_flags", map[string]string{"memc_flags": "X-Flags"})

func cfg(s string, kv ...string) string { return strings.NewReplacer(kv...).Replace(s) }

const memcConf = `
http {
  upstream "mc" {
    type      = "memcached"
    servers   = ["{MC}"]
    keepalive = 8
  }
  server {
    listen = ["127.0.0.1:0"]
    test_flags = true
    location "= /memc" {
      memc_cmd     = "${arg.cmd}"
      memc_key     = "${arg.key}"
      memc_value   = "${arg.val}"
      memc_flags   = "${arg.flags}"
      memc_exptime = "${arg.exptime}"
      memc_pass    = "mc"
    }
    location "= /body" {
      memc_cmd  = "${arg.cmd}"
      memc_key  = "${arg.key}"
      memc_pass = "mc"
    }
    location "= /rest" {
      memc_key  = "${arg.key}"
      memc_pass = "mc"
    }
    location "= /limited" {
      memc_cmd          = "${arg.cmd}"
      memc_key          = "${arg.key}"
      memc_cmds_allowed = ["get"]
      memc_pass         = "mc"
    }
    location "= /direct" {
      memc_cmd  = "get"
      memc_key  = "${arg.key}"
      memc_pass = "{MC}"
    }
  }
}`

func TestMemcCommands(t *testing.T) {
	mcd := backends.StartMemcached(t)
	s := testserver.Start(t, cfg(memcConf, "{MC}", mcd.Addr()))
	steps := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/memc?cmd=get&key=k", "", 404, ""},
		{"GET", "/memc?cmd=set&key=k&val=hello&flags=123", "", 201, "STORED\r\n"},
		{"GET", "/memc?cmd=get&key=k", "", 200, "hello"},
		{"GET", "/memc?cmd=add&key=k&val=x", "", 200, "NOT_STORED\r\n"},
		{"GET", "/memc?cmd=add&key=k2&val=new", "", 201, "STORED\r\n"},
		{"GET", "/memc?cmd=replace&key=missing&val=x", "", 200, "NOT_STORED\r\n"},
		{"GET", "/memc?cmd=replace&key=k2&val=replaced", "", 201, "STORED\r\n"},
		{"GET", "/memc?cmd=append&key=k2&val=-end", "", 201, "STORED\r\n"},
		{"GET", "/memc?cmd=prepend&key=k2&val=start-", "", 201, "STORED\r\n"},
		{"GET", "/memc?cmd=get&key=k2", "", 200, "start-replaced-end"},
		{"GET", "/memc?cmd=append&key=missing&val=x", "", 200, "NOT_STORED\r\n"},
		{"GET", "/memc?cmd=set&key=n&val=10", "", 201, "STORED\r\n"},
		{"GET", "/memc?cmd=incr&key=n&val=5", "", 200, "15\r\n"},
		{"GET", "/memc?cmd=decr&key=n&val=20", "", 200, "0\r\n"},
		{"GET", "/memc?cmd=incr&key=missing&val=1", "", 404, ""},
		{"GET", "/memc?cmd=incr&key=k&val=1", "", 502, ""},
		{"GET", "/memc?cmd=incr&key=n&val=abc", "", 400, ""},
		{"GET", "/memc?cmd=touch&key=k&exptime=100", "", 200, "TOUCHED\r\n"},
		{"GET", "/memc?cmd=touch&key=missing&exptime=100", "", 404, ""},
		{"GET", "/memc?cmd=delete&key=k2", "", 200, "DELETED\r\n"},
		{"GET", "/memc?cmd=delete&key=k2", "", 404, ""},
		{"GET", "/memc?cmd=get&key=a%20b", "", 404, ""},
		{"GET", "/memc?cmd=set&key=a%20b&val=spaced", "", 201, "STORED\r\n"},
		{"GET", "/memc?cmd=bogus&key=k", "", 400, ""},
		{"GET", "/memc?cmd=get", "", 400, ""},
		{"GET", "/memc?cmd=set&key=k&val=1&flags=x", "", 400, ""},
		{"PUT", "/rest?key=r", "put body", 201, "STORED\r\n"},
		{"GET", "/rest?key=r", "", 200, "put body"},
		{"POST", "/rest?key=r", "post body", 200, "NOT_STORED\r\n"},
		{"POST", "/body?cmd=set&key=b", "the request body", 201, "STORED\r\n"},
		{"GET", "/body?cmd=get&key=b", "", 200, "the request body"},
		{"DELETE", "/rest?key=r", "", 200, "DELETED\r\n"},
		{"PATCH", "/rest?key=r", "", 405, ""},
		{"GET", "/limited?cmd=get&key=b", "", 200, "the request body"},
		{"GET", "/limited?cmd=delete&key=b", "", 403, ""},
		{"GET", "/direct?key=b", "", 200, "the request body"},
	}
	for _, st := range steps {
		resp := s.Do(st.method, st.path, st.body)
		if resp.Status != st.status || (st.status < 300 && resp.Body != st.want) {
			t.Errorf("%s %s: %d %q, want %d %q", st.method, st.path, resp.Status, resp.Body, st.status, st.want)
		}
	}
	// Flags and escaped keys as memcached stored them.
	if raw, _ := backends.Memcached(mcd.Addr(), "get k"); !strings.HasPrefix(raw, "VALUE k 123 5\r\n") {
		t.Errorf("stored flags: %q", raw)
	}
	// $arg_key is not decoded, as in nginx: its "%" is escaped, as memc does.
	if raw, _ := backends.Memcached(mcd.Addr(), "get a%2520b"); !strings.Contains(raw, "spaced") {
		t.Errorf("escaped key: %q", raw)
	}
	if resp := s.Get("/memc?cmd=get&key=k"); resp.Header.Get("X-Flags") != "123" {
		t.Errorf("$memc_flags = %q", resp.Header.Get("X-Flags"))
	}
	if resp := s.Get("/memc?cmd=version"); resp.Status != 200 || !strings.HasPrefix(resp.Body, "VERSION 1.") {
		t.Errorf("version: %d %q", resp.Status, resp.Body)
	}
	if resp := s.Get("/memc?cmd=stats"); resp.Status != 200 || !strings.HasPrefix(resp.Body, "STAT pid ") || !strings.HasSuffix(resp.Body, "END\r\n") {
		t.Errorf("stats: %d %q", resp.Status, resp.Body)
	}
	if resp := s.Get("/memc?cmd=flush_all"); resp.Status != 200 || resp.Body != "OK\r\n" {
		t.Errorf("flush_all: %d %q", resp.Status, resp.Body)
	}
	if resp := s.Get("/memc?cmd=get&key=b"); resp.Status != 404 {
		t.Errorf("get after flush_all: %d", resp.Status)
	}
	// exptime: an item set to expire in 1s is gone 2s later.
	s.Get("/memc?cmd=set&key=e&val=v&exptime=1")
	if resp := s.Get("/memc?cmd=get&key=e"); resp.Status != 200 {
		t.Errorf("before expiry: %d", resp.Status)
	}
	// memcached counts expiry in whole seconds: wait for the item's to pass.
	if !e2e.WaitFor(5*time.Second, func() bool { return s.Get("/memc?cmd=get&key=e").Status == 404 }) {
		t.Errorf("after expiry: %d", s.Get("/memc?cmd=get&key=e").Status)
	}
}

func TestMemcConsistentHashing(t *testing.T) {
	m1 := backends.StartMemcached(t)
	m2 := backends.StartMemcached(t)
	s := testserver.Start(t, cfg(`
http {
  upstream "ring" {
    type    = "memcached"
    servers = ["{M1}", "{M2}"]
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /memc" {
      memc_cmd   = "${arg.cmd}"
      memc_key   = "${arg.key}"
      memc_value = "v${arg.key}"
      memc_pass  = "ring"
    }
  }
}`, "{M1}", m1.Addr(), "{M2}", m2.Addr()))
	// 200 keys: with 60, the CRC32 ring (nginx's) put fewer than a sixth of them on one
	// of the two servers for about 1 port pair in 60 (simulated over 2,000 pairs); with
	// 200, the smallest share seen was 21%.
	const keys = 200
	for i := 0; i < keys; i++ {
		if resp := s.Get(fmt.Sprintf("/memc?cmd=set&key=k%d", i)); resp.Status != 201 {
			t.Fatalf("set: %d", resp.Status)
		}
	}
	st1, _ := m1.Stats()
	st2, _ := m2.Stats()
	a, _ := strconv.Atoi(st1["curr_items"])
	b, _ := strconv.Atoi(st2["curr_items"])
	if a+b != keys || a < keys/6 || b < keys/6 {
		t.Errorf("%d keys spread as %d and %d", keys, a, b)
	}
	for i := 0; i < keys; i++ {
		if resp := s.Get(fmt.Sprintf("/memc?cmd=get&key=k%d", i)); resp.Body != fmt.Sprintf("vk%d", i) {
			t.Errorf("get k%d: %d %q", i, resp.Status, resp.Body)
		}
	}
	// A server going away moves only its own keys: the others' keys stay found.
	m2.Stop()
	found := 0
	for i := 0; i < keys; i++ {
		if resp := s.Get(fmt.Sprintf("/memc?cmd=get&key=k%d", i)); resp.Status == 200 {
			found++
		}
	}
	if found != a {
		t.Errorf("with one server down %d keys found, want the %d of the live server", found, a)
	}
}

func TestMemcPoolBoundAndFaults(t *testing.T) {
	mcd := backends.StartMemcached(t)
	backends.Memcached(mcd.Addr(), "set foo 0 0 3\r\nbar")
	s := testserver.Start(t, cfg(`
http {
  upstream "mc" {
    type         = "memcached"
    servers      = ["{MC}"]
    keepalive    = 4
    read_timeout = "300ms"
  }
  upstream "short" {
    type         = "memcached"
    servers      = ["{MC}"]
    keepalive    = 0
    read_timeout = "300ms"
  }
  server {
    listen = ["127.0.0.1:0"]
    keepalive_requests = 100000
    location "= /get" {
      memc_cmd  = "get"
      memc_key  = "foo"
      memc_pass = "mc"
    }
    location "= /set" {
      memc_cmd   = "set"
      memc_key   = "foo"
      memc_value = "bar"
      memc_pass  = "mc"
    }
    location "= /short" {
      memc_cmd  = "get"
      memc_key  = "foo"
      memc_pass = "short"
    }
    location "= /other" { return = { code = 200, body = "other" } }
  }
}`, "{MC}", mcd.Addr()))
	if resp := s.Get("/get"); resp.Body != "bar" {
		t.Fatalf("get: %d %q", resp.Status, resp.Body)
	}
	var bad atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				path := "/get"
				if (i+k)%4 == 0 {
					path = "/set"
				}
				resp, err := c.Get("http://" + s.Addr + path)
				if err != nil {
					bad.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 300 {
					bad.Add(1)
				}
			}
		}(i)
	}
	maxConns := 0
	// Sample memcached's connections while 2,000 requests are served.
	base := s.Engine.Counters()["requests"]
	e2e.WaitFor(30*time.Second, func() bool {
		if n, err := mcd.MemcachedConnections(); err == nil && n > maxConns {
			maxConns = n
		}
		return s.Engine.Counters()["requests"]-base >= 2000
	})
	close(stop)
	wg.Wait()
	t.Logf("64 concurrent clients: at most %d memcached connections", maxConns)
	if maxConns > 4 || maxConns < 1 {
		t.Errorf("memcached saw %d connections from the worker, keepalive is 4", maxConns)
	}
	if bad.Load() != 0 {
		t.Errorf("%d requests failed under load", bad.Load())
	}
	// keepalive = 0 closes its connection after each request.
	for i := 0; i < 3; i++ {
		if resp := s.Get("/short"); resp.Body != "bar" {
			t.Errorf("short: %d %q", resp.Status, resp.Body)
		}
	}
	// Hung server: 504 within read_timeout, other locations keep working.
	mcd.Pause()
	for _, path := range []string{"/get", "/short"} {
		start := time.Now()
		done := make(chan int, 1)
		go func() { done <- s.Status(path) }()
		if resp := s.Get("/other"); resp.Body != "other" {
			t.Errorf("other location while memcached hangs: %q", resp.Body)
		}
		if st := <-done; st != 504 {
			t.Errorf("%s with memcached hung: %d, want 504", path, st)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: 504 after %v", path, d)
		}
	}
	mcd.Resume()
	// Killed: 502; restarted: the pool drops its dead connections and recovers.
	mcd.Stop()
	for _, path := range []string{"/get", "/short"} {
		if resp := s.Get(path); resp.Status != 502 {
			t.Errorf("%s with memcached stopped: %d, want 502", path, resp.Status)
		}
	}
	mcd.Start()
	if resp := s.Get("/set"); resp.Status != 201 {
		t.Errorf("set after restart: %d", resp.Status)
	}
	if resp := s.Get("/get"); resp.Body != "bar" {
		t.Errorf("get after restart: %d %q", resp.Status, resp.Body)
	}
}

func TestMemcGoAPI(t *testing.T) {
	mcd := backends.StartMemcached(t)
	s := testserver.Start(t, cfg(memcConf, "{MC}", mcd.Addr()))
	h, err := memc.Client(s.Config, "mc")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Set(&memcache.Item{Key: "api", Value: []byte("from go"), Flags: 7}); err != nil {
		t.Fatal(err)
	}
	if resp := s.Get("/memc?cmd=get&key=api"); resp.Body != "from go" || resp.Header.Get("X-Flags") != "7" {
		t.Errorf("location after API Set: %q flags %q", resp.Body, resp.Header.Get("X-Flags"))
	}
	if it, err := h.Get("api"); err != nil || string(it.Value) != "from go" {
		t.Errorf("Get: %v %v", it, err)
	}
	if _, err := h.Get("missing"); err != memc.ErrCacheMiss {
		t.Errorf("Get missing: %v", err)
	}
	if err := h.Add(&memcache.Item{Key: "api", Value: []byte("x")}); err != memc.ErrNotStored {
		t.Errorf("Add existing: %v", err)
	}
	h.Set(&memcache.Item{Key: "cnt", Value: []byte("1")})
	if v, err := h.Increment("cnt", 9); err != nil || v != 10 {
		t.Errorf("Increment: %d %v", v, err)
	}
	if v, err := h.Decrement("cnt", 3); err != nil || v != 7 {
		t.Errorf("Decrement: %d %v", v, err)
	}
	if err := h.Append(&memcache.Item{Key: "api", Value: []byte("!")}); err != nil {
		t.Errorf("Append: %v", err)
	}
	if err := h.Touch("api", 100); err != nil {
		t.Errorf("Touch: %v", err)
	}
	if out, err := h.Admin(nil, "version"); err != nil || !strings.HasPrefix(out, "VERSION") {
		t.Errorf("Admin version: %q %v", out, err)
	}
	if err := h.Delete("api"); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if err := h.FlushAll(0); err != nil {
		t.Errorf("FlushAll: %v", err)
	}
	if _, err := h.Get("cnt"); err != memc.ErrCacheMiss {
		t.Errorf("after FlushAll: %v", err)
	}
	h2, err := memc.Client(s.Config, mcd.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.Set(&memcache.Item{Key: "implicit", Value: []byte("1")}); err != nil {
		t.Errorf("implicit upstream: %v", err)
	}
	dead, err := memc.Client(s.Config, fmt.Sprintf("127.0.0.1:%d", backends.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Get("x"); err == nil || memc.IsTimeout(err) {
		t.Errorf("dead server: %v", err)
	}
}

func TestMemcConfigErrors(t *testing.T) {
	cases := []struct{ conf, want string }{
		{"location \"/\" {\nmemc_cmd = \"frobnicate\"\nmemc_pass = \"127.0.0.1:11211\"\n}", "unknown memcached command"},
		{`location "/" { memc_cmds_allowed = ["get", "explode"] }`, "unknown memcached command"},
	}
	for _, c := range cases {
		_, err := testserver.BuildString(t, "http {\n server {\n listen = [\"127.0.0.1:0\"]\n "+c.conf+"\n }\n}\n", nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.conf, err, c.want)
		}
	}
	_, err := testserver.BuildString(t, "http {\nupstream \"m\" {\ntype = \"memcached\"\nservers = [\"127.0.0.1:1\"]\nbalance = \"round_robin\"\n}\n}\n", nil)
	if err == nil || !strings.Contains(err.Error(), "memcached upstreams spread keys by hashing") {
		t.Errorf("round robin memcached: %v", err)
	}
}

func TestMemcBackendClosesMidReply(t *testing.T) {
	addr := testserver.TCPServer(t, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "VALUE foo 0 10\r\nabc")
	})
	s := testserver.Start(t, cfg(`
http {
  upstream "mc" {
    type         = "memcached"
    servers      = ["{A}"]
    read_timeout = "1s"
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /get" {
      memc_cmd  = "get"
      memc_key  = "foo"
      memc_pass = "mc"
    }
  }
}`, "{A}", addr))
	if st := s.Status("/get"); st != 502 {
		t.Errorf("backend closed mid-reply: %d, want 502", st)
	}
}

// After memcached restarts, the pooled connections are dead; the first command after
// a pause notices that before sending and goes on a new connection, even a command
// that must not run twice.
func TestMemcRestartBetweenRequests(t *testing.T) {
	mcd := backends.StartMemcached(t)
	s := testserver.Start(t, cfg(memcConf, "{MC}", mcd.Addr()))
	for i := 0; i < 3; i++ {
		if resp := s.Get(fmt.Sprintf("/memc?cmd=set&key=w%d&val=1", i)); resp.Status != 201 {
			t.Fatalf("warm-up: %d", resp.Status)
		}
	}
	mcd.Stop()
	mcd.Start()
	// The pause is under test: a connection idle for over a second is checked before
	// reuse.
	time.Sleep(1100 * time.Millisecond)
	for _, path := range []string{"/memc?cmd=add&key=a&val=1", "/memc?cmd=incr&key=a&val=1", "/memc?cmd=delete&key=a"} {
		if resp := s.Get(path); resp.Status >= 300 {
			t.Errorf("%s after a restart: %d", path, resp.Status)
		}
	}
}

// Concurrent gets share multi-gets: every request still gets its own key's value and
// flags (or 404 for a key that is missing, in the same batch as hits), and the worker
// keeps at most two gets in flight, so memcached sees at most two connections where a
// get per connection would have used the whole pool of 8.
func TestMemcGetBatching(t *testing.T) {
	mcd := backends.StartMemcached(t)
	for i := 0; i < 10; i++ {
		if _, err := backends.Memcached(mcd.Addr(), fmt.Sprintf("set k%d %d 0 %d\r\nvalue-%d", i, 100+i, len(fmt.Sprint("value-", i)), i)); err != nil {
			t.Fatal(err)
		}
	}
	s := testserver.Start(t, cfg(memcConf, "{MC}", mcd.Addr()))
	var bad atomic.Int64
	var total atomic.Int64
	var firstErr sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 48; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				n := (i + k) % 12 // k10 and k11 are missing
				resp, err := c.Get(s.URL(fmt.Sprintf("/memc?cmd=get&key=k%d", n)))
				if err != nil {
					bad.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				total.Add(1)
				want, wantStatus, wantFlags := fmt.Sprint("value-", n), 200, strconv.Itoa(100+n)
				if n >= 10 {
					want, wantStatus, wantFlags = "", 404, ""
				}
				if resp.StatusCode != wantStatus || (wantStatus == 200 && (string(body) != want || resp.Header.Get("X-Flags") != wantFlags)) {
					bad.Add(1)
					firstErr.Do(func() {
						t.Errorf("get k%d: %d %q flags %q, want %d %q flags %q", n, resp.StatusCode, body, resp.Header.Get("X-Flags"), wantStatus, want, wantFlags)
					})
				}
			}
		}(i)
	}
	maxConns := 0
	// Sample memcached's connections while 500 gets are answered.
	e2e.WaitFor(30*time.Second, func() bool {
		if n, err := mcd.MemcachedConnections(); err == nil && n > maxConns {
			maxConns = n
		}
		return total.Load() >= 500
	})
	close(stop)
	wg.Wait()
	t.Logf("%d gets from 48 clients, at most %d memcached connections", total.Load(), maxConns)
	if bad.Load() != 0 {
		t.Errorf("%d of %d requests failed or got the wrong answer", bad.Load(), total.Load())
	}
	if total.Load() < 100 {
		t.Errorf("only %d requests done", total.Load())
	}
	if maxConns > 2 {
		t.Errorf("memcached saw %d connections: gets were not batched (at most 2 in flight)", maxConns)
	}
}
