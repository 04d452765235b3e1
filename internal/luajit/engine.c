#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine.h"
#include "_cgo_export.h"

// The registry key of the sp_vm of a state (for the hook).
static const char sp_vmkey = 0;

// sp_alloc is the allocator of VMs with a memory limit: a failed allocation makes
// LuaJIT raise LUA_ERRMEM, which fails the call that allocated, not the process.
static void *sp_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
	sp_vm *vm = ud;
	if (ptr == NULL)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		vm->mem -= osize;
		return NULL;
	}
	if (nsize > osize && vm->mem + (nsize - osize) > vm->memlimit) {
		vm->oom = 1;
		return NULL;
	}
	void *p = realloc(ptr, nsize);
	if (p == NULL)
		return NULL;
	vm->mem += nsize;
	vm->mem -= osize;
	return p;
}

// An error outside any protected call is a bug in the binding: say so and abort
// rather than return into Go with a corrupt state.
static int sp_panic(lua_State *L) {
	const char *msg = lua_tostring(L, -1);
	fprintf(stderr, "luajit: unprotected error: %s\n", msg ? msg : "(not a string)");
	abort();
	return 0;
}

// sp_msgh is the message handler of sp_call: the message with a traceback.
static int sp_msgh(lua_State *L) {
	const char *msg = lua_tostring(L, 1);
	if (msg == NULL) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
			msg = lua_tostring(L, -1);
		else
			msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

static int sp_init_p(lua_State *L) {
	sp_vm *vm = lua_touserdata(L, 1);
	luaL_openlibs(L);
	lua_pushlightuserdata(L, (void *)&sp_vmkey);
	lua_pushlightuserdata(L, vm);
	lua_rawset(L, LUA_REGISTRYINDEX);
	lua_newtable(L);
	vm->funcref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushcfunction(L, sp_msgh);
	vm->msghref = luaL_ref(L, LUA_REGISTRYINDEX);
	vm->hold = lua_newthread(L);
	vm->holdref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_createtable(L, 0, 1); // { __index = _G }: per-request environments
	lua_pushvalue(L, LUA_GLOBALSINDEX);
	lua_setfield(L, -2, "__index");
	vm->envmetaref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

sp_vm *sp_new(int id, size_t memlimit) {
	sp_vm *vm = calloc(1, sizeof *vm);
	if (vm == NULL)
		return NULL;
	vm->id = id;
	vm->memlimit = memlimit;
	vm->outcap = 64;
	vm->out = malloc((size_t)vm->outcap * sizeof *vm->out);
	if (vm->out == NULL) {
		free(vm);
		return NULL;
	}
	vm->L = memlimit ? lua_newstate(sp_alloc, vm) : luaL_newstate();
	if (vm->L == NULL) {
		free(vm->out);
		free(vm);
		return NULL;
	}
	lua_atpanic(vm->L, sp_panic);
	vm->jiton = 1;
	if (lua_cpcall(vm->L, sp_init_p, vm) != 0) {
		lua_close(vm->L);
		free(vm->out);
		free(vm);
		return NULL;
	}
	return vm;
}

void sp_close(sp_vm *vm) {
	lua_close(vm->L);
	free(vm->buf);
	free(vm->out);
	free(vm);
}

int sp_grow(sp_vm *vm, size_t need) {
	size_t n = vm->bufcap ? vm->bufcap : 256;
	while (n < need)
		n *= 2;
	char *b = realloc(vm->buf, n);
	if (b == NULL)
		return 0;
	vm->buf = b;
	vm->bufcap = n;
	return 1;
}

// sp_marshal describes n values of L's stack from index from in vm->in.
static void sp_marshal(lua_State *L, sp_vm *vm, int from, int n) {
	for (int i = 0; i < n; i++) {
		sp_val *v = &vm->in[i];
		int idx = from + i;
		int t = lua_type(L, idx);
		v->type = t;
		switch (t) {
		case LUA_TNONE:
			v->type = LUA_TNIL;
			break;
		case LUA_TBOOLEAN:
			v->n = lua_toboolean(L, idx);
			break;
		case LUA_TNUMBER:
			v->n = lua_tonumber(L, idx);
			break;
		case LUA_TSTRING: {
			size_t len;
			v->s = lua_tolstring(L, idx, &len);
			v->len = (uint32_t)len;
			break;
		}
		case LUA_TLIGHTUSERDATA:
			v->s = lua_touserdata(L, idx);
			break;
		}
	}
	vm->nin = n;
}

// sp_pushone pushes the value that starts at vm->out[*i] (a table takes the slots
// of its keys and values after it) and moves *i past it.
static void sp_pushone(lua_State *L, sp_vm *vm, int *i) {
	if (*i >= vm->nout) {
		lua_pushnil(L);
		return;
	}
	sp_val *v = &vm->out[(*i)++];
	switch (v->type) {
	case LUA_TBOOLEAN:
		lua_pushboolean(L, v->n != 0);
		break;
	case LUA_TNUMBER:
		lua_pushnumber(L, v->n);
		break;
	case LUA_TSTRING:
		lua_pushlstring(L, vm->buf + v->off, v->len);
		break;
	case LUA_TLIGHTUSERDATA:
		lua_pushlightuserdata(L, (void *)v->s);
		break;
	case SP_TREF:
		lua_rawgeti(L, LUA_REGISTRYINDEX, v->ref);
		break;
	case SP_TTABLE: {
		int n = (int)v->len;
		luaL_checkstack(L, 3, "tables nested too deep");
		lua_createtable(L, 0, n);
		for (int k = 0; k < n; k++) {
			// Whether the key is nil or NaN (not a key) is told by its sp_val but for
			// a reference's, which only Lua knows: two API calls less per pair.
			int kt = *i < vm->nout ? vm->out[*i].type : LUA_TNIL;
			int skip = 1; // nil: no value, LUA_TNIL, or a type sp_pushone makes nil
			switch (kt) {
			case LUA_TNUMBER:
				skip = vm->out[*i].n != vm->out[*i].n;
				break;
			case LUA_TBOOLEAN:
			case LUA_TSTRING:
			case LUA_TLIGHTUSERDATA:
			case SP_TREF:
			case SP_TTABLE:
			case SP_TARRAY:
				skip = 0;
				break;
			}
			sp_pushone(L, vm, i);
			sp_pushone(L, vm, i);
			if (kt == SP_TREF)
				skip = lua_isnil(L, -2) || (lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2));
			if (skip)
				lua_pop(L, 2); // not a key: nil or NaN
			else
				lua_rawset(L, -3);
		}
		break;
	}
	case SP_TARRAY: {
		int n = (int)v->len;
		luaL_checkstack(L, 2, "tables nested too deep");
		lua_createtable(L, n, 0);
		for (int k = 1; k <= n; k++) {
			sp_pushone(L, vm, i);
			lua_rawseti(L, -2, k);
		}
		break;
	}
	default:
		lua_pushnil(L);
	}
}

// sp_pushout pushes vm->out onto L (which has room for vm->nout values) and
// returns how many values it pushed (tables count once).
static int sp_pushout(lua_State *L, sp_vm *vm) {
	int n = 0;
	for (int i = 0; i < vm->nout; n++)
		sp_pushone(L, vm, &i);
	return n;
}

// sp_growout doubles vm->out.
int sp_growout(sp_vm *vm) {
	int cap = vm->outcap * 2;
	sp_val *out = realloc(vm->out, (size_t)cap * sizeof *out);
	if (out == NULL)
		return 0;
	vm->out = out;
	vm->outcap = cap;
	return 1;
}

// sp_outalloc says whether pushing vm->out needs a protected call: a string may
// fail to allocate under a memory limit (a protected call costs ~270 ns here,
// twice a yield/resume round trip). Without a limit, LuaJIT's allocator fails
// only when the process is out of memory, and the push is unprotected as in
// ngx_lua (an error there reaches sp_panic).
static int sp_outalloc(sp_vm *vm) {
	if (vm->memlimit == 0)
		return vm->nout > 8;
	for (int i = 0; i < vm->nout; i++)
		if (vm->out[i].type == LUA_TSTRING || vm->out[i].type == SP_TTABLE || vm->out[i].type == SP_TARRAY)
			return 1;
	return vm->nout > 8;
}

// An sp_fn is what sp_trampoline knows of the Go function it stands for: its one
// upvalue, a full userdata, read with one lua_touserdata where three upvalues (the
// VM, the id, refs) took three API calls.
typedef struct sp_fn {
	sp_vm *vm;
	int fid;
	int refs; // anchor the function's arguments (RegisterRefs)
} sp_fn;

// sp_trampoline is every Go function seen from Lua. Arguments and results cross in
// vm->in and vm->out, so a call costs one C->Go transition and no allocation on
// either side.
static int sp_trampoline(lua_State *L) {
	const sp_fn *f = lua_touserdata(L, lua_upvalueindex(1));
	sp_vm *vm = f->vm;
	int n = lua_gettop(L);
	if (n > SP_MAXVALS)
		return luaL_error(L, "too many arguments (%d; at most %d)", n, SP_MAXVALS);
	if (vm->gen != 0 && __atomic_load_n(&vm->target, __ATOMIC_RELAXED) == vm->gen) {
		// Past its run time limit, in code that may be compiled (hooks do not fire
		// in traces): the compiler is turned off until the resume ends, so the
		// code that catches this error runs in the interpreter, where the hook
		// raises it again.
		if (vm->jiton && !vm->jitpaused) {
			luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
			vm->jitpaused = 1;
		}
		vm->killed = 1;
		return luaL_error(L, "%s", vm->killmsg);
	}
	if (n > 0)
		sp_marshal(L, vm, 1, n);
	else
		vm->nin = 0;
	int refs = f->refs;
	if (refs) {
		// Tables, functions, userdata and coroutines are anchored for Go, which
		// keeps the references it wants (State.Ref); the others are dropped below.
		luaL_checkstack(L, 1, "no room for a reference");
		for (int i = 0; i < n; i++) {
			sp_val *v = &vm->in[i];
			v->keep = 0;
			v->ref = LUA_NOREF;
			if (v->type >= LUA_TTABLE) {
				lua_pushvalue(L, i + 1);
				v->ref = luaL_ref(L, LUA_REGISTRYINDEX);
			}
		}
	}
	vm->nout = 0;
	vm->cur = L;
	int r = spGoCall(vm->id, f->fid);
	vm->cur = NULL;
	if (refs) {
		// vm->in is as it was: Go cannot enter the VM during the call.
		for (int i = 0; i < n; i++)
			if (vm->in[i].ref != LUA_NOREF && !vm->in[i].keep)
				luaL_unref(L, LUA_REGISTRYINDEX, vm->in[i].ref);
	}
	if (r == SP_CB_ERROR) {
		// out[0] is the message; the position is the Lua code that called.
		luaL_where(L, 1);
		lua_pushlstring(L, vm->buf + vm->out[0].off, vm->out[0].len);
		lua_concat(L, 2);
		return lua_error(L);
	}
	// On a yield, leave room for the values a resume passes back without growing the
	// stack then (sp_resume pushes them unprotected when they cannot allocate). A C
	// function has LUA_MINSTACK free slots above its arguments: within them the
	// check is a no-op (~30 instructions of a callback's ~1,000).
	int need = vm->nout + (r == SP_CB_YIELD ? 8 : 0);
	if (need > LUA_MINSTACK)
		luaL_checkstack(L, need, "too many results");
	int nret = vm->nout > 0 ? sp_pushout(L, vm) : 0;
	if (r == SP_CB_YIELD)
		return lua_yield(L, nret);
	return nret;
}

static int sp_register_p(lua_State *L) {
	sp_vm *vm = lua_touserdata(L, 1);
	int fid = vm->arg;
	size_t len = vm->arglen;
	const char *name = vm->argstr;
	if (vm->cfn != NULL) {
		lua_pushlightuserdata(L, vm->cud);
		lua_pushcclosure(L, vm->cfn, 1);
	} else {
		sp_fn *f = lua_newuserdata(L, sizeof *f);
		f->vm = vm;
		f->fid = fid;
		f->refs = vm->refs;
		lua_pushcclosure(L, sp_trampoline, 1);
	}
	int fn = lua_gettop(L);
	if (vm->cfn == NULL) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, vm->funcref);
		lua_pushvalue(L, fn);
		lua_rawseti(L, -2, fid);
		lua_pop(L, 1);
	}
	if (len == 0)
		return 0;
	// name is a global or a dotted path ("ngx.req.get_method"): tables are made
	// as needed.
	lua_pushvalue(L, LUA_GLOBALSINDEX);
	const char *p = name, *end = name + len;
	for (;;) {
		const char *dot = memchr(p, '.', (size_t)(end - p));
		if (dot == NULL) {
			lua_pushlstring(L, p, (size_t)(end - p));
			lua_pushvalue(L, fn);
			lua_settable(L, -3);
			return 0;
		}
		lua_pushlstring(L, p, (size_t)(dot - p));
		lua_gettable(L, -2);
		if (lua_isnil(L, -1)) {
			lua_pop(L, 1);
			lua_newtable(L);
			lua_pushlstring(L, p, (size_t)(dot - p));
			lua_pushvalue(L, -2);
			lua_settable(L, -4);
		} else if (!lua_istable(L, -1)) {
			lua_pushlstring(L, name, len);
			lua_pushliteral(L, ": a part of the name is not a table");
			lua_concat(L, 2);
			return lua_error(L);
		}
		lua_remove(L, -2);
		p = dot + 1;
	}
}

