package static_test

import (
	"io"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
)

const lastMod = "Tue, 02 Jan 2024 03:04:05 GMT"

var condFiles = map[string]string{
	"html/f.txt":        "0123456789abcdefghij", // 20 bytes
	"html/noetag/f.txt": "0123456789",
	"html/off/f.txt":    "0123456789",
	"html/before/f.txt": "0123456789",
	"html/one/f.txt":    "0123456789",
	"html/none/f.txt":   "0123456789",
	"html/empty.txt":    "",
}

func condServer(t *testing.T) *testserver.Server {
	s := serve(t, `
    root = "html"
    location "/" {}
    location "/noetag/" { etag = false }
    location "/off/" { if_modified_since = "off" }
    location "/before/" { if_modified_since = "before" }
    location "/one/" { max_ranges = 1 }
    location "/none/" { max_ranges = 0 }
    location "= /sub" { echo_location = "/f.txt" }`, condFiles)
	touch(t, s, condFiles)
	return s
}

func TestConditionalRequests(t *testing.T) {
	s := condServer(t)
	etag := etagOf(20)
	older := mtime.Add(-time.Hour).Format("Mon, 02 Jan 2006 15:04:05 GMT")
	newer := mtime.Add(time.Hour).Format("Mon, 02 Jan 2006 15:04:05 GMT")
	notModified := map[string]string{"ETag": etag, "Last-Modified": lastMod, "Content-Length": "", "Accept-Ranges": "", "Content-Type": ""}
	run(t, s, []check{
		{path: "/f.txt", headers: []string{"If-None-Match: " + etag}, status: 304, noBody: true, hdr: notModified},
		{path: "/f.txt", headers: []string{"If-None-Match: W/" + etag}, status: 304, noBody: true},
		{path: "/f.txt", headers: []string{`If-None-Match: "x", ` + etag + `, "y"`}, status: 304},
		{path: "/f.txt", headers: []string{"If-None-Match: *"}, status: 304},
		{path: "/f.txt", headers: []string{`If-None-Match: "other"`}, status: 200, body: condFiles["html/f.txt"]},
		{method: "HEAD", path: "/f.txt", headers: []string{"If-None-Match: " + etag}, status: 304, noBody: true},
		{path: "/f.txt", headers: []string{"If-Modified-Since: " + lastMod}, status: 304, noBody: true},
		{path: "/f.txt", headers: []string{"If-Modified-Since: " + older}, status: 200},
		{path: "/f.txt", headers: []string{"If-Modified-Since: " + newer}, status: 200}, // exact: only the same date
		{path: "/f.txt", headers: []string{"If-Modified-Since: Tuesday, 02-Jan-24 03:04:05 GMT"}, status: 304},
		{path: "/f.txt", headers: []string{"If-Modified-Since: Tue Jan  2 03:04:05 2024"}, status: 304},
		{path: "/f.txt", headers: []string{"If-Modified-Since: yesterday"}, status: 200},
		{path: "/before/f.txt", headers: []string{"If-Modified-Since: " + newer}, status: 304},
		{path: "/before/f.txt", headers: []string{"If-Modified-Since: " + older}, status: 200},
		{path: "/off/f.txt", headers: []string{"If-Modified-Since: " + lastMod}, status: 200},
		// Both present: both must agree.
		{path: "/f.txt", headers: []string{"If-None-Match: " + etag, "If-Modified-Since: " + older}, status: 200},
		{path: "/f.txt", headers: []string{`If-None-Match: "other"`, "If-Modified-Since: " + lastMod}, status: 200},
		{path: "/f.txt", headers: []string{"If-None-Match: " + etag, "If-Modified-Since: " + lastMod}, status: 304},
		{path: "/f.txt", headers: []string{"If-Match: " + etag}, status: 200},
		{path: "/f.txt", headers: []string{"If-Match: *"}, status: 200},
		{path: "/f.txt", headers: []string{`If-Match: "other"`}, status: 412, hdr: map[string]string{"ETag": ""}},
		{path: "/f.txt", headers: []string{"If-Match: W/" + etag}, status: 412}, // If-Match compares strongly
		{path: "/f.txt", headers: []string{"If-Unmodified-Since: " + lastMod}, status: 200},
		{path: "/f.txt", headers: []string{"If-Unmodified-Since: " + older}, status: 412},
		{path: "/noetag/f.txt", status: 200, hdr: map[string]string{"ETag": "", "Last-Modified": lastMod}},
		{path: "/noetag/f.txt", headers: []string{"If-None-Match: *"}, status: 200},
		{path: "/noetag/f.txt", headers: []string{"If-Match: *"}, status: 412},
		// Subrequests are not conditional: their output goes to their parent.
		{path: "/sub", headers: []string{"If-None-Match: " + etag}, status: 200, body: condFiles["html/f.txt"]},
	})
}

