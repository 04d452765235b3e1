#!/usr/bin/env bash
# Installs spindle as a systemd service: the binary in /usr/local/bin, the unit, the
# default config in /etc/spindle (kept if present), a logrotate snippet, the document
# root in /usr/share/spindle/html and a system user.
#
#   DESTDIR=/tmp/root scripts/install.sh   stage the files under /tmp/root (packaging,
#                                          tests); no user, directories or systemctl
#   BIN=path/to/spindle                    install that binary instead of building one
#
# The unit may write only to /run/spindle, /var/log/spindle and /var/lib/spindle, which
# systemd creates for it (RuntimeDirectory=, LogsDirectory=, StateDirectory=); the
# config's pid file and logs are there.
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR=${DESTDIR:-}
BIN=${BIN:-}

if [ -z "$BIN" ]; then
  export PATH=/usr/local/go/bin:$PATH
  BIN=$(mktemp -d)/spindle
  go build -o "$BIN" .
fi

# A new file renamed over the old one: a running master keeps its binary's inode, and
# `spindle -s upgrade` then starts the new one.
install -D -m 0755 "$BIN" "$DESTDIR/usr/local/bin/spindle.new"
mv -f "$DESTDIR/usr/local/bin/spindle.new" "$DESTDIR/usr/local/bin/spindle"
install -D -m 0644 systemd/spindle.service "$DESTDIR/etc/systemd/system/spindle.service"
install -D -m 0644 systemd/spindle.logrotate "$DESTDIR/etc/logrotate.d/spindle"
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
  # The directories systemd makes for the unit, made now so that the check below runs
  # as the unit's pre-start check does: as spindle, creating the log files as spindle.
  install -d -m 0750 -o spindle -g spindle /var/log/spindle
  install -d -m 0755 -o spindle -g spindle /var/lib/spindle /run/spindle
  runuser -u spindle -- /usr/local/bin/spindle -q -t -p /usr/share/spindle -c /etc/spindle/spindle.hcl
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "installed; start it with: systemctl enable --now spindle"
  else
    echo "installed; systemd is not running here, so the unit was not loaded"
  fi
fi