// sp_hold moves the top n values of from to the VM's holding thread and describes
// them in vm->in: they stay alive until the next entry clears it. Called in
// protected mode (growing the holding thread's stack may fail).
static void sp_hold(sp_vm *vm, lua_State *from, int n) {
	luaL_checkstack(vm->hold, n, "too many values");
	lua_xmove(from, vm->hold, n);
	sp_marshal(vm->hold, vm, 1, n);
}

// sp_errinfo describes the error object on top of co in vm->in[0]: its message
// with a traceback of co for runtime errors of coroutines (sp_call's message
// handler adds the traceback of errors on the main state).
static int sp_errinfo_p(lua_State *L) {
	sp_vm *vm = lua_touserdata(L, 1);
	lua_State *H = vm->hold, *co = vm->from;
	if (vm->errcode == LUA_ERRMEM)
		lua_gc(L, LUA_GCCOLLECT, 0);
	const char *msg = lua_tostring(H, -1);
	if (msg == NULL) {
		if (luaL_callmeta(H, -1, "__tostring") && lua_type(H, -1) == LUA_TSTRING)
			msg = lua_tostring(H, -1);
		else
			msg = lua_pushfstring(H, "(error object is a %s value)", luaL_typename(H, -1));
	}
	if (vm->errcode == LUA_ERRRUN && co != vm->L)
		luaL_traceback(H, co, msg, 0);
	sp_marshal(H, vm, lua_gettop(H), 1);
	return 0;
}

