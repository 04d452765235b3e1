package ngxlua

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/errlog"
	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/internal/pcre"
	connpool "github.com/spindle-server/spindle/internal/pool"
	"github.com/spindle-server/spindle/modules/httpcore"
)

//go:embed prelude.lua
var preludeCode string

// waitMark is what a Go function that waits yields: the prelude's coroutine
// wrappers pass it up from user coroutines to the run's coroutine (see relay in
// prelude.lua), and the driver (exec) knows the run waits for ru.wait.
const waitMark = "\x00spindle.wait"

// Kinds of runs, the runner's second argument (prelude.lua).
const (
	kindHandler = 0 // a handler in an environment of its own
	kindSet     = 2 // set_by_lua: ngx.arg is its arguments
	kindFilter  = 3 // body_filter_by_lua: ngx.arg is the chunk and eof
	kindGlobal  = 4 // init code: the shared globals
	kindCall    = 5 // a function (timers): called as it is
	kindFree    = 9 // drop the ngx.ctx of requests that are gone
)

// engine is a worker's Lua VM and what the module keeps about it.
type engine struct {
	vm     *luajit.VM
	cfg    *httpcore.Config
	main   *mainConf
	worker *httpcore.Worker

	// Under the VM's lock:
	cur       *run       // the run being resumed: API functions find their request here
	runner    luajit.Ref // prelude.lua's runner
	factories map[*chunk]luajit.Ref
	files     map[string]luajit.Ref // *_by_lua_file paths with variables, or with lua_code_cache off
	nextID    float64
	socks     map[int]*tcpSock
	udps      map[int]*udpSock
	nextSock  int
	freeSocks []*tcpSock // closed sockets for newSock (freeSock)
	sb        *sockBuf   // a socket's buffered data for the prelude's receive (sockrt.go)
	sbSock    *tcpSock   // whose
	keyBuf    []byte     // a cosocket pool's key, built for a lookup (sockConnect)
	addrBuf   []byte     // a cosocket's host:port, built for a connect (sockConnect)
	pools     *sockPools
	regexes   map[reKey]*pcre.Regexp
	ovec      []int // compileRegex's match offsets
	redis     []redisConn
	redisIDs  map[string]int
	memcs     []memcConn
	semas     []*semaphore
	memcIDs   map[string]int
	kv        []string          // scratch of API functions (reqHeaders)
	uris      map[string]string // captureURIs's URIs, kept (internURI)
	hdrKeys   map[string]string // headerKey's names
	lbuf      []byte
	ffiID     int            // the engine's index for the FFI functions (ngxabi.go), -1 for none
	ffiBuf    unsafe.Pointer // C memory for the values they return
	rt        *cRT           // what Lua code reads and writes through the FFI (rt.go)
	ffiCap    int

	runsMu sync.Mutex
	runs   []*run // finished runs for newRun (release)

	freedMu sync.Mutex
	freed   []float64    // ngx.ctx ids of requests that are gone
	unrefs  []luajit.Ref // functions of timers that are done

	timers timerState

	exiting  atomic.Bool
	stop     chan struct{}
	once     sync.Once
	exitOnce sync.Once
}

// engineOf returns the worker's engine for a request's configuration.
func engineOf(cfg *httpcore.Config) *engine {
	e, _ := mod.State(cfg).(*engine)
	return e
}

