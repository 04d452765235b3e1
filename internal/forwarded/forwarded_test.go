package forwarded

import (
	"net/netip"
	"testing"
)

func TestAddr(t *testing.T) {
	var tr Trusted
	for _, s := range []string{"192.168.1.0/24", "10.0.0.1", "2001:db8::/32", "unix:"} {
		if err := tr.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		peer, list string
		recursive  bool
		want, port string
		ok         bool
	}{
		{"192.168.1.5", "203.0.113.7", false, "203.0.113.7", "", true},
		{"192.168.1.5", "198.51.100.1, 10.0.0.1", false, "10.0.0.1", "", true},
		{"192.168.1.5", "198.51.100.1, 10.0.0.1", true, "198.51.100.1", "", true},
		{"192.168.1.5", "198.51.100.1,192.168.1.9 , 10.0.0.1", true, "198.51.100.1", "", true},
		{"192.168.1.5", "10.0.0.1, 192.168.1.7", true, "10.0.0.1", "", true}, // all trusted: the first
		{"192.168.1.5", "198.51.100.1:5555", false, "198.51.100.1", "5555", true},
		{"192.168.1.5", "[2001:db9::1]:80", false, "2001:db9::1", "80", true},
		{"192.168.1.5", "garbage", false, "192.168.1.5", "", false},
		{"192.168.1.5", "198.51.100.1, garbage", true, "192.168.1.5", "", false},
		{"192.168.1.5", "", false, "192.168.1.5", "", false},
		{"203.0.113.1", "198.51.100.1", false, "203.0.113.1", "", false}, // untrusted peer
		{"::ffff:10.0.0.1", "198.51.100.1", false, "198.51.100.1", "", true},
		{"", "198.51.100.1", false, "198.51.100.1", "", true}, // unix socket peer
	} {
		var peer netip.Addr
		if c.peer != "" {
			peer = netip.MustParseAddr(c.peer)
		}
		a, port, ok := tr.Addr(peer, c.list, c.recursive)
		got := ""
		if a.IsValid() {
			got = a.String()
		}
		want := c.want
		if want == "192.168.1.5" && c.peer != "" {
			want = peer.Unmap().String()
		}
		if got != want || port != c.port || ok != c.ok {
			t.Errorf("%s %q recursive=%v: %s %q %v, want %s %q %v", c.peer, c.list, c.recursive, got, port, ok, want, c.port, c.ok)
		}
	}
	if _, err := ParsePrefix("10.0.0.0/33"); err == nil {
		t.Error("10.0.0.0/33 accepted")
	}
}
