package lua

import (
	"sync"

	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// The extension API lets other modules give Lua code objects backed by Go, under the
// global table `spindle`. The backends module's fast path (spindle.redis("pool"),
// its memcached equivalent) is meant to plug in here: its Go pools do the I/O, and
// Blocking keeps the worker's other Lua handlers running meanwhile.

var (
	libsMu sync.Mutex
	libs   = map[string]func(L *glua.LState) glua.LValue{}
)

// RegisterLib makes open(L)'s value available to Lua code as spindle.<name> in every
// worker VM created afterwards. Call it from an init function.
func RegisterLib(name string, open func(L *glua.LState) glua.LValue) {
	libsMu.Lock()
	defer libsMu.Unlock()
	if _, dup := libs[name]; dup {
		panic("lua: spindle." + name + " registered twice")
	}
	libs[name] = open
}

func (v *vm) installExtensions() {
	L := v.L
	sp := L.NewTable()
	libsMu.Lock()
	for name, open := range libs {
		sp.RawSetString(name, open(L))
	}
	libsMu.Unlock()
	L.SetGlobal("spindle", sp)
	v.loaded.RawSetString("spindle", sp)
}

func vmOfState(L *glua.LState) *vm {
	x, _ := vms.Load(L.G)
	v, _ := x.(*vm)
	return v
}

// Blocking runs f, which may block (network I/O on a Go pool), without holding the
// worker's Lua VM, so that other requests' Lua code runs meanwhile. It raises a Lua
// error in phases that must not block (set_by_lua, filters, log_by_lua, init), as
// ngx_lua's cosockets do. Use it from Go functions called by Lua.
func Blocking(L *glua.LState, api string, f func()) {
	v := vmOfState(L)
	if v == nil {
		f()
		return
	}
	t := v.current(L)
	if !t.run.phase.canYield() {
		apiDisabled(L, api, t.run.phase)
	}
	v.blocking(t, f)
}

// CurrentRequest returns the request whose Lua code is running, or nil in timers and
// init phases.
func CurrentRequest(L *glua.LState) *httpcore.Request {
	v := vmOfState(L)
	if v == nil {
		return nil
	}
	if t := v.cur.Load(); t != nil {
		return t.run.r
	}
	return nil
}

// Null returns the VM's ngx.null, the value Go-backed objects give Lua code for a
// nil reply (a missing key in a Redis array, as lua-resty-redis does).
func Null(L *glua.LState) glua.LValue {
	if v := vmOfState(L); v != nil && v.null != nil {
		return v.null
	}
	return glua.LNil
}

// Config returns the configuration of the worker whose VM L belongs to: what an
// extension resolves upstreams in, also in timers and init_worker_by_lua, which have
// no request. It is nil for a state that is not a worker's VM.
func Config(L *glua.LState) *httpcore.Config {
	if v := vmOfState(L); v != nil {
		return v.cfg
	}
	return nil
}
