package ngxlua_test

import (
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	"github.com/spindle-server/spindle/modules/httpcore"
	_ "github.com/spindle-server/spindle/modules/ngxlua"
	_ "github.com/spindle-server/spindle/modules/rewrite"
)

// serve starts a server whose http block holds httpConf and one server with
// serverConf, like Test::Nginx's http_config and config sections.
func serve(t *testing.T, httpConf, serverConf string, opts ...testserver.Option) *testserver.Server {
	t.Helper()
	return testserver.Start(t, "http {\n"+httpConf+"\n  server {\n    listen = [\"127.0.0.1:0\"]\n"+serverConf+"\n  }\n}\n", opts...)
}

// check asserts a response's status and body.
func check(t *testing.T, r *testserver.Response, status int, body string) {
	t.Helper()
	if r.Status != status || r.Body != body {
		t.Errorf("got %d %q, want %d %q", r.Status, r.Body, status, body)
	}
}

// checkLog asserts that the error log contains each string.
func checkLog(t *testing.T, s *testserver.Server, want ...string) {
	t.Helper()
	log := s.ErrorLog()
	for _, w := range want {
		if !strings.Contains(log, w) {
			t.Errorf("error log lacks %q:\n%s", w, log)
		}
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

func testserverFiles(files map[string]string) testserver.Option { return testserver.WithFiles(files) }

// buildString builds a configuration without serving it (config errors).
func buildString(t *testing.T, config string) (*httpcore.Config, error) {
	return testserver.BuildString(t, config, nil)
}

// buildFiles builds a configuration with files under its prefix.
func buildFiles(t *testing.T, config string, files map[string]string) (*httpcore.Config, error) {
	return testserver.BuildString(t, config, files)
}

// initWorker runs the worker start-up hooks of a built configuration.
func initWorker(cfg *httpcore.Config) error {
	err := cfg.InitWorker(&httpcore.Worker{Count: 1})
	if err == nil {
		cfg.ExitWorker()
	}
	return err
}

type testserverResponse = testserver.Response
