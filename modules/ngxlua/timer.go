package ngxlua

import (
	"errors"
	"math"
	"runtime/debug"
	"sync"
	"time"

	"github.com/spindle-server/spindle/internal/luajit"
)

// Timers (ngx.timer.at, ngx.timer.every): each fires on a goroutine of its own,
// which runs the timer's function as a run without a request (step 1 of
// docs/lua-engine.md: waits block that goroutine).

type timerState struct {
	mu      sync.Mutex
	pending map[*luaTimer]struct{}
	running int
	wg      sync.WaitGroup
}

type luaTimer struct {
	fn    luajit.Ref
	every time.Duration
	t     *time.Timer
}

// timerNew is __sp.timer_new(delay, fn, every): fn is the prelude's closure over
// the user's function and arguments.
func (e *engine) timerNew(s *luajit.State) error {
	ru, err := e.run()
	if err != nil {
		return err
	}
	if ru.phase == phaseInit {
		return disabled("ngx.timer", ru.phase)
	}
	sec := s.Number(0)
	if s.Type(0) != luajit.TypeNumber || sec < 0 || math.IsNaN(sec) {
		s.PushNil()
		s.PushString("bad argument #1 to 'at' (invalid delay)")
		return nil
	}
	every := s.Bool(2)
	if every && sec == 0 {
		s.PushNil()
		s.PushString("bad argument #1 to 'every' (delay cannot be zero)")
		return nil
	}
	if e.exiting.Load() {
		s.PushNil()
		s.PushString("process exiting")
		return nil
	}
	d := time.Duration(sec * float64(time.Second))
	ts := &e.timers
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.pending) >= e.main.maxPending {
		s.PushNil()
		s.PushString("too many pending timers")
		return nil
	}
	ref, ok := s.Ref(1)
	if !ok {
		return errors.New("bad argument #2 (function expected)")
	}
	tm := &luaTimer{fn: ref}
	if every {
		tm.every = d
	}
	e.schedule(tm, d)
	s.PushInt(1)
	return nil
}

func (e *engine) schedule(tm *luaTimer, d time.Duration) {
	ts := &e.timers
	if ts.pending == nil {
		ts.pending = map[*luaTimer]struct{}{}
	}
	ts.pending[tm] = struct{}{}
	tm.t = time.AfterFunc(d, func() { e.fireTimer(tm, false) })
}

func (e *engine) fireTimer(tm *luaTimer, premature bool) {
	ts := &e.timers
	ts.mu.Lock()
	if _, ok := ts.pending[tm]; !ok {
		ts.mu.Unlock()
		return
	}
	delete(ts.pending, tm)
	if ts.running >= e.main.maxRunning {
		ts.mu.Unlock()
		e.logf(logAlert, "%d lua_max_running_timers are not enough", e.main.maxRunning)
		e.unrefLater(tm.fn)
		return
	}
	ts.running++
	ts.wg.Add(1)
	ts.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			e.logf(logAlert, "panic in a Lua timer: %v\n%s", p, debug.Stack())
		}
		ts.mu.Lock()
		ts.running--
		again := tm.every > 0 && !premature && !e.exiting.Load()
		if again {
			e.schedule(tm, tm.every)
		}
		ts.mu.Unlock()
		if !again {
			e.unrefLater(tm.fn)
		}
		ts.wg.Done()
	}()
	ru := e.newRun(nil, phaseTimer, e.main.rootConf)
	select {
	case <-e.stop:
		return
	default:
	}
	s := e.vm.Lock()
	e.resume(s, ru, tm.fn, kindCall, []any{premature})
	if ru.exit == exitError {
		ru.logErr("entry thread")
	}
}

// unrefLater drops a timer's function at the next run (the VM may be locked by
// the caller's own goroutine further up).
func (e *engine) unrefLater(r luajit.Ref) {
	e.freedMu.Lock()
	e.unrefs = append(e.unrefs, r)
	e.freedMu.Unlock()
}

// fireAllPremature runs the pending timers at once with premature = true: the
// worker is exiting.
func (e *engine) fireAllPremature() {
	ts := &e.timers
	ts.mu.Lock()
	var due []*luaTimer
	for tm := range ts.pending {
		if tm.t.Stop() {
			due = append(due, tm)
		}
	}
	ts.wg.Add(len(due))
	ts.mu.Unlock()
	for _, tm := range due {
		go func() {
			defer ts.wg.Done()
			e.fireTimer(tm, true)
		}()
	}
}

func (ts *timerState) waitRunning(timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		ts.wg.Wait()
		close(done)
	}()
	if timeout <= 0 {
		<-done
		return
	}
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

func (e *engine) timerCounts() map[string]luajit.Func {
	return map[string]luajit.Func{
		"timer_new": e.timerNew,
		"timer_running": func(s *luajit.State) error {
			e.timers.mu.Lock()
			n := e.timers.running
			e.timers.mu.Unlock()
			s.PushInt(n)
			return nil
		},
		"timer_pending": func(s *luajit.State) error {
			e.timers.mu.Lock()
			n := len(e.timers.pending)
			e.timers.mu.Unlock()
			s.PushInt(n)
			return nil
		},
	}
}
