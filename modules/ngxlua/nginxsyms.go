package ngxlua

// #include <stddef.h>
// #include <stdint.h>
import "C"

import (
	"unsafe"
)

// nginx's own C functions that Lua libraries call through LuaJIT's FFI, as they find
// them in the nginx binary (ffi.C): lua-resty-string's resty.string (to_hex, atoi).
// Go's linker puts //export functions in the binary's dynamic symbol table, where
// ffi.C finds them; a call costs a cgo callback (about 80 ns, internal/luajit's
// BenchmarkFFICallGo).

const hexDigitsLower = "0123456789abcdef"

// ngx_hex_dump writes the lowercase hex digits of src[:n] to dst and returns the
// end of what it wrote, as nginx's.
//
//export ngx_hex_dump
func ngx_hex_dump(dst, src *C.uchar, n C.size_t) *C.uchar {
	if n == 0 {
		return dst
	}
	in := unsafe.Slice((*byte)(unsafe.Pointer(src)), int(n))
	out := unsafe.Slice((*byte)(unsafe.Pointer(dst)), 2*int(n))
	for i, c := range in {
		out[2*i], out[2*i+1] = hexDigitsLower[c>>4], hexDigitsLower[c&15]
	}
	return (*C.uchar)(unsafe.Add(unsafe.Pointer(dst), 2*int(n)))
}

// ngx_atoi parses the decimal number in line[:n]: -1 (NGX_ERROR) if it is empty,
// holds a byte that is not a digit or overflows, as nginx's.
//
//export ngx_atoi
func ngx_atoi(line *C.uchar, n C.size_t) C.intptr_t {
	if n == 0 {
		return -1
	}
	const cutoff, cutlim = (1<<63 - 1) / 10, (1<<63 - 1) % 10
	var v int64
	for _, c := range unsafe.Slice((*byte)(unsafe.Pointer(line)), int(n)) {
		if c < '0' || c > '9' {
			return -1
		}
		d := int64(c - '0')
		if v >= cutoff && (v > cutoff || d > cutlim) {
			return -1
		}
		v = v*10 + d
	}
	return C.intptr_t(v)
}
