package httpcore

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Sockets and timers of other modules on the loop, as nginx keeps a backend's
// connection in its event loop and its timeouts in the loop's timer tree.
//
// A Sock stays in the epoll set from Register until Close, edge-triggered for reading
// and writing at once: a wait costs no epoll_ctl (Loop.Watch adds and deletes its
// descriptor for every wait, two system calls). The loop counts the readiness reports
// of each side; an owner that found a side dry waits for the next report, and one
// that knows no report came since it found a side dry need not try the socket at all
// (nginx's rev->ready: no read that only returns EAGAIN).
//
// A Timer is a deadline in the loop's own heap, which the leader checks once per
// iteration (the loop's epoll wait ends at the earliest): arming and stopping one
// costs neither a runtime timer nor, when it fires, a goroutine and a post back to the
// loop.

// Sock is a descriptor its owner keeps in the loop's epoll set (Loop.Register).
type Sock struct {
	l   *eventLoop
	fd  int
	id  int32 // its place in the loop's table, as -id in epoll's Pad
	gen int32 // in epoll's Fd: an event of a closed Sock whose place was reused is ignored

	// rev and wev count the readiness reports of each side; hup: the peer ended its
	// side or the socket failed (nginx's pending_eof): a read no longer waits.
	rev, wev atomic.Uint32
	hup      atomic.Bool
	mu       sync.Mutex
	onRead   func()
	onWrite  func()
}

// Register puts fd in the loop's epoll set until Close; fd must stay open until
// then (or be closed by Close's caller right after it).
func (lp *Loop) Register(fd int) (*Sock, error) {
	l := lp.l
	s := &Sock{l: l, fd: fd}
	l.watchMu.Lock()
	if n := len(l.freeSocks); n > 0 {
		s.id = l.freeSocks[n-1]
		l.freeSocks = l.freeSocks[:n-1]
		l.socks[s.id] = s
	} else {
		if len(l.socks) == 0 {
			l.socks = append(l.socks, nil) // id 0: not a Sock
		}
		s.id = int32(len(l.socks))
		l.socks = append(l.socks, s)
	}
	l.sockGen++
	s.gen = l.sockGen
	l.watchMu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: s.gen, Pad: -s.id}
	if err := rawEpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		s.forget()
		return nil, err
	}
	return s, nil
}

// Loop is the loop s is registered with.
func (s *Sock) Loop() *Loop { return s.l.pub }

// FD is s's descriptor.
func (s *Sock) FD() int { return s.fd }

// ReadGen is the count of s's read readiness reports, taken before a read: a read that
// finds the socket dry waits with it (WaitRead).
func (s *Sock) ReadGen() uint32 { return s.rev.Load() }

// HungUp reports that the peer ended its side of the connection, or the socket
// failed: reads return at once (the end, or the error) from then on.
func (s *Sock) HungUp() bool { return s.hup.Load() }

// WriteGen is ReadGen for writing.
func (s *Sock) WriteGen() uint32 { return s.wev.Load() }

// WaitRead makes the leader call fn once s reports readiness for reading after the
// report gen counts (fn runs on the leader, which it must not hold up: it may resume
// a parked request with Request.ResumeHere). It reports false, without keeping fn,
// when that report came already: the caller tries the socket again. A Sock has one
// read waiter at a time.
func (s *Sock) WaitRead(gen uint32, fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rev.Load() != gen {
		return false
	}
	s.onRead = fn
	return true
}

// WaitWrite is WaitRead for writing.
func (s *Sock) WaitWrite(gen uint32, fn func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wev.Load() != gen {
		return false
	}
	s.onWrite = fn
	return true
}

// CancelRead drops the read waiter: true when it will not be called.
func (s *Sock) CancelRead() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.onRead != nil
	s.onRead = nil
	return ok
}

// CancelWrite drops the write waiter: true when it will not be called.
func (s *Sock) CancelWrite() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.onWrite != nil
	s.onWrite = nil
	return ok
}

// Close takes s out of the loop, its waiters dropped. closing: the caller closes
// the descriptor right after, which takes it out of the epoll set (no epoll_ctl).
func (s *Sock) Close(closing bool) {
	s.mu.Lock()
	s.onRead, s.onWrite = nil, nil
	s.mu.Unlock()
	if !s.forget() {
		return
	}
	if closing {
		return
	}
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended { // else its epoll descriptor is closed
		rawEpollCtl(l.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
	}
}

// forget frees s's place in the table: false if it was free already.
func (s *Sock) forget() bool {
	l := s.l
	l.watchMu.Lock()
	defer l.watchMu.Unlock()
	if int(s.id) >= len(l.socks) || l.socks[s.id] != s {
		return false
	}
	l.socks[s.id] = nil
	l.freeSocks = append(l.freeSocks, s.id)
	return true
}

// sockEvent counts a Sock's readiness and calls its waiters (leader only).
func (l *eventLoop) sockEvent(ev *unix.EpollEvent) {
	id := -ev.Pad
	l.watchMu.Lock()
	var s *Sock
	if int(id) < len(l.socks) {
		s = l.socks[id]
	}
	l.watchMu.Unlock()
	if s == nil || s.gen != ev.Fd {
		return
	}
	failed := ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0
	readable := failed || ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0
	writable := failed || ev.Events&unix.EPOLLOUT != 0
	var rfn, wfn func()
	if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.hup.Store(true)
	}
	s.mu.Lock()
	if readable {
		s.rev.Add(1)
		rfn, s.onRead = s.onRead, nil
	}
	if writable {
		s.wev.Add(1)
		wfn, s.onWrite = s.onWrite, nil
	}
	s.mu.Unlock()
	if wfn != nil {
		wfn()
	}
	if rfn != nil {
		rfn()
	}
}

