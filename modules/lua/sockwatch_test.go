package lua

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/netutil"
)

// pooledConn dials ln as a cosocket does and wraps the connection as its pool holds it.
func pooledConn(t *testing.T, ln net.Listener) (*idleConn, net.Conn) {
	t.Helper()
	conn, err := netutil.Dial(context.Background(), "tcp", ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); peer.Close() })
	raw, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return &idleConn{conn: conn, raw: raw, pooled: time.Now()}, peer
}

func TestHangupWatch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := newSockPools()
	defer p.closeAll()
	if p.watch == nil {
		t.Fatal("no hang-up watch")
	}
	key := []byte("k")

	// A connection pooled a moment ago is handed out without a peek.
	ic, peer := pooledConn(t, ln)
	p.put("k", ic, 4)
	if got, _ := p.get(key); got != ic {
		t.Fatalf("get: %p, want the pooled connection %p", got, ic)
	}
	if ic.peek != nil {
		t.Errorf("a recently pooled connection was peeked")
	}

	// Once its peer closes it, the watch marks it and the pool drops it.
	ic.pooled = time.Now()
	p.put("k", ic, 4)
	peer.Close()
	if !e2e.WaitFor(2*time.Second, ic.hup.Load) {
		t.Fatal("the peer's close was not seen")
	}
	if got, _ := p.get(key); got != nil {
		t.Errorf("get handed out a connection its peer closed")
	}
	if ic.watched {
		t.Errorf("a dropped connection is still watched")
	}
	if ic.peek != nil {
		t.Errorf("the closed connection was peeked: the watch alone should tell")
	}

	// A connection idle for longer than peekAfter is peeked: data nobody asked for
	// makes it unusable, though its peer did not close it.
	ic2, peer2 := pooledConn(t, ln)
	p.put("k", ic2, 4)
	ic2.pooled = time.Now().Add(-2 * peekAfter)
	peer2.Write([]byte("unasked"))
	e2e.WaitFor(2*time.Second, func() bool { return !netutil.Alive(ic2.conn) }) // the data has come
	if got, _ := p.get(key); got != nil {
		t.Errorf("get handed out a connection with unread data")
	}
	if ic2.peek == nil {
		t.Errorf("a connection idle for %v was not peeked", 2*peekAfter)
	}

	// An event for a descriptor whose number a newer connection took since does not
	// mark the newer connection: the watch tells them apart by generation.
	older, peerOlder := pooledConn(t, ln)
	newer, peerNewer := pooledConn(t, ln)
	p.watch.add(older)
	p.watch.add(newer)
	p.watch.mu.Lock()
	older.gen++ // as if older's descriptor now belonged to a connection pooled later
	p.watch.mu.Unlock()
	peerOlder.Close()
	peerNewer.Close()
	if !e2e.WaitFor(2*time.Second, newer.hup.Load) {
		t.Fatal("the peer's close was not seen")
	}
	if older.hup.Load() {
		t.Errorf("an event of another generation marked the connection")
	}
	p.watch.remove(older)
	if _, ok := p.watch.conns[older.fd]; ok {
		t.Errorf("remove left the descriptor in the watch")
	}
}
