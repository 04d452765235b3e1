//go:build gopherlua

package all

import (
	// The Lua engine on gopher-lua, and the Go backends it offers Lua: built with
	// -tags gopherlua instead of the LuaJIT engine (modules/ngxlua).
	_ "github.com/spindle-server/spindle/modules/lua"
	_ "github.com/spindle-server/spindle/modules/luabackends"
)
