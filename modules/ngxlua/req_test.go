package ngxlua_test

import (
	"strings"
	"testing"
)

// Cases in the spirit of t/028-req-header.t, t/030-uri-args.t, t/031-post-args.t,
// t/044-req-body.t.

const reqConf = `
    location "= /headers" {
      content_by_lua = <<-LUA
        local h = ngx.req.get_headers()
        ngx.say("Foo: ", h["Foo"] or "nil", " bar: ", h.bar or "nil", " multi: ", table.concat(h["x-multi"], ","))
        ngx.say("dash: ", h.my_header or "nil", " raw: ", tostring(ngx.req.get_headers(100, true)["My-Header"]))
        local _, err = ngx.req.get_headers(2)
        ngx.say("truncated: ", err)
      LUA
    }
    location "= /set_header" {
      rewrite_by_lua = <<-LUA
        ngx.req.set_header("X-Added", "a")
        ngx.req.set_header("X-List", {"1", "2"})
        ngx.req.clear_header("Foo")
      LUA
      content_by_lua = <<-LUA
        local h = ngx.req.get_headers()
        ngx.say(h["x-added"], " ", table.concat(h["x-list"], ","), " ", tostring(h.foo), " ", ngx.var.http_x_added)
        local res = ngx.location.capture("/echo_header")
        ngx.print(res.body)
      LUA
    }
    location "= /echo_header" {
      content_by_lua = "ngx.say('sub sees ', tostring(ngx.req.get_headers()['x-added']))"
    }
    location "= /args" {
      content_by_lua = <<-LUA
        local args = ngx.req.get_uri_args()
        local keys = {}
        for k in pairs(args) do keys[#keys + 1] = k end
        table.sort(keys)
        for _, k in ipairs(keys) do
          local v = args[k]
          if type(v) == "table" then v = table.concat(v, "|") end
          ngx.say(k, "=", tostring(v))
        end
        local _, err = ngx.req.get_uri_args(1)
        ngx.say("max: ", err)
      LUA
    }
    location "= /set_args" {
      rewrite_by_lua = <<-LUA
        ngx.req.set_uri_args({b = "2", a = {"1", "x y"}})
      LUA
      content_by_lua = "ngx.say(ngx.var.args, ' ', ngx.var.arg_b)"
    }
    location "= /method" {
      rewrite_by_lua = "ngx.req.set_method(ngx.HTTP_PUT)"
      content_by_lua = "ngx.say(ngx.req.get_method(), ' ', ngx.var.request_method, ' ', ngx.req.http_version(), ' ', ngx.req.start_time() > 0, ' ', ngx.req.is_internal())"
    }
    location "= /body" {
      content_by_lua = <<-LUA
        ngx.say("before read: ", tostring(ngx.req.get_body_data()))
        ngx.req.read_body()
        local data = ngx.req.get_body_data()
        ngx.say("body: ", data, " (", #data, ")")
        local args = ngx.req.get_post_args()
        ngx.say("a=", args.a, " b=", args.b)
      LUA
    }
    location "= /need_body" {
      lua_need_request_body = true
      content_by_lua = "ngx.say(ngx.req.get_body_data())"
    }
    location "= /set_body" {
      rewrite_by_lua = <<-LUA
        ngx.req.read_body()
        ngx.req.set_body_data("replaced=" .. ngx.req.get_body_data())
      LUA
      content_by_lua = <<-LUA
        ngx.say(ngx.req.get_body_data(), " ", ngx.var.http_content_length)
        local res = ngx.location.capture("/sub_body", { method = ngx.HTTP_POST })
        ngx.print(res.body)
      LUA
    }
    location "= /sub_body" {
      content_by_lua = "ngx.req.read_body(); ngx.say('sub body: ', ngx.req.get_body_data())"
    }
    location "= /too_large" {
      content_by_lua = "ngx.req.read_body(); ngx.say('read')"
    }
    location "= /raw" {
      content_by_lua = "ngx.print(ngx.req.raw_header())"
    }
    location "= /set_uri" {
      rewrite_by_lua = "ngx.req.set_uri('/changed')"
      content_by_lua = "ngx.say(ngx.var.uri)"
    }
    location "= /reread" {
      content_by_lua = <<-LUA
        -- C reads a copy of the URI, arguments and headers (rt.c), taken again
        -- after every Go function: these see the changes made in this resume.
        local u1, a1, h1 = ngx.var.uri, ngx.req.get_uri_args().a, ngx.req.get_headers()["x-h"]
        ngx.req.set_uri("/other")
        ngx.req.set_uri_args("a=2&b")
        ngx.req.set_header("X-H", "new")
        local a2, h2 = ngx.req.get_uri_args(), ngx.req.get_headers()
        ngx.say(u1, " ", a1, " ", h1, " ", ngx.var.uri, " ", a2.a, " ", tostring(a2.b), " ", h2["x-h"])
      LUA
    }
    location "= /header_lines" {
      content_by_lua = <<-LUA
        local h = ngx.req.get_headers()
        local long = h["x-" .. string.rep("l", 300)]  -- past C's 256-byte names: Go's table
        ngx.say("[", h["x-blank"], "] ", h["x-empty"] == "", " ", long, " ", table.concat(h["x-m"], ","))
        local a = ngx.req.get_uri_args(0)          -- 0: no limit
        ngx.say(#a.k, " ", a[""], " ", a.z, " ", tostring(a["%zz"]))
      LUA
    }
`

