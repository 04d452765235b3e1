// nginx's C functions that Lua libraries call by name through LuaJIT's ffi.C, as
// they find them in an nginx binary: lua-resty-string's to_hex (ngx_hex_dump) and
// atoi (ngx_atoi). The linker exports them (ngxabi.go's LDFLAGS), so ffi.C finds
// them in the executable's dynamic symbol table.
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

unsigned char *ngx_hex_dump(unsigned char *dst, const unsigned char *src, size_t len) {
	static const char hex[] = "0123456789abcdef";
	while (len--) {
		*dst++ = hex[*src >> 4];
		*dst++ = hex[*src++ & 0xf];
	}
	return dst;
}

// ngx_atoi: the decimal number in line[0:n], or -1 (NGX_ERROR) for an empty or
// non-digit string or an overflow.
intptr_t ngx_atoi(const unsigned char *line, size_t n) {
	intptr_t value = 0, cutoff = INTPTR_MAX / 10, cutlim = INTPTR_MAX % 10;
	if (n == 0) {
		return -1;
	}
	for (; n--; line++) {
		if (*line < '0' || *line > '9') {
			return -1;
		}
		if (value >= cutoff && (value > cutoff || *line - '0' > cutlim)) {
			return -1;
		}
		value = value * 10 + (*line - '0');
	}
	return value;
}
