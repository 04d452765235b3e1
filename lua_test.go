package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

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
