package gzip_test

import (
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/gzip"
	_ "github.com/spindle-server/spindle/modules/rewrite"
	_ "github.com/spindle-server/spindle/modules/static"
)

const gzipConf = `
http {
  server {
    listen = ["127.0.0.1:0"]
    root   = "html"
    gzip            = true
    gzip_vary       = true
    gzip_types      = ["application/json"]
    gzip_comp_level = 5
    gzip_buffers    = "16 8k"
    gzip_disable    = ["msie6", "^NoGzip/"]
    location "= /small" {
      default_type = "text/html"
      return       = { code = 200, body = "tiny\n" }
    }
    location "= /json" {
      default_type = "application/json"
      return       = { code = 200, body = "{\"padding\": \"${arg.pad}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}" }
    }
    location "= /empty" { return = { code = 204, body = "" } }
    location "= /sub" {
      gzip = false
      echo_location = "/page.html"
    }
    location "/proxied/" {
      alias        = "html/"
      gzip_proxied = ["any"]
    }
    location "/old/" {
      alias             = "html/"
      gzip_http_version = "1.0"
    }
    location "/static/" {
      alias       = "html/"
      gzip        = false
      gzip_static = true
    }
    location "/always/" {
      alias       = "html/"
      gzip        = false
      gzip_static = "always"
    }
  }
}
`

var page = strings.Repeat("<p>spindle compresses this page, a line that repeats.</p>\n", 2000) // 116 KB

func gz(t *testing.T, s string) []byte {
	var b bytes.Buffer
	w := stdgzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func gunzip(t *testing.T, b string) string {
	t.Helper()
	r, err := stdgzip.NewReader(strings.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("bad gzip stream: %v", err)
	}
	return string(out)
}

func start(t *testing.T) *testserver.Server {
	return testserver.Start(t, gzipConf, testserver.WithFiles(map[string]string{
		"html/page.html":     page,
		"html/page.html.gz":  string(gz(t, "precompressed "+page)),
		"html/only.txt.gz":   string(gz(t, "only stored compressed\n")),
		"html/image.png":     strings.Repeat("\x89PNG", 1000),
		"html/tiny.html":     "tiny",
		"html/data.json":     `{"a": "` + strings.Repeat("b", 5000) + `"}`,
		"html/plain.txt":     strings.Repeat("plain text is not in gzip_types\n", 100),
		"html/notes.html.gz": "not the requested file",
	}))
}

func TestGzipFilter(t *testing.T) {
	s := start(t)
	r := s.Get("/page.html", "Accept-Encoding: gzip, deflate")
	if r.Status != 200 || r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip: %d %v", r.Status, r.Header)
	}
	if len(r.Body) > len(page)/10 || gunzip(t, r.Body) != page {
		t.Errorf("compressed %d bytes to %d, or not the page", len(page), len(r.Body))
	}
	if et := r.Header.Get("ETag"); !strings.HasPrefix(et, `W/"`) || r.Header.Get("Accept-Ranges") != "" {
		t.Errorf("ETag %q (want weak), Accept-Ranges %q (want none)", et, r.Header.Get("Accept-Ranges"))
	}
	plain := s.Get("/page.html")
	if plain.Header.Get("Content-Encoding") != "" || plain.Body != page || plain.Header.Get("Vary") != "Accept-Encoding" ||
		strings.HasPrefix(plain.Header.Get("ETag"), "W/") {
		t.Errorf("without Accept-Encoding: %v, %d bytes", plain.Header, len(plain.Body))
	}
	if r := s.Get("/nothing", "Accept-Encoding: gzip"); r.Status != 404 || !strings.Contains(gunzip(t, r.Body), "404 Not Found") {
		t.Errorf("a 404 page is compressed as nginx's: %d %v", r.Status, r.Header)
	}
	for _, c := range []struct {
		path, ae, why string
		want          bool
	}{
		{"/json?pad=1", "gzip", "a type gzip_types lists", true},
		{"/data.json", "gzip;q=0.5", "a q value", true},
		{"/data.json", "gzip;q=0", "q=0 refuses gzip", false},
		{"/data.json", "identity", "no gzip in Accept-Encoding", false},
		{"/small", "gzip", "shorter than gzip_min_length", false},
		{"/tiny.html", "gzip", "a file shorter than gzip_min_length", false},
		{"/image.png", "gzip", "a type gzip_types does not list", false},
		{"/plain.txt", "gzip", "text/plain is not listed", false},
	} {
		r := s.Get(c.path, "Accept-Encoding: "+c.ae)
		if got := r.Header.Get("Content-Encoding") == "gzip"; got != c.want {
			t.Errorf("%s (%s): compressed %v, want %v", c.path, c.why, got, c.want)
		}
		if c.want && !strings.HasPrefix(gunzip(t, r.Body), "{") {
			t.Errorf("%s: the body does not decompress to JSON", c.path)
		}
	}
}

