package realip_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/access"
	_ "github.com/spindle-server/spindle/modules/accesslog"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/realip"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

// nginx's documented example, with loopback as the trusted proxy the tests connect
// from.
const realipConf = `
http {
  log_format "addr" { format = "$remote_addr $realip_remote_addr $request_uri" }
  access_log = "logs/access.log addr"
  server {
    listen            = ["127.0.0.1:0"]
    set_real_ip_from  = ["127.0.0.1", "192.168.1.0/24", "192.168.2.1", "2001:0db8::/32"]
    real_ip_header    = "X-Forwarded-For"
    real_ip_recursive = true

    if {
      cond   = remote_addr == "203.0.113.66"
      return = { code = 200, body = "server rewrite saw the real address\n" }
    }
    location "/" {
      echo = "${remote_addr}|${remote_port}|${realip_remote_addr}|${realip_remote_port != ""}"
    }
    location "/denied/" {
      deny = "203.0.113.9"
      echo = "allowed ${remote_addr}"
    }
    location "/custom/" {
      set_real_ip_from = ["127.0.0.1"]
      real_ip_header   = "X-Client"
      echo = "${remote_addr}"
    }
    location "/flat/" {
      set_real_ip_from  = ["127.0.0.1", "192.168.1.0/24"]
      real_ip_header    = "X-Chain"
      real_ip_recursive = false
      echo = "${remote_addr}"
    }
  }
}
`

// get sends GET path from the local address src with headers.
func get(t *testing.T, addr, src, path string, headers ...string) (int, string) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRealIPForwardedFor(t *testing.T) {
	s := testserver.Start(t, realipConf)
	for _, c := range []struct {
		src    string
		xff    []string
		prefix string
	}{
		{"127.0.0.1", nil, "127.0.0.1|"},
		{"127.0.0.1", []string{"X-Forwarded-For: 198.51.100.7"}, "198.51.100.7||127.0.0.1|true"},
		// Recursive: the last address that is not a trusted proxy.
		{"127.0.0.1", []string{"X-Forwarded-For: 198.51.100.7, 192.168.1.20, 192.168.2.1"}, "198.51.100.7|"},
		{"127.0.0.1", []string{"X-Forwarded-For: 198.51.100.7, 192.168.1.20", "X-Forwarded-For: 192.168.2.1"}, "198.51.100.7|"},
		{"127.0.0.1", []string{"X-Forwarded-For: 10.9.9.9, 198.51.100.8, 192.168.1.20"}, "198.51.100.8|"},
		{"127.0.0.1", []string{"X-Forwarded-For: [2001:db9::7]:4242"}, "2001:db9::7|4242|127.0.0.1"},
		{"127.0.0.1", []string{"X-Forwarded-For: not-an-address"}, "127.0.0.1|"},
		// An untrusted client's header is ignored.
		{"127.0.0.2", []string{"X-Forwarded-For: 198.51.100.7"}, "127.0.0.2|"},
	} {
		status, body := get(t, s.Addr, c.src, "/", c.xff...)
		if status != 200 || !strings.HasPrefix(body, c.prefix) {
			t.Errorf("from %s %v: %d %q, want %q...", c.src, c.xff, status, body, c.prefix)
		}
	}
	if _, body := get(t, s.Addr, "127.0.0.1", "/flat/", "X-Chain: 198.51.100.7, 192.168.1.20"); body != "192.168.1.20\n" {
		t.Errorf("real_ip_recursive off: %q", body)
	}
}

// The real address is what the server's rewrite directives (post_read runs before
// them), access rules and the access log see.
func TestRealIPPhases(t *testing.T) {
	s := testserver.Start(t, realipConf)
	if _, body := get(t, s.Addr, "127.0.0.1", "/x", "X-Forwarded-For: 203.0.113.66"); body != "server rewrite saw the real address\n" {
		t.Errorf("server rewrite: %q", body)
	}
	if status, _ := get(t, s.Addr, "127.0.0.1", "/denied/", "X-Forwarded-For: 203.0.113.9"); status != 403 {
		t.Errorf("deny of the real address: %d", status)
	}
	if status, body := get(t, s.Addr, "127.0.0.1", "/denied/", "X-Forwarded-For: 203.0.113.10"); status != 200 || body != "allowed 203.0.113.10\n" {
		t.Errorf("allowed real address: %d %q", status, body)
	}
	// A location's own configuration applies in the preaccess phase.
	if _, body := get(t, s.Addr, "127.0.0.1", "/custom/", "X-Client: 198.51.100.99"); body != "198.51.100.99\n" {
		t.Errorf("location's header: %q", body)
	}
	// The server's post_read decision stands: the location does not redo it.
	if _, body := get(t, s.Addr, "127.0.0.1", "/custom/", "X-Client: 198.51.100.99", "X-Forwarded-For: 198.51.100.1"); body != "198.51.100.1\n" {
		t.Errorf("post_read then location: %q", body)
	}
	var log string
	e2e.WaitFor(5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(s.Prefix, "logs/access.log"))
		log = string(b)
		return strings.Contains(log, "/custom/")
	})
	if !strings.Contains(log, "203.0.113.9 127.0.0.1 /denied/\n") {
		t.Errorf("access log:\n%s", log)
	}
}

