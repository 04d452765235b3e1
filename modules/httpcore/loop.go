package httpcore

import (
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/spindle-server/spindle/internal/netutil"
	"golang.org/x/sys/unix"
)

// The event loop is nginx's way of serving connections, on Go's runtime. One goroutine,
// the leader, owns an epoll set with the listening sockets and every connection between
// requests: it accepts, reads request heads, and runs requests whose handlers never
// wait inline, writing their responses without switching coroutines. An idle keepalive
// connection costs a small struct, not a goroutine with its stack and buffers.
//
// A request that has to wait (a handler that talks to a backend or sleeps, a client
// that is slow to take the response or to send its body) does not stop the loop: the
// goroutine running it hands the leadership to another goroutine of the pool and goes
// on with the request in blocking style, as its own coroutine, woken by the leader when
// its socket is ready. When the connection is idle again it goes back to the loop.
// Nothing moves between stacks: leading is a role, passed between goroutines.
//
// The loop's epoll descriptor itself sits in Go's poller, so the leader parks like any
// goroutine when there is nothing to do, and the worker's other goroutines (timers,
// backend clients) run meanwhile.

type eventLoop struct {
	e      *Engine
	epfd   int
	evfd   int // eventfd: other goroutines wake the leader through it
	epFile *os.File
	epRC   syscall.RawConn
	events []unix.EpollEvent
	// waitDL: the epoll descriptor's read deadline (Unix nanoseconds), which ends a
	// wait for the next sweep. It and lastScan are integers: time.Time's Sub and Add
	// cost ~350 instructions per pass of the loop, and a keepalive request takes one
	// or more passes (callgrind).
	waitDL int64

	// Owned by the leader.
	batch []unix.EpollEvent // events fetched and not processed yet
	conns map[int32]*conn
	lns   map[int32]*loopListener
	// byFD mirrors conns and lns, indexed by descriptor, for dispatch: two map
	// lookups per event had cost ~100 instructions a request (callgrind,
	// BenchmarkLoopHello). setFD and clearFD keep it in step with the maps.
	byFD     []fdEntry
	paused   bool // accepting stopped (worker_connections reached, or accept failed): listeners disarmed
	draining bool
	lastScan int64 // Unix nanoseconds, coarse

	// Work taken from other goroutines (back, resumes, adds, reaccept) and not done
	// yet. Like batch it belongs to the loop, not to the goroutine leading it: running
	// a connection may make the leader hand its role over (the connection waits, and
	// the goroutine waits with it: a lingering close, a response the client is slow to
	// take), and the next leader goes on with the rest at once. Were the rest to wait
	// for that connection, new TLS connections handed back together after their
	// handshakes in a draining worker would each wait for the lingering close of the
	// one before: 1-3 s in a reload under load, and clients gave up (issue 19).
	takenBack     []*conn
	takenResumes  []parkedResume
	takenAdds     []*loopListener
	takenReaccept bool
	// peakConns: the most connections held since memory was last given back;
	// lastFree: when it was.
	peakConns int
	lastFree  time.Time

	// notified: this pass gave readiness to connections that goroutines hold. The
	// leader lets them run before it parks (runtime.Gosched in lead): a TLS
	// handshake woken by its client's Finished then ends and hands its connection
	// back while the leader is not parked, and needs no wake through the eventfd
	// (its write, its read and an epoll_wait, and the leader's park in the
	// netpoller: openssl s_time -reuse, TLS 1.2, 19.6 -> 14.3 system calls per
	// connection).
	notified bool

	leader atomic.Pointer[leaderToken]
	leadFn func() // l.lead, made once: abdications happen per request
	// pollFn is wait's callback for the epoll descriptor's RawConn.Read, made once:
	// a closure made per wait went to the heap (one allocation each time the loop
	// found nothing to do and parked). waitN is what it fetched.
	pollFn func(fd uintptr) bool
	waitN  int

	// waiting: the leader is about to park or parked; woken: it was woken since. A
	// goroutine handing a connection back wakes the leader only when it must, once.
	waiting atomic.Bool
	woken   atomic.Bool

	// Shared with other goroutines, under mu.
	mu      sync.Mutex
	back    []*conn        // connections handed back by their goroutines
	resumes []parkedResume // parked requests to go on with (Request.Resume)
	posted  []func()       // functions to run on the leader (Loop.Post)

	pub      *Loop
	watchMu  sync.Mutex // socks
	adds     []*loopListener
	reaccept bool // rearm paused listeners: worker_connections freed
	drainReq bool
	expireCh chan struct{} // closed to fail every wait (forced shutdown)
	expired  bool
	done     chan struct{} // closed when the loop has ended
	// sockWatches: sockets that are not the loop's connections, parked by an owner
	// that keeps no goroutine while they are idle (an HTTP/2 connection): the loop
	// calls the function once when the socket is readable (watch), keyed by fd (under
	// mu; Loop.Register's sockets are keyed by id in epoll's Pad). ended: the loop is
	// over and takes no more.
	sockWatches map[int32]func()
	ended       bool

	// Other modules' sockets (Loop.Register: by id, under watchMu) and timers
	// (Loop.NewTimer: under timerMu), loopsock.go.
	socks     []*Sock
	freeSocks []int32
	sockGen   int32
	t0        time.Time // timers' clock: monotonic time since t0
	timerMu   sync.Mutex
	timers    timerHeap
	timerDL   time.Duration // the earliest timer the leader's wait ends for
	timerKick atomic.Bool   // a timer was armed for earlier than that
}

