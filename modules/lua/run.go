package lua

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// phase is where Lua code runs; it decides which APIs are available, as ngx_lua's
// contexts do.
type phase uint8

const (
	phaseSet phase = iota
	phaseRewrite
	phaseAccess
	phaseContent
	phaseHeaderFilter
	phaseBodyFilter
	phaseLog
	phaseTimer
	phaseInit
	phaseInitWorker
)

var phaseNames = [...]string{"set", "rewrite", "access", "content", "header_filter", "body_filter", "log", "timer", "init", "init_worker"}

func (p phase) String() string { return phaseNames[p] }

// directive names the phase as ngx_lua's error messages do.
func (p phase) directive() string {
	if p == phaseTimer {
		return "ngx.timer"
	}
	return phaseNames[p] + "_by_lua*"
}

// canYield: cosockets, sleep, subrequests, light threads and reading the body.
func (p phase) canYield() bool {
	return p == phaseRewrite || p == phaseAccess || p == phaseContent || p == phaseTimer
}

// canOutput: ngx.say, print, flush, exec, redirect, reading the body.
func (p phase) canOutput() bool {
	return p == phaseRewrite || p == phaseAccess || p == phaseContent
}

type exitKind uint8

const (
	exitNone   exitKind = iota
	exitStatus          // ngx.exit(status)
	exitExec            // ngx.exec(uri, args)
	exitJump            // ngx.req.set_uri(uri, true)
	exitError           // a runtime error in the entry thread
)

// run is one execution of a Lua handler: its entry thread and the light threads it
// spawns, the cosockets they create, and how the handler ended.
type run struct {
	gen   uint64 // counts reuses of this struct, for sockets kept beyond their run
	mu    sync.Mutex
	multi bool // has light threads: its threads take mu (see vm.lock)
	v     *vm
	r     *httpcore.Request // nil for init, init_worker and timers
	phase phase
	conf  *Conf
	entry thread

	exit      exitKind
	code      int    // ngx.exit status
	execURI   string // ngx.exec target
	execArgs  string
	errMsg    string // the entry thread's error, for the log
	threads   []*thread
	socks     []*tcpSock
	arg       []glua.LValue // ngx.arg: set_by_lua arguments, body_filter chunk and eof
	ctx       *glua.LTable  // ngx.ctx of timers
	loaded    *glua.LTable  // modules required in this run with lua_code_cache off
	chunkName string
}

// thread is a Lua thread of a run: the entry thread or a light thread
// (ngx.thread.spawn).
type thread struct {
	run    *run
	L      *glua.LState
	co     *glua.LState // the coroutine running in L when it unlocked the VM
	parent *thread
	ctx    *runCtx
	ctxp   atomic.Pointer[runCtx] // ctx, for the watchdog

	killed    atomic.Bool
	kill      chan struct{} // closed to interrupt what the thread waits for
	blockConn net.Conn      // the connection it is blocked on, to interrupt it
	sio       sockIO        // its cosocket reads and writes
	inSubreq  bool          // subrequests cannot be interrupted

	// light threads
	started     chan struct{} // closed when it first waits or ends
	startedSent bool
	done        chan struct{} // closed when it ends
	ok          bool
	results     []glua.LValue
	waited      bool
	self        *glua.LUserData

	lockTick atomic.Int64
	ranTicks atomic.Int64
}

// killCh returns the channel that is closed when t is killed (created on demand,
// under the VM lock).
func (t *thread) killCh() chan struct{} {
	if t.kill == nil {
		t.kill = make(chan struct{})
	}
	return t.kill
}

// interrupt marks t killed and wakes it from what it waits for; it unwinds when it
// gets the VM back. Called under the VM lock.
func (t *thread) interrupt() {
	if t.killed.Swap(true) {
		return
	}
	close(t.killCh())
	if t.blockConn != nil {
		t.blockConn.SetDeadline(time.Unix(1, 0))
	}
}

var runPool = sync.Pool{New: func() any { return new(run) }}

func (v *vm) newRun(r *httpcore.Request, p phase, c *Conf) *run {
	ru := runPool.Get().(*run)
	ru.gen++
	ru.multi = false
	ru.v, ru.r, ru.phase, ru.conf = v, r, p, c
	ru.exit, ru.code, ru.execURI, ru.execArgs, ru.errMsg, ru.chunkName = exitNone, 0, "", "", "", ""
	ru.threads, ru.socks, ru.arg, ru.ctx, ru.loaded = nil, nil, nil, nil, nil
	// The entry thread field by field: the watchdog may still read the atomic
	// fields of a thread it saw running a moment ago.
	t := &ru.entry
	t.run, t.L, t.co, t.parent, t.ctx = ru, nil, nil, nil, nil
	t.ctxp.Store(nil)
	t.killed.Store(false)
	t.kill, t.blockConn, t.inSubreq = nil, nil, false
	t.started, t.startedSent, t.done, t.ok, t.results, t.waited, t.self = nil, false, nil, false, nil, false, nil
	t.lockTick.Store(0)
	t.ranTicks.Store(0)
	return ru
}

// free recycles a run once its outcome was used.
func (ru *run) free() {
	ru.r, ru.conf, ru.arg, ru.ctx, ru.loaded, ru.threads = nil, nil, nil, nil, nil, nil
	runPool.Put(ru)
}

