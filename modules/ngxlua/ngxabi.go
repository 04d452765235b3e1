package ngxlua

// ngxabi.c: C functions that Lua code calls through ffi.C, which looks names up in
// the process's dynamic symbol table. cgo refuses
// -Wl,--export-dynamic-symbol=NAME, so the binary exports all its C symbols: ~260
// dynamic symbols instead of 137 (Go's own are not among them), a few KB.
//
// Below, the Go functions the prelude calls through the FFI as well (a cgo export
// is in that table too): the request-bound reads hot enough that the trampoline's
// marshalling matters. Measured per ngx.var.uri in a Lua loop: 209-438 ns through
// the trampoline (a registered function behind a metamethod), 128-234 ns through
// the FFI (docs/lua-engine.md).

/*
#cgo LDFLAGS: -Wl,--export-dynamic
#cgo pkg-config: libpcre2-8
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
unsigned char *ngx_hex_dump(unsigned char *dst, const unsigned char *src, size_t len);
*/
import "C"

import (
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/spindle-server/spindle/modules/httpcore"
)

// ffiEngines are the engines the FFI functions reach by index (an engine's ffiID),
// read without a lock: a VM's calls come from the goroutine that owns it.
var ffiEngines [4096]atomic.Pointer[engine]

var ffiMu sync.Mutex // taking and freeing slots

// ffiRegister gives e a slot, or -1 when all are taken (the prelude then uses the
// registered functions).
func ffiRegister(e *engine) int {
	ffiMu.Lock()
	defer ffiMu.Unlock()
	for i := range ffiEngines {
		if ffiEngines[i].Load() == nil {
			ffiEngines[i].Store(e)
			return i
		}
	}
	return -1
}

// ffiRelease frees e's slot and its value buffer.
func ffiRelease(e *engine) {
	if e.ffiID >= 0 {
		ffiEngines[e.ffiID].Store(nil)
		e.ffiID = -1
	}
	if e.ffiBuf != nil {
		C.free(e.ffiBuf)
		e.ffiBuf, e.ffiCap = nil, 0
	}
	e.freeRT()
}

// ffiValue copies v into the engine's C buffer (Lua reads it after the call
// returns, so it cannot point into Go memory).
func (e *engine) ffiValue(v string, out **C.uchar, outlen *C.size_t) {
	if len(v) > e.ffiCap {
		n := max(len(v), 256)
		p := C.realloc(e.ffiBuf, C.size_t(n))
		if p == nil {
			panic("out of memory")
		}
		e.ffiBuf, e.ffiCap = p, n
	}
	copy(unsafe.Slice((*byte)(e.ffiBuf), e.ffiCap), v)
	*out = (*C.uchar)(e.ffiBuf)
	*outlen = C.size_t(len(v))
}

// spindle_var_get is ngx.var.NAME's read for a name (not a capture number): 0 and
// the value, 1 when the variable has no value, -1 when the caller should use the
// registered function instead (which raises the error: no request, ...).
//
//export spindle_var_get
func spindle_var_get(eid C.int, name *C.char, n C.size_t, out **C.uchar, outlen *C.size_t) (rc C.int) {
	if eid < 0 || int(eid) >= len(ffiEngines) {
		return -1
	}
	e := ffiEngines[eid].Load()
	if e == nil || e.cur == nil || e.cur.r == nil || n == 0 {
		return -1
	}
	defer func() {
		if recover() != nil {
			rc = -1
		}
	}()
	r := e.cur.r
	if e.rt.said != 0 {
		e.takeOut(e.cur) // $bytes_sent and the like count it
	}
	k := unsafe.String((*byte)(unsafe.Pointer(name)), int(n)) // read, not kept
	var val string
	var ok bool
	if len(k) > 4 && k[:4] == "arg_" {
		val, ok = httpcore.ArgValue(r.Args(), k[4:])
	} else {
		val, ok = r.Var(k)
	}
	if !ok {
		return 1
	}
	e.ffiValue(val, out, outlen)
	return 0
}

// spindle_req_id is ngx.ctx's key (engine.ctxID): > 0 for a request, 0 for a run
// without one, -1 when the caller should use the registered function (no run: it
// raises the error).
//
//export spindle_req_id
func spindle_req_id(eid C.int) (id C.double) {
	if eid < 0 || int(eid) >= len(ffiEngines) {
		return -1
	}
	e := ffiEngines[eid].Load()
	if e == nil || e.cur == nil {
		return -1
	}
	if e.cur.r == nil {
		e.rt.reqid = 0
		return 0
	}
	defer func() {
		if recover() != nil {
			id = -1
		}
	}()
	id = C.double(e.ctxID(e.cur.r))
	e.rt.reqid = id // for the rest of the resume: read in Lua, no call
	return id
}

// headerKey is ngx.header's name for the Lua key lk (a view of C memory, not kept):
// underscores made dashes and unsafe bytes escaped, kept for the next requests so
// that a handler's usual names cost a map lookup, not an allocation.
func (e *engine) headerKey(lk string) string {
	if k, ok := e.hdrKeys[lk]; ok {
		return k
	}
	lk = strings.Clone(lk)
	k := httpcore.EscapeHeaderName(headerName(lk))
	if e.hdrKeys == nil {
		e.hdrKeys = map[string]string{}
	}
	if len(e.hdrKeys) < maxHeaderKeys {
		e.hdrKeys[lk] = k
	}
	return k
}

// maxHeaderKeys bounds headerKey's names.
const maxHeaderKeys = 256

// spindle_header_set is ngx.header.NAME = "value" in the common case: one string
// value set in a phase that may, before the header is sent, on a name other than
// Content-Length. It returns 0 when done, -1 when the caller should use the
// registered function (every other case, errors and the log line included).
//
//export spindle_header_set
func spindle_header_set(eid C.int, name *C.char, n C.size_t, val *C.char, vn C.size_t) (rc C.int) {
	if eid < 0 || int(eid) >= len(ffiEngines) {
		return -1
	}
	e := ffiEngines[eid].Load()
	if e == nil || e.cur == nil || e.cur.r == nil {
		return -1
	}
	ru, r := e.cur, e.cur.r
	if e.rt.said != 0 {
		e.takeOut(ru)
	}
	switch ru.phase {
	case phaseRewrite, phaseAccess, phaseContent, phaseBodyFilter, phaseSet:
	default:
		return -1
	}
	if r.HeaderSent() || ru.committed || int(n) == len("Content-Length") { // (and other 14-byte names: slower, same result)
		return -1
	}
	defer func() {
		if recover() != nil {
			rc = -1
		}
	}()
	k := e.headerKey(unsafe.String((*byte)(unsafe.Pointer(name)), int(n)))
	v := httpcore.EscapeHeaderValue(C.GoStringN(val, C.int(vn)))
	h := r.RespHeader()
	h.Del(k)
	h.Add(k, v)
	return 0
}
