package errorpage_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/access"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/errorpage"
	"github.com/spindle-server/spindle/modules/httpcore"
	_ "github.com/spindle-server/spindle/modules/rewrite"
	_ "github.com/spindle-server/spindle/modules/static"
)

const pagesConf = `
http {
  server {
    listen     = ["127.0.0.1:0"]
    error_page = ["404 /404.html", "500 502 503 504 /50x.html"]

    location "= /404.html" {
      internal = true
      return   = { code = 200, body = "custom 404 for ${request_uri} uri=${uri} method=${request_method} args=${args}\n" }
    }
    location "= /50x.html" {
      return = { code = 200, body = "custom 50x\n" }
    }
    location "/missing/" { return = 404 }
    location "/broken/" { return = 502 }

    location "/eq/" {
      error_page = [
        "404 = /page-status",
        "403 =200 /ok?from=${uri}",
        "410 =301 http://example.com/gone",
        "401 http://login.example.com/?back=${uri}",
        "409 = @named",
        "418 @named",
        { codes = [405, 406], code = 200, uri = "/ok?from=object" },
        { codes = 407, code = "=", uri = "/page-status" },
      ]
      location "/eq/404" { return = 404 }
      location "/eq/403" { return = 403 }
      location "/eq/410" { return = 410 }
      location "/eq/401" { return = 401 }
      location "/eq/409" { return = 409 }
      location "/eq/418" { return = 418 }
      location "/eq/405" { return = 405 }
      location "/eq/407" { return = 407 }
      location "/eq/500" { return = 500 }
    }
    location "= /page-status" { return = { code = 201, body = "page says 201\n" } }
    location "= /ok" { return = { code = 200, body = "ok from=${arg.from}\n" } }
    location "@named" { return = { code = 202, body = "named ${uri}\n" } }

    location "/chain/" {
      error_page = ["404 /nowhere"]
      return     = 404
    }
    location "/chainr/" {
      recursive_error_pages = true
      error_page            = ["404 /nowhere"]
      return                = 404
    }
    location "/loop/" {
      recursive_error_pages = true
      error_page            = ["404 /loop/again"]
      return                = 404
    }
    location "/denied/" {
      deny       = "all"
      error_page = ["403 /forbidden"]
      echo       = "not reached"
    }
    location "= /forbidden" { return = { code = 200, body = "go away\n" } }
    location "/body/" {
      error_page = ["404 /404.html"]
      return     = { code = 404, body = "a 404 with a body of its own is not an error page\n" }
    }
  }
}
`

func TestErrorPage(t *testing.T) {
	s := testserver.Start(t, pagesConf)
	cases := []struct {
		method, path string
		status       int
		body         string
		location     string
	}{
		{"GET", "/missing/x?a=1", 404, "custom 404 for /missing/x?a=1 uri=/404.html method=GET args=\n", ""},
		// the redirect turns the method into GET
		{"POST", "/missing/x", 404, "custom 404 for /missing/x uri=/404.html method=GET args=\n", ""},
		// no location at all: the server's pages apply
		{"GET", "/no/such/location", 404, "custom 404 for /no/such/location uri=/404.html method=GET args=\n", ""},
		{"GET", "/broken/", 502, "custom 50x\n", ""},
		{"GET", "/eq/404", 201, "page says 201\n", ""},
		{"GET", "/eq/403", 200, "ok from=/eq/403\n", ""},
		{"GET", "/eq/410", 301, "", "http://example.com/gone"},
		{"GET", "/eq/401", 302, "", "http://login.example.com/?back=/eq/401"},
		{"GET", "/eq/409", 202, "named /eq/409\n", ""},
		{"GET", "/eq/418", 418, "named /eq/418\n", ""},
		{"GET", "/eq/405", 200, "ok from=object\n", ""},
		{"GET", "/eq/407", 201, "page says 201\n", ""},
		// a context's pages replace the inherited ones: 500 has none here
		{"GET", "/eq/500", 500, "<center>spindle</center>", ""},
		// the error page's own error gets the default page ...
		{"GET", "/chain/x", 404, "<title>404 Not Found</title>", ""},
		// ... unless recursive_error_pages is on
		{"GET", "/chainr/x", 404, "custom 404 for /chainr/x uri=/404.html", ""},
		{"GET", "/loop/x", 500, "<title>500 Internal Server Error</title>", ""},
		{"GET", "/denied/", 403, "go away\n", ""},
		{"GET", "/body/", 404, "a 404 with a body of its own is not an error page\n", ""},
		{"HEAD", "/missing/x", 404, "", ""},
	}
	for _, c := range cases {
		r := s.Do(c.method, c.path, "")
		if r.Status != c.status || !strings.Contains(r.Body, c.body) {
			t.Errorf("%s %s = %d %q, want %d %q", c.method, c.path, r.Status, r.Body, c.status, c.body)
		}
		if c.location != "" && r.Header.Get("Location") != c.location {
			t.Errorf("%s %s: Location %q, want %q", c.method, c.path, r.Header.Get("Location"), c.location)
		}
	}
	if !strings.Contains(s.ErrorLog(), "rewrite or internal redirection cycle while internally redirecting") {
		t.Errorf("no cycle in the error log:\n%s", s.ErrorLog())
	}
}

