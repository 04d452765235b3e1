package netutil

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

func TestAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	if !Alive(c) {
		t.Errorf("open idle connection reported dead")
	}
	s.Write([]byte("x"))
	// Alive only peeks: polling it until the byte arrives consumes nothing.
	if e2e.WaitFor(5*time.Second, func() bool { return !Alive(c) }); Alive(c) {
		t.Errorf("connection with unsolicited data reported alive")
	}
	buf := make([]byte, 1)
	c.Read(buf)
	s.Close()
	if e2e.WaitFor(5*time.Second, func() bool { return !Alive(c) }); Alive(c) {
		t.Errorf("connection closed by the peer reported alive")
	}
}

func TestRawReadWrite(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	a, b := uintptr(fds[0]), uintptr(fds[1])
	var buf [16]byte
	if n, err := RawRead(a, buf[:]); n != -1 || err != syscall.EAGAIN {
		t.Errorf("read of an empty socket: %d, %v; want -1, EAGAIN", n, err)
	}
	if n, err := RawWrite(b, []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if n, err := RawRead(a, buf[:]); n != 5 || err != nil || string(buf[:5]) != "hello" {
		t.Errorf("read: %d, %v, %q", n, err, buf[:n])
	}
	if n, err := RawRead(a, nil); n != 0 || err != nil {
		t.Errorf("empty read: %d, %v", n, err)
	}
	syscall.Close(fds[1])
	if n, err := RawRead(a, buf[:]); n != 0 || err != nil {
		t.Errorf("read after the peer closed: %d, %v; want 0 (EOF), nil", n, err)
	}
}
