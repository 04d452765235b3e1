package netutil

import (
	"net"
	"testing"
	"time"
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
	time.Sleep(50 * time.Millisecond)
	if Alive(c) {
		t.Errorf("connection with unsolicited data reported alive")
	}
	buf := make([]byte, 1)
	c.Read(buf)
	s.Close()
	time.Sleep(50 * time.Millisecond)
	if Alive(c) {
		t.Errorf("connection closed by the peer reported alive")
	}
}
