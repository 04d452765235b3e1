package accesslog_test

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// Tests with the spindle binary: two worker processes writing the same files.

func readFile(t *testing.T, inst *e2e.Instance, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(inst.Prefix, name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// pidsIn returns the set of pids that start the lines of a "$pid ..." log.
func pidsIn(text string) map[string]int {
	out := map[string]int{}
	for _, l := range lines(text) {
		pid, _, _ := strings.Cut(l, " ")
		out[pid]++
	}
	return out
}

// getBothWorkers sends requests on new connections until each of the two workers has
// answered at least once (the kernel spreads connections over the SO_REUSEPORT
// sockets by their address hash) and returns how many requests it sent.
func getBothWorkers(t *testing.T, inst *e2e.Instance, path string, start int) int {
	t.Helper()
	seen := map[string]bool{}
	n := 0
	if !e2e.WaitFor(20*time.Second, func() bool {
		status, body, err := inst.Get(fmt.Sprintf("%s/%d", path, start+n))
		if err != nil || status != 200 {
			t.Fatalf("GET %s: %d %v", path, status, err)
		}
		seen[strings.TrimSpace(body)] = true
		n++
		return len(seen) == 2
	}) {
		t.Fatalf("requests reached only workers %v", seen)
	}
	return n
}

func quit(t *testing.T, inst *e2e.Instance) {
	t.Helper()
	if out, code := inst.Spindle("-s", "quit"); code != 0 {
		t.Fatalf("spindle -s quit: %d %s", code, out)
	}
	if _, ok := inst.Wait(20 * time.Second); !ok {
		t.Fatalf("spindle did not exit after -s quit")
	}
}

func TestReopenReachesEveryWorker(t *testing.T) {
	config := `
worker_processes = 2
error_log        = { path = "LOGDIR/error.log", level = "info" }
USER
http {
  log_format "pid" { format = "$pid $request_uri" }
  access_log = ["LOGDIR/access.log pid", "LOGDIR/buffered.log pid buffer=64k flush=100ms"]
  server {
    listen = ["127.0.0.1:{{PORT}}"]
    location "/" { return = { code = 200, body = "${pid}\n" } }
  }
}
`
	for _, asUser := range []bool{false, true} {
		name := "same-user"
		if asUser {
			name = "workers-as-nobody"
		}
		t.Run(name, func(t *testing.T) {
			// The logs live outside the prefix, in a directory every user can reach,
			// so that workers running as nobody can open the files the master
			// created for them.
			logdir := t.TempDir()
			for d := logdir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
				os.Chmod(d, 0o755)
			}
			c := strings.ReplaceAll(config, "LOGDIR", logdir)
			c = strings.Replace(c, "USER", "", 1)
			var nobody *user.User
			if asUser {
				if os.Geteuid() != 0 {
					t.Skip("needs root to run workers as another user")
				}
				var err error
				if nobody, err = user.Lookup("nobody"); err != nil {
					t.Skip("no user nobody")
				}
				c = strings.Replace(strings.ReplaceAll(config, "LOGDIR", logdir), "USER", `user = "nobody"`, 1)
			}
			inst := e2e.Start(t, c, nil)
			read := func(name string) string {
				b, err := os.ReadFile(filepath.Join(logdir, name))
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				return string(b)
			}
			before := getBothWorkers(t, inst, "/before", 0)
			for _, f := range []string{"access.log", "buffered.log"} {
				if err := os.Rename(filepath.Join(logdir, f), filepath.Join(logdir, f+".1")); err != nil {
					t.Fatal(err)
				}
			}
			if out, code := inst.Spindle("-s", "reopen"); code != 0 {
				t.Fatalf("spindle -s reopen: %d %s", code, out)
			}
			// Reopening is asynchronous: requests go on until both workers write to
			// the new files.
			after := 0
			ok := e2e.WaitFor(20*time.Second, func() bool {
				after += getBothWorkers(t, inst, "/after", after)
				return len(pidsIn(read("access.log"))) == 2 && len(pidsIn(read("buffered.log"))) == 2
			})
			if !ok {
				t.Fatalf("after reopen the new files hold lines of workers %v and %v",
					pidsIn(read("access.log")), pidsIn(read("buffered.log")))
			}
			if nobody != nil {
				for _, pid := range e2e.Workers(inst.MasterPid()) {
					st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
					if !regexp.MustCompile(`(?m)^Uid:\s+` + nobody.Uid + `\s`).Match(st) {
						t.Errorf("worker %d does not run as nobody:\n%s", pid, st)
					}
				}
				for _, f := range []string{"access.log", "buffered.log"} {
					fi, err := os.Stat(filepath.Join(logdir, f))
					if err != nil {
						t.Fatal(err)
					}
					if uid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)); uid != nobody.Uid {
						t.Errorf("%s belongs to uid %s, want nobody (%s)", f, uid, nobody.Uid)
					}
				}
			}
			quit(t, inst)
			// No line is lost or written twice: every request is in the old or the
			// new file, the buffered ones included.
			re := regexp.MustCompile(`^\d+ /(before|after)/\d+$`)
			for _, f := range []string{"access.log", "buffered.log"} {
				all := lines(read(f+".1") + read(f))
				if len(all) != before+after {
					t.Errorf("%s and %s.1 hold %d lines, want %d", f, f, len(all), before+after)
				}
				for _, l := range all {
					if !re.MatchString(l) {
						t.Errorf("%s: bad line %q", f, l)
						break
					}
				}
			}
			if el := read("error.log"); strings.Contains(el, "[alert]") || strings.Contains(el, "[emerg]") {
				t.Errorf("error log:\n%s", el)
			}
		})
	}
}

func TestWholeLinesUnderLoad(t *testing.T) {
	// Long lines (~3k) make a write that is not atomic, or a buffer flushed in the
	// middle of a line, show up as a broken line.
	pad := strings.Repeat("0123456789", 300)
	inst := e2e.Start(t, `
worker_processes = 2
error_log        = { path = "logs/error.log", level = "info" }
events { worker_connections = 1024 }
http {
  log_format "long" { format = "$pid $request_uri `+pad+` $status end" }
  access_log = ["logs/plain.log long", "logs/buffered.log long buffer=16k flush=50ms"]
  server {
    listen = ["127.0.0.1:{{PORT}} backlog=4096"]
    location "/" { return = { code = 200, body = "${pid}\n" } }
  }
}
`, nil)
	load := e2e.StartLoad(inst.Addr(), "/load", 8, false)
	e2e.WaitFor(20*time.Second, func() bool { return load.Answered() >= 3000 })
	res := load.Stop()
	t.Logf("load: %v", res)
	if res.Failed != 0 || res.Requests == 0 {
		t.Fatalf("load: %v", res)
	}
	quit(t, inst)
	re := regexp.MustCompile(`^\d+ /load ` + pad + ` 200 end$`)
	for _, f := range []string{"logs/plain.log", "logs/buffered.log"} {
		ls := lines(readFile(t, inst, f))
		if int64(len(ls)) != res.Requests {
			t.Errorf("%s has %d lines for %d requests", f, len(ls), res.Requests)
		}
		bad := 0
		for _, l := range ls {
			if !re.MatchString(l) {
				if bad < 3 {
					t.Errorf("%s: broken line of %d bytes: %.120q...", f, len(l), l)
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d broken lines", f, bad)
		}
		if pids := pidsIn(strings.Join(ls, "\n") + "\n"); len(pids) != 2 {
			t.Errorf("%s has lines of workers %v, want two workers", f, pids)
		}
	}
}
