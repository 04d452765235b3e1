package lua

import (
	"math"
	"os"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// installCompat adds what OpenResty code expects from LuaJIT and ngx_lua beyond Lua
// 5.1: table.new and table.clear (also as require "table.new"), the bit library, a
// module loader that gives modules the shared globals and follows lua_package_path,
// require honouring lua_code_cache off, and pcall, xpcall and coroutine.resume that
// cannot swallow ngx.exit or a killed thread's unwinding.
func (v *vm) installCompat() {
	L := v.L
	tbl := L.GetGlobal("table").(*glua.LTable)
	tnew := L.NewFunction(func(L *glua.LState) int {
		L.Push(L.CreateTable(optInt(L, 1, 0), optInt(L, 2, 0)))
		return 1
	})
	tclear := L.NewFunction(func(L *glua.LState) int {
		t := L.CheckTable(1)
		var keys []glua.LValue
		t.ForEach(func(k, _ glua.LValue) { keys = append(keys, k) })
		for _, k := range keys {
			t.RawSet(k, glua.LNil)
		}
		return 0
	})
	tbl.RawSetString("new", tnew)
	tbl.RawSetString("clear", tclear)
	v.loaded.RawSetString("table.new", tnew)
	v.loaded.RawSetString("table.clear", tclear)

	bit := v.bitLib()
	L.SetGlobal("bit", bit)
	v.loaded.RawSetString("bit", bit)

	pkg := L.GetGlobal("package").(*glua.LTable)
	if loaders, ok := pkg.RawGetString("loaders").(*glua.LTable); ok {
		loaders.RawSetInt(2, L.NewFunction(v.luaLoader))
	}
	v.origRequire, _ = L.GetGlobal("require").(*glua.LFunction)
	L.SetGlobal("require", L.NewFunction(v.require))

	L.SetGlobal("pcall", L.NewFunction(v.pcall))
	L.SetGlobal("xpcall", L.NewFunction(v.xpcall))
	co := L.GetGlobal("coroutine").(*glua.LTable)
	if resume, ok := co.RawGetString("resume").(*glua.LFunction); ok && resume.IsG {
		orig := resume.GFunction
		co.RawSetString("resume", L.NewFunction(func(L *glua.LState) int {
			n := orig(L)
			v.reraise()
			return n
		}))
	}
}

// reraise continues unwinding a handler that ngx.exit ended (or a killed thread)
// after something caught the error on the way.
func (v *vm) reraise() {
	if t := v.cur.Load(); t != nil && t.ended() {
		if t.killed.Load() {
			panic(v.killErr)
		}
		panic(v.exitErr)
	}
}

func (v *vm) pcall(L *glua.LState) int {
	L.CheckAny(1)
	fn := L.Get(1)
	if fn.Type() != glua.LTFunction && L.GetMetaField(fn, "__call").Type() != glua.LTFunction {
		L.Push(glua.LFalse)
		L.Push(glua.LString("attempt to call a " + fn.Type().String() + " value"))
		return 2
	}
	if err := L.PCall(L.GetTop()-1, glua.MultRet, nil); err != nil {
		v.reraise()
		L.Push(glua.LFalse)
		if ae, ok := err.(*glua.ApiError); ok {
			L.Push(ae.Object)
		} else {
			L.Push(glua.LString(err.Error()))
		}
		return 2
	}
	L.Insert(glua.LTrue, 1)
	return L.GetTop()
}

func (v *vm) xpcall(L *glua.LState) int {
	fn := L.CheckFunction(1)
	handler := L.CheckFunction(2)
	top := L.GetTop()
	L.Push(fn)
	if err := L.PCall(0, glua.MultRet, handler); err != nil {
		v.reraise()
		L.Push(glua.LFalse)
		if ae, ok := err.(*glua.ApiError); ok {
			L.Push(ae.Object)
		} else {
			L.Push(glua.LString(err.Error()))
		}
		return 2
	}
	L.Insert(glua.LTrue, top+1)
	return L.GetTop() - top
}

// findModule searches package.path for a module, as Lua's searcher does.
func (v *vm) findModule(L *glua.LState, name string) (string, string) {
	path := ""
	if pkg, ok := v.globals.RawGetString("package").(*glua.LTable); ok {
		if p, ok := pkg.RawGetString("path").(glua.LString); ok {
			path = string(p)
		}
	}
	file := strings.ReplaceAll(name, ".", "/")
	var msgs []string
	for _, pat := range strings.Split(path, ";") {
		if pat == "" {
			continue
		}
		p := strings.ReplaceAll(pat, "?", file)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, ""
		}
		msgs = append(msgs, "no file '"+p+"'")
	}
	return "", "\n\t" + strings.Join(msgs, "\n\t")
}

