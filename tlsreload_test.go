package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// New TLS connections (a full handshake each, "Connection: close") get their answer
// within wrk's 2 s timeout across SIGHUP reloads: a connection accepted by a worker
// that drains is handshaken and served, never left without an answer.
//
// A stress test, opt-in (SPINDLE_TLS_RELOAD_REPRO=1): it tells something only on a
// loaded machine (4 busy loops, yes >/dev/null, beside it on a shared 2-core machine)
// and takes ~30 s. httpcore's TestTLSHandedBackTogetherWhileDraining is the
// deterministic test of what it found: in a draining worker each response ends with a
// lingering close, and the event loop's leader, running the first of several
// connections handed back together after their handshakes (their requests inside
// crypto/tls's buffers), kept the others in a local list while that connection
// lingered on its goroutine; each waited for the linger of the one before, 1-3 s.
// With the busy loops, before the fix: 4 runs failed (6, 24, 31 and 83 requests
// without an answer within 2 s), and 66 of the 86 stuck connections logged were
// ESTAB in a worker shutting down. After: 2 runs of 2 passed; with the load average
// at 12-15 (other benchmarks beside the loops) some answers, and handshakes, still
// take more than 2 s, in draining and new workers alike, but none of the 15 stuck
// connections logged was left ESTAB: each had been answered and closed (FIN-WAIT-2)
// by the time the client looked.
func TestTLSReloadNewConnectionsAnswered(t *testing.T) {
	if os.Getenv("SPINDLE_TLS_RELOAD_REPRO") == "" {
		t.Skip("a stress test for a loaded machine: set SPINDLE_TLS_RELOAD_REPRO=1")
	}
	s := newTLSSetup(t)
	inst := e2e.Start(t, s.conf(2, ""), nil)
	client := &tls.Config{ServerName: "a.test", RootCAs: s.ca.Pool}
	req := "GET /hello HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
	var stop atomic.Bool
	var ok, slow, failed atomic.Int64
	var mu sync.Mutex
	errs := map[string]int{}
	fail := func(n *atomic.Int64, kind string, err error) {
		n.Add(1)
		mu.Lock()
		errs[fmt.Sprintf("%s: %v", kind, err)]++
		mu.Unlock()
	}
	one := func() {
		start := time.Now()
		nc, err := net.DialTimeout("tcp", inst.Addr(), 2*time.Second)
		if err != nil {
			fail(&failed, "connect", err)
			return
		}
		defer nc.Close()
		// wrk's timeout: an answer within 2 s of the connect.
		nc.SetDeadline(start.Add(2 * time.Second))
		connected := time.Now()
		c := tls.Client(nc, client)
		herr := c.Handshake()
		shaken := time.Now()
		defer func() {
			if d := time.Since(start); d >= 2*time.Second {
				t.Logf("timed out: connect %v, handshake %v, waiting for the answer %v (%s)", connected.Sub(start), shaken.Sub(connected), time.Since(shaken), nc.LocalAddr())
			}
		}()
		if herr != nil {
			fail(&failed, "handshake", herr)
			return
		}
		if _, err := io.WriteString(c, req); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				fail(&slow, "handshake", err)
			} else {
				fail(&failed, "handshake", err)
			}
			return
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			// Which process holds the server's end, and whether it is draining.
			out, _ := exec.Command("ss", "-tnp", "dst", nc.LocalAddr().String()).CombinedOutput()
			ps, _ := exec.Command("ps", "-o", "pid,stat,args", "-C", "spindle").CombinedOutput()
			out = append(out, ps...)
			t.Logf("stuck %s:\n%s", nc.LocalAddr(), out)
		}
		switch {
		case err != nil:
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				fail(&slow, "read", err)
			} else {
				fail(&failed, "read", err)
			}
		case !strings.HasPrefix(line, "HTTP/1.1 200"):
			fail(&failed, "status", fmt.Errorf("%q", line))
		default:
			ok.Add(1)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				one()
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		inst.WriteConfig(s.conf(2, fmt.Sprintf("# generation %d", i)))
		inst.Signal(syscall.SIGHUP)
		served := ok.Load()
		if !e2e.WaitFor(10*time.Second, func() bool { return ok.Load() >= served+150 }) {
			t.Fatalf("reload %d: the load is not answered", i)
		}
	}
	stop.Store(true)
	wg.Wait()
	for _, ln := range strings.Split(inst.ErrorLog(), "\n") {
		if strings.Contains(ln, "DEBUG") {
			t.Log(ln)
		}
	}
	t.Logf("20 reloads, new TLS connection per request: %d answered, %d timed out, %d failed %v", ok.Load(), slow.Load(), failed.Load(), errs)
	if slow.Load() != 0 || failed.Load() != 0 {
		t.Errorf("requests not answered across reloads: %d timed out, %d failed %v", slow.Load(), failed.Load(), errs)
	}
}
