#!/usr/bin/env bash
# Installs spindle as a systemd service: the binary in /usr/local/bin, the unit, the
# default config in /etc/spindle (kept if present), the document root in
# /usr/share/spindle/html and a system user. DESTDIR stages the files elsewhere (for
# packaging and tests) and skips the user and systemctl steps.
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR=${DESTDIR:-}
BIN=${BIN:-}

if [ -z "$BIN" ]; then
  export PATH=/usr/local/go/bin:$PATH
  BIN=$(mktemp -d)/spindle
  go build -o "$BIN" .
fi

install -D -m 0755 "$BIN" "$DESTDIR/usr/local/bin/spindle"
install -D -m 0644 systemd/spindle.service "$DESTDIR/etc/systemd/system/spindle.service"
if [ ! -e "$DESTDIR/etc/spindle/spindle.hcl" ]; then
  install -D -m 0644 systemd/spindle.hcl "$DESTDIR/etc/spindle/spindle.hcl"
fi
install -d -m 0755 "$DESTDIR/usr/share/spindle/html"
if [ -d html ]; then
  cp -R html/. "$DESTDIR/usr/share/spindle/html/"
fi

if [ -z "$DESTDIR" ]; then
  if ! id spindle >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /usr/share/spindle --shell /usr/sbin/nologin spindle
  fi
  /usr/local/bin/spindle -t -p /usr/share/spindle -c /etc/spindle/spindle.hcl
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "installed; start it with: systemctl enable --now spindle"
  else
    echo "installed; systemd is not running here, so the unit was not loaded"
  fi
fi
