package headcheck

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// Backend starts a loopback HTTP server that sees the exact bytes of each request
// head, for tests of what a proxy sends and passes on, and returns its address. A
// request for /r/?n=NAME&v=VALUE is answered with the header line "NAME: VALUE" byte
// for byte (CR, LF and all), and the connection closed; any other request is
// answered with the request head it received as the body, on a connection kept
// alive until its client closes it. It stops when the test ends.
func Backend(t testing.TB) string {
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
			go serveBackend(c)
		}
	}()
	return ln.Addr().String()
}

func serveBackend(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head []byte
		for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			head = append(head, line...)
		}
		parts := strings.SplitN(string(head), " ", 3)
		if len(parts) == 3 && strings.HasPrefix(parts[1], "/r/?") {
			q, _ := url.ParseQuery(strings.SplitN(parts[1], "?", 2)[1])
			io.WriteString(c, "HTTP/1.1 200 OK\r\n"+q.Get("n")+": "+q.Get("v")+"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(head))+"\r\n\r\n")
		c.Write(head)
	}
}
