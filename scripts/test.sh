#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine (Debian packages
# through apt-get when missing), then vets and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/deps.sh
# LuaJIT's headers for cgo (internal/luajit) and the Lua modules its tests load are
# checked with dpkg (no single file names them across architectures).
ensure_debs "${BUILD_DEBS[@]}" redis-server:redis-server redis-tools:redis-cli memcached:memcached \
  systemd:systemd-analyze bubblewrap:bwrap curl:curl openssl:openssl apache2-utils:htpasswd \
  nghttp2-client:h2load \
  lua-nginx-redis:/usr/share/lua/5.1/nginx/redis.lua \
  lua-nginx-memcached:/usr/share/lua/5.1/nginx/memcached.lua \
  libluajit2-5.1-dev lua-cjson lua-resty-lrucache \
  lua-nginx-string lua-nginx-cookie lua-nginx-websocket lua-nginx-dns lua-nginx-redis-connector

export PATH=/usr/local/go/bin:$PATH
go version
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "not gofmt-ed:"; echo "$unformatted"; exit 1
fi
go vet ./...
# Integration tests start real processes; -p 1 keeps packages from competing for the
# two cores while they count failed requests under load.
go test -count=1 -p 1 -timeout 20m "$@" ./...
# The header writer's fuzz tests (no request can add a header line) run a few seconds
# each beyond their checked-in corpus; -fuzz takes one target per run. The budget is a
# count of inputs (about 5 s each here), not a duration: a duration -fuzztime races Go's
# fuzz coordinator at its deadline and fails with "context deadline exceeded" and no
# crasher (go.dev/issue/75804, fixed in Go 1.27; it failed CI once on go1.26).
for target in modules/httpcore:FuzzAppendHeaderLine:75000 modules/ngxlua:FuzzLuaResponseHeaders:15000 \
  modules/headers:FuzzTemplateHeaders:20000 modules/proxy:FuzzUpstreamRequestHead:8000 \
  modules/proxy:FuzzUpstreamResponseHead:12000; do
  IFS=: read -r pkg fuzz count <<<"$target"
  go test -run '^$' -fuzz "^${fuzz}\$" -fuzztime "${count}x" "./${pkg}/"
done
