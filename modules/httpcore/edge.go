package httpcore

import (
	"bytes"
)

// The edge checks run over the raw request head before reqHeader indexes it. Parsers
// are often lenient where a server in front of other servers must not be: bare LF line
// ends, folded lines, header names with spaces, Content-Length beside
// Transfer-Encoding and unknown HTTP versions all make requests that different parsers
// read differently (request smuggling). spindle answers them with 400 (501 for an unknown
// Transfer-Encoding, 505 for an unsupported version) and closes the connection.

// headLimits bounds the request head, as nginx's large_client_header_buffers.
type headLimits struct {
	line  int // request line
	field int // one header line
	total int // the whole head
}

// headScan is the result of scanning a (possibly partial) request head.
type headScan struct {
	n        int  // length of the complete head including the final CRLF CRLF, 0 if incomplete
	status   int  // error status to answer with, 0 if none
	lineDone bool // the request line is complete
	chunked  bool
	hasCL    bool
	reason   string
}

var tchar [256]bool

func init() {
	for c := 'a'; c <= 'z'; c++ {
		tchar[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		tchar[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		tchar[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		tchar[c] = true
	}
}

func bad(reason string) headScan { return headScan{status: 400, reason: reason} }

// scanHead validates the request head at the start of b. An incomplete head gives a
// zero result (n == 0, status == 0) unless a limit is already exceeded.
func scanHead(b []byte, lim headLimits) headScan {
	if res, ok := scanHeadFast(b, lim); ok {
		return res
	}
	return scanHeadFull(b, lim)
}

// ctlByte marks the bytes a header value may not hold (controls but tab, DEL): the
// fast scan runs to the first of them, which must be the line's CR LF.
var ctlByte [256]bool

func init() {
	for c := 0; c < 0x20; c++ {
		ctlByte[c] = c != '\t'
	}
	ctlByte[0x7f] = true
}

// scanHeadFast is scanHead for a complete, well-formed head without
// Transfer-Encoding, in one pass: a header's name runs over tchar to its colon, its
// value to the first control byte, which must start the line's CRLF. Anything else
// (an incomplete head, a limit reached, any error, Transfer-Encoding, a repeated
// Content-Length or Host) gives ok false, and scanHeadFull decides it as before: what
// this accepts, scanHeadFull accepts with the same result (TestScanHeadFast and
// FuzzScanHead compare them). It took BenchmarkLoopHello from 9,025 to 8,700
// instructions a request (callgrind; scanHead with its callees ~1,370 -> ~1,290).
func scanHeadFast(b []byte, lim headLimits) (headScan, bool) {
	eol := bytes.IndexByte(b, '\n')
	if eol <= 0 || eol > lim.line || b[eol-1] != '\r' {
		return headScan{}, false
	}
	line := b[:eol-1]
	if !requestLineOK(line) {
		return headScan{}, false
	}
	http10 := line[len(line)-1] == '0' // requestLineOK: it ends HTTP/1.0 or HTTP/1.1
	pos := eol + 1
	var hasCL, hasHost bool
	for {
		if pos+1 >= len(b) || pos+1 >= lim.total || lim.field < 1 {
			return headScan{}, false
		}
		if b[pos] == '\r' {
			if b[pos+1] != '\n' {
				return headScan{}, false
			}
			if !hasHost && !http10 {
				return headScan{}, false
			}
			return headScan{n: pos + 2, lineDone: true, hasCL: hasCL}, true
		}
		i := pos
		for i < len(b) && tchar[b[i]] {
			i++
		}
		if i == pos || i >= len(b) || b[i] != ':' {
			return headScan{}, false
		}
		j := i + 1
		for j < len(b) && !ctlByte[b[j]] {
			j++
		}
		// The line's LF is at j+1: nl, scanHeadFull's index of it in b[pos:], is
		// j+1-pos, and the limits are its.
		if j+1 >= len(b) || b[j] != '\r' || b[j+1] != '\n' || j+1-pos > lim.field || j+1 > lim.total {
			return headScan{}, false
		}
		name, value := b[pos:i], trimOWS(b[i+1:j])
		pos = j + 2
		switch len(name) {
		case 4:
			if equalFold(name, "host") {
				if hasHost || !validHost(value) {
					return headScan{}, false
				}
				hasHost = true
			}
		case 14:
			if equalFold(name, "content-length") {
				if hasCL || len(value) == 0 || len(value) > 18 {
					return headScan{}, false
				}
				for _, c := range value {
					if c < '0' || c > '9' {
						return headScan{}, false
					}
				}
				hasCL = true
			}
		case 17:
			if equalFold(name, "transfer-encoding") {
				return headScan{}, false
			}
		}
	}
}

// requestLineOK is checkRequestLine's test for a request line it has no objection to.
func requestLineOK(line []byte) bool {
	i := 0
	for i < len(line) && (line[i] >= 'A' && line[i] <= 'Z' || line[i] == '_' || line[i] == '-') {
		i++
	}
	if i == 0 || i >= len(line) || line[i] != ' ' {
		return false
	}
	i++
	t := i
	for i < len(line) && line[i] > 0x20 && line[i] != 0x7f {
		i++
	}
	if i == t || i >= len(line) || line[i] != ' ' || line[t] != '/' {
		return false
	}
	v := line[i+1:]
	return len(v) == 8 && string(v[:7]) == "HTTP/1." && (v[7] == '1' || v[7] == '0')
}

func scanHeadFull(b []byte, lim headLimits) headScan {
	var res headScan
	// request line
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		if len(b) > lim.line {
			return headScan{status: 414, reason: "request line too long"}
		}
		return res
	}
	if eol == 0 || b[eol-1] != '\r' {
		return bad("request line not terminated by CRLF")
	}
	if eol > lim.line {
		return headScan{status: 414, reason: "request line too long"}
	}
	res.lineDone = true
	if st := checkRequestLine(b[:eol-1]); st.status != 0 {
		return st
	}
	pos := eol + 1
	http10 := bytes.HasSuffix(b[:eol-1], []byte("HTTP/1.0"))
	var nCL, nTE, nHost int
	var te []byte
	for {
		rest := b[pos:]
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			if len(rest) > lim.field || len(b) > lim.total {
				return headScan{status: 431, lineDone: true, reason: "request header too large"}
			}
			return headScan{lineDone: true}
		}
		if nl > lim.field || pos+nl > lim.total {
			return headScan{status: 431, lineDone: true, reason: "request header too large"}
		}
		if nl == 0 || rest[nl-1] != '\r' {
			return bad("header line not terminated by CRLF")
		}
		line := rest[:nl-1]
		pos += nl + 1
		if len(line) == 0 {
			res.n = pos
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return bad("obsolete line folding")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return bad("header line without a name")
		}
		name := line[:colon]
		for _, c := range name {
			if !tchar[c] {
				return bad("invalid character in header name")
			}
		}
		value := line[colon+1:]
		for _, c := range value {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return bad("invalid character in header value")
			}
		}
		value = trimOWS(value)
		switch {
		case equalFold(name, "content-length"):
			nCL++
			if len(value) == 0 {
				return bad("empty Content-Length")
			}
			for _, c := range value {
				if c < '0' || c > '9' {
					return bad("invalid Content-Length")
				}
			}
			if len(value) > 18 {
				return headScan{status: 413, lineDone: true, reason: "Content-Length too large"}
			}
		case equalFold(name, "transfer-encoding"):
			// The value was trimmed of OWS, tabs included, as RFC 9110 5.6.3 allows:
			// "Transfer-Encoding:<TAB>chunked" is chunked (nginx 1.22 answers it 501).
			nTE++
			te = value
		case equalFold(name, "host"):
			nHost++
			if !validHost(value) {
				return bad("invalid Host header")
			}
		}
	}
	if nCL > 1 {
		return bad("duplicate Content-Length")
	}
	if nHost > 1 {
		return bad("duplicate Host")
	}
	if nHost == 0 && !http10 {
		return bad("missing Host header in HTTP/1.1 request")
	}
	if nTE > 0 {
		if nTE > 1 || http10 {
			return bad("invalid Transfer-Encoding")
		}
		if nCL > 0 {
			return bad("Content-Length with Transfer-Encoding")
		}
		if !equalFold(te, "chunked") {
			return headScan{status: 501, lineDone: true, reason: "unknown Transfer-Encoding"}
		}
		res.chunked = true
	}
	res.hasCL = nCL > 0
	return res
}