type leaderToken struct{ _ byte }

type loopListener struct {
	fd    int
	ln    *net.TCPListener
	as    *addrServers
	armed bool // in the epoll set with EPOLLIN (not disarmed by a pause)
}

// Connection owners: the loop's leader, or the goroutine serving a request on it.
const (
	ownerLoop int32 = iota
	ownerGoroutine
)

const (
	loopBatch     = 256
	sweepInterval = 250 * time.Millisecond
)

func newEventLoop(e *Engine) (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(evfd)}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	// In Go's poller the epoll descriptor wakes the leader when it has events.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	f := os.NewFile(uintptr(epfd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		unix.Close(evfd)
		return nil, err
	}
	l := &eventLoop{
		e: e, epfd: epfd, evfd: evfd, epFile: f, epRC: rc,
		events:      make([]unix.EpollEvent, loopBatch),
		conns:       map[int32]*conn{},
		lns:         map[int32]*loopListener{},
		sockWatches: map[int32]func(){},
		expireCh:    make(chan struct{}),
		done:        make(chan struct{}),
		t0:          time.Now(),
		timerDL:     maxWhen,
	}
	l.leadFn = l.lead
	l.pollFn = l.poll
	l.pub = &Loop{l}
	workers.Go(l.leadFn)
	return l, nil
}

// addListener gives a listening socket to the loop.
func (l *eventLoop) addListener(ln *net.TCPListener, as *addrServers) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	rc.Control(func(u uintptr) { fd = int(u) })
	l.mu.Lock()
	l.adds = append(l.adds, &loopListener{fd: fd, ln: ln, as: as})
	l.mu.Unlock()
	l.wake()
	return nil
}

func (l *eventLoop) wake() {
	var one = [8]byte{1}
	unix.Write(l.evfd, one[:])
}

// lead runs the loop while this goroutine is the leader.
func (l *eventLoop) lead() {
	me := &leaderToken{}
	l.leader.Store(me)
	for {
		// Events first, then timers, as nginx: a connection whose bytes arrived is
		// read before its timeout is looked at.
		for len(l.batch) > 0 {
			ev := l.batch[0]
			l.batch = l.batch[1:]
			l.dispatch(ev, me)
			if l.leader.Load() != me {
				return
			}
		}
		if l.maintain(me) {
			return
		}
		if l.leader.Load() != me {
			return
		}
		if l.notified {
			l.notified = false
			runtime.Gosched()
		}
		l.batch = l.events[:l.wait()]
	}
}

// abdicate makes the calling goroutine, the leader, give the loop to a new goroutine:
// it is about to wait on behalf of one connection.
func (l *eventLoop) abdicate() {
	l.leader.Store(nil)
	workers.Go(l.leadFn)
}

// wait parks until the epoll set has events (or the next sweep is due) and fetches them.
func (l *eventLoop) wait() int {
	dl := l.waitDL
	if now := coarseNanos(); dl-now < int64(sweepInterval/2) {
		dl = now + int64(sweepInterval)
	}
	if t, ok := l.nextTimer(); ok && t.UnixNano() < dl {
		dl = t.UnixNano()
	}
	if dl != l.waitDL {
		l.waitDL = dl
		l.epFile.SetReadDeadline(time.Unix(0, dl))
	}
	l.waitN = 0
	l.epRC.Read(l.pollFn)
	l.waiting.Store(false)
	return l.waitN
}

