package redis

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Kind is the type of a Redis reply.
type Kind uint8

// Reply kinds (RESP2, plus the RESP3 types a server may still send).
const (
	KindNil    Kind = iota // $-1, *-1, _
	KindString             // bulk string
	KindStatus             // +OK
	KindInt                // :1
	KindError              // -ERR ...
	KindArray              // *N
)

// Reply is a parsed Redis reply.
type Reply struct {
	Kind  Kind
	Str   string  // KindString, KindStatus, KindError (without the "-")
	Int   int64   // KindInt
	Elems []Reply // KindArray
}

// IsNil reports a nil reply (a missing key).
func (r Reply) IsNil() bool { return r.Kind == KindNil }

// Err returns the error of an error reply, or nil.
func (r Reply) Err() error {
	if r.Kind == KindError {
		return ReplyError(r.Str)
	}
	return nil
}

// ReplyError is an error reply of the server ("ERR unknown command", "WRONGTYPE ...").
type ReplyError string

func (e ReplyError) Error() string { return string(e) }

// Text is the reply as plain text: strings as they are, integers in decimal, nil as
// "", arrays one element per line, errors as their message.
func (r Reply) Text() string { return string(r.AppendText(nil)) }

// AppendText appends Text to dst.
func (r Reply) AppendText(dst []byte) []byte {
	switch r.Kind {
	case KindString, KindStatus, KindError:
		return append(dst, r.Str...)
	case KindInt:
		return strconv.AppendInt(dst, r.Int, 10)
	case KindArray:
		for i, e := range r.Elems {
			if i > 0 {
				dst = append(dst, '\n')
			}
			dst = e.AppendText(dst)
		}
	}
	return dst
}

var errProtocol = errors.New("redis: invalid reply")

// ParseReply parses one RESP reply at the start of b and returns the rest.
func ParseReply(b []byte) (Reply, []byte, error) {
	i := indexCRLF(b)
	if i < 1 {
		return Reply{}, b, errProtocol
	}
	line, rest := b[1:i], b[i+2:]
	switch b[0] {
	case '+':
		return Reply{Kind: KindStatus, Str: string(line)}, rest, nil
	case '-':
		return Reply{Kind: KindError, Str: string(line)}, rest, nil
	case ':':
		n, err := strconv.ParseInt(string(line), 10, 64)
		if err != nil {
			return Reply{}, b, errProtocol
		}
		return Reply{Kind: KindInt, Int: n}, rest, nil
	case '_':
		return Reply{Kind: KindNil}, rest, nil
	case ',', '(', '#':
		// RESP3 double, big number, boolean: plain text.
		return Reply{Kind: KindStatus, Str: string(line)}, rest, nil
	case '$', '=', '!':
		n, err := strconv.Atoi(string(line))
		if err != nil {
			return Reply{}, b, errProtocol
		}
		if n < 0 {
			return Reply{Kind: KindNil}, rest, nil
		}
		if len(rest) < n+2 {
			return Reply{}, b, errProtocol
		}
		kind := KindString
		if b[0] == '!' {
			kind = KindError
		}
		return Reply{Kind: kind, Str: string(rest[:n])}, rest[n+2:], nil
	case '*', '~', '>', '%':
		n, err := strconv.Atoi(string(line))
		if err != nil {
			return Reply{}, b, errProtocol
		}
		if n < 0 {
			return Reply{Kind: KindNil}, rest, nil
		}
		if b[0] == '%' {
			n *= 2
		}
		out := Reply{Kind: KindArray, Elems: make([]Reply, 0, n)}
		for k := 0; k < n; k++ {
			var e Reply
			if e, rest, err = ParseReply(rest); err != nil {
				return Reply{}, b, err
			}
			out.Elems = append(out.Elems, e)
		}
		return out, rest, nil
	}
	return Reply{}, b, errProtocol
}

func indexCRLF(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return i
		}
	}
	return -1
}

// appendCommand encodes a command as a RESP array of bulk strings.
func appendCommand(dst []byte, args []any) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		s := argString(a)
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(s)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, s...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

func argString(a any) string {
	switch v := a.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		if v {
			return "1"
		}
		return "0"
	case nil:
		return ""
	}
	return fmt.Sprint(a)
}

