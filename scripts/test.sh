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
  lua-nginx-string:/usr/share/lua/5.1/nginx/sha1.lua

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
# gopher-lua's engine (modules/lua, -tags gopherlua) in place of LuaJIT's: the command
# builds, and the root package's Lua end-to-end tests pass with it.
go build -tags gopherlua -o /dev/null .
go vet -tags gopherlua . ./modules/all ./internal/e2e
go test -tags gopherlua -count=1 -timeout 10m -run 'TestLua|TestDocs|TestBenchConfigServes' .
# The header writer's fuzz tests (no request can add a header line) run a few seconds
# each beyond their checked-in corpus; -fuzz takes one target per run.
for target in modules/httpcore:FuzzAppendHeaderLine modules/lua:FuzzLuaResponseHeaders \
  modules/headers:FuzzTemplateHeaders modules/proxy:FuzzUpstreamRequestHead \
  modules/proxy:FuzzUpstreamResponseHead; do
  go test -run '^$' -fuzz "^${target##*:}\$" -fuzztime 5s "./${target%%:*}/"
done
# spindle's copy of gopher-lua is a module of its own (third_party/gopher-lua/SPINDLE.md):
# its upstream suite and the tests of spindle's changes to it.
(cd third_party/gopher-lua && go test -count=1 -timeout 5m .)
