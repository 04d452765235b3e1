package main

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spindle-server/spindle/internal/e2e"
)

// nginx's `listen 443 ssl proxy_protocol` behind a TCP load balancer, through the
// spindle binary: the PROXY header comes before the TLS handshake, from curl
// (--haproxy-protocol, v1) and from a Go client (v2); the real IP module makes its
// address the client's, in variables and in the access log.
func TestProxyProtocolOverTLSE2E(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed (scripts/test.sh installs it)")
	}
	ca := e2e.NewCA(t, t.TempDir(), "ca")
	crt, key, _ := ca.Issue("srv", e2e.ECDSA, false, "a.test")
	inst := e2e.Start(t, `
worker_processes = 2
error_log        = { path = "logs/error.log", level = "info" }
http {
  client_header_timeout = "2s"
  log_format "pp" { format = "$remote_addr $realip_remote_addr $proxy_protocol_addr $https $request_uri" }
  access_log = "logs/access.log pp"
  server {
    listen              = ["127.0.0.1:{{PORT}} ssl proxy_protocol"]
    ssl_certificate     = "`+crt+`"
    ssl_certificate_key = "`+key+`"
    set_real_ip_from    = ["127.0.0.0/8"]
    real_ip_header      = "proxy_protocol"
    location "/" { echo = "${proxy_protocol_addr}|${proxy_protocol_port}|${remote_addr}|${ssl_protocol}" }
  }
}
`, nil)
	port := strconv.Itoa(inst.Port)
	out, err := exec.Command("curl", "-sS", "--max-time", "10", "--haproxy-protocol", "--cacert", ca.File,
		"--resolve", "a.test:"+port+":127.0.0.1", "https://a.test:"+port+"/curl").CombinedOutput()
	// curl's v1 header gives the address it connects from: 127.0.0.1.
	if err != nil || !strings.HasPrefix(string(out), "127.0.0.1|") || !strings.HasSuffix(string(out), "|127.0.0.1|TLSv1.3\n") {
		t.Errorf("curl --haproxy-protocol: %q %v", out, err)
	}

	nc, err := net.DialTimeout("tcp", inst.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	v2 := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\x0a\x00\x00\x01")
	v2 = binary.BigEndian.AppendUint16(v2, 40000)
	v2 = binary.BigEndian.AppendUint16(v2, 443)
	if _, err := nc.Write(v2); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(nc, &tls.Config{ServerName: "a.test", RootCAs: ca.Pool})
	io.WriteString(c, "GET /go HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(c)
	if !strings.HasSuffix(string(b), "\r\n\r\n203.0.113.7|40000|203.0.113.7|TLSv1.3\n") {
		t.Errorf("v2 then TLS: %q %v", b, err)
	}

	var log string
	e2e.WaitFor(5*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(inst.Prefix, "logs/access.log"))
		log = string(b)
		return strings.Contains(log, "/go\n")
	})
	if !strings.Contains(log, "203.0.113.7 127.0.0.1 203.0.113.7 on /go\n") || !strings.Contains(log, " on /curl\n") {
		t.Errorf("access log:\n%s", log)
	}
}
