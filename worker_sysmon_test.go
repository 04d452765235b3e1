package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/sysutil"
)

// A worker gives Go's sysmon thread a timer slack (sysutil.SlowSysmon), so that Lua
// handlers, long cgo calls, lose the worker's only P to it less often: sysmon in each
// worker has the slack (and threads it started later inherit it), the worker's main
// thread does not, nor any of the master's.
func TestWorkerSysmonSlack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting another thread's slack needs CAP_SYS_NICE")
	}
	inst := e2e.Start(t, `
worker_processes = 2
http {
  server {
    listen = ["127.0.0.1:{{PORT}}"]
    location "= /hello" {
      return = { code = 200, body = "ok\n" }
    }
  }
}`, nil)
	want := strconv.FormatInt(sysutil.SysmonSlack.Nanoseconds(), 10)
	slowed := func(pid int) int {
		// A thread's slack is at /proc/TID/timerslack_ns (proc(5)); task/TID has none.
		tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*")
		n := 0
		for _, task := range tasks {
			b, err := os.ReadFile("/proc/" + filepath.Base(task) + "/timerslack_ns")
			if err == nil && strings.TrimSpace(string(b)) == want {
				n++
			}
		}
		return n
	}
	var workers []int
	ok := e2e.WaitFor(10*time.Second, func() bool {
		workers = e2e.Workers(inst.MasterPid())
		if len(workers) != 2 {
			return false
		}
		for _, w := range workers {
			if slowed(w) == 0 {
				return false
			}
		}
		return true
	})
	if !ok {
		for _, w := range workers {
			t.Errorf("worker %d: %d threads with a %s ns slack, want sysmon's at least", w, slowed(w), want)
		}
	}
	for _, w := range workers {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(w) + "/timerslack_ns")
		if err != nil || strings.TrimSpace(string(b)) == want {
			t.Errorf("worker %d's main thread: slack %q %v, want the default", w, b, err)
		}
	}
	if n := slowed(inst.MasterPid()); n != 0 {
		t.Errorf("master: %d threads with a %s ns slack, want 0", n, want)
	}
}
