# Sourced by scripts/build.sh and scripts/test.sh: installs Debian packages that are
# missing. Each argument is PACKAGE:PROBE, where PROBE is a command name or an absolute
# path that the package provides, or PACKAGE alone, checked with dpkg; the package is
# installed when the probe is missing.
ensure_debs() {
  local need=() pkg probe
  for arg in "$@"; do
    pkg=${arg%%:*} probe=${arg#*:}
    [ "$probe" = "$arg" ] && probe=dpkg:
    case "$probe" in
      dpkg:) dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg") ;;
      /*) [ -e "$probe" ] || need+=("$pkg") ;;
      *) command -v "$probe" >/dev/null 2>&1 || need+=("$pkg") ;;
    esac
  done
  [ ${#need[@]} -gt 0 ] || return 0
  echo "installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# What building spindle needs: a C compiler and pkg-config for cgo, PCRE2's and
# LuaJIT's (OpenResty's branch, Debian's libluajit2) headers.
BUILD_DEBS=(
  gcc:gcc
  libc6-dev:/usr/include/stdlib.h
  pkg-config:pkg-config
  libpcre2-dev:/usr/include/pcre2.h
  libluajit2-5.1-dev
)