// luaLoader loads a module from a Lua file on package.path. The module runs with the
// shared globals, whatever request first requires it.
func (v *vm) luaLoader(L *glua.LState) int {
	name := L.CheckString(1)
	path, msg := v.findModule(L, name)
	if path == "" {
		L.Push(glua.LString(msg))
		return 1
	}
	proto, err := loadLuaFile(path)
	if err != nil {
		L.RaiseError("error loading module '%s' from file '%s':\n\t%v", name, path, err)
	}
	v.fileMod[name] = true
	L.Push(&glua.LFunction{Proto: proto, Env: v.globals})
	return 1
}

// require is Lua's require, except that with lua_code_cache off the modules found in
// files are loaded again for each handler run, as ngx_lua reloads them with a fresh
// VM per request.
func (v *vm) require(L *glua.LState) int {
	t := v.cur.Load()
	if t == nil || t.run.conf == nil || t.run.conf.codeCache || v.origRequire == nil {
		return v.origRequire.GFunction(L)
	}
	name := L.CheckString(1)
	ru := t.run
	if ru.loaded == nil {
		ru.loaded = L.NewTable()
	}
	if lv := ru.loaded.RawGetString(name); lv != glua.LNil {
		L.Push(lv)
		return 1
	}
	if shared := v.loaded.RawGetString(name); shared != glua.LNil && !v.fileMod[name] {
		L.Push(shared)
		return 1
	}
	path, _ := v.findModule(L, name)
	if path == "" {
		return v.origRequire.GFunction(L)
	}
	proto, err := loadLuaFile(path)
	if err != nil {
		L.RaiseError("error loading module '%s' from file '%s':\n\t%v", name, path, err)
	}
	v.fileMod[name] = true
	L.Push(&glua.LFunction{Proto: proto, Env: v.globals})
	L.Push(glua.LString(name))
	L.Call(1, 1)
	mod := L.Get(-1)
	L.Pop(1)
	if mod == glua.LNil {
		mod = glua.LTrue
	}
	ru.loaded.RawSetString(name, mod)
	L.Push(mod)
	return 1
}

// bitLib is LuaJIT's bit module: 32-bit operations on numbers.
func (v *vm) bitLib() *glua.LTable {
	L := v.L
	tobit := func(L *glua.LState, n int) int32 { return toBit(float64(L.CheckNumber(n))) }
	fold := func(op func(a, b int32) int32) glua.LGFunction {
		return func(L *glua.LState) int {
			r := tobit(L, 1)
			for i := 2; i <= L.GetTop(); i++ {
				r = op(r, tobit(L, i))
			}
			L.Push(glua.LNumber(r))
			return 1
		}
	}
	shift := func(op func(a int32, n uint) int32) glua.LGFunction {
		return func(L *glua.LState) int {
			L.Push(glua.LNumber(op(tobit(L, 1), uint(tobit(L, 2))&31)))
			return 1
		}
	}
	b := L.NewTable()
	setFuncs(L, b, map[string]glua.LGFunction{
		"tobit":   func(L *glua.LState) int { L.Push(glua.LNumber(tobit(L, 1))); return 1 },
		"bnot":    func(L *glua.LState) int { L.Push(glua.LNumber(^tobit(L, 1))); return 1 },
		"band":    fold(func(a, b int32) int32 { return a & b }),
		"bor":     fold(func(a, b int32) int32 { return a | b }),
		"bxor":    fold(func(a, b int32) int32 { return a ^ b }),
		"lshift":  shift(func(a int32, n uint) int32 { return int32(uint32(a) << n) }),
		"rshift":  shift(func(a int32, n uint) int32 { return int32(uint32(a) >> n) }),
		"arshift": shift(func(a int32, n uint) int32 { return a >> n }),
		"rol": shift(func(a int32, n uint) int32 {
			u := uint32(a)
			return int32(u<<n | u>>((32-n)&31))
		}),
		"ror": shift(func(a int32, n uint) int32 {
			u := uint32(a)
			return int32(u>>n | u<<((32-n)&31))
		}),
		"bswap": func(L *glua.LState) int {
			u := uint32(tobit(L, 1))
			L.Push(glua.LNumber(int32(u>>24 | (u>>8)&0xff00 | (u<<8)&0xff0000 | u<<24)))
			return 1
		},
		"tohex": func(L *glua.LState) int {
			x := uint32(tobit(L, 1))
			n := optInt(L, 2, 8)
			digits := "0123456789abcdef"
			if n < 0 {
				n = -n
				digits = "0123456789ABCDEF"
			}
			if n > 8 {
				n = 8
			}
			out := make([]byte, n)
			for i := n - 1; i >= 0; i-- {
				out[i] = digits[x&15]
				x >>= 4
			}
			L.Push(glua.LString(out))
			return 1
		},
	})
	return b
}

// toBit normalises a number to a signed 32-bit integer as LuaJIT's bit.tobit.
func toBit(f float64) int32 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	f = math.Mod(math.RoundToEven(f), 4294967296)
	return int32(uint32(int64(f)))
}
