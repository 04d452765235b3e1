package netutil

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDial checks that a connection from Dial behaves as a net.TCPConn for what the
// backends use: data both ways, addresses, EOF, deadlines, errors after Close, Alive.
func TestDial(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1"
			if network == "tcp6" {
				host = "::1"
			}
			ln, err := net.Listen(network, net.JoinHostPort(host, "0"))
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, _ := ln.Accept()
				accepted <- c
			}()
			c, err := Dial(context.Background(), "tcp", ln.Addr().String(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, ok := c.(*tcpConn); !ok {
				t.Fatalf("Dial(%s) gave a %T, not its own connection", ln.Addr(), c)
			}
			s := <-accepted
			defer s.Close()
			if got, want := c.RemoteAddr().String(), ln.Addr().String(); got != want {
				t.Errorf("RemoteAddr = %s, want %s", got, want)
			}
			if got, want := c.LocalAddr().String(), s.RemoteAddr().String(); got != want {
				t.Errorf("LocalAddr = %s, want %s", got, want)
			}
			if !Alive(c) {
				t.Errorf("open idle connection reported dead")
			}
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("server read %q, %v", buf, err)
			}
			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			var ne net.Error
			if _, err := c.Read(buf); !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("read past the deadline: %v, want a timeout", err)
			}
			c.SetReadDeadline(time.Time{})
			s.Write([]byte("pong"))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
				t.Fatalf("client read %q, %v", buf, err)
			}
			s.Close()
			if n, err := c.Read(buf); n != 0 || err != io.EOF {
				t.Errorf("read after the peer's close: %d, %v; want 0, EOF", n, err)
			}
			c.Close()
			if _, err := c.Write(buf); !errors.Is(err, net.ErrClosed) {
				t.Errorf("write after Close: %v, want net.ErrClosed", err)
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	// A port nobody listens on: refused at once, as a dial error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(context.Background(), "tcp", addr, time.Second)
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial to a closed port: %v, want a dial error with ECONNREFUSED", err)
	}

	// A listener that never accepts and has a backlog of one: once it is full the
	// kernel drops further SYNs, so a connect hangs until its timeout or its context.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	full := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}).String()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	hanging := false
	for i := 0; i < 8 && !hanging; i++ {
		c, err := Dial(context.Background(), "tcp", full, 200*time.Millisecond)
		if err == nil {
			held = append(held, c)
			continue
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.As(err, &oe) || oe.Op != "dial" {
			t.Fatalf("dial to a full backlog: %v, want a dial timeout", err)
		}
		hanging = true
	}
	if !hanging {
		t.Fatal("no dial to the full backlog hung")
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = Dial(ctx, "tcp", full, 10*time.Second)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled dial: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancelled dial returned after %v", d)
	}
}

// TestDialFallback: names and unix sockets go through net.Dialer.
func TestDialFallback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // the kernel completes the connection in the backlog: no Accept
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	c, err := Dial(context.Background(), "tcp", net.JoinHostPort("localhost", port), time.Second)
	if err != nil {
		t.Skipf("localhost does not resolve to 127.0.0.1 here: %v", err)
	}
	defer c.Close()
	if _, ok := c.(*net.TCPConn); !ok {
		t.Errorf("Dial by name gave a %T, want *net.TCPConn", c)
	}
}

// A connection from DialStart and DialFinish stays out of Go's poller while its
// owner only peeks and closes it, and joins it for blocking I/O with deadlines.
func TestDialFinishJoinsPollerOnlyToBlock(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		fd, ap, ok, err := DialStart(ln.Addr().String())
		if !ok || err != nil {
			t.Fatalf("DialStart: %v %v", ok, err)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(pfd, 5000); err != nil {
			t.Fatal(err)
		}
		c, err := DialFinish(fd, ap)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	c := dial()
	peer := <-accepted
	defer peer.Close()
	lc := c.(*lazyConn)
	rc, _ := c.(syscall.Conn).SyscallConn()
	var p Peeker
	if !p.Alive(rc) || lc.pc != nil {
		t.Fatalf("alive %v, in the poller %v", p.Alive(rc), lc.pc != nil)
	}
	if la := c.LocalAddr().(*net.TCPAddr); la.Port == 0 || lc.pc != nil {
		t.Fatalf("local address %v", la)
	}
	// The peer, kept as a netip.AddrPort, is made a net.TCPAddr when asked.
	if got, want := c.RemoteAddr().String(), ln.Addr().String(); got != want || lc.pc != nil {
		t.Fatalf("RemoteAddr = %s, want %s", got, want)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	peer.Write([]byte("hi"))
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q %v", b, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(b); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}

	// Closed without ever joining: the peer sees the end; the descriptor is not used
	// again.
	c = dial()
	peer2 := <-accepted
	defer peer2.Close()
	rc, _ = c.(syscall.Conn).SyscallConn()
	if err := c.Close(); err != nil || c.(*lazyConn).pc != nil {
		t.Fatal(err)
	}
	peer2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := peer2.Read(b); n != 0 || err != io.EOF {
		t.Errorf("peer read %d %v, want EOF", n, err)
	}
	if err := rc.Control(func(uintptr) {}); err == nil {
		t.Error("Control after close: no error")
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second close: %v", err)
	}
}
