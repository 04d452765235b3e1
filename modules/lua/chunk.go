package lua

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// chunk is the code of one *_by_lua directive, compiled when the configuration is
// built. Workers share its FunctionProto; functions are made from it per VM.
type chunk struct {
	directive string // "content_by_lua", as ngx_lua names the context in messages
	name      string // chunk name in Lua errors: content_by_lua(spindle.hcl:12) or the file
	proto     *glua.FunctionProto
	// pure chunks write no global variable (see isPure): they run with the shared
	// globals as their environment, without a per-request table.
	pure bool
	fn   *glua.LFunction // the function of a pure chunk, made once per VM

	file     string         // *_by_lua_file: the file, reloaded with lua_code_cache off
	fileExpr *httpcore.Expr // *_by_lua_file with variables in the path
	prefix   string
}

// compileLua compiles Lua source under a chunk name, as LuaJIT's loadstring: the
// result keeps no `arg` table for vararg functions (Lua 5.1's compatibility feature,
// which neither LuaJIT nor OpenResty has and which costs an allocation per call).
func compileLua(src []byte, name string) (*glua.FunctionProto, error) {
	if len(src) > 0 && src[0] == '#' {
		// A shebang line, skipped as lua(1) and LuaJIT skip it (the line count stays).
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			src = src[i:]
		} else {
			src = nil
		}
	}
	stmts, err := parse.Parse(bytes.NewReader(src), name)
	if err != nil {
		return nil, err
	}
	proto, err := glua.Compile(stmts, name)
	if err != nil {
		return nil, err
	}
	noCompatArg(proto)
	return proto, nil
}

func noCompatArg(p *glua.FunctionProto) {
	p.IsVarArg &^= glua.VarArgNeedsArg
	for _, c := range p.FunctionPrototypes {
		noCompatArg(c)
	}
}

// Globals whose use lets code write the environment without a SETGLOBAL
// instruction: such chunks get a per-request environment like any other.
var envAccess = map[string]bool{
	"_G": true, "getfenv": true, "setfenv": true, "module": true,
	"loadstring": true, "load": true, "loadfile": true, "dofile": true,
}

// isPure reports whether code can never write a global variable: no function in it
// assigns a global or reaches the environment through _G, getfenv and friends. Such
// code behaves the same with the shared globals as with a fresh table over them, and
// is run without one (a table and a metatable hop for every global read saved).
func isPure(p *glua.FunctionProto) bool {
	for _, inst := range p.Code {
		switch int(inst >> 26) {
		case glua.OP_SETGLOBAL:
			return false
		case glua.OP_GETGLOBAL:
			if k, ok := p.Constants[inst&0x3ffff].(glua.LString); ok && envAccess[string(k)] {
				return false
			}
		}
	}
	for _, c := range p.FunctionPrototypes {
		if !isPure(c) {
			return false
		}
	}
	return true
}

// luaError turns a gopher-lua syntax or compile error into a configuration error at
// the position of the code in the configuration file. first is the position of the
// chunk's first line.
func luaError(directive string, err error, first hcl.Pos, file string, lines int) error {
	line, msg := 0, err.Error()
	var pe *parse.Error
	var ce *glua.CompileError
	switch {
	case errors.As(err, &pe):
		line = pe.Pos.Line
		msg = pe.Message
		if line < 0 {
			msg += " at the end of the code"
			line = lines
		} else if pe.Token != "" {
			msg = fmt.Sprintf("%s near '%s'", pe.Message, pe.Token)
		}
	case errors.As(err, &ce):
		line, msg = ce.Line, ce.Message
	}
	msg = strings.TrimSpace(msg)
	if line <= 0 {
		line = 1
	}
	rng := hcl.Range{Filename: file, Start: hcl.Pos{Line: first.Line + line - 1, Column: 1}}
	if file == "" {
		return fmt.Errorf("%s: Lua error at line %d: %s", directive, line, msg)
	}
	return conf.Errorf(rng, "%s: Lua syntax error: %s", directive, msg)
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
	proto, err := compileLua([]byte(src), name)
	if err != nil {
		first := valRange.Start
		if data := srcFiles.Bundle.Files[valRange.Filename]; valRange.Start.Byte+2 <= len(data) &&
			string(data[valRange.Start.Byte:valRange.Start.Byte+2]) == "<<" {
			first.Line++ // a heredoc's text starts on the next line
		}
		return nil, luaError(directive, err, first, valRange.Filename, strings.Count(strings.TrimRight(src, "\n"), "\n")+1)
	}
	return &chunk{directive: directive, name: name, proto: proto, pure: isPure(proto)}, nil
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
	ch := &chunk{directive: directive, file: path, name: path, prefix: prefix}
	proto, err := loadLuaFile(path)
	if err != nil {
		return nil, conf.Errorf(a.Expr.Range(), "%s: %v", directive, err)
	}
	ch.proto, ch.pure = proto, isPure(proto)
	return ch, nil
}

