// Package lua is spindle's ngx_lua: OpenResty's programming model on gopher-lua. Lua
// handlers run in every phase (set_by_lua, rewrite_by_lua, access_by_lua,
// content_by_lua, header and body filters, log_by_lua, init_by_lua,
// init_worker_by_lua), written in blocking style with ngx_lua's ngx API: output,
// variables, headers, request bodies, subrequests, cosockets with connection pools,
// timers, light threads, regexes, time and encoding helpers. Unmodified
// lua-resty-redis and lua-resty-memcached run on it.
//
// Each request runs its handlers on its own goroutine with a Lua thread of the
// worker's VM (see vm.go): I/O blocks only that goroutine, so pcall, metamethods and
// iterators around I/O work, which a yield-based design on gopher-lua could not offer.
// Code is compiled when the configuration is built (so `spindle -t` and reloads
// report Lua syntax errors with their positions) and shared by every thread as
// gopher-lua FunctionProtos.
package lua

import (
	"fmt"
	"strings"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
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
// says otherwise (see the directive's documentation for the cost).
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
		// Lua handlers start inline in the event loop, as ngx_lua's run in nginx's:
		// the first call that waits (vm.blocking, light threads) takes the request off
		// the loop.
		l.AddInlineHandler(httpcore.PhaseRewrite, httpcore.OrderScript, func(r *httpcore.Request) httpcore.Action {
			return runRewrite(r, c, ch)
		})
	}
	if ch := c.chunks[hAccess]; ch != nil {
		l.AddInlineHandler(httpcore.PhaseAccess, httpcore.OrderScript, func(r *httpcore.Request) httpcore.Action {
			return runAccess(r, c, ch)
		})
	}
	// content_by_lua belongs to its location and that location's if blocks, not to
	// nested locations.
	if ch := c.chunks[hContent]; ch != nil && (c.contentLoc == l || l.Context() == httpcore.CtxIf && c.contentLoc == l.Parent) {
		if err := l.SetContentInline("lua", func(r *httpcore.Request) httpcore.Action {
			return runContent(r, c, ch)
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
	v, err := newVM(cfg, w)
	if err != nil {
		return err
	}
	mod.SetState(cfg, v)
	for _, l := range cfg.Locations() {
		if !mod.Of(l).codeCache {
			v.logf(logAlert, "lua_code_cache is off; this will hurt performance in %s", l)
			break
		}
	}
	// Both run with the shared globals: what they define is every request's.
	if mc.init != nil {
		ru := v.newRun(nil, phaseInit, mc.rootConf)
		v.call(ru, &glua.LFunction{Proto: mc.init.proto, Env: v.globals}, 0)
		if ru.exit == exitError {
			msg := ru.errMsg
			ru.free()
			v.close()
			return fmt.Errorf("init_by_lua failed: %s", strings.TrimSpace(msg))
		}
		ru.free()
	}
	if mc.initWorker != nil {
		ru := v.newRun(nil, phaseInitWorker, mc.rootConf)
		v.call(ru, &glua.LFunction{Proto: mc.initWorker.proto, Env: v.globals}, 0)
		if ru.exit == exitError {
			ru.logErr("init_worker_by_lua")
		}
		ru.free()
	}
	return nil
}

func exitWorker(cfg *httpcore.Config) {
	if v := vmOf(cfg); v != nil {
		v.close()
	}
}
