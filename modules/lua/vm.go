package lua

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// A worker's Lua VM is what ngx_lua calls the worker's Lua interpreter: one global
// environment (the shared globals, package.loaded, the ngx API), in which every request
// runs its handlers, each on a Lua thread of its own taken from a pool.
//
// Each request runs on its own goroutine, so a handler blocked on I/O blocks only
// itself. The threads share the VM's tables, which gopher-lua does not protect from
// concurrent use; the VM's lock makes Lua code run one thread at a time, as in
// OpenResty, and every blocking call (cosockets, sleep, subrequests, output, reading
// the body) releases it while it waits. The lock also gives the API functions the
// current thread for free (vm.cur), instead of a lookup per call.

// Sizes of the VM's main state and of its threads. Registry and call stack grow on
// demand up to their maximum (a call depth of 512, 256k registers), so a thread
// costs about 2.5 KB (see the memory test) instead of gopher-lua's default 40 KB.
// gopher-lua's NewState insists on a registry of 128 slots; threads start with
// threadRegistrySize.
var threadOptions = glua.Options{
	CallStackSize:       512,
	RegistrySize:        128,
	RegistryMaxSize:     1 << 18,
	RegistryGrowStep:    64,
	MinimizeStackMemory: true,
}

const threadRegistrySize = 48

// maxIdleThreads bounds the threads kept for reuse after a burst.
const maxIdleThreads = 256

type vm struct {
	mu      sync.Mutex
	cur     atomic.Pointer[thread] // the thread holding mu
	L       *glua.LState           // the main state: init_by_lua runs here
	globals *glua.LTable           // the shared globals (_G)
	envMeta *glua.LTable           // { __index = globals }: metatable of request environments
	loaded  *glua.LTable           // package.loaded
	free    []*glua.LState         // idle threads
	ctxFree []*runCtx              // idle lua_max_run_time contexts

	cfg    *httpcore.Config
	main   *mainConf
	worker *httpcore.Worker

	// API objects built once per VM.
	ngx         *glua.LTable
	null        *glua.LUserData
	sockMeta    *glua.LTable
	uthreadMeta *glua.LTable
	hdrsMeta    *glua.LTable // metatable of ngx.req.get_headers() results
	origRequire *glua.LFunction
	exitErr     *glua.ApiError // raised to unwind a handler on ngx.exit and friends
	killErr     *glua.ApiError // raised in threads that were killed

	scratch []byte // output buffer reused under the lock
	keyBuf  []byte // cosocket pool keys, built under the lock
	regexes regexCache
	fileMod map[string]bool // modules require loaded from files (reloaded with lua_code_cache off)
	files   fileCache

	pools    *sockPools
	timers   timerState
	stop     chan struct{}
	tick     atomic.Int64 // watchdog ticks, for lua_max_run_time
	exiting  atomic.Bool
	exitOnce sync.Once
}

var vms sync.Map // *glua.Global → *vm, for the extension API

// vmOf returns the worker's VM for a request's configuration.
func vmOf(cfg *httpcore.Config) *vm {
	v, _ := mod.State(cfg).(*vm)
	return v
}

// newVM creates a worker's VM: the standard libraries, the ngx API, and the
// compatibility modules OpenResty code expects (table.new, table.clear, bit).
func newVM(cfg *httpcore.Config, w *httpcore.Worker) (*vm, error) {
	mc := mainConfOf(cfg)
	L := glua.NewState(threadOptions)
	// NewThread copies these options: from now on they are the threads'.
	L.Options.RegistrySize = threadRegistrySize
	v := &vm{
		L:       L,
		globals: L.G.Global,
		cfg:     cfg,
		main:    mc,
		worker:  w,
		stop:    make(chan struct{}),
		fileMod: map[string]bool{},
	}
	v.regexes.max = mc.regexCacheMax
	v.envMeta = L.NewTable()
	v.envMeta.RawSetString("__index", v.globals)
	v.loaded = L.GetField(L.Get(glua.RegistryIndex), "_LOADED").(*glua.LTable)
	v.exitErr = &glua.ApiError{Type: glua.ApiErrorRun, Object: glua.LString("ngx.exit"), StackTrace: "-"}
	v.killErr = &glua.ApiError{Type: glua.ApiErrorRun, Object: glua.LString("thread killed"), StackTrace: "-"}
	v.pools = newSockPools()
	v.installCompat()
	v.installNgx()
	v.installExtensions()
	v.prepareChunks()
	pkg := L.GetGlobal("package").(*glua.LTable)
	pkg.RawSetString("path", glua.LString(mc.packagePath(cfg.Main.Prefix)))
	pkg.RawSetString("cpath", glua.LString(""))
	vms.Store(L.G, v)
	go v.watchdog()
	if w != nil && w.Exiting != nil {
		go func() {
			select {
			case <-w.Exiting:
				v.onExiting()
			case <-v.stop:
			}
		}()
	}
	return v, nil
}

