#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine (Debian packages
# through apt-get when missing), then vets and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg_cmd in redis-server:redis-server memcached:memcached; do
  pkg=${pkg_cmd%%:*} cmd=${pkg_cmd##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
for pkg_file in lua-nginx-redis:/usr/share/lua/5.1/nginx/redis.lua lua-nginx-memcached:/usr/share/lua/5.1/nginx/memcached.lua; do
  pkg=${pkg_file%%:*} file=${pkg_file##*:}
  [ -e "$file" ] || need+=("$pkg")
done
# cgo against Debian's LuaJIT (internal/luajit), and the Lua modules its tests load.
for pkg in gcc pkg-config libluajit2-5.1-dev lua-cjson lua-resty-lrucache; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

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
# spindle's copy of gopher-lua is a module of its own (third_party/gopher-lua/SPINDLE.md):
# its upstream suite and the tests of spindle's changes to it.
(cd third_party/gopher-lua && go test -count=1 -timeout 5m .)