static void sp_errinfo(sp_vm *vm, lua_State *co, int rc) {
	// The holding thread was emptied on entry: it has room without growing.
	lua_xmove(co, vm->hold, 1);
	vm->from = co;
	vm->errcode = rc;
	if (lua_cpcall(vm->L, sp_errinfo_p, vm) != 0) {
		// Out of memory again while building the text: a fixed one.
		lua_settop(vm->L, 0);
		vm->in[0].type = LUA_TSTRING;
		vm->in[0].s = rc == LUA_ERRMEM ? "not enough memory" : "error in error handling";
		vm->in[0].len = (uint32_t)strlen(vm->in[0].s);
		vm->nin = 1;
	}
}

static int sp_gc_p(lua_State *L) {
	lua_gc(L, LUA_GCCOLLECT, 0);
	return 0;
}

// sp_collect runs a full collection after the allocator refused memory: LuaJIT does
// not collect on a failed allocation, so without it the garbage of the code that
// failed (unanchored since) would fail the next request too.
static void sp_collect(sp_vm *vm) {
	if (vm->oom) {
		vm->oom = 0;
		lua_cpcall(vm->L, sp_gc_p, NULL);
		lua_settop(vm->L, 0);
	}
}

static void sp_enter(sp_vm *vm) {
	if (__atomic_exchange_n(&vm->busy, 1, __ATOMIC_ACQUIRE))
		__atomic_add_fetch(&vm->violations, 1, __ATOMIC_RELAXED);
	// Both are empty but after a call, a load or an error: lua_gettop costs a
	// fifth of lua_settop (~22 instructions) and a resume did three settops.
	if (lua_gettop(vm->hold) != 0)
		lua_settop(vm->hold, 0);
	if (lua_gettop(vm->L) != 0)
		lua_settop(vm->L, 0);
	vm->nin = 0;
}

