package lua

import (
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
