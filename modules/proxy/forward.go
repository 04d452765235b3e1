package proxy

import (
	"errors"
	"io"
	"strings"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/upstream"
)

// run tries the upstream's servers until one answers, or the failures allow no
// further try: 502 when no server could be reached, 504 when the last one timed out.
func (q *request) run() httpcore.Action {
	r := q.r
	tries := q.t.up.Tries(r)
	last := 0
	for {
		p := tries.Next()
		if p == nil {
			if last == 0 {
				r.Logf(httpcore.LogError, "no live upstreams while connecting to upstream, upstream: %q", q.t.up.Name)
				last = 502
			}
			return r.Error(last)
		}
		a, f := q.attempt(p, &tries)
		if f == nil {
			return a
		}
		last = f.status
		if !q.canRetry(f.kind, &tries) {
			return r.Error(f.status)
		}
	}
}

// canRetry reports whether a failure of this kind may be followed by a try at the
// next server: proxy_next_upstream lists it, the method may be repeated (or
// non_idempotent is listed), the body can be sent again, and neither
// proxy_next_upstream_tries nor proxy_next_upstream_timeout is exhausted.
func (q *request) canRetry(kind nextSet, tries *upstream.Tries) bool {
	c := q.c
	if c.next&kind == 0 {
		return false
	}
	if !idempotent(q.method) && c.next&nextNonIdempotent == 0 {
		return false
	}
	if q.touched {
		return false
	}
	if c.nextTries > 0 && tries.Count() >= c.nextTries {
		return false
	}
	if c.nextTimeout > 0 && time.Since(q.start) >= c.nextTimeout {
		return false
	}
	return true
}

func (q *request) logUpstream(p *upstream.Peer, err error, phase string) {
	msg := err.Error()
	if isTimeout(err) {
		msg = "upstream timed out"
	} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "upstream prematurely closed connection"
	}
	q.r.Logf(httpcore.LogError, "%s while %s, upstream: \"http://%s%s\"", msg, phase, p, q.uri)
}

// attempt sends the request to p and relays its response. It returns a failure when
// p could not be reached or did not answer properly and the caller may try another
// server; otherwise the request is finished (answered, or failed for good).
func (q *request) attempt(p *upstream.Peer, tries *upstream.Tries) (httpcore.Action, *failure) {
	r, u := q.r, q.t.up
	t0 := time.Now()
	try := upstream.Try{Addr: p.String(), Connect: -1, Header: -1, Response: -1}
	fail := func(err error, phase string) *failure {
		f := classify(err)
		q.logUpstream(p, err, phase)
		try.Status, try.Response = f.status, time.Since(t0)
		upstream.Record(r, try)
		u.Release(p, f.counted)
		return &f
	}
	uc := q.pl.get(p)
	reused := uc != nil
	var h respHead
	early := false
	for {
		if uc == nil {
			var err error
			if uc, err = q.pl.dial(p, q.c.connectTimeout); err != nil {
				return 0, fail(err, "connecting to upstream")
			}
		}
		try.Connect = time.Since(t0)
		uc.rto, uc.wto = q.c.readTimeout, q.c.sendTimeout
		err := q.send(uc)
		var ce clientErr
		if errors.As(err, &ce) {
			uc.close()
			u.Release(p, false)
			try.Response = time.Since(t0)
			upstream.Record(r, try)
			return q.clientBodyError(ce.err), nil
		}
		phase := "reading response header from upstream"
		if err != nil {
			// The server may have answered before reading the whole request (a
			// 413 for an upload) and closed: that answer is worth relaying.
			if herr := readHead(uc.br, &h); herr == nil {
				early = true
			} else {
				phase = "sending request to upstream"
			}
		}
		if err == nil {
			err = readHead(uc.br, &h)
		} else if early {
			err = nil
		}
		if err != nil {
			uc.close()
			if reused && staleConn(err) && !q.touched && idempotent(q.method) {
				// A keepalive connection the server closed meanwhile: the request
				// did not reach it. Try once more on a new connection.
				uc, reused = nil, false
				continue
			}
			return 0, fail(err, phase)
		}
		break
	}
	try.Header = time.Since(t0)
	uc.requests++
	if n := statusNext(h.status); n != 0 && q.canRetry(n, tries) && tries.Count() < u.NumPeers() {
		// proxy_next_upstream http_5xx: this answer is dropped for the next server's.
		uc.close()
		try.Status, try.Response = h.status, time.Since(t0)
		upstream.Record(r, try)
		u.Release(p, h.status != 403 && h.status != 404)
		q.r.Logf(httpcore.LogWarn, "upstream %s answered %d, trying the next server", p, h.status)
		return 0, &failure{kind: n, status: 502}
	}
	return q.relay(uc, &h, p, try, t0, early), nil
}

// send writes the request and its body to the upstream.
func (q *request) send(uc *upConn) error {
	bw := uc.bw
	bw.Write(q.head)
	switch {
	case q.upgrade != "":
		bw.WriteString("Connection: upgrade\r\n")
	case q.t.up.Keepalive == 0:
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	switch {
	case q.replay != nil:
		bw.Write(q.replay)
	case q.body != nil && q.bodyLen > 0:
		if err := copyBody(bw, q.body); err != nil {
			return err
		}
	case q.body != nil && q.bodyLen < 0:
		if err := copyBody(chunkedWriter{bw}, q.body); err != nil {
			return err
		}
		bw.WriteString("0\r\n\r\n")
	}
	return bw.Flush()
}

// copyBody streams the client's body to the upstream through a fixed buffer: a
// 1 GB upload never sits in memory. Read errors are the client's (clientErr).
func copyBody(w io.Writer, body io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return clientErr{rerr}
		}
	}
}

