package netutil

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// watchedPair dials ln and returns the client's raw socket and the server's end.
func watchedPair(t *testing.T, ln net.Listener) (syscall.RawConn, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc, peer
}

func TestHangupWatch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w := NewHangupWatch()
	if w == nil {
		t.Fatal("no hang-up watch")
	}
	defer w.Close()

	// The peer's close is seen, after data too.
	rc, peer := watchedPair(t, ln)
	var c Watched
	w.Add(&c, rc)
	if !c.Watching() {
		t.Fatal("Add did not watch the connection")
	}
	peer.Write([]byte("reply"))
	peer.Close()
	if !e2e.WaitFor(2*time.Second, c.HungUp) {
		t.Fatal("the peer's close was not seen")
	}
	w.Remove(&c)
	if c.Watching() {
		t.Errorf("Remove left the connection watched")
	}
	if _, ok := w.conns[c.fd]; ok {
		t.Errorf("Remove left the descriptor in the watch")
	}

	// An event for a descriptor whose number a newer connection took since does not
	// mark the newer connection: the watch tells them apart by generation.
	rcOlder, peerOlder := watchedPair(t, ln)
	rcNewer, peerNewer := watchedPair(t, ln)
	var older, newer Watched
	w.Add(&older, rcOlder)
	w.Add(&newer, rcNewer)
	w.mu.Lock()
	older.gen++ // as if older's descriptor now belonged to a connection pooled later
	w.mu.Unlock()
	peerOlder.Close()
	peerNewer.Close()
	if !e2e.WaitFor(2*time.Second, newer.HungUp) {
		t.Fatal("the peer's close was not seen")
	}
	if older.HungUp() {
		t.Errorf("an event of another generation marked the connection")
	}
}

// A Peeker checks its connection without allocating.
func TestPeekerAllocates(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, _ := watchedPair(t, ln)
	var p Peeker
	if !p.Alive(rc) {
		t.Fatal("an open idle connection reported dead")
	}
	if n := testing.AllocsPerRun(100, func() { p.Alive(rc) }); n != 0 {
		t.Errorf("%v allocations per check", n)
	}
}
