package ngxlua

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// The extension API lets a Go module give Lua code a library of Go functions, under
// the global table `spindle` (also require "spindle"), as spindle.redis and
// spindle.memcached are. docs/modules.md walks through an example
// (examples/luahttp).

// A Func is a Go function that Lua code calls: it reads its arguments from c and
// pushes its results with c.Push. An error it returns is raised in Lua as
// "file:line: message" at the caller's line; a panic is raised as a Lua error too.
//
// A Func runs with the worker's Lua VM owned: it must not block. Work that waits
// (network I/O, a database query) goes in c.Wait, which runs it with the VM
// unlocked.
type Func func(c *Call) error

// A Lib is a library Lua code reaches as spindle.<name>.
type Lib struct {
	// Funcs are the library's Go functions, spindle.<name>.<key>.
	Funcs map[string]Func
	// Lua, if not empty, is Lua code run once in each worker's VM after Funcs are
	// in place, with the library's table as its argument (...), in the shared
	// globals as init_by_lua is: where a library wraps its Go functions in Lua
	// (methods, metatables, tables as arguments, ngx.null), as the ngx API's own
	// prelude does. A table it returns replaces the library's.
	Lua string
}

var (
	libsMu sync.Mutex
	libs   = map[string]Lib{}
)

// RegisterLib makes lib available to Lua code as spindle.<name> in every worker VM
// created afterwards. Call it from an init function; a name registered twice, or
// one of the engine's own (redis, memcached), panics.
func RegisterLib(name string, lib Lib) {
	libsMu.Lock()
	defer libsMu.Unlock()
	if name == "" || strings.ContainsAny(name, ". ") {
		panic(fmt.Sprintf("ngxlua: bad library name %q", name))
	}
	if _, dup := libs[name]; dup || name == "redis" || name == "memcached" {
		panic("ngxlua: spindle." + name + " registered twice")
	}
	libs[name] = lib
}

// installLibs registers the libraries in a new VM, after the prelude made the
// spindle table.
func (e *engine) installLibs(s *luajit.State) error {
	libsMu.Lock()
	names := make([]string, 0, len(libs))
	for name := range libs {
		names = append(names, name)
	}
	all := make([]Lib, len(names))
	sort.Strings(names)
	for i, name := range names {
		all[i] = libs[name]
	}
	libsMu.Unlock()
	c := &Call{e: e} // one per VM: Funcs run one at a time
	for i, name := range names {
		lib := all[i]
		if err := s.DoString("spindle."+name, "spindle[...] = {}", name); err != nil {
			return err
		}
		for fname, fn := range lib.Funcs {
			err := s.Register("spindle."+name+"."+fname, func(s *luajit.State) error {
				e.syncHeaders() // the request's response headers as the handler set them
				c.s = s
				return fn(c)
			})
			if err != nil {
				return fmt.Errorf("spindle.%s.%s: %v", name, fname, err)
			}
		}
		if lib.Lua != "" {
			// The library's code is a function of its table; the prefix is on the
			// code's first line, so its errors give the lines of Lua.
			code := "local n = ...; local r = (function(...) " + lib.Lua + "\nend)(spindle[n]); if type(r) == 'table' then spindle[n] = r end"
			if err := s.DoString("spindle."+name, code, name); err != nil {
				return fmt.Errorf("spindle.%s: %v", name, err)
			}
		}
	}
	return nil
}

// A Call is a Func's view of its call: the arguments, the results, and the request
// it is made for. It is valid until the Func returns.
type Call struct {
	e *engine
	s *luajit.State
}

// N is the number of arguments.
func (c *Call) N() int { return c.s.N() }

// Type is the Lua type of argument i, counting from 0: "nil" (also past the last
// one), "boolean", "number", "string", "table", "function", "userdata", "thread".
// Tables, functions and userdata cross as their type only: a library that takes
// tables flattens them in its Lua part.
func (c *Call) Type(i int) string { return c.s.Type(i).String() }

// String is argument i as a string: a string, or a number as Lua's tostring
// formats it; "" for any other type.
func (c *Call) String(i int) string { return strArg(c.s, i) }

// Number is argument i as a number (0 unless it is one).
func (c *Call) Number(i int) float64 { return c.s.Number(i) }

// Int is argument i as an integer (truncated; 0 unless it is a number).
func (c *Call) Int(i int) int { return c.s.Int(i) }

// Bool is argument i's truth in Lua: false for nil and false.
func (c *Call) Bool(i int) bool { return c.s.Bool(i) }

// Push pushes results: nil, bool, int, int64, float64, string, []byte, and tables
// as []any (an array) or map[string]any, whose values are any of these.
func (c *Call) Push(vals ...any) { pushAll(c.s, vals) }

// Request returns the request whose Lua code made the call, or nil in timers and
// init_by_lua / init_worker_by_lua.
func (c *Call) Request() *httpcore.Request {
	if ru := c.e.cur; ru != nil {
		return ru.r
	}
	return nil
}

// Config returns the configuration of the worker whose VM runs the call: what a
// library resolves upstreams in, also in timers and init phases, which have no
// request.
func (c *Call) Config() *httpcore.Config { return c.e.cfg }

// Wait runs f with the worker's VM unlocked, so that other requests' Lua code runs
// meanwhile, and makes f's values the results of the call in Lua (the values f
// returns are those Push takes). The Func must return nil right after Wait, having
// pushed nothing. f runs on the request's goroutine, or on one of its own when the
// request has light threads; it must not use c. Wait returns ngx_lua's "API disabled
// in the context of ..." error in phases that cannot wait (set_by_lua, filters,
// log_by_lua, init), as cosockets do there: return it.
func (c *Call) Wait(api string, f func() []any) error {
	ru, err := c.e.run()
	if err != nil {
		return err
	}
	if !ru.phase.canYield() {
		return disabled(api, ru.phase)
	}
	ru.waitFor(c.s, f)
	return nil
}
