package lua

import (
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// When the worker starts draining, pending timers run at once with premature = true,
// new timers are refused, ngx.worker.exiting() says so, and the worker's exit waits
// for the timers that run (t/106-timer.t's premature cases).
func TestTimersOnWorkerExit(t *testing.T) {
	cfg, err := testserver.BuildString(t, `http {
  init_worker_by_lua = <<-LUA
    ngx.timer.at(3600, function(premature)
      fired = premature and "premature" or "on time"
      fired_exiting = ngx.worker.exiting()
      fired_new = select(2, ngx.timer.at(0, function() end))
      ngx.sleep(0.1)
      fired_done = true
    end)
  LUA
  server {
    listen = ["127.0.0.1:0"]
  }
}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	exiting := make(chan struct{})
	if err := cfg.InitWorker(&httpcore.Worker{Count: 1, Exiting: exiting}); err != nil {
		t.Fatal(err)
	}
	v := vmOf(cfg)
	global := func(name string) glua.LValue {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.globals.RawGetString(name)
	}
	if global("fired") != glua.LNil {
		t.Fatal("timer fired early")
	}
	close(exiting)
	start := time.Now()
	cfg.ExitWorker()
	if time.Since(start) < 90*time.Millisecond || global("fired_done") != glua.LTrue {
		t.Errorf("ExitWorker did not wait for the running timer (%v)", time.Since(start))
	}
	if got := global("fired").String(); got != "premature" {
		t.Errorf("timer ran %s", got)
	}
	if global("fired_exiting") != glua.LTrue || global("fired_new").String() != "process exiting" {
		t.Errorf("exiting: %v, new timer: %v", global("fired_exiting"), global("fired_new"))
	}
}
