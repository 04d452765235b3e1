package httpcore

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

// proxyV2 builds a v2 header: command (0 LOCAL, 1 PROXY), family byte, address bytes
// and TLV bytes after them.
func proxyV2(cmd, fam byte, addrs, tlvs []byte) []byte {
	b := append([]byte(nil), proxyV2Sig...)
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+len(tlvs)))
	b = append(b, addrs...)
	return append(b, tlvs...)
}

func TestParseProxyHeader(t *testing.T) {
	v4 := []byte{192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb}
	v6 := append(append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("2001:db8::2").AsSlice()...), 0x30, 0x39, 0, 80)
	for _, c := range []struct {
		name     string
		in       string
		n        int
		src, dst string
		err      bool
	}{
		{"v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET", 45, "192.0.2.1:56324", "198.51.100.1:443", false},
		{"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 12345 80\r\n", 45, "[2001:db8::1]:12345", "[2001:db8::2]:80", false},
		{"v1 unknown", "PROXY UNKNOWN\r\n", 15, "", "", false},
		{"v1 unknown with addresses", "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", 59, "", "", false},
		{"v1 partial", "PROXY TCP4 192.0.2.1", 0, "", "", false},
		{"v1 signature partial", "PRO", 0, "", "", false},
		{"v1 family mismatch", "PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n", 0, "", "", true},
		{"v1 bad port", "PROXY TCP4 192.0.2.1 198.51.100.1 65536 443\r\n", 0, "", "", true},
		{"v1 missing field", "PROXY TCP4 192.0.2.1 198.51.100.1 1\r\n", 0, "", "", true},
		{"v1 too long", "PROXY TCP4 " + strings.Repeat("1", 120), 0, "", "", true},
		{"not proxy", "GET / HTTP/1.1\r\n\r\n", 0, "", "", true},
		{"v2 tcp4", string(proxyV2(1, 0x11, v4, nil)) + "GET", 28, "192.0.2.1:56324", "198.51.100.1:443", false},
		{"v2 tcp6 with tlvs", string(proxyV2(1, 0x21, v6, []byte{0x04, 0, 3, 'a', 'b', 'c'})), 58, "[2001:db8::1]:12345", "[2001:db8::2]:80", false},
		{"v2 local", string(proxyV2(0, 0, nil, nil)), 16, "", "", false},
		{"v2 unix", string(proxyV2(1, 0x31, make([]byte, 216), nil)), 232, "", "", false},
		{"v2 partial", string(proxyV2(1, 0x11, v4, nil))[:20], 0, "", "", false},
		{"v2 signature partial", string(proxyV2Sig[:7]), 0, "", "", false},
		{"v2 short addresses", string(proxyV2(1, 0x11, v4[:8], nil)), 0, "", "", true},
		{"v2 bad version", strings.Replace(string(proxyV2(1, 0x11, v4, nil)), "\x21\x11", "\x11\x11", 1), 0, "", "", true},
		{"v2 bad command", string(proxyV2(5, 0x11, v4, nil)), 0, "", "", true},
		{"v2 too large", string(proxyV2(1, 0x11, v4, make([]byte, 5000))), 0, "", "", true},
	} {
		n, info, err := parseProxyHeader([]byte(c.in))
		if (err != nil) != c.err || n != c.n {
			t.Errorf("%s: n=%d err=%v, want n=%d err=%v", c.name, n, err, c.n, c.err)
			continue
		}
		if n == 0 {
			continue
		}
		src, dst := "", ""
		if info.src.IsValid() {
			src, dst = info.src.String(), info.dst.String()
		}
		if src != c.src || dst != c.dst {
			t.Errorf("%s: %s %s, want %s %s", c.name, src, dst, c.src, c.dst)
		}
	}
}

// No input makes the parser panic or claim more than it was given.
func FuzzParseProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"))
	f.Add(proxyV2(1, 0x11, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _, err := parseProxyHeader(b)
		if n > len(b) || err != nil && n != 0 {
			t.Fatalf("n=%d of %d, err %v", n, len(b), err)
		}
	})
}
