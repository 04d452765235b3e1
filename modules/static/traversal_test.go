package static_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
)

const secret = "TOP-SECRET"

// Nothing outside the root or alias directory is ever served: not through "..",
// percent-encoded or not, not through a regex capture or a variable, not through a
// symbolic link; links that stay inside the root work.
func TestTraversal(t *testing.T) {
	files := map[string]string{
		"secret.txt":                 secret,
		"data/secret.txt":            secret,
		"html/pub.txt":               "public",
		"html/sub/x.txt":             "x",
		"html/%2e%2e/secret.txt":     "decoy: a directory really named %2e%2e",
		"data/images/x.png":          "png",
		"roots/a/file.txt":           "site a",
		"html/fallback.txt":          "fallback",
		"html/idx/index.html":        "idx",
		"html/static-fallback/x.txt": "x",
	}
	s := serve(t, `
    root = "html"
    location "/" {}
    location "/img" {
      alias = "data/images/"
    }
    location "~ ^/cap(.*)$" {
      alias = "data/images/${re[1]}"
    }
    location "/v/" {
      alias = "roots/${arg.site}/"
    }
    location "/idx/" {
      index = ["${arg.i}", "index.html"]
    }
    location "/try/" {
      try_files = ["${arg.f}", "=404"]
    }
    location "/jump/" {
      try_files = ["/nothing-here", "${arg.to}"]
    }`, files)
	p := s.Prefix
	links := map[string]string{
		"html/link-out":     "../secret.txt",
		"html/abs-out":      filepath.Join(p, "secret.txt"),
		"html/etc-passwd":   "/etc/passwd",
		"html/dirlink-out":  "..",
		"html/link-in":      "pub.txt",
		"html/sub/link-up":  "../pub.txt",
		"html/sub/dirlink":  "../sub",
		"data/images/leave": "../secret.txt",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(p, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		target string
		status int
		body   string
	}{
		{"/pub.txt", 200, "public"},
		{"/../secret.txt", 400, ""},
		{"/sub/../../secret.txt", 400, ""},
		{"/%2e%2e/secret.txt", 400, ""},
		{"/%2E%2E/secret.txt", 400, ""},
		{"/.%2e/secret.txt", 400, ""},
		{"/sub/%2e%2e/%2e%2e/secret.txt", 400, ""},
		{"/%2f..%2fsecret.txt", 400, ""},
		{"/sub%2f..%2f..%2fsecret.txt", 400, ""},
		{"/sub/..%2f..%2fsecret.txt", 400, ""},
		{"http://h/../secret.txt", 400, ""},
		// Decoded once only: %252e is a literal "%2e".
		{"/%252e%252e/secret.txt", 200, "decoy: a directory really named %2e%2e"},
		{"/%252e%252e%252fsecret.txt", 404, ""},
		{"/pub.txt%00.png", 400, ""},
		{"/..%5csecret.txt", 404, ""},
		{"/..\\secret.txt", 404, ""},
		// Symbolic links: out of the root refused, inside followed.
		{"/link-out", 403, ""},
		{"/abs-out", 403, ""},
		{"/etc-passwd", 403, ""},
		{"/dirlink-out/secret.txt", 403, ""},
		{"/dirlink-out/", 403, ""},
		{"/link-in", 200, "public"},
		{"/sub/link-up", 200, "public"},
		{"/sub/dirlink/x.txt", 200, "x"},
		// alias after a location without a trailing slash: nginx's off-by-slash.
		{"/img/x.png", 200, "png"},
		{"/img../secret.txt", 403, ""},
		{"/img/leave", 403, ""},
		// A regex capture cannot climb out of the alias directory.
		{"/cap/x.png", 200, "png"},
		{"/cap../secret.txt", 403, ""},
		{"/cap/../../secret.txt", 400, ""},
		// Nor can a variable.
		{"/v/file.txt?site=a", 200, "site a"},
		{"/v/secret.txt?site=..", 403, ""},
		{"/v/secret.txt?site=a/../..", 403, ""},
		{"/v/secret.txt?site=%2e%2e", 404, ""}, // arguments are not decoded: a directory named "%2e%2e"
		{"/idx/?i=../../secret.txt", 403, ""},
		{"/try/?f=/../secret.txt", 404, ""},
		{"/jump/?to=/../secret.txt", 403, ""},
	} {
		t.Run(tc.target, func(t *testing.T) {
			raw := s.Raw("GET "+tc.target+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 5*time.Second)
			if strings.Contains(raw, secret) {
				t.Fatalf("served the secret:\n%s", raw)
			}
			resps, bodies, err := testserver.ReadResponses(raw)
			if err != nil || len(resps) != 1 {
				t.Fatalf("responses: %v\n%s", err, raw)
			}
			if resps[0].StatusCode != tc.status {
				t.Fatalf("status %d, want %d\n%s", resps[0].StatusCode, tc.status, raw)
			}
			if tc.body != "" && bodies[0] != tc.body {
				t.Errorf("body %q, want %q", bodies[0], tc.body)
			}
		})
	}
	log := s.ErrorLog()
	for _, want := range []string{`open() "` + p + `/html/link-out" failed (path escapes`, p + "/data/images/../secret.txt"} {
		if !strings.Contains(log, want) {
			t.Errorf("error log does not name %s:\n%s", want, log)
		}
	}
}
