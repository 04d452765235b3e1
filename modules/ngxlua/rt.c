// The C side of spindle_rt (ngxabi.h, rt.go): ngx.say and ngx.print as functions of
// Lua's C API, and ngx.now's cached time for the FFI.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include "ngxabi.h"

double ngx_http_lua_ffi_now(void);

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
