package httpcore

// A request's lifecycle on its connection: from a parsed head (prepare) through the
// phases (process) to the response written (writeHead, writeBody, finishOutput) and the
// log phase (endRequest).

import (
	"bufio"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spindle-server/spindle/internal/version"
)

// prepare starts one request read by readHead: the request line, the server, the
// connection settings. It reports false for a malformed request target.
func (c *conn) prepare() bool {
	e := c.e
	c.requests++
	e.requests.Add(1)
	c.state.Store(stateActive)
	e.writing.Add(1)

	r := c.req
	r.reset()
	r.cfg, r.c, r.main, r.hdr = e.cfg, c, r, c.hdr
	r.start = time.Now()
	c.wroteHeader, c.chunked, c.lingering, c.abort = false, false, false, false

	r.method = internMethod(c.hdr.Method())
	target := c.hdr.RequestURI()
	path, query, host := splitTarget(target)
	// A client on a keepalive connection often asks for the same target again
	// (pollers, health checks, wrk): the string of the last one is kept with the
	// request state, and sharing it (strings do not change) saves the allocation and
	// copy, ~310 instructions a request (callgrind, BenchmarkLoopHello); another target
	// costs a comparison, mostly of the lengths.
	if string(target) == c.rs.target {
		r.requestURI = c.rs.target
	} else {
		r.requestURI = string(target)
		c.rs.target = r.requestURI
	}
	// In the origin form (all but proxies' requests) path and query are slices of
	// target: $args and $uri are taken from requestURI, not copied again (one
	// allocation less per request, two with a query).
	origin := len(host) == 0 && len(target) > 0 && target[0] == '/'
	if origin && len(path) < len(target) {
		r.args = r.requestURI[len(path)+1:]
	} else {
		r.args = string(query)
	}
	r.http10 = !c.hdr.IsHTTP11()
	if len(host) == 0 {
		host = c.hdr.Host()
	} else {
		// An absolute request target names the host, as nginx's $host.
		r.absHost = string(host)
	}
	r.Server = c.as.selectServer(host)
	r.loc = r.Server.root
	core := CoreConfOf(r.Server.root)
	r.keepalive = !c.hdr.ConnectionClose() && core.KeepaliveTimeout > 0 && c.requests < core.KeepaliveRequests
	if r.http10 && !strings.EqualFold(string(c.hdr.Peek("Connection")), "keep-alive") {
		r.keepalive = false
	}
	r.body = bodyState{limit: core.ClientMaxBodySize}
	switch {
	case c.rs.scan.chunked:
		r.body.length, r.body.chunked = -1, true
	case c.rs.scan.hasCL:
		r.body.length = int64(c.hdr.ContentLength())
		r.body.remaining = r.body.length
	}
	if r.body.length != 0 && !r.http10 && strings.EqualFold(string(c.hdr.Peek("Expect")), "100-continue") {
		r.body.expect = true
	}
	var uri string
	ok := true
	if origin && simplePath(r.requestURI[:len(path)]) {
		uri = r.requestURI[:len(path)]
	} else {
		uri, ok = NormalizePath(path)
	}
	if !ok {
		r.uri = string(path)
		return false
	}
	r.uri = uri
	return true
}

// mayBlock predicts whether the prepared request will wait for something other than
// its client, from the location its URI selects: such a request goes to a coroutine
// of its own before it starts, and the event loop does not stop for it. (A request
// that turns out to wait anyway, after a redirect, leaves the loop then.)
//
// Handlers that run inline but may wait (Lua's: only the script knows whether it calls
// a backend) are judged by what the location's requests did lately: when most of them
// waited, the next ones go to a coroutine before they start, as the redis module's do,
// instead of taking the loop along when they leave it mid-request.
func (c *conn) mayBlock() bool {
	r := c.req
	if r.Server.root.mayBlock {
		return true
	}
	loc, _ := r.findLocation(r.Server)
	if loc == nil {
		return false
	}
	c.predicted = loc
	return loc.mayBlock || loc.waits.Load() >= waitsThreshold
}

// The score of Location.waits: +1 for a request that waited, -1 for one that did not,
// within [0, waitsMax]; at waitsThreshold and above requests are handed off to a
// coroutine up front (conn.handOff). Requests handed off that way keep scoring, so a location that stops waiting goes
// back inline after a few requests.
const (
	waitsThreshold = 4
	waitsMax       = 8
)