// framingNames are the hop-by-hop and framing headers of a response that hidden
// never passes.
var framingNames = []string{"connection", "keep-alive", "proxy-connection", "te", "trailer",
	"transfer-encoding", "upgrade", "content-length"}

// hidden reports upstream response headers not passed to the client: hop-by-hop and
// framing headers, and those nginx hides by default (Date, Server, X-Accel-*) unless
// proxy_pass_header names them, plus proxy_hide_header.
func (c *Conf) hidden(name string, connTokens []string) bool {
	if lowerIn(name, framingNames) {
		return true
	}
	for _, t := range connTokens {
		if strings.EqualFold(t, name) {
			return true
		}
	}
	for _, h := range c.hide {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	if lowerIs(name, "date") || lowerIs(name, "server") || len(name) >= 8 && lowerIs(name[:8], "x-accel-") {
		for _, h := range c.passHeaders {
			if strings.EqualFold(h, name) {
				return false
			}
		}
		return true
	}
	return false
}

// rewriteRedirect applies proxy_redirect to a Location or Refresh value.
func (q *request) rewriteRedirect(v string) string {
	c := q.c
	switch c.redirect {
	case redirectOff:
		return v
	case redirectRules:
		for _, rule := range c.redirects {
			from, err1 := rule.from.String(q.r)
			to, err2 := rule.to.String(q.r)
			if err1 != nil || err2 != nil || from == "" {
				continue
			}
			if strings.HasPrefix(v, from) {
				return to + v[len(from):]
			}
		}
		return v
	}
	// default: the proxy_pass URL is replaced by the location it serves (nginx:
	// proxy_redirect http://upstream/uri/ /location/).
	if c.pass.expr != nil {
		return v
	}
	from := "http://" + q.t.host
	to := ""
	if q.t.hasURI {
		from += strings.SplitN(q.t.uri, "?", 2)[0]
		to = q.t.prefix
	} else {
		from += "/"
		to = "/"
	}
	if strings.HasPrefix(v, from) {
		return to + v[len(from):]
	}
	return v
}

// relay passes an upstream response to the client, streaming its body.
func (q *request) relay(uc *upConn, h *respHead, p *upstream.Peer, try upstream.Try, t0 time.Time, early bool) httpcore.Action {
	r, c, u := q.r, q.c, q.t.up
	if h.status == 101 {
		if q.upgrade == "" || !h.upgrade {
			uc.close()
			try.Status, try.Response = 502, time.Since(t0)
			upstream.Record(r, try)
			u.Release(p, true)
			r.Logf(httpcore.LogError, "upstream switched protocols without being asked to, upstream: \"http://%s%s\"", p, q.uri)
			return r.Error(502)
		}
		return q.tunnel(uc, h, p, try, t0)
	}
	if c.intercept && h.status >= 300 {
		uc.close()
		try.Status, try.Response = h.status, time.Since(t0)
		upstream.Record(r, try)
		u.Release(p, false)
		return r.Error(h.status)
	}
	var connTokens []string
	var upHdr httpcore.Header
	for _, f := range h.fields {
		upHdr.Add(f.Key, f.Value)
		if strings.EqualFold(f.Key, "Connection") {
			for _, t := range strings.Split(f.Value, ",") {
				connTokens = append(connTokens, strings.TrimSpace(t))
			}
		}
	}
	upstream.SetResponseHeader(r, &upHdr)
	out := r.RespHeader()
	for _, f := range h.fields {
		if c.hidden(f.Key, connTokens) {
			continue
		}
		switch {
		case strings.EqualFold(f.Key, "Content-Type"):
			out.Set("Content-Type", f.Value)
		case strings.EqualFold(f.Key, "Location"), strings.EqualFold(f.Key, "Refresh"):
			out.Add(f.Key, q.rewriteRedirect(f.Value))
		default:
			out.Add(f.Key, f.Value)
		}
	}
	r.SetStatus(h.status)
	try.Status = h.status
	upstream.Record(r, try)
	noBody := q.method == "HEAD" || h.status < 200 || h.status == 204 || h.status == 304
	if h.length >= 0 {
		r.SetContentLength(h.length)
	}
	body := newBodyReader(uc.br, h, noBody)
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var upErr, cliErr error
	wrote := false
	for !body.done {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := r.Write(buf[:n]); werr != nil {
				cliErr = werr
				break
			}
			wrote = true
			// Stream as it comes: send what we have whenever the upstream has
			// nothing more buffered, unless the body is complete (then the end
			// of the request sends it with the rest).
			if !body.done && uc.br.Buffered() == 0 {
				if ferr := r.Flush(); ferr != nil {
					cliErr = ferr
					break
				}
			}
		}
		if err != nil && err != io.EOF {
			upErr = err
			break
		}
	}
	upstream.FinishLast(r, time.Since(t0))
	switch {
	case cliErr != nil:
		uc.close()
		u.Release(p, false)
		r.Logf(httpcore.LogInfo, "client closed the connection while sending the response: %v", cliErr)
		return httpcore.Finished
	case upErr != nil:
		uc.close()
		u.Release(p, false)
		q.logUpstream(p, upErr, "reading upstream")
		if !wrote {
			// Nothing of the body went out yet: the client gets an error instead.
			r.RespHeader().Reset()
			r.SetContentLength(-1)
			st := 502
			if isTimeout(upErr) {
				st = 504
			}
			return r.Error(st)
		}
		r.AbortConnection()
		return httpcore.Finished
	}
	u.Release(p, false)
	if body.complete() && !h.close && !early {
		q.pl.put(uc)
	} else {
		uc.close()
	}
	return httpcore.Finished
}
