// Command idleconns measures the memory a server spends per idle keepalive connection:
// it opens n connections, sends one request on each and reads the response, then
// compares the server process's resident memory with the figure given before. With
// -inflight it does not wait for the responses: the figure is then per request in
// flight (for a location that takes its time to answer). With -tls the connections
// are TLS ones.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	n := flag.Int("n", 10000, "connections")
	hold := flag.Duration("hold", 3*time.Second, "time to let the server settle before measuring")
	pid := flag.Int("pid", 0, "server process to measure")
	before := flag.Int("before", 0, "its RSS in KiB before the connections")
	path := flag.String("path", "/hello", "request path")
	inflight := flag.Bool("inflight", false, "measure with the requests still in flight")
	useTLS := flag.Bool("tls", false, "connect with TLS (the server's certificate is not checked)")
	flag.Parse()
	conns := make([]net.Conn, 0, *n)
	for i := 0; i < *n; i++ {
		c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
		if err == nil && *useTLS {
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			err = tc.Handshake()
			tc.SetDeadline(time.Time{})
			c = tc
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "idleconns: connection %d: %v\n", i, err)
			os.Exit(1)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", *path)
		if *inflight {
			conns = append(conns, c)
			continue
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			fmt.Fprintf(os.Stderr, "idleconns: response %d: %v\n", i, err)
			os.Exit(1)
		}
		io.Copy(io.Discard, resp.Body)
		conns = append(conns, c)
	}
	time.Sleep(*hold)
	after := rss(*pid)
	fmt.Println((after - *before) * 1024 / *n)
	for _, c := range conns {
		c.Close()
	}
}

func rss(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return kb
		}
	}
	return 0
}
