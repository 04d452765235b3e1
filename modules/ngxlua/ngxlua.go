// Package ngxlua is spindle's ngx_lua on LuaJIT (internal/luajit): OpenResty's
// programming model, with the directives and behaviour of the gopher-lua engine it
// replaced (issue 16).
// Lua handlers run in every phase (set_by_lua, rewrite_by_lua, access_by_lua,
// content_by_lua, header and body filters, log_by_lua, init_by_lua,
// init_worker_by_lua) with ngx_lua's ngx API.
//
// This is step 1 of docs/lua-engine.md's migration: one LuaJIT VM per worker and a
// coroutine per handler run, started inline in the event loop; a run whose code
// waits (ngx.sleep, subrequests) yields to the Go code that resumed it, which takes
// the request off the loop, unlocks the VM, waits on the request's goroutine, locks
// the VM again and resumes the coroutine with the results. Output is buffered in Go
// and written with the VM unlocked, since writing runs header and body filters that
// may be Lua code themselves.
//
// Most of the ngx table is Lua (prelude.lua) over Go functions: arguments are
// flattened in Lua (ngx.say of nested arrays, header lists), so one call crosses
// per API call. Code is compiled when the configuration is built, so `spindle -t`
// and reloads report Lua syntax errors at their position in the configuration.
package ngxlua

import (
	"fmt"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
)

// Conf is the Lua module's configuration of a context.
type Conf struct {
	chunks     [numHandlers]*chunk
	owners     *[numHandlers]*httpcore.Location // the context that set each chunk
	contentLoc *httpcore.Location               // the location content_by_lua was written in

	codeCache  bool
	needBody   bool
	maxRunTime time.Duration
	sock       sockConf
	main       *mainConf // shared by every context of a configuration
}

// The handler kinds a location may have.
const (
	hRewrite = iota
	hAccess
	hContent
	hHeaderFilter
	hBodyFilter
	hLog
	numHandlers
)

// sockConf is the lua_socket_* settings, the defaults of cosockets.
type sockConf struct {
	connectTimeout   time.Duration
	sendTimeout      time.Duration
	readTimeout      time.Duration
	keepaliveTimeout time.Duration
	poolSize         int
	bufferSize       int
	logErrors        bool
}

// mainConf is the http-level configuration: what runs once per worker.
type mainConf struct {
	used          bool // some Lua directive is present: workers need a VM
	path          string
	pathSet       bool
	init          *chunk
	initWorker    *chunk
	maxPending    int
	maxRunning    int
	regexCacheMax int
	rootConf      *Conf
	chunks        []*chunk // every chunk of the configuration
}

// defaultMaxRunTime bounds the Lua CPU time of one handler unless lua_max_run_time
// says otherwise.
const defaultMaxRunTime = 30 * time.Second

// mod is the module's handle: its configuration, state and request context.
var mod = httpcore.Define(func() *Conf {
	c := &Conf{
		codeCache:  true,
		maxRunTime: defaultMaxRunTime,
		sock: sockConf{
			connectTimeout:   60 * time.Second,
			sendTimeout:      60 * time.Second,
			readTimeout:      60 * time.Second,
			keepaliveTimeout: 60 * time.Second,
			poolSize:         30,
			bufferSize:       4096,
			logErrors:        true,
		},
		main: &mainConf{maxPending: 1024, maxRunning: 256, regexCacheMax: 1024},
	}
	c.main.rootConf = c
	return c
})

// Module is the Lua module.
var Module = httpcore.Register(&httpcore.Module{
	Name:       "lua",
	Order:      httpcore.OrderScript,
	Conf:       mod,
	Directives: directives(),
	Install:    install,
	InitWorker: initWorker,
	ExitWorker: exitWorker,
})

func mainConfOf(cfg *httpcore.Config) *mainConf {
	return mod.Of(cfg.Root()).main
}

// install adds the location's Lua handlers to its phases and filters.
func install(l *httpcore.Location) error {
	c := mod.Of(l)
	if ch := c.chunks[hRewrite]; ch != nil {
		l.AddInlineHandler(httpcore.PhaseRewrite, httpcore.OrderScript, func(r *httpcore.Request) httpcore.Action {
			return runHandler(r, c, ch, phaseRewrite)
		})
	}
	if ch := c.chunks[hAccess]; ch != nil {
		l.AddInlineHandler(httpcore.PhaseAccess, httpcore.OrderScript, func(r *httpcore.Request) httpcore.Action {
			return runHandler(r, c, ch, phaseAccess)
		})
	}
	// content_by_lua belongs to its location and that location's if blocks, not to
	// nested locations.
	if ch := c.chunks[hContent]; ch != nil && (c.contentLoc == l || l.Context() == httpcore.CtxIf && c.contentLoc == l.Parent) {
		if err := l.SetContentInline("lua", func(r *httpcore.Request) httpcore.Action {
			return runHandler(r, c, ch, phaseContent)
		}); err != nil {
			return err
		}
	}
	if ch := c.chunks[hHeaderFilter]; ch != nil {
		l.AddHeaderFilter(httpcore.OrderScript, func(r *httpcore.Request) error {
			return runHeaderFilter(r, c, ch)
		})
	}
	if ch := c.chunks[hBodyFilter]; ch != nil {
		l.AddBodyFilter(httpcore.OrderScript, func(r *httpcore.Request, p []byte, last bool) ([]byte, error) {
			return runBodyFilter(r, c, ch, p, last)
		})
	}
	if ch := c.chunks[hLog]; ch != nil {
		// Before the access log, as ngx_lua's log_by_lua.
		l.AddInlineHandler(httpcore.PhaseLog, httpcore.OrderLog, func(r *httpcore.Request) httpcore.Action {
			runLog(r, c, ch)
			return httpcore.Continue
		})
	}
	return nil
}

// initWorker creates the worker's VM and runs init_by_lua and init_worker_by_lua in
// it. spindle has no fork to share init_by_lua's state from the master, so each
// worker runs it; the master only compiles it.
func initWorker(cfg *httpcore.Config, w *httpcore.Worker) error {
	mc := mainConfOf(cfg)
	if !mc.used {
		return nil
	}
	e, err := newEngine(cfg, w)
	if err != nil {
		return err
	}
	mod.SetState(cfg, e)
	for _, l := range cfg.Locations() {
		if !mod.Of(l).codeCache {
			e.logf(logAlert, "lua_code_cache is off; this will hurt performance in %s", l)
			break
		}
	}
	// Both run with the shared globals: what they define is every request's.
	if mc.init != nil {
		ru := e.newRun(nil, phaseInit, mc.rootConf)
		e.exec(ru, mc.init, kindGlobal)
		if ru.exit == exitError {
			e.close()
			return fmt.Errorf("init_by_lua failed: %s", ru.errMsg)
		}
	}
	if mc.initWorker != nil {
		ru := e.newRun(nil, phaseInitWorker, mc.rootConf)
		e.exec(ru, mc.initWorker, kindGlobal)
		if ru.exit == exitError {
			ru.logErr("init_worker_by_lua")
		}
	}
	return nil
}

func exitWorker(cfg *httpcore.Config) {
	if e := engineOf(cfg); e != nil {
		e.close()
	}
}
