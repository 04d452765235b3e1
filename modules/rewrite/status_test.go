package rewrite_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// errHandle configures errtest, a content handler that answers r.Error(status) with
// the status given, as a module finishing with 201 or 204 does.
var errHandle = httpcore.Define(func() *errConf { return &errConf{} })

type errConf struct{ status int }

var _ = httpcore.Register(&httpcore.Module{
	Name:  "errtest",
	Order: httpcore.OrderContent,
	Conf:  errHandle,
	Directives: []httpcore.Directive{
		{Name: "errtest", Context: httpcore.CtxLocation, Set: httpcore.SetCount(200, 999, func(c *errConf) *int { return &c.status })},
	},
	Install: func(l *httpcore.Location) error {
		st := errHandle.Of(l).status
		if st == 0 {
			return nil
		}
		return l.SetContent("errtest", func(r *httpcore.Request) httpcore.Action {
			r.RespHeader().Set("X-Test", "kept")
			return r.Error(st)
		})
	},
})

// TestReturnStatusesBelow400 checks return's statuses without an error page byte for
// byte against what nginx 1.22 sends for the same configuration (taken from nginx
// 1.22 with `default_type text/plain; server_tokens off;`, Date lines removed; the
// differences are spindle's Server header and reason phrases for unregistered codes,
// and no Content-Type or Content-Length on a 304, which nginx's return adds and RFC
// 9110 lets a server leave out).
func TestReturnStatusesBelow400(t *testing.T) {
	cases := []struct {
		path, directive, want string
	}{
		{"/200", "return = 200", "HTTP/1.1 200 OK\r\nServer: spindle\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"/201", "return = 201", "HTTP/1.1 201 Created\r\nServer: spindle\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"/201x", `return = { code = 201, body = "x" }`, "HTTP/1.1 201 Created\r\nServer: spindle\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"},
		{"/202", "return = 202", "HTTP/1.1 202 Accepted\r\nServer: spindle\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"/204", "return = 204", "HTTP/1.1 204 No Content\r\nServer: spindle\r\nConnection: close\r\n\r\n"},
		{"/204x", `return = { code = 204, body = "x" }`, "HTTP/1.1 204 No Content\r\nServer: spindle\r\nConnection: close\r\n\r\n"},
		{"/206", "return = 206", "HTTP/1.1 206 Partial Content\r\nServer: spindle\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"/300", "return = 300", "HTTP/1.1 300 Multiple Choices\r\nServer: spindle\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"/304", "return = 304", "HTTP/1.1 304 Not Modified\r\nServer: spindle\r\nConnection: close\r\n\r\n"},
		{"/304x", `return = { code = 304, body = "x" }`, "HTTP/1.1 304 Not Modified\r\nServer: spindle\r\nConnection: close\r\n\r\n"},
		{"/305", "return = 305", "HTTP/1.1 305 Use Proxy\r\nServer: spindle\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		// Handlers finishing with Error(2xx): the status, no error page, headers kept.
		{"/e201", "errtest = 201", "HTTP/1.1 201 Created\r\nServer: spindle\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\nX-Test: kept\r\n\r\n"},
		{"/e204", "errtest = 204", "HTTP/1.1 204 No Content\r\nServer: spindle\r\nConnection: close\r\nX-Test: kept\r\n\r\n"},
	}
	var cfg strings.Builder
	cfg.WriteString("http {\n  default_type = \"text/plain\"\n  server_tokens = false\n  server {\n    listen = [\"127.0.0.1:0\"]\n")
	for _, c := range cases {
		fmt.Fprintf(&cfg, "    location \"= %s\" { %s }\n", c.path, c.directive)
	}
	cfg.WriteString("  }\n}\n")
	s := testserver.Start(t, cfg.String())
	date := regexp.MustCompile("Date: [^\r]*\r\n")
	for _, c := range cases {
		got := date.ReplaceAllString(s.Raw("GET "+c.path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second), "")
		if got != c.want {
			t.Errorf("%s (%s):\n got %q\nwant %q", c.path, c.directive, got, c.want)
		}
	}
	// HEAD: the length of the body it would have, no body.
	got := date.ReplaceAllString(s.Raw("HEAD /201x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second), "")
	if want := "HTTP/1.1 201 Created\r\nServer: spindle\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nConnection: close\r\n\r\n"; got != want {
		t.Errorf("HEAD /201x:\n got %q\nwant %q", got, want)
	}
	// A keepalive connection carries on after a 204 (no body to delimit).
	raw := s.Raw("GET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /201x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	resps, bodies, err := testserver.ReadResponses(raw)
	if err != nil || len(resps) != 2 || resps[0].StatusCode != 204 || resps[1].StatusCode != 201 || bodies[1] != "x" {
		t.Errorf("204 then 201 on one connection: %v %q", err, raw)
	}
}

// TestReturnInterimStatusRefused: 1xx statuses are interim responses; a return with
// one would leave the client waiting for the real response, so the config is refused.
func TestReturnInterimStatusRefused(t *testing.T) {
	for _, code := range []int{0, 99, 100, 101, 199} {
		_, err := testserver.BuildString(t, "http {\n  server {\n    listen = [\"127.0.0.1:0\"]\n    location \"/\" { return = "+strconv.Itoa(code)+" }\n  }\n}\n", nil)
		if err == nil || !strings.Contains(err.Error(), "spindle.hcl:4,") || !strings.Contains(err.Error(), "invalid return code") {
			t.Errorf("return = %d: %v", code, err)
		}
	}
}
