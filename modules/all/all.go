// Package all links in every HTTP module spindle ships; the spindle command imports it.
package all

import (
	// The standard modules, registered by their init functions.
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/lua"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)
