package testserver

import (
	"net"
	"testing"
)

// TCPServer starts a loopback TCP server for tests that need a backend behaving in a
// way no real server does (a reset at once, a reply cut short): serve runs on a
// goroutine of its own for each connection, which is closed when serve returns. It
// returns the server's address; the listener is closed when the test ends.
func TCPServer(t testing.TB, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}
