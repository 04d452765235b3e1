package geo_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/geo"
)

// The tables of nginx's documentation (ngx_http_geo_module).
const geoConf = `
http {
  geo "geo" {
    default = "0"
    values = {
      "127.0.0.1"      = "2"
      "192.168.1.0/24" = "1"
      "10.1.0.0/16"    = "1"
      "::1"            = "2"
      "2001:0db8::/32" = "1"
    }
  }
  geo "by_arg" {
    source  = arg.remote_addr
    default = "0"
    values = {
      "127.0.0.1"        = "2"
      "192.168.1.0/24"   = "1"
      "192.168.1.128/25" = "3"
      "10.1.0.0/16"      = "1"
      "10.1.2.0/24"      = "deleted"
      "::1"              = "2"
      "2001:0db8::/32"   = "1"
      "0.0.0.0/0"        = "v4"
    }
    delete = ["10.1.2.0/24"]
  }
  geo "country" {
    source  = arg.ip
    ranges  = true
    default = "ZZ"
    values = {
      "127.0.0.0-127.0.0.0"       = "US"
      "127.0.0.1-127.0.0.1"       = "RU"
      "127.0.0.2-127.0.0.255"     = "US"
      "10.1.0.0-10.1.255.255"     = "RU"
      "192.168.1.0-192.168.1.255" = "UK"
      "172.16.0.0-172.16.0.9"     = "XX"
    }
    delete = ["172.16.0.0-172.16.0.9"]
  }
  geo "proxied" {
    proxy   = ["127.0.0.0/8", "2001:0db8::/32"]
    default = "other"
    values  = { "192.168.1.0/24" = "lan", "127.0.0.0/8" = "loopback", "10.0.0.0/8" = "ten" }
  }
  geo "proxied_recursive" {
    proxy           = ["127.0.0.0/8", "10.0.0.0/8"]
    proxy_recursive = true
    default         = "other"
    values          = { "192.168.1.0/24" = "lan", "127.0.0.0/8" = "loopback", "10.0.0.0/8" = "ten" }
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/" {
      echo = "${geo} ${by_arg} ${country} ${proxied} ${proxied_recursive}"
    }
  }
}
`

func field(t *testing.T, body string, i int) string {
	t.Helper()
	f := strings.Fields(body)
	if len(f) != 5 {
		t.Fatalf("body %q", body)
	}
	return f[i]
}

