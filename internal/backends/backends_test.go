package backends

import (
	"net"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

func TestRedisStartStopCounts(t *testing.T) {
	r := StartRedis(t)
	if v, err := r.Cmd("SET", "a", "b"); err != nil || v != "OK" {
		t.Fatalf("SET: %q %v", v, err)
	}
	n0, err := r.RedisClients()
	if err != nil || n0 != 0 {
		t.Fatalf("clients at rest: %d %v", n0, err)
	}
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !e2e.WaitFor(5*time.Second, func() bool { n, _ := r.RedisClients(); return n == 1 }) {
		n, _ := r.RedisClients()
		t.Fatalf("clients with one open connection: %d", n)
	}
	r.Stop()
	if _, err := r.Cmd("PING"); err == nil {
		t.Fatal("redis answers after Stop")
	}
	r.Start()
	if v, err := r.Cmd("PING"); err != nil || v != "PONG" {
		t.Fatalf("PING after restart: %q %v", v, err)
	}
}

func TestMemcachedCounts(t *testing.T) {
	m := StartMemcached(t)
	// memcached counts a closed connection down when its worker thread sees the close,
	// which can come after StartMemcached's probe returned: wait for it, as for the others.
	if !e2e.WaitFor(5*time.Second, func() bool { n, err := m.MemcachedConnections(); return err == nil && n == 0 }) {
		n0, err := m.MemcachedConnections()
		t.Fatalf("connections at rest: %d %v", n0, err)
	}
	c, err := net.Dial("tcp", m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !e2e.WaitFor(5*time.Second, func() bool { n, _ := m.MemcachedConnections(); return n == 1 }) {
		n, _ := m.MemcachedConnections()
		t.Fatalf("connections with one open: %d", n)
	}
	if s, err := Memcached(m.Addr(), "version"); err != nil || len(s) < 8 {
		t.Fatalf("version: %q %v", s, err)
	}
}
