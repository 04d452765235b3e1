package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// WaitPeerRead waits until the process at the other end of c, a TCP connection in
// this network namespace (loopback), has read everything written on c so far: c's
// send queue is empty and so is the receive queue of the peer's socket, as
// /proc/net/tcp and tcp6 show them. A test that sends a request in parts calls it
// between the parts, so that the server reads each part apart, where a sleep would
// only make that likely. A server that only peeks at what came (MSG_PEEK, as the
// loop does with a PROXY header before a TLS handshake) never counts as having read
// it. It fails the test after 10 s.
func WaitPeerRead(t testing.TB, c net.Conn) {
	t.Helper()
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		t.Fatalf("WaitPeerRead: %T is not a TCP connection", c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		sent, read, err := tcpQueues(local, remote)
		if err != nil {
			t.Fatalf("WaitPeerRead: %v", err)
		}
		if sent && read {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("WaitPeerRead: %v has not read what %v sent (sent %v, read %v)", remote, local, sent, read)
		}
		time.Sleep(time.Millisecond)
	}
}

// WaitPeerReceived waits until everything written on c, a TCP connection on loopback,
// has reached the socket at the other end, read or not: c's send queue holds no
// unacknowledged byte. A test that needs the server's kernel to hold its bytes (an
// epoll report pending) before it lets the server go on waits with it. It fails the
// test after 10 s.
func WaitPeerReceived(t testing.TB, c net.Conn) {
	t.Helper()
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		t.Fatalf("WaitPeerReceived: %T is not a TCP connection", c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		sent, _, err := tcpQueues(local, remote)
		if err != nil {
			t.Fatalf("WaitPeerReceived: %v", err)
		}
		if sent {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("WaitPeerReceived: %v has not acknowledged what %v sent", remote, local)
		}
		time.Sleep(time.Millisecond)
	}
}

// tcpQueues reports whether the socket local->remote has no unacknowledged bytes and
// whether the socket remote->local has no unread ones. A socket not listed (closed)
// counts as empty.
func tcpQueues(local, remote *net.TCPAddr) (sent, read bool, err error) {
	sent, read = true, true
	mine, peer := procAddrs(local, remote), procAddrs(remote, local)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return false, false, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 5 {
				continue
			}
			tx, rx, ok := strings.Cut(fs[4], ":")
			if !ok {
				continue
			}
			key := fs[1] + " " + fs[2]
			if mine[key] {
				sent = hexZero(tx)
			}
			if peer[key] {
				read = hexZero(rx)
			}
		}
	}
	return sent, read, nil
}

func hexZero(s string) bool {
	n, err := strconv.ParseUint(s, 16, 64)
	return err == nil && n == 0
}

// procAddrs is how /proc/net/tcp{,6} writes the pair "from to": each address as the
// kernel's words in host order (little-endian here), then the port in hex. An IPv4
// address is listed in tcp, or in tcp6 as ::ffff:a.b.c.d on a dual-stack socket.
func procAddrs(from, to *net.TCPAddr) map[string]bool {
	af, at := procAddr(from), procAddr(to)
	m := map[string]bool{}
	for _, a := range af {
		for _, b := range at {
			if len(a) == len(b) {
				m[a+" "+b] = true
			}
		}
	}
	return m
}

func procAddr(a *net.TCPAddr) []string {
	port := fmt.Sprintf(":%04X", a.Port)
	words := func(ip net.IP) string {
		var s strings.Builder
		for i := 0; i < len(ip); i += 4 {
			fmt.Fprintf(&s, "%08X", binary.LittleEndian.Uint32(ip[i:i+4]))
		}
		return s.String()
	}
	var out []string
	if ip4 := a.IP.To4(); ip4 != nil {
		out = append(out, words(ip4)+port, words(ip4.To16())+port)
	} else {
		out = append(out, words(a.IP.To16())+port)
	}
	return out
}
