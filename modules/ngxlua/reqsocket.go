package ngxlua

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// ngx.req.socket: the client connection as a cosocket, as ngx_lua's. Without
// arguments it reads the request body (Content-Length bytes, then "closed");
// ngx.req.socket(true) is the raw connection, taken from the HTTP core
// (Request.HijackFlushed): a head already sent with ngx.send_headers goes out first,
// otherwise the handler writes its own; it can send, and is closed when the handler
// ends. Both are tcpSocks: receive, receiveuntil, receiveany and the timeouts are the
// cosockets' own.

// Kinds of request socket a request took (reqData.reqSock).
const (
	reqSockNone = iota
	reqSockBody
	reqSockRaw
)

// bodyConn is the request body seen as a connection: reads stream it, a read
// deadline bounds each read (instead of client_body_timeout).
type bodyConn struct {
	r   *httpcore.Request
	d   *reqData
	rd  io.Reader
	ddl time.Time
}

func (b *bodyConn) Read(p []byte) (int, error) {
	// The body is the request's: read it off the event loop.
	b.r.Blocking()
	if st, ok := b.rd.(interface{ SetReadTimeout(time.Duration) }); ok && !b.ddl.IsZero() {
		st.SetReadTimeout(max(time.Until(b.ddl), time.Millisecond))
	}
	n, err := b.rd.Read(p)
	if err == io.EOF {
		b.d.bodyEOF = true
	}
	return n, err
}

func (b *bodyConn) Write([]byte) (int, error)         { return 0, errors.New("not a writable socket") }
func (b *bodyConn) Close() error                      { return nil }
func (b *bodyConn) LocalAddr() net.Addr               { return nil }
func (b *bodyConn) RemoteAddr() net.Addr              { return nil }
func (b *bodyConn) SetDeadline(t time.Time) error     { b.ddl = t; return nil }
func (b *bodyConn) SetReadDeadline(t time.Time) error { b.ddl = t; return nil }
func (b *bodyConn) SetWriteDeadline(time.Time) error  { return nil }

// rawConn is the client connection the handler took: reads start with what the
// core had buffered past the request head.
type rawConn struct {
	net.Conn
	rd *bufio.Reader
}

func (c *rawConn) Read(p []byte) (int, error) { return c.rd.Read(p) }

// Close reads what the client sent and nobody read before closing: closing with
// unread data in the socket would reset the connection, and the reset can destroy
// the last bytes the handler sent before the client reads them (nginx closes such
// connections with a lingering close). It reads the connection, not the buffer: a
// killed thread's receive may still be using that.
func (c *rawConn) Close() error {
	c.Conn.SetReadDeadline(time.Now())
	var buf [4096]byte
	for range 16 {
		if n, err := c.Conn.Read(buf[:]); n == 0 || err != nil {
			break
		}
	}
	return c.Conn.Close()
}

// reqSocket is ngx.req.socket(raw): the socket's handle, or nil and an error.
func (e *engine) reqSocket(s *luajit.State) error {
	ru, r, err := e.req()
	if err != nil {
		return err
	}
	raw := s.Bool(0)
	if r.IsSubrequest() {
		return errors.New("attempt to read the request body in a subrequest")
	}
	if r.Proto() == "HTTP/2.0" {
		return errors.New("http v2 not supported yet")
	}
	if !raw && r.RequestContentLength() < 0 {
		return fail(s, "chunked request bodies not supported yet")
	}
	if !ru.phase.canOutput() {
		return disabled("ngx.req.socket", ru.phase)
	}
	d := dataOf(r)
	if raw {
		if d.reqSock == reqSockRaw {
			return fail(s, "duplicate call")
		}
		if d.reqSock == reqSockBody && !d.bodyEOF {
			return fail(s, "pending request body reading in some other thread")
		}
	} else {
		switch {
		case d.bodyRead || d.reqSock != reqSockNone:
			return fail(s, "request body already exists")
		case r.RequestContentLength() <= 0:
			return fail(s, "no body")
		}
	}
	e.nextSock++
	sk := &tcpSock{id: e.nextSock, run: ru, conf: &ru.conf.sock}
	e.socks[sk.id] = sk
	ru.socks = append(ru.socks, sk)
	if !raw {
		d.reqSock = reqSockBody
		sk.conn, sk.inline = &bodyConn{r: r, d: d, rd: r.BodyReader()}, true
		s.PushInt(sk.id)
		return nil
	}
	d.reqSock = reqSockRaw
	// Taking the connection writes what the response holds: on the request's
	// goroutine, the VM unlocked.
	ru.cur.inline = true
	ru.waitFor(s, func() []any {
		nc, rw, err := r.HijackFlushed()
		if err != nil {
			return []any{nil, err.Error()}
		}
		sk.mu.Lock()
		sk.conn, sk.client = &rawConn{Conn: nc, rd: rw.Reader}, true
		if sc, ok := nc.(syscall.Conn); ok {
			sk.raw, _ = sc.SyscallConn()
		}
		sk.mu.Unlock()
		return []any{sk.id}
	})
	return nil
}

// rawSocketTaken reports whether the handler took the client connection
// (ngx.req.socket(true)): the core sends nothing more of the response.
func rawSocketTaken(r *httpcore.Request) bool {
	d := peekData(r)
	return d != nil && d.reqSock == reqSockRaw
}
