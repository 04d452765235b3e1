package ngxlua_test

import (
	"testing"
	"time"
)

// Cases in the spirit of t/020-subrequest.t, t/027-multi-capture.t and
// t/055-subreq-vars.t.

const captureConf = `
    location "= /declare" {
      set_by_lua "dog" { code = "return ''" }
      set_by_lua "cat" { code = "return ''" }
      return = 204
    }
    location "= /a" { echo_n = "a" }
    location "= /b" { echo_n = "b" }
    location "= /multi" {
      content_by_lua = <<-LUA
        local res1, res2 = ngx.location.capture_multi{ { "/a" }, { "/b" } }
        ngx.say("res1.status = " .. res1.status)
        ngx.say("res1.body = " .. res1.body)
        ngx.say("res2.status = " .. res2.status)
        ngx.say("res2.body = " .. res2.body)
      LUA
    }
    location "= /sub" {
      content_by_lua = <<-LUA
        ngx.req.read_body()
        ngx.header["X-Sub"] = {"1", "2"}
        ngx.status = tonumber(ngx.var.arg_status) or 200
        ngx.say(ngx.req.get_method(), " ", ngx.var.args, " body=", tostring(ngx.req.get_body_data()),
          " hdr=", tostring(ngx.var.http_x_h), " dog=", tostring(ngx.var.dog), " ctx=", tostring(ngx.ctx.tag))
        ngx.var.dog = "set by sub"
        ngx.ctx.tag = "sub wrote ctx"
      LUA
    }
    location "= /options" {
      content_by_lua = <<-LUA
        ngx.var.dog = "parent dog"
        local ctx = { tag = "shared ctx" }
        local r1, r2, r3, r4 = ngx.location.capture_multi{
          { "/sub?x=1", { method = ngx.HTTP_POST, body = "hello", args = { y = "2" } } },
          { "/sub", { args = "q=3&status=201", headers = { ["X-H"] = "hv" }, vars = { dog = "given" } } },
          { "/sub", { copy_all_vars = true, ctx = ctx } },
          { "/sub", { method = ngx.HTTP_PUT, share_all_vars = true } },
        }
        for _, r in ipairs{r1, r2, r3, r4} do
          ngx.print(r.status, " ", r.body)
        end
        ngx.say("x-sub: ", table.concat(r1.header["X-Sub"], ","), " truncated: ", tostring(r1.truncated),
          " type: ", r1.header["Content-Type"])
        ngx.say("parent dog: ", ngx.var.dog, " ctx: ", ctx.tag, " own ctx: ", tostring(ngx.ctx.tag))
      LUA
    }
    log_not_found = false # the capture of /nowhere is a 404 on purpose
    location "= /missing" {
      content_by_lua = <<-LUA
        local res = ngx.location.capture("/nowhere")
        ngx.say(res.status, " ", #res.body > 0)
      LUA
    }
    location "= /sleep" {
      content_by_lua = "ngx.sleep(0.2); ngx.print(ngx.var.arg_n)"
    }
    location "= /concurrent" {
      content_by_lua = <<-LUA
        local start = ngx.now()
        local a, b, c = ngx.location.capture_multi{ { "/sleep?n=1" }, { "/sleep?n=2" }, { "/sleep?n=3" } }
        ngx.say(a.body, b.body, c.body, " ", ngx.now() - start < 0.55)
      LUA
    }
    location "= /nested" {
      content_by_lua = <<-LUA
        local res = ngx.location.capture("/multi")
        ngx.print(res.body)
      LUA
    }
    location "= /body_inherit" {
      content_by_lua = <<-LUA
        ngx.req.read_body()
        local post = ngx.location.capture("/sub", { method = ngx.HTTP_POST })
        local get = ngx.location.capture("/sub")
        local fwd = ngx.location.capture("/sub", { always_forward_body = true })
        ngx.print(post.body, get.body, fwd.body)
      LUA
    }
`

func TestCapture(t *testing.T) {
	s := serve(t, "", captureConf)
	check(t, s.Get("/multi"), 200, "res1.status = 200\nres1.body = a\nres2.status = 200\nres2.body = b\n")
	check(t, s.Get("/options"), 200,
		"200 POST x=1&y=2 body=hello hdr=nil dog= ctx=nil\n"+
			"201 GET q=3&status=201 body=nil hdr=hv dog=given ctx=nil\n"+
			"200 GET  body=nil hdr=nil dog=parent dog ctx=shared ctx\n"+
			"200 PUT  body=nil hdr=nil dog=parent dog ctx=nil\n"+
			"x-sub: 1,2 truncated: false type: text/plain\n"+
			"parent dog: set by sub ctx: sub wrote ctx own ctx: nil\n")
	check(t, s.Get("/missing"), 200, "404 true\n")
	start := time.Now()
	check(t, s.Get("/concurrent"), 200, "123 true\n")
	if d := time.Since(start); d > 550*time.Millisecond {
		t.Errorf("three subrequests sleeping 200ms each took %v: not concurrent", d)
	}
	check(t, s.Get("/nested"), 200, "res1.status = 200\nres1.body = a\nres2.status = 200\nres2.body = b\n")
	check(t, s.Do("POST", "/body_inherit", "payload"), 200,
		"POST  body=payload hdr=nil dog= ctx=nil\nGET  body=nil hdr=nil dog= ctx=nil\nGET  body=payload hdr=nil dog= ctx=nil\n")
	noErrors(t, s)
}
