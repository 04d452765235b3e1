package authrequest_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/access"
	_ "github.com/spindle-server/spindle/modules/authrequest"
	_ "github.com/spindle-server/spindle/modules/echo"
	"github.com/spindle-server/spindle/modules/httpcore"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

// The auth service of these tests is a location served by a small content handler
// (registered below) that answers by the Authorization header, the way an auth
// backend would, with response headers that return and echo cannot set.
var authCalls atomic.Int64

type authConf struct{ handler string }

var authHandle = httpcore.Define(func() *authConf { return &authConf{} })

var _ = httpcore.Register(&httpcore.Module{
	Name:  "authtest",
	Order: httpcore.OrderContent,
	Conf:  authHandle,
	Directives: []httpcore.Directive{
		{Name: "authtest", Context: httpcore.CtxLocation, Set: httpcore.SetString(func(c *authConf) *string { return &c.handler })},
	},
	Install: func(l *httpcore.Location) error {
		switch authHandle.Of(l).handler {
		case "auth":
			return l.SetContent("authtest", authService)
		case "body":
			return l.SetContent("authtest", func(r *httpcore.Request) httpcore.Action {
				b, err := r.Body()
				if err != nil {
					return r.Error(400)
				}
				r.WriteString("body=" + string(b) + "\n")
				return httpcore.Finished
			})
		}
		return nil
	},
})

func authService(r *httpcore.Request) httpcore.Action {
	authCalls.Add(1)
	body, _ := r.Body()
	h := r.RespHeader()
	h.Set("X-Auth-Body-Len", strconv.Itoa(len(body)))
	h.Set("X-Auth-Method", r.Method())
	switch r.Header("Authorization") {
	case "Bearer good":
		h.Set("X-User", "alice")
		r.SetStatus(200)
		r.WriteString("this body is dropped\n")
		return httpcore.Finished
	case "Bearer forbidden":
		return r.Error(403)
	case "Bearer broken":
		return r.Error(502)
	}
	h.Add("WWW-Authenticate", `Bearer realm="spindle"`)
	h.Add("WWW-Authenticate", `Basic realm="spindle"`)
	return r.Error(401)
}

const authConfText = `
http {
  server {
    listen = ["127.0.0.1:0"]

    location "= /auth" {
      internal = true
      authtest = "auth"
    }
    location "= /auth-ip" {
      internal = true
      if {
        cond   = [remote_addr, "=", "127.0.0.1"]
        return = 204
      }
      return = 403
    }

    location "/private/" {
      auth_request     = "/auth"
      auth_request_set = {
        user     = sent_http.x_user
        body_len = sent_http.x_auth_body_len
        method   = sent_http.x_auth_method
        code     = status
      }
      echo = "user=${user} len=${body_len} method=${method} code=${code}"
      location "/private/public/" {
        auth_request = "off"
        echo = "public"
      }
    }
    location "= /upload" {
      auth_request = "/auth"
      authtest     = "body"
    }
    location "/ip/" {
      auth_request = "/auth-ip"
      echo = "ip ok"
    }
    location "/any/" {
      satisfy      = "any"
      allow        = "127.0.0.2"
      deny         = "all"
      auth_request = "/auth"
      echo         = "granted"
    }
    location "/all/" {
      allow        = "127.0.0.2"
      deny         = "all"
      auth_request = "/auth"
      echo         = "granted"
    }
  }
}
`

func do(t *testing.T, addr, src, method, path, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		},
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://spindle.test"+path, rd)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", method, path, src, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestAuthRequest(t *testing.T) {
	s := testserver.Start(t, authConfText)
	cases := []struct {
		src, method, path, body, auth string
		status                        int
		want                          string
		wwwAuth                       []string
		calls                         int64
	}{
		{"127.0.0.1", "GET", "/private/x", "", "Bearer good", 200, "user=alice len=0 method=GET code=200\n", nil, 1},
		// the subrequest is a GET without the request body
		{"127.0.0.1", "POST", "/private/x", "hello", "Bearer good", 200, "user=alice len=0 method=GET code=200\n", nil, 1},
		{"127.0.0.1", "GET", "/private/x", "", "", 401, "", []string{`Bearer realm="spindle"`, `Basic realm="spindle"`}, 1},
		{"127.0.0.1", "GET", "/private/x", "", "Bearer forbidden", 403, "", nil, 1},
		{"127.0.0.1", "GET", "/private/x", "", "Bearer broken", 500, "", nil, 1},
		{"127.0.0.1", "GET", "/private/public/x", "", "", 200, "public\n", nil, 0},
		// the main request keeps its body for its own handler
		{"127.0.0.1", "POST", "/upload", "payload", "Bearer good", 200, "body=payload\n", nil, 1},
		{"127.0.0.1", "POST", "/upload", "payload", "", 401, "", nil, 1},
		// an auth location made of if and return
		{"127.0.0.1", "GET", "/ip/", "", "", 200, "ip ok\n", nil, 0},
		{"127.0.0.2", "GET", "/ip/", "", "", 403, "", nil, 0},
		// satisfy any: either allow or auth_request grants access
		{"127.0.0.2", "GET", "/any/", "", "", 200, "granted\n", nil, 0},
		{"127.0.0.1", "GET", "/any/", "", "Bearer good", 200, "granted\n", nil, 1},
		{"127.0.0.1", "GET", "/any/", "", "", 401, "", []string{`Bearer realm="spindle"`, `Basic realm="spindle"`}, 1},
		{"127.0.0.1", "GET", "/any/", "", "Bearer forbidden", 403, "", nil, 1},
		{"127.0.0.1", "GET", "/any/", "", "Bearer broken", 500, "", nil, 1},
		// satisfy all (the default): both must grant
		{"127.0.0.2", "GET", "/all/", "", "Bearer good", 200, "granted\n", nil, 1},
		{"127.0.0.2", "GET", "/all/", "", "", 401, "", nil, 1},
		{"127.0.0.1", "GET", "/all/", "", "Bearer good", 403, "", nil, 0},
	}
	for _, c := range cases {
		var hs []string
		if c.auth != "" {
			hs = append(hs, "Authorization: "+c.auth)
		}
		before := authCalls.Load()
		resp, body := do(t, s.Addr, c.src, c.method, c.path, c.body, hs...)
		name := c.method + " " + c.path + " from " + c.src + " (" + c.auth + ")"
		if resp.StatusCode != c.status || (c.want != "" && body != c.want) {
			t.Errorf("%s = %d %q, want %d %q", name, resp.StatusCode, body, c.status, c.want)
		}
		if c.wwwAuth != nil && strings.Join(resp.Header.Values("WWW-Authenticate"), "|") != strings.Join(c.wwwAuth, "|") {
			t.Errorf("%s: WWW-Authenticate %q, want %q", name, resp.Header.Values("WWW-Authenticate"), c.wwwAuth)
		}
		if resp.StatusCode == 200 && resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s: granted with WWW-Authenticate %q", name, resp.Header.Get("WWW-Authenticate"))
		}
		if got := authCalls.Load() - before; got != c.calls {
			t.Errorf("%s: auth service called %d times, want %d", name, got, c.calls)
		}
	}
	if !strings.Contains(s.ErrorLog(), "auth request unexpected status: 502") {
		t.Errorf("error log lacks the unexpected status:\n%s", s.ErrorLog())
	}
}
