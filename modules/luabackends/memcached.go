package luabackends

import (
	"errors"
	"strconv"
	"strings"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/lua"
	"github.com/spindle-server/spindle/modules/memc"
	glua "github.com/yuin/gopher-lua"
)

// spindle.memcached(name) returns an object with lua-resty-memcached's methods (get,
// set, add, replace, append, prepend, delete, incr, decr, touch, flush_all, stats,
// version) over the worker's pools of the memc module. An object has no state of its
// own, so spindle.memcached returns the same one for a name every time.
//
// Keys are escaped as memc_pass locations escape them (spaces, control characters
// and "%" become %XX), so Lua code and memc_pass locations of one upstream find the
// same items.

type memcLib struct {
	ready bool
	cfg   *httpcore.Config
	env   *glua.LTable
	objs  map[string]*memcObj
	meta  *glua.LTable
}

type memcObj struct {
	ud   glua.LUserData
	h    *memc.Handle
	name string
}

func openMemcached(L *glua.LState) glua.LValue {
	lib := &memcLib{env: L.G.Global, objs: map[string]*memcObj{}}
	methods := L.NewTable()
	for name, f := range map[string]glua.LGFunction{
		"get":           lib.get,
		"set":           lib.store("set"),
		"add":           lib.store("add"),
		"replace":       lib.store("replace"),
		"append":        lib.store("append"),
		"prepend":       lib.store("prepend"),
		"delete":        lib.delete,
		"incr":          lib.incrDecr(true),
		"decr":          lib.incrDecr(false),
		"touch":         lib.touch,
		"flush_all":     lib.flushAll,
		"stats":         lib.stats,
		"version":       lib.version,
		"set_timeout":   returnOne,
		"set_keepalive": returnOne,
		"close":         returnOne,
		"connect":       lib.connect,
	} {
		methods.RawSetString(name, L.NewFunction(f))
	}
	lib.meta = L.NewTable()
	lib.meta.RawSetString("__index", methods)
	lib.meta.RawSetString("__metatable", glua.LString("spindle.memcached"))
	lib.meta.RawSetString("__tostring", L.NewFunction(func(L *glua.LState) int {
		L.Push(glua.LString("spindle.memcached(\"" + lib.self(L).name + "\")"))
		return 1
	}))
	return L.NewFunction(lib.new)
}

// new is spindle.memcached(name).
func (lib *memcLib) new(L *glua.LState) int {
	name := nameArg(L, "spindle.memcached")
	if obj := lib.objs[name]; obj != nil {
		L.Push(&obj.ud)
		return 1
	}
	if !lib.ready {
		lib.cfg, lib.ready = lua.Config(L), true
	}
	if lib.cfg == nil {
		L.RaiseError("spindle.memcached: not in a worker")
	}
	h, err := memc.Client(lib.cfg, name)
	if err != nil {
		return returnErr(L, err.Error())
	}
	obj := &memcObj{h: h, name: name}
	obj.ud.Value, obj.ud.Env, obj.ud.Metatable = obj, lib.env, lib.meta
	if len(lib.objs) < maxHandles {
		lib.objs[name] = obj
	}
	L.Push(&obj.ud)
	return 1
}

func (lib *memcLib) self(L *glua.LState) *memcObj {
	if ud, ok := L.Get(1).(*glua.LUserData); ok {
		if obj, ok := ud.Value.(*memcObj); ok {
			return obj
		}
	}
	L.RaiseError("spindle.memcached: call methods with a colon (mc:get(k), not mc.get(k))")
	return nil
}

// key checks and escapes a key argument.
func key(L *glua.LState, n int, fn string) string {
	switch k := L.Get(n).(type) {
	case glua.LString:
		return memc.EscapeKey(string(k))
	case glua.LNumber:
		return string(numberText(nil, k))
	}
	argError(L, n-1, fn, "key expected (string or number), got "+L.Get(n).Type().String())
	return ""
}

// optInt reads an optional integer argument (exptime, flags) given as a number or a
// numeric string, as lua-resty-memcached concatenates them into the command.
func optInt(L *glua.LState, n int, fn, what string) int64 {
	switch v := L.Get(n).(type) {
	case *glua.LNilType:
		return 0
	case glua.LNumber:
		return int64(v)
	case glua.LString:
		if i, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64); err == nil {
			return i
		}
	}
	argError(L, n-1, fn, what+" expected (integer)")
	return 0
}

