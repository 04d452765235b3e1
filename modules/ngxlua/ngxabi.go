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
	e.syncHeaders() // $sent_http_NAME reads them
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

// spindle_req_info copies the request's header block (when it is all its headers),
// query string and $uri into the engine's rt for rt.c's C functions
// (ngx.req.get_headers, get_uri_args, ngx.var.uri): one call into Go serves the
// three. It returns 0, or -1 when the caller should use the registered functions
// (no request, an error).
//
//export spindle_req_info
func spindle_req_info(eid C.int) (rc C.int) {
	if eid < 0 || int(eid) >= len(ffiEngines) {
		return -1
	}
	e := ffiEngines[eid].Load()
	if e == nil || e.cur == nil || e.cur.r == nil {
		return -1
	}
	defer func() {
		if recover() != nil {
			rc = -1
		}
	}()
	r, rt := e.cur.r, e.rt
	block, fast := r.HeaderBlock()
	args := r.Args()
	uri, uriOK := r.URI(), true // $uri (builtin_vars.go), without Var's map lookup
	// After the three, room for one argument decoded (get_uri_args' scratch).
	n := len(block) + len(args) + len(uri)
	if n+len(args) > int(rt.info_cap) {
		c := max(n+len(args), 1024)
		p := C.realloc(unsafe.Pointer(rt.info), C.size_t(c))
		if p == nil {
			return -1
		}
		rt.info, rt.info_cap = (*C.uchar)(p), C.int(c)
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(rt.info)), n)
	off := copy(b, block)
	off += copy(b[off:], args)
	copy(b[off:], uri)
	rt.hdr_len, rt.args_len, rt.uri_len = C.int(len(block)), C.int(len(args)), C.int(len(uri))
	rt.hdr_fast, rt.uri_ok = 0, 0
	if fast {
		rt.hdr_fast = 1
	}
	if uriOK {
		rt.uri_ok = 1
	}
	rt.info_ok = 1
	return 0
}
