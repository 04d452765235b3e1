package httpcore

import (
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// The core's variables, nginx's ngx_http_core_module variables by the same names.
func init() {
	RegisterWritableVar("uri", func(r *Request) string { return r.uri }, func(r *Request, v string) { r.uri = v })
	RegisterVar("document_uri", func(r *Request) string { return r.uri })
	RegisterWritableVar("args", func(r *Request) string { return r.args }, func(r *Request, v string) { r.args = v })
	RegisterWritableVar("query_string", func(r *Request) string { return r.args }, func(r *Request, v string) { r.args = v })
	RegisterVar("is_args", func(r *Request) string {
		if r.args != "" {
			return "?"
		}
		return ""
	})
	RegisterVar("request_uri", func(r *Request) string { return r.main.requestURI })
	RegisterVar("request_method", func(r *Request) string { return r.method })
	RegisterVar("request", func(r *Request) string {
		if r.main.rejectedLine != "" {
			return r.main.rejectedLine
		}
		return r.main.method + " " + r.main.requestURI + " " + r.main.Proto()
	})
	RegisterVar("server_protocol", func(r *Request) string { return r.Proto() })
	RegisterVar("scheme", schemeVar)
	RegisterVar("https", httpsVar)
	RegisterVar("host", func(r *Request) string {
		if h := r.Host(); h != "" {
			return normalizeHost([]byte(h))
		}
		return r.serverName()
	})
	RegisterVar("hostname", func(r *Request) string { h, _ := os.Hostname(); return h })
	RegisterVar("server_name", func(r *Request) string { return r.serverName() })
	RegisterVar("remote_addr", func(r *Request) string { h, _ := splitHostPort(r.RemoteAddr()); return h })
	RegisterVar("remote_port", func(r *Request) string { _, p := splitHostPort(r.RemoteAddr()); return p })
	RegisterVar("binary_remote_addr", func(r *Request) string {
		h, _ := splitHostPort(r.RemoteAddr())
		ip := net.ParseIP(h)
		if v4 := ip.To4(); v4 != nil {
			return string(v4)
		}
		return string(ip)
	})
	RegisterVar("server_addr", func(r *Request) string { h, _ := splitHostPort(r.LocalAddr()); return h })
	RegisterVar("server_port", func(r *Request) string { _, p := splitHostPort(r.LocalAddr()); return p })
	RegisterVar("content_type", func(r *Request) string { return r.Header("Content-Type") })
	RegisterVar("content_length", func(r *Request) string { return r.Header("Content-Length") })
	RegisterVar("request_length", func(r *Request) string {
		n := int64(0)
		if r.main.hdr != nil {
			n = int64(len(r.main.hdr.RawHeaders())) + int64(len(r.main.method)+len(r.main.requestURI)+12)
		}
		if r.main.body.length > 0 {
			n += r.main.body.length
		}
		return strconv.FormatInt(n, 10)
	})
	RegisterVar("request_body", func(r *Request) string {
		if r.body.read {
			return string(r.body.data)
		}
		return ""
	})
	RegisterVar("request_body_file", func(r *Request) string { return r.BodyFile() })
	RegisterVar("status", func(r *Request) string {
		if r.status == 0 {
			return "000"
		}
		return strconv.Itoa(r.status)
	})
	RegisterVar("body_bytes_sent", func(r *Request) string { return strconv.FormatInt(r.bodyBytes, 10) })
	RegisterVar("bytes_sent", func(r *Request) string { return strconv.FormatInt(r.BytesSent(), 10) })
	RegisterVar("request_time", func(r *Request) string {
		d := time.Since(r.main.start)
		return strconv.FormatFloat(float64(d.Milliseconds())/1000, 'f', 3, 64)
	})
	RegisterVar("msec", func(r *Request) string {
		now := time.Now()
		return strconv.FormatFloat(float64(now.UnixMilli())/1000, 'f', 3, 64)
	})
	RegisterVar("time_local", func(r *Request) string { return time.Now().Format("02/Jan/2006:15:04:05 -0700") })
	RegisterVar("time_iso8601", func(r *Request) string { return time.Now().Format("2006-01-02T15:04:05-07:00") })
	RegisterVar("connection", func(r *Request) string { return strconv.FormatUint(r.ConnectionID(), 10) })
	RegisterVar("connection_requests", func(r *Request) string { return strconv.Itoa(r.ConnectionRequests()) })
	RegisterVar("pid", func(r *Request) string { return strconv.Itoa(os.Getpid()) })

	RegisterPrefixVar("arg", func(r *Request, name string) (string, bool) { return ArgValue(r.args, name) },
		func(r *Request) map[string]string {
			m := map[string]string{}
			for _, kv := range strings.Split(r.args, "&") {
				if kv == "" {
					continue
				}
				k, v, _ := strings.Cut(kv, "=")
				if _, dup := m[k]; !dup {
					m[k] = v
				}
			}
			return m
		}, nil)
	RegisterPrefixVar("http", func(r *Request, name string) (string, bool) {
		vs := r.HeaderValues(name)
		if len(vs) == 0 {
			return "", false
		}
		if strings.EqualFold(name, "cookie") {
			return strings.Join(vs, "; "), true
		}
		return strings.Join(vs, ", "), true
	}, func(r *Request) map[string]string {
		m := map[string]string{}
		r.VisitHeaders(func(k, v string) {
			k = strings.ToLower(strings.ReplaceAll(k, "-", "_"))
			if _, dup := m[k]; !dup {
				m[k] = v
			}
		})
		return m
	}, headerVarKey)
	RegisterPrefixVar("cookie", func(r *Request, name string) (string, bool) { return r.Cookie(name) }, nil, nil)
	RegisterPrefixVar("sent_http", func(r *Request, name string) (string, bool) {
		switch strings.ToLower(name) {
		case "content-type":
			if v := r.respHdr.Get("Content-Type"); v != "" {
				return v, true
			}
			return CoreConfOf(r.loc).DefaultType, true
		case "content-length":
			if r.contentLength >= 0 {
				return strconv.FormatInt(r.contentLength, 10), true
			}
		}
		return r.respHdr.Lookup(name)
	}, nil, headerVarKey)
}

// headerVarKey turns a header variable name as written (user_agent) into the header
// name (user-agent), as nginx maps $http_user_agent.
func headerVarKey(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "-") }

func splitHostPort(a string) (string, string) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return a, ""
	}
	return h, p
}

// ArgValue returns the raw (still escaped) value of query argument name, nginx's
// $arg_NAME; names compare case-insensitively as in nginx.
func ArgValue(args, name string) (string, bool) {
	for args != "" {
		var kv string
		kv, args, _ = strings.Cut(args, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// UnescapeArg decodes a query component ("+" is a space).
func UnescapeArg(s string) string {
	if v, err := url.QueryUnescape(s); err == nil {
		return v
	}
	return s
}

// BuiltinVar reports whether name is a built-in variable and whether handlers may
// change it (args, uri, ...), for directives that assign variables by name.
func BuiltinVar(name string) (exists, writable bool) {
	b, ok := builtinVars[name]
	if !ok {
		return false, false
	}
	return true, b.set != nil
}
