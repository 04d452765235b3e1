package httpcore

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/spindle-server/spindle/internal/errlog"
)

// Log levels for Request.Logf, re-exported so modules need not import errlog.
const (
	LogEmerg  = errlog.Emerg
	LogAlert  = errlog.Alert
	LogCrit   = errlog.Crit
	LogError  = errlog.Error
	LogWarn   = errlog.Warn
	LogNotice = errlog.Notice
	LogInfo   = errlog.Info
	LogDebug  = errlog.Debug
)

// Request is one HTTP request being served: a client's request (the main request) or a
// subrequest. Modules read and change it through its methods; they never see the wire
// format.
type Request struct {
	cfg    *Config
	Server *Server
	loc    *Location
	c      *conn    // the client connection (shared by subrequests)
	main   *Request // the main request (itself for the main request)
	parent *Request // nil for the main request

	// request line and headers
	method     string
	uri        string // decoded, normalised path: $uri
	found      foundLocation
	args       string // query string: $args
	requestURI string // as received: $request_uri
	// rejectedLine is the request line of a request answered before it was parsed
	// (for the log phase): $request.
	rejectedLine string
	absHost      string // host of an absolute-form request target
	realAddr     string // main: the client address set by SetRemoteAddr
	http10       bool
	hdr          *reqHeader // parsed headers (shared with the parent by subrequests)
	hdrOverlay   *Header    // main: headers changed by modules; sub: its own headers once changed
	hdrDeleted   []string   // main: parsed headers that modules removed or replaced
	snapMu       sync.Mutex
	snapshot     *Header // main: its headers as an immutable list, for subrequests

	body     bodyState
	internal bool

	// response
	status        int
	respHdr       Header
	out           []byte
	headerSent    bool // status and headers committed (nginx's r->header_sent); the head reaches the connection later (conn.wroteHeader), a subrequest's never
	finished      bool
	contentLength int64 // explicit Content-Length, -1 if unknown
	bodyBytes     int64 // body bytes sent to the client
	headerBytes   int64
	errStatus     int // set by Error: the special response to send
	keepalive     bool

	// processing state
	named         *Location
	restartServer bool
	uriChanges    int
	inHandler     bool      // a rewrite, access or content handler is running (CanPark)
	parked        bool      // a handler returned Parked: it waits for Resume
	parkAt        parkPoint // where
	noPark        bool      // an error page's content handler: finalize goes on after it
	subDepth      int
	subCount      int
	caps          []string
	capsDecoded   bool // caps come from the decoded URI
	vars          []userVar
	ctx           []any
	start         time.Time
	logDone       bool
	errPageDone   bool
	forceStatus   int // error_page's response code, applied when the header is sent

	// subrequest options
	sub   subState
	group *runGroup // the RunAll it is part of, while it runs
}

type userVar struct {
	val  string
	set  bool
	busy bool // being computed (DefineVar): a second use is a cycle
}

// Config is the configuration serving the request.
func (r *Request) Config() *Config { return r.cfg }

// Location is the configuration currently applying to the request (the location found,
// or the if block that matched).
func (r *Request) Location() *Location { return r.loc }

// Main returns the main request (r itself for a main request).
func (r *Request) Main() *Request { return r.main }

// Parent returns the request that issued this subrequest, or nil.
func (r *Request) Parent() *Request { return r.parent }

// IsSubrequest reports whether r is a subrequest.
func (r *Request) IsSubrequest() bool { return r.parent != nil }

// Internal reports whether r is internal: a subrequest or a request after an internal
// redirect, allowed into `internal` locations.
func (r *Request) Internal() bool { return r.internal }

// Method is the request method.
func (r *Request) Method() string { return r.method }

// SetMethod changes the request method (subrequests, ngx.req.set_method).
func (r *Request) SetMethod(m string) { r.method = m }

// URI is the normalised, decoded request path ($uri).
func (r *Request) URI() string { return r.uri }

