package accesslog_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/accesslog"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

// readLog returns the lines of a log file under the server's prefix.
func readLog(t *testing.T, s *testserver.Server, name string) []string {
	t.Helper()
	s.Settle()
	b, err := os.ReadFile(filepath.Join(s.Prefix, name))
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	return lines(string(b))
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	if !strings.HasSuffix(s, "\n") {
		return append(strings.Split(s, "\n"), "<partial line>")
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func exists(s *testserver.Server, name string) bool {
	_, err := os.Stat(filepath.Join(s.Prefix, name))
	return err == nil
}

// timeLocal matches nginx's $time_local.
const timeLocal = `\d\d/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}`

func TestCombinedIsTheDefault(t *testing.T) {
	s := testserver.Start(t, `
http {
  server {
    listen = ["127.0.0.1:0"]
    location "/" { return = { code = 200, body = "hello\n" } }
    location "= /missing" { return = 404 }
  }
}
`)
	s.Get("/hello?x=1", "Authorization: Basic YWxpY2U6c2VjcmV0", "Referer: http://ref.example/", "User-Agent: test \"agent\"")
	s.Get("/missing")
	got := readLog(t, s, "logs/access.log")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^127\.0\.0\.1 - alice \[` + timeLocal + `\] "GET /hello\?x=1 HTTP/1\.1" 200 6 "http://ref\.example/" "test \\x22agent\\x22"$`),
		regexp.MustCompile(`^127\.0\.0\.1 - - \[` + timeLocal + `\] "GET /missing HTTP/1\.1" 404 \d+ "-" "Go-http-client/1\.1"$`),
	}
	matchLines(t, "access.log", got, want)
}

// TestRejectedRequestsAreLogged: requests answered before they could be parsed are in
// the default server's log as in nginx's, with the request line as it came.
func TestRejectedRequestsAreLogged(t *testing.T) {
	s := testserver.Start(t, `
http {
  log_format "short" { format = "[$request] $status $request_method $body_bytes_sent $http_user_agent" }
  server {
    listen = ["127.0.0.1:0"]
    access_log = "logs/access.log short"
    location "/" { return = { code = 200, body = "hello\n" } }
  }
}
`)
	// A good request first: its headers must not show up in the rejected line after it.
	raw := s.Raw("GET /ok HTTP/1.1\r\nHost: x\r\nUser-Agent: agent-1\r\n\r\n"+
		"GET /bad HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 2*time.Second)
	if !strings.Contains(raw, " 200 OK") || !strings.Contains(raw, " 400 Bad Request") {
		t.Fatalf("responses:\n%s", raw)
	}
	s.Raw("\x16\x03\x01garbage\r\n\r\n", 2*time.Second)
	s.Raw("GET /"+strings.Repeat("a", 9000)+" HTTP/1.1\r\n\r\n", 2*time.Second)
	got := readLog(t, s, "logs/access.log")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^\[GET /ok HTTP/1\.1\] 200 GET 6 agent-1$`),
		regexp.MustCompile(`^\[GET /bad HTTP/1\.1\] 400 GET \d+ -$`),
		regexp.MustCompile(`^\[\\x16\\x03\\x01garbage\] 400 - \d+ -$`),
		regexp.MustCompile(`^\[GET /a{1000,}( HTTP/1\.1)?\] 414 GET \d+ -$`),
	}
	matchLines(t, "access.log", got, want)
}

// matchLines checks that the lines of a log match want, one expression per line.
func matchLines(t *testing.T, name string, got []string, want []*regexp.Regexp) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s has %d lines, want %d:\n%s", name, len(got), len(want), strings.Join(got, "\n"))
	}
	for i, re := range want {
		if !re.MatchString(got[i]) {
			line := got[i]
			if len(line) > 100 {
				line = "..." + line[len(line)-100:]
			}
			t.Errorf("%s line %d = %q, want match for %.200s", name, i, line, re)
		}
	}
}