// close stops the VM's goroutines and closes its pooled connections.
func (v *vm) close() {
	v.onExiting()
	v.timers.waitRunning(v.cfg.Main.WorkerShutdownTimeout)
	select {
	case <-v.stop:
	default:
		close(v.stop)
	}
	v.pools.Close()
	vms.Delete(v.L.G)
}

// onExiting starts the worker's exit: pending timers run now, prematurely. Once, and
// every caller returns after it is done.
func (v *vm) onExiting() {
	v.exitOnce.Do(func() {
		v.exiting.Store(true)
		v.timers.fireAllPremature(v)
	})
}

// lock makes t the thread running Lua code in the VM. Threads of a run with light
// threads also take the run's lock first: they never run at the same time, even
// while one of them writes the response with the VM unlocked (see busy).
func (v *vm) lock(t *thread) {
	if t.run.multi {
		t.run.mu.Lock()
	}
	v.lockVM(t)
}

func (v *vm) lockVM(t *thread) {
	v.mu.Lock()
	v.cur.Store(t)
	if t.co != nil {
		v.L.G.CurrentThread = t.co
	} else {
		v.L.G.CurrentThread = t.L
	}
	t.lockTick.Store(v.tick.Load())
}

// unlock lets other threads run Lua code while t waits for something.
func (v *vm) unlock(t *thread) {
	v.unlockVM(t)
	if t.run.multi {
		t.run.mu.Unlock()
	}
}

func (v *vm) unlockVM(t *thread) {
	if t.started != nil && !t.startedSent {
		// A light thread that waits lets its parent carry on.
		t.startedSent = true
		close(t.started)
	}
	t.co = v.L.G.CurrentThread
	t.ranTicks.Add(v.tick.Load() - t.lockTick.Load())
	v.cur.Store(nil)
	v.mu.Unlock()
}

// blocking runs f, which may block, with the VM unlocked, and raises in t's Lua code
// if t was killed meanwhile.
func (v *vm) blocking(t *thread, f func()) {
	if r := t.run.r; r != nil {
		// A request running inline in the event loop leaves it before it waits.
		r.Blocking()
	}
	v.unlocked(t, f)
}

// unlocked runs f with the VM unlocked, and raises in t's Lua code if t was killed
// meanwhile. f may run Lua code of other requests (subrequests); what in it waits
// calls Blocking itself.
func (v *vm) unlocked(t *thread, f func()) {
	v.unlock(t)
	func() {
		defer v.lock(t)
		f()
	}()
	if t.killed.Load() {
		panic(v.killErr)
	}
}

// busy runs f, which works on the run's request (writing the response, reading the
// body) and may run Lua filters or block, with the VM unlocked but the other threads
// of the run kept out: the request is not safe for concurrent use.
func (v *vm) busy(t *thread, f func()) {
	v.unlockVM(t)
	func() {
		defer v.lockVM(t)
		f()
	}()
	if t.killed.Load() {
		panic(v.killErr)
	}
}

// multiThread makes t's run one with light threads: from now on its threads take the
// run's lock (t holds the VM, and no other thread of the run exists yet).
func (t *thread) multiThread() {
	ru := t.run
	if ru.r != nil {
		// Light threads are coroutines of their own: the request cannot stay inline in
		// the event loop.
		ru.r.Blocking()
	}
	if !ru.multi {
		ru.multi = true
		ru.mu.Lock()
	}
}