func TestErrorPageConfigErrors(t *testing.T) {
	cases := []struct{ conf, want string }{
		{`error_page = ["404"]`, "spindle.hcl:5,21: an error page needs a URI after the codes"},
		{`error_page = ["200 /x"]`, "value 200 must be between 300 and 599"},
		{`error_page = ["404 =abc /x"]`, `invalid response code "=abc"`},
		{`error_page = ["404 /a /b"]`, "an error page has one URI"},
		{`error_page = ["404 = @nope"]`, `error_page: no location "@nope" in the server`},
		{`error_page = [{ codes = [404] }]`, "an error page needs codes and a uri"},
		{`error_page = [{ codes = [404], uri = "/x", status = 200 }]`, `unknown field "status"`},
	}
	for _, c := range cases {
		conf := "http {\n  server {\n    listen = [\"127.0.0.1:0\"]\n    location \"/\" {\n      " + c.conf + "\n    }\n  }\n}\n"
		_, err := testserver.BuildString(t, conf, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %s: error %v, want %q", c.conf, err, c.want)
		}
	}
}

// An error page served by the static module keeps the error's status, as nginx's
// err_status does, and a missing file under root goes to it.
func TestErrorPageWithStaticFiles(t *testing.T) {
	s := testserver.Start(t, `
http {
  server {
    listen     = ["127.0.0.1:0"]
    root       = "html"
    error_page = ["404 /errors/404.html", "403 =200 /errors/ok.html"]
    location "/" {}
    location "/forbidden/" { return = 403 }
    location "/errors/" { internal = true }
  }
}
`, testserver.WithFiles(map[string]string{
		"html/index.html":       "home\n",
		"html/errors/404.html":  "static not found page\n",
		"html/errors/ok.html":   "fine after all\n",
		"html/forbidden/x.html": "secret\n",
	}))
	cases := []struct {
		path   string
		status int
		body   string
	}{
		{"/", 200, "home\n"},
		{"/nope.html", 404, "static not found page\n"},
		{"/forbidden/x.html", 200, "fine after all\n"},
		{"/errors/404.html", 404, "static not found page\n"},
	}
	for _, c := range cases {
		r := s.Get(c.path)
		if r.Status != c.status || r.Body != c.body {
			t.Errorf("GET %s = %d %q, want %d %q", c.path, r.Status, r.Body, c.status, c.body)
		}
	}
}

// The core has one error page provider: a second module offering one is a programming
// error caught at registration, as a duplicate directive is.
func TestSecondErrorPageProviderPanics(t *testing.T) {
	defer func() {
		if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "ErrorPage provided by error_page and other_error_page") {
			t.Errorf("registering a second ErrorPage: panic %v", p)
		}
	}()
	httpcore.Register(&httpcore.Module{Name: "other_error_page", ErrorPage: func(*httpcore.Request, int) (httpcore.Action, bool) {
		return httpcore.Continue, false
	}})
}
