package access_test

import (
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/access"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

const accessConf = `
http {
  server {
    listen = ["127.0.0.1:0", "[::1]:0"]
    deny   = "127.0.0.9"

    location "/simple/" {
      allow = ["127.0.0.2", "127.0.0.3/32", "::1"]
      deny  = "all"
      echo  = "ok"
    }
    location "/ordered/" {
      access_rules = ["deny 127.0.0.5", "allow 127.0.0.0/29", "deny all"]
      echo = "ok"
      location "/ordered/nested/" {
        echo = "nested"
      }
      location "/ordered/own/" {
        allow = "127.0.0.9"
        deny  = "all"
        echo  = "own"
      }
    }
    location "/denyfirst/" {
      deny  = ["127.0.0.2", "::/0"]
      allow = "all"
      echo  = "ok"
    }
    location "/mixed/" {
      deny         = "127.0.0.2"
      access_rules = ["allow 127.0.0.0/30", "deny all"]
      allow        = "127.0.0.6"
      echo         = "ok"
    }
    location "/v6/" {
      access_rules = ["allow ::1/128", "deny all"]
      echo = "ok"
    }
    location "/server/" {
      echo = "ok"
    }
    location "/rewrite-first/" {
      deny   = "all"
      return = { code = 200, body = "rewrite phase runs before access\n" }
    }
    location "= /sub" {
      echo_location = "/simple/x"
    }
  }
}
`

func TestAllowDeny(t *testing.T) {
	s := testserver.Start(t, accessConf)
	v4, v6 := s.AddrOf("127.0.0.1:0"), s.AddrOf("[::1]:0")
	cases := []struct {
		src, path string
		status    int
	}{
		{"127.0.0.2", "/simple/", 200},
		{"127.0.0.3", "/simple/", 200},
		{"127.0.0.4", "/simple/", 403},
		{"::1", "/simple/", 200},
		// interleaved: first match wins
		{"127.0.0.5", "/ordered/", 403},
		{"127.0.0.4", "/ordered/", 200},
		{"127.0.0.8", "/ordered/", 403},
		// nested locations inherit the rules unless they have their own
		{"127.0.0.5", "/ordered/nested/", 403},
		{"127.0.0.4", "/ordered/nested/", 200},
		{"127.0.0.9", "/ordered/own/", 200},
		{"127.0.0.4", "/ordered/own/", 403},
		{"127.0.0.2", "/denyfirst/", 403},
		{"127.0.0.3", "/denyfirst/", 200},
		{"::1", "/denyfirst/", 403},
		// allow/deny/access_rules apply in the order written
		{"127.0.0.2", "/mixed/", 403},
		{"127.0.0.3", "/mixed/", 200},
		{"127.0.0.6", "/mixed/", 403},
		{"::1", "/v6/", 200},
		{"127.0.0.1", "/v6/", 403},
		// the server's rules apply to locations without rules of their own
		{"127.0.0.9", "/server/", 403},
		{"127.0.0.1", "/server/", 200},
		{"127.0.0.1", "/rewrite-first/", 200},
		// subrequests skip the access phase, as in nginx
		{"127.0.0.1", "/sub", 200},
	}
	for _, c := range cases {
		addr := v4
		if strings.Contains(c.src, ":") {
			addr = v6
		}
		if got, body := testserver.GetFrom(t, addr, c.src, c.path); got != c.status {
			t.Errorf("GET %s from %s = %d %q, want %d", c.path, c.src, got, body, c.status)
		}
	}
	if !strings.Contains(s.ErrorLog(), "access forbidden by rule, client: 127.0.0.4") {
		t.Errorf("no \"access forbidden by rule\" in the error log:\n%s", s.ErrorLog())
	}
}

func TestAccessConfigErrors(t *testing.T) {
	cases := []struct{ conf, want string }{
		{`allow = "10.0.0.256"`, `spindle.hcl:5,15: allow: invalid address "10.0.0.256"`},
		{`deny = ["10.0.0.0/33"]`, `invalid address or CIDR block "10.0.0.0/33"`},
		{`access_rules = ["permit 10.0.0.1"]`, `a rule starts with allow or deny`},
		{`satisfy = "some"`, `satisfy is "all" or "any"`},
	}
	for _, c := range cases {
		conf := "http {\n  server {\n    listen = [\"127.0.0.1:0\"]\n    location \"/\" {\n      " + c.conf + "\n    }\n  }\n}\n"
		_, err := testserver.BuildString(t, conf, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %s: error %v, want %q", c.conf, err, c.want)
		}
	}
}
