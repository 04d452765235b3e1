// Command idleconns measures the memory a server spends per idle keepalive connection:
// it opens n connections, sends one request on each and reads the response, then
// compares the server process's resident memory with the figure given before. With
// -inflight it does not wait for the responses: the figure is then per request in
// flight (for a location that takes its time to answer). With -tls the connections
// are TLS ones; with -h2 each connection is HTTP/2 (ALPN h2 with -tls, prior knowledge
// without) and sends its one request as a stream.
package main

import (
	"bufio"
	"bytes"
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

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
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
	useH2 := flag.Bool("h2", false, "speak HTTP/2")
	flag.Parse()
	conns := make([]net.Conn, 0, *n)
	for i := 0; i < *n; i++ {
		c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
		if err == nil && *useTLS {
			tcfg := &tls.Config{InsecureSkipVerify: true}
			if *useH2 {
				tcfg.NextProtos = []string{"h2"}
			}
			tc := tls.Client(c, tcfg)
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			err = tc.Handshake()
			tc.SetDeadline(time.Time{})
			c = tc
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "idleconns: connection %d: %v\n", i, err)
			os.Exit(1)
		}
		if *useH2 {
			if err := h2Request(c, *path, *inflight); err != nil {
				fmt.Fprintf(os.Stderr, "idleconns: HTTP/2 connection %d: %v\n", i, err)
				os.Exit(1)
			}
			conns = append(conns, c)
			continue
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

// h2Request sends the connection preface, SETTINGS and one GET as stream 1, and
// unless inflight reads frames until the response ends.
func h2Request(c net.Conn, path string, inflight bool) error {
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", path}, {":authority", "bench"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		return err
	}
	if inflight {
		return nil
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				return nil
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				return nil
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			return fmt.Errorf("%v", f)
		}
	}
}
