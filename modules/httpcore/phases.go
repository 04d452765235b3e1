package httpcore

import (
	"sort"
)

// Phase is a stage of request processing, as nginx's NGX_HTTP_*_PHASE.
type Phase uint8

// The phases in the order a request goes through them.
const (
	PhasePostRead      Phase = iota // right after the request header is read (server level)
	PhaseServerRewrite              // rewrite directives of the server block
	PhaseFindConfig                 // location selection (the core's own)
	PhaseRewrite                    // rewrite directives of the location, then rewrite_by_lua
	PhasePostRewrite                // re-run location selection after a rewrite ... last
	PhasePreaccess                  // limits
	PhaseAccess                     // allow/deny, auth_request, access_by_lua, decided by satisfy (Request.access)
	PhasePostAccess                 // after access is granted
	PhaseTryFiles                   // try_files
	PhaseContent                    // the location's content handler
	PhaseLog                        // after the response: access_log, log_by_lua
	numPhases
)

var phaseNames = [...]string{"post_read", "server_rewrite", "find_config", "rewrite", "post_rewrite",
	"preaccess", "access", "post_access", "try_files", "content", "log"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase?"
}

// Action is what a phase handler tells the engine to do next.
type Action uint8

// Handler results.
const (
	// Continue runs the next handler of the phase (nginx NGX_DECLINED).
	Continue Action = iota
	// NextPhase skips the remaining handlers of the phase (nginx NGX_OK).
	NextPhase
	// Finished ends processing: the response is complete, or an error status was set
	// with Request.Error and the core sends the error page.
	Finished
	// Redirected restarts processing at a new URI (Request.InternalRedirect), or at
	// location search after a rewrite ... last.
	Redirected
	// Parked (a location's rewrite, access or content handler, after
	// Request.CanPark said yes) leaves the request waiting with no goroutine where
	// the handler was, as nginx's NGX_DONE with r->main->count++:
	// the request keeps its connection, and whatever it waits for (a timer, a socket)
	// calls Request.Resume when it is over.
	Parked
)

// Handler is a phase handler.
type Handler func(r *Request) Action

// HeaderFilter runs when the response header is about to be sent; it may change the
// status and headers. Filters of a location run in module order.
type HeaderFilter func(r *Request) error

// BodyFilter sees each chunk of the response body before it is sent, and returns what
// to send instead; last is true on the final call, whose chunk may be empty.
type BodyFilter func(r *Request, chunk []byte, last bool) ([]byte, error)

type orderedHandler struct {
	order  int
	h      Handler
	inline bool
}

type orderedHeaderFilter struct {
	order int
	f     HeaderFilter
}

type orderedBodyFilter struct {
	order int
	f     BodyFilter
}

// AddHandler adds a phase handler to the location; order places it among the other
// modules' handlers of the phase (see the Order* constants). The handler may wait
// (talk to a backend, sleep): the event loop runs the location's requests as
// coroutines of their own.
func (l *Location) AddHandler(p Phase, order int, h Handler) {
	l.handlers[p] = append(l.handlers[p], orderedHandler{order, h, false})
}

// AddInlineHandler adds a phase handler that never waits, except on the client
// connection (reading its body, sending to it), which the engine handles: the event
// loop may run it inline, as nginx runs its handlers.
func (l *Location) AddInlineHandler(p Phase, order int, h Handler) {
	l.handlers[p] = append(l.handlers[p], orderedHandler{order, h, true})
}

// SetContent sets the location's content handler; a location has at most one. The
// handler may wait (see AddHandler).
func (l *Location) SetContent(module string, h Handler) error {
	if l.content != nil && l.contentMod != module {
		return errorf("%s: content handler of %s is already set by %s", l, module, l.contentMod)
	}
	l.content, l.contentMod, l.contentInline = h, module, false
	return nil
}

// SetContentInline sets a content handler that never waits except on the client
// connection (see AddInlineHandler).
func (l *Location) SetContentInline(module string, h Handler) error {
	if err := l.SetContent(module, h); err != nil {
		return err
	}
	l.contentInline = true
	return nil
}

// MayBlock reports whether a request in l may wait for something other than its
// client: it then runs as a coroutine of its own rather than inline in the event loop.
func (l *Location) MayBlock() bool { return l.mayBlock }

