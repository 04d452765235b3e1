package httpcore_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// http.NAME with an underscore in NAME names the header with dashes, case-insensitively,
// as nginx's $http_x_token, in every form an expression takes: a template, a function
// call, a comparison, a conditional, an if condition, a set and an index.
const headerExprConf = `
error_log = "logs/error.log"
pid       = "logs/spindle.pid"
http {
  access_log = "off"
  server {
    listen = ["127.0.0.1:{{PORT}}"]
    location "= /template" { echo = "ua=${http.user_agent} token=${http.x_token}" }
    location "= /func"     { echo = "${upper(http.user_agent)}" }
    location "= /compare"  { echo = "${http.x_token == "abc"}" }
    location "= /ternary"  { echo = "${http.x_token == "abc" ? "yes" : "no"}" }
    location "= /index"    { echo = "${lower(http["X-Token"])}" }
    location "= /whole"    { echo = "${lookup(http, "x_token", "none")}" }
    location "= /if" {
      if {
        cond   = http.x_token == "abc" && http.user_agent != ""
        return = { code = 200, body = "allowed\n" }
      }
      return = { code = 403, body = "denied\n" }
    }
    location "= /set" {
      set { who = "${trimspace(http.x_forwarded_user)}-${http.x_token}" }
      echo = "${who}"
    }
  }
}
`

func TestHeaderVariablesInExpressions(t *testing.T) {
	inst := e2e.Start(t, headerExprConf, nil)
	get := func(path string, hdr map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+inst.Addr()+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	h := map[string]string{"User-Agent": "Probe/1.0", "X-Token": "abc", "X-Forwarded-User": " ann "}
	cases := []struct {
		path   string
		hdr    map[string]string
		status int
		body   string
	}{
		{"/template", h, 200, "ua=Probe/1.0 token=abc\n"},
		{"/func", h, 200, "PROBE/1.0\n"},
		{"/compare", h, 200, "true\n"},
		{"/compare", map[string]string{"X-Token": "xyz"}, 200, "false\n"},
		{"/compare", nil, 200, "false\n"},
		{"/ternary", h, 200, "yes\n"},
		{"/ternary", map[string]string{"x-token": "abc"}, 200, "yes\n"},
		{"/ternary", nil, 200, "no\n"},
		{"/index", map[string]string{"X-Token": "ABC"}, 200, "abc\n"},
		{"/whole", h, 200, "abc\n"},
		{"/whole", nil, 200, "none\n"},
		{"/if", h, 200, "allowed\n"},
		{"/if", map[string]string{"X-Token": "nope"}, 403, "denied\n"},
		{"/set", h, 200, "ann-abc\n"},
	}
	for _, c := range cases {
		status, body := get(c.path, c.hdr)
		if status != c.status || body != c.body {
			t.Errorf("%s %v: %d %q, want %d %q", c.path, c.hdr, status, body, c.status, c.body)
		}
	}
	if log := inst.ErrorLog(); strings.Contains(log, "[error]") {
		t.Errorf("error log:\n%s", log)
	}
}

// spindle -t reports at load, with file:line,col, the expression errors every request
// would meet, instead of answering 500 to each.
func TestConfigTestCatchesBadVariableReferences(t *testing.T) {
	good := e2e.Start(t, headerExprConf, nil)
	if out, code := good.Spindle("-t"); code != 0 {
		t.Fatalf("-t on a good config: exit %d\n%s", code, out)
	}
	cases := []struct{ expr, want string }{
		{`"${uri.x}"`, `variable "uri" is a string and has no attributes`},
		{`"${length(uri.x)}"`, `variable "uri" is a string`},
		{`"${tonumber(uri) + [1]}"`, "Invalid operand"},
		{`"${http.x_token.y}"`, "variable http.x_token is a string and has no attributes"},
		{`"${upper(http.x_token, "b")}"`, "Too many function arguments"},
		{`"${nosuch}"`, `unknown variable "nosuch"`},
		{`"${nosuch(uri)}"`, `unknown function "nosuch"`},
		{`"${http.x_token == "a" ? uri : [1]}"`, "Inconsistent conditional result types"},
		{`"${cookie}"`, "cookie needs a name"},
	}
	for _, c := range cases {
		cfg := strings.Replace(headerExprConf, `"${upper(http.user_agent)}"`, c.expr, 1)
		good.WriteConfig(cfg)
		out, code := good.Spindle("-t")
		if code == 0 || !strings.Contains(out, c.want) || !strings.Contains(out, "spindle.hcl:") {
			t.Errorf("-t on %s: exit %d, want an error with %q and file:line\n%s", c.expr, code, c.want, out)
		}
	}
}