func TestRequest(t *testing.T) {
	s := serve(t, "", "    client_max_body_size = \"100\"\n"+reqConf)
	check(t, s.Get("/headers", "Foo: bar", "Bar: baz", "X-Multi: 1", "X-Multi: 2", "My-Header: d"), 200,
		"Foo: bar bar: baz multi: 1,2\ndash: d raw: d\ntruncated: truncated\n")
	check(t, s.Get("/set_header", "Foo: gone"), 200, "a 1,2 nil a\nsub sees a\n")
	check(t, s.Get("/args?b=2&a=1&a=3&flag&e=&sp=a+b%20c"), 200, "a=1|3\nb=2\ne=\nflag=true\nsp=a b c\nmax: truncated\n")
	check(t, s.Get("/set_args?old=1"), 200, "a=1&a=x%20y&b=2 2\n")
	check(t, s.Get("/method"), 200, "PUT PUT 1.1 true false\n")
	check(t, s.Do("POST", "/body", "a=1&b=two+words", "Content-Type: application/x-www-form-urlencoded"), 200,
		"before read: nil\nbody: a=1&b=two+words (15)\na=1 b=two words\n")
	check(t, s.Do("POST", "/need_body", "payload"), 200, "payload\n")
	check(t, s.Do("POST", "/set_body", "orig"), 200, "replaced=orig 13\nsub body: replaced=orig\n")
	check(t, s.Get("/set_uri"), 200, "/changed\n")
	check(t, s.Get("/reread?a=1", "X-H: old"), 200, "/reread 1 old /other 2 true new\n")
	check(t, s.Get("/header_lines?k=1&k=2&k=3&=e&z=%41%4&%zz", "X-Blank: \t v  w \t", "X-Empty:", "X-"+strings.Repeat("L", 300)+": long", "X-M: 1", "x-m: 2", "X-m: 3"),
		200, "[v  w] true long 1,2,3\n3 e A%4 true\n")
	r := s.Do("POST", "/too_large", strings.Repeat("x", 200))
	if r.Status != 413 {
		t.Errorf("too large body: %d %q", r.Status, r.Body)
	}
	r = s.Get("/raw", "X-Raw: 1")
	if !strings.HasPrefix(r.Body, "GET /raw HTTP/1.1\r\n") || !strings.Contains(r.Body, "X-Raw: 1\r\n") || !strings.HasSuffix(r.Body, "\r\n\r\n") {
		t.Errorf("raw header: %q", r.Body)
	}
}

// A body larger than client_body_buffer_size is in a file, as in OpenResty:
// get_body_data is nil, get_body_file names the file with the whole body; a small
// body is in memory.
func TestRequestBodyInFile(t *testing.T) {
	s := serve(t, "", `
    client_body_buffer_size = "1k"
    location "= /file" {
      content_by_lua = <<-LUA
        ngx.req.read_body()
        local name = ngx.req.get_body_file()
        local data = ngx.req.get_body_data()
        if name then
          local f = io.open(name, "rb")
          local body = f:read("*a")
          f:close()
          ngx.say("file ", #body, " ", body:sub(1, 3), " data ", tostring(data))
        else
          ngx.say("memory ", data)
        end
      LUA
    }
`)
	check(t, s.Do("POST", "/file", "small"), 200, "memory small\n")
	check(t, s.Do("POST", "/file", "abc"+strings.Repeat("x", 5000)), 200, "file 5003 abc data nil\n")
}
