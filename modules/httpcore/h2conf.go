package httpcore

import (
	"crypto/tls"
	"time"
)

// H2Conf is the HTTP/2 configuration of a server, read from the default server of an
// address with the http2 flag (nginx's ngx_http_v2_module settings that 1.22 keeps).
// Header limits are large_client_header_buffers', as in nginx since 1.19.7, which made
// http2_max_field_size and http2_max_header_size obsolete.
type H2Conf struct {
	// MaxConcurrentStreams is http2_max_concurrent_streams: streams served at once on a
	// connection; more are refused with REFUSED_STREAM.
	MaxConcurrentStreams int
	// RecvTimeout is http2_recv_timeout: how long a connection may take to send the
	// connection preface or the rest of a header block (0: client_header_timeout).
	RecvTimeout time.Duration
	// IdleTimeout is http2_idle_timeout: how long a connection with no stream open stays
	// before GOAWAY closes it (0: keepalive_timeout).
	IdleTimeout time.Duration
}

var h2mod = Define(func() *H2Conf { return &H2Conf{MaxConcurrentStreams: 128} })

// H2Module holds the HTTP/2 directives; HTTP/2 itself is the engine's (h2.go).
var H2Module = Register(&Module{
	Name:  "http2",
	Order: OrderCore,
	Conf:  h2mod,
	Directives: []Directive{
		{Name: "http2_max_concurrent_streams", Context: CtxHTTP | CtxServer, Set: SetCount(1, 1<<16, func(c *H2Conf) *int { return &c.MaxConcurrentStreams })},
		{Name: "http2_recv_timeout", Context: CtxHTTP | CtxServer, Set: SetDuration(func(c *H2Conf) *time.Duration { return &c.RecvTimeout })},
		{Name: "http2_idle_timeout", Context: CtxHTTP | CtxServer, Set: SetDuration(func(c *H2Conf) *time.Duration { return &c.IdleTimeout })},
	},
})

func h2confOf(l *Location) *H2Conf { return h2mod.Of(l) }

// markHTTP2 makes an address speak HTTP/2: one server's http2 flag does it for all of
// the address's servers, as in nginx.
func markHTTP2(c *Config, as *addrServers) {
	as.listen.HTTP2 = true
	for i := range c.Listens {
		if c.Listens[i].Addr == as.listen.Addr {
			c.Listens[i].HTTP2 = true
		}
	}
}

// h2TLSConfig is a server's TLS configuration for addresses with the http2 flag: the
// same, offering h2 before http/1.1 in ALPN. Tickets are still sealed by the original
// configuration's keys (WrapSession), so one ticket resumes on either.
func h2TLSConfig(tc *tls.Config) *tls.Config {
	c := tc.Clone()
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

// configFor is the TLS configuration of the server for handshakes on as.
func (st *serverTLS) configFor(as *addrServers) *tls.Config {
	if as.listen.HTTP2 && st.h2config != nil {
		return st.h2config
	}
	return st.config
}

// startH2 serves the connection as HTTP/2 from now on (its preface is buffered). It
// reports whether the connection went to a coroutine of its own (conn.run's
// handedOff).
func (c *conn) startH2() bool {
	loop := c.lt != nil
	nc, pre := c.takeOverH2()
	if nc == nil {
		return false
	}
	h2c := c.tls == nil
	if !loop {
		c.serveH2(nc, pre, h2c)
		return false
	}
	// The reader closes the connection when it ends (h2conn.shutdown); it may return
	// before, having parked the connection in the event loop.
	workers.Go(func() {
		defer func() {
			if p := recover(); p != nil {
				c.e.cfg.log.Alertf("*%d panic in HTTP/2 connection: %v\n%s", c.id, p, stack())
				nc.Close()
			}
		}()
		c.serveH2(nc, pre, h2c)
	})
	return true
}

func init() {
	// $http2: "h2" over TLS, "h2c" in the clear, "" for HTTP/1.x (nginx's).
	RegisterVar("http2", func(r *Request) string {
		if r.main == nil || r.main.c == nil || r.main.c.h2 == nil {
			return ""
		}
		if r.main.c.h2.hc.h2c {
			return "h2c"
		}
		return "h2"
	})
}