func TestGeoCIDR(t *testing.T) {
	s := testserver.Start(t, geoConf)
	for addr, want := range map[string]string{
		"127.0.0.1":       "2",
		"192.168.1.5":     "1",
		"192.168.1.200":   "3", // the longest prefix wins
		"10.1.7.7":        "1",
		"10.1.2.3":        "1", // its /24 was deleted: the /16 answers
		"10.2.0.1":        "v4",
		"::1":             "2",
		"2001:db8::5":     "1",
		"2001:db9::5":     "0",
		"::ffff:10.1.0.9": "1",
		"bogus":           "v4", // looked up as 255.255.255.255, as nginx
	} {
		if got := field(t, s.Get("/?remote_addr="+addr).Body, 1); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}

func TestGeoRanges(t *testing.T) {
	s := testserver.Start(t, geoConf)
	for addr, want := range map[string]string{
		"127.0.0.0":   "US",
		"127.0.0.1":   "RU",
		"127.0.0.2":   "US",
		"127.0.0.255": "US",
		"127.0.1.0":   "ZZ",
		"10.1.200.1":  "RU",
		"192.168.1.9": "UK",
		"172.16.0.5":  "ZZ", // deleted
		"::1":         "ZZ",
		"bogus":       "ZZ",
	} {
		if got := field(t, s.Get("/?ip="+addr).Body, 2); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}

// getFrom sends GET / from the local address src (any 127.0.0.0/8 address works on
// Linux loopback).
func getFrom(t *testing.T, addr, src string, headers ...string) string {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
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
	return string(b)
}

func TestGeoClientAddress(t *testing.T) {
	s := testserver.Start(t, geoConf)
	if got := field(t, getFrom(t, s.Addr, "127.0.0.1"), 0); got != "2" {
		t.Errorf("from 127.0.0.1: %s", got)
	}
	if got := field(t, getFrom(t, s.Addr, "127.0.0.3"), 0); got != "0" {
		t.Errorf("from 127.0.0.3: %s", got)
	}
}

func TestGeoProxy(t *testing.T) {
	s := testserver.Start(t, geoConf)
	for _, c := range []struct {
		xff       []string
		want      string
		recursive string
	}{
		{nil, "loopback", "loopback"},
		{[]string{"X-Forwarded-For: 192.168.1.7"}, "lan", "lan"},
		{[]string{"X-Forwarded-For: 192.168.1.7, 10.0.0.2"}, "ten", "lan"},
		{[]string{"X-Forwarded-For: 192.168.1.7", "X-Forwarded-For: 10.0.0.2"}, "ten", "lan"},
		{[]string{"X-Forwarded-For: 203.0.113.1, 192.168.1.7"}, "lan", "lan"},
		{[]string{"X-Forwarded-For: 10.0.0.1, 10.0.0.2"}, "ten", "ten"},
		{[]string{"X-Forwarded-For: nonsense"}, "loopback", "loopback"},
	} {
		body := getFrom(t, s.Addr, "127.0.0.1", c.xff...)
		if got := field(t, body, 3); got != c.want {
			t.Errorf("%v: proxy %s, want %s", c.xff, got, c.want)
		}
		if got := field(t, body, 4); got != c.recursive {
			t.Errorf("%v: proxy_recursive %s, want %s", c.xff, got, c.recursive)
		}
	}
}

func TestGeoConfigErrors(t *testing.T) {
	for _, c := range []struct{ conf, want string }{
		{"geo \"x\" {\nvalues = { \"10.0.0.0/33\" = \"1\" }\n}", "conf/spindle.hcl:3,12: invalid CIDR block"},
		{"geo \"x\" {\nranges = true\nvalues = { \"10.0.0.0/8\" = \"1\" }\n}", "invalid range"},
		{"geo \"x\" {\nranges = true\nvalues = { \"10.0.0.9-10.0.0.1\" = \"1\" }\n}", "end is before its start"},
		{"geo \"x\" {\nranges = true\nvalues = {\n\"127.0.0.1-127.0.0.1\" = \"RU\"\n\"127.0.0.0-127.0.0.255\" = \"US\"\n}\n}", `conf/spindle.hcl:6,1: range "127.0.0.0-127.0.0.255" overlaps "127.0.0.1-127.0.0.1"`},
		{"geo \"x\" {\nsource = arg.a\nproxy = [\"10.0.0.0/8\"]\n}", "cannot be combined"},
		{"geo \"x\" {\nproxy = [\"10.0.0.0/8\", \"nope\"]\n}", "invalid address"},
		{"geo \"x\" {\nvalues = { \"10.0.0.0/8\" = \"${uri}\" }\n}", ""},
	} {
		_, err := testserver.BuildString(t, "http {\n"+c.conf+"\n}\n", nil)
		if c.want == "" {
			if err == nil {
				t.Errorf("%s: loads; geo values are constants in nginx", c.conf)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.conf, err, c.want)
		}
	}
}

func TestGeoE2E(t *testing.T) {
	inst := e2e.Start(t, strings.Replace(geoConf, `"127.0.0.1:0"`, `"127.0.0.1:{{PORT}}"`, 1), nil)
	body := getFrom(t, inst.Addr(), "127.0.0.1", "X-Forwarded-For: 192.168.1.7, 10.0.0.2")
	if body != "2 v4 ZZ ten lan\n" {
		t.Errorf("%q", body)
	}
}

// The networks may live in a file of their own (nginx's include conf/geo.conf).
func TestGeoInclude(t *testing.T) {
	s := testserver.Start(t, `
http {
  geo "country" {
    source  = arg.ip
    default = "ZZ"
    include = ["conf/geo.hcl"]
  }
  server {
    listen = ["127.0.0.1:0"]
    location "/" { echo = "${country}" }
  }
}
`, testserver.WithFiles(map[string]string{"conf/geo.hcl": "values = {\n  \"10.2.0.0/16\" = \"RU\"\n  \"192.168.2.0/24\" = \"RU\"\n}\n"}))
	for ip, want := range map[string]string{"10.2.3.4": "RU\n", "192.168.2.9": "RU\n", "192.168.3.9": "ZZ\n"} {
		if r := s.Get("/?ip=" + ip); r.Body != want {
			t.Errorf("%s: %q, want %q", ip, r.Body, want)
		}
	}
}