// poll is wait's callback (pollFn): done when other goroutines handed work over or
// epoll has events; else the netpoller parks the leader until the epoll descriptor
// is readable.
func (l *eventLoop) poll(fd uintptr) bool {
	l.waiting.Store(true)
	if l.pending() {
		l.waiting.Store(false)
		return true
	}
	l.waitN = epollWait(l.epfd, l.events)
	if l.waitN > 0 {
		l.waiting.Store(false)
		return true
	}
	return false
}

// pending reports work handed over by other goroutines.
func (l *eventLoop) pending() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.back) > 0 || len(l.resumes) > 0 || len(l.posted) > 0 || len(l.adds) > 0 || l.reaccept || l.drainReq && !l.draining || l.expired ||
		l.timerKick.Load()
}

func epollWait(epfd int, events []unix.EpollEvent) int {
	for {
		n, err := rawEpollWait(epfd, events)
		if err == unix.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		return n
	}
}

// dispatch routes one epoll event: the loop's wakeup, a listening socket's new
// connections, or a connection's readiness.
func (l *eventLoop) dispatch(ev unix.EpollEvent, me *leaderToken) {
	switch fd := ev.Fd; {
	case ev.Pad != 0:
		l.sockEvent(&ev)
	case int(fd) == l.evfd:
		var buf [8]byte
		unix.Read(l.evfd, buf[:])
		l.woken.Store(false)
	default:
		at := l.atFD(fd)
		if at.ln != nil {
			l.accept(at.ln)
			return
		}
		c := at.c
		if c == nil {
			if fn := l.takeWatch(fd); fn != nil {
				fn()
			}
			return
		}
		if c.owner.Load() != ownerLoop {
			c.lt.missed = true
			c.lt.notify()
			l.notified = true
			return
		}
		if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
			return // room to write: nothing waits for it while the loop holds the socket
		}
		c.lt.drained = false
		c.runLoop()
	}
}

// maintain takes in what other goroutines handed over, accepts, sweeps timers and
// drains. It reports true when the loop is over.
func (l *eventLoop) maintain(me *leaderToken) bool {
	l.runTimers()
	l.mu.Lock()
	l.takenBack = appendTaken(l.takenBack, l.back)
	l.takenResumes = appendTaken(l.takenResumes, l.resumes)
	l.takenAdds = appendTaken(l.takenAdds, l.adds)
	l.takenReaccept = l.takenReaccept || l.reaccept
	drain, expired, posted := l.drainReq, l.expired, l.posted
	l.back, l.adds, l.reaccept, l.resumes, l.posted = nil, nil, false, nil, nil
	l.mu.Unlock()
	for _, fn := range posted {
		fn() // they do not wait (Loop.Post)
	}
	for len(l.takenResumes) > 0 {
		pr := l.takenResumes[0]
		l.takenResumes[0] = parkedResume{}
		l.takenResumes = l.takenResumes[1:]
		pr.c.resumeParked(pr.fn)
		if l.leader.Load() != me {
			// The continuation waits on the request's behalf: the new leader has
			// taken the rest.
			return true
		}
	}
	for _, ln := range l.takenAdds {
		if l.draining {
			ln.ln.Close()
			continue
		}
		l.lns[int32(ln.fd)] = ln
		l.setFD(ln.fd, fdEntry{ln: ln})
		// Level-triggered, as nginx's listening sockets: without multi_accept the loop
		// takes one connection per report and epoll reports the rest at the next wait.
		ln.armed = !l.paused
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ln.fd, &unix.EpollEvent{Events: l.listenEvents(), Fd: int32(ln.fd)})
	}
	l.takenAdds = nil
	for len(l.takenBack) > 0 {
		c := l.takenBack[0]
		l.takenBack[0] = nil
		l.takenBack = l.takenBack[1:]
		if c.closing {
			l.destroy(c)
			continue
		}
		if c.hijacked {
			l.forget(c)
			continue
		}
		c.owner.Store(ownerLoop)
		// Readiness that came while a goroutine had the connection went to that
		// goroutine: unless it read the socket dry since, look again now. (TLS:
		// always, for records crypto/tls holds; see tls.go.)
		if !c.lt.missed && c.lt.drained && c.tls == nil && (c.br == nil || c.br.Buffered() == 0) {
			continue
		}
		c.lt.missed = false
		c.lt.drained = false
		c.runLoop()
		if l.leader.Load() != me {
			// Still ours to finish: the new leader has taken the rest.
			return true
		}
	}
	reaccept := l.takenReaccept
	l.takenReaccept = false
	if drain && !l.draining {
		l.draining = true
		for fd, ln := range l.lns {
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ln.fd, nil)
			ln.ln.Close()
			delete(l.lns, fd)
			l.clearFD(int(fd))
		}
	}
	if expired {
		for _, c := range l.conns {
			if c.owner.Load() == ownerLoop {
				l.destroy(c)
			}
		}
	}
	swept := false
	if now := coarseNanos(); now-l.lastScan >= int64(sweepInterval) {
		l.lastScan = now
		swept = true
		l.sweep(time.Unix(0, now))
	}
	// A connection closed, or time passed since accept failed (the sweep also
	// catches places freed by hijacked connections, which the loop does not close).
	if l.paused && (reaccept || swept) {
		l.resumeAccept()
	}
	if l.draining && len(l.conns) == 0 {
		l.leader.Store(nil)
		l.mu.Lock()
		l.ended = true
		watches := l.sockWatches
		l.sockWatches = nil
		l.mu.Unlock()
		unix.Close(l.evfd)
		l.epFile.Close()
		close(l.done)
		// Parked sockets go back to their owners, which wait on goroutines from now on.
		for _, fn := range watches {
			fn()
		}
		return true
	}
	return false
}

