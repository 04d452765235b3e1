package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// luaConf serves /lua with Lua code that answers with body, and /file from a Lua file.
func luaConf(init, body string) string {
	return fmt.Sprintf(`
worker_processes = 2
error_log        = { path = "logs/error.log", level = "info" }
http {
  init_by_lua = <<-LUA
    %s
  LUA
  server {
    listen = ["127.0.0.1:{{PORT}}"]
    location "= /lua" {
      content_by_lua = <<-LUA
        ngx.say(%q, " from worker ", ngx.worker.id() < ngx.worker.count())
      LUA
    }
    location "= /file" {
      content_by_lua_file = "lua/file.lua"
    }
  }
}
`, init, body)
}

// Lua compile errors are configuration errors: `spindle -t` reports them with their
// position, and a reload with one keeps the old configuration serving; so does a
// reload whose init_by_lua fails in the new workers.
func TestLuaReload(t *testing.T) {
	files := map[string]string{"lua/file.lua": "ngx.say('file v1')\n"}
	inst := e2e.Start(t, luaConf("x = 1", "v1"), &e2e.Options{Files: files})
	get := func(path, want string) {
		t.Helper()
		if _, body, err := inst.Get(path); err != nil || body != want {
			t.Errorf("GET %s = %q, %v; want %q", path, body, err, want)
		}
	}
	get("/lua", "v1 from worker true\n")
	get("/file", "file v1\n")

	conf := filepath.Join(inst.Prefix, "conf/spindle.hcl")
	broken := strings.Replace(luaConf("x = 1", "v2"), `ngx.say(`, `ngx.say((`, 1)
	inst.WriteConfig(broken)
	out, code := inst.Spindle("-t")
	if code == 0 || !strings.Contains(out, conf+":12,1: content_by_lua: Lua syntax error") {
		t.Errorf("spindle -t on a Lua syntax error: exit %d\n%s", code, out)
	}
	out, code = inst.Spindle("-s", "reload")
	if code == 0 || !strings.Contains(out, "content_by_lua: Lua syntax error") {
		t.Errorf("reload with a Lua syntax error: exit %d\n%s", code, out)
	}
	get("/lua", "v1 from worker true\n")

	inst.WriteFile("lua/file.lua", "ngx.say('file v2'\n")
	inst.WriteConfig(luaConf("x = 1", "v2"))
	out, code = inst.Spindle("-s", "reload")
	if code == 0 || !strings.Contains(out, "lua/file.lua") {
		t.Errorf("reload with a broken Lua file: exit %d\n%s", code, out)
	}
	get("/file", "file v1\n")

	inst.WriteFile("lua/file.lua", "ngx.say('file v2')\n")
	inst.WriteConfig(luaConf("require 'no.such.module'", "v2"))
	out, code = inst.Spindle("-s", "reload")
	if code == 0 || !strings.Contains(out, "init_by_lua failed") {
		t.Errorf("reload with a failing init_by_lua: exit %d\n%s", code, out)
	}
	get("/lua", "v1 from worker true\n")

	inst.WriteConfig(luaConf("x = 1", "v2"))
	if out, code := inst.Spindle("-s", "reload"); code != 0 {
		t.Fatalf("reload: exit %d\n%s", code, out)
	}
	get("/lua", "v2 from worker true\n")
	get("/file", "file v2\n")
}

// satisfy is the core's: access_by_lua's verdict counts with allow/deny's, as in
// ngx_lua's t/024-access/satisfy.t. Returning or ngx.exit(ngx.OK) grants access,
// ngx.exit(ngx.DECLINED) leaves it to the others, ngx.exit(403) refuses it; and a
// subrequest skips the access phase.
func TestLuaAccessSatisfy(t *testing.T) {
	loc := func(path, satisfy, rule, lua string) string {
		return fmt.Sprintf(`
    location "= %s" {
      satisfy       = %q
      %s
      access_by_lua = %q
      echo          = "something important"
    }`, path, satisfy, rule, lua)
	}
	config := `
error_log = { path = "logs/error.log", level = "info" }
http {
  server {
    listen = ["127.0.0.1:{{PORT}}"]` +
		loc("/return", "any", `deny = "all"`, "return") +
		loc("/ok", "any", `deny = "all"`, "ngx.exit(ngx.OK)") +
		loc("/declined", "any", `deny = "all"`, "ngx.exit(ngx.DECLINED)") +
		loc("/forbidden", "any", `deny = "all"`, "ngx.exit(403)") +
		loc("/allowed", "any", `allow = "all"`, "ngx.exit(403)") +
		loc("/all", "all", `allow = "all"`, "ngx.exit(403)") +
		loc("/all_ok", "all", `allow = "all"`, "return") + `
    location "= /capture" {
      content_by_lua = "local res = ngx.location.capture('/forbidden') ngx.print(res.status, ' ', res.body)"
    }
  }
}
`
	inst := e2e.Start(t, config, nil)
	for _, c := range []struct {
		path string
		code int
		body string
	}{
		{"/return", 200, "something important\n"},
		{"/ok", 200, "something important\n"},
		{"/declined", 403, ""},
		{"/forbidden", 403, ""},
		{"/allowed", 200, "something important\n"},
		{"/all", 403, ""},
		{"/all_ok", 200, "something important\n"},
		{"/capture", 200, "200 something important\n"},
	} {
		code, body, err := inst.Get(c.path)
		if err != nil || code != c.code || (c.body != "" && body != c.body) {
			t.Errorf("GET %s: %d %q %v; want %d %q", c.path, code, body, err, c.code, c.body)
		}
	}
	if !e2e.WaitFor(5*time.Second, func() bool { return strings.Contains(inst.ErrorLog(), "access forbidden by rule") }) {
		t.Errorf("no \"access forbidden by rule\" in the error log:\n%s", inst.ErrorLog())
	}
}
