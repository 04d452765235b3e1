package brotli_test

import (
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/brotli"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/gzip"
	_ "github.com/spindle-server/spindle/modules/rewrite"
	_ "github.com/spindle-server/spindle/modules/static"
)

const brConf = `
http {
  server {
    listen = ["127.0.0.1:0"]
    root   = "html"
    gzip              = true
    gzip_vary         = true
    gzip_types        = ["application/json"]
    gzip_disable      = ["^NoGzip/"]
    brotli            = true
    brotli_types      = ["application/json"]
    brotli_comp_level = 4
    brotli_min_length = 100
    location "= /small" {
      default_type = "text/html"
      return       = { code = 200, body = "tiny but longer than gzip's twenty bytes\n" }
    }
    location "= /empty" { return = 204 }
    location "= /sub" {
      brotli = false
      gzip   = false
      echo_location = "/page.html"
    }
    location "/level/" {
      alias             = "html/"
      brotli_comp_level = 11
    }
    location "/gzonly/" {
      alias  = "html/"
      brotli = false
    }
    location "/static/" {
      alias         = "html/"
      brotli        = false
      gzip          = false
      brotli_static = true
      gzip_static   = true
    }
    location "/always/" {
      alias         = "html/"
      brotli        = false
      brotli_static = "always"
    }
  }
}
`

var page = strings.Repeat("<p>spindle compresses this page, a line that repeats.</p>\n", 2000) // 116 KB

func br(s string) string {
	var b bytes.Buffer
	w := brotli.NewWriterLevel(&b, 5)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func gz(s string) string {
	var b bytes.Buffer
	w := stdgzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func unbr(t *testing.T, b string) string {
	t.Helper()
	out, err := io.ReadAll(brotli.NewReader(strings.NewReader(b)))
	if err != nil {
		t.Fatalf("bad brotli stream: %v", err)
	}
	return string(out)
}

func gunzip(t *testing.T, b string) string {
	t.Helper()
	r, err := stdgzip.NewReader(strings.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, _ := io.ReadAll(r)
	return string(out)
}

func start(t *testing.T) *testserver.Server {
	return testserver.Start(t, brConf, testserver.WithFiles(map[string]string{
		"html/page.html":    page,
		"html/page.html.br": br("precompressed br " + page),
		"html/page.html.gz": gz("precompressed gz " + page),
		"html/only.txt.br":  br("only stored compressed\n"),
		"html/image.png":    strings.Repeat("\x89PNG", 1000),
		"html/data.json":    `{"a": "` + strings.Repeat("b", 5000) + `"}`,
	}))
}

func TestBrotliFilter(t *testing.T) {
	s := start(t)
	r := s.Get("/page.html", "Accept-Encoding: gzip, deflate, br")
	if r.Status != 200 || r.Header.Get("Content-Encoding") != "br" || r.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("br: %d %v", r.Status, r.Header)
	}
	if len(r.Body) > len(page)/10 || unbr(t, r.Body) != page {
		t.Errorf("compressed %d bytes to %d, or not the page", len(page), len(r.Body))
	}
	if et := r.Header.Get("ETag"); !strings.HasPrefix(et, `W/"`) || r.Header.Get("Accept-Ranges") != "" {
		t.Errorf("ETag %q (want weak), Accept-Ranges %q (want none)", et, r.Header.Get("Accept-Ranges"))
	}
	if r := s.Get("/level/page.html", "Accept-Encoding: br"); r.Header.Get("Content-Encoding") != "br" || unbr(t, r.Body) != page {
		t.Errorf("level 11: %v", r.Header)
	}
	if r := s.Get("/nothing", "Accept-Encoding: br"); r.Status != 404 || !strings.Contains(unbr(t, r.Body), "404 Not Found") {
		t.Errorf("a 404 page: %d %v", r.Status, r.Header)
	}
	for _, c := range []struct {
		path, ae, why, want string
	}{
		{"/page.html", "gzip", "no br: gzip", "gzip"},
		{"/page.html", "br;q=0, gzip", "br refused: gzip", "gzip"},
		{"/page.html", "br;q=0.1, gzip;q=1", "br preferred whatever the q values, as ngx_brotli", "br"},
		{"/page.html", "*", "* is not br", ""},
		{"/gzonly/page.html", "br, gzip", "brotli off in the location", "gzip"},
		{"/data.json", "br", "a type brotli_types lists", "br"},
		{"/image.png", "br", "a type brotli_types does not list", ""},
		{"/small", "br, gzip", "shorter than brotli_min_length, not gzip_min_length", "gzip"},
	} {
		r := s.Get(c.path, "Accept-Encoding: "+c.ae)
		if got := r.Header.Get("Content-Encoding"); got != c.want {
			t.Errorf("%s, %q (%s): Content-Encoding %q, want %q", c.path, c.ae, c.why, got, c.want)
		}
		if c.want == "br" && unbr(t, r.Body) == "" {
			t.Errorf("%s: empty body", c.path)
		}
	}
}

func TestBrotliLeavesAlone(t *testing.T) {
	s := start(t)
	if r := s.Do("HEAD", "/page.html", "", "Accept-Encoding: br"); r.Header.Get("Content-Encoding") != "" {
		t.Errorf("HEAD got Content-Encoding %q", r.Header.Get("Content-Encoding"))
	}
	if r := s.Get("/empty", "Accept-Encoding: br"); r.Status != 204 || r.Header.Get("Content-Encoding") != "" {
		t.Errorf("204: %d %v", r.Status, r.Header)
	}
	etag := s.Get("/page.html", "Accept-Encoding: br").Header.Get("ETag")
	if r := s.Get("/page.html", "Accept-Encoding: br", "If-None-Match: "+etag); r.Status != 304 || r.Header.Get("Content-Encoding") != "" || r.Body != "" {
		t.Errorf("If-None-Match with the weak ETag: %d %v", r.Status, r.Header)
	}
	if r := s.Get("/page.html", "Accept-Encoding: br", "Range: bytes=0-9"); r.Status != 206 || r.Header.Get("Content-Encoding") != "" || r.Body != page[:10] {
		t.Errorf("Range: %d %v %q (a range of the identity representation)", r.Status, r.Header, r.Body)
	}
	if r := s.Get("/sub", "Accept-Encoding: br"); r.Header.Get("Content-Encoding") != "" || r.Body != page {
		t.Errorf("a subrequest's output was compressed inside an uncompressed response: %d bytes", len(r.Body))
	}
	// The gzip settings judge the client, as ngx_brotli's: gzip_disable, gzip_proxied, HTTP/1.0.
	if r := s.Get("/page.html", "Accept-Encoding: br", "User-Agent: NoGzip/1.0"); r.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip_disable: got %q", r.Header.Get("Content-Encoding"))
	}
	if r := s.Get("/page.html", "Accept-Encoding: br", "Via: 1.1 cache"); r.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip_proxied off: a request through a proxy got %q", r.Header.Get("Content-Encoding"))
	}
	raw := s.Raw("GET /page.html HTTP/1.0\r\nAccept-Encoding: br\r\n\r\n", 5*time.Second)
	if strings.Contains(raw, "\r\nContent-Encoding:") {
		t.Errorf("HTTP/1.0 with gzip_http_version 1.1 got compressed")
	}
}

