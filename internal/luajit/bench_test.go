package luajit

import (
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Benchmarks of the binding's crossings and of a CPU-bound handler. Figures are in
// SPINDLE.md (with gopher-lua's, the engine LuaJIT replaced, measured before it was
// removed).

// cpuPerOp reports the process's CPU time per operation beside the wall time: the
// machine these run on is shared, and CPU time is what other processes' load
// inflates least. Call it first in a benchmark.
func cpuPerOp(b *testing.B) {
	start := cpuTime()
	b.Cleanup(func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		}
	})
}

func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func benchState(b *testing.B) *State {
	vm := newVM(b, Options{})
	s := vm.Lock()
	b.Cleanup(s.Unlock)
	s.Register("say", func(s *State) error {
		_ = s.Bytes(0)
		return nil
	})
	s.Register("wait", func(s *State) error {
		s.PushNumber(1)
		s.Yield()
		return nil
	})
	s.Register("nop", func(s *State) error { return nil })
	return s
}

func load(b *testing.B, s *State, code string) Ref {
	fn, err := s.Load("bench.lua", code)
	if err != nil {
		b.Fatal(err)
	}
	return fn
}

// A request's fixed cost: a new coroutine, a resume, one callback, the coroutine
// dropped.
func BenchmarkThreadResumeCallback(b *testing.B) { benchThreadResumeCallback(b, 0) }

// The same with a run time limit: what lua_max_run_time costs per resume.
func BenchmarkThreadResumeCallbackLimit(b *testing.B) { benchThreadResumeCallback(b, 30*time.Second) }

func benchThreadResumeCallback(b *testing.B, limit time.Duration) {
	s := benchState(b)
	fn := load(b, s, `say("hello, world")`)
	b.ReportAllocs()
	cpuPerOp(b)
	for b.Loop() {
		th, err := s.NewThread(fn)
		if err != nil {
			b.Fatal(err)
		}
		th.Limit = limit
		if _, err := s.Resume(th); err != nil {
			b.Fatal(err)
		}
		s.CloseThread(th)
	}
}

// The same with the VM locked and unlocked around each request.
func BenchmarkThreadResumeCallbackLocked(b *testing.B) {
	s := benchState(b)
	fn := load(b, s, `say("hello, world")`)
	vm := s.VM()
	s.Unlock()
	defer vm.Lock()
	b.ReportAllocs()
	cpuPerOp(b)
	for b.Loop() {
		s := vm.Lock()
		th, err := s.NewThread(fn)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Resume(th); err != nil {
			b.Fatal(err)
		}
		s.CloseThread(th)
		s.Unlock()
	}
}

// A wait: the callback yields, Go resumes the coroutine with a value.
func BenchmarkYieldResume(b *testing.B) {
	s := benchState(b)
	fn := load(b, s, `while true do wait() end`)
	th, err := s.NewThread(fn)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpuPerOp(b)
	for b.Loop() {
		s.PushNumber(1)
		if st, err := s.Resume(th); st != Suspended || err != nil {
			b.Fatal(st, err)
		}
	}
}

// A yield/resume round trip with a string each way (a cosocket read).
func BenchmarkYieldResumeString(b *testing.B) {
	s := benchState(b)
	s.Register("recv", func(s *State) error {
		_ = s.Bytes(0)
		s.PushString("want")
		s.Yield()
		return nil
	})
	fn := load(b, s, `while true do local data = recv("*l") end`)
	th, err := s.NewThread(fn)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpuPerOp(b)
	for b.Loop() {
		s.PushString("a line of 32 bytes from redis..\n")
		if st, err := s.Resume(th); st != Suspended || err != nil {
			b.Fatal(st, err)
		}
	}
}

// Each further callback, in a loop in Lua (b.N calls in one resume).
func BenchmarkCallback(b *testing.B) {
	s := benchState(b)
	fn := load(b, s, `local n, say = ..., say for i = 1, n do say("x") end`)
	th, err := s.NewThread(fn)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpuPerOp(b)
	b.ResetTimer()
	s.PushInt(b.N)
	if _, err := s.Resume(th); err != nil {
		b.Fatal(err)
	}
}

// The lock around a request, uncontended.
func BenchmarkLockUnlock(b *testing.B) {
	s := benchState(b)
	vm := s.VM()
	s.Unlock()
	defer vm.Lock()
	cpuPerOp(b)
	for b.Loop() {
		vm.Lock().Unlock()
	}
}

// stringHandler builds a ~2 KB string with string.format and table.concat, then
// matches Lua patterns over it (gmatch with captures, gsub): the CPU-bound handler
// of issue 16, where spindle on gopher-lua ran at 0.09x OpenResty.
const stringHandler = `
local parts = {}
for i = 1, 40 do
	parts[#parts + 1] = string.format("item-%d=%s;", i, string.rep(string.char(97 + i % 26), 40))
end
local s = table.concat(parts)
local n = 0
for k, v in s:gmatch("(item%-%d+)=(%a+);") do
	n = n + #k + #v
end
local r, count = s:gsub("item%-(%d+)", "x%1")
return #s, n, #r, count
`

func BenchmarkStringHandlerLuaJIT(b *testing.B) { benchStringHandler(b, 0) }

// The same with a run time limit on each coroutine: the cost of lua_max_run_time.
func BenchmarkStringHandlerLuaJITLimit(b *testing.B) { benchStringHandler(b, 30*time.Second) }

