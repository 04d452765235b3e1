package lua

import (
	"math"
	"runtime/debug"
	"sync"
	"time"

	glua "github.com/yuin/gopher-lua"
)

// ngx.timer: callbacks run later, detached from the request that created them, each
// as a handler of its own (cosockets, sleep and light threads allowed). When the
// worker starts draining, pending timers run at once with premature = true; the
// worker waits for running timers before it exits (bounded by
// worker_shutdown_timeout).

type timerState struct {
	mu      sync.Mutex
	pending map[*luaTimer]struct{}
	running int
	wg      sync.WaitGroup
}

type luaTimer struct {
	fn    *glua.LFunction
	args  []glua.LValue
	every time.Duration
	t     *time.Timer
}

func (v *vm) installTimer(ngx *glua.LTable) {
	L := v.L
	tm := L.NewTable()
	setFuncs(L, tm, map[string]glua.LGFunction{
		"at":    func(L *glua.LState) int { return v.timerNew(L, false) },
		"every": func(L *glua.LState) int { return v.timerNew(L, true) },
		"running_count": func(L *glua.LState) int {
			v.timers.mu.Lock()
			n := v.timers.running
			v.timers.mu.Unlock()
			L.Push(glua.LNumber(n))
			return 1
		},
		"pending_count": func(L *glua.LState) int {
			v.timers.mu.Lock()
			n := len(v.timers.pending)
			v.timers.mu.Unlock()
			L.Push(glua.LNumber(n))
			return 1
		},
	})
	ngx.RawSetString("timer", tm)
}

func (v *vm) timerNew(L *glua.LState, every bool) int {
	t := v.current(L)
	if t.run.phase == phaseInit {
		return apiDisabled(L, "ngx.timer", t.run.phase)
	}
	sec := float64(L.CheckNumber(1))
	if sec < 0 || math.IsNaN(sec) {
		L.ArgError(1, "invalid delay")
	}
	if every && sec == 0 {
		L.ArgError(1, "delay cannot be zero")
	}
	fn := L.CheckFunction(2)
	tm := &luaTimer{fn: fn, args: make([]glua.LValue, 0, L.GetTop()-2)}
	for i := 3; i <= L.GetTop(); i++ {
		tm.args = append(tm.args, L.Get(i))
	}
	d := time.Duration(sec * float64(time.Second))
	if every {
		tm.every = d
	}
	if v.exiting.Load() {
		L.Push(glua.LNil)
		L.Push(glua.LString("process exiting"))
		return 2
	}
	ts := &v.timers
	ts.mu.Lock()
	if len(ts.pending) >= v.main.maxPending {
		ts.mu.Unlock()
		L.Push(glua.LNil)
		L.Push(glua.LString("too many pending timers"))
		return 2
	}
	v.schedule(tm, d)
	ts.mu.Unlock()
	L.Push(lOne)
	return 1
}

// schedule arms tm (under timers.mu).
func (v *vm) schedule(tm *luaTimer, d time.Duration) {
	ts := &v.timers
	if ts.pending == nil {
		ts.pending = map[*luaTimer]struct{}{}
	}
	ts.pending[tm] = struct{}{}
	tm.t = time.AfterFunc(d, func() { v.fireTimer(tm, false) })
}

func (v *vm) fireTimer(tm *luaTimer, premature bool) {
	ts := &v.timers
	ts.mu.Lock()
	if _, ok := ts.pending[tm]; !ok {
		ts.mu.Unlock()
		return
	}
	delete(ts.pending, tm)
	if ts.running >= v.main.maxRunning {
		ts.mu.Unlock()
		v.logf(logAlert, "%d lua_max_running_timers are not enough", v.main.maxRunning)
		return
	}
	ts.running++
	ts.wg.Add(1)
	ts.mu.Unlock()

	defer func() {
		if p := recover(); p != nil {
			v.logf(logAlert, "panic in a Lua timer: %v\n%s", p, debug.Stack())
			ts.mu.Lock()
			ts.running--
			ts.mu.Unlock()
			ts.wg.Done()
		}
	}()
	ru := v.newRun(nil, phaseTimer, v.main.rootConf)
	args := make([]glua.LValue, 0, len(tm.args)+1)
	args = append(args, glua.LBool(premature))
	args = append(args, tm.args...)
	v.call(ru, tm.fn, 0, args...)
	if ru.exit == exitError {
		ru.logErr("entry thread")
	}
	ru.free()

	ts.mu.Lock()
	ts.running--
	if tm.every > 0 && !premature && !v.exiting.Load() {
		v.schedule(tm, tm.every)
	}
	ts.mu.Unlock()
	ts.wg.Done()
}

// fireAllPremature runs the pending timers now, with premature = true (worker exit).
func (ts *timerState) fireAllPremature(v *vm) {
	ts.mu.Lock()
	var due []*luaTimer
	for tm := range ts.pending {
		if tm.t.Stop() {
			due = append(due, tm)
		}
	}
	// Counted as running from now on, so that waitRunning waits for them.
	ts.wg.Add(len(due))
	ts.mu.Unlock()
	for _, tm := range due {
		go func() {
			defer ts.wg.Done()
			v.fireTimer(tm, true)
		}()
	}
}

// waitRunning waits for the running timers, at most timeout (0: no bound, as nginx
// waits for them without worker_shutdown_timeout).
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
