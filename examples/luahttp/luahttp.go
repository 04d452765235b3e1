// Package luahttp is an example of a Go module that gives Lua code a library:
// spindle.http.get(url [, timeout]) fetches a URL with Go's net/http client and
// returns the status, the body and the Content-Type, or nil and an error.
//
//	location "/weather" {
//	  content_by_lua = <<-LUA
//	    local status, body = spindle.http.get("http://127.0.0.1:9000/forecast?city=" .. ngx.var.arg_city, 2)
//	    if not status then ngx.log(ngx.ERR, body) return ngx.exit(502) end
//	    ngx.status = status
//	    ngx.print(body)
//	  LUA
//	}
//
// The Go function does its I/O in Call.Wait, with the worker's Lua VM unlocked: the
// request waits, the other requests' Lua code runs. docs/modules.md walks through
// this file; luahttp_test.go runs it.
package luahttp

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/spindle-server/spindle/modules/ngxlua"
)

func init() {
	ngxlua.RegisterLib("http", ngxlua.Lib{
		Funcs: map[string]ngxlua.Func{"get": get},
		// The Lua half checks the arguments where the error is most useful: at the
		// caller's line, with Lua's wording.
		Lua: `
			local lib = ...
			local get = lib.get
			lib.get = function(url, timeout)
				if type(url) ~= "string" then
					error("bad argument #1 to 'spindle.http.get' (string expected, got " .. type(url) .. ")", 2)
				end
				return get(url, timeout or 10)
			end`,
	})
}

// client is the worker's: its idle connections are reused across requests.
var client = &http.Client{}

// maxBody bounds what a response may bring into the Lua VM.
const maxBody = 1 << 20

// get is spindle.http.get(url, timeout): it runs with the VM owned, so it only
// reads its arguments; the request itself happens in Wait.
func get(c *ngxlua.Call) error {
	url := c.String(0)
	timeout := time.Duration(c.Number(1) * float64(time.Second))
	return c.Wait("spindle.http.get", func() []any {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return []any{nil, err.Error()}
		}
		resp, err := client.Do(req)
		if err != nil {
			return []any{nil, err.Error()}
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if err != nil {
			return []any{nil, err.Error()}
		}
		return []any{resp.StatusCode, body, resp.Header.Get("Content-Type")}
	})
}
