package httpcore

import "testing"

func TestValidHost(t *testing.T) {
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"localhost", true},
		{"127.0.0.1:8080", true},
		{"example.com.", true},
		{"example.com.:80", true},
		{"[::1]:80", true},
		{"[::1]", true},
		{"", false},
		{".", false},
		{":80", false},
		{"a..b", false},
		{"..", false},
		{"a/b", false},
		{"a\\b", false},
		{"a\x00b", false},
		{"a b", false},
	} {
		if got := validHost([]byte(c.host)); got != c.ok {
			t.Errorf("validHost(%q) = %v, want %v", c.host, got, c.ok)
		}
	}
}