// failure turns an error of the memc handle into lua-resty-memcached's results: the
// server's answer (NOT_STORED, NOT_FOUND, EXISTS, CLIENT_ERROR ...), or for failures
// to reach it the cosocket's words, logged with the details.
func (obj *memcObj) failure(L *glua.LState, op string, err error) string {
	switch {
	case errors.Is(err, memc.ErrNotStored):
		return "NOT_STORED"
	case errors.Is(err, memc.ErrCacheMiss):
		return "NOT_FOUND"
	case errors.Is(err, memc.ErrCASConflict):
		return "EXISTS"
	case errors.Is(err, memc.ErrMalformedKey):
		// What memcached answers a key longer than 250 bytes.
		return "CLIENT_ERROR bad command line format"
	case errors.Is(err, memcache.ErrServerError):
		return "SERVER_ERROR"
	}
	// The server's CLIENT_ERROR answers (incr of a value that is not a number), under
	// the handle's note of the server.
	clientErr := ""
	for e := err; e != nil; e = errors.Unwrap(e) {
		if m, ok := strings.CutPrefix(e.Error(), "memcache: client error: "); ok {
			clientErr = "CLIENT_ERROR " + m
		}
	}
	if clientErr != "" {
		return clientErr
	}
	logFailure(L, "spindle.memcached", obj.name, op, err)
	return errText(err, memc.IsTimeout)
}

// get is mc:get(key) → value, flags (nil, nil, nil when there is no such item; nil,
// nil, err on failure), or mc:get({k1, k2}) → { k1 = {value, flags}, ... }.
func (lib *memcLib) get(L *glua.LState) int {
	obj := lib.self(L)
	if keys, ok := L.Get(2).(*glua.LTable); ok {
		return lib.getMulti(L, obj, keys)
	}
	k := key(L, 2, "get")
	var it *memcache.Item
	var err error
	lua.Blocking(L, "spindle.memcached", func() { it, err = obj.h.Get(k) })
	if err != nil {
		L.Push(glua.LNil)
		L.Push(glua.LNil)
		if errors.Is(err, memc.ErrCacheMiss) {
			L.Push(glua.LNil)
		} else {
			L.Push(glua.LString(obj.failure(L, "get", err)))
		}
		return 3
	}
	L.Push(glua.LString(it.Value))
	L.Push(glua.LNumber(it.Flags))
	return 2
}

// getMulti gets several keys, one after the other in one blocking call.
func (lib *memcLib) getMulti(L *glua.LState, obj *memcObj, keys *glua.LTable) int {
	n := keys.Len()
	names := make([]glua.LValue, n)
	esc := make([]string, n)
	for i := 1; i <= n; i++ {
		switch k := keys.RawGetInt(i).(type) {
		case glua.LString:
			names[i-1], esc[i-1] = k, memc.EscapeKey(string(k))
		case glua.LNumber:
			names[i-1], esc[i-1] = k, string(numberText(nil, k))
		default:
			argError(L, 1, "get", "keys expected as strings or numbers")
		}
	}
	items := make([]*memcache.Item, n)
	var err error
	lua.Blocking(L, "spindle.memcached", func() {
		for i, k := range esc {
			var e error
			if items[i], e = obj.h.Get(k); e != nil && !errors.Is(e, memc.ErrCacheMiss) {
				err = e
				return
			}
		}
	})
	if err != nil {
		return returnErr(L, obj.failure(L, "get", err))
	}
	res := L.CreateTable(0, n)
	for i, it := range items {
		if it == nil {
			continue
		}
		pair := L.CreateTable(2, 0)
		pair.RawSetInt(1, glua.LString(it.Value))
		pair.RawSetInt(2, glua.LNumber(it.Flags))
		res.RawSet(names[i], pair)
	}
	L.Push(res)
	return 1
}

// value converts a value to store: strings, numbers, and (nested) arrays of them
// concatenated, as lua-resty-memcached does.
func value(L *glua.LState, v glua.LValue, dst []byte, depth int, fn string) []byte {
	switch x := v.(type) {
	case glua.LString:
		return append(dst, x...)
	case glua.LNumber:
		return numberText(dst, x)
	case *glua.LTable:
		if depth < 32 {
			for i, n := 1, x.Len(); i <= n; i++ {
				dst = value(L, x.RawGetInt(i), dst, depth+1, fn)
			}
			return dst
		}
	}
	argError(L, 2, fn, "value expected (string, number or array of them), got "+v.Type().String())
	return dst
}

// store makes mc:set/add/replace/append/prepend(key, value, exptime, flags) → 1, or
// nil and "NOT_STORED" (or an error).
func (lib *memcLib) store(cmd string) glua.LGFunction {
	return func(L *glua.LState) int {
		obj := lib.self(L)
		it := &memcache.Item{Key: key(L, 2, cmd)}
		it.Value = value(L, L.Get(3), nil, 0, cmd)
		if it.Value == nil {
			it.Value = []byte{}
		}
		it.Expiration = int32(optInt(L, 4, cmd, "exptime"))
		it.Flags = uint32(optInt(L, 5, cmd, "flags"))
		var err error
		lua.Blocking(L, "spindle.memcached", func() {
			switch cmd {
			case "set":
				err = obj.h.Set(it)
			case "add":
				err = obj.h.Add(it)
			case "replace":
				err = obj.h.Replace(it)
			case "append":
				err = obj.h.Append(it)
			case "prepend":
				err = obj.h.Prepend(it)
			}
		})
		if err != nil {
			return returnErr(L, obj.failure(L, cmd, err))
		}
		L.Push(lvOne)
		return 1
	}
}

