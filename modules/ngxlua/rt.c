// The C side of spindle_rt (ngxabi.h, rt.go): ngx.say and ngx.print as functions of
// Lua's C API, and ngx.now's cached time for the FFI.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <lua.h>
#include <lauxlib.h>
#include "ngxabi.h"
#include "_cgo_export.h"

double ngx_http_lua_ffi_now(void);
static int req_info(spindle_rt *rt);

// rt_reserve makes room for n more bytes of output: 0 when memory runs out.
static int rt_reserve(spindle_rt *rt, size_t n) {
	if (n > (size_t)(INT32_MAX - rt->len))
		return 0;
	if ((size_t)rt->len + n <= (size_t)rt->cap)
		return 1;
	size_t cap = rt->cap > 0 ? (size_t)rt->cap : 4096;
	while (cap < (size_t)rt->len + n)
		cap *= 2;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	unsigned char *b = realloc(rt->buf, cap);
	if (b == NULL)
		return 0;
	rt->buf = b;
	rt->cap = (int)cap;
	return 1;
}

// rt_out buffers ngx.say's (nl) or ngx.print's arguments when each is a string,
// number, boolean or nil and rt->ok: it returns 1, or 0 when the output reached
// 16 KB (the caller has Go write it). Otherwise it buffers nothing and returns
// false: the caller takes the Lua path (tables, ngx.null, errors, output refused).
static int rt_out(lua_State *L, int nl) {
	spindle_rt *rt = lua_touserdata(L, lua_upvalueindex(1));
	int n = lua_gettop(L);
	if (!rt->ok) {
		lua_pushboolean(L, 0);
		return 1;
	}
	size_t need = (size_t)nl;
	for (int i = 1; i <= n; i++) {
		size_t len;
		switch (lua_type(L, i)) {
		case LUA_TSTRING:
		case LUA_TNUMBER: // made a string in place, as tostring formats it (%.14g)
			lua_tolstring(L, i, &len);
			need += len;
			break;
		case LUA_TBOOLEAN:
			need += lua_toboolean(L, i) ? 4 : 5;
			break;
		case LUA_TNIL:
			need += 3;
			break;
		default:
			lua_pushboolean(L, 0);
			return 1;
		}
	}
	if (!rt_reserve(rt, need))
		return luaL_error(L, "no memory");
	unsigned char *p = rt->buf + rt->len;
	for (int i = 1; i <= n; i++) {
		const char *s;
		size_t len;
		switch (lua_type(L, i)) {
		case LUA_TSTRING:
			s = lua_tolstring(L, i, &len);
			break;
		case LUA_TBOOLEAN:
			s = lua_toboolean(L, i) ? "true" : "false";
			len = strlen(s);
			break;
		default:
			s = "nil";
			len = 3;
		}
		memcpy(p, s, len);
		p += len;
	}
	if (nl)
		*p++ = '\n';
	rt->len = (int)(p - rt->buf);
	rt->said = 1;
	lua_pushinteger(L, rt->len >= 16384 ? 0 : 1);
	return 1;
}

int spindle_lua_say(lua_State *L) { return rt_out(L, 1); }
int spindle_lua_print(lua_State *L) { return rt_out(L, 0); }

// spindle_now is ngx.now: the time of the first call in the current resume, as
// nginx's cached time is that of the event loop's iteration (ngx.update_time
// clears it).
double spindle_now(spindle_rt *rt) {
	if (rt->now == 0)
		rt->now = ngx_http_lua_ffi_now();
	return rt->now;
}

// ngx.md5, ngx.md5_bin and ngx.sha1_bin as C functions of Lua's C API, calling
// libcrypto's MD5 and SHA1 (the prelude loads the library into the global namespace;
// spindle_digest_init finds them there): through the FFI, a call from a handler's
// interpreted code cost ~5,800 instructions (callgrind, BenchmarkLoopGW), most of it
// LuaJIT's FFI marshalling, where nginx's ngx.md5 costs ~1,000.
unsigned char *ngx_hex_dump(unsigned char *dst, const unsigned char *src, size_t len); // ngxabi.c

typedef unsigned char *(*digest_fn)(const unsigned char *d, size_t n, unsigned char *md);
static digest_fn md5_fn, sha1_fn;

