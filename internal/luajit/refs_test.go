package luajit

import (
	"testing"
)

// Lua values a Go function keeps: a timer's callback, a light thread's coroutine, a
// request's ngx.ctx table.
func TestRefs(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	var timerFn, spawned, ctx Ref
	var haveCtx bool
	s.RegisterRefs("at", func(s *State) error {
		r, ok := s.Ref(0)
		if !ok || s.Type(0) != TypeFunction || s.String(1) != "arg" {
			t.Errorf("at: %v %v %q", ok, s.Type(0), s.String(1))
		}
		timerFn = r
		return nil
	})
	s.RegisterRefs("spawn", func(s *State) error {
		r, ok := s.Ref(0)
		if !ok || s.Type(0) != TypeThread {
			t.Errorf("spawn: %v %v", ok, s.Type(0))
		}
		spawned = r
		return nil
	})
	s.RegisterRefs("getctx", func(s *State) error {
		if !haveCtx {
			return nil // ngx.ctx's table is made by the prelude: setctx
		}
		s.PushRef(ctx)
		return nil
	})
	s.RegisterRefs("setctx", func(s *State) error {
		ctx, haveCtx = s.Ref(0)
		return nil
	})
	s.RegisterRefs("ignore", func(s *State) error { return nil })
	s.Register("wait", func(s *State) error { s.Yield(); return nil })

	got, err := runThread(t, s, "refs.lua", `
		at(function(x) return "timer ran with " .. x end, "arg")
		spawn(coroutine.create(function(a) local b = wait() return a .. b end))
		setctx({n = 1})
		getctx().n = getctx().n + 1
		return getctx() == getctx(), getctx().n`)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, true, 2.0)

	// The timer's function, later, on a coroutine of its own.
	th, err := s.NewThread(timerFn)
	if err != nil {
		t.Fatal(err)
	}
	s.PushString("42")
	if st, err := s.Resume(th); st != Finished || err != nil {
		t.Fatal(st, err)
	}
	expect(t, values(s), "timer ran with 42")
	s.CloseThread(th)
	s.Unref(timerFn)

	// The coroutine Lua made, resumed from Go.
	co, err := s.ThreadOf(spawned)
	if err != nil || co.Status() != Ready {
		t.Fatal(co, err)
	}
	s.PushString("A")
	if st, err := s.Resume(co); st != Suspended || err != nil {
		t.Fatal(st, err)
	}
	s.PushString("B")
	if st, err := s.Resume(co); st != Finished || err != nil {
		t.Fatal(st, err)
	}
	expect(t, values(s), "AB")
	s.CloseThread(co)

	// The ctx table survives collections while kept.
	s.Collect()
	got, err = runThread(t, s, "ctx.lua", "return getctx().n")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, 2.0)
	s.Unref(ctx)

	// References not kept are dropped after the call: 20,000 tables of ~1 KB passed
	// to a Go function that keeps none leave nothing behind.
	s.Collect()
	before := s.MemoryInUse()
	if _, err := runThread(t, s, "drop.lua", `for i = 1, 20000 do ignore({string.rep("x", 1000) .. i}) end`); err != nil {
		t.Fatal(err)
	}
	s.Collect()
	if grown := s.MemoryInUse() - before; grown > 1<<20 {
		t.Fatalf("%d bytes kept after the calls", grown)
	}
	if _, err := s.ThreadOf(Ref(-1)); err == nil {
		t.Fatal("ThreadOf of no coroutine succeeded")
	}
}

func TestExdata(t *testing.T) {
	vm := newVM(t, Options{})
	s := vm.Lock()
	defer s.Unlock()
	// thread.exdata returns a void* cdata (it needs the ffi module loaded, as
	// lua-resty-core has it).
	fn, _ := s.Load("exdata.lua", `local ffi = require "ffi"
		local exdata = require "thread.exdata"
		return tonumber(ffi.cast("uintptr_t", exdata()))`)
	th, _ := s.NewThread(fn)
	s.SetExdata(th, 0x1234)
	if st, err := s.Resume(th); st != Finished || err != nil {
		t.Fatal(st, err)
	}
	expect(t, values(s), float64(0x1234))
}
