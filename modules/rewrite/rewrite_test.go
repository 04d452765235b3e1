package rewrite_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

const rewriteConf = `
http {
  server {
    listen = ["127.0.0.1:0"]
    rewrite_log = true

    # server level: no flag, location search sees the new URI
    rewrite "^/srv/(.*)$" { to = "/show/srv-${re[1]}" }
    set { server_var = "from-server" }
    if {
      cond = [arg.srvif, "=", "1"]
      rewrite "^/(.*)$" "last" { to = "/show/srvif-${re[1]}-${server_var}" }
    }

    location "/show/" { echo = "uri=${uri} args=${args}" }

    location "/users/" {
      rewrite "^/users/(\\d+)$" "last" { to = "/show/u?id=${re[1]}" }
      return = 404
    }

    location "/q/" {
      rewrite "^/q/keep$" "last" { to = "/show/keep" }
      rewrite "^/q/drop$" "last" { to = "/show/drop?" }
      rewrite "^/q/both$" "last" { to = "/show/both?new=1" }
      rewrite "^/q/only$" "last" { to = "/show/only?new=1?" }
      rewrite "^/q/var$" "last" { to = "/show/var${request_uri}" }
      rewrite "^/q/fn/(.*)$" "last" { to = lower("/SHOW/${re[1]}?Q=1") }
    }

    location "/redir/" {
      rewrite "^/redir/abs/(.*)$" { to = "http://example.com/${re[1]}" }
      rewrite "^/redir/perm/(.*)$" "permanent" { to = "/new/${re[1]}" }
      rewrite "^/redir/tmp$" "redirect" { to = "/t?x=1" }
      rewrite "^/redir/scheme$" { to = "${scheme}://${host}/s?" }
      rewrite "^/redir/https/(.*)$" {
        to   = "https://example.com/${re[1]}?from=spindle"
        flag = "last"
      }
      rewrite "^/redir/space/(.*)$" "redirect" { to = "/sp/${re[1]}" }
      return = 404
    }

    location "/break/" {
      rewrite "^/break/(.*)$" "break" { to = "/show/${re[1]}" }
      echo = "break uri=${uri}"
    }

    location "/noflag/" {
      rewrite "^/noflag/(.*)$" { to = "/show/nf-${re[1]}" }
      rewrite "^/show/nf-x$" { to = "/show/nf-y" }
      echo = "not reached"
    }

    location "/cycle/" {
      rewrite "^" "last" { to = "/cycle/again" }
    }

    location "/capr/" {
      rewrite "^/capr/(\\w+)$" { to = "/zzz" }
      return = { code = 200, body = "got ${re[1]} uri=${uri}\n" }
    }

    location "~ ^/cap/(\\w+)/(\\w+)$" {
      return = { code = 200, body = "${re[2]}-${re[1]}\n" }
    }

    location "= /ifcap" {
      if {
        cond   = [arg.p, "~", "^(\\d+)-(\\d+)$"]
        return = { code = 200, body = "${re[2]}/${re[1]}\n" }
      }
      return = 400
    }

    location "/inif/" {
      if {
        cond = [arg.go, "=", "1"]
        rewrite "^/inif/(.*)$" "last" { to = "/show/if-${re[1]}" }
      }
      echo = "outside if"
    }

    location "= /set" {
      set {
        a = "${arg.a}x"
        b = upper(a)
      }
      set { args = "changed=1" }
      return = { code = 200, body = "${a} ${b} ${args}\n" }
    }

    location "= /order" {
      set { v = "1" }
      return = { code = 200, body = "v=${v}\n" }
      set { v = "2" }
    }

    location "= /brk" {
      set { v = "1" }
      if {
        cond  = [arg.stop, "=", "1"]
        break = true
      }
      set { v = "2" }
      echo = "v=${v}"
    }

    location "= /uninit" {
      return = { code = 200, body = "[${never_set}]\n" }
      if {
        cond = false
        set { never_set = "x" }
      }
    }
    location "= /uninit-quiet" {
      uninitialized_variable_warn = false
      return = { code = 200, body = "[${quiet_var}]\n" }
      if {
        cond = false
        set { quiet_var = "x" }
      }
    }

    # PCRE, as nginx: lookahead, backreference, lookbehind, byte semantics
    location "~ ^/pcre/(?!admin)(\\w+)$" {
      rewrite "^/pcre/(\\w)(\\w)\\2\\1$" "last" { to = "/show/palindrome-${re[1]}${re[2]}" }
      if {
        cond   = [uri, "~", "(?<=/pcre/)x(\\w+)"]
        return = { code = 200, body = "after x: ${re[1]}\n" }
      }
      return = { code = 200, body = "pcre ${re[1]}\n" }
    }

    location "= /brk2" {
      set { v = "1" }
      break = true
      return = 500
      echo = "v=${v}"
    }
  }
}
`

