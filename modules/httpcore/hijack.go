package httpcore

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
)

// ErrCannotHijack is returned by Hijack when the connection cannot be taken over: the
// request is a subrequest, the response header already went out, or the connection
// was taken already.
var ErrCannotHijack = errors.New("httpcore: the connection cannot be hijacked")

// Hijack takes the client connection away from the engine, for protocols that leave
// HTTP behind (a WebSocket tunnel after 101 Switching Protocols). The caller writes
// every byte from now on, its response header included, and must Close the returned
// connection when done: until then the engine counts the connection as active
// (worker_connections, stub_status) and a graceful shutdown waits for it, and a
// forced one (worker_shutdown_timeout) closes it. The ReadWriter holds what the client
// sent after the request head and buffers writes; flush it before writing to the
// connection directly. The request is finished: the handler returns Finished, and the
// log phase runs when it returns.
func (r *Request) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if r.c != nil && r.c.wroteHeader {
		return nil, nil, ErrCannotHijack
	}
	return r.hijack()
}

// HijackFlushed is Hijack for a handler that may have sent the response head through
// the engine already (ngx_lua's raw request socket, ngx.req.socket(true): a WebSocket
// server sends its 101 with ngx.send_headers, then frames on the socket): what the
// engine holds of the response, a committed head and body bytes, is written first.
// Without a head sent, the caller writes its own; either way the engine writes no
// more of the response (nginx's r->header_sent = 1). Not on HTTP/2.
func (r *Request) HijackFlushed() (net.Conn, *bufio.ReadWriter, error) {
	c := r.c
	if r.parent != nil || c == nil || c.h2 != nil || c.hijacked || r.finished {
		return nil, nil, ErrCannotHijack
	}
	if r.headerSent {
		if err := c.flushOutput(r, true); err != nil {
			return nil, nil, err
		}
	}
	r.headerSent = true
	return r.hijack()
}

func (r *Request) hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := r.c
	if r.parent != nil || c == nil || c.hijacked || r.finished {
		return nil, nil, ErrCannotHijack
	}
	// The tunnel waits on its own: never in the event loop's goroutine.
	r.Blocking()
	if err := c.flush(); err != nil {
		return nil, nil, err
	}
	nc, err := c.t.netConn()
	if err != nil {
		return nil, nil, err
	}
	// What the client sent beyond the request head is already buffered.
	var rd io.Reader = nc
	if n := c.reader().Buffered(); n > 0 {
		buffered, _ := c.br.Peek(n)
		rd = io.MultiReader(bytes.NewReader(append([]byte(nil), buffered...)), nc)
	}
	c.hijacked = true
	// Two parties now hold the connection: the engine, until the handler returns, and
	// the hijacker, until it calls Close. The last one releases it.
	c.hijackRefs.Store(2)
	hc := &hijackedConn{Conn: nc, c: c}
	c.e.mu.Lock()
	c.hijackedNC = hc
	c.e.conns[c] = struct{}{} // a forced shutdown closes it (event loop connections are not listed until now)
	c.e.mu.Unlock()
	r.finished = true
	r.keepalive = false
	r.out = r.out[:0]
	return hc, bufio.NewReadWriter(bufio.NewReader(rd), bufio.NewWriter(nc)), nil
}

type hijackedConn struct {
	net.Conn
	c    *conn
	once sync.Once
}

// SyscallConn is the connection's file descriptor, for writes that must not wait
// (a plain TCP connection's; a TLS one has none).
func (h *hijackedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := h.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("httpcore: no file descriptor")
}

func (h *hijackedConn) Close() error {
	err := h.Conn.Close()
	h.once.Do(h.c.release)
	return err
}

// AbortConnection ends a response whose header is already sent without completing
// it: what was written so far goes out, then the connection is closed, so the
// client sees a truncated body (an upstream that failed mid-response). Unlike
// CloseConnection it keeps the status for the log. For a subrequest it does nothing:
// its captured output is simply shorter.
func (r *Request) AbortConnection() {
	if r.parent != nil || r.c == nil || r.finished {
		return
	}
	if r.headerSent {
		r.Flush()
	}
	r.c.abort = true
	r.keepalive = false
}