// learn scores the request that just ended on the location mayBlock predicted for it.
func (c *conn) learn() {
	loc := c.predicted
	if loc == nil || loc.mayBlock {
		return
	}
	c.predicted = nil
	if n := loc.waits.Load(); c.waited {
		if n < waitsMax {
			loc.waits.Store(n + 1)
		}
	} else if n > 0 {
		loc.waits.Store(n - 1)
	}
}

// process runs a prepared request to its end (ok: the target was well formed), or
// until its content handler parks it: then it reports true, and the request goes on
// in resumeParked.
func (c *conn) process(ok bool) (parked bool) {
	r := c.req
	c.logPending = true
	if !ok {
		r.keepalive = false
		r.finalize(400)
	} else if c.plainHTTP {
		// nginx's NGX_HTTP_TO_HTTPS, before any phase: error_page 497 of the server
		// Host chose may redirect it; else 400 with nginx's text (sendErrorPage).
		r.keepalive = false
		r.Logf(LogInfo, "client sent plain HTTP request to HTTPS port while reading client request headers")
		r.finalize(497)
	} else {
		r.runPhases()
		if r.parked {
			return true
		}
		if !r.finished {
			r.finalize(r.errStatus)
		}
	}
	c.endProcess(r)
	return false
}

// endProcess is the end of process, once the request's response is complete.
func (c *conn) endProcess(r *Request) {
	e := c.e
	if !c.hijacked && !c.closeAfter {
		// A closing connection drops the rest of the body in its lingering close.
		c.discardBody(r)
	}
	e.statusCodes[min(r.status/100, 5)].Add(1)
	if c.hijacked {
		// The hijacker has the connection now, and the request is over for the core.
		c.endRequest()
	}
}

// endRequest runs the log phase of the request process ran, once its response is on
// its way (afterRequest): as in nginx, the log phase comes after the response is
// sent, so a slow log_by_lua does not hold the response back and $request_time
// counts the sending. Lines of one connection keep the order of its requests.
func (c *conn) endRequest() {
	if !c.logPending {
		return
	}
	c.logPending = false
	defer c.e.writing.Add(-1)
	c.req.runLog()
	c.req.body.dropFile()
}

// runLog runs the log phase of a finished request, once.
func (r *Request) runLog() {
	if r.logDone {
		return
	}
	r.logDone = true
	for _, h := range r.loc.run[PhaseLog] {
		h(r)
	}
}

// reset zeroes the request for the next one, keeping the slices it can reuse. The
// zero value is stored first and the kept fields after: a composite literal with
// them was built on the stack and copied, ~300 instructions a reset against ~60
// (the Request is 728 bytes; callgrind).
func (r *Request) reset() {
	r.body.dropFile()
	caps := r.caps[:0]
	out := r.out[:0]
	hdr := r.respHdr
	hdr.Reset()
	vars := r.vars[:0]
	*r = Request{}
	r.caps, r.out, r.respHdr, r.vars, r.contentLength = caps, out, hdr, vars, -1
	if cap(out) > 256<<10 {
		r.out = nil
	}
}

func internMethod(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	}
	return string(m)
}

// bodyAllowed reports whether a response with this status and method carries a body.
func bodyAllowed(r *Request) bool {
	return r.method != "HEAD" && r.status >= 200 && r.status != 204 && r.status != 304
}

