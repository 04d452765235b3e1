package lua

import (
	"errors"
	"net"
	"strconv"
	"strings"

	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// installReq adds ngx.req: the request's method, URI, arguments, headers and body.
func (v *vm) installReq(ngx *glua.LTable) {
	L := v.L
	req := L.NewTable()
	setFuncs(L, req, map[string]glua.LGFunction{
		"get_method": func(L *glua.LState) int {
			_, r := v.request(L)
			L.Push(glua.LString(r.Method()))
			return 1
		},
		"set_method":    v.reqSetMethod,
		"get_uri_args":  v.reqGetURIArgs,
		"set_uri_args":  v.reqSetURIArgs,
		"get_post_args": v.reqGetPostArgs,
		"get_headers":   v.reqGetHeaders,
		"set_header":    v.reqSetHeader,
		"clear_header": func(L *glua.LState) int {
			_, r := v.request(L)
			r.SetHeader(httpcore.EscapeHeaderName(L.CheckString(1)), "")
			return 0
		},
		"read_body":     v.reqReadBody,
		"discard_body":  v.reqDiscardBody,
		"get_body_data": v.reqGetBodyData,
		"get_body_file": v.reqGetBodyFile,
		"set_body_data": v.reqSetBodyData,
		"set_uri":       v.reqSetURI,
		"http_version": func(L *glua.LState) int {
			_, r := v.request(L)
			if r.Proto() == "HTTP/1.0" {
				L.Push(glua.LNumber(1.0))
			} else {
				L.Push(glua.LNumber(1.1))
			}
			return 1
		},
		"start_time": func(L *glua.LState) int {
			_, r := v.request(L)
			L.Push(glua.LNumber(float64(r.StartTime().UnixMilli()) / 1000))
			return 1
		},
		"is_internal": func(L *glua.LState) int {
			_, r := v.request(L)
			L.Push(glua.LBool(r.Internal()))
			return 1
		},
		"raw_header": v.reqRawHeader,
	})
	ngx.RawSetString("req", req)

	// get_headers() results find "Content-Type", "content_type" and "content-type".
	v.hdrsMeta = L.NewTable()
	v.hdrsMeta.RawSetString("__index", L.NewFunction(func(L *glua.LState) int {
		tbl := L.CheckTable(1)
		k, ok := L.Get(2).(glua.LString)
		if !ok {
			L.Push(glua.LNil)
			return 1
		}
		norm := strings.ToLower(strings.ReplaceAll(string(k), "_", "-"))
		if norm == string(k) {
			L.Push(glua.LNil)
			return 1
		}
		L.Push(tbl.RawGetString(norm))
		return 1
	}))
}

func (v *vm) reqSetMethod(L *glua.LState) int {
	_, r := v.request(L)
	name, ok := methodName(checkInt(L, 1))
	if !ok {
		L.ArgError(1, "unsupported HTTP method: "+strconv.Itoa(checkInt(L, 1)))
	}
	r.SetMethod(name)
	return 0
}

func (v *vm) reqGetURIArgs(L *glua.LState) int {
	_, r := v.request(L)
	return decodeArgsInto(L, r.Args(), optInt(L, 1, 100), L.OptTable(2, nil))
}

func (v *vm) reqSetURIArgs(L *glua.LState) int {
	_, r := v.request(L)
	r.SetArgs(v.argsString(L, 1))
	return 0
}

func (v *vm) reqGetPostArgs(L *glua.LState) int {
	_, r := v.request(L)
	d := peekData(r)
	if d == nil || !d.bodyRead {
		L.RaiseError("request body not read: call ngx.req.read_body() first (or set lua_need_request_body)")
	}
	body, _ := r.Body()
	return decodeArgsInto(L, string(body), optInt(L, 1, 100), nil)
}

// decodeArgsInto pushes a table of query arguments: values unescaped, repeated names
// as arrays, names without "=" as true; and "truncated" past max (0: no limit).
func decodeArgsInto(L *glua.LState, s string, max int, tbl *glua.LTable) int {
	if tbl == nil {
		tbl = L.CreateTable(0, 4)
	}
	n := 0
	truncated := false
	for s != "" {
		var kv string
		kv, s, _ = strings.Cut(s, "&")
		if kv == "" {
			continue
		}
		if max > 0 && n >= max {
			truncated = true
			break
		}
		n++
		k, val, hasVal := strings.Cut(kv, "=")
		key := glua.LString(unescapeArg(k))
		var lv glua.LValue = glua.LTrue
		if hasVal {
			lv = glua.LString(unescapeArg(val))
		}
		switch prev := tbl.RawGet(key).(type) {
		case *glua.LNilType:
			tbl.RawSet(key, lv)
		case *glua.LTable:
			prev.Append(lv)
		default:
			arr := L.CreateTable(2, 0)
			arr.Append(prev)
			arr.Append(lv)
			tbl.RawSet(key, arr)
		}
	}
	L.Push(tbl)
	if truncated {
		L.Push(glua.LString("truncated"))
		return 2
	}
	return 1
}

func (v *vm) reqGetHeaders(L *glua.LState) int {
	_, r := v.request(L)
	h := v.newHeaderTable(L, 8)
	r.VisitHeaders(h.add)
	return h.push(L)
}

// headerTable builds the table of ngx.req.get_headers and ngx.resp.get_headers: at most
// max headers (argument 1, default 100), names lowercased unless raw (argument 2), a
// repeated header as an array of its values.
type headerTable struct {
	v         *vm
	L         *glua.LState
	tbl       *glua.LTable
	max, n    int
	raw       bool
	truncated bool
}

func (v *vm) newHeaderTable(L *glua.LState, size int) *headerTable {
	return &headerTable{v: v, L: L, max: optInt(L, 1, 100), raw: L.OptBool(2, false), tbl: L.CreateTable(0, size)}
}

func (h *headerTable) add(k, val string) {
	if h.truncated {
		return
	}
	if h.max > 0 && h.n >= h.max {
		h.truncated = true
		return
	}
	h.n++
	if !h.raw {
		k = strings.ToLower(k)
	}
	key := glua.LString(k)
	switch prev := h.tbl.RawGet(key).(type) {
	case *glua.LNilType:
		h.tbl.RawSet(key, glua.LString(val))
	case *glua.LTable:
		prev.Append(glua.LString(val))
	default:
		arr := h.L.CreateTable(2, 0)
		arr.Append(prev)
		arr.Append(glua.LString(val))
		h.tbl.RawSet(key, arr)
	}
}

// push returns the table to Lua, with "truncated" when max cut it short.
func (h *headerTable) push(L *glua.LState) int {
	if !h.raw {
		h.tbl.Metatable = h.v.hdrsMeta
	}
	L.Push(h.tbl)
	if h.truncated {
		L.Push(glua.LString("truncated"))
		return 2
	}
	return 1
}

// reqSetHeader is ngx.req.set_header. As ngx_lua (t/028-req-header.t TEST 62-66),
// the name and values are %-escaped where they could end or split a header line:
// ngx.var.http_NAME, ngx.req.get_headers and the request sent upstream all see the
// escaped bytes.
func (v *vm) reqSetHeader(L *glua.LState) int {
	_, r := v.request(L)
	name := httpcore.EscapeHeaderName(L.CheckString(1))
	switch x := L.Get(2).(type) {
	case *glua.LNilType:
		r.SetHeader(name, "")
	case *glua.LTable:
		r.SetHeader(name, "")
		for i := 1; i <= x.MaxN(); i++ {
			r.AddHeader(name, httpcore.EscapeHeaderValue(L.ToStringMeta(x.RawGetInt(i)).String()))
		}
	case glua.LString:
		r.SetHeader(name, httpcore.EscapeHeaderValue(string(x)))
	case glua.LNumber:
		r.SetHeader(name, string(appendNumber(nil, float64(x))))
	default:
		L.ArgError(2, "string, number, table or nil expected")
	}
	return 0
}

// readBody reads the whole request body into memory; the status says why it failed.
func readBody(r *httpcore.Request) int {
	_, err := r.Body()
	if err != nil {
		if errors.Is(err, httpcore.ErrBodyTooLarge) {
			return 413
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return 408
		}
		return 400
	}
	dataOf(r).bodyRead = true
	return 0
}

func (v *vm) reqReadBody(L *glua.LState) int {
	t, r := v.request(L)
	if !t.run.phase.canOutput() {
		return apiDisabled(L, "ngx.req.read_body", t.run.phase)
	}
	if d := peekData(r); d != nil && d.bodyRead {
		return 0
	}
	status := 0
	v.busy(t, func() { status = readBody(r) })
	if status != 0 {
		// As ngx_lua: a body that cannot be read ends the request.
		t.run.exit, t.run.code = exitStatus, status
		return v.unwind(t)
	}
	return 0
}

func (v *vm) reqDiscardBody(L *glua.LState) int {
	t, r := v.request(L)
	if !t.run.phase.canOutput() {
		return apiDisabled(L, "ngx.req.discard_body", t.run.phase)
	}
	v.busy(t, func() { r.Body() })
	return 0
}

func (v *vm) reqGetBodyData(L *glua.LState) int {
	_, r := v.request(L)
	d := peekData(r)
	if d == nil || !d.bodyRead || r.BodyFile() != "" {
		// As OpenResty: nil when the body was buffered to a file (get_body_file).
		L.Push(glua.LNil)
		return 1
	}
	body, err := r.Body()
	if err != nil || len(body) == 0 {
		L.Push(glua.LNil)
		return 1
	}
	if max := optInt(L, 1, 0); max > 0 && len(body) > max {
		body = body[:max]
	}
	L.Push(glua.LString(body))
	return 1
}

func (v *vm) reqSetBodyData(L *glua.LState) int {
	_, r := v.request(L)
	data := L.CheckString(1)
	r.SetBody([]byte(data))
	r.SetHeader("Content-Length", strconv.Itoa(len(data)))
	dataOf(r).bodyRead = true
	return 0
}

// reqSetURI is ngx.req.set_uri(uri, jump): with jump (rewrite_by_lua only) the
// location is searched again for the new URI, as `rewrite ... last`.
func (v *vm) reqSetURI(L *glua.LState) int {
	t, r := v.request(L)
	uri := L.CheckString(1)
	if uri == "" {
		L.ArgError(1, "attempt to use zero-length uri")
	}
	jump := L.OptBool(2, false)
	if jump && t.run.phase != phaseRewrite {
		L.RaiseError("API disabled in the context of %s (ngx.req.set_uri with jump is only allowed in rewrite_by_lua*)", t.run.phase.directive())
	}
	r.SetURI(uri)
	if jump {
		t.run.exit = exitJump
		return v.unwind(t)
	}
	return 0
}

func (v *vm) reqRawHeader(L *glua.LState) int {
	_, r := v.request(L)
	var sb strings.Builder
	if !L.OptBool(1, false) {
		m := r.Main()
		sb.WriteString(m.Method() + " " + m.RequestURI() + " " + m.Proto() + "\r\n")
	}
	r.VisitHeaders(func(k, val string) {
		sb.WriteString(k)
		sb.WriteString(": ")
		sb.WriteString(val)
		sb.WriteString("\r\n")
	})
	sb.WriteString("\r\n")
	L.Push(glua.LString(sb.String()))
	return 1
}

// reqGetBodyFile is ngx.req.get_body_file: the temporary file holding the body read
// by ngx.req.read_body when it was larger than client_body_buffer_size, else nil.
func (v *vm) reqGetBodyFile(L *glua.LState) int {
	_, r := v.request(L)
	d := peekData(r)
	if name := r.BodyFile(); d != nil && d.bodyRead && name != "" {
		L.Push(glua.LString(name))
		return 1
	}
	L.Push(glua.LNil)
	return 1
}