// HasContent reports whether a module set a content handler for l.
func (l *Location) HasContent() bool { return l.content != nil }

// AddHeaderFilter adds a header filter to the location.
func (l *Location) AddHeaderFilter(order int, f HeaderFilter) {
	l.headerFilters = append(l.headerFilters, orderedHeaderFilter{order, f})
}

// AddBodyFilter adds a body filter to the location.
func (l *Location) AddBodyFilter(order int, f BodyFilter) {
	l.bodyFilters = append(l.bodyFilters, orderedBodyFilter{order, f})
}

func (l *Location) finishHandlers() {
	l.mayBlock = l.content != nil && !l.contentInline
	for p := range l.handlers {
		if Phase(p) != PhaseLog {
			for _, h := range l.handlers[p] {
				if !h.inline {
					l.mayBlock = true
				}
			}
		}
		hs := l.handlers[p]
		sort.SliceStable(hs, func(i, j int) bool { return hs[i].order < hs[j].order })
		l.run[p] = nil
		for _, h := range hs {
			l.run[p] = append(l.run[p], h.h)
		}
	}
	sort.SliceStable(l.headerFilters, func(i, j int) bool { return l.headerFilters[i].order < l.headerFilters[j].order })
	sort.SliceStable(l.bodyFilters, func(i, j int) bool { return l.bodyFilters[i].order < l.bodyFilters[j].order })
	l.hfilters, l.bfilters = nil, nil
	for _, f := range l.headerFilters {
		l.hfilters = append(l.hfilters, f.f)
	}
	for _, f := range l.bodyFilters {
		l.bfilters = append(l.bfilters, f.f)
	}
}

// RewriteOp is one step of a context's rewrite program (set, rewrite, return, if,
// set_by_lua, ...), run in source order.
type RewriteOp interface {
	Run(r *Request) Action
}

// RewriteFunc adapts a function to RewriteOp.
type RewriteFunc func(r *Request) Action

// Run implements RewriteOp.
func (f RewriteFunc) Run(r *Request) Action { return f(r) }

// maxURIChanges bounds internal redirects and rewrite ... last cycles, as nginx's
// NGX_HTTP_MAX_URI_CHANGES.
const maxURIChanges = 10

type stage uint8

const (
	stageServerRewrite stage = iota // internal redirects restart here
	stageFind                       // rewrite ... last and named locations restart here
)

// runPhases drives a request (main or sub) through the phases up to content. The log
// phase runs separately once the response is complete.
func (r *Request) runPhases() {
	if r.Server.root.mayBlock {
		r.Blocking()
	}
	if !r.internal {
		for _, h := range r.Server.root.run[PhasePostRead] {
			if a := h(r); a != Continue {
				if a == Redirected {
					r.runFrom(r.redirectStage())
					return
				}
				if a != NextPhase {
					r.settle(a)
					return
				}
				break
			}
		}
	}
	r.runFrom(stageServerRewrite)
}

// runFrom runs the phases from st, following internal redirects up to the limit.
func (r *Request) runFrom(st stage) {
	for {
		next, again := r.pass(st)
		if !again {
			return
		}
		r.uriChanges++
		if r.uriChanges > maxURIChanges {
			r.Logf(LogError, "rewrite or internal redirection cycle while processing %q", r.uri)
			r.named = nil
			r.finalize(500)
			return
		}
		st = next
	}
}

func (r *Request) redirectStage() stage {
	if r.restartServer {
		r.restartServer = false
		return stageServerRewrite
	}
	return stageFind
}

