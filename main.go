// Command spindle is an HTTP server with nginx's master/worker process model and
// OpenResty's programming model. Run without arguments it is the master process, in
// the foreground, serving conf/spindle.hcl; the master re-executes the same binary for
// its workers.
//
// This is the whole command: the spindle command's body is the cmd package, and the
// modules are those of modules/all. A spindle with modules of your own is a main
// package like this one that imports them too (docs/modules.md).
package main

import (
	spindlecmd "github.com/spindle-server/spindle/cmd"
	_ "github.com/spindle-server/spindle/modules/all"
)

func main() { spindlecmd.Main() }