// Timer is a function the loop's leader calls at a deadline (Loop.AfterFunc).
type Timer struct {
	l     *eventLoop
	when  time.Duration // since l.t0: its place in the heap
	due   time.Duration // when fn runs: when, or later for a lazy Reset
	armed bool          // fn runs at due (under l.timerMu)
	i     int           // in the heap; -1: not in it
	fn    func()
}

type timerHeap []*Timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].when < h[j].when }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].i, h[j].i = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*Timer)
	t.i = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.i = -1
	return t
}

// NewTimer makes a timer of fn, not armed: Reset arms it. fn runs on the loop's leader
// and must not wait; it may resume a parked request (Request.Resume).
func (lp *Loop) NewTimer(fn func()) *Timer { return &Timer{l: lp.l, i: -1, fn: fn} }

// Reset arms t to fire in d (again, if it was armed or fired).
//
// Lazy, as nginx's timers (NGX_TIMER_LAZY_DELAY): a timer still in the heap for an
// earlier time (armed, or left there by Pause) keeps its place, and runTimers puts it
// back for its new time when the old one comes. A cosocket's wait (a Reset, then a
// Pause when the reply comes) thus costs no heap operation while its socket is used
// more often than its timeout: lua-resty-redis's pooled GET under h2load -c100 spent
// ~720 instructions per request in heap.Push and heap.Remove (callgrind).
func (t *Timer) Reset(d time.Duration) {
	l := t.l
	when := time.Since(l.t0) + d
	l.timerMu.Lock()
	t.due, t.armed = when, true
	if t.i >= 0 && t.when <= when {
		l.timerMu.Unlock()
		return
	}
	t.when = when
	if t.i >= 0 {
		heap.Fix(&l.timers, t.i)
	} else {
		heap.Push(&l.timers, t)
	}
	kick := when < l.timerDL
	if kick {
		// Before the deadline of the leader's wait: the wait is made shorter (see
		// eventLoop.pending).
		l.timerDL = when
		l.timerKick.Store(true)
	}
	l.timerMu.Unlock()
	if kick && l.waiting.Load() && l.woken.CompareAndSwap(false, true) {
		l.wake()
	}
}

// Stop disarms t and takes it out of the heap: true when its function will not run
// for the last Reset.
func (t *Timer) Stop() bool {
	l := t.l
	l.timerMu.Lock()
	defer l.timerMu.Unlock()
	armed := t.armed
	t.armed = false
	if t.i >= 0 {
		heap.Remove(&l.timers, t.i)
	}
	return armed
}

// Pause disarms t as Stop does, but leaves it in the heap until its time, for a
// timer that is Reset again soon (see Reset); runTimers drops it then. A timer that
// will not be Reset again should be Stopped.
func (t *Timer) Pause() {
	l := t.l
	l.timerMu.Lock()
	t.armed = false
	l.timerMu.Unlock()
}

// runTimers calls the functions of the timers that are due (leader only).
func (l *eventLoop) runTimers() {
	l.timerMu.Lock()
	if len(l.timers) > 0 {
		now := time.Since(l.t0)
		for len(l.timers) > 0 && l.timers[0].when <= now {
			t := heap.Pop(&l.timers).(*Timer)
			switch {
			case !t.armed:
				// Paused: dropped.
			case t.due > now:
				// Reset lazily to a later time: back in for it.
				t.when = t.due
				heap.Push(&l.timers, t)
			default:
				t.armed = false
				l.timerMu.Unlock()
				t.fn()
				l.timerMu.Lock()
			}
		}
	}
	l.timerMu.Unlock()
}

// nextTimer is when the leader's wait must end for the earliest timer (false: no
// timer); from here on, a timer armed for earlier kicks the wait.
func (l *eventLoop) nextTimer() (time.Time, bool) {
	l.timerMu.Lock()
	defer l.timerMu.Unlock()
	l.timerKick.Store(false)
	if len(l.timers) == 0 {
		l.timerDL = maxWhen
		return time.Time{}, false
	}
	l.timerDL = l.timers[0].when
	return l.t0.Add(l.timerDL), true
}

const maxWhen = time.Duration(1<<63 - 1)
