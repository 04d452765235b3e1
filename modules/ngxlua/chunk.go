package ngxlua

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/luajit"
	"github.com/spindle-server/spindle/modules/httpcore"
)

// chunk is the code of one *_by_lua directive, checked when the configuration is
// built and loaded by every worker's VM (engine.factory).
type chunk struct {
	directive string // "content_by_lua", as ngx_lua names the context in messages
	name      string // chunk name in Lua errors: content_by_lua(spindle.hcl:12) or the file
	code      string // the source, its shebang line blanked

	file     string         // *_by_lua_file: the file, reloaded with lua_code_cache off
	fileExpr *httpcore.Expr // *_by_lua_file with variables in the path
	prefix   string
}

// checker is a VM that only compiles: the configuration's syntax check. One per
// process, created on first use.
var checker struct {
	sync.Mutex
	vm *luajit.VM
}

// checkSyntax compiles code as chunk name and returns LuaJIT's error, if any.
func checkSyntax(name, code string) error {
	checker.Lock()
	defer checker.Unlock()
	if checker.vm == nil {
		vm, err := luajit.New(luajit.Options{})
		if err != nil {
			return err
		}
		checker.vm = vm
	}
	s := checker.vm.Lock()
	defer s.Unlock()
	ref, err := s.Load(name, code)
	if err != nil {
		return err
	}
	s.Unref(ref)
	return nil
}

// stripShebang blanks a first line starting with '#', as lua(1) and LuaJIT skip it
// (the line count stays).
func stripShebang(src string) string {
	if strings.HasPrefix(src, "#") {
		if i := strings.IndexByte(src, '\n'); i >= 0 {
			return src[i:]
		}
		return ""
	}
	return src
}

// syntaxLine splits LuaJIT's "name:line: message" into its line and message.
func syntaxLine(name string, err error) (int, string) {
	msg := err.Error()
	if le, ok := err.(*luajit.Error); ok {
		msg = le.Message
	}
	rest, ok := strings.CutPrefix(msg, name+":")
	if !ok {
		return 0, msg
	}
	n, m, ok := strings.Cut(rest, ": ")
	if !ok {
		return 0, msg
	}
	line, err2 := strconv.Atoi(n)
	if err2 != nil {
		return 0, msg
	}
	return line, m
}

// inlineChunk compiles the code of `directive = "..."` or a heredoc.
func inlineChunk(c *httpcore.Cmd, directive string) (*chunk, error) {
	a := c.Attr()
	src, err := codeString(a, c.Source())
	if err != nil {
		return nil, err
	}
	return compileInline(directive, src, a.Expr.Range(), a.NameRange, c.Source())
}

func compileInline(directive, src string, valRange, nameRange hcl.Range, srcFiles *conf.Source) (*chunk, error) {
	name := fmt.Sprintf("%s(%s:%d)", directive, filepath.Base(nameRange.Filename), nameRange.Start.Line)
	code := stripShebang(src)
	if err := checkSyntax(name, code); err != nil {
		line, msg := syntaxLine(name, err)
		if line <= 0 {
			line = 1
		}
		first := valRange.Start
		if data := srcFiles.Bundle.Files[valRange.Filename]; valRange.Start.Byte+2 <= len(data) &&
			string(data[valRange.Start.Byte:valRange.Start.Byte+2]) == "<<" {
			first.Line++ // a heredoc's text starts on the next line
		}
		rng := hcl.Range{Filename: valRange.Filename, Start: hcl.Pos{Line: first.Line + line - 1, Column: 1}}
		return nil, conf.Errorf(rng, "%s: Lua syntax error: %s", directive, msg)
	}
	return &chunk{directive: directive, name: name, code: code}, nil
}

// fileChunk compiles the file of `directive_file = "path"` (relative to the prefix).
// A path with variables is resolved and loaded per request.
func fileChunk(c *httpcore.Cmd, directive string) (*chunk, error) {
	a := c.Attr()
	prefix := c.Config().Main.Prefix
	if len(a.Expr.Variables()) > 0 {
		x, err := c.Expr(a.Expr)
		if err != nil {
			return nil, err
		}
		return &chunk{directive: directive, fileExpr: x, prefix: prefix}, nil
	}
	p, err := conf.String(a)
	if err != nil {
		return nil, err
	}
	if p == "" {
		return nil, conf.Errorf(a.Expr.Range(), "%s needs a file name", directive)
	}
	path := conf.Resolve(prefix, p)
	code, err := loadLuaFile(path)
	if err != nil {
		return nil, conf.Errorf(a.Expr.Range(), "%s: %v", directive, err)
	}
	return &chunk{directive: directive, file: path, name: path, prefix: prefix, code: code}, nil
}

// loadLuaFile reads a Lua file and checks its syntax; errors say path:line.
func loadLuaFile(path string) (string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		if pe, ok := err.(*os.PathError); ok {
			return "", fmt.Errorf("cannot open %s: %v", path, pe.Err)
		}
		return "", err
	}
	code := stripShebang(string(src))
	if err := checkSyntax(path, code); err != nil {
		line, msg := syntaxLine(path, err)
		return "", fmt.Errorf("%s:%d: %s", path, line, msg)
	}
	return code, nil
}

// factoryCode wraps a chunk in a function that returns a new closure of it: each run
// gets a closure of its own, whose environment it can set without touching other
// runs suspended in the same code. The first line keeps its number.
func factoryCode(code string) string {
	return "return function(...) " + code + "\nend"
}

// codeString decodes a Lua code value: a static string. HCL would interpolate ${...}
// and %{...} in it, silently when they hold constants, so they are refused with a
// hint on how to write them.
func codeString(attr *hclsyntax.Attribute, src *conf.Source) (string, error) {
	rng := attr.Expr.Range()
	if data := src.Bundle.Files[rng.Filename]; rng.End.Byte <= len(data) {
		text := data[rng.Start.Byte:rng.End.Byte]
		for i := 0; i+1 < len(text); i++ {
			if (text[i] == '$' || text[i] == '%') && text[i+1] == '{' && (i == 0 || text[i-1] != text[i]) {
				pos := rng.Start
				for _, b := range text[:i] {
					if b == '\n' {
						pos.Line++
						pos.Column = 1
					} else {
						pos.Column++
					}
				}
				m := string(text[i])
				return "", conf.Errorf(hcl.Range{Filename: rng.Filename, Start: pos},
					"HCL reads %s{...} in a string as a template; write %s%s{ for a literal %s{ in Lua code", m, m, m, m)
			}
		}
	}
	return conf.String(attr)
}