// appendTaken adds what other goroutines handed over to what the leader has not done
// yet, reusing the handed-over slice when nothing is left.
func appendTaken[T any](taken, more []T) []T {
	if len(taken) == 0 {
		return more
	}
	return append(taken, more...)
}

// sweep applies timeouts to the connections the loop holds: the keepalive and header
// timeouts, and at the end of a drain the grace given to idle connections. Every
// connection that expired is closed in the same sweep: nothing here waits (no response
// goes to a client that stopped sending, and no lingering close), so the sweep never
// hands the loop over, however many expire at once.
func (l *eventLoop) sweep(now time.Time) {
	l.giveBackMemory(now)
	grace := l.e.idleGrace
	for _, c := range l.conns {
		if c.owner.Load() != ownerLoop {
			continue
		}
		// A TLS connection's head may have started in a record crypto/tls holds
		// whole or in part (rawInput), with nothing in br yet.
		idle := (c.br == nil || c.br.Buffered() == 0) && (c.tls == nil || !tlsHolds(c.tls.tc))
		switch {
		case c.lt.deadline != 0 && now.UnixNano() > c.lt.deadline:
			if now.UnixNano()-c.lt.deadline < int64(time.Second) && c.lt.unread() {
				// Bytes arrived that the loop has not read yet (it was busy): as
				// nginx handles events before timers, they are read first (for a
				// second at most: a connection whose bytes are never read still
				// ends).
				continue
			}
			if c.proxyWanted {
				// Still without its PROXY protocol header: closed without an answer,
				// as nginx closes it.
			} else if !idle {
				c.headTimedOut()
			} else if c.requests == 0 && c.e.cfg.log.Enabled(LogInfo) {
				c.e.cfg.log.Infof("*%d client timed out (110: Connection timed out) while waiting for request, client: %s", c.id, c.remoteAddr())
			}
			l.destroy(c)
		case l.draining && idle && c.requests > 0 && now.Sub(time.Unix(0, c.idleSince.Load())) >= grace:
			// Only a connection that has had a request: a new one, as nginx's (its
			// c->idle is set by keepalive, not at accept), keeps client_header_timeout,
			// for its client connected to send a request and would lose it (clients
			// send again on a reused connection only). Closing new ones after the grace
			// (here, and in peekByte before a TLS handshake) lost Go's HTTP/2 client
			// requests in reloads 1 s apart: its redials after each GOAWAY (one per
			// waiting request) were accepted by a worker that then drained, and on a
			// loaded machine thousands sent no ClientHello within 2 s: bench.sh reload
			// counted 2,383-2,528 of 11,400-11,800 requests failed with EOF; none failed
			// with EOF after, in the 5 runs of 20 reloads whose errors were classified
			// (issue 19).
			l.destroy(c)
		}
	}
}

