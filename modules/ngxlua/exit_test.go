package ngxlua_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// When the worker starts draining, pending timers run at once with premature = true,
// new timers are refused, ngx.worker.exiting() says so, and the worker's exit waits
// for the timers that run (t/106-timer.t's premature cases). The timer writes what
// it saw to a file: the VM is gone once ExitWorker returns.
func TestTimersOnWorkerExit(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fired")
	cfg, err := testserver.BuildString(t, `http {
  init_worker_by_lua = <<-LUA
    ngx.timer.at(3600, function(premature)
      local fired = premature and "premature" or "on time"
      local exiting = ngx.worker.exiting()
      local new = select(2, ngx.timer.at(0, function() end))
      ngx.sleep(0.1)
      local f = io.open("`+out+`", "w")
      f:write(fired, " ", tostring(exiting), " ", tostring(new), " done")
      f:close()
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
	if _, err := os.Stat(out); err == nil {
		t.Fatal("timer fired early")
	}
	close(exiting)
	start := time.Now()
	cfg.ExitWorker()
	if time.Since(start) < 90*time.Millisecond {
		t.Errorf("ExitWorker did not wait for the running timer (%v)", time.Since(start))
	}
	b, err := os.ReadFile(out)
	if err != nil || string(b) != "premature true process exiting done" {
		t.Errorf("timer: %q %v", b, err)
	}
}