// writeHead writes the status line and headers. n is the body length or -1 for a body
// of unknown length.
func (c *conn) writeHead(r *Request, n int64) {
	b := c.writer()
	core := CoreConfOf(r.loc)
	if c.e.draining.Load() || r.body.err != nil {
		r.keepalive = false
	}
	if r.parent == nil && r.body.expect && !r.body.done {
		// The client still holds the body it announced, waiting for 100 Continue.
		r.keepalive = false
	}
	if !r.keepalive {
		c.closeAfter = true
		if c.e.draining.Load() || (r.body.length != 0 && !r.body.done) {
			c.lingering = true
		}
	}
	start := b.Buffered()
	if r.status == 200 {
		b.WriteString(okServerDateLines(core.ServerTokens))
	} else {
		b.WriteString(statusLine(r.status))
		b.WriteString(serverDateLines(core.ServerTokens))
	}
	hasBody := r.status >= 200 && r.status != 204 && r.status != 304
	connWritten := false
	if hasBody {
		if ct := r.respHdr.Get("Content-Type"); ct != "" {
			writeContentType(b, r, ct)
		} else if core.DefaultType != "" {
			writeContentType(b, r, core.DefaultType)
		}
		if n >= 0 {
			// Built in the writer's own buffer (a local array would escape through
			// Write), with the Connection line below: one Write where there were four
			// (~150 instructions less a response, callgrind, BenchmarkLoopHello).
			buf := append(b.AvailableBuffer(), "Content-Length: "...)
			buf = strconv.AppendInt(buf, n, 10)
			buf = append(buf, "\r\n"...)
			// hasBody: the status is not 101.
			if r.keepalive {
				buf = append(buf, "Connection: keep-alive\r\n"...)
			} else {
				buf = append(buf, "Connection: close\r\n"...)
			}
			b.Write(buf)
			connWritten = true
		} else if !r.http10 {
			b.WriteString("Transfer-Encoding: chunked\r\n")
			c.chunked = true
		} else {
			// An HTTP/1.0 client learns where the body ends when the connection closes.
			r.keepalive = false
			c.closeAfter = true
		}
	}
	switch {
	case connWritten:
	case r.status == 101:
		// As nginx: the connection goes on in the protocol the client asked to
		// upgrade to (a handler that switches protocols takes the connection): never
		// another HTTP request on it.
		b.WriteString("Connection: upgrade\r\n")
		c.closeAfter = true
	case r.keepalive:
		b.WriteString("Connection: keep-alive\r\n")
	default:
		b.WriteString("Connection: close\r\n")
	}
	for _, f := range r.respHdr.kv {
		if writtenAbove(f.Key) {
			continue
		}
		writeHeaderLine(b, r, f.Key, f.Value)
	}
	b.WriteString("\r\n")
	r.headerBytes += int64(b.Buffered() - start)
	c.wroteHeader = true
}

// writtenAbove tells the header names writeHead writes itself (or never), whatever
// the handler set: by length first, so that most names cost no EqualFold (seven
// EqualFolds per header had cost ~210 instructions a header, callgrind).
func writtenAbove(k string) bool {
	switch len(k) {
	case 4:
		return strings.EqualFold(k, "Date")
	case 6:
		return strings.EqualFold(k, "Server")
	case 10:
		return strings.EqualFold(k, "Connection") || strings.EqualFold(k, "Keep-Alive")
	case 12:
		return strings.EqualFold(k, "Content-Type")
	case 14:
		return strings.EqualFold(k, "Content-Length")
	case 17:
		return strings.EqualFold(k, "Transfer-Encoding")
	}
	return false
}

// writeHeaderLine writes one line of a response head: every line a module, a script
// or an upstream gave goes through Request.AppendHeaderLine, which escapes the bytes
// that would end or split the line. The line is built in the writer's free space,
// so writing it costs no allocation.
func writeHeaderLine(b *bufio.Writer, r *Request, name, value string) {
	b.Write(r.AppendHeaderLine(b.AvailableBuffer(), "response header", name, value))
}

// writeContentType writes the Content-Type line: its name is spindle's own, so only
// the value is checked (cleanValue); one that needs escaping goes the way of every
// other line (writeHeaderLine). ~150 instructions less than writeHeaderLine for
// "text/plain" (callgrind).
func writeContentType(b *bufio.Writer, r *Request, value string) {
	if !cleanValue(value) {
		writeHeaderLine(b, r, "Content-Type", value)
		return
	}
	buf := append(b.AvailableBuffer(), "Content-Type: "...)
	buf = append(buf, value...)
	b.Write(append(buf, "\r\n"...))
}

// flushOutput sends the header (if not yet sent) and the buffered body now. With an
// unknown length the body goes out chunked.
func (c *conn) flushOutput(r *Request, flush bool) error {
	if c.h2 != nil {
		return c.h2.flushOutput(r, flush)
	}
	send := bodyAllowed(r)
	if !c.wroteHeader {
		c.t.setWriteTimeout(CoreConfOf(r.loc).SendTimeout)
		c.writeHead(r, r.contentLength)
		c.declared = -1
		if send && !c.chunked {
			c.declared = r.contentLength
		}
	}
	if len(r.out) > 0 && send {
		if err := c.writeBody(r, r.out); err != nil {
			return err
		}
	}
	r.out = r.out[:0]
	if flush {
		if err := c.flush(); err != nil {
			return c.writeFailed(r, err)
		}
	}
	return nil
}

func (c *conn) writeBody(r *Request, p []byte) error {
	b := c.writer()
	if c.chunked {
		b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(len(p)), 16))
		b.WriteString("\r\n")
		b.Write(p)
		_, err := b.WriteString("\r\n")
		if err != nil {
			return c.writeFailed(r, err)
		}
	} else if _, err := b.Write(p); err != nil {
		return c.writeFailed(r, err)
	}
	r.bodyBytes += int64(len(p))
	return nil
}

