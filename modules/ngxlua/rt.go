package ngxlua

/*
#cgo pkg-config: luajit
#include <stdlib.h>
#include <lua.h>
#include "ngxabi.h"
int spindle_lua_say(lua_State *L);
int spindle_lua_print(lua_State *L);
int spindle_lua_digest_init(lua_State *L);
int spindle_lua_md5(lua_State *L);
int spindle_lua_md5_bin(lua_State *L);
int spindle_lua_sha1_bin(lua_State *L);
int spindle_lua_var(lua_State *L);
int spindle_lua_header_set(lua_State *L);
int spindle_lua_req_headers(lua_State *L);
int spindle_lua_uri_args(lua_State *L);
*/
import "C"

import (
	"unsafe"

	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/modules/httpcore"
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
	e.rt.eid = C.int(e.ffiID)
}

// freeRT frees e's spindle_rt (the VM is closed or being closed).
func (e *engine) freeRT() {
	if e.rt != nil {
		C.free(unsafe.Pointer(e.rt.buf))
		C.free(unsafe.Pointer(e.rt.hbuf))
		C.free(unsafe.Pointer(e.rt.info))
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
	rt.hdr_ok = headerOK(ru)
	rt.info_ok = 0
}

// headerOK is rt.hdr_ok for ru: 1 when ngx.header sets may be queued in C (a
// request's phase that may set them, before the header is sent or any output
// taken), else 0: the prelude then calls header_set, which logs or refuses.
func headerOK(ru *run) C.int {
	if ru == nil || ru.r == nil || ru.committed {
		return 0
	}
	switch ru.phase {
	case phaseRewrite, phaseAccess, phaseContent, phaseBodyFilter, phaseSet:
	default:
		return 0
	}
	if ru.r.HeaderSent() {
		return 0
	}
	return 1
}

// applyHeaders applies the ngx.header sets queued in C (rt.c's
// spindle_lua_header_set) to ru's response, in their order, as header_set would
// have: the name as ngx.header maps it, the value with its control bytes escaped,
// replacing the header's values.
func (e *engine) applyHeaders(ru *run) {
	rt := e.rt
	b := unsafe.Slice((*byte)(unsafe.Pointer(rt.hbuf)), int(rt.hlen))
	rt.hlen = 0
	if ru != nil && ru.r != nil {
		h := ru.r.RespHeader()
		all := string(b) // the values are substrings of one copy: one allocation
		for off := 0; off+8 <= len(b); {
			n := int(*(*uint32)(unsafe.Pointer(&b[off])))
			vn := int(*(*uint32)(unsafe.Pointer(&b[off+4])))
			off += 8
			k := e.headerKey(all[off : off+n])
			v := httpcore.EscapeHeaderValue(all[off+n : off+n+vn])
			off += n + vn
			h.Del(k)
			h.Add(k, v)
		}
	}
	if rt.hcap > maxKeptOut {
		C.free(unsafe.Pointer(rt.hbuf))
		rt.hbuf, rt.hcap = nil, 0
	}
}

// afterResume takes the output the resume buffered into ru.out and clears what
// is valid only within a resume.
func (e *engine) afterResume(ru *run) {
	rt := e.rt
	if rt.hlen != 0 {
		e.applyHeaders(ru)
	}
	rt.hdr_ok, rt.info_ok = 0, 0
	if rt.info_cap > maxKeptOut {
		C.free(unsafe.Pointer(rt.info))
		rt.info, rt.info_cap = nil, 0
	}
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
// in e's rt (rt.c), for the prelude's ngx.say and ngx.print; and the other C
// functions of rt.c the prelude calls: ngx.var, the request's headers and
// arguments, ngx.header's sets (all with e's rt), and libcrypto's digests for
// ngx.md5 and friends (without).
func (e *engine) registerOut(s *luajit.State) error {
	rt := unsafe.Pointer(e.rt)
	for _, f := range []struct {
		name string
		fn   unsafe.Pointer
		ud   unsafe.Pointer
	}{
		{"say", unsafe.Pointer(C.spindle_lua_say), rt},
		{"print", unsafe.Pointer(C.spindle_lua_print), rt},
		{"digest_init", unsafe.Pointer(C.spindle_lua_digest_init), nil},
		{"c_md5", unsafe.Pointer(C.spindle_lua_md5), nil},
		{"c_md5_bin", unsafe.Pointer(C.spindle_lua_md5_bin), nil},
		{"c_sha1_bin", unsafe.Pointer(C.spindle_lua_sha1_bin), nil},
		{"c_var", unsafe.Pointer(C.spindle_lua_var), rt},
		{"c_header_set", unsafe.Pointer(C.spindle_lua_header_set), rt},
		{"c_req_headers", unsafe.Pointer(C.spindle_lua_req_headers), rt},
		{"c_uri_args", unsafe.Pointer(C.spindle_lua_uri_args), rt},
	} {
		if err := s.RegisterC("__sp."+f.name, f.fn, f.ud); err != nil {
			return err
		}
	}
	return nil
}

// withOut wraps a Go function called from Lua: the header sets queued in C and the
// output buffered there come first, so that the function sees what the handler set
// and sent so far. Whether sets may be queued after it is decided again once it
// returns (it may have sent the header).
func (e *engine) withOut(f luajit.Func) luajit.Func {
	return func(s *luajit.State) error {
		rt := e.rt
		if rt.hlen != 0 {
			e.applyHeaders(e.cur)
		}
		if rt.said != 0 {
			e.takeOut(e.cur)
		}
		// f may change the request (its URI, arguments, headers): rt's copy of
		// them (spindle_req_info) is taken again after it.
		rt.hdr_ok, rt.info_ok = 0, 0
		err := f(s)
		rt.hdr_ok, rt.info_ok = headerOK(e.cur), 0
		return err
	}
}

// syncHeaders applies the header sets queued in C, for Go code that reads the
// response's headers during a resume without withOut (the FFI's functions,
// extensions' functions).
func (e *engine) syncHeaders() {
	if e.rt != nil && e.rt.hlen != 0 {
		e.applyHeaders(e.cur)
	}
}
