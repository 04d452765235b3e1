#!/usr/bin/env bash
# Side-by-side benchmarks: spindle against nginx + lua-nginx-module (Debian's packages)
# on the same workloads, configured from ../shared/anchors/nginx.conf.
#
#   scripts/bench.sh [throughput] [memory] [reload] [upgrade] [ceiling] [hostile] [http2]
#                                                       (default: throughput memory)
#
# throughput: one worker each pinned to CPU 0, wrk -t1 -c100 pinned to CPU 1 (backends
#             too), each workload run ROUNDS times alternating the servers; prints the
#             median rps of each, the ratio spindle/nginx, and the median busy time
#             of CPU 0 per request of each (cpu0/req, µs), and of the worker process
#             alone (worker/req, µs: not inflated by other processes on CPU 0);
#             then the median of the rounds' own ratios (paired: rps, and cpu0/req
#             as nginx/spindle), which a machine whose speed drifts between rounds
#             moves less. Workloads whose spindle module is not built yet are skipped.
# memory:     RSS per idle keepalive connection (4,000 connections) and per Lua request
#             in flight (2,000 requests in ngx.sleep) for both servers.
# reload:     2 workers each, 20 reloads under wrk load, with a new connection per
#             request and over keepalive connections, in the clear and over TLS
#             (sessions resumed), and under h2load -m10 over HTTP/2 (TLS, ALPN h2);
#             prints requests and errors. h2load counts failed the requests it had
#             queued on a connection when its GOAWAY came (it does not send them again
#             elsewhere, as RFC 9113 §6.8 lets a client do): about one per connection
#             per drain, for nginx too; every stream it opened is answered. A second
#             HTTP/2 row loads with Go's client (internal/cmd/h2retry), which keeps
#             one connection per client, resumes its TLS session and sends a refused
#             request again as browsers do: its failures are lost requests.
# upgrade:    3 binary upgrades under the same loads (nginx: USR2, WINCH, QUIT).
# hostile:    1,000 slowloris connections and 200 slow 1 MB request bodies (a byte every
#             5 s) against one worker each, beside sequential /hello requests: their
#             p99 and errors, the worker's RSS idle, at peak and 10 s after
#             (internal/cmd/hostile; HOSTILE_SLOWLORIS, HOSTILE_BODIES,
#             HOSTILE_DURATION). The full-worker case (worker_connections reached)
#             is covered by httpcore's TestFullWorkerReusesConnections.
# ceiling:    /hello on internal/cmd/nullserver, a server that does nothing but one
#             read and one write per request, beside nginx and spindle (same pinning,
#             rounds alternating): the most any server can reach over nginx's rate
#             with this client on this machine; with how busy wrk's CPU 1 was.
# http2:      /hello over HTTP/2 with h2load -c100 -m10 (pinned to CPU 1), h2c and TLS
#             (ECDSA P-256), ROUNDS alternating: median rps and CPU 0's time per
#             request of each; and RSS per idle HTTP/2 connection (idleconns -h2).
#
# Environment: DURATION (seconds per run, default 10), ROUNDS (default 3),
# CONNS (wrk connections, default 100), ANCHOR (path to the anchor nginx.conf),
# WORKLOADS (names of the throughput workloads to run, space-separated; default all).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-100}
ANCHOR=${ANCHOR:-$ROOT/../shared/anchors/nginx.conf}
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(throughput memory)

export PATH=/usr/local/go/bin:$PATH

# ---------------------------------------------------------------- set-up
install_deps() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx)
  [ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)
  [ -e /usr/lib/nginx/modules/ngx_http_echo_module.so ] || need+=(libnginx-mod-http-echo)
  [ -e /usr/lib/nginx/modules/ngx_http_memc_module.so ] || need+=(libnginx-mod-http-memc)
  [ -e /usr/lib/nginx/modules/ndk_http_module.so ] || need+=(libnginx-mod-http-ndk)
  [ -e /usr/share/lua/5.1/nginx/redis.lua ] || need+=(lua-nginx-redis)
  # The CPU-bound Lua workloads' libraries: lua-cjson, lua-resty-string (nginx.sha1 ...).
  dpkg -s lua-cjson >/dev/null 2>&1 || need+=(lua-cjson)
  [ -e /usr/share/lua/5.1/nginx/sha1.lua ] || need+=(lua-nginx-string)
  command -v wrk >/dev/null || need+=(wrk)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v memcached >/dev/null || need+=(memcached)
  command -v bc >/dev/null || need+=(bc)
  command -v curl >/dev/null || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    echo "bench: installing ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

wait_port() {
  for _ in $(seq 100); do
    (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nothing listens on $1" >&2
  exit 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

WORK=$(mktemp -d /tmp/spindle-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx/nginx.pid" ] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/spindle/logs/spindle.pid" ] && kill "$(cat "$WORK/spindle/logs/spindle.pid")" 2>/dev/null || true
  sleep 0.5
  pkill -f "$WORK" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

install_deps
go build -o "$WORK/spindle-bin" .
SPINDLE=$WORK/spindle-bin

REDISPORT=$(free_port)
MEMCPORT=$(free_port)
taskset -c 1 redis-server --port "$REDISPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null 2>&1 &
PIDS+=($!)
MEMCUSER=()
[ "$(id -u)" = 0 ] && MEMCUSER=(-u root) # memcached refuses root unless told whom to run as
taskset -c 1 memcached -l 127.0.0.1 -p "$MEMCPORT" -U 0 -t 1 -c 4096 "${MEMCUSER[@]}" >/dev/null 2>&1 &
PIDS+=($!)
UPPORT=$(free_port)
mkdir -p "$WORK/upstream"
cat > "$WORK/upstream/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; error_log stderr error;
pid $WORK/upstream/nginx.pid;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$UPPORT backlog=4096; location / { return 200 "upstream hello\n"; } } }
EOF
taskset -c 1 nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$REDISPORT"; wait_port "$MEMCPORT"; wait_port "$UPPORT"
redis-cli -p "$REDISPORT" set foo bar >/dev/null
printf 'set foo 0 0 3\r\nbar\r\nquit\r\n' | timeout 2 bash -c "cat > /dev/tcp/127.0.0.1/$MEMCPORT" || true

