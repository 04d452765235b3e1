package ngxlua_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/internal/errlog"
	"github.com/spindle-server/spindle/internal/testserver"
)

// lua-resty-core's modules as apps load them (spindle's own, under the same names:
// docs/lua-engine.md): the expected values are those of lua-resty-core's t/ suite
// (encode-base64.t, decode-base64.t, process-type-*.t, master-pid*.t, errlog*.t,
// ngx-req.t, ngx-resp.t, re-split.t, semaphore.t, time.t, md5.t, sha1-bin.t).
func TestRestyCore(t *testing.T) {
	s := serve(t, `
  init_by_lua = <<-LUA
    require "resty.core"
    init_type = require("ngx.process").type()
  LUA`, `
    location "= /core" {
      content_by_lua = <<-LUA
        local core = require "resty.core"
        local base = require "resty.core.base"
        ngx.say(core.version, " ", base.version, " ", type(base.new_tab), " ", type(base.get_string_buf(10)))
        for _, m in ipairs({"resty.core.var", "resty.core.regex", "resty.core.time", "resty.core.request",
            "resty.core.response", "resty.core.hash", "resty.core.base64", "resty.core.uri", "resty.core.exit",
            "resty.core.worker", "resty.core.phase", "resty.core.ctx", "resty.core.utils"}) do
          assert(type(require(m)) == "table", m)
        end
        ngx.say(require("resty.core.utils").str_replace_char("a-b-c", "-", "_"))
      LUA
    }
    location "= /base64" {
      content_by_lua = <<-LUA
        local s
        for i = 1, 200 do s = ngx.encode_base64("hello") end
        ngx.say(s, " [", ngx.encode_base64(nil), "] ", ngx.encode_base64(3.14), " ", ngx.encode_base64(true),
          " ", ngx.encode_base64(3.14, true), " ", ngx.encode_base64(3.14, false))
        ngx.say(ngx.decode_base64("aGVsbG8="), " ", tostring(ngx.decode_base64("!!")), " [", ngx.decode_base64(""), "]")
        ngx.say(pcall(ngx.encode_base64, "x", "yes"))
        ngx.say(pcall(ngx.decode_base64, 32))
        local enc = require "ngx.base64"
        local out = {}
        for _, v in ipairs({"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff", "a\0b"}) do
          out[#out + 1] = enc.encode_base64url(v)
        end
        ngx.say(table.concat(out, ","))
        out = {}
        for _, v in ipairs({"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"}) do
          out[#out + 1] = enc.decode_base64url(v)
        end
        ngx.say(table.concat(out, ","), " ", enc.decode_base64url("_w") == "\xff", " ", enc.decode_base64url("YQBi") == "a\0b")
        ngx.say(enc.decode_base64url("     "))
        ngx.say(enc.encode_base64url(1))
      LUA
    }
    location "= /hash" {
      content_by_lua = <<-LUA
        local str = require "nginx.string"
        ngx.say(ngx.md5("hello"), " ", ngx.md5(nil), " ", ngx.md5(45))
        ngx.say(str.to_hex(ngx.md5_bin("hello")), " ", str.to_hex(ngx.sha1_bin("hello")), " ", #ngx.sha1_bin(""))
      LUA
    }
    location "= /process" {
      content_by_lua = <<-LUA
        local process = require "ngx.process"
        local v
        for i = 1, 400 do v = process.type() end
        local pid = process.get_master_pid()
        ngx.say(v, " ", init_type, " ", type(pid), " ", pid > 0)
        ngx.say(process.enable_privileged_agent())
      LUA
    }
    location "= /errlog" {
      content_by_lua = <<-LUA
        local errlog = require "ngx.errlog"
        ngx.say(errlog.get_sys_filter_level() == ngx.INFO)
        errlog.raw_log(ngx.ERR, "hello raw world")
        ngx.say(pcall(errlog.raw_log, ngx.ERR, 123))
        ngx.say(pcall(errlog.raw_log, 9, "x"))
        ngx.say(pcall(errlog.raw_log, ngx.ERROR, "x"))
        ngx.say(errlog.get_logs())
      LUA
    }
    location "= /req" {
      content_by_lua = <<-LUA
        local ngx_req = require "ngx.req"
        ngx.req.set_header("Foo", "bar")
        ngx_req.add_header("Foo", "baz")
        ngx_req.add_header("Foo", 2)
        ngx.say("Foo: ", table.concat(ngx.req.get_headers()["Foo"], ", "))
        ngx_req.add_header("Bar", { "x", 123 })
        ngx_req.add_header(123, 456)
        ngx_req.add_header(123, 789)
        local h = ngx.req.get_headers()
        ngx.say("Bar: ", table.concat(type(h.bar) == "table" and h.bar or {h.bar}, ", "), " 123: ", table.concat(h[123], ", "))
        ngx.say(pcall(ngx_req.add_header, "Foo"))
        ngx.say(pcall(ngx_req.add_header, "Foo", {}))
      LUA
    }
    location "= /resp" {
      content_by_lua = <<-LUA
        local ngx_resp = require "ngx.resp"
        ngx.header["Foo"] = "bar"
        ngx_resp.add_header("Foo", "baz")
        ngx_resp.add_header("Foo", {"a", 1})
        ngx.say("ok")
      LUA
    }
    location "= /time" {
      content_by_lua = <<-LUA
        local time = require "resty.core.time"
        local now, t = ngx.now(), ngx.time()
        ngx.update_time()
        local ms = time.monotonic_msec()
        ngx.say(math.abs(now - os.time()) <= 1, " ", t == math.floor(t), " ", math.abs(t - os.time()) <= 1,
          " ", now * 1000 == math.floor(now * 1000 + 0.5), " ", ms > 0, " ", time.monotonic_time() >= ms / 1000)
      LUA
    }
    location "= /re" {
      content_by_lua = <<-LUA
        local ngx_re = require "ngx.re"
        ngx.say(table.concat(ngx_re.split("a,b,c,d", ","), "|"))
        ngx.say(table.concat(ngx_re.split("a;,b;,c;,d,e", "(;),"), "|"))
        ngx.say(table.concat(ngx_re.split("a,b,c,d,e", ",", nil, nil, 3), "|"))
        ngx.say(table.concat(ngx_re.split("a,b,c,d,e", "(,)", nil, nil, 3), "|"))
      LUA
    }
    location "= /sema" {
      content_by_lua = <<-LUA
        local semaphore = require "ngx.semaphore"
        local sema = semaphore.new(2)
        ngx.say(sema:count())
        ngx.say(sema:wait(0))
        ngx.say(sema:wait(0))
        ngx.say(sema:wait(0))
        sema:post(3)
        ngx.say(sema:count())
      LUA
    }`, testserver.WithLogLevel(errlog.Info))
	check(t, s.Get("/core"), 200, "0.1.25 0.1.25 function cdata\na_b_c\n")
	check(t, s.Get("/base64"), 200, "aGVsbG8= [] My4xNA== dHJ1ZQ== My4xNA My4xNA==\n"+
		"hello nil []\n"+
		"falsebad no_padding: boolean expected, got string\n"+
		"falsestring argument only\n"+
		",Zg,Zm8,Zm9v,Zm9vYg,Zm9vYmE,Zm9vYmFy,_w,YQBi\n"+
		",f,fo,foo,foob,fooba,foobar true true\n"+
		"nilinvalid input\n"+
		"nilmust provide a string\n")
	check(t, s.Get("/hash"), 200, "5d41402abc4b2a76b9719d911017c592 d41d8cd98f00b204e9800998ecf8427e 6c8349cc7260ae62e3b1396831a8398f\n"+
		"5d41402abc4b2a76b9719d911017c592 aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d 20\n")
	check(t, s.Get("/process"), 200, "single master number true\nnilprivileged agent not supported\n")
	r := s.Get("/errlog")
	if r.Status != 200 || !regexp.MustCompile(`^true\nfalse.*bad argument #2 to 'raw_log' \(must be a string\)\nfalse.*bad log level\nfalse.*bad log level\nnildirective "lua_capture_error_log" is not set\n$`).MatchString(r.Body) {
		t.Errorf("/errlog: %d %q", r.Status, r.Body)
	}
	// raw_log writes the message as it is: no "[lua] file:line:" before it.
	if !regexp.MustCompile(`\[error\] \d+#\d+: \*\d+ hello raw world`).MatchString(s.ErrorLog()) {
		t.Errorf("raw_log's line missing or prefixed:\n%s", s.ErrorLog())
	}
	r = s.Get("/req")
	if r.Status != 200 || !strings.HasPrefix(r.Body, "Foo: bar, baz, 2\nBar: x, 123 123: 456, 789\nfalse") ||
		!strings.Contains(r.Body, "bad 'value' argument: string or table expected, got nil\nfalse") ||
		!strings.HasSuffix(r.Body, "bad 'value' argument: non-empty table expected\n") {
		t.Errorf("/req: %d %q", r.Status, r.Body)
	}
	r = s.Get("/resp")
	if got := r.Header.Values("Foo"); r.Status != 200 || strings.Join(got, ",") != "bar,baz,a,1" {
		t.Errorf("/resp: %d Foo: %q", r.Status, got)
	}
	check(t, s.Get("/time"), 200, "true true true true true true\n")
	check(t, s.Get("/re"), 200, "a|b|c|d\na|;|b|;|c|;|d,e\na|b|c,d,e\na|,|b|,|c,d,e\n")
	check(t, s.Get("/sema"), 200, "2\ntrue\ntrue\nniltimeout\n3\n")
}

