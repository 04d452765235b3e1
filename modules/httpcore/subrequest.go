package httpcore

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
)

// Subrequests run in-process against any location of the server (internal ones
// included), with their output captured rather than sent. Several may run at once,
// each in its own coroutine. Limits are nginx's: a nesting depth of 50 and 65535
// subrequests per main request.
const (
	maxSubrequestDepth = 50
	maxSubrequests     = 65535
)

// SubrequestOptions shape a subrequest, as ngx.location.capture's options.
type SubrequestOptions struct {
	Method  string            // default: GET
	Args    string            // query string; default: none
	Body    []byte            // request body when HasBody; else the parent's body
	HasBody bool              //
	Headers map[string]string // request headers to set
	// Vars sets user variables in the subrequest; CopyVars starts it with a copy of
	// the parent's; ShareVars makes it use the parent's (changes visible both ways).
	Vars      map[string]string
	CopyVars  bool
	ShareVars bool
}

type subState struct {
	ownBody bool // the subrequest has a body of its own, not its parent's
	shared  bool // vars shared with the parent
}

// ErrSubrequestLimit is returned when a subrequest would exceed nginx's limits.
var ErrSubrequestLimit = errors.New("subrequests cycle or limit reached")

var subPool = sync.Pool{New: func() any { return new(Request) }}

// NewSubrequest prepares a subrequest of r for uri (which may carry "?args"). Run it
// with Run, or several at once with RunAll; release it with Release once its output
// is used.
func (r *Request) NewSubrequest(uri string, opts *SubrequestOptions) (*Request, error) {
	if r.subDepth >= maxSubrequestDepth {
		r.Logf(LogError, "subrequests cycle while processing %q", uri)
		return nil, ErrSubrequestLimit
	}
	if r.main.subCount >= maxSubrequests {
		r.Logf(LogError, "too many subrequests while processing %q", uri)
		return nil, ErrSubrequestLimit
	}
	r.main.subCount++
	path, args, _ := strings.Cut(uri, "?")
	norm, ok := NormalizePathString(path)
	if !ok {
		return nil, errorf("invalid subrequest URI %q", uri)
	}
	sr := subPool.Get().(*Request)
	sr.reset()
	sr.cfg, sr.c, sr.main, sr.parent, sr.Server = r.cfg, r.c, r.main, r, r.Server
	sr.loc = r.Server.root
	sr.internal = true
	sr.subDepth = r.subDepth + 1
	sr.start = r.start
	sr.method = "GET"
	sr.uri = norm
	sr.args = args
	sr.requestURI = r.main.requestURI
	sr.http10 = r.http10
	if r.c != nil {
		// Computed now so that concurrent subrequests only read them.
		r.c.remoteAddr()
		r.c.localAddr()
	}
	if opts != nil {
		if opts.Method != "" {
			sr.method = opts.Method
		}
		if opts.Args != "" {
			if sr.args != "" {
				sr.args += "&" + opts.Args
			} else {
				sr.args = opts.Args
			}
		}
		if opts.HasBody {
			sr.SetBody(opts.Body)
			sr.sub.ownBody = true
		}
		// Ranging over a nil map still costs an iterator's set-up (~45 instructions,
		// twice per subrequest of ngx.location.capture without options).
		if len(opts.Headers) > 0 {
			for k, v := range opts.Headers {
				sr.SetHeader(k, v)
			}
		}
		switch {
		case opts.ShareVars:
			sr.vars = nil
			sr.sub.shared = true
		case opts.CopyVars:
			sr.vars = append(sr.vars[:0], r.varsRef()...)
		}
		if len(opts.Vars) > 0 {
			for k, v := range opts.Vars {
				if !sr.SetVar(k, v) {
					sr.Release()
					return nil, errorf("variable %q not found or not changeable", k)
				}
			}
		}
	}
	return sr, nil
}

func (r *Request) varsRef() []userVar {
	if r.sub.shared {
		return r.parent.varsRef()
	}
	return r.vars
}

// Blocking makes sure the request runs as a coroutine of its own, not inline in the
// event loop, before it waits for something other than its client connection (a
// backend, a timer, other coroutines). Handlers registered as blocking (AddHandler,
// SetContent) need not call it: the core does for them.
func (r *Request) Blocking() {
	if r.c != nil {
		if !r.c.waited {
			// Subrequests running on other coroutines find it set by the member of
			// their group that started them (runGroup.fork): they only read it.
			r.c.waited = true
		}
		if r.c.inLoop {
			r.c.leaveLoop()
		}
		if r.parent == nil {
			r.c.shedBuffers(r)
		}
	}
	if g := r.group; g != nil {
		g.fork()
	}
}

// Run processes the subrequest to completion, its output captured.
func (sr *Request) Run() {
	defer func() {
		if p := recover(); p != nil {
			sr.Logf(LogAlert, "panic in subrequest %q: %v\n%s", sr.uri, p, stack())
			if !sr.finished {
				sr.status = 500
				sr.finished = true
			}
		}
	}()
	sr.runPhases()
	if !sr.finished {
		sr.finalize(sr.errStatus)
	}
	// nginx runs the log phase of a subrequest only with log_subrequest on.
	if CoreConfOf(sr.loc).LogSubrequest {
		sr.runLog()
	}
}

// RunAll runs subrequests concurrently and returns when all are done. They run one
// after the other on the calling coroutine until one of them is about to wait
// (Blocking): then the ones not started yet go to pooled coroutines of their own and
// run meanwhile, as nginx's subrequests run until they wait. Subrequests that never
// wait (echo, static files, return) so cost no coroutine switch, and a parent whose
// subrequests do not wait stays inline in the event loop.
func RunAll(srs []*Request) {
	switch len(srs) {
	case 0:
		return
	case 1:
		// Nothing to fork when it waits.
		srs[0].Run()
		return
	}
	// The group is pooled: one allocation per RunAll had been half of the server's
	// on capture_multi of two echo locations (BenchmarkLoopMulti).
	g := groupPool.Get().(*runGroup)
	g.srs = srs
	g.next.Store(0)
	for _, sr := range srs {
		sr.group = g
	}
	for {
		i := int(g.next.Add(1)) - 1
		if i >= len(srs) {
			break
		}
		srs[i].Run()
	}
	g.wg.Wait()
	for _, sr := range srs {
		sr.group = nil
	}
	g.srs = nil
	groupPool.Put(g)
}

var groupPool = sync.Pool{New: func() any { return new(runGroup) }}

// runGroup is the subrequests of one RunAll.
type runGroup struct {
	srs  []*Request
	next atomic.Int64 // the next one to start
	wg   sync.WaitGroup
}

// fork starts the subrequests of the group that have not started, each on a pooled
// coroutine: a member is about to wait. Only the first call finds any.
func (g *runGroup) fork() {
	start := int(g.next.Swap(int64(len(g.srs))))
	if start >= len(g.srs) {
		return
	}
	rest := g.srs[start:]
	g.wg.Add(len(rest))
	for _, sr := range rest {
		workers.Go(func() {
			defer g.wg.Done()
			sr.Run()
		})
	}
}

// Release returns a finished subrequest to the pool; its output must not be used
// afterwards.
func (sr *Request) Release() {
	if sr.parent == nil {
		return
	}
	sr.c, sr.parent, sr.main, sr.hdrOverlay, sr.snapshot = nil, nil, nil, nil, nil
	if cap(sr.out) > 64<<10 {
		sr.out = nil
	}
	subPool.Put(sr)
}