func TestGzipLeavesAlone(t *testing.T) {
	s := start(t)
	head := s.Do("HEAD", "/page.html", "", "Accept-Encoding: gzip")
	if head.Header.Get("Content-Encoding") != "" {
		t.Errorf("HEAD got Content-Encoding %q", head.Header.Get("Content-Encoding"))
	}
	if r := s.Get("/empty", "Accept-Encoding: gzip"); r.Status != 204 || r.Header.Get("Content-Encoding") != "" {
		t.Errorf("204: %d %v", r.Status, r.Header)
	}
	etag := s.Get("/page.html", "Accept-Encoding: gzip").Header.Get("ETag")
	if r := s.Get("/page.html", "Accept-Encoding: gzip", "If-None-Match: "+etag); r.Status != 304 || r.Header.Get("Content-Encoding") != "" || r.Body != "" {
		t.Errorf("If-None-Match with the weak ETag: %d %v", r.Status, r.Header)
	}
	r := s.Get("/page.html", "Accept-Encoding: gzip", "Range: bytes=0-9")
	if r.Status != 206 || r.Header.Get("Content-Encoding") != "" || r.Body != page[:10] {
		t.Errorf("Range: %d %v %q (a range of the identity representation)", r.Status, r.Header, r.Body)
	}
	if r := s.Get("/sub", "Accept-Encoding: gzip"); r.Header.Get("Content-Encoding") != "" || r.Body != page {
		t.Errorf("a subrequest's output was compressed inside an uncompressed response: %d bytes", len(r.Body))
	}
	for _, ua := range []string{"NoGzip/1.0", "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.0)"} {
		if r := s.Get("/page.html", "Accept-Encoding: gzip", "User-Agent: "+ua); r.Header.Get("Content-Encoding") != "" {
			t.Errorf("gzip_disable: %q got gzip", ua)
		}
	}
	if r := s.Get("/page.html", "Accept-Encoding: gzip", "Via: 1.1 cache"); r.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip_proxied off: a request through a proxy got gzip")
	}
	if r := s.Get("/proxied/page.html", "Accept-Encoding: gzip", "Via: 1.1 cache"); r.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("gzip_proxied any: a request through a proxy got no gzip")
	}
	// HTTP/1.0: gzip_http_version 1.1 (the default) refuses it.
	for path, want := range map[string]bool{"/page.html": false, "/old/page.html": true} {
		raw := s.Raw("GET "+path+" HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n", 5*time.Second)
		if got := strings.Contains(raw, "\r\nContent-Encoding: gzip\r\n"); got != want {
			t.Errorf("HTTP/1.0 %s: gzip %v, want %v", path, got, want)
		}
	}
}

func TestGzipStatic(t *testing.T) {
	s := start(t)
	r := s.Get("/static/page.html", "Accept-Encoding: gzip")
	if r.Header.Get("Content-Encoding") != "gzip" || gunzip(t, r.Body) != "precompressed "+page ||
		r.Header.Get("Content-Type") != "text/html" || r.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("gzip_static on: %v", r.Header)
	}
	if r := s.Get("/static/page.html"); r.Header.Get("Content-Encoding") != "" || r.Body != page || r.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("gzip_static on, no Accept-Encoding: %v", r.Header)
	}
	if r := s.Get("/static/plain.txt", "Accept-Encoding: gzip"); r.Header.Get("Content-Encoding") != "" || r.Header.Get("Vary") != "" {
		t.Errorf("gzip_static on, no .gz file: %v", r.Header)
	}
	if r := s.Get("/always/only.txt"); r.Status != 200 || r.Header.Get("Content-Encoding") != "gzip" || gunzip(t, r.Body) != "only stored compressed\n" {
		t.Errorf("gzip_static always: %d %v", r.Status, r.Header)
	}
	if r := s.Get("/static/only.txt", "Accept-Encoding: gzip"); r.Status != 200 || r.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("gzip_static on, a file stored compressed only: %d", r.Status)
	}
	if r := s.Get("/static/only.txt"); r.Status != 404 {
		t.Errorf("gzip_static on, a file stored compressed only, no Accept-Encoding: %d", r.Status)
	}
}

func TestGzipWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed (scripts/test.sh installs it)")
	}
	s := start(t)
	out, err := exec.Command("curl", "-sS", "--max-time", "10", "--compressed", "-D", "-", s.URL("/page.html")).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	head, body, _ := strings.Cut(string(out), "\r\n\r\n")
	if !strings.Contains(head, "Content-Encoding: gzip") || body != page {
		t.Errorf("curl --compressed: %s\n%d bytes", head, len(body))
	}
}