// pass runs the phases once from st. It returns again == true with the stage to
// restart at when a handler redirected the request.
func (r *Request) pass(st stage) (next stage, again bool) {
	srv := r.Server
	if st == stageServerRewrite && r.named == nil {
		r.loc = srv.root
		if a := r.runRewrite(srv.root.rewrite); a != Continue {
			if a == Redirected {
				return r.redirectStage(), true
			}
			r.settle(a)
			return 0, false
		}
	}
	if r.named != nil {
		r.loc, r.named = r.named, nil
		r.caps = r.caps[:0]
	} else {
		loc, caps := r.findLocation(srv)
		if loc == nil {
			// No location matches: as in nginx, the server's own configuration serves
			// the request (a server with just a root serves files). Its rewrite program
			// ran in the server rewrite phase already.
			r.loc = srv.root
			r.caps = r.caps[:0]
		} else {
			r.setCaps(caps)
			r.loc = loc
		}
	}
	if r.loc.Internal && !r.internal {
		r.finalize(404)
		return 0, false
	}
	if r.loc.mayBlock {
		r.Blocking()
	}
	if r.parent == nil && r.body.length > 0 && !r.body.read {
		// As nginx in find_config: a declared body over the location's limit is refused
		// before any handler runs, without reading it.
		if max := CoreConfOf(r.loc).ClientMaxBodySize; max > 0 && r.body.length > max {
			r.Logf(LogError, "client intended to send too large body: %d bytes", r.body.length)
			r.keepalive = false
			r.finalize(413)
			return 0, false
		}
	}
	if r.parent == nil {
		r.body.limit = CoreConfOf(r.loc).ClientMaxBodySize
	}
	if len(r.loc.rewrite) > 0 && r.loc != srv.root {
		if a := r.runRewrite(r.loc.rewrite); a != Continue {
			if a == Redirected {
				return r.redirectStage(), true
			}
			r.settle(a)
			return 0, false
		}
	}
	return r.walk(PhaseRewrite, 0, 0)
}

// walk runs the location's handlers from handler i of phase p (refused: the access
// phase's refusal so far) through the content handler. A handler that parks (see
// Parked) leaves where it was in r.parkAt; afterPark walks on from there.
func (r *Request) walk(p Phase, i, refused int) (next stage, again bool) {
	for ; p < PhaseContent; p, i = p+1, 0 {
		if p == PhaseAccess || p == PhasePostAccess {
			if r.parent != nil {
				continue // nginx runs no access checks for subrequests
			}
			if p == PhaseAccess {
				a, parked := r.access(i, refused)
				if parked {
					return 0, false
				}
				switch a {
				case Continue:
				case Redirected:
					return r.redirectStage(), true
				default:
					r.settle(a)
					return 0, false
				}
				continue
			}
		}
		// An if block may have switched r.loc; its handlers apply from here on.
		hs := r.loc.run[p]
	handlers:
		for ; i < len(hs); i++ {
			a := r.call(hs[i], p, i, 0)
			switch a {
			case Continue:
			case NextPhase:
				break handlers
			case Redirected:
				return r.redirectStage(), true
			case Parked:
				return 0, false
			default:
				r.settle(a)
				return 0, false
			}
		}
	}
	loc := r.loc
	var a Action
	if loc.content != nil {
		a = r.call(loc.content, PhaseContent, 0, 0)
		if a == Parked {
			return 0, false
		}
	} else {
		// Without a content handler of its own, the location is served by the modules'
		// content-phase handlers (index, static), as nginx's phase handlers do.
		a = Continue
		for _, h := range loc.run[PhaseContent] {
			if a = h(r); a != Continue {
				break
			}
		}
		if a == Continue {
			if len(loc.run[PhaseContent]) == 0 {
				r.Error(404)
			} else {
				r.Error(403)
			}
			a = Finished
		}
	}
	if a == Redirected {
		return r.redirectStage(), true
	}
	r.settle(a)
	return 0, false
}

// parkPoint is where a parked request's handler ran: handler i of phase p (the
// content handler: PhaseContent), with the access phase's refusal so far.
type parkPoint struct {
	p       Phase
	i       int
	refused int
}

// call runs handler h, i of phase p, where it may park (CanPark).
func (r *Request) call(h Handler, p Phase, i, refused int) Action {
	r.inHandler = true
	a := h(r)
	r.inHandler = false
	if a == Parked {
		r.parked = true
		r.parkAt = parkPoint{p, i, refused}
	}
	return a
}