func TestRewrite(t *testing.T) {
	s := testserver.Start(t, rewriteConf)
	port := s.Addr[strings.LastIndexByte(s.Addr, ':')+1:]
	cases := []struct {
		path     string
		status   int
		body     string
		location string
	}{
		{"/srv/a", 200, "uri=/show/srv-a args=\n", ""},
		{"/anything?srvif=1", 200, "uri=/show/srvif-anything-from-server args=srvif=1\n", ""},
		{"/users/42", 200, "uri=/show/u args=id=42\n", ""},
		{"/users/42?x=1", 200, "uri=/show/u args=id=42&x=1\n", ""},
		{"/users/abc", 404, "", ""},
		{"/q/keep?a=1", 200, "uri=/show/keep args=a=1\n", ""},
		{"/q/drop?a=1", 200, "uri=/show/drop args=\n", ""},
		{"/q/both?a=1", 200, "uri=/show/both args=new=1&a=1\n", ""},
		{"/q/both", 200, "uri=/show/both args=new=1\n", ""},
		{"/q/only?a=1", 200, "uri=/show/only args=new=1\n", ""},
		// a "?" that comes from a variable is part of the URI, as in nginx
		{"/q/var?a=1", 200, "uri=/show/var/q/var?a=1 args=a=1\n", ""},
		{"/q/fn/ABC", 200, "uri=/show/abc args=q=1\n", ""},
		{"/redir/abs/p?a=1", 302, "", "http://example.com/p?a=1"},
		{"/redir/abs/p", 302, "", "http://example.com/p"},
		{"/redir/perm/x", 301, "", "http://127.0.0.1:" + port + "/new/x"},
		{"/redir/tmp?a=1", 302, "", "http://127.0.0.1:" + port + "/t?x=1&a=1"},
		{"/redir/scheme?a=1", 302, "", "http://127.0.0.1/s"},
		{"/redir/https/p?a=1", 302, "", "https://example.com/p?from=spindle&a=1"},
		{"/redir/space/a%20b", 302, "", "http://127.0.0.1:" + port + "/sp/a%20b"},
		{"/break/x?k=v", 200, "break uri=/show/x\n", ""},
		{"/noflag/x", 200, "uri=/show/nf-y args=\n", ""},
		{"/noflag/z", 200, "uri=/show/nf-z args=\n", ""},
		{"/cycle/a", 500, "", ""},
		{"/capr/abc", 200, "got abc uri=/zzz\n", ""},
		{"/cap/one/two", 200, "two-one\n", ""},
		{"/ifcap?p=12-34", 200, "34/12\n", ""},
		{"/ifcap?p=x", 400, "", ""},
		{"/inif/k?go=1", 200, "uri=/show/if-k args=go=1\n", ""},
		{"/inif/k", 200, "outside if\n", ""},
		{"/set?a=q", 200, "qx QX changed=1\n", ""},
		{"/order", 200, "v=1\n", ""},
		{"/brk", 200, "v=2\n", ""},
		{"/brk?stop=1", 200, "v=1\n", ""},
		{"/brk2", 200, "v=1\n", ""},
		{"/uninit", 200, "[]\n", ""},
		{"/uninit-quiet", 200, "[]\n", ""},
		{"/pcre/user", 200, "pcre user\n", ""},
		{"/pcre/admin", 404, "", ""},
		{"/pcre/abba", 200, "uri=/show/palindrome-ab args=\n", ""},
		{"/pcre/xyz", 200, "after x: yz\n", ""},
	}
	for _, c := range cases {
		r := s.Get(c.path)
		if r.Status != c.status || (c.body != "" && r.Body != c.body) {
			t.Errorf("GET %s = %d %q, want %d %q", c.path, r.Status, r.Body, c.status, c.body)
		}
		if c.location != "" && r.Header.Get("Location") != c.location {
			t.Errorf("GET %s: Location %q, want %q", c.path, r.Header.Get("Location"), c.location)
		}
	}
	log := s.ErrorLog()
	if strings.Contains(log, "quiet_var") {
		t.Errorf("uninitialized_variable_warn = false still warns:\n%s", log)
	}
	for _, want := range []string{
		"rewrite or internal redirection cycle",
		`"^/users/(\\d+)$" matches "/users/42"`,
		`rewritten data: "/show/u", args: "id=42"`,
		`[warn]`,
		`using uninitialized "never_set" variable`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("error log lacks %q:\n%s", want, log)
		}
	}
}

