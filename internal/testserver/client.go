package testserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// GetFrom sends GET path to addr from the local address src (any 127.0.0.0/8 address
// works on Linux loopback), with headers written "Name: value", on a connection of
// its own, and returns the status and body: for tests of what a server makes of the
// client's address (allow/deny, realip, geo).
func GetFrom(t testing.TB, addr, src, path string, headers ...string) (int, string) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Status sends GET path and returns the response's status, or 0 if the request
// failed: unlike Get it does not fail the test, so it may run off the test's
// goroutine (a request left waiting on a hung backend while the test goes on).
func (s *Server) Status(path string) int {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(s.URL(path))
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
