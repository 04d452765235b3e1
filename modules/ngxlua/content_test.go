package ngxlua_test

import (
	"strings"
	"testing"
)

// Cases in the spirit of lua-nginx-module's t/002-content.t, t/005-exit.t,
// t/015-status.t, t/016-resp-header.t, t/017-exec.t, t/022-redirect.t, t/045-ngx-var.t.

const contentConf = `
    location "= /say" {
      content_by_lua = <<-LUA
        local ok, err = ngx.say("Hello, Lua!")
        if not ok then
          ngx.log(ngx.ERR, "say failed: ", err)
          return
        end
        ngx.say("Yay! ", 123)
      LUA
    }
    location "= /print" {
      content_by_lua = <<-LUA
        ngx.print("a", 1, 2.5, true, false, nil, ngx.null, {"x", {"y", 3}}, "\n")
      LUA
    }
    location "= /print_bad" {
      content_by_lua = <<-LUA
        ngx.print({a = 1})
      LUA
    }
    location "= /exit403" {
      content_by_lua = "ngx.exit(403); ngx.say('hi')"
    }
    location "= /exit_ok" {
      content_by_lua = <<-LUA
        ngx.say("done")
        ngx.exit(ngx.OK)
        ngx.say("not reached")
      LUA
    }
    location "= /exit_after_output" {
      content_by_lua = <<-LUA
        ngx.say("hello")
        ngx.exit(404)
      LUA
    }
    location "= /exit_pcall" {
      content_by_lua = <<-LUA
        local ok, err = pcall(function() ngx.exit(410) end)
        ngx.say("pcall swallowed ngx.exit: ", tostring(ok), " ", tostring(err))
      LUA
    }
    location "= /exit_coroutine" {
      content_by_lua = <<-LUA
        local co = coroutine.create(function() ngx.exit(404) end)
        local ok, err = coroutine.resume(co)
        ngx.say("not reached ", tostring(ok), " ", tostring(err))
      LUA
    }
    location "= /exit_wrap" {
      content_by_lua = <<-LUA
        local f = coroutine.wrap(function() ngx.exit(405) end)
        pcall(f)
        ngx.say("not reached")
      LUA
    }
    location "= /exit_201" {
      content_by_lua = "ngx.exit(201)"
    }
    location "= /status" {
      content_by_lua = <<-LUA
        ngx.status = 404
        ngx.say("status ", ngx.status)
        ngx.status = 500
      LUA
    }
    location "= /error" {
      content_by_lua = <<-LUA
        local function inner()
          error("boom")
        end
        inner()
      LUA
    }
    location "= /error_after_output" {
      content_by_lua = <<-LUA
        ngx.say("partial")
        ngx.flush(true)
        local x = nil
        x.y = 1
      LUA
    }
    location "= /headers" {
      content_by_lua = <<-LUA
        ngx.header.content_type = "text/my-plain"
        ngx.header["X-Foo"] = "bar"
        ngx.header.x_multi = {"a", "b"}
        ngx.header["X-Gone"] = "x"
        ngx.header["X-Gone"] = nil
        ngx.header.content_length = 6
        local h = ngx.resp.get_headers()
        ngx.print(h["x-foo"], h.x_multi[2], tostring(ngx.header["X-Gone"]))
      LUA
    }
    location "= /header_read" {
      content_by_lua = <<-LUA
        ngx.header["X-A"] = {"1", "2"}
        local v = ngx.header["x-a"]
        ngx.say(type(v), " ", v[1], v[2], " ", ngx.header.content_type or "none")
      LUA
    }
    location "= /redirect" {
      content_by_lua = "ngx.redirect('/target?x=1')"
    }
    location "= /redirect301" {
      content_by_lua = "return ngx.redirect('http://example.com/', ngx.HTTP_MOVED_PERMANENTLY)"
    }
    location "= /exec" {
      content_by_lua = <<-LUA
        ngx.ctx.foo = "lost"
        ngx.exec("/target", {a = "b c"})
      LUA
    }
    location "= /exec_named" {
      content_by_lua = "ngx.exec('@named')"
    }
    location "@named" {
      content_by_lua = "ngx.say('named ', ngx.var.uri)"
    }
    location "= /target" {
      content_by_lua = "ngx.say('target ', ngx.var.uri, ' ', ngx.var.args, ' ctx ', tostring(ngx.ctx.foo), ' ', ngx.var.arg_a)"
    }
    location "= /var" {
      set_by_lua "myvar" { code = "return 'initial'" }
      content_by_lua = <<-LUA
        ngx.say(ngx.var.myvar)
        ngx.var.myvar = "changed"
        ngx.say(ngx.var.myvar, " ", ngx.var.request_method, " ", ngx.var.uri, " ", tostring(ngx.var.nonexistent))
        ngx.say(ngx.var.arg_a, " ", ngx.var.http_x_test, " ", ngx.var.cookie_c)
        ngx.var.args = "z=1"
        ngx.say(ngx.var.args, " ", ngx.var.arg_z)
        local ok, err = pcall(function() ngx.var.request_method = "POST" end)
        ngx.say(ok, " ", err:find("not found for writing") ~= nil)
      LUA
    }
    location "~ ^/cap/(\\w+)/(\\d+)$" {
      content_by_lua = "ngx.say(ngx.var[1], ' ', ngx.var[2])"
    }
    location "= /types" {
      content_by_lua = <<-LUA
        ngx.say(ngx.OK, " ", ngx.ERROR, " ", ngx.AGAIN, " ", ngx.DONE, " ", ngx.DECLINED, " ",
          ngx.HTTP_GET, " ", ngx.HTTP_POST, " ", ngx.HTTP_OK, " ", ngx.HTTP_NOT_FOUND, " ",
          ngx.HTTP_INTERNAL_SERVER_ERROR, " ", ngx.ERR, " ", ngx.DEBUG, " ", tostring(ngx.null))
        ngx.say(ngx.get_phase(), " ", tostring(ngx.is_subrequest), " ", tostring(ngx.headers_sent))
        ngx.say(ngx.worker.id(), " ", ngx.worker.count(), " ", ngx.worker.pid() > 0, " ", ngx.worker.exiting())
        ngx.say(ngx.config.subsystem, " ", ngx.config.prefix():sub(-1))
      LUA
    }
    location "= /eof" {
      content_by_lua = <<-LUA
        ngx.say("before eof")
        ngx.eof()
        local ok, err = ngx.say("after")
        ngx.log(ngx.NOTICE, "after eof: ", tostring(ok), " ", err)
      LUA
    }
    location "= /log" {
      content_by_lua = <<-LUA
        ngx.log(ngx.WARN, "a warning ", 42, " ", nil, " ", true)
        print("printed")
        ngx.say("ok")
      LUA
    }
    location "= /file" {
      content_by_lua_file = "lua/hello.lua"
    }
    location "= /file_var" {
      content_by_lua_file = "lua/${arg.name}.lua"
    }
`