// limitOf is the lua_max_run_time of a run.
func (ru *run) limit() time.Duration {
	if ru.conf != nil {
		return ru.conf.maxRunTime
	}
	return ru.v.main.rootConf.maxRunTime
}

// attach gives t a Lua thread from the pool (under the VM lock).
func (v *vm) attach(t *thread) {
	t.L = v.getThread()
	if lim := t.run.limit(); lim > 0 {
		if n := len(v.ctxFree); n > 0 {
			t.ctx = v.ctxFree[n-1]
			v.ctxFree = v.ctxFree[:n-1]
		} else {
			t.ctx = newRunCtx()
		}
		t.ctx.limit.Store(int64(lim))
		t.L.SetContext(t.ctx)
		t.ctxp.Store(t.ctx)
	}
}

// detach returns t's Lua thread to the pool (under the VM lock).
func (v *vm) detach(t *thread, clean bool) {
	if c := t.ctx; c != nil {
		t.ctx = nil
		if c.Err() != nil {
			clean = false
		} else if len(v.ctxFree) < maxIdleThreads {
			c.reset()
			v.ctxFree = append(v.ctxFree, c)
		}
	}
	t.ctxp.Store(nil)
	v.putThread(t.L, clean)
	t.L = nil
}

// call runs fn with args on the run's entry thread and waits for the light threads
// it spawned. It returns with the VM unlocked; the outcome is in ru.exit and friends.
func (v *vm) call(ru *run, fn *glua.LFunction, nret int, args ...glua.LValue) []glua.LValue {
	t := &ru.entry
	v.lock(t)
	defer v.unlockOnPanic(t)
	v.attach(t)
	L := t.L
	v.L.G.CurrentThread = L
	if fn.Env != v.globals {
		L.Env = fn.Env
	}
	L.Push(fn)
	for _, a := range args {
		L.Push(a)
	}
	err := L.PCall(len(args), nret, nil)
	var rets []glua.LValue
	clean := err == nil
	if err != nil {
		if ru.exit == exitNone {
			ru.exit = exitError
			ru.errMsg = errorText(err)
		}
	} else if nret > 0 {
		rets = make([]glua.LValue, nret)
		for i := 0; i < nret; i++ {
			rets[i] = L.Get(i + 1)
		}
	}
	if len(ru.threads) > 0 {
		v.finishThreads(ru)
	}
	v.detach(t, clean)
	v.closeSockets(ru)
	v.unlock(t)
	return rets
}

// unlockOnPanic keeps a Go panic that escapes the Lua machinery (a bug) from leaving
// the VM locked for every later request of the worker.
func (v *vm) unlockOnPanic(t *thread) {
	if p := recover(); p != nil {
		if v.cur.Load() == t {
			v.unlock(t)
		}
		panic(p)
	}
}

// finishThreads waits for the light threads of a run whose entry thread returned;
// when the handler was ended (exit, error) they are killed first.
func (v *vm) finishThreads(ru *run) {
	t := &ru.entry
	for {
		var wait *thread
		for _, ut := range ru.threads {
			if ru.exit != exitNone {
				ut.interrupt()
			}
			select {
			case <-ut.done:
			default:
				wait = ut
			}
			if wait != nil {
				break
			}
		}
		if wait == nil {
			return
		}
		v.unlock(t)
		<-wait.done
		v.lock(t)
	}
}

// killAll interrupts every thread of the run but except (ngx.exit from a light thread,
// or the entry thread's error).
func (ru *run) killAll(except *thread) {
	if &ru.entry != except {
		ru.entry.interrupt()
	}
	for _, ut := range ru.threads {
		if ut != except {
			ut.interrupt()
		}
	}
}

// unwind ends the handler from thread t: ngx.exit, ngx.exec, ngx.redirect. The other
// threads are killed, and t's Lua code unwinds through any pcall.
func (v *vm) unwind(t *thread) int {
	t.run.killAll(t)
	panic(v.exitErr)
}

// ended reports whether t's Lua code must stop: the handler was ended or t killed.
func (t *thread) ended() bool {
	return t.killed.Load() || (t.run.exit != exitNone && t.run.exit != exitError)
}

// errorText formats a Lua error with its traceback for the log, as ngx_lua does.
func errorText(err error) string {
	ae, ok := err.(*glua.ApiError)
	if !ok {
		return err.Error()
	}
	msg := "unknown reason"
	if ae.Object != nil && ae.Object != glua.LNil {
		msg = ae.Object.String()
	}
	if ae.StackTrace != "" && ae.StackTrace != "-" {
		return msg + "\n" + strings.TrimRight(ae.StackTrace, "\n")
	}
	return msg
}

// closeSockets closes the cosockets a run left open (pooled ones are gone already).
func (v *vm) closeSockets(ru *run) {
	for _, s := range ru.socks {
		s.closeConn()
	}
	ru.socks = nil
}

// logErr logs a handler's runtime error with the request, as ngx_lua's
// "lua entry thread aborted" line.
func (ru *run) logErr(what string) {
	msg := "lua " + what + " aborted: runtime error: " + ru.errMsg
	if ru.r != nil {
		ru.r.Logf(httpcore.LogError, "%s", msg)
	} else {
		ru.v.logf(logErr, "%s, context: %s", msg, ru.phase.directive())
	}
}
