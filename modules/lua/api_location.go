package lua

import (
	"strconv"
	"strings"

	"github.com/spindle-server/spindle/modules/httpcore"
	glua "github.com/yuin/gopher-lua"
)

// installLocation adds ngx.location.capture and capture_multi: subrequests run in
// process, concurrently for capture_multi, their responses buffered.
func (v *vm) installLocation(ngx *glua.LTable) {
	L := v.L
	loc := L.NewTable()
	setFuncs(L, loc, map[string]glua.LGFunction{
		"capture": func(L *glua.LState) int {
			t, _ := v.request(L)
			uri := L.CheckString(1)
			spec := captureSpec{uri: uri}
			if L.GetTop() >= 2 && L.Get(2) != glua.LNil {
				spec.opts = L.CheckTable(2)
			}
			return v.capture(L, t, []captureSpec{spec})
		},
		"capture_multi": func(L *glua.LState) int {
			t, _ := v.request(L)
			list := L.CheckTable(1)
			var buf [4]captureSpec
			specs := buf[:0]
			for i := 1; i <= list.MaxN(); i++ {
				item, ok := list.RawGetInt(i).(*glua.LTable)
				if !ok {
					L.ArgError(1, "capture_multi: each element must be a table { uri, options }")
				}
				uri, ok := item.RawGetInt(1).(glua.LString)
				if !ok {
					L.ArgError(1, "capture_multi: the uri of element "+strconv.Itoa(i)+" must be a string")
				}
				spec := captureSpec{uri: string(uri)}
				if o, ok := item.RawGetInt(2).(*glua.LTable); ok {
					spec.opts = o
				}
				specs = append(specs, spec)
			}
			if len(specs) == 0 {
				L.ArgError(1, "at least one subrequest should be specified")
			}
			return v.capture(L, t, specs)
		},
	})
	ngx.RawSetString("location", loc)
}

// statusValues are the LValues of the HTTP status codes, boxed once: boxing a number
// allocates.
var statusValues = func() (vs [600]glua.LValue) {
	for i := range vs {
		vs[i] = glua.LNumber(i)
	}
	return vs
}()

func statusValue(code int) glua.LValue {
	if code >= 0 && code < len(statusValues) {
		return statusValues[code]
	}
	return glua.LNumber(code)
}

type captureSpec struct {
	uri  string
	opts *glua.LTable
}

// capture issues the subrequests, waits for all of them with the VM unlocked and
// pushes one result table per subrequest: { status, header, body, truncated }.
func (v *vm) capture(L *glua.LState, t *thread, specs []captureSpec) int {
	ru := t.run
	if !ru.phase.canOutput() {
		return apiDisabled(L, "ngx.location.capture", ru.phase)
	}
	r := ru.r
	subs := make([]*httpcore.Request, 0, len(specs))
	defer func() {
		for _, sr := range subs {
			sr.Release()
		}
	}()
	inherit := false
	for _, sp := range specs {
		if strings.HasPrefix(sp.uri, "@") {
			L.RaiseError("ngx.location.capture cannot use the named location %q", sp.uri)
		}
		opts, ctx, inheritsBody := v.captureOptions(L, sp.opts)
		inherit = inherit || inheritsBody
		sr, err := r.NewSubrequest(sp.uri, &opts)
		if err != nil {
			L.RaiseError("failed to issue subrequest %q: %v", sp.uri, err)
		}
		if ctx != nil {
			dataOf(sr).ctx = ctx
		}
		subs = append(subs, sr)
	}
	// Subrequests inheriting the body run concurrently: read it once first.
	if inherit {
		if d := peekData(r); d == nil || !d.bodyRead {
			v.busy(t, func() { readBody(r) })
		}
	}
	t.inSubreq = true
	// Not blocking: subrequests that do not wait run inline, and the request with
	// them stays in the event loop (RunAll).
	v.unlocked(t, func() {
		defer func() { t.inSubreq = false }()
		httpcore.RunAll(subs)
	})
	for _, sr := range subs {
		L.Push(v.captureResult(L, sr))
	}
	return len(subs)
}