# TLS and gzip workloads: one ECDSA P-256 certificate for both servers (each serves
# /hello on a second, TLS, port), and a 100 KB HTML page compressed at level 1.
TLSCERT=$WORK/tls.crt
TLSKEY=$WORK/tls.key
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench \
  -keyout "$TLSKEY" -out "$TLSCERT" >/dev/null 2>&1
mkdir -p "$WORK/html"
chmod 755 "$WORK" "$WORK/html" # nginx's workers read the page as nobody when started as root
python3 - "$WORK/html/page.html" <<'PY'
import sys
rows, size, i = [], 0, 0
while size < 100 * 1024:
    row = '<tr><td class="n">%d</td><td><a href="/item/%d">item number %d</a></td><td>%x</td></tr>\n' % (i, i * 7, i, i * 2654435761)
    rows.append(row)
    size += len(row)
    i += 1
open(sys.argv[1], "w").write("<html><body><table>\n" + "".join(rows) + "</table></body></html>\n")
PY
SPINDLETLSPORT=$(free_port)
NGINXTLSPORT=$(free_port)
mkdir -p "$WORK/nginx/bench-http" "$WORK/nginx/bench-locations"
# nginx 1.22's ssl_protocols default lacks TLSv1.3 (it came with 1.23.4): without it
# nginx's handshakes, full and resumed, would be TLS 1.2's against spindle's 1.3.
cat > "$WORK/nginx/bench-http/tls.conf" <<EOF
server {
    listen 127.0.0.1:$NGINXTLSPORT ssl reuseport backlog=4096;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $TLSCERT;
    ssl_certificate_key $TLSKEY;
    location = /hello { return 200 "hello world\n"; }
}
EOF
cat > "$WORK/nginx/bench-locations/gzip.conf" <<EOF
location = /page.html { root $WORK/html; gzip on; gzip_comp_level 1; }
EOF

