package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// A C module that crashes the process (here a write through a NULL pointer with
// LuaJIT's FFI, in a request) costs one worker, as in nginx: the master logs the
// worker's exit and starts another, while the other worker serves; the next
// requests succeed. (Not named TestLua*: scripts/test.sh runs those with gopher-lua
// too, which has no FFI.)
func TestCModuleCrashCostsOneWorker(t *testing.T) {
	inst := e2e.Start(t, `
worker_processes = 2
error_log        = { path = "logs/error.log", level = "info" }
http {
  server {
    listen = ["127.0.0.1:{{PORT}} backlog=4096"]
    location "= /hello" {
      return = { code = 200, body = "ok\n" }
    }
    location "= /lua" {
      content_by_lua = <<-LUA
        ngx.say("lua ok")
      LUA
    }
    location "= /crash" {
      content_by_lua = <<-LUA
        local ffi = require "ffi"
        ffi.cast("int *", 0)[0] = 1
        ngx.say("not reached")
      LUA
    }
  }
}
`, nil)
	master := inst.MasterPid()
	if !e2e.WaitFor(10*time.Second, func() bool { return len(e2e.Workers(master)) == 2 }) {
		t.Fatalf("workers: %v", e2e.Workers(master))
	}
	before := e2e.Workers(master)
	load := e2e.StartLoad(inst.Addr(), "/hello", 4, true)
	if !e2e.WaitFor(10*time.Second, func() bool { return load.Answered() >= 50 }) {
		t.Fatalf("no load before the crash: %d answers", load.Answered())
	}

	if code, body, err := inst.Get("/crash"); err == nil {
		t.Errorf("the crashing request was answered: %d %q", code, body)
	}
	var victim int
	if !e2e.WaitFor(10*time.Second, func() bool {
		now := e2e.Workers(master)
		for _, p := range before {
			if !slices.Contains(now, p) {
				victim = p
			}
		}
		return victim != 0 && len(now) == 2
	}) {
		t.Fatalf("no worker was respawned: before %v, now %v", before, e2e.Workers(master))
	}
	log := inst.ErrorLog()
	i := strings.Index(log, fmt.Sprintf("worker process %d exited", victim))
	if i < 0 {
		t.Fatalf("the master did not log the crash of %d:\n%s", victim, log)
	}
	t.Logf("%s", log[i:i+strings.IndexByte(log[i:], '\n')])

	served := load.Answered()
	if !e2e.WaitFor(10*time.Second, func() bool { return load.Answered()-served >= 50 }) {
		t.Errorf("service did not go on after the crash: %d more answers", load.Answered()-served)
	}
	res := load.Stop()
	t.Logf("load across the crash: %v", res)
	// Only the load's connections to the crashed worker may fail.
	if res.Failed > 4 {
		t.Errorf("%d failed requests, more than the crashed worker's connections", res.Failed)
	}
	for range 4 {
		if code, body, err := inst.Get("/lua"); err != nil || code != 200 || body != "lua ok\n" {
			t.Errorf("after the respawn: %d %q %v", code, body, err)
		}
	}
}
