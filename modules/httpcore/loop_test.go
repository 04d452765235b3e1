package httpcore_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
)

const loopConf = `
http {
  keepalive_timeout = "30s"
  server {
    listen = ["127.0.0.1:0"]
    location "= /fast" { return = { code = 200, body = "fast\n" } }
    location "= /slow" { echo = ["a", { sleep = "300ms" }, "b"] }
    location "= /body" {
      echo_read_request_body = true
      echo = "${request_body}"
    }
  }
}
`

// Idle keepalive connections are held by the event loop, not by goroutines.
func TestIdleConnectionsCostNoGoroutine(t *testing.T) {
	s := testserver.Start(t, loopConf)
	before := runtime.NumGoroutine()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 300; i++ {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection %d: %v", i, err)
		}
		io.ReadAll(resp.Body)
	}
	// The test's own client side holds no goroutines either: the count may only
	// move by a few (timers, pools) once the goroutines that served are gone.
	e2e.WaitFor(5*time.Second, func() bool { return runtime.NumGoroutine()-before <= 20 })
	if after := runtime.NumGoroutine(); after-before > 20 {
		t.Errorf("%d goroutines for 300 idle connections (before: %d)", after-before, before)
	}
}

// Requests that wait (sleep) do not hold up the requests that run inline.
func TestWaitingRequestsDoNotBlockTheLoop(t *testing.T) {
	s := testserver.Start(t, loopConf)
	var wg sync.WaitGroup
	slow := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slow <- s.Get("/slow").Body
		}()
	}
	// The inline requests run while all 20 sleep in their handlers.
	if !e2e.WaitFor(5*time.Second, func() bool { return s.Engine.Counters()["writing"] >= 20 }) {
		t.Fatalf("slow requests in flight: %v", s.Engine.Counters())
	}
	start := time.Now()
	for i := 0; i < 50; i++ {
		if r := s.Get("/fast"); r.Body != "fast\n" {
			t.Fatalf("fast request %d: %q", i, r.Body)
		}
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("50 inline requests took %v beside 20 sleeping ones", d)
	}
	wg.Wait()
	close(slow)
	for b := range slow {
		if b != "a\nb\n" {
			t.Errorf("slow request: %q", b)
		}
	}
}