// spindle_lua_digest_init tells whether libcrypto's functions are there (the
// prelude calls it once it has loaded the library).
int spindle_lua_digest_init(lua_State *L) {
	md5_fn = (digest_fn)dlsym(RTLD_DEFAULT, "MD5");
	sha1_fn = (digest_fn)dlsym(RTLD_DEFAULT, "SHA1");
	lua_pushboolean(L, md5_fn != NULL && sha1_fn != NULL);
	return 1;
}

// digest_arg is the argument as lua-resty-core's ngx.md5 takes it: a string (or a
// number, made one), "" for nil and false, else tostring's text.
static const unsigned char *digest_arg(lua_State *L, size_t *len) {
	switch (lua_type(L, 1)) {
	case LUA_TSTRING:
	case LUA_TNUMBER:
		return (const unsigned char *)lua_tolstring(L, 1, len);
	case LUA_TNONE:
	case LUA_TNIL:
		*len = 0;
		return (const unsigned char *)"";
	case LUA_TBOOLEAN:
		if (!lua_toboolean(L, 1)) {
			*len = 0;
			return (const unsigned char *)"";
		}
		lua_pushliteral(L, "true");
		break;
	default: // as luaB_tostring
		if (!luaL_callmeta(L, 1, "__tostring"))
			lua_pushfstring(L, "%s: %p", luaL_typename(L, 1), lua_topointer(L, 1));
		if (!lua_isstring(L, -1))
			luaL_error(L, "'__tostring' must return a string");
	}
	lua_replace(L, 1);
	return (const unsigned char *)lua_tolstring(L, 1, len);
}

// push_digest pushes fn's digest (size bytes) of the argument, as hex digits when
// hex is set (ngx.md5) or as it is (md5_bin, sha1_bin).
static int push_digest(lua_State *L, digest_fn fn, int size, int hex) {
	size_t n;
	const unsigned char *s = digest_arg(L, &n);
	unsigned char md[20], text[40];
	fn(s, n, md);
	if (hex) {
		ngx_hex_dump(text, md, (size_t)size);
		lua_pushlstring(L, (const char *)text, (size_t)size * 2);
	} else {
		lua_pushlstring(L, (const char *)md, (size_t)size);
	}
	return 1;
}

int spindle_lua_md5(lua_State *L) { return push_digest(L, md5_fn, 16, 1); }

int spindle_lua_md5_bin(lua_State *L) { return push_digest(L, md5_fn, 16, 0); }

int spindle_lua_sha1_bin(lua_State *L) { return push_digest(L, sha1_fn, 20, 0); }

// spindle_lua_var is ngx.var.NAME's read for a string name: the value, nil, or
// false when the prelude should ask var_get (errors, no request). It calls
// spindle_var_get (ngxabi.go) as the FFI did, without the FFI's marshalling of
// four arguments and two out-parameters in the interpreter (~1,700 instructions
// per read, callgrind).
int spindle_lua_var(lua_State *L) {
	spindle_rt *rt = lua_touserdata(L, lua_upvalueindex(1));
	size_t n;
	const char *k = lua_tolstring(L, 1, &n);
	unsigned char *v;
	size_t vn;
	if (k == NULL) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (n == 3 && memcmp(k, "uri", 3) == 0 && req_info(rt) == 0) {
		// $uri from rt's copy: the call into Go, if any, also serves the
		// handler's get_headers and get_uri_args
		if (rt->uri_ok)
			lua_pushlstring(L, (const char *)rt->info + rt->hdr_len + rt->args_len, (size_t)rt->uri_len);
		else
			lua_pushnil(L);
		return 1;
	}
	int rc = spindle_var_get(rt->eid, (char *)k, n, &v, &vn);
	if (rc == 0)
		lua_pushlstring(L, (const char *)v, vn);
	else if (rc == 1)
		lua_pushnil(L);
	else
		lua_pushboolean(L, 0);
	return 1;
}