func TestCustomFormats(t *testing.T) {
	s := testserver.Start(t, `
http {
  log_format "vars" {
    format = "${request_method} ${uri} args=$args is_args=[$is_args] id=${arg.id}/$arg_id h=${http.x_custom}/$http_x_custom ck=$cookie_sid ct=${sent_http.content_type} cap=$1/${re[2]} up=${upper(request_method)}"
  }
  log_format "nginx" {
    format = "$remote_addr:$remote_port \"$request\" $status $body_bytes_sent $request_length ${request_time}s ${msec} $time_iso8601 $server_protocol $host $connection_requests"
  }
  log_format "multi" {
    format = ["[$status]", " ", "${uri}"]
  }
  log_format "heredoc" {
    format = <<-EOT
      {"uri":"$uri","status":$status}
    EOT
  }
  log_format "directive" {
    format = "%{ if uri == "/plain" }plain%{ else }other%{ endif } $uri"
  }
  server {
    listen = ["127.0.0.1:0"]
    access_log = ["logs/vars.log vars", "logs/nginx.log nginx", "logs/multi.log multi", "logs/heredoc.log heredoc", "logs/directive.log directive"]
    location "~ ^/cap/(\\w+)/(\\w+)$" { return = { code = 200, body = "cap\n" } }
    location "/" { return = { code = 200, body = "hello\n" } }
  }
}
`)
	s.Get("/cap/one/two?id=7", "X-Custom: yes", "Cookie: sid=abc; other=1")
	s.Get("/plain")
	vars := readLog(t, s, "logs/vars.log")
	want := []string{
		"GET /cap/one/two args=id=7 is_args=[?] id=7/7 h=yes/yes ck=abc ct=text/plain cap=one/two up=GET",
		"GET /plain args=- is_args=[] id=-/- h=-/- ck=- ct=text/plain cap=-/- up=GET",
	}
	if strings.Join(vars, "\n") != strings.Join(want, "\n") {
		t.Errorf("vars.log:\n%s\nwant:\n%s", strings.Join(vars, "\n"), strings.Join(want, "\n"))
	}
	nginx := readLog(t, s, "logs/nginx.log")
	re := regexp.MustCompile(`^127\.0\.0\.1:\d+ "GET /plain HTTP/1\.1" 200 6 \d+ \d+\.\d{3}s \d+\.\d{3} \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d HTTP/1\.1 127\.0\.0\.1 1$`)
	if len(nginx) != 2 || !re.MatchString(nginx[1]) {
		t.Errorf("nginx.log = %q, want 2 lines, the second matching %s", nginx, re)
	}
	if got := readLog(t, s, "logs/multi.log"); strings.Join(got, "|") != "[200] /cap/one/two|[200] /plain" {
		t.Errorf("multi.log = %q", got)
	}
	if got := readLog(t, s, "logs/heredoc.log"); strings.Join(got, "|") != `{"uri":"/cap/one/two","status":200}|{"uri":"/plain","status":200}` {
		t.Errorf("heredoc.log = %q", got)
	}
	if got := readLog(t, s, "logs/directive.log"); strings.Join(got, "|") != "other /cap/one/two|plain /plain" {
		t.Errorf("directive.log = %q", got)
	}
	if exists(s, "logs/access.log") {
		t.Errorf("the default access.log was created although no context uses it")
	}
}

func TestEscaping(t *testing.T) {
	s := testserver.Start(t, `
http {
  log_format "default" { format = "$uri|$http_x_missing|${http.x_empty}" }
  log_format "json" {
    escape = "json"
    format = "{\"uri\":\"$uri\",\"missing\":\"$http_x_missing\"}"
  }
  log_format "none" {
    escape = "none"
    format = "$uri|$http_x_missing"
  }
  server {
    listen     = ["127.0.0.1:0"]
    access_log = ["logs/default.log default", "logs/json.log json", "logs/none.log none"]
    location "/" { return = 200 }
  }
}
`)
	s.Raw("GET /esc/a%22b%5Cc%01d%0Ae%09f%7F%C3%A9 HTTP/1.1\r\nHost: x\r\nX-Empty: \r\nConnection: close\r\n\r\n", 5*time.Second)
	check := func(name, want string) {
		t.Helper()
		b, _ := os.ReadFile(filepath.Join(s.Prefix, name))
		if string(b) != want {
			t.Errorf("%s = %q, want %q", name, b, want)
		}
	}
	check("logs/default.log", `/esc/a\x22b\x5Cc\x01d\x0Ae\x09f\x7F\xC3\xA9|-|`+"\n")
	check("logs/json.log", `{"uri":"/esc/a\"b\\c\u0001d\ne\tf`+"\x7f\xc3\xa9"+`","missing":""}`+"\n")
	check("logs/none.log", "/esc/a\"b\\c\x01d\ne\tf\x7f\xc3\xa9|\n")
}

