package lua

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"hash/crc32"
	"sort"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// installString adds the hashing, encoding and escaping helpers.
func (v *vm) installString(ngx *glua.LTable) {
	L := v.L
	setFuncs(L, ngx, map[string]glua.LGFunction{
		"md5": func(L *glua.LState) int {
			sum := md5.Sum([]byte(strArg(L, 1)))
			L.Push(glua.LString(hex.EncodeToString(sum[:])))
			return 1
		},
		"md5_bin": func(L *glua.LState) int {
			sum := md5.Sum([]byte(strArg(L, 1)))
			L.Push(glua.LString(sum[:]))
			return 1
		},
		"sha1_bin": func(L *glua.LState) int {
			sum := sha1.Sum([]byte(strArg(L, 1)))
			L.Push(glua.LString(sum[:]))
			return 1
		},
		"hmac_sha1": func(L *glua.LState) int {
			m := hmac.New(sha1.New, []byte(L.CheckString(1)))
			m.Write([]byte(strArg(L, 2)))
			L.Push(glua.LString(m.Sum(nil)))
			return 1
		},
		"crc32_short": crc32Func,
		"crc32_long":  crc32Func,
		"encode_base64": func(L *glua.LState) int {
			s := strArg(L, 1)
			enc := base64.StdEncoding
			if L.OptBool(2, false) {
				enc = base64.RawStdEncoding
			}
			L.Push(glua.LString(enc.EncodeToString([]byte(s))))
			return 1
		},
		"decode_base64": func(L *glua.LState) int {
			s := L.CheckString(1)
			b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
			if err != nil || (len(s)%4 != 0 && strings.HasSuffix(s, "=")) {
				L.Push(glua.LNil)
				return 1
			}
			L.Push(glua.LString(b))
			return 1
		},
		"decode_base64mime": func(L *glua.LState) int {
			s := L.CheckString(1)
			clean := strings.Map(func(r rune) rune {
				if r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' {
					return r
				}
				return -1
			}, s)
			b, err := base64.RawStdEncoding.DecodeString(clean)
			if err != nil {
				L.Push(glua.LNil)
				return 1
			}
			L.Push(glua.LString(b))
			return 1
		},
		"escape_uri": func(L *glua.LState) int {
			L.Push(glua.LString(escapeURI(strArg(L, 1), optInt(L, 2, 2))))
			return 1
		},
		"unescape_uri": func(L *glua.LState) int {
			L.Push(glua.LString(unescapeArg(strArg(L, 1))))
			return 1
		},
		"encode_args": func(L *glua.LState) int {
			L.Push(glua.LString(v.encodeArgs(L, L.CheckTable(1))))
			return 1
		},
		"decode_args": func(L *glua.LState) int {
			return decodeArgsInto(L, L.CheckString(1), optInt(L, 2, 100), nil)
		},
		"quote_sql_str": func(L *glua.LState) int {
			L.Push(glua.LString(quoteSQL(L.CheckString(1))))
			return 1
		},
	})
}

// strArg accepts a string, a number (converted as Lua does) or nil (""), as the
// ngx_lua helpers do.
func strArg(L *glua.LState, n int) string {
	switch x := L.Get(n).(type) {
	case glua.LString:
		return string(x)
	case glua.LNumber:
		return string(appendNumber(nil, float64(x)))
	case *glua.LNilType:
		return ""
	}
	L.ArgError(n, "string expected, got "+L.Get(n).Type().String())
	return ""
}

func crc32Func(L *glua.LState) int {
	L.Push(glua.LNumber(crc32.ChecksumIEEE([]byte(strArg(L, 1)))))
	return 1
}

const hexDigits = "0123456789ABCDEF"

// escapeURI is ngx.escape_uri: type 2 (the default) escapes a URI component, keeping
// only RFC 3986's unreserved characters; type 0 escapes what may not appear in a URI.
func escapeURI(s string, typ int) string {
	keep := func(c byte) bool {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			return true
		}
		switch c {
		case '-', '.', '_', '~':
			return true
		}
		if typ == 0 && c > 0x20 && c < 0x7f {
			return !strings.ContainsRune("\"#%'<>?\\^`{|}", rune(c))
		}
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !keep(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	out := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep(c) {
			out = append(out, c)
		} else {
			out = append(out, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return string(out)
}

// unescapeArg decodes %XX sequences and "+" (a space), leaving malformed escapes as
// they are, as ngx.unescape_uri.
func unescapeArg(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			out = append(out, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// encodeArgs is ngx.encode_args: keys sorted (ngx_lua follows the table's order,
// which Lua leaves unspecified), true as a bare key, false dropped, arrays repeated.
func (v *vm) encodeArgs(L *glua.LState, t *glua.LTable) string {
	type kv struct {
		k string
		v glua.LValue
	}
	var items []kv
	t.ForEach(func(k, val glua.LValue) {
		var key string
		switch x := k.(type) {
		case glua.LString:
			key = string(x)
		case glua.LNumber:
			key = string(appendNumber(nil, float64(x)))
		default:
			L.RaiseError("bad argument #1 to 'encode_args' (bad key type: %s)", k.Type())
		}
		items = append(items, kv{key, val})
	})
	sort.Slice(items, func(i, j int) bool { return items[i].k < items[j].k })
	var sb strings.Builder
	add := func(k string, val glua.LValue) {
		switch x := val.(type) {
		case glua.LBool:
			if !x {
				return
			}
			if sb.Len() > 0 {
				sb.WriteByte('&')
			}
			sb.WriteString(escapeURI(k, 2))
		case glua.LString, glua.LNumber:
			if sb.Len() > 0 {
				sb.WriteByte('&')
			}
			sb.WriteString(escapeURI(k, 2))
			sb.WriteByte('=')
			if n, ok := x.(glua.LNumber); ok {
				sb.Write(appendNumber(nil, float64(n)))
			} else {
				sb.WriteString(escapeURI(string(x.(glua.LString)), 2))
			}
		default:
			L.RaiseError("bad argument #1 to 'encode_args' (bad arg value type: %s)", val.Type())
		}
	}
	for _, it := range items {
		if arr, ok := it.v.(*glua.LTable); ok {
			for i := 1; i <= arr.MaxN(); i++ {
				add(it.k, arr.RawGetInt(i))
			}
			continue
		}
		add(it.k, it.v)
	}
	return sb.String()
}

// argsString reads an args argument: a query string or a table of arguments.
func (v *vm) argsString(L *glua.LState, n int) string {
	switch x := L.Get(n).(type) {
	case glua.LString:
		return string(x)
	case glua.LNumber:
		return string(appendNumber(nil, float64(x)))
	case *glua.LTable:
		return v.encodeArgs(L, x)
	case *glua.LNilType:
		return ""
	}
	L.ArgError(n, "string or table expected")
	return ""
}

// quoteSQL is ngx.quote_sql_str: a MySQL string literal.
func quoteSQL(s string) string {
	var sb strings.Builder
	sb.Grow(len(s) + 2)
	sb.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			sb.WriteString(`\0`)
		case '\b':
			sb.WriteString(`\b`)
		case '\n':
			sb.WriteString(`\n`)
		case '\r':
			sb.WriteString(`\r`)
		case '\t':
			sb.WriteString(`\t`)
		case 26:
			sb.WriteString(`\Z`)
		case '\\', '\'', '"':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		default:
			sb.WriteByte(c)
		}
	}
	sb.WriteByte('\'')
	return sb.String()
}
