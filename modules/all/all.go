// Package all links in every HTTP module spindle ships; the spindle command imports it.
package all

import (
	// The standard modules, registered by their init functions.
	_ "github.com/spindle-server/spindle/modules/access"
	_ "github.com/spindle-server/spindle/modules/accesslog"
	_ "github.com/spindle-server/spindle/modules/authbasic"
	_ "github.com/spindle-server/spindle/modules/authrequest"
	_ "github.com/spindle-server/spindle/modules/brotli"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/errorpage"
	_ "github.com/spindle-server/spindle/modules/geo"
	_ "github.com/spindle-server/spindle/modules/gzip"
	_ "github.com/spindle-server/spindle/modules/headers"
	_ "github.com/spindle-server/spindle/modules/mapvar"
	_ "github.com/spindle-server/spindle/modules/memc"
	_ "github.com/spindle-server/spindle/modules/ngxlua" // Lua on LuaJIT (issue 16)
	_ "github.com/spindle-server/spindle/modules/proxy"
	_ "github.com/spindle-server/spindle/modules/realip"
	_ "github.com/spindle-server/spindle/modules/redis"
	_ "github.com/spindle-server/spindle/modules/rewrite"
	_ "github.com/spindle-server/spindle/modules/splitclients"
	_ "github.com/spindle-server/spindle/modules/static"
	_ "github.com/spindle-server/spindle/modules/status"
	_ "github.com/spindle-server/spindle/modules/subfilter"
	_ "github.com/spindle-server/spindle/modules/upstream"
)
