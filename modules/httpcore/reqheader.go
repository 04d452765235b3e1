package httpcore

import (
	"bytes"
	"errors"
)

// reqHeader is a request head as the edge accepted it, copied out of the connection's
// reader and indexed. scanHead has already checked its form (CRLF lines, a request
// line of method, target and HTTP/1.0 or HTTP/1.1, a token name and a colon on each
// header line, values without control bytes, at most one Host and Content-Length), so
// reading it is finding where each part starts and ends.
//
// It replaced fasthttp's RequestHeader, which parsed the head a second time,
// rewrote every name into its canonical case and kept copies of the special
// headers: 185 ns for wrk's head (one Host line) and 420 ns for ab's (four lines),
// against scanHead's 57 ns; fasthttp's functions were 2% of the worker's samples on
// /lua under perf. Names are kept as the client sent them and lookups fold case, as
// nginx does.
type reqHeader struct {
	buf     []byte  // the head: the request line to the empty line's CRLF
	method  span    // in buf
	target  span    // in buf
	lineEnd int     // where the header lines start in buf
	fields  []field // in the order sent
	host    int     // 1 + the index of the Host line in fields, 0 if none
	http11  bool
	close   bool  // the client asks that the connection close after the response
	length  int64 // Content-Length, -1 if none
}

type span struct{ start, end int32 }

type field struct{ name, value span }

var (
	errRequestLine     = errors.New("invalid request line")
	errHeaderLine      = errors.New("invalid header line")
	errDuplicateHost   = errors.New("too many host headers")
	errContentLength   = errors.New("invalid Content-Length")
	errDuplicateLength = errors.New("duplicate Content-Length")
)

// reset forgets the head, keeping the buffers for the next.
func (h *reqHeader) reset() {
	*h = reqHeader{buf: h.buf[:0], fields: h.fields[:0], length: -1}
}

// parse copies and indexes head, a whole request head that ends with CRLF CRLF. A
// head that scanHead accepted always parses; the errors are for heads built from
// HTTP/2 fields, which took another path (h2stream.parseHead).
func (h *reqHeader) parse(head []byte) error {
	h.reset()
	h.buf = append(h.buf, head...)
	b := h.buf
	eol := bytes.IndexByte(b, '\n')
	if eol < 1 || b[eol-1] != '\r' {
		return errRequestLine
	}
	line := b[:eol-1]
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		return errRequestLine
	}
	switch string(line[sp2+1:]) {
	case "HTTP/1.1":
		h.http11 = true
	case "HTTP/1.0":
	default:
		return errRequestLine
	}
	h.method = span{0, int32(sp1)}
	h.target = span{int32(sp1 + 1), int32(sp2)}
	pos := eol + 1
	h.lineEnd = pos
	var conn span
	hasConn := false
	for {
		nl := bytes.IndexByte(b[pos:], '\n')
		if nl < 1 || b[pos+nl-1] != '\r' {
			return errHeaderLine
		}
		end := pos + nl - 1 // the line's CR
		if end == pos {
			break // the empty line
		}
		colon := bytes.IndexByte(b[pos:end], ':')
		if colon < 1 {
			return errHeaderLine
		}
		vs, ve := pos+colon+1, end
		for vs < ve && (b[vs] == ' ' || b[vs] == '\t') {
			vs++
		}
		for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
			ve--
		}
		f := field{span{int32(pos), int32(pos + colon)}, span{int32(vs), int32(ve)}}
		name, value := b[pos:pos+colon], b[vs:ve]
		switch len(name) {
		case 4:
			if equalFold(name, "host") {
				if h.host > 0 {
					return errDuplicateHost
				}
				h.host = len(h.fields) + 1
			}
		case 10:
			if equalFold(name, "connection") && !hasConn {
				conn, hasConn = f.value, true
			}
		case 14:
			if equalFold(name, "content-length") {
				if h.length >= 0 {
					return errDuplicateLength
				}
				if h.length = parseLength(value); h.length < 0 {
					return errContentLength
				}
			}
		}
		h.fields = append(h.fields, f)
		pos = end + 2
	}
	// HTTP/1.1 keeps the connection unless the client says close; HTTP/1.0 closes it
	// unless the client says keep-alive (RFC 9112 §9.3).
	if h.http11 {
		h.close = hasConn && hasToken(b[conn.start:conn.end], "close")
	} else {
		h.close = !hasConn || !hasToken(b[conn.start:conn.end], "keep-alive")
	}
	return nil
}