// After a burst of connections (an attack of slow clients, a spike) the worker's heap
// shrinks at the next collection, but an idle worker allocates little and collects
// rarely (the runtime forces one every two minutes), and the scavenger returns pages
// slowly: 1,000 slowloris connections left their memory in the worker's RSS after
// they went. So when a burst of at least burstConns connections has shrunk to a
// quarter, the worker collects and returns its free memory at once, at most every
// freeInterval (1,000 slowloris connections: RSS 14.3 MB idle, 20.3 MB with them,
// 15.2 MB a few seconds after they went).
const (
	burstConns   = 256
	freeInterval = 10 * time.Second
)

// giveBackMemory returns the worker's free memory to the system after a burst of
// connections has gone (see burstConns).
func (l *eventLoop) giveBackMemory(now time.Time) {
	n := len(l.conns)
	l.peakConns = max(l.peakConns, n)
	if l.peakConns < burstConns || n > l.peakConns/4 || now.Sub(l.lastFree) < freeInterval {
		return
	}
	l.peakConns, l.lastFree = n, now
	// On its own goroutine: the loop goes on while the collector runs. Two
	// collections: the first moves the buffer pools' contents to their victim
	// caches, the second (FreeOSMemory's) frees them and returns the pages.
	go func() {
		runtime.GC()
		debug.FreeOSMemory()
	}()
}

// reuseSilence is how long a connection that has not sent a whole request head yet
// (nothing, or part of one) must have been silent before a full worker may close it
// for a new client; idle keepalive connections are reclaimable at once, as nginx's
// reusable connections. nginx reclaims a new connection at once too, but a client
// that just connected sends its head within a round trip: closing it would only move
// the refusal from one new client to another (a burst of new connections on a worker
// with a few worker_connections). A head that stopped arriving for a second is a
// slowloris client more likely than a slow network.
const reuseSilence = time.Second

// reuseMax bounds the connections closed per reclaim, as ngx_drain_connections does.
const reuseMax = 32

// reclaim closes the oldest reclaimable connections when the worker is full, as
// nginx's ngx_drain_connections: up to reuseMax, an eighth of those reclaimable, at
// least one. It reports how many it closed.
func (l *eventLoop) reclaim(now time.Time) int {
	type cand struct {
		c     *conn
		since int64
	}
	var cands []cand
	silent := now.Add(-reuseSilence).UnixNano()
	for _, c := range l.conns {
		if c.owner.Load() != ownerLoop {
			continue
		}
		since := c.idleSince.Load()
		if (c.requests == 0 || c.br != nil && c.br.Buffered() > 0) && since > silent {
			continue // a head still arriving
		}
		cands = append(cands, cand{c, since})
	}
	if len(cands) == 0 {
		return 0
	}
	e := l.e
	if sec := now.Unix(); e.reuseLogged.Swap(sec) != sec {
		e.cfg.log.Warnf("%d worker_connections are not enough, reusing connections", cap(e.sem))
	}
	n := max(min(reuseMax, len(cands)/8), 1)
	sort.Slice(cands, func(i, j int) bool { return cands[i].since < cands[j].since })
	for _, k := range cands[:n] {
		l.destroy(k.c)
	}
	return n
}

// accept takes a connection from a listening socket that epoll reported, or with
// multi_accept every connection it has, until worker_connections is reached.
func (l *eventLoop) accept(ln *loopListener) {
	e := l.e
	for {
		select {
		case e.sem <- struct{}{}:
		default:
			if l.reclaim(coarseNow()) > 0 {
				continue
			}
			l.pauseAccept()
			if !e.connsLimitLogged.Swap(true) {
				e.cfg.log.Alertf("%d worker_connections are not enough, new connections wait in the listen queue", cap(e.sem))
			}
			return
		}
		fd, peer, err := accept4(ln.fd)
		if err != nil {
			<-e.sem
			switch err {
			case unix.EAGAIN, unix.EINTR:
			case unix.ECONNABORTED:
				continue
			default:
				if e.onAcceptErrorLogged.Add(1) < 100 {
					e.cfg.log.Alertf("accept() failed: %v", err)
				}
				// EMFILE and friends: try again at the next sweep, as nginx disables
				// accept events for a while.
				l.pauseAccept()
			}
			return
		}
		e.accepted.Add(1)
		e.handled.Add(1)
		c := newLoopConn(e, l, fd, peer, ln)
		if err := rawEpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{
			Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd),
		}); err != nil {
			rawClose(fd)
			c.release()
			continue
		}
		l.conns[int32(fd)] = c
		l.setFD(fd, fdEntry{c: c})
		// client_header_timeout counts from the accept, as nginx's post-accept timer:
		// a client that connects and sends nothing is closed when it ends.
		c.t.setReadTimeout(CoreConfOf(ln.as.def.root).ClientHeaderTimeout)
		c.headDeadline = true
		if ln.as.tls != nil {
			c.startTLS(ln.as.tls) // the loop gets it back after the handshake
		}
		// The request is read when epoll reports it, as nginx does: the loop accepts
		// as soon as the handshake ends, usually before the client's first segment, so
		// a read right away mostly found nothing (one system call more per connection
		// with Connection: close). Adding a socket that has data reports it at once.
		if !e.opts.MultiAccept {
			// One per report, as nginx without multi_accept: looping until EAGAIN
			// cost an accept4 that fails for every few connections.
			return
		}
	}
}

