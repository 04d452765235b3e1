package mapvar_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/mapvar"
	_ "github.com/spindle-server/spindle/modules/ngxlua"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

// The maps of nginx's documentation (ngx_http_map_module), plus regex captures and
// volatile.
const mapConf = `
http {
  map "name" {
    source    = http.host
    hostnames = true
    default   = "0"
    values = {
      "example.com"   = "1"
      "*.example.com" = "1"
      "example.org"   = "2"
      "*.example.org" = "2"
      ".example.net"  = "3"
      "wap.*"         = "4"
      "www.example.org" = "5"
    }
  }
  map "mobile" {
    source  = http.user_agent
    default = "0"
    values  = { "~Opera Mini" = "1", "~*android" = "android", "\\~literal" = "tilde" }
  }
  map "new" {
    source  = uri
    default = "none"
    values = {
      "/aa"                   = "http://aa.example.com/"
      "~^/u/(\\d+)$"          = "user-${re[1]}"
      "~^/n/(?<id>\\w+)/(.*)$" = "named-${id}-${re[2]}"
      "~^/pc/(?!admin)(\\w)\\1$" = "pcre-${re[1]}" # lookahead and backreference: PCRE, as nginx
    }
  }
  map "seen" {
    source = uri
    values = { "/v/before" = "before", "/v/after" = "after" }
    default = "other"
  }
  map "seen_volatile" {
    source   = uri
    volatile = true
    values   = { "/v/before" = "before", "/v/after" = "after" }
    default  = "other"
  }
  map "chained" {
    source  = "${name}:${mobile}"
    default = "plain"
    values  = { "1:1" = "example-opera" }
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/" {
      echo = "name=${name} mobile=${mobile} new=${new} chained=${chained}"
    }
    location "~ ^/(?:loc|n)/(.*)$" {
      echo = "new=${new} loc=${re[1]}"
    }
    location "/v/" {
      set { first = "${seen}/${seen_volatile}" }
      rewrite "^/v/before$" "break" { to = "/v/after" }
      echo = "${first} ${seen}/${seen_volatile}"
    }
  }
}
`

func TestMapHostnames(t *testing.T) {
	s := testserver.Start(t, mapConf)
	for host, want := range map[string]string{
		"example.com":     "1",
		"EXAMPLE.com.":    "1", // case and a trailing dot do not matter for host names
		"www.example.com": "1",
		"a.b.example.com": "1",
		"example.org":     "2",
		"www.example.org": "5", // exact beats the wildcard
		"x.example.org":   "2",
		"example.net":     "3", // ".example.net" is "example.net" and "*.example.net"
		"www.example.net": "3",
		"wap.example.de":  "4",
		"wap":             "0",
		"other.test":      "0",
		"notexample.com":  "0",
	} {
		r := s.Get("/", "Host: "+host)
		if !strings.HasPrefix(r.Body, "name="+want+" ") {
			t.Errorf("Host %s: %q, want name=%s", host, r.Body, want)
		}
	}
}

func TestMapRegexes(t *testing.T) {
	s := testserver.Start(t, mapConf)
	for _, c := range []struct{ path, ua, want string }{
		{"/", "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80)", "mobile=1 new=none"},
		{"/", "opera mini", "mobile=0 new=none"}, // "~" is case sensitive
		{"/", "Mozilla/5.0 (Linux; ANDROID 14)", "mobile=android new=none"},
		{"/aa", "curl", "mobile=0 new=http://aa.example.com/"},
		{"/u/42", "curl", "new=user-42"},
		{"/pc/xx", "curl", "new=pcre-x"},
		{"/pc/xy", "curl", "new=none"},
		{"/u/4x", "curl", "new=none"},
		{"/n/abc/rest/of", "curl", "new=named-abc-rest/of"},
		{"/", "~literal", "mobile=tilde"},
	} {
		r := s.Get(c.path, "User-Agent: "+c.ua, "Host: localhost")
		if !strings.Contains(r.Body, c.want) {
			t.Errorf("%s %q: %q, want %q", c.path, c.ua, r.Body, c.want)
		}
	}
	// A map over other maps.
	if r := s.Get("/", "Host: example.com", "User-Agent: Opera Mini"); !strings.Contains(r.Body, "chained=example-opera") {
		t.Errorf("chained map: %q", r.Body)
	}
	// A map that did not match leaves the location's captures alone; one that matched
	// replaces them, as nginx documents.
	if r := s.Get("/loc/u/7"); r.Body != "new=none loc=u/7\n" {
		t.Errorf("location captures after a map that did not match: %q", r.Body)
	}
	if r := s.Get("/n/abc/rest"); r.Body != "new=named-abc-rest loc=abc\n" {
		t.Errorf("location captures after a map that matched: %q", r.Body)
	}
}

