package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/e2e"
)

// patternReader yields an endless repeating byte pattern of period 251.
type patternReader struct{ n int64 }

var patternBytes = func() []byte {
	b := make([]byte, 251*256)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

func (p *patternReader) Read(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		k := copy(b, patternBytes[int(p.n%251):])
		b, p.n, total = b[k:], p.n+int64(k), total+k
	}
	return total, nil
}

// consumePattern reads a body to its end and checks it against the pattern.
func consumePattern(r io.Reader) (int64, bool) {
	buf := make([]byte, 64<<10)
	var n int64
	ok := true
	for {
		k, err := r.Read(buf)
		for done := 0; done < k; {
			off := int((n + int64(done)) % 251)
			m := min(k-done, len(patternBytes)-off)
			ok = ok && bytes.Equal(buf[done:done+m], patternBytes[off:off+m])
			done += m
		}
		n += int64(k)
		if err != nil {
			return n, ok && err == io.EOF
		}
	}
}

// procKB reads a field of /proc/pid/status in kB (VmRSS, VmHWM).
func procKB(pid int, field string) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return -1
}

// A gigabyte goes through a worker each way, streamed: the worker's peak resident
// memory stays a small fraction of it.
func TestProxyGigabyteStreamsWithBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 GB through the proxy")
	}
	const size = int64(1 << 30)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/download" {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			io.Copy(w, io.LimitReader(&patternReader{}, size))
			return
		}
		n, ok := consumePattern(r.Body)
		fmt.Fprintf(w, "%d %v", n, ok)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	inst := e2e.Start(t, `
worker_processes = 1
error_log        = { path = "logs/error.log", level = "warn" }
http {
  upstream "big" {
    servers   = ["`+ln.Addr().String()+`"]
    keepalive = 4
  }
  server {
    listen               = ["127.0.0.1:{{PORT}}"]
    client_max_body_size = 0
    location "/" { proxy_pass = "http://big" }
  }
}
`, nil)
	workers := e2e.Workers(inst.MasterPid())
	if len(workers) != 1 {
		t.Fatalf("workers: %v", workers)
	}
	w := workers[0]
	before := procKB(w, "VmRSS")
	client := &http.Client{Timeout: 5 * time.Minute}
	start := time.Now()
	resp, err := client.Get("http://" + inst.Addr() + "/download")
	if err != nil {
		t.Fatal(err)
	}
	n, ok := consumePattern(resp.Body)
	resp.Body.Close()
	if n != size || !ok || resp.ContentLength != size {
		t.Fatalf("download: %d bytes of %d (Content-Length %d), intact %v", n, size, resp.ContentLength, ok)
	}
	down := time.Since(start)
	start = time.Now()
	req, _ := http.NewRequest("POST", "http://"+inst.Addr()+"/upload", io.LimitReader(&patternReader{}, size))
	req.ContentLength = -1 // chunked: the proxy cannot know the length either
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != fmt.Sprintf("%d true", size) {
		t.Fatalf("upload: backend got %q", b)
	}
	up := time.Since(start)
	peak := procKB(w, "VmHWM")
	t.Logf("1 GB download in %v, 1 GB upload in %v; worker RSS %d kB before, peak %d kB", down.Round(time.Millisecond), up.Round(time.Millisecond), before, peak)
	if peak > 64<<10 {
		t.Errorf("worker peak RSS %d kB while streaming 1 GB each way", peak)
	}
}

// The worker's pools stay within keepalive from the backends' point of view, under
// concurrent load on a real worker process (GOMAXPROCS=1).
func TestBackendPoolsInWorker(t *testing.T) {
	rd := backends.StartRedis(t)
	mc := backends.StartMemcached(t)
	if _, err := rd.Cmd("SET", "foo", "bar"); err != nil {
		t.Fatal(err)
	}
	backends.Memcached(mc.Addr(), "set foo 0 0 3\r\nbar")
	inst := e2e.Start(t, `
worker_processes = 1
error_log        = { path = "logs/error.log", level = "warn" }
http {
  upstream "rd" {
    type      = "redis"
    servers   = ["`+rd.Addr()+`"]
    keepalive = 8
  }
  upstream "mc" {
    type      = "memcached"
    servers   = ["`+mc.Addr()+`"]
    keepalive = 8
  }
  server {
    listen = ["127.0.0.1:{{PORT}}"]
    location "= /redis" {
      redis_pass  = "rd"
      redis_query = ["get", "foo"]
      redis_reply = "value"
    }
    location "= /memc" {
      memc_cmd  = "get"
      memc_key  = "foo"
      memc_pass = "mc"
    }
  }
}
`, nil)
	for _, c := range []struct {
		path  string
		count func() (int, error)
	}{{"/redis", rd.RedisClients}, {"/memc", mc.MemcachedConnections}} {
		load := e2e.StartLoad(inst.Addr(), c.path, 64, true)
		peak := 0
		// Sample the backend's connections while 3,000 requests are answered.
		e2e.WaitFor(30*time.Second, func() bool {
			if n, err := c.count(); err == nil && n > peak {
				peak = n
			}
			return load.Answered() >= 3000
		})
		res := load.Stop()
		t.Logf("%s, 64 clients: %v; backend connections at most %d", c.path, res, peak)
		if res.Failed != 0 || res.Requests == 0 {
			t.Errorf("%s: %v", c.path, res)
		}
		if peak > 8 || peak < 1 {
			t.Errorf("%s: the backend saw %d connections, keepalive is 8", c.path, peak)
		}
	}
}

// scripts/bench/spindle.hcl, with its placeholders filled in, serves every workload.
func TestBenchConfigServes(t *testing.T) {
	rd := backends.StartRedis(t)
	mc := backends.StartMemcached(t)
	rd.Cmd("SET", "foo", "bar")
	backends.Memcached(mc.Addr(), "set foo 0 0 3\r\nbar")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hello" {
			io.WriteString(w, "hello world\n")
			return
		}
		http.NotFound(w, r)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	src, err := os.ReadFile("scripts/bench/spindle.hcl")
	if err != nil {
		t.Fatal(err)
	}
	config := strings.NewReplacer("REDISPORT", strconv.Itoa(rd.Port), "MEMCPORT", strconv.Itoa(mc.Port),
		"UPPORT", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), "127.0.0.1:PORT", "127.0.0.1:{{PORT}}",
		`worker_cpu_affinity = ["1"]`, "").Replace(string(src))
	inst := e2e.Start(t, config, nil)
	for path, want := range map[string]string{"/redis": "bar", "/redis_fast": "bar\n", "/redis_short": "bar", "/memc": "bar", "/proxy": "hello world\n"} {
		st, body, err := inst.Get(path)
		if err != nil || st != 200 || body != want {
			t.Errorf("%s: %d %q %v", path, st, body, err)
		}
	}
}
