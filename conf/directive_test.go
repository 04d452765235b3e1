package conf

import (
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, src string) (*Config, error) {
	t.Helper()
	return Parse(&Bundle{Prefix: "/srv", Path: "/srv/conf/spindle.hcl", Files: map[string][]byte{"/srv/conf/spindle.hcl": []byte(src)}})
}

// The main context and the events block are directive tables over the shared slots:
// values land in the Config, and bad values are reported at file:line,col.
func TestMainContextTable(t *testing.T) {
	c, err := parse(t, `worker_processes = 3
worker_shutdown_timeout = "0"
worker_rlimit_nofile = 4096
user = "nobody"
events {
  worker_connections = 2048
  multi_accept = "on"
  accept_mutex = "off"
}
http {}
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.WorkerProcesses != 3 || c.WorkerShutdownTimeout != 0 || c.WorkerRlimitNofile != 4096 || c.User != "nobody" ||
		c.WorkerConnections != 2048 || !c.MultiAccept || c.HTTP == nil {
		t.Errorf("decoded %+v", c)
	}
	cases := []struct{ src, want string }{
		{`worker_start_timeout = "-1s"`, `1,24: invalid time value "-1s"`},
		{`worker_rlimit_nofile = -1`, `1,24: worker_rlimit_nofile must not be negative`},
		{"events {\n  worker_connections = 0\n}", `2,24: worker_connections must be between 1 and 1048576, got 0`},
		{"events {\n  multi_accept = \"maybe\"\n}", `2,18: expected a bool, got string`},
		{"events {\n  nope = 1\n}", `2,3: unknown directive "nope" in events`},
		{`events = 1`, `1,1: events must be a block: events { ... }`},
		{"http {}\nhttp {}", `2,1: http block is duplicate`},
		{`pid { }`, `1,1: "pid" is a setting, write it as pid = value`},
		{`nope = 1`, `1,1: unknown directive "nope"`},
	}
	for _, tc := range cases {
		_, err := parse(t, tc.src)
		if err == nil || !strings.Contains(err.Error(), "spindle.hcl:"+tc.want) {
			t.Errorf("%s: error %v, want %s", tc.src, err, tc.want)
		}
	}
}

// A slot assigns only a value that decoded: a bad value leaves the default in place
// (nginx's slots do the same), and a duration takes "0" as nginx's _msec_slot does.
func TestSlotsAssignOnlyGoodValues(t *testing.T) {
	type target struct {
		on bool
		d  time.Duration
		n  int
		sz int64
	}
	c, _ := parse(t, "a = \"maybe\"\nb = \"0\"\nc = \"x\"\nd = \"8k\"\n") // unknown to the main context: only the items are used
	items, _ := c.Source.Items(c.Source.Body(c.Path))
	tg := target{on: true, d: time.Second, n: 7}
	if err := BoolSlot(func(t *target) *bool { return &t.on })(&tg, items[0]); err == nil || !tg.on {
		t.Errorf("bad bool: err %v, value %v", err, tg.on)
	}
	if err := DurationSlot(func(t *target) *time.Duration { return &t.d })(&tg, items[1]); err != nil || tg.d != 0 {
		t.Errorf("\"0\" duration: err %v, value %v", err, tg.d)
	}
	if err := CountSlot(0, NoMax, func(t *target) *int { return &t.n })(&tg, items[2]); err == nil || tg.n != 7 {
		t.Errorf("bad count: err %v, value %v", err, tg.n)
	}
	if err := SizeSlot(func(t *target) *int64 { return &t.sz })(&tg, items[3]); err != nil || tg.sz != 8<<10 {
		t.Errorf("size: err %v, value %v", err, tg.sz)
	}
}