func TestBrotliStatic(t *testing.T) {
	s := start(t)
	r := s.Get("/static/page.html", "Accept-Encoding: gzip, br")
	if r.Header.Get("Content-Encoding") != "br" || unbr(t, r.Body) != "precompressed br "+page ||
		r.Header.Get("Content-Type") != "text/html" || r.Header.Get("Vary") != "Accept-Encoding" || r.Header.Get("Content-Length") == "" {
		t.Errorf("brotli_static on: %v", r.Header)
	}
	if r := s.Get("/static/page.html", "Accept-Encoding: gzip"); r.Header.Get("Content-Encoding") != "gzip" || gunzip(t, r.Body) != "precompressed gz "+page {
		t.Errorf("brotli_static and gzip_static, a client without br: %v", r.Header)
	}
	if r := s.Get("/static/page.html"); r.Header.Get("Content-Encoding") != "" || r.Body != page || r.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("brotli_static on, no Accept-Encoding: %v", r.Header)
	}
	if r := s.Get("/always/only.txt"); r.Status != 200 || r.Header.Get("Content-Encoding") != "br" || unbr(t, r.Body) != "only stored compressed\n" {
		t.Errorf("brotli_static always: %d %v", r.Status, r.Header)
	}
	if r := s.Get("/static/only.txt"); r.Status != 404 {
		t.Errorf("brotli_static on, a file stored compressed only, no Accept-Encoding: %d", r.Status)
	}
}

func TestBrotliWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed (scripts/test.sh installs it)")
	}
	s := start(t)
	// Debian's curl is built with brotli: --compressed asks for it and decodes it.
	out, err := exec.Command("curl", "-sS", "--max-time", "10", "--compressed", "-D", "-", s.URL("/page.html")).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	head, body, _ := strings.Cut(string(out), "\r\n\r\n")
	if !strings.Contains(head, "Content-Encoding: br") || body != page {
		t.Errorf("curl --compressed: %s\n%d bytes", head, len(body))
	}
}
