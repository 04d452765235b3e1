package httpcore

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TLS on the worker's event loop.
//
// A connection accepted on an address with the ssl flag starts as a coroutine of its
// own (owner: goroutine), which peeks at the first byte (a plain HTTP request gets
// nginx's 400 "The plain HTTP request was sent to HTTPS port") and runs crypto/tls's
// handshake over the loop's socket: its reads and writes are the loop transport's, which
// park the coroutine on EAGAIN until epoll reports the socket. Once the handshake is
// done the connection is handed back to the loop, exactly like a connection whose
// coroutine request ended, and from then on the loop owns it as it owns a plain one:
// request heads are read by the leader, requests that never wait run inline, the others
// go to coroutines.
//
// Readiness with records buffered inside crypto/tls. The loop's sockets are
// edge-triggered: epoll reports new bytes once, and the loop reads until the kernel has
// nothing more (loopTransport.drained). crypto/tls adds two buffers of its own between
// the socket and the connection's bufio.Reader: ciphertext read from the socket but not
// decrypted yet (rawInput: a partial record, or whole records behind the one being
// read) and plaintext decrypted but not taken yet (input: the rest of a 16 KB record
// read into a 4 KB buffer). Data there brings no epoll event, so the loop must never
// decide a TLS connection is idle from the socket alone:
//   - A read through tls.Conn serves those buffers first and reaches the socket only
//     when they lack a whole record; the socket adapter then answers EAGAIN with
//     errTLSWouldBlock, a *temporary* net.Error, which crypto/tls does not keep as the
//     connection's sticky error (crypto/tls conn.go readRecordOrCCS): the partial
//     record stays in rawInput and the next read, after the next epoll report,
//     completes it.
//   - The engine's read loop (readHead) always goes through tls.Conn.Read until it
//     answers would-block, so a request pipelined behind another one, or behind the
//     handshake's last flight, is found in those buffers.
//   - When a coroutine hands a TLS connection back, the loop runs it at once instead of
//     waiting for an event (eventLoop.maintain). The handshake reads records until it
//     is done, not until crypto/tls is empty: a request that came in the segment of
//     the client's Finished waits there (readiness reported to the coroutine meanwhile
//     marks the connection too, but the loop does not depend on that bookkeeping for
//     bytes it cannot see). It costs one tls.Conn.Read that finds nothing, without a
//     system call when the socket was read dry (drained).
//
// An idle TLS keepalive connection costs the plain connection's struct, a tls.Conn with
// its keys and buffers (rawInput keeps the capacity of the largest record read: about
// 1 KB for request heads, 17 KB after a 16 KB record of a request body) and the
// handshake's retained buffer; no goroutine and no bufio buffers.

// serverTLS is a server's TLS settings, built at load.
type serverTLS struct {
	config    *tls.Config
	h2config  *tls.Config // config with ALPN h2 (h2conf.go)
	clientCAs *x509.CertPool
	verify    int // ssl_verify_client
	depth     int // ssl_verify_depth
	timeout   time.Duration
	fixedKeys bool // ssl_session_ticket_key: the master's keys do not replace them
}

// addrTLSConfig is the configuration a TLS address's handshakes start with: it picks
// the server by the client's SNI name as nginx does (its certificates, protocols,
// client-certificate settings), the address's default server without one.
func addrTLSConfig(cfg *Config, as *addrServers) *tls.Config {
	return &tls.Config{
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if tc, ok, err := alpnConfig(cfg, hello); ok {
				return tc, err
			}
			srv := cfg.selectServer(as.listen.Addr, []byte(hello.ServerName))
			if srv == nil || srv.tls == nil {
				srv = as.def
			}
			return srv.tls.configFor(as), nil
		},
	}
}