var contentFiles = map[string]string{
	"lua/hello.lua": "ngx.say('hello from a file')\n",
	"lua/other.lua": "ngx.say('other file')\n",
}

func TestContent(t *testing.T) {
	s := serve(t, "", contentConf, testserverFiles(contentFiles))
	cases := []struct {
		path   string
		status int
		body   string
	}{
		{"/say", 200, "Hello, Lua!\nYay! 123\n"},
		{"/print", 200, "a12.5truefalsenilnullxy3\n"},
		{"/exit_ok", 200, "done\n"},
		{"/exit_after_output", 200, "hello\n"},
		{"/exit_201", 201, ""},
		{"/status", 404, "status 404\n"},
		{"/header_read", 200, "table 12 none\n"},
		{"/var?a=1", 200, "initial\nchanged GET /var nil\n1 x y\nz=1 1\nfalse true\n"},
		{"/cap/foo/42", 200, "foo 42\n"},
		{"/types", 200, "0 -1 -2 -4 -5 2 8 200 404 500 4 8 null\ncontent false true\n0 1 true false\nhttp /\n"},
		{"/exec", 200, "target /target a=b%20c ctx nil b%20c\n"},
		{"/exec_named", 200, "named /exec_named\n"},
		{"/eof", 200, "before eof\n"},
		{"/log", 200, "ok\n"},
		{"/file", 200, "hello from a file\n"},
		{"/file_var?name=other", 200, "other file\n"},
	}
	for _, c := range cases {
		r := s.Get(c.path, "X-Test: x", "Cookie: c=y")
		if r.Status != c.status || r.Body != c.body {
			t.Errorf("GET %s = %d %q, want %d %q", c.path, r.Status, r.Body, c.status, c.body)
		}
	}

	r := s.Get("/exit403")
	if r.Status != 403 || !strings.Contains(r.Body, "403 Forbidden") {
		t.Errorf("exit403: %d %q", r.Status, r.Body)
	}
	for path, status := range map[string]int{"/exit_pcall": 410, "/exit_coroutine": 404, "/exit_wrap": 405} {
		if r = s.Get(path); r.Status != status {
			t.Errorf("%s: ngx.exit was caught: %d %q", path, r.Status, r.Body)
		}
	}
	r = s.Get("/headers")
	if r.Body != "barbnil" || r.Header.Get("Content-Type") != "text/my-plain" || r.Header.Get("X-Foo") != "bar" ||
		strings.Join(r.Header.Values("X-Multi"), ",") != "a,b" || r.Header.Get("X-Gone") != "" {
		t.Errorf("headers: %q %v", r.Body, r.Header)
	}
	r = s.Get("/redirect")
	if r.Status != 302 || !strings.HasSuffix(r.Header.Get("Location"), "/target?x=1") || !strings.HasPrefix(r.Header.Get("Location"), "http://") {
		t.Errorf("redirect: %d %v", r.Status, r.Header)
	}
	r = s.Get("/redirect301")
	if r.Status != 301 || r.Header.Get("Location") != "http://example.com/" || !strings.Contains(r.Body, "301 Moved Permanently") {
		t.Errorf("redirect301: %d %v %q", r.Status, r.Header, r.Body)
	}
	checkLog(t, s, "attempt to set status 404 via ngx.exit after sending out the response status 200",
		"[lua] content_by_lua(spindle.hcl:", "):1: a warning 42 nil true", "[notice]", "printed",
		"after eof: nil seen eof")
	r = s.Get("/print_bad")
	if r.Status != 500 {
		t.Errorf("print of a hash table: %d", r.Status)
	}
	checkLog(t, s, "non-array table found")
}

