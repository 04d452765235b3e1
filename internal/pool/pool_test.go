package pool

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// testConn is a pooled client connection to a test listener; peer is the server's end.
type testConn struct {
	nc     net.Conn
	peer   net.Conn
	entry  Entry
	closed bool
}

func (c *testConn) PoolEntry() *Entry { return &c.entry }
func (c *testConn) ClosePooled()      { c.closed = true; c.nc.Close() }

// peerSeesClose reports whether the server's end reads EOF (the pool closed c).
func (c *testConn) peerSeesClose(t *testing.T) bool {
	t.Helper()
	c.peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := c.peer.Read(make([]byte, 1))
	return err == io.EOF
}

type server struct {
	t  *testing.T
	ln net.Listener
}

func listen(t *testing.T) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &server{t, ln}
}

// dial makes a real loopback connection, as a module dials its backend.
func (s *server) dial() *testConn {
	s.t.Helper()
	nc, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		s.t.Fatal(err)
	}
	peer, err := s.ln.Accept()
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { nc.Close(); peer.Close() })
	c := &testConn{nc: nc, peer: peer}
	if c.entry.Raw, err = nc.(syscall.Conn).SyscallConn(); err != nil {
		s.t.Fatal(err)
	}
	return c
}

func TestGetPutLIFOAndKeyCopy(t *testing.T) {
	s := listen(t)
	p := New[string, *testConn](Options{})
	defer p.Close()
	if _, _, ok := p.Get("a"); ok {
		t.Fatal("Get from an empty pool")
	}
	a1, a2, b := s.dial(), s.dial(), s.dial()
	key := []byte("a")
	p.Put(string(key), a1, 0, 0)
	p.Put("a", a2, 0, 0)
	p.Put("b", b, 0, 0)
	if n := p.Len(); n != 3 {
		t.Fatalf("Len %d, want 3", n)
	}
	key[0] = 'x' // the pool keeps its own copy
	got, stored, ok := p.Get("a")
	if !ok || got != a2 || stored != "a" {
		t.Fatalf("Get: %p %q %v, want the most recently pooled %p", got, stored, ok, a2)
	}
	if got, _, _ := p.Get("a"); got != a1 {
		t.Fatalf("second Get: %p, want %p", got, a1)
	}
	if _, _, ok := p.Get("a"); ok {
		t.Fatal("a third connection for a")
	}
	if got, _, _ := p.Get("b"); got != b {
		t.Fatal("b's connection lost")
	}
	if a1.closed || a2.closed || b.closed {
		t.Error("a connection handed out was closed")
	}
}

// lua's pool_size: a key's first put sets its bound; the least recently pooled
// connection of a full key is closed.
func TestPerKeySize(t *testing.T) {
	s := listen(t)
	p := New[string, *testConn](Options{})
	defer p.Close()
	c1, c2, c3, other := s.dial(), s.dial(), s.dial(), s.dial()
	p.Put("k", c1, 2, 0)
	p.Put("k", c2, 5, 0) // the bound stays 2
	p.Put("other", other, 1, 0)
	p.Put("k", c3, 2, 0)
	if !c1.closed || !c1.peerSeesClose(t) {
		t.Errorf("the least recently pooled connection of a full key was not closed")
	}
	if c2.closed || c3.closed || other.closed {
		t.Errorf("a connection within the bound was closed")
	}
	if n := p.Len(); n != 3 {
		t.Errorf("Len %d, want 3", n)
	}
}

// nginx's keepalive N: a bound for all keys together; the oldest of any key goes.
func TestMaxAcrossKeys(t *testing.T) {
	s := listen(t)
	p := New[int, *testConn](Options{Max: 2})
	defer p.Close()
	first, second, third := s.dial(), s.dial(), s.dial()
	p.Put(1, first, 0, 0)
	p.Put(2, second, 0, 0)
	p.Put(2, third, 0, 0)
	if !first.closed || !first.peerSeesClose(t) {
		t.Errorf("the oldest connection (another key's) was not evicted")
	}
	if second.closed || third.closed || p.Len() != 2 {
		t.Errorf("after eviction: second closed %v, third closed %v, Len %d", second.closed, third.closed, p.Len())
	}
	if _, _, ok := p.Get(1); ok {
		t.Errorf("the evicted connection was handed out")
	}
}

