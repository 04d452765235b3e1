package ngxlua

// ngxabi.c: C functions that Lua code calls through ffi.C, which looks names up in
// the process's dynamic symbol table. cgo refuses
// -Wl,--export-dynamic-symbol=NAME, so the binary exports all its C symbols: ~260
// dynamic symbols instead of 137 (Go's own are not among them), a few KB.

/*
#cgo LDFLAGS: -Wl,--export-dynamic
#include <stddef.h>
#include <stdint.h>
unsigned char *ngx_hex_dump(unsigned char *dst, const unsigned char *src, size_t len);
*/
import "C"