func TestContentErrors(t *testing.T) {
	s := serve(t, "", contentConf, testserverFiles(contentFiles))
	r := s.Get("/error")
	if r.Status != 500 || !strings.Contains(r.Body, "500 Internal Server Error") {
		t.Errorf("error: %d %q", r.Status, r.Body)
	}
	// The log names the chunk and the line, with a traceback.
	checkLog(t, s, "lua entry thread aborted: runtime error: content_by_lua(spindle.hcl:", "):2: boom",
		"stack traceback:", "in function 'inner'", `request: "GET /error HTTP/1.1"`)
	// After the header went out, an error cuts the response short.
	raw := s.Raw("GET /error_after_output HTTP/1.1\r\nHost: x\r\n\r\n", 3*1e9)
	if !strings.Contains(raw, "partial") || strings.HasSuffix(raw, "0\r\n\r\n") {
		t.Errorf("error after output: %q", raw)
	}
}

// ngx.say and ngx.print with several plain values hand them to Go as they are
// (engine.out formats numbers, booleans and nil as Lua's tostring does); a table
// among them is flattened in Lua.
func TestSayValues(t *testing.T) {
	s := serve(t, "", `
    location "= /say" {
      content_by_lua = <<-LUA
        ngx.say("a", 1, " ", 2.5, " ", true, " ", nil, " ", -0.0, " ", 1e15, " ", 1/3, " ", -7)
        ngx.print("x", "y")
        ngx.say({"t", 1}, "z")
        ngx.say()
        ngx.say(nil)
      LUA
    }`)
	check(t, s.Get("/say"), 200, "a1 2.5 true nil -0 1e+15 0.33333333333333 -7\nxyt1z\n\nnil\n")
}
