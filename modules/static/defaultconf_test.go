package static_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/e2e"
)

// The default configuration, run by the spindle binary as the README says, serves the
// welcome page from html/ and /hello.
func TestDefaultConfig(t *testing.T) {
	repo := filepath.Join("..", "..")
	cfg, err := os.ReadFile(filepath.Join(repo, "conf/spindle.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `"127.0.0.1:8080"`) {
		t.Fatalf("conf/spindle.hcl no longer listens on 127.0.0.1:8080; update this test")
	}
	files := map[string]string{}
	for _, name := range []string{"html/index.html", "html/50x.html"} {
		b, err := os.ReadFile(filepath.Join(repo, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	inst := e2e.Start(t, strings.Replace(string(cfg), `"127.0.0.1:8080"`, `"127.0.0.1:{{PORT}}"`, 1), &e2e.Options{Files: files})
	for _, tc := range []struct {
		path    string
		status  int
		contain string
	}{
		{"/", 200, "<h1>Welcome to spindle!</h1>"},
		{"/index.html", 200, "spindle is running"},
		{"/hello", 200, "hello world\n"},
		{"/50x.html", 200, "An error occurred."},
		{"/nope", 404, "404 Not Found"},
	} {
		status, body, err := inst.Get(tc.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		if status != tc.status || !strings.Contains(body, tc.contain) {
			t.Errorf("GET %s: %d %q, want %d with %q", tc.path, status, body, tc.status, tc.contain)
		}
	}
	if status, body, _ := inst.Get("/hello"); status != 200 || body != "hello world\n" {
		t.Errorf("GET /hello: %d %q", status, body)
	}
}
