package static_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/rewrite"
	_ "github.com/spindle-server/spindle/modules/static"
)

// serve starts a server whose body (listen aside) is server, with files under the
// prefix.
func serve(t *testing.T, server string, files map[string]string) *testserver.Server {
	t.Helper()
	cfg := "http {\n  server {\n    listen = [\"127.0.0.1:0\"]\n" + server + "\n  }\n}\n"
	return testserver.Start(t, cfg, testserver.WithFiles(files))
}

// mtime is the modification time the tests give their files.
var mtime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func touch(t *testing.T, s *testserver.Server, files map[string]string) {
	t.Helper()
	for name := range files {
		if err := os.Chtimes(filepath.Join(s.Prefix, name), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func etagOf(size int) string { return fmt.Sprintf(`"%x-%x"`, mtime.Unix(), size) }

type check struct {
	method  string
	path    string
	headers []string
	status  int
	body    string            // exact body, unless "" and noBody is false (not checked)
	hdr     map[string]string // expected response headers ("" = absent)
	noBody  bool              // the body must be empty
	contain string            // the body must contain this
}

func run(t *testing.T, s *testserver.Server, cases []check) {
	t.Helper()
	for _, c := range cases {
		m := c.method
		if m == "" {
			m = "GET"
		}
		name := m + " " + c.path
		if len(c.headers) > 0 {
			name += " " + strings.Join(c.headers, "; ")
		}
		t.Run(name, func(t *testing.T) {
			resp := s.Do(m, c.path, "", c.headers...)
			if resp.Status != c.status {
				t.Fatalf("status %d, want %d; body %q", resp.Status, c.status, resp.Body)
			}
			if c.body != "" && resp.Body != c.body {
				t.Errorf("body %q, want %q", resp.Body, c.body)
			}
			if c.noBody && resp.Body != "" {
				t.Errorf("body %q, want none", resp.Body)
			}
			if c.contain != "" && !strings.Contains(resp.Body, c.contain) {
				t.Errorf("body %q does not contain %q", resp.Body, c.contain)
			}
			for k, want := range c.hdr {
				got, present := resp.Header.Get(k), len(resp.Header.Values(k)) > 0
				if want == "" && present {
					t.Errorf("header %s: %q, want none", k, got)
				} else if want != "" && got != want {
					t.Errorf("header %s: %q, want %q", k, got, want)
				}
			}
		})
	}
}

var siteFiles = map[string]string{
	"html/index.html":          "<h1>home</h1>\n",
	"html/a.txt":               "0123456789",
	"html/empty.txt":           "",
	"html/style/site.css":      "body{}",
	"html/PHOTO.PNG":           "png",
	"html/archive.tar.gz":      "gz",
	"html/noext":               "raw",
	"html/.htaccess":           "hidden",
	"html/dir/index.html":      "dir index",
	"html/bare/file.txt":       "x",
	"html/with space.txt":      "spaced",
	"html/sp ace/index.html":   "spaced dir",
	"html/idx/index.htm":       "htm index",
	"html/idxdir/index.html/x": "index.html is a directory here",
}

func TestServeFiles(t *testing.T) {
	s := serve(t, `
    default_type = "application/octet-stream"
    location "/" {
      root = "html"
    }
    location "/idx/" {
      root  = "html"
      index = ["missing.html", "index.htm"]
    }`, siteFiles)
	touch(t, s, siteFiles)
	host := s.Addr
	run(t, s, []check{
		{path: "/", status: 200, body: "<h1>home</h1>\n", hdr: map[string]string{"Content-Type": "text/html"}},
		{path: "/a.txt", status: 200, body: "0123456789", hdr: map[string]string{
			"Content-Type": "text/plain", "Content-Length": "10", "Last-Modified": "Tue, 02 Jan 2024 03:04:05 GMT",
			"ETag": etagOf(10), "Accept-Ranges": "bytes"}},
		{method: "HEAD", path: "/a.txt", status: 200, noBody: true, hdr: map[string]string{"Content-Length": "10", "ETag": etagOf(10)}},
		{path: "/empty.txt", status: 200, noBody: true, hdr: map[string]string{"Content-Length": "0"}},
		{path: "/style/site.css", status: 200, body: "body{}", hdr: map[string]string{"Content-Type": "text/css"}},
		{path: "/PHOTO.PNG", status: 200, hdr: map[string]string{"Content-Type": "image/png"}},
		{path: "/archive.tar.gz", status: 200, hdr: map[string]string{"Content-Type": "application/octet-stream"}},
		{path: "/noext", status: 200, body: "raw", hdr: map[string]string{"Content-Type": "application/octet-stream"}},
		{path: "/.htaccess", status: 200, body: "hidden"},
		{path: "/with%20space.txt", status: 200, body: "spaced"},
		{path: "/a.txt?v=1", status: 200, body: "0123456789"},
		{path: "/missing.txt", status: 404, hdr: map[string]string{"ETag": "", "Last-Modified": ""}},
		{path: "/a.txt/x", status: 404},
		{path: "/dir", status: 301, hdr: map[string]string{"Location": "http://" + host + "/dir/"}},
		{path: "/dir?x=1&y=2", status: 301, hdr: map[string]string{"Location": "http://" + host + "/dir/?x=1&y=2"}},
		{path: "/sp%20ace", status: 301, hdr: map[string]string{"Location": "http://" + host + "/sp%20ace/"}},
		{path: "/sp%20ace/", status: 200, body: "spaced dir"},
		{path: "/dir/", status: 200, body: "dir index"},
		{path: "/bare/", status: 403},
		{path: "/nodir/", status: 404},
		{path: "/a.txt/", status: 404},
		{path: "/idx/", status: 200, body: "htm index"},
		{path: "/idxdir/", status: 403},
		{method: "POST", path: "/a.txt", status: 405},
		{method: "POST", path: "/missing.txt", status: 404},
		{method: "PUT", path: "/a.txt", status: 405},
		{method: "DELETE", path: "/", status: 405},
		{method: "POST", path: "/dir/", status: 405},
	})
	if log := s.ErrorLog(); !strings.Contains(log, `open() "`+filepath.Join(s.Prefix, "html/missing.txt")+`" failed (2: No such file or directory)`) {
		t.Errorf("error log lacks nginx's open() failure line:\n%s", log)
	}
}

// A URI whose decoded form holds CR and LF must not split the redirect's header.
func TestDirectoryRedirectEscapes(t *testing.T) {
	files := map[string]string{"html/a\r\nb/x": "x", "html/é/x": "x"}
	s := serve(t, `location "/" { root = "html" }`, files)
	raw := s.Raw("GET /a%0D%0Ab HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 5*time.Second)
	resps, _, err := testserver.ReadResponses(raw)
	if err != nil || len(resps) != 1 {
		t.Fatalf("responses: %v\n%s", err, raw)
	}
	_, port, _ := strings.Cut(s.Addr, ":")
	if got := resps[0].Header.Get("Location"); resps[0].StatusCode != 301 || got != "http://h:"+port+"/a%0D%0Ab/" {
		t.Fatalf("status %d Location %q\n%s", resps[0].StatusCode, got, raw)
	}
	if r := s.Get("/%C3%A9"); r.Status != 301 || !strings.HasSuffix(r.Header.Get("Location"), "/%C3%A9/") {
		t.Fatalf("status %d Location %q", r.Status, r.Header.Get("Location"))
	}
}

func TestIndex(t *testing.T) {
	files := map[string]string{
		"html/a/index.html":  "a index",
		"html/b/second.html": "second",
		"html/c/x":           "no index",
		"html/fallback.txt":  "fallback",
		"html/d/en.html":     "english",
		"html/e/index.html":  "e index",
	}
	s := serve(t, `
    location "/" {
      root  = "html"
      index = ["index.html", "second.html"]
    }
    location "/c/" {
      root  = "html"
      index = ["missing.html", "/fallback.txt"]
    }
    location "/d/" {
      root  = "html"
      index = ["${arg.lang}.html", "index.html"]
    }
    location "= /e/index.html" {
      return = { code = 200, body = "redirected to ${uri}\n" }
    }`, files)
	run(t, s, []check{
		{path: "/a/", status: 200, body: "a index"},
		{path: "/b/", status: 200, body: "second"},
		{path: "/c/", status: 200, body: "fallback"},
		{path: "/d/?lang=en", status: 200, body: "english"},
		{path: "/d/", status: 403},
		// The index is an internal redirect: locations see the new URI.
		{path: "/e/", status: 200, body: "redirected to /e/index.html\n"},
		{method: "HEAD", path: "/a/", status: 200, noBody: true, hdr: map[string]string{"Content-Length": "7"}},
	})
}

func TestAutoindex(t *testing.T) {
	files := map[string]string{
		"html/list/b.txt":                      "bb",
		"html/list/a.txt":                      "a",
		"html/list/zdir/x":                     "x",
		"html/list/.secret":                    "s",
		"html/list/a&b <c>.txt":                "escaped",
		"html/list/" + strings.Repeat("n", 60): "long",
	}
	s := serve(t, `
    location "/" {
      root      = "html"
      autoindex = true
    }`, files)
	touch(t, s, map[string]string{"html/list/a.txt": "", "html/list/zdir": ""})
	r := s.Get("/list/")
	if r.Status != 200 || r.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("status %d type %q", r.Status, r.Header.Get("Content-Type"))
	}
	want := []string{
		"<html>\r\n<head><title>Index of /list/</title></head>\r\n<body>\r\n<h1>Index of /list/</h1><hr><pre><a href=\"../\">../</a>\r\n",
		"<a href=\"zdir/\">zdir/</a>" + strings.Repeat(" ", 46) + "02-Jan-2024 03:04                   -\r\n",
		"<a href=\"a.txt\">a.txt</a>" + strings.Repeat(" ", 46) + "02-Jan-2024 03:04                   1\r\n",
		"<a href=\"a&amp;b%20%3Cc%3E.txt\">a&amp;b &lt;c&gt;.txt</a>",
		strings.Repeat("n", 47) + "..&gt;</a> ",
		"</pre><hr></body>\r\n</html>\r\n",
	}
	for _, w := range want {
		if !strings.Contains(r.Body, w) {
			t.Errorf("listing lacks %q:\n%s", w, r.Body)
		}
	}
	if strings.Contains(r.Body, "secret") {
		t.Errorf("listing shows a hidden file:\n%s", r.Body)
	}
	if strings.Index(r.Body, "zdir/") > strings.Index(r.Body, "a.txt") {
		t.Errorf("directories are not listed first:\n%s", r.Body)
	}
	if r := s.Get("/nolist/"); r.Status != 404 {
		t.Errorf("missing directory: %d", r.Status)
	}
}

func TestTryFiles(t *testing.T) {
	files := map[string]string{
		"html/page.html":       "page",
		"html/dir/index.html":  "dir index",
		"html/app.html":        "app",
		"html/nested/file.txt": "nested",
		"html/dironly/sub/a":   "a",
		"html/dironly/file":    "a file",
		"data/alias/file.txt":  "aliased",
		"html/iftry/f.txt":     "from html",
		"other/iftry/g.txt":    "from other",
		"data/rx/a.txt":        "regex alias",
	}
	s := serve(t, `
    root = "html"
    location "/" {
      try_files = ["${uri}", "${uri}/", "/app.html"]
      location "/nested/" {}
    }
    location "/code/" {
      try_files = ["${uri}", "=418"]
    }
    location "/named/" {
      try_files = ["${uri}", "@fallback"]
    }
    location "@fallback" {
      return = { code = 200, body = "named ${uri} ${args}\n" }
    }
    location "/args/" {
      try_files = ["${uri}", "/echo?from=${uri}"]
    }
    location "/noargs/" {
      try_files = ["${uri}", "/echo"]
    }
    location "= /echo" {
      return = { code = 200, body = "echo ${uri} ${args}\n" }
    }
    location "/dironly/" {
      try_files = ["${uri}/", "=404"]
    }
    location "/al/" {
      alias     = "data/alias/"
      try_files = ["${uri}", "=404"]
    }
    location "~ ^/rx/" {
      # In a regex location the element is appended to the alias, and the URI it
      # becomes is appended to the alias from then on (nginx's semantics).
      alias     = "data/rx"
      try_files = ["/a.txt", "=404"]
    }
    location "/iftry/" {
      try_files = ["${uri}", "=410"]
      if {
        cond = arg.other == "1"
        root = "other"
      }
    }`, files)
	run(t, s, []check{
		{path: "/page.html", status: 200, body: "page"},
		{path: "/dir", status: 200, body: "dir index"}, // "${uri}/" found: the URI becomes /dir/
		{path: "/nothing", status: 200, body: "app"},
		// try_files belongs to the location that writes it, not to nested ones.
		{path: "/nested/file.txt", status: 200, body: "nested"},
		{path: "/nested/none", status: 404},
		{path: "/code/none", status: 418},
		{path: "/named/none?a=1", status: 200, body: "named /named/none a=1\n"},
		{path: "/args/none?a=1", status: 200, body: "echo /echo from=/args/none\n"},
		// A fallback without "?" drops the query string, as nginx's.
		{path: "/noargs/none?a=1", status: 200, body: "echo /echo \n"},
		{path: "/dironly/sub", status: 403}, // a directory without an index
		{path: "/dironly/file", status: 404},
		{path: "/al/file.txt", status: 200, body: "aliased"},
		{path: "/al/none", status: 404},
		{path: "/rx/anything", status: 200, body: "regex alias"},
		{path: "/iftry/f.txt", status: 200, body: "from html"},
		{path: "/iftry/g.txt?other=1", status: 200, body: "from other"},
		{path: "/iftry/f.txt?other=1", status: 410},
	})
}

// A server's own try_files and root serve the requests no location matches.
func TestServerContext(t *testing.T) {
	files := map[string]string{
		"html/file.txt":     "file",
		"html/fallback.txt": "fallback",
	}
	s := serve(t, `
    root      = "html"
    try_files = ["${uri}", "/fallback.txt"]
    location "/loc/" {
      return = { code = 200, body = "loc\n" }
    }`, files)
	run(t, s, []check{
		{path: "/file.txt", status: 200, body: "file"},
		{path: "/none", status: 200, body: "fallback"},
		{path: "/loc/x", status: 200, body: "loc\n"},
	})
	s2 := serve(t, `root = "html"`, files)
	run(t, s2, []check{
		{path: "/file.txt", status: 200, body: "file"},
		{path: "/none", status: 404},
	})
}
