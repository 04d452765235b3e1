package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

func TestUpgradesUnderLoad(t *testing.T) {
	notify := e2e.ListenNotify(t)
	bin := e2e.CopyBinary(t, t.TempDir())
	inst := e2e.Start(t, helloConf(2, "v1"), &e2e.Options{Bin: bin, Env: []string{notify.Env()}})
	if _, ok := notify.WaitFor(5*time.Second, 0, func(m string) bool { return strings.Contains(m, "READY=1") }); !ok {
		t.Fatalf("no READY=1 at start: %q", notify.Messages())
	}
	load := e2e.StartLoad(inst.Addr(), "/hello", 16, true)
	loadNew := e2e.StartLoad(inst.Addr(), "/hello", 4, false)
	for i := 1; i <= 3; i++ {
		old := inst.MasterPid()
		oldWorkers := e2e.Workers(old)
		seen := len(notify.Messages())
		// The "new binary": the same build written anew, as a package upgrade would.
		e2e.CopyBinary(t, filepath.Dir(bin))
		out, code := inst.Spindle("-s", "upgrade")
		if code != 0 {
			t.Fatalf("upgrade %d: exit %d: %s\n%s", i, code, out, inst.ErrorLog())
		}
		newPid := inst.MasterPid()
		if newPid == old {
			t.Fatalf("upgrade %d: pid file still names the old master %d", i, old)
		}
		if !strings.Contains(out, fmt.Sprintf("new master %d ready", newPid)) {
			t.Errorf("upgrade %d: output %q", i, out)
		}
		if _, ok := notify.WaitFor(5*time.Second, seen, func(m string) bool {
			return strings.Contains(m, "MAINPID="+strconv.Itoa(newPid)) && strings.Contains(m, "READY=1")
		}); !ok {
			t.Errorf("upgrade %d: no MAINPID=%d: %q", i, newPid, notify.Messages()[seen:])
		}
		for _, m := range notify.Messages()[seen:] {
			if strings.Contains(m, "STOPPING=1") {
				t.Errorf("upgrade %d: the old master told systemd it is stopping: %q", i, m)
			}
		}
		if got := len(e2e.Workers(newPid)); got != 2 {
			t.Errorf("upgrade %d: new master has %d workers", i, got)
		}
		// The old master drains its workers and exits; only then can the next upgrade run.
		if !e2e.WaitFor(15*time.Second, func() bool { return !e2e.Alive(old) }) {
			t.Fatalf("upgrade %d: old master %d still running", i, old)
		}
		for _, w := range oldWorkers {
			if e2e.Alive(w) {
				t.Errorf("upgrade %d: old worker %d still running", i, w)
			}
		}
	}
	// Both loads go on against the last master's workers.
	served, servedNew := load.Answered(), loadNew.Answered()
	if !e2e.WaitFor(10*time.Second, func() bool {
		return load.Answered() >= served+100 && loadNew.Answered() >= servedNew+20
	}) {
		t.Errorf("the load stalled after the last upgrade: %d / %d answers", load.Answered(), loadNew.Answered())
	}
	res, resNew := load.Stop(), loadNew.Stop()
	t.Logf("3 upgrades, keepalive: %v", res)
	t.Logf("3 upgrades, new connection per request: %v", resNew)
	if res.Failed != 0 || resNew.Failed != 0 {
		t.Errorf("failed requests during upgrades: %v / %v", res, resNew)
	}
	if res.Requests < 1000 || resNew.Requests < 100 {
		t.Errorf("too few requests served: %v / %v", res, resNew)
	}
}

func TestFailedUpgradesKeepServing(t *testing.T) {
	dir := t.TempDir()
	bin := e2e.CopyBinary(t, dir)
	good, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(helloConf(2, "v1"), "worker_processes", "upgrade_timeout = \"2s\"\nworker_processes", 1)
	inst := e2e.Start(t, conf, &e2e.Options{Bin: bin})
	master := inst.MasterPid()
	swap := func(content []byte) {
		os.Remove(bin)
		if err := os.WriteFile(bin, content, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name    string
		prepare func()
		want    string
	}{
		{"crash", func() { swap([]byte("#!/bin/sh\nexit 3\n")) }, "exited"},
		{"hang", func() { swap([]byte("#!/bin/sh\nexec sleep 30\n")) }, "timed out"},
		{"bad config", func() {
			swap(good)
			inst.WriteConfig(strings.Replace(conf, "return =", "retrun =", 1))
		}, "unknown directive \"retrun\""},
	}
	for _, c := range cases {
		c.prepare()
		out, code := inst.Spindle("-s", "upgrade")
		if code == 0 || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d, output %q, want %q", c.name, code, out, c.want)
		}
		if pid := inst.MasterPid(); pid != master {
			t.Fatalf("%s: pid file changed to %d", c.name, pid)
		}
		if status, body, err := inst.Get("/hello"); err != nil || status != 200 || body != "v1\n" {
			t.Fatalf("%s: old master not serving: %d %q %v", c.name, status, body, err)
		}
	}
	// And a good upgrade still works afterwards.
	swap(good)
	inst.WriteConfig(helloConf(2, "v2"))
	if out, code := inst.Spindle("-s", "upgrade"); code != 0 {
		t.Fatalf("upgrade after failures: %s", out)
	}
	if _, body, _ := inst.Get("/hello"); body != "v2\n" {
		t.Errorf("after upgrade /hello = %q", body)
	}
}
