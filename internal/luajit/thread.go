package luajit

/*
#include <stdlib.h>
#include "engine.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"time"
	"unsafe"
)

// A Thread is a Lua coroutine: what ngx_lua runs a request's handler on. It is
// anchored in the VM's registry from NewThread to CloseThread, so a suspended
// coroutine that nothing in Lua refers to stays alive while its request waits.
type Thread struct {
	co     *C.lua_State
	ref    C.int
	fn     C.int // the function a reused coroutine is to run, or LUA_NOREF
	status Status

	// Limit bounds the time the thread runs Lua code, summed over its resumes
	// (waiting between them does not count): lua_max_run_time. 0: no limit.
	Limit time.Duration

	used int64 // ticks run in its finished resumes
}

// Status is where a Thread is.
type Status int

// A Thread is ready (not run yet), suspended (it yielded), finished (returned) or
// dead (ended with an error).
const (
	Ready Status = iota
	Suspended
	Finished
	Dead
)

// Status says where t is.
func (t *Thread) Status() Status { return t.status }

// NewThread makes a coroutine that runs fn when first resumed.
func (s *State) NewThread(fn Ref) (*Thread, error) {
	if err := s.entry(); err != nil {
		return nil, err
	}
	vm := s.vm
	if n := len(vm.idle); n > 0 {
		t := vm.idle[n-1]
		vm.idle = vm.idle[:n-1]
		t.fn = C.int(fn) // put on its stack by the first Resume: one cgo call less
		return t, nil
	}
	rc := C.sp_newthread(s.h(), C.int(fn))
	s.blen = 0
	if rc != 0 {
		return nil, s.error(rc)
	}
	return &Thread{co: s.c.from, ref: s.c.ref, fn: C.LUA_NOREF}, nil
}

// ThreadOf makes a Thread of the coroutine that r holds (one Lua made with
// coroutine.create and a Func kept with Ref: a light thread); the Thread owns r
// from then on, and CloseThread drops it.
func (s *State) ThreadOf(r Ref) (*Thread, error) {
	if err := s.entry(); err != nil {
		return nil, err
	}
	co := C.sp_thread(s.h(), C.int(r))
	if co == nil {
		return nil, errors.New("luajit: not a coroutine")
	}
	return &Thread{co: co, ref: C.int(r), fn: C.LUA_NOREF, status: [...]Status{Ready, Suspended, Finished, Dead}[s.c.arg]}, nil
}

// SetExdata sets what `require "thread.exdata"` returns in t's Lua code (a feature
// of OpenResty's LuaJIT), as a light userdata: lua-resty-core's request pointer.
// h is a handle (an index, or the address of C memory), never Go memory. A reused
// thread keeps it until set again.
func (s *State) SetExdata(t *Thread, h uintptr) {
	s.mustEnter()
	C.sp_setexdata(s.h(), coh(t.co), C.uintptr_t(h))
}

// maxIdleThreads bounds the coroutines kept for reuse. A coroutine that returned
// normally is reused by NewThread: creating one (lua_newthread, its stack, a
// registry slot) and collecting it later was 60% of a minimal request's cost.
const maxIdleThreads = 64

// LoadSandboxed compiles code as Load does, as the body of a function (a "closure
// factory", as ngx_lua caches handlers: "return function(...) " code "\nend", so
// line numbers stay), for NewSandboxedThread.
func (s *State) LoadSandboxed(name, code string) (Ref, error) {
	return s.Load(name, "return function(...) "+code+"\nend")
}

// NewSandboxedThread makes a coroutine that runs a new closure of a chunk loaded
// with LoadSandboxed, with globals of its own: a new table that reads through to
// the shared globals, so what a handler assigns to a global stays its own, as in
// ngx_lua. It costs a closure and a table per thread.
func (s *State) NewSandboxedThread(factory Ref) (*Thread, error) {
	if err := s.entry(); err != nil {
		return nil, err
	}
	vm := s.vm
	var t *Thread
	if n := len(vm.idle); n > 0 {
		t = vm.idle[n-1]
		vm.idle = vm.idle[:n-1]
	} else {
		t = &Thread{fn: C.LUA_NOREF}
	}
	rc := C.sp_sandbox(s.h(), C.int(factory), coh(t.co))
	s.blen = 0
	if rc != 0 {
		if t.co != nil {
			vm.idle = append(vm.idle, t) // still ready for reuse
		}
		return nil, s.error(rc)
	}
	if t.co == nil {
		t.co, t.ref = s.c.from, s.c.ref
	}
	t.fn = C.LUA_NOREF
	return t, nil
}

// CloseThread drops t's anchor: the coroutine is garbage once Lua does not refer
// to it, or is kept for reuse if it returned normally. A request's coroutine is
// closed when the request ends, finished or not; t must not be used after.
func (s *State) CloseThread(t *Thread) {
	s.mustEnter()
	if t.co != nil && t.status == Finished && len(s.vm.idle) < maxIdleThreads {
		t.status = Ready
		t.Limit = 0
		t.used = 0
		s.vm.idle = append(s.vm.idle, t)
		return
	}
	if t.co != nil {
		C.sp_unref(s.h(), t.ref)
		t.co = nil
		t.status = Dead
	}
}

// Resume runs t until it yields, returns or fails, with the values pushed as the
// arguments of its function (first resume) or the results of the Func that
// yielded. It returns t's new status; the values it yielded or returned can then
// be read with N and the Arg methods. An error (a *Error) leaves t Dead.
func (s *State) Resume(t *Thread) (Status, error) {
	if err := s.entry(); err != nil {
		return t.status, err
	}
	if t.co == nil || t.status >= Finished {
		s.c.nout = 0
		s.blen = 0
		return t.status, fmt.Errorf("luajit: resume of a %s thread", [...]string{"ready", "suspended", "finished", "dead"}[t.status])
	}
	vm := s.vm
	vm.gen++
	if vm.gen == 0 {
		vm.gen = 1
	}
	gen := vm.gen
	var from int64
	if t.Limit > 0 {
		// Published for the watchdog, gen last (see watchdog).
		from = vm.tick.Load()
		vm.runStart.Store(from - t.used)
		vm.runLimit.Store(int64(t.Limit))
		vm.running.Store(t)
		vm.runGen.Store(gen)
		if time.Duration(t.used)*vm.opts.Tick >= t.Limit {
			vm.interrupt(gen, t.Limit) // out of time already: it stops at once
		}
	}
	fn := t.fn
	t.fn = C.LUA_NOREF
	rc := C.sp_resume(s.h(), coh(t.co), fn, C.int(gen))
	s.blen = 0
	if t.Limit > 0 {
		vm.runGen.Store(0)
		vm.running.Store(nil)
		t.used += vm.tick.Load() - from
	}
	switch rc {
	case C.LUA_YIELD:
		t.status = Suspended
		return Suspended, nil
	case 0:
		t.status = Finished
		return Finished, nil
	}
	t.status = Dead
	err := s.error(rc)
	if s.c.killed != 0 && rc == C.LUA_ERRRUN {
		err.(*Error).Code = ErrTimeout
	}
	return Dead, err
}

// watchdog counts ticks and interrupts the resume in progress once its thread has
// run past its Limit. Resume only reads the tick count and publishes the resume
// (its number last, so the watchdog, which reads it first and again last, never
// mixes two resumes); a limit costs a few atomic operations per resume.
func (vm *VM) watchdog() {
	defer close(vm.done)
	tk := time.NewTicker(vm.opts.Tick)
	defer tk.Stop()
	var interrupted int32 // the resume interrupted last
	var at int64          // when
	for {
		select {
		case <-vm.stop:
			return
		case <-tk.C:
		}
		now := vm.tick.Add(1)
		gen := vm.runGen.Load()
		if gen == 0 {
			continue
		}
		start, limit, t := vm.runStart.Load(), time.Duration(vm.runLimit.Load()), vm.running.Load()
		if vm.runGen.Load() != gen {
			continue
		}
		ran := time.Duration(now-start) * vm.opts.Tick
		if ran < limit {
			continue
		}
		if interrupted != gen {
			interrupted, at = gen, now
			vm.interrupt(gen, limit)
			continue
		}
		if vm.opts.OnStuck != nil && at != 0 && time.Duration(now-at)*vm.opts.Tick >= vm.opts.StuckAfter {
			at = 0 // once per resume
			vm.opts.OnStuck(t, ran)
		}
	}
}

// interrupt makes the resume numbered gen fail with the limit's message at its next
// interpreted instruction or call to Go (see sp_interrupt).
func (vm *VM) interrupt(gen int32, limit time.Duration) {
	msg := C.CString(fmt.Sprintf("run time limit (%v) exceeded", limit))
	C.sp_interrupt(vm.c, C.int(gen), msg)
	C.free(unsafe.Pointer(msg))
}