// loadLuaFile reads and compiles a Lua file; the chunk is named by its path.
func loadLuaFile(path string) (*glua.FunctionProto, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		if pe, ok := err.(*os.PathError); ok {
			return nil, fmt.Errorf("cannot open %s: %v", path, pe.Err)
		}
		return nil, err
	}
	proto, err := compileLua(src, path)
	if err != nil {
		var pe *parse.Error
		var ce *glua.CompileError
		switch {
		case errors.As(err, &pe) && pe.Pos.Line < 0:
			return nil, fmt.Errorf("%s: %s at the end of the file", path, pe.Message)
		case errors.As(err, &pe):
			return nil, fmt.Errorf("%s:%d: %s near '%s'", path, pe.Pos.Line, pe.Message, pe.Token)
		case errors.As(err, &ce):
			return nil, fmt.Errorf("%s:%d: %s", path, ce.Line, ce.Message)
		}
		return nil, err
	}
	return proto, nil
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

// maxCachedFiles bounds the compiled files of *_by_lua_file paths with variables a
// worker keeps.
const maxCachedFiles = 1024

// fileCache holds the chunks of *_by_lua_file paths computed per request.
type fileCache struct {
	mu sync.Mutex
	m  map[string]*glua.FunctionProto
}

// chunkFunction returns the Lua function to run a chunk: a pure chunk's shared
// function, or a function over a fresh environment whose metatable reads the shared
// globals, so that what a request writes to globals stays its own (ngx_lua's
// per-request sandbox). With lua_code_cache off a file chunk is read again.
func (v *vm) chunkFunction(ru *run, ch *chunk) (*glua.LFunction, error) {
	if ch.fn != nil && (ch.file == "" || ru.conf == nil || ru.conf.codeCache) {
		return ch.fn, nil
	}
	proto, pure := ch.proto, ch.pure
	if ch.fileExpr != nil || (ch.file != "" && ru.conf != nil && !ru.conf.codeCache) {
		path := ch.file
		if ch.fileExpr != nil {
			p, err := ch.fileExpr.String(ru.r)
			if err != nil {
				return nil, err
			}
			path = conf.Resolve(ch.prefix, p)
		}
		ru.chunkName = path
		var err error
		if proto, err = v.loadFileChunk(path, ru.conf == nil || ru.conf.codeCache); err != nil {
			return nil, err
		}
		pure = isPure(proto)
	}
	if pure {
		return &glua.LFunction{Proto: proto, Env: v.globals}, nil
	}
	// Sized for a few globals: gopher-lua's default reserves 32.
	env := v.L.CreateTable(0, 4)
	env.Metatable = v.envMeta
	env.RawSetString("_G", env)
	return &glua.LFunction{Proto: proto, Env: env}, nil
}

func (v *vm) loadFileChunk(path string, cache bool) (*glua.FunctionProto, error) {
	if cache {
		v.files.mu.Lock()
		p := v.files.m[path]
		v.files.mu.Unlock()
		if p != nil {
			return p, nil
		}
	}
	p, err := loadLuaFile(path)
	if err != nil {
		return nil, err
	}
	if cache {
		v.files.mu.Lock()
		if v.files.m == nil {
			v.files.m = map[string]*glua.FunctionProto{}
		}
		// Paths come from request variables: bound what they can make a worker keep.
		if len(v.files.m) < maxCachedFiles {
			v.files.m[path] = p
		}
		v.files.mu.Unlock()
	}
	return p, nil
}

// prepareChunks makes the shared functions of the configuration's pure chunks.
func (v *vm) prepareChunks() {
	for _, ch := range v.main.chunks {
		if ch.pure && ch.proto != nil && ch.fileExpr == nil {
			ch.fn = &glua.LFunction{Proto: ch.proto, Env: v.globals}
		}
	}
}