// A map is computed once per request unless volatile.
func TestMapVolatile(t *testing.T) {
	s := testserver.Start(t, mapConf)
	if r := s.Get("/v/before"); r.Body != "before/before before/after\n" {
		t.Errorf("%q", r.Body)
	}
	// Keepalive requests on one connection each compute their own value.
	for _, p := range []string{"/v/x", "/v/after", "/v/x"} {
		want := map[string]string{"/v/x": "other/other other/other\n", "/v/after": "after/after after/after\n"}[p]
		if r := s.Get(p); r.Body != want {
			t.Errorf("%s: %q, want %q", p, r.Body, want)
		}
	}
}

func TestMapConfigErrors(t *testing.T) {
	for _, c := range []struct{ conf, want string }{
		{"map \"x\" {\ndefault = \"1\"\n}", "needs a source"},
		{"map \"x\" {\nsource = uri\n}", "neither values nor a default"},
		{"map \"x\" {\nsource = uri\nvalues = { \"~(\" = \"1\" }\n}", "conf/spindle.hcl:4,12: invalid regular expression"},
		{"map \"x\" {\nsource = uri\nhostnames = true\nvalues = { \"a.*.b\" = \"1\" }\n}", "invalid host name wildcard"},
		{"map \"uri\" {\nsource = args\ndefault = \"\"\n}", "built in"},
		{"map \"x\" {\nsource = uri\ndefault = \"\"\n}\nmap \"x\" {\nsource = args\ndefault = \"\"\n}", "already defined at"},
		{"map \"x\" {\nsource = nosuch\ndefault = \"\"\n}", `unknown variable "nosuch"`},
		{"map \"x\" {\nsource = uri\nhostname = true\n}", `conf/spindle.hcl:4,1: unknown setting "hostname" in map (expected source, default, hostnames, volatile, values)`},
		{"map \"x\" {\nsource = uri\nvalues { }\n}", `conf/spindle.hcl:4,1: unknown block "values" in map`},
	} {
		_, err := testserver.BuildString(t, "http {\n"+c.conf+"\n}\n", nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.conf, err, c.want)
		}
	}
}

func TestMapE2E(t *testing.T) {
	inst := e2e.Start(t, strings.Replace(mapConf, `"127.0.0.1:0"`, `"127.0.0.1:{{PORT}}"`, 1), nil)
	req, _ := http.NewRequest("GET", "http://"+inst.Addr()+"/u/9", nil)
	req.Host = "www.example.org"
	req.Header.Set("User-Agent", "Opera Mini")
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "name=5 mobile=1 new=user-9 chained=plain\n" {
		t.Errorf("%q", b)
	}
}

// The values may live in a file of their own.
func TestMapInclude(t *testing.T) {
	s := testserver.Start(t, `
http {
  map "site" {
    source  = http.host
    include = ["conf/sites.hcl"]
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/" { echo = "site=${site}" }
  }
}
`, testserver.WithFiles(map[string]string{"conf/sites.hcl": "default = \"none\"\nvalues = { \"a.test\" = \"A\" }\n"}))
	if r := s.Get("/", "Host: a.test"); r.Body != "site=A\n" {
		t.Errorf("%q", r.Body)
	}
	if r := s.Get("/", "Host: b.test"); r.Body != "site=none\n" {
		t.Errorf("%q", r.Body)
	}
}

// A map variable is a variable like the core's: in HCL expressions, in if conditions,
// in Lua's ngx.var, and `set` can change it.
func TestMapVariableEverywhere(t *testing.T) {
	s := testserver.Start(t, `
http {
  map "mobile" {
    source  = http.user_agent
    default = "0"
    values  = { "~*mobile" = "1" }
  }
  server {
    listen = ["127.0.0.1:0"]
    location "= /expr" {
      echo = "${mobile == "1" ? "phone" : "desktop"} ${upper(mobile)}"
    }
    location "= /if" {
      if {
        cond   = mobile == "1"
        return = { code = 200, body = "if saw a phone\n" }
      }
      return = { code = 200, body = "if saw no phone\n" }
    }
    location "= /lua" {
      content_by_lua = "ngx.say('lua ', ngx.var.mobile)"
    }
    location "= /set" {
      set { mobile = "forced" }
      echo = "${mobile}"
    }
  }
}
`)
	for _, c := range []struct{ path, ua, want string }{
		{"/expr", "Mobile Safari", "phone 1\n"},
		{"/expr", "curl", "desktop 0\n"},
		{"/if", "Mobile Safari", "if saw a phone\n"},
		{"/if", "curl", "if saw no phone\n"},
		{"/lua", "Mobile Safari", "lua 1\n"},
		{"/set", "Mobile Safari", "forced\n"},
	} {
		if r := s.Get(c.path, "User-Agent: "+c.ua); r.Body != c.want {
			t.Errorf("%s %q: %q, want %q", c.path, c.ua, r.Body, c.want)
		}
	}
}
