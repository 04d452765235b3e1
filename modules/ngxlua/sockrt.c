// What the prelude's cosockets (prelude.lua, cosocket.go) do without calling Go, as
// functions of Lua's C API (a Lua call each, where a Go function is a cgo callback,
// ~720 instructions).
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <lua.h>
#include "ngxabi.h"
#include "sockrt.h"

// spindle_sock_run returns the resumed run's number and whether its phase outputs
// (rt->ok: rewrite, access, content, which may yield too), for ngx.socket.tcp.
// Reading the same two fields of the rt through the FFI cost more in the
// interpreter (~1,500 instructions per lua-resty-redis request, callgrind) than the
// callbacks it saved.
int spindle_sock_run(lua_State *L) {
	spindle_rt *rt = lua_touserdata(L, lua_upvalueindex(1));
	lua_pushnumber(L, rt->seq);
	lua_pushboolean(L, rt->ok != 0);
	return 2;
}

// spindle_sock_recv is sock:receive(pattern) answered from the copy of a socket's
// buffered data that Go left in the sockbuf (upvalue 1) after the socket's last
// receive: for a size, or a line ("*l" or none) whose only CR ends it. Anything else
// (another socket, another run, not enough data, another pattern) returns nothing
// and the prelude asks Go.
int spindle_sock_recv(lua_State *L) {
	spindle_sockbuf *sb = lua_touserdata(L, lua_upvalueindex(1));
	if (sb->id == 0 || lua_tonumber(L, 1) != sb->id || sb->seq != sb->rt->seq)
		return 0;
	const char *p = sb->data + sb->off;
	int avail = sb->len - sb->off;
	int t = lua_type(L, 2);
	if (t == LUA_TNUMBER) {
		lua_Number n = lua_tonumber(L, 2);
		if (!(n >= 0) || n > avail || n != (lua_Number)(int)n)
			return 0;
		lua_pushlstring(L, p, (size_t)n);
		sb->off += (int)n;
		return 1;
	}
	if (t == LUA_TSTRING) {
		size_t len;
		const char *pat = lua_tolstring(L, 2, &len);
		if (len != 2 || pat[0] != '*' || pat[1] != 'l')
			return 0;
	} else if (t != LUA_TNIL && t != LUA_TNONE) {
		return 0;
	}
	const char *nl = memchr(p, '\n', (size_t)avail);
	if (nl == NULL)
		return 0;
	size_t n = (size_t)(nl - p);
	size_t end = n;
	if (end > 0 && p[end - 1] == '\r')
		end--;
	if (memchr(p, '\r', end) != NULL)
		return 0; // "*l" drops every CR: Go's reader does
	lua_pushlstring(L, p, end);
	sb->off += (int)n + 1;
	return 1;
}

// spindle_sock_send is sock:send(data) for a string, written to the descriptor Go
// published for the socket at its connect (on the event loop, not TLS, no wait
// since: any Go function on a socket unpublishes it). It returns what it wrote:
// all of data, or less (the socket took less, or failed) for Go's send to go on
// from (the prelude passes the offset), or nothing when it may not write.
int spindle_sock_send(lua_State *L) {
	spindle_sockbuf *sb = lua_touserdata(L, lua_upvalueindex(1));
	if (sb->wid == 0 || lua_tonumber(L, 1) != sb->wid || sb->wseq != sb->rt->seq || lua_type(L, 2) != LUA_TSTRING)
		return 0;
	size_t len;
	const char *p = lua_tolstring(L, 2, &len);
	size_t done = 0;
	while (done < len) {
		ssize_t n = send(sb->wfd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; // Go's write sees the same and waits, or fails the send
		done += (size_t)n;
	}
	lua_pushnumber(L, (lua_Number)done);
	return 1;
}
