package httpcore

import (
	"bytes"
	"strings"
)

// splitTarget splits a request target into its path and query, dropping the scheme and
// authority of an absolute-form target (returned as host).
func splitTarget(target []byte) (path, query, host []byte) {
	if len(target) > 0 && target[0] != '/' {
		if i := bytes.Index(target, []byte("://")); i > 0 {
			rest := target[i+3:]
			j := bytes.IndexAny(rest, "/?")
			if j < 0 {
				return []byte("/"), nil, rest
			}
			host = rest[:j]
			target = rest[j:]
			if target[0] == '?' {
				target = append([]byte("/"), target...)
			}
		}
	}
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		return target[:q], target[q+1:], host
	}
	return target, nil, host
}

// NormalizePath decodes percent-escapes in a request path and resolves "." and ".."
// segments and repeated slashes, as nginx computes $uri. It reports false for paths
// that climb above the root or decode to a NUL byte: nginx answers those with 400.
func NormalizePath(p []byte) (string, bool) {
	if len(p) == 0 || p[0] != '/' {
		if len(p) == 1 && p[0] == '*' {
			return "*", true
		}
		return "", false
	}
	simple := true
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' || c == 0 || (c == '/' && i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.')) {
			simple = false
			break
		}
	}
	if simple {
		return string(p), true
	}
	dec := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' {
			if i+2 < len(p) && ishex(p[i+1]) && ishex(p[i+2]) {
				c = unhex(p[i+1])<<4 | unhex(p[i+2])
				i += 2
			} else {
				return "", false
			}
		}
		if c == 0 {
			return "", false
		}
		dec = append(dec, c)
	}
	return cleanPath(dec)
}

// NormalizePathString is NormalizePath for a string; a path that needs no change is
// returned as is, without copying.
func NormalizePathString(p string) (string, bool) {
	if simplePath(p) {
		return p, true
	}
	return NormalizePath([]byte(p))
}

// simplePath reports whether p is a path NormalizePath returns unchanged: absolute,
// with no escape, NUL, repeated slash or dot segment.
func simplePath(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' || c == 0 || (c == '/' && i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.')) {
			return false
		}
	}
	return true
}

// cleanPath resolves dot segments and merges slashes of a decoded absolute path.
func cleanPath(p []byte) (string, bool) {
	out := make([]byte, 0, len(p))
	segs := strings.Split(string(p[1:]), "/")
	var stack []string
	for i, s := range segs {
		switch s {
		case "", ".":
			if i == len(segs)-1 {
				stack = append(stack, "")
			}
			continue
		case "..":
			if len(stack) == 0 {
				return "", false
			}
			if stack[len(stack)-1] == "" {
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return "", false
				}
			}
			stack = stack[:len(stack)-1]
			if i == len(segs)-1 {
				stack = append(stack, "")
			}
			continue
		}
		stack = append(stack, s)
	}
	for _, s := range stack {
		out = append(out, '/')
		out = append(out, s...)
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	return string(out), true
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