static void sp_leave(sp_vm *vm) {
	if (vm->jitpaused) {
		luaJIT_setmode(vm->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
		vm->jitpaused = 0;
	}
	if (__atomic_load_n(&vm->hooked, __ATOMIC_ACQUIRE)) {
		lua_sethook(vm->L, NULL, 0, 0);
		__atomic_store_n(&vm->hooked, 0, __ATOMIC_RELEASE);
	}
	vm->nout = 0;
	__atomic_store_n(&vm->busy, 0, __ATOMIC_RELEASE);
}

int sp_register(sp_vm *vm, int fid, const char *name, size_t len, int refs) {
	sp_enter(vm);
	sp_collect(vm);
	vm->refs = refs;
	vm->arg = fid;
	vm->argstr = name;
	vm->arglen = len;
	vm->cfn = NULL;
	int rc = lua_cpcall(vm->L, sp_register_p, vm);
	if (rc != 0)
		sp_errinfo(vm, vm->L, rc);
	sp_leave(vm);
	return rc;
}

// sp_register_c sets the global name (a dotted path, as sp_register) to a C
// function with ud as its one upvalue (a light userdata).
int sp_register_c(sp_vm *vm, const char *name, size_t len, lua_CFunction fn, void *ud) {
	sp_enter(vm);
	sp_collect(vm);
	vm->argstr = name;
	vm->arglen = len;
	vm->cfn = fn;
	vm->cud = ud;
	int rc = lua_cpcall(vm->L, sp_register_p, vm);
	vm->cfn = NULL;
	if (rc != 0)
		sp_errinfo(vm, vm->L, rc);
	sp_leave(vm);
	return rc;
}

static int sp_load_p(lua_State *L) {
	sp_vm *vm = lua_touserdata(L, 1);
	int rc = luaL_loadbuffer(L, vm->argstr, vm->arglen, vm->argname);
	if (rc != 0) {
		vm->errcode = rc;
		sp_hold(vm, L, 1); // the message, for Go
		return 0;
	}
	vm->errcode = 0;
	vm->arg = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

int sp_load(sp_vm *vm, const char *name, const char *code, size_t len, int *ref) {
	sp_enter(vm);
	sp_collect(vm);
	vm->argname = name;
	vm->argstr = code;
	vm->arglen = len;
	int rc = lua_cpcall(vm->L, sp_load_p, vm);
	if (rc != 0)
		sp_errinfo(vm, vm->L, rc);
	else if ((rc = vm->errcode) == 0)
		*ref = vm->arg;
	sp_leave(vm);
	return rc;
}

static int sp_newthread_p(lua_State *L) {
	sp_vm *vm = lua_touserdata(L, 1);
	lua_State *co = lua_newthread(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->arg);
	lua_xmove(L, co, 1);
	vm->from = co;
	vm->arg = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

// sp_newthread leaves the new coroutine in vm->from, its reference in vm->ref.
int sp_newthread(uintptr_t vmp, int fnref) {
	sp_vm *vm = (sp_vm *)vmp;
	sp_enter(vm);
	sp_collect(vm);
	vm->arg = fnref;
	int rc = lua_cpcall(vm->L, sp_newthread_p, vm);
	if (rc != 0)
		sp_errinfo(vm, vm->L, rc);
	else
		vm->ref = vm->arg;
	sp_leave(vm);
	return rc;
}

// sp_sandbox_p readies a coroutine (vm->from, or a new one) to run a new closure of
// the factory vm->arg, whose environment is a new table that reads through to the
// globals: ngx_lua's per-request globals (its "closure factory").
static int sp_sandbox_p(lua_State *L) {
	sp_vm *vm = lua_touserdata(L, 1);
	lua_State *co = vm->from;
	if (co == NULL) {
		co = lua_newthread(L);
		vm->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->arg);
	lua_call(L, 0, 1); // the factory returns the handler's closure
	lua_createtable(L, 0, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->envmetaref);
	lua_setmetatable(L, -2);
	lua_setfenv(L, -2);
	lua_settop(co, 0);
	lua_xmove(L, co, 1);
	vm->from = co;
	return 0;
}

// sp_sandbox readies co, or a new coroutine if co is 0: the new one is left in
// vm->from, its reference in vm->ref.
int sp_sandbox(uintptr_t vmp, int factory, uintptr_t co) {
	sp_vm *vm = (sp_vm *)vmp;
	sp_enter(vm);
	sp_collect(vm);
	vm->arg = factory;
	vm->from = (lua_State *)co;
	vm->ref = LUA_NOREF;
	int rc = lua_cpcall(vm->L, sp_sandbox_p, vm);
	if (rc != 0) {
		sp_errinfo(vm, vm->L, rc);
		if (co == 0 && vm->ref != LUA_NOREF)
			luaL_unref(vm->L, LUA_REGISTRYINDEX, vm->ref); // the new coroutine
	}
	sp_leave(vm);
	return rc;
}

// sp_thread returns the coroutine that the registry reference ref holds, or NULL.
lua_State *sp_thread(uintptr_t vmp, int ref) {
	sp_vm *vm = (sp_vm *)vmp;
	sp_enter(vm);
	lua_rawgeti(vm->L, LUA_REGISTRYINDEX, ref);
	lua_State *co = lua_tothread(vm->L, -1);
	// Its status as Go's Status: ready (0), suspended, finished, dead (3).
	if (co == NULL)
		vm->arg = 0;
	else if (lua_status(co) == LUA_YIELD)
		vm->arg = 1;
	else if (lua_status(co) != 0)
		vm->arg = 3;
	else
		vm->arg = lua_gettop(co) > 0 ? 0 : 2;
	lua_settop(vm->L, 0);
	sp_leave(vm);
	return co;
}

// sp_setexdata sets co's exdata (OpenResty's LuaJIT: what thread.exdata() returns
// in Lua, lua-resty-core's request pointer).
void sp_setexdata(uintptr_t vmp, uintptr_t co, uintptr_t h) {
	sp_vm *vm = (sp_vm *)vmp;
	sp_enter(vm);
	lua_setexdata((lua_State *)co, (void *)h);
	sp_leave(vm);
}

// sp_unref drops a registry reference (a chunk, a thread); no allocation.
void sp_unref(uintptr_t vmp, int ref) {
	sp_vm *vm = (sp_vm *)vmp;
	sp_enter(vm);
	luaL_unref(vm->L, LUA_REGISTRYINDEX, ref);
	sp_collect(vm);
	sp_leave(vm);
}

static void sp_hook(lua_State *L, lua_Debug *ar);

static int sp_pushargs_p(lua_State *L) {
	sp_vm *vm = lua_touserdata(L, 1);
	luaL_checkstack(vm->from, vm->nout, "too many arguments");
	vm->arg = sp_pushout(vm->from, vm);
	return 0;
}

// sp_resume resumes co with the nargs values of vm->out. The values it yields or
// returns are described in vm->in (they stay on co's stack until the next resume);
// an error leaves its message and traceback in vm->in[0].
int sp_resume(uintptr_t vmp, uintptr_t cop, int fnref, int gen) {
	sp_vm *vm = (sp_vm *)vmp;
	lua_State *co = (lua_State *)cop;
	sp_enter(vm);
	sp_collect(vm);
	vm->gen = gen;
	vm->killed = 0;
	if (fnref != LUA_NOREF) {
		// A reused coroutine's first resume: its function, on an empty stack
		// (LuaJIT resumes a coroutine that returned and has no frame left as a new
		// one; no allocation).
		lua_settop(co, 0);
		lua_rawgeti(co, LUA_REGISTRYINDEX, fnref);
	} else if (lua_status(co) == LUA_YIELD) {
		lua_settop(co, 0); // the values it yielded, read already
	}
	int nargs = 0;
	if (vm->nout > 0) {
		if (sp_outalloc(vm)) {
			vm->from = co;
			int rc = lua_cpcall(vm->L, sp_pushargs_p, vm);
			if (rc != 0) {
				sp_errinfo(vm, vm->L, rc);
				sp_leave(vm);
				return rc;
			}
			nargs = vm->arg;
		} else {
			lua_checkstack(co, vm->nout); // room is there: the trampoline left it
			nargs = sp_pushout(co, vm);
		}
	}
	int rc = lua_resume(co, nargs);
	if (rc == 0 || rc == LUA_YIELD) {
		int n = lua_gettop(co);
		if (n > SP_MAXVALS) {
			rc = SP_ETOOMANY;
		} else {
			sp_marshal(co, vm, 1, n);
		}
	} else {
		sp_errinfo(vm, co, rc);
	}
	vm->gen = 0;
	sp_leave(vm);
	return rc;
}

static int sp_call_p(lua_State *L) {
	sp_vm *vm = lua_touserdata(L, 1);
	int base = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->msghref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->arg);
	luaL_checkstack(L, vm->nout, "too many arguments");
	int nargs = sp_pushout(L, vm);
	vm->errcode = lua_pcall(L, nargs, LUA_MULTRET, base + 1);
	if (vm->errcode == LUA_ERRMEM)
		lua_gc(L, LUA_GCCOLLECT, 0);
	int n = lua_gettop(L) - base - 1;
	if (vm->errcode == 0 && n > SP_MAXVALS)
		vm->errcode = SP_ETOOMANY;
	else
		sp_hold(vm, L, n); // the results, or the message with its traceback
	return 0;
}

// sp_call calls the chunk or function fnref on the main state (init code, not a
// request): a yield in it is an error.
int sp_call(sp_vm *vm, int fnref) {
	sp_enter(vm);
	sp_collect(vm);
	vm->arg = fnref;
	int rc = lua_cpcall(vm->L, sp_call_p, vm);
	if (rc != 0)
		sp_errinfo(vm, vm->L, rc);
	else
		rc = vm->errcode;
	sp_leave(vm);
	return rc;
}

static void sp_hook(lua_State *L, lua_Debug *ar) {
	(void)ar;
	lua_pushlightuserdata(L, (void *)&sp_vmkey);
	lua_rawget(L, LUA_REGISTRYINDEX);
	sp_vm *vm = lua_touserdata(L, -1);
	lua_pop(L, 1);
	if (vm == NULL || vm->gen == 0 || __atomic_load_n(&vm->target, __ATOMIC_ACQUIRE) != vm->gen) {
		// Set for a resume that had ended: this one runs on.
		lua_sethook(L, NULL, 0, 0);
		__atomic_store_n(&vm->hooked, 0, __ATOMIC_RELEASE);
		return;
	}
	// The hook stays set: a pcall that catches this error raises it again at its
	// next instruction, so the run ends whatever it catches.
	vm->killed = 1;
	luaL_where(L, 0); // in a hook, level 0 is the Lua function running
	lua_pushstring(L, vm->killmsg);
	lua_concat(L, 2);
	lua_error(L);
}

// sp_interrupt is called by the watchdog, from another thread, while the owner runs
// Lua: the resume numbered gen is to stop (if it still runs) with msg. lua_sethook
// may be called asynchronously (luajit.c calls it from a signal handler); the hook
// only fires in the interpreter, not in compiled traces.
void sp_interrupt(sp_vm *vm, int gen, const char *msg) {
	strncpy(vm->killmsg, msg, sizeof vm->killmsg - 1);
	__atomic_store_n(&vm->target, gen, __ATOMIC_RELEASE);
	__atomic_store_n(&vm->hooked, 1, __ATOMIC_RELEASE);
	lua_sethook(vm->L, sp_hook, LUA_MASKCOUNT, 1);
}

int sp_gccount(sp_vm *vm) {
	sp_enter(vm);
	int kb = lua_gc(vm->L, LUA_GCCOUNT, 0) * 1024 + lua_gc(vm->L, LUA_GCCOUNTB, 0);
	sp_leave(vm);
	return kb;
}

void sp_gc(sp_vm *vm) {
	sp_enter(vm);
	lua_cpcall(vm->L, sp_gc_p, NULL);
	sp_leave(vm);
}

int sp_jit(sp_vm *vm, int on) {
	sp_enter(vm);
	int ok = luaJIT_setmode(vm->L, 0, LUAJIT_MODE_ENGINE | (on ? LUAJIT_MODE_ON : LUAJIT_MODE_OFF));
	vm->jiton = on;
	sp_leave(vm);
	return ok;
}