// newEngine creates a worker's VM: the standard libraries, the ngx API and every
// chunk of the configuration.
func newEngine(cfg *httpcore.Config, w *httpcore.Worker) (*engine, error) {
	mc := mainConfOf(cfg)
	e := &engine{cfg: cfg, main: mc, worker: w, factories: map[*chunk]luajit.Ref{}, files: map[string]luajit.Ref{}, stop: make(chan struct{}),
		socks: map[int]*tcpSock{}, redisIDs: map[string]int{}, memcIDs: map[string]int{}}
	// A connection pooled less than a second ago is handed out on the strength of
	// the hang-up watch alone; one idle longer is peeked too.
	e.pools = connpool.New[string, *idleConn](connpool.Options{Watch: true, PeekAfter: time.Second, Now: httpcore.CoarseNow})
	vm, err := luajit.New(luajit.Options{
		PackagePath: mc.packagePath(cfg.Main.Prefix),
		OnStuck: func(t *luajit.Thread, ran time.Duration) {
			// A compiled loop that calls no Go function cannot be interrupted: the
			// worker exits and its master starts another.
			e.logf(logAlert, "lua_max_run_time exceeded by %s in code that cannot be interrupted: the worker exits", ran)
			os.Exit(2)
		},
	})
	if err != nil {
		return nil, err
	}
	e.vm = vm
	e.ffiID = ffiRegister(e)
	e.newRT()
	s := vm.Lock()
	defer s.Unlock()
	err = e.register(s)
	if err == nil {
		err = e.registerSockRT(s)
	}
	if err != nil {
		ffiRelease(e)
		vm.Close()
		return nil, err
	}
	// The prelude's require looks for the run's lua_code_cache only when a location
	// turns it off: asking Go was a callback per require (~720 instructions, 1 of
	// the 9 callbacks of a lua-resty-redis request).
	nocache := ""
	if mc.rootConf != nil && !mc.rootConf.codeCache {
		nocache = "nocache"
	}
	for _, l := range cfg.Locations() {
		if !mod.Of(l).codeCache {
			nocache = "nocache"
			break
		}
	}
	if err := s.DoString("ngx.prelude", preludeCode, waitMark, nocache); err != nil {
		ffiRelease(e)
		vm.Close()
		return nil, fmt.Errorf("lua prelude: %v", err)
	}
	if err := e.installLibs(s); err != nil {
		vm.Close()
		return nil, err
	}
	for _, ch := range mc.chunks {
		if ch.fileExpr != nil {
			continue
		}
		ref, err := s.Load(ch.name, factoryCode(ch.code))
		if err != nil {
			ffiRelease(e)
			vm.Close()
			return nil, fmt.Errorf("%s: %v", ch.directive, err)
		}
		e.factories[ch] = ref
	}
	if w != nil && w.Exiting != nil {
		go func() {
			select {
			case <-w.Exiting:
				e.onExiting()
			case <-e.stop:
			}
		}()
	}
	return e, nil
}

// onExiting starts the worker's exit: pending timers run now, prematurely.
func (e *engine) onExiting() {
	e.exitOnce.Do(func() {
		e.exiting.Store(true)
		e.fireAllPremature()
	})
}

// close runs the pending timers prematurely, waits for the running ones (up to
// worker_shutdown_timeout) and stops the VM.
func (e *engine) close() {
	e.onExiting()
	e.timers.waitRunning(e.cfg.Main.WorkerShutdownTimeout)
	e.once.Do(func() {
		close(e.stop)
		s := e.vm.Lock()
		ffiRelease(e)
		s.Unlock()
		e.vm.Close()
		e.freeSockRT()
		e.pools.Close()
	})
}

// logf writes to the error log outside of a request.
func (e *engine) logf(level int, format string, args ...any) {
	log := e.cfg.Log()
	lvl := errlogLevel(level)
	if !log.Enabled(lvl) {
		return
	}
	log.Logf(lvl, format, args...)
}

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

// canYield: sleep, subrequests and reading the body.
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
	exitError           // a runtime error
)

