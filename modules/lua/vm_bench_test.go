package lua

import (
	"os"
	"testing"

	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// benchVM returns a worker VM for micro-benchmarks of the handler machinery without
// the HTTP engine around it.
func benchVM(b *testing.B) *vm {
	cfg, err := testserver.BuildString(b, `http {
  server {
    listen = ["127.0.0.1:0"]
    location "/" { content_by_lua = "local x = 1" }
  }
}`, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := cfg.InitWorker(&httpcore.Worker{Count: 1}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cfg.ExitWorker)
	return vmOf(cfg)
}

func benchChunk(b *testing.B, src string, limit bool) {
	v := benchVM(b)
	proto, err := compileLua([]byte(src), "bench")
	if err != nil {
		b.Fatal(err)
	}
	fn := &glua.LFunction{Proto: proto, Env: v.globals}
	c := *v.main.rootConf
	if !limit {
		c.maxRunTime = 0
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ru := v.newRun(nil, phaseTimer, &c)
		v.call(ru, fn, 0)
		if ru.exit != exitNone {
			b.Fatal(ru.errMsg)
		}
		ru.free()
	}
}

// BenchmarkCallEmpty is the fixed cost of running a handler: run, lock, thread, PCall.
func BenchmarkCallEmpty(b *testing.B)        { benchChunk(b, "local x = 1", true) }
func BenchmarkCallEmptyNoLimit(b *testing.B) { benchChunk(b, "local x = 1", false) }

// BenchmarkCallNgxField reads ngx fields and calls a cheap API function.
func BenchmarkCallNgxField(b *testing.B) {
	benchChunk(b, "local a = ngx.null local t = ngx.time()", true)
}

// BenchmarkLoop is a tight arithmetic loop: what lua_max_run_time's context check
// costs the interpreter (compare BenchmarkLoopNoLimit).
func BenchmarkLoop(b *testing.B) {
	benchChunk(b, "local s = 0 for i = 1, 10000 do s = s + i end", true)
}
func BenchmarkLoopNoLimit(b *testing.B) {
	benchChunk(b, "local s = 0 for i = 1, 10000 do s = s + i end", false)
}

// BenchmarkRestyRedisVM is lua-resty-redis's connect, GET and set_keepalive against a
// socket faked in Go, on a bare gopher-lua state: the interpreter's own share of a
// /redis request, without I/O or spindle's cosockets.
func BenchmarkRestyRedisVM(b *testing.B) { benchRestyRedisVM(b) }

// BenchmarkRestyRedisVMThread is the same on a state made as the worker makes its
// threads (threadOptions: a call stack that grows by segments, a registry that grows).
func BenchmarkRestyRedisVMThread(b *testing.B) { benchRestyRedisVM(b, threadOptions) }

func benchRestyRedisVM(b *testing.B, opts ...glua.Options) {
	const lib = "/usr/share/lua/5.1/nginx/redis.lua"
	if _, err := os.Stat(lib); err != nil {
		b.Skip("lua-resty-redis (Debian's lua-nginx-redis) is not installed")
	}
	L := glua.NewState(opts...)
	defer L.Close()
	pkg := L.GetGlobal("package").(*glua.LTable)
	pkg.RawSetString("path", glua.LString("/usr/share/lua/5.1/?.lua"))
	pkg.RawGetString("loaded").(*glua.LTable).RawSetString("table.new", L.NewFunction(func(L *glua.LState) int {
		L.Push(L.CreateTable(L.OptInt(1, 0), L.OptInt(2, 0)))
		return 1
	}))
	ret1 := func(L *glua.LState) int { L.Push(glua.LNumber(1)); return 1 }
	replies := []glua.LValue{glua.LString("$3"), glua.LString("bar"), glua.LString("\r\n")}
	step := 0
	methods := L.NewTable()
	L.SetFuncs(methods, map[string]glua.LGFunction{
		"settimeout": ret1, "connect": ret1, "setkeepalive": ret1,
		"send": func(L *glua.LState) int {
			n := 0
			req := L.CheckTable(2)
			for i := 1; i <= req.Len(); i++ {
				n += len(glua.LVAsString(req.RawGetInt(i)))
			}
			L.Push(glua.LNumber(n))
			return 1
		},
		"receive": func(L *glua.LState) int {
			L.Push(replies[step%len(replies)])
			step++
			return 1
		},
	})
	sockMeta := L.NewTable()
	sockMeta.RawSetString("__index", methods)
	ngx := L.NewTable()
	ngx.RawSetString("null", glua.LNil)
	ngx.RawSetString("say", L.NewFunction(func(*glua.LState) int { return 0 }))
	socket := L.NewTable()
	socket.RawSetString("tcp", L.NewFunction(func(L *glua.LState) int {
		ud := L.NewUserData()
		ud.Metatable = sockMeta
		L.Push(ud)
		return 1
	}))
	ngx.RawSetString("socket", socket)
	L.SetGlobal("ngx", ngx)
	fn, err := L.LoadString(`
		local redis = require "nginx.redis"
		local red = redis:new()
		red:set_timeout(1000)
		local ok, err = red:connect("127.0.0.1", 6379)
		if not ok then ngx.say(err) return end
		local res = red:get("foo")
		red:set_keepalive(10000, 512)
		ngx.say(res)`)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		L.Push(fn)
		if err := L.PCall(0, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
}
