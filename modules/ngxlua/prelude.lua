-- spindle's ngx API on LuaJIT: the parts written in Lua over the Go functions in
-- __sp (registered by engine.go), which this chunk takes out of the globals.
local S = __sp
__sp = nil
-- WAIT: what a Go function that waits yields (see engine.go); NOCACHE: some location
-- has lua_code_cache off.
local WAIT, NOCACHE = ...

local type, tostring, tonumber, select, error, pairs, ipairs, next, setmetatable, rawget, rawset, getfenv, setfenv =
	type, tostring, tonumber, select, error, pairs, ipairs, next, setmetatable, rawget, rawset, getfenv, setfenv
local concat, getinfo, yield, co_resume, co_create, co_running = table.concat, debug.getinfo, coroutine.yield,
	coroutine.resume, coroutine.create, coroutine.running
local G = _G

-- lua-resty-string (resty.md5, sha1, aes, ...) calls OpenSSL's libcrypto through
-- ffi.C, which finds what nginx links: here the library is loaded into the global
-- namespace (RTLD_GLOBAL) when the system has it.
do
	local ffi = require "ffi"
	for _, lib in ipairs({"libcrypto.so.3", "libcrypto.so.1.1", "crypto"}) do
		if pcall(ffi.load, lib, true) then break end
	end
end

local ngx = {}
G.ngx = ngx
package.loaded.ngx = ngx

local null = newproxy(true)
getmetatable(null).__tostring = function() return "null" end
ngx.null = null

for k, v in pairs({OK = 0, ERROR = -1, AGAIN = -2, DONE = -4, DECLINED = -5}) do ngx[k] = v end
for i, n in ipairs({"STDERR", "EMERG", "ALERT", "CRIT", "ERR", "WARN", "NOTICE", "INFO", "DEBUG"}) do ngx[n] = i - 1 end
local consts = S.constants()
for i = 1, #consts, 2 do ngx[consts[i]] = consts[i + 1] end

-- Output: values flattened here, one call into Go per ngx.say.
local function flatten(buf, n, v)
	local t = type(v)
	if t == "string" then
		n = n + 1; buf[n] = v
	elseif t == "number" or t == "boolean" or t == "nil" then
		n = n + 1; buf[n] = tostring(v)
	elseif v == null then
		n = n + 1; buf[n] = "null"
	elseif t == "table" then
		local len, cnt = #v, 0
		for _ in pairs(v) do cnt = cnt + 1 end
		if cnt ~= len then return nil, "non-array table found" end
		for j = 1, len do
			local err
			n, err = flatten(buf, n, v[j])
			if not n then return nil, err end
		end
	else
		return nil, t
	end
	return n
end

-- simple(...) tells whether every argument is a string, number, boolean or nil.
local function simple(n, ...)
	for i = 1, n do
		local t = type((select(i, ...)))
		if t ~= "string" and t ~= "number" and t ~= "boolean" and t ~= "nil" then return false end
	end
	return true
end
local function output(fname, nl, ...)
	local nargs = select("#", ...)
	if nargs == 1 then
		local a = ...
		if type(a) == "string" then return S.out(a, nl) end
	end
	-- Up to 29 plain values go to Go as they are (engine.out formats them).
	if nargs <= 29 and simple(nargs, ...) then return S.out("", nl, true, ...) end
	local buf, n = {}, 0
	for i = 1, nargs do
		local err
		n, err = flatten(buf, n, (select(i, ...)))
		if not n then
			if err == "non-array table found" then
				error(("bad argument #%d to '%s' (non-array table found)"):format(i, fname), 3)
			end
			error(("bad argument #%d to '%s' (string, number, boolean, nil, ngx.null, or array table expected, got %s)"):format(i, fname, err), 3)
		end
	end
	return S.out(concat(buf, "", 1, n), nl)
end
-- S.say and S.print (rt.c) buffer plain values in C memory, which Go takes when
-- the resume ends or Lua calls a Go function: no call into Go per ngx.say. They
-- return 1, or 0 once the output reaches 16 KB (Go writes it), or false to leave
-- the call to output: tables, ngx.null, output the request may not send (Go's
-- out answers with its errors).
local c_say, c_print, out = S.say, S.print, S.out
function ngx.say(...)
	local r = c_say(...)
	if r == 1 then return 1 end
	if r == 0 then return out("", false) end
	return output("say", true, ...)
end
function ngx.print(...)
	local r = c_print(...)
	if r == 1 then return 1 end
	if r == 0 then return out("", false) end
	return output("print", false, ...)
end
-- What Lua code reads of the engine's state without calling Go (rt.go).
local ffi = require "ffi"
ffi.cdef[[
typedef struct {
	unsigned char *buf;
	int len, cap;
	int ok, said;
	double reqid, now;
	double seq;
	int eid, hdr_ok;
	unsigned char *hbuf;
	int hlen, hcap;
	int info_ok, hdr_fast, uri_ok;
	int hdr_len, args_len, uri_len;
	unsigned char *info;
	int info_cap;
} spindle_rt;
double spindle_now(spindle_rt *rt);
]]
local RT = ffi.cast("spindle_rt *", S.engine_rt())
ngx.flush = S.flush
ngx.eof = S.eof
ngx.send_headers = S.send_headers
ngx.exit = S.exit
ngx.redirect = S.redirect
ngx.get_phase = S.get_phase
ngx.sleep = S.sleep
function ngx.on_abort() return nil, "lua_check_client_abort is off" end

-- Logging, with the caller's position as ngx_lua writes it.
local function logargs(fname, first, ...)
	local buf = {}
	for i = 1, select("#", ...) do
		local v = select(i, ...)
		local t = type(v)
		if t == "string" then
			buf[i] = v
		elseif t == "number" or t == "boolean" or t == "nil" then
			buf[i] = tostring(v)
		elseif v == null then
			buf[i] = "null"
		else
			local mt = getmetatable(v)
			if mt and mt.__tostring then
				buf[i] = tostring(v)
			else
				error(("bad argument #%d to '%s' (string, number, boolean, or nil expected, got %s)"):format(i + first - 1, fname, t), 3)
			end
		end
	end
	local info = getinfo(3, "Sl")
	local where = ""
	if info and info.currentline and info.currentline > 0 then
		where = info.short_src .. ":" .. info.currentline
	end
	return concat(buf, "", 1, select("#", ...)), where
end
local log_enabled, log = S.log_enabled, S.log
function ngx.log(level, ...)
	if type(level) ~= "number" then
		error("bad argument #1 to 'log' (number expected, got " .. type(level) .. ")", 2)
	end
	if level < 0 or level > 8 then error("bad argument #1 to 'log' (bad log level: " .. level .. ")", 2) end
	if not log_enabled(level) then return end
	local msg, where = logargs("log", 2, ...)
	log(level, where, msg)
end
function G.print(...)
	if not log_enabled(6) then return end
	local msg, where = logargs("print", 1, ...)
	log(6, where, msg)
end

-- ngx.var: a name's value is read by a C function (c_var, rt.c, calling
-- spindle_var_get in ngxabi.go); capture numbers and errors through var_get.
local var_get, var_set, c_var = S.var_get, S.var_set, S.c_var
local ffi = require "ffi"
local EID = S.engine_id()
ngx.var = setmetatable({}, {
	__index = function(_, k)
		local t = type(k)
		if t == "string" then
			local v = c_var(k)
			if v ~= false then return v end
		elseif t ~= "number" then
			error("bad variable name", 2)
		end
		return var_get(k)
	end,
	__newindex = function(_, k, v)
		if type(k) ~= "string" then error("bad variable name", 2) end
		local t = type(v)
		if t == "number" then v = tostring(v) elseif t ~= "string" and t ~= "nil" then
			error("bad variable value type: " .. t, 2)
		end
		local err = var_set(k, v)
		if err then error(err, 2) end
	end,
})

-- The per-run state: ngx.arg (set_by_lua, body filters) and ngx.ctx.
local cur_arg = {}
local ctxs = {}   -- request id -> ngx.ctx
local run_ctx = setmetatable({}, {__mode = "k"})  -- coroutine -> ngx.ctx of runs without a request
local arg_proxy = setmetatable({}, {
	__index = function(_, i) return cur_arg[i] end,
	__newindex = function(_, i, v)
		local err = S.arg_check()
		if err then error(err, 2) end
		if i ~= 1 and i ~= 2 then error("bad index: " .. tostring(i), 2) end
		if i == 1 then
			local t = type(v)
			if t == "number" then v = tostring(v)
			elseif t == "table" then
				local buf = {}
				local n, e = flatten(buf, 0, v)
				if not n then error("bad chunk data type: " .. tostring(e), 2) end
				v = concat(buf, "", 1, n)
			elseif t ~= "string" and t ~= "nil" then error("bad chunk data type: " .. t, 2) end
		end
		cur_arg[i] = v
	end,
	__len = function() return #cur_arg end,
})