// trimOWS drops the optional white space around a field value (bytes.Trim with a
// cutset of two builds a set per call, for every header of every request).
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func checkRequestLine(line []byte) headScan {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return bad("invalid request line")
	}
	// A method is upper-case letters, '_' and '-', as nginx parses it: "get" is not
	// GET but a malformed request (400); a well-formed method nothing knows gets the
	// handler's answer (405 from static files, as nginx).
	for _, c := range line[:sp1] {
		if (c < 'A' || c > 'Z') && c != '_' && c != '-' {
			return bad("invalid method")
		}
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return bad("invalid request line")
	}
	target := rest[:sp2]
	for _, c := range target {
		if c <= 0x20 || c == 0x7f {
			return bad("invalid character in request target")
		}
	}
	if target[0] != '/' && target[0] != '*' && !bytes.HasPrefix(target, []byte("http://")) && !bytes.HasPrefix(target, []byte("https://")) {
		return bad("invalid request target")
	}
	version := rest[sp2+1:]
	if len(version) != 8 || !bytes.HasPrefix(version, []byte("HTTP/")) || version[6] != '.' ||
		version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9' {
		return bad("invalid HTTP version")
	}
	if version[5] != '1' || version[7] > '1' {
		return headScan{status: 505, reason: "unsupported HTTP version"}
	}
	return headScan{}
}

// validHost reports whether a Host value is one nginx accepts (ngx_http_validate_host):
// no empty label ("..", "a..b"), no '/', '\\' or NUL (they would reach paths built from
// $host), and a host part left once a trailing dot and the port are dropped (".",
// ":80" are not hosts). A bracketed IPv6 literal may hold colons.
func validHost(h []byte) bool {
	end := len(h) // the host part ends before the port
	dot := -2     // where the last dot was
	literal := false
	i := 0
	for {
		for i < len(h) && !hostSpecial[h[i]] {
			i++
		}
		if i == len(h) {
			break
		}
		switch h[i] {
		case '.':
			if dot == i-1 {
				return false
			}
			dot = i
		case ':':
			if !literal && end == len(h) {
				end = i
			}
		case '[':
			if i == 0 {
				literal = true
			}
		case ']':
			literal = false
		default: // '/', '\\', NUL, space
			return false
		}
		i++
	}
	if dot == end-1 {
		end--
	}
	return end > 0
}

// hostSpecial marks the bytes validHost's switch looks at: an inner loop skips the
// others, most of a host ("127.0.0.1:8080": 303 -> 226 instructions, callgrind).
var hostSpecial = [256]bool{'.': true, ':': true, '[': true, ']': true, '/': true, '\\': true, 0: true, ' ': true}

// equalFold reports whether b and s are equal in ASCII case folding: the edge's
// names against lower-case literals, and reqHeader's lookups of any name.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
