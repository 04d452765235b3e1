package static_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/testserver"
)

func TestTypes(t *testing.T) {
	files := map[string]string{
		"html/a.html":        "a",
		"html/a.md":          "md",
		"html/a.MD":          "md upper",
		"html/a.webmanifest": "manifest",
		"html/a.css":         "css",
		"html/only/a.png":    "png",
		"html/deep/a.md":     "md",
		"html/a.unknown":     "?",
	}
	s := serve(t, `
    root = "html"
    types = {
      "text/html"                 = ["html", "htm"]
      "text/markdown"             = ["md", ".markdown"]
      "application/manifest+json" = "webmanifest"
    }
    location "/" {}
    location "/only/" {
      types        = {}
      default_type = "application/octet-stream"
    }
    location "/deep/" {
      # A nested context inherits the table of its parent.
    }`, files)
	run(t, s, []check{
		{path: "/a.html", status: 200, hdr: map[string]string{"Content-Type": "text/html"}},
		{path: "/a.md", status: 200, hdr: map[string]string{"Content-Type": "text/markdown"}},
		{path: "/a.MD", status: 200, body: "md upper", hdr: map[string]string{"Content-Type": "text/markdown"}},
		{path: "/a.webmanifest", status: 200, hdr: map[string]string{"Content-Type": "application/manifest+json"}},
		// The server's types replaced the built-in table: css is no longer known.
		{path: "/a.css", status: 200, hdr: map[string]string{"Content-Type": "text/plain"}},
		{path: "/a.unknown", status: 200, hdr: map[string]string{"Content-Type": "text/plain"}},
		{path: "/only/a.png", status: 200, hdr: map[string]string{"Content-Type": "application/octet-stream"}},
		{path: "/deep/a.md", status: 200, hdr: map[string]string{"Content-Type": "text/markdown"}},
	})
	// Without a types directive, nginx's mime.types applies.
	s2 := serve(t, `location "/" { root = "html" }`, map[string]string{
		"html/a.js": "js", "html/a.svg": "svg", "html/a.woff2": "w", "html/a.json": "{}", "html/a.mp4": "v", "html/a.docx": "d",
	})
	run(t, s2, []check{
		{path: "/a.js", status: 200, hdr: map[string]string{"Content-Type": "application/javascript"}},
		{path: "/a.svg", status: 200, hdr: map[string]string{"Content-Type": "image/svg+xml"}},
		{path: "/a.woff2", status: 200, hdr: map[string]string{"Content-Type": "font/woff2"}},
		{path: "/a.json", status: 200, hdr: map[string]string{"Content-Type": "application/json"}},
		{path: "/a.mp4", status: 200, hdr: map[string]string{"Content-Type": "video/mp4"}},
		{path: "/a.docx", status: 200, hdr: map[string]string{"Content-Type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}},
	})
}

func TestVariables(t *testing.T) {
	files := map[string]string{"site/x.txt": "x"}
	s := serve(t, `
    location "/" {
      root   = "html"
      return = { code = 200, body = "${document_root}|${realpath_root}|${request_filename}" }
    }
    location "/dyn/" {
      root   = "sites/${arg.s}"
      return = { code = 200, body = "${document_root}|${request_filename}" }
    }`, files)
	if err := os.Symlink("site", filepath.Join(s.Prefix, "html")); err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(s.Prefix, "site"))
	if err != nil {
		t.Fatal(err)
	}
	p := s.Prefix
	run(t, s, []check{
		{path: "/x.txt", status: 200, body: p + "/html|" + real + "|" + p + "/html/x.txt"},
		{path: "/dyn/y?s=one", status: 200, body: p + "/sites/one|" + p + "/sites/one/dyn/y"},
	})
}

// The root directory itself may be a symbolic link: only links beneath it are checked.
func TestRootIsSymlink(t *testing.T) {
	s := serve(t, `location "/" { root = "current" }`, map[string]string{"releases/2/index.html": "release 2"})
	if err := os.Symlink("releases/2", filepath.Join(s.Prefix, "current")); err != nil {
		t.Fatal(err)
	}
	run(t, s, []check{{path: "/", status: 200, body: "release 2"}})
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ server, want string }{
		{`location "/" { try_files = ["${uri}"] }`, "try_files needs at least one file and a fallback"},
		{`location "/" { try_files = "${uri}" }`, "try_files takes a list"},
		{`location "/" { try_files = ["$uri", "=404"] }`, `"$uri" is nginx's variable syntax; spindle writes it ${uri}`},
		{`location "/" { root = "/srv/$host" }`, `"$host" is nginx's variable syntax`},
		{`location "/" { try_files = ["${uri}", "=4044"] }`, `invalid code "=4044"`},
		{`location "/" { index = [""] }`, "index names must not be empty"},
		{`location "/" { root = "" }`, "root must not be empty"},
		{`location "/" { types = { html = "text" } }`, `"html" is not a MIME type`},
		{`location "/" { types = { "text/html" = ["a b"] } }`, `invalid extension "a b"`},
		{`location "/" { types = ["text/html"] }`, "expected an object"},
		{`location "/" { if_modified_since = "sometimes" }`, `if_modified_since is "off", "exact" or "before"`},
		{`location "/" { max_ranges = -1 }`, "max_ranges must not be negative"},
		{`location "/" { etag = "maybe" }`, "expected a bool"},
		{`location "/" { root = "${nosuchvar}" }`, `unknown variable "nosuchvar"`},
	} {
		cfg := "http {\n  server {\n    listen = [\"127.0.0.1:0\"]\n    " + tc.server + "\n  }\n}\n"
		_, err := testserver.BuildString(t, cfg, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\nerror %v, want %q", tc.server, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), "spindle.hcl:4,") {
			t.Errorf("%s: error not positioned on its line: %v", tc.server, err)
		}
	}
}
