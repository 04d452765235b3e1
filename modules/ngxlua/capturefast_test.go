package ngxlua_test

import (
	"bytes"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// capture and capture_multi of up to four URIs without options take one call into
// Go (api.go's captureURIs) and make the response tables in Lua; the others take
// the general path. Both give the same tables.
const captureFormsConf = `
    location "= /a" { echo_n = "a" }
    location "= /b" { echo_n = "b" }
    location "= /c" { echo = "c" }
    location "= /h" {
      content_by_lua = "ngx.header['X-A'] = {'1', '2'}; ngx.header['X-B'] = 'b'; ngx.print('h')"
    }
    location "= /forms" {
      content_by_lua = <<-LUA
        local function show(...)
          local out = {}
          for i = 1, select("#", ...) do
            local r = select(i, ...)
            local keys = {}
            for k in pairs(r.header) do keys[#keys + 1] = k end
            table.sort(keys)
            local h = {}
            for _, k in ipairs(keys) do
              local v = r.header[k]
              h[#h + 1] = k .. "=" .. (type(v) == "table" and table.concat(v, "+") or tostring(v))
            end
            out[#out + 1] = r.status .. " " .. r.body:gsub("\n", "~") .. " " .. tostring(r.truncated) .. " " .. table.concat(h, ",")
          end
          ngx.say(#out, ": ", table.concat(out, " | "))
        end
        show(ngx.location.capture("/a"))
        show(ngx.location.capture("/a", {}))
        show(ngx.location.capture_multi{ {"/a"}, {"/b"} })
        show(ngx.location.capture_multi{ {"/a"}, {"/b"}, {"/c"} })
        show(ngx.location.capture_multi{ {"/a"}, {"/b"}, {"/c"}, {"/a"} })
        show(ngx.location.capture_multi{ {"/a"}, {"/b"}, {"/c"}, {"/a"}, {"/b"} })
        show(ngx.location.capture_multi{ {"/a"}, {"/b", {args = "x=1"}} })
        local ok, err = pcall(ngx.location.capture, "@named")
        ngx.say(ok, " ", err:find('cannot use the named location "@named"', 1, true) ~= nil)
        ok, err = pcall(ngx.location.capture_multi, { {"/a"}, {"@x"} })
        ngx.say(ok, " ", err:find('cannot use the named location "@x"', 1, true) ~= nil)
        show(ngx.location.capture("/b"))
        show(ngx.location.capture("/h"))
        show(ngx.location.capture("/h", {}))
        show(ngx.location.capture_multi{ {"/h"}, {"/a"} })
      LUA
    }
    location "= /multi" {
      content_by_lua = <<-LUA
        local r1, r2 = ngx.location.capture_multi({ {"/a"}, {"/b"} })
        ngx.print(r1.body, ",", r2.body)
      LUA
    }
`

func TestCaptureForms(t *testing.T) {
	s := serve(t, "", captureFormsConf)
	a := "200 a false Content-Type=text/plain"
	b := "200 b false Content-Type=text/plain"
	c := "200 c~ false Content-Type=text/plain"
	h := "200 h false Content-Type=text/plain,X-A=1+2,X-B=b"
	check(t, s.Get("/forms"), 200, "1: "+a+"\n"+
		"1: "+a+"\n"+
		"2: "+a+" | "+b+"\n"+
		"3: "+a+" | "+b+" | "+c+"\n"+
		"4: "+a+" | "+b+" | "+c+" | "+a+"\n"+
		"5: "+a+" | "+b+" | "+c+" | "+a+" | "+b+"\n"+
		"2: "+a+" | "+b+"\n"+
		"false true\n"+
		"false true\n"+
		"1: "+b+"\n"+
		"1: "+h+"\n"+
		"1: "+h+"\n"+
		"2: "+h+" | "+a+"\n")
}

// TestCaptureMultiAllocations bounds the server's allocations per request of
// capture_multi of two echo locations (bench.sh's multi_lua), with a client that
// allocates nothing: with a RunAll's group, echo's line buffers and the
// subrequests' URIs it was 6.00 per request; now 1.00 (the request's URI).
func TestCaptureMultiAllocations(t *testing.T) {
	if raceOn {
		t.Skip("the race detector allocates")
	}
	s := serve(t, "", "    keepalive_requests = 100000\n"+captureFormsConf)
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req := []byte("GET /multi HTTP/1.1\r\nHost: localhost\r\n\r\n")
	buf := make([]byte, 4096)
	get := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		have := 0
		for {
			n, err := c.Read(buf[have:])
			if err != nil {
				t.Fatalf("%v after %q; log: %s", err, buf[:have], s.ErrorLog())
			}
			have += n
			end := bytes.Index(buf[:have], []byte("\r\n\r\n"))
			if end < 0 {
				continue
			}
			i := bytes.Index(buf[:end], []byte("Content-Length: "))
			if i < 0 {
				t.Fatalf("no Content-Length: %q", buf[:have])
			}
			j := i + len("Content-Length: ")
			n = 0
			for ; buf[j] >= '0' && buf[j] <= '9'; j++ {
				n = n*10 + int(buf[j]-'0')
			}
			if have >= end+4+n {
				if body := buf[end+4 : end+4+n]; string(body) != "a,b" {
					t.Fatalf("body %q", body)
				}
				return
			}
		}
	}
	for range 200 {
		get()
	}
	const n = 2000
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range n {
		get()
	}
	runtime.ReadMemStats(&m1)
	per := float64(m1.Mallocs-m0.Mallocs) / n
	t.Logf("%.2f allocations per request", per)
	if per > 1.5 {
		t.Errorf("%s allocations per request of capture_multi, want at most 1.5", strconv.FormatFloat(per, 'f', 2, 64))
	}
	noErrors(t, s)
}
