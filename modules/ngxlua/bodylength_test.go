package ngxlua_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/testserver"
	_ "github.com/spindle-server/spindle/modules/static"
)

// TestBodyFilterLength: a body_filter_by_lua that changes the length of a response
// whose head goes out before its body is whole (200 KB here). As ngx_lua (its
// documentation of body_filter_by_lua, t/082-body-filter.t), clearing Content-Length
// in header_filter_by_lua makes the response chunked and the connection carries on;
// without it the head keeps the length announced (ngx_lua t/016-resp-header.t TEST 3),
// and spindle then closes the connection after the body, where nginx would leave the
// client reading the surplus as the next response.
func TestBodyFilterLength(t *testing.T) {
	s := testserver.Start(t, `
http {
  server {
    listen = ["127.0.0.1:0"]
    root   = "html"
    location "/cleared/" {
      alias                = "html/"
      header_filter_by_lua = "ngx.header.content_length = nil"
      body_filter_by_lua   = "ngx.arg[1] = string.upper(ngx.arg[1] or '') .. (ngx.arg[2] and '[eof]' or '')"
    }
    location "/kept/" {
      alias              = "html/"
      body_filter_by_lua = "ngx.arg[1] = string.upper(ngx.arg[1] or '') .. (ngx.arg[2] and '[eof]' or '')"
    }
    location "/same/" {
      alias              = "html/"
      body_filter_by_lua = "ngx.arg[1] = string.upper(ngx.arg[1] or '')"
    }
    location "= /lua" {
      header_filter_by_lua = "ngx.header.content_length = nil"
      body_filter_by_lua   = "if ngx.arg[2] then ngx.arg[1] = (ngx.arg[1] or '') .. '[eof]' end"
      content_by_lua       = "ngx.header.content_length = 200000; for i = 1, 40000 do ngx.print('hello') end"
    }
  }
}
`, testserver.WithFiles(map[string]string{"html/f.txt": strings.Repeat("file\n", 40000)}))
	want := strings.Repeat("FILE\n", 40000)
	pipelined := func(first string) string {
		return s.Raw("GET "+first+" HTTP/1.1\r\nHost: x\r\n\r\nGET /same/f.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10*time.Second)
	}

	raw := pipelined("/cleared/f.txt")
	resps, bodies, err := testserver.ReadResponses(raw)
	if err != nil || len(resps) != 2 {
		t.Fatalf("cleared: %d responses, %v", len(resps), err)
	}
	if resps[0].Header.Get("Content-Length") != "" || len(resps[0].TransferEncoding) == 0 || bodies[0] != want+"[eof]" {
		t.Errorf("cleared Content-Length: %v, %d bytes", resps[0].Header, len(bodies[0]))
	}
	if resps[1].Header.Get("Content-Length") != "200000" || bodies[1] != want {
		t.Errorf("the same length needs no clearing: %v, %d bytes", resps[1].Header, len(bodies[1]))
	}

	raw = pipelined("/kept/f.txt")
	head, rest, _ := strings.Cut(raw, "\r\n\r\n")
	if !strings.Contains(head, "\r\nContent-Length: 200000\r\n") || rest != want+"[eof]" {
		t.Errorf("kept Content-Length: %q, %d bytes after the head", head, len(rest))
	}
	if !strings.Contains(s.ErrorLog(), "the response body was 200005 bytes, its Content-Length 200000") {
		t.Errorf("no error line for the length:\n%s", s.ErrorLog())
	}

	resps, bodies, err = testserver.ReadResponses(s.Raw("GET /lua HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10*time.Second))
	if err != nil || len(resps) != 1 || resps[0].Header.Get("Content-Length") != "" || bodies[0] != strings.Repeat("hello", 40000)+"[eof]" {
		t.Errorf("content_by_lua's length cleared by the header filter: %v %d", err, len(bodies))
	}
}
