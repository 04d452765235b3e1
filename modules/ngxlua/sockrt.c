// What the prelude's cosockets (prelude.lua, cosocket.go) do without calling Go, as
// functions of Lua's C API (a Lua call each, where a Go function is a cgo callback,
// ~720 instructions).
#include <errno.h>
#include <stdlib.h>
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

// sock_reserve makes room for n more bytes after len in sb->wbuf: 0 if it cannot.
static int sock_reserve(spindle_sockbuf *sb, size_t len, size_t n) {
	if (len + n <= sb->wcap)
		return 1;
	size_t cap = sb->wcap ? sb->wcap : 4096;
	while (cap < len + n)
		cap *= 2;
	char *nb = realloc(sb->wbuf, cap);
	if (nb == NULL)
		return 0;
	sb->wbuf = nb;
	sb->wcap = cap;
	return 1;
}

// sock_join joins table t's items (an array of strings and numbers only, as
// lua-resty-redis's requests are) into sb->wbuf: 0 when it holds anything else, or
// its keys do not come as 1, 2, 3... (the prelude's flatten answers those, errors
// included). One pass of lua_next, and integers written here, not converted to
// Lua strings: the first version (lua_next to count, lua_rawgeti and lua_tolstring
// for each item) cost ~2,000 instructions for a lua-resty-redis GET.
static int sock_join(lua_State *L, int t, spindle_sockbuf *sb, size_t *out) {
	size_t len = 0;
	lua_Number want = 1;
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		if (lua_type(L, -2) != LUA_TNUMBER || lua_tonumber(L, -2) != want) {
			lua_pop(L, 2);
			return 0;
		}
		want++;
		int ty = lua_type(L, -1);
		if (ty == LUA_TNUMBER) {
			lua_Number n = lua_tonumber(L, -1);
			if (n >= 0 && n < 1e14 && n == (lua_Number)(long long)n) {
				// an integer, as tostring writes it ("%.14g" of an integer
				// below 1e14 has all its digits)
				char tmp[24];
				int k = sizeof tmp;
				long long v = (long long)n;
				do {
					tmp[--k] = (char)('0' + v % 10);
					v /= 10;
				} while (v > 0);
				if (!sock_reserve(sb, len, sizeof tmp - k)) {
					lua_pop(L, 2);
					return 0;
				}
				memcpy(sb->wbuf + len, tmp + k, sizeof tmp - k);
				len += sizeof tmp - k;
				lua_pop(L, 1);
				continue;
			}
		} else if (ty != LUA_TSTRING) {
			lua_pop(L, 2);
			return 0;
		}
		size_t l;
		const char *p = lua_tolstring(L, -1, &l); // another number: as tostring writes it
		if (!sock_reserve(sb, len, l)) {
			lua_pop(L, 2);
			return 0;
		}
		memcpy(sb->wbuf + len, p, l);
		len += l;
		lua_pop(L, 1);
	}
	*out = len;
	return 1;
}

// spindle_sock_send is sock:send(data) for a string, or an array of strings and
// numbers joined here (the prelude's flatten and table.concat cost more in the
// interpreter), written to the descriptor Go published for the socket at its
// connect (on the event loop, not TLS, no wait since: any Go function on a socket
// unpublishes it). It returns what it wrote when that is all of data; when the
// socket took less (or failed), that count and data as a string, for Go's send to
// go on from; nothing when it may not write, or data is another kind of value.
int spindle_sock_send(lua_State *L) {
	spindle_sockbuf *sb = lua_touserdata(L, lua_upvalueindex(1));
	if (sb->wid == 0 || lua_tonumber(L, 1) != sb->wid || sb->wseq != sb->rt->seq)
		return 0;
	size_t len;
	const char *p;
	int ty = lua_type(L, 2);
	if (ty == LUA_TSTRING) {
		p = lua_tolstring(L, 2, &len);
	} else if (ty == LUA_TTABLE) {
		if (!sock_join(L, 2, sb, &len))
			return 0;
		p = sb->wbuf;
	} else {
		return 0;
	}
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
	if (done == len)
		return 1;
	if (ty == LUA_TSTRING)
		lua_pushvalue(L, 2);
	else
		lua_pushlstring(L, p, len);
	return 2;
}

// spindle_sock_keepalive is sock:setkeepalive(timeout, size) for the socket whose
// buffered data the sockbuf holds, all of it taken: no Go function ran on the
// socket since its last receive, so it is connected, not busy and did not time out,
// and nothing is left unread. It records the call for Go, which pools the
// connection at its next look (takeBack: before any Go function on a socket, after
// the resume, at the run's end), and returns 1; anything else (arguments Go
// refuses, data left) returns nothing and the prelude asks Go.
int spindle_sock_keepalive(lua_State *L) {
	spindle_sockbuf *sb = lua_touserdata(L, lua_upvalueindex(1));
	if (sb->id == 0 || lua_tonumber(L, 1) != sb->id || sb->seq != sb->rt->seq || sb->off != sb->len)
		return 0;
	lua_Number timeout = -1, size = 0;
	if (lua_type(L, 2) == LUA_TNUMBER) {
		timeout = lua_tonumber(L, 2);
		if (!(timeout >= 0))
			return 0;
	}
	if (lua_type(L, 3) == LUA_TNUMBER) {
		size = lua_tonumber(L, 3);
		if (!(size >= 1) || size > 1e9)
			return 0;
	}
	sb->kaid = sb->id;
	sb->katimeout = timeout;
	sb->kasize = size;
	sb->id = 0; // no receive from the copy, no send: the socket is Go's to pool
	sb->wid = 0;
	lua_pushnumber(L, 1);
	return 1;
}
