// Package pool keeps a worker's idle connections to backends between requests: the
// proxy module's upstream keepalive and Lua cosockets' setkeepalive share it, and one
// sweeper per worker closes the connections whose idle time ran out (nginx arms a
// timer per idle connection; a sweep a second costs one goroutine for the worker, not
// one per connection or per pool). The memc module's connections stay in its
// memcached client's free list, which owns their buffers; the same sweeper sweeps
// them (Register).
//
// A pool holds connections under keys: an upstream's server (proxy), an address or a
// named pool (cosockets). It bounds them per key (lua's pool_size), in all (nginx's
// keepalive N), or both, evicting the least recently pooled, and hands out the most
// recently pooled, whose peer is the least likely to have closed it. A connection is
// checked before it is handed out: its idle time, the hang-up watch (netutil) and,
// when it has been idle for PeekAfter or longer, a peek (netutil.Peeker).
//
// Get and Put take one lock and allocate nothing once a key's list has room.
package pool

import (
	"sync"
	"syscall"
	"time"

	"github.com/spindle-server/spindle/internal/netutil"
)

// Entry is what the pool keeps with each connection; a pooled connection type embeds
// one for its life and reports it through Conn.PoolEntry.
type Entry struct {
	// Raw is the connection's socket (under TLS, the TCP or unix connection), for
	// the liveness checks; nil skips them.
	Raw syscall.RawConn
	// Pooled is when the connection was last put in its pool.
	Pooled time.Time
	// Expires is when the connection's idle time runs out; zero: never.
	Expires time.Time

	watch  netutil.Watched
	peeker netutil.Peeker
}

// HungUp reports whether the hang-up watch saw the peer close the connection.
func (e *Entry) HungUp() bool { return e.watch.HungUp() }

// Conn is a pooled connection: a pointer type that embeds an Entry.
type Conn interface {
	comparable
	// PoolEntry returns the connection's Entry.
	PoolEntry() *Entry
	// ClosePooled closes a connection the pool drops (expired, dead, evicted, or
	// the pool closed).
	ClosePooled()
}

// Options are a pool's settings.
type Options struct {
	// Max bounds the idle connections of all keys together (0: no bound); a put into
	// a full pool closes the least recently pooled connection of any key.
	Max int
	// PeekAfter is how long a connection may have been idle and still be handed out
	// on the strength of the hang-up watch alone; one idle longer is peeked too.
	// 0 peeks at every reuse.
	PeekAfter time.Duration
	// Watch puts pooled connections in the worker's hang-up watch.
	Watch bool
	// Now is the clock for idle times and expiries (nil: time.Now). A worker's
	// coarse clock saves the two clock reads of each Put and Get (~80
	// instructions and a vDSO call each: lua-resty-redis's pooled GET makes both).
	Now func() time.Time
}

// Pool is a worker's idle connections under keys of type K.
type Pool[K comparable, C Conn] struct {
	opt   Options
	watch *netutil.HangupWatch

	mu     sync.Mutex
	lists  map[K]*list[K, C]
	n      int
	closed bool
	swept  bool // registered with the sweeper
}

type list[K comparable, C Conn] struct {
	key  K // the pool's copy, handed back by Get
	size int
	idle []C // least recently pooled first
}

// New returns an empty pool.
func New[K comparable, C Conn](opt Options) *Pool[K, C] {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	p := &Pool[K, C]{opt: opt, lists: map[K]*list[K, C]{}}
	if opt.Watch {
		p.watch = netutil.SharedWatch()
	}
	return p
}

// Get takes the most recently pooled live connection for key and returns it with the
// pool's copy of the key (a caller that built key in a scratch buffer keeps the copy
// instead of allocating its own); ok is false when there is none.
func (p *Pool[K, C]) Get(key K) (c C, stored K, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.lists[key]
	if l == nil {
		return c, stored, false
	}
	now := p.opt.Now()
	for n := len(l.idle); n > 0; n = len(l.idle) {
		x := l.idle[n-1]
		var zero C
		l.idle[n-1] = zero
		l.idle = l.idle[:n-1]
		p.n--
		if p.usable(x.PoolEntry(), now) {
			return x, l.key, true
		}
		p.drop(x)
	}
	return c, stored, false
}

