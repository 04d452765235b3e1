package static_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/testserver"
)

func TestAlias(t *testing.T) {
	files := map[string]string{
		"data/images/a.png":        "a",
		"data/images/sub/b.png":    "b",
		"data/images/index.html":   "images index",
		"data/imagesc.png":         "glued",
		"data/icons/favicon.ico":   "icon",
		"data/thumbs/42/small.jpg": "thumb 42",
		"data/docs/guide.txt":      "guide",
		"data/docs/index.html":     "docs index",
	}
	s := serve(t, `
    location "/img/" {
      alias = "data/images/"
      location "~ \\.png$" {
        etag = false
      }
    }
    location "/glue/" {
      alias = "data/images"
    }
    location "= /favicon.ico" {
      alias = "data/icons/favicon.ico"
    }
    location "~ ^/thumb/(\\d+)/(.+)$" {
      alias = "data/thumbs/${re[1]}/${re[2]}"
    }
    location "~ ^/docs/(.*)$" {
      alias = "data/docs/${re[1]}"
    }
    location "/rel" {
      alias = "data/images/"
    }
    location "/vars/" {
      alias  = "data/docs/"
      return = { code = 200, body = "${document_root}|${request_filename}" }
    }
    location "~ ^/rvars/(.*)$" {
      alias  = "data/${re[1]}"
      return = { code = 200, body = "${document_root}|${request_filename}" }
    }`, files)
	host := s.Addr
	p := s.Prefix
	run(t, s, []check{
		// A nested location inherits the alias, with its parent's prefix.
		{path: "/img/a.png", status: 200, body: "a", hdr: map[string]string{"ETag": "", "Content-Type": "image/png"}},
		{path: "/img/sub/b.png", status: 200, body: "b"},
		{path: "/img/", status: 200, body: "images index"},
		{path: "/img/sub", status: 301, hdr: map[string]string{"Location": "http://" + host + "/img/sub/"}},
		{path: "/img/missing.png", status: 404},
		// As nginx: the alias replaces the prefix, slash or not.
		{path: "/glue/c.png", status: 200, body: "glued"},
		{path: "/rel/a.png", status: 200, body: "a"},
		{path: "/favicon.ico", status: 200, body: "icon", hdr: map[string]string{"Content-Type": "image/x-icon"}},
		{path: "/thumb/42/small.jpg", status: 200, body: "thumb 42", hdr: map[string]string{"Content-Type": "image/jpeg"}},
		{path: "/thumb/43/small.jpg", status: 404},
		{path: "/docs/guide.txt", status: 200, body: "guide"},
		{path: "/docs/", status: 200, body: "docs index"},
		{path: "/vars/x/y.txt", status: 200, body: p + "/data/docs/|" + p + "/data/docs/x/y.txt"},
		{path: "/rvars/q.txt", status: 200, body: p + "/data/q.txt|" + p + "/data/q.txt"},
	})
}

func TestAliasErrors(t *testing.T) {
	for _, tc := range []struct{ server, want string }{
		{`location "/a/" {
        root  = "html"
        alias = "data/"
      }`, "alias is a duplicate: root was set in this location already"},
		{`location "/a/" {
        alias = "data/"
        root  = "html"
      }`, "root is a duplicate: alias was set in this location already"},
		{`location "@named" { alias = "data/" }`, `alias cannot be used inside the named location "@named"`},
		{`alias = "data/"`, `"alias" is not allowed in server context`},
	} {
		cfg := "http {\n  server {\n    listen = [\"127.0.0.1:0\"]\n    " + tc.server + "\n  }\n}\n"
		_, err := testserver.BuildString(t, cfg, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\nerror %v, want %q", tc.server, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), filepath.Join("conf", "spindle.hcl")+":") {
			t.Errorf("error without a position: %v", err)
		}
	}
}
