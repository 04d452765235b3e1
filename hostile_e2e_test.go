package main

import (
	"fmt"
	"io"
	"net"
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