// captureOptions decodes capture's options: method, body, args, headers, vars,
// copy_all_vars, share_all_vars, ctx, always_forward_body.
func (v *vm) captureOptions(L *glua.LState, o *glua.LTable) (httpcore.SubrequestOptions, *glua.LTable, bool) {
	var opts httpcore.SubrequestOptions
	method := "GET"
	forward := false
	hasBody := false
	var ctx *glua.LTable
	if o != nil {
		if m := o.RawGetString("method"); m != glua.LNil {
			n, ok := m.(glua.LNumber)
			name, known := methodName(int(n))
			if !ok || !known {
				L.RaiseError("ngx.location.capture: unsupported HTTP method %s", m.String())
			}
			method = name
		}
		if b := o.RawGetString("body"); b != glua.LNil {
			s, ok := b.(glua.LString)
			if !ok {
				L.RaiseError("ngx.location.capture: the body option must be a string")
			}
			opts.Body, opts.HasBody, hasBody = []byte(s), true, true
		}
		if a := o.RawGetString("args"); a != glua.LNil {
			switch x := a.(type) {
			case glua.LString:
				opts.Args = string(x)
			case *glua.LTable:
				opts.Args = v.encodeArgs(L, x)
			default:
				L.RaiseError("ngx.location.capture: the args option must be a string or a table")
			}
		}
		if h, ok := o.RawGetString("headers").(*glua.LTable); ok {
			opts.Headers = map[string]string{}
			h.ForEach(func(k, val glua.LValue) {
				// Escaped as ngx.req.set_header escapes (ngx_lua's subrequest headers).
				opts.Headers[httpcore.EscapeHeaderName(k.String())] = httpcore.EscapeHeaderValue(L.ToStringMeta(val).String())
			})
		}
		if vs, ok := o.RawGetString("vars").(*glua.LTable); ok {
			opts.Vars = map[string]string{}
			vs.ForEach(func(k, val glua.LValue) {
				opts.Vars[k.String()] = L.ToStringMeta(val).String()
			})
		}
		opts.CopyVars = glua.LVAsBool(o.RawGetString("copy_all_vars"))
		opts.ShareVars = glua.LVAsBool(o.RawGetString("share_all_vars"))
		forward = glua.LVAsBool(o.RawGetString("always_forward_body"))
		if c, ok := o.RawGetString("ctx").(*glua.LTable); ok {
			ctx = c
		}
	}
	opts.Method = method
	inherits := false
	if !hasBody {
		// As ngx_lua: only POST and PUT subrequests inherit the parent's body, unless
		// always_forward_body.
		if forward || method == "POST" || method == "PUT" {
			inherits = true
		} else {
			opts.HasBody = true
		}
	}
	return opts, ctx, inherits
}

func (v *vm) captureResult(L *glua.LState, sr *httpcore.Request) *glua.LTable {
	res := L.CreateTable(0, 4)
	status := sr.Status()
	if status == 0 {
		status = 200
	}
	res.RawSetString("status", statusValue(status))
	res.RawSetString("body", glua.LString(sr.Output()))
	res.RawSetString("truncated", glua.LFalse)
	hdr := L.CreateTable(0, sr.RespHeader().Len()+2)
	add := func(k, val string) {
		key := glua.LString(k)
		switch prev := hdr.RawGet(key).(type) {
		case *glua.LNilType:
			hdr.RawSet(key, glua.LString(val))
		case *glua.LTable:
			prev.Append(glua.LString(val))
		default:
			arr := L.CreateTable(2, 0)
			arr.Append(prev)
			arr.Append(glua.LString(val))
			hdr.RawSet(key, arr)
		}
	}
	h := sr.RespHeader()
	for _, f := range h.Fields() {
		add(f.Key, f.Value)
	}
	if h.Get("Content-Type") == "" && status >= 200 && status != 204 && status != 304 {
		if dt := httpcore.CoreConfOf(sr.Location()).DefaultType; dt != "" {
			add("Content-Type", dt)
		}
	}
	if n := sr.ContentLength(); n >= 0 {
		add("Content-Length", strconv.FormatInt(n, 10))
	}
	res.RawSetString("header", hdr)
	return res
}
