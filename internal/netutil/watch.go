package netutil

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// HangupWatch learns from the kernel when the peer of an idle pooled connection
// closes or resets it, so that taking a recently pooled connection from its pool
// costs no system call. nginx learns the same from the read event of each idle
// keepalive connection in its event loop; connections in Go's poller tell no one
// while nobody reads, so without the watch every reuse began with a peek (one
// system call of five per request through lua-resty-redis).
//
// Each connection added once stays in an epoll set of the watch for its whole life,
// for EPOLLRDHUP only: a peer's FIN or RST is an event, the data of the replies the
// connection carries while in use is not (the kernel does not even wake the set for
// it). A goroutine waits for the set's events in Go's poller and marks the
// connections (Watched.HungUp); a connection pooled a while ago is still peeked
// (Peeker) for what only a peek sees, data nobody asked for.
type HangupWatch struct {
	epfd int
	f    *os.File // epfd in Go's poller
	rc   syscall.RawConn

	mu    sync.Mutex
	conns map[int32]*Watched // by descriptor
	gen   uint32
}

// Watched is a connection's place in a HangupWatch; a pooled connection embeds one.
type Watched struct {
	watched bool
	fd      int32
	gen     uint32
	hup     atomic.Bool
}

// HungUp reports whether the watch saw the peer close or reset the connection.
func (w *Watched) HungUp() bool { return w.hup.Load() }

var shared struct {
	once sync.Once
	w    *HangupWatch
}

// SharedWatch returns the process's watch, started at the first call: one epoll set
// and one goroutine per worker, whichever pools use it. Nil if the system refuses
// one (connections are then peeked).
func SharedWatch() *HangupWatch {
	shared.once.Do(func() { shared.w = NewHangupWatch() })
	return shared.w
}

// NewHangupWatch starts a watch of its own (tests), or returns nil if the system
// refuses one.
func NewHangupWatch() *HangupWatch {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	// Non-blocking: the set's descriptor is readable in Go's poller when it has events.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil
	}
	f := os.NewFile(uintptr(epfd), "hangup-watch")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	w := &HangupWatch{epfd: epfd, f: f, rc: rc, conns: map[int32]*Watched{}}
	go w.run()
	return w
}

// Add watches the connection of raw socket rc, once in its life: a connection
// already watched costs nothing.
func (w *HangupWatch) Add(c *Watched, rc syscall.RawConn) {
	if c.watched || rc == nil {
		return
	}
	fd := -1
	rc.Control(func(u uintptr) { fd = int(u) })
	if fd < 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	c.fd, c.gen = int32(fd), w.gen
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd), Pad: int32(c.gen)}
	if unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev) != nil {
		return
	}
	w.conns[c.fd] = c
	c.watched = true
}

// Watching reports whether c is in the watch's set.
func (c *Watched) Watching() bool { return c.watched }

// Remove forgets c before its connection is closed and its descriptor number can be
// reused. Closing the descriptor takes it out of the epoll set.
func (w *HangupWatch) Remove(c *Watched) {
	if !c.watched {
		return
	}
	w.mu.Lock()
	if w.conns[c.fd] == c {
		delete(w.conns, c.fd)
	}
	w.mu.Unlock()
	c.watched = false
}

func (w *HangupWatch) run() {
	events := make([]unix.EpollEvent, 64)
	for {
		n := 0
		err := w.rc.Read(func(fd uintptr) bool {
			for {
				var err error
				n, err = unix.EpollWait(int(fd), events, 0)
				if err != unix.EINTR {
					return n > 0
				}
			}
		})
		if err != nil {
			return // the watch was closed
		}
		w.mu.Lock()
		for _, ev := range events[:n] {
			// The generation tells an event of a descriptor closed since (the number
			// reused by a newer connection) from one of the connection that has it.
			if c := w.conns[ev.Fd]; c != nil && c.gen == uint32(ev.Pad) {
				c.hup.Store(true)
			}
		}
		w.mu.Unlock()
	}
}

// Close stops the watch (a watch of NewHangupWatch's; the shared one lives as long
// as the process).
func (w *HangupWatch) Close() { w.f.Close() }
