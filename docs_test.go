package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/e2e"
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
			if regexp.MustCompile(`(?m)^\s*listen\s*=`).MatchString(src) {
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
		if strings.Contains(src, "certs/") {
			writeExampleCerts(t, filepath.Join(prefix, "certs"))
		}
		os.WriteFile(filepath.Join(prefix, "conf/spindle.hcl"), []byte(config), 0o644)
		if _, _, err := master.Load(prefix, filepath.Join(prefix, "conf/spindle.hcl")); err != nil {
			t.Errorf("example %d (%s) does not load:\n%s\n%v", i, ctx, src, err)
		}
	}
}

// writeExampleCerts makes the files the TLS examples name.
func writeExampleCerts(t *testing.T, dir string) {
	os.MkdirAll(dir, 0o755)
	ca := e2e.NewCA(t, dir, "ca")
	ca.Issue("example.com", e2e.ECDSA, false, "example.com")
	ca.Issue("example.com.rsa", e2e.RSA, false, "example.com")
	for _, f := range []string{"ticket.key", "ticket.previous.key"} {
		os.WriteFile(filepath.Join(dir, f), make([]byte, 80), 0o600)
	}
	os.WriteFile(filepath.Join(dir, "ocsp.der"), []byte{0x30, 0x03, 0x0a, 0x01, 0x00}, 0o644)
	os.WriteFile(filepath.Join(dir, "dhparam.pem"), []byte(ffdhe2048), 0o644)
}

// ffdhe2048 is RFC 7919's group as `openssl genpkey -genparam -algorithm DH -pkeyopt
// dh_param:ffdhe2048` writes it, for the ssl_dhparam example.
const ffdhe2048 = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`

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
	// The settings of the acme block likewise.
	for _, n := range httpcore.ACMESettingsTable.Names() {
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(n) + "` \\|")
		if !row.MatchString(string(doc)) {
			t.Errorf("acme setting %q has no row in conf/README.md's acme table", n)
		}
	}
}
