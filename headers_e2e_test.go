package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/headcheck"
)

// headerConf has a location for each way a request or a script can put bytes into a
// response head or into a request head sent upstream (issue 14).
const headerConf = `
worker_processes = 1
error_log        = { path = "logs/error.log", level = "warn" }
http {
  upstream "be" { servers = ["BE"] }
  server {
    listen = ["127.0.0.1:{{PORT}}"]

    location "= /lua/header" {
      content_by_lua = <<-LUA
        ngx.header["header: value\rfoo:bar\nbar:foo"] = "xx"
        ngx.header.x_value = "value\rfoo:bar\nbar:foo"
        ngx.header["foo"] = { "foo\nxx:bar", "bar\rxxx:foo" }
        require("ngx.resp").add_header("foo", "a\r\nInjected: yes")
        ngx.say("foo")
      LUA
    }
    location "= /lua/redirect" {
      content_by_lua = <<-LUA
        ngx.redirect("http://agentzh.org/foo\rfoo:bar\nbar:foo")
      LUA
    }
    location "= /lua/reqvar" {
      rewrite_by_lua = <<-LUA
        ngx.req.set_header("Foo", "new\nvalue")
      LUA
      content_by_lua = <<-LUA
        ngx.say("Foo: ", ngx.var.http_foo)
      LUA
    }
    location "= /lua/capture" {
      content_by_lua = <<-LUA
        local res = ngx.location.capture("/lua/sub", { headers = { ["X-C\r"] = "a\nb" } })
        ngx.print(res.body)
      LUA
    }
    location "= /lua/sub" {
      content_by_lua = <<-LUA
        ngx.say(ngx.req.get_headers()["x-c%0d"])
      LUA
    }
    location "/lua/upstream" {
      access_by_lua = <<-LUA
        ngx.req.set_header("Foo\r", "123\r\n")
        ngx.req.set_header("X-Multi", { "new\nvalue", "foo\tbar" })
      LUA
      proxy_pass = "http://be"
    }
    location "/add/" {
      add_header = { "X-Uri" = "${uri}" }
      return     = { code = 200, body = "ok\n" }
    }
    location "/ru/" { return = { code = 302, url = "http://x${uri}" } }
    location "/rw/" {
      rewrite "(?s)^/rw/(.*)$" "redirect" { to = "http://x/new/${re[1]}" }
    }
    location "/ep/" {
      error_page = ["404 http://x/ep${uri}"]
      return     = 404
    }
    location "/named/" {
      error_page = ["404 @named"]
      return     = 404
    }
    location "@named" {
      content_by_lua = <<-LUA
        ngx.header["X-A: v\r\nInjected: yes\r\nX-B"] = "1"
        ngx.say("named")
      LUA
    }
    location "/auth/" {
      set { u = urldecode(arg.u) }
      auth_request     = "/authcheck"
      auth_request_set = { user = "${u}" }
      add_header       = { "X-User" = "${user}" }
      echo             = "ok"
    }
    location "= /authcheck" {
      internal = true
      return   = 204
    }
    location "/pset/" {
      proxy_set_header = { "X-Set" = "${urldecode(arg.v)}" }
      proxy_pass       = "http://be"
    }
    location "/u/" { proxy_pass = "http://BE${uri}" }
    location "/r/" { proxy_pass = "http://be" }
  }
}
`

// The lines writeHead and the proxy write themselves.
var (
	respOwn = []string{"Server", "Date", "Content-Type", "Content-Length", "Transfer-Encoding", "Connection"}
	reqOwn  = []string{"Host", "Connection", "X-Real-IP", "X-Forwarded-For", "X-Forwarded-Proto"}
)

type line = headcheck.Field

