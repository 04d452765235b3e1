package ngxlua

import (
	"errors"

	"golang.org/x/sys/unix"
)

// tryWrite writes data to a plain (not TLS) cosocket's connection without waiting,
// as ngx_lua's send writes at once and waits only for what the socket buffer did
// not take: n is what was written. A send done at once never holds the socket's
// writing flag, so that light threads sending in turn on one socket (a WebSocket
// server pushing from a thread while the handler answers frames) do not find it
// busy because the other's completed wait was not yet processed.
func (sk *tcpSock) tryWrite(data string) (n int, err error) {
	if sk.raw == nil || sk.isTLS || data == "" {
		return 0, nil
	}
	werr := sk.raw.Write(func(fd uintptr) bool {
		for n < len(data) {
			m, err2 := unix.Write(int(fd), []byte(data[n:]))
			if m > 0 {
				n += m
			}
			if err2 == unix.EINTR {
				continue
			}
			if err2 != nil {
				if !errors.Is(err2, unix.EAGAIN) {
					err = err2
				}
				break
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return n, err
}
