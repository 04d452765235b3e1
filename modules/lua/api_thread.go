package lua

import (
	"fmt"
	"reflect"
	"runtime"
	"runtime/debug"

	glua "github.com/yuin/gopher-lua"
)

// ngx.thread: light threads. A spawned thread runs on a goroutine and a Lua thread of
// its own; as in ngx_lua it runs first, until it waits for something or ends, and
// then its parent carries on. The handler ends when its entry thread and all its
// light threads have ended, or at once (killing the others) when one of them calls
// ngx.exit, ngx.exec or ngx.redirect, or the entry thread fails.

func yield() { runtime.Gosched() }

func (v *vm) installThread(ngx *glua.LTable) {
	L := v.L
	th := L.NewTable()
	setFuncs(L, th, map[string]glua.LGFunction{
		"spawn": v.threadSpawn,
		"wait":  v.threadWait,
		"kill":  v.threadKill,
	})
	ngx.RawSetString("thread", th)
	v.uthreadMeta = L.NewTable()
	v.uthreadMeta.RawSetString("__tostring", L.NewFunction(func(L *glua.LState) int {
		L.Push(glua.LString(fmt.Sprintf("thread: %p", L.CheckUserData(1).Value)))
		return 1
	}))
}

func (v *vm) threadSpawn(L *glua.LState) int {
	t := v.current(L)
	ru := t.run
	if !ru.phase.canYield() {
		return apiDisabled(L, "ngx.thread.spawn", ru.phase)
	}
	fn := L.CheckFunction(1)
	args := make([]glua.LValue, 0, L.GetTop()-1)
	for i := 2; i <= L.GetTop(); i++ {
		args = append(args, L.Get(i))
	}
	t.multiThread()
	ut := &thread{run: ru, parent: t, started: make(chan struct{}), done: make(chan struct{})}
	v.attach(ut)
	ut.self = L.NewUserData()
	ut.self.Value = ut
	ut.self.Metatable = v.uthreadMeta
	ru.threads = append(ru.threads, ut)
	go v.runLightThread(ut, fn, args)
	started := ut.started
	v.blocking(t, func() { <-started })
	L.Push(ut.self)
	return 1
}

// runLightThread runs a spawned thread to its end, logging its error if it fails.
func (v *vm) runLightThread(ut *thread, fn *glua.LFunction, args []glua.LValue) {
	defer func() {
		// A bug must not take the worker down from a goroutine of our own.
		if p := recover(); p != nil {
			v.logf(logAlert, "panic in a Lua light thread: %v\n%s", p, debug.Stack())
			select {
			case <-ut.done:
			default:
				close(ut.done)
			}
		}
	}()
	v.lock(ut)
	defer v.unlockOnPanic(ut)
	L := ut.L
	L.Push(fn)
	for _, a := range args {
		L.Push(a)
	}
	top := L.GetTop() - len(args) - 1
	err := L.PCall(len(args), glua.MultRet, nil)
	ru := ut.run
	if err != nil {
		ut.ok = false
		if !ut.ended() {
			msg := errorText(err)
			ut.results = []glua.LValue{glua.LString(firstLine(msg))}
			saved := ru.errMsg
			ru.errMsg = msg
			ru.logErr("user thread")
			ru.errMsg = saved
		} else {
			ut.results = []glua.LValue{glua.LString("killed")}
		}
	} else {
		ut.ok = true
		for i := top + 1; i <= L.GetTop(); i++ {
			ut.results = append(ut.results, L.Get(i))
		}
	}
	v.detach(ut, err == nil)
	close(ut.done)
	v.unlock(ut) // which lets the parent carry on if ut never waited
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

func (v *vm) checkChild(L *glua.LState, t *thread, n int) *thread {
	ud, ok := L.Get(n).(*glua.LUserData)
	ut, ok2 := (*thread)(nil), false
	if ok {
		ut, ok2 = ud.Value.(*thread)
	}
	if !ok2 {
		L.ArgError(n, "thread expected")
	}
	if ut.parent != t {
		L.RaiseError("only the parent coroutine can wait on or kill the thread")
	}
	return ut
}

// threadWait is ngx.thread.wait(t1, t2, ...): the results of the first to end, as
// true, results... or false, error.
func (v *vm) threadWait(L *glua.LState) int {
	t := v.current(L)
	if !t.run.phase.canYield() {
		return apiDisabled(L, "ngx.thread.wait", t.run.phase)
	}
	n := L.GetTop()
	if n == 0 {
		L.RaiseError("at least one thread should be specified")
	}
	var uts []*thread
	for i := 1; i <= n; i++ {
		ut := v.checkChild(L, t, i)
		if ut.waited {
			L.Push(glua.LFalse)
			L.Push(glua.LString("already waited or killed"))
			return 2
		}
		uts = append(uts, ut)
	}
	for {
		for _, ut := range uts {
			select {
			case <-ut.done:
				ut.waited = true
				L.Push(glua.LBool(ut.ok))
				for _, r := range ut.results {
					L.Push(r)
				}
				return 1 + len(ut.results)
			default:
			}
		}
		cases := make([]reflect.SelectCase, 0, len(uts)+1)
		for _, ut := range uts {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ut.done)})
		}
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.killCh())})
		v.blocking(t, func() { reflect.Select(cases) })
	}
}

// threadKill is ngx.thread.kill(t): stops a light thread, which unwinds where it waits.
func (v *vm) threadKill(L *glua.LState) int {
	t := v.current(L)
	ut := v.checkChild(L, t, 1)
	if ut.waited {
		L.Push(glua.LNil)
		L.Push(glua.LString("already waited or killed"))
		return 2
	}
	select {
	case <-ut.done:
		ut.waited = true
		L.Push(lOne)
		return 1
	default:
	}
	if ut.inSubreq {
		L.Push(glua.LNil)
		L.Push(glua.LString("pending subrequests"))
		return 2
	}
	ut.interrupt()
	ut.waited = true
	done := ut.done
	v.blocking(t, func() { <-done })
	L.Push(lOne)
	return 1
}
