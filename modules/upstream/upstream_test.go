package upstream_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/upstream"
)

func build(t *testing.T, body string) *httpcore.Config {
	t.Helper()
	cfg, err := testserver.BuildString(t, "http {\n"+body+"\n}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := upstream.Module.InitWorker(cfg, &httpcore.Worker{}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// pick takes one peer for a request and gives it back.
func pick(u *upstream.Upstream, key string, failed bool) string {
	tr := u.TriesKey(key)
	p := tr.Next()
	if p == nil {
		return "-"
	}
	u.Release(p, failed)
	return p.Addr
}

func TestSmoothWeightedRoundRobin(t *testing.T) {
	cfg := build(t, `upstream "u" {
  servers = ["10.0.0.1:80 weight=5", "10.0.0.2:80", "10.0.0.3:80"]
}`)
	u := upstream.Lookup(cfg, "u")
	var seq []string
	for i := 0; i < 7; i++ {
		seq = append(seq, strings.TrimSuffix(strings.TrimPrefix(pick(u, "", false), "10.0.0."), ":80"))
	}
	// nginx's smooth weighted round robin for 5:1:1.
	if got := strings.Join(seq, ""); got != "1121311" {
		t.Errorf("sequence %s, want 1121311", got)
	}
}

func TestLeastConnBackupDownMaxConns(t *testing.T) {
	cfg := build(t, `upstream "lc" {
  servers = ["10.0.0.1:80", "10.0.0.2:80"]
  balance = "least_conn"
}
upstream "bk" {
  servers = ["10.0.0.1:80 down", "10.0.0.2:80 max_conns=1", "10.0.0.9:80 backup"]
}`)
	lc := upstream.Lookup(cfg, "lc")
	t1 := lc.Tries(nil)
	busy := t1.Next() // held: the next requests go to the other server
	for i := 0; i < 3; i++ {
		if got := pick(lc, "", false); got == busy.Addr {
			t.Errorf("least_conn picked the busy server %s", got)
		}
	}
	lc.Release(busy, false)

	bk := upstream.Lookup(cfg, "bk")
	t2 := bk.Tries(nil)
	held := t2.Next()
	if held.Addr != "10.0.0.2:80" {
		t.Fatalf("first pick %s: the down server must be skipped", held.Addr)
	}
	// 10.0.0.2 is at max_conns: the backup takes the request.
	if got := pick(bk, "", false); got != "10.0.0.9:80" {
		t.Errorf("with the primary at max_conns: %s, want the backup", got)
	}
	bk.Release(held, false)
	if got := pick(bk, "", false); got != "10.0.0.2:80" {
		t.Errorf("primary free again: %s", got)
	}
}

func TestFailTimeoutAndProbe(t *testing.T) {
	cfg := build(t, `upstream "u" {
  servers = ["10.0.0.1:80 max_fails=2 fail_timeout=200ms", "10.0.0.2:80"]
}`)
	u := upstream.Lookup(cfg, "u")
	bad := u.Peers[0]
	for i := 0; i < 2; i++ {
		tr := u.Tries(nil)
		for {
			p := tr.Next()
			if p == bad {
				u.Release(p, true)
				break
			}
			u.Release(p, false)
		}
	}
	if !u.Failed(bad) {
		t.Fatalf("two failures with max_fails=2 did not take the server out")
	}
	for i := 0; i < 6; i++ {
		if got := pick(u, "", false); got == bad.Addr {
			t.Fatalf("failed server picked within fail_timeout")
		}
	}
	time.Sleep(250 * time.Millisecond) // fail_timeout passing is what is under test
	// One probe after fail_timeout; while it runs the server stays out.
	tr := u.Tries(nil)
	var probe *upstream.Peer
	for i := 0; i < 2 && probe == nil; i++ {
		if p := tr.Next(); p == bad {
			probe = p
		} else {
			u.Release(p, false)
		}
	}
	if probe == nil {
		t.Fatalf("no probe of the failed server after fail_timeout")
	}
	for i := 0; i < 4; i++ {
		if got := pick(u, "", false); got == bad.Addr {
			t.Errorf("second request to a server being probed")
		}
	}
	u.Release(probe, false) // the probe succeeded: back in rotation
	seen := false
	for i := 0; i < 4; i++ {
		seen = seen || pick(u, "", false) == bad.Addr
	}
	if !seen || u.Failed(bad) {
		t.Errorf("server not back after a successful probe")
	}
}

func TestConsistentHashMovesOnlyTheLostServersKeys(t *testing.T) {
	three := build(t, `upstream "u" {
  servers = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
  hash    = { key = "${arg.k}", consistent = true }
}`)
	two := build(t, `upstream "u" {
  servers = ["10.0.0.1:80", "10.0.0.2:80"]
  hash    = { key = "${arg.k}", consistent = true }
}`)
	u3, u2 := upstream.Lookup(three, "u"), upstream.Lookup(two, "u")
	counts := map[string]int{}
	moved := 0
	for i := 0; i < 3000; i++ {
		k := fmt.Sprintf("key%d", i)
		a, b := pick(u3, k, false), pick(u2, k, false)
		counts[a]++
		if a != "10.0.0.3:80" && a != b {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d keys of the remaining servers moved", moved)
	}
	for addr, n := range counts {
		if n < 600 {
			t.Errorf("%s got only %d of 3000 keys", addr, n)
		}
	}
}

func TestHashRehashesPastFailedServer(t *testing.T) {
	cfg := build(t, `upstream "u" {
  servers = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
  hash    = "${arg.k}"
}`)
	u := upstream.Lookup(cfg, "u")
	first := pick(u, "somekey", false)
	if again := pick(u, "somekey", false); again != first {
		t.Fatalf("same key, different servers: %s %s", first, again)
	}
	tr := u.TriesKey("somekey")
	p := tr.Next()
	u.Release(p, true) // max_fails=1: out for 10s
	if got := pick(u, "somekey", false); got == first || got == "-" {
		t.Errorf("key still mapped to the failed server: %s", got)
	}
}

func TestAllFailedGives502AndRecovers(t *testing.T) {
	cfg := build(t, `upstream "u" {
  servers = ["10.0.0.1:80", "10.0.0.2:80"]
}`)
	u := upstream.Lookup(cfg, "u")
	tr := u.Tries(nil)
	for p := tr.Next(); p != nil; p = tr.Next() {
		u.Release(p, true)
	}
	if tr.Count() != 2 {
		t.Fatalf("tried %d servers", tr.Count())
	}
	// Both failed: nginx forgets the failures when none is left, so the next
	// request finds a server again.
	if got := pick(u, "", false); got != "-" {
		t.Logf("first pick after all failed: %s", got)
	}
	if got := pick(u, "", false); got == "-" {
		t.Errorf("no server after every one failed and the failures were forgotten")
	}
}

func TestUpstreamConfig(t *testing.T) {
	cfg := build(t, `upstream "full" {
  type               = "http"
  servers            = ["localhost:8080 weight=2 max_fails=3 fail_timeout=5s", { addr = "127.0.0.1:8081", backup = true }]
  keepalive          = 16
  keepalive_timeout  = "30s"
  keepalive_requests = 100
}
upstream "rd" {
  type            = "redis"
  servers         = ["127.0.0.1"]
  connect_timeout = "1s"
  read_timeout    = "2s"
  send_timeout    = "3s"
  password        = "secret"
  db              = 2
}
upstream "mc" {
  type    = "memcached"
  servers = ["unix:/tmp/mc.sock"]
}`)
	u := upstream.Lookup(cfg, "full")
	if u.Keepalive != 16 || u.KeepaliveTimeout != 30*time.Second || u.KeepaliveRequests != 100 {
		t.Errorf("keepalive settings: %+v", u)
	}
	if len(u.Peers) == 0 || u.Peers[0].Weight != 2 || u.Peers[0].MaxFails != 3 || u.Peers[0].FailTimeout != 5*time.Second {
		t.Errorf("server parameters: %+v", u.Peers)
	}
	if len(u.Backups) != 1 || u.Backups[0].Addr != "127.0.0.1:8081" {
		t.Errorf("backup: %+v", u.Backups)
	}
	rd := upstream.Lookup(cfg, "rd")
	if rd.Peers[0].Addr != "127.0.0.1:6379" || rd.ConnectTimeout != time.Second || rd.ReadTimeout != 2*time.Second ||
		rd.SendTimeout != 3*time.Second || rd.Password != "secret" || rd.DB != 2 {
		t.Errorf("redis upstream: %+v %+v", rd, rd.Peers[0])
	}
	mc := upstream.Lookup(cfg, "mc")
	if mc.Peers[0].Network != "unix" || mc.Peers[0].Addr != "/tmp/mc.sock" || mc.Balance != upstream.Hash || !mc.Consistent {
		t.Errorf("memcached upstream: %+v %+v", mc, mc.Peers[0])
	}
}