func TestRealIPConfigErrors(t *testing.T) {
	for _, c := range []struct{ conf, want string }{
		{`set_real_ip_from = ["10.0.0.0/33"]`, "conf/spindle.hcl:2,20: set_real_ip_from: invalid CIDR block"},
		{`set_real_ip_from = []`, "needs an address"},
		{`real_ip_header = "X Bad"`, "needs a header name"},
		{`real_ip_recursive = "maybe"`, ""},
	} {
		_, err := testserver.BuildString(t, "http {\n"+c.conf+"\n}\n", nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.conf, err, c.want)
		}
	}
}

// The spindle binary behind a trusted loopback proxy.
func TestRealIPE2E(t *testing.T) {
	inst := e2e.Start(t, strings.Replace(realipConf, `"127.0.0.1:0"`, `"127.0.0.1:{{PORT}}"`, 1), nil)
	if _, body := get(t, inst.Addr(), "127.0.0.1", "/", "X-Forwarded-For: 198.51.100.7, 192.168.1.20"); !strings.HasPrefix(body, "198.51.100.7||127.0.0.1|true") {
		t.Errorf("%q", body)
	}
	if status, _ := get(t, inst.Addr(), "127.0.0.1", "/denied/", "X-Forwarded-For: 203.0.113.9"); status != 403 {
		t.Errorf("deny: %d", status)
	}
}

// real_ip_header = "proxy_protocol" behind a load balancer speaking the PROXY protocol,
// through the spindle binary: the address from the header is the client's for access
// rules and the access log.
func TestRealIPProxyProtocolE2E(t *testing.T) {
	inst := e2e.Start(t, `
http {
  log_format "addr" { format = "$remote_addr:$remote_port $realip_remote_addr $proxy_protocol_addr $request_uri" }
  access_log = "logs/access.log addr"
  server {
    listen           = ["127.0.0.1:{{PORT}} proxy_protocol"]
    set_real_ip_from = ["127.0.0.0/8"]
    real_ip_header   = "proxy_protocol"
    location "/" {
      deny = "192.0.2.66"
      echo = "${remote_addr}|${remote_port}|${realip_remote_addr}"
    }
  }
}
`, nil)
	send := func(header, path string) string {
		c, err := net.DialTimeout("tcp", inst.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, header+"GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if resp := send("PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n", "/a"); !strings.HasSuffix(resp, "\r\n\r\n192.0.2.1|56324|127.0.0.1\n") {
		t.Errorf("v1: %q", resp)
	}
	v2 := "\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24" + string(netip.MustParseAddr("2001:db8::7").AsSlice()) + string(netip.MustParseAddr("2001:db8::1").AsSlice()) + "\x10\x01\x01\xbb"
	if resp := send(v2, "/b"); !strings.HasSuffix(resp, "\r\n\r\n2001:db8::7|4097|127.0.0.1\n") {
		t.Errorf("v2: %q", resp)
	}
	if resp := send("PROXY TCP4 192.0.2.66 198.51.100.1 1 443\r\n", "/denied"); !strings.HasPrefix(resp, "HTTP/1.1 403") {
		t.Errorf("deny: %q", resp)
	}
	if resp := send("", "/no-header"); resp != "" {
		t.Errorf("without a PROXY header: %q", resp)
	}
	var log string
	e2e.WaitFor(5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(inst.Prefix, "logs/access.log"))
		log = string(b)
		return strings.Contains(log, "/denied")
	})
	if !strings.Contains(log, "192.0.2.1:56324 127.0.0.1 192.0.2.1 /a\n") || !strings.Contains(log, "192.0.2.66:1 127.0.0.1 192.0.2.66 /denied\n") {
		t.Errorf("access log:\n%s", log)
	}
}
