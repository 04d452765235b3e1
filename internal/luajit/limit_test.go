package luajit

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// resumeLimited runs code on a thread with a limit and returns the error it ends with.
func resumeLimited(t *testing.T, s *State, limit time.Duration, code string) error {
	t.Helper()
	fn, err := s.Load("limit.lua", code)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unref(fn)
	th, err := s.NewThread(fn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.CloseThread(th)
	th.Limit = limit
	_, err = s.Resume(th)
	return err
}

func TestRunTimeLimit(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	s.Register("spin", func(s *State) error { return nil })
	cases := []struct {
		name, code string
		jit        bool
	}{
		{"interpreted loop", "local x = 0\nwhile true do x = x + 1 end", false},
		{"pcall catching the error", "while true do pcall(function() while true do end end) end", false},
		{"error handler catching it", "while true do xpcall(function() while true do end end, function(e) return e end) end", false},
		// A call to a Go function ends LuaJIT's trace: the interpreter runs between.
		{"compiled loop calling Go", "local x = 0\nwhile true do x = x + 1 spin() end", true},
		// The compiler is then off until the resume ends: the catching code runs
		// in the interpreter, where the hook fires.
		{"compiled loop catching it", "local x = 0\nwhile true do x = x + 1 pcall(spin) end", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.SetJIT(c.jit)
			start := time.Now()
			err := resumeLimited(t, s, 100*time.Millisecond, c.code)
			var le *Error
			if !errors.As(err, &le) || le.Code != ErrTimeout || !strings.HasPrefix(le.Message, "limit.lua:") || !strings.HasSuffix(le.Message, ": run time limit (100ms) exceeded") {
				t.Fatalf("got %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("stopped after %v", d)
			}
			// The VM runs on, without the hook.
			got, err := runThread(t, s, "after.lua", "local x = 0 for i = 1, 1000 do x = x + i end return x")
			if err != nil {
				t.Fatal(err)
			}
			expect(t, got, 500500.0)
		})
	}
	s.SetJIT(true)
}

// Time spent suspended does not count toward the limit.
func TestRunTimeLimitCountsRunningOnly(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	s.Register("wait", func(s *State) error { s.Yield(); return nil })
	fn, err := s.Load("wait.lua", "for i = 1, 3 do wait() end return 'done'")
	if err != nil {
		t.Fatal(err)
	}
	th, err := s.NewThread(fn)
	if err != nil {
		t.Fatal(err)
	}
	th.Limit = 50 * time.Millisecond
	for i := 0; ; i++ {
		st, err := s.Resume(th)
		if err != nil {
			t.Fatal(err)
		}
		if st == Finished {
			break
		}
		s.Unlock()
		// A real wait, the thing under test: three waits of 40 ms exceed the
		// limit together, and do not count.
		time.Sleep(40 * time.Millisecond)
		s = vm.Lock()
	}
	expect(t, values(s), "done")
	s.Unlock()
}

// A loop that LuaJIT compiled and that never leaves its trace cannot be stopped by
// a hook: OnStuck says so, and the process (a worker) exits. Run in a child process.
func TestRunTimeLimitCompiledLoop(t *testing.T) {
	if os.Getenv("LUAJIT_STUCK_CHILD") == "1" {
		vm, err := New(Options{StuckAfter: 200 * time.Millisecond, OnStuck: func(th *Thread, ran time.Duration) {
			os.Stderr.WriteString("stuck past the limit\n")
			os.Exit(3)
		}})
		if err != nil {
			t.Fatal(err)
		}
		s := vm.Lock()
		resumeLimited(t, s, 100*time.Millisecond, "local x = 0\nwhile true do x = x + 1 end")
		t.Fatal("the compiled loop ended")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunTimeLimitCompiledLoop$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LUAJIT_STUCK_CHILD=1")
	done := make(chan struct{})
	timer := time.AfterFunc(60*time.Second, func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	close(done)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), "stuck past the limit") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// The watchdog never takes one resume's figures for another's: short resumes of
// reused threads (closed, their Limit reset, taken again) while it ticks fast.
func TestRunTimeLimitReusedThreads(t *testing.T) {
	vm := newVM(t, Options{Tick: time.Millisecond})
	s := vm.Lock()
	defer s.Unlock()
	s.Register("nop", func(s *State) error { return nil })
	fn, _ := s.Load("short.lua", "nop()")
	deadline := time.Now().Add(300 * time.Millisecond)
	for n := 0; time.Now().Before(deadline); n++ {
		th, err := s.NewThread(fn)
		if err != nil {
			t.Fatal(err)
		}
		th.Limit = time.Minute
		if _, err := s.Resume(th); err != nil {
			t.Fatalf("resume %d: %v", n, err)
		}
		s.CloseThread(th)
	}
}

// The limit counts a thread's run time over its resumes (the time it holds the
// VM, as lua_max_run_time always counted): a handler that computes ~20 ms between
// waits is stopped on the resume that takes it past 50 ms.
func TestRunTimeLimitSummedOverResumes(t *testing.T) {
	vm := newVM(t, Options{Tick: time.Millisecond})
	s := vm.Lock()
	defer s.Unlock()
	start := time.Now()
	s.Register("wait", func(s *State) error { s.Yield(); return nil })
	s.Register("now", func(s *State) error { s.PushNumber(time.Since(start).Seconds()); return nil })
	fn, _ := s.Load("steps.lua", `
		while true do
			local t0 = now()
			while now() - t0 < 0.02 do end
			wait()
		end`)
	th, _ := s.NewThread(fn)
	th.Limit = 50 * time.Millisecond
	var ran time.Duration
	for i := 1; i <= 20; i++ {
		t0 := time.Now()
		st, err := s.Resume(th)
		ran += time.Since(t0)
		if err != nil {
			var le *Error
			if !errors.As(err, &le) || le.Code != ErrTimeout {
				t.Fatalf("resume %d: %v", i, err)
			}
			// The watchdog's ticks (1 ms here) make each resume's count off by
			// up to one tick. On a loaded machine a resume may take much longer
			// than its 20 ms of clock, so which resume the limit ends is not fixed:
			// what is, is that it never ends one before the sum reaches the limit
			// (and the loop below fails if no sum of ~20 ms resumes is stopped).
			if ran < 50*time.Millisecond-time.Duration(i)*time.Millisecond {
				t.Fatalf("stopped on resume %d after %v", i, ran)
			}
			return
		}
		if st != Suspended {
			t.Fatal(st)
		}
	}
	t.Fatalf("20 resumes of ~20 ms each (%v) were not stopped by a 50 ms limit", ran)
}