// spindle_lua_header_set is ngx.header.NAME = "value" in the common case (a string
// name and value, Go's hdr_ok: a phase that may set headers, before they are sent
// and before any output; not Content-Length): the set is queued in rt->hbuf as
// (name length, value length, name, value), for Go to apply (rt.go: applyHeaders)
// before anything can read the headers: after the resume and before any Go function
// called from Lua. It returns true, or false for the prelude to call Go's
// header_set (errors, logs and the other cases). Each set had cost a call into Go
// through the FFI (~1,900 instructions, callgrind); a queued one costs ~200.
int spindle_lua_header_set(lua_State *L) {
	spindle_rt *rt = lua_touserdata(L, lua_upvalueindex(1));
	size_t n, vn;
	if (!rt->hdr_ok || rt->said || lua_type(L, 1) != LUA_TSTRING || lua_type(L, 2) != LUA_TSTRING) {
		lua_pushboolean(L, 0);
		return 1;
	}
	const char *k = lua_tolstring(L, 1, &n);
	const char *v = lua_tolstring(L, 2, &vn);
	if (n == 14 || n > 0xffff || vn > 0xffffff) { // 14: Content-Length's length
		lua_pushboolean(L, 0);
		return 1;
	}
	size_t need = (size_t)rt->hlen + 8 + n + vn;
	if (need > (size_t)rt->hcap) {
		size_t cap = rt->hcap > 0 ? (size_t)rt->hcap : 512;
		while (cap < need)
			cap *= 2;
		if (cap > INT32_MAX) {
			lua_pushboolean(L, 0);
			return 1;
		}
		unsigned char *b = realloc(rt->hbuf, cap);
		if (b == NULL)
			return luaL_error(L, "no memory");
		rt->hbuf = b;
		rt->hcap = (int)cap;
	}
	unsigned char *p = rt->hbuf + rt->hlen;
	uint32_t ln = (uint32_t)n, lv = (uint32_t)vn;
	memcpy(p, &ln, 4);
	memcpy(p + 4, &lv, 4);
	memcpy(p + 8, k, n);
	memcpy(p + 8 + n, v, vn);
	rt->hlen = (int)need;
	lua_pushboolean(L, 1);
	return 1;
}

// req_info makes rt's copy of the request's header block, query string and $uri
// current (one call into Go, spindle_req_info, for all three): 0, or -1 when the
// caller should leave the work to Go's functions.
static int req_info(spindle_rt *rt) {
	if (rt->info_ok)
		return 0;
	return spindle_req_info(rt->eid) == 0 && rt->info_ok ? 0 : -1;
}

// add_value adds the value on the top of the stack to the table at t under the key
// just below it, as ngx_lua's tables of headers and arguments have them: a name
// seen before gets a list of its values in order. It pops both.
static void add_value(lua_State *L, int t) {
	lua_pushvalue(L, -2);
	lua_rawget(L, t);
	switch (lua_type(L, -1)) {
	case LUA_TNIL:
		lua_pop(L, 1);
		lua_rawset(L, t);
		return;
	case LUA_TTABLE: {
		int n = (int)lua_objlen(L, -1);
		lua_insert(L, -2);           // key, list, value
		lua_rawseti(L, -2, n + 1);   // key, list
		lua_pop(L, 2);
		return;
	}
	default: // one value so far: a list of it and this one
		lua_createtable(L, 2, 0);    // key, value, old, list
		lua_insert(L, -2);           // key, value, list, old
		lua_rawseti(L, -2, 1);       // key, value, list
		lua_insert(L, -2);           // key, list, value
		lua_rawseti(L, -2, 2);       // key, list
		lua_rawset(L, t);
	}
}

// push_truncated ends a C function that leaves its table on the stack: it adds
// "truncated" when the function stopped at its max, else nil, as ngx_lua's
// get_headers and get_uri_args return.
static int push_truncated(lua_State *L, int truncated) {
	if (truncated)
		lua_pushliteral(L, "truncated");
	else
		lua_pushnil(L);
	return 2;
}