// Every path that sets a header, driven with CR, LF and other bytes that could end a
// line, in a real spindle process read byte for byte by a raw client: each head parses
// strictly and holds exactly the lines set, escaped as expected; no request or script
// adds a line.
func TestHeaderInjection(t *testing.T) {
	be := headcheck.Backend(t)
	inst := e2e.Start(t, strings.ReplaceAll(headerConf, "BE", be), nil)
	addr := inst.Addr()

	for _, c := range []struct {
		name, target string
		status       int
		want         []line
	}{
		// lua-nginx-module t/016-resp-header.t TEST 87-93; ngx.resp.add_header
		{"ngx.header", "/lua/header", 200, []line{
			{Name: "header%3A%20value%0Dfoo%3Abar%0Abar%3Afoo", Value: "xx"},
			{Name: "x-value", Value: "value%0Dfoo:bar%0Abar:foo"},
			{Name: "Foo", Value: "foo%0Axx:bar"},
			{Name: "Foo", Value: "bar%0Dxxx:foo"},
			{Name: "Foo", Value: "a%0D%0AInjected: yes"},
		}},
		// t/022-redirect.t TEST 18: an error, and no Location
		{"ngx.redirect", "/lua/redirect", 500, nil},
		{"add_header ${uri}", "/add/a%0d%0aInjected:%20yes", 200, []line{{Name: "X-Uri", Value: "/add/a%0D%0AInjected: yes"}}},
		// the probe: nginx sends Location: http://x/ru/a and Injected: yes
		{"return ${uri}", "/ru/a%0d%0aInjected:%20yes", 302, []line{{Name: "Location", Value: "http://x/ru/a%0D%0AInjected:%20yes"}}},
		{"rewrite capture", "/rw/a%0d%0aInjected:%20yes%3Fq", 302, []line{{Name: "Location", Value: "http://x/new/a%0D%0AInjected:%20yes%3Fq"}}},
		{"error_page URL", "/ep/a%0d%0aInjected:%20yes", 302, []line{{Name: "Location", Value: "http://x/ep/ep/a%0D%0AInjected:%20yes"}}},
		{"error_page @named", "/named/x", 404, []line{{Name: "X-A%3A%20v%0D%0AInjected%3A%20yes%0D%0AX-B", Value: "1"}}},
		{"auth_request_set", "/auth/?u=a%0D%0AInjected:%20yes%00", 200, []line{{Name: "X-User", Value: "a%0D%0AInjected: yes%00"}}},
		// an upstream's header: a control byte is escaped; a bare CR makes it invalid
		{"upstream control byte", "/r/?n=X-Up&v=a%01b%7Fc", 200, []line{{Name: "X-Up", Value: "a%01b%7Fc"}}},
		{"upstream bare CR", "/r/?n=X-Up&v=a%0DInjected:%20yes", 502, nil},
		{"upstream name", "/r/?n=X(Up)&v=v", 200, []line{{Name: "X%28Up%29", Value: "v"}}},
	} {
		h, status, raw := headcheck.Fetch(t, addr, c.target)
		if got := h.Without(respOwn...); status != c.status || !headcheck.Equal(got, c.want) {
			t.Errorf("%s: GET %s: status %d, lines %q; want %d, %q\n%q", c.name, c.target, status, got, c.status, c.want, raw)
		}
	}

	// t/028-req-header.t TEST 63: the script reads back the escaped value.
	if _, status, raw := headcheck.Fetch(t, addr, "/lua/reqvar"); status != 200 || !strings.HasSuffix(raw, "\r\n\r\nFoo: new%0Avalue\n") {
		t.Errorf("ngx.req.set_header then ngx.var.http_foo: %d\n%q", status, raw)
	}

	// A subrequest's headers set by capture are escaped as ngx.req.set_header's.
	if _, status, raw := headcheck.Fetch(t, addr, "/lua/capture"); status != 200 || !strings.HasSuffix(raw, "\r\n\r\na%0Ab\n") {
		t.Errorf("ngx.location.capture with headers: %d\n%q", status, raw)
	}

	// The request heads the backend received (it sends them back as the body).
	for _, c := range []struct {
		name, target, upTarget string
		want                   []line
	}{
		// t/028-req-header.t TEST 64 and 66
		{"ngx.req.set_header", "/lua/upstream", "/lua/upstream", []line{
			{Name: "Foo%0D", Value: "123%0D%0A"},
			{Name: "X-Multi", Value: "new%0Avalue"},
			{Name: "X-Multi", Value: "foo\tbar"},
		}},
		{"proxy_set_header", "/pset/?v=1%0D%0AInjected:%20yes", "/pset/?v=1%0D%0AInjected:%20yes", []line{{Name: "X-Set", Value: "1%0D%0AInjected: yes"}}},
		{"computed proxy_pass", "/u/a%0d%0aInjected:%20yes%20HTTP/1.1", "/u/a%0D%0AInjected:%20yes%20HTTP/1.1", nil},
	} {
		_, status, raw := headcheck.Fetch(t, addr, c.target)
		body := raw[strings.Index(raw, "\r\n\r\n")+4:]
		up, _, upTarget, err := headcheck.ParseRequest([]byte(body))
		if status != 200 || err != nil {
			t.Errorf("%s: GET %s: status %d, upstream head: %v\n%q", c.name, c.target, status, err, raw)
			continue
		}
		if got := up.Without(reqOwn...); upTarget != c.upTarget || !headcheck.Equal(got, c.want) {
			t.Errorf("%s: upstream request %q with lines %q; want %q, %q\n%q", c.name, upTarget, got, c.upTarget, c.want, body)
		}
	}

	// What was escaped outside Lua is logged at warn level; ngx.redirect's error is
	// ngx_lua's.
	for _, want := range []string{
		`[warn]`,
		`response header with unsafe bytes sent %-escaped: "X-Uri: /add/a%0D%0AInjected: yes"`,
		`upstream request header with unsafe bytes sent %-escaped: "X-Set: 1%0D%0AInjected: yes"`,
		`upstream request line with unsafe bytes sent %-escaped: "GET /u/a%0D%0AInjected:%20yes%20HTTP/1.1"`,
		`unsafe byte "0x0d" in redirect uri "http://agentzh.org/foo\x0Dfoo:bar\x0Abar:foo"`,
		`upstream sent invalid header line`,
	} {
		if !e2e.WaitFor(5*time.Second, func() bool { return strings.Contains(inst.ErrorLog(), want) }) {
			t.Errorf("error log lacks %q:\n%s", want, inst.ErrorLog())
		}
	}
}
