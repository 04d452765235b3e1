// Package systemd speaks systemd's notify protocol for the master (Type=notify:
// READY, RELOADING with MONOTONIC_USEC, STOPPING, MAINPID after a binary upgrade, STATUS)
// and holds spindle.service, the unit scripts/install.sh installs.
package systemd

import (
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notify sends one datagram to $NOTIFY_SOCKET, if set. The variable stays in the
// environment: a master started by a binary upgrade inherits it and must be able to
// notify too.
func notify(lines ...string) error {
	_, err := daemon.SdNotify(false, strings.Join(lines, "\n"))
	return err
}

func status(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200]
	}
	return "STATUS=" + s
}

// Ready tells systemd the service is up (or a reload finished).
func Ready(msg string) error { return notify(daemon.SdNotifyReady, status(msg)) }

// Reloading tells systemd a reload started; READY must follow.
func Reloading() error {
	return notify(daemon.SdNotifyReloading, strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"), status("reloading"))
}

// Stopping tells systemd the service is shutting down.
func Stopping() error { return notify(daemon.SdNotifyStopping, status("stopping")) }

// MainPID tells systemd that pid is now the service's main process, after a binary
// upgrade, and that it is ready.
func MainPID(pid int, msg string) error {
	return notify("MAINPID="+strconv.Itoa(pid), daemon.SdNotifyReady, status(msg))
}

// Status updates the status line systemctl shows.
func Status(msg string) error { return notify(status(msg)) }