func TestRewriteConfigErrors(t *testing.T) {
	cases := []struct {
		conf, want string
	}{
		{`rewrite "^/a" "sideways" { to = "/b" }`, `spindle.hcl:5,21: invalid rewrite flag "sideways"`},
		{`rewrite "^/a" {
		  flag = "last"
		}`, "spindle.hcl:5,7: rewrite needs a replacement"},
		{`rewrite "^/(a" { to = "/b" }`, `spindle.hcl:5,15: invalid regex "^/(a": missing closing parenthesis at offset 4`},
		{`rewrite "^/a" { 
		  to = "/b"
		  code = 301
		}`, `unknown rewrite field "code"`},
		{`set { remote_addr = "x" }`, `spindle.hcl:5,13: variable "remote_addr" is built in and cannot be set`},
		{`break = false`, "break takes no value but true"},
		{`rewrite "^/(.*)$" { to = "/x/$1" }`, "captures are written ${re[1]} in spindle, not $1"},
		{`return = { code = 200, body = "${nosuch}" }`, `unknown variable "nosuch"`},
	}
	for _, c := range cases {
		conf := "http {\n  server {\n    listen = [\"127.0.0.1:0\"]\n    location \"/\" {\n      " + c.conf + "\n    }\n  }\n}\n"
		_, err := testserver.BuildString(t, conf, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %s: error %v, want %q", c.conf, err, c.want)
		}
	}
}

// Redirect targets escape the decoded URI and its captures (a location's regex,
// rewrite's, an `if` on uri), and leave the raw request_uri and its captures as the
// client wrote them: no double escaping of an already escaped %XX or query.
func TestRedirectEscapesDecodedURI(t *testing.T) {
	s := testserver.Start(t, `
http {
  server {
    listen = ["127.0.0.1:0"]
    location "~ ^/loc/(.*)$" { return = { code = 302, url = "http://x/${re[1]}" } }
    location "/ifuri/" {
      if {
        cond   = [uri, "~", "(?s)^/ifuri/(.*)$"]
        return = { code = 302, url = "http://x/${re[1]}" }
      }
    }
    location "/ifraw/" {
      if {
        cond   = [request_uri, "~", "^/ifraw/(.*)$"]
        return = { code = 302, url = "http://x/${re[1]}" }
      }
    }
    location "/raw/" { return = { code = 302, url = "http://x${request_uri}" } }
    location "/fn/" { return = { code = 302, url = "http://x${lower(uri)}" } }
    location "/rw/" {
      rewrite "^/rw/(.*)$" "permanent" { to = "/to/${re[1]}" }
    }
  }
}`)
	for _, c := range []struct{ path, want string }{
		{"/loc/a%20b%3Fc%25d", "http://x/a%20b%3Fc%25d"},
		{"/ifuri/a%3Fb%0D%0Ac", "http://x/a%3Fb%0D%0Ac"},
		{"/ifraw/a%20b?c=d%26e", "http://x/a%20b?c=d%26e"},
		{"/raw/a%20b?c=%0D%0A", "http://x/raw/a%20b?c=%0D%0A"},
		{"/fn/A%0D%0AB%20C", "http://x/fn/a%0D%0Ab%20c"},
	} {
		r := s.Raw("GET "+c.path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
		if !strings.Contains(r, "\r\nLocation: "+c.want+"\r\n") {
			t.Errorf("GET %s: want Location %s, got\n%s", c.path, c.want, r)
		}
	}
	r := s.Raw("GET /rw/a%3Fb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.Contains(r, "/to/a%3Fb\r\n") {
		t.Errorf("rewrite redirect with a decoded ? in the capture:\n%s", r)
	}
}