// Threads.

func (v *vm) getThread() *glua.LState {
	if n := len(v.free); n > 0 {
		L := v.free[n-1]
		v.free[n-1] = nil
		v.free = v.free[:n-1]
		return L
	}
	L, _ := v.L.NewThread()
	return L
}

// putThread returns a thread after a clean run. A thread whose run failed is dropped:
// gopher-lua leaves the upvalues of the aborted frames open on its registry, and a
// closure kept somewhere must not see the next request's values through them.
func (v *vm) putThread(L *glua.LState, clean bool) {
	if L.Context() != nil {
		L.RemoveContext()
	}
	L.Env = v.globals
	if !clean || len(v.free) >= maxIdleThreads {
		return
	}
	L.SetTop(0)
	v.free = append(v.free, L)
}

// runCtx is a thread's lua_max_run_time context: gopher-lua checks Done before each
// instruction and raises Err once it is closed. It is created with the thread's run
// and closed by the watchdog; AfterFunc keeps coroutines' derived contexts from
// starting a goroutine each.
type runCtx struct {
	limit    atomic.Int64 // time.Duration
	done     chan struct{}
	err      error
	mu       sync.Mutex
	funcs    []func()
	hasFuncs atomic.Bool
}

func newRunCtx() *runCtx { return &runCtx{done: make(chan struct{})} }

// reset forgets the contexts of a finished run's coroutines.
func (c *runCtx) reset() {
	if !c.hasFuncs.Load() {
		return
	}
	c.mu.Lock()
	c.funcs = nil
	c.hasFuncs.Store(false)
	c.mu.Unlock()
}

func (c *runCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *runCtx) Done() <-chan struct{}       { return c.done }
func (c *runCtx) Value(any) any               { return nil }
func (c *runCtx) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// AfterFunc is what context.WithCancel uses to follow a parent of a type it does not
// know without a goroutine.
func (c *runCtx) AfterFunc(f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		go f()
		return func() bool { return false }
	default:
	}
	c.funcs = append(c.funcs, f)
	c.hasFuncs.Store(true)
	i := len(c.funcs) - 1
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if i < len(c.funcs) && c.funcs[i] != nil {
			c.funcs[i] = nil
			return true
		}
		return false
	}
}

func (c *runCtx) cancel(err error) {
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return
	default:
	}
	c.err = err
	close(c.done)
	funcs := c.funcs
	c.funcs = nil
	c.mu.Unlock()
	for _, f := range funcs {
		if f != nil {
			f()
		}
	}
}

// watchdogTick is the resolution of lua_max_run_time.
const watchdogTick = 50 * time.Millisecond

// watchdog counts ticks and stops the thread holding the VM once its run has used up
// its lua_max_run_time, so that a runaway script cannot hold the worker's Lua VM for
// ever.
func (v *vm) watchdog() {
	tk := time.NewTicker(watchdogTick)
	defer tk.Stop()
	for {
		select {
		case <-v.stop:
			return
		case <-tk.C:
		}
		now := v.tick.Add(1)
		t := v.cur.Load()
		if t == nil {
			continue
		}
		ctx := t.ctxp.Load()
		if ctx == nil {
			continue
		}
		used := time.Duration(t.ranTicks.Load()+now-t.lockTick.Load()) * watchdogTick
		if limit := time.Duration(ctx.limit.Load()); used > limit {
			ctx.cancel(fmt.Errorf("lua_max_run_time (%s) exceeded", limit))
		}
	}
}

// errPhase is raised when an API is used in a phase that forbids it.
func apiDisabled(L *glua.LState, name string, p phase) int {
	L.RaiseError("API disabled in the context of %s", p.directive())
	return 0
}

// logf writes to the error log outside of a request.
func (v *vm) logf(level int, format string, args ...any) {
	log := v.cfg.Log()
	lvl := errlogLevel(level)
	if !log.Enabled(lvl) {
		return
	}
	log.Logf(lvl, format, args...)
}

func pid() int { return os.Getpid() }
