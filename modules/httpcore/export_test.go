package httpcore

import "golang.org/x/sys/unix"

// InLoop reports whether r runs inline in the event loop's leader (tests only).
func InLoop(r *Request) bool { return r.c != nil && r.c.inLoop }

// NoDelay is the TCP_NODELAY option of the socket of r's event-loop connection, -1
// without one (tests only).
func NoDelay(r *Request) int {
	if r.c == nil || r.c.lt == nil {
		return -1
	}
	v, err := unix.GetsockoptInt(r.c.lt.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
	if err != nil {
		return -1
	}
	return v
}

// LoopOf is the engine's event loop, nil before it serves a listener (tests only).
func LoopOf(e *Engine) *Loop {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.loop == nil {
		return nil
	}
	return e.loop.pub
}

// HandedBack is how many connections wait in the loop's hand-back list for the
// leader to take them (tests only).
func HandedBack(lp *Loop) int {
	lp.l.mu.Lock()
	defer lp.l.mu.Unlock()
	return len(lp.l.back)
}