// SetURI changes $uri; location search sees the new value after a redirect.
func (r *Request) SetURI(uri string) { r.uri = uri }

// Args is the query string without "?" ($args).
func (r *Request) Args() string { return r.args }

// SetArgs changes the query string.
func (r *Request) SetArgs(a string) { r.args = a }

// RequestURI is the request target as the client sent it ($request_uri).
func (r *Request) RequestURI() string { return r.requestURI }

// Proto is "HTTP/1.0", "HTTP/1.1" or "HTTP/2.0".
func (r *Request) Proto() string {
	if r.c != nil && r.c.h2 != nil {
		return "HTTP/2.0"
	}
	if r.http10 {
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

// StartTime is when the request began.
func (r *Request) StartTime() time.Time { return r.start }

// Request headers: a main request reads its parsed head (reqHeader), with the changes
// modules made in an overlay. A subrequest reads its parent's headers as an immutable
// list (subrequests may run while their parent changes its own headers), and copies
// them the first time it changes one.

// Header returns the first value of a request header.
func (r *Request) Header(name string) string {
	if r.hdr == nil {
		return r.headerView().Get(name)
	}
	if r.hdrOverlay != nil {
		if v, ok := r.hdrOverlay.Lookup(name); ok {
			return v
		}
	}
	if r.headerDeleted(name) {
		return ""
	}
	return string(r.hdr.Peek(name))
}

// HeaderValues returns every value of a request header.
func (r *Request) HeaderValues(name string) []string {
	if r.hdr == nil {
		return r.headerView().Values(name)
	}
	if r.hdrOverlay != nil {
		if vs := r.hdrOverlay.Values(name); len(vs) > 0 {
			return vs
		}
	}
	if r.headerDeleted(name) {
		return nil
	}
	var out []string
	for _, v := range r.hdr.PeekAll(name) {
		out = append(out, string(v))
	}
	return out
}

func (r *Request) headerDeleted(name string) bool {
	for _, d := range r.hdrDeleted {
		if strings.EqualFold(d, name) {
			return true
		}
	}
	return false
}

// VisitHeaders calls f for every request header line in order.
func (r *Request) VisitHeaders(f func(key, value string)) {
	if r.hdr == nil {
		for _, kv := range r.headerView().Fields() {
			f(kv.Key, kv.Value)
		}
		return
	}
	r.hdr.Visit(func(k, v []byte) {
		if key := string(k); !r.headerDeleted(key) {
			f(key, string(v))
		}
	})
	if r.hdrOverlay != nil {
		for _, kv := range r.hdrOverlay.Fields() {
			f(kv.Key, kv.Value)
		}
	}
}

// VisitHeaderViews is VisitHeaders for a caller that copies what it keeps: key and
// value may be views of the request's buffers, valid only during the call to f
// (ngx.req.get_headers copies them into Lua: 10 allocations less for 5 headers),
// and names come as the client sent them.
func (r *Request) VisitHeaderViews(f func(key, value string)) {
	if r.hdr == nil {
		r.VisitHeaders(f)
		return
	}
	h := r.hdr
	for _, fl := range h.fields {
		key := unsafe.String(&h.buf[fl.name.start], int(fl.name.end-fl.name.start))
		if r.headerDeleted(key) {
			continue
		}
		v := h.bytes(fl.value)
		f(key, unsafe.String(unsafe.SliceData(v), len(v)))
	}
	if r.hdrOverlay != nil {
		for _, kv := range r.hdrOverlay.Fields() {
			f(kv.Key, kv.Value)
		}
	}
}

// HeaderBlock returns the request's header lines as the client sent them (what
// VisitHeaderViews reads: CRLF lines the edge checked, up to the empty line) when
// they are all its headers, none set or deleted since; ok is false otherwise (a
// subrequest's own headers, headers changed): VisitHeaderViews then.
func (r *Request) HeaderBlock() (block []byte, ok bool) {
	if r.hdr == nil || r.hdrOverlay != nil || len(r.hdrDeleted) > 0 {
		return nil, false
	}
	return r.hdr.RawHeaders(), true
}

// headerView is the request headers as an immutable list: a subrequest's own, or
// its parent's.
func (r *Request) headerView() *Header {
	if r.hdr == nil {
		if r.hdrOverlay != nil {
			return r.hdrOverlay
		}
		if r.parent != nil {
			return r.parent.headerView()
		}
		return &Header{}
	}
	m := r.main
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	if m.snapshot == nil {
		h := &Header{}
		m.VisitHeaders(func(k, v string) { h.Add(k, v) })
		if h.Get("Host") == "" && len(m.hdr.Host()) > 0 {
			h.Add("Host", string(m.hdr.Host()))
		}
		m.snapshot = h
	}
	return m.snapshot
}

// ownHeaders prepares the request's headers for a change.
func (r *Request) ownHeaders() {
	if r.hdr == nil {
		if r.hdrOverlay == nil {
			h := r.parent.headerView().Clone()
			r.hdrOverlay = &h
		}
		return
	}
	if r.hdrOverlay == nil {
		r.hdrOverlay = &Header{}
	}
	r.snapMu.Lock()
	r.snapshot = nil
	r.snapMu.Unlock()
}

// SetHeader sets a request header (replacing its values); "" deletes it.
func (r *Request) SetHeader(name, value string) {
	r.ownHeaders()
	r.hdrOverlay.Del(name)
	if r.hdr != nil && !r.headerDeleted(name) {
		r.hdrDeleted = append(r.hdrDeleted, name)
	}
	if value != "" {
		r.hdrOverlay.Add(name, value)
	}
}

// AddHeader adds a request header value.
func (r *Request) AddHeader(name, value string) {
	r.ownHeaders()
	if r.hdr != nil && !r.headerDeleted(name) && len(r.hdr.Peek(name)) > 0 && r.hdrOverlay.Get(name) == "" {
		for _, v := range r.hdr.PeekAll(name) {
			r.hdrOverlay.Add(name, string(v))
		}
		r.hdrDeleted = append(r.hdrDeleted, name)
	}
	r.hdrOverlay.Add(name, value)
}

// Host is the Host header (or the host of an absolute request URI).
func (r *Request) Host() string {
	if r.main.absHost != "" {
		return r.main.absHost
	}
	if r.hdr == nil || r.hdrOverlay != nil {
		if v := r.Header("Host"); v != "" || r.hdr == nil {
			return v
		}
	}
	return string(r.hdr.Host())
}

// Cookie returns the value of a request cookie.
func (r *Request) Cookie(name string) (string, bool) {
	if r.hdr != nil && r.hdrOverlay == nil {
		v := r.hdr.Cookie(name)
		if v == nil {
			return "", false
		}
		return string(v), true
	}
	for _, line := range r.HeaderValues("Cookie") {
		for _, kv := range strings.Split(line, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			if k == name {
				return v, true
			}
		}
	}
	return "", false
}

// RemoteAddr is the client's address as "ip:port" (a bare "ip" when a module set an
// address without a port).
func (r *Request) RemoteAddr() string {
	if r.main != nil && r.main.realAddr != "" {
		return r.main.realAddr
	}
	return r.ConnRemoteAddr()
}

// ConnRemoteAddr is the address of the peer of the connection, whatever SetRemoteAddr
// made RemoteAddr.
func (r *Request) ConnRemoteAddr() string {
	if r.c == nil {
		return ""
	}
	return r.c.remoteAddr()
}

// SetRemoteAddr makes addr ("ip:port" or "ip") the client's address for the rest of
// the request and its subrequests, in variables, access checks and logs: the realip
// module's address from a trusted proxy, as nginx's realip replaces the connection's
// address until the request ends.
func (r *Request) SetRemoteAddr(addr string) { r.main.realAddr = addr }

// LocalAddr is the server address the connection was accepted on.
func (r *Request) LocalAddr() string {
	if r.c == nil {
		return ""
	}
	return r.c.localAddr()
}

// ConnectionID is the connection's serial number ($connection).
func (r *Request) ConnectionID() uint64 {
	if r.c == nil {
		return 0
	}
	return r.c.id
}

// ConnectionRequests is the number of requests served on the connection so far,
// this one included ($connection_requests).
func (r *Request) ConnectionRequests() int {
	if r.c == nil {
		return 0
	}
	return r.c.requests
}

// Status is the response status (0 until set).
func (r *Request) Status() int { return r.status }

// SetStatus sets the response status.
func (r *Request) SetStatus(code int) {
	if r.headerSent {
		r.Logf(LogError, "attempt to set status %d after sending out the response header", code)
		return
	}
	r.status = code
}

// RespHeader gives the response headers to read and change.
func (r *Request) RespHeader() *Header { return &r.respHdr }

// SetContentLength announces the response body length; -1 means unknown.
func (r *Request) SetContentLength(n int64) { r.contentLength = n }

// ContentLength is the announced response body length, or -1.
func (r *Request) ContentLength() int64 { return r.contentLength }

// HeaderSent reports whether the response header went out (or, for a subrequest,
// was committed).
func (r *Request) HeaderSent() bool { return r.headerSent }

// BodyBytesSent is the number of response body bytes sent so far ($body_bytes_sent).
func (r *Request) BodyBytesSent() int64 { return r.bodyBytes }

// BytesSent is header and body bytes sent ($bytes_sent).
func (r *Request) BytesSent() int64 { return r.headerBytes + r.bodyBytes }

// Output is the response body produced so far and not yet sent (for a subrequest, the
// captured body).
func (r *Request) Output() []byte { return r.out }

// Logf writes to the error log with the request's context, as nginx does.
func (r *Request) Logf(level errlog.Level, format string, args ...any) {
	log := r.cfg.log
	if !log.Enabled(level) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	client := r.RemoteAddr()
	if i := strings.LastIndexByte(client, ':'); i > 0 {
		client = client[:i]
	}
	log.Logf(level, "*%d %s, client: %s, server: %s, request: \"%s %s %s\"", r.ConnectionID(), msg, client,
		r.serverName(), r.main.method, r.main.requestURI, r.main.Proto())
}

func (r *Request) serverName() string {
	if r.Server != nil && len(r.Server.Names) > 0 {
		return r.Server.Names[0]
	}
	return ""
}

// Error sets the status of an error response for the core to send (with error_page
// applied) and returns Finished for the handler to return.
func (r *Request) Error(status int) Action {
	r.errStatus = status
	return Finished
}

// InternalRedirect makes the request restart at uri (with args) from the server rewrite
// phase, as nginx's internal redirect; a name starting with "@" goes to that named
// location. The handler returns the result.
func (r *Request) InternalRedirect(uri, args string) Action {
	r.internal = true
	if strings.HasPrefix(uri, "@") {
		loc := r.Server.Named(uri)
		if loc == nil {
			r.Logf(LogError, "could not find named location %q", uri)
			return r.Error(500)
		}
		r.named = loc
		return Redirected
	}
	r.uri = uri
	r.args = args
	r.restartServer = true
	r.ctx = nil
	return Redirected
}

// ReLocate makes the request search its location again for the current URI (rewrite
// ... last).
func (r *Request) ReLocate() Action {
	r.restartServer = false
	return Redirected
}

// moduleCtx is module m's per-request context (Handle.Ctx), or nil. It is reset by an
// internal redirect.
func (r *Request) moduleCtx(m *Module) any {
	if m.idx >= len(r.ctx) {
		return nil
	}
	return r.ctx[m.idx]
}

// setModuleCtx stores module m's per-request context (Handle.SetCtx).
func (r *Request) setModuleCtx(m *Module, v any) {
	if r.ctx == nil {
		r.ctx = make([]any, len(registry))
	}
	r.ctx[m.idx] = v
}

// Capture returns regex capture n of the last regex match (location, rewrite, if).
func (r *Request) Capture(n int) string {
	if n < len(r.caps) {
		return r.caps[n]
	}
	return ""
}

// Captures returns the captures of the last regex match, whole match first.
func (r *Request) Captures() []string { return r.caps }

// SetCaptures replaces the captures (regex matches done by modules).
func (r *Request) SetCaptures(c []string) {
	r.caps, r.capsDecoded = append(r.caps[:0], c...), false
}

// SetURICaptures replaces the captures with those of a regex matched against the
// decoded URI (rewrite's): redirect targets escape them (Expr.RedirectString).
func (r *Request) SetURICaptures(c []string) {
	r.caps, r.capsDecoded = append(r.caps[:0], c...), true
}

func (r *Request) setCaps(idx []int) {
	r.caps, r.capsDecoded = r.caps[:0], true
	for i := 0; i+1 < len(idx); i += 2 {
		if idx[i] < 0 {
			r.caps = append(r.caps, "")
		} else {
			r.caps = append(r.caps, r.uri[idx[i]:idx[i+1]])
		}
	}
}

// SendHeader commits the status and headers; the next Write or Flush sends them.
// Header filters run here, once.
func (r *Request) SendHeader() error {
	if r.headerSent {
		return nil
	}
	if r.forceStatus != 0 {
		r.status = r.forceStatus
	}
	if r.status == 0 {
		r.status = 200
	}
	for _, f := range r.loc.hfilters {
		if err := f(r); err != nil {
			return err
		}
	}
	r.headerSent = true
	return nil
}

// Write appends to the response body (running the body filters). A main request's
// body is sent when the handler finishes, or earlier when it grows large or Flush is
// called; a subrequest's body is captured for its parent.
func (r *Request) Write(p []byte) (int, error) {
	if r.finished {
		return 0, errResponseFinished
	}
	if !r.headerSent {
		if err := r.SendHeader(); err != nil {
			return 0, err
		}
	}
	return r.writeBody(p)
}

// writeBody is Write once the header is sent.
func (r *Request) writeBody(p []byte) (int, error) {
	n := len(p)
	if len(r.loc.bfilters) > 0 {
		var err error
		if p, err = r.filterBody(p, false); err != nil {
			return 0, err
		}
	}
	r.out = append(r.out, p...)
	if r.parent == nil && len(r.out) >= outputFlushSize {
		if err := r.c.flushOutput(r, false); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// WriteString is Write for strings. Without body filters the string is appended to
// the output as it is: a handler's first write (return's body) costs no copy.
func (r *Request) WriteString(s string) (int, error) {
	if r.finished {
		return 0, errResponseFinished
	}
	if !r.headerSent {
		if err := r.SendHeader(); err != nil {
			return 0, err
		}
	}
	if len(r.loc.bfilters) == 0 && (r.parent != nil || len(r.out)+len(s) < outputFlushSize) {
		r.out = append(r.out, s...)
		return len(s), nil
	}
	return r.writeBody([]byte(s))
}

func (r *Request) filterBody(p []byte, last bool) ([]byte, error) {
	for _, f := range r.loc.bfilters {
		var err error
		if p, err = f(r, p, last); err != nil {
			return nil, err
		}
	}
	return p, nil
}

var errResponseFinished = errors.New("response already finished")

// outputFlushSize is how much body a main request buffers before streaming it.
const outputFlushSize = 64 << 10

// Flush sends the header and the buffered body to the client now (chunked when the
// length is unknown). For subrequests it does nothing: their output is captured.
func (r *Request) Flush() error {
	if r.parent != nil || r.finished {
		return nil
	}
	if !r.headerSent {
		if err := r.SendHeader(); err != nil {
			return err
		}
	}
	return r.c.flushOutput(r, true)
}

// finalize completes the response: the error page for status when one is pending and
// nothing was sent yet, else the end of the body.
func (r *Request) finalize(status int) {
	if r.finished {
		return
	}
	if r.parent == nil && !r.headerSent && r.body.err != nil && isTimeout(r.body.err) {
		// client_body_timeout: as nginx, the connection is closed without a response
		// (the client stopped sending) and the access log says 408, whatever status
		// the handler chose for its failed read.
		r.status = 408
		r.keepalive = false
		r.c.abort = true
		r.finished = true
		return
	}
	if r.parent == nil && status >= 400 && r.body.err != nil && isBodyFileError(r.body.err) {
		status = 500 // the body could not be buffered: not the client's fault
	}
	if status >= 300 && !r.headerSent && (len(r.out) == 0 || r.errStatus != 0) {
		r.errStatus = 0
		if r.sendErrorPage(status) {
			return
		}
	} else if status >= 300 && r.headerSent && r.parent == nil && !r.c.wroteHeader {
		r.Logf(LogError, "attempt to send an error page for status %d after the response header was committed", status)
	} else if status >= 200 && status < 300 && !r.headerSent {
		// A 2xx given to Error (201 Created, 204 No Content of a DELETE) is the
		// response's status, as nginx's special response for 201 and 204: with what was
		// written, else an empty body (none at all for 204, by the header writer).
		r.errStatus = 0
		r.status = status
	}
	r.finish()
}

// finish ends the response body: the last body-filter call, then for a main request the
// remaining output goes to the client.
func (r *Request) finish() {
	if r.finished {
		return
	}
	if !r.headerSent {
		if err := r.SendHeader(); err != nil {
			r.Logf(LogError, "header filter: %v", err)
		}
	}
	if len(r.loc.bfilters) > 0 {
		if p, err := r.filterBody(nil, true); err != nil {
			r.Logf(LogError, "body filter: %v", err)
		} else {
			r.out = append(r.out, p...)
		}
	}
	r.finished = true
	if r.parent == nil {
		r.c.finishOutput(r)
	}
}

func (r *Request) sendErrorPage(status int) bool {
	r.status = status
	// The status the error response goes out with, unless error_page changes it
	// (nginx's err_status); it also overrides whatever an error page location answers.
	// nginx's TLS codes (495-497) are error_page keys only: they go out as 400.
	r.forceStatus = status
	if sslErrorText(status) != "" {
		r.forceStatus = 400
	}
	// Headers set by handlers stay (Location of a redirect, cookies); those describing
	// a body that is not sent go, as in nginx's special response handler.
	for _, h := range []string{"Content-Type", "Content-Length", "Content-Encoding", "Last-Modified", "ETag", "Accept-Ranges", "Content-Range", "Transfer-Encoding"} {
		if h == "Content-Range" && status == 416 {
			continue // "bytes */size" tells the client what it can ask for
		}
		r.respHdr.Del(h)
	}
	r.out = r.out[:0]
	r.contentLength = -1
	if errorPageMod != nil && !r.errPageDone && r.uriChanges <= maxURIChanges {
		a, recursive := errorPageMod.ErrorPage(r, status)
		r.errPageDone = !recursive
		switch a {
		case Finished:
			return true
		case Redirected:
			// The redirect counts against the request's URI changes like any other.
			r.uriChanges++
			if r.uriChanges > maxURIChanges {
				r.Logf(LogError, "rewrite or internal redirection cycle while internally redirecting to %q", r.uri)
				r.named = nil
				r.finalize(500)
				return true
			}
			r.noPark = true // finalize goes on after it
			r.runFrom(r.redirectStage())
			if !r.finished {
				r.finalize(r.errStatus)
			}
			return true
		}
		status = r.status
	}
	if status == 204 || status == 304 {
		r.finish()
		return true
	}
	r.respHdr.Set("Content-Type", "text/html")
	page := AppendErrorPage
	if text := sslErrorText(status); text != "" {
		page = func(dst []byte, _ int) []byte { return append(dst, sslErrorPage(text)...) }
	}
	if len(r.loc.bfilters) > 0 {
		// Through the body filters, as any body (a gzip filter compresses it).
		r.SendHeader()
		r.Write(page(nil, status))
	} else {
		r.out = page(r.out, status)
		r.SendHeader()
	}
	r.finish()
	return true
}

// AppendErrorPage appends spindle's built-in error page for status, nginx's page with
// spindle's name.
func AppendErrorPage(dst []byte, status int) []byte {
	line := strconv.Itoa(status) + " " + StatusText(status)
	dst = append(dst, "<html>\r\n<head><title>"...)
	dst = append(dst, line...)
	dst = append(dst, "</title></head>\r\n<body>\r\n<center><h1>"...)
	dst = append(dst, line...)
	dst = append(dst, "</h1></center>\r\n<hr><center>spindle</center>\r\n</body>\r\n</html>\r\n"...)
	return dst
}

// StatusText is the reason phrase of a status code, empty for a code without one:
// nginx then sends "HTTP/1.1 599 " and no phrase.
func StatusText(code int) string {
	if code == 499 {
		return "Client Closed Request"
	}
	return http.StatusText(code)
}

// Body reads the whole request body (bounded by client_max_body_size: a larger body
// makes it return ErrBodyTooLarge, answered with 413).
//
// A body larger than client_body_buffer_size is read into a temporary file (see
// BodyFile); Body then reads it back whole, for the callers that need it in one
// piece. BodyReader streams it instead.
func (r *Request) Body() ([]byte, error) { return r.bodyWhole() }

// BodyFile is the name of the temporary file holding the request body once it was
// read and found larger than client_body_buffer_size (or with
// client_body_in_file_only), or "" when the body is in memory (nginx's
// $request_body_file, ngx.req.get_body_file).
func (r *Request) BodyFile() string {
	if b := r.mainBody(); b.read && b.file != nil {
		return b.file.Name()
	}
	return ""
}

// BodyReader streams the request body without buffering it (proxying uploads). It
// may be used once, instead of Body.
func (r *Request) BodyReader() io.Reader { return r.bodyReader() }

// SetBody replaces the request body (subrequests, ngx.req.set_body_data).
func (r *Request) SetBody(b []byte) {
	r.body = bodyState{data: b, read: true, length: int64(len(b))}
}

// HasBody reports whether the request carries a body (a subrequest without a body of
// its own carries its parent's).
func (r *Request) HasBody() bool {
	if r.parent != nil && !r.sub.ownBody {
		return r.parent.HasBody()
	}
	return r.body.length != 0
}

// RequestContentLength is the request's Content-Length, or -1 (chunked or none).
func (r *Request) RequestContentLength() int64 {
	if r.body.chunked {
		return -1
	}
	return r.body.length
}

// CloseConnection ends the request without a response and closes the client
// connection (nginx's 444).
func (r *Request) CloseConnection() {
	r.status = 444
	if r.parent == nil && r.c != nil {
		r.c.abort = true
		r.keepalive = false
	}
	r.finished = true
}

// AbsoluteURL turns a path into an absolute URL on this server, as nginx's
// absolute_redirect does: the request's host and, unless 80, the server port.
func (r *Request) AbsoluteURL(path string) string {
	host := ""
	if h := r.Host(); h != "" {
		host = normalizeHost([]byte(h))
	} else {
		host = r.serverName()
	}
	if host == "" {
		host, _ = splitHostPort(r.LocalAddr())
	}
	if _, port := splitHostPort(r.LocalAddr()); port != "" && port != "80" {
		host += ":" + port
	}
	return "http://" + host + path
}

// ForceStatus makes the response of the request go out with status code whatever
// the location that finally answers it sets (nginx's err_status): error_page uses it
// for "404 =200 /empty.gif", and for the original error code of a page served by an
// internal redirect. 0 lets the answering location's status stand ("404 = /x"). It
// survives internal redirects.
func (r *Request) ForceStatus(code int) { r.forceStatus = code }
