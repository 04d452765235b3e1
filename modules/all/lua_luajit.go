//go:build !gopherlua

package all

import (
	// The Lua engine on LuaJIT (issue 16); -tags gopherlua builds gopher-lua's
	// (modules/lua) instead.
	_ "github.com/spindle-server/spindle/modules/ngxlua"
)