func (lib *memcLib) delete(L *glua.LState) int {
	obj := lib.self(L)
	k := key(L, 2, "delete")
	var err error
	lua.Blocking(L, "spindle.memcached", func() { err = obj.h.Delete(k) })
	if err != nil {
		return returnErr(L, obj.failure(L, "delete", err))
	}
	L.Push(lvOne)
	return 1
}

// incrDecr makes mc:incr/decr(key, delta) → the new value as a number.
func (lib *memcLib) incrDecr(incr bool) glua.LGFunction {
	op := "decr"
	if incr {
		op = "incr"
	}
	return func(L *glua.LState) int {
		obj := lib.self(L)
		k := key(L, 2, op)
		var delta uint64
		switch d := L.Get(3).(type) {
		case glua.LNumber:
			if d < 0 || float64(d) != float64(uint64(d)) {
				argError(L, 2, op, "delta expected (a non-negative integer)")
			}
			delta = uint64(d)
		case glua.LString:
			var err error
			if delta, err = strconv.ParseUint(string(d), 10, 64); err != nil {
				argError(L, 2, op, "delta expected (a non-negative integer)")
			}
		default:
			argError(L, 2, op, "delta expected (a non-negative integer)")
		}
		var n uint64
		var err error
		lua.Blocking(L, "spindle.memcached", func() {
			if incr {
				n, err = obj.h.Increment(k, delta)
			} else {
				n, err = obj.h.Decrement(k, delta)
			}
		})
		if err != nil {
			return returnErr(L, obj.failure(L, op, err))
		}
		L.Push(glua.LNumber(n))
		return 1
	}
}

func (lib *memcLib) touch(L *glua.LState) int {
	obj := lib.self(L)
	k := key(L, 2, "touch")
	exp := int32(optInt(L, 3, "touch", "exptime"))
	var err error
	lua.Blocking(L, "spindle.memcached", func() { err = obj.h.Touch(k, exp) })
	if err != nil {
		return returnErr(L, obj.failure(L, "touch", err))
	}
	L.Push(lvOne)
	return 1
}

// flushAll is mc:flush_all(delay): every server of the upstream.
func (lib *memcLib) flushAll(L *glua.LState) int {
	obj := lib.self(L)
	delay := int(optInt(L, 2, "flush_all", "time"))
	var err error
	lua.Blocking(L, "spindle.memcached", func() { err = obj.h.FlushAll(delay) })
	if err != nil {
		return returnErr(L, obj.failure(L, "flush_all", err))
	}
	L.Push(lvOne)
	return 1
}

// admin runs a text command on the upstream's first server.
func (lib *memcLib) admin(L *glua.LState, obj *memcObj, op, line string) (string, bool) {
	var out string
	var err error
	lua.Blocking(L, "spindle.memcached", func() { out, err = obj.h.Admin(nil, line) })
	if err != nil {
		if m := err.Error(); strings.HasPrefix(m, "memcached: ") && strings.Contains(m, "ERROR") {
			returnErr(L, strings.TrimPrefix(m, "memcached: "))
			return "", false
		}
		returnErr(L, obj.failure(L, op, err))
		return "", false
	}
	return out, true
}

// stats is mc:stats(args) → the lines of the answer ("STAT pid 1234", ...).
func (lib *memcLib) stats(L *glua.LState) int {
	obj := lib.self(L)
	line := "stats"
	if a, ok := L.Get(2).(glua.LString); ok && a != "" {
		if strings.ContainsAny(string(a), "\r\n") {
			argError(L, 1, "stats", "arguments may not hold line breaks")
		}
		line += " " + string(a)
	}
	out, ok := lib.admin(L, obj, "stats", line)
	if !ok {
		return 2
	}
	lines := strings.Split(strings.TrimRight(out, "\r\n"), "\r\n")
	t := L.CreateTable(len(lines), 0)
	for _, l := range lines {
		if l != "END" && l != "" {
			t.Append(glua.LString(l))
		}
	}
	L.Push(t)
	return 1
}

// version is mc:version() → the server's version.
func (lib *memcLib) version(L *glua.LState) int {
	obj := lib.self(L)
	out, ok := lib.admin(L, obj, "version", "version")
	if !ok {
		return 2
	}
	out = strings.TrimRight(out, "\r\n")
	v, found := strings.CutPrefix(out, "VERSION ")
	if !found {
		return returnErr(L, out)
	}
	L.Push(glua.LString(v))
	return 1
}

func (lib *memcLib) connect(L *glua.LState) int {
	L.RaiseError("spindle.memcached: connect is not needed: the object uses the pools of its upstream")
	return 0
}
