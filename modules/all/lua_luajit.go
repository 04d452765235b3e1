//go:build luajit

package all

import (
	// The Lua engine on LuaJIT (issue 16).
	_ "github.com/spindle-server/spindle/modules/ngxlua"
)