// limitSessions makes tickets expire after ssl_session_timeout (crypto/tls accepts
// them for 7 days), counted from the session's creation as OpenSSL counts it for
// nginx: a TLS 1.2 session resumed again and again ends ssl_session_timeout after its
// full handshake, though every resumption brings a new ticket (crypto/tls re-wraps
// the session keeping its creation time, SessionState.createdAt); a TLS 1.3 ticket
// is a new session, created when it is issued (OpenSSL's too). A time stamped into
// the ticket at each issue (SessionState.Extra, as before) moved forward with every
// TLS 1.2 resumption, so a session used every few minutes never expired.
func (st *serverTLS) limitSessions() {
	tc := st.config
	timeout := st.timeout
	// Both with tc's keys, the master's: the server's HTTP/2 configuration is a clone
	// of tc made before the keys come (h2TLSConfig).
	tc.WrapSession = tc.EncryptTicket
	tc.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := tc.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, err
		}
		if created, ok := sessionCreated(ss); ok && time.Since(created) <= timeout {
			return ss, nil
		}
		return nil, nil // expired: a full handshake
	}
}

// sessionCreatedAt is where crypto/tls keeps a session's creation time
// (SessionState.createdAt, seconds since the epoch, not exported), found by name and
// type as tlsBufs are; if a Go release renames or retypes it, the time is read from
// the session's encoding instead (SessionState.Bytes: version, type and cipher suite,
// 5 bytes, then createdAt), at the cost of encoding it. TestSessionCreatedAt checks
// both against a real handshake's session.
var sessionCreatedAt = func() (f struct {
	off uintptr
	ok  bool
}) {
	if sf, ok := reflect.TypeOf(tls.SessionState{}).FieldByName("createdAt"); ok && sf.Type.Kind() == reflect.Uint64 {
		f.off, f.ok = sf.Offset, true
	}
	return f
}()

// sessionCreated is the session's creation time.
func sessionCreated(ss *tls.SessionState) (time.Time, bool) {
	if sessionCreatedAt.ok {
		return time.Unix(int64(*(*uint64)(unsafe.Add(unsafe.Pointer(ss), sessionCreatedAt.off))), 0), true
	}
	return sessionCreatedEncoded(ss)
}

func sessionCreatedEncoded(ss *tls.SessionState) (time.Time, bool) {
	b, err := ss.Bytes()
	if err != nil || len(b) < 13 {
		return time.Time{}, false
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b[5:13])), 0), true
}

// ticketKeyFrom turns key material (an nginx ticket key file, or the master's random
// bytes) into the 32-byte key crypto/tls derives its ticket keys from.
func ticketKeyFrom(b []byte) [32]byte { return sha256.Sum256(b) }

// SetSessionTicketKeys gives every TLS server the session ticket keys, the first one
// encrypting new tickets, all of them decrypting (crypto/tls Config.SetSessionTicketKeys):
// the master makes them and sends them to every worker of every generation, so that a
// ticket issued by one worker resumes on any other, across reloads and upgrades.
// Servers with ssl_session_ticket_key files keep their own.
func (c *Config) SetSessionTicketKeys(keys [][]byte) {
	if len(keys) == 0 {
		return
	}
	ks := make([][32]byte, len(keys))
	for i, k := range keys {
		ks[i] = ticketKeyFrom(k)
	}
	for _, srv := range c.Servers {
		if srv.tls != nil && !srv.tls.fixedKeys {
			srv.tls.config.SetSessionTicketKeys(ks)
		}
	}
}

// tlsConn is the TLS side of a connection.
type tlsConn struct {
	tc     *tls.Conn
	sock   tlsSocket
	verify string // $ssl_client_verify, set after the handshake ("" = NONE)
	caOnly bool   // the certificate failed only for want of a trusted issuer
	// peerGone: a read found the client's end (EOF, a reset, its alert): no
	// close_notify goes out, as nginx sends none then (ngx_ssl_handle_recv's
	// no_send_shutdown). Sent anyway it cost a write that failed with EPIPE and a
	// SIGPIPE for every client that closes first (openssl s_time).
	peerGone bool
}