// run is one execution of a Lua handler and how it ended.
type run struct {
	e     *engine
	seq   uint64
	r     *httpcore.Request // nil for init and init_worker
	phase phase
	conf  *Conf
	ch    *chunk

	exit     exitKind
	code     int    // ngx.exit status
	execURI  string // ngx.exec target
	execArgs string
	errMsg   string // the error, with its traceback, for the log

	out       []byte // ngx.say/print output not written yet
	committed bool   // output was produced: the header is on its way
	cur       *coro  // the coroutine being resumed
	entry     *coro  // &entryCo
	entryCo   coro
	threads   []*coro // light threads (ngx.thread.spawn)
	ready     []readyCo
	pending   int  // waits not over (await, complete)
	abandoned bool // a killed thread's wait may still run
	// Completions of waits, from any goroutine (complete): under mu. sleeping: the
	// run is parked and the next completion resumes it; sig wakes a driver waiting
	// on its goroutine.
	mu       sync.Mutex
	q        []completion
	qSpare   []completion // the last q the driver took, emptied: the next q (drive)
	sleeping bool
	sig      chan struct{}
	unparkFn func() httpcore.Action // e.unpark(ru), made once
	park     bool                   // a content handler whose request can park (httpcore.Request.CanPark)
	parked   bool                   // the run is parked: the event loop resumes it (thread.go)
	rets     []any                  // what the handler returned (set_by_lua, body filters)
	subOpts  []captureReq
	// captureRun's: the subrequests run (RunAll's argument), its wait and what the
	// wait returns, made once per run struct (release keeps them).
	subs        []*httpcore.Request
	captureFn   func() []any
	captureRets []any // the responses as tables, and flat (pushCaptures)
	captureFlat bool  // captureURIs's: the responses come back flat
	starting    *coro // the coroutine whose wait starts (waitAsync's start runs)
	socks       []*tcpSock
	udps        []*udpSock
}

func (e *engine) newRun(r *httpcore.Request, p phase, c *Conf) *run {
	e.runsMu.Lock()
	if n := len(e.runs); n > 0 {
		ru := e.runs[n-1]
		e.runs = e.runs[:n-1]
		e.runsMu.Unlock()
		ru.r, ru.phase, ru.conf, ru.seq = r, p, c, runSeq.Add(1)
		return ru
	}
	e.runsMu.Unlock()
	return &run{e: e, r: r, phase: p, conf: c, seq: runSeq.Add(1)}
}

// release keeps ru for a later run (newRun) when nothing can refer to it any more:
// its waits are all over (none pending, none abandoned by a killed thread, so no
// completion can come), no driver waited on its channel, and it had no light
// threads nor UDP sockets. The run struct, its entry coroutine and its output
// buffer were three of /lua's six allocations per request. A run that parked is kept
// too, with what its waits made once (the continuation, the entry coroutine's
// completions) and its slices: a lua-resty-redis request made seven of its ~17
// allocations there.
func (e *engine) release(ru *run) {
	if ru.sig != nil || ru.threads != nil || ru.udps != nil || ru.pending != 0 ||
		ru.parked || ru.abandoned || cap(ru.out) > maxKeptOut {
		return
	}
	out := ru.out[:0]
	unpark, complete, here := ru.unparkFn, ru.entryCo.complete, ru.entryCo.completeHere
	socks, ready, q, qSpare, subOpts, subs := ru.socks, ru.ready, ru.q, ru.qSpare, ru.subOpts, ru.subs
	captureFn, captureRets := ru.captureFn, ru.captureRets
	// Zeroed, then what is kept set again: a literal naming ru's own fields made
	// the compiler build the struct aside and copy it (+200 instructions on /lua).
	*ru = run{}
	ru.e, ru.out, ru.unparkFn, ru.captureFn, ru.captureRets = e, out, unpark, captureFn, captureRets
	ru.entryCo.complete, ru.entryCo.completeHere = complete, here
	if cap(socks)|cap(ready)|cap(q)|cap(qSpare)|cap(subOpts)|cap(subs) != 0 {
		clear(socks)
		clear(ready[:cap(ready)])
		clear(q)
		clear(qSpare[:cap(qSpare)])
		clear(subOpts)
		ru.socks, ru.ready, ru.q, ru.qSpare, ru.subOpts, ru.subs = socks[:0], ready[:0], q[:0], qSpare[:0], subOpts[:0], subs[:0]
	}
	e.runsMu.Lock()
	if len(e.runs) < maxIdleRuns {
		e.runs = append(e.runs, ru)
	}
	e.runsMu.Unlock()
}