func benchStringHandler(b *testing.B, limit time.Duration) {
	s := benchState(b)
	fn := load(b, s, stringHandler)
	b.ReportAllocs()
	cpuPerOp(b)
	for b.Loop() {
		th, err := s.NewThread(fn)
		if err != nil {
			b.Fatal(err)
		}
		th.Limit = limit
		if _, err := s.Resume(th); err != nil {
			b.Fatal(err)
		}
		if s.Int(0) != 1951 || s.Int(3) != 40 {
			b.Fatal("wrong result", s.Int(0), s.Int(3))
		}
		s.CloseThread(th)
	}
}

// A call to a Go function that takes and returns nothing, through the trampoline.
func BenchmarkCallbackNop(b *testing.B) {
	s := benchState(b)
	fn := load(b, s, `local n, nop = ..., nop for i = 1, n do nop() end`)
	th, _ := s.NewThread(fn)
	b.ReportAllocs()
	cpuPerOp(b)
	b.ResetTimer()
	s.PushInt(b.N)
	if _, err := s.Resume(th); err != nil {
		b.Fatal(err)
	}
}

// A call through LuaJIT's FFI to a C function (what lua-resty-core's calls into
// ngx_lua's C cost).
func BenchmarkFFICallC(b *testing.B) {
	s := benchState(b)
	fn := load(b, s, `local ffi = require "ffi"
		ffi.cdef[[size_t strlen(const char *s);]]
		local n, strlen = ..., ffi.C.strlen
		for i = 1, n do strlen("x") end`)
	th, _ := s.NewThread(fn)
	cpuPerOp(b)
	b.ResetTimer()
	s.PushInt(b.N)
	if _, err := s.Resume(th); err != nil {
		b.Fatal(err)
	}
}

// A call through LuaJIT's FFI straight to an exported Go function (spGoCall, here
// calling the nop function), found by name through ffi.C as lua-resty-core finds
// ngx_http_lua_ffi_*: Go's linker exports cgo's //export functions to the dynamic
// symbol table (--export-dynamic-symbol), so no -rdynamic is needed. What
// ngx_http_lua_ffi_* written in Go would cost.
func BenchmarkFFICallGo(b *testing.B) {
	s := benchState(b)
	fn := load(b, s, `local ffi = require "ffi"
		ffi.cdef[[int spGoCall(int vmid, int fid);]]
		local n, vmid, fid = ...
		local call = ffi.C.spGoCall
		for i = 1, n do call(vmid, fid) end`)
	th, _ := s.NewThread(fn)
	cpuPerOp(b)
	b.ResetTimer()
	s.PushInt(b.N)
	s.PushInt(s.VM().id)
	s.PushInt(2) // nop: the third function benchState registers
	if _, err := s.Resume(th); err != nil {
		b.Fatal(err)
	}
}

// A Go function returning a table of 10 string headers (ngx.req.get_headers).
func BenchmarkCallbackTable(b *testing.B) {
	s := benchState(b)
	names := []string{"host", "user-agent", "accept", "accept-encoding", "accept-language", "connection", "cookie", "referer", "x-forwarded-for", "x-request-id"}
	s.Register("headers", func(s *State) error {
		s.PushTable(len(names))
		for _, n := range names {
			s.PushString(n)
			s.PushString("a value of some 24 bytes")
		}
		return nil
	})
	fn := load(b, s, `local n, headers = ..., headers for i = 1, n do local h = headers() end`)
	th, _ := s.NewThread(fn)
	b.ReportAllocs()
	cpuPerOp(b)
	b.ResetTimer()
	s.PushInt(b.N)
	if _, err := s.Resume(th); err != nil {
		b.Fatal(err)
	}
}

// A Lua segment of about a millisecond, then a call to Go, under GOMAXPROCS=1:
// alone, and with another goroutine busy on the CPU meanwhile. sysmon gives the P
// to that goroutine during the segment; the call into Go then waits for the P
// until the scheduler preempts it (up to 10 ms). Correct (the VM stays owned), but
// the callback's latency is coupled to the worker's other goroutines.
func BenchmarkLongLuaThenCallback(b *testing.B) { benchLongLua(b, false) }

func BenchmarkLongLuaThenCallbackBusyGoroutine(b *testing.B) { benchLongLua(b, true) }

func benchLongLua(b *testing.B, busy bool) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := benchState(b)
	fn := load(b, s, `local n = ... for i = 1, n do local x = 0 for j = 1, 100000 do x = x + j % 3 end nop() end`)
	var stop atomic.Bool
	defer stop.Store(true)
	if busy {
		go func() {
			for !stop.Load() {
			}
		}()
		runtime.Gosched()
	}
	th, _ := s.NewThread(fn)
	cpuPerOp(b)
	b.ResetTimer()
	s.PushInt(b.N)
	if _, err := s.Resume(th); err != nil {
		b.Fatal(err)
	}
}

// A request's fixed cost with per-request globals (a new closure and environment
// table, as ngx_lua gives every handler).
func BenchmarkSandboxedThreadResumeCallback(b *testing.B) {
	s := benchState(b)
	factory, err := s.LoadSandboxed("bench.lua", `say("hello, world")`)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpuPerOp(b)
	for b.Loop() {
		th, err := s.NewSandboxedThread(factory)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Resume(th); err != nil {
			b.Fatal(err)
		}
		s.CloseThread(th)
	}
}