// tlsTransport is a loop transport whose bytes go through crypto/tls.
type tlsTransport struct {
	*loopTransport
	s *tlsConn
}

// errTLSWouldBlock is the socket adapter's EAGAIN while the loop holds the connection:
// temporary, so that crypto/tls keeps a partial record for the next read.
var errTLSWouldBlock error = tlsWouldBlock{}

type tlsWouldBlock struct{}

func (tlsWouldBlock) Error() string   { return "would block" }
func (tlsWouldBlock) Timeout() bool   { return false }
func (tlsWouldBlock) Temporary() bool { return true }

// tlsSocket is the net.Conn crypto/tls reads and writes: the loop transport's socket,
// or, once hijacked, the net.Conn the hijacker holds.
type tlsSocket struct {
	lt *loopTransport
	nc net.Conn // hijacked
	// noWait: a write that would block fails at once (close_notify on the way out).
	noWait bool
}

func (s *tlsSocket) Read(p []byte) (int, error) {
	if s.nc != nil {
		return s.nc.Read(p)
	}
	if s.lt.until != 0 {
		// The handshake's: readiness reported before this read is stale once the read
		// has seen the socket: taken now, it would end the wait after an EAGAIN at
		// once, for another read that finds nothing (one system call per handshake:
		// the ClientHello's arrival is reported as the accepted socket joins epoll).
		select {
		case <-s.lt.ready:
		default:
		}
	}
	n, err := s.lt.Read(p)
	if err == errWouldBlock {
		return 0, errTLSWouldBlock
	}
	return n, err
}

func (s *tlsSocket) Write(p []byte) (int, error) {
	if s.nc != nil {
		return s.nc.Write(p)
	}
	if s.noWait {
		n, err := rawWriteOnce(s.lt.fd, p)
		if err == nil && n < len(p) {
			err = syscall.EAGAIN
		}
		return n, err
	}
	return s.lt.Write(p)
}