// maxIdleRuns bounds the runs an engine keeps for reuse.
const maxIdleRuns = 16

// runSeq numbers runs (require with lua_code_cache off keeps a run's modules).
var runSeq atomic.Uint64

// logErr logs a handler's runtime error with the request, as ngx_lua's
// "lua entry thread aborted" line.
func (ru *run) logErr(what string) {
	msg := "lua " + what + " aborted: runtime error: " + ru.errMsg
	if ru.r != nil {
		ru.r.Logf(httpcore.LogError, "%s", msg)
	} else {
		ru.e.logf(logErr, "%s, context: %s", msg, ru.phase.directive())
	}
}

// factory returns the Ref of the code to run for ch: the chunk loaded with the VM,
// or a file loaded now (a path with variables, or lua_code_cache off).
func (e *engine) factory(s *luajit.State, ru *run, ch *chunk) (luajit.Ref, error) {
	cache := ru.conf == nil || ru.conf.codeCache
	if ch.fileExpr == nil && (ch.file == "" || cache) {
		return e.factories[ch], nil
	}
	path := ch.file
	if ch.fileExpr != nil {
		p, err := ch.fileExpr.String(ru.r)
		if err != nil {
			return 0, err
		}
		path = conf.Resolve(ch.prefix, p)
	}
	if ref, ok := e.files[path]; ok && cache {
		return ref, nil
	}
	code, err := loadLuaFile(path)
	if err != nil {
		return 0, err
	}
	ref, err := s.Load(path, factoryCode(code))
	if err != nil {
		return 0, err
	}
	if cache && len(e.files) < maxCachedFiles {
		e.files[path] = ref
	} else if old, ok := e.files[path]; ok {
		s.Unref(old)
		e.files[path] = ref
	}
	return ref, nil
}

// maxCachedFiles bounds the compiled files of *_by_lua_file paths with variables a
// worker keeps.
const maxCachedFiles = 1024

// exec runs ch for ru to its end: the run's coroutine is resumed until it returns
// or fails; each time it yields for a wait, the VM is unlocked while the wait runs
// (step 1 of docs/lua-engine.md: the request's goroutine waits). Output is written
// with the VM unlocked. args are the runner's arguments after the kind.
func (e *engine) exec(ru *run, ch *chunk, kind int, args ...any) {
	ru.ch = ch
	s := e.vm.Lock()
	e.dropFreed(s)
	ref, err := e.factory(s, ru, ch)
	if err != nil {
		s.Unlock()
		ru.exit, ru.errMsg = exitError, err.Error()
		return
	}
	e.resume(s, ru, ref, kind, args)
}

// errorText is a run's error for the log: the message and the traceback.
func errorText(err error, ru *run) string {
	var le *luajit.Error
	if !errors.As(err, &le) {
		return err.Error()
	}
	if le.Code == luajit.ErrTimeout {
		return fmt.Sprintf("lua_max_run_time (%s) exceeded", ru.conf.maxRunTime)
	}
	msg := le.Message
	if le.Traceback != "" {
		msg += "\n" + strings.TrimRight(le.Traceback, "\n")
	}
	return msg
}

// writeOut writes the run's buffered output (the VM unlocked: filters may run Lua).
func (ru *run) writeOut() error {
	buf := ru.out
	ru.out = ru.out[:0]
	if ru.r == nil {
		return nil
	}
	_, err := ru.r.Write(buf)
	return err
}

// value reads value i of s as a Go value.
func value(s *luajit.State, i int) any {
	switch s.Type(i) {
	case luajit.TypeNil:
		return nil
	case luajit.TypeBoolean:
		return s.Bool(i)
	case luajit.TypeNumber:
		return s.Number(i)
	case luajit.TypeString:
		return s.String(i)
	}
	return s.Type(i)
}

// A pusher pushes values itself, with the VM locked (a wait's results built as the
// coroutine is resumed: captureRun's responses).
type pusher func(s *luajit.State)

