package luajit

/*
#include "engine.h"
*/
import "C"

import (
	"fmt"
)

// Yield asks, from a Func, that the coroutine which called it be suspended when the
// Func returns, with the values pushed as what Resume returns.
func (s *State) Yield() {
	s.check()
	if s.inCall == 0 {
		panic("luajit: Yield outside a Go function called by Lua")
	}
	s.yield = true
}

// spGoCall is the one door from Lua into Go: sp_trampoline calls it with the VM's
// index and the function's. A panic never unwinds into C: it becomes a Lua error,
// raised by the trampoline once Go has returned, so no longjmp crosses Go frames.
//
//export spGoCall
func spGoCall(vmid, fid C.int) (r C.int) {
	vm := vms.slots[vmid].Load()
	s := &vm.st
	s.inCall++
	s.yield = false
	s.blen = 0
	defer func() {
		s.inCall--
		if p := recover(); p != nil {
			r = s.raise(fmt.Sprint("go panic: ", p))
		}
	}()
	if err := vm.funcs[fid](s); err != nil {
		return s.raise(err.Error())
	}
	if s.yield {
		return C.SP_CB_YIELD
	}
	return C.SP_CB_RETURN
}

// raise replaces the results with the message of an error to raise.
func (s *State) raise(msg string) C.int {
	s.c.nout = 0
	s.blen = 0
	s.PushString(msg)
	return C.SP_CB_ERROR
}