func TestRanges(t *testing.T) {
	s := condServer(t)
	body := condFiles["html/f.txt"]
	etag := etagOf(20)
	run(t, s, []check{
		{path: "/f.txt", headers: []string{"Range: bytes=0-4"}, status: 206, body: "01234",
			hdr: map[string]string{"Content-Range": "bytes 0-4/20", "Content-Length": "5", "Content-Type": "text/plain", "Accept-Ranges": "", "ETag": etag}},
		{path: "/f.txt", headers: []string{"Range: bytes=15-"}, status: 206, body: "fghij", hdr: map[string]string{"Content-Range": "bytes 15-19/20"}},
		{path: "/f.txt", headers: []string{"Range: bytes=-3"}, status: 206, body: "hij", hdr: map[string]string{"Content-Range": "bytes 17-19/20"}},
		{path: "/f.txt", headers: []string{"Range: bytes=-30"}, status: 206, body: body, hdr: map[string]string{"Content-Range": "bytes 0-19/20"}},
		{path: "/f.txt", headers: []string{"Range: bytes=18-100"}, status: 206, body: "ij", hdr: map[string]string{"Content-Range": "bytes 18-19/20"}},
		{path: "/f.txt", headers: []string{"Range: bytes= 2 - 3"}, status: 206, body: "23"},
		{path: "/f.txt", headers: []string{"Range: BYTES=0-0"}, status: 206, body: "0"},
		{method: "HEAD", path: "/f.txt", headers: []string{"Range: bytes=0-4"}, status: 206, noBody: true,
			hdr: map[string]string{"Content-Range": "bytes 0-4/20", "Content-Length": "5"}},
		{path: "/f.txt", headers: []string{"Range: bytes=20-"}, status: 416, hdr: map[string]string{"Content-Range": "bytes */20", "ETag": ""}},
		{path: "/f.txt", headers: []string{"Range: bytes=5-3"}, status: 416},
		{path: "/f.txt", headers: []string{"Range: bytes=abc"}, status: 416},
		{path: "/f.txt", headers: []string{"Range: bytes=1-2;"}, status: 416},
		{path: "/f.txt", headers: []string{"Range: bytes=99999999999999999999-"}, status: 416},
		{path: "/empty.txt", headers: []string{"Range: bytes=0-"}, status: 200, noBody: true},
		{path: "/empty.txt", headers: []string{"Range: bytes=1-2"}, status: 416, hdr: map[string]string{"Content-Range": "bytes */0"}},
		// Not bytes, or ranges adding up to more than the file: the whole file.
		{path: "/f.txt", headers: []string{"Range: items=0-4"}, status: 200, body: body, hdr: map[string]string{"Accept-Ranges": "bytes"}},
		{path: "/f.txt", headers: []string{"Range: bytes=0-15,5-19"}, status: 200, body: body},
		{path: "/one/f.txt", headers: []string{"Range: bytes=0-1,4-5"}, status: 200, body: "0123456789"},
		{path: "/one/f.txt", headers: []string{"Range: bytes=0-1"}, status: 206, body: "01"},
		{path: "/none/f.txt", headers: []string{"Range: bytes=0-1"}, status: 200, body: "0123456789", hdr: map[string]string{"Accept-Ranges": ""}},
		// If-Range: the range applies only if the file is the one the client has.
		{path: "/f.txt", headers: []string{"Range: bytes=0-1", "If-Range: " + etag}, status: 206, body: "01"},
		{path: "/f.txt", headers: []string{"Range: bytes=0-1", `If-Range: "old"`}, status: 200, body: body},
		{path: "/f.txt", headers: []string{"Range: bytes=0-1", "If-Range: " + lastMod}, status: 206, body: "01"},
		{path: "/f.txt", headers: []string{"Range: bytes=0-1", "If-Range: Mon, 01 Jan 2024 00:00:00 GMT"}, status: 200, body: body},
		{path: "/noetag/f.txt", headers: []string{"Range: bytes=0-1", `If-Range: "x"`}, status: 200},
		// 304 wins over a range; subrequests ignore Range.
		{path: "/f.txt", headers: []string{"Range: bytes=0-1", "If-None-Match: " + etag}, status: 304},
		{path: "/sub", headers: []string{"Range: bytes=0-1"}, status: 200, body: body},
	})
}

func TestMultipleRanges(t *testing.T) {
	s := condServer(t)
	for _, tc := range []struct {
		rng   string
		parts []string
		spans []string
	}{
		{"bytes=0-1,4-5", []string{"01", "45"}, []string{"bytes 0-1/20", "bytes 4-5/20"}},
		{"bytes=-2, 3-3,10-", []string{"ij", "3", "abcdefghij"}, []string{"bytes 18-19/20", "bytes 3-3/20", "bytes 10-19/20"}},
		{"bytes=0-0,30-40,1-1", []string{"0", "1"}, []string{"bytes 0-0/20", "bytes 1-1/20"}}, // the unsatisfiable one is left out
	} {
		t.Run(tc.rng, func(t *testing.T) {
			r := s.Get("/f.txt", "Range: "+tc.rng)
			if r.Status != 206 {
				t.Fatalf("status %d", r.Status)
			}
			if r.Header.Get("Content-Length") != strconv.Itoa(len(r.Body)) {
				t.Errorf("Content-Length %s for a body of %d", r.Header.Get("Content-Length"), len(r.Body))
			}
			mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "multipart/byteranges" || len(params["boundary"]) != 20 {
				t.Fatalf("Content-Type %q", r.Header.Get("Content-Type"))
			}
			if !strings.HasPrefix(r.Body, "\r\n--"+params["boundary"]+"\r\n") || !strings.HasSuffix(r.Body, "\r\n--"+params["boundary"]+"--\r\n") {
				t.Errorf("body does not frame its parts as nginx:\n%q", r.Body)
			}
			mr := multipart.NewReader(strings.NewReader(r.Body), params["boundary"])
			for i := 0; ; i++ {
				p, err := mr.NextPart()
				if err == io.EOF {
					if i != len(tc.parts) {
						t.Errorf("%d parts, want %d", i, len(tc.parts))
					}
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(p)
				if i >= len(tc.parts) {
					t.Fatalf("extra part %q", b)
				}
				if string(b) != tc.parts[i] || p.Header.Get("Content-Range") != tc.spans[i] || p.Header.Get("Content-Type") != "text/plain" {
					t.Errorf("part %d: %q %q %q, want %q %q", i, b, p.Header.Get("Content-Range"), p.Header.Get("Content-Type"), tc.parts[i], tc.spans[i])
				}
			}
		})
	}
}
