// Package backends starts real backend servers for tests: redis-server and memcached
// on free loopback ports, without persistence, stopped when the test ends.
// scripts/test.sh installs Debian's packages when the binaries are missing.
package backends

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartRedis starts redis-server on a free port and returns its address.
func StartRedis(t testing.TB) string {
	t.Helper()
	return start(t, "redis-server", func(port int) []string {
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}
	}, "PING\r\n", "+PONG")
}

// StartMemcached starts memcached on a free port and returns its address.
func StartMemcached(t testing.TB) string {
	t.Helper()
	return start(t, "memcached", func(port int) []string {
		args := []string{"-p", strconv.Itoa(port), "-l", "127.0.0.1", "-U", "0", "-m", "64"}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root") // memcached refuses root without it
		}
		return args
	}, "version\r\n", "VERSION")
}

func start(t testing.TB, bin string, args func(port int) []string, ping, pong string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s is not installed (scripts/test.sh installs it): %v", bin, err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		cmd := exec.Command(path, args(port)...)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if waitReady(addr, ping, pong, exited) {
			t.Cleanup(stop)
			return addr
		}
		stop() // the port was taken meanwhile, or the server failed: try another
	}
	t.Fatalf("%s did not start", bin)
	return ""
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitReady waits until the server answers ping with pong.
func waitReady(addr, ping, pong string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			c.Write([]byte(ping))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, pong) {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