// listenEvents is what a listening socket waits for in the epoll set.
func (l *eventLoop) listenEvents() uint32 {
	if l.paused {
		return 0
	}
	return unix.EPOLLIN
}

// pauseAccept takes the listening sockets out of epoll's reports (their connections
// wait in the listen queues): level-triggered, they would be reported at every wait.
func (l *eventLoop) pauseAccept() {
	l.paused = true
	for _, ln := range l.lns {
		if ln.armed {
			ln.armed = false
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, ln.fd, &unix.EpollEvent{Fd: int32(ln.fd)})
		}
	}
}

// resumeAccept puts the listening sockets back: epoll reports those with connections
// waiting at the next wait.
func (l *eventLoop) resumeAccept() {
	l.paused = false
	for _, ln := range l.lns {
		if !ln.armed {
			ln.armed = true
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, ln.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ln.fd)})
		}
	}
}

// destroy closes a connection held by the loop.
func (l *eventLoop) destroy(c *conn) {
	if _, ok := l.conns[int32(c.lt.fd)]; !ok {
		return
	}
	delete(l.conns, int32(c.lt.fd))
	l.clearFD(c.lt.fd)
	rawClose(c.lt.fd)
	c.releaseState()
	c.release()
	if l.paused && !l.draining {
		// A place under worker_connections freed: the next maintain rearms the
		// listening sockets.
		l.mu.Lock()
		l.reaccept = true
		l.mu.Unlock()
	}
}

// forget lets go of a hijacked connection: the hijacker has a duplicate of the socket
// and releases the connection when it closes it.
func (l *eventLoop) forget(c *conn) {
	if _, ok := l.conns[int32(c.lt.fd)]; !ok {
		return
	}
	delete(l.conns, int32(c.lt.fd))
	l.clearFD(c.lt.fd)
	rawClose(c.lt.fd)
	c.release()
}

// fdEntry is what a descriptor is to the loop: a connection, a listening socket or
// neither.
type fdEntry struct {
	c  *conn
	ln *loopListener
}

func (l *eventLoop) setFD(fd int, e fdEntry) {
	for fd >= len(l.byFD) {
		l.byFD = append(l.byFD, fdEntry{})
	}
	l.byFD[fd] = e
}

func (l *eventLoop) clearFD(fd int) {
	if fd >= 0 && fd < len(l.byFD) {
		l.byFD[fd] = fdEntry{}
	}
}

// atFD is byFD[fd], or none.
func (l *eventLoop) atFD(fd int32) fdEntry {
	if fd >= 0 && int(fd) < len(l.byFD) {
		return l.byFD[fd]
	}
	return fdEntry{}
}

// drain asks the loop to stop accepting and to end once its connections are gone.
func (l *eventLoop) drain() {
	l.mu.Lock()
	l.drainReq = true
	l.mu.Unlock()
	l.wake()
}

// expire makes every connection fail its waits and the loop close what it holds.
func (l *eventLoop) expire() {
	l.mu.Lock()
	if !l.expired {
		l.expired = true
		close(l.expireCh)
	}
	l.mu.Unlock()
	l.wake()
}

// watch parks a socket that is not one of the loop's connections: the loop calls fn
// once, from the leader, when the socket has bytes to read or is hung up (fn must not
// wait: it starts a goroutine). Until then the owner keeps no goroutine on it. It
// reports false when the loop has ended or cannot watch the socket: the owner waits
// itself. unwatch takes the socket back; an owner that closes a watched socket must
// take it back first.
func (l *eventLoop) watch(fd int, fn func()) bool {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return false
	}
	l.sockWatches[int32(fd)] = fn
	l.mu.Unlock()
	// One-shot: reported once, then disarmed until watched again (EPOLL_CTL_MOD), so
	// that a socket its owner reads on a goroutine brings the leader no more events.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
	err := rawEpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	if err == unix.ENOENT {
		err = rawEpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	}
	if err != nil {
		// Not watched: the owner goes on, unless something took it back already (and
		// runs it).
		return !l.unwatch(fd)
	}
	return true
}

