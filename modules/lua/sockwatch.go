package lua

import (
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// hupWatch learns from the kernel when the peer of a pooled cosocket connection
// closes or resets it, so that taking a recently pooled connection from its pool
// costs no system call. nginx learns the same from the read event of each idle
// keepalive connection in its event loop; spindle's cosockets sit in Go's poller,
// which tells no one while nobody reads, so without this every reuse began with a
// peek (one system call of five per request through lua-resty-redis).
//
// Each connection that was pooled once joins an epoll set of the watch for its whole
// life, for EPOLLRDHUP only: a peer's FIN or RST is an event, the data of the replies
// the connection carries while in use is not (the kernel does not even wake the
// set for it). A goroutine waits for the set's events in Go's poller and marks the
// connections; a connection pooled a while ago is still peeked (sockPools.get) for
// what only a peek sees, data nobody asked for.
type hupWatch struct {
	epfd int
	f    *os.File // epfd in Go's poller
	rc   syscall.RawConn

	mu    sync.Mutex
	conns map[int32]*idleConn // by descriptor
	gen   uint32
}

// newHupWatch starts a watch, or returns nil if the system refuses one (connections
// are then peeked, as before).
func newHupWatch() *hupWatch {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	// Non-blocking: the set's descriptor is readable in Go's poller when it has events.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil
	}
	f := os.NewFile(uintptr(epfd), "cosocket-hup")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	w := &hupWatch{epfd: epfd, f: f, rc: rc, conns: map[int32]*idleConn{}}
	go w.run()
	return w
}

// add watches ic's connection, once in its life.
func (w *hupWatch) add(ic *idleConn) {
	if ic.watched || ic.raw == nil {
		return
	}
	fd := -1
	ic.raw.Control(func(u uintptr) { fd = int(u) })
	if fd < 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	ic.fd, ic.gen = int32(fd), w.gen
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd), Pad: int32(ic.gen)}
	if unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev) != nil {
		return
	}
	w.conns[ic.fd] = ic
	ic.watched = true
}

// remove forgets ic before its connection is closed and its descriptor number can
// be reused. Closing the descriptor takes it out of the epoll set.
func (w *hupWatch) remove(ic *idleConn) {
	if !ic.watched {
		return
	}
	w.mu.Lock()
	if w.conns[ic.fd] == ic {
		delete(w.conns, ic.fd)
	}
	w.mu.Unlock()
	ic.watched = false
}

func (w *hupWatch) run() {
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
			if ic := w.conns[ev.Fd]; ic != nil && ic.gen == uint32(ev.Pad) {
				ic.hup.Store(true)
			}
		}
		w.mu.Unlock()
	}
}

func (w *hupWatch) close() {
	w.f.Close()
}