// pushAll pushes Go values: nil, bool, int, int64, float64, string, []byte, and
// tables as []any or map[string]any of these (extensions' results, Call.Push), and
// what a pusher pushes.
func pushAll(s *luajit.State, vals []any) {
	for _, v := range vals {
		switch x := v.(type) {
		case nil:
			s.PushNil()
		case bool:
			s.PushBool(x)
		case int:
			s.PushInt(x)
		case int64:
			s.PushNumber(float64(x))
		case float64:
			s.PushNumber(x)
		case string:
			s.PushString(x)
		case []byte:
			s.PushBytes(x)
		case []any:
			s.PushArray(len(x))
			pushAll(s, x)
		case pusher:
			x(s)
		case *tcpSock:
			// A receive's result, a view of its buffer (tcpSock.viewResult); the
			// rest of the buffer goes to the prelude's receive (publish).
			s.PushBytes(x.view)
			x.view = nil
			x.run.e.publish(x)
		case map[string]any:
			s.PushTable(len(x))
			for k, v := range x {
				s.PushString(k)
				pushAll(s, []any{v})
			}
		default:
			panic(fmt.Sprintf("ngxlua: cannot push %T", v))
		}
	}
}

// reqData is the module's per-request state, kept across phases (mod.Ctx); an
// internal redirect resets it, and with it ngx.ctx, as in ngx_lua.
type reqData struct {
	id        float64 // the key of the request's ngx.ctx in the VM, 0 until used
	bodyRead  bool
	eof       bool  // ngx.eof was called
	filterEOF bool  // a body filter set ngx.arg[2]: the rest of the body is dropped
	reqSock   uint8 // the ngx.req.socket taken: reqSockBody, reqSockRaw
	bodyEOF   bool  // the body socket read the whole body
}

func dataOf(r *httpcore.Request) *reqData {
	d, _ := mod.Ctx(r).(*reqData)
	if d == nil {
		d = &reqData{}
		mod.SetCtx(r, d)
	}
	return d
}

func peekData(r *httpcore.Request) *reqData {
	d, _ := mod.Ctx(r).(*reqData)
	return d
}

// ctxID returns the key of r's ngx.ctx in the VM. Once the request's data is
// garbage, the key is queued and the table dropped at the next run (dropFreed).
func (e *engine) ctxID(r *httpcore.Request) float64 {
	d := dataOf(r)
	if d.id == 0 {
		e.nextID++
		d.id = e.nextID
		runtime.AddCleanup(d, e.free, d.id)
	}
	return d.id
}

func (e *engine) free(id float64) {
	e.freedMu.Lock()
	e.freed = append(e.freed, id)
	e.freedMu.Unlock()
}

// dropFreed runs the runner to forget the ngx.ctx of requests that are gone.
func (e *engine) dropFreed(s *luajit.State) {
	e.freedMu.Lock()
	ids, refs := e.freed, e.unrefs
	e.freed, e.unrefs = nil, nil
	e.freedMu.Unlock()
	for _, r := range refs {
		s.Unref(r)
	}
	for len(ids) > 0 {
		n := min(len(ids), luajit.MaxValues-2)
		t, err := s.NewThread(e.runner)
		if err != nil {
			return
		}
		s.PushNil()
		s.PushInt(kindFree)
		for _, id := range ids[:n] {
			s.PushNumber(id)
		}
		s.Resume(t)
		s.CloseThread(t)
		ids = ids[n:]
	}
}

// ngx_lua's constants.
const (
	ngxOK       = 0
	ngxError    = -1
	ngxAgain    = -2
	ngxDone     = -4
	ngxDeclined = -5
)

// ngx.STDERR .. ngx.DEBUG, nginx's log levels.
const (
	logStderr = iota
	logEmerg
	logAlert
	logCrit
	logErr
	logWarn
	logNotice
	logInfo
	logDebug
)

func errlogLevel(l int) errlog.Level {
	switch {
	case l <= logEmerg:
		return errlog.Emerg
	case l >= logDebug:
		return errlog.Debug
	}
	return errlog.Level(l - 1)
}