// readRawReply reads one reply from br and appends its bytes, as received, to dst.
func readRawReply(br *bufio.Reader, dst []byte) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return dst, errProtocol
		}
		return dst, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return dst, errProtocol
	}
	dst = append(dst, line...)
	switch line[0] {
	case '+', '-', ':', '_', ',', '(', '#':
		return dst, nil
	case '$', '=', '!':
		n, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil {
			return dst, errProtocol
		}
		if n < 0 {
			return dst, nil
		}
		start := len(dst)
		dst = append(dst, make([]byte, n+2)...)
		if _, err := io.ReadFull(br, dst[start:]); err != nil {
			return dst, err
		}
		return dst, nil
	case '*', '~', '>', '%':
		n, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil {
			return dst, errProtocol
		}
		if line[0] == '%' {
			n *= 2
		}
		for k := 0; k < n; k++ {
			if dst, err = readRawReply(br, dst); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	return dst, errProtocol
}

// ParseQueries splits raw query text, as redis2_raw_query takes it, into commands:
// RESP arrays ("*2\r\n$3\r\nget\r\n$3\r\nfoo\r\n") and inline commands, one per line
// ("get foo\r\n"), with redis-cli's quoting ("set k \"a b\"").
func ParseQueries(s string) ([][]string, error) {
	var out [][]string
	for len(s) > 0 {
		if s[0] == '\r' || s[0] == '\n' || s[0] == ' ' || s[0] == '\t' {
			s = s[1:]
			continue
		}
		if s[0] == '*' {
			cmd, rest, err := parseMultiBulk(s)
			if err != nil {
				return nil, err
			}
			out = append(out, cmd)
			s = rest
			continue
		}
		line := s
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		args, err := splitArgs(strings.TrimRight(line, "\r"))
		if err != nil {
			return nil, err
		}
		if len(args) > 0 {
			out = append(out, args)
		}
	}
	return out, nil
}

func parseMultiBulk(s string) ([]string, string, error) {
	i := strings.Index(s, "\r\n")
	if i < 0 {
		return nil, s, errors.New("redis: incomplete raw query")
	}
	n, err := strconv.Atoi(s[1:i])
	if err != nil || n < 1 || n > 1<<20 {
		return nil, s, errors.New("redis: invalid multibulk length in raw query")
	}
	s = s[i+2:]
	args := make([]string, 0, n)
	for k := 0; k < n; k++ {
		if len(s) == 0 || s[0] != '$' {
			return nil, s, errors.New("redis: expected '$' in raw query")
		}
		i := strings.Index(s, "\r\n")
		if i < 0 {
			return nil, s, errors.New("redis: incomplete raw query")
		}
		l, err := strconv.Atoi(s[1:i])
		if err != nil || l < 0 {
			return nil, s, errors.New("redis: invalid bulk length in raw query")
		}
		s = s[i+2:]
		if len(s) < l+2 || s[l:l+2] != "\r\n" {
			return nil, s, errors.New("redis: incomplete raw query")
		}
		args = append(args, s[:l])
		s = s[l+2:]
	}
	return args, s, nil
}

// splitArgs splits an inline command line as redis-cli does: whitespace separates
// arguments; "double quotes" take \n, \r, \t, \", \\ and \xHH escapes, 'single
// quotes' only \'.
func splitArgs(line string) ([]string, error) {
	var args []string
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) {
			return args, nil
		}
		var b strings.Builder
		switch line[i] {
		case '"':
			i++
			for {
				if i >= len(line) {
					return nil, errors.New("redis: unbalanced quotes in raw query")
				}
				c := line[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' && i+1 < len(line) {
					i++
					switch line[i] {
					case 'n':
						c = '\n'
					case 'r':
						c = '\r'
					case 't':
						c = '\t'
					case 'x':
						if i+2 < len(line) {
							if v, err := strconv.ParseUint(line[i+1:i+3], 16, 8); err == nil {
								c = byte(v)
								i += 2
								break
							}
						}
						c = 'x'
					default:
						c = line[i]
					}
				}
				b.WriteByte(c)
				i++
			}
		case '\'':
			i++
			for {
				if i >= len(line) {
					return nil, errors.New("redis: unbalanced quotes in raw query")
				}
				c := line[i]
				if c == '\'' {
					i++
					break
				}
				if c == '\\' && i+1 < len(line) && line[i+1] == '\'' {
					i++
					c = '\''
				}
				b.WriteByte(c)
				i++
			}
		default:
			for i < len(line) && line[i] != ' ' && line[i] != '\t' {
				b.WriteByte(line[i])
				i++
			}
		}
		args = append(args, b.String())
	}
}