// access runs the access phase and decides it, as nginx's core module does
// (ngx_http_core_access_phase and _post_access_phase). Each handler (allow/deny,
// auth_request, access_by_lua, ...) answers with
//
//   - Continue: it has no opinion (nginx's NGX_DECLINED);
//   - NextPhase: it grants access (NGX_OK);
//   - r.Error(403), or r.Error(401) with WWW-Authenticate set: it refuses access;
//   - anything else (another error, a response of its own, a redirect): that ends the
//     phase whatever satisfy says.
//
// Under satisfy all a refusal ends the request and a grant lets the next handler
// decide. Under satisfy any a grant ends the phase with access granted; a refusal is
// remembered (401 over 403, so that the client gets the challenge) and sent only
// when no handler grants access.
//
// access starts at handler i with refused as the refusal so far (a parked handler's
// request goes on there); parked reports that a handler parked the request.
func (r *Request) access(i, refused int) (a Action, parked bool) {
	satisfyAny := CoreConfOf(r.loc).SatisfyAny
	hs := r.loc.run[PhaseAccess]
	for ; i < len(hs); i++ {
		a := r.call(hs[i], PhaseAccess, i, refused)
		if a == Parked {
			return a, true
		}
		out, decided, ref := r.accessStep(a, refused, satisfyAny)
		if decided {
			return out, false
		}
		refused = ref
	}
	return r.accessEnd(refused), false
}

// accessStep weighs a handler's answer a (see access): decided with the phase's
// outcome, or not yet, with the refusal so far.
func (r *Request) accessStep(a Action, refused int, satisfyAny bool) (out Action, decided bool, refusedOut int) {
	switch {
	case a == Continue:
	case a == NextPhase:
		if !satisfyAny {
			return 0, false, refused
		}
		if refused != 0 {
			// A refusal's challenge no longer applies.
			r.respHdr.Del("WWW-Authenticate")
		}
		return Continue, true, refused
	case a == Finished && satisfyAny && !r.headerSent && (r.errStatus == 403 || r.errStatus == 401):
		if refused != 401 {
			refused = r.errStatus
		}
		r.errStatus = 0
	default:
		return a, true, refused
	}
	return 0, false, refused
}

// accessEnd is the access phase's outcome once every handler answered.
func (r *Request) accessEnd(refused int) Action {
	if refused == 0 {
		return Continue
	}
	if refused == 403 {
		r.Logf(LogError, "access forbidden by rule")
	}
	return r.Error(refused)
}

// afterPark goes on with a parked request whose handler, resumed, answered a: as
// walk would have with that answer, from where the handler parked.
func (r *Request) afterPark(a Action) {
	pp := r.parkAt
	var again bool
	var next stage
	switch {
	case pp.p == PhaseContent || a == Redirected:
		if a != Redirected {
			r.settle(a)
			return
		}
		next, again = r.redirectStage(), true
	case pp.p == PhaseAccess:
		out, decided, refused := r.accessStep(a, pp.refused, CoreConfOf(r.loc).SatisfyAny)
		if !decided {
			var parked bool
			if out, parked = r.access(pp.i+1, refused); parked {
				return
			}
		}
		switch out {
		case Continue:
			next, again = r.walk(PhaseAccess+1, 0, 0)
		case Redirected:
			next, again = r.redirectStage(), true
		default:
			r.settle(out)
			return
		}
	default:
		switch a {
		case Continue:
			next, again = r.walk(pp.p, pp.i+1, 0)
		case NextPhase:
			next, again = r.walk(pp.p+1, 0, 0)
		default:
			r.settle(a)
			return
		}
	}
	if !again {
		return
	}
	r.uriChanges++
	if r.uriChanges > maxURIChanges {
		r.Logf(LogError, "rewrite or internal redirection cycle while processing %q", r.uri)
		r.named = nil
		r.finalize(500)
		return
	}
	r.runFrom(next)
}

// settle finishes the request after a handler returned a.
func (r *Request) settle(a Action) {
	switch a {
	case Redirected:
		r.runFrom(r.redirectStage())
	default:
		r.finalize(r.errStatus)
	}
}

func (r *Request) runRewrite(ops []RewriteOp) Action {
	for _, op := range ops {
		if a := op.Run(r); a != Continue {
			if a == NextPhase {
				return Continue
			}
			return a
		}
	}
	return Continue
}

// HasFilters reports whether header or body filters run for responses of l, so that
// a caller that must not re-enter code a filter may run (a scripting VM's lock) can
// tell when writing is safe without precautions.
func (l *Location) HasFilters() bool { return len(l.hfilters)+len(l.bfilters) > 0 }
