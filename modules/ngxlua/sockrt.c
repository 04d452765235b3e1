// The prelude's cosocket handles (cosocket.go, prelude.lua's tcp): what ngx.socket.tcp
// needs to know of the resume without calling Go, as a function of Lua's C API.
#include <lua.h>
#include "ngxabi.h"

// spindle_sock_run returns the resumed run's number and whether its phase outputs
// (rt->ok: rewrite, access, content, which may yield too). A C function costs a Lua
// call; reading the same two fields of the rt through the FFI cost more in the
// interpreter (~1,500 instructions per lua-resty-redis request, callgrind) than the
// callbacks it saved.
int spindle_sock_run(lua_State *L) {
	spindle_rt *rt = lua_touserdata(L, lua_upvalueindex(1));
	lua_pushnumber(L, rt->seq);
	lua_pushboolean(L, rt->ok != 0);
	return 2;
}