// ngx.re.match and find match in C through the FFI once the engine keeps the
// pattern compiled: the same results as through Go (captures, named groups, groups
// that did not take part, ctx.pos, nth, res), and errors still reported.
func TestRegexFFI(t *testing.T) {
	s := serve(t, "", `
    location "= /re" {
      content_by_lua = <<-LUA
        for round = 1, 2 do -- the first compiles, the second matches in C
          local m = ngx.re.match("hello, 1234", [[(?<word>[a-z]+), (\d+)(x)?]], "jo")
          ngx.say(m[0], "|", m[1], "|", m.word, "|", m[2], "|", tostring(m[3]))
          local ctx = {pos = 3}
          local from, to = ngx.re.find("abcabc", "b(c)", "jo", ctx)
          ngx.say(from, " ", to, " ", ctx.pos, " ", ngx.re.find("abcabc", "b(c)", "jo", nil, 1))
          ngx.say(tostring(ngx.re.find("abc", "x", "jo")), " ", tostring(ngx.re.match("abc", "x", "jo")),
            " ", tostring(ngx.re.find("abc", "b(x)?", "jo", nil, 1)))
          local res = {}
          ngx.re.match("k=v", "(\\w)=(\\w)", "jo", nil, res)
          ngx.say(res[1], res[2])
          local mm, err = ngx.re.match("abc", "(", "jo")
          ngx.say(tostring(mm), " ", err ~= nil)
          ngx.say(pcall(ngx.re.find, "abc", "b", "jq"))
        end
      LUA
    }`)
	want := "hello, 1234|hello|hello|1234|false\n5 6 7 33\nnil nil nil\nkv\nnil true\n"
	r := s.Get("/re")
	if r.Status != 200 || !strings.HasPrefix(r.Body, want) || strings.Count(r.Body, want) != 2 ||
		strings.Count(r.Body, `unknown flag "q"`) != 2 {
		t.Errorf("got %d %q", r.Status, r.Body)
	}
}