// spindle_lua_req_headers is ngx.req.get_headers(max, raw) when the request's
// headers are its header block as the client sent it: the table built here from
// rt's copy of the block, as Go's VisitHeaderViews reads it (lines up to the empty
// one, a name before a colon, the value without its surrounding blanks), names
// lowercased unless raw. It returns the table and "truncated" or nil; false when
// the prelude should ask Go (headers changed, a subrequest, a name longer than
// 256 bytes). Through Go the same cost ~7,300 instructions for 4 headers
// (callgrind): a call into Go, every name and value pushed through the binding.
int spindle_lua_req_headers(lua_State *L) {
	spindle_rt *rt = lua_touserdata(L, lua_upvalueindex(1));
	int max = (int)lua_tointeger(L, 1);
	int raw = lua_toboolean(L, 2);
	if (req_info(rt) != 0 || !rt->hdr_fast) {
		lua_pushboolean(L, 0);
		return 1;
	}
	lua_settop(L, 0);
	lua_createtable(L, 0, 8);
	const unsigned char *p = rt->info, *end = rt->info + rt->hdr_len;
	int n = 0, truncated = 0;
	char kb[256];
	while (p < end) {
		const unsigned char *line = p, *le = memchr(p, '\n', (size_t)(end - p));
		if (le == NULL) {
			le = end;
			p = end;
		} else {
			p = le + 1;
		}
		if (le > line && le[-1] == '\r')
			le--;
		if (le == line)
			break;
		const unsigned char *colon = memchr(line, ':', (size_t)(le - line));
		if (colon == NULL || colon == line)
			continue;
		if (max > 0 && n >= max) {
			truncated = 1;
			break;
		}
		size_t kn = (size_t)(colon - line);
		const char *k = (const char *)line;
		if (!raw) {
			if (kn > sizeof kb) {
				lua_settop(L, 0);
				lua_pushboolean(L, 0);
				return 1;
			}
			for (size_t i = 0; i < kn; i++) {
				unsigned char c = line[i];
				kb[i] = c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
			}
			k = kb;
		}
		const unsigned char *v = colon + 1, *ve = le;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		lua_pushlstring(L, k, kn);
		lua_pushlstring(L, (const char *)v, (size_t)(ve - v));
		add_value(L, 1);
		n++;
	}
	return push_truncated(L, truncated);
}

static int hexval(unsigned char c) {
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

// push_arg pushes s[0:n] decoded as strings.go's unescapeArg decodes it (%XX and
// "+"; a malformed escape stays as it is), through scratch (room for n bytes).
static void push_arg(lua_State *L, const unsigned char *s, size_t n, unsigned char *scratch) {
	size_t i = 0;
	while (i < n && s[i] != '%' && s[i] != '+')
		i++;
	if (i == n) {
		lua_pushlstring(L, (const char *)s, n);
		return;
	}
	unsigned char *d = scratch;
	memcpy(d, s, i);
	d += i;
	for (; i < n; i++) {
		unsigned char c = s[i];
		int h, l;
		if (c == '+') {
			*d++ = ' ';
		} else if (c == '%' && i + 2 < n && (h = hexval(s[i + 1])) >= 0 && (l = hexval(s[i + 2])) >= 0) {
			*d++ = (unsigned char)(h << 4 | l);
			i += 2;
		} else {
			*d++ = c;
		}
	}
	lua_pushlstring(L, (const char *)scratch, (size_t)(d - scratch));
}

// spindle_lua_uri_args is ngx.req.get_uri_args(max): the table of the query string
// in rt's copy, as api.go's pushArgs and the prelude's args_table make it (a name
// without "=" is true, a repeated name gets a list), and "truncated" or nil; false
// when the prelude should ask Go.
int spindle_lua_uri_args(lua_State *L) {
	spindle_rt *rt = lua_touserdata(L, lua_upvalueindex(1));
	int max = (int)lua_tointeger(L, 1);
	if (req_info(rt) != 0) {
		lua_pushboolean(L, 0);
		return 1;
	}
	lua_settop(L, 0);
	lua_createtable(L, 0, 4);
	const unsigned char *q = rt->info + rt->hdr_len, *end = q + rt->args_len;
	unsigned char *scratch = rt->info + rt->hdr_len + rt->args_len + rt->uri_len;
	int n = 0, truncated = 0;
	while (q < end) {
		const unsigned char *kv = q, *amp = memchr(q, '&', (size_t)(end - q));
		const unsigned char *kve = amp ? amp : end;
		q = amp ? amp + 1 : end;
		if (kve == kv)
			continue;
		if (max > 0 && n >= max) {
			truncated = 1;
			break;
		}
		const unsigned char *eq = memchr(kv, '=', (size_t)(kve - kv));
		if (eq == NULL) {
			push_arg(L, kv, (size_t)(kve - kv), scratch);
			lua_pushboolean(L, 1);
		} else {
			push_arg(L, kv, (size_t)(eq - kv), scratch);
			push_arg(L, eq + 1, (size_t)(kve - eq - 1), scratch);
		}
		add_value(L, 1);
		n++;
	}
	return push_truncated(L, truncated);
}