ffi.cdef[[double spindle_req_id(int eid);]]
local req_id_ffi, req_id = ffi.C.spindle_req_id, S.req_id
local function ctx_of(create)
	-- The key, once Go gave it in this resume, is read from C memory; the first
	-- read asks through the FFI: ngx.ctx is read often.
	local id = RT.reqid
	if id < 0 then
		id = req_id_ffi(EID)
		if id < 0 then id = req_id() end
	end
	if id == 0 then
		local co = co_running()
		local c = run_ctx[co]
		if not c and create then c = {}; run_ctx[co] = c end
		return c
	end
	local c = ctxs[id]
	if not c and create then c = {}; ctxs[id] = c end
	return c
end

local status_get, status_set, headers_sent, is_subrequest = S.status_get, S.status_set, S.headers_sent, S.is_subrequest
setmetatable(ngx, {
	__index = function(_, k)
		if k == "status" then return status_get()
		elseif k == "ctx" then return ctx_of(true)
		elseif k == "arg" then return arg_proxy
		elseif k == "headers_sent" then return headers_sent()
		elseif k == "is_subrequest" then return is_subrequest()
		end
	end,
	__newindex = function(t, k, v)
		if k == "status" then
			local err = status_set(v)
			if err then error(err, 2) end
		elseif k == "ctx" then
			if type(v) ~= "table" then error("ctx should be a table while getting a " .. type(v) .. " value", 2) end
			local id = S.req_id()
			if id == 0 then run_ctx[co_running()] = v else ctxs[id] = v end
		else
			rawset(t, k, v)
		end
	end,
})

-- ngx.header and ngx.resp
local function norm_header_value(v)
	local t = type(v)
	if t == "table" then
		local out = {}
		for i = 1, #v do out[i] = tostring(v[i]) end
		return out
	elseif t == "nil" then return nil
	end
	return tostring(v)
end
local header_get, header_set, c_header_set = S.header_get, S.header_set, S.c_header_set
ngx.header = setmetatable({}, {
	__index = function(_, k)
		local a, n = header_get(tostring(k))
		if n and n > 1 then
			local t = {}
			for i = 1, n do t[i] = header_get(tostring(k), i) end
			return t
		end
		return a
	end,
	__newindex = function(_, k, v)
		if type(v) ~= "string" then v = norm_header_value(v) end
		-- The common case (string name and value, before any output) is queued in
		-- C for Go to apply (rt.c): no call into Go per set.
		if c_header_set(k, v) then return end
		local err
		if type(v) == "table" then
			err = header_set(tostring(k), "list", unpack(v))
		else
			err = header_set(tostring(k), "one", v)
		end
		if err then error(err, 2) end
	end,
})