// rawWriteOnce writes without blocking and without SIGPIPE (MSG_NOSIGNAL): the
// client may have gone since the connection's last read.
func rawWriteOnce(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func (s *tlsSocket) Close() error {
	if s.nc != nil {
		return s.nc.Close()
	}
	return nil
}

func (s *tlsSocket) LocalAddr() net.Addr {
	if s.nc != nil {
		return s.nc.LocalAddr()
	}
	ap, _ := netip.ParseAddrPort(s.lt.localAddr())
	return net.TCPAddrFromAddrPort(ap)
}

func (s *tlsSocket) RemoteAddr() net.Addr {
	if s.nc != nil {
		return s.nc.RemoteAddr()
	}
	return net.TCPAddrFromAddrPort(s.lt.peer)
}

// Deadlines are the loop transport's (timeouts set by the engine) until hijacked.
func (s *tlsSocket) SetDeadline(t time.Time) error {
	if s.nc != nil {
		return s.nc.SetDeadline(t)
	}
	return nil
}

func (s *tlsSocket) SetReadDeadline(t time.Time) error {
	if s.nc != nil {
		return s.nc.SetReadDeadline(t)
	}
	return nil
}

func (s *tlsSocket) SetWriteDeadline(t time.Time) error {
	if s.nc != nil {
		return s.nc.SetWriteDeadline(t)
	}
	return nil
}

func (t *tlsTransport) Read(p []byte) (int, error) {
	n, err := t.s.tc.Read(p)
	if err == errTLSWouldBlock {
		if t.c.readingHead {
			releaseTLSBuffers(t.s.tc) // idle in the loop until the next event
		}
		return n, errWouldBlock
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.s.peerGone = true
	}
	return n, err
}

// crypto/tls keeps the capacity of the largest record a connection read (rawInput,
// and input, which points into it) and of the largest handshake message (hand: the
// ClientHello, 1.8 KB with a post-quantum key share) for the connection's life. nginx
// frees OpenSSL's buffers of an idle connection (SSL_MODE_RELEASE_BUFFERS); crypto/tls
// has no such switch, so when the loop takes a connection back idle, the empty buffers
// are reset to their zero values, found by name and type in tls.Conn: if a Go release
// renames or retypes them, tlsBufs.ok is false and they are left alone (the test
// TestTLSBuffersReleasable says so). Read buffers of 1 KB or less stay: a request
// head's record fits, and releasing them would cost an allocation per request.
var tlsBufs = func() (b struct {
	raw, hand, input uintptr
	ok               bool
}) {
	t := reflect.TypeOf(tls.Conn{})
	raw, ok1 := t.FieldByName("rawInput")
	hand, ok2 := t.FieldByName("hand")
	input, ok3 := t.FieldByName("input")
	buf, rd := reflect.TypeOf(bytes.Buffer{}), reflect.TypeOf(bytes.Reader{})
	if ok1 && ok2 && ok3 && raw.Type == buf && hand.Type == buf && input.Type == rd {
		b.raw, b.hand, b.input, b.ok = raw.Offset, hand.Offset, input.Offset, true
	}
	return b
}()

const tlsKeepReadBuffer = 1024

// releaseTLSBuffers drops the empty buffers of an idle TLS connection. Only the
// connection's owner calls it, between reads.
func releaseTLSBuffers(tc *tls.Conn) {
	if !tlsBufs.ok {
		return
	}
	p := unsafe.Pointer(tc)
	raw := (*bytes.Buffer)(unsafe.Add(p, tlsBufs.raw))
	input := (*bytes.Reader)(unsafe.Add(p, tlsBufs.input))
	if raw.Len() == 0 && input.Len() == 0 && raw.Cap() > tlsKeepReadBuffer {
		*raw = bytes.Buffer{}
		*input = bytes.Reader{}
	}
	if hand := (*bytes.Buffer)(unsafe.Add(p, tlsBufs.hand)); hand.Len() == 0 && hand.Cap() > 0 {
		*hand = bytes.Buffer{}
	}
}

// tlsDrained reports whether crypto/tls holds no bytes read from the socket and not
// taken yet (false when its buffers cannot be seen: see tlsBufs).
func tlsDrained(tc *tls.Conn) bool {
	if !tlsBufs.ok {
		return false
	}
	p := unsafe.Pointer(tc)
	return (*bytes.Buffer)(unsafe.Add(p, tlsBufs.raw)).Len() == 0 && (*bytes.Reader)(unsafe.Add(p, tlsBufs.input)).Len() == 0
}

// tlsHolds reports whether crypto/tls is known to hold bytes read from the socket and
// not taken yet (false when its buffers cannot be seen: see tlsBufs).
func tlsHolds(tc *tls.Conn) bool { return tlsBufs.ok && !tlsDrained(tc) }

func (t *tlsTransport) Write(p []byte) (int, error) { return t.s.tc.Write(p) }

// sendfile(2) would send the file in the clear.
func (t *tlsTransport) canSendFile() bool { return false }

// closeNotify sends TLS's close_notify alert if the socket takes it at once.
func (t *tlsTransport) closeNotify() {
	if t.s.peerGone {
		return
	}
	t.s.sock.noWait = true
	t.s.tc.CloseWrite()
}

func (t *tlsTransport) linger(d time.Duration) {
	t.closeNotify()
	t.loopTransport.linger(d)
}

func (t *tlsTransport) close() error {
	if !t.c.abort && !t.c.closing {
		t.closeNotify()
	}
	return t.loopTransport.close()
}

// netConn gives a hijacker the TLS connection: crypto/tls goes on over a duplicate of
// the socket in Go's poller, with its buffered records.
func (t *tlsTransport) netConn() (net.Conn, error) {
	nc, err := t.loopTransport.netConn()
	if err != nil {
		return nil, err
	}
	t.s.sock.nc = nc
	return t.s.tc, nil
}

// startTLS makes a connection just accepted on a TLS address run its handshake on a
// coroutine; the loop gets it back when the handshake is done.
func (c *conn) startTLS(cfg *tls.Config) {
	s := &tlsConn{}
	s.sock.lt = c.lt
	s.tc = tls.Server(&s.sock, cfg)
	c.tls = s
	c.t = &tlsTransport{loopTransport: c.lt, s: s}
	c.lt.ready = make(chan struct{}, 1)
	c.owner.Store(ownerGoroutine)
	workers.Go(c.handshakeTLS)
}

// handshakeTLS runs on the connection's coroutine: the plain-HTTP check, the handshake
// (with the PROXY protocol header before them, all bounded by the client_header_timeout
// armed at the accept, as nginx's: see handshakeRead), the client certificate's verdict.
func (c *conn) handshakeTLS() {
	defer func() {
		if p := recover(); p != nil {
			c.e.cfg.log.Alertf("*%d panic in the TLS handshake: %v\n%s", c.id, p, stack())
			c.abort = true
			c.lt.close()
		}
	}()
	lt := c.lt
	core := CoreConfOf(c.as.def.root)
	if lt.deadline == 0 {
		lt.setReadTimeout(core.ClientHeaderTimeout) // armed at the accept (eventLoop.accept)
	}
	lt.setWriteTimeout(core.ClientHeaderTimeout)
	if c.proxyWanted && !c.readProxyTLS() {
		c.abort = true
		lt.close()
		return
	}
	first, err := c.peekByte()
	if err != nil {
		c.abort = true
		lt.close()
		return
	}
	// A TLS handshake record starts with 0x16 (SSLv2-style hellos with the high bit).
	if first != 0x16 && first&0x80 == 0 {
		c.rejectPlainHTTP()
		return
	}
	// The handshake has one deadline, client_header_timeout from the accept, as nginx's
	// (ngx_http_init_connection arms the read timer once, and neither the handshake nor
	// the first request head moves it): with a client_header_timeout for each wait, a
	// client that sent a byte of its ClientHello now and then held a coroutine and a
	// connection for as long as it liked.
	lt.until = lt.deadline
	err = c.tls.tc.Handshake()
	lt.until = 0
	if err != nil {
		switch {
		case !c.e.cfg.log.Enabled(LogInfo):
		case errors.Is(err, os.ErrDeadlineExceeded):
			c.e.cfg.log.Infof("*%d client timed out (110: Connection timed out) while SSL handshaking, client: %s", c.id, c.remoteAddr())
		default:
			c.e.cfg.log.Infof("*%d SSL handshake failed: %v, client: %s", c.id, err, c.remoteAddr())
		}
		c.abort = true
		lt.close()
		return
	}
	c.tls.verifyPeer(c)
	lt.drained = false
	lt.l.handBack(c)
}

// newTLSConn makes a TLS connection served by a goroutine of its own (listeners the
// event loop does not take).
func (e *Engine) newTLSConn(nc net.Conn, as *addrServers) *conn {
	tc := tls.Server(nc, as.tls)
	c := newConn(e, tc, as, nil)
	c.tls = &tlsConn{tc: tc}
	return c
}

// serveTLS runs the handshake of a goroutine-served TLS connection, then serves it.
func (c *conn) serveTLS() {
	core := CoreConfOf(c.as.def.root)
	c.tls.tc.SetDeadline(time.Now().Add(core.ClientHeaderTimeout))
	if c.proxyWanted && !c.readProxyConn(c.tls.tc.NetConn()) {
		c.tls.tc.Close()
		c.release()
		return
	}
	if err := c.tls.tc.Handshake(); err != nil {
		c.tls.tc.Close()
		c.release()
		return
	}
	c.tls.tc.SetDeadline(time.Time{})
	c.tls.verifyPeer(c)
	c.serve()
}

// peekByte waits for the connection's first byte without taking it. A connection that
// sent nothing is closed when client_header_timeout from the accept ends, draining or
// not: its client has a request to send (see eventLoop.sweep).
func (c *conn) peekByte() (byte, error) {
	var b [1]byte
	deadline := time.Unix(0, c.lt.deadline)
	for {
		n, err := rawPeek(c.lt.fd, b[:])
		switch {
		case err == nil && n == 1:
			return b[0], nil
		case err == nil:
			return 0, errors.New("closed")
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			left := time.Until(deadline)
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			if err := c.lt.waitReady(min(left, sweepInterval)); err != nil {
				select {
				case <-c.lt.l.expireCh:
					return 0, err // worker_shutdown_timeout
				default:
				}
			}
		default:
			return 0, err
		}
	}
}

// rawPeek is recv(MSG_PEEK) outside Go's scheduler, as netutil.RawRead: unix.Recvfrom
// announces the system call, and every announced call woke the runtime's monitor
// thread (a futex wake, then its polling) once per TLS connection.
func rawPeek(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// sslErrorText is nginx's text for its TLS-specific codes, which are keys for
// error_page and go out as 400 (ngx_http_special_response_handler).
func sslErrorText(status int) string {
	switch status {
	case 495:
		return "The SSL certificate error"
	case 496:
		return "No required SSL certificate was sent"
	case 497:
		return "The plain HTTP request was sent to HTTPS port"
	}
	return ""
}

// sslErrorPage is nginx's page for its TLS-specific 400 answers (497, 495, 496).
func sslErrorPage(text string) []byte {
	return []byte("<html>\r\n<head><title>400 " + text + "</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>" +
		text + "</center>\r\n<hr><center>spindle</center>\r\n</body>\r\n</html>\r\n")
}

// rejectPlainHTTP hands a plain HTTP connection to a TLS address back to the loop
// as a plain one: its request is read and answered as nginx's NGX_HTTP_TO_HTTPS (497)
// in process, through the error_page of the server its Host selects, then it closes.
func (c *conn) rejectPlainHTTP() {
	c.t = c.lt
	c.tls = nil
	c.plainHTTP = true
	c.lt.drained = false
	c.lt.l.handBack(c)
}

// verifyPeer judges the client's certificate with the settings of the server the
// handshake chose (SNI), as OpenSSL does for nginx: the result is $ssl_client_verify,
// and each request's server decides what to do with it (checkClientCert).
func (s *tlsConn) verifyPeer(c *conn) {
	cs := s.tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return
	}
	srv := c.e.cfg.selectServer(c.as.listen.Addr, []byte(cs.ServerName))
	if srv == nil || srv.tls == nil {
		srv = c.as.def
	}
	st := srv.tls
	if st.clientCAs == nil {
		s.verify, s.caOnly = "FAILED:unable to get local issuer certificate", true
		return
	}
	inter := x509.NewCertPool()
	for _, ic := range cs.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	chains, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: st.clientCAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		var ua x509.UnknownAuthorityError
		s.caOnly = errors.As(err, &ua)
		s.verify = "FAILED:" + err.Error()
		return
	}
	for _, ch := range chains {
		if len(ch)-1 <= st.depth {
			s.verify = "SUCCESS"
			return
		}
	}
	s.verify = "FAILED:certificate chain too long"
}

