package ngxlua

// ngxabi.c: nginx's C functions that Lua libraries call through ffi.C, which looks
// names up in the process's dynamic symbol table. cgo refuses
// -Wl,--export-dynamic-symbol=NAME, so the binary exports all its C symbols: 245
// dynamic symbols instead of 137 (Go's own are not among them) and 2.5 KB more.

/*
#cgo LDFLAGS: -Wl,--export-dynamic
#include <stddef.h>
#include <stdint.h>
unsigned char *ngx_hex_dump(unsigned char *dst, const unsigned char *src, size_t len);
intptr_t ngx_atoi(const unsigned char *line, size_t n);
*/
import "C"