func TestTimeoutAndSweeper(t *testing.T) {
	s := listen(t)
	p := New[string, *testConn](Options{})
	defer p.Close()
	short, never := s.dial(), s.dial()
	p.Put("k", never, 0, 0)
	p.Put("k", short, 0, time.Minute)
	short.entry.Expires = time.Now().Add(-time.Second) // as if its minute had passed
	if got, _, _ := p.Get("k"); got != never {
		t.Fatalf("Get: %p, want the connection without a timeout %p", got, never)
	}
	if !short.closed {
		t.Errorf("an expired connection was not closed")
	}

	// The worker's sweeper closes an expired connection nobody asks for.
	swept := s.dial()
	p.Put("s", swept, 0, 100*time.Millisecond)
	if n, running := sweepers(); n == 0 || !running {
		t.Fatalf("the pool is not registered with a running sweeper: %d, %v", n, running)
	}
	if !swept.peerSeesClose(t) {
		t.Errorf("the sweeper did not close an expired idle connection")
	}
	if n := p.Len(); n != 0 {
		t.Errorf("Len %d after the sweep, want 0", n)
	}
}

// Peeked at every reuse (the proxy's pools): a connection the peer closed or sent
// data nobody asked for is not handed out.
func TestPeekEveryReuse(t *testing.T) {
	s := listen(t)
	p := New[string, *testConn](Options{})
	defer p.Close()
	good, closed, chatty := s.dial(), s.dial(), s.dial()
	p.Put("good", good, 0, 0)
	p.Put("closed", closed, 0, 0)
	p.Put("chatty", chatty, 0, 0)
	closed.peer.Close()
	chatty.peer.Write([]byte("unasked"))
	e2e.WaitFor(2*time.Second, func() bool { // both have come
		var a, b Entry
		return !a.peeker.Alive(closed.entry.Raw) && !b.peeker.Alive(chatty.entry.Raw)
	})
	if got, _, _ := p.Get("good"); got != good {
		t.Errorf("a live connection was not handed out")
	}
	if _, _, ok := p.Get("closed"); ok || !closed.closed {
		t.Errorf("a connection its peer closed: handed out %v, closed %v", ok, closed.closed)
	}
	if _, _, ok := p.Get("chatty"); ok || !chatty.closed {
		t.Errorf("a connection with unread data: handed out %v, closed %v", ok, chatty.closed)
	}
}

// The cosockets' pools: the hang-up watch tells of a peer's close without a peek;
// only a connection idle for PeekAfter or longer is peeked.
func TestHangupWatch(t *testing.T) {
	s := listen(t)
	p := New[string, *testConn](Options{Watch: true, PeekAfter: time.Second})
	defer p.Close()
	if p.watch == nil {
		t.Fatal("no hang-up watch")
	}

	// A connection pooled a moment ago is handed out without a peek.
	c := s.dial()
	p.Put("k", c, 4, 0)
	if got, _, _ := p.Get("k"); got != c {
		t.Fatalf("Get: %p, want the pooled connection %p", got, c)
	}
	if c.entry.peeker.Peeks() != 0 {
		t.Errorf("a recently pooled connection was peeked")
	}

	// Once its peer closes it, the watch marks it and the pool drops it.
	p.Put("k", c, 4, 0)
	c.peer.Close()
	if !e2e.WaitFor(2*time.Second, c.entry.HungUp) {
		t.Fatal("the peer's close was not seen")
	}
	if _, _, ok := p.Get("k"); ok {
		t.Errorf("Get handed out a connection its peer closed")
	}
	if c.entry.watch.Watching() {
		t.Errorf("a dropped connection is still watched")
	}
	if c.entry.peeker.Peeks() != 0 {
		t.Errorf("the closed connection was peeked: the watch alone should tell")
	}

	// A connection idle for longer than PeekAfter is peeked: data nobody asked for
	// makes it unusable, though its peer did not close it.
	c2 := s.dial()
	p.Put("k", c2, 4, 0)
	c2.entry.Pooled = time.Now().Add(-2 * time.Second)
	c2.peer.Write([]byte("unasked"))
	e2e.WaitFor(2*time.Second, func() bool { var e Entry; return !e.peeker.Alive(c2.entry.Raw) }) // the data has come
	if _, _, ok := p.Get("k"); ok {
		t.Errorf("Get handed out a connection with unread data")
	}
	if c2.entry.peeker.Peeks() == 0 {
		t.Errorf("a connection idle for 2s was not peeked")
	}

	// Forget takes a connection its user closes out of the watch.
	c3 := s.dial()
	p.Put("k", c3, 4, 0)
	got, _, _ := p.Get("k")
	p.Forget(got)
	if c3.entry.watch.Watching() {
		t.Errorf("a forgotten connection is still watched")
	}
}

