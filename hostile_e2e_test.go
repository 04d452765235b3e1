package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

const slowlorisConf = `
worker_processes = 1
events {
  worker_connections = 4096
}
http {
  client_header_timeout = "2s"
  server {
    listen = ["127.0.0.1:{{PORT}} backlog=4096"]
    location "= /hello" { return = { code = 200, body = "hello\n" } }
    location "= /status" { stub_status = true }
  }
}
`

// 1,000 slowloris connections (half-sent heads) cost a worker little, are all closed
// at client_header_timeout, do not keep /hello out, and the worker's RSS returns near
// its baseline once they are gone.
func TestSlowlorisMemory(t *testing.T) {
	inst := e2e.Start(t, slowlorisConf, nil)
	workers := e2e.Workers(inst.MasterPid())
	if len(workers) != 1 {
		t.Fatalf("workers: %v", workers)
	}
	w := workers[0]
	for i := 0; i < 20; i++ {
		inst.Get("/hello")
	}
	base := procKB(w, "VmRSS")
	const n = 1000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", inst.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	}
	if st, body, err := inst.Get("/hello"); st != 200 || body != "hello\n" {
		t.Errorf("/hello during the attack: %d %q %v", st, body, err)
	}
	// The connections are taken in the worker's own time: wait for them all.
	e2e.WaitFor(5*time.Second, func() bool {
		_, status, err := inst.Get("/status")
		var active int
		fmt.Sscanf(status, "Active connections: %d", &active)
		return err == nil && active > n
	})
	peak := procKB(w, "VmRSS")
	t.Logf("worker RSS: %d KB idle, %d KB with %d half-sent heads (%d bytes each)", base, peak, n, (peak-base)*1024/n)
	if peak-base > 8<<10 {
		t.Errorf("%d half-sent heads cost %d KB of RSS, want at most 8 MB", n, peak-base)
	}
	// Every one is closed at the timeout.
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(start.Add(10 * time.Second))
		if b, err := io.ReadAll(c); err == nil && len(b) == 0 || e2eReset(err) {
			closed++
		}
	}
	if closed != n || time.Since(start) > 6*time.Second {
		t.Errorf("%d of %d closed after %v, want all at about 2s", closed, n, time.Since(start))
	}
	var after int
	if !e2e.WaitFor(15*time.Second, func() bool {
		after = procKB(w, "VmRSS")
		return after <= base+base/10
	}) {
		t.Errorf("worker RSS %d KB after the attack, baseline %d KB", after, base)
	}
	t.Logf("worker RSS %d KB after the attack", after)
}

func e2eReset(err error) bool {
	ne, ok := err.(*net.OpError)
	return ok && ne.Err != nil && !ne.Timeout()
}

const timeoutLogConf = `
worker_processes = 2
error_log        = { path = "logs/error.log", level = "info" }
http {
  client_header_timeout = "1s"
  access_log            = "logs/access.log"
  upstream "pair" {
    servers   = ["127.0.0.1:{{DEAD}}", "127.0.0.1:{{LIVE}}"]
    keepalive = 8
  }
  server {
    listen = ["127.0.0.1:{{PORT}}"]
    location "= /hello" { return = { code = 200, body = "hello\n" } }
    location "= /upload" {
      client_body_timeout    = "1s"
      echo_read_request_body = true
      echo                   = "${content_length}"
    }
    location "/proxied" { proxy_pass = "http://pair" }
  }
  server {
    listen = ["127.0.0.1:{{LIVE}}"]
    location "/" { return = { code = 200, body = "live\n" } }
  }
}
`

// A real spindle: header and body timeouts are 408 in the access log and info lines
// in the error log, as nginx's; one dead server of two upstream servers costs none of
// 100 proxied GETs.
func TestTimeoutsLoggedAndDeadUpstream(t *testing.T) {
	conf := strings.NewReplacer("{{DEAD}}", strconv.Itoa(e2e.FreePort(t)), "{{LIVE}}", strconv.Itoa(e2e.FreePort(t))).Replace(timeoutLogConf)
	inst := e2e.Start(t, conf, nil)
	for _, req := range []string{
		"GET /hello HTTP/1.1\r\nHost: x\r\n",
		"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
	} {
		c, err := net.Dial("tcp", inst.Addr())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, req)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
			t.Errorf("%q: %q %v, want the connection closed without a response", req, b, err)
		}
		c.Close()
	}
	failed := 0
	for i := 0; i < 100; i++ {
		if st, body, err := inst.Get("/proxied"); st != 200 || body != "live\n" || err != nil {
			failed++
		}
	}
	if failed != 0 {
		t.Errorf("%d of 100 proxied GETs failed with one of two servers dead", failed)
	}
	var access string
	if !e2e.WaitFor(5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(inst.Prefix, "logs/access.log"))
		access = string(b)
		return strings.Contains(access, `"GET /hello HTTP/1.1" 408 `) && strings.Contains(access, `"POST /upload HTTP/1.1" 408 `)
	}) {
		t.Errorf("no 408 lines in the access log:\n%s", access)
	}
	log := inst.ErrorLog()
	for _, want := range []string{
		"client timed out (110: Connection timed out) while reading client request headers",
		"client timed out (110: Connection timed out) while reading client request body",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("error log without %q:\n%s", want, log)
		}
	}
}