// checkClientCert answers, in the post_read phase of a server with ssl_verify_client,
// a request whose connection brought no certificate or a bad one with nginx's 496 or
// 495 (error_page keys, sent as 400 with nginx's texts), and the connection closes.
func checkClientCert(r *Request) Action {
	st := r.Server.tls
	c := r.main.c
	if st == nil || c == nil || c.tls == nil || r.parent != nil {
		return Continue
	}
	status := 0
	switch v := c.tls.verify; {
	case v == "":
		if st.verify == verifyOn {
			status = 496
			r.Logf(LogInfo, "client sent no required SSL certificate while reading client request headers")
		}
	case v != "SUCCESS":
		if st.verify != verifyOptionalNoCA || !c.tls.caOnly {
			status = 495
			r.Logf(LogInfo, "client SSL certificate verify error: (%s) while reading client request headers", v)
		}
	}
	if status == 0 {
		return Continue
	}
	// error_page 495 and 496 may answer it; else 400 with nginx's text (sendErrorPage).
	r.keepalive = false
	return r.Error(status)
}

// connTLS is the TLS state of the request's connection, nil for plain HTTP.
func (r *Request) connTLS() *tlsConn {
	if r.main == nil || r.main.c == nil {
		return nil
	}
	return r.main.c.tls
}

