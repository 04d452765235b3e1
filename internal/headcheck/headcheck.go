// Package headcheck parses HTTP/1.1 message heads strictly (RFC 9112), for tests that
// check what spindle puts on the wire: every line ends with CRLF, no CR, LF or NUL
// appears anywhere else, a field name is a token, a field value is visible bytes,
// spaces, tabs and obs-text, and there is no line folding. A head that a lenient
// client could read differently from a strict one fails to parse.
package headcheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Field is one header line: its name, and its value without the surrounding spaces
// and tabs.
type Field struct{ Name, Value string }

// Head is a parsed message head.
type Head struct {
	StartLine string
	Fields    []Field
	// Size is the length of the head, final empty line included; the body follows.
	Size int
}

// Values returns the values of the fields named name (case-insensitive).
func (h *Head) Values(name string) []string {
	var out []string
	for _, f := range h.Fields {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// Without returns the fields whose names are not in names (case-insensitive).
func (h *Head) Without(names ...string) []Field {
	var out []Field
next:
	for _, f := range h.Fields {
		for _, n := range names {
			if strings.EqualFold(f.Name, n) {
				continue next
			}
		}
		out = append(out, f)
	}
	return out
}

// IsToken reports whether s is an RFC 9110 token (a valid field name or method).
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// Parse parses the head at the start of b: a start line, header lines, an empty line.
func Parse(b []byte) (*Head, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, errors.New("no CRLF CRLF ending the head")
	}
	h := &Head{Size: end + 4}
	head := b[:end+2]
	for i, c := range head {
		switch c {
		case 0:
			return nil, fmt.Errorf("NUL at byte %d", i)
		case '\r':
			if i+1 >= len(head) || head[i+1] != '\n' {
				return nil, fmt.Errorf("bare CR at byte %d", i)
			}
		case '\n':
			if i == 0 || head[i-1] != '\r' {
				return nil, fmt.Errorf("bare LF at byte %d", i)
			}
		}
	}
	lines := strings.Split(string(head[:len(head)-2]), "\r\n")
	h.StartLine = lines[0]
	for _, l := range lines[1:] {
		if l == "" {
			return nil, errors.New("empty line inside the head")
		}
		if l[0] == ' ' || l[0] == '\t' {
			return nil, fmt.Errorf("folded line %q", l)
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("header line without a colon: %q", l)
		}
		if !IsToken(name) {
			return nil, fmt.Errorf("header name %q is not a token", name)
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < 0x20 && c != '\t' || c == 0x7f {
				return nil, fmt.Errorf("control byte %#02x in the value of %q", c, name)
			}
		}
		h.Fields = append(h.Fields, Field{name, strings.Trim(value, " \t")})
	}
	return h, nil
}

// ParseResponse parses a response head: "HTTP/1.1 NNN reason" and its fields.
func ParseResponse(b []byte) (*Head, int, error) {
	h, err := Parse(b)
	if err != nil {
		return nil, 0, err
	}
	l := h.StartLine
	if len(l) < 12 || !strings.HasPrefix(l, "HTTP/1.1 ") || l[12] != ' ' {
		return nil, 0, fmt.Errorf("status line %q", l)
	}
	code, err := strconv.Atoi(l[9:12])
	if err != nil || code < 100 {
		return nil, 0, fmt.Errorf("status line %q", l)
	}
	return h, code, nil
}

// ParseRequest parses a request head: "METHOD target HTTP/1.1", where the target is
// visible ASCII only, and its fields.
func ParseRequest(b []byte) (h *Head, method, target string, err error) {
	if h, err = Parse(b); err != nil {
		return nil, "", "", err
	}
	parts := strings.Split(h.StartLine, " ")
	if len(parts) != 3 || !IsToken(parts[0]) || parts[1] == "" || parts[2] != "HTTP/1.1" {
		return nil, "", "", fmt.Errorf("request line %q", h.StartLine)
	}
	for i := 0; i < len(parts[1]); i++ {
		if c := parts[1][i]; c <= 0x20 || c >= 0x7f {
			return nil, "", "", fmt.Errorf("byte %#02x in the request target %q", c, parts[1])
		}
	}
	return h, parts[0], parts[1], nil
}

// PercentAll encodes every byte of s as %XX, so that any bytes travel in a URI and
// come back exact from any URI decoder (none is left for '+' rules to touch).
func PercentAll(s string) string {
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, 3*len(s))
	for i := 0; i < len(s); i++ {
		b = append(b, '%', hex[s[i]>>4], hex[s[i]&15])
	}
	return string(b)
}

// Fetch sends "GET target" on a new connection to addr, reads the response and
// parses its head strictly; a head that does not parse fails the test, with the bytes
// received. The connection is kept alive, and the client closes it once the body is
// read: the closing side keeps the connection's port in TIME_WAIT, and a client's
// port in TIME_WAIT on loopback may be used again at once (tcp_tw_reuse), where a
// server's closing would run a fuzz test out of ports after ~28,000 requests.
func Fetch(t testing.TB, addr, target string, headers ...string) (h *Head, status int, raw string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET " + target + " HTTP/1.1\r\nHost: fuzz.test\r\n"
	for _, hd := range headers {
		req += hd + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b []byte
	buf := make([]byte, 4096)
	read := func() bool {
		n, err := c.Read(buf)
		b = append(b, buf[:n]...)
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatalf("GET %s: reading the response: %v (read %q)", target, err, b)
		}
		return true
	}
	for !bytes.Contains(b, []byte("\r\n\r\n")) {
		if !read() {
			break
		}
	}
	h, status, err = ParseResponse(b)
	if err != nil {
		t.Fatalf("GET %s: response head: %v\n%q", target, err, b)
	}
	// The body: by Content-Length, to the last chunk, or to the end of the connection.
	cl, chunked := -1, false
	if v := h.Values("Content-Length"); len(v) == 1 {
		if cl, err = strconv.Atoi(v[0]); err != nil {
			t.Fatalf("GET %s: Content-Length %q\n%q", target, v[0], b)
		}
	}
	for _, v := range h.Values("Transfer-Encoding") {
		chunked = chunked || strings.EqualFold(v, "chunked")
	}
	for {
		body := b[h.Size:]
		switch {
		case status < 200 || status == 204 || status == 304,
			cl >= 0 && len(body) >= cl,
			chunked && bytes.HasSuffix(body, []byte("0\r\n\r\n")):
			return h, status, string(b)
		}
		if !read() {
			return h, status, string(b)
		}
	}
}

// Equal reports whether got and want hold the same lines in the same order (names
// compared case-insensitively, values exactly).
func Equal(got, want []Field) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !strings.EqualFold(got[i].Name, want[i].Name) || got[i].Value != want[i].Value {
			return false
		}
	}
	return true
}
