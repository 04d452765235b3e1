package ngxlua_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/backends"
	"github.com/spindle-server/spindle/internal/e2e"
)

const connectorConf = `
    location "= /connector" {
      content_by_lua = <<-LUA
        local rc = require("nginx.redis.connector").new({ connect_timeout = 500, read_timeout = 1000 })
        local args = ngx.req.get_uri_args()
        local params
        if args.sentinel then
          params = { sentinels = { { host = "127.0.0.1", port = tonumber(args.sentinel) } },
                     master_name = "mymaster", role = args.role or "master" }
        else
          params = { host = "127.0.0.1", port = tonumber(args.port), db = 2 }
        end
        local red, err, prev = rc:connect(params)
        if not red then
          ngx.say("connect failed: ", err, " ", prev and #prev or 0)
          return
        end
        local info = red:info("replication")
        ngx.say(info:match("role:(%w+)"))
        if args.set then
          ngx.say("set ", red:set("ck", args.set))
        end
        ngx.say("get ", tostring(red:get("ck")))
        ngx.say("keepalive ", rc:set_keepalive(red))
      LUA
    }
    location "= /dsn" {
      content_by_lua = <<-LUA
        local rc = require "nginx.redis.connector"
        local p = rc.parse_dsn({ url = "redis://secret@10.0.0.1:6380/4" })
        ngx.say(p.password, " ", p.host, " ", p.port, " ", p.db)
        p = rc.parse_dsn({ url = "sentinel://mymaster:s/1" })
        ngx.say(p.master_name, " ", p.role, " ", p.db)
      LUA
    }`

// Debian's lua-nginx-redis-connector unmodified (over lua-nginx-redis): a plain
// connection, and through a real redis-sentinel to the master and to a replica.
func TestRedisConnector(t *testing.T) {
	master := backends.StartRedis(t)
	replica := backends.StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	sport := backends.FreePort(t)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 %d 1\n", sport, master.Port)), 0o644); err != nil {
		t.Fatal(err)
	}
	sentinel := backends.StartRedisArgv(t, sport, conf, "--sentinel")
	s := serve(t, "", connectorConf)

	check(t, s.Get("/dsn"), 200, "secret 10.0.0.1 6380 4\nmymaster slave 1\n")
	check(t, s.Get(fmt.Sprintf("/connector?port=%d&set=plain", master.Port)), 200, "master\nset OK\nget plain\nkeepalive 1\n")
	if v, _ := master.Cmd("GET", "ck"); v != "" {
		t.Errorf("db 0 holds %q: the connector did not select db 2", v)
	}

	// The sentinel knows the replica (and that its link is up) once it has asked the
	// master and the replica for INFO.
	if !e2e.WaitFor(30*time.Second, func() bool {
		out, err := sentinel.Cmd("SENTINEL", "REPLICAS", "mymaster")
		return err == nil && strings.Contains(out, "master-link-status\nok")
	}) {
		t.Fatalf("the sentinel did not see the replica:\n%s", sentinel.Output())
	}
	check(t, s.Get(fmt.Sprintf("/connector?sentinel=%d&set=through-sentinel", sport)), 200,
		"master\nset OK\nget through-sentinel\nkeepalive 1\n")
	// The replica serves db 0's key once replication caught up.
	if !e2e.WaitFor(10*time.Second, func() bool {
		v, _ := replica.Cmd("GET", "ck")
		return v == "through-sentinel"
	}) {
		t.Fatal("the replica did not replicate ck")
	}
	check(t, s.Get(fmt.Sprintf("/connector?sentinel=%d&role=slave", sport)), 200,
		"slave\nget through-sentinel\nkeepalive 1\n")
	noErrors(t, s)

	// No sentinel answers: every host failed.
	sentinel.Stop()
	check(t, s.Get(fmt.Sprintf("/connector?sentinel=%d", sport)), 200, "connect failed: no hosts available 1\n")
}