# CPU-bound Lua workloads (issue 16): the same Lua files, run by both servers with
# content_by_lua_file, where the Lua code itself does the work.
LUACPU=(lua_strings lua_cjson lua_sort lua_fib lua_hash lua_gateway)
mkdir -p "$WORK/lua"
cat > "$WORK/lua/lua_strings.lua" <<'LUA'
-- String building with Lua patterns: a ~2 KB string from string.format and
-- table.concat, scanned with gmatch, find and gsub.
local parts = {}
for i = 1, 40 do
	parts[#parts + 1] = string.format("item-%d=%s;", i, string.rep(string.char(97 + i % 26), 40))
end
local s = table.concat(parts)
local n = 0
for k, v in s:gmatch("(item%-%d+)=(%a+);") do
	n = n + #k + #v
end
local first = s:find("item%-2%d=")
local r, count = s:gsub("item%-(%d+)", "x%1")
ngx.say(#s, " ", n, " ", first, " ", #r, " ", count)
LUA
{
  echo '-- cjson: decode a ~2 KB document, change it, encode it again.'
  echo 'local cjson = require "cjson"'
  printf 'local doc = cjson.decode([[%s]])\n' "$(python3 -c '
import json
doc = {"id": 12345, "name": "spindle benchmark document", "active": True, "tags": ["lua", "json", "bench", "nginx"],
       "owner": {"login": "alice", "id": 42, "email": "alice@example.com", "admin": False}, "items": []}
for i in range(20):
    doc["items"].append({"sku": "SKU-%04d" % (i * 37), "qty": i + 1, "price": round(3.5 + i * 1.25, 2),
                         "title": "item number %d of the order" % i, "in_stock": i % 3 != 0})
print(json.dumps(doc, separators=(",", ":")))')"
  cat <<'LUA'
local total = 0
for _, it in ipairs(doc.items) do total = total + it.qty * it.price end
doc.total = total
doc.count = #doc.items
local out = cjson.encode(doc)
ngx.say(#out, " ", doc.count)
LUA
} > "$WORK/lua/lua_cjson.lua"
cat > "$WORK/lua/lua_sort.lua" <<'LUA'
-- table.sort of 200 records with a Lua comparator (score descending, then id).
local recs, x = {}, 12345
for i = 1, 200 do
	x = (x * 1103515245 + 12345) % 2147483648
	recs[i] = {id = i, score = x % 1000, name = "user" .. i}
end
table.sort(recs, function(a, b)
	if a.score ~= b.score then return a.score > b.score end
	return a.id < b.id
end)
ngx.say(recs[1].id, " ", recs[1].score, " ", recs[200].id)
LUA
cat > "$WORK/lua/lua_fib.lua" <<'LUA'
-- A recursive function: fib(20), 21,891 calls.
local function fib(n)
	if n < 2 then return n end
	return fib(n - 1) + fib(n - 2)
end
ngx.say(fib(20))
LUA
cat > "$WORK/lua/lua_hash.lua" <<'LUA'
-- Hashing with lua-resty-string (Debian's lua-nginx-string): SHA-1 and MD5 of a
-- 1 KB body through OpenSSL's libcrypto (FFI), hex-encoded by resty.string.
local sha1 = require "nginx.sha1"
local md5 = require "nginx.md5"
local str = require "nginx.string"
local body = string.rep("0123456789abcdef", 64)
local out = {}
for i = 1, 10 do
	local h = sha1:new()
	h:update(body)
	h:update(tostring(i))
	local m = md5:new()
	m:update(body)
	m:update(tostring(i))
	out[i] = str.to_hex(h:final()) .. str.to_hex(m:final())
end
ngx.say(out[1], " ", out[10])
LUA
cat > "$WORK/lua/lua_gateway.lua" <<'LUA'
-- A gateway-style handler: request headers and arguments, a PCRE match on the URI,
-- an md5 token, response headers, a small JSON body.
local h = ngx.req.get_headers()
local args = ngx.req.get_uri_args()
local key = h["x-api-key"]
if not key then return ngx.exit(401) end
local m = ngx.re.match(ngx.var.uri, [[^/(\w+)_(\w+)$]], "jo")
local route = m and m[2] or "none"
local user = args.user or "anonymous"
local token = ngx.md5(user .. ":" .. key .. ":" .. (h["user-agent"] or ""))
ngx.header["X-Route"] = route
ngx.header["X-Token"] = token
ngx.header["Content-Type"] = "application/json"
ngx.say('{"route":"', route, '","user":"', user, '","page":', tonumber(args.page) or 1, ',"token":"', token, '"}')
LUA
chmod 755 "$WORK/lua"
chmod 644 "$WORK"/lua/*.lua
for w in "${LUACPU[@]}"; do
  echo "location = /$w { content_by_lua_file $WORK/lua/$w.lua; }"
done > "$WORK/nginx/bench-locations/luacpu.conf"

# ---------------------------------------------------------------- nginx
NGINXPORT=$(free_port)
start_nginx() { # workers extra-conf
  mkdir -p "$WORK/nginx"
  sed -e "s#PREFIX#$WORK/nginx#g; s#REDISPORT#$REDISPORT#g; s#MEMCPORT#$MEMCPORT#g; s#\bPORT\b#$NGINXPORT#g" "$ANCHOR" > "$WORK/nginx/nginx.conf"
  # The proxy workload, against the same upstream as spindle's.
  sed -i "s#location = /hello#location = /proxy { proxy_pass http://127.0.0.1:$UPPORT/; proxy_http_version 1.1; proxy_set_header Connection \"\"; }\n        location = /hello#" "$WORK/nginx/nginx.conf"
  # The hostile mode's slow bodies.
  sed -i "s#location = /hello#location = /upload { client_max_body_size 10m; echo_read_request_body; echo ok; }\n        location = /hello#" "$WORK/nginx/nginx.conf"
  # The memory mode's Lua request in flight.
  sed -i "s#location = /hello#location = /lua_sleep { content_by_lua_block { ngx.sleep(8) ngx.say(\"ok\") } }\n        location = /hello#" "$WORK/nginx/nginx.conf"
  if [ -n "${NGINX_LISTEN_EXTRA:-}" ]; then
    sed -i "s#listen 127.0.0.1:$NGINXPORT #$NGINX_LISTEN_EXTRA\n        listen 127.0.0.1:$NGINXPORT #" "$WORK/nginx/nginx.conf"
  fi
  if [ "${1:-1}" != 1 ]; then
    sed -i "s#worker_processes 1;#worker_processes $1;#; s#worker_cpu_affinity 1;#worker_cpu_affinity 01 10;#" "$WORK/nginx/nginx.conf"
  fi
  if [ "${NGINX_DAEMON:-}" = 1 ]; then
    # nginx (since 1.23.1) ignores USR2 while its parent is the process that started
    # it, as with `daemon off`: for binary upgrades it runs daemonized, as under
    # systemd, and is followed through its pid file.
    sed -i "s#^daemon off;#daemon on;#" "$WORK/nginx/nginx.conf"
    rm -f "$WORK/nginx/nginx.pid"
    "$(command -v nginx)" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx/out.log" 2>&1
    for _ in $(seq 50); do [ -s "$WORK/nginx/nginx.pid" ] && break; sleep 0.1; done
    NGINX_MASTER=$(cat "$WORK/nginx/nginx.pid")
  else
    "$(command -v nginx)" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx/out.log" 2>&1 &
    NGINX_MASTER=$!
  fi
  wait_port "$NGINXPORT"
}
stop_nginx() {
  [ "${NGINX_DAEMON:-}" = 1 ] && NGINX_MASTER=$(cat "$WORK/nginx/nginx.pid" 2>/dev/null || echo "$NGINX_MASTER")
  kill -QUIT "$NGINX_MASTER" 2>/dev/null || true
  wait "$NGINX_MASTER" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$NGINX_MASTER" 2>/dev/null || break; sleep 0.1; done
}

# ---------------------------------------------------------------- spindle
SPINDLEPORT=$(free_port)
# Each workload's spindle location, checked alone with `spindle -t`: a workload whose
# module is not built yet is skipped.
declare -A LOC
LOC[hello]='location "= /hello" { return = { code = 200, body = "hello world\n" } }'
LOC[moon]='location "= /moon" { echo = "moon" }'
LOC[earth]='location "= /earth" { echo = "earth" }'
LOC[multi]='location "= /multi" { echo_location_async = ["/moon", "/earth"] }'
LOC[lua]='location "= /lua" { content_by_lua = "ngx.say(\"Hello, Lua!\")" }'
LOC[multi_lua]='location "= /multi_lua" {
      content_by_lua = <<-LUA
        local r1, r2 = ngx.location.capture_multi({ {"/moon"}, {"/earth"} })
        ngx.print(r1.body, ",", r2.body)
      LUA
    }'
LOC[redis]='location "= /redis" {
      redis_pass  = "redis_pool"
      redis_query = ["get", "foo"]
      redis_reply = "value"
    }'
LOC[redis_lua]='location "= /redis_lua" {
      content_by_lua = <<-LUA
        local redis = require "nginx.redis"
        local red = redis:new(); red:set_timeout(1000)
        local ok, err = red:connect("127.0.0.1", REDISPORT)
        if not ok then ngx.status = 502; ngx.say(err); return end
        local v = red:get("foo")
        red:set_keepalive(10000, 512)
        ngx.say(v)
      LUA
    }'
LOC[redis_fast]='location "= /redis_fast" {
      content_by_lua = "ngx.say(spindle.redis(\"redis_pool\"):get(\"foo\"))"
    }'
LOC[redis_short]='location "= /redis_short" {
      redis_pass  = "redis_short"
      redis_query = ["get", "foo"]
      redis_reply = "value"
    }'
LOC[redis_short_lua]='location "= /redis_short_lua" {
      content_by_lua = <<-LUA
        local redis = require "nginx.redis"
        local red = redis:new(); red:set_timeout(1000)
        local ok, err = red:connect("127.0.0.1", REDISPORT)
        if not ok then ngx.status = 502; ngx.say(err); return end
        local v = red:get("foo")
        red:close()
        ngx.say(v)
      LUA
    }'
# memory: a Lua request in flight, waiting in ngx.sleep (nginx gets the same location).
LOC[lua_sleep]='location "= /lua_sleep" { content_by_lua = "ngx.sleep(8) ngx.say(\"ok\")" }'
LOC[memc]='location "= /memc" {
      memc_pass = "memc_pool"
      memc_cmd  = "get"
      memc_key  = "foo"
    }'
LOC[proxy]='location "= /proxy" { proxy_pass = "http://up_pool/" }'
# hostile: slow request bodies, read whole (nginx gets the same location).
LOC[upload]='location "= /upload" {
      client_max_body_size   = "10m"
      echo_read_request_body = true
      echo                   = "ok"
    }'
for w in "${LUACPU[@]}"; do
  LOC[$w]="location \"= /$w\" { content_by_lua_file = \"$WORK/lua/$w.lua\" }"
done
LOC[gzip]="location \"= /page.html\" {
      root            = \"$WORK/html\"
      gzip            = true
      gzip_comp_level = 1
    }"

UPSTREAMS="  upstream \"redis_pool\" {
    type      = \"redis\"
    servers   = [\"127.0.0.1:$REDISPORT\"]
    keepalive = 512
  }
  upstream \"redis_short\" {
    type      = \"redis\"
    servers   = [\"127.0.0.1:$REDISPORT\"]
    keepalive = 0
  }
  upstream \"memc_pool\" {
    type      = \"memcached\"
    servers   = [\"127.0.0.1:$MEMCPORT\"]
    keepalive = 512
  }
  upstream \"up_pool\" {
    type      = \"http\"
    servers   = [\"127.0.0.1:$UPPORT\"]
    keepalive = 512
  }"

spindle_conf() { # workers locations... -> stdout
  local workers=$1; shift
  local affinity='["1"]'
  [ "$workers" = 1 ] || affinity='["01", "10"]'
  cat <<EOF
worker_processes        = $workers
worker_cpu_affinity     = $affinity
worker_shutdown_timeout = "30s"
error_log               = { path = "logs/error.log", level = "error" }
events { worker_connections = 4096 }
http {
  access_log = "off"
  lua_package_path = "/usr/share/lua/5.1/?.lua;;"
$UPSTREAMS
  server {
    listen = ["127.0.0.1:$SPINDLEPORT backlog=4096"${SPINDLE_LISTEN_EXTRA:-}]
${SPINDLE_SERVER_EXTRA:-}
EOF
  for l in "$@"; do printf '    %s\n' "$l"; done
  printf '  }\n'
  if [ -n "${TLS_SERVER:-}" ]; then
    cat <<EOF
  server {
    listen              = ["127.0.0.1:$SPINDLETLSPORT ssl backlog=4096"]
    ssl_certificate     = "$TLSCERT"
    ssl_certificate_key = "$TLSKEY"
    ${LOC[hello]}
  }
EOF
  fi
  printf '}\n'
}

# A config fragment is usable when spindle accepts it; access_log, lua_package_path and
# the upstreams are dropped while the modules behind them are missing.
usable_conf() { # file
  local f=$1
  "$SPINDLE" -q -t -p "$WORK/spindle" -c "$f" >/dev/null 2>&1 && return 0
  local t="$f.try"
  cp "$f" "$t"
  for pattern in 'access_log = "off"' 'lua_package_path'; do
    if ! "$SPINDLE" -q -t -p "$WORK/spindle" -c "$t" >/dev/null 2>&1; then
      grep -v "$pattern" "$t" > "$t.2" && mv "$t.2" "$t"
    fi
  done
  if ! "$SPINDLE" -q -t -p "$WORK/spindle" -c "$t" >/dev/null 2>&1; then
    python3 - "$t" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
s = re.sub(r'  upstream "[a-z_]+" \{.*?\n  \}\n', '', s, flags=re.S)
open(p, 'w').write(s)
PY
  fi
  "$SPINDLE" -q -t -p "$WORK/spindle" -c "$t" >/dev/null 2>&1 && mv "$t" "$f"
}

SUPPORTED=()
detect_workloads() {
  mkdir -p "$WORK/spindle/conf" "$WORK/spindle/html"
  for w in hello moon earth multi lua multi_lua redis redis_lua redis_fast redis_short redis_short_lua memc proxy lua_sleep upload gzip "${LUACPU[@]}"; do
    local loc=${LOC[$w]//REDISPORT/$REDISPORT}
    local helpers=("${LOC[moon]}" "${LOC[earth]}")
    [ "$w" = moon ] || [ "$w" = earth ] && helpers=()
    spindle_conf 1 "${helpers[@]}" "$loc" > "$WORK/spindle/conf/probe.hcl"
    if usable_conf "$WORK/spindle/conf/probe.hcl"; then
      SUPPORTED+=("$w")
    fi
  done
  # The TLS server goes into every config once this build takes it.
  TLS_SERVER=1
  spindle_conf 1 "${LOC[hello]}" > "$WORK/spindle/conf/probe.hcl"
  if usable_conf "$WORK/spindle/conf/probe.hcl"; then
    SUPPORTED+=(https)
  else
    TLS_SERVER=
  fi
}

start_spindle() { # workers
  local locs=()
  for w in "${SUPPORTED[@]}"; do [ -n "${LOC[$w]:-}" ] && locs+=("${LOC[$w]//REDISPORT/$REDISPORT}"); done
  spindle_conf "${1:-1}" "${locs[@]}" > "$WORK/spindle/conf/spindle.hcl"
  usable_conf "$WORK/spindle/conf/spindle.hcl" || { echo "bench: spindle config does not load" >&2; "$SPINDLE" -t -p "$WORK/spindle" -c "$WORK/spindle/conf/spindle.hcl"; exit 1; }
  (cd "$WORK/spindle" && exec "$SPINDLE" -p "$WORK/spindle" -c conf/spindle.hcl >"$WORK/spindle/out.log" 2>&1) &
  SPINDLE_MASTER=$!
  wait_port "$SPINDLEPORT"
  # The pid file appears once the workers are ready (tableflip's Ready), after the port
  # opens: a reload sent before it finds no master ("cannot find the master"), which a
  # loaded machine showed twice in reload runs.
  for _ in $(seq 100); do [ -s "$WORK/spindle/logs/spindle.pid" ] && break; sleep 0.1; done
}
stop_spindle() {
  local pid
  pid=$(cat "$WORK/spindle/logs/spindle.pid" 2>/dev/null || echo "$SPINDLE_MASTER")
  kill -QUIT "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  wait "$SPINDLE_MASTER" 2>/dev/null || true
}


# Busy clock ticks of CPU 0 (the worker's, and the kernel's network work done there),
# then busy and all ticks of CPU 1 (wrk's).
cpu_ticks() { awk '/^cpu0 / {a = $2 + $3 + $4 + $7 + $8 + $9} /^cpu1 / {b = $2 + $3 + $4 + $7 + $8 + $9; c = b + $5 + $6} END {print a, b, c}' /proc/stat; }

# The worker process of master $1 (its one child), once it has started.
worker_of() {
  local w
  for _ in $(seq 50); do
    w=$(pgrep -P "$1" | head -1)
    [ -n "$w" ] && { echo "$w"; return; }
    sleep 0.1
  done
}

# User and system clock ticks of process $1 (all its threads), 0 without one.
proc_ticks() { [ -n "${1:-}" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

wrk_rps() { # url [header] [worker-pid] -> "rps cpu0-us-per-request cpu1-busy-percent worker-us-per-request"
  local args=(-t1 -c"$CONNS" -d"${DURATION}s" --latency)
  [ -n "${2:-}" ] && args+=(-H "$2")
  local t0 t1 w0 w1 out
  t0=$(cpu_ticks); w0=$(proc_ticks "${3:-}")
  out=$(taskset -c 1 wrk "${args[@]}" "$1" 2>&1)
  t1=$(cpu_ticks); w1=$(proc_ticks "${3:-}")
  awk '/Non-2xx/ {print "non2xx", $NF > "/dev/stderr"}' <<<"$out"
  awk -v t0="$t0" -v t1="$t1" -v w="$((w1 - w0))" -v hz="$(getconf CLK_TCK)" '
    / requests in / {n = $1} /Requests\/sec/ {rps = $2}
    END {split(t0, a, " "); split(t1, b, " ")
      printf "%s %.1f %.1f %.1f\n", rps, n ? (b[1] - a[1]) * 1e6 / hz / n : 0, 100 * (b[2] - a[2]) / (b[3] - a[3] + 1e-9),
        n ? w * 1e6 / hz / n : 0}' <<<"$out"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# ---------------------------------------------------------------- throughput
throughput() {
  detect_workloads
  echo "spindle workloads available: ${SUPPORTED[*]}"
  # workload name, spindle path, nginx path, extra header, target ratio
  local rows=(
    "hello /hello /hello - 1.1"
    "hello_close /hello /hello Connection:close 1.0"
    "multi /multi /multi - 1.0"
    "lua /lua /lua - 0.9"
    "multi_lua /multi_lua /multi - 0.9"
    "redis /redis /redis - 1.5"
    "redis_lua /redis_lua /redis - 0.8"
    "redis_fast /redis_fast /redis - 1.5"
    "redis_short /redis_short /redis_short - 1.0"
    "redis_short_lua /redis_short_lua /redis_short - -"
    "memc /memc /memc - 1.2"
    "proxy /proxy /proxy - -"
    "https /hello /hello - 1.0"
    "https_close /hello /hello Connection:close 1.0"
    "gzip /page.html /page.html Accept-Encoding:gzip 1.0"
    "lua_strings /lua_strings /lua_strings - 0.9"
    "lua_cjson /lua_cjson /lua_cjson - 0.9"
    "lua_sort /lua_sort /lua_sort - 0.9"
    "lua_fib /lua_fib /lua_fib - 0.9"
    "lua_hash /lua_hash /lua_hash - 0.9"
    "lua_gateway /lua_gateway?user=alice&page=3 /lua_gateway?user=alice&page=3 X-Api-Key:k3y-0123 0.9"
  )
  # cpu0/req: CPU 0's busy time per request (the worker's user and system time and the
  # kernel's network work on that CPU), in microseconds: the cost per core. wrk saturates
  # CPU 1 before either server saturates CPU 0 on the lightest workloads, so there rps
  # alone cannot tell the servers apart. worker/req: the worker process's own user and
  # system time per request (/proc/PID/stat), which other processes that run on CPU 0
  # (a loaded machine) do not inflate; it misses the kernel's network work done in
  # interrupts.
  # paired: the median of each round's own ratio (spindle/nginx rps, and nginx/spindle
  # cpu0/req: above 1, spindle needs less CPU per request). A round runs the two servers
  # one after the other, so its pair shares the machine's state of the moment; this
  # machine's speed drifted by up to 30% between rounds (lua_sort: 6.3k to 10.1k rps
  # for both in one run), which the ratio of the two medians takes for a difference.
  printf '\n%-16s %10s %10s %7s %7s %8s %8s %10s %8s %7s %7s\n' workload spindle nginx ratio target "cpu0/req" "(nginx)" "worker/req" "(nginx)" paired "(cpu)"
  for row in "${rows[@]}"; do
    read -r name spath npath hdr target <<<"$row"
    if [ -n "${WORKLOADS:-}" ] && [[ ! " $WORKLOADS " == *" $name "* ]]; then
      continue
    fi
    local base=${name%_close}
    if [[ ! " ${SUPPORTED[*]} " == *" $base "* ]]; then
      printf '%-16s %10s\n' "$name" "skipped (module not built)"
      continue
    fi
    [ "$hdr" = - ] && hdr="" || hdr=${hdr/:/: }
    # A workload whose location loads but fails at run time (a module not built yet
    # behind it) is skipped too.
    # https: the TLS ports; https_close: a new connection per request, whose
    # handshake resumes the session (wrk reuses it).
    local surl="http://127.0.0.1:$SPINDLEPORT$spath" nurl="http://127.0.0.1:$NGINXPORT$npath"
    if [ "$base" = https ]; then
      surl="https://127.0.0.1:$SPINDLETLSPORT$spath" nurl="https://127.0.0.1:$NGINXTLSPORT$npath"
    fi
    start_spindle 1
    local code
    code=$(curl -sk -o /dev/null -w '%{http_code}' ${hdr:+-H "$hdr"} "$surl")
    stop_spindle
    if [ "$code" != 200 ]; then
      printf '%-16s %10s\n' "$name" "skipped (answers $code)"
      continue
    fi
    local s=() n=() sc=() nc=() sw=() nw=() r rps us wus pid
    for _ in $(seq "$ROUNDS"); do
      start_spindle 1
      pid=$(worker_of "$SPINDLE_MASTER")
      r=$(wrk_rps "$surl" "$hdr" "$pid"); stop_spindle
      read -r rps us _ wus <<<"$r"; s+=("$rps"); sc+=("$us"); sw+=("$wus")
      start_nginx 1
      pid=$(worker_of "$NGINX_MASTER")
      r=$(wrk_rps "$nurl" "$hdr" "$pid"); stop_nginx
      read -r rps us _ wus <<<"$r"; n+=("$rps"); nc+=("$us"); nw+=("$wus")
    done
    local sm nm scm ncm
    sm=$(median "${s[@]}"); nm=$(median "${n[@]}")
    scm=$(median "${sc[@]}"); ncm=$(median "${nc[@]}")
    local pr=() pc=() i
    for i in "${!s[@]}"; do
      pr+=("$(echo "scale=4; ${s[i]}/${n[i]}" | bc)")
      pc+=("$(echo "scale=4; ${nc[i]}/${sc[i]}" | bc 2>/dev/null || echo 0)")
    done
    printf '%-16s %10.0f %10.0f %7.3f %7s %8.1f %8.1f %10.1f %8.1f %7.3f %7.3f   (spindle %s; nginx %s)\n' "$name" "$sm" "$nm" \
      "$(echo "scale=3; $sm/$nm" | bc)" "$target" "$scm" "$ncm" "$(median "${sw[@]}")" "$(median "${nw[@]}")" \
      "$(median "${pr[@]}")" "$(median "${pc[@]}")" "${s[*]}" "${n[*]}"
  done
  if [[ " ${SUPPORTED[*]} " == *" redis "* ]]; then
    echo "redis connected_clients after the runs: $(redis-cli -p "$REDISPORT" info clients | awk -F: '/connected_clients/ {print $2}')"
  fi
}

# ---------------------------------------------------------------- memory
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
memory() {
  # Below worker_connections (4096 in the anchor config), so every connection is served.
  local n=${IDLE_CONNS:-4000}
  echo
  echo "memory per idle keepalive connection ($n connections, one request each):"
  [ ${#SUPPORTED[@]} -gt 0 ] || detect_workloads
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  start_spindle 1
  local w; w=$(pgrep -f "spindle: worker process" -P "$(cat "$WORK/spindle/logs/spindle.pid")" | head -1)
  local s; s=$(idle_conns "$w" "$SPINDLEPORT" "$n")
  stop_spindle
  start_nginx 1
  w=$(pgrep -P "$NGINX_MASTER" | head -1)
  local g; g=$(idle_conns "$w" "$NGINXPORT" "$n")
  stop_nginx
  echo "  spindle: $s bytes per connection"
  echo "  nginx:   $g bytes per connection"
  [[ " ${SUPPORTED[*]} " == *" lua_sleep "* ]] || return 0
  # Each request waits in ngx.sleep(8): what the worker holds per Lua request in flight
  # (connection, request, coroutine), against OpenResty's.
  local m=${INFLIGHT:-2000}
  echo "memory per Lua request in flight ($m requests in ngx.sleep):"
  start_spindle 1
  w=$(pgrep -f "spindle: worker process" -P "$(cat "$WORK/spindle/logs/spindle.pid")" | head -1)
  s=$(inflight "$w" "$SPINDLEPORT" "$m")
  stop_spindle
  start_nginx 1
  w=$(pgrep -P "$NGINX_MASTER" | head -1)
  g=$(inflight "$w" "$NGINXPORT" "$m")
  stop_nginx
  echo "  spindle: $s bytes per request"
  echo "  nginx:   $g bytes per request"
}
inflight() { # worker-pid port n -> bytes per request in flight
  local before
  before=$(rss_kb "$1")
  go run ./internal/cmd/idleconns -addr "127.0.0.1:$2" -n "$3" -hold 2s -pid "$1" -before "$before" -path /lua_sleep -inflight
}
idle_conns() { # worker-pid port n -> bytes per connection
  local before after
  before=$(rss_kb "$1")
  go run ./internal/cmd/idleconns -addr "127.0.0.1:$2" -n "$3" -hold 3s -pid "$1" -before "$before"
}

# ---------------------------------------------------------------- hostile clients
hostile() {
  [ ${#SUPPORTED[@]} -gt 0 ] || detect_workloads
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  echo
  echo "hostile clients (${HOSTILE_SLOWLORIS:-1000} slowloris, ${HOSTILE_BODIES:-200} slow 1 MB bodies, ${HOSTILE_DURATION:-20s}) beside /hello, one worker:"
  start_spindle 1
  local w; w=$(pgrep -f "spindle: worker process" -P "$(cat "$WORK/spindle/logs/spindle.pid")" | head -1)
  local s; s=$(hostile_run "$w" "$SPINDLEPORT")
  stop_spindle
  start_nginx 1
  w=$(pgrep -P "$NGINX_MASTER" | head -1)
  local g; g=$(hostile_run "$w" "$NGINXPORT")
  stop_nginx
  echo "  spindle: $s"
  echo "  nginx:   $g"
}
hostile_run() { # worker-pid port -> one line of figures
  taskset -c 1 go run ./internal/cmd/hostile -addr "127.0.0.1:$2" -pid "$1" \
    -slowloris "${HOSTILE_SLOWLORIS:-1000}" -bodies "${HOSTILE_BODIES:-200}" \
    -duration "${HOSTILE_DURATION:-20s}" -after 10s
}

# ---------------------------------------------------------------- reload / upgrade
load_with_ops() { # label url op count header
  local label=$1 url=$2 op=$3 count=$4 hdr=${5:-}
  local out="$WORK/wrk-${label//[^a-zA-Z0-9]/_}.txt"
  local args=(-t1 -c"$CONNS" -d"$((count + 5))s")
  [ -n "$hdr" ] && args+=(-H "$hdr")
  taskset -c 1 wrk "${args[@]}" "$url" >"$out" 2>&1 &
  local wp=$!
  sleep 2
  for i in $(seq "$count"); do $op "$i"; sleep 1; done
  wait $wp
  local reqs errs non2xx
  reqs=$(awk '/requests in/ {print $1}' "$out")
  errs=$(grep 'Socket errors' "$out" || echo "Socket errors: none")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$out"); non2xx=${non2xx:-0}
  printf '  %-44s %9s requests, non-2xx %s, %s\n' "$label" "$reqs" "$non2xx" "$errs"
}

spindle_reload_op() { "$SPINDLE" -p "$WORK/spindle" -c conf/spindle.hcl -s reload >/dev/null || echo "reload failed" >&2; }
nginx_reload_op() { kill -HUP "$NGINX_MASTER"; }
spindle_upgrade_op() {
  "$SPINDLE" -p "$WORK/spindle" -c conf/spindle.hcl -s upgrade >/dev/null || echo "upgrade failed" >&2
  sleep 2 # the old master drains before the next upgrade can start
}
nginx_upgrade_op() {
  local old; old=$(cat "$WORK/nginx/nginx.pid")
  kill -USR2 "$old"
  for _ in $(seq 50); do [ -f "$WORK/nginx/nginx.pid.oldbin" ] && break; sleep 0.1; done
  [ -f "$WORK/nginx/nginx.pid.oldbin" ] || echo "nginx: upgrade did not start" >&2
  sleep 0.5
  kill -WINCH "$old"; sleep 0.5; kill -QUIT "$old"
  for _ in $(seq 50); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
  sleep 2
}

h2load_with_ops() { # label url op count
  local label=$1 url=$2 op=$3 count=$4
  local out="$WORK/h2load-${label//[^a-zA-Z0-9]/_}.txt"
  taskset -c 1 h2load -D "$((count + 5))" -c"$CONNS" -m10 "$url" >"$out" 2>&1 &
  local hp=$!
  sleep 2
  for i in $(seq "$count"); do $op "$i"; sleep 1; done
  wait $hp || true
  printf '  %-44s %s\n' "$label" "$(grep '^requests:' "$out" || echo "h2load: no summary")"
}

# h2retry_with_ops: the same load from Go's HTTP/2 client (internal/cmd/h2retry), which
# sends again a request a GOAWAY refused, as RFC 9113 §6.8 lets a client do and
# browsers do: its failures are requests the server lost.
h2retry_with_ops() { # label url op count
  local label=$1 url=$2 op=$3 count=$4
  local out="$WORK/h2retry-${label//[^a-zA-Z0-9]/_}.txt"
  [ -x "$WORK/h2retry" ] || go build -o "$WORK/h2retry" ./internal/cmd/h2retry
  taskset -c 1 "$WORK/h2retry" -url "$url" -c "$CONNS" -m 10 -d "$((count + 5))s" >"$out" 2>&1 &
  local hp=$!
  sleep 2
  for i in $(seq "$count"); do $op "$i"; sleep 1; done
  wait $hp || true
  printf '  %-44s %s\n' "$label" "$(grep '^requests:' "$out" || echo "h2retry: no summary")"
  sed -n 's/^h2retry: /      first errors: /p' "$out" | head -3
}

# The TLS and HTTP/2 rows of reload and upgrade: spindle's and nginx's TLS servers (the
# https workload's), and an "ssl http2" address on each main server.
edge_ports() {
  [[ " ${SUPPORTED[*]} " == *" https "* ]] || return 1
  command -v h2load >/dev/null || apt-get install -y nghttp2-client >/dev/null
  EDGE_SH2=$(free_port); EDGE_NH2=$(free_port)
  export SPINDLE_LISTEN_EXTRA=", \"127.0.0.1:$EDGE_SH2 ssl http2\""
  export SPINDLE_SERVER_EXTRA="    ssl_certificate = \"$TLSCERT\"
    ssl_certificate_key = \"$TLSKEY\""
  export NGINX_LISTEN_EXTRA="listen 127.0.0.1:$EDGE_NH2 ssl http2; ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $TLSCERT; ssl_certificate_key $TLSKEY;"
}
edge_unset() { unset SPINDLE_LISTEN_EXTRA SPINDLE_SERVER_EXTRA NGINX_LISTEN_EXTRA; }
edge_loads() { # who(spindle|nginx) op count
  local who=$1 op=$2 count=$3 tport=$SPINDLETLSPORT h2port=$EDGE_SH2
  [ "$who" = nginx ] && tport=$NGINXTLSPORT h2port=$EDGE_NH2
  load_with_ops "$who, TLS, new connection per request" "https://127.0.0.1:$tport/hello" "$op" "$count" "Connection: close"
  load_with_ops "$who, TLS keepalive" "https://127.0.0.1:$tport/hello" "$op" "$count"
  h2load_with_ops "$who, HTTP/2 over TLS (h2load -m10)" "https://127.0.0.1:$h2port/hello" "$op" "$count"
  h2retry_with_ops "$who, HTTP/2 over TLS (Go client, -m10)" "https://127.0.0.1:$h2port/hello" "$op" "$count"
}

reload() {
  [ ${#SUPPORTED[@]} -gt 0 ] || detect_workloads
  local edge=1
  edge_ports || edge=
  echo
  echo "20 reloads under load (2 workers each, wrk -c$CONNS):"
  start_spindle 2
  load_with_ops "spindle, new connection per request" "http://127.0.0.1:$SPINDLEPORT/hello" spindle_reload_op 20 "Connection: close"
  load_with_ops "spindle, keepalive" "http://127.0.0.1:$SPINDLEPORT/hello" spindle_reload_op 20
  [ -n "$edge" ] && edge_loads spindle spindle_reload_op 20
  stop_spindle
  start_nginx 2
  load_with_ops "nginx, new connection per request" "http://127.0.0.1:$NGINXPORT/hello" nginx_reload_op 20 "Connection: close"
  load_with_ops "nginx, keepalive" "http://127.0.0.1:$NGINXPORT/hello" nginx_reload_op 20
  [ -n "$edge" ] && edge_loads nginx nginx_reload_op 20
  stop_nginx
  edge_unset
}

upgrade() {
  [ ${#SUPPORTED[@]} -gt 0 ] || detect_workloads
  local edge=1
  edge_ports || edge=
  echo
  echo "3 binary upgrades under load (2 workers each, wrk -c$CONNS):"
  start_spindle 2
  load_with_ops "spindle, new connection per request" "http://127.0.0.1:$SPINDLEPORT/hello" spindle_upgrade_op 3 "Connection: close"
  load_with_ops "spindle, keepalive" "http://127.0.0.1:$SPINDLEPORT/hello" spindle_upgrade_op 3
  [ -n "$edge" ] && edge_loads spindle spindle_upgrade_op 3
  stop_spindle
  # nginx re-executes the binary it was started as: start_nginx gives an absolute path.
  NGINX_DAEMON=1 start_nginx 2
  NGINX_DAEMON=1 load_with_ops "nginx, new connection per request" "http://127.0.0.1:$NGINXPORT/hello" nginx_upgrade_op 3 "Connection: close"
  NGINX_DAEMON=1 load_with_ops "nginx, keepalive" "http://127.0.0.1:$NGINXPORT/hello" nginx_upgrade_op 3
  [ -n "$edge" ] && NGINX_DAEMON=1 edge_loads nginx nginx_upgrade_op 3
  NGINX_DAEMON=1 stop_nginx
  edge_unset
}

# ---------------------------------------------------------------- ceiling
ceiling() {
  [ ${#SUPPORTED[@]} -gt 0 ] || detect_workloads
  go build -o "$WORK/nullserver" ./internal/cmd/nullserver
  local port; port=$(free_port)
  local z=() s=() n=() zc=() sc=() nc=() r rps c
  for _ in $(seq "$ROUNDS"); do
    taskset -c 0 "$WORK/nullserver" -addr "127.0.0.1:$port" &
    local zp=$!
    wait_port "$port"
    r=$(wrk_rps "http://127.0.0.1:$port/hello"); read -r rps _ c _ <<<"$r"; z+=("$rps"); zc+=("$c")
    kill "$zp"; wait "$zp" 2>/dev/null || true
    start_spindle 1; r=$(wrk_rps "http://127.0.0.1:$SPINDLEPORT/hello"); stop_spindle
    read -r rps _ c _ <<<"$r"; s+=("$rps"); sc+=("$c")
    start_nginx 1; r=$(wrk_rps "http://127.0.0.1:$NGINXPORT/hello"); stop_nginx
    read -r rps _ c _ <<<"$r"; n+=("$rps"); nc+=("$c")
  done
  local zm sm nm
  zm=$(median "${z[@]}"); sm=$(median "${s[@]}"); nm=$(median "${n[@]}")
  echo
  echo "/hello ceiling (rps, median of $ROUNDS rounds; ratio to nginx; wrk's CPU 1 busy %):"
  printf '  %-11s %10.0f %7.3f %6.1f%%   (%s)\n' nullserver "$zm" "$(echo "scale=3; $zm/$nm" | bc)" "$(median "${zc[@]}")" "${z[*]}"
  printf '  %-11s %10.0f %7.3f %6.1f%%   (%s)\n' spindle "$sm" "$(echo "scale=3; $sm/$nm" | bc)" "$(median "${sc[@]}")" "${s[*]}"
  printf '  %-11s %10.0f %7.3f %6.1f%%   (%s)\n' nginx "$nm" 1 "$(median "${nc[@]}")" "${n[*]}"
}

# ---------------------------------------------------------------- http2
h2load_rps() { # url -> "rps cpu0-microseconds-per-request"
  local t0 t1 out
  t0=$(cpu_ticks)
  out=$(taskset -c 1 h2load -D "$DURATION" -c100 -m10 "$1" 2>&1)
  t1=$(cpu_ticks)
  awk -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" '
    /^finished in/ {rps = $4} /^requests:/ {n = $8}
    END {split(t0, a, " "); split(t1, b, " ")
      printf "%s %.1f\n", rps, n ? (b[1] - a[1]) * 1e6 / hz / n : 0}' <<<"$out"
}
http2() {
  [ ${#SUPPORTED[@]} -gt 0 ] || detect_workloads
  command -v h2load >/dev/null || apt-get install -y nghttp2-client >/dev/null
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/h2.key" \
    -out "$WORK/h2.crt" -days 2 -subj /CN=bench 2>/dev/null
  local sp np stp ntp
  sp=$(free_port); np=$(free_port); stp=$(free_port); ntp=$(free_port)
  export SPINDLE_LISTEN_EXTRA=", \"127.0.0.1:$sp http2\", \"127.0.0.1:$stp ssl http2\""
  export SPINDLE_SERVER_EXTRA="    ssl_certificate = \"$WORK/h2.crt\"
    ssl_certificate_key = \"$WORK/h2.key\"
    keepalive_requests = 100000000"
  export NGINX_LISTEN_EXTRA="listen 127.0.0.1:$np http2; listen 127.0.0.1:$ntp ssl http2; ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate $WORK/h2.crt; ssl_certificate_key $WORK/h2.key; keepalive_requests 100000000;"
  echo
  printf '%-16s %10s %10s %7s %7s %8s %8s\n' workload spindle nginx ratio target "cpu0/req" "(nginx)"
  local row scheme s n sc nc r rps us
  for row in "h2c_hello http $sp $np" "h2_tls_hello https $stp $ntp"; do
    read -r name scheme sport nport <<<"$row"
    s=(); n=(); sc=(); nc=()
    for _ in $(seq "$ROUNDS"); do
      start_spindle 1; r=$(h2load_rps "$scheme://127.0.0.1:$sport/hello"); stop_spindle
      read -r rps us <<<"$r"; s+=("$rps"); sc+=("$us")
      start_nginx 1; r=$(h2load_rps "$scheme://127.0.0.1:$nport/hello"); stop_nginx
      read -r rps us <<<"$r"; n+=("$rps"); nc+=("$us")
    done
    local sm nm
    sm=$(median "${s[@]}"); nm=$(median "${n[@]}")
    printf '%-16s %10.0f %10.0f %7.3f %7s %8.1f %8.1f   (spindle %s; nginx %s)\n' "$name" "$sm" "$nm" \
      "$(echo "scale=3; $sm/$nm" | bc)" 1.0 "$(median "${sc[@]}")" "$(median "${nc[@]}")" "${s[*]}" "${n[*]}"
  done
  local count=${IDLE_CONNS:-4000} w
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  echo "memory per idle HTTP/2 connection ($count connections, one stream each):"
  for row in "h2c $sp $np" "tls $stp $ntp -tls"; do
    read -r name sport nport flag <<<"$row"
    start_spindle 1
    w=$(pgrep -f "spindle: worker process" -P "$(cat "$WORK/spindle/logs/spindle.pid")" | head -1)
    s=$(go run ./internal/cmd/idleconns -addr "127.0.0.1:$sport" -n "$count" -hold 3s -pid "$w" -before "$(rss_kb "$w")" -h2 $flag)
    stop_spindle
    start_nginx 1
    w=$(pgrep -P "$NGINX_MASTER" | head -1)
    n=$(go run ./internal/cmd/idleconns -addr "127.0.0.1:$nport" -n "$count" -hold 3s -pid "$w" -before "$(rss_kb "$w")" -h2 $flag)
    stop_nginx
    echo "  $name: spindle $s, nginx $n bytes per connection"
  done
  unset SPINDLE_LISTEN_EXTRA SPINDLE_SERVER_EXTRA NGINX_LISTEN_EXTRA
}

for m in "${MODES[@]}"; do
  case $m in
    throughput) throughput ;;
    ceiling) ceiling ;;
    http2) http2 ;;
    memory) memory ;;
    reload) reload ;;
    upgrade) upgrade ;;
    hostile) hostile ;;
    *) echo "unknown mode $m" >&2; exit 2 ;;
  esac
done
