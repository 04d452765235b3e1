package lua

import (
	"strconv"
	"strings"

	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// installResp adds ngx.header (response headers: read, write, multi-value) and
// ngx.resp.get_headers.
func (v *vm) installResp(ngx *glua.LTable) {
	L := v.L
	hdr := L.NewTable()
	meta := L.NewTable()
	meta.RawSetString("__index", L.NewFunction(v.headerIndex))
	meta.RawSetString("__newindex", L.NewFunction(v.headerNewIndex))
	hdr.Metatable = meta
	ngx.RawSetString("header", hdr)

	resp := L.NewTable()
	setFuncs(L, resp, map[string]glua.LGFunction{"get_headers": v.respGetHeaders, "add_header": v.respAddHeader})
	ngx.RawSetString("resp", resp)
	// lua-resty-core's ngx.resp module: require "ngx.resp" gives the same functions.
	v.loaded.RawSetString("ngx.resp", resp)
}

// headerName maps ngx.header.content_type to Content-Type, as ngx_lua with
// lua_transform_underscores_in_response_headers on (its default).
func headerName(k string) string { return strings.ReplaceAll(k, "_", "-") }

func (v *vm) headerIndex(L *glua.LState) int {
	_, r := v.request(L)
	name := headerName(L.CheckString(2))
	if strings.EqualFold(name, "Content-Length") {
		if n := r.ContentLength(); n >= 0 {
			L.Push(glua.LString(strconv.FormatInt(n, 10)))
		} else {
			L.Push(glua.LNil)
		}
		return 1
	}
	vals := r.RespHeader().Values(name)
	switch len(vals) {
	case 0:
		L.Push(glua.LNil)
	case 1:
		L.Push(glua.LString(vals[0]))
	default:
		arr := L.CreateTable(len(vals), 0)
		for _, s := range vals {
			arr.Append(glua.LString(s))
		}
		L.Push(arr)
	}
	return 1
}

func (v *vm) headerNewIndex(L *glua.LState) int {
	return v.setRespHeader(L, "ngx.header", L.CheckString(2), 3, true)
}

// respAddHeader is ngx.resp.add_header(name, value) (lua-resty-core): ngx.header's
// rules, but the values are added to those the header has.
func (v *vm) respAddHeader(L *glua.LState) int {
	if L.Get(2) == glua.LNil {
		L.ArgError(2, "invalid header value")
	}
	return v.setRespHeader(L, "ngx.resp.add_header", L.CheckString(1), 2, false)
}

// setRespHeader sets (override) or adds the response header name to the value at
// stack index arg: a string, number, boolean, a table of them, or nil to delete.
func (v *vm) setRespHeader(L *glua.LState, api, name string, arg int, override bool) int {
	t, r := v.request(L)
	p := t.run.phase
	switch p {
	case phaseRewrite, phaseAccess, phaseContent, phaseHeaderFilter, phaseBodyFilter, phaseSet:
	default:
		return apiDisabled(L, api, p)
	}
	name = headerName(name)
	if r.HeaderSent() && p != phaseHeaderFilter {
		r.Logf(httpcore.LogError, "attempt to set ngx.header.HEADER after sending out response headers")
		return 0
	}
	var vals []string
	switch x := L.Get(arg).(type) {
	case *glua.LNilType:
	case *glua.LTable:
		for i := 1; i <= x.MaxN(); i++ {
			vals = append(vals, L.ToStringMeta(x.RawGetInt(i)).String())
		}
	case glua.LString:
		vals = []string{string(x)}
	case glua.LNumber:
		vals = []string{string(appendNumber(nil, float64(x)))}
	case glua.LBool:
		vals = []string{strconv.FormatBool(bool(x))}
	default:
		L.ArgError(arg, "string, number, table or nil expected")
	}
	// As ngx_lua (t/016-resp-header.t TEST 87-93): the bytes that could end or split
	// the line are %-escaped, in the name and in every value, and reading the header
	// back gives what goes on the wire.
	name = httpcore.EscapeHeaderName(name)
	for i, s := range vals {
		vals[i] = httpcore.EscapeHeaderValue(s)
	}
	if strings.EqualFold(name, "Content-Length") {
		n := int64(-1)
		if len(vals) > 0 {
			var err error
			if n, err = strconv.ParseInt(vals[len(vals)-1], 10, 64); err != nil || n < 0 {
				L.RaiseError("invalid Content-Length %q", vals[len(vals)-1])
			}
		}
		r.SetContentLength(n)
		return 0
	}
	h := r.RespHeader()
	if override || strings.EqualFold(name, "Content-Type") {
		h.Del(name)
	}
	for _, s := range vals {
		h.Add(name, s)
	}
	return 0
}

func (v *vm) respGetHeaders(L *glua.LState) int {
	_, r := v.request(L)
	h := v.newHeaderTable(L, r.RespHeader().Len()+2)
	for _, f := range r.RespHeader().Fields() {
		h.add(f.Key, f.Value)
	}
	if cl := r.ContentLength(); cl >= 0 {
		h.add("Content-Length", strconv.FormatInt(cl, 10))
	}
	return h.push(L)
}
