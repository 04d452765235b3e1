// The C side of the binding: every entry from Go into LuaJIT goes through these
// helpers, which run Lua under lua_pcall or lua_resume (or, where the Lua API may
// raise an error, under lua_cpcall), so a Lua error never unwinds through Go frames.
#ifndef SPINDLE_LUAJIT_ENGINE_H
#define SPINDLE_LUAJIT_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <luajit.h>

// At most this many values cross from Lua to Go at once: a callback's arguments,
// what a resume or call returns. Go to Lua, vm->out grows (tables' contents take
// slots too).
#define SP_MAXVALS 32

// Value types beyond Lua's own.
#define SP_TREF 101   // Go to Lua: the value a registry reference holds
#define SP_TTABLE 102 // Go to Lua: a table of the len key/value pairs in the next slots
#define SP_TARRAY 103 // Go to Lua: an array of the len values in the next slots

// A value crossing the boundary. Strings point into Lua (valid while the value is on
// a Lua stack) or into the VM's buffer (Go to Lua, valid until the next crossing).
typedef struct sp_val {
	int32_t type; // lua_type's, or SP_TREF, SP_TTABLE, SP_TARRAY
	uint32_t len; // string length; pairs of SP_TTABLE, values of SP_TARRAY
	double n;     // number, or boolean (0/1)
	const char *s; // string bytes (Lua to Go), light userdata
	size_t off;   // string offset in buf (Go to Lua)
	int32_t ref;  // a registry reference: of an argument (functions registered with refs), or SP_TREF's
	int32_t keep; // Go keeps the argument's reference
} sp_val;

// Outcomes of sp_resume and sp_call besides Lua's codes.
#define SP_OK 0
#define SP_YIELD LUA_YIELD

#define SP_ETOOMANY 100 // more than SP_MAXVALS values to return

// What a Go callback asks of the trampoline (spGoCall's result).
#define SP_CB_RETURN 0
#define SP_CB_YIELD 1
#define SP_CB_ERROR 2

typedef struct sp_vm {
	lua_State *L;
	lua_State *hold; // a thread whose stack keeps values Go reads alive
	int id;          // the Go VM's index, passed to the callback trampoline

	sp_val in[SP_MAXVALS]; // Lua to Go: callback arguments, resume/call results, error texts
	int nin;
	sp_val *out; // Go to Lua: callback results, resume/call arguments (tables' contents included)
	int nout, outcap;
	char *buf; // the bytes of Go strings in out
	size_t bufcap;
	lua_State *cur; // the coroutine calling Go, during a callback

	// Ownership check: set while a goroutine is inside the VM. A second entry while
	// it is set counts as a violation (the Go side makes that impossible; the
	// tests check that it does).
	int busy;
	int64_t violations;

	// lua_max_run_time: resumes are numbered (gen); the watchdog stores the number
	// of the one to stop in target and sets the hook, which raises the error while
	// that resume runs and removes itself otherwise.
	int gen;
	int target;
	int hooked;
	int killed; // the resume in progress was stopped by its limit
	char killmsg[96];
	int jiton;     // the compiler is on (sp_jit)
	int jitpaused; // turned off by the trampoline for a resume past its limit

	// The allocator with a limit (0: LuaJIT's own allocator, no limit).
	size_t mem, memlimit;
	int oom; // an allocation was refused since the last full collection

	// Registry references.
	int funcref; // the table of Go functions by id
	int msghref; // sp_msgh
	int holdref; // hold
	int envmetaref; // { __index = _G }

	// Arguments of the protected helpers.
	int arg;
	int ref;
	int refs; // sp_register: anchor the function's arguments
	lua_CFunction cfn; // sp_register_c: the C function and its upvalue
	void *cud;
	const char *argstr, *argname;
	size_t arglen;
	lua_State *from;
	int errcode;
} sp_vm;

sp_vm *sp_new(int id, size_t memlimit);
void sp_close(sp_vm *vm);
int sp_grow(sp_vm *vm, size_t need);
int sp_register(sp_vm *vm, int fid, const char *name, size_t len, int refs);
int sp_register_c(sp_vm *vm, const char *name, size_t len, lua_CFunction fn, void *ud);
// The functions Go calls per request take the VM and coroutines as uintptr_t, not
// as pointers: cgo checks every pointer argument for Go pointers at run time
// (cgoCheckPointer), ~150 instructions per sp_resume (callgrind,
// BenchmarkYieldResume), and these are C memory.
lua_State *sp_thread(uintptr_t vm, int ref);
int sp_sandbox(uintptr_t vm, int factory, uintptr_t co);
void sp_setexdata(uintptr_t vm, uintptr_t co, uintptr_t h);
int sp_load(sp_vm *vm, const char *name, const char *code, size_t len, int *ref);
int sp_newthread(uintptr_t vm, int fnref);
void sp_unref(uintptr_t vm, int ref);
int sp_resume(uintptr_t vm, uintptr_t co, int fnref, int gen);
int sp_growout(sp_vm *vm);
int sp_call(sp_vm *vm, int fnref);
void sp_interrupt(sp_vm *vm, int gen, const char *msg);
int sp_gccount(sp_vm *vm);
void sp_gc(sp_vm *vm);
int sp_jit(sp_vm *vm, int on);

#endif