func TestInheritanceAndOff(t *testing.T) {
	s := testserver.Start(t, `
http {
  access_log = ["logs/main.log", "logs/all.log"]
  server {
    listen = ["127.0.0.1:0"]
    location "/a" { access_log = "logs/a.log" }
    location "/off" {
      access_log = "off"
      location "/off/on" { access_log = "logs/on.log" }
      location "/off/still" { return = 200 }
    }
    location "/" { return = 200 }
    location "/if" {
      if {
        cond       = arg.quiet != ""
        access_log = "off"
      }
      return = 200
    }
  }
  server {
    listen     = ["127.0.0.2:0"]
    access_log = "logs/s2.log"
    location "/" { return = 200 }
  }
}
`)
	s.Get("/x")
	s.Get("/a")
	s.Get("/off")
	s.Get("/off/on")
	s.Get("/off/still")
	s.Get("/if")
	s.Get("/if?quiet=1")
	r := testserver.Raw(t, s.AddrOf("127.0.0.2:0"), "GET /s2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(r, "HTTP/1.1 200") {
		t.Fatalf("second server: %q", r)
	}
	uris := func(name string) string {
		var out []string
		for _, l := range readLog(t, s, name) {
			f := strings.Fields(l)
			out = append(out, f[6])
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct{ file, uris string }{
		{"logs/main.log", "/x /if"},
		{"logs/all.log", "/x /if"},
		{"logs/a.log", "/a"},
		{"logs/on.log", "/off/on"},
		{"logs/s2.log", "/s2"},
		{"logs/access.log", ""},
	} {
		if got := uris(c.file); got != c.uris {
			t.Errorf("%s logged %q, want %q", c.file, got, c.uris)
		}
	}
}

func TestOffEverywhere(t *testing.T) {
	s := testserver.Start(t, `
http {
  access_log = "off"
  server {
    listen = ["127.0.0.1:0"]
    location "/" { return = 200 }
  }
}
`)
	s.Get("/")
	if entries, _ := os.ReadDir(filepath.Join(s.Prefix, "logs")); len(entries) != 1 || entries[0].Name() != "error.log" {
		t.Errorf("logs/ holds %v, want only error.log", entries)
	}
}

func TestConditions(t *testing.T) {
	s := testserver.Start(t, `
http {
  log_format "uri" { format = "$request_uri" }
  server {
    listen     = ["127.0.0.1:0"]
    access_log = [
      { path = "logs/errors.log", format = "uri", if = status != "200" },
      "logs/flagged.log uri if=$arg_log",
      { path = "logs/numeric.log", format = "uri", if = status >= 400 },
    ]
    location "= /missing" { return = 404 }
    location "/" { return = 200 }
  }
}
`)
	for _, p := range []string{"/ok", "/missing", "/ok?log=1", "/ok?log=0", "/ok?log="} {
		s.Get(p)
	}
	if got := strings.Join(readLog(t, s, "logs/errors.log"), " "); got != "/missing" {
		t.Errorf("errors.log = %q", got)
	}
	if got := strings.Join(readLog(t, s, "logs/numeric.log"), " "); got != "/missing" {
		t.Errorf("numeric.log = %q", got)
	}
	if got := strings.Join(readLog(t, s, "logs/flagged.log"), " "); got != "/ok?log=1" {
		t.Errorf("flagged.log = %q", got)
	}
}

func TestBufferFlushedOnInterval(t *testing.T) {
	s := testserver.Start(t, `
http {
  log_format "uri" { format = "$uri" }
  server {
    listen     = ["127.0.0.1:0"]
    access_log = { path = "logs/buf.log", format = "uri", buffer = "64k", flush = "200ms" }
    location "/" { return = 200 }
  }
}
`)
	s.Get("/one")
	s.Get("/two")
	if !e2e.WaitFor(10*time.Second, func() bool { return len(readLog(t, s, "logs/buf.log")) == 2 }) {
		t.Fatalf("buffered lines were not flushed: %q", readLog(t, s, "logs/buf.log"))
	}
	if got := strings.Join(readLog(t, s, "logs/buf.log"), " "); got != "/one /two" {
		t.Errorf("buf.log = %q", got)
	}
}

func TestBufferFlushedOnSizeAndAtExit(t *testing.T) {
	s := testserver.Start(t, `
http {
  log_format "padded" { format = "$uri ${request_method}............................................................................" }
  server {
    listen     = ["127.0.0.1:0"]
    access_log = "logs/buf.log padded buffer=1k"
    location "/" { return = 200 }
  }
}
`)
	const n = 30
	for i := 0; i < n; i++ {
		s.Get("/r")
	}
	before := readLog(t, s, "logs/buf.log")
	if len(before) == 0 || len(before) >= n {
		t.Errorf("with a 1k buffer, %d of %d lines of ~90 bytes were written before exit", len(before), n)
	}
	for _, l := range before {
		if !strings.HasPrefix(l, "/r GET....") || len(l) != len(before[0]) {
			t.Fatalf("partial or mixed line %q", l)
		}
	}
	s.Config.ExitWorker()
	after := readLog(t, s, "logs/buf.log")
	if len(after) != n {
		t.Errorf("after exit the log has %d lines, want %d", len(after), n)
	}
}

func TestUnflushedBufferWaitsForExit(t *testing.T) {
	s := testserver.Start(t, `
http {
  server {
    listen     = ["127.0.0.1:0"]
    access_log = "logs/buf.log combined buffer=32k"
    location "/" { return = 200 }
  }
}
`)
	s.Get("/")
	if got := readLog(t, s, "logs/buf.log"); len(got) != 0 {
		t.Errorf("a 32k buffer without flush interval wrote %q before it was full", got)
	}
	s.Config.ExitWorker()
	if got := readLog(t, s, "logs/buf.log"); len(got) != 1 {
		t.Errorf("after exit buf.log = %q", got)
	}
}

func TestGzip(t *testing.T) {
	s := testserver.Start(t, `
http {
  log_format "uri" { format = "$uri" }
  server {
    listen     = ["127.0.0.1:0"]
    access_log = "logs/access.log.gz uri buffer=128 gzip=9"
    location "/" { return = 200 }
  }
}
`)
	var want []string
	for i := 0; i < 20; i++ {
		p := "/gz/" + strings.Repeat("x", i)
		s.Get(p)
		want = append(want, p)
	}
	s.Settle()
	s.Config.ExitWorker()
	f, err := os.Open(filepath.Join(s.Prefix, "logs/access.log.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := lines(string(b)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("gzip log = %q", got)
	}
	raw, _ := os.ReadFile(filepath.Join(s.Prefix, "logs/access.log.gz"))
	if members := bytes.Count(raw, []byte{0x1f, 0x8b, 8}); members < 2 {
		t.Errorf("a 128-byte buffer should flush several gzip members, found %d", members)
	}
}

func TestLogSubrequest(t *testing.T) {
	const config = `
http {
  log_format "uri" { format = "$uri $status" }
  access_log = "logs/access.log uri"
  LOGSUB
  server {
    listen = ["127.0.0.1:0"]
    location "= /main" { echo_location = ["/sub1", "/sub2"] }
    location "/sub" { echo = "sub" }
  }
}
`
	for _, on := range []bool{false, true} {
		c := strings.Replace(config, "LOGSUB", "", 1)
		want := "/main 200"
		if on {
			c = strings.Replace(config, "LOGSUB", "log_subrequest = true", 1)
			want = "/sub1 200|/sub2 200|/main 200"
		}
		s := testserver.Start(t, c)
		if r := s.Get("/main"); r.Body != "sub\nsub\n" {
			t.Fatalf("/main = %q", r.Body)
		}
		if got := strings.Join(readLog(t, s, "logs/access.log"), "|"); got != want {
			t.Errorf("log_subrequest=%v: log = %q, want %q", on, got, want)
		}
	}
}

func TestReopenInProcess(t *testing.T) {
	s := testserver.Start(t, `
http {
  log_format "uri" { format = "$uri" }
  access_log = ["logs/access.log uri", "logs/buffered.log uri buffer=64k"]
  server {
    listen = ["127.0.0.1:0"]
    location "/" { return = 200 }
  }
}
`)
	s.Get("/before")
	s.Settle()
	for _, name := range []string{"logs/access.log", "logs/buffered.log"} {
		if err := os.Rename(filepath.Join(s.Prefix, name), filepath.Join(s.Prefix, name+".1")); err != nil {
			t.Fatal(err)
		}
	}
	s.Get("/between")
	s.Settle()
	s.Config.Reopen()
	s.Get("/after")
	s.Settle()
	s.Config.ExitWorker()
	for _, c := range []struct{ file, want string }{
		{"logs/access.log.1", "/before /between"},
		{"logs/access.log", "/after"},
		// The buffer is written to the old file before it is reopened.
		{"logs/buffered.log.1", "/before /between"},
		{"logs/buffered.log", "/after"},
	} {
		if got := strings.Join(readLog(t, s, c.file), " "); got != c.want {
			t.Errorf("%s = %q, want %q", c.file, got, c.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	wrap := func(http string) string {
		return "http {\n" + http + "\n  server {\n    listen = [\"127.0.0.1:0\"]\n  }\n}\n"
	}
	cases := []struct{ config, want string }{
		{wrap(`  access_log = "logs/a.log nosuch"`), `spindle.hcl:2,16: unknown log format "nosuch"`},
		{wrap(`  access_log = { path = "logs/a.log", format = "nosuch" }`), `spindle.hcl:2,48: unknown log format "nosuch"`},
		{wrap(`  log_format "combined" { format = "$uri" }`), `spindle.hcl:2,14: duplicate log_format name "combined"`},
		{wrap(`  log_format "x" { format = "$nosuch_var" }`), `spindle.hcl:2,30: unknown variable "nosuch_var"`},
		{wrap(`  log_format "x" { format = "${nosuch}" }`), `spindle.hcl:2,32: unknown variable "nosuch"`},
		{wrap("  log_format \"x\" {\n    format = \"$uri\"\n    escape = \"xml\"\n  }"), `unknown log format escaping "xml"`},
		{wrap(`  log_format "x" { escape = "json" }`), `log_format "x" needs a format`},
		{wrap("  log_format \"x\" {\n    format = \"$uri\"\n    colour = 1\n  }"), `unknown field "colour"`},
		{wrap(`  access_log = "logs/a.log combined flush=1s"`), `no buffer is defined for access_log "logs/a.log"`},
		{wrap(`  access_log = "logs/a.log combined buffer=0"`), `invalid buffer size "0"`},
		{wrap(`  access_log = "logs/a.log combined gzip=10"`), `invalid compression level "10"`},
		{wrap(`  access_log = "logs/a.log combined colour=red"`), `invalid parameter "colour=red"`},
		{wrap(`  access_log = "off now"`), `invalid parameter "now" after "off"`},
		{wrap(`  access_log = ["off", "logs/a.log"]`), `"off" turns the access log off and cannot be listed with logs`},
		{wrap(`  access_log = ["logs/a.log combined buffer=8k", "logs/a.log combined buffer=16k"]`), `access_log "logs/a.log" already defined with conflicting parameters`},
		{wrap(`  access_log = { path = "logs/${host}.log" }`), `variables are not supported in access_log paths`},
		{wrap(`  access_log = { format = "combined" }`), `access_log needs a path`},
		{wrap(`  access_log = "conf"`), `spindle.hcl:2,16: access log `},
		{wrap(`  access_log = "conf"`), `conf: is a directory`},
		{wrap(`  access_log = "conf/spindle.hcl/x.log"`), `spindle.hcl is not a directory`},
		{wrap(`  access_log = { path = "logs/a.log", if = nosuch == "1" }`), `unknown variable "nosuch"`},
		{"http {\n  server {\n    log_format \"x\" { format = \"$uri\" }\n  }\n}\n", `"log_format" is not allowed in server context`},
	}
	for _, c := range cases {
		_, err := testserver.BuildString(t, c.config, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config\n%s\nerror = %v, want %q", c.config, err, c.want)
		}
	}
}

// A JSON format gives lines that parse as JSON and hold the values sent, whatever
// bytes the client put in them.
func TestJSONLinesParse(t *testing.T) {
	s := testserver.Start(t, `
http {
  log_format "json" {
    escape = "json"
    format = <<-EOT
      {"request":"$request","uri":"$uri","status":$status,"agent":"$http_user_agent","referer":"$http_referer","user":"$remote_user"}
    EOT
  }
  access_log = "logs/access.json json"
  server {
    listen = ["127.0.0.1:0"]
    location "/" { return = 200 }
  }
}
`)
	agent := "evil \"agent\" \\ with\ttab, ünïcode"
	raw := "GET /p%22q%5Cr%0As%01t%C3%BC HTTP/1.1\r\nHost: x\r\nUser-Agent: " + agent +
		"\r\nAuthorization: Basic " + "Ym9iOnB3" + "\r\nConnection: close\r\n\r\n"
	if r := s.Raw(raw, 5*time.Second); !strings.HasPrefix(r, "HTTP/1.1 200") {
		t.Fatalf("response %q", r)
	}
	got := readLog(t, s, "logs/access.json")
	if len(got) != 1 {
		t.Fatalf("access.json = %q", got)
	}
	var v struct {
		Request, URI, Agent, Referer, User string
		Status                             int
	}
	if err := json.Unmarshal([]byte(got[0]), &v); err != nil {
		t.Fatalf("line %q is not JSON: %v", got[0], err)
	}
	if v.Request != "GET /p%22q%5Cr%0As%01t%C3%BC HTTP/1.1" || v.URI != "/p\"q\\r\ns\x01tü" || v.Status != 200 ||
		v.Agent != agent || v.Referer != "" || v.User != "bob" {
		t.Errorf("decoded %+v from %q", v, got[0])
	}
}