local function kv_table(flat, max, lower)
	local t = {}
	for i = 1, #flat, 2 do
		local k, v = flat[i], flat[i + 1]
		local old = t[k]
		if old == nil then t[k] = v
		elseif type(old) == "table" then old[#old + 1] = v
		else t[k] = {old, v} end
	end
	return t
end
local hdr_meta = {__index = function(t, k)
	if type(k) == "number" then return rawget(t, tostring(k)) end
	if type(k) ~= "string" then return nil end
	local n = k:lower():gsub("_", "-")
	if n ~= k then return rawget(t, n) end
end}
ngx.resp = {
	get_headers = function(max, raw)
		local flat = S.resp_headers(raw and true or false)
		local t = kv_table(flat)
		if not raw then setmetatable(t, hdr_meta) end
		return t
	end,
	-- lua-resty-core's: ngx.header's rules, but the values are added to those the
	-- header has.
	add_header = function(name, value)
		if value == nil then error("bad argument #2 to 'add_header' (invalid header value)", 2) end
		value = norm_header_value(value)
		local err
		if type(value) == "table" then
			err = header_set(tostring(name), "add", unpack(value))
		else
			err = header_set(tostring(name), "add", value)
		end
		if err then error(err, 2) end
	end,
}
-- lua-resty-core's ngx.resp module: require "ngx.resp" gives the same functions.
package.loaded["ngx.resp"] = ngx.resp

-- ngx.req
local encode_args
local req = {}
ngx.req = req
req.get_method = S.req_get_method
req.set_method = S.req_set_method
req.http_version = S.req_http_version
req.is_internal = S.req_is_internal
req.start_time = S.req_start_time
req.raw_header = S.req_raw_header
req.read_body = S.req_read_body
req.discard_body = S.req_discard_body
req.get_body_data = S.req_get_body_data
req.get_body_file = S.req_get_body_file
req.set_body_data = S.req_set_body_data
req.clear_header = function(name) return S.req_set_header(tostring(name), "one", nil) end
req.set_header = function(name, v)
	v = norm_header_value(v)
	if type(v) == "table" then return S.req_set_header(tostring(name), "list", unpack(v)) end
	return S.req_set_header(tostring(name), "one", v)
end
-- A run that reads the headers more than once builds their table once (its second
-- call) and copies it after; whatever changes the request's headers or body drops
-- it. RT.seq is the run's number: a run never sees another's table.
local hdr_seen, hdr_seq, hdr_raw, hdr_max, hdr_t, hdr_tr = -1, -1
local function copy_headers(src)
	local t = {}
	for k, v in next, src do
		if type(v) == "table" then
			local l = {}
			for i = 1, #v do l[i] = v[i] end
			v = l
		end
		t[k] = v
	end
	return t
end
for _, name in ipairs({"req_set_header", "req_read_body", "req_discard_body", "req_set_body_data"}) do
	local f = S[name]
	if f then
		S[name] = function(...)
			hdr_seen, hdr_seq = -1, -1
			return f(...)
		end
	end
end
req.read_body = S.req_read_body
req.discard_body = S.req_discard_body
req.set_body_data = S.req_set_body_data
local c_req_headers, c_uri_args = S.c_req_headers, S.c_uri_args
req.get_headers = function(max, raw)
	raw, max = raw and true or false, max or 100
	-- Built in C from the header block as the client sent it (rt.c), when the
	-- headers are that block; else through Go, below.
	local t, tr = c_req_headers(max, raw)
	if t then
		if not raw then setmetatable(t, hdr_meta) end
		return t, tr
	end
	local seq = RT.seq
	if seq == hdr_seq and raw == hdr_raw and max == hdr_max then
		local t = copy_headers(hdr_t)
		if not raw then setmetatable(t, hdr_meta) end
		return t, hdr_tr
	end
	local t, tr, flat = S.req_headers(raw, max)
	if flat then t = kv_table(t) end
	if seq == hdr_seen then
		hdr_seq, hdr_raw, hdr_max, hdr_t, hdr_tr = seq, raw, max, copy_headers(t), tr
	end
	hdr_seen = seq
	if not raw then setmetatable(t, hdr_meta) end
	return t, tr
end
local function args_table(flat)
	local t = {}
	for i = 1, #flat, 2 do
		local k, v = flat[i], flat[i + 1]
		local old = t[k]
		if old == nil then t[k] = v
		elseif type(old) == "table" then old[#old + 1] = v
		else t[k] = {old, v} end
	end
	return t
end
req.get_uri_args = function(max)
	max = max or 100
	local t, tr = c_uri_args(max) -- built in C (rt.c)
	if t then return t, tr end
	local t, tr, flat = S.req_uri_args(max)
	if flat then t = args_table(t) end
	return t, tr
end
req.get_post_args = function(max)
	local t, tr, flat = S.req_post_args(max or 100)
	if flat then t = args_table(t) end
	return t, tr
end
req.set_uri = function(uri, jump)
	local err = S.req_set_uri(uri, jump and true or false)
	if err then error(err, 2) end
end
req.set_uri_args = function(args)
	if type(args) == "table" then args = encode_args(args) end
	S.req_set_uri_args(args)
end

-- ngx.exec and argument encoding
local escape_uri = S.escape_uri
ngx.escape_uri = escape_uri
ngx.unescape_uri = S.unescape_uri
encode_args = function(t)
	local keys = {}
	for k in pairs(t) do keys[#keys + 1] = tostring(k) end
	table.sort(keys)
	local buf, n = {}, 0
	for _, k in ipairs(keys) do
		local v = t[k]
		local ek = escape_uri(tostring(k))
		if type(v) == "table" then
			for _, x in ipairs(v) do
				n = n + 1
				if x == true then buf[n] = ek else buf[n] = ek .. "=" .. escape_uri(tostring(x)) end
			end
		elseif v == true then
			n = n + 1; buf[n] = ek
		elseif v ~= false then
			n = n + 1; buf[n] = ek .. "=" .. escape_uri(tostring(v))
		end
	end
	return concat(buf, "&", 1, n)
end
ngx.encode_args = encode_args
ngx.decode_args = function(s, max)
	local t, tr, flat = S.decode_args(s, max or 100)
	if flat then t = args_table(t) end
	return t, tr
end
function ngx.exec(uri, args)
	if type(args) == "table" then args = encode_args(args) end
	local err = S.exec(uri, args)
	if err then error(err, 2) end
end

-- ngx.location.capture: requests flattened into one call; responses come back as
-- arrays built in Lua.
local function pairs_string(t)
	if not t then return "" end
	local out = {}
	for k, v in pairs(t) do out[#out + 1] = tostring(k); out[#out + 1] = tostring(v) end
	return concat(out, "\0")
end
local no_opts = {}
-- capture_uris's results, a status, body and header per response (or false and an
-- error), as the response tables: a constructor with constant keys costs less than
-- Go building them (api.go's pushCapturesFlat). A header that is a lone
-- Content-Type comes as its value.
local function res(s, b, h)
	if type(h) == "string" then h = {["Content-Type"] = h} end
	return {status = s, body = b, truncated = false, header = h}
end
local function captured1(s1, b1, h1)
	if s1 == false then error(b1, 3) end
	return res(s1, b1, h1)
end
local function captured2(s1, b1, h1, s2, b2, h2)
	if s1 == false then error(b1, 3) end
	return res(s1, b1, h1), res(s2, b2, h2)
end
local function captured3(s1, b1, h1, s2, b2, h2, s3, b3, h3)
	if s1 == false then error(b1, 3) end
	return res(s1, b1, h1), res(s2, b2, h2), res(s3, b3, h3)
end
local function captured4(s1, b1, h1, s2, b2, h2, s3, b3, h3, s4, b4, h4)
	if s1 == false then error(b1, 3) end
	return res(s1, b1, h1), res(s2, b2, h2), res(s3, b3, h3), res(s4, b4, h4)
end
local function capture_multi(reqs)
	if type(reqs) ~= "table" then error("bad argument #1 to 'capture_multi' (table expected)", 3) end
	local n = #reqs
	if n == 0 then error("at least one subrequest should be specified", 3) end
	-- Up to 4 subrequests without options: one call (api.go's captureURIs).
	if n <= 4 then
		local r1, r2, r3, r4 = reqs[1], reqs[2], reqs[3], reqs[4]
		if type(r1) == "table" and type(r1[1]) == "string" and r1[2] == nil then
			if n == 1 then return captured1(S.capture_uris(r1[1])) end
			if type(r2) == "table" and type(r2[1]) == "string" and r2[2] == nil then
				if n == 2 then return captured2(S.capture_uris(r1[1], r2[1])) end
				if type(r3) == "table" and type(r3[1]) == "string" and r3[2] == nil then
					if n == 3 then return captured3(S.capture_uris(r1[1], r2[1], r3[1])) end
					if type(r4) == "table" and type(r4[1]) == "string" and r4[2] == nil then
						return captured4(S.capture_uris(r1[1], r2[1], r3[1], r4[1]))
					end
				end
			end
		end
	end
	for i = 1, n do
		local r = reqs[i]
		if type(r) ~= "table" or type(r[1]) ~= "string" then
			error("capture_multi: each element must be a table { uri, options }", 3)
		end
		local o = r[2] or no_opts
		local args = o.args
		if type(args) == "table" then args = encode_args(args) end
		local ctx = o.ctx
		if type(ctx) ~= "table" then ctx = nil end
		-- The subrequest's ngx.ctx key only when it is given one: a key costs a
		-- cleanup in Go (2.9 us of BenchmarkLuaMulti's 22 us for two).
		local id, err = S.capture_add(r[1], o.method, args, o.body, o.copy_all_vars and true or false,
			o.share_all_vars and true or false, pairs_string(o.vars), pairs_string(o.headers),
			o.always_forward_body and true or false, i == 1, ctx ~= nil)
		if not id then error(err, 3) end
		if ctx then ctxs[id] = ctx end
	end
	-- Up to 16 responses (api.go's maxCaptureRets) come back from capture_run itself,
	-- as tables; past that, one call each.
	if n <= 16 then return S.capture_run() end
	S.capture_run()
	local out = {}
	for i = 1, n do
		local status, body, flat = S.capture_result(i)
		out[i] = {status = status, body = body, truncated = false, header = kv_table(flat)}
	end
	return unpack(out, 1, n)
end
ngx.location = {
	capture = function(uri, opts)
		if type(uri) ~= "string" then error("bad argument #1 to 'capture' (string expected)", 2) end
		if opts == nil then return captured1(S.capture_uris(uri)) end
		return capture_multi({{uri, opts}})
	end,
	capture_multi = capture_multi,
}

-- Time
ngx.now = S.now
ngx.time = S.time
ngx.update_time = function() RT.now = 0 end -- ngx.now reads the clock again
ngx.today = S.today
ngx.localtime = S.localtime
ngx.utctime = S.utctime
ngx.http_time = S.http_time
ngx.cookie_time = S.cookie_time
ngx.parse_http_time = S.parse_http_time

-- Strings
ngx.md5 = S.md5
ngx.md5_bin = S.md5_bin
ngx.sha1_bin = S.sha1_bin
ngx.crc32_short = S.crc32
ngx.crc32_long = S.crc32
ngx.encode_base64 = S.encode_base64
ngx.decode_base64 = S.decode_base64
ngx.hmac_sha1 = S.hmac_sha1
ngx.quote_sql_str = S.quote_sql_str

-- Pure functions through the FFI, as lua-resty-core has them: C in ngxabi.c. An FFI
-- call costs nanoseconds in compiled code; a call into Go several hundred
-- (docs/lua-engine.md, measured).
local ffi = require "ffi"
local C, ffi_string, ffi_new = ffi.C, ffi.string, ffi.new
ffi.cdef[[
typedef struct { size_t len; const unsigned char *data; } ngx_str_t;
unsigned char *ngx_hex_dump(unsigned char *dst, const unsigned char *src, size_t len);
void ngx_encode_base64url(ngx_str_t *dst, ngx_str_t *src);
intptr_t ngx_decode_base64url(ngx_str_t *dst, ngx_str_t *src);
size_t ngx_http_lua_ffi_encode_base64(const unsigned char *src, size_t slen, unsigned char *dst, int no_padding);
int ngx_http_lua_ffi_decode_base64(const unsigned char *src, size_t slen, unsigned char *dst, size_t *dlen);
double ngx_http_lua_ffi_now(void);
long ngx_http_lua_ffi_time(void);
uint64_t ngx_http_lua_ffi_monotonic_msec(void);
]]
local strbuf, strbuf_size = nil, 0
-- get_string_buf is resty.core.base's: one scratch buffer, filled and read with no
-- yield in between.
local function get_string_buf(n, must_alloc)
	if must_alloc then return ffi_new("unsigned char[?]", n) end
	if n > strbuf_size then
		strbuf_size = n > 4096 and n or 4096
		strbuf = ffi_new("unsigned char[?]", strbuf_size)
	end
	return strbuf
end
local size_ptr = ffi_new("size_t[1]")
local floor = math.floor
-- ngx.now and ngx.time: the time of the resume's first call (spindle_now), as
-- nginx's cached time, read from C memory after it.
local spindle_now = C.spindle_now
ngx.now = function()
	local t = RT.now
	if t == 0 then t = spindle_now(RT) end
	return t
end
ngx.time = function()
	local t = RT.now
	if t == 0 then t = spindle_now(RT) end
	return floor(t)
end
ngx.encode_base64 = function(s, no_padding)
	if type(s) ~= "string" then s = s and tostring(s) or "" end
	if no_padding and no_padding ~= true then
		error("bad no_padding: boolean expected, got " .. type(no_padding), 2)
	end
	local dst = get_string_buf(floor((#s + 2) / 3) * 4)
	return ffi_string(dst, C.ngx_http_lua_ffi_encode_base64(s, #s, dst, no_padding and 1 or 0))
end
ngx.decode_base64 = function(s)
	if type(s) ~= "string" then error("string argument only", 2) end
	local dst = get_string_buf(floor((#s + 3) / 4) * 3)
	if C.ngx_http_lua_ffi_decode_base64(s, #s, dst, size_ptr) == 0 then return nil end
	return ffi_string(dst, size_ptr[0])
end
-- ngx.md5, md5_bin and sha1_bin: C functions of Lua's C API over libcrypto (rt.c),
-- not FFI calls, which cost ~5,800 instructions each from a handler's interpreted
-- code against ~1,000 for nginx's ngx.md5 (callgrind).
if S.digest_init() then
	ngx.md5, ngx.md5_bin, ngx.sha1_bin = S.c_md5, S.c_md5_bin, S.c_sha1_bin
end

ngx.timer = {
	at = function(delay, fn, ...)
		if type(fn) ~= "function" then error("bad argument #2 to 'at' (function expected, got " .. type(fn) .. ")", 2) end
		local args, n = {...}, select("#", ...)
		local ok, err = S.timer_new(delay, function(premature) return fn(premature, unpack(args, 1, n)) end, false)
		if ok == nil and err and err:sub(1, 4) == "bad " then error(err, 2) end
		return ok, err
	end,
	every = function(delay, fn, ...)
		if type(fn) ~= "function" then error("bad argument #2 to 'every' (function expected, got " .. type(fn) .. ")", 2) end
		local args, n = {...}, select("#", ...)
		local ok, err = S.timer_new(delay, function(premature) return fn(premature, unpack(args, 1, n)) end, true)
		if ok == nil and err and err:sub(1, 4) == "bad " then error(err, 2) end
		return ok, err
	end,
	running_count = S.timer_running,
	pending_count = S.timer_pending,
}

-- Cosockets: tables holding a handle into the engine's sockets (cosocket.go).
-- In a phase that outputs (rewrite, access, content; such a phase may yield),
-- ngx.socket.tcp() calls no Go function (sock_run is C: sockrt.c): the handle is
-- the prelude's, negative ({id, run number}), and Go makes the socket when the
-- handle first reaches it
-- (connect, or adopt for the other methods); settimeout(s) before that keep the
-- values in the table ([4], [5], [6]) for it. [3] is true once Go has the
-- socket. Two callbacks less per lua-resty-redis request (new, set_timeout: ~720
-- instructions each).
local sock_new, sock_adopt, sock_connect, sock_run = S.sock_new, S.sock_adopt, S.sock_connect, S.sock_run
local sock_write, sock_send = S.sock_write, S.sock_send
local sock = {}
local sock_mt = {__index = sock}
local lua_socks = 0
local function tcp()
	local run, ok = sock_run()
	if ok then
		lua_socks = lua_socks - 1
		-- all six slots made here: set later, [3] and [4]-[6] grew the array twice
		return setmetatable({lua_socks, run, false, false, false, false}, sock_mt)
	end
	return setmetatable({sock_new()}, sock_mt)
end
-- check is self's handle, one Go has.
local function check(self, name)
	if type(self) ~= "table" or type(self[1]) ~= "number" then
		error("bad argument #1 to '" .. name .. "' (table expected, got " .. type(self) .. ")", 3)
	end
	local id = self[1]
	if id < 0 and not self[3] then
		sock_adopt(id, self[2], self[4], self[5], self[6])
		self[3] = true
	end
	return id
end
function sock:connect(host, port, opts)
	if type(self) ~= "table" or type(self[1]) ~= "number" then
		error("bad argument #1 to 'connect' (table expected, got " .. type(self) .. ")", 2)
	end
	if type(port) == "table" then opts, port = port, nil end
	local pool, pool_size
	if opts then pool, pool_size = opts.pool, opts.pool_size end
	local id = self[1]
	if id < 0 and not self[3] then
		local ok, err = sock_connect(id, host, port, pool, pool_size, self[2], self[4], self[5], self[6])
		self[3] = true
		return ok, err
	end
	return sock_connect(id, host, port, pool, pool_size)
end
function sock:send(data)
	local id = check(self, "send")
	-- Written by C when Go left the socket's descriptor for it (sockrt.c): all
	-- of it, else Go goes on from what C wrote.
	local n, rest = sock_write(id, data)
	if n then
		if rest == nil then return n end
		return sock_send(id, rest, n)
	end
	local t = type(data)
	if t ~= "string" then
		if t == "number" or t == "boolean" then data = tostring(data)
		elseif t == "table" then
			local buf = {}
			local n, e = flatten(buf, 0, data)
			if not n then error("bad argument #1 to 'send' (bad data type " .. tostring(e) .. " found)", 2) end
			data = concat(buf, "", 1, n)
		else
			error("bad argument #1 to 'send' (string, number, boolean, nil, or array table expected, got " .. t .. ")", 2)
		end
	end
	return sock_send(id, data)
end
-- A receive the copy of the socket's buffered data can answer (sock_recv, C:
-- sockrt.c) calls no Go function.
local sock_recv, sock_receive = S.sock_recv, S.sock_receive
function sock:receive(pat)
	local id = check(self, "receive")
	local data = sock_recv(id, pat)
	if data then return data end
	return sock_receive(id, pat)
end
function sock:receiveany(max) return S.sock_receiveany(check(self, "receiveany"), max) end
function sock:receiveuntil(pat, opts)
	local id = check(self, "receiveuntil")
	if type(pat) ~= "string" or pat == "" then error("bad argument #2 to 'receiveuntil' (pattern is empty)", 2) end
	local inclusive = opts and opts.inclusive and true or false
	local found = false
	return function(size)
		if size and found then
			found = false
			return nil
		end
		local data, err, partial = S.sock_receiveuntil(id, pat, inclusive, size)
		if data ~= nil then
			if err then found = true end
			return data
		end
		return nil, err, partial
	end
end
-- pend keeps timeouts for the socket Go has not made yet (false: Go has it).
local function pend(self, name, c, s, r)
	if type(self) ~= "table" or type(self[1]) ~= "number" then
		error("bad argument #1 to '" .. name .. "' (table expected, got " .. type(self) .. ")", 3)
	end
	if self[1] > 0 or self[3] or self[2] ~= sock_run() then return false end -- Go's (another run's: Go refuses it)
	if type(c) == "number" and c < 0 or type(s) == "number" and s < 0 or type(r) == "number" and r < 0 then
		-- where Go's check would have raised it: in the method
		error("bad timeout value", 2)
	end
	if type(c) == "number" then self[4] = c end
	if type(s) == "number" then self[5] = s end
	if type(r) == "number" then self[6] = r end
	return true
end
function sock:settimeout(ms)
	if pend(self, "settimeout", ms, ms, ms) then return end
	S.sock_settimeouts(self[1], ms, ms, ms)
end
function sock:settimeouts(c, s, r)
	if pend(self, "settimeouts", c, s, r) then return end
	S.sock_settimeouts(self[1], c, s, r)
end
local sock_keepalive = S.sock_keepalive
function sock:setkeepalive(timeout, size)
	local id = check(self, "setkeepalive")
	-- answered in C after a receive that left nothing unread (sockrt.c)
	if sock_keepalive(id, timeout, size) then return 1 end
	return S.sock_setkeepalive(id, timeout, size)
end
function sock:getreusedtimes() return S.sock_reusedtimes(check(self, "getreusedtimes")) end
function sock:close() return S.sock_close(check(self, "close")) end
function sock:setoption() return true end
function sock:sslhandshake(reused, name, verify)
	return S.sock_sslhandshake(check(self, "sslhandshake"), reused, name, verify)
end
-- ngx.req.socket (reqsocket.go): the request body, or with raw the connection, with
-- ngx_lua's methods for each.
local reqsock_mt = {__index = {
	receive = sock.receive, receiveany = sock.receiveany, receiveuntil = sock.receiveuntil,
	settimeout = sock.settimeout, settimeouts = sock.settimeouts,
}}
local rawsock_mt = {__index = setmetatable({send = sock.send}, reqsock_mt)}
req.socket = function(...)
	local n = select("#", ...)
	if n > 1 then error("expecting 0 or 1 argument, but got " .. n, 2) end
	local raw = (...) and true or false
	local id, err = S.req_socket(raw)
	if not id then return nil, err end
	return setmetatable({id}, raw and rawsock_mt or reqsock_mt)
end
-- ngx.socket.udp (udp.go)
local udpsock = {}
local udpsock_mt = {__index = udpsock}
local function udpcheck(self, name)
	if type(self) ~= "table" or type(self[1]) ~= "number" then
		error("bad argument #1 to '" .. name .. "' (table expected, got " .. type(self) .. ")", 3)
	end
	return self[1]
end
function udpsock:setpeername(...)
	return S.udp_setpeername(udpcheck(self, "setpeername"), ...)
end
function udpsock:send(data)
	local id = udpcheck(self, "send")
	local t = type(data)
	if t ~= "string" then
		if t == "number" or t == "boolean" or t == "nil" then data = tostring(data)
		elseif t == "table" then
			local buf = {}
			local n, e = flatten(buf, 0, data)
			if not n then error("bad argument #2 to 'send' (bad data type " .. tostring(e) .. " found)", 2) end
			data = concat(buf, "", 1, n)
		else
			error("bad argument #2 to 'send' (string, number, boolean, nil, or array table expected, got " .. t .. ")", 2)
		end
	end
	return S.udp_send(id, data)
end
function udpsock:receive(...) return S.udp_receive(udpcheck(self, "receive"), ...) end
function udpsock:settimeout(...) return S.udp_settimeout(udpcheck(self, "settimeout"), ...) end
function udpsock:close() return S.udp_close(udpcheck(self, "close")) end
function udpsock:bind(...) return S.udp_bind(udpcheck(self, "bind"), ...) end
ngx.socket = {
	udp = function(...)
		if select("#", ...) > 0 then error("expecting zero arguments, but got " .. select("#", ...), 2) end
		return setmetatable({S.udp_new()}, udpsock_mt)
	end,
	tcp = tcp,
	connect = function(host, port, opts)
		local s = tcp()
		local ok, err = s:connect(host, port, opts)
		if not ok then return nil, err end
		return s
	end,
}

ngx.config = {
	subsystem = "http",
	debug = false,
	nginx_version = 1025003,
	ngx_lua_version = 10029,
	prefix = S.prefix,
	nginx_configure = function() return "" end,
}
ngx.worker = {
	pid = S.worker_pid,
	id = S.worker_id,
	count = S.worker_count,
	exiting = S.worker_exiting,
}

-- ngx.re: Go matches (regex.go), Lua builds the captures.
local re_match, re_find, re_all, sub = S.re_match, S.re_find, S.re_all, string.sub
local function captures(subject, m, base, per, names, tbl)
	tbl = tbl or {}
	for i = 0, per / 2 - 1 do
		local a, b = m[base + 2 * i + 1], m[base + 2 * i + 2]
		local v = false
		if a >= 0 then v = sub(subject, a + 1, b) end
		tbl[i] = v
		if names and names[i + 1] ~= "" and names[i + 1] then tbl[names[i + 1]] = v end
	end
	return tbl
end
-- compiled(regex, opts): {code, offsets per match, names} of a pattern the engine
-- keeps compiled (re_compile), looked up by opts then pattern (no string built per
-- call); false when the engine's cache is full or the pattern does not compile:
-- re_match and re_find then compile (and report the error) as they match.
ffi.cdef[[int spindle_re_exec(void *code, const unsigned char *subj, size_t len, size_t start, int pairs, int *ovec);]]
local re_compile = S.re_compile
local ovec = ffi_new("int[?]", 2 * 256)
local re_compiled = {}
local function compiled(regex, opts)
	local byopts = re_compiled[opts]
	if not byopts then
		byopts = {}
		re_compiled[opts] = byopts
	end
	local c = byopts[regex]
	if c == nil then
		local code, per, names = re_compile(regex, opts)
		-- a cdata pointer, not the light userdata: the JIT compiles calls passing it
		if code and per <= 2 * 256 then c = {ffi.cast("void *", code), per, names} else c = false end
		if code then byopts[regex] = c end
	end
	return c
end
local function ctx_pos(ctx)
	if ctx and type(ctx.pos) == "number" and ctx.pos > 1 then return ctx.pos - 1 end
	return 0
end
local function strarg(s, i, name)
	local t = type(s)
	if t == "number" then return tostring(s) end
	if t ~= "string" then error("bad argument #" .. i .. " to '" .. name .. "' (string expected, got " .. t .. ")", 3) end
	return s
end
ngx.re = {
	-- A pattern compiled once (and kept by the engine's cache) is matched in C
	-- through the FFI (spindle_re_exec): no call into Go per match.
	match = function(subject, regex, opts, ctx, res)
		subject = strarg(subject, 1, "match")
		regex = strarg(regex, 2, "match")
		opts = opts or ""
		local c = compiled(regex, opts)
		if c then
			local rc = C.spindle_re_exec(c[1], subject, #subject, ctx_pos(ctx), c[2] / 2, ovec)
			if rc == -1 then return nil end
			if rc > 0 then
				if ctx then ctx.pos = ovec[1] + 1 end
				local t, names = res or {}, c[3]
				for i = 0, c[2] / 2 - 1 do
					local a = ovec[2 * i]
					local v = false
					if a >= 0 then v = sub(subject, a + 1, ovec[2 * i + 1]) end
					t[i] = v
					if names then
						local name = names[i + 1]
						if name and name ~= "" then t[name] = v end
					end
				end
				return t
			end
			-- an error: re_match says which
		end
		local t, stop = re_match(subject, regex, opts, ctx_pos(ctx))
		if not t then return nil, stop end
		if ctx then ctx.pos = stop + 1 end
		if res then
			for k, v in pairs(t) do res[k] = v end
			return res
		end
		return t
	end,
	find = function(subject, regex, opts, ctx, nth)
		subject = strarg(subject, 1, "find")
		regex = strarg(regex, 2, "find")
		opts = opts or ""
		nth = nth or 0
		local c = compiled(regex, opts)
		if c then
			local rc = C.spindle_re_exec(c[1], subject, #subject, ctx_pos(ctx), c[2] / 2, ovec)
			if rc == -1 then return nil end
			if rc > 0 then
				if nth < 0 or 2 * nth + 2 > c[2] or ovec[2 * nth] < 0 then return nil end
				if ctx then ctx.pos = ovec[1] + 1 end
				return ovec[2 * nth] + 1, ovec[2 * nth + 1]
			end
		end
		local from, to, stop = re_find(subject, regex, opts, ctx_pos(ctx), nth)
		if not from then
			if stop then return nil, nil, stop end
			return nil
		end
		if ctx then ctx.pos = stop + 1 end
		return from, to
	end,
	gmatch = function(subject, regex, opts)
		subject = strarg(subject, 1, "gmatch")
		local all, per, names = re_all(subject, strarg(regex, 2, "gmatch"), opts or "", -1)
		if not all then return nil, per end
		local i = 0
		return function()
			if i * per >= #all then return nil end
			local t = captures(subject, all, i * per, per, names)
			i = i + 1
			return t
		end
	end,
}
local function resub(global, name)
	return function(subject, regex, repl, opts)
		subject = strarg(subject, 1, name)
		regex = strarg(regex, 2, name)
		if type(repl) ~= "function" then
			if type(repl) ~= "string" and type(repl) ~= "number" then
				error("bad argument #3 to '" .. name .. "' (string or function expected)", 2)
			end
			return S.re_sub(subject, regex, repl, opts or "", global)
		end
		local all, per, names = re_all(subject, regex, opts or "", global and -1 or 1)
		if not all then return nil, nil, per end
		local n = #all / per
		if n == 0 then return subject, 0 end
		local out, last = {}, 0
		for i = 0, n - 1 do
			local base = i * per
			out[#out + 1] = sub(subject, last + 1, all[base + 1])
			local r = repl(captures(subject, all, base, per, names))
			local t = type(r)
			if t == "number" then r = tostring(r)
			elseif t ~= "string" then
				error("bad return value from the replacement function: string expected, got " .. t, 2)
			end
			out[#out + 1] = r
			last = all[base + 2]
		end
		out[#out + 1] = sub(subject, last + 1)
		return concat(out), n
	end
end
ngx.re.sub = resub(false, "sub")
ngx.re.gsub = resub(true, "gsub")

-- require with lua_code_cache off: modules from Lua files are loaded again for
-- each run (the last run's copies are dropped when another run requires).
local orig_require = require
local builtin = {}
for k in pairs(package.loaded) do builtin[k] = true end
local nc = {run = 0, mods = {}}
G.require = NOCACHE == "nocache" and function(name)
	local run = S.nocache_run()
	if run == 0 or builtin[name] or package.preload[name] then return orig_require(name) end
	if nc.run ~= run then nc.run, nc.mods = run, {} end
	local m = nc.mods[name]
	if m ~= nil then return m end
	local path = package.searchpath(name, package.path)
	if not path then return orig_require(name) end
	local f = assert(loadfile(path))
	m = f(name)
	if m == nil then m = true end
	nc.mods[name] = m
	return m
end or orig_require

-- spindle.redis(name): the fast path's object over an upstream's pools
-- (backends.go sends; replies are converted here as lua-resty-redis converts them).
local spindle = {}
G.spindle = spindle
package.loaded.spindle = spindle
local find, format, floor, lower, upper = string.find, string.format, math.floor, string.lower, string.upper
local ERR = {}
-- uerror raises msg at the first caller outside this prelude: the user's line.
local function uerror(msg)
	local lvl = 2
	while true do
		local info = getinfo(lvl, "S")
		if not info or (info.short_src ~= "ngx.prelude" and info.what ~= "C") then break end
		lvl = lvl + 1
	end
	error(msg, lvl)
end
local function parse(s, pos, depth)
	local e = find(s, "\r\n", pos, true)
	if not e then return nil end
	local t, line, nxt = sub(s, pos, pos), sub(s, pos + 1, e - 1), e + 2
	if t == "+" or t == "," or t == "(" or t == "#" then return line, nxt
	elseif t == "-" then return ERR, nxt, line
	elseif t == ":" then return tonumber(line), nxt
	elseif t == "_" then return null, nxt
	elseif t == "$" or t == "=" or t == "!" then
		local n = tonumber(line)
		if not n then return nil end
		if n < 0 then return null, nxt end
		local str = sub(s, nxt, nxt + n - 1)
		if t == "!" then return ERR, nxt + n + 2, str end
		return str, nxt + n + 2
	elseif t == "*" or t == "~" or t == ">" or t == "%" then
		local n = tonumber(line)
		if not n or depth >= 64 then return nil end
		if n < 0 then return null, nxt end
		if t == "%" then n = n * 2 end
		local arr = {}
		for k = 1, n do
			local v, p, msg = parse(s, nxt, depth + 1)
			if v == nil then return nil end
			if v == ERR then v = {false, msg} end
			arr[k] = v
			nxt = p
		end
		return arr, nxt
	end
	return nil
end
local why_pubsub = "needs a connection of its own (pub/sub, replication): use a cosocket (lua-resty-redis) for it"
local why_watch = "needs a connection of its own (WATCH): use a cosocket (lua-resty-redis) for it"
local why_state = "would change the state of a pooled connection: the upstream's db, username and password settings choose them"
local never = {subscribe = why_pubsub, psubscribe = why_pubsub, ssubscribe = why_pubsub, unsubscribe = why_pubsub,
	punsubscribe = why_pubsub, sunsubscribe = why_pubsub, monitor = why_pubsub, sync = why_pubsub, psync = why_pubsub,
	watch = why_watch, unwatch = why_watch, select = why_state, auth = why_state, hello = why_state, quit = why_state,
	reset = why_state, readonly = why_state, readwrite = why_state}
local function rarg(v, i, name)
	local t = type(v)
	if t == "string" then return v end
	if t == "number" then
		if v == floor(v) and v > -2^53 and v < 2^53 then return format("%.0f", v) end
		return tostring(v)
	end
	if t == "boolean" then return tostring(v) end
	uerror(format("bad argument #%d to '%s' (string, number or boolean expected, got %s)", i, name, t))
end
local function encode(cmds)
	local out, n = {}, 0
	for _, c in ipairs(cmds) do
		n = n + 1; out[n] = #tostring(#c) .. ":" .. #c
		for _, a in ipairs(c) do n = n + 1; out[n] = #a .. ":" .. a end
	end
	return concat(out, "", 1, n)
end
local redis_mt = {__metatable = "spindle.redis"}
local methods = {}
redis_mt.__index = methods
redis_mt.__tostring = function(o) return 'spindle.redis("' .. rawget(o, "name") .. '")' end
local function self_of(o)
	if type(o) ~= "table" or getmetatable(o) ~= "spindle.redis" then
		uerror("spindle.redis: call methods with a colon (red:get(k), not red.get(k))")
	end
	return o
end
local function send(o, cmds, single)
	local raw, err, raise = S.redis_exec(rawget(o, "h"), rawget(o, "timeout"), encode(cmds), single)
	if raise then uerror(raise) end
	if not raw then return nil, err end
	return raw
end
local function do1(o, args)
	local raw, err = send(o, {args}, true)
	if not raw then return nil, err end
	local v, _, msg = parse(raw, 1, 0)
	if v == nil then return nil, "bad reply" end
	if v == ERR then return false, msg end
	return v
end
local function exec(o, cmds, last)
	local raw, err = send(o, cmds, false)
	if not raw then return nil, err end
	local out, pos = {}, 1
	for i = 1, #cmds do
		local v, p, msg = parse(raw, pos, 0)
		if v == nil then return nil, "bad reply" end
		pos = p
		if last then
			if i == #cmds then
				if v == ERR then return false, msg end
				return v
			end
		else
			if v == ERR then v = {false, msg} end
			out[i] = v
		end
	end
	return out
end
local function args_of(name, ...)
	local args = {name}
	local n = select("#", ...)
	for i = 1, n do
		local v = select(i, ...)
		if lower(name) == "hmset" and i == 2 and n == 2 and type(v) == "table" then
			for k, x in pairs(v) do args[#args + 1] = rarg(k, i, name); args[#args + 1] = rarg(x, i, name) end
		else
			args[#args + 1] = rarg(v, i, name)
		end
	end
	return args
end
local function check_never(name, args)
	local l = lower(name)
	if never[l] then uerror("spindle.redis: " .. name .. " " .. never[l]) end
	if l == "client" and args[2] and lower(args[2]) == "reply" then
		uerror("spindle.redis: CLIENT REPLY would desynchronise a pooled connection")
	end
end
local function call(o, name, ...)
	self_of(o)
	local args = args_of(name, ...)
	check_never(name, args)
	local l = lower(name)
	if rawget(o, "pipe") then local p = rawget(o, "pipe"); p[#p + 1] = args; return end
	if rawget(o, "tx") then
		if l == "multi" then return false, "ERR MULTI calls can not be nested"
		elseif l == "discard" then o.tx = nil; return "OK"
		elseif l == "exec" then
			local cmds = rawget(o, "tx")
			cmds[#cmds + 1] = args
			o.tx = nil
			return exec(o, cmds, true)
		end
		local tx = rawget(o, "tx"); tx[#tx + 1] = args
		return "QUEUED"
	end
	if l == "multi" then o.tx = {args}; return "OK" end
	if l == "exec" or l == "discard" then return false, "ERR " .. upper(name) .. " without MULTI" end
	return do1(o, args)
end
local function run_pipeline(o, cmds)
	if #cmds == 0 then return {} end
	local in_multi = false
	for _, c in ipairs(cmds) do
		local l = lower(c[1])
		if l == "multi" then in_multi = true elseif l == "exec" or l == "discard" then in_multi = false end
	end
	if in_multi then uerror("spindle.redis: a pipeline with MULTI must end the transaction with EXEC or DISCARD") end
	return exec(o, cmds, false)
end
methods.command = function(o, name, ...)
	if type(name) ~= "string" or name == "" then uerror("bad argument #1 to 'command' (command name expected)") end
	return call(o, name, ...)
end
methods.init_pipeline = function(o)
	self_of(o)
	if rawget(o, "tx") then uerror("spindle.redis: init_pipeline inside MULTI") end
	o.pipe = {}
end
methods.cancel_pipeline = function(o) self_of(o); o.pipe = nil end
methods.commit_pipeline = function(o)
	self_of(o)
	local cmds = rawget(o, "pipe")
	if not cmds then return nil, "no pipeline" end
	o.pipe = nil
	return run_pipeline(o, cmds)
end
methods.pipeline = function(o, t)
	self_of(o)
	if type(t) ~= "table" then uerror("bad argument #1 to 'pipeline' (table of commands expected, got " .. type(t) .. ")") end
	local cmds = {}
	for i = 1, #t do
		local c = t[i]
		if type(c) ~= "table" or #c == 0 then
			uerror('bad argument #1 to \'pipeline\' (commands expected as arrays: { {"get", "a"}, {"set", "b", 1} })')
		end
		if type(c[1]) ~= "string" or c[1] == "" then
			uerror("bad argument #1 to 'pipeline' (command name expected as the first element of each command)")
		end
		local args = args_of(c[1], unpack(c, 2, #c))
		check_never(c[1], args)
		cmds[i] = args
	end
	return run_pipeline(o, cmds)
end
methods.set_timeout = function(o, ms)
	self_of(o)
	if type(ms) ~= "number" or ms < 0 then uerror("bad argument #1 to 'set_timeout' (timeout in milliseconds expected)") end
	o.timeout = ms
end
methods.set_keepalive = function() return 1 end
methods.close = function() return 1 end
methods.add_commands = function() end
methods.connect = function()
	uerror("spindle.redis: connect is not needed: the object uses the pools of its upstream")
end
methods.array_to_hash = function(o, t)
	if type(t) ~= "table" then uerror("bad argument #1 to 'array_to_hash' (table expected, got " .. type(t) .. ")") end
	local h = {}
	for i = 1, #t - 1, 2 do if t[i] ~= nil then h[t[i]] = t[i + 1] end end
	return h
end
local nmethods = 0
setmetatable(methods, {__index = function(t, name)
	if type(name) ~= "string" or name == "" then return nil end
	local f = function(o, ...) return call(o, name, ...) end
	if nmethods < 512 and #name <= 32 then
		nmethods = nmethods + 1
		rawset(t, name, f)
	end
	return f
end})
spindle.redis = function(...)
	local name = ...
	if type(name) ~= "string" or name == "" then
		local got = name == "" and "an empty string" or (select("#", ...) == 0 and "no value" or type(name))
		uerror("bad argument #1 to 'spindle.redis' (upstream name expected, got " .. got .. ")")
	end
	local h, err = S.redis_handle(name)
	if not h then return nil, err end
	return setmetatable({h = h, name = name, timeout = 0}, redis_mt)
end

-- spindle.memcached(name): lua-resty-memcached's methods over the memc module's
-- pools (memcached.go); one object per name.
local memc_mt = {__metatable = "spindle.memcached"}
local mmethods = {}
memc_mt.__index = mmethods
memc_mt.__tostring = function(o) return 'spindle.memcached("' .. rawget(o, "name") .. '")' end
local memc_objs = {}
local function mself(o)
	if type(o) ~= "table" or getmetatable(o) ~= "spindle.memcached" then
		uerror("spindle.memcached: call methods with a colon (mc:get(k), not mc.get(k))")
	end
	return o
end
local function mkey(k, fn)
	local t = type(k)
	if t == "string" then return k end
	if t == "number" then return rarg(k, 1, fn) end
	uerror("bad argument #1 to '" .. fn .. "' (key expected (string or number), got " .. t .. ")")
end
local function mint(v, i, fn, what)
	if v == nil then return 0 end
	if type(v) == "number" then return v end
	if type(v) == "string" then
		local n = tonumber(v)
		if n and n == floor(n) then return n end
	end
	uerror("bad argument #" .. i .. " to '" .. fn .. "' (" .. what .. " expected (integer))")
end
local function mvalue(v, fn, depth, buf)
	local t = type(v)
	if t == "string" then buf[#buf + 1] = v; return end
	if t == "number" then buf[#buf + 1] = rarg(v, 2, fn); return end
	if t == "table" and depth < 32 then
		for i = 1, #v do mvalue(v[i], fn, depth + 1, buf) end
		return
	end
	uerror("bad argument #2 to '" .. fn .. "' (value expected (string, number or array of them), got " .. t .. ")")
end
local function mret(op, ...)
	local r1, r2, r3 = ...
	if r1 == nil and r2 == nil and r3 ~= nil and (op ~= "get" or r3:find("API disabled", 1, true)) then uerror(r3) end
	return ...
end
local function mop(o, op, ...)
	return mret(op, S.memc_op(rawget(o, "h"), op, ...))
end
mmethods.get = function(o, k)
	mself(o)
	if type(k) == "table" then
		local res = {}
		for i = 1, #k do
			local name = k[i]
			if type(name) ~= "string" and type(name) ~= "number" then
				uerror("bad argument #1 to 'get' (keys expected as strings or numbers)")
			end
			local v, flags, err = mop(o, "get", mkey(name, "get"))
			if err then return nil, err end
			if v ~= nil then res[name] = {v, flags} end
		end
		return res
	end
	return mop(o, "get", mkey(k, "get"))
end
for _, op in ipairs({"set", "add", "replace", "append", "prepend"}) do
	mmethods[op] = function(o, k, v, exptime, flags)
		mself(o)
		local key = mkey(k, op)
		local buf = {}
		mvalue(v, op, 0, buf)
		return mop(o, op, key, concat(buf), mint(exptime, 3, op, "exptime"), mint(flags, 4, op, "flags"))
	end
end
mmethods.delete = function(o, k) mself(o); return mop(o, "delete", mkey(k, "delete")) end
for _, op in ipairs({"incr", "decr"}) do
	mmethods[op] = function(o, k, d)
		mself(o)
		local key = mkey(k, op)
		local n = tonumber(d)
		if type(d) ~= "number" and type(d) ~= "string" or not n or n < 0 or n ~= floor(n) then
			uerror("bad argument #2 to '" .. op .. "' (delta expected (a non-negative integer))")
		end
		return mop(o, op, key, "", n, 0)
	end
end
mmethods.touch = function(o, k, exptime)
	mself(o)
	return mop(o, "touch", mkey(k, "touch"), "", mint(exptime, 2, "touch", "exptime"), 0)
end
mmethods.flush_all = function(o, delay) mself(o); return mop(o, "flush_all", "", "", mint(delay, 1, "flush_all", "time"), 0) end
mmethods.stats = function(o, args)
	mself(o)
	if type(args) == "string" and args:find("[\r\n]") then
		uerror("bad argument #1 to 'stats' (arguments may not hold line breaks)")
	end
	local out, err = mop(o, "stats", "", type(args) == "string" and args or "", 0, 0)
	if not out then return nil, err end
	local t = {}
	for l in out:gmatch("[^\n]+") do t[#t + 1] = l end
	return t
end
mmethods.version = function(o) mself(o); return mop(o, "version", "", "", 0, 0) end
mmethods.set_timeout = function() return 1 end
mmethods.set_keepalive = function() return 1 end
mmethods.close = function() return 1 end
mmethods.connect = function()
	uerror("spindle.memcached: connect is not needed: the object uses the pools of its upstream")
end
spindle.memcached = function(...)
	local name = ...
	if type(name) ~= "string" or name == "" then
		local got = name == "" and "an empty string" or (select("#", ...) == 0 and "no value" or type(name))
		uerror("bad argument #1 to 'spindle.memcached' (upstream name expected, got " .. got .. ")")
	end
	local o = memc_objs[name]
	if o then return o end
	local h, err = S.memc_handle(name)
	if not h then return nil, err end
	o = setmetatable({h = h, name = name}, memc_mt)
	memc_objs[name] = o
	return o
end

-- lua-resty-core's modules that apps require: ngx.semaphore, ngx.re (split),
-- and resty.core itself, whose APIs this engine has built in.
local sema_mt = {}
sema_mt.__index = {
	post = function(self, n) return S.sema_post(self[1], n) end,
	wait = function(self, timeout)
		if type(timeout) ~= "number" or timeout < 0 then error("bad argument #1 to 'wait' (bad timeout)", 2) end
		return S.sema_wait(self[1], timeout)
	end,
	count = function(self) return S.sema_count(self[1]) end,
}
package.loaded["ngx.semaphore"] = {
	new = function(n)
		n = n or 0
		if type(n) ~= "number" or n < 0 then return nil, "no negative number" end
		return setmetatable({S.sema_new(n)}, sema_mt)
	end,
}
ngx.semaphore = package.loaded["ngx.semaphore"]

-- ngx.re.split(subject, regex, opts, ctx, max, res): the pieces between matches,
-- with the groups a match captures after its piece; at most max pieces (the last
-- holds the rest), max <= 0 for no limit.
ngx.re.split = function(subj, regex, opts, ctx, max, res)
	subj = strarg(subj, 1, "split")
	regex = strarg(regex, 2, "split")
	max = max or 0
	res = res or {}
	local n = 0
	local function add(v)
		n = n + 1
		res[n] = v
	end
	local all, per = re_all(subj, regex, opts or "", -1)
	if not all then return nil, per end
	local last, len, pieces = 0, #subj, 0
	for i = 0, #all / per - 1 do
		-- max counts the pieces, not the groups captured between them (re-split.t)
		if max > 0 and pieces >= max - 1 then break end
		local a, b = all[i * per + 1], all[i * per + 2]
		if a == b and (a == last or a >= len) then
			-- an empty match at a piece's start or the end splits nothing
		else
			add(sub(subj, last + 1, a))
			pieces = pieces + 1
			for g = 1, per / 2 - 1 do
				local ga = all[i * per + 2 * g + 1]
				if ga >= 0 then add(sub(subj, ga + 1, all[i * per + 2 * g + 2])) end
			end
			last = b
		end
	end
	add(sub(subj, last + 1))
	for k = n + 1, #res do res[k] = nil end
	return res
end
package.loaded["ngx.re"] = {split = ngx.re.split}

-- lua-resty-core: spindle ships its own modules under lua-resty-core's names
-- (docs/lua-engine.md, "lua-resty-core": chosen over providing the
-- ngx_http_lua_ffi_* C ABI, by measurement). The ngx API above is what
-- `require "resty.core"` installs in OpenResty; the modules apps load give the same
-- functions, the pure ones through the FFI as lua-resty-core does.
local core_version = "0.1.25" -- the lua-resty-core release whose API these follow
local new_tab, clear_tab = require "table.new", require "table.clear"
local errmsg_ptr = ffi_new("char *[1]")
local core_base = {
	version = core_version,
	new_tab = new_tab,
	clear_tab = clear_tab,
	FFI_OK = 0, FFI_NO_REQ_CTX = -100, FFI_BAD_CONTEXT = -101, FFI_ERROR = -1,
	FFI_AGAIN = -2, FFI_BUSY = -3, FFI_DONE = -4, FFI_DECLINED = -5,
	get_string_buf = get_string_buf,
	get_string_buf_size = function() return strbuf_size end,
	set_string_buf_size = function(n)
		if n > 0 then strbuf, strbuf_size = ffi_new("unsigned char[?]", n), n end
	end,
	get_size_ptr = function() return size_ptr end,
	get_errmsg_ptr = function() return errmsg_ptr end,
	ref_in_table = function(tb, key)
		if key == nil then return -1 end
		local ref = tb[0]
		if ref and ref ~= 0 then tb[0] = tb[ref] else ref = #tb + 1 end
		tb[ref] = key
		return ref
	end,
	allows_subsystem = function(...)
		for i = 1, select("#", ...) do
			if select(i, ...) == "http" then return end
		end
		error("unsupported subsystem: http", 2)
	end,
}
package.loaded["resty.core.base"] = core_base

-- ngx.base64: URL-safe base64 (RFC 4648 §5, no padding), nginx's coders in C.
local str_t = ffi_new("ngx_str_t[2]")
package.loaded["ngx.base64"] = {
	version = core_version,
	encode_base64url = function(s)
		if type(s) ~= "string" then return nil, "must provide a string" end
		str_t[0].data, str_t[0].len = s, #s
		str_t[1].data = get_string_buf(floor((#s + 2) / 3) * 4)
		C.ngx_encode_base64url(str_t + 1, str_t)
		return ffi_string(str_t[1].data, str_t[1].len)
	end,
	decode_base64url = function(s)
		if type(s) ~= "string" then return nil, "must provide a string" end
		str_t[0].data, str_t[0].len = s, #s
		str_t[1].data = get_string_buf(floor((#s + 3) / 4) * 3)
		if C.ngx_decode_base64url(str_t + 1, str_t) ~= 0 then return nil, "invalid input" end
		return ffi_string(str_t[1].data, str_t[1].len)
	end,
}

-- ngx.process: spindle has no privileged agent.
local process_type = S.process_type
package.loaded["ngx.process"] = {
	version = core_version,
	type = function() return process_type() end,
	get_master_pid = S.master_pid,
	enable_privileged_agent = function() return nil, "privileged agent not supported" end,
	signal_graceful_exit = function() end,
}

-- ngx.errlog: raw_log writes the message as it is; capturing the error log
-- (lua_capture_error_log) is not supported.
local no_capture = 'directive "lua_capture_error_log" is not set'
package.loaded["ngx.errlog"] = {
	version = core_version,
	raw_log = function(level, msg)
		if type(level) ~= "number" then error("bad argument #1 to 'raw_log' (must be a number)", 2) end
		if type(msg) ~= "string" then error("bad argument #2 to 'raw_log' (must be a string)", 2) end
		if level < 0 or level > 8 then error("bad log level", 2) end
		if log_enabled(level) then log(level, "", msg, true) end
	end,
	get_sys_filter_level = S.errlog_level,
	set_filter_level = function(level)
		if not level then return nil, [[missing "level" argument]] end
		return nil, no_capture
	end,
	get_logs = function() return nil, no_capture end,
}

-- ngx.req (lua-resty-core's module): add_header adds to the values a header has.
local get_phase = S.get_phase
package.loaded["ngx.req"] = {
	version = core_version,
	add_header = function(name, value)
		local ph = get_phase()
		if ph == "init" or ph == "init_worker" or ph == "timer" then
			error("API disabled in the current context", 2)
		end
		if name == nil then error("bad 'name' argument: string expected, got nil", 2) end
		if value == nil then error("bad 'value' argument: string or table expected, got nil", 2) end
		name = tostring(name)
		if type(value) == "table" then
			if #value == 0 then error("bad 'value' argument: non-empty table expected", 2) end
			local vals = norm_header_value(value)
			return S.req_set_header(name, "add", unpack(vals))
		end
		return S.req_set_header(name, "add", tostring(value))
	end,
}

-- resty.core.time: ngx.now and friends are set above; monotonic clocks.
package.loaded["resty.core.time"] = {
	version = core_version,
	monotonic_msec = function() return tonumber(C.ngx_http_lua_ffi_monotonic_msec()) end,
	monotonic_time = function() return tonumber(C.ngx_http_lua_ffi_monotonic_msec()) / 1000 end,
}

-- The other modules resty.core loads: what they install is in place already.
for _, name in ipairs({"var", "worker", "regex", "shdict", "hash", "uri", "exit", "base64",
		"request", "response", "phase", "ndk", "socket", "misc", "ctx", "coroutine", "param", "utils"}) do
	package.loaded["resty.core." .. name] = package.loaded["resty.core." .. name] or {version = core_version}
end
package.loaded["resty.core.utils"].str_replace_char = function(str, find, replace)
	return (str:gsub(find:find("%W") and "%" .. find or find, (replace:gsub("%%", "%%%%"))))
end
package.loaded["resty.core"] = {version = core_version}

-- Light threads: the thread's function runs in a coroutine made here; its results
-- stay in Lua (results), Go only schedules it (thread.go).
local results = setmetatable({}, {__mode = "k"})
local thread_ids = setmetatable({}, {__mode = "k"})
local uthread_proto = newproxy(true)
local uthread_mt = getmetatable(uthread_proto)
uthread_mt.__tostring = function(h) return "thread: " .. tostring(thread_ids[h]) end
local function pack(...) return {n = select("#", ...), ...} end
local function tid(h, i, name)
	local id = thread_ids[h]
	if not id then error("bad argument #" .. i .. " to '" .. name .. "' (thread expected)", 3) end
	return id
end
ngx.thread = {
	spawn = function(f, ...)
		if type(f) ~= "function" then error("bad argument #1 to 'spawn' (function expected, got " .. type(f) .. ")", 2) end
		local args, n = {...}, select("#", ...)
		local h = newproxy(uthread_proto)
		local co = co_create(function()
			results[h] = pack(f(unpack(args, 1, n)))
		end)
		local id, err = S.thread_spawn(co)
		if not id then error(err, 2) end
		thread_ids[h] = id
		return h
	end,
	wait = function(...)
		local ids = {}
		for i = 1, select("#", ...) do ids[i] = tid(select(i, ...), i, "wait") end
		local id, ok, err = S.thread_wait(unpack(ids))
		if id == nil then return nil, ok end
		for i = 1, select("#", ...) do
			local h = select(i, ...)
			if thread_ids[h] == id then
				if not ok then return false, err end
				local r = results[h] or {n = 0}
				results[h] = nil
				return true, unpack(r, 1, r.n)
			end
		end
	end,
	kill = function(h) return S.thread_kill(tid(h, 1, "kill")) end,
}

-- Coroutines: a Go function that waits yields WAIT; a user coroutine passes it up
-- to the request's coroutine, which yields to Go, and hands the results back down.
local function relay(co, ok, first, ...)
	if ok and first == WAIT then
		return relay(co, co_resume(co, yield(WAIT)))
	end
	return ok, first, ...
end
local resume = function(co, ...)
	return relay(co, co_resume(co, ...))
end
coroutine.resume = resume
local function unwrap(ok, ...)
	if ok then return ... end
	local err = ...
	error(err, type(err) == "string" and 2 or 0)
end
coroutine.wrap = function(f)
	local co = co_create(f)
	return function(...)
		return unwrap(resume(co, ...))
	end
end

-- The runner: what every run's coroutine starts with. factory makes a new closure
-- of a handler's chunk, which runs in an environment of its own over the globals
-- (ngx_lua's per-request sandbox), or in the globals for init code; ngx.arg holds
-- set_by_lua's arguments or a body filter's chunk and eof.
local env_meta = {__index = G}
local EMPTY = {}

-- A chunk that can never write a global (no GSET instruction, no use of _G,
-- getfenv and friends, in it or its nested functions) runs with the shared globals
-- as its environment: no table per run, and global reads without a metamethod,
-- which LuaJIT's compiler handles far better.
local jutil = require "jit.util"
local band, rshift = bit.band, bit.rshift
local function ops(f)
	local t, pc = {}, 1
	while true do
		local ins = jutil.funcbc(f, pc)
		if not ins then return t end
		t[band(ins, 0xff)] = true
		pc = pc + 1
	end
end
local GSET, GGET
do
	local set, get, none = ops(loadstring("y = z")), ops(loadstring("local y = z")), ops(loadstring("local y = 1"))
	for op in pairs(set) do if not get[op] then GSET = op end end
	for op in pairs(get) do if not none[op] then GGET = op end end
end
local env_access = {_G = true, getfenv = true, setfenv = true, module = true,
	loadstring = true, load = true, loadfile = true, dofile = true}
local function pure(f)
	local pc = 1
	while true do
		local ins = jutil.funcbc(f, pc)
		if not ins then break end
		local op = band(ins, 0xff)
		if op == GSET then return false end
		if op == GGET and env_access[jutil.funck(f, -rshift(ins, 16) - 1)] then return false end
		pc = pc + 1
	end
	local info = jutil.funcinfo(f)
	for i = 1, info.gcconsts or 0 do
		local k = jutil.funck(f, -i)
		if type(k) == "proto" and not pure(k) then return false end
	end
	return true
end
local purity = setmetatable({}, {__mode = "k"})
-- A pure chunk's closure (no upvalues, the shared globals) is made once and run
-- by every request, as ngx_lua caches a handler's function: no closure per run.
local closures = setmetatable({}, {__mode = "k"})
S.set_runner(function(factory, kind, ...)
	if kind == 9 then
		-- request contexts whose requests are gone
		for i = 1, select("#", ...) do ctxs[(select(i, ...))] = nil end
		return
	end
	if kind == 5 then
		cur_arg = EMPTY
		return factory(...)
	end
	local fn = closures[factory]
	if fn then
		if kind == 0 then
			cur_arg = EMPTY
			return fn(...)
		end
	else
		fn = factory()
	end
	if kind == 4 then
		cur_arg = EMPTY
		return fn(...)
	end
	local p = purity[factory]
	if p == nil then
		p = pure(factory)
		purity[factory] = p
		if p then closures[factory] = fn end
	end
	if not p then
		local env = setmetatable({}, env_meta)
		env._G = env
		setfenv(fn, env)
	end
	if kind == 2 then
		cur_arg = {...}
		return fn()
	elseif kind == 3 then
		cur_arg = {...}
		fn()
		return cur_arg[1], cur_arg[2]
	end
	cur_arg = EMPTY
	return fn(...)
end)
