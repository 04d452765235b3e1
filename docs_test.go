package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/master"
	"github.com/spindle-server/spindle/modules/httpcore"
	"github.com/spindle-server/spindle/modules/upstream"
)

// Every example in conf/README.md must load. A fence's info string says where the
// example goes: "hcl" is a whole config; "hcl http", "hcl server" and "hcl location"
// are fragments placed in that context of a minimal config.
func TestDirectiveReferenceExamplesLoad(t *testing.T) {
	doc, err := os.ReadFile("conf/README.md")
	if err != nil {
		t.Fatal(err)
	}
	fence := regexp.MustCompile("(?ms)^```hcl( [a-z]+)?\n(.*?)^```")
	blocks := fence.FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 10 {
		t.Fatalf("only %d examples in conf/README.md", len(blocks))
	}
	for i, b := range blocks {
		ctx, src := strings.TrimSpace(b[1]), b[2]
		var config string
		switch ctx {
		case "":
			config = src
		case "http":
			config = "http {\n" + src + "\n}\n"
		case "server":
			listen := "    listen = [\"127.0.0.1:8080\"]\n"
			if strings.Contains(src, "listen =") {
				listen = ""
			}
			config = "http {\n  server {\n" + listen + src + "\n  }\n}\n"
		case "location":
			config = "http {\n  server {\n    listen = [\"127.0.0.1:8080\"]\n    location \"/\" {\n" + src + "\n    }\n  }\n}\n"
		default:
			t.Fatalf("example %d: unknown context %q", i, ctx)
		}
		prefix := t.TempDir()
		os.MkdirAll(filepath.Join(prefix, "conf"), 0o755)
		os.MkdirAll(filepath.Join(prefix, "html"), 0o755)
		// Lua files an example names (content_by_lua_file = "lua/x.lua") exist.
		for _, m := range luaFile.FindAllStringSubmatch(src, -1) {
			os.MkdirAll(filepath.Join(prefix, filepath.Dir(m[1])), 0o755)
			os.WriteFile(filepath.Join(prefix, m[1]), []byte("local example = true\n"), 0o644)
		}
		os.WriteFile(filepath.Join(prefix, "conf/spindle.hcl"), []byte(config), 0o644)
		if _, _, err := master.Load(prefix, filepath.Join(prefix, "conf/spindle.hcl")); err != nil {
			t.Errorf("example %d (%s) does not load:\n%s\n%v", i, ctx, src, err)
		}
	}
}

var luaFile = regexp.MustCompile(`"(lua/[\w./-]+\.lua)"`)

// Every directive of every module is documented with a heading of its own.
func TestEveryDirectiveDocumented(t *testing.T) {
	doc, err := os.ReadFile("conf/README.md")
	if err != nil {
		t.Fatal(err)
	}
	names := append(conf.Directives(), httpcore.DirectiveNames()...)
	for _, n := range names {
		if !strings.Contains(string(doc), "\n### "+n+"\n") {
			t.Errorf("directive %q has no \"### %s\" section in conf/README.md", n, n)
		}
	}
	// The settings of an upstream block are rows of the upstream section's table.
	for _, n := range upstream.Settings.Names() {
		row := regexp.MustCompile("(?m)^\\| [^\n]*`" + regexp.QuoteMeta(n) + "`[^\n]*\\|")
		if !row.MatchString(string(doc)) {
			t.Errorf("upstream setting %q has no row in conf/README.md's upstream table", n)
		}
	}
}
