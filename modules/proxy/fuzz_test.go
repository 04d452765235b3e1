package proxy_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/headcheck"
	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
	_ "github.com/spindle-server/spindle/modules/ngxlua"
)

const fuzzConf = `
http {
  upstream "be" {
    servers   = ["BE"]
    keepalive = 8
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/p/" {
      proxy_set_header = { "X-Fuzz" = "${urldecode(arg.v)}" }
      proxy_pass       = "http://be"
    }
    location "/l/" {
      rewrite_by_lua = <<-LUA
        ngx.req.set_header(ngx.unescape_uri(ngx.var.arg_n), ngx.unescape_uri(ngx.var.arg_v))
      LUA
      proxy_pass = "http://be"
    }
    location "/u/" { proxy_pass = "http://BE${uri}" }
    location "/r/" { proxy_pass = "http://BE" }
  }
}
`

// The lines the proxy writes itself into a request head, or never forwards.
var proxyOwn = []string{"Host", "Connection", "Content-Length", "Transfer-Encoding", "X-Real-IP",
	"X-Forwarded-For", "X-Forwarded-Proto", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "Expect"}

func isOneOf(name string, names []string) bool {
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// FuzzUpstreamRequestHead sends arbitrary bytes to the request head spindle sends
// upstream — through a proxy_set_header template, Lua's ngx.req.set_header, and the
// decoded URI in a computed proxy_pass — and parses the head the backend received
// with a strict HTTP/1.1 parser: it is well formed and holds exactly the lines set,
// escaped as promised, never one more.
func FuzzUpstreamRequestHead(f *testing.F) {
	for _, s := range []struct {
		mode        uint8
		name, value string
	}{
		{0, "", "plain"},
		{0, "", "1\r\nInjected: yes"},
		{1, "X-Lua", "new\nvalue"},
		{1, "Foo\r", "123\r\n"},
		{1, "X-A: v\r\nInjected", "1"},
		{1, "", "no name"},
		{1, "X-Empty", ""},
		{2, "", "a\r\nInjected: yes"},
		{2, "", "caf\xc3\xa9 x\x7f"},
	} {
		f.Add(s.mode, s.name, s.value)
	}
	be := headcheck.Backend(f)
	s := testserver.Start(f, strings.ReplaceAll(fuzzConf, "BE", be))
	f.Fuzz(func(t *testing.T, mode uint8, name, value string) {
		if len(name) > 300 || len(value) > 300 {
			return
		}
		mode %= 3
		var target string
		switch mode {
		case 0:
			target = "/p/?v=" + headcheck.PercentAll(value)
		case 1:
			target = "/l/?n=" + headcheck.PercentAll(name) + "&v=" + headcheck.PercentAll(value)
		case 2:
			target = "/u/" + headcheck.PercentAll(value)
		}
		wire := httpcore.EscapeHeaderName(name)
		if mode == 1 && (isOneOf(wire, proxyOwn) || strings.HasPrefix(strings.ToLower(wire), "x-var-")) {
			return
		}
		_, status, raw := headcheck.Fetch(t, s.Addr, target)
		uri, ok := httpcore.NormalizePathString(strings.SplitN(target, "?", 2)[0])
		if !ok || mode == 2 && !strings.HasPrefix(uri, "/u/") {
			return // 400, or another location: nothing was sent upstream
		}
		if status != 200 {
			t.Fatalf("%s: status %d\n%q", target, status, raw)
		}
		body := raw[strings.Index(raw, "\r\n\r\n")+4:]
		up, _, upTarget, err := headcheck.ParseRequest([]byte(body))
		if err != nil {
			t.Fatalf("%s: the request head sent upstream: %v\n%q", target, err, body)
		}
		got := withoutTestVars(up.Without(proxyOwn...))
		var want []headcheck.Field
		exact := true
		v := strings.Trim(httpcore.EscapeHeaderValue(value), " \t")
		switch {
		case mode == 0 && value != "":
			want = []headcheck.Field{{Name: "X-Fuzz", Value: v}}
			exact = ascii(value) // HCL's strings are Unicode-normalized
		case mode == 1 && wire != "" && value != "":
			want = []headcheck.Field{{Name: wire, Value: v}}
		case mode == 2:
			if want := httpcore.EscapeUnsafeURI(uri); upTarget != want {
				t.Fatalf("%s: upstream request target %q, want %q", target, upTarget, want)
			}
		}
		if exact && !headcheck.Equal(got, want) || len(got) != len(want) {
			t.Fatalf("%s: upstream lines %q, want %q\n%q", target, got, want, body)
		}
	})
}

// FuzzUpstreamResponseHead has the backend answer with an arbitrary header line and
// parses what spindle passes on with a strict HTTP/1.1 parser: the head is well
// formed; spindle answers 502 or passes at most the lines the backend sent, and a
// single well-formed line exactly, escaped as the header writer promises.
func FuzzUpstreamResponseHead(f *testing.F) {
	for _, s := range [][2]string{
		{"X-Up", "v"},
		{"X-Up", "a\rInjected: yes"},
		{"X-Up", "a\x00b"},
		{"X-Up", "a\x01b\x7f caf\xc3\xa9"},
		{"X(Up)", "v"},
		{"X-Up", "a\r\nInjected: yes"},
		{"X-Up", "a\nInjected: yes"},
		{"", "v"},
	} {
		f.Add(s[0], s[1])
	}
	be := headcheck.Backend(f)
	s := testserver.Start(f, strings.ReplaceAll(fuzzConf, "BE", be))
	f.Fuzz(func(t *testing.T, name, value string) {
		if len(name) > 300 || len(value) > 300 {
			return
		}
		target := "/r/?n=" + url.QueryEscape(name) + "&v=" + url.QueryEscape(value)
		h, status, raw := headcheck.Fetch(t, s.Addr, target)
		got := withoutTestVars(h.Without(coreHeaders...))
		if status == 502 {
			return
		}
		if status != 200 {
			t.Fatalf("%s: status %d\n%q", target, status, raw)
		}
		sent := strings.Count(name+": "+value, "\n") + 1
		if len(got) > sent {
			t.Fatalf("%s: %d lines passed, the backend sent %d\n%q", target, len(got), sent, raw)
		}
		single := !strings.ContainsAny(name+value, "\r\n\x00") && name != "" &&
			!strings.ContainsAny(name, " \t:") && value == strings.Trim(value, " \t")
		if single && !isOneOf(name, append(proxyOwn, "Location", "Refresh", "Date", "Server")) && !strings.HasPrefix(strings.ToLower(name), "x-accel-") && !strings.HasPrefix(strings.ToLower(name), "x-var-") {
			want := []headcheck.Field{{Name: httpcore.EscapeHeaderName(name), Value: httpcore.EscapeHeaderValue(value)}}
			if isOneOf(name, coreHeaders) {
				want = nil
			}
			if !headcheck.Equal(got, want) {
				t.Fatalf("%s: lines %q, want %q\n%q", target, got, want, raw)
			}
		}
	})
}

var coreHeaders = []string{"Server", "Date", "Content-Type", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive"}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// withoutTestVars leaves out the lines this package's testvars module adds to every
// response (X-Var-NAME).
func withoutTestVars(fs []headcheck.Field) []headcheck.Field {
	var out []headcheck.Field
	for _, f := range fs {
		if !strings.HasPrefix(strings.ToLower(f.Name), "x-var-") {
			out = append(out, f)
		}
	}
	return out
}
