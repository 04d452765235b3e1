// Package luajit runs Lua on LuaJIT (Debian's libluajit2-5.1, OpenResty's branch)
// through cgo, the way ngx_lua does: one VM per worker, one coroutine per request,
// a coroutine that waits yields to the Go code that resumed it, which resumes it
// later with what it waited for.
//
// # Crossing between Go and Lua
//
// Every entry from Go (Register, Load, NewThread, Resume, Call) is a C helper in
// engine.c that runs Lua under lua_pcall, lua_resume or lua_cpcall, so a Lua error
// never unwinds (longjmp or LuaJIT's C++-style unwinding) through Go frames: it
// comes back as an *Error with "file:line: message" and the traceback. Lua calls
// Go through one C function, sp_trampoline, whose upvalue (a userdata) holds the VM
// and the Go function's id; it calls the one exported Go function, spGoCall, which recovers
// panics. Arguments and results cross as fixed arrays of values in the VM's C
// struct (nil, booleans, numbers, strings, light userdata; MaxValues from Lua), read
// and written in place from Go, so a call is one C->Go transition and allocates
// nothing on either side; strings from Go are copied into a C buffer that grows
// when needed. A Go error or panic is raised as a Lua error by the trampoline
// after Go has returned. Tables go to Lua as a run of keys and values the
// trampoline assembles (PushTable); tables, functions and coroutines come to Go as
// registry references for the functions that keep them (RegisterRefs).
//
// # One owner
//
// A cgo call that runs longer than ~20 µs lets Go's sysmon hand the P to another
// thread (even with GOMAXPROCS=1), so the goroutines of the worker keep running
// while Lua runs. The VM's Lua state is reachable only through a *State, which
// VM.Lock gives to one goroutine at a time (a sync.Mutex) until State.Unlock; a Go
// function called from Lua receives the same State (the VM is owned by the
// goroutine that entered it, on whose stack the callback runs) and may not enter
// the VM again (ErrNested). The C side counts entries made while another is in
// progress (VM.Violations), which TestSingleOwner checks stays 0 with 32
// goroutines calling in during a long Lua call under GOMAXPROCS=1 and -race. The
// lock costs 6.7 ns uncontended. What remains is latency: after a long Lua
// stretch, the call into Go waits for the P if sysmon gave it to a busy goroutine
// (BenchmarkLongLuaThenCallbackBusyGoroutine).
//
// # Run time limit
//
// A Thread's Limit (lua_max_run_time) is enforced by the VM's watchdog goroutine:
// Resume records the running thread and reads a tick counter; when a thread has
// run past its limit, the watchdog sets a count hook (lua_sethook may be called
// from another thread; luajit.c does it from a signal handler), which raises the
// error at the next instruction the interpreter runs, again after any pcall that
// catches it. Nothing is checked per instruction while no thread is over its
// limit. LuaJIT does not call hooks in compiled code, so the trampoline checks
// too (one load and compare per call): a compiled loop that calls any Go function
// fails at that call, and the compiler is turned off until the resume ends, so code
// that catches the error runs in the interpreter and is stopped by the hook. Only
// a compiled loop that calls no Go function and never leaves its trace cannot be
// interrupted; the watchdog then calls Options.OnStuck, and the worker should exit
// (its master starts another). TestRunTimeLimit covers each case.
//
// # Costs
//
// Measured on a shared 2-core machine (CPU time per operation; SPINDLE.md has the
// table): a request's fixed cost (a reused coroutine, a resume, one callback) 265
// ns; a yield/resume round trip 265 ns; each further Lua->Go call ~130 ns (Go's
// C->Go transition is ~85 of it); VM.Lock+Unlock 6.7 ns uncontended; a run time
// limit nothing measurable. Issue 16's string handler runs in 48.6 us against
// gopher-lua's 765 us. A suspended request holds 725 bytes of Lua heap.
//
// # Limits of LuaJIT this package works around
//
// LuaJIT does not bound the C stack used by nested coroutine.resume calls (about
// 80 bytes a level; Debian's LuaJIT dies with SIGSEGV near 100,000 levels on 8 MB):
// coroutine.resume and coroutine.wrap are wrapped to fail past 200 levels.
// Recursion through C functions that call back into Lua (a string.gsub callback
// calling string.gsub, ...) is not bounded by LuaJIT either and ends the process
// with SIGSEGV when the C stack runs out, as in OpenResty. LuaJIT does not collect
// garbage when an allocation fails: with a MemoryLimit, the next entry after a
// refused allocation runs a full collection first.
package luajit
