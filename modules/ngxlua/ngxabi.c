// C functions that Lua code calls through LuaJIT's ffi.C, which looks names up in
// the process's dynamic symbol table (ngxabi.go exports them):
//
// - nginx's own, as Debian's Lua libraries find them in an nginx binary:
//   lua-resty-string's to_hex (ngx_hex_dump) and atoi (ngx_atoi), and the base64
//   coders lua-resty-core's ngx.base64 calls;
// - the pure functions of the ngx API (no request needed), called by prelude.lua
//   through the FFI, under ngx_lua's names where ngx_lua has one: a call costs a few
//   nanoseconds where a call into Go costs ~130 ns (docs/lua-engine.md).
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <sys/types.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

typedef struct {
	size_t len;
	unsigned char *data;
} ngx_str_t;

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

// Base64 as nginx's ngx_encode_base64_internal and ngx_decode_base64_internal.
static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64encode(unsigned char *d, const unsigned char *s, size_t len, const char *basis, int padding) {
	unsigned char *start = d;
	while (len > 2) {
		*d++ = basis[(s[0] >> 2) & 0x3f];
		*d++ = basis[((s[0] & 3) << 4) | (s[1] >> 4)];
		*d++ = basis[((s[1] & 0x0f) << 2) | (s[2] >> 6)];
		*d++ = basis[s[2] & 0x3f];
		s += 3;
		len -= 3;
	}
	if (len) {
		*d++ = basis[(s[0] >> 2) & 0x3f];
		if (len == 1) {
			*d++ = basis[(s[0] & 3) << 4];
			if (padding) {
				*d++ = '=';
			}
		} else {
			*d++ = basis[((s[0] & 3) << 4) | (s[1] >> 4)];
			*d++ = basis[(s[1] & 0x0f) << 2];
		}
		if (padding) {
			*d++ = '=';
		}
	}
	return d - start;
}

static unsigned char b64dstd[256], b64durl[256];

// Filled when the program starts, before any thread can read them.
__attribute__((constructor)) static void b64init(void) {
	for (int i = 0; i < 256; i++) {
		b64dstd[i] = b64durl[i] = 77;
	}
	for (int i = 0; i < 64; i++) {
		b64dstd[(unsigned char)b64std[i]] = i;
		b64durl[(unsigned char)b64url[i]] = i;
	}
}

// b64decode returns the decoded length, or -1 for a byte outside the alphabet
// (before the first '=', which ends the input) or a length of 4n+1.
static intptr_t b64decode(unsigned char *d, const unsigned char *s, size_t n, const unsigned char *basis) {
	unsigned char *start = d;
	size_t len;
	for (len = 0; len < n; len++) {
		if (s[len] == '=') {
			break;
		}
		if (basis[s[len]] == 77) {
			return -1;
		}
	}
	if (len % 4 == 1) {
		return -1;
	}
	while (len > 3) {
		*d++ = (unsigned char)(basis[s[0]] << 2 | basis[s[1]] >> 4);
		*d++ = (unsigned char)(basis[s[1]] << 4 | basis[s[2]] >> 2);
		*d++ = (unsigned char)(basis[s[2]] << 6 | basis[s[3]]);
		s += 4;
		len -= 4;
	}
	if (len > 1) {
		*d++ = (unsigned char)(basis[s[0]] << 2 | basis[s[1]] >> 4);
	}
	if (len > 2) {
		*d++ = (unsigned char)(basis[s[1]] << 4 | basis[s[2]] >> 2);
	}
	return d - start;
}

void ngx_encode_base64(ngx_str_t *dst, ngx_str_t *src) {
	dst->len = b64encode(dst->data, src->data, src->len, b64std, 1);
}

void ngx_encode_base64url(ngx_str_t *dst, ngx_str_t *src) {
	dst->len = b64encode(dst->data, src->data, src->len, b64url, 0);
}

intptr_t ngx_decode_base64(ngx_str_t *dst, ngx_str_t *src) {
	intptr_t n = b64decode(dst->data, src->data, src->len, b64dstd);
	if (n < 0) {
		return -1;
	}
	dst->len = n;
	return 0;
}

intptr_t ngx_decode_base64url(ngx_str_t *dst, ngx_str_t *src) {
	intptr_t n = b64decode(dst->data, src->data, src->len, b64durl);
	if (n < 0) {
		return -1;
	}
	dst->len = n;
	return 0;
}

// ngx_lua's: ngx.encode_base64 and ngx.decode_base64.
size_t ngx_http_lua_ffi_encode_base64(const unsigned char *src, size_t slen, unsigned char *dst, int no_padding) {
	return b64encode(dst, src, slen, b64std, !no_padding);
}

int ngx_http_lua_ffi_decode_base64(const unsigned char *src, size_t slen, unsigned char *dst, size_t *dlen) {
	intptr_t n = b64decode(dst, src, slen, b64dstd);
	if (n < 0) {
		return 0;
	}
	*dlen = n;
	return 1;
}

// ngx.now and ngx.time read the clock: spindle keeps no cached time for Lua
// (ngx.update_time does nothing), ngx.now has milliseconds as nginx's.
double ngx_http_lua_ffi_now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000;
}

long ngx_http_lua_ffi_time(void) {
	return (long)time(NULL);
}

// resty.core.time's monotonic_msec.
uint64_t ngx_http_lua_ffi_monotonic_msec(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// spindle_re_exec is one ngx.re match in C (prelude.lua calls it through the FFI
// with a pattern internal/pcre compiled and the engine keeps): the offsets of the
// match and its groups go to ovec (2*pairs ints, -1 for a group that did not take
// part). It returns pcre2_match's result: > 0 on a match, PCRE2_ERROR_NOMATCH (-1),
// or another negative code. The match data is the thread's own (one VM per thread
// at a time).
int spindle_re_exec(void *code, const unsigned char *subj, size_t len, size_t start, int pairs, int *ovec) {
	static __thread pcre2_match_data *md;
	static __thread uint32_t mdpairs;
	if (md == NULL || mdpairs < (uint32_t)pairs) {
		if (md != NULL) {
			pcre2_match_data_free(md);
		}
		uint32_t n = pairs < 32 ? 32 : (uint32_t)pairs;
		md = pcre2_match_data_create(n, NULL);
		if (md == NULL) {
			mdpairs = 0;
			return PCRE2_ERROR_NOMEMORY;
		}
		mdpairs = n;
	}
	if (start > len) {
		return PCRE2_ERROR_NOMATCH;
	}
	int rc = pcre2_match((pcre2_code *)code, subj, len, start, 0, md, NULL);
	if (rc < 0) {
		return rc;
	}
	if (rc == 0) {
		rc = (int)mdpairs;
	}
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
	int n = rc < pairs ? rc : pairs;
	for (int i = 0; i < 2 * n; i++) {
		ovec[i] = ov[i] == PCRE2_UNSET ? -1 : (int)ov[i];
	}
	for (int i = 2 * n; i < 2 * pairs; i++) {
		ovec[i] = -1;
	}
	return rc;
}
