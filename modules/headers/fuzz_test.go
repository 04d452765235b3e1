package headers_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/headcheck"
	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
)

var coreHeaders = []string{"Server", "Date", "Content-Type", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive"}

// fuzzConf puts arbitrary request bytes into headers through templates: add_header
// with the decoded URI (a plain template) and a decoded argument (through an HCL
// function), and redirect targets built from them by return, rewrite and error_page.
const fuzzConf = `
http {
  server {
    listen = ["127.0.0.1:0"]
    location "/t/" {
      add_header = { "X-Arg" = "${urldecode(arg.v)}", "X-Uri" = "${uri}" }
      return     = { code = 200, body = "ok" }
    }
    location "/r/" { return = { code = 302, url = "http://x${uri}" } }
    location "/q/" { return = { code = 302, url = "http://x/q?${urldecode(arg.v)}" } }
    location "/w/" {
      rewrite "(?s)^/w/(.*)$" "redirect" { to = "http://x/w/${re[1]}" }
    }
    location "/e/" {
      error_page = ["404 http://x/e${uri}"]
      return     = 404
    }
  }
}
`

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func sortFields(fs []headcheck.Field) {
	sort.Slice(fs, func(i, j int) bool { return strings.ToLower(fs[i].Name) < strings.ToLower(fs[j].Name) })
}

// FuzzTemplateHeaders sends arbitrary bytes (percent-encoded in the path and in an
// argument) to locations whose add_header, return, rewrite and error_page templates
// use the decoded values, and parses the response with a strict HTTP/1.1 parser: the
// head is well formed and holds exactly the lines configured, with the values the
// header writer and redirect escaping promise, never one more.
func FuzzTemplateHeaders(f *testing.F) {
	for _, s := range []struct {
		mode uint8
		v    string
	}{
		{0, "plain"},
		{0, "a\r\nInjected: yes"},
		{0, "\x00\x01\x7f\t x \t"},
		{1, "a\r\nInjected: yes"},
		{1, "100%?#frag caf\xc3\xa9"},
		{2, "a=1&b=2\r\nSet-Cookie: x=1"},
		{3, "a\r\nInjected: yes"},
		{3, "a?b%c"},
		{4, "a\r\nInjected: yes"},
		{4, "../../x"},
	} {
		f.Add(s.mode, s.v)
	}
	s := testserver.Start(f, fuzzConf)
	f.Fuzz(func(t *testing.T, mode uint8, v string) {
		if len(v) > 600 {
			return
		}
		mode %= 5
		prefix := []string{"/t/", "/r/", "/q/", "/w/", "/e/"}[mode]
		path := prefix
		if mode != 2 {
			path += headcheck.PercentAll(v)
		}
		target := path
		if mode == 0 || mode == 2 {
			target += "?v=" + headcheck.PercentAll(v)
		}
		h, status, raw := headcheck.Fetch(t, s.Addr, target)
		got := h.Without(coreHeaders...)
		uri, ok := httpcore.NormalizePathString(path)
		if !ok {
			if status != 400 || len(got) != 0 {
				t.Fatalf("%s: status %d, lines %q; want 400 and none\n%q", path, status, got, raw)
			}
			return
		}
		if !strings.HasPrefix(uri, prefix) {
			// The path left the location: another location (none) answers it.
			if len(got) != 0 {
				t.Fatalf("%s (%q): lines %q, want none\n%q", path, uri, got, raw)
			}
			return
		}
		var want []headcheck.Field
		exact := true
		switch mode {
		case 0:
			if v != "" {
				want = append(want, headcheck.Field{Name: "X-Arg", Value: strings.Trim(httpcore.EscapeHeaderValue(v), " \t")})
				// HCL's strings are Unicode-normalized: only ASCII comes back exact.
				exact = ascii(v)
			}
			want = append(want, headcheck.Field{Name: "X-Uri", Value: strings.Trim(httpcore.EscapeHeaderValue(uri), " \t")})
		case 1:
			want = []headcheck.Field{{Name: "Location", Value: "http://x" + httpcore.EscapeURI(uri)}}
		case 2:
			want = []headcheck.Field{{Name: "Location", Value: httpcore.EscapeUnsafeURI("http://x/q?" + v)}}
			exact = ascii(v)
		case 3:
			want = []headcheck.Field{{Name: "Location", Value: httpcore.EscapeUnsafeURI("http://x/w/" + httpcore.EscapeURI(uri[len(prefix):]))}}
		case 4:
			want = []headcheck.Field{{Name: "Location", Value: "http://x/e" + httpcore.EscapeURI(uri)}}
		}
		wantStatus := 302
		if mode == 0 {
			wantStatus = 200
		}
		sortFields(got)
		sortFields(want)
		if status != wantStatus {
			t.Fatalf("%s: status %d, want %d\n%q", path, status, wantStatus, raw)
		}
		if exact && !headcheck.Equal(got, want) || !exact && len(got) != len(want) {
			t.Fatalf("%s: lines %q, want %q\n%q", path, got, want, raw)
		}
	})
}
