package headers_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/errorpage"
	_ "github.com/spindle-server/spindle/modules/headers"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

const headersConf = `
http {
  add_header = { "X-Http" = "http-level" }
  server {
    listen = ["127.0.0.1:0"]

    location "/inherit/" { return = { code = 200, body = "x\n" } }
    location "/own/" {
      add_header = {
        "X-Frame-Options" = "DENY"
        "X-Uri"           = "${uri}"
        "X-Empty"         = "${arg.none}"
        "Link"            = ["</a.css>; rel=preload", "</b.js>; rel=preload"]
        "X-Always"        = { value = "yes", always = true }
      }
      return = { code = 200, body = "own\n" }
      location "/own/404" { return = 404 }
      location "/own/201" { return = { code = 201, body = "created\n" } }
      location "/own/redirect" { return = { code = 301, url = "/x" } }
    }
    location "/if/" {
      add_header = { "X-Location" = "1" }
      if {
        cond       = [arg.x, "=", "1"]
        add_header = { "X-If" = "1" }
      }
      echo = "if"
    }
    location "= /sub" {
      add_header    = { "X-Main" = "m" }
      echo_location = "/own/201"
    }
    location "/err/" {
      error_page = ["404 /err-page"]
      return     = 404
    }
    location "= /err-page" {
      add_header = { "X-Page" = "p" }
      return     = { code = 200, body = "page\n" }
    }

    location "/exp/" {
      location "/exp/epoch" {
        expires = "epoch"
        echo = "e"
      }
      location "/exp/max" {
        expires = "max"
        echo = "m"
      }
      location "/exp/hour" {
        expires = "1h"
        echo = "h"
      }
      location "/exp/negative" {
        expires = -1
        echo = "n"
      }
      location "/exp/modified" {
        expires = "modified 1d"
        echo = "mod"
      }
      location "/exp/daily" {
        expires = "@3h30m"
        echo = "d"
      }
      location "/exp/notfound" {
        expires = "1h"
        return = 404
      }
    }
  }
}
`

func TestAddHeader(t *testing.T) {
	s := testserver.Start(t, headersConf)
	cases := []struct {
		path    string
		status  int
		present map[string][]string
		absent  []string
	}{
		{"/inherit/", 200, map[string][]string{"X-Http": {"http-level"}}, nil},
		{"/own/a", 200, map[string][]string{
			"X-Frame-Options": {"DENY"}, "X-Uri": {"/own/a"}, "X-Always": {"yes"},
			"Link": {"</a.css>; rel=preload", "</b.js>; rel=preload"},
		}, []string{"X-Http", "X-Empty"}},
		// not a status add_header applies to: only "always" headers
		{"/own/404", 404, map[string][]string{"X-Always": {"yes"}}, []string{"X-Frame-Options", "Link"}},
		{"/own/201", 201, map[string][]string{"X-Frame-Options": {"DENY"}}, nil},
		{"/own/redirect", 301, map[string][]string{"X-Frame-Options": {"DENY"}, "X-Uri": {"/own/redirect"}}, nil},
		{"/if/?x=1", 200, map[string][]string{"X-If": {"1"}}, []string{"X-Location"}},
		{"/if/", 200, map[string][]string{"X-Location": {"1"}}, []string{"X-If"}},
		// a subrequest's headers are not the client's
		{"/sub", 200, map[string][]string{"X-Main": {"m"}}, []string{"X-Frame-Options"}},
		// an error page is answered by the error page's location
		{"/err/", 404, nil, []string{"X-Page", "X-Http"}},
		{"/exp/epoch", 200, map[string][]string{"Expires": {"Thu, 01 Jan 1970 00:00:01 GMT"}, "Cache-Control": {"no-cache"}}, nil},
		{"/exp/max", 200, map[string][]string{"Expires": {"Thu, 31 Dec 2037 23:55:55 GMT"}, "Cache-Control": {"max-age=315360000"}}, nil},
		{"/exp/hour", 200, map[string][]string{"Cache-Control": {"max-age=3600"}}, nil},
		{"/exp/negative", 200, map[string][]string{"Cache-Control": {"no-cache"}}, nil},
		{"/exp/modified", 200, map[string][]string{"Cache-Control": {"max-age=86400"}}, nil},
		{"/exp/notfound", 404, nil, []string{"Expires", "Cache-Control"}},
	}
	for _, c := range cases {
		r := s.Get(c.path)
		if r.Status != c.status {
			t.Errorf("GET %s: status %d, want %d", c.path, r.Status, c.status)
		}
		for k, want := range c.present {
			if got := r.Header.Values(k); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("GET %s: %s = %q, want %q", c.path, k, got, want)
			}
		}
		for _, k := range c.absent {
			if v := r.Header.Values(k); len(v) > 0 {
				t.Errorf("GET %s: unexpected %s %q", c.path, k, v)
			}
		}
	}
}

func TestExpiresTimes(t *testing.T) {
	s := testserver.Start(t, headersConf)
	now := time.Now()
	check := func(path string, want time.Time) {
		t.Helper()
		r := s.Get(path)
		exp, err := http.ParseTime(r.Header.Get("Expires"))
		if err != nil {
			t.Fatalf("GET %s: Expires %q: %v", path, r.Header.Get("Expires"), err)
		}
		if d := exp.Sub(want); d < -5*time.Second || d > 5*time.Second {
			t.Errorf("GET %s: Expires %v, want about %v", path, exp, want)
		}
	}
	check("/exp/hour", now.Add(time.Hour))
	check("/exp/negative", now.Add(-time.Second))
	daily := time.Date(now.Year(), now.Month(), now.Day(), 3, 30, 0, 0, now.Location())
	if !daily.After(now) {
		daily = daily.AddDate(0, 0, 1)
	}
	check("/exp/daily", daily)
	r := s.Get("/exp/daily")
	age, err := strconv.Atoi(strings.TrimPrefix(r.Header.Get("Cache-Control"), "max-age="))
	if err != nil || age < 0 || age > 86400 {
		t.Errorf("daily Cache-Control %q", r.Header.Get("Cache-Control"))
	}
}

func TestHeadersConfigErrors(t *testing.T) {
	cases := []struct{ conf, want string }{
		{`add_header = "X-A: b"`, "spindle.hcl:5,20: add_header is an object"},
		{`add_header = { "X A" = "b" }`, `invalid header name "X A"`},
		{`add_header = { "X-A" = { always = true } }`, `header "X-A" needs a value`},
		{`expires = "soon"`, `expires: invalid time value "soon"`},
		{`expires = "modified @3h"`, "cannot be combined with modified"},
	}
	for _, c := range cases {
		conf := "http {\n  server {\n    listen = [\"127.0.0.1:0\"]\n    location \"/\" {\n      " + c.conf + "\n    }\n  }\n}\n"
		_, err := testserver.BuildString(t, conf, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %s: error %v, want %q", c.conf, err, c.want)
		}
	}
}