func TestCloseAndPutAfterClose(t *testing.T) {
	s := listen(t)
	p := New[string, *testConn](Options{})
	a, b := s.dial(), s.dial()
	p.Put("a", a, 0, 0)
	p.Close()
	if !a.closed || !a.peerSeesClose(t) || p.Len() != 0 {
		t.Errorf("Close left an idle connection open")
	}
	p.Put("b", b, 0, 0)
	if !b.closed {
		t.Errorf("a closed pool kept a connection")
	}
	if _, _, ok := p.Get("b"); ok {
		t.Errorf("a closed pool handed out a connection")
	}
}

// Get and Put are on every backend request's path: no allocation once a key's list
// has room.
func TestNoAllocation(t *testing.T) {
	s := listen(t)
	for _, opt := range []Options{{}, {Watch: true, PeekAfter: time.Second}, {Max: 4}} {
		p := New[string, *testConn](opt)
		c := s.dial()
		p.Put("k", c, 4, time.Minute)
		allocs := testing.AllocsPerRun(100, func() {
			got, stored, ok := p.Get("k")
			if !ok {
				t.Fatal("lost the connection")
			}
			p.Put(stored, got, 4, time.Minute)
		})
		if allocs != 0 {
			t.Errorf("%+v: %v allocations per Get and Put", opt, allocs)
		}
		p.Close()
	}
}

// The sweeper runs while a pool or another member is registered, and stops after.
func TestSweeperStops(t *testing.T) {
	m := &countSweeps{c: make(chan struct{}, 1)}
	Register(m)
	if !e2e.WaitFor(5*time.Second, func() bool { return m.n() > 0 }) {
		t.Fatal("a registered member was not swept")
	}
	Unregister(m)
	if !e2e.WaitFor(5*time.Second, func() bool { n, running := sweepers(); return n == 0 && !running }) {
		n, running := sweepers()
		t.Errorf("sweeper with nothing to sweep: %d members, running %v", n, running)
	}
}

type countSweeps struct{ c chan struct{} }

func (s *countSweeps) Sweep(time.Time) {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

func (s *countSweeps) n() int { return len(s.c) }

// BenchmarkGetPut is a connection taken and put back, as every pooled backend
// request does: the cosockets' settings (hang-up watch, peek after a second).
func BenchmarkGetPut(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	peer, _ := ln.Accept()
	defer peer.Close()
	c := &testConn{nc: nc, peer: peer}
	c.entry.Raw, _ = nc.(syscall.Conn).SyscallConn()
	p := New[string, *testConn](Options{Watch: true, PeekAfter: time.Second})
	defer p.Close()
	p.Put("127.0.0.1:6379", c, 30, time.Minute)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		got, key, _ := p.Get("127.0.0.1:6379")
		p.Put(key, got, 30, time.Minute)
	}
}

// Options.Now is the pool's clock: a connection's expiry and idle time are read from
// it (ngxlua gives the worker's coarse clock), not from time.Now.
func TestOwnClock(t *testing.T) {
	s := listen(t)
	now := time.Unix(1000, 0)
	p := New[string, *testConn](Options{Now: func() time.Time { return now }})
	defer p.Close()
	c := s.dial()
	p.Put("k", c, 0, time.Minute)
	if want := now.Add(time.Minute); !c.entry.Pooled.Equal(now) || !c.entry.Expires.Equal(want) {
		t.Fatalf("Pooled %v Expires %v, want %v and %v", c.entry.Pooled, c.entry.Expires, now, want)
	}
	now = now.Add(2 * time.Minute)
	if got, _, ok := p.Get("k"); ok {
		t.Fatalf("Get handed out %p after its clock passed the expiry", got)
	}
	if !c.closed {
		t.Errorf("the expired connection was not closed")
	}
}