// unwatch takes a watched socket back from the loop: true when fn will not be called
// (the caller owns the socket again), false when it was not watched or fn was called.
func (l *eventLoop) unwatch(fd int) bool {
	return l.takeWatch(int32(fd)) != nil
}

func (l *eventLoop) takeWatch(fd int32) func() {
	l.mu.Lock()
	fn := l.sockWatches[fd]
	delete(l.sockWatches, fd)
	l.mu.Unlock()
	return fn
}

// handBack returns a connection to the loop: idle again, or to be closed.
func (l *eventLoop) handBack(c *conn) {
	l.mu.Lock()
	l.back = append(l.back, c)
	l.mu.Unlock()
	// The leader looks at the list before it parks (after announcing it in waiting):
	// a wake is needed only if it may have parked, and one is enough.
	if l.waiting.Load() && l.woken.CompareAndSwap(false, true) {
		l.wake()
	}
}

// loopTransport is a socket owned by the event loop.
type loopTransport struct {
	c     *conn
	l     *eventLoop
	fd    int
	peer  netip.AddrPort
	ready chan struct{} // readiness, for the goroutine that has the connection
	// drained: the last read got less than it asked for, so the socket had nothing
	// more; with edge-triggered epoll, more data brings a new event. Until then a read
	// for a request head would only return EAGAIN: nginx skips it, and so does the loop.
	drained bool
	// missed: readiness came while a goroutine had the connection (leader only).
	missed bool
	// wrote, nodelay: TCP_NODELAY is set before a connection's second write, as nginx
	// sets it when a connection turns keepalive. Nagle's algorithm holds a small
	// segment back only while an earlier small one is unacknowledged, so a
	// connection that writes once (Connection: close) never needs the system call.
	wrote, nodelay bool
	deadline       int64 // when the current read wait ends (unix nanoseconds, coarse)
	// until, when set (unix nanoseconds), ends every wait of Read and Write whatever
	// their timeouts: the TLS handshake's one deadline (serveTLS).
	until    int64
	rtimeout time.Duration
	wtimeout time.Duration
	raddr    string
	laddr    string
}

func newLoopConn(e *Engine, l *eventLoop, fd int, peer netip.AddrPort, ln *loopListener) *conn {
	return newConn(e, nil, ln.as, &loopTransport{l: l, fd: fd, peer: peer})
}

// accept4 is unix.Accept4 without the getsockopt(SO_PROTOCOL) it makes on the
// listening socket for every connection (to tell L2TP sockets apart), and raw (see
// rawClose): the listening socket is non-blocking.
func accept4(lfd int) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	fd, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	var peer netip.AddrPort
	switch rsa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		peer = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		peer = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(p[0])<<8|uint16(p[1]))
	}
	return int(fd), peer, nil
}

