package luajit

/*
#cgo pkg-config: luajit
#cgo LDFLAGS: -lm
#include <stdlib.h>
#include "engine.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Options configure a VM.
type Options struct {
	// PackagePath and PackageCPath are package.path and package.cpath, with ";;"
	// standing for the default, as lua_package_path does. The default is LuaJIT's
	// own without its "./" entries (the worker's current directory is no place to
	// load code from): on Debian it finds the Lua 5.1 modules of Debian's packages,
	// /usr/share/lua/5.1/?.lua, ?/init.lua and /usr/lib/<multiarch>/lua/5.1/?.so.
	PackagePath, PackageCPath string

	// MemoryLimit bounds the bytes the VM allocates; an allocation past it fails
	// the Lua code that made it with LUA_ERRMEM ("not enough memory"), not the
	// process. 0 keeps LuaJIT's own allocator and no limit.
	MemoryLimit int64

	// Tick is the resolution of the run time limits (Thread.Limit); default 10ms.
	Tick time.Duration

	// OnStuck is called (on the watchdog's goroutine) when a thread ran past its
	// limit and the interrupt did not stop it within StuckAfter (default 1s): it
	// loops in code that LuaJIT compiled, where hooks do not fire. Nothing can stop
	// it then but the end of the process; a worker would log and exit, and its
	// master start another.
	OnStuck    func(t *Thread, ran time.Duration)
	StuckAfter time.Duration
}

// A VM is one LuaJIT state: a worker's Lua interpreter. Nothing reaches its Lua
// state but through a State, which Lock gives to one goroutine at a time.
type VM struct {
	mu    sync.Mutex
	st    State
	c     *C.sp_vm
	id    int
	funcs []Func
	opts  Options
	idle  []*Thread // finished coroutines kept for reuse

	// The watchdog: ticks since New, the thread being resumed and the number of
	// that resume (see sp_interrupt).
	tick     atomic.Int64
	runGen   atomic.Int32 // the resume in progress of a thread with a limit, 0 if none
	runStart atomic.Int64 // the tick it would have started at had it run at once
	runLimit atomic.Int64 // its thread's Limit
	running  atomic.Pointer[Thread]
	gen      int32
	stop     chan struct{}
	done     chan struct{}
}

// vms finds a VM from the id that the C trampoline passes to spGoCall: a plain
// array read, cheaper than a cgo.Handle (a sync.Map lookup).
var vms struct {
	mu    sync.Mutex
	slots [1 << 12]atomic.Pointer[VM]
	next  int
	free  []int
}

// New creates a VM with the standard libraries open.
func New(opts Options) (*VM, error) {
	if opts.Tick <= 0 {
		opts.Tick = 10 * time.Millisecond
	}
	if opts.StuckAfter <= 0 {
		opts.StuckAfter = time.Second
	}
	vm := &VM{opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	vms.mu.Lock()
	if n := len(vms.free); n > 0 {
		vm.id = vms.free[n-1]
		vms.free = vms.free[:n-1]
	} else if vms.next < len(vms.slots) {
		vm.id = vms.next
		vms.next++
	} else {
		vms.mu.Unlock()
		return nil, errors.New("luajit: too many VMs")
	}
	vms.mu.Unlock()
	vm.c = C.sp_new(C.int(vm.id), C.size_t(opts.MemoryLimit))
	if vm.c == nil {
		vms.mu.Lock()
		vms.free = append(vms.free, vm.id)
		vms.mu.Unlock()
		return nil, errors.New("luajit: cannot create a state")
	}
	vm.st.vm, vm.st.c = vm, vm.c
	vms.slots[vm.id].Store(vm)
	s := vm.Lock()
	err := s.DoString("luajit.init", initCode, opts.PackagePath, opts.PackageCPath)
	s.Unlock()
	if err != nil {
		vm.Close()
		return nil, err
	}
	go vm.watchdog()
	return vm, nil
}

// initCode sets the package paths and bounds the nesting of coroutines: each
// coroutine.resume inside another takes about 80 bytes of the C stack, and LuaJIT
// does not check it (Debian's LuaJIT dies with SIGSEGV at ~100,000 levels on an 8
// MB stack). 200 is LuaJIT's own bound for nested C calls (LUAI_MAXCCALLS).
const initCode = `
local path, cpath = ...
local function clean(p)
	local t = {}
	for e in p:gmatch("[^;]+") do
		if e:sub(1, 2) ~= "./" and not e:find("loadall", 1, true) then
			t[#t + 1] = e
		end
	end
	return table.concat(t, ";")
end
local function set(v, d)
	if v == "" then
		return d
	end
	v = v:gsub(";;", function() return ";" .. d .. ";" end)
	return (v:gsub(";;+", ";"):gsub("^;", ""):gsub(";$", ""))
end
package.path = set(path, clean(package.path))
package.cpath = set(cpath, clean(package.cpath))

local create, resume, type, error = coroutine.create, coroutine.resume, type, error
local depth, max = 0, 200
local function finish(...)
	depth = depth - 1
	return ...
end
local function counted(co, ...)
	if type(co) ~= "thread" then
		return resume(co, ...) -- raises its "bad argument" error
	end
	if depth >= max then
		return false, "coroutines nested too deep (" .. max .. " levels)"
	end
	depth = depth + 1
	return finish(resume(co, ...))
end
local function unwrap(ok, ...)
	if ok then
		return ...
	end
	local err = ...
	error(err, type(err) == "string" and 2 or 0)
end
coroutine.resume = counted
coroutine.wrap = function(f)
	local co = create(f)
	return function(...)
		return unwrap(counted(co, ...))
	end
end
`

// Close ends the VM. It must not be in use.
func (vm *VM) Close() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.c == nil {
		return
	}
	close(vm.stop)
	<-vm.done
	C.sp_close(vm.c)
	vm.c, vm.st.c = nil, nil
	vms.slots[vm.id].Store(nil)
	vms.mu.Lock()
	vms.free = append(vms.free, vm.id)
	vms.mu.Unlock()
}

// Violations counts entries into the VM's C side while another was in progress:
// always 0 (the tests check it), since every entry goes through a State.
func (vm *VM) Violations() int64 {
	return atomic.LoadInt64((*int64)(unsafe.Pointer(&vm.c.violations)))
}

// Lock waits until no other goroutine owns the VM and returns its State, the only
// way into its Lua code, until Unlock.
func (vm *VM) Lock() *State {
	vm.mu.Lock()
	vm.st.held = true
	return &vm.st
}

// A Func is a Go function called from Lua. It reads its arguments and pushes its
// results on s (see Arg and Push); an error it returns is raised in Lua as
// "file:line: message", the position of the Lua code that called. It may call
// s.Yield to suspend the coroutine that called it: the values it pushed go to the
// goroutine that resumed the coroutine, and the values of the next Resume become
// the results of the call in Lua.
//
// It must not block (the VM is owned for as long as it runs) nor enter the VM
// again (Resume, Call, Load): those return ErrNested.
type Func func(s *State) error

// A State is the ownership of a VM, given by VM.Lock, and the values that cross
// between Go and Lua: the arguments of a Func and its results, the arguments of a
// Resume or Call and what it returned.
type State struct {
	vm     *VM
	c      *C.sp_vm
	held   bool
	inCall int  // > 0 during a callback
	yield  bool // the callback asked to yield
	blen   int  // bytes used in c.buf
}

// ErrNested is returned by an entry into the VM from a callback.
var ErrNested = errors.New("luajit: VM entered from a Go function called by Lua")

// Unlock gives the VM up; s must not be used after it.
func (s *State) Unlock() {
	s.check()
	if s.inCall > 0 {
		panic("luajit: Unlock in a Go function called by Lua")
	}
	s.held = false
	s.vm.mu.Unlock()
}

// h is the VM's C side as the functions called per request take it: an integer,
// which cgo does not check for Go pointers (engine.h).
func (s *State) h() C.uintptr_t { return C.uintptr_t(uintptr(unsafe.Pointer(s.c))) }

// coh is a coroutine as those functions take it.
func coh(co *C.lua_State) C.uintptr_t { return C.uintptr_t(uintptr(unsafe.Pointer(co))) }

func (s *State) check() {
	if !s.held {
		panic("luajit: State used without owning the VM")
	}
}

func (s *State) entry() error {
	s.check()
	if s.inCall > 0 {
		return ErrNested
	}
	return nil
}

// VM returns the VM that s owns.
func (s *State) VM() *VM { return s.vm }

// Register makes fn callable from Lua as the global name, or a field of nested
// tables for a dotted name ("ngx.req.get_method"; missing tables are created).
func (s *State) Register(name string, fn Func) error {
	return s.register(name, fn, 0)
}

// RegisterRefs is Register for a function that takes tables, functions, coroutines
// or full userdata and keeps some of them (ngx.timer.at's callback, a light
// thread's coroutine, a request's ngx.ctx): the trampoline anchors each such
// argument in the registry for the call, and drops the ones fn did not keep with
// Ref. It costs a registry slot per such argument and call.
func (s *State) RegisterRefs(name string, fn Func) error {
	return s.register(name, fn, 1)
}

func (s *State) register(name string, fn Func, refs C.int) error {
	if err := s.entry(); err != nil {
		return err
	}
	fid := len(s.vm.funcs)
	s.vm.funcs = append(s.vm.funcs, fn)
	rc := C.sp_register(s.c, C.int(fid), (*C.char)(unsafe.Pointer(unsafe.StringData(name))), C.size_t(len(name)), refs)
	s.blen = 0
	if rc != 0 {
		return s.error(rc)
	}
	return nil
}

// RegisterC makes the global name (a dotted path, as Register's) a C function of
// the Lua C API, fn (a lua_CFunction), with ud as its one upvalue, a light
// userdata: for the hot calls a module writes in C. A C function costs a Lua call
// in the interpreter where a Func costs a cgo callback (~1,000 instructions); fn
// must not call Go.
func (s *State) RegisterC(name string, fn, ud unsafe.Pointer) error {
	if err := s.entry(); err != nil {
		return err
	}
	rc := C.sp_register_c(s.c, (*C.char)(unsafe.Pointer(unsafe.StringData(name))), C.size_t(len(name)), C.lua_CFunction(fn), ud)
	s.blen = 0
	if rc != 0 {
		return s.error(rc)
	}
	return nil
}

// A Ref is a Lua value (a loaded chunk) kept in the VM's registry until Unref.
type Ref int

// Load compiles code as a chunk named name (errors say "name:line: message").
func (s *State) Load(name, code string) (Ref, error) {
	if err := s.entry(); err != nil {
		return 0, err
	}
	cname := C.CString("=" + name)
	defer C.free(unsafe.Pointer(cname))
	var ref C.int
	rc := C.sp_load(s.c, cname, (*C.char)(unsafe.Pointer(unsafe.StringData(code))), C.size_t(len(code)), &ref)
	s.blen = 0
	if rc != 0 {
		return 0, s.error(rc)
	}
	return Ref(ref), nil
}

// Unref drops a Ref. Not in a Func (it is an entry into the VM).
func (s *State) Unref(r Ref) {
	s.mustEnter()
	C.sp_unref(s.h(), C.int(r))
}

// mustEnter is entry for the methods that return no error: misuse panics (in a
// Func, the panic becomes a Lua error).
func (s *State) mustEnter() {
	if err := s.entry(); err != nil {
		panic(err)
	}
}

// Ref keeps argument i of a Func registered with RegisterRefs (a table, function,
// coroutine or full userdata) beyond the call, and returns its reference: the value
// stays alive until Unref (or CloseThread of ThreadOf's thread). ok is false for
// other arguments.
func (s *State) Ref(i int) (r Ref, ok bool) {
	s.check()
	v := s.val(i)
	if s.inCall == 0 || v == nil || v._type < C.LUA_TTABLE || v.ref == C.LUA_NOREF {
		return 0, false
	}
	v.keep = 1
	return Ref(v.ref), true
}

// PushRef pushes the value r holds.
func (s *State) PushRef(r Ref) {
	v := s.push()
	v._type = C.SP_TREF
	v.ref = C.int32_t(r)
}

// Call calls the chunk or function r on the VM's main state with the values pushed
// as arguments. Its results can then be read with N and the Arg methods. It is for
// code that does not yield (init code): a yield is an error.
func (s *State) Call(r Ref) error {
	if err := s.entry(); err != nil {
		return err
	}
	rc := C.sp_call(s.c, C.int(r))
	s.blen = 0
	if rc != 0 {
		return s.error(rc)
	}
	return nil
}

// DoString loads and calls code with string arguments.
func (s *State) DoString(name, code string, args ...string) error {
	r, err := s.Load(name, code)
	if err != nil {
		return err
	}
	defer s.Unref(r)
	for _, a := range args {
		s.PushString(a)
	}
	return s.Call(r)
}

// SetJIT turns LuaJIT's compiler on or off for the whole VM.
func (s *State) SetJIT(on bool) {
	s.mustEnter()
	b := 0
	if on {
		b = 1
	}
	C.sp_jit(s.c, C.int(b))
}

// MemoryInUse is the bytes the VM's Lua heap holds.
func (s *State) MemoryInUse() int {
	s.mustEnter()
	return int(C.sp_gccount(s.c))
}

// Collect runs a full garbage collection.
func (s *State) Collect() {
	s.mustEnter()
	C.sp_gc(s.c)
}

// An ErrorCode says what kind of error a call into Lua ended with.
type ErrorCode int

// Error codes: Lua's, and ErrTooMany (more values than can cross at once,
// MaxValues) and ErrTimeout (the thread ran past its Limit).
const (
	ErrRun     ErrorCode = C.LUA_ERRRUN
	ErrSyntax  ErrorCode = C.LUA_ERRSYNTAX
	ErrMem     ErrorCode = C.LUA_ERRMEM
	ErrErr     ErrorCode = C.LUA_ERRERR
	ErrTooMany ErrorCode = C.SP_ETOOMANY
	ErrTimeout ErrorCode = 1000
)

// MaxValues is how many values cross from Lua to Go at once: a Func's arguments,
// what a Resume or Call returns.
const MaxValues = C.SP_MAXVALS

// An Error is a Lua error: its message ("file:line: message" for a runtime error)
// and, for runtime errors, the traceback of the coroutine or state it happened in.
type Error struct {
	Code      ErrorCode
	Message   string
	Traceback string
}

// Error is the message with its traceback, as ngx_lua logs a handler's error.
func (e *Error) Error() string {
	if e.Traceback == "" {
		return e.Message
	}
	return e.Message + "\n" + e.Traceback
}

// error makes the Error of a failed entry from the message left in in[0].
func (s *State) error(rc C.int) error {
	e := &Error{Code: ErrorCode(rc)}
	if rc == C.SP_ETOOMANY {
		e.Message = fmt.Sprintf("more than %d values", MaxValues)
		return e
	}
	if s.c.nin > 0 {
		e.Message = s.String(0)
	}
	if i := strings.Index(e.Message, "\nstack traceback:\n"); i >= 0 {
		e.Traceback = e.Message[i+1:]
		e.Message = e.Message[:i]
	}
	if rc == C.LUA_ERRMEM {
		e.Message = "not enough memory"
	}
	return e
}