func (c *conn) writeFailed(r *Request, err error) error {
	c.closeAfter = true
	if !isConnReset(err) {
		r.Logf(LogInfo, "writing the response failed: %v", err)
	}
	return err
}

// finishOutput sends what is left of a main request's response.
func (c *conn) finishOutput(r *Request) {
	if c.h2 != nil {
		c.h2.finishOutput(r)
		return
	}
	if c.abort {
		r.out = r.out[:0]
		return
	}
	send := bodyAllowed(r)
	if !c.wroteHeader {
		n := r.contentLength
		if n < 0 || (send && n != int64(len(r.out))) {
			n = int64(len(r.out))
		}
		c.t.setWriteTimeout(CoreConfOf(r.loc).SendTimeout)
		c.writeHead(r, n)
		if send && len(r.out) > 0 {
			c.writeBody(r, r.out)
		}
		r.out = r.out[:0]
		return
	}
	if send {
		if len(r.out) > 0 {
			c.writeBody(r, r.out)
		}
		if c.chunked {
			c.writer().WriteString("0\r\n\r\n")
		}
		if c.declared >= 0 && r.bodyBytes != c.declared && !c.closeAfter {
			// A body filter changed the length without clearing Content-Length (as
			// ngx_lua, spindle sends what the head announced): nginx keeps the
			// connection and the client reads the surplus as the next response, or
			// waits for the missing bytes. Closing after the body ends both.
			r.Logf(LogError, "the response body was %d bytes, its Content-Length %d (a body filter that changes the length must clear Content-Length in a header filter): closing the connection", r.bodyBytes, c.declared)
			c.closeAfter = true
		}
	}
	r.out = r.out[:0]
}

// statusLines caches the status lines by code: an array, where a sync.Map's Load cost
// ~170 instructions of a /hello request's ~9,500 (callgrind).
var statusLines [600]atomic.Pointer[string]

func statusLine(code int) string {
	if code >= 100 && code < len(statusLines) {
		if p := statusLines[code].Load(); p != nil {
			return *p
		}
	}
	s := "HTTP/1.1 " + strconv.Itoa(code) + " " + StatusText(code) + "\r\n"
	if code >= 100 && code < len(statusLines) {
		statusLines[code].Store(&s)
	}
	return s
}

// dateValue is the Date header, formatted by the clock goroutine (runClock) when the
// second changes.
var dateValue atomic.Pointer[dateLines]

// dateLines is the Date header's value and the Server and Date lines of an HTTP/1.1
// response head with it, for server_tokens on and off: writeHead copies one string
// where it wrote five.
type dateLines struct {
	date string
	// okTokens and okPlain are tokens and plain after the status line of a 200:
	// the common head's first three lines in one write.
	okTokens, okPlain string
	tokens            string // "Server: spindle/VERSION\r\nDate: DATE\r\n"
	plain             string // "Server: spindle\r\nDate: DATE\r\n"
}

func newDateLines(now time.Time) *dateLines {
	d := now.UTC().Format(httpTimeFormat)
	tokens := "Server: spindle/" + version.Version + "\r\nDate: " + d + "\r\n"
	plain := "Server: spindle\r\nDate: " + d + "\r\n"
	return &dateLines{
		date:     d,
		tokens:   tokens,
		plain:    plain,
		okTokens: statusLine(200) + tokens,
		okPlain:  statusLine(200) + plain,
	}
}

func updateDate(now time.Time) { dateValue.Store(newDateLines(now)) }

const httpTimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

func httpDate() string {
	if p := dateValue.Load(); p != nil {
		return p.date
	}
	return time.Now().UTC().Format(httpTimeFormat)
}

// currentDateLines is this second's head lines (built now if the clock has not
// ticked yet).
func currentDateLines() *dateLines {
	if p := dateValue.Load(); p != nil {
		return p
	}
	return newDateLines(time.Now())
}

// serverDateLines is the Server and Date lines of a response head.
func serverDateLines(tokens bool) string {
	p := currentDateLines()
	if tokens {
		return p.tokens
	}
	return p.plain
}

// okServerDateLines is statusLine(200) then serverDateLines(tokens).
func okServerDateLines(tokens bool) string {
	p := currentDateLines()
	if tokens {
		return p.okTokens
	}
	return p.okPlain
}

func runtimeStack(buf []byte) int { return runtime.Stack(buf, false) }