// beforeWrite sets TCP_NODELAY before the connection's second write (see wrote).
func (t *loopTransport) beforeWrite() {
	if t.nodelay {
		return
	}
	if !t.wrote {
		t.wrote = true
		return
	}
	rawSetsockoptInt(t.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	t.nodelay = true
}

// unread reports whether the socket has bytes waiting to be read.
func (t *loopTransport) unread() bool {
	var b [1]byte
	n, _, err := unix.Recvfrom(t.fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return err == nil && n > 0
}

// notify passes readiness to the goroutine that has the connection.
func (t *loopTransport) notify() {
	if t.ready == nil {
		return
	}
	select {
	case t.ready <- struct{}{}:
	default:
	}
}

func (t *loopTransport) setReadTimeout(d time.Duration) {
	t.rtimeout = d
	t.deadline = coarseNanos() + int64(d)
}

func (t *loopTransport) setWriteTimeout(d time.Duration) { t.wtimeout = d }

// waitReady waits for readiness after EAGAIN: the loop's leader first hands its role
// over if it is the one waiting.
func (t *loopTransport) waitReady(d time.Duration) error {
	if d <= 0 {
		d = time.Hour
	}
	if t.until != 0 {
		left := time.Duration(t.until - time.Now().UnixNano())
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		d = min(d, left)
	}
	c := t.c
	if c.inLoop {
		c.leaveLoop()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-t.ready:
		return nil
	case <-timer.C:
		return os.ErrDeadlineExceeded
	case <-t.l.expireCh:
		return os.ErrDeadlineExceeded
	}
}

func (t *loopTransport) Read(p []byte) (int, error) {
	if t.drained && t.c.readingHead {
		return 0, errWouldBlock
	}
	for {
		n, err := netutil.RawRead(uintptr(t.fd), p)
		switch {
		case err == nil && n > 0:
			t.drained = n < len(p)
			return n, nil
		case err == nil:
			if len(p) == 0 {
				return 0, nil
			}
			return 0, io.EOF
		case err == syscall.EINTR:
		case err == syscall.EAGAIN:
			t.drained = true
			if t.c.readingHead {
				// Between requests, and while a head trickles in, the loop holds the
				// connection: it comes back when more arrives.
				return 0, errWouldBlock
			}
			if err := t.waitReady(t.rtimeout); err != nil {
				return 0, err
			}
		default:
			return 0, err
		}
	}
}

func (t *loopTransport) Write(p []byte) (int, error) {
	t.beforeWrite()
	written := 0
	for written < len(p) {
		n, err := netutil.RawWrite(uintptr(t.fd), p[written:])
		if n > 0 {
			written += n
		}
		switch err {
		case nil, syscall.EINTR:
		case syscall.EAGAIN:
			if err := t.waitReady(t.wtimeout); err != nil {
				return written, err
			}
		default:
			return written, err
		}
	}
	return written, nil
}

func (t *loopTransport) canSendFile() bool { return true }

func (t *loopTransport) sendFile(f *os.File, offset, length int64) (int64, error) {
	t.beforeWrite()
	fc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var written int64
	var serr error
	cerr := fc.Control(func(infd uintptr) {
		for written < length {
			n, e := sendfileOnce(uintptr(t.fd), infd, offset+written, length-written)
			written += n
			switch e {
			case nil:
				if n == 0 {
					return // end of file
				}
			case syscall.EINTR:
			case syscall.EAGAIN:
				if err := t.waitReady(t.wtimeout); err != nil {
					serr = err
					return
				}
			default:
				serr = e
				return
			}
		}
	})
	if serr == nil {
		serr = cerr
	}
	return written, serr
}

func (t *loopTransport) remoteAddr() string {
	if t.raddr == "" && t.peer.IsValid() {
		t.raddr = t.peer.String()
	}
	return t.raddr
}

func (t *loopTransport) localAddr() string {
	if t.laddr == "" {
		if sa, err := unix.Getsockname(t.fd); err == nil {
			t.laddr = sockaddrString(sa)
		}
	}
	return t.laddr
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.IP(a.Addr[:]).String() + ":" + strconv.Itoa(a.Port)
	case *unix.SockaddrInet6:
		return "[" + net.IP(a.Addr[:]).String() + "]:" + strconv.Itoa(a.Port)
	}
	return ""
}

// wakeIdle is the loop's business: it closes idle connections at the end of a drain.
func (t *loopTransport) wakeIdle() {}

func (t *loopTransport) expire() { t.l.expire() }

func (t *loopTransport) linger(d time.Duration) {
	unix.Shutdown(t.fd, unix.SHUT_WR)
	t.rtimeout = d
	deadline := time.Now().Add(d)
	var buf [4096]byte
	total := 0
	for total < 1<<20 && time.Now().Before(deadline) {
		n, err := t.Read(buf[:])
		total += n
		if err != nil {
			return
		}
	}
}

// close hands the socket back to the loop, which closes it: only the leader may let
// its descriptor number be reused.
func (t *loopTransport) close() error {
	c := t.c
	c.closing = true
	if c.inLoop {
		t.l.destroy(c)
		return nil
	}
	t.l.handBack(c)
	return nil
}

// netConn takes the socket out of the loop for a hijacker: a duplicate of the
// descriptor becomes a net.Conn in Go's poller, and the loop closes its own.
func (t *loopTransport) netConn() (net.Conn, error) {
	dup, err := unix.FcntlInt(uintptr(t.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "hijacked")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	unix.EpollCtl(t.l.epfd, unix.EPOLL_CTL_DEL, t.fd, nil)
	return nc, nil
}