var tlsVersionNames = map[uint16]string{
	tls.VersionTLS10: "TLSv1", tls.VersionTLS11: "TLSv1.1", tls.VersionTLS12: "TLSv1.2", tls.VersionTLS13: "TLSv1.3",
}

// peerCert is the client's certificate, if it sent one.
func (r *Request) peerCert() *x509.Certificate {
	s := r.connTLS()
	if s == nil {
		return nil
	}
	if pc := s.tc.ConnectionState().PeerCertificates; len(pc) > 0 {
		return pc[0]
	}
	return nil
}

// nginx's ngx_http_ssl_module variables.
func init() {
	tlsVar := func(name string, f func(cs *tls.ConnectionState, s *tlsConn) string) {
		RegisterVar(name, func(r *Request) string {
			s := r.connTLS()
			if s == nil {
				return ""
			}
			cs := s.tc.ConnectionState()
			return f(&cs, s)
		})
	}
	tlsVar("ssl_protocol", func(cs *tls.ConnectionState, _ *tlsConn) string { return tlsVersionNames[cs.Version] })
	tlsVar("ssl_cipher", func(cs *tls.ConnectionState, _ *tlsConn) string { return cipherName(cs.CipherSuite) })
	tlsVar("ssl_server_name", func(cs *tls.ConnectionState, _ *tlsConn) string { return cs.ServerName })
	tlsVar("ssl_alpn_protocol", func(cs *tls.ConnectionState, _ *tlsConn) string { return cs.NegotiatedProtocol })
	tlsVar("ssl_session_reused", func(cs *tls.ConnectionState, _ *tlsConn) string {
		if cs.DidResume {
			return "r"
		}
		return "."
	})
	tlsVar("ssl_client_verify", func(_ *tls.ConnectionState, s *tlsConn) string {
		if s.verify == "" {
			return "NONE"
		}
		return s.verify
	})
	certVar := func(name string, f func(*x509.Certificate) string) {
		RegisterVar(name, func(r *Request) string {
			if pc := r.peerCert(); pc != nil {
				return f(pc)
			}
			return ""
		})
	}
	certVar("ssl_client_s_dn", func(pc *x509.Certificate) string { return pc.Subject.String() })
	certVar("ssl_client_i_dn", func(pc *x509.Certificate) string { return pc.Issuer.String() })
	certVar("ssl_client_serial", func(pc *x509.Certificate) string { return strings.ToUpper(pc.SerialNumber.Text(16)) })
	certVar("ssl_client_fingerprint", func(pc *x509.Certificate) string {
		sum := sha1.Sum(pc.Raw)
		return hex.EncodeToString(sum[:])
	})
	certVar("ssl_client_raw_cert", func(pc *x509.Certificate) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pc.Raw}))
	})
	// $ssl_client_cert: the PEM with a tab after every line break but the last, so
	// that it fits in a header (nginx's format).
	certVar("ssl_client_cert", func(pc *x509.Certificate) string {
		p := strings.TrimSuffix(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pc.Raw})), "\n")
		return strings.ReplaceAll(p, "\n", "\n\t")
	})
}

// schemeVar and httpsVar are $scheme and $https.
func schemeVar(r *Request) string {
	if r.connTLS() != nil {
		return "https"
	}
	return "http"
}

func httpsVar(r *Request) string {
	if r.connTLS() != nil {
		return "on"
	}
	return ""
}