// usable checks a connection taken from its list.
func (p *Pool[K, C]) usable(e *Entry, now time.Time) bool {
	switch {
	case e.watch.HungUp(), !e.Expires.IsZero() && !now.Before(e.Expires):
		return false
	case p.opt.PeekAfter > 0 && e.watch.Watching() && now.Sub(e.Pooled) < p.opt.PeekAfter:
		return true
	}
	return e.peeker.Alive(e.Raw)
}

// drop closes a connection taken out of the pool.
func (p *Pool[K, C]) drop(c C) {
	if p.watch != nil {
		p.watch.Remove(&c.PoolEntry().watch)
	}
	c.ClosePooled()
}

// Forget is told of a connection taken from the pool that its user closes instead of
// putting it back: it leaves the hang-up watch before its descriptor number can be
// reused.
func (p *Pool[K, C]) Forget(c C) {
	if p.watch != nil {
		p.watch.Remove(&c.PoolEntry().watch)
	}
}

// Put pools c under key for at most timeout (0: until the pool closes). size bounds
// key's connections (0: no bound; the first put of a key sets it). A full key or pool
// closes its least recently pooled connection; a closed pool closes c.
func (p *Pool[K, C]) Put(key K, c C, size int, timeout time.Duration) {
	e := c.PoolEntry()
	e.Pooled, e.Expires = p.opt.Now(), time.Time{}
	if timeout > 0 {
		e.Expires = e.Pooled.Add(timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.drop(c)
		return
	}
	l := p.lists[key]
	if l == nil {
		l = &list[K, C]{key: key, size: size}
		p.lists[key] = l
	}
	if p.watch != nil {
		p.watch.Add(&e.watch, e.Raw)
	}
	if l.size > 0 && len(l.idle) >= l.size {
		p.drop(l.removeOldest())
		p.n--
	} else if p.opt.Max > 0 && p.n >= p.opt.Max {
		if old := p.oldestList(); old != nil {
			p.drop(old.removeOldest())
			p.n--
		}
	}
	l.idle = append(l.idle, c)
	p.n++
	if !p.swept {
		p.swept = true
		register(p)
	}
}

func (l *list[K, C]) removeOldest() C {
	c := l.idle[0]
	copy(l.idle, l.idle[1:])
	var zero C
	l.idle[len(l.idle)-1] = zero
	l.idle = l.idle[:len(l.idle)-1]
	return c
}

// oldestList is the list whose least recently pooled connection is the pool's.
func (p *Pool[K, C]) oldestList() *list[K, C] {
	var oldest *list[K, C]
	for _, l := range p.lists {
		if len(l.idle) > 0 && (oldest == nil || l.idle[0].PoolEntry().Pooled.Before(oldest.idle[0].PoolEntry().Pooled)) {
			oldest = l
		}
	}
	return oldest
}

// Sweep closes the connections whose idle time ran out by now (the sweeper calls it
// every second).
func (p *Pool[K, C]) Sweep(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lists {
		keep := l.idle[:0]
		for _, c := range l.idle {
			if e := c.PoolEntry(); !e.Expires.IsZero() && !now.Before(e.Expires) {
				p.drop(c)
				p.n--
				continue
			}
			keep = append(keep, c)
		}
		var zero C
		for i := len(keep); i < len(l.idle); i++ {
			l.idle[i] = zero
		}
		l.idle = keep
	}
}

// Len is the number of idle connections kept.
func (p *Pool[K, C]) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// Close closes every idle connection; connections put later are closed at once.
func (p *Pool[K, C]) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for k, l := range p.lists {
		for _, c := range l.idle {
			p.drop(c)
		}
		delete(p.lists, k)
	}
	p.n = 0
	if p.swept {
		unregister(p)
	}
}
