package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// TestServesKeepalive runs the built command (serve holds its thread in a raw
// epoll_wait for good, so it cannot run inside the test process) and sends two
// requests on one connection.
func TestServesKeepalive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "nullserver")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr := "127.0.0.1:" + strconv.Itoa(e2e.FreePort(t))
	cmd := exec.CommandContext(ctx, bin, "-addr", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var c net.Conn
	var err error
	if !e2e.WaitFor(10*time.Second, func() bool { c, err = net.Dial("tcp", addr); return err == nil }) {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		if _, err := io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "hello world\n" || resp.Close {
			t.Fatalf("request %d: %d %q close=%v", i+1, resp.StatusCode, body, resp.Close)
		}
	}
	if err := exec.Command(bin, "-addr", "bad").Run(); err == nil {
		t.Error("a bad address did not fail")
	}
}
