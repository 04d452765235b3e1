package ngxlua

/*
#cgo pkg-config: luajit
#include <stdlib.h>
#include <lua.h>
#include "ngxabi.h"
int spindle_lua_say(lua_State *L);
int spindle_lua_print(lua_State *L);
*/
import "C"

import (
	"unsafe"

	"github.com/spindle-server/spindle/internal/luajit"
)

// The engine's spindle_rt (ngxabi.h): what Lua code reads and writes through the
// FFI instead of calling Go. A call into Go is a cgo callback (~1,000 instructions
// under callgrind, most of a minimal handler's cost in the VM); a field of C memory
// costs a load. /lua's ngx.say took one such call per request.

// cRT is spindle_rt as Go names it outside this file.
type cRT = C.spindle_rt

// newRT allocates e's spindle_rt.
func (e *engine) newRT() {
	e.rt = (*C.spindle_rt)(C.calloc(1, C.size_t(unsafe.Sizeof(C.spindle_rt{}))))
	if e.rt == nil {
		panic("out of memory")
	}
	e.rt.reqid = -1
}

// freeRT frees e's spindle_rt (the VM is closed or being closed).
func (e *engine) freeRT() {
	if e.rt != nil {
		C.free(unsafe.Pointer(e.rt.buf))
		C.free(unsafe.Pointer(e.rt))
		e.rt = nil
	}
}

// beforeResume readies the rt for a resume of ru: output is buffered in C when the
// phase may send it and the request has not ended it (ngx.eof, a raw request
// socket: Go's out answers those), the ctx key and the time are read anew.
func (e *engine) beforeResume(ru *run) {
	rt := e.rt
	ok := ru.r != nil && ru.phase.canOutput()
	if ok {
		if d := peekData(ru.r); d != nil && (d.eof || d.reqSock == reqSockRaw) {
			ok = false
		}
	}
	rt.ok = 0
	if ok {
		rt.ok = 1
	}
	rt.reqid = -1
	rt.now = 0
	rt.seq = C.double(ru.seq)
}

// afterResume takes the output the resume buffered into ru.out and clears what
// is valid only within a resume.
func (e *engine) afterResume(ru *run) {
	rt := e.rt
	if rt.said != 0 {
		e.takeOut(ru)
	}
	rt.ok = 0
	rt.reqid = -1
	rt.now = 0
}

// takeOut moves the output buffered in C to ru.out, in order with what Go's out
// buffers: every Go function called from Lua takes it first (register's wrapper).
func (e *engine) takeOut(ru *run) {
	rt := e.rt
	rt.said = 0
	if ru == nil {
		rt.len = 0
		return
	}
	ru.committed = true
	if rt.len > 0 {
		ru.out = append(ru.out, unsafe.Slice((*byte)(unsafe.Pointer(rt.buf)), int(rt.len))...)
		rt.len = 0
	}
	if rt.cap > maxKeptOut {
		// One large response does not keep its buffer for the worker's life.
		C.free(unsafe.Pointer(rt.buf))
		rt.buf, rt.cap = nil, 0
	}
}

// maxKeptOut is the largest output buffer kept between resumes; out writes the
// output past 16 KB, so most stay at their first 4 KB.
const maxKeptOut = 64 << 10

// outStopped is called when the request ends its output within a resume (ngx.eof,
// ngx.req.socket(true)): Go's out answers the next ngx.say.
func (e *engine) outStopped() {
	e.rt.ok = 0
}

// registerOut makes __sp.say and __sp.print the C functions that buffer output
// in e's rt (rt.c), for the prelude's ngx.say and ngx.print.
func (e *engine) registerOut(s *luajit.State) error {
	if err := s.RegisterC("__sp.say", unsafe.Pointer(C.spindle_lua_say), unsafe.Pointer(e.rt)); err != nil {
		return err
	}
	return s.RegisterC("__sp.print", unsafe.Pointer(C.spindle_lua_print), unsafe.Pointer(e.rt))
}

// withOut wraps a Go function called from Lua: the output buffered in C comes
// first, so that the function sees what the handler sent so far.
func (e *engine) withOut(f luajit.Func) luajit.Func {
	return func(s *luajit.State) error {
		if e.rt.said != 0 {
			e.takeOut(e.cur)
		}
		return f(s)
	}
}
