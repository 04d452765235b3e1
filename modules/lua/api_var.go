package lua

import (
	"strconv"

	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// installVar adds ngx.var (nginx variables: read any, write user variables and the
// writable built-ins) and ngx.arg (set_by_lua arguments, body_filter chunk and eof).
func (v *vm) installVar(ngx *glua.LTable) {
	L := v.L
	vr := L.NewTable()
	meta := L.NewTable()
	meta.RawSetString("__index", L.NewFunction(v.varIndex))
	meta.RawSetString("__newindex", L.NewFunction(v.varNewIndex))
	vr.Metatable = meta
	ngx.RawSetString("var", vr)

	arg := L.NewTable()
	meta = L.NewTable()
	meta.RawSetString("__index", L.NewFunction(v.argIndex))
	meta.RawSetString("__newindex", L.NewFunction(v.argNewIndex))
	meta.RawSetString("__len", L.NewFunction(func(L *glua.LState) int {
		L.Push(glua.LNumber(len(v.current(L).run.arg)))
		return 1
	}))
	arg.Metatable = meta
	ngx.RawSetString("arg", arg)
}

func (v *vm) varIndex(L *glua.LState) int {
	_, r := v.request(L)
	var name string
	switch k := L.Get(2).(type) {
	case glua.LString:
		name = string(k)
		if len(name) > 4 && name[:4] == "arg_" {
			// The most used variables, without the search through every namespace.
			if val, ok := httpcore.ArgValue(r.Args(), name[4:]); ok {
				L.Push(glua.LString(val))
			} else {
				L.Push(glua.LNil)
			}
			return 1
		}
	case glua.LNumber:
		// ngx.var[1]: a capture of the last regex match (location, rewrite, if).
		n := int(k)
		if caps := r.Captures(); n >= 0 && n < len(caps) {
			L.Push(glua.LString(caps[n]))
		} else {
			L.Push(glua.LNil)
		}
		return 1
	default:
		L.ArgError(2, "bad variable name")
	}
	if val, ok := r.Var(name); ok {
		L.Push(glua.LString(val))
	} else {
		L.Push(glua.LNil)
	}
	return 1
}

func (v *vm) varNewIndex(L *glua.LState) int {
	_, r := v.request(L)
	name := L.CheckString(2)
	var val string
	switch x := L.Get(3).(type) {
	case glua.LString:
		val = string(x)
	case glua.LNumber:
		val = string(appendNumber(nil, float64(x)))
	case *glua.LNilType:
		// nil unsets: nginx's not-found value reads as "".
	default:
		L.RaiseError("bad variable value type: %s", x.Type())
	}
	if !r.SetVar(name, val) {
		L.RaiseError("variable %q not found for writing; maybe it is a built-in variable that is not changeable or you forgot to define it first (set_by_lua %q, or `set`)", name, name)
	}
	return 0
}

func (v *vm) argIndex(L *glua.LState) int {
	t := v.current(L)
	i, ok := L.Get(2).(glua.LNumber)
	if !ok {
		L.Push(glua.LNil)
		return 1
	}
	n := int(i)
	if n >= 1 && n <= len(t.run.arg) {
		L.Push(t.run.arg[n-1])
	} else {
		L.Push(glua.LNil)
	}
	return 1
}

// argNewIndex lets body filters replace the chunk (ngx.arg[1]) and end the body
// (ngx.arg[2] = true).
func (v *vm) argNewIndex(L *glua.LState) int {
	t := v.current(L)
	if t.run.phase != phaseBodyFilter {
		L.RaiseError("attempt to write to ngx.arg in %s", t.run.phase.directive())
	}
	i, ok := L.Get(2).(glua.LNumber)
	if !ok || (i != 1 && i != 2) {
		L.RaiseError("bad index: %s", L.Get(2).String())
	}
	val := L.Get(3)
	if i == 1 {
		switch x := val.(type) {
		case glua.LString, *glua.LNilType:
		case glua.LNumber:
			val = glua.LString(strconv.FormatFloat(float64(x), 'g', 14, 64))
		case *glua.LTable:
			val = glua.LString(v.appendValue(L, nil, x, 3, false))
		default:
			L.RaiseError("bad chunk data type: %s", x.Type())
		}
	}
	t.run.arg[int(i)-1] = val
	return 0
}