// parseLength is a Content-Length value's number, -1 if it is not one.
func parseLength(v []byte) int64 {
	if len(v) == 0 || len(v) > 18 {
		return -1
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// hasToken reports whether the comma-separated list v holds token (lower case),
// in any case.
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var item []byte
		item, v = cutItem(v, ',')
		if equalFold(trimOWS(item), token) {
			return true
		}
	}
	return false
}

// cutItem splits the first item of a list separated by sep from the rest.
func cutItem(v []byte, sep byte) (item, rest []byte) {
	if i := bytes.IndexByte(v, sep); i >= 0 {
		return v[:i], v[i+1:]
	}
	return v, nil
}

func (h *reqHeader) bytes(s span) []byte { return h.buf[s.start:s.end:s.end] }

// Method is the request method.
func (h *reqHeader) Method() []byte { return h.bytes(h.method) }

// RequestURI is the request target as sent.
func (h *reqHeader) RequestURI() []byte { return h.bytes(h.target) }

// IsHTTP11 reports an HTTP/1.1 request (else HTTP/1.0).
func (h *reqHeader) IsHTTP11() bool { return h.http11 }

// ConnectionClose reports whether the connection closes after this request as the
// client asks (Connection, and the HTTP version's default).
func (h *reqHeader) ConnectionClose() bool { return h.close }

// ContentLength is the Content-Length header's value, -1 without one.
func (h *reqHeader) ContentLength() int64 { return h.length }

// Host is the Host header's value, nil without one.
func (h *reqHeader) Host() []byte {
	if h.host == 0 {
		return nil
	}
	return h.bytes(h.fields[h.host-1].value)
}

// RawHeaders is the header lines as sent, with the empty line's CRLF.
func (h *reqHeader) RawHeaders() []byte { return h.buf[h.lineEnd:len(h.buf):len(h.buf)] }

// Peek is the value of the first header named name (in any case), nil without one.
func (h *reqHeader) Peek(name string) []byte {
	for _, f := range h.fields {
		if equalFold(h.bytes(f.name), name) {
			return h.bytes(f.value)
		}
	}
	return nil
}

// PeekAll is the values of every header named name, in order.
func (h *reqHeader) PeekAll(name string) [][]byte {
	var out [][]byte
	for _, f := range h.fields {
		if equalFold(h.bytes(f.name), name) {
			out = append(out, h.bytes(f.value))
		}
	}
	return out
}

// Visit calls f for every header line in order, with views of the head: f copies
// what it keeps.
func (h *reqHeader) Visit(f func(name, value []byte)) {
	for _, fl := range h.fields {
		f(h.bytes(fl.name), h.bytes(fl.value))
	}
}

// Cookie is the value of the first cookie named name in the Cookie headers, nil
// without one.
func (h *reqHeader) Cookie(name string) []byte {
	for _, f := range h.fields {
		if !equalFold(h.bytes(f.name), "cookie") {
			continue
		}
		v := h.bytes(f.value)
		for len(v) > 0 {
			var kv []byte
			kv, v = cutItem(v, ';')
			kv = bytes.TrimSpace(kv)
			k, val, _ := bytes.Cut(kv, []byte{'='})
			if string(k) == name {
				if val == nil {
					return []byte{} // a cookie without "=": present, empty
				}
				return val[:len(val):len(val)]
			}
		}
	}
	return nil
}
