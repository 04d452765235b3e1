// Package luabackends is the Lua module's fast path to the backends: spindle.redis(name)
// and spindle.memcached(name) give Lua code objects in the style of lua-resty-redis and
// lua-resty-memcached whose calls go through the worker's Go pools of the redis and memc
// modules (bounded pools, go-redis's auto-pipelining) instead of cosockets and Lua
// protocol code.
//
// Lua code runs one thread at a time per worker VM (see modules/lua); every Go function
// here runs under that lock except the I/O, which lua.Blocking runs with the VM released.
// So the per-VM state (handle caches, free argument slices) needs no locking of its own:
// it is only touched while the VM is held.
package luabackends

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/lua"
	glua "github.com/yuin/gopher-lua"
)

func init() {
	lua.RegisterLib("redis", openRedis)
	lua.RegisterLib("memcached", openMemcached)
}

// maxHandles bounds a VM's cache of handles by name: names computed per request must
// not grow it without end (the upstream module bounds the upstreams themselves).
const maxHandles = 256

// logFailure logs a failure to reach a backend, as ngx_lua logs cosocket errors: with
// the request when there is one, else (timers) in the worker's error log.
func logFailure(L *glua.LState, what, name, op string, err error) {
	if r := lua.CurrentRequest(L); r != nil {
		r.Logf(httpcore.LogError, "%s(%q) %s failed: %v", what, name, op, err)
		return
	}
	if cfg := lua.Config(L); cfg != nil {
		if log := cfg.Log(); log.Enabled(httpcore.LogError) {
			log.Logf(httpcore.LogError, "%s(%q) %s failed: %v, context: ngx.timer", what, name, op, err)
		}
	}
}

// errText is the error string Lua code gets for a failure to reach a backend, in the
// words of lua-resty-redis and lua-resty-memcached (that is, of cosockets): "timeout",
// "connection refused", "closed". Other failures keep their Go text; the error log
// has the details either way.
func errText(err error, isTimeout func(error) bool) string {
	switch {
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return "closed"
	}
	// The redis handle reports the last server's failure as text once every server
	// failed to connect.
	msg := err.Error()
	switch {
	case strings.Contains(msg, "i/o timeout"):
		return "timeout"
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case strings.Contains(msg, "connection reset"), strings.Contains(msg, "broken pipe"):
		return "closed"
	}
	return msg
}

// Values returned without an allocation.
var (
	lvOne  glua.LValue = glua.LNumber(1)
	lvOK   glua.LValue = glua.LString("OK")
	lvPong glua.LValue = glua.LString("PONG")
	lvQd   glua.LValue = glua.LString("QUEUED")
)

// numberText formats a Lua number as an argument: integers in decimal, other numbers
// with every digit they need (Redis parses both; LuaJIT's tostring would drop
// precision past 14 digits).
func numberText(dst []byte, n glua.LNumber) []byte {
	f := float64(n)
	if f == float64(int64(f)) && f > -1<<53 && f < 1<<53 {
		return strconv.AppendInt(dst, int64(f), 10)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

// returnErr pushes nil, msg: the failure convention of the resty libraries.
func returnErr(L *glua.LState, msg string) int {
	L.Push(glua.LNil)
	L.Push(glua.LString(msg))
	return 2
}

// nameArg is the upstream name argument of spindle.redis and spindle.memcached.
func nameArg(L *glua.LState, fn string) string {
	s, ok := L.Get(1).(glua.LString)
	if !ok || s == "" {
		got := "no value"
		if L.GetTop() >= 1 {
			got = L.Get(1).Type().String()
			if ok {
				got = "an empty string"
			}
		}
		L.RaiseError("bad argument #1 to '%s' (upstream name expected, got %s)", fn, got)
	}
	return string(s)
}

// argError raises Lua's "bad argument" error naming the method (gopher-lua does not
// know the names of functions kept in tables).
func argError(L *glua.LState, n int, fn, msg string) {
	L.RaiseError("bad argument #%d to '%s' (%s)", n, fn, msg)
}
