package redis_test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
)

// startCluster builds a Redis Cluster of 3 masters with a replica each from
// redis-server processes on free ports, with redis-cli --cluster create, and waits
// until every node sees it healthy and every replica is in sync.
func startCluster(t *testing.T, nodeTimeout time.Duration) []*backends.Process {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-cli (Debian package redis-tools, installed with redis-server) is missing")
		}
		t.Skip("redis-cli not installed")
	}
	var nodes []*backends.Process
	args := []string{"--cluster", "create"}
	for i := 0; i < 6; i++ {
		dir := t.TempDir()
		n := backends.StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", strconv.Itoa(int(nodeTimeout/time.Millisecond)))
		nodes = append(nodes, n)
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if !e2e.WaitFor(30*time.Second, func() bool {
		for _, n := range nodes {
			info, _ := n.Cmd("CLUSTER", "INFO")
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:6") {
				return false
			}
			if role, _ := n.Info("role"); role == "slave" {
				if link, _ := n.Info("master_link_status"); link != "up" {
					return false
				}
			}
		}
		return true
	}) {
		t.Fatal("the cluster did not form within 30s")
	}
	return nodes
}

// A master of a Redis Cluster killed under load: spindle answers 502 while the
// cluster has no master for the key's slot, and follows the replica's promotion
// within a few seconds — not at go-redis's next periodic reload of the cluster state
// (60 s), which is when it followed before.
func TestRedisClusterFailover(t *testing.T) {
	nodes := startCluster(t, time.Second)
	const key = "failover-key"
	// The master serving the key: any node redirects to it.
	var victim, replica *backends.Process
	owner := nodes[0].Addr()
	if _, err := nodes[0].Cmd("GET", key); err != nil {
		r := err.Error()
		i := strings.Index(r, "MOVED ")
		if i < 0 {
			t.Fatalf("GET %s: %v", key, err)
		}
		owner = strings.Fields(r[i:])[2]
	}
	for _, n := range nodes {
		if n.Addr() == owner {
			victim = n
		}
	}
	for _, n := range nodes {
		if port, _ := n.Info("master_port"); victim != nil && port == strconv.Itoa(victim.Port) {
			replica = n
		}
	}
	if victim == nil || replica == nil {
		t.Fatalf("no master (%s) with a replica for %s", owner, key)
	}
	var seeds []string
	for _, n := range nodes {
		seeds = append(seeds, `"`+n.Addr()+`"`)
	}
	s := testserver.Start(t, cfg(`
http {
  upstream "cluster" {
    type            = "redis"
    cluster         = true
    servers         = [SEEDS]
    keepalive       = 16
    connect_timeout = "500ms"
    read_timeout    = "1s"
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /incr" {
      redis_pass  = "cluster"
      redis_query = ["incr", "KEY"]
      redis_reply = "value"
    }
  }
}`, "SEEDS", strings.Join(seeds, ", "), "KEY", key))

	type sample struct {
		at     time.Time
		status int
	}
	var (
		mu      sync.Mutex
		samples []sample
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				status := 0
				if resp, err := c.Get(s.URL("/incr")); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				samples = append(samples, sample{time.Now(), status})
				mu.Unlock()
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	count := func(from time.Time, ok bool) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, sm := range samples {
			if sm.at.After(from) && (sm.status == 200) == ok {
				n++
			}
		}
		return n
	}
	start := time.Now()
	if !e2e.WaitFor(10*time.Second, func() bool { return count(start, true) >= 200 }) {
		t.Fatalf("no load before the kill: %d answered, %d failed", count(start, true), count(start, false))
	}

	killed := time.Now()
	victim.Stop()
	var promoted time.Time
	if !e2e.WaitFor(20*time.Second, func() bool {
		if role, _ := replica.Info("role"); role == "master" {
			promoted = time.Now()
			return true
		}
		return false
	}) {
		t.Fatalf("replica %s not promoted within 20s of the kill", replica.Addr())
	}
	// Load goes on until requests have been answered for 2 s in a row, or 15 s pass.
	lastFailure := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		var last time.Time
		for _, sm := range samples {
			if sm.status != 200 && sm.at.After(last) {
				last = sm.at
			}
		}
		return last
	}
	e2e.WaitFor(15*time.Second, func() bool {
		lf := lastFailure()
		return lf.Before(killed) && time.Since(killed) > 2*time.Second || time.Since(lf) > 2*time.Second && time.Since(promoted) > 2*time.Second
	})
	close(stop)
	wg.Wait()

	statuses := map[int]int{}
	mu.Lock()
	for _, sm := range samples {
		if sm.at.After(killed) && sm.status != 200 {
			statuses[sm.status]++
		}
	}
	mu.Unlock()
	lf := lastFailure()
	after := lf.Sub(promoted)
	t.Logf("promotion %v after the kill; failures after the kill by status %v; last failure %v after the promotion; %d answered since",
		promoted.Sub(killed).Round(time.Millisecond), statuses, after.Round(time.Millisecond), count(lf, true))
	if after > 3*time.Second {
		t.Errorf("requests failed until %v after the replica's promotion, want within 3s", after.Round(time.Millisecond))
	}
	if count(promoted.Add(after), true) == 0 {
		t.Errorf("no request answered after the failover")
	}
	if v, err := replica.Cmd("GET", key); err != nil || v == "" {
		t.Errorf("promoted replica holds %s = %q, %v", key, v, err)
	}
}
