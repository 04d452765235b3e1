package backendtest_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/memc"
	_ "github.com/spindle-server/spindle/modules/ngxlua"
	_ "github.com/spindle-server/spindle/modules/redis"
	_ "github.com/spindle-server/spindle/modules/rewrite"
	_ "github.com/spindle-server/spindle/modules/upstream"
)

// serve starts a server whose http block holds httpConf (upstreams) and one server
// with serverConf; {RD} and {MC} in both are replaced by the backends' addresses.
func serve(t *testing.T, httpConf, serverConf string, kv ...string) *testserver.Server {
	t.Helper()
	r := strings.NewReplacer(kv...)
	return testserver.Start(t, "http {\n"+r.Replace(httpConf)+"\n  server {\n    listen = [\"127.0.0.1:0\"]\n"+r.Replace(serverConf)+"\n  }\n}\n")
}

// check asserts a response's status and body.
func check(t *testing.T, r *testserver.Response, status int, body string) {
	t.Helper()
	if r.Status != status || r.Body != body {
		t.Errorf("got %d %q, want %d %q", r.Status, r.Body, status, body)
	}
}

// checkLog asserts that the error log comes to contain each string (the log is
// written after the response).
func checkLog(t *testing.T, s *testserver.Server, want ...string) {
	t.Helper()
	var log, missing string
	if !e2e.WaitFor(2*time.Second, func() bool {
		log, missing = s.ErrorLog(), ""
		for _, w := range want {
			if !strings.Contains(log, w) {
				missing = w
				return false
			}
		}
		return true
	}) {
		t.Errorf("error log lacks %q:\n%s", missing, log)
	}
}

// noErrors asserts the error log has no [error] or worse line.
func noErrors(t *testing.T, s *testserver.Server) {
	t.Helper()
	for _, l := range strings.Split(s.ErrorLog(), "\n") {
		for _, lvl := range []string{"[error]", "[crit]", "[alert]", "[emerg]"} {
			if strings.Contains(l, lvl) {
				t.Errorf("unexpected error log line: %s", l)
			}
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
