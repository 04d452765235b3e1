package httpcore

import (
	"sync"
)

// Parking: a content handler whose request waits for something other than its
// client (a timer, a backend's socket) may return Parked instead of blocking. The
// request keeps its connection and holds no goroutine meanwhile, as nginx's requests
// between events: what it waits for calls Resume when it is over, and the loop's
// leader goes on with the request from there. A handler that cannot park (see
// CanPark) waits in blocking style, on a goroutine of its own (Blocking).

// ownerParked: the connection's request is parked; nobody runs it until Resume.
const ownerParked int32 = 2

// parking is a connection's hand-over between the goroutine that parks its request
// and the one that resumes it: either may come first.
type parking struct {
	mu      sync.Mutex
	settled bool          // the parking goroutine is done with the connection
	fn      func() Action // a Resume that came before that
}

// parkedResume is a continuation posted to the loop.
type parkedResume struct {
	c  *conn
	fn func() Action
}

// CanPark reports whether r's handler, running now, may return Parked: a rewrite,
// access or content handler of a main request over HTTP/1 on the event loop, not in
// an error page. Otherwise the handler waits in blocking style.
func (r *Request) CanPark() bool {
	c := r.c
	return r.inHandler && r.parent == nil && !r.noPark && c != nil && c.lt != nil &&
		c.h2 == nil && c.tls == nil && !c.hijacked && c.req == r
}

// Resume continues a request whose content handler returned Parked: fn runs on the
// event loop's leader and returns what the content handler would have (Parked
// again, or the request's next step). Any goroutine may call it, once per Parked,
// even before the handler has returned.
func (r *Request) Resume(fn func() Action) {
	if c := r.c; c.settledResume(fn) {
		c.lt.l.post(c, fn)
	}
}

// ResumeHere is Resume for a function the loop's leader calls (a Sock's waiter): the
// continuation runs at once, on the leader, instead of after a post back to the loop.
// It must not be called from anywhere else.
func (r *Request) ResumeHere(fn func() Action) {
	if c := r.c; c.settledResume(fn) {
		c.resumeParked(fn)
	}
}

// settledResume reports whether the parking goroutine is done with c, so that the
// caller runs fn; if it is not, fn is left for it to run when it settles.
func (c *conn) settledResume(fn func() Action) bool {
	c.park.mu.Lock()
	defer c.park.mu.Unlock()
	if !c.park.settled {
		c.park.fn = fn
		return false
	}
	c.park.settled = false
	return true
}

// parkSettled is the parking goroutine's last touch of c: from here on c is the
// continuation's.
func (c *conn) parkSettled() {
	c.park.mu.Lock()
	fn := c.park.fn
	if fn == nil {
		c.park.settled = true
		c.park.mu.Unlock()
		return
	}
	c.park.fn = nil
	c.park.mu.Unlock()
	c.lt.l.post(c, fn)
}

// parkHere leaves the connection to its parked request: called by the goroutine that
// ran the request (the loop's leader or the request's own), which must not touch c
// afterwards.
func (c *conn) parkHere() {
	c.inLoop = false
	c.owner.Store(ownerParked)
	c.shedBuffers(c.req)
	c.parkSettled()
}

// resumeParked runs a parked request's continuation on the loop's leader, and the
// connection's next requests after it as runLoop does.
func (c *conn) resumeParked(fn func() Action) {
	c.inLoop = true
	c.owner.Store(ownerLoop)
	if c.lt.missed {
		// The client's readiness came while the request was parked.
		c.lt.missed, c.lt.drained = false, false
	}
	gone := false
	defer func() {
		p := recover()
		if !gone {
			c.leaveAfterRun(p)
		} else if p != nil {
			panic(p)
		}
	}()
	r := c.req
	a := fn()
	if a != Parked {
		r.parked = false
		r.afterPark(a)
	}
	if r.parked {
		gone = true
		c.parkHere()
		return
	}
	if !r.finished {
		r.finalize(r.errStatus)
	}
	c.endProcess(r)
	c.learn()
	if c.afterRequest() {
		gone = c.run()
	}
}

// post hands a parked request's continuation to the loop's leader.
func (l *eventLoop) post(c *conn, fn func() Action) {
	l.mu.Lock()
	l.resumes = append(l.resumes, parkedResume{c, fn})
	l.mu.Unlock()
	if l.waiting.Load() && l.woken.CompareAndSwap(false, true) {
		l.wake()
	}
}

// Loop is the event loop of a request's connection, for modules whose waits end on
// it: Post runs a function on the loop's leader; Register keeps a socket in its epoll
// set and NewTimer makes a timer of it (loopsock.go). A parked request's wait uses
// them to hold no goroutine.
type Loop struct{ l *eventLoop }

// Loop returns the event loop r's connection belongs to, or nil (HTTP/2, a
// connection without the loop).
func (r *Request) Loop() *Loop {
	c := r.c
	if c == nil || c.lt == nil || c.h2 != nil {
		return nil
	}
	return c.lt.l.pub
}
