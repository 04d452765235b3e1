package subfilter_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/echo"
	_ "github.com/spindle-server/spindle/modules/static"
	_ "github.com/spindle-server/spindle/modules/subfilter"
)

// nginx's documented example, on static files.
const subConf = `
http {
  server {
    listen = ["127.0.0.1:0"]
    root   = "html"
    location "/" {
      sub_filter = {
        "<a href=\"http://127.0.0.1:8080/"  = "<a href=\"https://${host}/"
        "<img src=\"http://127.0.0.1:8080/" = "<img src=\"https://${host}/"
      }
      sub_filter_once = true
    }
    location "/all/" {
      sub_filter      = { "http://127.0.0.1:8080/" = "/" }
      sub_filter_once = false
      sub_filter_types = ["text/plain", "application/json"]
    }
    location "/keep/" {
      sub_filter               = { "old" = "new" }
      sub_filter_last_modified = true
    }
    location "/var/" {
      sub_filter = { "${arg.find}" = "[${arg.with}]" }
      sub_filter_once = false
    }
    location "/any/" {
      sub_filter       = { "a" = "b" }
      sub_filter_types = ["*"]
      sub_filter_once  = false
    }
  }
}
`

const page = `<html><body>
<a href="http://127.0.0.1:8080/one">one</a> <A HREF="http://127.0.0.1:8080/two">two</A>
<img src="http://127.0.0.1:8080/i.png"> <img src="http://127.0.0.1:8080/j.png">
</body></html>
`

func files() map[string]string {
	return map[string]string{
		"html/index.html":     page,
		"html/all/page.html":  page,
		"html/all/note.txt":   "see http://127.0.0.1:8080/a and http://127.0.0.1:8080/b\n",
		"html/all/data.json":  `{"u":"http://127.0.0.1:8080/x"}`,
		"html/all/style.css":  "a{background:url(http://127.0.0.1:8080/bg.png)}",
		"html/keep/page.html": "old old\n",
		"html/var/page.html":  "find me, find you\n",
		"html/any/file.bin":   "aaa",
	}
}

func TestSubFilterOnce(t *testing.T) {
	s := testserver.Start(t, subConf, testserver.WithFiles(files()))
	r := s.Get("/index.html", "Host: example.com")
	want := `<html><body>
<a href="https://example.com/one">one</a> <A HREF="http://127.0.0.1:8080/two">two</A>
<img src="https://example.com/i.png"> <img src="http://127.0.0.1:8080/j.png">
</body></html>
`
	if r.Status != 200 || r.Body != want {
		t.Errorf("%d\n%s", r.Status, r.Body)
	}
	// The body changed: the file's Content-Length (the core counts the filtered body
	// when it is whole), Last-Modified and ETag do not apply.
	if cl := r.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(r.Body)) {
		t.Errorf("Content-Length %s for %d bytes", cl, len(r.Body))
	}
	// A byte range of the file is not one of the filtered body: the answer is whole.
	if r := s.Get("/index.html", "Host: example.com", "Range: bytes=0-9"); r.Status != 200 || r.Body != want {
		t.Errorf("Range: %d %q", r.Status, r.Body)
	}
	for _, h := range []string{"Last-Modified", "ETag", "Accept-Ranges"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("%s: %q", h, v)
		}
	}
}

func TestSubFilterAllAndTypes(t *testing.T) {
	s := testserver.Start(t, subConf, testserver.WithFiles(files()))
	// Case does not matter for matching: <A HREF= is replaced too.
	if r := s.Get("/all/page.html"); strings.Contains(r.Body, "127.0.0.1:8080") || !strings.Contains(r.Body, `<A HREF="/two">`) {
		t.Errorf("html: %s", r.Body)
	}
	if r := s.Get("/all/note.txt"); r.Body != "see /a and /b\n" {
		t.Errorf("text/plain: %q", r.Body)
	}
	if r := s.Get("/all/data.json"); r.Body != `{"u":"/x"}` {
		t.Errorf("json: %q", r.Body)
	}
	// text/css is not in sub_filter_types: untouched, Content-Length kept.
	if r := s.Get("/all/style.css"); !strings.Contains(r.Body, "127.0.0.1:8080") || r.Header.Get("Content-Length") == "" {
		t.Errorf("css: %q %v", r.Body, r.Header)
	}
	if r := s.Get("/any/file.bin"); r.Body != "bbb" {
		t.Errorf("*: %q", r.Body)
	}
}

func TestSubFilterLastModifiedAndVariables(t *testing.T) {
	s := testserver.Start(t, subConf, testserver.WithFiles(files()))
	r := s.Get("/keep/page.html")
	if r.Body != "new old\n" || r.Header.Get("Last-Modified") == "" || !strings.HasPrefix(r.Header.Get("ETag"), `W/"`) {
		t.Errorf("%q %v", r.Body, r.Header)
	}
	if r := s.Get("/var/page.html?find=find&with=FOUND"); r.Body != "[FOUND] me, [FOUND] you\n" {
		t.Errorf("variables: %q", r.Body)
	}
	// A string that evaluates to nothing replaces nothing.
	if r := s.Get("/var/page.html"); r.Body != "find me, find you\n" {
		t.Errorf("empty string: %q", r.Body)
	}
}

// A file larger than the 64 KB pieces a file is read in, with matches straddling every
// piece boundary, through the spindle binary.
func TestSubFilterAcrossBuffersE2E(t *testing.T) {
	var b strings.Builder
	b.WriteString("<html>")
	for b.Len() < 300<<10 {
		pad := 65536 - b.Len()%65536 - 5 // the match starts 5 bytes before a boundary
		if pad < 0 {
			pad += 65536
		}
		b.WriteString(strings.Repeat("x", pad))
		b.WriteString("http://127.0.0.1:8080/")
	}
	body := b.String()
	conf := strings.Replace(subConf, `"127.0.0.1:0"`, `"127.0.0.1:{{PORT}}"`, 1)
	inst := e2e.Start(t, conf, &e2e.Options{Files: map[string]string{"html/all/big.html": body}})
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get("http://" + inst.Addr() + "/all/big.html")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := strings.ReplaceAll(body, "http://127.0.0.1:8080/", "/")
	if n := strings.Count(body, "http://127.0.0.1:8080/"); n < 4 {
		t.Fatalf("only %d matches in the file", n)
	}
	if string(got) != want {
		t.Errorf("%d bytes, want %d; %d matches left", len(got), len(want), strings.Count(string(got), "127.0.0.1:8080"))
	}
}

func TestSubFilterConfigErrors(t *testing.T) {
	for _, c := range []struct{ conf, want string }{
		{`sub_filter = "a"`, "sub_filter is an object"},
		{`sub_filter = { "" = "x" }`, "conf/spindle.hcl:2,16: sub_filter: the string to match is empty"},
		{`sub_filter = {}`, "at least one"},
		{`sub_filter = { "${nosuch}" = "x" }`, `unknown variable "nosuch"`},
	} {
		_, err := testserver.BuildString(t, "http {\n"+c.conf+"\n}\n", nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.conf, err, c.want)
		}
	}
}
