package backendtest_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/testserver"
)

// The fast path's example in conf/README.md works as described, against real
// backends.
func TestReadmeExample(t *testing.T) {
	doc, err := os.ReadFile("../../../conf/README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)### Fast path: spindle.redis and spindle.memcached\n.*?```hcl\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("no example in the fast path's section of conf/README.md")
	}
	rd := backends.StartRedis(t)
	mc := backends.StartMemcached(t)
	config := strings.NewReplacer("127.0.0.1:6379", rd.Addr(), "127.0.0.1:11211", mc.Addr(), "127.0.0.1:8080", "127.0.0.1:0").Replace(string(m[1]))
	s := testserver.Start(t, config)
	if _, err := rd.Cmd("HSET", "user:1", "name", "Ann"); err != nil {
		t.Fatal(err)
	}
	check(t, s.Get("/user?id=1"), 200, "Ann (view 1): welcome\n")
	if _, err := backends.Memcached(mc.Addr(), "set motd 0 0 5\r\nhello"); err != nil {
		t.Fatal(err)
	}
	check(t, s.Get("/user?id=1"), 200, "Ann (view 2): hello\n")
	if r := s.Get("/user?id=2"); r.Status != 404 {
		t.Errorf("missing user: %d", r.Status)
	}
	if ttl, _ := rd.Cmd("TTL", "views"); ttl == "-1" || ttl == "" {
		t.Errorf("views has no expiry: %q", ttl)
	}
	rd.Stop()
	if r := s.Get("/user?id=1"); r.Status != 502 {
		t.Errorf("redis stopped: %d", r.Status)
	}
	checkLog(t, s, "redis: connection refused")
}
