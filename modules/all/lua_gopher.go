//go:build !luajit

package all

import (
	// The Lua engine on gopher-lua, and the Go backends it offers Lua. Build with
	// -tags luajit for the LuaJIT engine (modules/ngxlua) instead.
	_ "github.com/spindle-server/spindle/modules/lua"
	_ "github.com/spindle-server/spindle/modules/luabackends"
)