// A head that trickles in, a body that comes later, and pipelined requests mixing
// inline and waiting locations, on one connection.
func TestLoopPartialInput(t *testing.T) {
	s := testserver.Start(t, loopConf)
	c, br := dial(t, s.Addr)
	trickle := func(parts ...string) {
		for _, part := range parts {
			io.WriteString(c, part)
			// The delay is what is under test: each part arrives in a read of its own.
			time.Sleep(30 * time.Millisecond)
		}
	}
	trickle("GET /fa", "st HTTP/1.1\r\nHo", "st: x\r\n", "\r\n")
	if b := readBody(t, br); b != "fast\n" {
		t.Fatalf("trickled head: %q", b)
	}
	trickle("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello", "world")
	if b := readBody(t, br); b != "helloworld\n" {
		t.Fatalf("late body: %q", b)
	}
	io.WriteString(c, strings.Repeat("GET /fast HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 3))
	for i := 0; i < 6; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("pipelined %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		want := "fast\n"
		if i%2 == 1 {
			want = "a\nb\n"
		}
		if string(b) != want {
			t.Errorf("pipelined %d: %q, want %q", i, b, want)
		}
	}
}

// Many connections at once, each with several requests, some waiting: every response
// arrives.
func TestLoopConcurrency(t *testing.T) {
	s := testserver.Start(t, loopConf)
	clients(t, 100, func(i int) error {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(c)
		for j := 0; j < 20; j++ {
			path := "/fast"
			if (i+j)%7 == 0 {
				path = "/slow"
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return fmt.Errorf("conn %d request %d: %v", i, j, err)
			}
			io.ReadAll(resp.Body)
		}
		return nil
	})
}

// A burst of new connections, more than worker_connections, is served whole whether the
// loop takes one connection per report of the listening socket or all it has: the
// listening socket is taken out of epoll while the worker is full and put back when a
// connection closes.
func TestLoopAcceptBurst(t *testing.T) {
	for _, tc := range []struct {
		name  string
		multi bool
		conns int
	}{
		{"one per report", false, 1024},
		{"multi_accept", true, 1024},
		{"one per report, worker full", false, 4},
		{"multi_accept, worker full", true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testserver.Start(t, loopConf, testserver.WithEngineOptions(httpcore.EngineOptions{
				WorkerConnections: tc.conns, MultiAccept: tc.multi,
			}))
			clients(t, 64, func(i int) error {
				for j := 0; j < 5; j++ {
					c, err := net.Dial("tcp", s.Addr)
					if err != nil {
						return err
					}
					c.SetDeadline(time.Now().Add(10 * time.Second))
					io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
					b, err := io.ReadAll(c)
					c.Close()
					if err != nil || !strings.HasSuffix(string(b), "\r\n\r\nfast\n") {
						return fmt.Errorf("client %d, connection %d: %q %v", i, j, b, err)
					}
				}
				return nil
			})
		})
	}
}

// dial connects to addr for the rest of the test, bounded to 10 seconds.
func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// readBody reads a response from br and returns its body.
func readBody(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// roundTrip sends GET target on c and returns the response body.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, target string) string {
	t.Helper()
	io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n")
	return readBody(t, br)
}

// clients runs client(0) ... client(n-1) at once and reports the errors they return.
func clients(t *testing.T, n int, client func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := client(i); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// leaveModule's test_leave directive makes a location's content handler inline (run by
// the loop's leader) and then wait mid-request, as a Lua handler that calls a backend
// does: the leader hands the loop over while it keeps serving the request.
var leaveModule = &httpcore.Module{
	Name:    "test_leave",
	Order:   httpcore.OrderContent,
	NewConf: func() any { return new(bool) },
	Directives: []httpcore.Directive{{
		Name: "test_leave", Context: httpcore.CtxLocation,
		Set: func(c *httpcore.Cmd) error {
			on, err := conf.Bool(c.Attr())
			*c.Conf().(*bool) = on
			return err
		},
	}},
}

// leaveInline, when set, receives whether each test_leave request started inline in
// the event loop; leaveStays makes the handler answer without waiting.
var (
	leaveInline atomic.Pointer[chan bool]
	leaveStays  atomic.Bool
)

func init() {
	leaveModule.Install = func(l *httpcore.Location) error {
		if !*httpcore.LocConf[bool](l, leaveModule) {
			return nil
		}
		return l.SetContentInline("test_leave", func(r *httpcore.Request) httpcore.Action {
			if r.Args() == "nodelay" {
				fmt.Fprintf(r, "%d\n", httpcore.NoDelay(r))
				return httpcore.Finished
			}
			if r.Args() == "subs" {
				// Two subrequests to this location, then where the request runs now.
				var srs []*httpcore.Request
				for i := 0; i < 2; i++ {
					sr, err := r.NewSubrequest("/leave", nil)
					if err != nil {
						return r.Error(500)
					}
					defer sr.Release()
					srs = append(srs, sr)
				}
				httpcore.RunAll(srs)
				for _, sr := range srs {
					r.Write(sr.Output())
				}
				fmt.Fprintf(r, "inline after: %v\n", httpcore.InLoop(r))
				return httpcore.Finished
			}
			if ch := leaveInline.Load(); ch != nil {
				*ch <- httpcore.InLoop(r)
			}
			if leaveStays.Load() {
				r.WriteString("stayed\n")
				return httpcore.Finished
			}
			r.Blocking()
			// The handler's work, which the loop must not wait for, is a real delay.
			work := time.Millisecond
			if r.Args() == "long" {
				work = 1500 * time.Millisecond
			}
			time.Sleep(work)
			r.WriteString("left\n")
			return httpcore.Finished
		})
	}
	httpcore.Register(leaveModule)
}

const leaveConf = `
http {
  server {
    listen = ["127.0.0.1:0"]
    location "= /leave" { test_leave = true }
    location "= /fast" { return = { code = 200, body = "fast\n" } }
  }
}
`

// A burst of new connections whose requests start inline and then wait: while they
// wait, the connections still queued and those that come next are taken at once. (The
// loop used to run a new connection's request from within its accept loop: when that
// request left the loop, the rest of the queue waited for the next connection to
// arrive, or for the request to end.)
func TestLoopAcceptsWhileBurstWaits(t *testing.T) {
	s := testserver.Start(t, leaveConf)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 300; i++ {
		c, err := net.DialTimeout("tcp", s.Addr, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		io.WriteString(c, "GET /leave?long HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	start := time.Now()
	c, br := dial(t, s.Addr)
	if body := roundTrip(t, c, br, "/fast"); body != "fast\n" {
		t.Fatalf("body %q", body)
	}
	if d := time.Since(start); d > 700*time.Millisecond {
		t.Errorf("a new connection was answered after %v, behind requests that wait 1.5s", d)
	}
	for i, c := range held {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b := readBody(t, bufio.NewReader(c)); b != "left\n" {
			t.Errorf("connection %d: %q", i, b)
		}
	}
}

// Requests that leave the loop mid-request, on many connections opened at once (a
// new one per request): the listening socket's readiness is never lost while the
// leadership changes hands, so every connection is accepted and answered.
func TestLoopLeavingUnderConnectionChurn(t *testing.T) {
	s := testserver.Start(t, leaveConf)
	clients(t, 64, func(i int) error {
		for j := 0; j < 40; j++ {
			c, err := net.DialTimeout("tcp", s.Addr, 3*time.Second)
			if err != nil {
				return err
			}
			c.SetDeadline(time.Now().Add(3 * time.Second))
			header := ""
			if j%2 == 0 {
				header = "Connection: close\r\n"
			}
			fmt.Fprintf(c, "GET /leave HTTP/1.1\r\nHost: x\r\n%s\r\n", header)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				var b []byte
				b, err = io.ReadAll(resp.Body)
				if err == nil && string(b) != "left\n" {
					err = fmt.Errorf("body %q", b)
				}
			}
			c.Close()
			if err != nil {
				return fmt.Errorf("client %d request %d: %v", i, j, err)
			}
		}
		return nil
	})
}

// A location whose inline handler keeps waiting (a Lua script calling redis) has its
// requests dispatched to a coroutine before they start once that is what they do
// lately, and goes back inline when they stop waiting.
func TestLoopLearnsWhichLocationsWait(t *testing.T) {
	s := testserver.Start(t, leaveConf)
	inline := make(chan bool, 100)
	leaveInline.Store(&inline)
	defer func() { leaveInline.Store(nil); leaveStays.Store(false) }()
	c, br := dial(t, s.Addr)
	leave := func(want string) bool {
		t.Helper()
		if b := roundTrip(t, c, br, "/leave"); b != want {
			t.Fatalf("body %q, want %q", b, want)
		}
		return <-inline
	}
	var waiting []bool
	for i := 0; i < 8; i++ {
		waiting = append(waiting, leave("left\n"))
	}
	if !waiting[0] || waiting[7] {
		t.Errorf("waiting requests started inline: %v; want the first inline, the last ones dispatched", waiting)
	}
	leaveStays.Store(true)
	var staying []bool
	for i := 0; i < 12; i++ {
		staying = append(staying, leave("stayed\n"))
	}
	if staying[0] || !staying[11] {
		t.Errorf("requests that stopped waiting started inline: %v; want the first dispatched, the last ones inline", staying)
	}
}

// Subrequests run inline until one has to wait (RunAll): when none waits, their
// parent stays in the event loop; when they wait, it leaves it, and they still run
// at the same time.
func TestSubrequestsLeaveTheLoopOnlyToWait(t *testing.T) {
	s := testserver.Start(t, leaveConf)
	defer leaveStays.Store(false)
	c, br := dial(t, s.Addr)
	leaveStays.Store(true)
	if got := roundTrip(t, c, br, "/leave?subs"); got != "stayed\nstayed\ninline after: true\n" {
		t.Errorf("subrequests that do not wait: %q, want the parent still inline", got)
	}
	leaveStays.Store(false)
	if got := roundTrip(t, c, br, "/leave?subs"); got != "left\nleft\ninline after: false\n" {
		t.Errorf("subrequests that wait: %q, want the parent out of the loop", got)
	}
}

// TCP_NODELAY is set before a connection's second write, as nginx sets it when a
// connection turns keepalive: a connection that is written once never pays for it.
func TestNoDelayFromTheSecondWrite(t *testing.T) {
	s := testserver.Start(t, leaveConf)
	c, br := dial(t, s.Addr)
	var seen []string
	for i := 0; i < 3; i++ {
		io.WriteString(c, "GET /leave?nodelay HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		seen = append(seen, strings.TrimSpace(string(b)))
	}
	// Seen by each request's handler, before its response is written.
	if got := strings.Join(seen, ","); got != "0,0,1" {
		t.Errorf("TCP_NODELAY before responses 1, 2, 3: %s, want 0,0,1", got)
	}
}
