package ngxlua_test

import (
	"strings"
	"testing"
)

// Configuration errors carry the position of the problem in the config file; Lua
// syntax errors point at their line inside the code.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, conf, want string
	}{
		{"syntax error in a heredoc", `
    location "/" {
      content_by_lua = <<-LUA
        local x = 1
        if x then
          ngx.say("x"
        end
      LUA
    }`, "spindle.hcl:10,1: content_by_lua: Lua syntax error"},
		{"syntax error in a string", `
    location "/" {
      rewrite_by_lua = "local = 1"
    }`, "spindle.hcl:6,1: rewrite_by_lua: Lua syntax error"},
		{"syntax error in a file", `
    location "/" {
      content_by_lua_file = "lua/bad.lua"
    }`, "spindle.hcl:6,29: content_by_lua: /"},
		{"missing file", `
    location "/" {
      access_by_lua_file = "lua/none.lua"
    }`, "cannot open"},
		{"template in code", `
    location "/" {
      content_by_lua = <<-LUA
        ngx.say("${1}")
      LUA
    }`, "spindle.hcl:7,18: HCL reads ${...} in a string as a template; write $${ for a literal ${ in Lua code"},
		{"shared dict", `
    location "/" {}
  }
  lua_shared_dict = "dogs 1m"
  server {`, "lua_shared_dict: ngx.shared dictionaries are not implemented yet"},
		{"duplicate content", `
    location "/" {
      content_by_lua = "ngx.say(1)"
      content_by_lua_file = "lua/ok.lua"
    }`, "content_by_lua_file is duplicate"},
		{"content with echo", `
    location "/" {
      content_by_lua = "ngx.say(1)"
      echo = "x"
    }`, "already set"},
		{"set_by_lua without code", `
    location "/" {
      set_by_lua "x" { args = ["a"] }
    }`, "set_by_lua needs code = ..."},
		{"set_by_lua unknown field", `
    location "/" {
      set_by_lua "x" {
        code = "return 1"
        arg  = ["a"]
      }
    }`, "unknown field \"arg\""},
		{"set_by_lua builtin variable", `
    location "/" {
      set_by_lua "uri" { code = "return 1" }
    }`, "built in and cannot be set"},
		{"content_by_lua in server", `
    content_by_lua = "ngx.say(1)"`, "not allowed in server context"},
		{"init in location", `
    location "/" { init_by_lua = "x = 1" }`, "not allowed in location context"},
		{"bad run time", `
    lua_max_run_time = "soon"`, "invalid time"},
	}
	files := map[string]string{"lua/bad.lua": "local x = \n", "lua/ok.lua": "ngx.say(1)\n"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := "http {\n  server {\n    listen = [\"127.0.0.1:0\"]\n" + c.conf + "\n  }\n}\n"
			_, err := buildFiles(t, conf, files)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}
